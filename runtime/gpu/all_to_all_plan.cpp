#include "troupe/gpu/all_to_all_plan.hpp"

#include <cstring>
#include <string>

#include "cuda/moe_align.hpp"
#include "troupe/error.hpp"

namespace troupe::gpu {

dispatch_plan plan_dispatch(const expert_placement& placement, int rank,
                            std::span<const int32_t> topk_ids, int64_t tokens, int64_t top_k) {
  const int ranks = placement.devices();
  const int64_t E = placement.experts();
  if (rank < 0 || rank >= ranks)
    throw error(errc::invalid_argument, "gpu::plan_dispatch: rank " + std::to_string(rank) +
                                            " outside [0, " + std::to_string(ranks) + ")");
  if (tokens < 0 || top_k < 1 || static_cast<int64_t>(topk_ids.size()) != tokens * top_k)
    throw error(errc::invalid_argument,
                "gpu::plan_dispatch: " + std::to_string(topk_ids.size()) + " routed ids for " +
                    std::to_string(tokens) + " tokens × top_k " + std::to_string(top_k));
  const int64_t pairs = tokens * top_k;
  // Counting sort of the pairs by global expert; peers own contiguous expert ranges, so the
  // expert order is also peer order, and within an expert the pairs stay ascending.
  std::vector<int64_t> expert_start(static_cast<size_t>(E) + 1, 0);
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t e = topk_ids[static_cast<size_t>(p)];
    if (e < 0 || e >= E)
      throw error(errc::invalid_argument,
                  "gpu::plan_dispatch: token " + std::to_string(p / top_k) + " slot " +
                      std::to_string(p % top_k) + " is routed to expert " + std::to_string(e) +
                      ", outside [0, " + std::to_string(E) + ")");
    ++expert_start[static_cast<size_t>(e) + 1];
  }
  for (int64_t e = 0; e < E; ++e) expert_start[e + 1] += expert_start[e];

  dispatch_plan plan;
  plan.rank = rank;
  plan.tokens = tokens;
  plan.top_k = top_k;
  plan.send_pairs.resize(static_cast<size_t>(pairs));
  plan.send_experts.resize(static_cast<size_t>(pairs));
  std::vector<int64_t> next(expert_start.begin(), expert_start.end() - 1);
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t e = topk_ids[static_cast<size_t>(p)];
    const auto row = static_cast<size_t>(next[static_cast<size_t>(e)]++);
    plan.send_pairs[row] = static_cast<int32_t>(p);
    plan.send_experts[row] = e;
  }
  plan.send_offsets.resize(static_cast<size_t>(ranks) + 1);
  plan.send_counts.resize(static_cast<size_t>(ranks));
  for (int d = 0; d <= ranks; ++d)
    plan.send_offsets[static_cast<size_t>(d)] =
        expert_start[static_cast<size_t>(d == ranks ? E : placement.first(d))];
  for (int d = 0; d < ranks; ++d)
    plan.send_counts[static_cast<size_t>(d)] =
        plan.send_offsets[static_cast<size_t>(d) + 1] - plan.send_offsets[static_cast<size_t>(d)];
  return plan;
}

receive_layout plan_receive(std::span<const int64_t> counts_from) {
  receive_layout r;
  r.counts.assign(counts_from.begin(), counts_from.end());
  r.offsets.assign(counts_from.size() + 1, 0);
  for (size_t s = 0; s < counts_from.size(); ++s) {
    if (counts_from[s] < 0)
      throw error(errc::invalid_argument, "gpu::plan_receive: source " + std::to_string(s) +
                                              " announces " + std::to_string(counts_from[s]) + " rows");
    r.offsets[s + 1] = r.offsets[s] + counts_from[s];
  }
  return r;
}

expert_blocks align_received(const expert_placement& placement, int rank,
                             std::span<const int32_t> recv_experts, int64_t block) {
  namespace kc = troupe::kernels::cuda;
  if (rank < 0 || rank >= placement.devices() || block < 1)
    throw error(errc::invalid_argument, "gpu::align_received: rank " + std::to_string(rank) +
                                            ", block " + std::to_string(block));
  const auto map = placement.local_map(rank);
  const auto rows = static_cast<int64_t>(recv_experts.size());
  for (int64_t i = 0; i < rows; ++i) {
    const int32_t e = recv_experts[static_cast<size_t>(i)];
    if (e < 0 || e >= placement.experts() || map[static_cast<size_t>(e)] < 0)
      throw error(errc::invalid_argument,
                  "gpu::align_received: received row " + std::to_string(i) + " is for expert " +
                      std::to_string(e) + ", which rank " + std::to_string(rank) +
                      " does not hold (it holds [" + std::to_string(placement.first(rank)) + ", " +
                      std::to_string(placement.last(rank)) + "))");
  }
  expert_blocks b;
  b.block = block;
  // moe_align_block_size asks for room for every expert's padding, local or not.
  b.capacity = kc::moe_align_capacity(rows, 1, placement.experts(), block);
  b.sorted_rows.resize(static_cast<size_t>(b.capacity));
  b.expert_ids.resize(static_cast<size_t>(b.capacity / block));
  int32_t used = 0;
  const auto st = kc::moe_align_block_size(recv_experts.data(), rows, 1, placement.experts(), block,
                                           map.data(), b.sorted_rows.data(), b.expert_ids.data(),
                                           b.capacity, &used);
  if (st != kc::status::ok)
    throw error(errc::internal, std::string("gpu::align_received: moe_align_block_size: ") +
                                    kc::to_string(st));
  b.rows_post_padded = used;
  return b;
}

void pad_to_bucket(expert_blocks& b, int64_t rows, int64_t bucket, int64_t experts) {
  if (bucket < rows || rows < 0)
    throw error(errc::invalid_argument, "gpu::pad_to_bucket: " + std::to_string(rows) +
                                            " rows in a bucket of " + std::to_string(bucket));
  const int64_t cap = kernels::cuda::moe_align_capacity(bucket, 1, experts, b.block);
  for (auto& r : b.sorted_rows)
    if (r >= rows) r = static_cast<int32_t>(bucket);
  b.sorted_rows.resize(static_cast<size_t>(cap), static_cast<int32_t>(bucket));
  b.expert_ids.resize(static_cast<size_t>(cap / b.block), -1);
  b.capacity = cap;
}

void pack_dispatch(const dispatch_plan& plan, const void* x, size_t row_bytes, void* send) {
  const auto* src = static_cast<const std::byte*>(x);
  auto* dst = static_cast<std::byte*>(send);
  for (size_t i = 0; i < plan.send_pairs.size(); ++i)
    std::memcpy(dst + i * row_bytes,
                src + static_cast<size_t>(plan.send_pairs[i] / plan.top_k) * row_bytes, row_bytes);
}

void unpack_combine(const dispatch_plan& plan, const void* returned, size_t row_bytes, void* out) {
  const auto* src = static_cast<const std::byte*>(returned);
  auto* dst = static_cast<std::byte*>(out);
  for (size_t i = 0; i < plan.send_pairs.size(); ++i)
    std::memcpy(dst + static_cast<size_t>(plan.send_pairs[i]) * row_bytes, src + i * row_bytes,
                row_bytes);
}

}  // namespace troupe::gpu
