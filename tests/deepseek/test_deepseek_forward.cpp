// The DeepSeek-V3 forward pass against HF transformers (tests/fixtures/deepseek, written by
// tools/reference/make_deepseek_fixtures.py): logits at every prompt position and 32 greedy tokens
// for a Kimi K2.5-like INT4 checkpoint, a Moonlight-like BF16 one and a DeepSeek-V3-like FP8 one
// with grouped routing; the absorbed latent-cache decode against the plain form; batching and
// expert shards that leave logits bit-identical; bad checkpoints.

#define BOOST_TEST_MODULE deepseek_forward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/deepseek/expert_shards.hpp"
#include "troupe/deepseek/experts.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/safetensors.hpp"
#include "deepseek/deepseek_test_support.hpp"

namespace fs = std::filesystem;
using namespace troupe;
using namespace troupe::deepseek;
using namespace troupe::deepseek::test;

namespace {

const char* const configs[] = {"k25_int4", "moonlight", "v3_fp8"};

}  // namespace

BOOST_AUTO_TEST_CASE(logits_and_greedy_match_hf_transformers) {
  for (const char* name : configs) {
    BOOST_TEST_CONTEXT("fixture " << name) {
      auto m = model::load(fixtures / name);
      const int64_t V = m->cfg().vocab_size;
      batch_decoder d(m, {.threads = 2, .attention = attention_form::plain});
      batch_decoder fast(m, {.threads = 2, .attention = attention_form::automatic});
      double worst = 0;
      for (const auto& c : load_expected(fixtures / name / "expected.safetensors")) {
        const auto logits = run_prompt(d, c.prompt);
        BOOST_REQUIRE_EQUAL(logits.size(), c.logits.size());
        for (size_t p = 0; p < c.prompt.size(); ++p)
          worst = std::max(worst, relative_error(logits.data() + p * V, c.logits.data() + p * V, V));
        const auto got = greedy(fast, c.prompt);
        BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), c.greedy.begin(), c.greedy.end());
      }
      BOOST_TEST_MESSAGE(name << ": largest relative logit error against HF " << worst);
      BOOST_CHECK_LE(worst, 1e-3);
    }
  }
}

BOOST_AUTO_TEST_CASE(absorbed_decode_matches_plain) {
  for (const char* name : configs) {
    BOOST_TEST_CONTEXT("fixture " << name) {
      auto m = model::load(fixtures / name);
      const int64_t V = m->cfg().vocab_size;
      batch_decoder plain(m, {.threads = 2, .attention = attention_form::plain});
      batch_decoder absorbed(m, {.threads = 2, .attention = attention_form::absorbed});
      const auto c = load_expected(fixtures / name / "expected.safetensors")[3];
      const uint32_t a = plain.open(64), b = absorbed.open(64);
      double worst = 0;
      for (int32_t tok : c.prompt) {
        batch_decoder::chunk ca{a, {&tok, 1}}, cb{b, {&tok, 1}};
        auto la = plain.decode({&ca, 1});
        std::vector<float> keep(la.begin(), la.end());
        auto lb = absorbed.decode({&cb, 1});
        worst = std::max(worst, relative_error(lb.data(), keep.data(), V));
      }
      BOOST_TEST_MESSAGE(name << ": absorbed vs plain, largest relative difference " << worst);
      BOOST_CHECK_LE(worst, 1e-5);
      // The absorbed form also prefills: whole prompt at once against HF.
      const auto all = run_prompt(absorbed, c.prompt);
      for (size_t p = 0; p < c.prompt.size(); ++p)
        BOOST_CHECK_LE(relative_error(all.data() + p * V, c.logits.data() + p * V, V), 1e-3);
    }
  }
}

BOOST_AUTO_TEST_CASE(bf16_activations_round_where_the_gpu_decoder_does) {
  // options::bf16_activations, the CPU reference of gpu::cuda_decoder's numerics: every GEMM
  // input, the latent cache and the routed experts' input and SiLU output rounded to bf16.
  // Deterministic, independent of the thread count, and on the K2.5-like fixture within a few 1e-2
  // of fp32 at the first position but up to ~0.6 at later ones: a tiny random model whose
  // routed-expert choices have near-ties that bf16 rounding swaps. This is why the GPU tests
  // compare against this reference, not against fp32.
  auto m = model::load(fixtures / "k25_int4");
  const int64_t V = m->cfg().vocab_size;
  batch_decoder fp32(m, {.threads = 2, .attention = attention_form::absorbed});
  const batch_decoder::options bf16{
      .threads = 2, .attention = attention_form::absorbed, .bf16_activations = true};
  batch_decoder a(m, bf16);
  batch_decoder b(m, {.threads = 1, .attention = bf16.attention, .bf16_activations = true});
  double first = 0, worst = 0;
  for (const auto& c : load_expected(fixtures / "k25_int4" / "expected.safetensors")) {
    const auto x = run_prompt(a, c.prompt), y = run_prompt(b, c.prompt);
    const auto f = run_prompt(fp32, c.prompt);
    BOOST_REQUIRE_EQUAL(x.size(), f.size());
    // The thread count has no effect.
    BOOST_CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
    first = std::max(first, relative_error(x.data(), f.data(), V));
    for (size_t p = 0; p < c.prompt.size(); ++p)
      worst = std::max(worst, relative_error(x.data() + p * V, f.data() + p * V, V));
  }
  BOOST_TEST_MESSAGE("bf16 activations against fp32: largest relative logit difference " << first
                     << " at the first position, " << worst << " over all positions");
  BOOST_CHECK_GT(first, 1e-4);  // the roundings are applied
  BOOST_CHECK_LE(first, 5e-2);
}

BOOST_AUTO_TEST_CASE(shards_leave_logits_bit_identical_and_batching_within_rounding) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  for (const char* name : {"k25_int4", "v3_fp8"}) {
    BOOST_TEST_CONTEXT("fixture " << name) {
      auto m = model::load(fixtures / name);
      const int64_t V = m->cfg().vocab_size;
      const auto cases = load_expected(fixtures / name / "expected.safetensors");
      auto run_batch = [&](expert_runner* runner) {
        batch_decoder d(m, {.threads = 2, .attention = attention_form::automatic, .experts = runner});
        std::vector<batch_decoder::chunk> chunks;
        for (const auto& c : cases) chunks.push_back({d.open(128), c.prompt});
        auto out = d.decode(chunks);
        return std::vector<float>(out.begin(), out.end());
      };
      const auto local = run_batch(nullptr);
      // Alone, each prompt's logits agree with the batch up to the rounding of the INT4 kernel's
      // token blocking.
      batch_decoder alone(m);
      for (size_t i = 0; i < cases.size(); ++i) {
        const auto ref = run_prompt(alone, cases[i].prompt, false);
        BOOST_CHECK_LE(relative_error(local.data() + i * V, ref.data(), V), 1e-5);
      }
      // Whatever the partition of the experts, every (token, slot) row is computed the same way.
      for (int shards : {1, 2, 3, 16}) {
        expert_shard_group group(sys, m, shards);
        const auto sharded = run_batch(&group);
        BOOST_CHECK_MESSAGE(std::memcmp(sharded.data(), local.data(), local.size() * sizeof(float)) == 0,
                            shards << " shards change the logits");
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(shard_group_partitions_all_experts) {
  caf::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto m = model::load(fixtures / "moonlight");
  expert_shard_group g(sys, m, 3);
  BOOST_CHECK_EQUAL(g.shards(), 3);
  BOOST_CHECK_EQUAL(g.experts_of(0).first, 0);
  BOOST_CHECK_EQUAL(g.experts_of(0).second, g.experts_of(1).first);
  BOOST_CHECK_EQUAL(g.experts_of(2).second, m->cfg().n_routed_experts);
  BOOST_CHECK_THROW(expert_shard_group(sys, m, 0), troupe::error);
  BOOST_CHECK_THROW(expert_shard_group(sys, m, 17), troupe::error);
}

BOOST_AUTO_TEST_CASE(router_follows_hf_rules) {
  // 8 experts in 4 groups of 2, top-2 of the best 2 groups; bias changes selection, not weights.
  config c;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 2;
  c.n_group = 4;
  c.topk_group = 2;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.0;
  c.scoring_func = "sigmoid";
  const float logits[8] = {3, -3, 0.5f, 0.4f, 2.9f, 2.8f, -1, -1};
  const float bias[8] = {0, 0, 0, 0, 0, 0, 0, 0.9f};
  int32_t ids[2];
  float w[2];
  route(c, logits, bias, 1, ids, w);
  // Group scores (sum of the two best biased scores): {0,1} s(3)+s(-3) = 1.0; {2,3} ≈ 1.22;
  // {4,5} ≈ 1.89; {6,7} ≈ 1.44 with the bias. Kept: {4,5} and {6,7}, so expert 0 (the best raw
  // score) is out. Selection on biased scores: 7 (0.27 + 0.9) before 4 (0.948) before 5.
  BOOST_CHECK_EQUAL(ids[0], 7);
  BOOST_CHECK_EQUAL(ids[1], 4);
  // Weights from the unbiased scores, normalised, times routed_scaling_factor.
  const double s4 = 1 / (1 + std::exp(-2.9)), s7 = 1 / (1 + std::exp(1.0));
  BOOST_CHECK_CLOSE(w[0], 2.0 * s7 / (s4 + s7), 1e-4);
  BOOST_CHECK_CLOSE(w[1], 2.0 * s4 / (s4 + s7), 1e-4);
  // Without groups and bias: plain top-2 of the sigmoid scores.
  c.n_group = 1;
  c.topk_group = 1;
  c.norm_topk_prob = false;
  route(c, logits, nullptr, 1, ids, w);
  BOOST_CHECK_EQUAL(ids[0], 0);
  BOOST_CHECK_EQUAL(ids[1], 4);
  BOOST_CHECK_CLOSE(w[0], 2.0 / (1 + std::exp(-3.0)), 1e-4);
}

namespace {

fs::path copy_fixture(const char* name, const std::string& tag) {
  const fs::path dir = fs::temp_directory_path() / ("troupe_ds_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::copy(fixtures / name, dir, fs::copy_options::recursive);
  return dir;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

}  // namespace

BOOST_AUTO_TEST_CASE(bad_checkpoints_name_what_is_wrong) {
  {  // a missing shard
    const auto dir = copy_fixture("k25_int4", "shard");
    fs::remove(dir / "model-00002-of-00002.safetensors");
    const auto msg = error_of([&] { model::load(dir); }, errc::not_found);
    BOOST_CHECK_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos);
    fs::remove_all(dir);
  }
  {  // a shape that disagrees with the config
    const auto dir = copy_fixture("moonlight", "shape");
    auto text = read(dir / "config.json");
    const auto at = text.find("\"moe_intermediate_size\": 32");
    BOOST_REQUIRE(at != std::string::npos);
    text.replace(at, 27, "\"moe_intermediate_size\": 48");
    write(dir / "config.json", text);
    const auto msg = error_of([&] { model::load(dir); }, errc::parse_error);
    BOOST_CHECK_MESSAGE(msg.find("mlp.experts.0.gate_proj.weight") != std::string::npos ||
                            msg.find("shared_experts") != std::string::npos,
                        msg);
    BOOST_CHECK_NE(msg.find("[32, 64]"), std::string::npos);
    fs::remove_all(dir);
  }
  {  // an unsupported quantisation
    const auto dir = copy_fixture("k25_int4", "quant");
    auto text = read(dir / "config.json");
    for (size_t at; (at = text.find("\"compressed-tensors\"")) != std::string::npos;)
      text.replace(at, 20, "\"awq\"");
    write(dir / "config.json", text);
    const auto msg = error_of([&] { model::load(dir); }, errc::unsupported);
    BOOST_CHECK_NE(msg.find("awq"), std::string::npos);
    fs::remove_all(dir);
  }
  {  // no config.json
    const auto dir = copy_fixture("moonlight", "noconfig");
    fs::remove(dir / "config.json");
    const auto msg = error_of([&] { model::load(dir); }, errc::not_found);
    BOOST_CHECK_NE(msg.find("config.json"), std::string::npos);
    fs::remove_all(dir);
  }
}

BOOST_AUTO_TEST_CASE(decode_rejects_bad_requests_without_changing_state) {
  auto m = model::load(fixtures / "moonlight");
  batch_decoder d(m);
  const uint32_t s = d.open(4);
  const int32_t bad[] = {1, 100000};
  batch_decoder::chunk ch{s, bad};
  error_of([&] { d.decode({&ch, 1}); }, errc::invalid_argument);
  BOOST_CHECK_EQUAL(d.position(s), 0);
  const int32_t five[] = {1, 2, 3, 4, 5};
  ch.tokens = five;
  error_of([&] { d.decode({&ch, 1}); }, errc::budget_exceeded);
  BOOST_CHECK_EQUAL(d.position(s), 0);
  error_of([&] { d.open(0); }, errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(a_copied_prefix_continues_as_the_whole_prompt) {
  // copy_prefix and truncate (the engine's prefix cache): the rest of a prompt run after k copied
  // positions gives the logits it gives after the same k positions kept in place, bit for bit,
  // and those of the whole prompt run at once within rounding (this decoder's products of a
  // chunk of tokens sum in an order that depends on the chunk's size).
  for (const char* name : configs) {
    BOOST_TEST_CONTEXT("fixture " << name) {
      auto m = model::load(fixtures / name);
      const auto V = static_cast<size_t>(m->cfg().vocab_size);
      batch_decoder d(m, {.threads = 2, .attention = attention_form::automatic});
      for (const auto& c : load_expected(fixtures / name / "expected.safetensors")) {
        const auto n = static_cast<int64_t>(c.prompt.size());
        if (n < 4) continue;
        const int64_t k = n - 2;
        const uint32_t whole = d.open(n), part = d.open(2 * n);
        batch_decoder::chunk all{whole, c.prompt};
        auto l = d.decode({&all, 1});
        const std::vector<float> want(l.begin(), l.begin() + static_cast<ptrdiff_t>(V));
        d.copy_prefix(whole, part, k);
        BOOST_CHECK_EQUAL(d.position(part), k);
        batch_decoder::chunk rest{part, std::span(c.prompt).subspan(static_cast<size_t>(k))};
        auto l2 = d.decode({&rest, 1});
        const std::vector<float> copied(l2.begin(), l2.begin() + static_cast<ptrdiff_t>(V));
        BOOST_CHECK_LE(relative_error(copied.data(), want.data(), static_cast<int64_t>(V)), 1e-5);
        d.truncate(whole, k);
        rest.seq = whole;
        auto kept = d.decode({&rest, 1});
        BOOST_CHECK(std::equal(copied.begin(), copied.end(), kept.begin()));
        error_of([&] { d.copy_prefix(whole, whole, 1); }, errc::invalid_argument);
        error_of([&] { d.copy_prefix(whole, part, n + 1); }, errc::invalid_argument);
        error_of([&] { d.truncate(part, n + 1); }, errc::invalid_argument);
        BOOST_CHECK_EQUAL(d.position(part), n);
        d.close(whole);
        d.close(part);
      }
    }
  }
}
