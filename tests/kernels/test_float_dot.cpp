// float_dot (llama.cpp's orders for f32/f16/bf16 weights): every SIMD variant against the scalar
// definition bit for bit, on random rows of odd sizes, with guard values after every output;
// the scalar definition against a double-precision sum; which order a mul_mat takes; argument
// checks. What pins the scalar definition to llama.cpp itself is tests/llama/test_ggml_dots.cpp
// (ggml's own mul_mat on committed rows) and the tiny float-weight models of
// test_llama_variants.cpp.

#define BOOST_TEST_MODULE float_dot
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <random>
#include <vector>

#include "cpu/float_dot.hpp"
#include "cpu/float_dot_impl.hpp"

#include "kernels/print_kernel_types.hpp"

namespace troupe::kernels::cpu {
inline std::ostream& operator<<(std::ostream& os, ggml_float_order o) {
  return os << (o == ggml_float_order::vec_dot ? "vec_dot" : "tinyblas");
}
}  // namespace troupe::kernels::cpu

namespace q = troupe::kernels::cpu;
using q::ggml_float_order;
using q::quant_type;
using q::status;

namespace {

constexpr quant_type float_types[] = {quant_type::f32, quant_type::f16, quant_type::bf16};
constexpr int type_index(quant_type t) {
  return t == quant_type::f32 ? 0 : t == quant_type::f16 ? 1 : 2;
}
constexpr float guard = -12345.5f;

/// `count` rows of n random values (weights: small; activations: around 1), each padded by
/// `pad` elements so that rows are not packed back to back: weight rows of type t (f32, f16 or
/// bf16 bits) or, with `activations`, what ggml_float_activations makes for t weights.
struct rows_of {
  rows_of(quant_type t, bool activations, int64_t count, int64_t n, int64_t pad, float scale,
          std::mt19937& rng)
      : type(t),
        act(activations),
        elem(activations            ? q::ggml_float_activation_bytes(t)
             : t == quant_type::f32 ? 4
                                    : 2),
        stride(static_cast<size_t>((n + pad) * elem)),
        bytes(stride * static_cast<size_t>(count)) {
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> row(static_cast<size_t>(n + pad));
    for (int64_t r = 0; r < count; ++r) {
      for (float& v : row) v = d(rng);
      unsigned char* out = bytes.data() + r * stride;
      if (act) {
        BOOST_REQUIRE(q::ggml_float_activations(t, row.data(), out, n + pad) == status::ok);
      } else if (t == quant_type::f32) {
        std::memcpy(out, row.data(), row.size() * sizeof(float));
      } else {
        auto* h = reinterpret_cast<uint16_t*>(out);
        for (size_t i = 0; i < row.size(); ++i)
          h[i] = t == quant_type::f16 ? q::fp32_to_fp16(row[i]) : q::fp32_to_bf16(row[i]);
      }
    }
  }
  double at(int64_t r, int64_t i) const {
    const unsigned char* p = bytes.data() + static_cast<size_t>(r) * stride;
    if (elem == 4) return reinterpret_cast<const float*>(p)[i];
    const uint16_t h = reinterpret_cast<const uint16_t*>(p)[i];
    return type == quant_type::f16 ? q::fp16_to_fp32(h) : q::bf16_to_fp32(h);
  }
  quant_type type;
  bool act;
  int64_t elem;
  size_t stride;
  std::vector<unsigned char> bytes;
};

/// y: [tokens, y_stride] with guard values in the columns past `rows`, from one variant.
std::vector<float> run(const q::detail::float_dot_table& t, quant_type type, ggml_float_order o,
                       const rows_of& w, const rows_of& a, int64_t rows, int64_t n, int64_t tokens,
                       int64_t y_stride) {
  std::vector<float> y(static_cast<size_t>(tokens * y_stride), guard);
  t.fn[type_index(type)][static_cast<int>(o)](rows, n, w.bytes.data(), w.stride, a.bytes.data(),
                                              a.stride, tokens, y.data(), y_stride);
  return y;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

BOOST_AUTO_TEST_CASE(every_variant_matches_the_scalar_definition_bit_for_bit) {
  const auto variants = q::detail::float_dot_variants();
  BOOST_TEST_MESSAGE("variants on this CPU: " << variants.size());
  std::mt19937 rng(7);
  // n: tails of every length class for vec_dot (n % 64), whole vector widths for tinyBLAS.
  const int64_t sizes[] = {1, 15, 16, 32, 48, 63, 64, 96, 100, 192, 576, 600, 1000, 1536};
  for (quant_type type : float_types) {
    for (int64_t n : sizes) {
      const int64_t rows = 7, tokens = 13, y_stride = 9;  // edges of every tile shape
      const rows_of w(type, false, rows, n, 5, 0.05f, rng);
      const rows_of a(type, true, tokens, n, 3, 1.0f, rng);
      for (ggml_float_order o : {ggml_float_order::vec_dot, ggml_float_order::tinyblas}) {
        const int64_t lanes = type == quant_type::bf16 ? 32 : 16;
        if (o == ggml_float_order::tinyblas && n % lanes != 0) continue;
        const std::vector<float> ref = run(*variants[0], type, o, w, a, rows, n, tokens, y_stride);
        for (int64_t t = 0; t < tokens; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < n; ++i) {
              exact += w.at(r, i) * a.at(t, i);
              mag += std::fabs(w.at(r, i) * a.at(t, i));
            }
            BOOST_TEST(
                std::fabs(ref[t * y_stride + r] - exact) <= 1e-5 * mag + 1e-30,
                type << " " << o << " n=" << n << ": " << ref[t * y_stride + r] << " vs " << exact);
          }
        for (size_t v = 1; v < variants.size(); ++v) {
          const std::vector<float> got =
              run(*variants[v], type, o, w, a, rows, n, tokens, y_stride);
          int differ = 0;
          for (size_t i = 0; i < got.size(); ++i) differ += same_bits(got[i], ref[i]) ? 0 : 1;
          BOOST_TEST(differ == 0, variants[v]->name << " " << type << " " << o << " n=" << n << ": "
                                                    << differ << " outputs differ");
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(activation_rounding_is_the_same_in_every_variant) {
  // Random floats of every exponent, plus the cases rounding gets wrong: ties to even, values
  // past f16's range, subnormals, infinities, NaNs.
  std::mt19937 rng(5);
  std::vector<float> x;
  for (int i = 0; i < 4000; ++i) {
    uint32_t u = rng();
    float f;
    std::memcpy(&f, &u, sizeof f);
    x.push_back(f);
  }
  for (float f : {0.0f, -0.0f, 1.0f + 0x1p-11f, 1.0f + 0x1p-11f + 0x1p-23f, 1.0f + 3 * 0x1p-11f,
                  65504.0f, 65520.0f, 65519.99f, 1e-8f, -3e-6f, 0x1p-140f, 1.0f + 0x1p-8f,
                  1.0f + 3 * 0x1p-8f, INFINITY, -INFINITY, NAN, -NAN, 3.3895314e38f})
    x.push_back(f);
  const auto variants = q::detail::float_dot_variants();
  const auto n = static_cast<int64_t>(x.size());
  std::vector<float> ref16(x.size());
  std::vector<uint16_t> refb(x.size());
  variants[0]->round_f16(x.data(), ref16.data(), n);
  variants[0]->to_bf16(x.data(), refb.data(), n);
  for (size_t i = 0; i < x.size(); ++i) {
    BOOST_TEST_CONTEXT("x = " << x[i]) {
      const uint16_t h = q::fp32_to_fp16(x[i]);
      BOOST_TEST(same_bits(ref16[i], q::fp16_to_fp32(h)));
    }
  }
  for (size_t v = 1; v < variants.size(); ++v) {
    std::vector<float> got16(x.size());
    std::vector<uint16_t> gotb(x.size());
    variants[v]->round_f16(x.data(), got16.data(), n);
    variants[v]->to_bf16(x.data(), gotb.data(), n);
    int differ16 = 0, differb = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      // NaN payloads may differ (F16C keeps them, the scalar code quietens): NaN is NaN.
      differ16 +=
          same_bits(got16[i], ref16[i]) || (std::isnan(got16[i]) && std::isnan(ref16[i])) ? 0 : 1;
      differb += gotb[i] == refb[i] ? 0 : 1;
    }
    BOOST_TEST(differ16 == 0, variants[v]->name << ": f16 rounding differs on " << differ16);
    BOOST_TEST(differb == 0, variants[v]->name << ": bf16 rounding differs on " << differb);
  }
}

BOOST_AUTO_TEST_CASE(the_orders_sum_differently) {
  // Not a tautology: on the same rows, vec_dot and tinyBLAS give different last bits somewhere.
  std::mt19937 rng(11);
  for (quant_type type : float_types) {
    const int64_t n = 1536, rows = 64;
    const rows_of w(type, false, rows, n, 0, 0.05f, rng);
    const rows_of a(type, true, 1, n, 0, 1.0f, rng);
    const auto& s = q::detail::scalar_float_dot();
    const auto v = run(s, type, ggml_float_order::vec_dot, w, a, rows, n, 1, rows);
    const auto t = run(s, type, ggml_float_order::tinyblas, w, a, rows, n, 1, rows);
    int differ = 0;
    for (int64_t r = 0; r < rows; ++r) differ += same_bits(v[r], t[r]) ? 0 : 1;
    BOOST_TEST(differ > 0, type << ": the two orders agree on all " << rows << " rows");
  }
}

BOOST_AUTO_TEST_CASE(bf16_products_follow_vdpbf16ps_where_the_cpu_has_it) {
  // Extreme exponents: products that overflow float or fall below its normal range, sums that
  // overflow. The scalar definition (odd product, then even, each sum rounded, subnormals
  // flushed) must equal the instruction on every one of them.
  const auto variants = q::detail::float_dot_variants();
  const q::detail::float_dot_table* native = nullptr;
  for (const auto* v : variants)
    if (std::strcmp(v->name, "avx512-bf16") == 0) native = v;
  if (native == nullptr) {
    BOOST_TEST_MESSAGE("no AVX512-BF16 on this CPU: the instruction check is skipped");
    return;
  }
  std::mt19937 rng(3);
  const int64_t n = 64, rows = 64, tokens = 4;
  rows_of w(quant_type::bf16, false, rows, n, 0, 1.0f, rng);
  rows_of a(quant_type::bf16, true, tokens, n, 0, 1.0f, rng);
  for (rows_of* m : {&w, &a}) {
    auto* h = reinterpret_cast<uint16_t*>(m->bytes.data());
    for (size_t i = 0; i < m->bytes.size() / 2; ++i) {
      const uint32_t r = rng();
      const uint32_t e = (r >> 8) % 255;  // any exponent but inf/NaN's
      h[i] = static_cast<uint16_t>(((r & 1) << 15) | (e << 7) | ((r >> 16) & 127));
    }
  }
  for (ggml_float_order o : {ggml_float_order::vec_dot, ggml_float_order::tinyblas}) {
    const auto ref = run(*variants[0], quant_type::bf16, o, w, a, rows, n, tokens, rows);
    const auto got = run(*native, quant_type::bf16, o, w, a, rows, n, tokens, rows);
    int differ = 0;
    for (size_t i = 0; i < got.size(); ++i)
      differ += same_bits(got[i], ref[i]) || (std::isnan(got[i]) && std::isnan(ref[i])) ? 0 : 1;
    BOOST_TEST(differ == 0, o << ": " << differ << " outputs differ from VDPBF16PS");
  }
}

BOOST_AUTO_TEST_CASE(the_order_follows_llamafile_sgemm) {
  using q::ggml_float_order_for;
  // One token: ggml_vec_dot; two or more: tinyBLAS when rows % 4 == 0 and n fills its vectors.
  BOOST_TEST(ggml_float_order_for(quant_type::f16, 576, 576, 1) == ggml_float_order::vec_dot);
  BOOST_TEST(ggml_float_order_for(quant_type::f16, 576, 576, 2) == ggml_float_order::tinyblas);
  BOOST_TEST(ggml_float_order_for(quant_type::f32, 49152, 576, 7) == ggml_float_order::tinyblas);
  BOOST_TEST(ggml_float_order_for(quant_type::f16, 578, 576, 7) == ggml_float_order::vec_dot);
  BOOST_TEST(ggml_float_order_for(quant_type::f16, 576, 72, 7) == ggml_float_order::vec_dot);
  BOOST_TEST(ggml_float_order_for(quant_type::bf16, 576, 48, 7) == ggml_float_order::vec_dot);
  BOOST_TEST(ggml_float_order_for(quant_type::bf16, 576, 64, 7) == ggml_float_order::tinyblas);
}

BOOST_AUTO_TEST_CASE(bad_arguments_are_refused) {
  float y[4] = {};
  uint16_t w[64] = {}, a[64] = {};
  BOOST_TEST(q::ggml_float_mat_mat(quant_type::q8_0, ggml_float_order::vec_dot, 1, 32, w, 64, a, 64,
                                   1, y, 1) == status::unsupported_type);
  BOOST_TEST(q::ggml_float_mat_mat(quant_type::bf16, ggml_float_order::tinyblas, 1, 48, w, 96, a,
                                   96, 1, y, 1) == status::bad_size);
  BOOST_TEST(q::ggml_float_mat_mat(quant_type::f16, ggml_float_order::vec_dot, 2, 32, w, 64, a, 64,
                                   2, y, 1) == status::bad_size);
  BOOST_TEST(q::ggml_float_mat_mat(quant_type::f16, ggml_float_order::vec_dot, 1, 32, nullptr, 64,
                                   a, 64, 1, y, 1) == status::null_pointer);
  BOOST_TEST(q::ggml_float_activations(quant_type::q4_0, nullptr, nullptr, 0) ==
             status::unsupported_type);
  BOOST_TEST(q::ggml_float_mat_mat(quant_type::f16, ggml_float_order::vec_dot, 0, 32, nullptr, 64,
                                   nullptr, 64, 1, y, 1) == status::ok);
}
