#pragma once
/// A fixed set of worker threads that split an index range between themselves and the calling
/// thread: the partitioning the forward-pass kernels use for mat-vec/mat-mat rows and attention
/// heads. One parallel_for runs at a time per pool; the caller takes part and blocks until every
/// chunk is done. The range is cut into a few chunks per thread that the threads claim as they
/// come, so a worker that the operating system has not scheduled yet (the machine is shared)
/// delays nothing: the caller runs its chunks. Workers spin briefly, then sleep on a futex, and a
/// parallel_for wakes sleepers only when there are any (a decode step issues a few hundred).

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace troupe::kernels::cpu {

class thread_pool {
 public:
  /// `threads` is the total parallelism including the caller (>= 1); threads - 1 workers start.
  explicit thread_pool(int threads);
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool();

  int size() const noexcept { return threads_; }

  /// Calls fn(begin, end, thread_index) on disjoint contiguous chunks covering [0, n) (at most
  /// 4·size() nearly equal chunks, empty ones skipped), each on whichever thread claims it;
  /// thread_index (in [0, size()), 0 = the caller) names the thread, so per-thread scratch may
  /// be indexed by it. Returns when all chunks are done. fn must not throw.
  template <class Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    run(n, [](void* f, int64_t begin, int64_t end, int index) {
      (*static_cast<F*>(f))(begin, end, index);
    }, const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using chunk_fn = void (*)(void* fn, int64_t begin, int64_t end, int index);

  void run(int64_t n, chunk_fn call, void* fn);
  void worker(int index);
  /// Claims and runs chunks of generation `gen` until none is left; returns how many it ran.
  int claim_and_run(uint32_t gen, int index);

  int threads_;
  std::vector<std::thread> workers_;
  // The caller's line: generation << 32 | next unclaimed chunk (claims compare the generation,
  // so a late worker never claims a chunk of a later parallel_for), the work of the generation
  // (written before it is published, read only by a thread holding one of its chunks), and the
  // futex word that sleeping workers wait on.
  alignas(64) std::atomic<uint64_t> next_{0};
  std::atomic<int> chunks_{0};
  chunk_fn call_ = nullptr;
  void* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<uint32_t> wake_{0};
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> stop_{false};
  // The workers' line: chunks the workers have finished, and whether the caller sleeps on it.
  alignas(64) std::atomic<int> done_{0};
  std::atomic<bool> caller_sleeping_{false};
};

}  // namespace troupe::kernels::cpu
