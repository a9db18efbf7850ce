// The decode step's small CUDA ops (kernels/cuda/decode_step_ops.hpp) against plain CPU loops
// written from their contracts, on the device: odd sizes, guard bytes after every output, and for
// the MLA decode also the fast kernel of ops.hpp on a shape both take. Tolerances: fp32 sums in a
// different order, 1e-5 relative to the largest value (1e-4 for softmax attention); bf16 outputs
// within one bf16 rounding (2^-8 relative) of the reference.
//
// Without a CUDA device the program prints "SKIPPED: no CUDA device" and exits with 77.
// UNVERIFIED so far: no GPU was available where this was written.

#define BOOST_TEST_MODULE decode_step_ops
#define BOOST_TEST_NO_MAIN
#include <cuda_runtime_api.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "cpu/quant.hpp"
#include "cuda/decode_step_ops.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda/ops.hpp"

namespace kc = troupe::kernels::cuda;
namespace cpu = troupe::kernels::cpu;
using kc::status;

namespace troupe::kernels::cuda {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
}  // namespace troupe::kernels::cuda

namespace {

constexpr size_t guard_bytes = 256;
constexpr uint8_t guard_byte = 0xA5;

#define CUDA_OK(x) BOOST_REQUIRE_EQUAL(static_cast<int>(x), static_cast<int>(cudaSuccess))

// A device array of n T followed by guard bytes, all starting as the guard pattern unless uploaded.
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
  std::vector<T> get() const {
    std::vector<uint8_t> raw(n * sizeof(T) + guard_bytes);
    CUDA_OK(cudaDeviceSynchronize());
    CUDA_OK(cudaMemcpy(raw.data(), p, raw.size(), cudaMemcpyDeviceToHost));
    for (size_t i = n * sizeof(T); i < raw.size(); ++i)
      BOOST_REQUIRE_MESSAGE(raw[i] == guard_byte, "guard byte " << i - n * sizeof(T) << " overwritten");
    std::vector<T> out(n);
    std::memcpy(out.data(), raw.data(), n * sizeof(T));
    return out;
  }
};

std::vector<float> floats(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<uint16_t> bf16s(std::mt19937& rng, size_t n, float lo = -1, float hi = 1) {
  std::vector<uint16_t> v(n);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : v) x = cpu::fp32_to_bf16(d(rng));
  return v;
}

float bf(uint16_t h) { return cpu::bf16_to_fp32(h); }

double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

// |got - want| <= tol · max|want| for every element.
template <class Got>
void check_close(const std::vector<Got>& got, const std::vector<double>& want, double tol, const char* what) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  const double scale = std::max(max_abs(want), 1e-30);
  for (size_t i = 0; i < got.size(); ++i) {
    double g;
    if constexpr (std::is_same_v<Got, uint16_t>) g = bf(got[i]);
    else g = got[i];
    BOOST_REQUIRE_MESSAGE(std::abs(g - want[i]) <= tol * scale,
                          what << "[" << i << "]: " << g << " vs " << want[i]);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(absorbed_queries_and_values) {
  std::mt19937 rng(1);
  for (const int64_t rows : {1, 5, 64}) {
    const int64_t H = 3, nope = 40, rope = 6, R = 100, qk = nope + rope;
    const int64_t v = rows == 5 ? 21 : 20;  // 21: one value dim a warp; 20: four
    const auto q = floats(rng, static_cast<size_t>(rows * H * qk));
    const auto wuk = bf16s(rng, static_cast<size_t>(H * nope * R));
    dev<float> dq(q), dlat(static_cast<size_t>(rows * H * R)), drope(static_cast<size_t>(rows * H * rope));
    dev<uint16_t> dw(wuk);
    BOOST_REQUIRE_EQUAL(kc::launch_mla_absorb_q(dq.p, rows, H, nope, rope, dw.p, R, dlat.p, drope.p, nullptr,
                                                nullptr, 1.0f, nullptr),
                        status::ok);
    std::vector<double> lat(static_cast<size_t>(rows * H * R)), rp(static_cast<size_t>(rows * H * rope));
    for (int64_t b = 0; b < rows; ++b)
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t r = 0; r < R; ++r) {
          double s = 0;
          for (int64_t d = 0; d < nope; ++d) s += double(q[(b * H + h) * qk + d]) * bf(wuk[(h * nope + d) * R + r]);
          lat[(b * H + h) * R + r] = s;
        }
        for (int64_t i = 0; i < rope; ++i) rp[(b * H + h) * rope + i] = q[(b * H + h) * qk + nope + i];
      }
    check_close(dlat.get(), lat, 1e-5, "q_latent");
    check_close(drope.get(), rp, 0, "q_rope");
    // The same with the rope part rotated on the way: launch_rope_adjacent's values (same
    // expressions; within 1e-6 in case the two kernels contract their multiply-adds differently).
    std::vector<int32_t> pos(static_cast<size_t>(rows));
    for (int64_t b = 0; b < rows; ++b) pos[static_cast<size_t>(b)] = static_cast<int32_t>(b * 37 + 3);
    std::vector<float> inv_freq(static_cast<size_t>(rope / 2));
    for (int64_t i = 0; i < rope / 2; ++i) inv_freq[static_cast<size_t>(i)] = std::pow(10000.0f, -2.0f * i / rope);
    dev<int32_t> dpos(pos);
    dev<float> dfreq(inv_freq), drot(static_cast<size_t>(rows * H * rope)), dq2(q);
    BOOST_REQUIRE_EQUAL(kc::launch_mla_absorb_q(dq.p, rows, H, nope, rope, dw.p, R, dlat.p, drot.p, dpos.p,
                                                dfreq.p, 1.5f, nullptr),
                        status::ok);
    BOOST_REQUIRE_EQUAL(kc::launch_rope_adjacent(dq2.p, rows, H, H * qk, qk, nope, rope, dpos.p, dfreq.p, 1.5f,
                                                 nullptr),
                        status::ok);
    const auto rotated = drot.get(), q2 = dq2.get();
    for (int64_t b = 0; b < rows; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < rope; ++i)
          BOOST_REQUIRE_SMALL(rotated[(b * H + h) * rope + i] - q2[(b * H + h) * qk + nope + i], 1e-6f);
    BOOST_CHECK(dq.get() == q);  // q itself untouched
    // W_UV: bf16 output with row stride ldo > H·v (the gap must stay untouched).
    const int64_t ldo = H * v + 3;
    const auto olat = floats(rng, static_cast<size_t>(rows * H * R));
    const auto wuv = bf16s(rng, static_cast<size_t>(H * v * R));
    dev<float> dol(olat);
    dev<uint16_t> dwv(wuv), dout(static_cast<size_t>(rows * ldo));
    BOOST_REQUIRE_EQUAL(kc::launch_mla_unabsorb_v(dol.p, rows, H, R, dwv.p, v, dout.p, ldo, nullptr), status::ok);
    const auto out = dout.get();
    for (int64_t b = 0; b < rows; ++b) {
      for (int64_t o = 0; o < H * v; ++o) {
        const int64_t h = o / v;
        double s = 0;
        for (int64_t r = 0; r < R; ++r) s += double(olat[(b * H + h) * R + r]) * bf(wuv[o * R + r]);
        BOOST_REQUIRE_MESSAGE(std::abs(bf(out[b * ldo + o]) - s) <= std::abs(s) / 128 + 1e-5,
                              "W_UV row " << b << " out " << o << ": " << bf(out[b * ldo + o]) << " vs " << s);
      }
      for (int64_t o = H * v; o < ldo; ++o) BOOST_CHECK_EQUAL(out[b * ldo + o], 0xA5A5);
    }
  }
  // Too many staged queries for shared memory: refused, nothing launched.
  BOOST_CHECK_EQUAL(kc::launch_mla_absorb_q(nullptr, 100, 1, 128, 64, nullptr, 512, nullptr, nullptr, nullptr,
                                            nullptr, 1.0f, nullptr),
                    status::unsupported);
}

BOOST_AUTO_TEST_CASE(mla_decode_plain_split_and_shared_read_match_reference_and_fast_kernel) {
  std::mt19937 rng(2);
  for (const int64_t R : {32, 128, 512})
  for (const int64_t H : {2, 20}) {  // 20 heads: two heads per warp in the shared-read kernel
    const int64_t B = 3, rope = 16, width = R + rope, max_pages = 3, pages = 8;
    const std::vector<int32_t> lens{0, 5, 130};
    std::vector<int32_t> table(static_cast<size_t>(B * max_pages));
    std::vector<int32_t> perm(pages - 1);
    std::iota(perm.begin(), perm.end(), 1);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (size_t i = 0; i < table.size(); ++i) table[i] = perm[i % perm.size()];
    const auto cache = bf16s(rng, static_cast<size_t>(pages * 64 * width));
    const auto ql = floats(rng, static_cast<size_t>(B * H * R)), qr = floats(rng, static_cast<size_t>(B * H * rope));
    dev<float> dql(ql), dqr(qr), dout(static_cast<size_t>(B * H * R)), dfast(static_cast<size_t>(B * H * R));
    dev<uint16_t> dc(cache);
    dev<int32_t> dt(table), dl(lens);
    kc::mla_decode_args a;
    a.q_latent = dql.p;
    a.q_rope = dqr.p;
    a.cache = dc.p;
    a.block_table = dt.p;
    a.seq_lens = dl.p;
    a.batch = B;
    a.heads = H;
    a.kv_lora = R;
    a.rope = rope;
    a.max_pages = max_pages;
    a.scale = 0.07f;
    a.out = dout.p;
    BOOST_REQUIRE_EQUAL(kc::launch_mla_decode_plain(a, nullptr), status::ok);
    std::vector<double> want(static_cast<size_t>(B * H * R), 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t n = lens[static_cast<size_t>(b)];
        std::vector<double> s(static_cast<size_t>(n));
        auto at = [&](int64_t j) {
          return cache.data() + (table[static_cast<size_t>(b * max_pages + j / 64)] * 64 + j % 64) * width;
        };
        for (int64_t j = 0; j < n; ++j) {
          double d = 0;
          for (int64_t i = 0; i < R; ++i) d += double(ql[(b * H + h) * R + i]) * bf(at(j)[i]);
          for (int64_t i = 0; i < rope; ++i) d += double(qr[(b * H + h) * rope + i]) * bf(at(j)[R + i]);
          s[static_cast<size_t>(j)] = d * 0.07;
        }
        if (n == 0) continue;
        const double m = *std::max_element(s.begin(), s.end());
        double z = 0;
        for (auto& x : s) z += (x = std::exp(x - m));
        for (int64_t j = 0; j < n; ++j)
          for (int64_t i = 0; i < R; ++i) want[(b * H + h) * R + i] += s[static_cast<size_t>(j)] / z * bf(at(j)[i]);
      }
    const auto got = dout.get();
    check_close(got, want, 1e-4, "mla_decode_plain");
    for (const int64_t pps : {1, 2, 3}) {  // heads sharing each cache read, 3, 2 and 1 splits
      BOOST_REQUIRE(kc::mla_decode_heads_supported(H, R, rope));
      const int64_t floats_needed = kc::mla_split_workspace_floats(B, H, R, max_pages, pps);
      dev<float> ws(static_cast<size_t>(floats_needed)), dheads(static_cast<size_t>(B * H * R));
      a.out = dheads.p;
      BOOST_REQUIRE_EQUAL(kc::launch_mla_decode_heads(a, pps, ws.p, floats_needed, nullptr), status::ok);
      check_close(dheads.get(), want, 1e-4, "mla_decode_heads");
      a.out = dout.p;
    }
    for (const int64_t pps : {1, 2, 3}) {  // split over the pages: 3, 2 and 1 splits
      const int64_t floats_needed = kc::mla_split_workspace_floats(B, H, R, max_pages, pps);
      dev<float> ws(static_cast<size_t>(floats_needed)), dsplit(static_cast<size_t>(B * H * R));
      a.out = dsplit.p;
      BOOST_REQUIRE_EQUAL(kc::launch_mla_decode_split(a, pps, ws.p, floats_needed, nullptr), status::ok);
      check_close(dsplit.get(), want, 1e-4, "mla_decode_split");
      BOOST_CHECK_EQUAL(kc::launch_mla_decode_split(a, pps, ws.p, pps == 3 ? 0 : floats_needed - 1, nullptr),
                        pps == 3 ? status::ok : status::bad_size);  // one split needs no workspace
      a.out = dout.p;
    }
    if (R % 128 == 0) {  // the fast kernel takes this shape too: same values within rounding
      a.out = dfast.p;
      BOOST_REQUIRE_EQUAL(kc::launch_mla_decode(a, nullptr), status::ok);
      check_close(dfast.get(), want, 1e-4, "mla_decode (fast)");
    }
  }
}

BOOST_AUTO_TEST_CASE(router_product_norms_residuals_and_silu) {
  std::mt19937 rng(3);
  for (const int64_t rows : {37, 64}) {  // router: bf16 weights, fp32 activations (64: 4 rows a warp)
    const int64_t k = 70, tokens = 3, ldx = 75, ldy = 70;
    const auto w = bf16s(rng, static_cast<size_t>(rows * k));
    const auto x = floats(rng, static_cast<size_t>(tokens * ldx));
    dev<uint16_t> dw(w);
    dev<float> dx(x), dy(static_cast<size_t>(tokens * ldy));
    BOOST_REQUIRE_EQUAL(kc::launch_gemv_bf16_f32(dw.p, rows, k, dx.p, ldx, tokens, dy.p, ldy, nullptr), status::ok);
    const auto y = dy.get();
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t i = 0; i < k; ++i) s += double(bf(w[r * k + i])) * x[t * ldx + i];
        BOOST_REQUIRE_SMALL(y[t * ldy + r] - s, 1e-4);
      }
  }
  const int64_t rows = 4, n = 1000, top_k = 3;
  const float eps = 1e-5f;
  const auto h0 = floats(rng, static_cast<size_t>(rows * n), -2, 2);
  const auto add = floats(rng, static_cast<size_t>(rows * n));
  const auto routed = floats(rng, static_cast<size_t>(rows * top_k * n));
  const auto w = floats(rng, static_cast<size_t>(n), 0.5f, 1.5f);
  auto norm_ref = [&](const std::vector<double>& hv, int64_t t, std::vector<double>& out) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += hv[t * n + i] * hv[t * n + i];
    const double inv = 1 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) out[t * n + i] = hv[t * n + i] * inv * w[i];
  };
  {  // RMSNorm to fp32 and bf16
    dev<float> dx(h0), dw(w), dy(static_cast<size_t>(rows * n));
    dev<uint16_t> dyb(static_cast<size_t>(rows * n));
    BOOST_REQUIRE_EQUAL(kc::launch_rms_norm_bf16(dx.p, n, dw.p, dy.p, n, dyb.p, n, rows, n, eps, nullptr), status::ok);
    std::vector<double> hv(h0.begin(), h0.end()), want(hv.size());
    for (int64_t t = 0; t < rows; ++t) norm_ref(hv, t, want);
    const auto y = dy.get();
    check_close(y, want, 1e-5, "rms_norm_bf16 (fp32)");
    const auto yb = dyb.get();
    for (size_t i = 0; i < y.size(); ++i) BOOST_REQUIRE_EQUAL(yb[i], cpu::fp32_to_bf16(y[i]));  // its own rounding
  }
  {  // MoE residual with 3 live rows of 4, then the next norm
    const std::vector<int32_t> live{3};
    dev<float> dh(h0), da(add), dr(routed), dw(w), dy(static_cast<size_t>(rows * n));
    dev<uint16_t> dyb(static_cast<size_t>(rows * n));
    dev<int32_t> dl(live);
    kc::residual_args r;
    r.h = dh.p;
    r.add = da.p;
    r.routed = dr.p;
    r.top_k = top_k;
    r.live = dl.p;
    r.rows = rows;
    r.n = n;
    r.norm_w = dw.p;
    r.eps = eps;
    r.y = dy.p;
    r.ldy = n;
    r.yb = dyb.p;
    r.ldyb = n;
    BOOST_REQUIRE_EQUAL(kc::launch_residual(r, nullptr), status::ok);
    std::vector<double> hv(static_cast<size_t>(rows * n)), want(hv.size());
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t i = 0; i < n; ++i) {
        double s = 0;
        if (t < 3)
          for (int64_t j = 0; j < top_k; ++j) s += routed[(t * top_k + j) * n + i];
        hv[t * n + i] = h0[t * n + i] + (s + add[t * n + i]);
      }
    check_close(dh.get(), hv, 1e-6, "residual h");
    for (int64_t t = 0; t < rows; ++t) norm_ref(hv, t, want);
    check_close(dy.get(), want, 1e-5, "residual norm");
    // Without a norm and without routed rows: h += add only.
    dev<float> dh2(h0), da2(add);
    kc::residual_args p;
    p.h = dh2.p;
    p.add = da2.p;
    p.rows = rows;
    p.n = n;
    BOOST_REQUIRE_EQUAL(kc::launch_residual(p, nullptr), status::ok);
    std::vector<double> plain(static_cast<size_t>(rows * n));
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = double(h0[i]) + add[i];
    check_close(dh2.get(), plain, 1e-6, "plain residual");
  }
  {  // SiLU·up to bf16
    const int64_t tokens = 3, inter = 300, ld_in = 2 * inter + 5, ld_out = inter + 2;
    const auto gu = floats(rng, static_cast<size_t>(tokens * ld_in), -4, 4);
    dev<float> dg(gu);
    dev<uint16_t> dout(static_cast<size_t>(tokens * ld_out));
    BOOST_REQUIRE_EQUAL(kc::launch_silu_mul_bf16(dg.p, ld_in, dout.p, ld_out, tokens, inter, nullptr), status::ok);
    const auto out = dout.get();
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t i = 0; i < inter; ++i) {
        const double g = gu[t * ld_in + i], u = gu[t * ld_in + inter + i];
        const double want = g / (1 + std::exp(-g)) * u;
        BOOST_REQUIRE_MESSAGE(std::abs(bf(out[t * ld_out + i]) - want) <= std::abs(want) / 128 + 1e-6,
                              "silu_mul_bf16 " << t << "," << i);
      }
  }
}

BOOST_AUTO_TEST_CASE(latent_norm_rope_cache_write_and_padding_routes) {
  std::mt19937 rng(4);
  const int64_t rows = 3, R = 96, rope = 16, ld = R + rope + 4, width = R + rope;
  const auto kv = floats(rng, static_cast<size_t>(rows * ld), -2, 2);
  const auto w = floats(rng, static_cast<size_t>(R), 0.5f, 1.5f);
  std::vector<float> inv_freq(static_cast<size_t>(rope / 2));
  for (int64_t i = 0; i < rope / 2; ++i) inv_freq[static_cast<size_t>(i)] = std::pow(50000.0f, -2.0f * i / rope);
  const std::vector<int32_t> positions{0, 7, 4095}, slots{5, 0, 9};
  dev<float> dkv(kv), dw(w), df(inv_freq);
  dev<int32_t> dp(positions), ds(slots);
  dev<uint16_t> dc(static_cast<size_t>(10 * width));
  BOOST_REQUIRE_EQUAL(kc::launch_latent_norm_rope_write(dkv.p, ld, rows, R, rope, dw.p, 1e-6f, dp.p, df.p, 1.25f,
                                                        ds.p, dc.p, nullptr),
                      status::ok);
  const auto c = dc.get();
  for (int64_t b = 0; b < rows; ++b) {
    const float* x = kv.data() + b * ld;
    const uint16_t* got = c.data() + slots[static_cast<size_t>(b)] * width;
    double ss = 0;
    for (int64_t i = 0; i < R; ++i) ss += double(x[i]) * x[i];
    const double inv = 1 / std::sqrt(ss / R + 1e-6);
    for (int64_t i = 0; i < R; ++i) {
      const double want = x[i] * inv * w[i];
      BOOST_REQUIRE_MESSAGE(std::abs(bf(got[i]) - want) <= std::abs(want) / 128 + 1e-6, "latent " << b << "," << i);
    }
    for (int64_t i = 0; i < rope / 2; ++i) {
      const double ang = double(float(positions[static_cast<size_t>(b)]) * inv_freq[static_cast<size_t>(i)]);
      const double cs = std::cos(ang) * 1.25, sn = std::sin(ang) * 1.25;
      const double a = x[R + 2 * i], d = x[R + 2 * i + 1];
      const double w0 = a * cs - d * sn, w1 = a * sn + d * cs;
      BOOST_REQUIRE_MESSAGE(std::abs(bf(got[R + 2 * i]) - w0) <= std::abs(w0) / 128 + 1e-4, "rope " << b << "," << i);
      BOOST_REQUIRE_MESSAGE(std::abs(bf(got[R + 2 * i + 1]) - w1) <= std::abs(w1) / 128 + 1e-4, "rope " << b << "," << i);
    }
  }
  for (int64_t s : {1, 2, 3, 4, 6, 7, 8})  // slots nobody named stay untouched
    for (int64_t i = 0; i < width; ++i) BOOST_REQUIRE_EQUAL(c[static_cast<size_t>(s * width + i)], 0xA5A5);
  // Padding routes: rows 2.. of 4 point at `experts`.
  std::vector<int32_t> ids{1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<int32_t> live{2};
  dev<int32_t> di(ids), dl(live);
  BOOST_REQUIRE_EQUAL(kc::launch_mask_padding_routes(di.p, 4, 2, 64, dl.p, nullptr), status::ok);
  const std::vector<int32_t> want{1, 2, 3, 4, 64, 64, 64, 64};
  const auto got = di.get();
  BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), want.begin(), want.end());
}

BOOST_AUTO_TEST_CASE(shared_read_mla_shapes) {
  BOOST_CHECK(kc::mla_decode_heads_supported(16, 512, 64));  // Moonlight, DeepSeek-V3 per 8 GPUs
  BOOST_CHECK(kc::mla_decode_heads_supported(4, 32, 16));    // the fixtures
  BOOST_CHECK(!kc::mla_decode_heads_supported(64, 512, 64));  // Kimi K2's 64 heads on one GPU
  BOOST_CHECK(!kc::mla_decode_heads_supported(4, 48, 16));
  BOOST_CHECK(!kc::mla_decode_heads_supported(4, 512, 128));
  kc::mla_decode_args a;
  a.heads = 64;
  a.kv_lora = 512;
  a.rope = 64;
  BOOST_CHECK_EQUAL(kc::launch_mla_decode_heads(a, 1, nullptr, 0, nullptr), status::unsupported);
}

BOOST_AUTO_TEST_CASE(moe_gemv_matches_the_grouped_gemm) {
  std::mt19937 rng(5);
  for (const int64_t tokens : {1, 3, 8}) {
    const int64_t top_k = 4, E = 8, n = 70, k = 96, block = 16, pairs = tokens * top_k;
    std::vector<int32_t> ids(static_cast<size_t>(pairs));
    for (int64_t t = 0; t < tokens; ++t)  // distinct experts per token, as a router picks them
      for (int64_t j = 0; j < top_k; ++j) ids[static_cast<size_t>(t * top_k + j)] = static_cast<int32_t>((t + 3 * j) % E);
    const int64_t cap = kc::moe_align_capacity(tokens, top_k, E, block);
    std::vector<int32_t> sorted(static_cast<size_t>(cap)), blocks(static_cast<size_t>(cap / block));
    int32_t post = 0;
    BOOST_REQUIRE_EQUAL(kc::moe_align_block_size(ids.data(), tokens, top_k, E, block, nullptr, sorted.data(),
                                                 blocks.data(), cap, &post),
                        status::ok);
    std::vector<uint32_t> tiles(static_cast<size_t>(E * kc::int4_tile_words(n, k)));
    for (auto& w : tiles) w = static_cast<uint32_t>(rng());
    const auto scales = bf16s(rng, static_cast<size_t>(E * kc::int4_tile_scales(n, k)), 0.01f, 0.1f);
    for (const int64_t a_div : {top_k, int64_t{1}}) {  // gate/up (A = tokens) and down (A = pairs)
      const auto a = bf16s(rng, static_cast<size_t>(pairs / a_div * k));
      const auto weights = floats(rng, static_cast<size_t>(pairs), 0.1f, 1.0f);
      dev<uint16_t> da(a), ds(scales);
      dev<uint32_t> dt(tiles);
      dev<int32_t> dsorted(sorted), dblocks(blocks), dpost(std::vector<int32_t>{post});
      dev<float> dw(weights), y1(static_cast<size_t>(pairs * n)), y2(static_cast<size_t>(pairs * n));
      kc::moe_gemm_args g;
      g.a = da.p;
      g.lda = k;
      g.a_div = a_div;
      g.tiles = dt.p;
      g.scales = ds.p;
      g.experts = E;
      g.n = n;
      g.k = k;
      g.sorted_token_ids = dsorted.p;
      g.expert_ids = dblocks.p;
      g.num_tokens_post_padded = dpost.p;
      g.capacity = cap;
      g.block = block;
      g.pairs = pairs;
      g.route_weights = a_div == 1 ? dw.p : nullptr;
      g.y = y1.p;
      g.ldy = n;
      BOOST_REQUIRE_EQUAL(kc::launch_moe_w4a16_gemm(g, nullptr), status::ok);
      g.y = y2.p;
      BOOST_REQUIRE_EQUAL(kc::launch_moe_w4a16_gemv(g, nullptr), status::ok);
      const auto want = y1.get();
      check_close(y2.get(), std::vector<double>(want.begin(), want.end()), 1e-5, "moe_w4a16_gemv");
    }
  }
  kc::moe_gemm_args wrong;
  wrong.block = 32;
  BOOST_CHECK_EQUAL(kc::launch_moe_w4a16_gemv(wrong, nullptr), status::unsupported);
}

BOOST_AUTO_TEST_CASE(random_fills_are_in_range_and_repeatable) {
  const size_t n = 100003;
  dev<uint16_t> a(n), b(n);
  dev<uint32_t> u(n);
  dev<float> f(n);
  BOOST_REQUIRE_EQUAL(kc::launch_fill_random_bf16(a.p, n, 9, 0.5f, nullptr), status::ok);
  BOOST_REQUIRE_EQUAL(kc::launch_fill_random_bf16(b.p, n, 9, 0.5f, nullptr), status::ok);
  BOOST_REQUIRE_EQUAL(kc::launch_fill_random_u32(u.p, n, 9, nullptr), status::ok);
  BOOST_REQUIRE_EQUAL(kc::launch_fill_f32(f.p, n, 1.5f, nullptr), status::ok);
  const auto va = a.get(), vb = b.get();
  BOOST_CHECK(va == vb);
  double sum = 0;
  for (uint16_t x : va) {
    BOOST_REQUIRE(std::isfinite(bf(x)) && std::abs(bf(x)) <= 0.5f);
    sum += bf(x);
  }
  BOOST_CHECK_SMALL(sum / n, 0.01);  // centred
  const auto vu = u.get();
  BOOST_CHECK_GT(std::set<uint32_t>(vu.begin(), vu.end()).size(), n - 10);
  const auto vf = f.get();
  BOOST_CHECK(std::all_of(vf.begin(), vf.end(), [](float x) { return x == 1.5f; }));
}

int main(int argc, char** argv) {
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
