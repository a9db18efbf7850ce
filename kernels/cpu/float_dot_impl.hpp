#pragma once
/// Private to float_dot: the per-ISA variants that float_dot.cpp dispatches to.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace troupe::kernels::cpu::detail {

/// One block of outputs: y[t·y_stride + r] for r < rows, t < tokens (see ggml_float_mat_mat).
using float_mat_mat_fn = void (*)(int64_t rows, int64_t n, const void* w, size_t row_stride,
                                  const void* a, size_t act_stride, int64_t tokens, float* y,
                                  int64_t y_stride);

/// [weight type: f32, f16, bf16][order: vec_dot, tinyblas]. Every entry of every variant gives
/// the scalar entry's results bit for bit (bf16 without VDPBF16PS: for products and sums that
/// stay normal floats; the scalar code and the instruction also flush subnormals).
struct float_dot_table {
  const char* name;
  float_mat_mat_fn fn[3][2];
  /// out[i] = x[i] rounded to f16 (nearest-even) and widened back (f16 weights' activations).
  void (*round_f16)(const float* x, float* out, int64_t n);
  /// out[i] = x[i] rounded to bf16 as ggml rounds it (nearest-even; NaN stays NaN).
  void (*to_bf16)(const float* x, uint16_t* out, int64_t n);
};

/// _mm512_reduce_add_ps of 16 lanes as GCC defines it: halves, quarters, then (0+2) + (1+3).
/// The scalar definition (float_dot.cpp, built without FP contraction), which the forward
/// pass's scalar kernels use too.
float reduce16(const float* v) noexcept;

const float_dot_table& scalar_float_dot() noexcept;
/// Defined in float_dot_avx2.cpp / float_dot_avx512.cpp; only call after the CPU check passed.
const float_dot_table& avx2_float_dot() noexcept;
const float_dot_table& avx512_float_dot() noexcept;
/// The AVX-512 table with the bf16 entries on VDPBF16PS; only where the CPU has AVX512-BF16.
const float_dot_table& avx512_bf16_float_dot() noexcept;
/// Every variant compiled in and runnable on this CPU, scalar first (the tests compare them).
std::vector<const float_dot_table*> float_dot_variants();

}  // namespace troupe::kernels::cpu::detail
