#pragma once
/// Tools as actors: the tool protocol, the registry protocol, and per-tool limits.

#include <cstdint>
#include <string>
#include <vector>

#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"
#include "troupe/atoms.hpp"
#include "troupe/tool_call.hpp"

namespace troupe {

/// Limits the registry applies to one tool.
struct tool_options {
  uint32_t max_concurrency = 0;  ///< Calls in flight at once; more wait in FIFO order. 0: no limit.
  uint32_t timeout_ms = 60000;   ///< Per call, from dispatch to the tool; 0: no limit.

  friend bool operator==(const tool_options&, const tool_options&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_options& x) {
  return f(caf::meta::type_name("troupe.tool_options"), x.max_concurrency, x.timeout_ms);
}

/// Protocol of a tool: (invoke, tool_call) -> tool_result.
/// A tool reports every failure it can detect as a tool_result with is_error set and a message the
/// model can act on; it replies exactly once per call. One actor may serve several tool names.
using tool_actor = caf::typed_actor<caf::replies_to<invoke_atom, tool_call>::with<tool_result>>;

/// Protocol of the tool registry, the one place calls are routed by name.
/// - (register, spec, options, tool) -> bool: adds or replaces the tool named spec.name. Calls
///   already in flight on a replaced tool finish on the old actor.
/// - (unregister, name) -> bool: false if no such tool. In-flight calls still complete.
/// - (list) -> specs of every registered tool, sorted by name.
/// - (invoke, call) -> tool_result, always a result, never an error: an unknown tool, arguments
///   that are not a JSON object or violate the schema, a timeout, or a tool that died become
///   is_error results naming the tool and what to do. Calls beyond max_concurrency queue in order.
using tool_registry_actor =
  caf::typed_actor<caf::replies_to<register_atom, tool_spec, tool_options, tool_actor>::with<bool>,
                   caf::replies_to<unregister_atom, std::string>::with<bool>,
                   caf::replies_to<list_atom>::with<std::vector<tool_spec>>,
                   caf::replies_to<invoke_atom, tool_call>::with<tool_result>>;

}  // namespace troupe
