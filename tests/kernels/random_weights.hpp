#pragma once
// Random weight rows of every ggml type for the kernel tests: random quants under small positive
// scales, or (exact) unit scales and small integers so that every sum is exact in fp32.

#include <boost/test/unit_test.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/quant.hpp"

namespace troupe::kernels::cpu::test {

struct rng {
  std::mt19937 gen{20240611};
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  float real(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
};

inline void put16(unsigned char* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void putf(unsigned char* p, float v) { std::memcpy(p, &v, 4); }

/// A random weight row. `exact`: unit scales and small integers, so every sum is exact in fp32.
inline std::vector<unsigned char> random_weights(rng& r, quant_type t, int64_t n, bool exact) {
  const int64_t bytes = row_bytes(t, n);
  std::vector<unsigned char> w(bytes);
  for (auto& b : w) b = static_cast<unsigned char>(r.integer(0, 255));
  auto scale = [&](float lo, float hi) { return exact ? fp32_to_fp16(1.0f) : fp32_to_fp16(r.real(lo, hi)); };
  switch (t) {
    case quant_type::f32:
      for (int64_t i = 0; i < n; ++i) putf(&w[4 * i], exact ? float(r.integer(-8, 8)) : r.real(-1, 1));
      break;
    case quant_type::f16:
      for (int64_t i = 0; i < n; ++i) put16(&w[2 * i], fp32_to_fp16(exact ? float(r.integer(-8, 8)) : r.real(-1, 1)));
      break;
    case quant_type::bf16:
      for (int64_t i = 0; i < n; ++i) put16(&w[2 * i], fp32_to_bf16(exact ? float(r.integer(-8, 8)) : r.real(-1, 1)));
      break;
    case quant_type::q8_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        put16(&w[34 * b], scale(0.001f, 0.02f));
        for (int j = 0; j < 32; ++j) w[34 * b + 2 + j] = static_cast<unsigned char>(int8_t(r.integer(-127, 127)));
      }
      break;
    case quant_type::q4_0:
      for (int64_t b = 0; b < n / 32; ++b) put16(&w[18 * b], scale(0.001f, 0.05f));
      break;
    case quant_type::q4_1:
      for (int64_t b = 0; b < n / 32; ++b) {
        put16(&w[20 * b], scale(0.001f, 0.05f));
        put16(&w[20 * b + 2], exact ? fp32_to_fp16(float(r.integer(-3, 3))) : fp32_to_fp16(r.real(-0.3f, 0.1f)));
      }
      break;
    case quant_type::q5_0:
      for (int64_t b = 0; b < n / 32; ++b) put16(&w[22 * b], scale(0.001f, 0.05f));
      break;
    case quant_type::q5_1:
      for (int64_t b = 0; b < n / 32; ++b) {
        put16(&w[24 * b], scale(0.001f, 0.05f));
        put16(&w[24 * b + 2], exact ? fp32_to_fp16(float(r.integer(-3, 3))) : fp32_to_fp16(r.real(-0.3f, 0.1f)));
      }
      break;
    case quant_type::q4_k:
      for (int64_t b = 0; b < n / 256; ++b) {
        put16(&w[144 * b], scale(0.0005f, 0.005f));
        put16(&w[144 * b + 2], scale(0.0005f, 0.005f));
      }
      break;
    case quant_type::q5_k:
      for (int64_t b = 0; b < n / 256; ++b) {
        put16(&w[176 * b], scale(0.0005f, 0.005f));
        put16(&w[176 * b + 2], scale(0.0005f, 0.005f));
      }
      break;
    case quant_type::q6_k:
      for (int64_t b = 0; b < n / 256; ++b) put16(&w[210 * b + 208], scale(0.0005f, 0.005f));
      break;
    case quant_type::q2_k:
      for (int64_t b = 0; b < n / 256; ++b) {
        put16(&w[84 * b + 80], scale(0.0005f, 0.005f));
        put16(&w[84 * b + 82], scale(0.0005f, 0.005f));
      }
      break;
    case quant_type::q3_k:
      for (int64_t b = 0; b < n / 256; ++b) put16(&w[110 * b + 108], scale(0.0005f, 0.005f));
      break;
    case quant_type::iq4_nl:
      for (int64_t b = 0; b < n / 32; ++b) put16(&w[18 * b], scale(0.001f, 0.05f));
      break;
    case quant_type::iq4_xs:
      for (int64_t b = 0; b < n / 256; ++b) {
        put16(&w[136 * b], scale(0.0005f, 0.005f));
        if (exact) put16(&w[136 * b + 2], 0xAAAA);  // scales 32 + 0..15, minus 32: 0..15
      }
      break;
    default: BOOST_FAIL("no generator");
  }
  return w;
}

}  // namespace test
