#pragma once
/// Run budgets: the limits the runtime (not the model) enforces on one swarm run.

#include <chrono>
#include <cstdint>

namespace troupe {

/// Limits of one run. Exceeding one is reported to the model as a tool error naming the budget
/// (or ends the agent with errc::budget_exceeded when no tool call is involved).
struct budgets {
  uint32_t max_live_subagents = 100;   ///< Sub-agents alive at once (the orchestrator not counted).
  uint32_t max_tool_calls = 1500;      ///< Calls routed to tools per run; orchestration tools excluded.
  uint32_t max_steps_per_agent = 100;  ///< Model turns per agent.
  uint64_t max_tokens = 0;             ///< Prompt + completion tokens per run; 0: no limit.
  std::chrono::milliseconds deadline{0};  ///< Wall-clock limit of the run; 0: none.
};

}  // namespace troupe
