// Worker threads for the CPU forward-pass kernels.

#include "cpu/thread_pool.hpp"

#include <algorithm>

namespace troupe::kernels::cpu {

namespace {

/// Spin iterations before a thread falls back to a futex wait: a decode step issues a few hundred
/// short parallel_for calls, and waking a sleeping thread costs more than one of them.
constexpr int spin_iterations = 20000;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

thread_pool::thread_pool(int threads) : threads_(std::max(1, threads)) {
  workers_.reserve(static_cast<size_t>(threads_ - 1));
  for (int i = 1; i < threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

thread_pool::~thread_pool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void thread_pool::run_chunk(int index) {
  const int64_t per = n_ / threads_;
  const int64_t extra = n_ % threads_;
  const int64_t begin = index * per + std::min<int64_t>(index, extra);
  const int64_t end = begin + per + (index < extra ? 1 : 0);
  if (begin < end) call_(fn_, begin, end, index);
}

void thread_pool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = generation_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < spin_iterations; ++spin) {
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      // Announce the sleep before the last look, so that a caller that bumps the generation
      // after that look sees the announcement and wakes us (both seq_cst).
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      while ((g = generation_.load(std::memory_order_seq_cst)) == seen) generation_.wait(seen);
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    run_chunk(index);
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        caller_sleeping_.load(std::memory_order_seq_cst))
      pending_.notify_one();
  }
}

void thread_pool::run(int64_t n, chunk_fn call, void* fn) {
  if (n <= 0) return;
  if (threads_ == 1 || n == 1) {
    call(fn, 0, n, 0);
    return;
  }
  call_ = call;
  fn_ = fn;
  n_ = n;
  pending_.store(threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();
  run_chunk(0);
  int left = pending_.load(std::memory_order_acquire);
  for (int spin = 0; left != 0 && spin < spin_iterations; ++spin) {
    cpu_relax();
    left = pending_.load(std::memory_order_acquire);
  }
  if (left != 0) {
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    while ((left = pending_.load(std::memory_order_seq_cst)) != 0) pending_.wait(left);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
}

}  // namespace troupe::kernels::cpu
