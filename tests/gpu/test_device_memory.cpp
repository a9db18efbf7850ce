// Device memory budgets: the weight bytes planned from the config equal what the loaded K2.5-like
// INT4 fixture holds (one device), split over devices the experts add up and the replicated part
// repeats; Kimi K2.5's full config against one and eight 141 GB devices: refused on one with a
// message that names every size, accepted on eight.
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "troupe/deepseek/config.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/device_memory.hpp"

namespace gpu = troupe::gpu;
namespace ds = troupe::deepseek;

namespace {

// Under $TROUPE_SOURCE_DIR when set (scripts/gpu-check runs this on a copy of the tree elsewhere).
const std::filesystem::path k25_dir =
    std::filesystem::path(std::getenv("TROUPE_SOURCE_DIR") != nullptr ? std::getenv("TROUPE_SOURCE_DIR")
                                                                       : TROUPE_SOURCE_DIR) /
    "tests/fixtures/deepseek/k25_int4";

int64_t mlp_bytes(const ds::mlp_weights& w) { return w.gate.bytes() + w.up.bytes() + w.down.bytes(); }

// Kimi K2.5's text config (moonshotai/Kimi-K2.5 config.json) on the fixture's quantization block,
// which is K2.5's: INT4 group-32 experts, attention, shared experts, dense MLP and lm_head in bf16.
ds::config kimi_k25() {
  ds::config c = ds::config::from_file(k25_dir / "config.json");
  c.vocab_size = 163840;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 61;
  c.num_attention_heads = c.num_key_value_heads = 64;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 384;
  c.n_shared_experts = 1;
  c.num_experts_per_tok = 8;
  c.first_k_dense_replace = 1;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(device_memory_suite)

BOOST_AUTO_TEST_CASE(weights_planned_from_the_config_equal_the_loaded_fixture) {
  const auto m = ds::model::load(k25_dir);
  const ds::config& c = m->cfg();
  BOOST_TEST_REQUIRE((c.quant.kind == ds::weight_quant::int4_group));
  int64_t replicated = c.vocab_size * c.hidden_size * 2 + m->lm_head().bytes() +
                       static_cast<int64_t>(m->final_norm().size()) * 4;
  int64_t experts = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const auto& L = m->layer(l);
    replicated += static_cast<int64_t>(L.attn_norm.size() + L.ffn_norm.size() + L.kv_a_norm.size() +
                                       L.q_a_norm.size()) * 4;
    replicated += L.q_a.bytes() + L.q_b.bytes() + L.q.bytes() + L.kv_a.bytes() + L.kv_b.bytes() +
                  L.o.bytes();
    if (!L.moe) {
      replicated += mlp_bytes(L.dense);
      continue;
    }
    replicated += static_cast<int64_t>(L.router.size() + L.router_bias.size()) * 4 + mlp_bytes(L.shared);
    for (const auto& e : L.experts) experts += mlp_bytes(e);
  }
  const gpu::expert_placement one(c.n_routed_experts, 1);
  const auto p = gpu::plan_device_memory(c, one, 0, 3, 4);
  BOOST_TEST(p.replicated_weight_bytes == replicated);
  BOOST_TEST(p.expert_weight_bytes == experts);
  BOOST_TEST(p.kv_cache_bytes == 3 * 64 * c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 2);
  BOOST_TEST(p.workspace_bytes > gpu::gemm_workspace_bytes);
  BOOST_TEST(p.total() == p.replicated_weight_bytes + p.expert_weight_bytes + p.kv_cache_bytes +
                              p.workspace_bytes);
  // Three devices: experts split (16 = 5 + 5 + 6), the rest repeated on each.
  const gpu::expert_placement three(c.n_routed_experts, 3);
  int64_t sum = 0;
  for (int d = 0; d < 3; ++d) {
    const auto q = gpu::plan_device_memory(c, three, d, 3, 4);
    BOOST_TEST(q.replicated_weight_bytes == replicated);
    sum += q.expert_weight_bytes;
  }
  BOOST_TEST(sum == experts);
}

BOOST_AUTO_TEST_CASE(kimi_k25_needs_several_h200s) {
  const ds::config c = kimi_k25();
  // 60 MoE layers × 384 experts × 3 matrices of 2048 × 7168 INT4 weights (9/16 byte each).
  const int64_t all_experts = int64_t{60} * 384 * 3 * 2048 * 7168 * 9 / 16;
  const gpu::expert_placement one(384, 1), eight(384, 8);
  const auto p1 = gpu::plan_device_memory(c, one, 0, 1024, 64);
  BOOST_TEST(p1.expert_weight_bytes == all_experts);
  BOOST_TEST(p1.replicated_weight_bytes > int64_t{20} << 30);  // bf16 attention, embeddings, ...
  BOOST_TEST(p1.replicated_weight_bytes < int64_t{30} << 30);
  BOOST_TEST(gpu::kv_page_bytes(c) == 64 * 61 * 576 * 2);
  const int64_t h200 = int64_t{140} << 30;
  try {
    gpu::check_fits(p1, h200, "Kimi-K2.5");
    BOOST_FAIL("Kimi K2.5 fits one H200?");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.code() == troupe::errc::budget_exceeded);
    const std::string& msg = e.message();
    BOOST_TEST_MESSAGE(msg);
    for (const char* part : {"Kimi-K2.5 does not fit", "device 0", "replicated weights",
                             "routed experts 531.", "latent cache", "workspace",
                             "140.00 GiB free", "use more devices"})
      BOOST_TEST(msg.find(part) != std::string::npos, part);
  }
  for (int d = 0; d < 8; ++d) {
    const auto p = gpu::plan_device_memory(c, eight, d, 1024, 64);
    BOOST_TEST(p.expert_weight_bytes == all_experts / 8);
    BOOST_CHECK_NO_THROW(gpu::check_fits(p, h200, "Kimi-K2.5"));
  }
}

BOOST_AUTO_TEST_CASE(bad_requests) {
  const ds::config c = kimi_k25();
  const gpu::expert_placement two(384, 2), wrong(16, 2);
  BOOST_CHECK_THROW((void)gpu::plan_device_memory(c, two, 2, 1, 1), troupe::error);
  BOOST_CHECK_THROW((void)gpu::plan_device_memory(c, two, 0, -1, 1), troupe::error);
  BOOST_CHECK_THROW((void)gpu::plan_device_memory(c, two, 0, 1, 0), troupe::error);
  BOOST_CHECK_THROW((void)gpu::plan_device_memory(c, wrong, 0, 1, 1), troupe::error);
}

BOOST_AUTO_TEST_SUITE_END()
