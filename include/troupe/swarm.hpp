#pragma once
/// Running swarms: a root agent (usually an orchestrator) with budgets, cancellation, a run report
/// with critical steps, and a C++ fan-out for programs that decompose a task themselves.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "caf/fwd.hpp"
#include "troupe/agent.hpp"
#include "troupe/budget.hpp"
#include "troupe/model.hpp"
#include "troupe/tool.hpp"

namespace troupe {

/// Accounting of one agent of a run.
struct agent_report {
  uint64_t id = 0;
  uint64_t parent_id = 0;
  std::string name;
  std::string outcome;  ///< "completed", "failed" or "cancelled".
  std::string error;    ///< Rendered failure, empty when completed.
  uint32_t steps = 0;
  uint32_t tool_calls = 0;
  uint32_t critical_steps = 0;
  troupe::usage tokens;
  double wall_ms = 0;
};

/// What a run produced and what it cost.
struct run_report {
  std::string result;          ///< The root agent's final answer.
  troupe::error failure;       ///< errc::none on success.
  std::vector<agent_report> agents;  ///< In order of finishing; the root is last.
  uint32_t critical_steps = 0; ///< Of the root: Σ stages (orchestrator step + slowest sub-agent).
  uint32_t total_steps = 0;    ///< Steps of every agent.
  uint32_t tool_calls = 0;     ///< Registry tool calls of every agent (the budgeted count).
  uint32_t subagents = 0;      ///< Sub-agents spawned.
  uint32_t peak_live_subagents = 0;
  troupe::usage tokens;        ///< Of every agent.
  double wall_ms = 0;

  bool ok() const { return failure.code() == errc::none; }
  /// The report as JSON (the `troupe run --json` format).
  std::string to_json() const;
};

/// A notification about the progress of a run, for live views and logs. Delivered synchronously
/// on the thread of the agent that caused it: observers must be quick and thread-safe.
struct progress_event {
  enum class kind : uint8_t {
    agent_started, model_request, model_reply, tool_started, tool_finished, agent_finished
  };
  kind what = kind::agent_started;
  uint64_t agent_id = 0;
  uint64_t parent_id = 0;
  std::string agent;
  std::string detail;  ///< Tool name, finish outcome, ... (never tool arguments).
  uint32_t steps = 0;
  uint64_t tokens = 0;          ///< The agent's tokens so far.
  bool is_error = false;
  std::chrono::steady_clock::time_point at;
  std::string call_id;          ///< tool_started, tool_finished: the id of the call.
  std::string_view arguments;   ///< tool_started: the call's arguments (valid during the call only).
  std::string_view result;      ///< tool_finished: the result's content (valid during the call only).
  troupe::usage usage;          ///< model_reply: the tokens of that turn.
};
using progress_observer = std::function<void(const progress_event&)>;

/// Runs agents against one model and one tool registry under budgets.
///
/// `run` and `fan_out` block the calling thread (never call them from inside an actor); `cancel`
/// may be called from any thread and stops the current run: every agent of it replies
/// errc::cancelled, quits, and late replies are dropped.
class swarm {
 public:
  swarm(caf::actor_system& sys, model_actor model, tool_registry_actor registry,
        budgets limits = {});
  ~swarm();
  swarm(const swarm&) = delete;
  swarm& operator=(const swarm&) = delete;

  /// Registers a custom agent type that orchestrators may name in assign_task / spawn_swarm.
  void add_agent_type(std::string name, agent_factory factory, std::string description = {});

  /// Sets the configuration used for spawn_swarm workers and assign_task to an unknown name
  /// when the model gives none (default: name "worker", the root's non-orchestration tools).
  void set_worker_template(agent_config worker);

  void set_observer(progress_observer observer);

  /// Runs `root` on `prompt` to completion, cancellation or a budget, and reports.
  run_report run(const agent_config& root, std::string prompt);

  /// The C++ fan-out: one sub-agent per item, each given `prompt_template` with every "{{item}}"
  /// replaced by the item, all in parallel under the budgets. Results come back in item order.
  /// When `worker.name` is a custom agent type (add_agent_type), that type runs each item.
  std::vector<agent_result> fan_out(const agent_config& worker, std::string_view prompt_template,
                                    const std::vector<std::string>& items, run_report* report = nullptr);

  /// Stops the current run (if any). Thread-safe.
  void cancel();

  /// Number of agents of the current or last run still alive.
  size_t live_agents() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// `tmpl` with every "{{item}}" replaced by `item`.
std::string render_item_template(std::string_view tmpl, std::string_view item);

}  // namespace troupe
