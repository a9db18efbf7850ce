#pragma once
/// The numerator of a decode step's roofline: the bytes of weights one step must read from device
/// memory, for a DeepSeek-V3-architecture config and the experts the step's tokens were routed to.
/// Same accounting as tools/reference/hf_eager_decode_bench.py's weight_bytes (the HF baseline
/// prints it from the same formula): per layer the MLA projections (q or q_a + q_b, kv_a, kv_b,
/// o) in bf16; the dense MLP of the first layers; per MoE layer the shared experts (bf16), the
/// router (counted bf16, as the checkpoint stores it) and each routed expert touched at least once
/// (INT4 group 32: 0.5 byte per weight + one bf16 scale per 32, or bf16); the lm_head. Embedding
/// rows, norms, router biases and the latent cache are not counted (a few KB a token).
/// Host-only.

#include <cstdint>
#include <span>
#include <vector>

#include "troupe/deepseek/config.hpp"

namespace troupe::gpu {

struct step_weight_bytes {
  int64_t attention = 0;  ///< every layer's q/q_a/q_b, kv_a, kv_b, o
  int64_t dense_mlp = 0;  ///< the first_k_dense_replace layers' MLPs
  int64_t shared = 0;     ///< shared experts of every MoE layer
  int64_t router = 0;     ///< router weights of every MoE layer
  double routed = 0;      ///< routed experts touched (fractional for an expected count)
  int64_t lm_head = 0;
  double total() const noexcept {
    return static_cast<double>(attention + dense_mlp + shared + router + lm_head) + routed;
  }
};

/// Bytes of one routed expert (gate, up, down): INT4 group 32 with bf16 scales, or bf16.
double routed_expert_bytes(const deepseek::config& c, bool int4_experts) noexcept;

/// The step's bytes when MoE layer i (i-th layer with is_moe_layer) touched touched[i] distinct
/// experts. Throws troupe::error(invalid_argument) when touched.size() is not the number of MoE
/// layers or a count is outside [0, n_routed_experts].
step_weight_bytes weight_bytes_of_step(const deepseek::config& c, std::span<const int64_t> touched,
                                       bool int4_experts);

/// The same with every MoE layer's count at its expectation under uniform independent routing of
/// `batch` tokens: n·(1 − (1 − k/n)^batch) (hf_eager_decode_bench.py's formula). batch >= 1.
step_weight_bytes expected_weight_bytes(const deepseek::config& c, int64_t batch, bool int4_experts);

/// Distinct experts per MoE layer of a step's routing: ids [moe_layers, row_stride, top_k], of
/// which rows [0, live_rows) of each layer count (the rest are padding). Ids outside
/// [0, experts) are ignored. Throws invalid_argument for sizes that do not fit ids.
std::vector<int64_t> experts_touched(std::span<const int32_t> ids, int64_t moe_layers,
                                     int64_t row_stride, int64_t live_rows, int64_t top_k,
                                     int64_t experts);

}  // namespace troupe::gpu
