#pragma once
/// The load-time repack of compressed-tensors pack-quantized INT4 experts (symmetric, group 32,
/// bf16 scales: kernels/cpu/low_bit.hpp, int4_group_matrix) into the layout the GPU grouped GEMM
/// (ops.hpp: launch_moe_w4a16_gemm) reads, and its exact inverse.
///
/// Checkpoint layout of one expert's [N, K] weight (N output rows, K input columns):
///   packed [N, K/8] uint32: column c of row n in bits 4·(c%8).. of word c/8, stored as q+8;
///   scales [N, K/32] bf16.
/// Repacked layout ("K-group-major 16-byte tiles"), for expert e, K group g = k/32, row n:
///   tiles [E, K/32, N, 4] uint32: the 4 words (32 nibbles, 16 bytes) of group g of row n,
///          word order and nibble order unchanged, so the values stay uint4b8 (q+8);
///   scales [E, K/32, N] bf16.
/// For a fixed (e, g) the N rows' tiles are contiguous: the threads of a warp that own 32
/// consecutive output columns each load one 128-bit vector and together read 512 contiguous bytes;
/// their 32 scales are 64 contiguous bytes. One 16-byte tile is one whole quantisation group, so a
/// thread dequantises with a single scale. The repack is a permutation: lossless, same size.
///
/// Requirements: K a positive multiple of 32 (every Kimi/DeepSeek expert projection: 7168, 2048),
/// group 32; N >= 1.

#include <cstddef>
#include <cstdint>

#include "cuda/status.hpp"

namespace troupe::kernels::cuda {

inline constexpr int64_t int4_tile_group = 32;  ///< values per 16-byte tile = per scale

/// Sizes of one expert's repacked arrays, in uint32 words and bf16 scales.
inline constexpr int64_t int4_tile_words(int64_t n, int64_t k) noexcept { return n * (k / 8); }
inline constexpr int64_t int4_tile_scales(int64_t n, int64_t k) noexcept { return n * (k / 32); }

/// Repacks expert `expert` of a stack: packed [N, packed_stride] (packed_stride >= K/8 words),
/// scales [N, scale_stride] bf16 bits (scale_stride >= K/32) into
/// tiles + expert·int4_tile_words(N, K) and tile_scales + expert·int4_tile_scales(N, K).
/// bad_size: N < 1, K not a positive multiple of 32, strides too small, expert < 0;
/// null_pointer: a null pointer.
status int4_repack_expert(const uint32_t* packed, int64_t packed_stride, const uint16_t* scales,
                          int64_t scale_stride, int64_t n, int64_t k, int64_t expert,
                          uint32_t* tiles, uint16_t* tile_scales) noexcept;

/// The inverse: expert `expert` of the repacked stack back to packed [N, K/8] and scales
/// [N, K/32] (dense strides). Same errors.
status int4_unpack_expert(const uint32_t* tiles, const uint16_t* tile_scales, int64_t n, int64_t k,
                          int64_t expert, uint32_t* packed, uint16_t* scales) noexcept;

}  // namespace troupe::kernels::cuda
