// Roofline numerator of a decode step: the Moonlight shape by hand (3.218 GB at batch 1 with INT4
// experts, as tools/reference/hf_eager_decode_bench.py's weight_bytes gives), counts from an
// actual routing, q_lora models, and refusals.
#include <boost/test/unit_test.hpp>

#include <cmath>

#include "troupe/error.hpp"
#include "troupe/gpu/decode_roofline.hpp"

using namespace troupe::gpu;
using troupe::deepseek::config;

namespace {

// moonshotai/Moonlight-16B-A3B-Instruct (models-and-formats.md §1.4).
config moonlight() {
  config c;
  c.model_type = "deepseek_v3";
  c.vocab_size = 163840;
  c.hidden_size = 2048;
  c.intermediate_size = 11264;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = c.num_key_value_heads = 16;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(decode_roofline_tests)

BOOST_AUTO_TEST_CASE(moonlight_by_hand) {
  const config c = moonlight();
  // Per layer, bf16: q 2048·16·192 + kv_a 2048·576 + kv_b 512·16·256 + o 16·128·2048 parameters.
  const int64_t attention = 27 * 2 * (6291456 + 1179648 + 2097152 + 4194304);
  const int64_t dense = 2 * 3 * 2048 * 11264;                 // layer 0
  const int64_t shared = 26 * 2 * (2 * 3 * 2048 * 1408);      // 2 shared experts, 26 MoE layers
  const int64_t router = 26 * 2 * 2048 * 64;
  const int64_t lm_head = 2 * int64_t{163840} * 2048;
  const double expert = 3 * 2048 * 1408 * (0.5 + 2.0 / 32);   // 4 866 048 B
  BOOST_CHECK_EQUAL(routed_expert_bytes(c, true), 4866048.0);
  BOOST_CHECK_EQUAL(routed_expert_bytes(c, false), 3.0 * 2048 * 1408 * 2);
  const auto b1 = expected_weight_bytes(c, 1, true);
  BOOST_CHECK_EQUAL(b1.attention, attention);
  BOOST_CHECK_EQUAL(b1.dense_mlp, dense);
  BOOST_CHECK_EQUAL(b1.shared, shared);
  BOOST_CHECK_EQUAL(b1.router, router);
  BOOST_CHECK_EQUAL(b1.lm_head, lm_head);
  BOOST_CHECK_CLOSE(b1.routed, 26 * 6 * expert, 1e-9);  // batch 1: exactly top_k experts a layer
  BOOST_CHECK_CLOSE(b1.total(), 3218276352.0, 1e-9);     // hf_eager_decode_bench.py: 3.218 GB
  // Batches 8 and 64: 64·(1 − (58/64)^B) experts a layer (the HF script's values).
  BOOST_CHECK_CLOSE(expected_weight_bytes(c, 8, true).total(), 6872325548.02236, 1e-9);
  BOOST_CHECK_CLOSE(expected_weight_bytes(c, 64, true).total(), 10541410433.567368, 1e-9);
  BOOST_CHECK_CLOSE(expected_weight_bytes(c, 1, false).total(), 5158207488.0, 1e-9);
  // From a routing: 6 distinct experts in every layer is the batch-1 figure.
  const std::vector<int64_t> six(26, 6);
  BOOST_CHECK_CLOSE(weight_bytes_of_step(c, six, true).total(), 3218276352.0, 1e-9);
  std::vector<int64_t> all(26, 64);
  BOOST_CHECK_CLOSE(weight_bytes_of_step(c, all, true).total(),
                    double(attention + dense + shared + router + lm_head) + 26 * 64 * expert, 1e-9);
}

BOOST_AUTO_TEST_CASE(q_lora_models_count_both_projections) {
  config c = moonlight();
  c.q_lora_rank = 1536;
  const auto b = expected_weight_bytes(c, 1, true);
  const int64_t per_layer = 2 * (2048 * 1536 + 1536 * 16 * 192 + 1179648 + 2097152 + 4194304);
  BOOST_CHECK_EQUAL(b.attention, 27 * per_layer);
}

BOOST_AUTO_TEST_CASE(experts_touched_counts_distinct_live_experts_per_layer) {
  // 2 MoE layers, 3 rows (row 2 is padding), top 2, 8 experts.
  const std::vector<int32_t> ids{1, 2, 2, 3, 7, 7,   // layer 0: rows {1,2} {2,3}; padding {7,7}
                                 5, 5, 5, 5, 0, 1};  // layer 1: {5,5} {5,5}; padding
  const auto t = experts_touched(ids, 2, 3, 2, 2, 8);
  BOOST_REQUIRE_EQUAL(t.size(), 2u);
  BOOST_CHECK_EQUAL(t[0], 3);
  BOOST_CHECK_EQUAL(t[1], 1);
  const auto all_rows = experts_touched(ids, 2, 3, 3, 2, 8);
  BOOST_CHECK_EQUAL(all_rows[0], 4);
  BOOST_CHECK_EQUAL(all_rows[1], 3);
  // Out-of-range ids (dropped padding pairs) are not experts.
  const std::vector<int32_t> dropped{8, 8, -1, 0};
  BOOST_CHECK_EQUAL(experts_touched(dropped, 1, 2, 2, 2, 8)[0], 1);
  BOOST_CHECK_THROW(experts_touched(ids, 3, 3, 2, 2, 8), troupe::error);
  BOOST_CHECK_THROW(experts_touched(ids, 2, 3, 4, 2, 8), troupe::error);
}

BOOST_AUTO_TEST_CASE(refusals) {
  const config c = moonlight();
  const std::vector<int64_t> short_list(25, 6);
  BOOST_CHECK_THROW(weight_bytes_of_step(c, short_list, true), troupe::error);
  std::vector<int64_t> too_many(26, 6);
  too_many[3] = 65;
  BOOST_CHECK_THROW(weight_bytes_of_step(c, too_many, true), troupe::error);
  BOOST_CHECK_THROW(expected_weight_bytes(c, 0, true), troupe::error);
}

BOOST_AUTO_TEST_SUITE_END()
