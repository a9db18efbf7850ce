#pragma once
/// Tools that need no plugin: for tests, samples and benchmarks.
///  - noop(): returns "ok" at once.
///  - echo(text): returns text.
///  - wait(ms, text?): answers after ms milliseconds without blocking a thread (at most 10 min),
///    with text or "waited N ms".
///  - fail(message?): always returns an error result.

#include <string>
#include <vector>

#include "caf/fwd.hpp"
#include "troupe/tool.hpp"

namespace troupe {

/// Names of the built-in tools.
std::vector<std::string> builtin_tool_names();

/// Spawns the built-in tools and registers them (all, or those named) with `registry`.
/// Throws troupe::error naming an unknown tool.
void register_builtin_tools(caf::actor_system& sys, const tool_registry_actor& registry,
                            const std::vector<std::string>& names = {}, tool_options options = {});

}  // namespace troupe
