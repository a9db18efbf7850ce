#pragma once
/// CPU kernels for weights kept in the low-bit formats of released DeepSeek-V3/Kimi checkpoints:
/// compressed-tensors "pack-quantized" INT4 (symmetric, one scale per `group` columns) and FP8
/// E4M3 with fp32 inverse scales per block. The products dequantise the weights group by group in
/// registers and accumulate in fp32; the weights are never expanded in memory. Scalar reference
/// and AVX2+FMA variants, picked at run time like quant.hpp. Pointers in, a status out.

#include <cstdint>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu {

/// The element type of the INT4 scales (the checkpoint's dtype: bf16 for Kimi).
enum class scale_type : uint8_t { bf16, f16, f32 };

/// A [rows, cols] weight in compressed-tensors pack-quantized INT4, symmetric (stored unsigned with
/// offset 8): w[r,c] = (((packed[r, c/8] >> 4·(c%8)) & 0xF) − 8) · scale[r, c/group].
/// Nibbles past `cols` in a row's last word are ignored, whatever they hold.
struct int4_group_matrix {
  int64_t rows = 0, cols = 0, group = 32;  ///< group: a positive multiple of 8
  const uint32_t* packed = nullptr;        ///< [rows, packed_stride]
  int64_t packed_stride = 0;               ///< uint32 words per row (>= ceil(cols/8))
  const void* scales = nullptr;            ///< [rows, scale_stride] of scales_type
  scale_type scales_type = scale_type::bf16;
  int64_t scale_stride = 0;  ///< elements per row (>= ceil(cols/group))
};

/// A [rows, cols] FP8 E4M3 (e4m3fn) weight with fp32 inverse scales per block_rows × block_cols
/// block: w[r,c] = e4m3fn(data[r·stride + c]) · scale_inv[(r/block_rows)·scale_stride +
/// c/block_cols].
struct fp8_block_matrix {
  int64_t rows = 0, cols = 0, block_rows = 128, block_cols = 128;  ///< blocks: positive sizes
  const uint8_t* data = nullptr;                                   ///< [rows, stride]
  int64_t stride = 0;                                              ///< bytes per row (>= cols)
  const float* scale_inv = nullptr;  ///< [ceil(rows/block_rows), scale_stride]
  int64_t scale_stride = 0;          ///< floats per scale row (>= ceil(cols/block_cols))
};

/// Exact value of an e4m3fn byte: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits, subnormals,
/// no infinities; 0x7F and 0xFF are NaN. Largest finite value ±448.
float fp8_e4m3_to_fp32(uint8_t v) noexcept;

/// y[t·ldy + r] = Σ_c w[r,c]·x[t·ldx + c] for r in [row_begin, row_end), t in [0, tokens).
/// x: [tokens, ldx] fp32 (ldx >= cols when tokens > 1); y: [tokens, ldy] fp32 (ldy >= row_end
/// when tokens > 1); only the rows in range are written. Sums are fp32 (scalar: per group Σ q·x,
/// times the group's scale; the SIMD kernels round in another order); tested within
/// 2e-6·Σ|w·x| up to 8192 columns. Safe to call from several threads on disjoint row ranges.
///
/// The weight rows are read from memory once for all tokens, up to 227: the AVX2 INT4 kernel
/// reorders the activations into 64 KiB of stack, which holds that many. isa::avx512 runs the
/// AVX2 kernels.
///
/// bad_size: negative sizes, group not a positive multiple of 8, strides too small, a row range
/// outside [0, rows]; null_pointer: a pointer the work needs is null; unsupported_type: an
/// unknown scales_type; unsupported_isa: `level` is not available here.
status int4_group_gemm(const int4_group_matrix& w, int64_t row_begin, int64_t row_end,
                       const float* x, int64_t ldx, int64_t tokens, float* y, int64_t ldy,
                       isa level = isa::best) noexcept;

/// The same product for an FP8 block-scaled weight (same contract and errors).
status fp8_block_gemm(const fp8_block_matrix& w, int64_t row_begin, int64_t row_end, const float* x,
                      int64_t ldx, int64_t tokens, float* y, int64_t ldy,
                      isa level = isa::best) noexcept;

/// Row r of w as fp32 (cols values into out): for load-time conversions and references.
status int4_group_dequantize_row(const int4_group_matrix& w, int64_t r, float* out) noexcept;
status fp8_block_dequantize_row(const fp8_block_matrix& w, int64_t r, float* out) noexcept;

/// Packs fp32 rows w: [rows, cols] into the compressed-tensors layout as compressed-tensors
/// quantises a bf16 checkpoint: w is rounded to bf16, scale = bf16(absmax/7.5) per group (bf16's
/// eps 2^-7 where absmax is 0), q = clamp(round_half_even(bf16(w/scale)), -8, 7), stored as q+8.
/// packed: [rows, ceil(cols/8)] (unused nibbles of a row's last word are 0, as pack_to_int32
/// pads); scales_bf16: [rows, ceil(cols/group)]. Non-finite weights give unspecified codes.
status int4_group_quantize(const float* w, int64_t rows, int64_t cols, int64_t group,
                           uint32_t* packed, uint16_t* scales_bf16) noexcept;

}  // namespace troupe::kernels::cpu
