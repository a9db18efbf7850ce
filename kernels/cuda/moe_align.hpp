#pragma once
/// The token-to-expert alignment of vLLM's `moe_align_block_size`, on the host: the (token, slot)
/// pairs of a top-k routing are grouped by expert, and each expert's run is padded to a whole
/// number of `block` rows, so that the grouped GEMM can give every `block`-row tile a single
/// expert. This is the reference the GPU grouped GEMM (ops.hpp: launch_moe_w4a16_gemm) consumes;
/// its output arrays are exactly the kernel's inputs.
///
/// With expert parallelism an `expert_map` (global id → local id on this rank, −1 when the
/// expert lives elsewhere) is applied first: pairs routed to another rank get no rows and no
/// blocks at all (vLLM keeps their blocks and marks them −1; dropping them saves the GEMM the
/// empty tiles), and expert_ids holds local ids.

#include <cstdint>

#include "cuda/status.hpp"

namespace troupe::kernels::cuda {

/// Capacity that sorted_token_ids needs in the worst case: tokens·top_k + experts·(block − 1),
/// rounded up to a multiple of block (each of `experts` runs wastes at most block − 1 rows).
/// Returns −1 for negative sizes or block < 1.
int64_t moe_align_capacity(int64_t tokens, int64_t top_k, int64_t experts, int64_t block) noexcept;

/// topk_ids: [tokens, top_k] global expert ids in [0, experts). expert_map: [experts] or null
/// (identity). Writes, for the local experts in ascending order of their global id, the flat
/// indices t·top_k + j of the pairs routed to each (ascending within an expert), then padding
/// with the sentinel tokens·top_k up to a multiple of block:
///   sorted_token_ids: [capacity]; entries at and past *num_tokens_post_padded are set to the
///                     sentinel too;
///   expert_ids:       [capacity / block]; the local expert of each block, −1 past the last block;
///   *num_tokens_post_padded: the number of rows used (a multiple of block; 0 when no pair is local).
/// capacity must be a multiple of block and at least moe_align_capacity(...).
///
/// bad_size: negative sizes, block < 1, top_k < 1 with tokens > 0, a capacity that is too small or
/// not a multiple of block, an id outside [0, experts), an expert_map entry below −1;
/// null_pointer: a pointer the work needs is null.
status moe_align_block_size(const int32_t* topk_ids, int64_t tokens, int64_t top_k,
                            int64_t experts, int64_t block, const int32_t* expert_map,
                            int32_t* sorted_token_ids, int32_t* expert_ids, int64_t capacity,
                            int32_t* num_tokens_post_padded) noexcept;

}  // namespace troupe::kernels::cuda
