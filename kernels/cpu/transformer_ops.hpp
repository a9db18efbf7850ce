#pragma once
/// CPU kernels of a llama-style decoder forward pass: RMSNorm, rotary embedding (adjacent-pair
/// "NORM" rope, as llama.cpp applies to GGUF llama tensors), SwiGLU, causal grouped-query
/// attention over an fp32 KV cache, and quantised mat-mul split over rows on a thread_pool.
/// Each op follows the order of operations of llama.cpp's CPU backend where that affects
/// rounding, and has a plain reference in tests/llama. Pointers and sizes in, a status out.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"

namespace troupe::kernels::cpu {

/// y[i] = (x[i] / sqrt(mean(x²) + eps)) · w[i] over n elements; the square sum is accumulated in
/// double (ggml_compute_forward_rms_norm). y may alias x.
status rms_norm(const float* x, const float* w, float* y, int64_t n, float eps) noexcept;

/// Rotary embedding as ggml_rope_ext computes it for llama models (mode NORM), with every
/// scaling llama.cpp applies to them: none, linear (freq_scale = 1/factor), YaRN (ext_factor,
/// corr_low/high, attn_factor) and per-pair frequency factors (Llama 3.1+ `rope_freqs.weight`).
struct rope_params {
  int64_t dims = 0;          ///< rotated dimensions (llama.rope.dimension_count), even, ≤ 1024
  float freq_base = 10000;   ///< llama.rope.freq_base
  float freq_scale = 1;      ///< 1/factor for linear and YaRN scaling, else 1
  float ext_factor = 0;      ///< YaRN extrapolation mix; 0 turns YaRN off
  float attn_factor = 1;     ///< multiplies every cos and sin
  float corr_low = 0;        ///< YaRN correction range in pair indices (rope_yarn_corr_dims)
  float corr_high = 0;
  const float* freq_factors = nullptr;  ///< [dims/2]: pair i's angle is divided by it; or null
};

/// ggml_rope_yarn_corr_dims: the pair range [low, high] over which YaRN blends interpolation
/// into extrapolation, for a model trained on `n_ctx_orig` positions.
void rope_yarn_corr_dims(int64_t dims, int64_t n_ctx_orig, float freq_base, float beta_fast,
                         float beta_slow, float* low, float* high) noexcept;

/// The rotation of position `pos`: coef[0, dims) = (cos, sin) per pair, coef[dims, 2·dims) =
/// (-sin, cos), built in float in llama.cpp's order (theta *= base^(-2/dims) per pair, then the
/// factors, the scaling and attn_factor), so results match ggml bit for bit.
status rope_coefficients(const rope_params& p, int64_t pos, float* coef) noexcept;

/// Rotates adjacent pairs (x[2i], x[2i+1]), 2i < dims, of each of `heads` vectors of `head_dim`
/// in place by the coefficients of rope_coefficients; the rest pass through. x: [heads, head_dim].
status rope_apply(float* x, int64_t heads, int64_t head_dim, int64_t dims,
                  const float* coef) noexcept;

/// rope_apply for llama.cpp's NEOX mode (Qwen2, GPT-NeoX): pair i is (x[i], x[i + dims/2]),
/// i < dims/2, rotated by the same coefficients and with the same float operations.
status rope_apply_neox(float* x, int64_t heads, int64_t head_dim, int64_t dims,
                       const float* coef) noexcept;

/// rope_apply with unscaled coefficients: angle pos·base^(-2i/rope_dim).
status rope_norm(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, int64_t pos,
                 float freq_base) noexcept;

/// gate[i] = silu(gate[i]) · up[i] over n elements; silu(x) = x / (1 + e^-x).
status silu_mul(float* gate, const float* up, int64_t n) noexcept;

/// gate[i] = gelu(gate[i]) · up[i] as ggml_vec_geglu_f32 computes it (GGML_GELU_FP16, Gemma's
/// feed-forward): 0 for gate <= -10, gate·up for gate >= 10, else GELU's tanh approximation
/// taken from ggml's table at gate rounded to fp16 (built with libm's tanhf, rounded to fp16)
/// and widened, times up.
status gelu_mul(float* gate, const float* up, int64_t n) noexcept;

/// y[0..n) = x rounded to f16, nearest-even (what ggml_cpy writes into an f16 KV cache).
status to_f16(const float* x, uint16_t* y, int64_t n) noexcept;

/// In-place softmax of x[0..n) after scaling by `scale`; the sum is accumulated in double.
status softmax(float* x, int64_t n, float scale) noexcept;

/// Shape of a causal grouped-query attention over a KV cache of one layer.
struct attention_shape {
  int64_t heads;      ///< query heads
  int64_t kv_heads;   ///< key/value heads; heads % kv_heads == 0
  int64_t head_dim;
  float scale;        ///< usually 1/sqrt(head_dim)
  /// Sliding-window attention (Gemma 3's local layers): a query at position p sees positions
  /// [p - window + 1, p] only, the others masked as llama.cpp masks them (their scores -inf,
  /// so the sums keep ggml's lanes). 0: every earlier position.
  int64_t window = 0;
  /// Attention logit soft-capping (Gemma 2): each score q·k becomes cap·tanh(q·k · (1/cap))
  /// before `scale` and the softmax, as llama.cpp's non-flash attention computes it. 0: off.
  float softcap = 0;
  /// Element type of the cache: f32, or f16 as llama.cpp's type_k = type_v = f16 (its default)
  /// with non-flash attention computes it: q rounded to f16 for the scores, the softmax rounded
  /// to f16 for the product with V, both products in ggml_vec_dot_f16's order for one token and
  /// tinyBLAS's for several (float_dot.hpp). Other types: unsupported_type.
  quant_type kv_type = quant_type::f32;
};

/// out[t, h, :] = softmax(q[t,h,:]·K[0..pos0+t]ᵀ · scale) · V for t in [0, tokens): query t sits
/// at position pos0 + t and sees cache rows [0, pos0 + t]. q, out: [tokens, heads·head_dim];
/// k_cache, v_cache: [positions, kv_heads·head_dim] of shape.kv_type with rows up to
/// pos0 + tokens - 1 filled. Work is split over (token, head) pairs. scratch is resized as needed.
status attention(thread_pool& pool, const attention_shape& shape, const float* q, int64_t tokens,
                 int64_t pos0, const void* k_cache, const void* v_cache, float* out,
                 std::vector<float>& scratch) noexcept;

/// One sequence of a batched attention call: the arguments of attention() above for `tokens`
/// queries at positions pos0.. over this sequence's own cache.
struct attention_sequence {
  const float* q;
  int64_t tokens;
  int64_t pos0;
  const void* k_cache;  ///< of attention_shape::kv_type
  const void* v_cache;
  float* out;
};

/// attention() for `count` sequences, each over its own KV cache, with one split of the pool
/// over every (sequence, token, head): results bit-identical to one attention() call per
/// sequence, without a parallel_for per sequence (a batched decode step of 32 sequences needs
/// one per layer, not 32). Arguments are checked as attention() checks them, every sequence
/// before any work; a sequence with tokens == 0 may have null pointers.
status attention(thread_pool& pool, const attention_shape& shape, const attention_sequence* seqs,
                 int64_t count, std::vector<float>& scratch) noexcept;

/// y[t, r] = Σ_i w[r, i] · x[t, i]: a quantised weight matrix of `rows` rows of n elements
/// (`row_stride` bytes apart) times `tokens` fp32 activation rows. The activations are
/// quantised to activation_type(weight) first (into `scratch`), then rows are split over the
/// pool. x: [tokens, n]; y: [tokens, rows].
status mat_mul(thread_pool& pool, quant_type weight, int64_t rows, int64_t n, const void* w,
               size_t row_stride, const float* x, int64_t tokens, float* y,
               std::vector<std::byte>& scratch) noexcept;

/// One weight matrix of a fused mat_mul: `rows` rows of `weight` (n elements each, `row_stride`
/// bytes apart) and its output y: [tokens, rows].
struct mat_mul_part {
  quant_type weight;
  int64_t rows;
  const void* w;
  size_t row_stride;
  float* y;
  /// llama.cpp's arithmetic for this many tokens, where it is not vec_dot's: f32, f16 and bf16
  /// weights see their activations rounded to the weight's type (ggml converts them to the
  /// vec_dot_type) and are summed in llama.cpp's order (float_dot.hpp); the K-quants, iq4_xs
  /// and iq4_nl in its batched paths' where ggml_batched_order says so (mat_mat_ggml_batched).
  /// For llama.cpp parity; the f16/bf16 rounding makes those less exact.
  bool ggml_activations = false;
};

/// mat_mul of every part by the same activations x: [tokens, n] (q, k and v; gate and up), with
/// results bit-identical to one mat_mul per part: the activations are quantised once per
/// activation type and the pool synchronises once, over the rows of all the parts together.
/// At most 8 parts.
status mat_mul(thread_pool& pool, const mat_mul_part* parts, int64_t count, int64_t n,
               const float* x, int64_t tokens, std::vector<std::byte>& scratch) noexcept;

}  // namespace troupe::kernels::cpu
