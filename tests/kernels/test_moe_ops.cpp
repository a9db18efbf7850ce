// Mixture-of-experts kernels: the softmax router against a plain reference, and MUL_MAT_ID
// against the composition it fuses (one mat_mul per expert over that expert's gathered rows),
// for every weight type, with guard values after every output.

#define BOOST_TEST_MODULE moe_ops
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>
#include <vector>

#include "cpu/moe_ops.hpp"
#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "kernels/print_kernel_types.hpp"
#include "kernels/random_weights.hpp"

namespace kc = troupe::kernels::cpu;
using kc::quant_type;
using kc::status;

namespace {

const quant_type weight_types[] = {
    quant_type::f32,  quant_type::f16,  quant_type::bf16, quant_type::q8_0,   quant_type::q4_0,
    quant_type::q4_1, quant_type::q5_0, quant_type::q5_1, quant_type::q4_k,   quant_type::q5_k,
    quant_type::q6_k, quant_type::q2_k, quant_type::q3_k, quant_type::iq4_nl, quant_type::iq4_xs};

bool k_quant(quant_type t) {
  switch (t) {
    case quant_type::q2_k: case quant_type::q3_k: case quant_type::q4_k: case quant_type::q5_k:
    case quant_type::q6_k: case quant_type::iq4_xs: return true;
    default: return false;
  }
}

constexpr int guard = 16;
bool guard_intact(const std::vector<float>& y, size_t used) {
  for (size_t i = used; i < y.size(); ++i)
    if (!std::isnan(y[i])) return false;
  return true;
}

/// A stack of `experts` random weight matrices of `rows` rows of n elements.
std::vector<unsigned char> random_stack(kc::test::rng& r, quant_type t, int64_t experts,
                                        int64_t rows, int64_t n) {
  std::vector<unsigned char> w;
  for (int64_t i = 0; i < experts * rows; ++i) {
    const auto row = kc::test::random_weights(r, t, n, false);
    w.insert(w.end(), row.begin(), row.end());
  }
  return w;
}

/// What mat_mul_id fuses: for each expert, its pairs' activation rows gathered in pair order and
/// one mat_mul over them (llama.cpp's batched order for float weights and for K-quants from 8
/// rows, as ggml_activations asks; vec_dot's for the rest), scattered back to the pairs.
std::vector<float> per_expert_reference(kc::thread_pool& pool, quant_type t, int64_t experts,
                                        int64_t rows, int64_t n, const unsigned char* w,
                                        const float* x, const std::vector<int32_t>& ids,
                                        int64_t per_row, bool shared_rows) {
  const auto pairs = static_cast<int64_t>(ids.size());
  const auto row_stride = static_cast<size_t>(kc::row_bytes(t, n));
  std::vector<float> y(static_cast<size_t>(pairs * rows));
  std::vector<std::byte> scratch;
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<int64_t> mine;
    for (int64_t p = 0; p < pairs; ++p)
      if (ids[p] == e) mine.push_back(p);
    if (mine.empty()) continue;
    std::vector<float> xs, ys(mine.size() * rows);
    for (int64_t p : mine) {
      const float* row = x + (shared_rows ? p / per_row : p) * n;
      xs.insert(xs.end(), row, row + n);
    }
    kc::quant_type act{};
    BOOST_REQUIRE(kc::activation_type(t, &act));
    const kc::mat_mul_part part{t, rows, w + e * rows * row_stride, row_stride, ys.data(),
                                act == quant_type::f32 || k_quant(t)};
    BOOST_REQUIRE_EQUAL(kc::mat_mul(pool, &part, 1, n, xs.data(),
                                    static_cast<int64_t>(mine.size()), scratch),
                        status::ok);
    for (size_t i = 0; i < mine.size(); ++i)
      std::copy_n(ys.data() + i * rows, rows, y.data() + mine[i] * rows);
  }
  return y;
}

}  // namespace

BOOST_AUTO_TEST_CASE(softmax_routing_takes_the_top_k_and_normalises) {
  kc::test::rng r;
  for (int64_t experts : {1, 4, 8, 15, 16, 40, 64}) {
    for (int64_t k : {int64_t{1}, int64_t{2}, std::min<int64_t>(6, experts)}) {
      if (k > experts) continue;
      BOOST_TEST_CONTEXT(experts << " experts, top " << k) {
        std::vector<float> logits(experts);
        for (auto& v : logits) v = r.real(-4, 4);
        std::vector<int32_t> ids(k, -1);
        std::vector<float> w(k + 1, NAN);
        BOOST_REQUIRE_EQUAL(kc::moe_route_softmax(logits.data(), experts, k, ids.data(), w.data()),
                            status::ok);
        BOOST_CHECK(std::isnan(w[k]));
        // Reference: softmax in double; the chosen are the k most probable, in descending order.
        std::vector<double> p(experts);
        const double mx = *std::max_element(logits.begin(), logits.end());
        double sum = 0;
        for (int64_t e = 0; e < experts; ++e) sum += p[e] = std::exp(double(logits[e]) - mx);
        std::vector<int32_t> order(experts);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[a] > p[b]; });
        double chosen = 0;
        for (int64_t j = 0; j < k; ++j) chosen += p[order[j]];
        for (int64_t j = 0; j < k; ++j) {
          BOOST_CHECK_EQUAL(ids[j], order[j]);
          BOOST_CHECK_CLOSE(double(w[j]), p[order[j]] / chosen, 1e-4);
        }
      }
    }
  }
  // Ties go to the lower index; equal logits give equal weights.
  const float flat[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
  int32_t ids[3];
  float w[3];
  BOOST_REQUIRE_EQUAL(kc::moe_route_softmax(flat, 6, 3, ids, w), status::ok);
  for (int j = 0; j < 3; ++j) {
    BOOST_CHECK_EQUAL(ids[j], j);
    BOOST_CHECK_CLOSE(w[j], 1.0f / 3.0f, 1e-5);
  }
  // Without renormalising (qwen2moe): the chosen probabilities themselves.
  BOOST_REQUIRE_EQUAL(kc::moe_route_softmax(flat, 6, 3, ids, w, false), status::ok);
  for (int j = 0; j < 3; ++j) BOOST_CHECK_CLOSE(w[j], 1.0f / 6.0f, 1e-5);
  BOOST_CHECK_EQUAL(kc::moe_route_softmax(flat, 6, 7, ids, w), status::bad_size);
  BOOST_CHECK_EQUAL(kc::moe_route_softmax(flat, 6, 0, ids, w), status::bad_size);
  BOOST_CHECK_EQUAL(kc::moe_route_softmax(flat, 0, 1, ids, w), status::bad_size);
  BOOST_CHECK_EQUAL(kc::moe_route_softmax(nullptr, 6, 1, ids, w), status::null_pointer);
}

// Below 16 experts the whole softmax is libm's expf (not ggml_v_expf, which differs in the last
// bits for half of all inputs): the weights are exactly these floats, on 2000 random routings.
BOOST_AUTO_TEST_CASE(softmax_routing_of_eight_experts_is_exact) {
  kc::test::rng r;
  int mismatches = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    float logits[8], p[8];
    for (float& v : logits) v = r.real(-3, 3);
    const float mx = *std::max_element(logits, logits + 8);
    double sum = 0;
    for (int e = 0; e < 8; ++e) sum += p[e] = std::exp(logits[e] - mx);
    const auto inv = static_cast<float>(1.0 / sum);
    for (float& v : p) v *= inv;
    int32_t order[8];
    std::iota(order, order + 8, 0);
    std::stable_sort(order, order + 8, [&](int a, int b) { return p[a] > p[b]; });
    const float denom = static_cast<float>(double(p[order[0]]) + double(p[order[1]]));
    int32_t ids[2];
    float w[2];
    BOOST_REQUIRE_EQUAL(kc::moe_route_softmax(logits, 8, 2, ids, w), status::ok);
    mismatches += ids[0] != order[0] || ids[1] != order[1] || w[0] != p[order[0]] / denom ||
                  w[1] != p[order[1]] / denom;
  }
  BOOST_CHECK_EQUAL(mismatches, 0);
}

// Both MUL_MAT_IDs of an expert layer: up and gate read each token's row (shared_rows), down one
// row per pair. Expert 0 takes 9 of the 13 tokens (K-quants: ggml's tiled order), expert 4 none.
BOOST_AUTO_TEST_CASE(mat_mul_id_matches_one_mat_mul_per_expert) {
  constexpr int64_t experts = 5, k = 2, tokens = 13, n = 256;
  constexpr int64_t rows = 37;  // not a multiple of 4: float weights take vec_dot's order anyway
  kc::test::rng r;
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    ids.push_back(t < 9 ? 0 : 3);
    ids.push_back(1 + r.integer(0, 2));
  }
  for (int threads : {1, 3}) {
    kc::thread_pool pool(threads);
    for (quant_type t : weight_types) {
      for (bool shared : {true, false}) {
        BOOST_TEST_CONTEXT(t << (shared ? ", shared rows" : ", a row per pair") << ", "
                             << threads << " threads") {
          const int64_t x_rows = shared ? tokens : tokens * k;
          std::vector<float> x(x_rows * n);
          for (auto& v : x) v = r.real(-2, 2);
          // Two stacks fused: this type and Q8_0 (which shares its activations with Q4_0).
          const auto w = random_stack(r, t, experts, rows, n);
          const auto w8 = random_stack(r, quant_type::q8_0, experts, rows + 3, n);
          std::vector<float> y(tokens * k * rows + guard, NAN);
          std::vector<float> y8(tokens * k * (rows + 3) + guard, NAN);
          const auto rb = static_cast<size_t>(kc::row_bytes(t, n));
          const auto rb8 = static_cast<size_t>(kc::row_bytes(quant_type::q8_0, n));
          const kc::expert_matrices stacks[2] = {
              {t, experts, rows, w.data(), rb, rb * rows, y.data()},
              {quant_type::q8_0, experts, rows + 3, w8.data(), rb8, rb8 * (rows + 3), y8.data()}};
          const kc::expert_pairs pairs{ids.data(), tokens * k, k, shared};
          std::vector<std::byte> scratch;
          BOOST_REQUIRE_EQUAL(kc::mat_mul_id(pool, stacks, 2, n, x.data(), pairs, scratch),
                              status::ok);
          const auto ref = per_expert_reference(pool, t, experts, rows, n, w.data(), x.data(),
                                                ids, k, shared);
          const auto ref8 = per_expert_reference(pool, quant_type::q8_0, experts, rows + 3, n,
                                                 w8.data(), x.data(), ids, k, shared);
          BOOST_CHECK(std::equal(ref.begin(), ref.end(), y.begin()));
          BOOST_CHECK(std::equal(ref8.begin(), ref8.end(), y8.begin()));
          BOOST_CHECK(guard_intact(y, ref.size()));
          BOOST_CHECK(guard_intact(y8, ref8.size()));
        }
      }
    }
  }
}

// Three stacks of three types fused (two K-quants sharing their packed Q8_K activations, and
// Q8_0), on tokens that give one expert 12 pairs.
BOOST_AUTO_TEST_CASE(mat_mul_id_fuses_stacks_of_several_types) {
  constexpr int64_t experts = 4, k = 2, tokens = 12, n = 512, rows = 21;
  kc::test::rng r;
  std::vector<int32_t> ids;
  for (int64_t t = 0; t < tokens; ++t) {
    ids.push_back(2);
    ids.push_back(t % 2 == 0 ? 0 : 3);
  }
  const quant_type types[3] = {quant_type::q4_k, quant_type::q6_k, quant_type::q8_0};
  std::vector<float> x(tokens * n);
  for (auto& v : x) v = r.real(-2, 2);
  std::vector<std::vector<unsigned char>> w;
  std::vector<std::vector<float>> y;
  std::vector<kc::expert_matrices> stacks;
  for (quant_type t : types) {
    w.push_back(random_stack(r, t, experts, rows, n));
    y.emplace_back(tokens * k * rows + guard, NAN);
  }
  for (int i = 0; i < 3; ++i) {
    const auto rb = static_cast<size_t>(kc::row_bytes(types[i], n));
    stacks.push_back({types[i], experts, rows, w[i].data(), rb, rb * rows, y[i].data()});
  }
  kc::thread_pool pool(2);
  std::vector<std::byte> scratch;
  BOOST_REQUIRE_EQUAL(kc::mat_mul_id(pool, stacks.data(), 3, n, x.data(),
                                     {ids.data(), tokens * k, k, true}, scratch),
                      status::ok);
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST_CONTEXT(types[i]) {
      const auto ref = per_expert_reference(pool, types[i], experts, rows, n, w[i].data(),
                                            x.data(), ids, k, true);
      BOOST_CHECK(std::equal(ref.begin(), ref.end(), y[i].begin()));
      BOOST_CHECK(guard_intact(y[i], ref.size()));
    }
  }
}

BOOST_AUTO_TEST_CASE(mat_mul_id_refuses_bad_arguments_before_any_work) {
  constexpr int64_t experts = 3, rows = 4, n = 64;
  kc::test::rng r;
  kc::thread_pool pool(2);
  const auto w = random_stack(r, quant_type::q8_0, experts, rows, n);
  const auto rb = static_cast<size_t>(kc::row_bytes(quant_type::q8_0, n));
  std::vector<float> x(2 * n, 1.0f), y(2 * rows, NAN);
  kc::expert_matrices s{quant_type::q8_0, experts, rows, w.data(), rb, rb * rows, y.data()};
  std::vector<std::byte> scratch;
  const int32_t bad_ids[2] = {1, 3};  // 3 is not an expert
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &s, 1, n, x.data(), {bad_ids, 2, 1, false}, scratch),
                    status::bad_size);
  BOOST_CHECK(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
  const int32_t ids[2] = {1, 2};
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &s, 1, 48, x.data(), {ids, 2, 1, false}, scratch),
                    status::bad_size);  // 48 is not a whole number of Q8_0 blocks
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &s, 1, n, nullptr, {ids, 2, 1, false}, scratch),
                    status::null_pointer);
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &s, 1, n, x.data(), {ids, 3, 2, true}, scratch),
                    status::bad_size);  // 3 pairs are not whole tokens of 2
  kc::expert_matrices other = s;
  other.experts = 4;
  const kc::expert_matrices two[2] = {s, other};
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, two, 2, n, x.data(), {ids, 2, 1, false}, scratch),
                    status::bad_size);  // stacks of one call share the routing
  kc::expert_matrices f = s;
  f.weight = quant_type::q8_k;  // an activation type, not a weight
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &f, 1, n, x.data(), {ids, 2, 1, false}, scratch),
                    status::unsupported_type);
  BOOST_CHECK(std::all_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
  BOOST_CHECK_EQUAL(kc::mat_mul_id(pool, &s, 1, n, x.data(), {ids, 2, 1, false}, scratch),
                    status::ok);
  BOOST_CHECK(std::none_of(y.begin(), y.end(), [](float v) { return std::isnan(v); }));
}
