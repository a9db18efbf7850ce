// The parts of the llama GGUF format that SmolLM2 does not use, against llama.cpp: Llama 3.1
// frequency factors (rope_freqs.weight), linear and YaRN RoPE scaling, attention and
// feed-forward biases, fused attn_qkv, a separate output matrix, F16 embeddings, Q5_0, weight
// matrices in f32, f16 and bf16, and the
// qwen2 architecture (NEOX rope, q/k/v and output biases) and phi3 (fused q/k/v and gate/up, q
// scaled before attention, LongRoPE), qwen3 (q/k norms, wider heads), gemma2 and gemma3 (sliding
// window, post-norms, GELU, soft-capping), granite (multipliers), smollm3 (layers without RoPE),
// and Mixtral-style, qwen2moe and granitemoe (shared experts) and
// qwen3moe mixtures of experts. Tiny
// random-weight models and llama.cpp's logits and greedy tokens on them come from
// tools/reference/make_tiny_llama_fixtures.py (tests/fixtures/llama/tiny); files troupe must
// refuse are there too.

#define BOOST_TEST_MODULE llama_variants
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gguf_test_writer.hpp"
#include "llama/llama_test_support.hpp"
#include "troupe/error.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/llama_model.hpp"

using namespace troupe::llama;
namespace fs = std::filesystem;

namespace {

const fs::path tiny_dir = fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/llama/tiny";

/// llama.cpp's outputs on the tiny models: reference.json (f32 KV cache), or
/// reference_f16_kv.json (its default f16 cache: tools/reference/tiny_f16_kv_reference.py).
troupe::json::value tiny_reference(kv_cache_type kv = kv_cache_type::f32) {
  const fs::path p =
      tiny_dir / (kv == kv_cache_type::f16 ? "reference_f16_kv.json" : "reference.json");
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return troupe::json::parse(ss.str(), p.string());
}

const troupe::json::value& model_entry(const troupe::json::value& ref, const std::string& file) {
  for (const troupe::json::value& m : ref.find("models")->as_array()) {
    if (m.find("file")->as_string() == file) return m;
  }
  throw std::runtime_error("tests/fixtures/llama/tiny's reference has no " + file);
}

int32_t argmax(std::span<const float> v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

/// Largest |troupe - llama.cpp| over the whole first-step logits of a case. The fixture stores
/// each logit to 9 significant digits, which give back the float's exact bits.
double first_step_diff(std::span<const float> logits, const troupe::json::value& expected) {
  const auto& e = expected.as_array();
  BOOST_REQUIRE_EQUAL(logits.size(), e.size());
  double d = 0;
  for (size_t i = 0; i < e.size(); ++i)
    d = std::max(d, std::abs(static_cast<double>(logits[i]) -
                             static_cast<double>(static_cast<float>(e[i].as_number()))));
  return d;
}

/// Every case of `file` through one llama_session with a `kv` cache: first-step logits and all
/// greedy tokens. troupe computes these models bit for bit as llama.cpp does: the first-step
/// logits must be llama.cpp's floats exactly.
void check_against_llama_cpp(const std::string& file, kv_cache_type kv = kv_cache_type::f32) {
  const troupe::json::value ref = tiny_reference(kv);
  const troupe::json::value& entry = model_entry(ref, file);
  auto model = llama_model::load(tiny_dir / file);
  llama_session session(model, 256, 2, kv);
  for (const troupe::json::value& c : entry.find("cases")->as_array()) {
    const auto prompt = test::ids_of(*c.find("prompt_tokens"));
    BOOST_TEST_CONTEXT(file << ", prompt of " << prompt.size() << " tokens") {
      session.reset();
      auto logits = session.decode(prompt);
      const double diff = first_step_diff(logits, *c.find("first_logits"));
      BOOST_TEST_MESSAGE(file << ": " << prompt.size()
                              << "-token prompt, first-step max |logit diff| " << diff);
      BOOST_CHECK_EQUAL(diff, 0.0);
      const auto expected = test::ids_of(*c.find("greedy_tokens"));
      std::vector<int32_t> got;
      for (size_t i = 0; i < expected.size(); ++i) {
        const int32_t next = argmax(logits);
        if (next != expected[i] && std::equal(got.begin(), got.end(), expected.begin())) {
          std::vector<float> sorted(logits.begin(), logits.end());
          std::sort(sorted.rbegin(), sorted.rend());
          BOOST_TEST_MESSAGE("greedy token " << i << " differs: troupe " << next << ", llama.cpp "
                                             << expected[i] << "; troupe's top-2 margin "
                                             << sorted[0] - sorted[1]);
        }
        got.push_back(next);
        logits = session.decode(std::span<const int32_t>(&next, 1));
      }
      BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), expected.begin(), expected.end());
    }
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(llama3_frequency_factors_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "llama3_rope_freqs.gguf");
  BOOST_CHECK(model->hparams().rope_freq_factors);
  BOOST_CHECK_EQUAL(model->hparams().rope_scaling, "none");
  check_against_llama_cpp("llama3_rope_freqs.gguf");
}

BOOST_AUTO_TEST_CASE(linear_scaling_and_biases_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "linear_biases.gguf");
  BOOST_CHECK_EQUAL(model->hparams().rope_scaling, "linear");
  BOOST_CHECK_EQUAL(model->hparams().rope_scaling_factor, 4.0f);
  BOOST_CHECK(model->hparams().biases);
  BOOST_CHECK(!model->hparams().rope_freq_factors);
  check_against_llama_cpp("linear_biases.gguf");
}

BOOST_AUTO_TEST_CASE(yarn_and_fused_qkv_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "yarn_fused_qkv.gguf");
  BOOST_CHECK_EQUAL(model->hparams().rope_scaling, "yarn");
  BOOST_CHECK_EQUAL(model->hparams().rope_original_context, 32);
  check_against_llama_cpp("yarn_fused_qkv.gguf");
}

BOOST_AUTO_TEST_CASE(qwen2_neox_rope_and_biases_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "qwen2_neox.gguf");
  BOOST_CHECK_EQUAL(model->hparams().arch, "qwen2");
  BOOST_CHECK(model->hparams().rope_neox);
  BOOST_CHECK(model->hparams().biases);
  BOOST_CHECK_EQUAL(model->hparams().rope_base, 1e6f);
  BOOST_CHECK_EQUAL(model->hparams().rope_dim, model->hparams().head_dim);
  check_against_llama_cpp("qwen2_neox.gguf");
}

BOOST_AUTO_TEST_CASE(phi3_fused_projections_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "phi_fused.gguf");
  BOOST_CHECK_EQUAL(model->hparams().arch, "phi3");
  BOOST_CHECK(model->hparams().rope_neox);
  BOOST_CHECK(model->hparams().scale_q);
  check_against_llama_cpp("phi_fused.gguf");
}

// Every weight matrix f32, f16 or bf16: llama.cpp rounds the activations to the weight's type
// and sums in vec_dot order for one token, tinyBLAS order for several (kernels/cpu/float_dot.hpp).
BOOST_AUTO_TEST_CASE(float_weight_matrices_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "float_matrices.gguf");
  BOOST_CHECK(!model->hparams().biases);
  check_against_llama_cpp("float_matrices.gguf");
}

// LongRoPE (Phi-3 128k, Phi-3.5): a 256-position sequence past the original context of 64 is
// rotated with rope_factors_long, one within 1024 with rope_factors_short; both scaled by the
// file's attention factor.
BOOST_AUTO_TEST_CASE(phi3_longrope_matches_llama_cpp) {
  for (const char* file : {"phi_longrope.gguf", "phi_longrope_short.gguf"}) {
    auto model = llama_model::load(tiny_dir / file);
    BOOST_CHECK_EQUAL(model->hparams().rope_scaling, "longrope");
    BOOST_CHECK(model->hparams().rope_long_factors);
    check_against_llama_cpp(file);
  }
  // The two sets differ: the long-context model with the short factors is another model.
  const troupe::json::value ref = tiny_reference();
  const troupe::json::value& c = model_entry(ref, "phi_longrope.gguf").find("cases")->as_array()[2];
  auto model = llama_model::load(tiny_dir / "phi_longrope.gguf");
  llama_session within(model, 64, 2);  // within the original context: short factors
  const auto prompt = test::ids_of(*c.find("prompt_tokens"));
  BOOST_REQUIRE_LE(prompt.size(), 64u);
  BOOST_CHECK_GT(first_step_diff(within.decode(prompt), *c.find("first_logits")), 1e-3);
}

// qwen3: NEOX rope after an RMSNorm of each head of q and k, heads of attention.key_length (48)
// rather than hidden / heads (32).
BOOST_AUTO_TEST_CASE(qwen3_qk_norm_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "qwen3_qk_norm.gguf");
  BOOST_CHECK_EQUAL(model->hparams().arch, "qwen3");
  BOOST_CHECK(model->hparams().qk_norm);
  BOOST_CHECK(model->hparams().rope_neox);
  BOOST_CHECK_EQUAL(model->hparams().head_dim, 48);
  BOOST_CHECK_EQUAL(model->hparams().rope_dim, 48);
  check_against_llama_cpp("qwen3_qk_norm.gguf");
}

// qwen3moe: qwen3's attention and softmax-routed experts of expert_feed_forward_length rows.
BOOST_AUTO_TEST_CASE(qwen3moe_experts_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "qwen3moe_experts.gguf");
  BOOST_CHECK_EQUAL(model->hparams().experts, 8);
  BOOST_CHECK_EQUAL(model->hparams().ffn, 32);
  check_against_llama_cpp("qwen3moe_experts.gguf");
}

// gemma3: scaled embeddings, q/k norms, post-norms, GELU, soft-capped logits, and a sliding
// window of 16 positions on every other layer (its own RoPE base, no linear scaling): prompts of
// 33 to 180 tokens mask most of the cache on those layers.
BOOST_AUTO_TEST_CASE(gemma3_sliding_window_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "gemma3_sliding.gguf");
  const llama_hparams& h = model->hparams();
  BOOST_CHECK_EQUAL(h.arch, "gemma3");
  BOOST_CHECK_EQUAL(h.swa_window, 16);
  BOOST_REQUIRE_EQUAL(h.sliding_layers.size(), 2u);
  BOOST_CHECK(h.sliding_layers[0] && !h.sliding_layers[1]);
  BOOST_CHECK(h.gelu && h.post_norms && h.qk_norm && h.scale_q);
  BOOST_CHECK_EQUAL(h.final_softcap, 15.0f);
  BOOST_CHECK_EQUAL(h.embed_scale, std::sqrt(64.0f));
  check_against_llama_cpp("gemma3_sliding.gguf");
}

// gemma2: attention scores soft-capped at 5 before the softmax, logits at llama.cpp's default 30,
// a window of 16 on every other layer by default.
BOOST_AUTO_TEST_CASE(gemma2_soft_capping_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "gemma2_softcap.gguf");
  const llama_hparams& h = model->hparams();
  BOOST_CHECK_EQUAL(h.attn_softcap, 5.0f);
  BOOST_CHECK_EQUAL(h.final_softcap, 30.0f);
  BOOST_CHECK(!h.qk_norm && h.post_norms && h.gelu);
  BOOST_REQUIRE_EQUAL(h.sliding_layers.size(), 2u);
  BOOST_CHECK(h.sliding_layers[0] && !h.sliding_layers[1]);
  check_against_llama_cpp("gemma2_softcap.gguf");
}

// qwen2moe: routed experts whose weights are not renormalised, plus a shared expert gated by
// sigmoid(ffn_gate_inp_shexp · x), on qwen2's attention with q/k/v biases.
BOOST_AUTO_TEST_CASE(qwen2moe_shared_expert_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "qwen2moe_shared.gguf");
  const llama_hparams& h = model->hparams();
  BOOST_CHECK_EQUAL(h.experts, 4);
  BOOST_CHECK_EQUAL(h.ffn, 32);
  BOOST_CHECK_EQUAL(h.shared_ffn, 64);
  BOOST_CHECK(!h.experts_normalized && h.biases && h.rope_neox);
  check_against_llama_cpp("qwen2moe_shared.gguf");
}

// IBM Granite 3: embedding, residual, attention and logit multipliers.
BOOST_AUTO_TEST_CASE(granite_multipliers_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "granite_scales.gguf");
  const llama_hparams& h = model->hparams();
  BOOST_CHECK_EQUAL(h.logit_scale, 3.0f);
  BOOST_CHECK_EQUAL(h.residual_scale, 0.22f);
  BOOST_CHECK_EQUAL(h.embed_scale, 12.0f);
  BOOST_CHECK_EQUAL(h.attention_scale, 0.0078125f);
  check_against_llama_cpp("granite_scales.gguf");
}

// granitemoe: Granite's multipliers around routed experts and an ungated shared expert.
BOOST_AUTO_TEST_CASE(granitemoe_shared_expert_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "granitemoe_shared.gguf");
  BOOST_CHECK_EQUAL(model->hparams().shared_ffn, 64);
  BOOST_CHECK(!model->hparams().shared_gated);
  check_against_llama_cpp("granitemoe_shared.gguf");
}

// SmolLM3: the fourth of four layers attends without RoPE.
BOOST_AUTO_TEST_CASE(smollm3_layers_without_rope_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "smollm3_nope.gguf");
  BOOST_CHECK_EQUAL(model->hparams().no_rope_step, 4);
  check_against_llama_cpp("smollm3_nope.gguf");
}

// Phi-4-mini's shape: NEOX rope on 24 of each head's 32 dimensions with LongRoPE factors for
// those 12 pairs, tied embeddings.
BOOST_AUTO_TEST_CASE(phi3_partial_rotary_longrope_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "phi4mini_partial.gguf");
  BOOST_CHECK_EQUAL(model->hparams().rope_dim, 24);
  BOOST_CHECK(model->hparams().rope_long_factors);
  check_against_llama_cpp("phi4mini_partial.gguf");
}

// OLMo 2: no norms before attention and the feed-forward, norms after them, q and k
// normalised whole; OLMo 3: with a window of 16 on three layers of four (plain RoPE there, YaRN
// on the fourth).
BOOST_AUTO_TEST_CASE(olmo2_and_olmo3_match_llama_cpp) {
  auto olmo2 = llama_model::load(tiny_dir / "olmo2_post_norms.gguf");
  BOOST_CHECK(!olmo2->hparams().pre_norms && olmo2->hparams().qk_norm_whole);
  BOOST_CHECK_EQUAL(olmo2->hparams().swa_window, 0);
  check_against_llama_cpp("olmo2_post_norms.gguf");
  auto olmo3 = llama_model::load(tiny_dir / "olmo3_sliding.gguf");
  const auto& sliding = olmo3->hparams().sliding_layers;
  BOOST_REQUIRE_EQUAL(sliding.size(), 4u);
  BOOST_CHECK(sliding[0] && sliding[1] && sliding[2] && !sliding[3]);
  BOOST_CHECK_EQUAL(olmo3->hparams().rope_scaling, "yarn");
  check_against_llama_cpp("olmo3_sliding.gguf");
}

// ERNIE 4.5 dense: llama's layer (NORM rope) under its own architecture name.
BOOST_AUTO_TEST_CASE(ernie45_matches_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "ernie45_dense.gguf");
  BOOST_CHECK(!model->hparams().rope_neox);
  check_against_llama_cpp("ernie45_dense.gguf");
}

// Ministral 3: YaRN with the file's betas (16, 2) and log multiplier (0.5), and q scaled by
// Llama 4's attention temperature, which grows with the position (0.1 per doubling of 32).
BOOST_AUTO_TEST_CASE(mistral3_yarn_and_temperature_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "mistral3_temperature.gguf");
  BOOST_CHECK_EQUAL(model->hparams().attn_temp_scale, 0.1f);
  BOOST_CHECK_EQUAL(model->hparams().rope_scaling, "yarn");
  check_against_llama_cpp("mistral3_temperature.gguf");
}

// Mixtral's layout: a softmax router picks 2 of 8 SwiGLU experts per token (3-D expert tensors,
// llama.cpp's MUL_MAT_ID arithmetic), experts in Q8_0, Q4_0, Q5_1, Q4_1, Q5_0 and F16.
BOOST_AUTO_TEST_CASE(mixtral_experts_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "mixtral_experts.gguf");
  BOOST_CHECK_EQUAL(model->hparams().experts, 8);
  BOOST_CHECK_EQUAL(model->hparams().experts_used, 2);
  BOOST_CHECK_EQUAL(model->hparams().ffn, 64);
  check_against_llama_cpp("mixtral_experts.gguf");
}

// A Mixtral-layout file quantised by llama.cpp (Q3_K_M): Q4_K experts, which ggml sums in its
// tiled order for an expert with 8 tokens or more of a step and in vec_dot's below.
BOOST_AUTO_TEST_CASE(mixtral_k_quant_experts_match_llama_cpp) {
  auto model = llama_model::load(tiny_dir / "mixtral_q3_k_m.gguf");
  BOOST_CHECK_EQUAL(model->hparams().experts, 4);
  check_against_llama_cpp("mixtral_q3_k_m.gguf");
}

namespace {

/// A one-layer Mixtral-layout model (hidden 32, 4 experts of 32 rows, 2 per token, f32 zeros),
/// with `edit` applied to the tensor list (name -> shape; a missing name is left out).
std::filesystem::path write_moe_model(const troupe::test::scratch& dir,
                                      const std::function<void(std::map<std::string,
                                                               std::vector<uint64_t>>&)>& edit) {
  std::map<std::string, std::vector<uint64_t>> tensors = {
      {"token_embd.weight", {32, 8}},         {"output_norm.weight", {32}},
      {"blk.0.attn_norm.weight", {32}},       {"blk.0.attn_q.weight", {32, 32}},
      {"blk.0.attn_k.weight", {32, 32}},      {"blk.0.attn_v.weight", {32, 32}},
      {"blk.0.attn_output.weight", {32, 32}}, {"blk.0.ffn_norm.weight", {32}},
      {"blk.0.ffn_gate_inp.weight", {32, 4}}, {"blk.0.ffn_gate_exps.weight", {32, 32, 4}},
      {"blk.0.ffn_up_exps.weight", {32, 32, 4}}, {"blk.0.ffn_down_exps.weight", {32, 32, 4}}};
  edit(tensors);
  troupe::test::gguf_writer w;
  using vt = troupe::gguf_value_type;
  w.kv_string("general.architecture", "llama");
  for (auto [key, value] : {std::pair{"embedding_length", 32}, {"block_count", 1},
                            {"feed_forward_length", 32}, {"attention.head_count", 1},
                            {"attention.head_count_kv", 1}, {"expert_count", 4},
                            {"expert_used_count", 2}})
    w.kv(std::string("llama.") + key, vt::u32, uint32_t(value));
  for (const auto& [name, shape] : tensors) {
    uint64_t elements = 1;
    for (uint64_t d : shape) elements *= d;
    w.tensor(name, 0, shape, std::string(elements * 4, '\0'));
  }
  return dir.write(w.bytes());
}

std::string load_error(const std::filesystem::path& p) {
  try {
    llama_model::load(p);
  } catch (const troupe::error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Expert tensors of the wrong shape or missing are refused with their names; a well-formed file
// of zeros loads and decodes (every logit 0).
BOOST_AUTO_TEST_CASE(malformed_expert_tensors_are_refused_clearly) {
  const troupe::test::scratch dir;
  const auto good = write_moe_model(dir, [](auto&) {});
  {
    auto model = llama_model::load(good);
    BOOST_CHECK_EQUAL(model->hparams().experts, 4);
    llama_session session(model, 16, 2);
    const int32_t token = 3;
    for (float v : session.decode(std::span<const int32_t>(&token, 1))) BOOST_CHECK_EQUAL(v, 0.0f);
  }
  const std::string three = load_error(write_moe_model(
      dir, [](auto& t) { t["blk.0.ffn_down_exps.weight"] = {32, 32, 3}; }));
  BOOST_TEST_MESSAGE(three);
  BOOST_CHECK_NE(three.find("blk.0.ffn_down_exps.weight has shape [32, 32, 3]"), std::string::npos);
  BOOST_CHECK_NE(three.find("4 experts"), std::string::npos);
  const std::string flat = load_error(
      write_moe_model(dir, [](auto& t) { t["blk.0.ffn_gate_exps.weight"] = {32, 32}; }));
  BOOST_CHECK_NE(flat.find("blk.0.ffn_gate_exps.weight"), std::string::npos);
  const std::string missing = load_error(
      write_moe_model(dir, [](auto& t) { t.erase("blk.0.ffn_gate_inp.weight"); }));
  BOOST_TEST_MESSAGE(missing);
  BOOST_CHECK_NE(missing.find("blk.0.ffn_gate_inp.weight"), std::string::npos);
}

// All prompts of a model as one step of the batch decoder (the engine's path): the same logits
// as llama.cpp for every sequence, positions and rotations kept per sequence. Not
// float_matrices.gguf: llama.cpp's sum for a float weight depends on the batch (one token or
// several), so its one-token prompt, batched with the others, would be summed as tinyBLAS sums.
// Nor the Mixtral files: their f32 router is such a weight, and how ggml sums a K-quant expert
// depends on how many tokens of the step it takes.
BOOST_AUTO_TEST_CASE(batched_prompts_match_llama_cpp) {
  const troupe::json::value ref = tiny_reference();
  for (const char* file : {"llama3_rope_freqs.gguf", "linear_biases.gguf", "yarn_fused_qkv.gguf",
                           "qwen2_neox.gguf", "phi_fused.gguf", "phi_longrope.gguf",
                           "phi_longrope_short.gguf", "qwen3_qk_norm.gguf",
                           "gemma3_sliding.gguf", "gemma2_softcap.gguf", "granite_scales.gguf",
                           "smollm3_nope.gguf", "olmo2_post_norms.gguf", "olmo3_sliding.gguf",
                           "mistral3_temperature.gguf"}) {
    BOOST_TEST_CONTEXT(file) {
      const troupe::json::value& entry = model_entry(ref, file);
      batch_decoder decoder(llama_model::load(tiny_dir / file), 2);
      std::vector<std::vector<int32_t>> prompts;
      std::vector<batch_decoder::chunk> chunks;
      for (const troupe::json::value& c : entry.find("cases")->as_array())
        prompts.push_back(test::ids_of(*c.find("prompt_tokens")));
      for (const auto& p : prompts) chunks.push_back({decoder.open(256), p});
      const std::span<const float> logits = decoder.decode(chunks);
      const auto vocab = static_cast<size_t>(decoder.model().hparams().vocab);
      size_t i = 0;
      for (const troupe::json::value& c : entry.find("cases")->as_array()) {
        BOOST_CHECK_EQUAL(
            first_step_diff(logits.subspan(i * vocab, vocab), *c.find("first_logits")), 0.0);
        ++i;
      }
    }
  }
}

// llama.cpp's default f16 KV cache (non-flash attention): heads of 32 and 48 (ggml_vec_dot_f16's
// double tail for one token, tinyBLAS for several), sliding windows, soft-capping, q scaled
// before attention, experts; every model the fixture lists, every logit exactly.
BOOST_AUTO_TEST_CASE(f16_kv_cache_matches_llama_cpp) {
  const troupe::json::value ref = tiny_reference(kv_cache_type::f16);
  BOOST_REQUIRE_EQUAL(ref.find("settings")->find("kv_type")->as_string(), "f16");
  const auto& models = ref.find("models")->as_array();
  BOOST_CHECK_GE(models.size(), 6u);
  for (const troupe::json::value& m : models)
    check_against_llama_cpp(m.find("file")->as_string(), kv_cache_type::f16);
}

BOOST_AUTO_TEST_CASE(unsupported_llama_files_are_refused_clearly) {
  const troupe::json::value ref = tiny_reference();
  for (const troupe::json::value& r : ref.find("refused")->as_array()) {
    const std::string file = r.find("file")->as_string();
    const std::string mention = r.find("error_mentions")->as_string();
    BOOST_TEST_CONTEXT(file) {
      try {
        llama_model::load(tiny_dir / file);
        BOOST_ERROR(file << " loaded; troupe must refuse it");
      } catch (const troupe::error& e) {
        const std::string what = e.what();
        BOOST_TEST_MESSAGE(file << ": " << what);
        BOOST_CHECK_NE(what.find(mention), std::string::npos);
        BOOST_CHECK_NE(what.find(file), std::string::npos);  // names the file
      }
    }
  }
}
