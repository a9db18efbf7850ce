#pragma once
/// Agents: the protocol every agent actor speaks, the configuration of troupe's built-in agent,
/// and what an agent returns.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "caf/fwd.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"
#include "troupe/atoms.hpp"
#include "troupe/error.hpp"
#include "troupe/message.hpp"
#include "troupe/model.hpp"
#include "troupe/tool.hpp"

namespace troupe {

/// What an agent returns to whoever ran it: only its final answer plus accounting. A sub-agent's
/// context (its messages) never leaves it.
struct agent_result {
  std::string agent;            ///< The agent's name.
  std::string text;             ///< Final answer (empty on failure).
  troupe::error failure;        ///< errc::none when the agent finished with an answer.
  uint32_t steps = 0;           ///< Model turns taken.
  uint32_t tool_calls = 0;      ///< Tool calls made (orchestration tools included).
  uint32_t critical_steps = 0;  ///< Σ over its steps of (1 + slowest sub-agent of that step).
  troupe::usage tokens;         ///< Its own tokens (sub-agents' not included).

  bool ok() const { return failure.code() == errc::none; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, agent_result& x) {
  return f(caf::meta::type_name("troupe.agent_result"), x.agent, x.text, x.failure, x.steps,
           x.tool_calls, x.critical_steps, x.tokens);
}

/// Protocol of every agent, built-in or custom:
/// - (run, prompt) -> agent_result: runs once to completion; a second run is refused. Failures
///   (budgets, model errors, cancellation) are results with `failure` set, not request errors.
/// - (cancel): stop now; a pending run replies with errc::cancelled, in-flight calls are abandoned
///   (late replies are dropped) and the agent quits.
using agent_actor = caf::typed_actor<caf::replies_to<run_atom, std::string>::with<agent_result>,
                                     caf::reacts_to<cancel_atom>>;

/// Configuration of troupe's built-in agent (model -> tools -> model ... loop).
struct agent_config {
  std::string name = "agent";
  std::string system_prompt;
  std::vector<std::string> tools;  ///< Registry tools it may call; "*" means every registered tool.
  bool orchestrator = false;       ///< Adds create_subagent, assign_task and spawn_swarm.
  uint32_t max_steps = 0;          ///< 0: the run's max_steps_per_agent.
  sampling_params sampling;
  uint32_t max_tokens_per_turn = 0;
  std::chrono::milliseconds model_timeout{std::chrono::minutes{10}};
  std::chrono::milliseconds tool_timeout{std::chrono::minutes{10}};  ///< Upper bound per call.
};

struct run_state;

/// Everything an agent actor needs from its run. Passed by value at spawn.
struct agent_env {
  agent_config config;
  model_actor model;
  tool_registry_actor registry;
  std::vector<tool_spec> tool_specs;  ///< Resolved specs of config.tools.
  std::shared_ptr<run_state> run;
  uint64_t id = 0;         ///< Unique within the run; the root is 1.
  uint64_t parent_id = 0;  ///< 0 for the root.
};

/// Spawns troupe's built-in agent. The agent registers itself with its run (live set, reports).
agent_actor spawn_agent(caf::actor_system& sys, agent_env env);

/// Makes a custom agent for a sub-agent slot: called by an orchestrator when it assigns a task to
/// an agent type registered under a name (see swarm::add_agent_type).
using agent_factory = std::function<agent_actor(caf::actor_system& sys, agent_env env)>;

}  // namespace troupe
