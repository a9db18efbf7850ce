#include "troupe/gpu/device_memory.hpp"

#include <cstdio>
#include <string>

#include "troupe/error.hpp"

namespace troupe::gpu {

namespace {

// Bytes of a [rows, cols] Linear weight named `module` in the checkpoint's stored format.
int64_t linear_bytes(const deepseek::config& c, const std::string& module, int64_t rows,
                     int64_t cols) {
  if (c.quant.kind != deepseek::weight_quant::none && c.quant.applies_to(module)) {
    if (c.quant.kind == deepseek::weight_quant::int4_group)
      return rows * cols / 2 + rows * ((cols + c.quant.group_size - 1) / c.quant.group_size) * 2;
    const int64_t br = c.quant.block_rows, bc = c.quant.block_cols;  // fp8_block
    return rows * cols + ((rows + br - 1) / br) * ((cols + bc - 1) / bc) * 4;
  }
  return rows * cols * 2;  // bf16
}

std::string gib(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  return buf;
}

}  // namespace

int64_t kv_page_bytes(const deepseek::config& c) noexcept {
  return 64 * c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 2;
}

device_memory_plan plan_device_memory(const deepseek::config& c, const expert_placement& placement,
                                      int device, int64_t pages, int64_t max_batch) {
  if (device < 0 || device >= placement.devices() || pages < 0 || max_batch < 1 ||
      placement.experts() != c.n_routed_experts)
    throw error(errc::invalid_argument,
                "gpu::plan_device_memory: device " + std::to_string(device) + " of " +
                    std::to_string(placement.devices()) + ", " + std::to_string(pages) +
                    " pages, batch " + std::to_string(max_batch) + ", placement of " +
                    std::to_string(placement.experts()) + " experts for a model with " +
                    std::to_string(c.n_routed_experts));
  const int64_t hidden = c.hidden_size, H = c.num_attention_heads, qk = c.qk_head_dim();
  const int64_t R = c.kv_lora_rank, rope = c.qk_rope_head_dim, v = c.v_head_dim;
  device_memory_plan p;
  p.device = device;
  int64_t& rep = p.replicated_weight_bytes;
  rep = c.vocab_size * hidden * 2 + linear_bytes(c, "lm_head", c.vocab_size, hidden) + hidden * 4;
  const int64_t local_experts = placement.last(device) - placement.first(device);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string at = "model.layers." + std::to_string(l) + ".self_attn.";
    const std::string mlp = "model.layers." + std::to_string(l) + ".mlp.";
    rep += 2 * hidden * 4 + R * 4;
    if (c.q_lora_rank > 0) {
      rep += linear_bytes(c, at + "q_a_proj", c.q_lora_rank, hidden) + c.q_lora_rank * 4 +
             linear_bytes(c, at + "q_b_proj", H * qk, c.q_lora_rank);
    } else {
      rep += linear_bytes(c, at + "q_proj", H * qk, hidden);
    }
    rep += linear_bytes(c, at + "kv_a_proj_with_mqa", R + rope, hidden) +
           linear_bytes(c, at + "kv_b_proj", H * (c.qk_nope_head_dim + v), R) +
           linear_bytes(c, at + "o_proj", hidden, H * v);
    if (!c.is_moe_layer(l)) {
      const int64_t I = c.intermediate_size;
      rep += linear_bytes(c, mlp + "gate_proj", I, hidden) +
             linear_bytes(c, mlp + "up_proj", I, hidden) +
             linear_bytes(c, mlp + "down_proj", hidden, I);
      continue;
    }
    const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
    rep += E * hidden * 4 + E * 4;  // router and its bias, fp32
    if (c.n_shared_experts > 0) {
      const int64_t S = I * c.n_shared_experts;
      rep += linear_bytes(c, mlp + "shared_experts.gate_proj", S, hidden) +
             linear_bytes(c, mlp + "shared_experts.up_proj", S, hidden) +
             linear_bytes(c, mlp + "shared_experts.down_proj", hidden, S);
    }
    // Every expert of a layer is stored alike (one quantization rule matches them all).
    const std::string e0 = mlp + "experts.0.";
    p.expert_weight_bytes += local_experts * (linear_bytes(c, e0 + "gate_proj", I, hidden) +
                                              linear_bytes(c, e0 + "up_proj", I, hidden) +
                                              linear_bytes(c, e0 + "down_proj", hidden, I));
  }
  p.kv_cache_bytes = pages * kv_page_bytes(c);
  // Activations, fp32, an upper estimate: per batch row the residual stream and its norms, the
  // queries and absorbed latents of every head, the dense MLP, router logits and logits; per
  // received expert row (all ranks' tokens may route here: B·top_k·devices rows) its bf16 input,
  // the fused gate/up output, the SiLU output in fp32 and bf16, and the down output.
  const int64_t B = max_batch;
  const int64_t per_row = 6 * hidden + H * qk + 2 * H * R + H * v + R + rope +
                          3 * std::max(c.intermediate_size, c.moe_intermediate_size *
                                                                std::max<int64_t>(1, c.n_shared_experts)) +
                          c.n_routed_experts + 2 * c.num_experts_per_tok + c.vocab_size;
  const int64_t expert_rows = B * c.num_experts_per_tok * placement.devices();
  const int64_t per_expert_row = hidden / 2 + 2 * c.moe_intermediate_size +
                                 c.moe_intermediate_size * 3 / 2 + hidden + 2;
  p.workspace_bytes = 4 * (B * per_row + expert_rows * per_expert_row) +
                      4 * (expert_rows + c.n_routed_experts * 64) + gemm_workspace_bytes;
  return p;
}

std::string device_memory_plan::describe() const {
  return "device " + std::to_string(device) + ": replicated weights " +
         gib(replicated_weight_bytes) + " + routed experts " + gib(expert_weight_bytes) +
         " + latent cache " + gib(kv_cache_bytes) + " + workspace " + gib(workspace_bytes) + " = " +
         gib(total());
}

void check_fits(const device_memory_plan& plan, int64_t free_bytes, const std::string& what) {
  if (plan.total() <= free_bytes) return;
  throw error(errc::budget_exceeded,
              what + " does not fit: " + plan.describe() + ", but the device has " +
                  gib(free_bytes) + " free (" + std::to_string(plan.total()) + " > " +
                  std::to_string(free_bytes) + " bytes); use more devices (expert parallelism "
                  "splits the routed experts), fewer cache pages or a smaller largest batch");
}

}  // namespace troupe::gpu
