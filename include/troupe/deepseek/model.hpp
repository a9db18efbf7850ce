#pragma once
/// A DeepSeek-V3-architecture model (DeepSeek-V3, Kimi K2 / K2.5, Moonlight) loaded from its
/// released checkpoint: config.json plus safetensors (one file or sharded), weights left in the
/// format they are stored in — BF16/F16/F32, compressed-tensors pack-quantized INT4 (group-wise,
/// symmetric) or FP8 E4M3 with block scales — and computed in that format. Every architecture
/// number comes from the config; every tensor's shape is checked against it when the model loads,
/// so a wrong or incomplete checkpoint fails then, with an error that names the tensor.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "troupe/deepseek/config.hpp"

namespace troupe::deepseek {

/// One weight matrix [rows, cols] (y = W·x maps cols inputs to rows outputs), as stored.
struct linear_weight {
  enum class format : uint8_t {
    dense,       ///< f32 / f16 / bf16 rows (kernels::cpu::quant_type in `dense_type`)
    int4_group,  ///< compressed-tensors pack-quantized INT4: uint32 words + per-group scales
    fp8_block,   ///< FP8 E4M3 with fp32 inverse scales per block
  };
  std::string name;  ///< checkpoint tensor name of the weight, for messages
  format fmt = format::dense;
  int64_t rows = 0;
  int64_t cols = 0;
  // dense
  uint32_t dense_type = 0;  ///< kernels::cpu::quant_type id
  const void* data = nullptr;
  size_t row_stride = 0;  ///< bytes
  // int4_group: packed [rows, packed_stride] uint32, scales [rows, scale_stride] of scale_type
  const uint32_t* packed = nullptr;
  int64_t packed_stride = 0;
  const void* scales = nullptr;
  uint8_t scale_type = 0;  ///< kernels::cpu::scale_type
  int64_t scale_stride = 0;
  int64_t group = 32;
  // fp8_block: data [rows, row_stride bytes], scale_inv [ceil(rows/br), ceil(cols/bc)] fp32
  const float* scale_inv = nullptr;
  int64_t block_rows = 128;
  int64_t block_cols = 128;

  /// Bytes the weight occupies (data + scales).
  int64_t bytes() const noexcept;
};

/// The three matrices of a SwiGLU MLP: down(silu(gate·x) ⊙ up·x).
struct mlp_weights {
  linear_weight gate;  // [inter, hidden]
  linear_weight up;    // [inter, hidden]
  linear_weight down;  // [hidden, inter]
};

struct layer_weights {
  std::vector<float> attn_norm;  // [hidden]
  std::vector<float> ffn_norm;   // [hidden]
  // MLA
  linear_weight q_a;             // [q_lora, hidden]        (q_lora_rank > 0)
  std::vector<float> q_a_norm;   // [q_lora]
  linear_weight q_b;             // [heads·qk_head, q_lora] (q_lora_rank > 0)
  linear_weight q;               // [heads·qk_head, hidden] (q_lora_rank == 0)
  linear_weight kv_a;            // [kv_lora + rope, hidden]
  std::vector<float> kv_a_norm;  // [kv_lora]
  linear_weight kv_b;            // [heads·(nope + v), kv_lora]
  linear_weight o;               // [hidden, heads·v]
  /// kv_b in fp32 for the absorbed decode: w_uk [heads, nope, kv_lora], w_uv [heads, v, kv_lora].
  std::vector<float> w_uk;
  std::vector<float> w_uv;
  // feed-forward: dense MLP (layer < first_k_dense_replace) or MoE
  bool moe = false;
  mlp_weights dense;
  std::vector<float> router;          // [experts, hidden] fp32 (HF routes in fp32)
  std::vector<float> router_bias;     // [experts] e_score_correction_bias (zeros when absent)
  std::vector<mlp_weights> experts;   // [experts]
  mlp_weights shared;                 // intermediate = moe_intermediate · n_shared (none when 0)
};

class model {
 public:
  /// Loads a checkpoint directory (config.json + model.safetensors or a sharded index). Throws
  /// troupe::error: not_found (no config.json, a missing shard or tensor: the message names it),
  /// parse_error (a shape that disagrees with the config, naming tensor, shape and expectation),
  /// unsupported (a dtype or quantisation troupe cannot compute, naming the tensor).
  /// A path naming a `.gguf` file goes to load_gguf.
  static std::shared_ptr<const model> load(const std::filesystem::path& dir);

  /// Loads a GGUF file of llama.cpp's `deepseek2` architecture (what convert_hf_to_gguf.py writes
  /// for DeepSeek-V2/V3, Kimi K2 and Moonlight): config from the `deepseek2.*` metadata
  /// (config::from_gguf), tensors by llama.cpp's names (token_embd, blk.N.attn_q / attn_q_a,
  /// attn_kv_a_mqa, attn_kv_b or the split attn_k_b + attn_v_b, ffn_*_exps stacked per expert,
  /// ...), each of a type the CPU kernels compute (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)
  /// and left in the mapped file; only kv_b is rebuilt in fp32 from k_b/v_b. Throws troupe::error:
  /// the errors of gguf_file::open and config::from_gguf, not_found (a missing tensor, named),
  /// parse_error (a tensor whose shape disagrees with the metadata, naming tensor, shape in ggml's
  /// ne order and the keys it was derived from), unsupported (a tensor type troupe cannot compute).
  static std::shared_ptr<const model> load_gguf(const std::filesystem::path& file);

  ~model();
  model(const model&) = delete;
  model& operator=(const model&) = delete;

  const config& cfg() const noexcept { return cfg_; }
  const std::filesystem::path& path() const noexcept { return path_; }

  /// fp32 embedding row of a token (no range check: callers validate ids).
  void embed(int32_t token, float* out) const noexcept;
  const std::vector<float>& final_norm() const noexcept { return final_norm_; }
  const linear_weight& lm_head() const noexcept { return lm_head_; }
  const layer_weights& layer(int64_t i) const noexcept { return layers_[static_cast<size_t>(i)]; }

  /// Weight bytes of the routed experts of one MoE layer, and of everything else per token step.
  int64_t expert_bytes(int64_t layer) const noexcept;

 private:
  model() = default;
  struct storage;
  config cfg_;
  std::filesystem::path path_;
  std::unique_ptr<storage> storage_;  ///< keeps the mapped checkpoint alive
  linear_weight embed_;               ///< [vocab, hidden], dense
  std::vector<float> final_norm_;
  linear_weight lm_head_;
  std::vector<layer_weights> layers_;
};
}  // namespace troupe::deepseek
