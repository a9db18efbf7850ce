// CPU quant kernels against plain references written from the ggml block layouts, on random data
// with odd block counts, at every instruction-set level this machine runs; guard bytes after
// every output catch out-of-bounds writes.

#define BOOST_TEST_MODULE quant
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <vector>

#include "cpu/quant.hpp"
#include "kernels/print_kernel_types.hpp"
#include "kernels/random_weights.hpp"

namespace q = troupe::kernels::cpu;
using q::test::put16;
using q::test::putf;
using q::test::random_weights;
using q::test::rng;
using q::isa;
using q::quant_type;
using q::status;

namespace {

constexpr int guard_bytes = 64;
constexpr unsigned char guard_value = 0xA5;

/// A byte buffer with guard bytes after the payload.
struct guarded {
  explicit guarded(size_t n) : bytes(n + guard_bytes, guard_value), size(n) {}
  void* data() { return bytes.data(); }
  bool guard_intact() const {
    for (size_t i = size; i < bytes.size(); ++i)
      if (bytes[i] != guard_value) return false;
    return true;
  }
  std::vector<unsigned char> bytes;
  size_t size;
};

std::vector<isa> levels() {
  std::vector<isa> out{isa::scalar};
  for (isa l : {isa::avx2, isa::avx512})
    if (q::isa_available(l)) out.push_back(l);
  return out;
}

const quant_type weight_types[] = {
    quant_type::f32,  quant_type::f16,  quant_type::bf16, quant_type::q8_0,   quant_type::q4_0,
    quant_type::q4_1, quant_type::q5_0, quant_type::q5_1, quant_type::q4_k,   quant_type::q5_k,
    quant_type::q6_k, quant_type::q2_k, quant_type::q3_k, quant_type::iq4_nl, quant_type::iq4_xs};

/// ggml's kvalues_iq4nl, written out again here (not taken from quant.hpp).
const int iq4nl_table[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                             1,    13,   25,  38,  53,  69,  89,  113};

// ---- independent references, written from the layout table ---------------------------------

double ref_fp16(uint16_t h) {
  const int sign = h >> 15, e = (h >> 10) & 0x1F, m = h & 0x3FF;
  double v;
  if (e == 0) v = std::ldexp(m, -24);
  else if (e == 31) v = m ? std::numeric_limits<double>::quiet_NaN() : INFINITY;
  else v = std::ldexp(1024 + m, e - 25);
  return sign ? -v : v;
}

uint16_t rd16(const unsigned char* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
float rdf(const unsigned char* p) { float v; std::memcpy(&v, p, 4); return v; }

/// Dequantises a row by the formulas of the layout table (float arithmetic, same order).
std::vector<float> ref_dequant(quant_type t, const unsigned char* p, int64_t n) {
  std::vector<float> y(n);
  switch (t) {
    case quant_type::f32: std::memcpy(y.data(), p, n * 4); break;
    case quant_type::f16: for (int64_t i = 0; i < n; ++i) y[i] = float(ref_fp16(rd16(p + 2 * i))); break;
    case quant_type::bf16:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u = uint32_t(rd16(p + 2 * i)) << 16;
        std::memcpy(&y[i], &u, 4);
      }
      break;
    case quant_type::q8_0:
      for (int64_t b = 0; b < n / 32; ++b, p += 34) {
        float d = float(ref_fp16(rd16(p)));
        for (int j = 0; j < 32; ++j) y[b * 32 + j] = int8_t(p[2 + j]) * d;
      }
      break;
    case quant_type::q4_0:
      for (int64_t b = 0; b < n / 32; ++b, p += 18) {
        float d = float(ref_fp16(rd16(p)));
        for (int j = 0; j < 16; ++j) {
          y[b * 32 + j] = ((p[2 + j] & 0xF) - 8) * d;
          y[b * 32 + j + 16] = ((p[2 + j] >> 4) - 8) * d;
        }
      }
      break;
    case quant_type::q4_1:
      for (int64_t b = 0; b < n / 32; ++b, p += 20) {
        float d = float(ref_fp16(rd16(p))), m = float(ref_fp16(rd16(p + 2)));
        for (int j = 0; j < 16; ++j) {
          y[b * 32 + j] = (p[4 + j] & 0xF) * d + m;
          y[b * 32 + j + 16] = (p[4 + j] >> 4) * d + m;
        }
      }
      break;
    case quant_type::q5_0:
    case quant_type::q5_1: {
      // [d][m (q5_1)][qh: 4 bytes, bit j = high bit of element j][qs: 16 nibble pairs]
      const int head = t == quant_type::q5_0 ? 2 : 4, size = head + 20;
      for (int64_t b = 0; b < n / 32; ++b, p += size) {
        float d = float(ref_fp16(rd16(p))), m = t == quant_type::q5_1 ? float(ref_fp16(rd16(p + 2))) : 0;
        const uint32_t qh = uint32_t(p[head]) | uint32_t(p[head + 1]) << 8 | uint32_t(p[head + 2]) << 16 |
                            uint32_t(p[head + 3]) << 24;
        for (int j = 0; j < 32; ++j) {
          const int nib = j < 16 ? (p[head + 4 + j] & 0xF) : (p[head + 4 + j - 16] >> 4);
          const int v = nib + 16 * int((qh >> j) & 1);
          y[b * 32 + j] = t == quant_type::q5_0 ? (v - 16) * d : v * d + m;
        }
      }
      break;
    }
    case quant_type::q4_k:
      for (int64_t b = 0; b < n / 256; ++b, p += 144) {
        float d = float(ref_fp16(rd16(p))), dmin = float(ref_fp16(rd16(p + 2)));
        const unsigned char* sc = p + 4;
        const unsigned char* qs = p + 16;
        auto get = [&](int j, int* s, int* m) {
          if (j < 4) { *s = sc[j] & 63; *m = sc[j + 4] & 63; }
          else { *s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4); *m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
        };
        float* out = y.data() + b * 256;
        for (int is = 0; is < 8; is += 2, qs += 32, out += 64) {
          int s1, m1, s2, m2;
          get(is, &s1, &m1);
          get(is + 1, &s2, &m2);
          const float d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2;
          for (int l = 0; l < 32; ++l) {
            out[l] = d1 * (qs[l] & 0xF) - mm1;
            out[l + 32] = d2 * (qs[l] >> 4) - mm2;
          }
        }
      }
      break;
    case quant_type::q5_k:
      for (int64_t b = 0; b < n / 256; ++b, p += 176) {
        // [d][dmin][12 bytes of 6-bit scales/mins, as Q4_K][qh: 32][qs: 128]
        float d = float(ref_fp16(rd16(p))), dmin = float(ref_fp16(rd16(p + 2)));
        const unsigned char* sc = p + 4;
        const unsigned char* qh = p + 16;
        const unsigned char* qs = p + 48;
        auto get = [&](int j, int* s, int* m) {
          if (j < 4) { *s = sc[j] & 63; *m = sc[j + 4] & 63; }
          else { *s = (sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4); *m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4); }
        };
        float* out = y.data() + b * 256;
        for (int j = 0; j < 4; ++j, qs += 32, out += 64) {
          int s1, m1, s2, m2;
          get(2 * j, &s1, &m1);
          get(2 * j + 1, &s2, &m2);
          const float d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2;
          for (int l = 0; l < 32; ++l) {
            out[l] = d1 * ((qs[l] & 0xF) + 16 * ((qh[l] >> (2 * j)) & 1)) - mm1;
            out[l + 32] = d2 * ((qs[l] >> 4) + 16 * ((qh[l] >> (2 * j + 1)) & 1)) - mm2;
          }
        }
      }
      break;
    case quant_type::q6_k:
      for (int64_t b = 0; b < n / 256; ++b, p += 210) {
        const unsigned char* ql = p;
        const unsigned char* qh = p + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
        const float d = float(ref_fp16(rd16(p + 208)));
        float* out = y.data() + b * 256;
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, out += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            out[l] = d * sc[is] * (((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            out[l + 32] = d * sc[is + 2] * (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = d * sc[is + 4] * (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = d * sc[is + 6] * (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
          }
        }
      }
      break;
    case quant_type::q2_k:
      for (int64_t b = 0; b < n / 256; ++b, p += 84) {
        // [scales: 16 (min << 4 | scale)][qs: 64, 2 bits][d][dmin]
        const float d = float(ref_fp16(rd16(p + 80))), dmin = float(ref_fp16(rd16(p + 82)));
        float* out = y.data() + b * 256;
        for (int half = 0; half < 2; ++half)
          for (int shift = 0; shift < 8; shift += 2)
            for (int l = 0; l < 32; ++l) {
              const int e = 128 * half + 16 * shift + l;
              const int sc = p[e / 16];
              const float dl = d * float(sc & 15), ml = dmin * float(sc >> 4);
              out[e] = dl * float((p[16 + 32 * half + l] >> shift) & 3) - ml;
            }
      }
      break;
    case quant_type::q3_k:
      for (int64_t b = 0; b < n / 256; ++b, p += 110) {
        // [hmask: 32][qs: 64][scales: 12][d]
        const unsigned char* hm = p;
        const unsigned char* qs = p + 32;
        const unsigned char* sc = p + 96;
        const float d = float(ref_fp16(rd16(p + 108)));
        int scale[16];
        for (int j = 0; j < 4; ++j) {
          scale[j] = (sc[j] & 15) | ((sc[8 + j] & 3) << 4);
          scale[j + 4] = (sc[j + 4] & 15) | (((sc[8 + j] >> 2) & 3) << 4);
          scale[j + 8] = (sc[j] >> 4) | (((sc[8 + j] >> 4) & 3) << 4);
          scale[j + 12] = (sc[j + 4] >> 4) | (((sc[8 + j] >> 6) & 3) << 4);
        }
        float* out = y.data() + b * 256;
        for (int half = 0; half < 2; ++half)
          for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) {
              const int e = 128 * half + 32 * k + l;
              const int low = (qs[32 * half + l] >> (2 * k)) & 3;
              const int v = (hm[l] >> (4 * half + k)) & 1 ? low : low - 4;
              out[e] = (d * float(scale[e / 16] - 32)) * float(v);
            }
      }
      break;
    case quant_type::iq4_nl:
      for (int64_t b = 0; b < n / 32; ++b, p += 18) {
        const float d = float(ref_fp16(rd16(p)));
        for (int j = 0; j < 16; ++j) {
          y[b * 32 + j] = d * float(iq4nl_table[p[2 + j] & 15]);
          y[b * 32 + j + 16] = d * float(iq4nl_table[p[2 + j] >> 4]);
        }
      }
      break;
    case quant_type::iq4_xs:
      for (int64_t b = 0; b < n / 256; ++b, p += 136) {
        // [d][scales_h: u16][scales_l: 4][qs: 8 × 16]
        const float d = float(ref_fp16(rd16(p)));
        const int sh = rd16(p + 2);
        for (int s = 0; s < 8; ++s) {
          const int low = s % 2 ? p[4 + s / 2] >> 4 : p[4 + s / 2] & 15;
          const float dl = d * float((low | ((sh >> (2 * s)) & 3) << 4) - 32);
          const unsigned char* qs = p + 8 + 16 * s;
          for (int j = 0; j < 16; ++j) {
            y[b * 256 + 32 * s + j] = dl * float(iq4nl_table[qs[j] & 15]);
            y[b * 256 + 32 * s + j + 16] = dl * float(iq4nl_table[qs[j] >> 4]);
          }
        }
      }
      break;
    default: BOOST_FAIL("no reference for " << q::type_name(t));
  }
  return y;
}

/// Activation values a kernel sees: q·d per element (the min term of Q8_1 is d·Σq, so plain q·d).
std::vector<double> ref_activation(quant_type t, const unsigned char* p, int64_t n) {
  std::vector<double> y(n);
  if (t == quant_type::f32) {
    for (int64_t i = 0; i < n; ++i) y[i] = rdf(p + 4 * i);
  } else if (t == quant_type::q8_0) {
    for (int64_t b = 0; b < n / 32; ++b, p += 34)
      for (int j = 0; j < 32; ++j) y[b * 32 + j] = double(int8_t(p[2 + j])) * ref_fp16(rd16(p));
  } else if (t == quant_type::q8_1) {
    for (int64_t b = 0; b < n / 32; ++b, p += 40)
      for (int j = 0; j < 32; ++j) y[b * 32 + j] = double(int8_t(p[8 + j])) * rdf(p);
  } else {
    for (int64_t b = 0; b < n / 256; ++b, p += 292)
      for (int j = 0; j < 256; ++j) y[b * 256 + j] = double(int8_t(p[4 + j])) * rdf(p);
  }
  return y;
}

// ---- random inputs -------------------------------------------------------------------------


/// A random activation row in `t`. `exact`: built directly from int8 values with unit scales.
std::vector<unsigned char> random_activation(rng& r, quant_type t, int64_t n, bool exact) {
  std::vector<float> x(n);
  for (auto& v : x) v = exact ? float(r.integer(-8, 8)) : r.real(-2, 2);
  if (!exact || t == quant_type::f32) {
    std::vector<unsigned char> a(q::row_bytes(t, n));
    BOOST_REQUIRE(q::quantize_row(t, x.data(), a.data(), n, isa::scalar) == status::ok);
    return a;
  }
  std::vector<unsigned char> a(q::row_bytes(t, n));
  const int bl = int(q::block_elements(t));
  const int64_t bb = q::block_bytes(t);
  for (int64_t b = 0; b < n / bl; ++b) {
    unsigned char* p = &a[b * bb];
    int8_t qs[256];
    int sum = 0;
    for (int j = 0; j < bl; ++j) sum += qs[j] = int8_t(r.integer(-127, 127));
    if (t == quant_type::q8_0) {
      put16(p, q::fp32_to_fp16(1.0f));
      std::memcpy(p + 2, qs, 32);
    } else if (t == quant_type::q8_1) {
      putf(p, 1.0f);
      putf(p + 4, float(sum));
      std::memcpy(p + 8, qs, 32);
    } else {
      putf(p, 1.0f);
      std::memcpy(p + 4, qs, 256);
      for (int g = 0; g < 16; ++g) {
        int16_t s = 0;
        for (int l = 0; l < 16; ++l) s += qs[16 * g + l];
        std::memcpy(p + 260 + 2 * g, &s, 2);
      }
    }
  }
  return a;
}

quant_type act_of(quant_type w) {
  quant_type a{};
  BOOST_REQUIRE(q::activation_type(w, &a));
  return a;
}

std::vector<int64_t> sizes_for(quant_type t) {
  const int64_t be = q::block_elements(t);
  if (be == 1) return {1, 7, 15, 16, 17, 31, 33, 63, 127, 576, 1000, 1537};
  if (be == 32) return {32, 3 * 32, 7 * 32, 18 * 32, 33 * 32, 48 * 32};
  return {256, 3 * 256, 5 * 256, 6 * 256, 11 * 256};
}

}  // namespace

BOOST_AUTO_TEST_CASE(block_layouts_and_sizes) {
  BOOST_TEST(q::block_bytes(quant_type::q4_0) == 18);
  BOOST_TEST(q::block_bytes(quant_type::q5_0) == 22);
  BOOST_TEST(q::block_bytes(quant_type::q5_1) == 24);
  BOOST_TEST(q::block_bytes(quant_type::q4_k) == 144);
  BOOST_TEST(q::block_bytes(quant_type::q6_k) == 210);
  BOOST_TEST(q::block_bytes(quant_type::q2_k) == 84);
  BOOST_TEST(q::block_bytes(quant_type::q3_k) == 110);
  BOOST_TEST(q::block_bytes(quant_type::iq4_nl) == 18);
  BOOST_TEST(q::block_bytes(quant_type::iq4_xs) == 136);
  BOOST_TEST(q::row_bytes(quant_type::iq4_nl, 96) == 3 * 18);
  BOOST_TEST(q::row_bytes(quant_type::iq4_xs, 288) == -1);
  BOOST_TEST(static_cast<uint32_t>(quant_type::q2_k) == 10u);
  BOOST_TEST(static_cast<uint32_t>(quant_type::q3_k) == 11u);
  BOOST_TEST(static_cast<uint32_t>(quant_type::iq4_nl) == 20u);
  BOOST_TEST(static_cast<uint32_t>(quant_type::iq4_xs) == 23u);
  BOOST_TEST(std::string(q::type_name(quant_type::iq4_xs)) == "iq4_xs");
  for (quant_type t : {quant_type::q2_k, quant_type::q3_k, quant_type::iq4_xs})
    BOOST_TEST(act_of(t) == quant_type::q8_k);
  BOOST_TEST(act_of(quant_type::iq4_nl) == quant_type::q8_0);
  BOOST_TEST(q::row_bytes(quant_type::q4_1, 576) == 18 * 20);
  BOOST_TEST(q::row_bytes(quant_type::q4_k, 576) == -1);
  BOOST_TEST(q::row_bytes(quant_type::f16, 3) == 6);
  BOOST_TEST(std::string(q::type_name(quant_type::q6_k)) == "q6_K");
  BOOST_TEST(static_cast<uint32_t>(quant_type::bf16) == 30u);
  BOOST_TEST(!q::activation_type(quant_type::q8_k, nullptr));
  BOOST_TEST_MESSAGE("best isa on this machine: " << q::to_string(q::best_isa()));
}

BOOST_AUTO_TEST_CASE(fp16_conversion_matches_definition) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double ref = ref_fp16(uint16_t(h));
    const float got = q::fp16_to_fp32(uint16_t(h));
    if (std::isnan(ref)) {
      BOOST_TEST_REQUIRE(std::isnan(got), "h=" << h);
      continue;
    }
    BOOST_TEST_REQUIRE(double(got) == ref, "h=" << h);
    BOOST_TEST_REQUIRE(std::signbit(got) == bool(h & 0x8000));
    BOOST_TEST_REQUIRE(q::fp32_to_fp16(got) == h, "round trip h=" << h);
  }
  // Midpoints between neighbours round to the even one; overflow goes to infinity.
  for (uint32_t h = 0; h < 0x7BFF; ++h) {
    const float mid = float((ref_fp16(uint16_t(h)) + ref_fp16(uint16_t(h + 1))) / 2);
    const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    BOOST_TEST_REQUIRE(q::fp32_to_fp16(mid) == even, "midpoint after h=" << h);
  }
  BOOST_TEST(q::fp32_to_fp16(1e6f) == 0x7C00);
  BOOST_TEST(q::fp32_to_fp16(-1e6f) == 0xFC00);
  BOOST_TEST((q::fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()) & 0x7FFF) > 0x7C00);
}

BOOST_AUTO_TEST_CASE(bf16_conversion_rounds_to_nearest_even) {
  BOOST_TEST(q::fp32_to_bf16(1.0f) == 0x3F80);
  BOOST_TEST(q::bf16_to_fp32(0x3F80) == 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0); slightly above goes up.
  BOOST_TEST(q::fp32_to_bf16(1.0f + 0x1p-8f) == 0x3F80);
  BOOST_TEST(q::fp32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81);
  BOOST_TEST(q::fp32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82);
  BOOST_TEST(std::isnan(q::bf16_to_fp32(q::fp32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

BOOST_AUTO_TEST_CASE(dequantize_matches_reference_exactly) {
  rng r;
  for (quant_type t : weight_types) {
    for (int64_t n : sizes_for(t)) {
      const auto w = random_weights(r, t, n, false);
      const auto ref = ref_dequant(t, w.data(), n);
      for (isa l : levels()) {
        BOOST_TEST_CONTEXT(q::type_name(t) << " n=" << n << " isa=" << q::to_string(l)) {
          guarded out(n * sizeof(float));
          BOOST_TEST_REQUIRE(q::dequantize_row(t, w.data(), static_cast<float*>(out.data()), n, l) == status::ok);
          BOOST_TEST(std::memcmp(out.data(), ref.data(), n * sizeof(float)) == 0);
          BOOST_TEST(out.guard_intact());
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(activation_quantisers_agree_across_isas) {
  rng r;
  for (quant_type t : {quant_type::q8_0, quant_type::q8_1, quant_type::q8_k}) {
    const int64_t be = q::block_elements(t);
    for (int64_t blocks : {1, 2, 3, 7, 13}) {
      const int64_t n = blocks * be;
      std::vector<float> x(n);
      for (auto& v : x) v = r.real(-3, 3);
      x[0] = 0.5f;
      if (blocks > 1) std::fill(x.begin() + be, x.begin() + 2 * be, 0.0f);  // an all-zero block
      guarded ref(q::row_bytes(t, n));
      BOOST_TEST_REQUIRE(q::quantize_row(t, x.data(), ref.data(), n, isa::scalar) == status::ok);
      BOOST_TEST(ref.guard_intact());
      // The scalar result reproduces x to within half a step, and its side sums are right.
      const auto back = ref_activation(t, ref.bytes.data(), n);
      for (int64_t b = 0; b < blocks; ++b) {
        double amax = 0;
        for (int64_t j = 0; j < be; ++j) amax = std::max(amax, double(std::fabs(x[b * be + j])));
        const double step = t == quant_type::q8_0 ? ref_fp16(q::fp32_to_fp16(float(amax / 127))) : amax / 127;
        for (int64_t j = 0; j < be; ++j)
          BOOST_TEST_REQUIRE(std::fabs(back[b * be + j] - x[b * be + j]) <= 0.5 * step * 1.001 + amax * 1e-3 * (t == quant_type::q8_0),
                             q::type_name(t) << " element " << b * be + j);
      }
      if (t == quant_type::q8_k) {
        const auto* blk = static_cast<const q::block_q8_k*>(ref.data());
        for (int64_t b = 0; b < blocks; ++b)
          for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int l = 0; l < 16; ++l) s += blk[b].qs[16 * g + l];
            BOOST_TEST_REQUIRE(blk[b].bsums[g] == s);
          }
      }
      if (t == quant_type::q8_1) {
        const auto* blk = static_cast<const q::block_q8_1*>(ref.data());
        for (int64_t b = 0; b < blocks; ++b) {
          int s = 0;
          for (int l = 0; l < 32; ++l) s += blk[b].qs[l];
          BOOST_TEST_REQUIRE(blk[b].s == blk[b].d * float(s));
        }
      }
      for (isa l : levels()) {
        BOOST_TEST_CONTEXT(q::type_name(t) << " blocks=" << blocks << " isa=" << q::to_string(l)) {
          guarded got(q::row_bytes(t, n));
          BOOST_TEST_REQUIRE(q::quantize_row(t, x.data(), got.data(), n, l) == status::ok);
          BOOST_TEST(std::memcmp(got.data(), ref.data(), ref.size) == 0);
          BOOST_TEST(got.guard_intact());
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(dot_products_exact_on_integer_data) {
  // Unit scales and small integers: every partial sum is an integer below 2^24, so every
  // kernel must return the reference exactly, whatever its summation order.
  rng r;
  for (quant_type t : weight_types) {
    const quant_type at = act_of(t);
    for (int64_t n : sizes_for(t)) {
      const auto w = random_weights(r, t, n, true);
      const auto a = random_activation(r, at, n, true);
      const auto wf = ref_dequant(t, w.data(), n);
      const auto af = ref_activation(at, a.data(), n);
      double ref = 0;
      for (int64_t i = 0; i < n; ++i) ref += double(wf[i]) * af[i];
      BOOST_TEST_REQUIRE(std::fabs(ref) < 16777216.0);
      for (isa l : levels()) {
        BOOST_TEST_CONTEXT(q::type_name(t) << " n=" << n << " isa=" << q::to_string(l)) {
          float out[2] = {0.0f, 12345.0f};
          BOOST_TEST_REQUIRE(q::vec_dot(t, n, w.data(), a.data(), out, l) == status::ok);
          BOOST_TEST(double(out[0]) == ref);
          BOOST_TEST(out[1] == 12345.0f);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(dot_products_match_dequantised_reference) {
  // Random scales: compare with the composition dequantise(w)·dequantise(a) in double, within
  // a bound of fp32 rounding over the sum of |products|; SIMD and scalar also agree closely.
  rng r;
  for (quant_type t : weight_types) {
    const quant_type at = act_of(t);
    for (int64_t n : sizes_for(t)) {
      const auto w = random_weights(r, t, n, false);
      const auto a = random_activation(r, at, n, false);
      const auto wf = ref_dequant(t, w.data(), n);
      const auto af = ref_activation(at, a.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += double(wf[i]) * af[i];
        mag += std::fabs(double(wf[i]) * af[i]);
      }
      const double tol = 2e-6 * mag * std::sqrt(double(n) / 32.0 + 1.0) + 1e-30;
      float scalar = 0;
      BOOST_TEST_REQUIRE(q::vec_dot(t, n, w.data(), a.data(), &scalar, isa::scalar) == status::ok);
      for (isa l : levels()) {
        BOOST_TEST_CONTEXT(q::type_name(t) << " n=" << n << " isa=" << q::to_string(l)
                                           << " ref=" << ref << " tol=" << tol) {
          float out[2] = {0.0f, 12345.0f};
          BOOST_TEST_REQUIRE(q::vec_dot(t, n, w.data(), a.data(), out, l) == status::ok);
          BOOST_TEST(std::fabs(double(out[0]) - ref) <= tol);
          BOOST_TEST(std::fabs(double(out[0]) - double(scalar)) <= tol);
          BOOST_TEST(out[1] == 12345.0f);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(q2_k_q3_k_iq4_dots_equal_scalar_bit_for_bit) {
  // The scalar kernels of these types keep the AVX2 (ggml's) order of fp32 operations, lane for
  // lane, so that a CPU without AVX2 gets ggml's bits too: every level must return the same
  // float, on random scales (IQ4_NL: odd block counts take ggml's separate last block).
  rng r;
  for (quant_type t :
       {quant_type::q2_k, quant_type::q3_k, quant_type::iq4_nl, quant_type::iq4_xs}) {
    const quant_type at = act_of(t);
    for (int64_t n : sizes_for(t)) {
      for (int rep = 0; rep < 3; ++rep) {
        const auto w = random_weights(r, t, n, false);
        const auto a = random_activation(r, at, n, false);
        float scalar = 0;
        BOOST_TEST_REQUIRE(q::vec_dot(t, n, w.data(), a.data(), &scalar, isa::scalar) ==
                           status::ok);
        for (isa l : levels()) {
          BOOST_TEST_CONTEXT(q::type_name(t) << " n=" << n << " isa=" << q::to_string(l)) {
            float out = 0;
            BOOST_TEST_REQUIRE(q::vec_dot(t, n, w.data(), a.data(), &out, l) == status::ok);
            uint32_t got, want;
            std::memcpy(&got, &out, 4);
            std::memcpy(&want, &scalar, 4);
            BOOST_TEST(got == want, out << " vs scalar " << scalar);
          }
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(mat_vec_matches_vec_dot_per_row) {
  rng r;
  for (quant_type t : weight_types) {
    const quant_type at = act_of(t);
    const int64_t n = sizes_for(t)[2];
    const int64_t rows = 13;
    const size_t stride = size_t(q::row_bytes(t, n)) + 24;  // padded rows
    std::vector<unsigned char> w(stride * rows);
    for (int64_t row = 0; row < rows; ++row) {
      auto one = random_weights(r, t, n, false);
      std::memcpy(&w[row * stride], one.data(), one.size());
    }
    const auto a = random_activation(r, at, n, false);
    for (isa l : levels()) {
      BOOST_TEST_CONTEXT(q::type_name(t) << " isa=" << q::to_string(l)) {
        guarded y(rows * sizeof(float));
        BOOST_TEST_REQUIRE(q::mat_vec(t, rows, n, w.data(), stride, a.data(), static_cast<float*>(y.data()), l) == status::ok);
        BOOST_TEST(y.guard_intact());
        for (int64_t row = 0; row < rows; ++row) {
          float one = 0;
          BOOST_TEST_REQUIRE(q::vec_dot(t, n, &w[row * stride], a.data(), &one, l) == status::ok);
          BOOST_TEST(static_cast<float*>(y.data())[row] == one);
        }
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(mat_mat_matches_vec_dot_per_row_and_token) {
  // Every (row, token) of the multi-row kernels bit-identical to vec_dot, for row counts that
  // leave every remainder of the 4- and 8-row groups (odd ones: the AVX-512 VNNI kernels pair
  // rows in one register) and token counts that leave a single token after
  // the pairs; the output rows are wider than `rows` and the gaps must stay untouched.
  rng r;
  for (quant_type t : weight_types) {
    const quant_type at = act_of(t);
    const int64_t n = sizes_for(t)[2];
    const size_t stride = size_t(q::row_bytes(t, n)) + 24;
    const size_t act_stride = size_t(q::row_bytes(at, n)) + 8;
    for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 17}) {
      for (int64_t tokens : {1, 2, 3, 5}) {
        std::vector<unsigned char> w(stride * rows);
        for (int64_t row = 0; row < rows; ++row) {
          auto one = random_weights(r, t, n, false);
          std::memcpy(&w[row * stride], one.data(), one.size());
        }
        std::vector<unsigned char> a(act_stride * tokens);
        for (int64_t k = 0; k < tokens; ++k) {
          auto one = random_activation(r, at, n, false);
          std::memcpy(&a[k * act_stride], one.data(), one.size());
        }
        const int64_t y_stride = rows + 3;
        for (isa l : levels()) {
          BOOST_TEST_CONTEXT(q::type_name(t) << " rows=" << rows << " tokens=" << tokens
                                             << " isa=" << q::to_string(l)) {
            guarded y(size_t(y_stride * tokens) * sizeof(float));
            auto* yf = static_cast<float*>(y.data());
            for (int64_t i = 0; i < y_stride * tokens; ++i) yf[i] = 12345.0f;
            BOOST_TEST_REQUIRE(q::mat_mat(t, rows, n, w.data(), stride, a.data(), act_stride,
                                          tokens, yf, y_stride, l) == status::ok);
            BOOST_TEST(y.guard_intact());
            for (int64_t k = 0; k < tokens; ++k) {
              for (int64_t row = 0; row < rows; ++row) {
                float one = 0;
                BOOST_TEST_REQUIRE(q::vec_dot(t, n, &w[row * stride], &a[k * act_stride], &one,
                                              l) == status::ok);
                BOOST_TEST(yf[k * y_stride + row] == one);
              }
              for (int64_t row = rows; row < y_stride; ++row)
                BOOST_TEST(yf[k * y_stride + row] == 12345.0f);
            }
          }
        }
      }
    }
  }
  float y = 0;
  unsigned char buf[64] = {};
  BOOST_TEST(q::mat_mat(quant_type::q4_1, 2, 32, buf, 20, buf, 40, 2, &y, 1) == status::bad_size);
  BOOST_TEST(q::mat_mat(quant_type::q4_1, 1, 32, buf, 20, nullptr, 40, 1, &y, 1) ==
             status::null_pointer);
}

BOOST_AUTO_TEST_CASE(bad_arguments_give_a_status) {
  float out = 0, y[64] = {};
  unsigned char buf[1024] = {};
  BOOST_TEST(q::vec_dot(quant_type::q4_0, 33, buf, buf, &out) == status::bad_size);
  BOOST_TEST(q::vec_dot(quant_type::q4_k, 32, buf, buf, &out) == status::bad_size);
  BOOST_TEST(q::vec_dot(quant_type::q8_k, 256, buf, buf, &out) == status::unsupported_type);
  BOOST_TEST(q::vec_dot(static_cast<quant_type>(16), 256, buf, buf, &out) ==
             status::unsupported_type);  // IQ2_XXS
  BOOST_TEST(q::dequantize_row(static_cast<quant_type>(16), buf, y, 256) ==
             status::unsupported_type);
  BOOST_TEST(q::vec_dot(quant_type::q4_0, 32, nullptr, buf, &out) == status::null_pointer);
  BOOST_TEST(q::dequantize_row(quant_type::q8_k, buf, y, 256) == status::unsupported_type);
  BOOST_TEST(q::dequantize_row(quant_type::q6_k, buf, y, 64) == status::bad_size);
  BOOST_TEST(q::quantize_row(quant_type::q4_0, y, buf, 32) == status::unsupported_type);
  BOOST_TEST(q::vec_dot(quant_type::f32, 0, nullptr, nullptr, &out) == status::ok);
  BOOST_TEST(out == 0.0f);
  for (isa l : {isa::avx2, isa::avx512})
    if (!q::isa_available(l))
      BOOST_TEST(q::vec_dot(quant_type::f32, 4, buf, buf, &out, l) == status::unsupported_isa);
}

BOOST_AUTO_TEST_CASE(lanes_kernels_equal_the_avx2_tiled_order_bit_for_bit) {
  // The tokens-in-lanes kernels (AVX-512 VNNI) against the AVX2 tiled ones, which follow ggml's
  // code (tests/llama/test_ggml_dots.cpp holds both to ggml's bits): random and extreme blocks
  // (every byte 0x00 or 0xFF: largest values, scales and mins), activations at ±127 (ggml's
  // Q8_K never holds -128, which its sign-trick products, and so the AVX2 ones, mishandle),
  // token counts around the 16-lane groups, rows around the 4-row tiles.
  if (!q::q8_k_lanes_available(quant_type::q4_k, 8, isa::avx512)) {
    BOOST_TEST_MESSAGE("no AVX-512 VNNI on this CPU: lanes kernels not tested");
    BOOST_TEST(!q::q8_k_lanes_available(quant_type::q4_k, 8, isa::avx2));
    return;
  }
  rng r;
  for (quant_type t : {quant_type::q2_k, quant_type::q3_k, quant_type::q4_k, quant_type::q5_k,
                       quant_type::q6_k, quant_type::iq4_xs}) {
    BOOST_TEST(!q::q8_k_lanes_available(t, 7, isa::avx512));
    BOOST_TEST(q::q8_k_lanes_available(t, 8, isa::avx512));
    BOOST_TEST(!q::q8_k_lanes_available(t, 64, isa::avx2));
    for (int fill : {-1, 0x00, 0xFF}) {
      const int64_t n = 3 * 256, rows = 7;
      const size_t stride = size_t(q::row_bytes(t, n));
      const size_t as = size_t(q::row_bytes(quant_type::q8_k, n));
      for (int64_t tokens : {8, 16, 17, 33}) {
        std::vector<unsigned char> w(stride * rows), a(as * tokens);
        for (int64_t row = 0; row < rows; ++row) {
          auto one = random_weights(r, t, n, false);
          if (fill >= 0 && row % 2 == 0) {  // all bytes, fp16 scales kept finite below
            std::fill(one.begin(), one.end(), static_cast<unsigned char>(fill));
            for (int64_t b = 0; b < n / 256; ++b) {
              auto fresh = random_weights(r, t, 256, false);  // its fp16 fields: sane
              unsigned char* blk = one.data() + b * q::block_bytes(t);
              const size_t bb = size_t(q::block_bytes(t));
              const bool at_end = t == quant_type::q2_k || t == quant_type::q3_k ||
                                  t == quant_type::q6_k;
              const size_t fields = t == quant_type::q2_k ? 4 : 2;
              if (at_end)
                std::memcpy(blk + bb - fields, fresh.data() + bb - fields, fields);
              else
                std::memcpy(blk, fresh.data(), t == quant_type::iq4_xs ? 2 : 4);
            }
          }
          std::memcpy(&w[row * stride], one.data(), one.size());
        }
        for (int64_t k = 0; k < tokens; ++k) {
          auto one = random_activation(r, quant_type::q8_k, n, false);
          if (k % 3 == 1) {  // extreme quants; bsums follow
            auto* blocks = reinterpret_cast<q::block_q8_k*>(one.data());
            for (int64_t b = 0; b < n / 256; ++b) {
              for (int e = 0; e < 256; ++e)
                blocks[b].qs[e] = static_cast<int8_t>(e % 3 == 0 ? 127 : e % 3 == 1 ? -127 : 0);
              for (int g = 0; g < 16; ++g) {
                int s = 0;
                for (int e = 0; e < 16; ++e) s += blocks[b].qs[16 * g + e];
                blocks[b].bsums[g] = static_cast<int16_t>(s);
              }
            }
          }
          std::memcpy(&a[k * as], one.data(), one.size());
        }
        BOOST_TEST_CONTEXT(q::type_name(t) << " fill=" << fill << " tokens=" << tokens) {
          std::vector<float> want(size_t(rows * tokens)), got(want.size(), -1.0f),
              packed_got(want.size(), -1.0f);
          BOOST_TEST_REQUIRE(q::mat_mat_ggml_batched(t, rows, n, w.data(), stride, a.data(), as,
                                                     tokens, want.data(), rows,
                                                     isa::avx2) == status::ok);
          BOOST_TEST_REQUIRE(q::mat_mat_ggml_batched(t, rows, n, w.data(), stride, a.data(), as,
                                                     tokens, got.data(), rows,
                                                     isa::avx512) == status::ok);
          std::vector<unsigned char> lanes(size_t(q::q8_k_lanes_bytes(n, tokens)));
          BOOST_TEST_REQUIRE(q::pack_q8_k_lanes(a.data(), as, n, tokens, lanes.data()) ==
                             status::ok);
          BOOST_TEST_REQUIRE(q::mat_mat_ggml_batched_lanes(t, rows, n, w.data(), stride,
                                                           lanes.data(), tokens,
                                                           packed_got.data(), rows,
                                                           isa::avx512) == status::ok);
          for (size_t i = 0; i < want.size(); ++i) {
            BOOST_TEST(std::memcmp(&got[i], &want[i], 4) == 0,
                       i << ": " << got[i] << " vs " << want[i]);
            BOOST_TEST(std::memcmp(&packed_got[i], &want[i], 4) == 0);
          }
        }
      }
    }
  }
  unsigned char buf[8] = {};
  float y = 0;
  BOOST_TEST(q::q8_k_lanes_bytes(100, 3) == -1);
  BOOST_TEST(q::q8_k_lanes_bytes(512, 17) == 2 * 2 * 4672);
  BOOST_TEST(q::pack_q8_k_lanes(buf, 292, 100, 3, buf) == status::bad_size);
  BOOST_TEST(q::pack_q8_k_lanes(nullptr, 292, 256, 3, buf) == status::null_pointer);
  BOOST_TEST(q::mat_mat_ggml_batched_lanes(quant_type::q4_k, 1, 256, buf, 144, buf, 7, &y, 1) ==
             status::unsupported_type);  // below the batch size
  BOOST_TEST(q::mat_mat_ggml_batched_lanes(quant_type::q8_0, 1, 256, buf, 272, buf, 9, &y, 1) ==
             status::unsupported_type);
  BOOST_TEST(q::mat_mat_ggml_batched_lanes(quant_type::q4_k, 2, 256, buf, 144, buf, 9, &y, 1,
                                           isa::avx512) == status::bad_size);
}

BOOST_AUTO_TEST_CASE(ggml_batched_order_follows_llama_cpp_and_close_to_vec_dot) {
  // Which batches llama.cpp sums otherwise than vec_dot: the tiled K-quant matmul from 8
  // tokens, tinyBLAS for iq4_nl from 2 (the float bits: tests/llama/test_ggml_dots.cpp).
  for (quant_type t : {quant_type::q2_k, quant_type::q3_k, quant_type::q4_k, quant_type::q5_k,
                       quant_type::q6_k, quant_type::iq4_xs}) {
    BOOST_TEST(!q::ggml_batched_order(t, 7));
    BOOST_TEST(q::ggml_batched_order(t, 8));
  }
  BOOST_TEST(!q::ggml_batched_order(quant_type::iq4_nl, 1));
  BOOST_TEST(q::ggml_batched_order(quant_type::iq4_nl, 2));
  for (quant_type t : {quant_type::q8_0, quant_type::q4_0, quant_type::q4_1, quant_type::f16})
    BOOST_TEST(!q::ggml_batched_order(t, 64));
  // Another order, the same sums: within float rounding of vec_dot, every level; below the
  // batch sizes (and for other types) it is mat_mat itself.
  rng r;
  for (quant_type t : {quant_type::q2_k, quant_type::q3_k, quant_type::q4_k, quant_type::q5_k,
                       quant_type::q6_k, quant_type::iq4_xs, quant_type::iq4_nl}) {
    const quant_type at = act_of(t);
    const int64_t n = sizes_for(t)[2], rows = 5;
    const size_t stride = size_t(q::row_bytes(t, n)), act_stride = size_t(q::row_bytes(at, n));
    for (int64_t tokens : {3, 9}) {
      std::vector<unsigned char> w(stride * rows), a(act_stride * tokens);
      for (int64_t row = 0; row < rows; ++row) {
        auto one = random_weights(r, t, n, false);
        std::memcpy(&w[row * stride], one.data(), one.size());
      }
      for (int64_t k = 0; k < tokens; ++k) {
        auto one = random_activation(r, at, n, false);
        std::memcpy(&a[k * act_stride], one.data(), one.size());
      }
      for (isa l : levels()) {
        BOOST_TEST_CONTEXT(q::type_name(t) << " tokens=" << tokens << " isa=" << q::to_string(l)) {
          std::vector<float> y(size_t(rows * tokens)), ref(size_t(rows * tokens));
          BOOST_TEST_REQUIRE(q::mat_mat_ggml_batched(t, rows, n, w.data(), stride, a.data(),
                                                     act_stride, tokens, y.data(), rows,
                                                     l) == status::ok);
          BOOST_TEST_REQUIRE(q::mat_mat(t, rows, n, w.data(), stride, a.data(), act_stride,
                                        tokens, ref.data(), rows, l) == status::ok);
          for (size_t i = 0; i < y.size(); ++i) {
            if (!q::ggml_batched_order(t, tokens) || l == isa::scalar)
              BOOST_TEST(y[i] == ref[i]);
            else
              BOOST_TEST(std::fabs(y[i] - ref[i]) <= 1e-4f * (1.0f + std::fabs(ref[i])));
          }
        }
      }
    }
  }
  float y = 0;
  unsigned char buf[512] = {};
  BOOST_TEST(q::mat_mat_ggml_batched(quant_type::q4_k, 1, 100, buf, 144, buf, 292, 9, &y, 1) ==
             status::bad_size);
  BOOST_TEST(q::mat_mat_ggml_batched(quant_type::q4_k, 2, 256, buf, 144, buf, 292, 9, &y, 1) ==
             status::bad_size);
  BOOST_TEST(q::mat_mat_ggml_batched(quant_type::q4_k, 1, 256, buf, 144, nullptr, 292, 9, &y,
                                     1) == status::null_pointer);
}
