#pragma once
/// Which device holds which routed experts under expert parallelism: device d of N owns the
/// contiguous range [E·d/N, E·(d+1)/N) of every MoE layer's experts (the split that
/// deepseek::expert_shard_group uses for CPU shards), so each expert's weights live on, and are read
/// by, exactly one device. Host-only: no CUDA, used by the planners and the device actors alike.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::gpu {

class expert_placement {
 public:
  /// Throws troupe::error(invalid_argument) when experts < 1, devices < 1 or devices > experts
  /// (a device without experts would hold replicated weights for nothing).
  expert_placement(int64_t experts, int devices);

  int64_t experts() const noexcept { return experts_; }
  int devices() const noexcept { return static_cast<int>(bounds_.size()) - 1; }
  /// Experts [first(d), last(d)) live on device d. d must be in [0, devices()).
  int64_t first(int device) const noexcept { return bounds_[static_cast<size_t>(device)]; }
  int64_t last(int device) const noexcept { return bounds_[static_cast<size_t>(device) + 1]; }
  /// The device that holds `expert`; throws troupe::error(invalid_argument) outside [0, experts).
  int owner(int64_t expert) const;
  /// The expert_map of moe_align_block_size for device d: [experts] global id → local id
  /// (global − first(d)) on d, −1 for experts held elsewhere.
  std::vector<int32_t> local_map(int device) const;

 private:
  int64_t experts_;
  std::vector<int64_t> bounds_;  // [devices + 1]
};

}  // namespace troupe::gpu
