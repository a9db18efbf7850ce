#pragma once
/// Matrix products of f32, f16 and bf16 weights summed exactly as llama.cpp's CPU backend sums
/// them, so that a model with float weight matrices gives llama.cpp's logits bit for bit.
///
/// ggml has two orders for these weights, and which one a mul_mat takes depends on the batch:
/// - `vec_dot`: ggml_vec_dot_{f32,f16,bf16}, one (row, token) at a time. f32/f16: four 16-lane
///   FMA accumulators, element i of each 64 in accumulator (i % 64) / 16, lane i % 16, folded
///   (0+2) + (1+3) and reduced as _mm512_reduce_add_ps; the n % 64 tail then added one product
///   at a time (f16: in double; f32: in float, as GCC 12 -O3 -march=native vectorised ggml's
///   tail loop for Zen 4: products rounded and added in order, except the last (n % 64) % 8,
///   which are fused; checked against that build's ggml_vec_dot_f32 on 3,000 random lengths.
///   This part is the compiler's choice: an Intel AVX-512 build of the same source summed some
///   tails otherwise). bf16: two VDPBF16PS accumulators over the two 32-element halves of each
///   64, each reduced, summed in double with the tail.
/// - `tinyblas`: llamafile_sgemm's tinyBLAS, which llama.cpp uses for two or more tokens when
///   the row count is a multiple of 4 and n of the vector width: one accumulator per output,
///   element i in lane i % 16 (f32/f16: FMA; bf16: VDPBF16PS, element pair (2l, 2l+1) of each
///   32 in lane l), reduced as _mm512_reduce_add_ps.
/// VDPBF16PS adds the odd product, then the even one, each product exact and each sum rounded
/// to nearest-even, subnormal inputs and results flushed to zero (checked against the
/// instruction on AMD Zen 4, every random case including overflows and subnormals).
///
/// The reference is llama.cpp built for AVX-512 with AVX512-BF16 (Zen 4, Sapphire Rapids):
/// every variant here computes that arithmetic, whatever the CPU it runs on, as the rest of
/// troupe's llama path does (transformer_ops.hpp). ggml rounds the f32 activations to the
/// weight's type (f16 or bf16, nearest-even) before these dots; ggml_float_activations does too.

#include <cstddef>
#include <cstdint>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu {

enum class ggml_float_order : uint8_t { vec_dot = 0, tinyblas = 1 };

/// The order llama.cpp's mul_mat takes for `rows` weight rows of n elements of `weight` (f32,
/// f16 or bf16) times `tokens` activation rows: tinyblas for tokens >= 2, rows % 4 == 0 and
/// n % 16 == 0 (bf16: n % 32 == 0), else vec_dot.
ggml_float_order ggml_float_order_for(quant_type weight, int64_t rows, int64_t n,
                                      int64_t tokens) noexcept;

/// The activations of a float weight type: x[0..n) rounded as ggml rounds them (nearest-even)
/// and stored as the kernels read them: for f16 weights the f16 values as floats (widening is
/// exact, and the kernels then convert only the weights), for bf16 weights bf16 bits (the
/// operand VDPBF16PS takes), for f32 weights x itself.
status ggml_float_activations(quant_type weight, const float* x, void* out, int64_t n,
                              isa level = isa::best) noexcept;
/// Bytes per activation element for `weight`: 4 (f32, f16), 2 (bf16), 0 for other types.
int64_t ggml_float_activation_bytes(quant_type weight) noexcept;

/// y[t·y_stride + r] = Σ_i w[r, i] · a[t, i] for r < rows, t < tokens, summed in `order`.
/// w: rows of `weight` (f32, f16 or bf16), `row_stride` bytes apart; a: activation rows from
/// ggml_float_activations, `act_stride` bytes apart; y_stride >= rows when tokens > 1.
status ggml_float_mat_mat(quant_type weight, ggml_float_order order, int64_t rows, int64_t n,
                          const void* w, size_t row_stride, const void* a, size_t act_stride,
                          int64_t tokens, float* y, int64_t y_stride,
                          isa level = isa::best) noexcept;

}  // namespace troupe::kernels::cpu
