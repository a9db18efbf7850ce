#pragma once
/// The orchestration tools an orchestrator agent offers its model: create_subagent, assign_task,
/// spawn_swarm. Handled by the agent itself, not routed through the registry.

#include <string_view>
#include <vector>

#include "troupe/json.hpp"
#include "troupe/tool_call.hpp"

namespace troupe {

bool is_orchestration_tool(std::string_view name);
const std::vector<tool_spec>& orchestration_tool_specs();
/// The parsed JSON Schema of an orchestration tool's parameters.
const json::value& orchestration_schema(std::string_view name);

}  // namespace troupe
