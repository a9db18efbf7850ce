#include "troupe/gpu/completion_wait.hpp"

#include <algorithm>
#include <thread>

#include "troupe/error.hpp"

namespace troupe::gpu {

namespace {

std::string micros(std::chrono::nanoseconds d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(d).count()) + " µs";
}

}  // namespace

completion_wait_result wait_for_completion(
    const std::function<poll_result()>& poll,
    const std::function<std::optional<std::string>()>& async_error,
    const completion_wait_options& opts) {
  using clock = completion_wait_options::clock;
  const char* where = "gpu::wait_for_completion: ";
  if (!poll) throw error(errc::invalid_argument, std::string(where) + "no poll callable");
  if (opts.timeout.count() < 0)
    throw error(errc::invalid_argument, std::string(where) + "negative timeout (" +
                                            micros(opts.timeout) + "); 0 means no deadline");
  if (opts.spin_polls < 0)
    throw error(errc::invalid_argument, std::string(where) + "spin_polls " +
                                            std::to_string(opts.spin_polls) + " is negative");
  if (opts.first_sleep.count() <= 0 || opts.max_sleep < opts.first_sleep)
    throw error(errc::invalid_argument, std::string(where) + "sleeps from " +
                                            micros(opts.first_sleep) + " up to " +
                                            micros(opts.max_sleep) +
                                            ": the first must be positive and at most the largest");

  const auto now = [&] { return opts.now ? opts.now() : clock::now(); };
  const auto sleep = [&](clock::duration d) {
    if (opts.sleep)
      opts.sleep(d);
    else
      std::this_thread::sleep_for(d);
  };
  // Durations, not time points, are compared: start + nanoseconds::max() would overflow.
  const bool has_deadline = opts.timeout.count() > 0;
  const auto timeout = std::chrono::duration_cast<clock::duration>(opts.timeout);
  const auto max_sleep = std::chrono::duration_cast<clock::duration>(opts.max_sleep);
  auto next_sleep = std::chrono::duration_cast<clock::duration>(opts.first_sleep);
  const auto start = now();
  completion_wait_result r;
  for (;;) {
    ++r.polls;
    poll_result p = poll();
    if (p.st != poll_result::state::pending) {
      r.result = p.st == poll_result::state::done ? completion_wait_result::outcome::done
                                                  : completion_wait_result::outcome::failed;
      r.message = std::move(p.message);
      r.elapsed = now() - start;
      return r;
    }
    if (async_error) {
      if (auto m = async_error()) {
        r.result = completion_wait_result::outcome::failed;
        r.message = std::move(*m);
        r.elapsed = now() - start;
        return r;
      }
    }
    r.elapsed = now() - start;
    if (has_deadline && r.elapsed >= timeout) {
      r.result = completion_wait_result::outcome::timed_out;
      return r;
    }
    if (r.polls <= opts.spin_polls) continue;
    sleep(has_deadline ? std::min(next_sleep, timeout - r.elapsed) : next_sleep);
    next_sleep = next_sleep > max_sleep / 2 ? max_sleep : next_sleep * 2;
  }
}

}  // namespace troupe::gpu
