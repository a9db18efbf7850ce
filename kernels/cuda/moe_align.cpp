// Host reference of moe_align_block_size, the status names of the CUDA backend.

#include "cuda/moe_align.hpp"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::kernels::cuda {

const char* to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::bad_size: return "bad_size";
    case status::null_pointer: return "null_pointer";
    case status::unsupported: return "unsupported";
    case status::launch_failed: return "launch_failed";
    case status::library_failed: return "library_failed";
  }
  return "unknown";
}

int64_t moe_align_capacity(int64_t tokens, int64_t top_k, int64_t experts, int64_t block) noexcept {
  if (tokens < 0 || top_k < 0 || experts < 0 || block < 1) return -1;
  const int64_t rows = tokens * top_k + experts * (block - 1);
  return (rows + block - 1) / block * block;
}

status moe_align_block_size(const int32_t* topk_ids, int64_t tokens, int64_t top_k,
                            int64_t experts, int64_t block, const int32_t* expert_map,
                            int32_t* sorted_token_ids, int32_t* expert_ids, int64_t capacity,
                            int32_t* num_tokens_post_padded) noexcept {
  if (tokens < 0 || top_k < 0 || experts < 0 || block < 1 || (tokens > 0 && top_k < 1))
    return status::bad_size;
  const int64_t need = moe_align_capacity(tokens, top_k, experts, block);
  if (capacity < need || capacity % block != 0 || tokens * top_k > INT32_MAX)
    return status::bad_size;
  if (num_tokens_post_padded == nullptr || (capacity > 0 && (sorted_token_ids == nullptr ||
                                                              expert_ids == nullptr)) ||
      (tokens > 0 && topk_ids == nullptr))
    return status::null_pointer;
  const int64_t pairs = tokens * top_k;
  for (int64_t p = 0; p < pairs; ++p)
    if (topk_ids[p] < 0 || topk_ids[p] >= experts) return status::bad_size;
  if (expert_map != nullptr)
    for (int64_t e = 0; e < experts; ++e)
      if (expert_map[e] < -1) return status::bad_size;

  try {
    std::vector<int64_t> count(static_cast<size_t>(experts), 0);
    for (int64_t p = 0; p < pairs; ++p) ++count[static_cast<size_t>(topk_ids[p])];
    std::vector<int64_t> start(static_cast<size_t>(experts), 0);
    int64_t rows = 0;
    int64_t blocks = 0;
    for (int64_t e = 0; e < experts; ++e) {
      const bool local = expert_map == nullptr || expert_map[e] >= 0;
      start[e] = rows;
      if (!local || count[e] == 0) continue;
      const int64_t padded = (count[e] + block - 1) / block * block;
      const int32_t local_id = expert_map == nullptr ? static_cast<int32_t>(e) : expert_map[e];
      for (int64_t b = 0; b < padded / block; ++b) expert_ids[blocks++] = local_id;
      rows += padded;
    }
    const auto sentinel = static_cast<int32_t>(pairs);
    for (int64_t i = 0; i < capacity; ++i) sorted_token_ids[i] = sentinel;
    for (int64_t b = blocks; b < capacity / block; ++b) expert_ids[b] = -1;
    for (int64_t p = 0; p < pairs; ++p) {
      const int32_t e = topk_ids[p];
      if (expert_map != nullptr && expert_map[e] < 0) continue;
      sorted_token_ids[start[static_cast<size_t>(e)]++] = static_cast<int32_t>(p);
    }
    *num_tokens_post_padded = static_cast<int32_t>(rows);
  } catch (...) {  // std::bad_alloc of the per-expert counts
    return status::bad_size;
  }
  return status::ok;
}

}  // namespace troupe::kernels::cuda
