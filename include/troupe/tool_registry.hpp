#pragma once
/// The tool registry actor and helpers that turn C++ functions into tool actors.

#include <chrono>
#include <functional>
#include <string>

#include "caf/fwd.hpp"
#include "troupe/tool.hpp"

namespace troupe {

/// Spawns an empty tool registry (protocol: troupe::tool_registry_actor).
tool_registry_actor spawn_tool_registry(caf::actor_system& sys);

/// A synchronous tool body: runs inside the tool's actor, so it must not block for long.
/// Exceptions become error results. The returned result's call_id is filled in for you.
using tool_function = std::function<tool_result(const tool_call&)>;

/// Spawns a tool actor around `fn`. With `blocking` the actor gets its own thread (CAF `detached`)
/// so that a slow or blocking body does not stall other actors; calls then run one at a time.
tool_actor spawn_function_tool(caf::actor_system& sys, tool_function fn, bool blocking = false);

/// Registers `actor` under `spec` and waits for the registry's answer. Throws troupe::error on
/// failure. For set-up code outside actors.
void register_tool(caf::actor_system& sys, const tool_registry_actor& registry, tool_spec spec,
                   tool_actor actor, tool_options options = {});

}  // namespace troupe
