#pragma once
/// State shared by every agent of one run, in one process: budgets (atomics, so that enforcing them
/// costs no message round trip), the live set (for cancel), reports and catalog of agent types.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "caf/actor_cast.hpp"
#include "troupe/agent.hpp"
#include "troupe/budget.hpp"
#include "troupe/swarm.hpp"

namespace troupe {

struct agent_type_entry {
  agent_factory factory;
  std::string description;
};

struct run_state {
  using clock = std::chrono::steady_clock;

  run_state(budgets limits, progress_observer observer);

  const budgets limits;
  const clock::time_point started;
  const clock::time_point deadline;  ///< clock::time_point::max() when none.
  const progress_observer observer;

  std::atomic<bool> cancelled{false};
  std::atomic<uint32_t> live_subagents{0};
  std::atomic<uint32_t> peak_live_subagents{0};
  std::atomic<uint32_t> spawned_subagents{0};
  std::atomic<uint32_t> tool_calls{0};
  std::atomic<uint64_t> tokens{0};
  std::atomic<uint64_t> next_agent_id{1};
  std::atomic<uint64_t> next_request_id{1};

  /// Custom agent types by name, and the default worker configuration. Set before the run starts.
  std::map<std::string, agent_type_entry> agent_types;
  agent_config worker_template;
  bool has_worker_template = false;
  /// Every tool registered when the run started: what worker templates and custom agent types
  /// may be given.
  std::vector<tool_spec> registered_tools;

  /// Takes a live sub-agent slot; on refusal sets `why` to a message naming the budget.
  bool try_acquire_subagent(std::string& why);
  void release_subagent();
  /// Counts one registry tool call; on refusal sets `why` to a message naming the budget.
  bool try_acquire_tool_call(std::string& why);
  /// Adds tokens; false (with `why`) when the token budget is now spent.
  bool add_tokens(uint64_t n, std::string& why);
  /// True (with `why`) when the run is cancelled or past its deadline.
  bool stopped(std::string& why, errc& code) const;

  void add_live(uint64_t id, caf::actor handle);
  void remove_live(uint64_t id);
  size_t live_count() const;
  /// Blocks until no agent of the run is alive or `timeout` passes; true when none is.
  bool wait_drained(std::chrono::milliseconds timeout) const;
  void add_report(agent_report r);
  std::vector<agent_report> reports() const;

  /// Marks the run cancelled and sends (cancel) to every live agent.
  void cancel();

  void notify(progress_event ev) const {
    if (observer) {
      ev.at = clock::now();
      observer(ev);
    }
  }

 private:
  mutable std::mutex mtx_;
  mutable std::condition_variable drained_;
  std::unordered_map<uint64_t, caf::actor> live_;
  std::vector<agent_report> reports_;
};

}  // namespace troupe
