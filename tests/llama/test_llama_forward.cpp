// The llama forward pass: kernels against plain references, and SmolLM2-135M against llama.cpp
// (first-step logits and 64 greedy tokens per prompt, from tests/fixtures/llama).

#define BOOST_TEST_MODULE llama_forward
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"
#include "cpu/transformer_ops_impl.hpp"
#include "llama/llama_test_support.hpp"
#include "troupe/llama/llama_model.hpp"

namespace kc = troupe::kernels::cpu;
namespace kd = troupe::kernels::cpu::detail;
using namespace troupe::llama;

namespace {

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -2.0f, float hi = 2.0f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rms_norm_matches_reference) {
  for (int64_t n : {1, 7, 64, 576, 1000}) {
    auto x = random_floats(static_cast<size_t>(n), 1);
    auto w = random_floats(static_cast<size_t>(n), 2);
    std::vector<float> y(static_cast<size_t>(n) + 4, 123.0f);  // guard values after n
    BOOST_REQUIRE(kc::rms_norm(x.data(), w.data(), y.data(), n, 1e-5f) == kc::status::ok);
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double r = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int64_t i = 0; i < n; ++i) BOOST_CHECK_CLOSE(y[i], x[i] * r * w[i], 1e-3);
    for (size_t i = static_cast<size_t>(n); i < y.size(); ++i) BOOST_CHECK_EQUAL(y[i], 123.0f);
  }
}

BOOST_AUTO_TEST_CASE(rope_rotates_adjacent_pairs) {
  const int64_t heads = 3, d = 64, rope_dim = 64;
  const float base = 100000.0f;
  for (int64_t pos : {0, 1, 17, 1000}) {
    auto x = random_floats(static_cast<size_t>(heads * d), 3);
    auto y = x;
    BOOST_REQUIRE(kc::rope_norm(y.data(), heads, d, rope_dim, pos, base) == kc::status::ok);
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < rope_dim / 2; ++i) {
        const double th = pos * std::pow(double(base), -2.0 * i / rope_dim);
        const double a = x[h * d + 2 * i], b = x[h * d + 2 * i + 1];
        BOOST_CHECK_SMALL(y[h * d + 2 * i] - (a * std::cos(th) - b * std::sin(th)), 2e-3);
        BOOST_CHECK_SMALL(y[h * d + 2 * i + 1] - (a * std::sin(th) + b * std::cos(th)), 2e-3);
      }
    }
  }
  float z[4] = {1, 2, 3, 4};
  BOOST_CHECK(kc::rope_norm(z, 1, 4, 3, 0, 1e4f) == kc::status::bad_size);  // odd rope_dim
}

BOOST_AUTO_TEST_CASE(silu_mul_and_softmax_match_reference) {
  auto g = random_floats(101, 4, -8, 8), u = random_floats(101, 5);
  auto out = g;
  BOOST_REQUIRE(kc::silu_mul(out.data(), u.data(), 101) == kc::status::ok);
  for (size_t i = 0; i < g.size(); ++i)
    BOOST_CHECK_SMALL(out[i] - g[i] / (1 + std::exp(-double(g[i]))) * u[i], 1e-5);
  auto s = random_floats(37, 6, -30, 30);
  auto p = s;
  BOOST_REQUIRE(kc::softmax(p.data(), 37, 0.5f) == kc::status::ok);
  double mx = -1e30, sum = 0;
  for (float v : s) mx = std::max(mx, 0.5 * v);
  for (float v : s) sum += std::exp(0.5 * v - mx);
  for (size_t i = 0; i < s.size(); ++i) BOOST_CHECK_SMALL(p[i] - std::exp(0.5 * s[i] - mx) / sum, 1e-6);
}

// Also with a sliding window of 3 positions (Gemma 3's local layers): each query sees itself and
// the two positions before it; and with the scores soft-capped at 2 (Gemma 2).
// GELU as ggml's table gives it: x rounded to fp16, the tanh approximation rounded to fp16
// (here from double: at most an fp16 step apart), 0 and identity past ±10.
BOOST_AUTO_TEST_CASE(gelu_mul_matches_reference) {
  auto g = random_floats(301, 31, -12, 12), u = random_floats(301, 32);
  g[0] = -10.0f, g[1] = 10.0f, g[2] = 0.0f, g[3] = -9.99f;
  auto out = g;
  BOOST_REQUIRE(kc::gelu_mul(out.data(), u.data(), 301) == kc::status::ok);
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = kc::fp16_to_fp32(kc::fp32_to_fp16(g[i]));
    const double gelu = 0.5 * x * (1 + std::tanh(0.7978845608028654 * x * (1 + 0.044715 * x * x)));
    if (g[i] <= -10.0f) {
      BOOST_CHECK_EQUAL(out[i], 0.0f);
    } else if (g[i] >= 10.0f) {
      BOOST_CHECK_EQUAL(out[i], g[i] * u[i]);
    } else {
      BOOST_CHECK_SMALL(out[i] - gelu * u[i], (std::abs(gelu) * 1e-3 + 1e-7) * std::abs(u[i]));
    }
  }
  BOOST_CHECK(kc::gelu_mul(out.data(), u.data(), -1) == kc::status::bad_size);
}

BOOST_AUTO_TEST_CASE(attention_matches_naive_gqa) {
  const int64_t pos0 = 5, tokens = 4, ctx = pos0 + tokens, kv_dim = 2 * 16, q_dim = 6 * 16;
  auto q = random_floats(static_cast<size_t>(tokens * q_dim), 7);
  auto k = random_floats(static_cast<size_t>(ctx * kv_dim), 8);
  auto v = random_floats(static_cast<size_t>(ctx * kv_dim), 9);
  // The f16 cache: the same keys and values rounded to f16, and its contract's roundings of q
  // and of the softmax (attention_shape::kv_type) in the reference below.
  std::vector<uint16_t> kh(k.size()), vh(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    kh[i] = kc::fp32_to_fp16(k[i]);
    vh[i] = kc::fp32_to_fp16(v[i]);
  }
  const auto half = [](double x) { return kc::fp16_to_fp32(kc::fp32_to_fp16(static_cast<float>(x))); };
  for (bool f16 : {false, true})
  for (float cap : {0.0f, 2.0f})
  for (int64_t window : {0, 3})
  for (int threads : {1, 2, 3}) {
    const kc::attention_shape shape{6,      2,   16, 0.25f, window,
                                    cap, f16 ? kc::quant_type::f16 : kc::quant_type::f32};
    kc::thread_pool pool(threads);
    std::vector<float> out(static_cast<size_t>(tokens * q_dim) + 8, -7.0f), scratch;
    const void* keys = f16 ? static_cast<const void*>(kh.data()) : k.data();
    const void* values = f16 ? static_cast<const void*>(vh.data()) : v.data();
    BOOST_REQUIRE(kc::attention(pool, shape, q.data(), tokens, pos0, keys, values, out.data(),
                                scratch) == kc::status::ok);
    const auto qv = [&](int64_t i) { return f16 ? half(q[i]) : double(q[i]); };
    const auto kv = [&](int64_t i) { return f16 ? double(kc::fp16_to_fp32(kh[i])) : double(k[i]); };
    const auto vv = [&](int64_t i) { return f16 ? double(kc::fp16_to_fp32(vh[i])) : double(v[i]); };
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t h = 0; h < 6; ++h) {
        const int64_t kvh = h / 3, n = pos0 + t + 1;
        const int64_t first = window > 0 ? std::max<int64_t>(0, n - window) : 0;
        std::vector<double> w(static_cast<size_t>(n), 0.0);
        double mx = -1e30, sum = 0;
        for (int64_t j = first; j < n; ++j) {
          double dot = 0;
          for (int64_t i = 0; i < 16; ++i) dot += qv(t * q_dim + h * 16 + i) * kv(j * kv_dim + kvh * 16 + i);
          w[j] = (cap > 0 ? cap * std::tanh(dot / cap) : dot) * 0.25;
          mx = std::max(mx, w[j]);
        }
        for (int64_t j = first; j < n; ++j) sum += w[j] = std::exp(w[j] - mx);
        for (int64_t i = 0; i < 16; ++i) {
          double acc = 0;
          for (int64_t j = first; j < n; ++j) {
            const double p = f16 ? half(w[j] / sum) : w[j] / sum;
            acc += p * vv(j * kv_dim + kvh * 16 + i);
          }
          // f16: p rounded from float here and from double there may differ by an f16 step.
          BOOST_CHECK_SMALL(out[t * q_dim + h * 16 + i] - acc, f16 ? 2e-3 : 1e-4);
        }
      }
    }
    for (size_t i = static_cast<size_t>(tokens * q_dim); i < out.size(); ++i) BOOST_CHECK_EQUAL(out[i], -7.0f);
  }
}

BOOST_AUTO_TEST_CASE(batched_attention_equals_one_call_per_sequence) {
  // Sequences of one token (short and > 64 positions: ggml's 64-lane single-token order), of
  // several tokens, and an empty one with null pointers, each over its own cache.
  const kc::attention_shape shape{6, 2, 16, 0.25f};
  const int64_t kv_dim = 2 * 16, q_dim = 6 * 16;
  struct spec {
    int64_t tokens, pos0;
  };
  const std::vector<spec> specs = {{1, 0}, {1, 70}, {3, 5}, {0, 9}, {1, 130}, {4, 0}, {1, 20}};
  std::vector<std::vector<float>> q, k, v;
  unsigned seed = 40;
  for (const spec& p : specs) {
    const int64_t ctx = p.pos0 + p.tokens;
    q.push_back(random_floats(static_cast<size_t>(p.tokens * q_dim), seed++));
    k.push_back(random_floats(static_cast<size_t>(ctx * kv_dim), seed++));
    v.push_back(random_floats(static_cast<size_t>(ctx * kv_dim), seed++));
  }
  for (int threads : {1, 2, 3}) {
    kc::thread_pool pool(threads);
    std::vector<std::vector<float>> one(specs.size()), batched(specs.size());
    std::vector<kc::attention_sequence> seqs;
    std::vector<float> scratch;
    for (size_t i = 0; i < specs.size(); ++i) {
      one[i].assign(static_cast<size_t>(specs[i].tokens * q_dim), -7.0f);
      batched[i].assign(static_cast<size_t>(specs[i].tokens * q_dim) + 8, -7.0f);
      BOOST_REQUIRE(kc::attention(pool, shape, q[i].data(), specs[i].tokens, specs[i].pos0,
                                  k[i].data(), v[i].data(), one[i].data(),
                                  scratch) == kc::status::ok);
      if (specs[i].tokens == 0)
        seqs.push_back({nullptr, 0, specs[i].pos0, nullptr, nullptr, nullptr});
      else
        seqs.push_back({q[i].data(), specs[i].tokens, specs[i].pos0, k[i].data(), v[i].data(),
                        batched[i].data()});
    }
    std::vector<float> fresh;  // sized by the call itself
    BOOST_REQUIRE(kc::attention(pool, shape, seqs.data(), static_cast<int64_t>(seqs.size()),
                                fresh) == kc::status::ok);
    for (size_t i = 0; i < specs.size(); ++i) {
      BOOST_TEST_CONTEXT("threads " << threads << ", sequence " << i) {
        for (size_t j = 0; j < one[i].size(); ++j) BOOST_REQUIRE_EQUAL(batched[i][j], one[i][j]);
        for (size_t j = one[i].size(); j < batched[i].size(); ++j)
          BOOST_CHECK_EQUAL(batched[i][j], -7.0f);
      }
    }
  }
  kc::thread_pool pool(2);
  std::vector<float> scratch, out(q_dim);
  BOOST_CHECK(kc::attention(pool, shape, nullptr, 0, scratch) == kc::status::ok);
  BOOST_CHECK(kc::attention(pool, shape, nullptr, 1, scratch) == kc::status::null_pointer);
  BOOST_CHECK(kc::attention(pool, shape, nullptr, -1, scratch) == kc::status::bad_size);
  kc::attention_shape q8_cache = shape;  // caches are f32 or f16
  q8_cache.kv_type = kc::quant_type::q8_0;
  BOOST_CHECK(kc::attention(pool, q8_cache, nullptr, 0, scratch) == kc::status::unsupported_type);
  // A bad sequence anywhere is refused before any output is written.
  std::vector<kc::attention_sequence> bad = {
      {q[0].data(), 1, 0, k[0].data(), v[0].data(), out.data()},
      {q[2].data(), -1, 5, k[2].data(), v[2].data(), out.data()}};
  std::fill(out.begin(), out.end(), -7.0f);
  BOOST_CHECK(kc::attention(pool, shape, bad.data(), 2, scratch) == kc::status::bad_size);
  bad[1] = {q[2].data(), 3, 5, k[2].data(), nullptr, out.data()};
  BOOST_CHECK(kc::attention(pool, shape, bad.data(), 2, scratch) == kc::status::null_pointer);
  for (float x : out) BOOST_CHECK_EQUAL(x, -7.0f);
}

/// Plain reference of ggml's x86 quantize_row_q8_1: d = amax/127, q = round-half-even(x·127/amax),
/// d and s = d·Σq at fp16 precision.
std::vector<std::byte> reference_q8_1(const float* x, int64_t n) {
  std::vector<std::byte> out(static_cast<size_t>(kc::row_bytes(kc::quant_type::q8_1, n)));
  auto* blocks = reinterpret_cast<kc::block_q8_1*>(out.data());
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f, id = amax != 0 ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; ++j) {
      blocks[b].qs[j] = static_cast<int8_t>(std::nearbyint(x[b * 32 + j] * id));
      sum += blocks[b].qs[j];
    }
    blocks[b].d = kc::fp16_to_fp32(kc::fp32_to_fp16(d));
    blocks[b].s = kc::fp16_to_fp32(kc::fp32_to_fp16(d * static_cast<float>(sum)));
  }
  return out;
}

std::vector<const kd::transformer_table*> kernel_variants() {
  auto v = kd::transformer_kernel_variants();
  BOOST_TEST_MESSAGE("transformer kernel variants on this CPU: " << v.size());
  return v;
}

BOOST_AUTO_TEST_CASE(quantize_q8_1_matches_ggml_reference) {
  // Values on exact .5 ties after scaling (amax 127 → id 1) must round to even, as ggml's
  // _mm256_round_ps does; a random row checks the rest, on every ISA variant.
  std::vector<float> x(64);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j) - 15.5f;
  x[31] = 127.0f;
  auto r = random_floats(32, 12, -3, 3);
  std::copy(r.begin(), r.end(), x.begin() + 32);
  const auto ref = reference_q8_1(x.data(), 64);
  for (const auto* k : kernel_variants()) {
    std::vector<std::byte> got(ref.size() + 8, std::byte{0x5A});
    k->quantize_q8_1(x.data(), got.data(), 64);
    BOOST_CHECK(std::equal(ref.begin(), ref.end(), got.begin()));
    for (size_t i = ref.size(); i < got.size(); ++i) BOOST_CHECK(got[i] == std::byte{0x5A});
    std::vector<kc::block_q8_0> q0(3);
    q0[2].d = 0x5A5A;
    k->quantize_q8_0(x.data(), q0.data(), 64);
    const auto* r1 = reinterpret_cast<const kc::block_q8_1*>(ref.data());
    for (int b = 0; b < 2; ++b) {
      BOOST_CHECK(std::equal(q0[b].qs, q0[b].qs + 32, r1[b].qs));
      BOOST_CHECK_EQUAL(kc::fp16_to_fp32(q0[b].d), r1[b].d);
    }
    BOOST_CHECK_EQUAL(q0[2].d, 0x5A5A);
  }
  const auto* b = reinterpret_cast<const kc::block_q8_1*>(ref.data());
  BOOST_CHECK_EQUAL(b[0].qs[0], -16);  // -15.5 → -16 (even)
  BOOST_CHECK_EQUAL(b[0].qs[1], -14);  // -14.5 → -14
}

BOOST_AUTO_TEST_CASE(simd_variants_match_scalar_bit_for_bit) {
  // The AVX2 loops must give the scalar definition's bits (which are ggml's): swiglu over the
  // whole range of ggml_v_expf (including the flush to 0 / inf beyond |n| > 192), rope, and
  // attention heads of both batch kinds, odd lengths and head sizes.
  const auto variants = kernel_variants();
  auto g = random_floats(203, 13, -120, 120), u = random_floats(203, 14);
  for (int i = 0; i < 8; ++i) g[static_cast<size_t>(i)] = 1e-3f * static_cast<float>(i);
  std::vector<std::vector<float>> swiglu_out, rope_out, geglu_out;
  auto gg = random_floats(203, 19, -12, 12);
  gg[0] = -10.0f, gg[1] = 10.0f, gg[2] = -0.0f, gg[3] = 9.9999f;
  for (const auto* k : variants) {
    auto y = g;
    k->swiglu(y.data(), u.data(), static_cast<int64_t>(y.size()));
    swiglu_out.push_back(y);
    auto z = gg;
    k->geglu(z.data(), u.data(), static_cast<int64_t>(z.size()));
    geglu_out.push_back(z);
    auto x = random_floats(3 * 70, 15);
    float ca[70], cb[70];
    for (int i = 0; i < 70; i += 2) {
      ca[i] = std::cos(0.3f * i), ca[i + 1] = std::sin(0.3f * i);
      cb[i] = -ca[i + 1], cb[i + 1] = ca[i];
    }
    k->rope(x.data(), 3, 70, 70, ca, cb);
    rope_out.push_back(x);
  }
  // f16 rounding of cache rows: ties to even, subnormals, overflow to inf, every variant alike.
  auto halves = random_floats(203, 20, -70000, 70000);
  halves[0] = 1.0f + 0x1p-11f, halves[1] = 1.0f + 3 * 0x1p-11f, halves[2] = 3e-6f;
  halves[3] = -65520.0f, halves[4] = 6.1e-5f;
  std::vector<std::vector<uint16_t>> f16_out;
  for (const auto* k : variants) {
    std::vector<uint16_t> h(halves.size() + 1, 0x5A5A);
    k->to_f16(halves.data(), h.data(), static_cast<int64_t>(halves.size()));
    BOOST_CHECK_EQUAL(h.back(), 0x5A5A);
    for (size_t i = 0; i < halves.size(); ++i) BOOST_CHECK_EQUAL(h[i], kc::fp32_to_fp16(halves[i]));
    f16_out.push_back(h);
  }
  BOOST_CHECK_EQUAL(f16_out[0][0], 0x3C00);  // 1 + 2^-11: a tie, to even (1)
  BOOST_CHECK_EQUAL(f16_out[0][1], 0x3C02);  // 1 + 3·2^-11: a tie, to even (1 + 2^-9)
  BOOST_CHECK_EQUAL(f16_out[0][3], 0xFC00);  // -65520 rounds to -inf
  for (size_t v = 1; v < variants.size(); ++v) {
    BOOST_CHECK(f16_out[v] == f16_out[0]);
    BOOST_CHECK(swiglu_out[v] == swiglu_out[0]);
    BOOST_CHECK(std::memcmp(geglu_out[v].data(), geglu_out[0].data(), 203 * sizeof(float)) == 0);
    BOOST_CHECK(rope_out[v] == rope_out[0]);
  }
  for (int64_t d : {16, 24, 64, 128}) {
    for (int64_t n : {1, 5, 17, 64, 100, 300}) {
      for (bool single : {false, true})
      for (int64_t first : {int64_t{0}, n / 3})
      for (float cap : {0.0f, 0.5f})
      for (bool f16 : {false, true}) {  // f32 or f16 cache rows
        auto q = random_floats(static_cast<size_t>(d), 16);
        auto kv = random_floats(static_cast<size_t>(n * 2 * d), 17);
        auto vv = random_floats(static_cast<size_t>(n * 2 * d), 18);
        std::vector<uint16_t> kh(kv.size()), vh(vv.size());
        for (size_t i = 0; i < kv.size(); ++i) {
          kh[i] = kc::fp32_to_fp16(kv[i]);
          vh[i] = kc::fp32_to_fp16(vv[i]);
        }
        std::vector<std::vector<float>> outs;
        for (const auto* k : variants) {
          std::vector<float> scores(static_cast<size_t>((n + 15) / 16 * 16));
          // The accumulator scratch holds a previous call's leftovers (NaN here): a kernel must
          // clear what it reads.
          std::vector<float> acc(static_cast<size_t>(64 * d), std::nanf("")),
              out(static_cast<size_t>(d) + 3, 5.0f), q16(static_cast<size_t>(d), std::nanf(""));
          const void* keys = f16 ? static_cast<const void*>(kh.data() + d) : kv.data() + d;
          const void* values = f16 ? static_cast<const void*>(vh.data() + d) : vv.data() + d;
          const kd::attention_head_args a{q.data(),      keys,       values,      2 * d, n,
                                          d,             0.125f,     single,      scores.data(),
                                          acc.data(),    out.data(), first,       cap,
                                          f16,           q16.data()};
          k->attention_head(a);
          for (int i = 0; i < 3; ++i) BOOST_CHECK_EQUAL(out[static_cast<size_t>(d + i)], 5.0f);
          outs.push_back(out);
        }
        for (size_t v = 1; v < outs.size(); ++v)
          BOOST_CHECK_MESSAGE(outs[v] == outs[0], "d " << d << " n " << n << " f16 " << f16);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(mat_mul_matches_mat_vec_per_token) {
  // Q4_1 weights with sane fp16 scales: the threaded, tiled mat_mul against the single-threaded
  // mat_vec on each token of ggml-quantised activations (exact: same dot kernel).
  const int64_t rows = 37, n = 96, tokens = 3;
  const int64_t rb = kc::row_bytes(kc::quant_type::q4_1, n);
  std::mt19937 g(10);
  std::vector<std::byte> w(static_cast<size_t>(rows * rb));
  for (auto& b : w) b = static_cast<std::byte>(g() & 0xFF);
  for (int64_t r = 0; r < rows * (n / 32); ++r) {  // scales/mins 0.01 and -0.05
    auto* blk = reinterpret_cast<kc::block_q4_1*>(w.data()) + r;
    blk->d = kc::fp32_to_fp16(0.01f);
    blk->m = kc::fp32_to_fp16(-0.05f);
  }
  auto x = random_floats(static_cast<size_t>(tokens * n), 11);
  for (int threads : {1, 2, 4}) {
    kc::thread_pool pool(threads);
    std::vector<float> y(static_cast<size_t>(tokens * rows) + 4, 99.0f);
    std::vector<std::byte> scratch;
    BOOST_REQUIRE(kc::mat_mul(pool, kc::quant_type::q4_1, rows, n, w.data(), static_cast<size_t>(rb),
                              x.data(), tokens, y.data(), scratch) == kc::status::ok);
    for (int64_t t = 0; t < tokens; ++t) {
      const auto a = reference_q8_1(x.data() + t * n, n);
      std::vector<float> ref(static_cast<size_t>(rows));
      kc::mat_vec(kc::quant_type::q4_1, rows, n, w.data(), static_cast<size_t>(rb), a.data(), ref.data());
      for (int64_t r = 0; r < rows; ++r) BOOST_CHECK_EQUAL(y[t * rows + r], ref[r]);
    }
    for (size_t i = static_cast<size_t>(tokens * rows); i < y.size(); ++i) BOOST_CHECK_EQUAL(y[i], 99.0f);
  }
}

BOOST_AUTO_TEST_CASE(f16_and_bf16_weights_take_activations_rounded_to_their_type) {
  // ggml converts the activations of an f16 (bf16) weight to f16 (bf16) before the dot product;
  // mat_mul does too for parts marked ggml_activations: against a double-precision reference on
  // rounded activations, fused with an f32 weight of the same values, which must not share
  // rounded activations, and with an unmarked part of the same weight, which sees exact ones.
  const int64_t rows = 19, n = 80, tokens = 3;
  auto wf = random_floats(static_cast<size_t>(rows * n), 20, -1.0f, 1.0f);
  auto x = random_floats(static_cast<size_t>(tokens * n), 21, -3.0f, 3.0f);
  for (float& v : x) v *= 1.0f + 1e-4f;  // values between representable f16/bf16 numbers
  for (kc::quant_type type : {kc::quant_type::f16, kc::quant_type::bf16}) {
    const bool half = type == kc::quant_type::f16;
    auto round = [&](float v) {
      return half ? kc::fp16_to_fp32(kc::fp32_to_fp16(v)) : kc::bf16_to_fp32(kc::fp32_to_bf16(v));
    };
    std::vector<uint16_t> w(wf.size());
    for (size_t i = 0; i < w.size(); ++i)
      w[i] = half ? kc::fp32_to_fp16(wf[i]) : kc::fp32_to_bf16(wf[i]);
    std::vector<float> w32(wf.size());  // the same weights as f32
    for (size_t i = 0; i < w.size(); ++i)
      w32[i] = half ? kc::fp16_to_fp32(w[i]) : kc::bf16_to_fp32(w[i]);
    kc::thread_pool pool(2);
    std::vector<float> y(static_cast<size_t>(tokens * rows)), y32(y.size()), yx(y.size());
    std::vector<std::byte> scratch;
    const kc::mat_mul_part parts[3] = {
      {type, rows, w.data(), static_cast<size_t>(n) * 2, y.data(), true},
      {kc::quant_type::f32, rows, w32.data(), static_cast<size_t>(n) * 4, y32.data(), true},
      {type, rows, w.data(), static_cast<size_t>(n) * 2, yx.data()}};
    BOOST_REQUIRE(kc::mat_mul(pool, parts, 3, n, x.data(), tokens, scratch) == kc::status::ok);
    double rounded_err = 0, plain_err = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double rounded = 0, plain = 0;
        for (int64_t i = 0; i < n; ++i) {
          rounded += double(w32[r * n + i]) * round(x[t * n + i]);
          plain += double(w32[r * n + i]) * x[t * n + i];
        }
        rounded_err = std::max(rounded_err, std::abs(y[t * rows + r] - rounded));
        plain_err = std::max(plain_err, std::abs(y32[t * rows + r] - plain));
        plain_err = std::max(plain_err, std::abs(yx[t * rows + r] - plain));
      }
    }
    BOOST_TEST_MESSAGE((half ? "f16" : "bf16") << ": |y - rounded reference| " << rounded_err
                                           << ", f32 part |y - plain reference| " << plain_err);
    BOOST_CHECK_LT(rounded_err, 1e-4);  // float summation only
    BOOST_CHECK_LT(plain_err, 1e-4);    // the f32 and unmarked parts saw exact activations
    double moved = 0;  // and the rounding is there: outputs differ by far more than that
    for (size_t i = 0; i < y.size(); ++i) moved = std::max(moved, double(std::abs(y[i] - y32[i])));
    BOOST_CHECK_GT(moved, half ? 1e-3 : 1e-2);
  }
}

BOOST_AUTO_TEST_CASE(fused_mat_mul_matches_one_mat_mul_per_part) {
  // Two Q4_1 matrices and a Q8_0 one by the same activations (two activation types, shared by
  // the Q4_1 parts) in one pass: each output bit-identical to its own mat_mul.
  const int64_t n = 96, tokens = 5;
  const int64_t rows[3] = {37, 16, 9};
  const kc::quant_type types[3] = {kc::quant_type::q4_1, kc::quant_type::q8_0,
                                   kc::quant_type::q4_1};
  std::mt19937 g(12);
  std::vector<std::vector<std::byte>> w(3);
  for (int p = 0; p < 3; ++p) {
    const int64_t rb = kc::row_bytes(types[p], n);
    w[p].resize(static_cast<size_t>(rows[p] * rb));
    for (auto& b : w[p]) b = static_cast<std::byte>(g() & 0xFF);
    for (int64_t i = 0; i < rows[p] * (n / 32); ++i) {
      if (types[p] == kc::quant_type::q4_1) {
        auto* blk = reinterpret_cast<kc::block_q4_1*>(w[p].data()) + i;
        blk->d = kc::fp32_to_fp16(0.01f + 0.001f * static_cast<float>(i % 7));
        blk->m = kc::fp32_to_fp16(-0.05f);
      } else {
        auto* blk = reinterpret_cast<kc::block_q8_0*>(w[p].data()) + i;
        blk->d = kc::fp32_to_fp16(0.002f + 0.0001f * static_cast<float>(i % 5));
        for (auto& q : blk->qs) q = q == -128 ? int8_t{-127} : q;
      }
    }
  }
  const auto x = random_floats(static_cast<size_t>(tokens * n), 13);
  for (int threads : {1, 2, 3}) {
    kc::thread_pool pool(threads);
    std::vector<std::vector<float>> fused(3), single(3);
    kc::mat_mul_part parts[3];
    std::vector<std::byte> scratch;
    for (int p = 0; p < 3; ++p) {
      fused[p].assign(static_cast<size_t>(tokens * rows[p]) + 4, 99.0f);
      single[p].assign(static_cast<size_t>(tokens * rows[p]), 0.0f);
      parts[p] = {types[p], rows[p], w[p].data(),
                  static_cast<size_t>(kc::row_bytes(types[p], n)), fused[p].data()};
      BOOST_REQUIRE(kc::mat_mul(pool, types[p], rows[p], n, w[p].data(),
                                static_cast<size_t>(kc::row_bytes(types[p], n)), x.data(), tokens,
                                single[p].data(), scratch) == kc::status::ok);
    }
    BOOST_REQUIRE(kc::mat_mul(pool, parts, 3, n, x.data(), tokens, scratch) == kc::status::ok);
    for (int p = 0; p < 3; ++p) {
      for (size_t i = 0; i < single[p].size(); ++i) BOOST_CHECK_EQUAL(fused[p][i], single[p][i]);
      for (size_t i = single[p].size(); i < fused[p].size(); ++i)
        BOOST_CHECK_EQUAL(fused[p][i], 99.0f);
    }
  }
  std::vector<std::byte> scratch;
  kc::thread_pool pool(1);
  kc::mat_mul_part nine[9] = {};
  BOOST_CHECK(kc::mat_mul(pool, nine, 9, n, x.data(), 1, scratch) == kc::status::bad_size);
}

namespace {

/// Every prompt of the SmolLM2 fixture (f32 or f16 KV cache, as llama.cpp ran it): llama.cpp's
/// top-50 first-step logits exactly and all 64 greedy tokens.
void check_smollm2_against_llama_cpp(kv_cache_type kv) {
  const auto path = test::smollm2_path();
  if (path.empty()) {
    BOOST_TEST_MESSAGE("SKIPPED: SmolLM2-135M-Instruct.Q4_1.gguf not found (set TROUPE_MODEL_DIR "
                       "or run scripts/install-deps)");
    return;
  }
  const troupe::json::value fixture = test::reference_fixture(kv == kv_cache_type::f16);
  BOOST_REQUIRE_EQUAL(fixture.find("settings")->find("kv_type")->as_string(), to_string(kv));
  auto model = llama_model::load(path);
  BOOST_CHECK_EQUAL(model->hparams().layers, 30);
  BOOST_CHECK_EQUAL(model->hparams().kv_heads, 3);
  llama_session session(model, 512, 2, kv);
  double max_diff = 0;
  int identical = 0, total = 0;
  for (const troupe::json::value& c : fixture.find("cases")->as_array()) {
    const std::string name = c.find("name")->as_string();
    BOOST_TEST_CONTEXT("prompt " << name) {
      session.reset();
      const auto prompt = test::ids_of(*c.find("prompt_tokens"));
      auto logits = session.decode(prompt);
      // First step: the llama.cpp top-50 logits.
      double case_diff = 0;
      for (const troupe::json::value& pair : c.find("first_logits")->find("top")->as_array()) {
        const auto id = static_cast<size_t>(pair.as_array()[0].as_int());
        case_diff = std::max(case_diff, std::abs(logits[id] - pair.as_array()[1].as_number()));
      }
      max_diff = std::max(max_diff, case_diff);
      // Bit-exact: every op rounds as llama.cpp's CPU backend does (transformer_ops.hpp), so
      // any difference at all is a regression. Measured 0 on all 23 prompts.
      BOOST_CHECK_EQUAL(case_diff, 0.0);
      // 64 greedy tokens.
      const auto expected = test::ids_of(*c.find("greedy_tokens"));
      std::vector<int32_t> got;
      for (size_t i = 0; i < expected.size(); ++i) {
        const auto next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
        got.push_back(next);
        logits = session.decode(std::span<const int32_t>(&next, 1));
      }
      // All 64 greedy tokens, on every prompt (23/23 identical when last measured).
      BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), expected.begin(), expected.end());
      identical += got == expected ? 1 : 0;
      ++total;
      size_t prefix = 0;
      while (prefix < got.size() && got[prefix] == expected[prefix]) ++prefix;
      BOOST_TEST_MESSAGE(name << ": first-step max |logit diff| over llama.cpp's top 50 = "
                              << case_diff << ", first " << prefix << " of 64 greedy tokens identical");
    }
  }
  BOOST_TEST_MESSAGE(to_string(kv) << " KV cache: greedy tokens identical on " << identical << "/"
                                    << total << " prompts; max |logit diff| " << max_diff);
  BOOST_CHECK_GE(total, 20);
}

}  // namespace

BOOST_AUTO_TEST_CASE(smollm2_matches_llama_cpp) { check_smollm2_against_llama_cpp(kv_cache_type::f32); }

// llama.cpp's default cache type: keys and values stored as f16, q and the softmax rounded to
// f16 for their products (kernels/cpu/transformer_ops.hpp, attention_shape::kv_type).
BOOST_AUTO_TEST_CASE(smollm2_with_f16_kv_cache_matches_llama_cpp) {
  check_smollm2_against_llama_cpp(kv_cache_type::f16);
}

BOOST_AUTO_TEST_CASE(session_rejects_bad_input) {
  const auto path = test::smollm2_path();
  if (path.empty()) {
    BOOST_TEST_MESSAGE("SKIPPED: model not found");
    return;
  }
  auto model = llama_model::load(path);
  llama_session s(model, 4, 1);
  const int32_t bad = 1 << 20;
  BOOST_CHECK_THROW(s.decode(std::span<const int32_t>(&bad, 1)), troupe::error);
  BOOST_CHECK_THROW(s.decode({}), troupe::error);
  const std::vector<int32_t> five{1, 2, 3, 4, 5};
  BOOST_CHECK_THROW(s.decode(five), troupe::error);  // context of 4
  BOOST_CHECK_EQUAL(s.position(), 0);
}
