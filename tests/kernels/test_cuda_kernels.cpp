// CUDA kernels (kernels/cuda/ops.hpp) against their CPU references, on the device: random data with
// odd sizes and strides, guard bytes after every output (and untouched rows where a kernel must not
// write), tolerances per op. References: kernels/cpu (rms_norm, silu_mul, dequantize_row,
// int4_group_gemm), the host moe_align_block_size and INT4 repack of kernels/cuda, and plain
// double-precision loops written from the documented contracts (RoPE, MLA decode, argmax; the
// router is a transcription of runtime/deepseek/experts.cpp route).
//
// Without a CUDA device the program prints "SKIPPED: no CUDA device" and exits with 77, which
// ctest reports as skipped (SKIP_RETURN_CODE), not passed.

#define BOOST_TEST_MODULE cuda_kernels
#define BOOST_TEST_NO_MAIN
#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <ostream>
#include <random>
#include <vector>

#include "cpu/low_bit.hpp"
#include "cpu/quant.hpp"
#include "cpu/transformer_ops.hpp"
#include "cuda/convert.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda/ops.hpp"

namespace troupe::kernels::cuda {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
}  // namespace troupe::kernels::cuda
namespace troupe::kernels::cpu {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
}  // namespace troupe::kernels::cpu

namespace kc = troupe::kernels::cuda;
namespace cpu = troupe::kernels::cpu;
using kc::status;

namespace {

constexpr size_t guard_bytes = 256;
constexpr uint8_t guard_byte = 0xA5;

#define CUDA_OK(x) BOOST_REQUIRE_EQUAL(static_cast<int>(x), static_cast<int>(cudaSuccess))

/// A device array of n T followed by guard_bytes of guard_byte; the whole array starts as the
/// guard pattern unless uploaded.
template <typename T>
struct dev {
  T* p = nullptr;
  size_t n = 0;
  explicit dev(size_t count) : n(count) {
    void* raw = nullptr;
    CUDA_OK(cudaMalloc(&raw, n * sizeof(T) + guard_bytes));
    p = static_cast<T*>(raw);
    CUDA_OK(cudaMemset(p, guard_byte, n * sizeof(T) + guard_bytes));
  }
  explicit dev(const std::vector<T>& v) : dev(v.size()) {
    CUDA_OK(cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  dev(const dev&) = delete;
  dev& operator=(const dev&) = delete;
  ~dev() { cudaFree(p); }
  /// The contents; fails the test when a guard byte changed.
  std::vector<T> get() const {
    std::vector<uint8_t> raw(n * sizeof(T) + guard_bytes);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(raw.data(), p, raw.size(), cudaMemcpyDeviceToHost));
    for (size_t i = n * sizeof(T); i < raw.size(); ++i)
      BOOST_REQUIRE_MESSAGE(raw[i] == guard_byte, "guard byte " << i - n * sizeof(T)
                                                                 << " past the output overwritten");
    std::vector<T> out(n);
    std::memcpy(out.data(), raw.data(), n * sizeof(T));
    return out;
  }
};

bool is_guard(const void* v, size_t bytes) {
  const auto* b = static_cast<const uint8_t*>(v);
  return std::all_of(b, b + bytes, [](uint8_t x) { return x == guard_byte; });
}

std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> random_bf16(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::vector<uint16_t> v(n);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : v) x = cpu::fp32_to_bf16(d(rng));
  return v;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rms_norm_matches_cpu) {
  std::mt19937 rng(1);
  for (const int64_t n : {1, 37, 1000, 3001, 7168}) {
    const int64_t rows = 5, ldx = n + 3, ldy = n + 1;
    const auto x = random_floats(rng, rows * ldx, -3, 3);
    const auto w = random_floats(rng, n, 0.5f, 1.5f);
    dev<float> dx(x), dw(w), dy(static_cast<size_t>(rows * ldy));
    BOOST_REQUIRE_EQUAL(kc::launch_rms_norm(dx.p, ldx, dw.p, dy.p, ldy, rows, n, 1e-6f, nullptr),
                        status::ok);
    const auto y = dy.get();
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<float> ref(n);
      BOOST_REQUIRE_EQUAL(cpu::rms_norm(x.data() + r * ldx, w.data(), ref.data(), n, 1e-6f),
                          cpu::status::ok);
      for (int64_t i = 0; i < n; ++i)
        BOOST_REQUIRE_SMALL(y[r * ldy + i] - ref[i], 2e-5f * (1 + std::fabs(ref[i])));
      if (r + 1 < rows) BOOST_REQUIRE(is_guard(&y[r * ldy + n], (ldy - n) * sizeof(float)));
    }
  }
  BOOST_TEST(kc::launch_rms_norm(nullptr, 4, nullptr, nullptr, 3, 1, 4, 1e-6f, nullptr) ==
             status::bad_size);
}

BOOST_AUTO_TEST_CASE(rope_adjacent_matches_double_reference) {
  std::mt19937 rng(2);
  // DeepSeek q layout: heads of 192 = [128 nope | 64 rope]; tokens at odd positions.
  const int64_t tokens = 3, heads = 5, head_dim = 192, offset = 128, rope = 64;
  const int64_t token_stride = heads * head_dim + 7;
  auto x = random_floats(rng, tokens * token_stride);
  const std::vector<int32_t> pos{0, 17, 4095};
  std::vector<float> inv_freq(rope / 2);
  for (int64_t i = 0; i < rope / 2; ++i)
    inv_freq[i] = static_cast<float>(std::pow(10000.0, -2.0 * i / rope)) / (i > 20 ? 40.0f : 1.0f);
  const float amplitude = 1.07f;
  dev<float> dx(x);
  dev<int32_t> dp(pos);
  dev<float> df(inv_freq);
  BOOST_REQUIRE_EQUAL(kc::launch_rope_adjacent(dx.p, tokens, heads, token_stride, head_dim, offset,
                                               rope, dp.p, df.p, amplitude, nullptr),
                      status::ok);
  const auto y = dx.get();
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t d = 0; d < head_dim; ++d) {
        const int64_t at = t * token_stride + h * head_dim + d;
        double want = x[at];
        if (d >= offset) {
          const int64_t i = (d - offset) / 2;
          const double angle = static_cast<float>(pos[t]) * inv_freq[i];  // float product
          const double c = std::cos(angle) * amplitude, s = std::sin(angle) * amplitude;
          const int64_t pair = at - (d - offset) % 2;
          want = (d - offset) % 2 == 0 ? x[pair] * c - x[pair + 1] * s
                                       : x[pair] * s + x[pair + 1] * c;
        }
        BOOST_REQUIRE_SMALL(y[at] - want, 2e-6);
      }
}

BOOST_AUTO_TEST_CASE(silu_mul_matches_cpu) {
  std::mt19937 rng(3);
  const int64_t tokens = 3, inter = 1001, ld_in = 2 * inter + 5, ld_out = inter + 2;
  const auto gu = random_floats(rng, tokens * ld_in, -8, 8);
  dev<float> din(gu), dout(static_cast<size_t>(tokens * ld_out));
  BOOST_REQUIRE_EQUAL(kc::launch_silu_mul(din.p, ld_in, dout.p, ld_out, tokens, inter, nullptr),
                      status::ok);
  const auto y = dout.get();
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> g(gu.begin() + t * ld_in, gu.begin() + t * ld_in + inter);
    BOOST_REQUIRE_EQUAL(cpu::silu_mul(g.data(), gu.data() + t * ld_in + inter, inter),
                        cpu::status::ok);
    for (int64_t i = 0; i < inter; ++i)
      BOOST_REQUIRE_SMALL(y[t * ld_out + i] - g[i], 1e-6f * (1 + std::fabs(g[i])));
  }
}

BOOST_AUTO_TEST_CASE(embedding_gathers_rows_exactly) {
  std::mt19937 rng(4);
  const int64_t vocab = 1003, dim = 333;
  const auto table = random_bf16(rng, vocab * dim);
  const std::vector<int32_t> ids{5, 1002, 0, 5, -1, 1003, 77};
  dev<uint16_t> dt(table);
  dev<int32_t> di(ids);
  dev<float> df(ids.size() * dim);
  dev<uint16_t> db(ids.size() * dim);
  BOOST_REQUIRE_EQUAL(kc::launch_embedding_f32(dt.p, vocab, dim, di.p, ids.size(), df.p, nullptr),
                      status::ok);
  BOOST_REQUIRE_EQUAL(kc::launch_embedding_bf16(dt.p, vocab, dim, di.p, ids.size(), db.p, nullptr),
                      status::ok);
  const auto f = df.get();
  const auto b = db.get();
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t i = 0; i < dim; ++i) {
      const bool valid = ids[t] >= 0 && ids[t] < vocab;
      const uint16_t want = valid ? table[ids[t] * dim + i] : 0;
      BOOST_REQUIRE_EQUAL(b[t * dim + i], want);
      BOOST_REQUIRE_EQUAL(f[t * dim + i], cpu::bf16_to_fp32(want));
    }
}

namespace {

// runtime/deepseek/experts.cpp route (sigmoid scoring), transcribed.
void route_reference(const float* logits, const float* bias, int64_t tokens, int64_t E,
                     int64_t groups, int64_t topk_group, int64_t k, bool norm, float scaling,
                     int32_t* ids, float* weights) {
  auto top = [](const float* v, int64_t n, int64_t kk, int32_t* out) {
    std::vector<int32_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + kk, idx.end(), [v](int32_t a, int32_t b) {
      return v[a] > v[b] || (v[a] == v[b] && a < b);
    });
    std::copy(idx.begin(), idx.begin() + kk, out);
  };
  const int64_t per = E / groups;
  std::vector<float> scores(E), choice(E), gs(groups);
  std::vector<int32_t> kept(topk_group);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[t * E + e]));
    for (int64_t e = 0; e < E; ++e) choice[e] = scores[e] + (bias ? bias[e] : 0.0f);
    if (groups > 1 && topk_group < groups) {
      for (int64_t g = 0; g < groups; ++g) {
        float best = -INFINITY, second = -INFINITY;
        for (int64_t j = 0; j < per; ++j) {
          const float c = choice[g * per + j];
          if (c > best) {
            second = best;
            best = c;
          } else if (c > second) {
            second = c;
          }
        }
        gs[g] = per > 1 ? best + second : best;
      }
      top(gs.data(), groups, topk_group, kept.data());
      std::vector<bool> keep(groups, false);
      for (int32_t g : kept) keep[g] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[e / per]) choice[e] = 0.0f;
    }
    top(choice.data(), E, k, ids + t * k);
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += weights[t * k + j] = scores[ids[t * k + j]];
    if (norm)
      for (int64_t j = 0; j < k; ++j) weights[t * k + j] /= sum + 1e-20f;
    for (int64_t j = 0; j < k; ++j) weights[t * k + j] *= scaling;
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(route_topk_matches_deepseek_router) {
  std::mt19937 rng(5);
  struct shape {
    int64_t experts, groups, topk_group, k;
    bool norm;
  };
  for (const shape s : {shape{384, 1, 1, 8, true}, shape{256, 8, 4, 8, true},
                        shape{64, 8, 3, 6, false}, shape{72, 4, 4, 1, true}}) {
    const int64_t tokens = 9;
    const auto logits = random_floats(rng, tokens * s.experts, -4, 4);
    const auto bias = random_floats(rng, s.experts, -0.3f, 0.3f);
    dev<float> dl(logits), db(bias), dw(static_cast<size_t>(tokens * s.k));
    dev<int32_t> di(static_cast<size_t>(tokens * s.k));
    BOOST_REQUIRE_EQUAL(kc::launch_route_topk(dl.p, db.p, tokens, s.experts, s.groups,
                                              s.topk_group, s.k, s.norm, 2.827f, di.p, dw.p,
                                              nullptr),
                        status::ok);
    std::vector<int32_t> ids(tokens * s.k);
    std::vector<float> w(tokens * s.k);
    route_reference(logits.data(), bias.data(), tokens, s.experts, s.groups, s.topk_group, s.k,
                    s.norm, 2.827f, ids.data(), w.data());
    const auto gi = di.get();
    const auto gw = dw.get();
    for (size_t i = 0; i < ids.size(); ++i) {
      BOOST_REQUIRE_EQUAL(gi[i], ids[i]);
      BOOST_REQUIRE_SMALL(gw[i] - w[i], 1e-6f * (1 + std::fabs(w[i])));
    }
  }
  BOOST_TEST(kc::launch_route_topk(nullptr, nullptr, 1, 2048, 1, 1, 8, true, 1, nullptr, nullptr,
                                   nullptr) == status::unsupported);
}

BOOST_AUTO_TEST_CASE(ggml_mat_vec_matches_dequantized_rows) {
  std::mt19937 rng(6);
  for (const cpu::quant_type type : {cpu::quant_type::q8_0, cpu::quant_type::q4_1}) {
    const int64_t rows = 131, n = 32 * 45, tokens = 3;
    const int64_t row_bytes = cpu::row_bytes(type, n), row_stride = row_bytes + 6;
    std::vector<uint8_t> w(rows * row_stride);
    for (auto& b : w) b = static_cast<uint8_t>(rng());
    // Sane fp16 scales (random bytes could be Inf/NaN): d in [0.001, 0.01], m in [-0.1, 0.1].
    const int64_t bb = cpu::block_bytes(type);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t b = 0; b < n / 32; ++b) {
        uint8_t* blk = w.data() + r * row_stride + b * bb;
        const uint16_t d = cpu::fp32_to_fp16(std::uniform_real_distribution<float>(0.001f, 0.01f)(rng));
        std::memcpy(blk, &d, 2);
        if (type == cpu::quant_type::q4_1) {
          const uint16_t m = cpu::fp32_to_fp16(std::uniform_real_distribution<float>(-0.1f, 0.1f)(rng));
          std::memcpy(blk + 2, &m, 2);
        }
      }
    const int64_t ldx = n + 5, ldy = rows + 3;
    const auto x = random_floats(rng, tokens * ldx);
    dev<uint8_t> dw(w);
    dev<float> dx(x), dy(static_cast<size_t>(tokens * ldy));
    BOOST_REQUIRE_EQUAL(kc::launch_ggml_mat_vec(static_cast<uint32_t>(type), dw.p, rows, n,
                                                row_stride, dx.p, ldx, tokens, dy.p, ldy, nullptr),
                        status::ok);
    const auto y = dy.get();
    std::vector<float> deq(n);
    for (int64_t r = 0; r < rows; ++r) {
      BOOST_REQUIRE_EQUAL(cpu::dequantize_row(type, w.data() + r * row_stride, deq.data(), n),
                          cpu::status::ok);
      for (int64_t t = 0; t < tokens; ++t) {
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          want += static_cast<double>(deq[i]) * x[t * ldx + i];
          mag += std::fabs(static_cast<double>(deq[i]) * x[t * ldx + i]);
        }
        BOOST_REQUIRE_SMALL(y[t * ldy + r] - want, 1e-5 * mag + 1e-6);
      }
    }
  }
  BOOST_TEST(kc::launch_ggml_mat_vec(12, nullptr, 1, 256, 144, nullptr, 256, 1, nullptr, 1,
                                     nullptr) == status::unsupported);
}

BOOST_AUTO_TEST_CASE(argmax_picks_lowest_index_of_largest) {
  std::mt19937 rng(7);
  const int64_t batch = 4, vocab = 163840 + 3, ld = vocab + 1;
  auto l = random_floats(rng, batch * ld, -10, 10);
  l[0 * ld + 5000] = 50;  // a tie: the lower index wins
  l[0 * ld + 90000] = 50;
  l[1 * ld + vocab - 1] = 60;  // the last element
  l[2 * ld + 0] = NAN;         // NaNs are skipped
  l[2 * ld + 7] = 70;
  for (int64_t i = 0; i < vocab; ++i) l[3 * ld + i] = -INFINITY;
  l[3 * ld + 123] = NAN;
  dev<float> dl(l);
  dev<int32_t> di(batch);
  BOOST_REQUIRE_EQUAL(kc::launch_argmax(dl.p, ld, batch, vocab, di.p, nullptr), status::ok);
  const auto ids = di.get();
  BOOST_TEST(ids[0] == 5000);
  BOOST_TEST(ids[1] == vocab - 1);
  BOOST_TEST(ids[2] == 7);
  BOOST_TEST(ids[3] == 0);  // all -inf: the first
}

namespace {

/// Repacked random INT4 expert stack with its checkpoint-layout original.
struct int4_experts {
  int64_t experts, n, k;
  std::vector<uint32_t> packed, tiles;
  std::vector<uint16_t> scales, tile_scales;
  cpu::int4_group_matrix matrix(int64_t e) const {
    cpu::int4_group_matrix m;
    m.rows = n;
    m.cols = k;
    m.group = 32;
    m.packed = packed.data() + e * n * (k / 8);
    m.packed_stride = k / 8;
    m.scales = scales.data() + e * n * (k / 32);
    m.scale_stride = k / 32;
    return m;
  }
};

int4_experts make_experts(std::mt19937& rng, int64_t experts, int64_t n, int64_t k) {
  int4_experts s{experts, n, k, {}, {}, {}, {}};
  s.packed.resize(experts * n * (k / 8));
  s.scales = random_bf16(rng, experts * n * (k / 32), 0.001f, 0.05f);
  for (auto& w : s.packed) w = static_cast<uint32_t>(rng());
  s.tiles.resize(s.packed.size());
  s.tile_scales.resize(s.scales.size());
  for (int64_t e = 0; e < experts; ++e)
    BOOST_REQUIRE_EQUAL(kc::int4_repack_expert(s.packed.data() + e * n * (k / 8), k / 8,
                                               s.scales.data() + e * n * (k / 32), k / 32, n, k, e,
                                               s.tiles.data(), s.tile_scales.data()),
                        status::ok);
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(moe_w4a16_gemm_matches_int4_group_gemm_per_pair) {
  std::mt19937 rng(8);
  const int64_t experts = 10, n = 300, k = 224, tokens = 13, top_k = 4;
  const int4_experts w = make_experts(rng, experts, n, k);
  dev<uint32_t> dtiles(w.tiles);
  dev<uint16_t> dscales(w.tile_scales);
  std::vector<int32_t> ids(tokens * top_k);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> all(experts);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + top_k, ids.begin() + t * top_k);
  }
  const int64_t pairs = tokens * top_k;
  const auto route_w = random_floats(rng, pairs, 0.1f, 1.0f);
  // Expert parallelism: this rank holds experts 1, 4, 5, 9 as local 0..3; the stack uploaded
  // holds the local experts only.
  const std::vector<int32_t> expert_map{-1, 0, -1, -1, 1, 2, -1, -1, -1, 3};
  const std::vector<int32_t> local_global{1, 4, 5, 9};

  for (const bool ep : {false, true})
    for (const int64_t a_div : {top_k, int64_t{1}})
      for (const int64_t block : {16, 32, 64}) {
        BOOST_TEST_CONTEXT("ep " << ep << " a_div " << a_div << " block " << block) {
          const int64_t cap = kc::moe_align_capacity(tokens, top_k, experts, block);
          std::vector<int32_t> sorted(cap), eids(cap / block);
          int32_t rows = 0;
          BOOST_REQUIRE_EQUAL(kc::moe_align_block_size(ids.data(), tokens, top_k, experts, block,
                                                       ep ? expert_map.data() : nullptr,
                                                       sorted.data(), eids.data(), cap, &rows),
                              status::ok);
          const int64_t a_rows = pairs / a_div, lda = k + 8;
          const auto a = random_bf16(rng, a_rows * lda);
          std::vector<uint32_t> tiles = w.tiles;
          std::vector<uint16_t> tscales = w.tile_scales;
          int64_t stack = experts;
          if (ep) {  // the local stack: experts 1, 4, 5, 9 in local order
            stack = 4;
            tiles.clear();
            tscales.clear();
            for (int32_t g : local_global) {
              tiles.insert(tiles.end(), w.tiles.begin() + g * kc::int4_tile_words(n, k),
                           w.tiles.begin() + (g + 1) * kc::int4_tile_words(n, k));
              tscales.insert(tscales.end(), w.tile_scales.begin() + g * kc::int4_tile_scales(n, k),
                             w.tile_scales.begin() + (g + 1) * kc::int4_tile_scales(n, k));
            }
          }
          dev<uint32_t> dt(tiles);
          dev<uint16_t> ds(tscales);
          dev<uint16_t> da(a);
          dev<int32_t> dsorted(sorted), deids(eids), drows(std::vector<int32_t>{rows});
          dev<float> drw(route_w);
          const int64_t ldy = n + 3;
          dev<float> dy(static_cast<size_t>(pairs * ldy));
          kc::moe_gemm_args args;
          args.a = da.p;
          args.lda = lda;
          args.a_div = a_div;
          args.tiles = dt.p;
          args.scales = ds.p;
          args.experts = stack;
          args.n = n;
          args.k = k;
          args.sorted_token_ids = dsorted.p;
          args.expert_ids = deids.p;
          args.num_tokens_post_padded = drows.p;
          args.capacity = cap;
          args.block = block;
          args.pairs = pairs;
          args.route_weights = drw.p;
          args.y = dy.p;
          args.ldy = ldy;
          BOOST_REQUIRE_EQUAL(kc::launch_moe_w4a16_gemm(args, nullptr), status::ok);
          const auto y = dy.get();
          std::vector<float> x(k), ref(n);
          for (int64_t p = 0; p < pairs; ++p) {
            const bool local = !ep || expert_map[ids[p]] >= 0;
            if (!local) {  // rows of other ranks' experts are not written
              BOOST_REQUIRE(is_guard(&y[p * ldy], ldy * sizeof(float)));
              continue;
            }
            for (int64_t c = 0; c < k; ++c) x[c] = cpu::bf16_to_fp32(a[(p / a_div) * lda + c]);
            BOOST_REQUIRE_EQUAL(cpu::int4_group_gemm(w.matrix(ids[p]), 0, n, x.data(), k, 1,
                                                     ref.data(), n, cpu::isa::scalar),
                                cpu::status::ok);
            for (int64_t c = 0; c < n; ++c)
              BOOST_REQUIRE_SMALL(y[p * ldy + c] - ref[c] * route_w[p],
                                  2e-5f * (1 + std::fabs(ref[c])));
            BOOST_REQUIRE(is_guard(&y[p * ldy + n], (ldy - n) * sizeof(float)));
          }
        }
      }
}

BOOST_AUTO_TEST_CASE(moe_align_on_device_matches_host_reference_up_to_order_within_experts) {
  std::mt19937 rng(11);
  for (const bool ep : {false, true})
    for (const int64_t block : {16, 64})
      for (const int64_t tokens : {0, 1, 9, 600}) {
        const int64_t experts = 384, top_k = 8;
        std::vector<int32_t> ids(tokens * top_k), map(experts);
        for (auto& v : ids) v = std::uniform_int_distribution<int32_t>(0, experts - 1)(rng);
        int32_t next = 0;
        for (auto& m : map) m = rng() % 4 == 0 ? next++ : -1;
        const int32_t* map_p = ep ? map.data() : nullptr;
        const int64_t cap = kc::moe_align_capacity(tokens, top_k, experts, block);
        std::vector<int32_t> sorted(cap), eids(cap / block);
        int32_t rows = 0;
        BOOST_REQUIRE_EQUAL(kc::moe_align_block_size(ids.data(), tokens, top_k, experts, block, map_p,
                                                     sorted.data(), eids.data(), cap, &rows),
                            status::ok);
        dev<int32_t> did(ids), dmap(map), dsorted(cap), deids(cap / block), drows(1);
        BOOST_REQUIRE_EQUAL(kc::launch_moe_align_block_size(did.p, tokens, top_k, experts, block,
                                                            ep ? dmap.p : nullptr, dsorted.p,
                                                            deids.p, cap, drows.p, nullptr),
                            status::ok);
        auto gsorted = dsorted.get();
        const auto geids = deids.get();
        BOOST_REQUIRE_EQUAL(drows.get()[0], rows);
        BOOST_REQUIRE(geids == eids);
        // Each expert's run (its consecutive blocks) holds the same pairs in some order.
        for (int64_t b = 0; b < rows / block;) {
          int64_t end = b + 1;
          while (end < rows / block && eids[end] == eids[b]) ++end;
          std::sort(gsorted.begin() + b * block, gsorted.begin() + end * block);
          b = end;
        }
        BOOST_REQUIRE(gsorted == sorted);
      }
}

BOOST_AUTO_TEST_CASE(mla_decode_matches_double_reference_over_shuffled_pages) {
  std::mt19937 rng(9);
  const int64_t batch = 3, heads = 5, kv_lora = 512, rope = 64, width = kv_lora + rope;
  const std::vector<int32_t> lens{1, 64, 150};
  const int64_t max_pages = 3, pages = batch * max_pages + 2;
  std::vector<int32_t> order(pages);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<int32_t> table(order.begin(), order.begin() + batch * max_pages);
  const auto cache = random_bf16(rng, pages * 64 * width, -1, 1);
  const auto ql = random_floats(rng, batch * heads * kv_lora, -0.2f, 0.2f);
  const auto qr = random_floats(rng, batch * heads * rope, -0.2f, 0.2f);
  const float scale = 0.0721f;
  dev<uint16_t> dc(cache);
  dev<float> dql(ql), dqr(qr), dout(static_cast<size_t>(batch * heads * kv_lora));
  dev<int32_t> dt(table), dl(lens);
  kc::mla_decode_args a;
  a.q_latent = dql.p;
  a.q_rope = dqr.p;
  a.cache = dc.p;
  a.block_table = dt.p;
  a.seq_lens = dl.p;
  a.batch = batch;
  a.heads = heads;
  a.kv_lora = kv_lora;
  a.rope = rope;
  a.max_pages = max_pages;
  a.scale = scale;
  a.out = dout.p;
  BOOST_REQUIRE_EQUAL(kc::launch_mla_decode(a, nullptr), status::ok);
  const auto out = dout.get();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<double> s(lens[b]);
      auto c_at = [&](int64_t j, int64_t i) {
        const int64_t page = table[b * max_pages + j / 64];
        return static_cast<double>(cpu::bf16_to_fp32(cache[(page * 64 + j % 64) * width + i]));
      };
      double mx = -INFINITY;
      for (int64_t j = 0; j < lens[b]; ++j) {
        double d = 0;
        for (int64_t i = 0; i < kv_lora; ++i) d += ql[(b * heads + h) * kv_lora + i] * c_at(j, i);
        for (int64_t i = 0; i < rope; ++i) d += qr[(b * heads + h) * rope + i] * c_at(j, kv_lora + i);
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& v : s) sum += v = std::exp(v - mx);
      for (int64_t i = 0; i < kv_lora; ++i) {
        double want = 0;
        for (int64_t j = 0; j < lens[b]; ++j) want += s[j] / sum * c_at(j, i);
        BOOST_REQUIRE_SMALL(out[(b * heads + h) * kv_lora + i] - want, 2e-5);
      }
    }
}

BOOST_AUTO_TEST_CASE(dense_bf16_gemm_is_exact_on_small_integers) {
  std::mt19937 rng(10);
  const int64_t m = 7, n = 33, k = 40, lda = 48, ldw = 40, ldy = 35;
  std::vector<uint16_t> a(m * lda), w(n * ldw);
  std::uniform_int_distribution<int> d(-4, 4);
  for (auto& v : a) v = cpu::fp32_to_bf16(static_cast<float>(d(rng)));
  for (auto& v : w) v = cpu::fp32_to_bf16(static_cast<float>(d(rng)));
  cublasLtHandle_t handle = nullptr;
  BOOST_REQUIRE_EQUAL(static_cast<int>(cublasLtCreate(&handle)), 0);
  dev<uint16_t> da(a), dw(w);
  dev<float> dy(static_cast<size_t>(m * ldy));
  dev<uint8_t> ws(size_t{1} << 22);
  const status s = kc::launch_dense_bf16_gemm(handle, da.p, lda, dw.p, ldw, dy.p, ldy, m, n, k, ws.p,
                                              ws.n, nullptr);
  const auto y = dy.get();
  cublasLtDestroy(handle);
  BOOST_REQUIRE_EQUAL(s, status::ok);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      float want = 0;
      for (int64_t c = 0; c < k; ++c)
        want += cpu::bf16_to_fp32(a[i * lda + c]) * cpu::bf16_to_fp32(w[j * ldw + c]);
      BOOST_REQUIRE_EQUAL(y[i * ldy + j], want);
    }
}

BOOST_AUTO_TEST_CASE(f32_to_bf16_rounds_as_the_cpu) {
  // convert.hpp: every value rounded as cpu::fp32_to_bf16 (ties to even, NaN quiet, infinities and
  // subnormals kept); strided rows; the gaps between rows and the guard bytes stay untouched.
  std::mt19937 rng(12);
  const int64_t rows = 5, n = 1037, ldx = n + 3, ldy = n + 7;
  auto x = random_floats(rng, rows * ldx, -1e3f, 1e3f);
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -3e-39f, 1.00390625f,
                            1.01171875f, 3.4e38f};
  for (size_t i = 0; i < std::size(specials); ++i) x[i * 3] = specials[i];
  dev<float> dx(x);
  dev<uint16_t> dy(static_cast<size_t>(rows * ldy));
  BOOST_REQUIRE_EQUAL(kc::launch_f32_to_bf16(dx.p, ldx, dy.p, ldy, rows, n, nullptr), status::ok);
  const auto y = dy.get();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; ++i)
      BOOST_REQUIRE_EQUAL(y[r * ldy + i], cpu::fp32_to_bf16(x[r * ldx + i]));
    BOOST_REQUIRE(is_guard(&y[r * ldy + n], (ldy - n) * sizeof(uint16_t)));
  }
  BOOST_CHECK_EQUAL(kc::launch_f32_to_bf16(dx.p, n - 1, dy.p, ldy, rows, n, nullptr), status::bad_size);
  BOOST_CHECK_EQUAL(kc::launch_f32_to_bf16(nullptr, ldx, dy.p, ldy, rows, n, nullptr),
                    status::null_pointer);
  BOOST_CHECK_EQUAL(kc::launch_f32_to_bf16(nullptr, ldx, nullptr, ldy, 0, n, nullptr), status::ok);
}

int main(int argc, char** argv) {
  // Listing the cases needs no device (scripts/gpu-check runs them one by one for its table).
  const bool listing = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::strncmp(a, "--list_content", 14) == 0;
  });
  int devices = 0;
  if (!listing && (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
