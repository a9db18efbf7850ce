// config.json of DeepSeek-V3-architecture models: the real configs of Kimi K2.5 (kimi_k25 wrapper
// with text_config and a compressed-tensors block), Kimi K2-Instruct (fp8) and Moonlight (no
// q_lora, no rope scaling), a DeepSeek-V3 config; YaRN softmax scale and inverse frequencies
// against transformers (tools/reference/deepseek_config_reference.py); quantization ignore lists;
// one bad input per check with the field and file expected in the message.

#define BOOST_TEST_MODULE deepseek_config
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "troupe/deepseek/config.hpp"
#include "troupe/error.hpp"

namespace fs = std::filesystem;
using troupe::errc;
using troupe::deepseek::config;
using troupe::deepseek::weight_quant;

namespace {

// Printed by tools/reference/deepseek_config_reference.py:
// transformers 4.57.1
// k25: attention_factor (cos/sin amplitude) 1.0
constexpr double k25_softmax_scale = 0.14467962580268923;
constexpr float k25_inv_freq[] = {1.0f,
                                  0.713111103f,
                                  0.508527458f,
                                  0.362636536f,
                                  0.258600146f,
                                  0.184410617f,
                                  0.131505266f,
                                  0.0937778577f,
                                  0.0668740347f,
                                  0.0437766574f,
                                  0.0284279585f,
                                  0.0182829555f,
                                  0.01161916f,
                                  0.00727411965f,
                                  0.00446584867f,
                                  0.0026702038f,
                                  0.00153729669f,
                                  0.000834655075f,
                                  0.000408646069f,
                                  0.000158374969f,
                                  1.80702336e-05f,
                                  1.28860838e-05f,
                                  9.18920978e-06f,
                                  6.55292706e-06f,
                                  4.67296513e-06f,
                                  3.33234311e-06f,
                                  2.37633071e-06f,
                                  1.69458781e-06f,
                                  1.20842935e-06f,
                                  8.61744411e-07f,
                                  6.14519479e-07f,
                                  4.38220638e-07f};
// k2_instruct: attention_factor (cos/sin amplitude) 1.0
constexpr double k2_instruct_softmax_scale = 0.13086079996295005;
constexpr float k2_instruct_inv_freq[] = {1.0f,
                                          0.713111103f,
                                          0.508527458f,
                                          0.362636536f,
                                          0.258600146f,
                                          0.184410617f,
                                          0.131505266f,
                                          0.0937778577f,
                                          0.0668740347f,
                                          0.0476886146f,
                                          0.0340072773f,
                                          0.0242509674f,
                                          0.0172936339f,
                                          0.0123322811f,
                                          0.00879428629f,
                                          0.00627130363f,
                                          0.00447213603f,
                                          0.00318912975f,
                                          0.00227420381f,
                                          0.00162175996f,
                                          3.61404673e-05f,
                                          2.57721676e-05f,
                                          1.83784196e-05f,
                                          1.31058541e-05f,
                                          9.34593027e-06f,
                                          6.66468623e-06f,
                                          4.75266143e-06f,
                                          3.38917562e-06f,
                                          2.41685871e-06f,
                                          1.72348882e-06f,
                                          1.22903896e-06f,
                                          8.76441277e-07f};
// deepseek_v3: attention_factor (cos/sin amplitude) 1.0
constexpr double deepseek_v3_softmax_scale = 0.1352337788608801;
constexpr float deepseek_v3_inv_freq[] = {1.0f,
                                          0.749894202f,
                                          0.562341332f,
                                          0.421696514f,
                                          0.316227764f,
                                          0.237137362f,
                                          0.177827939f,
                                          0.133352146f,
                                          0.100000001f,
                                          0.0749894157f,
                                          0.0562341288f,
                                          0.0390069261f,
                                          0.0268793609f,
                                          0.0183781441f,
                                          0.012447956f,
                                          0.0083345091f,
                                          0.00550000044f,
                                          0.00356199732f,
                                          0.00224936521f,
                                          0.00137051346f,
                                          0.000790569407f,
                                          0.000414990413f,
                                          0.00017782794f,
                                          3.3338034e-05f,
                                          2.49999994e-05f,
                                          1.87473543e-05f,
                                          1.40585325e-05f,
                                          1.05424124e-05f,
                                          7.90569447e-06f,
                                          5.92843435e-06f,
                                          4.44569832e-06f,
                                          3.33380353e-06f};

// The compressed-tensors block of Kimi K2.5 and K2-Thinking (models-and-formats.md §1.1).
const std::string k25_quant = R"({
    "config_groups": {"group_0": {"input_activations": null, "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": 32, "num_bits": 4,
                  "observer": "minmax", "observer_kwargs": {}, "strategy": "group", "symmetric": true, "type": "int"}}},
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed"})";

// moonshotai/Kimi-K2.5 config.json (§1.1): the kimi_k25 wrapper with the text model in text_config.
const std::string k25 = R"({
  "architectures": ["KimiK25ForConditionalGeneration"],
  "auto_map": {"AutoConfig": "configuration_kimi_k25.KimiK25Config"},
  "bos_token_id": 163584, "eos_token_id": 163585, "pad_token_id": 163839, "media_placeholder_token_id": 163605,
  "model_type": "kimi_k25", "tie_word_embeddings": false, "use_unified_vision_chunk": true,
  "video_placeholder": "<|kimi_k25_video_placeholder|>", "dtype": "bfloat16",
  "vision_config": {"vt_hidden_size": 1152, "vt_intermediate_size": 4304, "vt_num_attention_heads": 16,
                    "vt_num_hidden_layers": 27, "patch_size": 14, "merge_kernel_size": [2, 2], "text_hidden_size": 7168},
  "text_config": {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "kimi_k2",
    "vocab_size": 163840, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_nextn_predict_layers": 0, "num_attention_heads": 64, "num_key_value_heads": 64,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 384, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 1, "topk_group": 1,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "routed_scaling_factor": 2.827, "norm_topk_prob": true,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "rms_norm_eps": 1e-05, "rope_theta": 50000.0,
    "rope_scaling": {"type": "yarn", "factor": 64.0, "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 1.0,
                     "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
    "max_position_embeddings": 262144, "attention_bias": false, "hidden_act": "silu", "aux_loss_alpha": 0.001,
    "seq_aux": true, "ep_size": 1, "tie_word_embeddings": false,
    "bos_token_id": 163584, "eos_token_id": 163585,
    "quantization_config": QUANT
  },
  "quantization_config": QUANT
})";

// moonshotai/Kimi-K2-Instruct config.json (§1.2): fp8 with 128x128 block scales.
const std::string k2_instruct = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
  "bos_token_id": 163584, "eos_token_id": 163585, "first_k_dense_replace": 1, "hidden_act": "silu",
  "hidden_size": 7168, "initializer_range": 0.02, "intermediate_size": 18432, "kv_lora_rank": 512,
  "max_position_embeddings": 131072, "model_type": "kimi_k2", "moe_intermediate_size": 2048, "moe_layer_freq": 1,
  "n_group": 1, "n_routed_experts": 384, "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 64,
  "num_experts_per_tok": 8, "num_hidden_layers": 61, "num_key_value_heads": 64, "num_nextn_predict_layers": 0,
  "pretraining_tp": 1, "q_lora_rank": 1536, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]},
  "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 1.0, "beta_slow": 1.0, "factor": 32.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "rope_theta": 50000.0, "routed_scaling_factor": 2.827, "scoring_func": "sigmoid", "seq_aux": true,
  "tie_word_embeddings": false, "topk_group": 1, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
  "transformers_version": "4.48.3", "use_cache": true, "v_head_dim": 128, "vocab_size": 163840
})";

// moonshotai/Moonlight-16B-A3B-Instruct config.json (§1.4): q_lora_rank null, no rope scaling,
// bf16.
const std::string moonlight = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001, "bos_token_id": 163584, "eos_token_id": 163586, "ep_size": 1,
  "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
  "intermediate_size": 11264, "kv_lora_rank": 512, "max_position_embeddings": 8192, "model_type": "deepseek_v3",
  "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64, "n_shared_experts": 2,
  "norm_topk_prob": true, "num_attention_heads": 16, "num_experts_per_tok": 6, "num_hidden_layers": 27,
  "num_key_value_heads": 16, "num_nextn_predict_layers": 0, "pretraining_tp": 1, "q_lora_rank": null,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-05, "rope_scaling": null,
  "rope_theta": 50000, "routed_scaling_factor": 2.446, "scoring_func": "sigmoid", "seq_aux": true,
  "tie_word_embeddings": false, "topk_group": 1, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
  "transformers_version": "4.46.3", "use_cache": true, "v_head_dim": 128, "vocab_size": 163840
})";

// DeepSeek-V3's dimensions (256 experts in 8 groups, 4 kept; theta 1e4, YaRN factor 40), abridged.
const std::string deepseek_v3 = R"({
  "model_type": "deepseek_v3", "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432,
  "moe_intermediate_size": 2048, "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
  "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
  "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
  "topk_method": "noaux_tc", "scoring_func": "sigmoid", "routed_scaling_factor": 2.5, "norm_topk_prob": true,
  "first_k_dense_replace": 3, "moe_layer_freq": 1, "max_position_embeddings": 163840, "rms_norm_eps": 1e-06,
  "rope_theta": 10000, "bos_token_id": 0, "eos_token_id": [1, 2],
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                   "original_max_position_embeddings": 4096, "type": "yarn"},
  "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                          "weight_block_size": [128, 128]}
})";

/// `text` with every QUANT placeholder replaced by `quant`.
std::string fill(std::string text, const std::string& quant = k25_quant) {
  for (size_t at; (at = text.find("QUANT")) != std::string::npos;) text.replace(at, 5, quant);
  return text;
}

/// `text` with the one occurrence of `from` replaced by `to`.
std::string with(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, "'" << from << "' is in the config");
  BOOST_REQUIRE_MESSAGE(text.find(from, at + 1) == std::string::npos,
                        "'" << from << "' occurs once");
  return text.replace(at, from.size(), to);
}

/// Expects from_json to throw `code` with every part in the message (which names the file).
void expect_error(const std::string& text, errc code, const std::vector<std::string>& parts) {
  try {
    config::from_json(text, "models/x/config.json");
    BOOST_FAIL("no error for a bad config");
  } catch (const troupe::error& e) {
    BOOST_TEST_MESSAGE(e.message());
    BOOST_TEST(troupe::to_string(e.code()) == troupe::to_string(code), e.message());
    BOOST_TEST(e.message().find("models/x/config.json") == 0u, e.message());
    for (const auto& part : parts)
      BOOST_TEST(e.message().find(part) != std::string::npos,
                 "'" << part << "' in: " << e.message());
  }
}

template <size_t N>
void check_inv_freq(const config& c, const float (&expected)[N]) {
  const std::vector<float> got = c.rope_inv_freq();
  BOOST_REQUIRE(got.size() == N);
  for (size_t i = 0; i < N; ++i) {
    BOOST_TEST_CONTEXT("inv_freq[" << i << "]") {
      // transformers computes in float32; this in double and rounds once.
      BOOST_TEST(got[i] == expected[i], boost::test_tools::tolerance(2e-6f));
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(kimi_k25_wrapper_with_compressed_tensors) {
  const config c = config::from_json(fill(k25), "Kimi-K2.5/config.json");
  BOOST_TEST(c.model_type == "kimi_k2");
  BOOST_TEST(c.tensor_prefix == "language_model.");
  BOOST_TEST(c.vocab_size == 163840);
  BOOST_TEST(c.hidden_size == 7168);
  BOOST_TEST(c.intermediate_size == 18432);
  BOOST_TEST(c.moe_intermediate_size == 2048);
  BOOST_TEST(c.num_hidden_layers == 61);
  BOOST_TEST(c.num_attention_heads == 64);
  BOOST_TEST(c.num_key_value_heads == 64);
  BOOST_TEST(c.q_lora_rank == 1536);
  BOOST_TEST(c.kv_lora_rank == 512);
  BOOST_TEST(c.qk_nope_head_dim == 128);
  BOOST_TEST(c.qk_rope_head_dim == 64);
  BOOST_TEST(c.qk_head_dim() == 192);
  BOOST_TEST(c.v_head_dim == 128);
  BOOST_TEST(c.n_routed_experts == 384);
  BOOST_TEST(c.n_shared_experts == 1);
  BOOST_TEST(c.num_experts_per_tok == 8);
  BOOST_TEST(c.n_group == 1);
  BOOST_TEST(c.topk_group == 1);
  BOOST_TEST(c.first_k_dense_replace == 1);
  BOOST_TEST(c.moe_layer_freq == 1);
  BOOST_TEST(c.max_position_embeddings == 262144);
  BOOST_TEST(c.rms_norm_eps == 1e-5);
  BOOST_TEST(c.rope_theta == 50000.0);
  BOOST_TEST(c.routed_scaling_factor == 2.827);
  BOOST_TEST(c.norm_topk_prob);
  BOOST_TEST(!c.tie_word_embeddings);
  BOOST_TEST(c.scoring_func == "sigmoid");
  BOOST_TEST(c.topk_method == "noaux_tc");
  BOOST_TEST(c.bos_token_id == 163584);
  BOOST_TEST(c.eos_token_id == 163585);
  BOOST_REQUIRE(c.yarn.has_value());
  BOOST_TEST(c.yarn->factor == 64.0);
  BOOST_TEST(c.yarn->beta_fast == 32.0);
  BOOST_TEST(c.yarn->beta_slow == 1.0);
  BOOST_TEST(c.yarn->mscale == 1.0);
  BOOST_TEST(c.yarn->mscale_all_dim == 1.0);
  BOOST_TEST(c.yarn->original_max_position_embeddings == 4096);

  BOOST_TEST((c.quant.kind == weight_quant::int4_group));
  BOOST_TEST(c.quant.bits == 4);
  BOOST_TEST(c.quant.group_size == 32);
  BOOST_TEST(c.quant.symmetric);
  BOOST_TEST(c.quant.ignore.size() == 4u);
  BOOST_TEST(c.quant.ignore[3] == "re:.*mlp\\.(gate|up|gate_up|down)_proj.*");

  BOOST_TEST(!c.is_moe_layer(0));
  for (int64_t l = 1; l < 61; ++l) BOOST_TEST(c.is_moe_layer(l));

  // §1.5: 192^-0.5 * (0.1 ln 64 + 1)^2 = 0.144680; transformers agrees to the last digit.
  BOOST_TEST(c.softmax_scale() == 0.144680, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(c.softmax_scale() == k25_softmax_scale, boost::test_tools::tolerance(1e-12));
  check_inv_freq(c, k25_inv_freq);
}

BOOST_AUTO_TEST_CASE(k25_yarn_correction_range_is_8_to_20) {
  const config c = config::from_json(fill(k25), "Kimi-K2.5/config.json");
  const auto [low, high] = c.yarn_correction_range();
  BOOST_TEST(low == 8.0);
  BOOST_TEST(high == 20.0);
  const std::vector<float> f = c.rope_inv_freq();
  BOOST_REQUIRE(f.size() == 32u);
  for (int i = 0; i < 32; ++i) {
    BOOST_TEST_CONTEXT("dim pair " << i) {
      const double base = std::pow(50000.0, -2.0 * i / 64.0);
      if (i <= 8) {
        BOOST_TEST(f[i] == base,
                   boost::test_tools::tolerance(1e-6));  // extrapolated: base frequency
      } else if (i >= 20) {
        BOOST_TEST(f[i] == base / 64.0,
                   boost::test_tools::tolerance(1e-6));  // interpolated: / factor
      } else {
        const double ramp = (i - 8) / 12.0;
        BOOST_TEST(f[i] < base);
        BOOST_TEST(f[i] > base / 64.0);
        BOOST_TEST(f[i] == base / 64.0 * ramp + base * (1 - ramp),
                   boost::test_tools::tolerance(1e-6));
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(kimi_k2_instruct_fp8) {
  const config c = config::from_json(k2_instruct, "Kimi-K2-Instruct/config.json");
  BOOST_TEST(c.model_type == "kimi_k2");
  BOOST_TEST(c.tensor_prefix == "");
  BOOST_TEST(c.max_position_embeddings == 131072);
  BOOST_TEST(c.rms_norm_eps == 1e-6);
  BOOST_TEST(c.eos_token_id == 163585);
  BOOST_TEST((c.quant.kind == weight_quant::fp8_block));
  BOOST_TEST(c.quant.block_rows == 128);
  BOOST_TEST(c.quant.block_cols == 128);
  BOOST_TEST(c.quant.ignore.empty());
  BOOST_REQUIRE(c.yarn.has_value());
  BOOST_TEST(c.yarn->factor == 32.0);
  BOOST_TEST(c.yarn->beta_fast == 1.0);
  // §1.5: 0.130861; correction range [19, 20].
  BOOST_TEST(c.softmax_scale() == 0.130861, boost::test_tools::tolerance(1e-5));
  BOOST_TEST(c.softmax_scale() == k2_instruct_softmax_scale, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.yarn_correction_range().first == 19.0);
  BOOST_TEST(c.yarn_correction_range().second == 20.0);
  check_inv_freq(c, k2_instruct_inv_freq);
  // fp8 covers the Linear projections; the router, norms and embeddings are never quantized.
  BOOST_TEST(c.quant.applies_to("model.layers.0.self_attn.q_a_proj"));
  BOOST_TEST(c.quant.applies_to("model.layers.3.mlp.experts.7.down_proj"));
  BOOST_TEST(c.quant.applies_to("model.layers.0.self_attn.kv_a_proj_with_mqa"));
  BOOST_TEST(!c.quant.applies_to("model.layers.3.mlp.gate"));
  BOOST_TEST(!c.quant.applies_to("model.embed_tokens"));
  BOOST_TEST(!c.quant.applies_to("model.layers.0.input_layernorm"));
}

BOOST_AUTO_TEST_CASE(moonlight_without_q_lora_and_rope_scaling) {
  const config c = config::from_json(moonlight, "Moonlight-16B-A3B-Instruct/config.json");
  BOOST_TEST(c.model_type == "deepseek_v3");
  BOOST_TEST(c.q_lora_rank == 0);
  BOOST_TEST(c.hidden_size == 2048);
  BOOST_TEST(c.num_hidden_layers == 27);
  BOOST_TEST(c.num_attention_heads == 16);
  BOOST_TEST(c.n_routed_experts == 64);
  BOOST_TEST(c.n_shared_experts == 2);
  BOOST_TEST(c.num_experts_per_tok == 6);
  BOOST_TEST(c.moe_intermediate_size == 1408);
  BOOST_TEST(c.routed_scaling_factor == 2.446);
  BOOST_TEST(c.rope_theta == 50000.0);
  BOOST_TEST(c.eos_token_id == 163586);
  BOOST_TEST(!c.yarn.has_value());
  BOOST_TEST((c.quant.kind == weight_quant::none));
  BOOST_TEST(!c.quant.applies_to("model.layers.1.mlp.experts.3.up_proj"));
  // §1.5: 192^-0.5 = 0.0721688 without YaRN; plain rope frequencies.
  BOOST_TEST(c.softmax_scale() == 0.0721688, boost::test_tools::tolerance(1e-6));
  const std::vector<float> f = c.rope_inv_freq();
  BOOST_REQUIRE(f.size() == 32u);
  for (int i = 0; i < 32; ++i)
    BOOST_TEST(f[i] == std::pow(50000.0, -2.0 * i / 64.0), boost::test_tools::tolerance(1e-6));
  // An absent q_lora_rank reads as none too.
  BOOST_TEST(config::from_json(with(moonlight, R"("q_lora_rank": null,)", ""), "m").q_lora_rank ==
             0);
}

BOOST_AUTO_TEST_CASE(deepseek_v3_groups_and_range) {
  const config c = config::from_json(deepseek_v3, "DeepSeek-V3/config.json");
  BOOST_TEST(c.n_group == 8);
  BOOST_TEST(c.topk_group == 4);
  BOOST_TEST(c.eos_token_id == 1);  // the first of a list
  BOOST_TEST(c.bos_token_id == 0);
  BOOST_TEST(!c.is_moe_layer(0));
  BOOST_TEST(!c.is_moe_layer(2));
  BOOST_TEST(c.is_moe_layer(3));
  BOOST_TEST(c.is_moe_layer(60));
  // §1.5: DeepSeek-V3 (theta 1e4, beta 32/1) has the correction range [10, 23].
  BOOST_TEST(c.yarn_correction_range().first == 10.0);
  BOOST_TEST(c.yarn_correction_range().second == 23.0);
  BOOST_TEST(c.softmax_scale() == deepseek_v3_softmax_scale, boost::test_tools::tolerance(1e-12));
  check_inv_freq(c, deepseek_v3_inv_freq);
  // moe_layer_freq 2: every other layer after the dense ones.
  const config d =
      config::from_json(with(deepseek_v3, R"("moe_layer_freq": 1)", R"("moe_layer_freq": 2)"), "x");
  BOOST_TEST(!d.is_moe_layer(3));
  BOOST_TEST(d.is_moe_layer(4));
  BOOST_TEST(!d.is_moe_layer(5));
}

BOOST_AUTO_TEST_CASE(newer_transformers_spellings) {
  // transformers 5 writes rope_parameters with rope_type (and may move rope_theta into it).
  std::string text = with(fill(k25), R"("rope_scaling": {"type": "yarn",)",
                          R"("rope_parameters": {"rope_type": "yarn", "rope_theta": 50000.0,)");
  text = with(text, R"("rope_theta": 50000.0,
    "rope_parameters")",
              R"("rope_parameters")");
  const config c = config::from_json(text, "k25");
  BOOST_REQUIRE(c.yarn.has_value());
  BOOST_TEST(c.yarn->factor == 64.0);
  BOOST_TEST(c.rope_theta == 50000.0);
  check_inv_freq(c, k25_inv_freq);
  // The text model's quantization_config may be absent: the wrapper's counts.
  std::string no_inner = fill(k25);
  no_inner =
      with(no_inner,
           "\"bos_token_id\": 163584, \"eos_token_id\": 163585,\n    \"quantization_config\": " +
               k25_quant,
           "\"bos_token_id\": 163584, \"eos_token_id\": 163585");
  const config d = config::from_json(no_inner, "k25");
  BOOST_TEST((d.quant.kind == weight_quant::int4_group));
  BOOST_TEST(d.quant.group_size == 32);
  // "default" rope type means none.
  const config e = config::from_json(
      with(moonlight, R"("rope_scaling": null)", R"("rope_scaling": {"rope_type": "default"})"),
      "m");
  BOOST_TEST(!e.yarn.has_value());
}

BOOST_AUTO_TEST_CASE(ignore_list_matching) {
  const config c = config::from_json(fill(k25), "k25");
  const auto& q = c.quant;
  // Only the routed experts are int4 (§1.1).
  BOOST_TEST(q.applies_to("model.layers.1.mlp.experts.3.up_proj"));
  BOOST_TEST(q.applies_to("model.layers.60.mlp.experts.383.down_proj"));
  BOOST_TEST(q.applies_to("model.layers.1.mlp.experts.0.gate_proj"));
  BOOST_TEST(q.applies_to("language_model.model.layers.1.mlp.experts.3.up_proj"));
  // re:.*self_attn.*
  BOOST_TEST(!q.applies_to("model.layers.1.self_attn.q_a_proj"));
  BOOST_TEST(!q.applies_to("model.layers.1.self_attn.kv_a_proj_with_mqa"));
  BOOST_TEST(!q.applies_to("language_model.model.layers.7.self_attn.o_proj"));
  // re:.*shared_experts.*
  BOOST_TEST(!q.applies_to("model.layers.1.mlp.shared_experts.up_proj"));
  // re:.*mlp\.(gate|up|gate_up|down)_proj.* : the dense layer-0 MLP.
  BOOST_TEST(!q.applies_to("model.layers.0.mlp.gate_proj"));
  BOOST_TEST(!q.applies_to("model.layers.0.mlp.down_proj"));
  BOOST_TEST(!q.applies_to("model.layers.0.mlp.gate_up_proj"));
  // lm_head by name, with or without the wrapper's prefix; not a name that merely ends the same.
  BOOST_TEST(!q.applies_to("lm_head"));
  BOOST_TEST(!q.applies_to("language_model.lm_head"));
  // Not Linear modules: router, embeddings, norms.
  BOOST_TEST(!q.applies_to("model.layers.1.mlp.gate"));
  BOOST_TEST(!q.applies_to("model.embed_tokens"));
  BOOST_TEST(!q.applies_to("model.norm"));

  // "re:" patterns match at the start of the name (Python re.match), plain names whole or as a
  // dotted suffix.
  troupe::deepseek::quantization r;
  r.kind = weight_quant::int4_group;
  r.ignore = {"re:model\\.layers\\.0\\.", "x_lm_head", "mlp.experts.5.up_proj"};
  BOOST_TEST(!r.applies_to("model.layers.0.mlp.experts.1.up_proj"));
  BOOST_TEST(r.applies_to("language_model.model.layers.0.mlp.experts.1.up_proj"));
  BOOST_TEST(r.applies_to("model.layers.10.mlp.experts.1.up_proj"));
  BOOST_TEST(r.applies_to("lm_head"));
  BOOST_TEST(!r.applies_to("model.layers.3.mlp.experts.5.up_proj"));
  BOOST_TEST(r.applies_to("model.layers.3.mlp.experts.15.up_proj"));
  // Changing the list changes the answers (compiled patterns are cached per list).
  r.ignore.push_back("re:.*experts\\.1\\.");
  BOOST_TEST(!r.applies_to("model.layers.10.mlp.experts.1.up_proj"));
  BOOST_TEST(r.applies_to("model.layers.10.mlp.experts.11.up_proj"));
  r.ignore.back() = "re:layers";  // a literal must start the name unless it begins with .*
  BOOST_TEST(r.applies_to("model.layers.10.mlp.experts.1.up_proj"));
  r.ignore.back() = "re:.*experts\\.(1|2)\\.";
  BOOST_TEST(!r.applies_to("model.layers.10.mlp.experts.2.up_proj"));
  BOOST_TEST(r.applies_to("model.layers.10.mlp.experts.3.up_proj"));
  r.ignore.pop_back();
  BOOST_TEST(r.applies_to("model.layers.10.mlp.experts.1.up_proj"));
  BOOST_TEST(std::string(troupe::deepseek::to_string(weight_quant::int4_group)) == "int4_group");
}

BOOST_AUTO_TEST_CASE(missing_fields_and_wrong_types) {
  const std::string good = fill(k25);
  expect_error("{\"model_type\": ", errc::parse_error, {"not valid JSON"});
  expect_error("[]", errc::parse_error, {"array", "expected an object"});
  expect_error(with(moonlight, R"("model_type": "deepseek_v3",)", ""), errc::parse_error,
               {"\"model_type\" is missing"});
  expect_error(with(good, R"("hidden_size": 7168,)", ""), errc::parse_error,
               {"\"text_config.hidden_size\" is missing"});
  expect_error(with(moonlight, R"("kv_lora_rank": 512,)", ""), errc::parse_error,
               {"\"kv_lora_rank\" is missing"});
  expect_error(with(moonlight, R"("vocab_size": 163840)", R"("vocab_size": null)"),
               errc::parse_error, {"\"vocab_size\" is missing"});
  expect_error(with(moonlight, R"("hidden_size": 2048)", R"("hidden_size": "2048")"),
               errc::parse_error, {"\"hidden_size\" is string \"2048\"", "expected an integer"});
  expect_error(with(moonlight, R"("hidden_size": 2048)", R"("hidden_size": 2048.5)"),
               errc::parse_error, {"\"hidden_size\" is number 2048.5"});
  expect_error(with(moonlight, R"("rms_norm_eps": 1e-05)", R"("rms_norm_eps": "1e-5")"),
               errc::parse_error, {"\"rms_norm_eps\" is string", "expected a number"});
  expect_error(with(moonlight, R"("norm_topk_prob": true)", R"("norm_topk_prob": 1)"),
               errc::parse_error, {"\"norm_topk_prob\" is integer 1", "expected true or false"});
  expect_error(with(moonlight, R"("scoring_func": "sigmoid")", R"("scoring_func": 1)"),
               errc::parse_error, {"\"scoring_func\" is integer", "expected a string"});
  expect_error(with(moonlight, R"("rope_scaling": null)", R"("rope_scaling": [1])"),
               errc::parse_error, {"\"rope_scaling\" is array"});
  expect_error(with(moonlight, R"("rope_scaling": null)", R"("rope_scaling": {"type": "yarn"})"),
               errc::parse_error, {"\"rope_scaling.factor\" is missing"});
  expect_error(with(good, R"("text_config": {)", R"("text_config": 3, "unused": {)"),
               errc::parse_error, {"\"text_config\" is integer"});
  // An integral number written as a float is an integer.
  BOOST_TEST(
      config::from_json(with(moonlight, R"("hidden_size": 2048)", R"("hidden_size": 2048.0)"), "m")
          .hidden_size == 2048);
}

BOOST_AUTO_TEST_CASE(inconsistent_values) {
  expect_error(with(moonlight, R"("num_key_value_heads": 16)", R"("num_key_value_heads": 8)"),
               errc::parse_error,
               {"\"num_key_value_heads\" is 8 but num_attention_heads is 16", "MLA"});
  expect_error(with(fill(k25), R"("num_key_value_heads": 64)", R"("num_key_value_heads": 1)"),
               errc::parse_error, {"\"text_config.num_key_value_heads\" is 1"});
  expect_error(with(moonlight, R"("num_experts_per_tok": 6)", R"("num_experts_per_tok": 65)"),
               errc::parse_error,
               {"\"num_experts_per_tok\" is 65, more than the 64 n_routed_experts"});
  expect_error(with(moonlight, R"("n_group": 1)", R"("n_group": 3)"), errc::parse_error,
               {"\"n_group\" is 3, which does not divide the 64 n_routed_experts"});
  expect_error(with(deepseek_v3, R"("topk_group": 4)", R"("topk_group": 9)"), errc::parse_error,
               {"\"topk_group\" is 9, more than the 8 expert groups"});
  expect_error(with(deepseek_v3, R"("topk_group": 4)", R"("topk_group": 0)"), errc::parse_error,
               {"\"topk_group\" is 0, expected a positive number"});
  expect_error(
      with(with(deepseek_v3, R"("topk_group": 4)", R"("topk_group": 1)"),
           R"("num_experts_per_tok": 8)", R"("num_experts_per_tok": 40)"),
      errc::parse_error,
      {"\"num_experts_per_tok\" is 40, more than the 32 experts in the topk_group groups"});
  expect_error(with(moonlight, R"("scoring_func": "sigmoid")", R"("scoring_func": "relu")"),
               errc::parse_error, {"\"scoring_func\" is \"relu\"", "\"sigmoid\" or \"softmax\""});
  expect_error(with(moonlight, R"("topk_method": "noaux_tc")", R"("topk_method": "random")"),
               errc::parse_error, {"\"topk_method\" is \"random\""});
  expect_error(with(moonlight, R"("hidden_size": 2048)", R"("hidden_size": 0)"), errc::parse_error,
               {"\"hidden_size\" is 0, expected a positive number"});
  expect_error(with(moonlight, R"("qk_rope_head_dim": 64)", R"("qk_rope_head_dim": 63)"),
               errc::parse_error, {"\"qk_rope_head_dim\" is 63", "even"});
  expect_error(with(moonlight, R"("first_k_dense_replace": 1)", R"("first_k_dense_replace": 28)"),
               errc::parse_error, {"\"first_k_dense_replace\" is 28"});
  expect_error(with(moonlight, R"("moe_layer_freq": 1)", R"("moe_layer_freq": 0)"),
               errc::parse_error, {"\"moe_layer_freq\" is 0"});
  expect_error(with(moonlight, R"("q_lora_rank": null)", R"("q_lora_rank": -1)"), errc::parse_error,
               {"\"q_lora_rank\" is -1"});
  expect_error(with(k2_instruct, R"("factor": 32.0)", R"("factor": 0.5)"), errc::parse_error,
               {"\"rope_scaling.factor\" is 0.5", "at least 1"});
  expect_error(with(k2_instruct, R"("beta_fast": 1.0)", R"("beta_fast": 0.5)"), errc::parse_error,
               {"\"rope_scaling.beta_fast\"", "beta_fast >= beta_slow > 0"});
  expect_error(with(moonlight, R"("rope_theta": 50000)", R"("rope_theta": 0)"), errc::parse_error,
               {"\"rope_theta\" is 0"});
}

BOOST_AUTO_TEST_CASE(unsupported_models_and_quantizations) {
  expect_error(with(moonlight, R"("model_type": "deepseek_v3")", R"("model_type": "llama")"),
               errc::unsupported, {"\"model_type\" is \"llama\""});
  expect_error(with(fill(k25), R"("model_type": "kimi_k25")", R"("model_type": "llava")"),
               errc::unsupported, {"\"model_type\" is \"llava\" with a text_config"});
  expect_error(with(fill(k25), R"("text_config": {)", R"("unused": {)"), errc::parse_error,
               {"\"text_config\" is missing"});
  expect_error(with(moonlight, R"("hidden_act": "silu")", R"("hidden_act": "gelu")"),
               errc::unsupported, {"\"hidden_act\" is \"gelu\""});
  expect_error(with(moonlight, R"("attention_bias": false)", R"("attention_bias": true)"),
               errc::unsupported, {"\"attention_bias\" is true"});
  expect_error(with(moonlight, R"("rope_scaling": null)",
                    R"("rope_scaling": {"type": "linear", "factor": 2.0})"),
               errc::unsupported, {"\"rope_scaling.type\" is \"linear\""});

  // quantization_config
  const auto k2q = [&](const std::string& from, const std::string& to) {
    return with(k2_instruct, from, to);
  };
  expect_error(k2q(R"("quant_method": "fp8")", R"("quant_method": "awq")"), errc::unsupported,
               {"\"quantization_config.quant_method\" is \"awq\"", "compressed-tensors"});
  expect_error(k2q(R"("quant_method": "fp8",)", ""), errc::parse_error,
               {"\"quantization_config.quant_method\" is missing"});
  expect_error(k2q(R"("fmt": "e4m3")", R"("fmt": "e5m2")"), errc::unsupported,
               {"\"quantization_config.fmt\" is \"e5m2\""});
  expect_error(k2q(R"("activation_scheme": "dynamic")", R"("activation_scheme": "static")"),
               errc::unsupported, {"activation_scheme"});
  expect_error(k2q(R"(,
                          "weight_block_size": [128, 128])",
                   ""),
               errc::unsupported, {"weight_block_size", "per-tensor"});
  expect_error(k2q(R"([128, 128])", R"([128])"), errc::parse_error,
               {"weight_block_size", "[rows, cols]"});
  expect_error(k2q(R"([128, 128])", R"([128, 0])"), errc::parse_error,
               {"weight_block_size", "positive"});

  const auto k25q = [&](const std::string& from, const std::string& to) {
    return fill(k25, with(k25_quant, from, to));
  };
  expect_error(k25q(R"("num_bits": 4)", R"("num_bits": 8)"), errc::unsupported,
               {"\"text_config.quantization_config.config_groups.group_0.weights.num_bits\" is 8",
                "symmetric int4"});
  expect_error(k25q(R"("symmetric": true)", R"("symmetric": false)"), errc::unsupported,
               {"weights.symmetric\" is false"});
  expect_error(k25q(R"("strategy": "group")", R"("strategy": "channel")"), errc::unsupported,
               {"weights.strategy\" is \"channel\""});
  expect_error(k25q(R"("type": "int")", R"("type": "float")"), errc::unsupported,
               {"weights.type\" is \"float\""});
  expect_error(k25q(R"("group_size": 32)", R"("group_size": 0)"), errc::parse_error,
               {"weights.group_size\" is 0"});
  expect_error(k25q(R"("format": "pack-quantized")", R"("format": "int-quantized")"),
               errc::unsupported,
               {"\"text_config.quantization_config.format\" is \"int-quantized\""});
  expect_error(k25q(R"("quantization_status": "compressed")", R"("quantization_status": "frozen")"),
               errc::unsupported, {"quantization_status"});
  expect_error(k25q(R"("input_activations": null)", R"("input_activations": {"num_bits": 8})"),
               errc::unsupported, {"group_0.input_activations\" is set"});
  expect_error(k25q(R"("targets": ["Linear"])", R"("targets": ["Embedding"])"), errc::unsupported,
               {"group_0.targets\"", "Linear"});
  expect_error(k25q(R"("actorder": null)", R"("actorder": "group")"), errc::unsupported,
               {"actorder"});
  expect_error(k25q(R"("config_groups": {)", R"("config_groups": {"group_1": {}, )"),
               errc::unsupported, {"config_groups\" has 2 groups"});
  expect_error(k25q(R"("re:.*self_attn.*")", R"("re:(unclosed")"), errc::parse_error,
               {"quantization_config.ignore\"", "(unclosed", "not a valid regex"});
}

BOOST_AUTO_TEST_CASE(from_file) {
  const fs::path dir =
      fs::temp_directory_path() / ("troupe_test_deepseek_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << moonlight;
  const config c = config::from_file(dir / "config.json");
  BOOST_TEST(c.hidden_size == 2048);
  std::ofstream(dir / "bad.json") << with(moonlight, R"("hidden_size": 2048)",
                                          R"("hidden_size": true)");
  try {
    config::from_file(dir / "bad.json");
    BOOST_FAIL("no error");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.message().find((dir / "bad.json").string() + ": \"hidden_size\" is boolean") == 0u,
               e.message());
  }
  try {
    config::from_file(dir / "missing.json");
    BOOST_FAIL("no error");
  } catch (const troupe::error& e) {
    BOOST_TEST((e.code() == errc::not_found));
    BOOST_TEST(e.message().find("missing.json") != std::string::npos);
  }
  fs::remove_all(dir);
}
