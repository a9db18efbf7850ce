#pragma once
/// Tool vocabulary: what a tool is (tool_spec), what a model asks of it (tool_call) and what comes
/// back (tool_result). Arguments and results are JSON or plain text kept as strings: troupe looks
/// inside them only where it must.

#include <string>

#include "caf/meta/type_name.hpp"

namespace troupe {

/// A tool as the model sees it: name, description and the JSON Schema of its parameters.
struct tool_spec {
  std::string name;
  std::string description;
  std::string parameters = R"({"type":"object","properties":{}})";  ///< JSON Schema text.

  friend bool operator==(const tool_spec&, const tool_spec&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_spec& x) {
  return f(caf::meta::type_name("troupe.tool_spec"), x.name, x.description, x.parameters);
}

/// One call a model made: its id (unique within the conversation), the tool name and the
/// arguments as JSON text exactly as the model produced them.
struct tool_call {
  std::string id;
  std::string name;
  std::string arguments = "{}";

  friend bool operator==(const tool_call&, const tool_call&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_call& x) {
  return f(caf::meta::type_name("troupe.tool_call"), x.id, x.name, x.arguments);
}

/// The answer to one tool call. `is_error` results are shown to the model as errors it can act on.
struct tool_result {
  std::string call_id;
  std::string content;  ///< JSON or text.
  bool is_error = false;

  static tool_result ok(std::string call_id, std::string content) {
    return {std::move(call_id), std::move(content), false};
  }
  static tool_result failure(std::string call_id, std::string message) {
    return {std::move(call_id), std::move(message), true};
  }

  friend bool operator==(const tool_result&, const tool_result&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_result& x) {
  return f(caf::meta::type_name("troupe.tool_result"), x.call_id, x.content, x.is_error);
}

}  // namespace troupe
