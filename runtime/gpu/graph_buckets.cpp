#include "troupe/gpu/graph_buckets.hpp"

#include <algorithm>
#include <string>

#include "troupe/error.hpp"

namespace troupe::gpu {

graph_buckets::graph_buckets(std::vector<int64_t> sizes) : sizes_(std::move(sizes)) {
  if (sizes_.empty())
    throw error(errc::invalid_argument, "gpu::graph_buckets: no batch size to capture");
  std::sort(sizes_.begin(), sizes_.end());
  sizes_.erase(std::unique(sizes_.begin(), sizes_.end()), sizes_.end());
  if (sizes_.front() < 1)
    throw error(errc::invalid_argument, "gpu::graph_buckets: batch size " +
                                            std::to_string(sizes_.front()) + " is below 1");
}

graph_buckets graph_buckets::powers_of_two(int64_t largest) {
  if (largest < 1)
    throw error(errc::invalid_argument, "gpu::graph_buckets::powers_of_two: largest batch " +
                                            std::to_string(largest) + " is below 1");
  std::vector<int64_t> s;
  for (int64_t b = 1; b < largest; b *= 2) s.push_back(b);
  s.push_back(largest);
  return graph_buckets(std::move(s));
}

size_t graph_buckets::index_for(int64_t batch) const {
  if (batch < 1)
    throw error(errc::invalid_argument, "gpu::graph_buckets: a step of " + std::to_string(batch) +
                                            " sequences");
  const auto it = std::lower_bound(sizes_.begin(), sizes_.end(), batch);
  if (it == sizes_.end())
    throw error(errc::budget_exceeded,
                "gpu::graph_buckets: a step of " + std::to_string(batch) +
                    " sequences exceeds the largest captured batch of " + std::to_string(largest()) +
                    "; split the step or capture a larger size");
  return static_cast<size_t>(it - sizes_.begin());
}

padded_step pad_step(const graph_buckets& buckets, std::span<const int32_t> tokens,
                     std::span<const int32_t> positions) {
  const auto b = static_cast<int64_t>(tokens.size());
  if (positions.size() != tokens.size())
    throw error(errc::invalid_argument, "gpu::pad_step: " + std::to_string(tokens.size()) +
                                            " tokens but " + std::to_string(positions.size()) +
                                            " positions");
  padded_step s;
  s.bucket = buckets.bucket_for(b);
  const auto n = static_cast<size_t>(s.bucket);
  s.tokens.assign(n, 0);
  s.positions.assign(n, 0);
  s.seq_lens.assign(n, 0);
  s.live.assign(n, 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (positions[i] < 0)
      throw error(errc::invalid_argument, "gpu::pad_step: row " + std::to_string(i) +
                                              " has position " + std::to_string(positions[i]));
    s.tokens[i] = tokens[i];
    s.positions[i] = positions[i];
    s.seq_lens[i] = positions[i] + 1;
    s.live[i] = 1;
  }
  return s;
}

}  // namespace troupe::gpu
