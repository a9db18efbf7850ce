#pragma once
/// Private to the forward-pass kernels: the per-ISA inner loops that transformer_ops.cpp
/// dispatches to, and the scalar definitions of ggml's arithmetic that every variant reproduces
/// bit for bit (llama.cpp's CPU backend as built for AVX-512 with FMA contraction: see
/// transformer_ops.hpp for which op follows which ggml routine).

#include <cstdint>

namespace troupe::kernels::cpu::detail {

/// One (token, head) of causal attention: scores against `n` cache rows, softmax, weighted sum.
struct attention_head_args {
  const float* q;        ///< [head_dim]
  const float* k;        ///< row j at k + j·stride: [n, head_dim]
  const float* v;        ///< row j at v + j·stride: [n, head_dim]
  int64_t stride;        ///< floats between cache rows (kv_heads·head_dim)
  int64_t n;             ///< visible positions
  int64_t head_dim;
  float scale;
  bool single_token;     ///< the batch is one token: ggml computes q·k with tinyBLAS then
  float* scores;         ///< scratch [n rounded up to 16]
  float* acc;            ///< scratch [16, head_dim]
  float* out;            ///< [head_dim]
};

struct transformer_table {
  /// gate[i] = silu(gate[i]) · up[i] (ggml_vec_swiglu_f32).
  void (*swiglu)(float* gate, const float* up, int64_t n) noexcept;
  /// Rotates `heads` vectors of head_dim in place; ca/cb: [rope_dim] interleaved coefficients
  /// (cos, sin) and (-sin, cos) of each pair.
  void (*rope)(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, const float* ca,
               const float* cb) noexcept;
  void (*attention_head)(const attention_head_args& a) noexcept;
};

/// ggml_compute_forward_soft_max_f32 on one row: x·scale, max, ggml_v_expf(x - max) summed per
/// 16 lanes (_mm512_reduce_add_ps) into a double, then times (float)(1/sum). In place.
void softmax_ggml(float* x, int64_t n, float scale) noexcept;

const transformer_table& scalar_transformer_kernels() noexcept;
/// Defined in transformer_ops_avx2.cpp; only call after the CPU check passed.
const transformer_table& avx2_transformer_kernels() noexcept;

}  // namespace troupe::kernels::cpu::detail
