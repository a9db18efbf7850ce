#pragma once
/// A fixed set of worker threads that split an index range between themselves and the calling
/// thread: the partitioning the forward-pass kernels use for mat-vec/mat-mat rows and attention
/// heads. One parallel_for runs at a time per pool; the caller takes part and blocks until every
/// chunk is done. Workers spin briefly, then sleep on a futex, so an idle pool costs nothing; a
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

  /// Calls fn(begin, end, thread_index) on disjoint contiguous chunks covering [0, n): thread i
  /// gets chunk i of `size()` nearly equal chunks (empty chunks are skipped). Returns when all
  /// chunks are done. fn must not throw.
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
  void run_chunk(int index);

  int threads_;
  std::vector<std::thread> workers_;
  // The caller's line: a new generation starts a parallel_for (32 bits: a futex word) on the
  // work written just before it.
  alignas(64) std::atomic<uint32_t> generation_{0};
  chunk_fn call_ = nullptr;
  void* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> stop_{false};
  // The workers' line: chunks still running, and whether the caller sleeps on it.
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> caller_sleeping_{false};
};

}  // namespace troupe::kernels::cpu
