#pragma once
/// The small ops gpu::cuda_decoder's whole-model decode step needs beyond ops.hpp: the absorbed-MLA
/// projections in and out of the latent space (bf16 weights), the latent's norm, rope and cache
/// write at precomputed slots, an MLA decode for any kv_lora (the fixtures' tiny shapes; ops.hpp's
/// kernel needs a multiple of 128), the router product with bf16 weights and fp32 activations,
/// RMSNorm to bf16, residual adds fused with the norm that follows, SiLU·up to bf16, the masking of
/// padding rows' routes, and the random fills of the benchmark's synthetic weights. Contracts as
/// ops.hpp: device pointers, sizes in elements, arguments checked before any launch, bf16 as raw
/// uint16_t. UNVERIFIED on a GPU: compiled here, exercised by tests/gpu/test_cuda_decoder.cpp
/// (whole-model logits against the CPU decoder).

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/ops.hpp"
#include "cuda/status.hpp"

namespace troupe::kernels::cuda {

/// Absorbed queries: for row b < rows, head h, with q_b,h = q + (b·heads + h)·(nope + rope):
///   q_latent[(b·heads + h)·kv_lora + r] = Σ_{d < nope} q_b,h[d] · w_uk[(h·nope + d)·kv_lora + r]
///   q_rope[(b·heads + h)·rope + i]      = q_b,h[nope + i], rotated when positions is not null
/// q fp32, w_uk bf16 [heads, nope, kv_lora] (kv_b's key half, DeepSeek's W_UK), fp32 sums. With
/// positions (device int32 [rows]) and inv_freq ([rope/2]), the rope part is rotated on the way
/// exactly as launch_rope_adjacent would (adjacent pairs, angle positions[b]·inv_freq[i], cos and
/// sin times amplitude); q itself is not modified. rope even when rotating.
/// unsupported: rows · nope above 10240 (the staged queries and the partial sums exceed 48 KiB
/// of shared memory; 64 rows of DeepSeek's nope 128 fit).
status launch_mla_absorb_q(const float* q, int64_t rows, int64_t heads, int64_t nope, int64_t rope,
                           const uint16_t* w_uk, int64_t kv_lora, float* q_latent, float* q_rope,
                           const int32_t* positions, const float* inv_freq, float amplitude,
                           cudaStream_t stream) noexcept;

/// Values out of the latent space: out[b·ldo + h·v + d] = bf16(Σ_r o_latent[(b·heads + h)·kv_lora
/// + r] · w_uv[(h·v + d)·kv_lora + r]); w_uv bf16 [heads, v, kv_lora] (DeepSeek's W_UV), fp32 sums,
/// out bf16 (the o_proj GEMM's input), ldo >= heads·v.
status launch_mla_unabsorb_v(const float* o_latent, int64_t rows, int64_t heads, int64_t kv_lora,
                             const uint16_t* w_uv, int64_t v, uint16_t* out, int64_t ldo,
                             cudaStream_t stream) noexcept;

/// launch_mla_decode's contract (ops.hpp, same arguments and paged layout, page size 64) for any
/// kv_lora in [1, 1024] and rope in [0, 128]: a plain kernel (scores by warps, softmax over a page
/// in shared memory, accumulators in shared memory) for the shapes the fast kernel refuses.
status launch_mla_decode_plain(const mla_decode_args& args, cudaStream_t stream) noexcept;

/// The same split over the positions (flash-decoding), for few rows × heads: CTA (head, row, s)
/// covers pages [s·pages_per_split, (s+1)·pages_per_split) of the block table, then a second
/// kernel merges the splits' softmax statistics and sums. splits = mla_split_count(max_pages,
/// pages_per_split) (one split: launch_mla_decode_plain, no workspace used); workspace: device
/// fp32, at least mla_split_workspace_floats(...) of them. Results equal the unsplit kernel's
/// within fp32 rounding.
int64_t mla_split_count(int64_t max_pages, int64_t pages_per_split) noexcept;
int64_t mla_split_workspace_floats(int64_t batch, int64_t heads, int64_t kv_lora, int64_t max_pages,
                                   int64_t pages_per_split) noexcept;
status launch_mla_decode_split(const mla_decode_args& args, int64_t pages_per_split, float* workspace,
                               int64_t workspace_floats, cudaStream_t stream) noexcept;

/// The same (split or not: splits = mla_split_count(max_pages, pages_per_split), workspace as
/// launch_mla_decode_split when splits > 1) with all heads of a row in one CTA sharing each read of
/// the cache (FlashMLA's arrangement, plain CUDA cores): the cache is read once per row instead of
/// once per head, for buckets with many rows. Supported (mla_decode_heads_supported): heads <= 32,
/// kv_lora a multiple of 32 up to 512, kv_lora + rope <= 576; unsupported otherwise.
bool mla_decode_heads_supported(int64_t heads, int64_t kv_lora, int64_t rope) noexcept;
status launch_mla_decode_heads(const mla_decode_args& args, int64_t pages_per_split, float* workspace,
                               int64_t workspace_floats, cudaStream_t stream) noexcept;

/// launch_moe_w4a16_gemm's contract (ops.hpp, same arguments) for decode-sized steps, where a
/// moe-aligned block holds one or a few real rows: each CTA owns 32 output columns of one block,
/// its 8 warps split the K groups, and only real rows are computed. Same values up to the order
/// of the fp32 group sums. unsupported: block other than 16.
status launch_moe_w4a16_gemv(const moe_gemm_args& args, cudaStream_t stream) noexcept;

/// y[t·ldy + r] = Σ_i bf16 w[r·k + i] · x[t·ldx + i], fp32 activations and sums (router logits: HF
/// routes in fp32 over the checkpoint's bf16 gate). One warp per (row, token); tokens <= 65535.
status launch_gemv_bf16_f32(const uint16_t* w, int64_t rows, int64_t k, const float* x, int64_t ldx,
                            int64_t tokens, float* y, int64_t ldy, cudaStream_t stream) noexcept;

/// The residual add of a block, optionally followed by the next RMSNorm, one CTA per row:
///   h[t·n + i] += (routed && t < *live ? Σ_{j<top_k} routed[(t·top_k + j)·n + i] : 0) + add[t·n + i]
/// for t < rows: an attention or dense block (routed null) or a MoE block (add = the shared
/// experts' output, routed = the per-pair outputs already times their routing weights; live:
/// device int32, rows at and past it are padding whose pairs were not computed; may be null when
/// routed is null). With norm_w not null, then as launch_rms_norm_bf16 on the updated row:
/// y[t·ldy + i] = v (y may be null), yb[t·ldyb + i] = bf16(v), v = h·rsqrt(mean(h²) + eps)·norm_w.
struct residual_args {
  float* h = nullptr;
  const float* add = nullptr;
  const float* routed = nullptr;
  int64_t top_k = 1;
  const int32_t* live = nullptr;
  int64_t rows = 0, n = 0;
  const float* norm_w = nullptr;
  float eps = 1e-6f;
  float* y = nullptr;
  int64_t ldy = 0;
  uint16_t* yb = nullptr;
  int64_t ldyb = 0;
};
status launch_residual(const residual_args& args, cudaStream_t stream) noexcept;

/// ids[t·top_k + j] = experts for t in [*live, rows): padding rows' pairs point outside [0,
/// experts), so moe_align drops them and no expert runs for them.
status launch_mask_padding_routes(int32_t* ids, int64_t rows, int64_t top_k, int32_t experts,
                                  const int32_t* live, cudaStream_t stream) noexcept;

/// RMSNorm with a bf16 copy (the next GEMM's input) in one pass: v = x[r, i] / sqrt(mean_i(x[r,
/// :]²) + eps) · w[i]; y[r, i] = v (when y is not null), yb[r, i] = bf16(v); rows × n, strides
/// ldx, ldy, ldyb >= n. Sum of squares in fp32 (tree order), as launch_rms_norm. rows <= 2^31 − 1.
status launch_rms_norm_bf16(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                            uint16_t* yb, int64_t ldyb, int64_t rows, int64_t n, float eps,
                            cudaStream_t stream) noexcept;

/// The new latent of each row into the cache, in one pass: for row b < rows of kv [rows, ldkv]
/// (kv_lora latent values then rope values, the kv_a output), the latent RMSNorm-ed with w (eps),
/// the rope values rotated as launch_rope_adjacent (adjacent pairs, angle positions[b]·inv_freq[i],
/// cos and sin times amplitude), both written as bf16 to cache[slots[b]·(kv_lora + rope) + ...].
/// kv is not modified. rope even.
status launch_latent_norm_rope_write(const float* kv, int64_t ldkv, int64_t rows, int64_t kv_lora,
                                     int64_t rope, const float* w, float eps,
                                     const int32_t* positions, const float* inv_freq,
                                     float amplitude, const int32_t* slots, uint16_t* cache,
                                     cudaStream_t stream) noexcept;

/// out[t, i] = bf16(silu(g) · u), g = gate_up[t, i], u = gate_up[t, inter + i], silu(g) =
/// g / (1 + e^-g) (launch_silu_mul's formula, then the bf16 rounding of the next GEMM's input);
/// gate_up [tokens, ld_in >= 2·inter] fp32, out [tokens, ld_out >= inter] bf16. tokens <= 65535.
status launch_silu_mul_bf16(const float* gate_up, int64_t ld_in, uint16_t* out, int64_t ld_out,
                            int64_t tokens, int64_t inter, cudaStream_t stream) noexcept;

/// Synthetic weights for benchmarks: p[i] = bf16 of a uniform value in [−scale, scale) from a hash
/// of (seed, i); random 32-bit words; a constant fp32 value.
status launch_fill_random_bf16(uint16_t* p, int64_t n, uint64_t seed, float scale,
                               cudaStream_t stream) noexcept;
status launch_fill_random_u32(uint32_t* p, int64_t n, uint64_t seed, cudaStream_t stream) noexcept;
status launch_fill_f32(float* p, int64_t n, float value, cudaStream_t stream) noexcept;

}  // namespace troupe::kernels::cuda
