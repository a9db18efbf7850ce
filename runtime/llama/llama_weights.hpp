#pragma once
// Private: the weights of a loaded llama model as the forward pass takes them (pointers into the
// GGUF memory map). Shared by llama_model.cpp (loading) and batch_decoder.cpp (the forward pass).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/transformer_ops.hpp"
#include "troupe/llama/llama_model.hpp"

namespace troupe::llama {

namespace kc = troupe::kernels::cpu;

/// A 2-D weight as the kernels take it: `rows` rows of `n` elements of `type`.
struct matrix {
  kc::quant_type type{};
  int64_t rows = 0;
  int64_t n = 0;
  size_t row_stride = 0;
  const void* data = nullptr;
};

struct layer_weights {
  const float* attn_norm = nullptr;  // [hidden]
  matrix wq, wk, wv, wo;             // [q_dim|kv_dim, hidden], wo [hidden, q_dim]
  const float *q_norm = nullptr, *k_norm = nullptr;  // [head_dim] each (qwen3), or null
  // RMSNorm weights [hidden] after attention and after the feed-forward (gemma, olmo2), or null.
  const float *attn_post_norm = nullptr, *ffn_post_norm = nullptr;
  const float* ffn_norm = nullptr;   // [hidden]
  matrix gate, up, down;             // [ffn, hidden] ×2, down [hidden, ffn]
  // Mixture of experts instead of gate/up/down: the router and each expert's matrices, expert e
  // at data + e·expert_stride (the 3-D ffn_*_exps tensors).
  matrix router;                     // [experts, hidden]
  matrix gate_exps, up_exps, down_exps;
  size_t gate_exps_stride = 0, up_exps_stride = 0, down_exps_stride = 0;
  // A shared expert: its gate input [1, hidden] (qwen2moe) and SwiGLU (ffn_*_shexp).
  matrix shexp_gate_inp, shexp_gate, shexp_up, shexp_down;
  // Optional biases, added after the product (null when the file has none).
  const float *bq = nullptr, *bk = nullptr, *bv = nullptr, *bo = nullptr;
  const float *b_gate = nullptr, *b_up = nullptr, *b_down = nullptr;
};

struct llama_model::impl {
  matrix token_embd;  // [vocab, hidden]
  matrix output;      // [vocab, hidden]; token_embd when tied
  const float* output_norm = nullptr;
  const float* output_bias = nullptr;  // [vocab] or null
  std::vector<layer_weights> layers;
  kc::rope_params rope;  // the rotary embedding of every layer (freq_factors into the map)
  kc::rope_params rope_long;  // LongRoPE: rope with the long factors (hparams.rope_long_factors)
  kc::rope_params rope_swa;   // gemma3's sliding-window layers: their own base, no scaling
};

}  // namespace troupe::llama
