#pragma once
/// The batch sizes at which decode steps are captured as CUDA graphs. A graph replays fixed
/// shapes, so a step of b sequences runs in the smallest captured size B >= b; rows b..B-1 are
/// padding: token 0, position 0 and sequence length 0, so attention gives them zeros
/// (launch_mla_decode's contract for length 0), no cache page is written for them (their
/// block-table row points at the reserved scratch page), and their logits and sampled tokens are
/// ignored (`live` is 0). Host-only.

#include <cstdint>
#include <span>
#include <vector>

namespace troupe::gpu {

class graph_buckets {
 public:
  /// The captured sizes (any order, duplicates removed). Throws troupe::error(invalid_argument)
  /// when empty or a size is < 1.
  explicit graph_buckets(std::vector<int64_t> sizes);
  /// 1, 2, 4, ... up to and including `largest` (which need not be a power of two); largest >= 1.
  static graph_buckets powers_of_two(int64_t largest);

  const std::vector<int64_t>& sizes() const noexcept { return sizes_; }
  int64_t largest() const noexcept { return sizes_.back(); }
  /// Index in sizes() of the smallest size >= batch. Throws troupe::error: invalid_argument for
  /// batch < 1, budget_exceeded for batch > largest() (naming both: the scheduler must split).
  size_t index_for(int64_t batch) const;
  int64_t bucket_for(int64_t batch) const { return sizes_[index_for(batch)]; }

 private:
  std::vector<int64_t> sizes_;  // ascending
};

/// One decode step's per-row inputs, padded to its bucket.
struct padded_step {
  int64_t bucket = 0;
  std::vector<int32_t> tokens;     ///< [bucket] real tokens, then 0
  std::vector<int32_t> positions;  ///< [bucket] real positions, then 0
  std::vector<int32_t> seq_lens;   ///< [bucket] position + 1 for real rows (the new token is
                                   ///< attended to), 0 for padding
  std::vector<uint8_t> live;       ///< [bucket] 1 for real rows, 0 for padding
};

/// Pads b = tokens.size() rows (one new token per sequence) to buckets.bucket_for(b). Throws as
/// index_for, and troupe::error(invalid_argument) when positions.size() != b or a position < 0.
padded_step pad_step(const graph_buckets& buckets, std::span<const int32_t> tokens,
                     std::span<const int32_t> positions);

}  // namespace troupe::gpu
