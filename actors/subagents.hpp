#pragma once
/// What every agent kind (built-in or custom) shares when it runs sub-agents and reports: finding
/// what to spawn for a name, taking a live slot, the request timeout, and the agent's report.

#include <chrono>
#include <string>

#include "caf/fwd.hpp"
#include "run_state.hpp"
#include "troupe/agent.hpp"

namespace troupe {

/// Fills `child` for sub-agent `name` of the agent `parent`: a registered custom agent type, or the
/// worker template (for "" and "worker"). Sets `factory` for custom types (else nullptr). Returns
/// false with `why` when there is no such agent; `known` lists other names the caller offers.
bool resolve_subagent(const agent_env& parent, const std::string& name, agent_env& child,
                      const agent_factory*& factory, std::string& why,
                      const std::string& known = {});

/// Takes a live sub-agent slot and spawns `child`. Returns an invalid handle with `why` set when
/// the sub-agent budget is spent.
agent_actor spawn_subagent(caf::actor_system& sys, agent_env child, const agent_factory* factory,
                           std::string& why);

/// How long to wait for a sub-agent: until the run's deadline (plus a grace period), else a day.
std::chrono::milliseconds subagent_timeout(const run_state& run);

/// Tells the run's observer about agent `env` (steps and tokens so far).
/// `ev` carries what happened (kind, detail, call fields); agent fields are filled in here.
void notify_progress(const agent_env& env, progress_event ev, uint32_t steps, uint64_t tokens);

/// The report of an agent that finished with `r` after starting at `started`.
agent_report make_agent_report(const agent_env& env, const agent_result& r,
                               std::chrono::steady_clock::time_point started);

}  // namespace troupe
