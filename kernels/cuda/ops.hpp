#pragma once
/// CUDA kernels of the llama and DeepSeek-V3 forward passes for Hopper (sm_90a). Each op has a
/// `launch_*` entry that checks its arguments on the host (nothing is launched when they are
/// wrong), picks the instantiation, launches on `stream` and reports launch errors; the device
/// code (`*_kernel<...>`) lives in the .cu files. All pointers are device pointers unless said
/// otherwise; sizes are elements. Every kernel has a CPU reference it is tested against
/// (tests/kernels/test_cuda_kernels.cpp): kernels/cpu/* or the host references in this folder.
///
/// Element types: activations fp32 unless named bf16; bf16 values are raw uint16_t bit patterns
/// (as kernels/cpu does), so this header needs no CUDA type headers beyond the runtime API.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/status.hpp"

namespace troupe::kernels::cuda {

/// y[r, i] = x[r, i] / sqrt(mean_i(x[r, :]²) + eps) · w[i]: rows × n, row strides ldx, ldy
/// (>= n). Sum of squares in fp32 (tree order; the CPU reference sums in double). y may alias x.
status launch_rms_norm(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy,
                       int64_t rows, int64_t n, float eps, cudaStream_t stream) noexcept;

/// Rotates adjacent pairs in place: for each token t, head h, pair i < rope_dim/2, with
/// v = x + t·token_stride + h·head_stride + rope_offset:
///   (v[2i], v[2i+1]) <- (v[2i]·c − v[2i+1]·s, v[2i]·s + v[2i+1]·c),
///   c = cos(pos[t]·inv_freq[i])·amplitude, s = sin(...)·amplitude.
/// inv_freq: [rope_dim/2] (plain 1/θ^(2i/d) or YaRN's blend, built on the host); positions: [tokens].
/// GPT-J / llama.cpp NORM layout (DeepSeek-V3 q_pe/k_pe, GGUF llama). rope_dim even.
status launch_rope_adjacent(float* x, int64_t tokens, int64_t heads, int64_t token_stride,
                            int64_t head_stride, int64_t rope_offset, int64_t rope_dim,
                            const int32_t* positions, const float* inv_freq, float amplitude,
                            cudaStream_t stream) noexcept;

/// out[t, i] = silu(gate_up[t, i]) · gate_up[t, inter + i], i < inter: the fused w13 output
/// [tokens, ld_in] (gate then up) to [tokens, ld_out]. silu(x) = x / (1 + e^-x).
status launch_silu_mul(const float* gate_up, int64_t ld_in, float* out, int64_t ld_out,
                       int64_t tokens, int64_t inter, cudaStream_t stream) noexcept;

/// out[t, :] = table[ids[t], :] (bf16 table [vocab, dim]) as fp32 (embedding_f32) or bf16.
/// Ids outside [0, vocab) give a zero row (the host validates prompts; a device never faults).
status launch_embedding_f32(const uint16_t* table, int64_t vocab, int64_t dim, const int32_t* ids,
                            int64_t tokens, float* out, cudaStream_t stream) noexcept;
status launch_embedding_bf16(const uint16_t* table, int64_t vocab, int64_t dim, const int32_t* ids,
                             int64_t tokens, uint16_t* out, cudaStream_t stream) noexcept;

/// DeepseekV3TopkRouter over router logits [tokens, experts] (runtime/deepseek/experts.cpp
/// route, sigmoid scoring): scores = sigmoid(logits); choice = scores + bias (bias [experts] or
/// null); with groups > 1 and topk_group < groups, groups ranked by the sum of their two best
/// choices, choices outside the topk_group best set to 0; the top_k choices (ties: lower id)
/// give ids; weights = their unbiased scores, divided by (sum + 1e-20) when norm_topk_prob, times
/// scaling. ids, weights: [tokens, top_k]. One warp per token.
/// unsupported: experts > 1024, groups > 32, top_k > 32, experts not a multiple of groups.
status launch_route_topk(const float* logits, const float* bias, int64_t tokens, int64_t experts,
                         int64_t groups, int64_t topk_group, int64_t top_k, bool norm_topk_prob,
                         float scaling, int32_t* ids, float* weights, cudaStream_t stream) noexcept;

/// y[t, r] = Σ_i w[r, i]·x[t, i] for ggml Q8_0 or Q4_1 weights (rows × n, rows row_stride bytes
/// apart, n a multiple of 32) and fp32 activations x [tokens, ldx]; y [tokens, ldy]. Weights are
/// dequantised in registers (the activations are not quantised, unlike the CPU mat_vec: results
/// agree within the Q8 activation rounding). One warp per row.
/// weight_type: 8 (GGML_TYPE_Q8_0) or 3 (GGML_TYPE_Q4_1); unsupported otherwise.
status launch_ggml_mat_vec(uint32_t weight_type, const void* w, int64_t rows, int64_t n,
                           int64_t row_stride, const float* x, int64_t ldx, int64_t tokens,
                           float* y, int64_t ldy, cudaStream_t stream) noexcept;

/// ids[b] = argmax_v logits[b·ld + v] over v < vocab (greedy sampling); ties and NaNs: the lowest
/// index of the largest non-NaN value (0 when all are NaN).
status launch_argmax(const float* logits, int64_t ld, int64_t batch, int64_t vocab, int32_t* ids,
                     cudaStream_t stream) noexcept;

/// moe_align_block_size on the device (moe_align.hpp has the contract and the host reference):
/// same outputs, except that the order of the pairs within one expert's run is unspecified
/// (atomics, as in vLLM's kernel). One CTA; experts <= 4096. Ids outside [0, experts) are
/// dropped like pairs of another rank (the device does not fault; the host checks routings).
/// capacity must be moe_align_capacity(...) or more and a multiple of block.
status launch_moe_align_block_size(const int32_t* topk_ids, int64_t tokens, int64_t top_k,
                                   int64_t experts, int64_t block, const int32_t* expert_map,
                                   int32_t* sorted_token_ids, int32_t* expert_ids,
                                   int64_t capacity, int32_t* num_tokens_post_padded,
                                   cudaStream_t stream) noexcept;

/// The W4A16 grouped GEMM of the routed experts over moe-aligned blocks (moe_align.hpp):
/// for each block b < *num_tokens_post_padded / block with e = expert_ids[b] >= 0, each row r of
/// the block with p = sorted_token_ids[r] < pairs:
///   y[p, :] = (A[p / a_div, :] · W_eᵀ) · (route_weights ? route_weights[p] : 1)
/// A: bf16 [pairs / a_div, k] (lda): a_div = top_k for the gate/up GEMM (A = the tokens), 1 for
/// the down GEMM (A = the per-pair SiLU outputs). W_e: expert e of the repacked INT4 stack
/// (int4_repack.hpp: tiles [experts, k/32, n, 4] uint32, scales [experts, k/32, n] bf16);
/// y: fp32 [pairs, ldy]. Sums per 32-group in fp32, times the group's scale, as cpu::int4_group_gemm.
/// block: 16, 32 or 64 (unsupported otherwise); k a multiple of 32; capacity as for moe_align.
/// num_tokens_post_padded is a device pointer (the alignment may be computed on the device).
struct moe_gemm_args {
  const uint16_t* a = nullptr;
  int64_t lda = 0, a_div = 1;
  const uint32_t* tiles = nullptr;
  const uint16_t* scales = nullptr;
  int64_t experts = 0, n = 0, k = 0;
  const int32_t* sorted_token_ids = nullptr;  ///< [capacity]
  const int32_t* expert_ids = nullptr;        ///< [capacity / block]
  const int32_t* num_tokens_post_padded = nullptr;
  int64_t capacity = 0, block = 16, pairs = 0;
  const float* route_weights = nullptr;  ///< [pairs] or null
  float* y = nullptr;
  int64_t ldy = 0;
};
status launch_moe_w4a16_gemm(const moe_gemm_args& args, cudaStream_t stream) noexcept;

/// Absorbed MLA decode attention (DeepSeek "absorb", FlashMLA's form) over a paged latent cache:
/// for sequence b (one query token each), head h, cached positions j < seq_lens[b]:
///   s_j = scale · (q_latent[b,h,:]·c_j[:kv_lora] + q_rope[b,h,:]·c_j[kv_lora:])
///   out[b,h,:] = Σ_j softmax(s)_j · c_j[:kv_lora]
/// c_j: 576 (kv_lora + rope) bf16 values of position j, at
///   cache[(block_table[b·max_pages + j/64]·64 + j%64)·(kv_lora + rope)].
/// q_latent: [batch, heads, kv_lora] fp32 (q_nope·W_UK), q_rope: [batch, heads, rope] fp32,
/// out: [batch, heads, kv_lora] fp32 (W_UV is applied afterwards). Page size 64.
/// unsupported: kv_lora not a multiple of 128 or above 1024, rope above 128 or odd.
/// A sequence of length 0 gives zeros.
inline constexpr int64_t mla_page_size = 64;
struct mla_decode_args {
  const float* q_latent = nullptr;
  const float* q_rope = nullptr;
  const uint16_t* cache = nullptr;
  const int32_t* block_table = nullptr;  ///< [batch, max_pages]
  const int32_t* seq_lens = nullptr;     ///< [batch]
  int64_t batch = 0, heads = 0, kv_lora = 512, rope = 64, max_pages = 0;
  float scale = 0;
  float* out = nullptr;
};
status launch_mla_decode(const mla_decode_args& args, cudaStream_t stream) noexcept;

/// Dense BF16 GEMM through cuBLASLt: y[m, n] = Σ_k a[m, k]·w[n, k] (row-major a: [m, lda],
/// w: [n, ldw], the checkpoint's [out, in]), fp32 accumulation, y fp32 [m, ldy]. handle is a
/// cublasLtHandle_t; workspace (device, may be null with size 0) is lent for the call.
/// library_failed: cuBLASLt found no algorithm or the call failed.
status launch_dense_bf16_gemm(void* cublaslt_handle, const uint16_t* a, int64_t lda,
                              const uint16_t* w, int64_t ldw, float* y, int64_t ldy, int64_t m,
                              int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                              cudaStream_t stream) noexcept;

}  // namespace troupe::kernels::cuda
