// Waiting for device work with a deadline (completion_wait.hpp): completion, failure through
// either callable, timeouts, the spin-then-sleep backoff, refused arguments. A simulated clock
// that only the wait's sleeps advance makes every case but two exact; the two on the real clock
// assert only generous bounds.
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/gpu/completion_wait.hpp"

using namespace std::chrono_literals;
using troupe::gpu::completion_wait_options;
using troupe::gpu::completion_wait_result;
using troupe::gpu::poll_result;
using troupe::gpu::wait_for_completion;
using outcome = completion_wait_result::outcome;
using clock_type = completion_wait_options::clock;

namespace {

// A clock that stands still except when the wait sleeps; records every sleep.
struct sim_clock {
  clock_type::time_point t{};
  std::vector<clock_type::duration> sleeps;
  void attach(completion_wait_options& o) {
    o.now = [this] { return t; };
    o.sleep = [this](clock_type::duration d) {
      sleeps.push_back(d);
      t += d;
    };
  }
};

// Work that is pending until poll number `done_at` (0: never), counting the calls.
struct work {
  explicit work(int64_t done_at_poll = 0) : done_at(done_at_poll) {}
  int64_t done_at;
  int64_t polls = 0, async_calls = 0;
  std::optional<int64_t> fail_at, async_fail_at;  // poll / async call that reports a failure
  int64_t calls_after_end = 0;
  bool ended = false;

  std::function<poll_result()> poll() {
    return [this] {
      if (ended) ++calls_after_end;
      ++polls;
      if (fail_at && polls == *fail_at) {
        ended = true;
        return poll_result::failed("event: illegal address");
      }
      if (done_at > 0 && polls >= done_at) {
        ended = true;
        return poll_result::done();
      }
      return poll_result::pending();
    };
  }
  std::function<std::optional<std::string>()> async() {
    return [this]() -> std::optional<std::string> {
      if (ended) ++calls_after_end;
      ++async_calls;
      if (async_fail_at && async_calls == *async_fail_at) {
        ended = true;
        return "remote process exited or there was a network error";
      }
      return std::nullopt;
    };
  }
};

completion_wait_options sim_options(sim_clock& c, std::chrono::nanoseconds timeout) {
  completion_wait_options o;
  o.timeout = timeout;
  o.spin_polls = 4;
  o.first_sleep = 50us;
  o.max_sleep = 1ms;
  c.attach(o);
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(completion_wait_suite)

BOOST_AUTO_TEST_CASE(done_after_some_polls_and_nothing_called_after) {
  sim_clock c;
  work w(7);
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 1s));
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 7);
  BOOST_TEST(w.polls == 7);
  BOOST_TEST(w.async_calls == 6);  // not on the poll that found the work done
  BOOST_TEST(w.calls_after_end == 0);
  BOOST_TEST(r.message.empty());
  // 4 spinning polls, then sleeps of 50, 100 µs after polls 5 and 6
  BOOST_TEST(c.sleeps.size() == 2u);
  BOOST_TEST(r.elapsed == clock_type::duration(150us));
}

BOOST_AUTO_TEST_CASE(done_on_the_first_poll_never_sleeps_nor_asks_for_async_errors) {
  sim_clock c;
  work w(1);
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 1s));
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 1);
  BOOST_TEST(w.async_calls == 0);
  BOOST_TEST(c.sleeps.empty());
}

BOOST_AUTO_TEST_CASE(failure_through_the_poll_callable) {
  sim_clock c;
  work w;
  w.fail_at = 9;
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 1s));
  BOOST_TEST((r.result == outcome::failed));
  BOOST_TEST(r.message == "event: illegal address");
  BOOST_TEST(r.polls == 9);
  BOOST_TEST(w.async_calls == 8);
  BOOST_TEST(w.calls_after_end == 0);
}

BOOST_AUTO_TEST_CASE(failure_through_the_async_error_callable) {
  sim_clock c;
  work w;
  w.async_fail_at = 3;
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 1s));
  BOOST_TEST((r.result == outcome::failed));
  BOOST_TEST(r.message == "remote process exited or there was a network error");
  BOOST_TEST(r.polls == 3);
  BOOST_TEST(w.calls_after_end == 0);
  BOOST_TEST(c.sleeps.empty());  // still spinning
}

BOOST_AUTO_TEST_CASE(done_wins_over_an_async_error_of_the_same_poll) {
  sim_clock c;
  work w(2);
  w.async_fail_at = 2;
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 1s));
  BOOST_TEST(r.done());
  BOOST_TEST(w.async_calls == 1);
}

BOOST_AUTO_TEST_CASE(an_empty_async_error_callable_is_not_called) {
  sim_clock c;
  work w(3);
  const auto r = wait_for_completion(w.poll(), {}, sim_options(c, 1s));
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 3);
}

BOOST_AUTO_TEST_CASE(times_out_exactly_at_the_deadline_after_a_last_poll) {
  sim_clock c;
  work w;  // never done
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 3ms));
  BOOST_TEST((r.result == outcome::timed_out));
  BOOST_TEST(r.elapsed == clock_type::duration(3ms));
  BOOST_TEST(r.message.empty());
  // sleeps 50, 100, 200, 400, 800, then 1000 capped, then the 450 µs left to the deadline
  const std::vector<clock_type::duration> want{50us, 100us, 200us, 400us, 800us, 1000us, 450us};
  BOOST_TEST(c.sleeps == want, boost::test_tools::per_element());
  BOOST_TEST(r.polls == 4 + static_cast<int64_t>(want.size()) + 1);
  BOOST_TEST(w.async_calls == r.polls);
  BOOST_TEST(w.calls_after_end == 0);
}

BOOST_AUTO_TEST_CASE(work_done_at_the_last_poll_before_the_deadline_counts_as_done) {
  sim_clock c;
  work w(12);  // the poll at exactly 3 ms (see the case above)
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 3ms));
  BOOST_TEST(r.done());
  BOOST_TEST(r.elapsed == clock_type::duration(3ms));
}

BOOST_AUTO_TEST_CASE(sleeps_stay_at_the_largest_once_reached) {
  sim_clock c;
  auto o = sim_options(c, 1s);
  o.spin_polls = 0;
  o.first_sleep = 300us;
  o.max_sleep = 500us;
  work w(5);
  const auto r = wait_for_completion(w.poll(), w.async(), o);
  BOOST_TEST(r.done());
  const std::vector<clock_type::duration> want{300us, 500us, 500us, 500us};
  BOOST_TEST(c.sleeps == want, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(timeout_zero_waits_without_a_deadline) {
  sim_clock c;
  work w(20000);  // about 20 s of simulated 1 ms sleeps
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 0ns));
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 20000);
  BOOST_TEST(r.elapsed > clock_type::duration(19s));
}

BOOST_AUTO_TEST_CASE(timeout_zero_still_ends_on_an_async_error) {
  sim_clock c;
  work w;
  w.async_fail_at = 100;
  const auto r = wait_for_completion(w.poll(), w.async(), sim_options(c, 0ns));
  BOOST_TEST((r.result == outcome::failed));
  BOOST_TEST(r.polls == 100);
}

BOOST_AUTO_TEST_CASE(the_largest_timeout_does_not_overflow_the_deadline) {
  // Far from the clock's epoch, as steady_clock is on a running machine.
  sim_clock c;
  c.t = clock_type::time_point(clock_type::duration::max() / 2);
  work w(50);
  const auto r =
      wait_for_completion(w.poll(), w.async(), sim_options(c, std::chrono::nanoseconds::max()));
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 50);
  // and on the real clock
  work v(3);
  completion_wait_options o;
  o.timeout = std::chrono::nanoseconds::max();
  BOOST_TEST(wait_for_completion(v.poll(), v.async(), o).done());
}

BOOST_AUTO_TEST_CASE(refused_arguments_call_nothing) {
  auto refused = [](const completion_wait_options& o, bool with_poll = true) {
    work w(1);
    try {
      (void)wait_for_completion(with_poll ? w.poll() : std::function<poll_result()>{}, w.async(),
                                o);
    } catch (const troupe::error& e) {
      BOOST_TEST(w.polls + w.async_calls == 0);
      return e.code() == troupe::errc::invalid_argument;
    }
    return false;
  };
  completion_wait_options o;
  BOOST_TEST(refused(o, false));
  o.timeout = -1ns;
  BOOST_TEST(refused(o));
  o = {};
  o.spin_polls = -1;
  BOOST_TEST(refused(o));
  o = {};
  o.first_sleep = 0ns;
  BOOST_TEST(refused(o));
  o = {};
  o.max_sleep = o.first_sleep - 1ns;
  BOOST_TEST(refused(o));
  o = {};
  try {
    work w;
    o.timeout = -5ms;
    (void)wait_for_completion(w.poll(), w.async(), o);
    BOOST_FAIL("a negative timeout accepted");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.message().find("negative timeout") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(exceptions_from_a_callable_propagate) {
  completion_wait_options o;
  BOOST_CHECK_THROW(
      (void)wait_for_completion([]() -> poll_result { throw std::runtime_error("x"); }, {}, o),
      std::runtime_error);
}

// Real clock, generous bounds only.
BOOST_AUTO_TEST_CASE(real_clock_times_out_within_a_bounded_slack_and_sleeps_meanwhile) {
  work w;
  completion_wait_options o;
  o.timeout = 50ms;
  const auto t0 = clock_type::now();
  const auto r = wait_for_completion(w.poll(), w.async(), o);
  const clock_type::duration took = clock_type::now() - t0;
  BOOST_TEST((r.result == outcome::timed_out));
  BOOST_TEST(r.elapsed >= clock_type::duration(50ms));
  BOOST_TEST(took < clock_type::duration(5s));
  // 64 spinning polls and then sleeps of >= 50 µs: about 120 polls in 50 ms; a wait that spun the
  // whole time would poll millions of times.
  BOOST_TEST(r.polls < 5000);
  BOOST_TEST(r.polls > 64);
}

BOOST_AUTO_TEST_CASE(real_clock_completion_does_not_wait_for_the_deadline) {
  work w(200);  // reached after the spin and a few ms of sleeps
  completion_wait_options o;
  o.timeout = 60s;
  const auto t0 = clock_type::now();
  const auto r = wait_for_completion(w.poll(), w.async(), o);
  BOOST_TEST(r.done());
  BOOST_TEST(r.polls == 200);
  const clock_type::duration took = clock_type::now() - t0;
  BOOST_TEST(took < clock_type::duration(10s));
}

BOOST_AUTO_TEST_SUITE_END()
