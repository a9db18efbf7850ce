#pragma once
/// CPU kernels of a softmax-routed mixture-of-experts feed-forward layer (Mixtral and the other
/// llama-architecture MoE files): the router's expert choice and weights, and the expert products
/// as ggml's MUL_MAT_ID computes them, so that results match llama.cpp's CPU backend bit for bit.
/// Pointers and sizes in, a status out.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"

namespace troupe::kernels::cpu {

/// llama.cpp's softmax routing of one token (build_moe_ffn, LLAMA_EXPERT_GATING_FUNC_TYPE_SOFTMAX):
/// p = softmax(logits[0..experts)) as ggml_soft_max computes it on an AVX-512 build (ggml_v_expf
/// per 16 lanes, libm expf for the rest, the sum in double, then times (float)(1/sum));
/// ids[0..k) = the k largest p in descending order (ggml_argsort, ties to the lower index);
/// weights[j] = p[ids[j]], with `normalize` (norm_w: Mixtral, Qwen3 MoE) divided by
/// max(Σ_j p[ids[j]], 2^-14), the sum in double rounded to float. 1 <= k <= experts.
status moe_route_softmax(const float* logits, int64_t experts, int64_t k, int32_t* ids,
                         float* weights, bool normalize = true) noexcept;

/// One stack of expert matrices (a 3-D GGUF tensor such as blk.N.ffn_up_exps): `experts`
/// matrices of `rows` rows of n elements of `weight`, rows `row_stride` bytes apart and matrix e
/// at w + e·expert_stride; and its output y: [pairs, rows].
struct expert_matrices {
  quant_type weight;
  int64_t experts;
  int64_t rows;
  const void* w;
  size_t row_stride;
  size_t expert_stride;
  float* y;
};

/// The (activation row, expert) pairs of a MUL_MAT_ID: pair p takes activation row
/// `shared_rows ? p / per_row : p` (per_row = the experts each token uses; shared_rows when the
/// token's k pairs read one row, as the up and gate products do) times expert ids[p]'s matrix.
struct expert_pairs {
  const int32_t* ids;  // [pairs], each in [0, experts)
  int64_t pairs;
  int64_t per_row;
  bool shared_rows;
};

/// ggml's MUL_MAT_ID for every stack of `stacks` (at most 4) by the same activations
/// x: [rows of the pairs, n]: y[p, :] = W[ids[p]] · x[row(p), :] for each stack. Arithmetic as
/// llama.cpp's CPU backend: activations quantised to activation_type(weight) (f16/bf16 weights:
/// rounded to the weight's type), each product summed as vec_dot sums, except the K-quants and
/// IQ4_XS by an expert that takes 8 pairs or more, which ggml's tiled K-quant path sums
/// (mat_mat_ggml_batched). Work is split over the pool by expert and tiles of rows; scratch is
/// resized as needed. Checks every argument and id before any work.
status mat_mul_id(thread_pool& pool, const expert_matrices* stacks, int64_t count, int64_t n,
                  const float* x, const expert_pairs& pairs,
                  std::vector<std::byte>& scratch) noexcept;

}  // namespace troupe::kernels::cpu
