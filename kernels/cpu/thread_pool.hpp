#pragma once
/// A fixed set of worker threads that split an index range between themselves and the calling
/// thread: the partitioning the forward-pass kernels use for mat-vec/mat-mat rows and attention
/// heads. One parallel_for runs at a time per pool; the caller takes part and blocks until every
/// chunk is done. Workers spin briefly, then sleep on an atomic wait, so an idle pool costs nothing.

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>
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
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void worker(int index);
  void run_chunk(int index);

  int threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace troupe::kernels::cpu
