#pragma once
/// Private to the forward-pass kernels: the per-ISA inner loops that transformer_ops.cpp
/// dispatches to, and the scalar definitions of ggml's arithmetic that every variant reproduces
/// bit for bit (llama.cpp's CPU backend as built for AVX-512 with FMA contraction: see
/// transformer_ops.hpp for which op follows which ggml routine).

#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu::detail {

/// One (token, head) of causal attention: scores against `n` cache rows, softmax, weighted sum.
struct attention_head_args {
  const float* q;        ///< [head_dim]
  const void* k;         ///< row j at k + j·stride elements: [n, head_dim], f32 (f16: kv_f16)
  const void* v;         ///< row j at v + j·stride elements: [n, head_dim], f32 (f16: kv_f16)
  int64_t stride;        ///< elements between cache rows (kv_heads·head_dim)
  int64_t n;             ///< visible positions
  int64_t head_dim;
  float scale;
  /// The batch is one token. llama.cpp (non-flash attention, fp32 cache, KV length padded to
  /// 256) computes q·k with ggml_vec_dot_f32 in every batch, and p·V with tinyBLAS (one 16-lane
  /// accumulator: position j in lane j % 16) for batches of several tokens but with
  /// ggml_vec_dot_f32 (four 16-lane accumulators: position j in accumulator (j % 64) / 16, lane
  /// j % 16) for one token, where llamafile_sgemm declines.
  bool single_token;
  float* scores;         ///< scratch [n rounded up to 16]
  float* acc;            ///< scratch [64, head_dim]
  float* out;            ///< [head_dim]
  int64_t first = 0;     ///< positions before it are masked (score -inf: sliding window)
  float softcap = 0;     ///< scores capped to softcap·tanh(score/softcap) first (0: off)
  /// The cache holds f16 (llama.cpp's type_k = type_v = f16, non-flash attention): ggml rounds
  /// q to f16 for the scores (see f16_scores) and the softmax to f16 before the product with V,
  /// whose sums keep the lanes of single_token above with V widened from f16.
  bool kv_f16 = false;
  float* q16 = nullptr;  ///< scratch [head_dim] where kv_f16
};

/// An f16 cache's scores: q rounded to f16 into a.q16, then s[j] = q16·k_j for j in [first, n)
/// summed as ggml_vec_dot_f16 (one token) or tinyBLAS (several tokens, head_dim % 16 == 0; the
/// rows, llama.cpp's padded KV length, are a multiple of 4) sums them (float_dot.hpp), through
/// `level`'s float_dot kernels; -inf before first.
void f16_scores(const attention_head_args& a, isa level) noexcept;

/// p[0..n) rounded to f16 and widened back: ggml converts the softmax to V's type, f16, for
/// the product with an f16 V.
void round_to_f16(float* p, int64_t n) noexcept;

struct transformer_table {
  /// gate[i] = silu(gate[i]) · up[i] (ggml_vec_swiglu_f32).
  void (*swiglu)(float* gate, const float* up, int64_t n) noexcept;
  /// Rotates `heads` vectors of head_dim in place; ca/cb: [rope_dim] interleaved coefficients
  /// (cos, sin) and (-sin, cos) of each pair.
  void (*rope)(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, const float* ca,
               const float* cb) noexcept;
  void (*attention_head)(const attention_head_args& a) noexcept;
  /// quantize_row_q8_1 as ggml's x86 (AVX) code computes it: d = amax/127, values times
  /// id = 127/amax (not 1/d) rounded to nearest-even, d and s = d·Σq kept at fp16 precision.
  /// y: n/32 block_q8_1; n % 32 == 0.
  void (*quantize_q8_1)(const float* x, void* y, int64_t n) noexcept;
  /// quantize_row_q8_0, the same way (the activations of Q8_0/Q4_0 weights).
  void (*quantize_q8_0)(const float* x, void* y, int64_t n) noexcept;
  /// gate[i] = gelu(gate[i]) · up[i] (ggml_vec_geglu_f32 with its fp16 table: see gelu_mul).
  void (*geglu)(float* gate, const float* up, int64_t n) noexcept;
  /// y[i] = x[i] rounded to f16 (nearest-even, ggml_cpu_fp32_to_fp16).
  void (*to_f16)(const float* x, uint16_t* y, int64_t n) noexcept;
};

/// ggml_table_gelu_f16 widened to fp32, indexed by the fp16 bits of x: GELU (tanh approximation,
/// as GCC compiles ggml_gelu_f32 for an FMA CPU) of every fp16 value, rounded to fp16. Built on
/// first use (256 KiB).
const float* gelu_table() noexcept;

/// ggml's soft-capping of the attention scores s[first..n) in place: ggml_scale by 1/cap,
/// ggml_tanh (libm tanhf), ggml_scale by cap. No-op for cap 0.
inline void softcap_scores(float* s, int64_t first, int64_t n, float cap) noexcept {
  if (cap == 0.0f) return;
  const float inv = 1.0f / cap;
  for (int64_t j = first; j < n; ++j) s[j] = std::tanh(s[j] * inv) * cap;
}

/// ggml_v_expf as built for AVX-512 (vec.h), one lane: a degree-5 polynomial on the reduced
/// argument, scaled by 2^n with _mm512_scalef_ps (one rounding, here ldexp). Not libm's expf:
/// the two differ in the last bit often enough to change a greedy continuation.
float expf_ggml(float x) noexcept;

/// ggml_compute_forward_soft_max_f32 on one row: x·scale, max, ggml_v_expf(x - max) summed per
/// 16 lanes (_mm512_reduce_add_ps) into a double, then times (float)(1/sum). In place.
void softmax_ggml(float* x, int64_t n, float scale) noexcept;

const transformer_table& scalar_transformer_kernels() noexcept;
/// Defined in transformer_ops_avx2.cpp; only call after the CPU check passed.
const transformer_table& avx2_transformer_kernels() noexcept;
/// Every variant compiled in and runnable on this CPU, scalar first (the tests compare them).
std::vector<const transformer_table*> transformer_kernel_variants();
/// The variant the kernels dispatch to on this CPU (best_isa(): TROUPE_KERNELS_ISA caps it).
const transformer_table& active_transformer_kernels() noexcept;

/// One activation row x[0..n) as mat_mul and mat_mul_id hand it to the kernels, in ggml's
/// rounding: for key f32, f16 or bf16 (float weights) ggml_float_activations of that type, for
/// q8_0 and q8_1 the quantisers of ggml's x86 code (active_transformer_kernels), for any other
/// activation type quantize_row.
status quantize_activation_row(quant_type key, const float* x, void* out, int64_t n) noexcept;

}  // namespace troupe::kernels::cpu::detail
