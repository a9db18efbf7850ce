#pragma once
/// The config.json of a DeepSeek-V3-architecture model (DeepSeek-V2/V3, Kimi K2, K2.5, Moonlight):
/// dimensions, MoE routing, YaRN rope scaling and weight quantization, read and checked once so
/// that the engine never meets a missing field, a wrong type or inconsistent sizes later.
/// Field meanings follow transformers' DeepseekV3Config; YaRN follows DeepSeek's official
/// inference/model.py (ramp over original_max_position_embeddings, softmax scale x mscale^2,
/// no amplitude on cos/sin), which the newer transformers implementation agrees with.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace troupe {
class gguf_file;
}  // namespace troupe

namespace troupe::deepseek {

/// rope_scaling (or rope_parameters) of type "yarn".
struct yarn_scaling {
  double factor = 1, beta_fast = 32, beta_slow = 1, mscale = 1, mscale_all_dim = 0;
  int64_t original_max_position_embeddings = 4096;
};

enum class weight_quant : uint8_t {
  none,
  int4_group,  ///< compressed-tensors pack-quantized: symmetric int4, one scale per group of
               ///< inputs.
  fp8_block,  ///< fp8 e4m3 weights with an fp32 weight_scale_inv per block_rows x block_cols block.
};

/// "none", "int4_group", "fp8_block".
const char* to_string(weight_quant q) noexcept;

/// quantization_config of the checkpoint.
struct quantization {
  weight_quant kind = weight_quant::none;
  int bits = 4;
  int64_t group_size = 32;
  bool symmetric = true;
  int64_t block_rows = 128, block_cols = 128;  ///< fp8 weight_block_size.
  std::vector<std::string> ignore;             ///< Module names or "re:" regexes (Python re.match).

  /// Whether the Linear module `module` (e.g. "model.layers.1.mlp.experts.3.up_proj", with or
  /// without the "language_model." prefix, without ".weight") is stored quantized: false when the
  /// kind is none, when the module is not a Linear projection (names ending in "_proj",
  /// "_proj_with_mqa" or "lm_head"; the MoE router "mlp.gate" is not a Linear in transformers), or
  /// when an ignore entry matches: "re:P" when the regex P matches at the start of the name (as
  /// compressed-tensors' re.match), a plain entry when it equals the name or its dotted suffix.
  bool applies_to(std::string_view module) const;
};

struct config {
  std::string model_type;  ///< deepseek_v3, kimi_k2, deepseek_v2 (of the text model for K2.5).
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, moe_intermediate_size = 0,
          num_hidden_layers = 0, num_attention_heads = 0, num_key_value_heads = 0,
          q_lora_rank = 0 /*0 = none: direct q_proj*/, kv_lora_rank = 0, qk_nope_head_dim = 0,
          qk_rope_head_dim = 0, v_head_dim = 0, n_routed_experts = 0, n_shared_experts = 0,
          num_experts_per_tok = 0, n_group = 1, topk_group = 1, first_k_dense_replace = 0,
          moe_layer_freq = 1, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000, routed_scaling_factor = 1;
  bool norm_topk_prob = false, tie_word_embeddings = false;
  std::string scoring_func, topk_method;  ///< "sigmoid" / "softmax"; "noaux_tc", "greedy", ...
  std::optional<yarn_scaling> yarn;  ///< rope_scaling / rope_parameters with type|rope_type "yarn".
  quantization quant;
  int64_t bos_token_id = -1, eos_token_id = -1;  ///< -1 when absent; the first id of a list.
  std::string tensor_prefix;  ///< "" or "language_model." for the K2.5 wrapper (text_config).

  /// Parses and checks a config.json text. `where` names the file in errors. Throws
  /// troupe::error naming the field and `where`: parse_error (not JSON, a missing required field,
  /// a wrong JSON type, inconsistent values such as num_key_value_heads != num_attention_heads or
  /// num_experts_per_tok > n_routed_experts), unsupported (a model_type, rope scaling type or
  /// quantization troupe does not run).
  static config from_json(std::string_view json_text, std::string_view where);
  /// Reads the file; not_found / io_error when it cannot, then as from_json.
  static config from_file(const std::filesystem::path& config_json);
  /// The config of a GGUF file of llama.cpp's `deepseek2` architecture, from its `deepseek2.*`
  /// keys. Both of llama.cpp's conventions are read: MLA-as-MQA conversions (head_count_kv 1,
  /// key_length_mla / value_length_mla per head) and older ones (key_length / value_length per
  /// head). model_type is "deepseek2"; expert_gating_func 1 is softmax, 2 sigmoid, absent softmax
  /// (llama.cpp's default for DeepSeek-V2 files); topk_method is "noaux_tc" when the file holds
  /// blk.N.exp_probs_b.bias, else "greedy"; YaRN's mscale_all_dim is
  /// rope.scaling.yarn_log_multiplier / 0.1 and mscale equals it (llama.cpp applies no amplitude
  /// to cos/sin). Throws troupe::error naming the file and the key: not_found (a required key is
  /// absent), parse_error (a wrong type or inconsistent values), unsupported (another
  /// architecture, an expert_gating_func or rope scaling type troupe does not run).
  static config from_gguf(const gguf_file& file);

  int64_t qk_head_dim() const noexcept { return qk_nope_head_dim + qk_rope_head_dim; }
  /// layer >= first_k_dense_replace && layer % moe_layer_freq == 0.
  bool is_moe_layer(int64_t layer) const noexcept;
  /// qk_head_dim^-0.5 * mscale^2, mscale = 0.1 * mscale_all_dim * ln(factor) + 1 when yarn and
  /// factor > 1 (else 1).
  double softmax_scale() const noexcept;
  /// qk_rope_head_dim / 2 inverse frequencies, entry i for the rotation of dims (2i, 2i+1):
  /// theta^(-2i/d), with YaRN (factor > 1) blended towards theta^(-2i/d) / factor over the
  /// correction range [low, high] of find_correction_range(beta_fast, beta_slow): entries below
  /// low keep the base frequency, entries above high are divided by factor.
  std::vector<float> rope_inv_freq() const;
  /// The YaRN correction range {low, high} (floored / ceiled, clamped to [0, d-1]); {0, 0} without
  /// YaRN.
  std::pair<double, double> yarn_correction_range() const noexcept;
};

}  // namespace troupe::deepseek
