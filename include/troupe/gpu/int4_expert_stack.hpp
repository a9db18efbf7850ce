#pragma once
/// The routed experts of one MoE layer as the GPU grouped GEMM reads them (ops.hpp:
/// launch_moe_w4a16_gemm): compressed-tensors INT4 experts (group 32, bf16 scales) concatenated
/// row-wise per expert (gate rows then up rows for the fused w13, or down alone) and repacked
/// into the tile layout of kernels/cuda/int4_repack.hpp. Host-only; the caller uploads the two
/// arrays. (The GPU expert actors hold an equivalent private copy of this loop.)

#include <cstdint>
#include <span>
#include <vector>

#include "troupe/deepseek/model.hpp"

namespace troupe::gpu {

/// Throws troupe::error(unsupported), naming the tensor, unless w is INT4 group 32 with bf16
/// scales.
void require_int4_group32(const deepseek::linear_weight& w);

/// Expert e's [n, k] matrix is first[e]'s rows followed by second[e]'s rows (second empty: first
/// alone); n must equal their rows' sum and k their cols. tiles: [E, k/32, n, 4] words, scales:
/// [E, k/32, n] bf16 (resized here). Throws troupe::error: unsupported (require_int4_group32),
/// invalid_argument (shapes that disagree, naming the tensor; second's size not first's or 0).
void repack_int4_experts(std::span<const deepseek::linear_weight* const> first,
                         std::span<const deepseek::linear_weight* const> second, int64_t n,
                         int64_t k, std::vector<uint32_t>& tiles, std::vector<uint16_t>& scales);

}  // namespace troupe::gpu
