#include "troupe/gpu/decode_roofline.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "troupe/error.hpp"

namespace troupe::gpu {

double routed_expert_bytes(const deepseek::config& c, bool int4_experts) noexcept {
  const double params = 3.0 * static_cast<double>(c.hidden_size) * static_cast<double>(c.moe_intermediate_size);
  return int4_experts ? params * (0.5 + 2.0 / 32.0) : params * 2.0;
}

namespace {

step_weight_bytes fixed_part(const deepseek::config& c) {
  const int64_t h = c.hidden_size, H = c.num_attention_heads, qk = c.qk_head_dim();
  const int64_t q = c.q_lora_rank > 0 ? h * c.q_lora_rank + c.q_lora_rank * H * qk : h * H * qk;
  const int64_t kv_a = h * (c.kv_lora_rank + c.qk_rope_head_dim);
  const int64_t kv_b = c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim);
  const int64_t o = H * c.v_head_dim * h;
  step_weight_bytes b;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    b.attention += (q + kv_a + kv_b + o) * 2;
    if (!c.is_moe_layer(l)) {
      b.dense_mlp += 3 * h * c.intermediate_size * 2;
      continue;
    }
    b.shared += c.n_shared_experts * 3 * h * c.moe_intermediate_size * 2;
    b.router += h * c.n_routed_experts * 2;
  }
  b.lm_head = c.vocab_size * h * 2;
  return b;
}

int64_t moe_layers(const deepseek::config& c) {
  int64_t n = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) n += c.is_moe_layer(l) ? 1 : 0;
  return n;
}

}  // namespace

step_weight_bytes weight_bytes_of_step(const deepseek::config& c, std::span<const int64_t> touched,
                                       bool int4_experts) {
  if (static_cast<int64_t>(touched.size()) != moe_layers(c))
    throw error(errc::invalid_argument, "gpu::weight_bytes_of_step: " + std::to_string(touched.size()) +
                                            " expert counts for a model with " +
                                            std::to_string(moe_layers(c)) + " MoE layers");
  step_weight_bytes b = fixed_part(c);
  const double per = routed_expert_bytes(c, int4_experts);
  for (int64_t t : touched) {
    if (t < 0 || t > c.n_routed_experts)
      throw error(errc::invalid_argument, "gpu::weight_bytes_of_step: " + std::to_string(t) +
                                              " experts touched in a layer of " +
                                              std::to_string(c.n_routed_experts));
    b.routed += static_cast<double>(t) * per;
  }
  return b;
}

step_weight_bytes expected_weight_bytes(const deepseek::config& c, int64_t batch, bool int4_experts) {
  if (batch < 1)
    throw error(errc::invalid_argument, "gpu::expected_weight_bytes: batch " + std::to_string(batch));
  step_weight_bytes b = fixed_part(c);
  const double n = static_cast<double>(c.n_routed_experts), k = static_cast<double>(c.num_experts_per_tok);
  const double touched = n * (1.0 - std::pow(1.0 - k / n, static_cast<double>(batch)));
  b.routed = static_cast<double>(moe_layers(c)) * touched * routed_expert_bytes(c, int4_experts);
  return b;
}

std::vector<int64_t> experts_touched(std::span<const int32_t> ids, int64_t layers, int64_t row_stride,
                                     int64_t live_rows, int64_t top_k, int64_t experts) {
  if (layers < 0 || row_stride < 0 || live_rows < 0 || live_rows > row_stride || top_k < 1 ||
      experts < 1 || static_cast<int64_t>(ids.size()) < layers * row_stride * top_k)
    throw error(errc::invalid_argument,
                "gpu::experts_touched: " + std::to_string(ids.size()) + " ids for " + std::to_string(layers) +
                    " layers of " + std::to_string(row_stride) + " rows (" + std::to_string(live_rows) +
                    " live) of top " + std::to_string(top_k));
  std::vector<int64_t> out(static_cast<size_t>(layers), 0);
  std::vector<uint8_t> seen(static_cast<size_t>(experts));
  for (int64_t l = 0; l < layers; ++l) {
    std::fill(seen.begin(), seen.end(), 0);
    for (int64_t i = 0; i < live_rows * top_k; ++i) {
      const int32_t e = ids[static_cast<size_t>(l * row_stride * top_k + i)];
      if (e < 0 || e >= experts || seen[static_cast<size_t>(e)] != 0) continue;
      seen[static_cast<size_t>(e)] = 1;
      ++out[static_cast<size_t>(l)];
    }
  }
  return out;
}

}  // namespace troupe::gpu
