// thread_pool: every index of every parallel_for runs exactly once, on a thread index in range,
// and a parallel_for returns only when all of it is done, across many back-to-back calls (the
// pattern of a decode step) and after the workers have fallen asleep.

#define BOOST_TEST_MODULE thread_pool
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "cpu/thread_pool.hpp"

namespace kc = troupe::kernels::cpu;

namespace {

/// Runs parallel_for(n) and checks that each index ran once, chunks were contiguous and
/// non-empty, and thread indices were in range.
void check_once(kc::thread_pool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<bool> bad_chunk{false}, bad_thread{false};
  pool.parallel_for(n, [&](int64_t begin, int64_t end, int thread) {
    if (begin >= end || begin < 0 || end > n) bad_chunk = true;
    if (thread < 0 || thread >= pool.size()) bad_thread = true;
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  BOOST_TEST(!bad_chunk.load());
  BOOST_TEST(!bad_thread.load());
  int64_t wrong = 0;
  for (auto& h : hits) wrong += h.load() != 1 ? 1 : 0;
  BOOST_TEST(wrong == 0, "n=" << n << ": " << wrong << " indices did not run exactly once");
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_index_runs_once) {
  for (int threads : {1, 2, 3, 5}) {
    kc::thread_pool pool(threads);
    BOOST_TEST(pool.size() == threads);
    for (int64_t n : {0, 1, 2, 3, 7, 8, 9, 16, 31, 100, 3072}) check_once(pool, n);
  }
}

BOOST_AUTO_TEST_CASE(back_to_back_calls_see_each_others_results) {
  // Each call reads what the previous one wrote: a call that returned early, or a worker that
  // ran a chunk of an older call late, would break the chain.
  kc::thread_pool pool(3);
  const int64_t n = 37;
  std::vector<int64_t> a(static_cast<size_t>(n), 0), b(static_cast<size_t>(n), 0);
  for (int step = 0; step < 2000; ++step) {
    pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) b[static_cast<size_t>(i)] = a[static_cast<size_t>(i)] + 1;
    });
    pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
      for (int64_t i = begin; i < end; ++i) a[static_cast<size_t>(i)] = b[static_cast<size_t>(i)];
    });
  }
  int64_t wrong = 0;
  for (int64_t v : a) wrong += v != 2000 ? 1 : 0;
  BOOST_TEST(wrong == 0);
}

BOOST_AUTO_TEST_CASE(sleeping_workers_are_woken) {
  kc::thread_pool pool(2);
  check_once(pool, 64);
  // Longer than the spin phase: the worker is asleep on its futex when the next call comes.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // Whichever thread runs a chunk first holds it until another thread has run one (or 10 s have
  // passed): only a worker that was woken can end the wait early.
  std::atomic<int> started{0};
  std::atomic<bool> other_ran{false};
  pool.parallel_for(2, [&](int64_t, int64_t, int) {
    if (started.fetch_add(1) == 0) {
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!other_ran.load() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::yield();
    } else {
      other_ran = true;
    }
  });
  BOOST_TEST(other_ran.load());
  check_once(pool, 64);
}

BOOST_AUTO_TEST_CASE(no_chunk_runs_after_its_call_returned_under_oversubscription) {
  // Calls of alternating sizes (a short one, then one with more chunks than its line had) on
  // three pools at once, six threads on however few cores: a worker preempted between reading
  // the line and claiming must not take a chunk of the next call under the old count. Each
  // call's indices must have run exactly once when it returns, and nothing may touch them
  // after (the next call of the same pool checks its buffer is clean first). A stress test:
  // that race (thread_pool::run) struck about once in a million calls here, in the forward
  // pass under a loaded machine, so passing proves little; failing would.
  auto hammer = [](int calls, int* bad) {
    kc::thread_pool pool(2);
    std::vector<std::atomic<int>> hits(64);
    for (int k = 0; k < calls; ++k) {
      const int64_t n = k % 2 == 0 ? 3 : 64;
      for (auto& h : hits)
        if (h.load() != 0) ++*bad;
      pool.parallel_for(n, [&](int64_t begin, int64_t end, int) {
        for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      for (int64_t i = 0; i < 64; ++i)
        if (hits[static_cast<size_t>(i)].exchange(0) != (i < n ? 1 : 0)) ++*bad;
    }
  };
  int bad[3] = {0, 0, 0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back(hammer, 20000, &bad[t]);
  for (auto& t : threads) t.join();
  BOOST_TEST(bad[0] + bad[1] + bad[2] == 0);
}
