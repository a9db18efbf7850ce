#include "troupe/gpu/expert_placement.hpp"

#include <algorithm>
#include <string>

#include "troupe/error.hpp"

namespace troupe::gpu {

expert_placement::expert_placement(int64_t experts, int devices) : experts_(experts) {
  if (experts < 1 || devices < 1 || devices > experts)
    throw error(errc::invalid_argument,
                "gpu::expert_placement: " + std::to_string(experts) + " routed experts over " +
                    std::to_string(devices) + " devices; every device needs at least one expert "
                    "(use 1 to " + std::to_string(std::max<int64_t>(1, experts)) + " devices)");
  bounds_.resize(static_cast<size_t>(devices) + 1);
  for (int d = 0; d <= devices; ++d) bounds_[static_cast<size_t>(d)] = experts * d / devices;
}

int expert_placement::owner(int64_t expert) const {
  if (expert < 0 || expert >= experts_)
    throw error(errc::invalid_argument, "gpu::expert_placement: expert " + std::to_string(expert) +
                                            " outside [0, " + std::to_string(experts_) + ")");
  // The last bound <= expert.
  const auto it = std::upper_bound(bounds_.begin(), bounds_.end(), expert);
  return static_cast<int>(it - bounds_.begin()) - 1;
}

std::vector<int32_t> expert_placement::local_map(int device) const {
  std::vector<int32_t> map(static_cast<size_t>(experts_), -1);
  for (int64_t e = first(device); e < last(device); ++e)
    map[static_cast<size_t>(e)] = static_cast<int32_t>(e - first(device));
  return map;
}

}  // namespace troupe::gpu
