// Worker threads for the CPU forward-pass kernels.

#include "cpu/thread_pool.hpp"

#include <algorithm>

namespace troupe::kernels::cpu {

namespace {

/// Spin iterations before a thread falls back to a futex wait: a decode step issues a few hundred
/// short parallel_for calls, and waking a sleeping thread costs more than one of them.
constexpr int spin_iterations = 20000;

/// Chunks per thread: enough that a thread the scheduler holds back leaves little to wait for,
/// few enough that claiming costs nothing next to a chunk.
constexpr int chunks_per_thread = 4;

/// The chunk index of a closed line: past any chunk count, so nothing can be claimed from it.
constexpr uint32_t closed_index = 0x7FFFFFFF;

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
  stop_.store(true, std::memory_order_seq_cst);
  wake_.fetch_add(1, std::memory_order_seq_cst);
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

int thread_pool::claim_and_run(uint32_t gen, int index) {
  int ran = 0;
  uint64_t v = next_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(v >> 32) != gen) return ran;
    const auto c = static_cast<int>(static_cast<uint32_t>(v));
    // Acquire: seeing a later call's count means seeing its close of next_ too (run()).
    const int chunks = chunks_.load(std::memory_order_acquire);
    if (c >= chunks) return ran;
    // On success the generation is still `gen` and cannot end before this chunk is done, so
    // its call_, fn_ and n_ (published with it) are the ones to run.
    if (!next_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel,
                                     std::memory_order_acquire))
      continue;
    const int64_t per = n_ / chunks, extra = n_ % chunks;
    const int64_t begin = c * per + std::min<int64_t>(c, extra);
    const int64_t end = begin + per + (c < extra ? 1 : 0);
    if (begin < end) call_(fn_, begin, end, index);
    ++ran;
    v = next_.load(std::memory_order_acquire);
  }
}

void thread_pool::worker(int index) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t g = wake_.load(std::memory_order_acquire);
    for (int spin = 0; g == seen && spin < spin_iterations; ++spin) {
      cpu_relax();
      g = wake_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      // Announce the sleep before the last look, so that a caller that publishes after that
      // look sees the announcement and wakes us (both seq_cst).
      sleeping_workers_.fetch_add(1, std::memory_order_seq_cst);
      while ((g = wake_.load(std::memory_order_seq_cst)) == seen) wake_.wait(seen);
      sleeping_workers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    for (int ran = claim_and_run(g, index); ran > 0; --ran) {
      done_.fetch_add(1, std::memory_order_seq_cst);
      if (caller_sleeping_.load(std::memory_order_seq_cst)) done_.notify_one();
    }
  }
}

void thread_pool::run(int64_t n, chunk_fn call, void* fn) {
  if (n <= 0) return;
  if (threads_ == 1 || n == 1) {
    call(fn, 0, n, 0);
    return;
  }
  const auto chunks = static_cast<int>(std::min<int64_t>(n, int64_t{threads_} * chunks_per_thread));
  const uint32_t gen = wake_.load(std::memory_order_relaxed) + 1;
  // Close the previous generation first. A worker may have read its line a moment ago (every
  // chunk claimed, c == its chunk count) and read chunks_ only now: had next_ still held that
  // line, this call's larger count would let its claim succeed on a chunk past the end, run
  // this call's work, and count it against the wrong generation (the caller then returned
  // with the chunk still running, or waited forever). With next_ closed its claim fails.
  next_.store(uint64_t{gen} << 32 | closed_index, std::memory_order_relaxed);
  call_ = call;
  fn_ = fn;
  n_ = n;
  chunks_.store(chunks, std::memory_order_release);  // after the close (claim_and_run acquires)
  done_.store(0, std::memory_order_relaxed);
  next_.store(uint64_t{gen} << 32, std::memory_order_release);
  wake_.store(gen, std::memory_order_seq_cst);
  if (sleeping_workers_.load(std::memory_order_seq_cst) > 0) wake_.notify_all();
  const int expected = chunks - claim_and_run(gen, 0);
  int done = done_.load(std::memory_order_acquire);
  for (int spin = 0; done != expected && spin < spin_iterations; ++spin) {
    cpu_relax();
    done = done_.load(std::memory_order_acquire);
  }
  if (done != expected) {
    caller_sleeping_.store(true, std::memory_order_seq_cst);
    while ((done = done_.load(std::memory_order_seq_cst)) != expected) done_.wait(done);
    caller_sleeping_.store(false, std::memory_order_relaxed);
  }
}

}  // namespace troupe::kernels::cpu
