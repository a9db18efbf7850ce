#pragma once
/// The token exchange of one MoE layer under expert parallelism (the ncclSend/ncclRecv all-to-all
/// of DESIGN.md), planned on the host from the layer's top-k routing. Each rank r holds its own
/// tokens x_r [tokens_r, hidden] and ids_r [tokens_r, top_k].
///
///   dispatch: rank r sends to peer p one row per (token, slot) pair routed to an expert p holds:
///             row i of its send buffer is x_r[send_pairs[i] / top_k], with the global expert
///             send_experts[i]; rows are grouped by peer (send_offsets), and within one peer
///             ordered by (expert, pair), so a receiver's rows per expert come out in the order
///             of deepseek::expert_batch::group over the ranks' tokens concatenated in rank order.
///   compute:  peer p concatenates what it received in source-rank order (receive_layout), aligns
///             the rows to the grouped GEMM's blocks (align_received: moe_align_block_size with
///             top_k 1 and p's expert_map), runs its experts and writes one output row per
///             received row, in received order.
///   combine:  the reverse exchange (same counts, directions swapped) returns the output rows;
///             rank r puts returned row i at pair send_pairs[i] (unpack_combine), which restores
///             token order: out_r [tokens_r · top_k, hidden], unweighted, as expert_batch::out.
///
/// One row per pair, not per (token, peer) as DeepEP sends: a token routed to two experts of the
/// same peer travels twice. Simpler, and the received rows are the grouped GEMM's rows directly.
/// The receive counts are the senders' send_counts[p]: exchanged first (ranks·ranks int64s, one
/// small all-to-all or all-gather) so that receivers can size their buffers.

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "troupe/gpu/expert_placement.hpp"

namespace troupe::gpu {

/// What one rank sends in one layer's dispatch (and receives back in its combine).
struct dispatch_plan {
  int rank = 0;
  int64_t tokens = 0, top_k = 0;
  std::vector<int64_t> send_counts;   ///< [ranks] rows to each peer (the rank itself included)
  std::vector<int64_t> send_offsets;  ///< [ranks + 1] first row of each peer's block
  std::vector<int32_t> send_pairs;    ///< [tokens·top_k] pair t·top_k + slot of each row
  std::vector<int32_t> send_experts;  ///< [tokens·top_k] global expert of each row

  int ranks() const noexcept { return static_cast<int>(send_counts.size()); }
  int64_t rows() const noexcept { return static_cast<int64_t>(send_pairs.size()); }
};

/// Plans rank `rank`'s dispatch. topk_ids: [tokens, top_k] global expert ids. Throws
/// troupe::error(invalid_argument): rank outside the placement's devices, tokens < 0, top_k < 1,
/// ids.size() != tokens·top_k, an id outside [0, experts) (naming token, slot and id).
dispatch_plan plan_dispatch(const expert_placement& placement, int rank,
                            std::span<const int32_t> topk_ids, int64_t tokens, int64_t top_k);

/// What one rank receives: counts_from[src] rows from each source (= plan of src .send_counts[me]),
/// concatenated in source order.
struct receive_layout {
  std::vector<int64_t> counts;   ///< [ranks]
  std::vector<int64_t> offsets;  ///< [ranks + 1]
  int64_t rows() const noexcept { return offsets.empty() ? 0 : offsets.back(); }
};
/// Throws troupe::error(invalid_argument) for a negative count.
receive_layout plan_receive(std::span<const int64_t> counts_from);

/// The received rows of one rank grouped into `block`-row tiles of one local expert each: the
/// arrays launch_moe_w4a16_gemm reads (moe_align.hpp), with pairs = rows, top_k = 1, a_div = 1.
struct expert_blocks {
  int64_t block = 0, capacity = 0, rows_post_padded = 0;
  std::vector<int32_t> sorted_rows;  ///< [capacity] received row index, or `rows` for padding
  std::vector<int32_t> expert_ids;   ///< [capacity / block] local expert of each block, −1 unused
};
/// recv_experts: [rows] global expert of each received row (the senders' send_experts blocks).
/// Throws troupe::error(invalid_argument) when a row's expert is not held by `rank` or block < 1.
expert_blocks align_received(const expert_placement& placement, int rank,
                             std::span<const int32_t> recv_experts, int64_t block);

/// Pads `blocks` (align_received over `rows` rows) to a captured graph size of `bucket` >= rows
/// rows: every padding id (>= rows) becomes `bucket`, sorted_rows grows to
/// moe_align_capacity(bucket, 1, experts, block) entries of `bucket`, expert_ids to capacity /
/// block entries of −1, and capacity follows. The grouped GEMMs then run with pairs = bucket and
/// that capacity, the shapes a graph captured at `bucket` replays, and touch exactly the real rows.
/// Throws troupe::error(invalid_argument) when bucket < rows.
void pad_to_bucket(expert_blocks& blocks, int64_t rows, int64_t bucket, int64_t experts);

/// Host execution of the two permutations, row_bytes per row (what the device does with a gather
/// and a scatter kernel). pack_dispatch: send[i] = x[plan.send_pairs[i] / plan.top_k].
void pack_dispatch(const dispatch_plan& plan, const void* x, size_t row_bytes, void* send);
/// unpack_combine: out[plan.send_pairs[i]] = returned[i], for every row i of the plan.
void unpack_combine(const dispatch_plan& plan, const void* returned, size_t row_bytes, void* out);

}  // namespace troupe::gpu
