// troupe's quantised mat-mul against ggml's own dot products, bit for bit, for the weight types
// that no committed model exercises end to end (Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL,
// IQ4_XS: llama.cpp's K-quant and IQ4 mixes)
// and those the SmolLM2 fixture does (Q4_1, Q8_0) or does not (Q4_0): the Q8_K activation
// rounding included. tests/fixtures/llama/ggml_dots.json holds random weight rows,
// fp32 activations and the floats ggml's from_float + vec_dot produced for them
// (tools/reference/make_ggml_dot_fixture.py). troupe quantises the activations itself.
// And f32/f16/bf16 weights: ggml_float_dots.json holds ggml's own mul_mat of such matrices, by one
// token (ggml_vec_dot) and by three (llamafile's tinyBLAS, or vec_dot where tinyBLAS declines)
// (tools/reference/make_ggml_float_dot_fixture.py); troupe rounds the activations itself. And
// the K-quants, iq4_xs and iq4_nl by 3 and 13 tokens (ggml_kquant_mul_mat.json): ggml's tiled
// matmul from 8 tokens on, tinyBLAS for iq4_nl from 2.

#define BOOST_TEST_MODULE ggml_dots
#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "troupe/json.hpp"

using namespace troupe;
namespace kc = troupe::kernels::cpu;

namespace {

json::value fixture(const char* name = "ggml_dots.json") {
  const auto p = std::filesystem::path(TROUPE_SOURCE_DIR) / "tests/fixtures/llama" / name;
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str(), p.string());
}

std::vector<unsigned char> unhex(const std::string& h) {
  BOOST_REQUIRE(h.size() % 2 == 0);
  std::vector<unsigned char> out(h.size() / 2);
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<unsigned char>(std::stoi(h.substr(2 * i, 2), nullptr, 16));
  return out;
}

const json::value& get(const json::value& v, const char* key) {
  const json::value* p = v.find(key);
  BOOST_REQUIRE_MESSAGE(p != nullptr, "the fixture has no \"" << key << "\"");
  return *p;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

/// The hex rows of `list` (weight rows of `type`, n elements each) back to back.
std::vector<unsigned char> weight_rows(const json::value& list, kc::quant_type type, int64_t n) {
  std::vector<unsigned char> w;
  for (const auto& r : list.as_array()) {
    const auto b = unhex(r.as_string());
    BOOST_REQUIRE_EQUAL(static_cast<int64_t>(b.size()), kc::row_bytes(type, n));
    w.insert(w.end(), b.begin(), b.end());
  }
  return w;
}

/// The hex rows of `list` (n floats each) back to back.
std::vector<float> float_rows(const json::value& list, int64_t n) {
  std::vector<float> x;
  for (const auto& a : list.as_array()) {
    const auto b = unhex(a.as_string());
    BOOST_REQUIRE_EQUAL(b.size(), static_cast<size_t>(n) * sizeof(float));
    const size_t at = x.size();
    x.resize(at + static_cast<size_t>(n));
    std::memcpy(x.data() + at, b.data(), b.size());
  }
  return x;
}

}  // namespace

BOOST_AUTO_TEST_CASE(mat_mul_equals_ggml_vec_dot_bit_for_bit) {
  // ggml ran its AVX2 kernels (x86-64 with AVX2, as every machine here): troupe's scalar
  // kernels sum in another order, so there is nothing to compare on a CPU without AVX2.
  if (kc::best_isa() == kc::isa::scalar) {
    BOOST_TEST_MESSAGE("SKIPPED: no AVX2 on this CPU (or TROUPE_KERNELS_ISA=scalar)");
    return;
  }
  const json::value f = fixture();
  kc::thread_pool pool(2);
  std::vector<std::byte> scratch;
  int checked = 0;
  for (const json::value& c : get(f, "cases").as_array()) {
    const auto type = static_cast<kc::quant_type>(get(c, "ggml_type").as_int());
    const int64_t n = get(c, "n").as_int();
    const auto& rows = get(c, "rows").as_array();
    const auto& acts = get(c, "activations").as_array();
    const std::vector<unsigned char> w = weight_rows(get(c, "rows"), type, n);
    const std::vector<float> x = float_rows(get(c, "activations"), n);
    const auto R = static_cast<int64_t>(rows.size()), T = static_cast<int64_t>(acts.size());
    std::vector<float> y(static_cast<size_t>(R * T));
    const auto stride = static_cast<size_t>(kc::row_bytes(type, n));
    BOOST_REQUIRE(kc::mat_mul(pool, type, R, n, w.data(), stride, x.data(), T, y.data(), scratch) ==
                  kc::status::ok);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t r = 0; r < R; ++r) {
        const auto& dots = get(c, "dots").as_array()[static_cast<size_t>(t)].as_array();
        const auto want = unhex(dots[static_cast<size_t>(r)].as_string());
        float ggml;
        std::memcpy(&ggml, want.data(), sizeof ggml);
        BOOST_TEST_CONTEXT(get(c, "type").as_string() << " token " << t << " row " << r) {
          BOOST_TEST(bits_of(y[static_cast<size_t>(t * R + r)]) == bits_of(ggml),
                     y[static_cast<size_t>(t * R + r)] << " vs ggml " << ggml);
        }
        ++checked;
      }
    }
  }
  BOOST_TEST(checked == 12 * 5 * 3);
}

BOOST_AUTO_TEST_CASE(float_weight_mat_mul_equals_ggml_mul_mat_bit_for_bit) {
  // Every ISA level computes llama.cpp's AVX-512 arithmetic for these (float_dot.hpp): no skip.
  const json::value f = fixture("ggml_float_dots.json");
  kc::thread_pool pool(2);
  std::vector<std::byte> scratch;
  int checked = 0, cases = 0;
  for (const json::value& c : get(f, "cases").as_array()) {
    const auto type = static_cast<kc::quant_type>(get(c, "ggml_type").as_int());
    const int64_t rows = get(c, "rows").as_int(), n = get(c, "n").as_int();
    const int64_t tokens = get(c, "tokens").as_int();
    const std::vector<unsigned char> w = weight_rows(get(c, "weights"), type, n);
    const std::vector<float> x = float_rows(get(c, "activations"), n);
    BOOST_REQUIRE_EQUAL(static_cast<int64_t>(w.size()), rows * kc::row_bytes(type, n));
    BOOST_REQUIRE_EQUAL(static_cast<int64_t>(x.size()), tokens * n);
    std::vector<float> y(static_cast<size_t>(rows * tokens));
    const kc::mat_mul_part part{
        type, rows, w.data(), static_cast<size_t>(kc::row_bytes(type, n)), y.data(), true};
    BOOST_REQUIRE(kc::mat_mul(pool, &part, 1, n, x.data(), tokens, scratch) == kc::status::ok);
    const auto& results = get(c, "results").as_array();
    for (int64_t t = 0; t < tokens; ++t) {
      const auto want = unhex(results[static_cast<size_t>(t)].as_string());
      BOOST_REQUIRE_EQUAL(want.size(), static_cast<size_t>(rows) * sizeof(float));
      for (int64_t r = 0; r < rows; ++r) {
        float ggml;
        std::memcpy(&ggml, want.data() + r * sizeof(float), sizeof ggml);
        const float got = y[static_cast<size_t>(t * rows + r)];
        BOOST_TEST_CONTEXT(get(c, "type").as_string() << " " << rows << "x" << n << " by " << tokens
                                                      << " tokens: token " << t << " row " << r) {
          BOOST_TEST(bits_of(got) == bits_of(ggml), got << " vs ggml " << ggml);
        }
        ++checked;
      }
    }
    ++cases;
  }
  BOOST_TEST(cases == 18);
  BOOST_TEST(checked > 0);
}

BOOST_AUTO_TEST_CASE(kquant_mat_mul_equals_ggml_mul_mat_bit_for_bit) {
  // ggml_mul_mat of K-quant and iq4_xs weights: by 3 tokens ggml sums as vec_dot, by 13 in its
  // tiled matmul; of iq4_nl weights: tinyBLAS by both (mat_mul's ggml_activations parts follow
  // them: mat_mat_ggml_batched). ggml ran its SIMD kernels: troupe's scalar level sums otherwise.
  if (kc::best_isa() == kc::isa::scalar) {
    BOOST_TEST_MESSAGE("SKIPPED: no AVX2 on this CPU (or TROUPE_KERNELS_ISA=scalar)");
    return;
  }
  const json::value f = fixture("ggml_kquant_mul_mat.json");
  const std::vector<float> x = float_rows(
      get(f, "activations"), get(get(f, "cases").as_array().at(0), "n").as_int());
  kc::thread_pool pool(2);
  std::vector<std::byte> scratch;
  int checked = 0, cases = 0;
  for (const json::value& c : get(f, "cases").as_array()) {
    const auto type = static_cast<kc::quant_type>(get(c, "ggml_type").as_int());
    const int64_t rows = get(c, "rows").as_int(), n = get(c, "n").as_int();
    const std::vector<unsigned char> w = weight_rows(get(c, "weights"), type, n);
    for (const int64_t tokens : {int64_t{3}, int64_t{13}}) {
      BOOST_REQUIRE_GE(static_cast<int64_t>(x.size()), tokens * n);
      std::vector<float> y(static_cast<size_t>(rows * tokens));
      const kc::mat_mul_part part{type, rows, w.data(),
                                  static_cast<size_t>(kc::row_bytes(type, n)), y.data(), true};
      BOOST_REQUIRE(kc::mat_mul(pool, &part, 1, n, x.data(), tokens, scratch) == kc::status::ok);
      const auto& results = get(get(c, "results"), std::to_string(tokens).c_str()).as_array();
      for (int64_t t = 0; t < tokens; ++t) {
        const auto want = unhex(results[static_cast<size_t>(t)].as_string());
        for (int64_t r = 0; r < rows; ++r) {
          float ggml;
          std::memcpy(&ggml, want.data() + r * sizeof(float), sizeof ggml);
          const float got = y[static_cast<size_t>(t * rows + r)];
          BOOST_TEST_CONTEXT(get(c, "type").as_string() << " by " << tokens << " tokens: token "
                                                        << t << " row " << r) {
            BOOST_TEST(bits_of(got) == bits_of(ggml), got << " vs ggml " << ggml);
          }
          ++checked;
        }
      }
    }
    ++cases;
  }
  BOOST_TEST(cases == 7);
  BOOST_TEST(checked == 7 * 20 * (3 + 13));
}
