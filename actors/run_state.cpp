#include "run_state.hpp"

#include <fmt/format.h>

#include "caf/all.hpp"

namespace troupe {

run_state::run_state(budgets l, progress_observer obs)
    : limits(l),
      started(clock::now()),
      deadline(l.deadline.count() > 0 ? started + l.deadline : clock::time_point::max()),
      observer(std::move(obs)) {}

bool run_state::try_acquire_subagent(std::string& why) {
  auto live = live_subagents.load(std::memory_order_relaxed);
  do {
    if (live >= limits.max_live_subagents) {
      why = fmt::format("sub-agent budget exhausted: {} sub-agents are already running "
                        "(max_live_subagents = {}); wait for some to finish, or use fewer",
                        live, limits.max_live_subagents);
      return false;
    }
  } while (!live_subagents.compare_exchange_weak(live, live + 1, std::memory_order_acq_rel));
  spawned_subagents.fetch_add(1, std::memory_order_relaxed);
  auto peak = peak_live_subagents.load(std::memory_order_relaxed);
  while (live + 1 > peak &&
         !peak_live_subagents.compare_exchange_weak(peak, live + 1, std::memory_order_relaxed)) {
  }
  return true;
}

void run_state::release_subagent() { live_subagents.fetch_sub(1, std::memory_order_acq_rel); }

bool run_state::try_acquire_tool_call(std::string& why) {
  auto n = tool_calls.fetch_add(1, std::memory_order_acq_rel);
  if (n < limits.max_tool_calls) return true;
  tool_calls.fetch_sub(1, std::memory_order_acq_rel);
  why = fmt::format("tool-call budget exhausted: this run has made its {} tool calls "
                    "(max_tool_calls = {}); finish with what you have",
                    limits.max_tool_calls, limits.max_tool_calls);
  return false;
}

bool run_state::add_tokens(uint64_t n, std::string& why) {
  auto total = tokens.fetch_add(n, std::memory_order_acq_rel) + n;
  if (limits.max_tokens == 0 || total <= limits.max_tokens) return true;
  why = fmt::format("token budget exhausted: the run has used {} tokens (max_tokens = {})", total,
                    limits.max_tokens);
  return false;
}

bool run_state::stopped(std::string& why, errc& code) const {
  if (cancelled.load(std::memory_order_acquire)) {
    why = "the run was cancelled";
    code = errc::cancelled;
    return true;
  }
  if (deadline != clock::time_point::max() && clock::now() >= deadline) {
    why = fmt::format("deadline exceeded: the run's deadline of {} ms has passed",
                      limits.deadline.count());
    code = errc::budget_exceeded;
    return true;
  }
  return false;
}

void run_state::add_live(uint64_t id, caf::actor handle) {
  std::lock_guard<std::mutex> guard{mtx_};
  live_.emplace(id, std::move(handle));
}

void run_state::remove_live(uint64_t id) {
  caf::actor gone;  // Released outside the lock.
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto it = live_.find(id); it != live_.end()) {
    gone = std::move(it->second);
    live_.erase(it);
  }
  if (live_.empty()) drained_.notify_all();
}

bool run_state::wait_drained(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> guard{mtx_};
  return drained_.wait_for(guard, timeout, [this] { return live_.empty(); });
}

size_t run_state::live_count() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return live_.size();
}

void run_state::add_report(agent_report r) {
  std::lock_guard<std::mutex> guard{mtx_};
  reports_.push_back(std::move(r));
}

std::vector<agent_report> run_state::reports() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return reports_;
}

void run_state::cancel() {
  cancelled.store(true, std::memory_order_release);
  std::vector<caf::actor> targets;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& [id, handle] : live_) targets.push_back(handle);
  }
  for (auto& t : targets) caf::anon_send(t, cancel_atom::value);
}

}  // namespace troupe
