#pragma once
/// Waits for asynchronous work (a CUDA event behind NCCL calls, say) with a deadline, by polling,
/// so that a peer that never arrives costs a bounded wait and a message instead of a thread
/// blocked forever in cudaStreamSynchronize. Host-only: the work is seen through two callables,
/// and nothing here knows CUDA or NCCL.
///
/// Each poll asks `poll` first; `done` ends the wait at once (an async error reported in the same
/// poll is not consulted: the work finished), `failed` ends it with poll's message. While the work
/// is pending, `async_error` (may be empty) is asked next, and a message from it ends the wait as
/// failed. Then the deadline is checked. The first `spin_polls` polls follow each other
/// directly; after them the wait sleeps between polls, first_sleep, doubling up to max_sleep,
/// never past the deadline, and polls once more at the deadline before it times out. No callable
/// is called again after the wait returns, and none is called when the arguments are refused.
/// Work that outlasts the spin is seen done up to one sleep (at most max_sleep) late.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace troupe::gpu {

/// What one poll of the work found.
struct poll_result {
  enum class state : uint8_t { pending, done, failed };
  state st = state::pending;
  std::string message;  ///< failed only: what went wrong, for a person

  static poll_result pending() { return {}; }
  static poll_result done() { return {state::done, {}}; }
  static poll_result failed(std::string message) { return {state::failed, std::move(message)}; }
};

struct completion_wait_options {
  using clock = std::chrono::steady_clock;
  /// How long to wait in all. Zero: no deadline (the wait ends only when the work is done or
  /// failed). Negative: refused (troupe::error(invalid_argument)). Durations up to
  /// nanoseconds::max() are fine (no overflow of the deadline).
  std::chrono::nanoseconds timeout = std::chrono::seconds(30);
  int spin_polls = 64;  ///< polls without sleeping before the first sleep (>= 0)
  std::chrono::nanoseconds first_sleep = std::chrono::microseconds(50);  ///< > 0
  std::chrono::nanoseconds max_sleep = std::chrono::milliseconds(1);     ///< >= first_sleep
  /// The clock and the sleep; empty: steady_clock::now and std::this_thread::sleep_for. Tests put
  /// a simulated clock here that only sleeps advance.
  std::function<clock::time_point()> now{};
  std::function<void(clock::duration)> sleep{};
};

struct completion_wait_result {
  enum class outcome : uint8_t { done, failed, timed_out };
  outcome result = outcome::done;
  std::string message;  ///< failed: the message of the callable that reported the failure
  std::chrono::steady_clock::duration elapsed{};  ///< from the call to the last poll's end
  int64_t polls = 0;                              ///< calls of `poll`

  bool done() const noexcept { return result == outcome::done; }
};

/// Polls `poll` (and `async_error` while pending) until the work is done or failed, or until
/// `opts.timeout` has passed. Throws troupe::error(invalid_argument) for an empty `poll`, a
/// negative timeout, spin_polls < 0, first_sleep <= 0 or max_sleep < first_sleep, before calling
/// anything; exceptions from the callables propagate.
completion_wait_result wait_for_completion(
    const std::function<poll_result()>& poll,
    const std::function<std::optional<std::string>()>& async_error,
    const completion_wait_options& opts);

}  // namespace troupe::gpu
