// Tool calls in model text (see troupe/formats/tool_calls.hpp).

#include "troupe/formats/tool_calls.hpp"

#include <algorithm>

#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe {

namespace {

constexpr std::string_view hermes_open = "<tool_call>";
constexpr std::string_view hermes_close = "</tool_call>";
constexpr std::string_view kimi_section_begin = "<|tool_calls_section_begin|>";
constexpr std::string_view kimi_section_end = "<|tool_calls_section_end|>";
constexpr std::string_view kimi_call_begin = "<|tool_call_begin|>";
constexpr std::string_view kimi_argument_begin = "<|tool_call_argument_begin|>";
constexpr std::string_view kimi_call_end = "<|tool_call_end|>";

/// Length of the longest suffix of `s` that is a proper prefix of `marker`.
size_t held_prefix(std::string_view s, std::string_view marker) {
  for (size_t k = std::min(s.size(), marker.size() - 1); k > 0; --k) {
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  }
  return 0;
}

std::string excerpt(std::string_view s) {
  constexpr size_t limit = 120;
  std::string out{s.substr(0, limit)};
  if (s.size() > limit) out += "...";
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

[[noreturn]] void malformed(std::string_view what, std::string_view body) {
  throw error(errc::parse_error,
              std::string("malformed tool call: ") + std::string(what) + " in `" + excerpt(body) +
                "`; the call was dropped, not run");
}

/// Arguments as canonical JSON text: an object, or a string holding one (some models quote it).
std::string arguments_text(const json::value* args, std::string_view body) {
  if (args == nullptr) return "{}";
  if (args->is_string()) {
    json::value inner;
    try {
      inner = json::parse(args->as_string(), "tool-call arguments");
    } catch (const error&) {
      malformed("its arguments are a string that is not JSON", body);
    }
    if (!inner.is_object()) malformed("its arguments are not a JSON object", body);
    return json::dump(inner);
  }
  if (!args->is_object()) malformed("its arguments are not a JSON object", body);
  return json::dump(*args);
}

}  // namespace

tool_call_parser::tool_call_parser(tool_call_syntax syntax) : syntax_(syntax) {}

void tool_call_parser::close_call(std::string_view body, output& out) {
  tool_call call;
  if (syntax_ == tool_call_syntax::hermes) {
    const auto text = trim(body);
    json::value v;
    try {
      v = json::parse(text, "tool call");
    } catch (const error& e) {
      malformed("its JSON does not parse (" + e.message() + ")", text);
    }
    if (!v.is_object()) malformed("it is not a JSON object", text);
    const json::value* name = v.find("name");
    if (name == nullptr || !name->is_string() || name->as_string().empty())
      malformed("it has no \"name\" string", text);
    const json::value* args = v.find("arguments");
    if (args == nullptr) args = v.find("parameters");
    call.id = "call_" + std::to_string(calls_);
    call.name = name->as_string();
    call.arguments = arguments_text(args, text);
  } else {
    const size_t arg = body.find(kimi_argument_begin);
    if (arg == std::string_view::npos) malformed("it has no <|tool_call_argument_begin|>", body);
    const auto id = trim(body.substr(0, arg));
    const auto args_text = trim(body.substr(arg + kimi_argument_begin.size()));
    // functions.NAME:IDX (the "functions." prefix and the index are what Kimi writes).
    std::string_view name = id;
    if (name.starts_with("functions.")) name.remove_prefix(10);
    if (const size_t colon = name.rfind(':'); colon != std::string_view::npos)
      name = name.substr(0, colon);
    if (name.empty()) malformed("its id names no function (expected functions.NAME:IDX)", body);
    json::value v;
    try {
      v = json::parse(args_text, "tool-call arguments");
    } catch (const error& e) {
      malformed("its arguments do not parse (" + e.message() + ")", body);
    }
    call.id = std::string(id);
    call.name = std::string(name);
    call.arguments = arguments_text(&v, body);
  }
  ++calls_;
  out.calls.push_back(std::move(call));
}

size_t tool_call_parser::find_close(std::string_view close) {
  for (; scanned_ < buf_.size(); ++scanned_) {
    const char c = buf_[scanned_];
    if (in_string_) {
      if (escaped_) escaped_ = false;
      else if (c == '\\') escaped_ = true;
      else if (c == '"') in_string_ = false;
      continue;
    }
    if (c == '"') {
      in_string_ = true;
      continue;
    }
    const std::string_view rest = std::string_view(buf_).substr(scanned_);
    if (rest.starts_with(close)) return scanned_;
    if (close.starts_with(rest)) return std::string::npos;  // maybe the marker: wait for more
  }
  return std::string::npos;
}

tool_call_parser::output tool_call_parser::feed(std::string_view piece) {
  output out;
  buf_.append(piece);
  const bool hermes = syntax_ == tool_call_syntax::hermes;
  const std::string_view open = hermes ? hermes_open : kimi_section_begin;
  for (;;) {
    if (!in_call_ && !in_section_) {
      const size_t at = buf_.find(open);
      if (at != std::string::npos) {
        out.text.append(buf_, 0, at);
        buf_.erase(0, at + open.size());
        if (hermes) in_call_ = true;
        else in_section_ = true;
        continue;
      }
      const size_t hold = held_prefix(buf_, open);
      out.text.append(buf_, 0, buf_.size() - hold);
      buf_.erase(0, buf_.size() - hold);
      return out;
    }
    if (in_call_) {
      const std::string_view close = hermes ? hermes_close : kimi_call_end;
      const size_t at = find_close(close);
      if (at == std::string::npos) return out;
      const std::string body = buf_.substr(0, at);
      buf_.erase(0, at + close.size());
      in_call_ = false;
      scanned_ = 0;
      in_string_ = escaped_ = false;
      close_call(body, out);
      continue;
    }
    // kimi_k2, inside the section, between calls: whitespace, a call, or the section's end.
    size_t skip = 0;
    while (skip < buf_.size() && is_space(buf_[skip])) ++skip;
    buf_.erase(0, skip);
    const std::string_view rest = buf_;
    if (rest.starts_with(kimi_call_begin)) {
      buf_.erase(0, kimi_call_begin.size());
      in_call_ = true;
      continue;
    }
    if (rest.starts_with(kimi_section_end)) {
      buf_.erase(0, kimi_section_end.size());
      in_section_ = false;
      continue;
    }
    if (kimi_call_begin.starts_with(rest) || kimi_section_end.starts_with(rest)) return out;
    malformed("unexpected text between calls of the tool-call section", rest);
  }
}

tool_call_parser::output tool_call_parser::finish() {
  if (in_call_ || in_section_) {
    const std::string_view opened =
      syntax_ == tool_call_syntax::hermes ? hermes_open : kimi_section_begin;
    throw error(errc::parse_error,
                "truncated tool call: " + std::string(opened) + " was opened but the output ended "
                  "before the call was closed (after `" + excerpt(buf_) +
                  "`); the call was dropped, not run. Raise max_tokens if the model ran out.");
  }
  output out;
  out.text = std::move(buf_);
  buf_.clear();
  return out;
}

tool_call_parser::output parse_tool_calls(tool_call_syntax syntax, std::string_view text) {
  tool_call_parser p(syntax);
  auto out = p.feed(text);
  auto tail = p.finish();
  out.text += tail.text;
  return out;
}

namespace {
/// {"type":"function","function":{"name","description","parameters"}} with the schema embedded
/// as parsed JSON (a schema that does not parse is embedded as a string).
json::value openai_tool_json(const tool_spec& t) {
  json::value params;
  try {
    params = json::parse(t.parameters, "parameters of tool " + t.name);
  } catch (const error&) {
    params = json::value{t.parameters};
  }
  json::object fn{{"name", t.name}, {"description", t.description}, {"parameters", params}};
  return json::object{{"type", "function"}, {"function", std::move(fn)}};
}
}  // namespace

std::string hermes_tool_declarations(std::span<const tool_spec> tools) {
  std::string out =
    "You are a function calling AI model. You may call one or more functions to assist with the "
    "user query. Here are the available tools, as function signatures within <tools></tools> XML "
    "tags:\n<tools>\n";
  for (const auto& t : tools) out += json::dump(openai_tool_json(t)) + "\n";
  out +=
    "</tools>\nFor each function call, return a JSON object with the function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
    "<function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
  return out;
}

std::string hermes_tool_call_text(const tool_call& call) {
  return "<tool_call>\n{\"name\": " + json::quote(call.name) + ", \"arguments\": " +
         (call.arguments.empty() ? std::string{"{}"} : call.arguments) + "}\n</tool_call>";
}

std::string hermes_tool_response_text(const chat_message& tool_message) {
  return "<tool_response>\n" + tool_message.text() + "\n</tool_response>";
}

std::string kimi_k2_prompt(std::span<const chat_message> messages, std::span<const tool_spec> tools,
                           bool add_generation_prompt) {
  std::string out;
  if (!tools.empty()) {
    json::array decl;
    for (const auto& t : tools) decl.push_back(openai_tool_json(t));
    out += "<|im_system|>tool_declare<|im_middle|>" + json::dump(json::value{std::move(decl)}) +
           "<|im_end|>";
  }
  if (messages.empty() || messages.front().role != role::system) {
    out += "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI."
           "<|im_end|>";
  }
  for (const auto& m : messages) {
    switch (m.role) {
      case role::user: out += "<|im_user|>user<|im_middle|>"; break;
      case role::assistant: out += "<|im_assistant|>assistant<|im_middle|>"; break;
      case role::system: out += "<|im_system|>system<|im_middle|>"; break;
      case role::tool:
        out += "<|im_system|>" + (m.name.empty() ? std::string{"tool"} : m.name) + "<|im_middle|>";
        break;
    }
    if (m.role == role::tool) out += "## Return of " + m.tool_call_id + "\n";
    out += m.text();
    if (m.role == role::assistant && !m.tool_calls.empty()) {
      out += kimi_section_begin;
      for (size_t i = 0; i < m.tool_calls.size(); ++i) {
        const auto& c = m.tool_calls[i];
        // Ids in history are normalised to functions.NAME:IDX, which Kimi expects.
        const std::string id = c.id.starts_with("functions.")
                                 ? c.id
                                 : "functions." + c.name + ":" + std::to_string(i);
        out += std::string(kimi_call_begin) + id + std::string(kimi_argument_begin) +
               (c.arguments.empty() ? std::string{"{}"} : c.arguments) +
               std::string(kimi_call_end);
      }
      out += kimi_section_end;
    }
    out += "<|im_end|>";
  }
  if (add_generation_prompt) out += "<|im_assistant|>assistant<|im_middle|>";
  return out;
}

}  // namespace troupe
