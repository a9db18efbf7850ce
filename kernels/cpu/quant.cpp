// Scalar reference kernels, conversions and the run-time dispatch of the CPU quant kernels.
// This file is compiled for baseline x86-64 (no -mavx*, no FMA contraction), so the scalar
// kernels here are the reference that the SIMD variants are tested against.

#include "cpu/quant.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <vector>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu {

namespace {

uint32_t bits_of(float f) noexcept {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float float_of(uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

}  // namespace

const char* to_string(status s) noexcept {
  switch (s) {
    case status::ok: return "ok";
    case status::unsupported_type: return "unsupported_type";
    case status::bad_size: return "bad_size";
    case status::null_pointer: return "null_pointer";
    case status::unsupported_isa: return "unsupported_isa";
  }
  return "unknown";
}

const char* type_name(quant_type t) noexcept {
  switch (t) {
    case quant_type::f32: return "f32";
    case quant_type::f16: return "f16";
    case quant_type::q4_0: return "q4_0";
    case quant_type::q4_1: return "q4_1";
    case quant_type::q5_0: return "q5_0";
    case quant_type::q5_1: return "q5_1";
    case quant_type::q8_0: return "q8_0";
    case quant_type::q8_1: return "q8_1";
    case quant_type::q2_k: return "q2_K";
    case quant_type::q3_k: return "q3_K";
    case quant_type::q4_k: return "q4_K";
    case quant_type::q5_k: return "q5_K";
    case quant_type::q6_k: return "q6_K";
    case quant_type::q8_k: return "q8_K";
    case quant_type::iq4_nl: return "iq4_nl";
    case quant_type::iq4_xs: return "iq4_xs";
    case quant_type::bf16: return "bf16";
  }
  return "unknown";
}

int64_t block_elements(quant_type t) noexcept {
  switch (t) {
    case quant_type::f32:
    case quant_type::f16:
    case quant_type::bf16: return 1;
    case quant_type::q4_0:
    case quant_type::q4_1:
    case quant_type::q5_0:
    case quant_type::q5_1:
    case quant_type::q8_0:
    case quant_type::q8_1:
    case quant_type::iq4_nl: return 32;
    case quant_type::q2_k:
    case quant_type::q3_k:
    case quant_type::iq4_xs:
    case quant_type::q4_k:
    case quant_type::q5_k:
    case quant_type::q6_k:
    case quant_type::q8_k: return qk_k;
  }
  return 0;
}

int64_t block_bytes(quant_type t) noexcept {
  switch (t) {
    case quant_type::f32: return 4;
    case quant_type::f16:
    case quant_type::bf16: return 2;
    case quant_type::q4_0: return sizeof(block_q4_0);
    case quant_type::q4_1: return sizeof(block_q4_1);
    case quant_type::q5_0: return sizeof(block_q5_0);
    case quant_type::q5_1: return sizeof(block_q5_1);
    case quant_type::q8_0: return sizeof(block_q8_0);
    case quant_type::q8_1: return sizeof(block_q8_1);
    case quant_type::q2_k: return sizeof(block_q2_k);
    case quant_type::q3_k: return sizeof(block_q3_k);
    case quant_type::iq4_nl: return sizeof(block_iq4_nl);
    case quant_type::iq4_xs: return sizeof(block_iq4_xs);
    case quant_type::q4_k: return sizeof(block_q4_k);
    case quant_type::q5_k: return sizeof(block_q5_k);
    case quant_type::q6_k: return sizeof(block_q6_k);
    case quant_type::q8_k: return sizeof(block_q8_k);
  }
  return 0;
}

int64_t row_bytes(quant_type t, int64_t n) noexcept {
  int64_t be = block_elements(t);
  if (be == 0 || n < 0 || n % be != 0) return -1;
  return n / be * block_bytes(t);
}

bool activation_type(quant_type weight, quant_type* out) noexcept {
  quant_type a;
  switch (weight) {
    case quant_type::f32:
    case quant_type::f16:
    case quant_type::bf16: a = quant_type::f32; break;
    case quant_type::q8_0:
    case quant_type::q4_0:
    case quant_type::q5_0:
    case quant_type::iq4_nl: a = quant_type::q8_0; break;
    case quant_type::q4_1:
    case quant_type::q5_1: a = quant_type::q8_1; break;
    case quant_type::q2_k:
    case quant_type::q3_k:
    case quant_type::q4_k:
    case quant_type::q5_k:
    case quant_type::q6_k:
    case quant_type::iq4_xs: a = quant_type::q8_k; break;
    default: return false;
  }
  if (out != nullptr) *out = a;
  return true;
}

// fp16 <-> fp32 by bit manipulation (after Maratyszcza's FP16 library, as ggml does).
float fp16_to_fp32(uint16_t h) noexcept {
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const uint32_t exp_offset = 0xE0u << 23;
  const float exp_scale = 0x1.0p-112f;
  const float normalized = float_of((two_w >> 4) + exp_offset) * exp_scale;
  const uint32_t magic_mask = 126u << 23;
  const float magic_bias = 0.5f;
  const float denormalized = float_of((two_w >> 17) | magic_mask) - magic_bias;
  const uint32_t denormalized_cutoff = 1u << 27;
  const uint32_t result =
      sign | (two_w < denormalized_cutoff ? bits_of(denormalized) : bits_of(normalized));
  return float_of(result);
}

uint16_t fp32_to_fp16(float f) noexcept {
  const float scale_to_inf = 0x1.0p+112f;
  const float scale_to_zero = 0x1.0p-110f;
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const uint32_t w = bits_of(f);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = float_of((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = bits_of(base);
  const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const uint32_t mantissa_bits = bits & 0x00000FFFu;
  const uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

uint16_t fp32_to_bf16(float f) noexcept {
  uint32_t u = bits_of(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 64);  // quiet NaN
  return static_cast<uint16_t>((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
}

namespace detail {
namespace {

// ---- scalar dequantisation -----------------------------------------------------------------

void dequantize_q8_0(const block_q8_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < qk8_0; ++j) y[i * qk8_0 + j] = x[i].qs[j] * d;
  }
}

void dequantize_q4_0(const block_q4_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < qk4_0 / 2; ++j) {
      y[i * qk4_0 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
      y[i * qk4_0 + j + qk4_0 / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequantize_q4_1(const block_q4_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    for (int j = 0; j < qk4_1 / 2; ++j) {
      y[i * qk4_1 + j] = (x[i].qs[j] & 0x0F) * d + m;
      y[i * qk4_1 + j + qk4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

/// The 5-bit value of element j (0..31) of a Q5 block: its nibble and bit j of qh.
inline int q5_value(const uint8_t* qs, const uint8_t* qh, int j) {
  uint32_t h;
  std::memcpy(&h, qh, sizeof h);
  const int nibble = j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
  return nibble | static_cast<int>(((h >> j) & 1u) << 4);
}

void dequantize_q5_0(const block_q5_0* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < qk5_0; ++j) y[i * qk5_0 + j] = (q5_value(x[i].qs, x[i].qh, j) - 16) * d;
  }
}

void dequantize_q5_1(const block_q5_1* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float m = fp16_to_fp32(x[i].m);
    for (int j = 0; j < qk5_1; ++j) y[i * qk5_1 + j] = q5_value(x[i].qs, x[i].qh, j) * d + m;
  }
}

/// A Q4_K or Q5_K row: per 32 elements d·scale·q − dmin·min with 6-bit scales and mins; Q5_K
/// adds bit 2j / 2j+1 of qh[l] as 16 to the low / high nibble of sub-block pair j (as
/// dot_k_with_mins below reads them).
template <class Block>
void dequantize_k_with_mins(const Block* x, float* y, int64_t nb) {
  constexpr bool fifth_bit = std::is_same_v<Block, block_q5_k>;
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int j = 0; j < qk_k / 64; ++j, q += 32) {
      uint8_t sc, m;
      q4_k_scale_min(2 * j, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      q4_k_scale_min(2 * j + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) {
        int v = q[l] & 0xF;
        if constexpr (fifth_bit) v += ((x[i].qh[l] >> (2 * j)) & 1) * 16;
        *y++ = d1 * static_cast<float>(v) - m1;
      }
      for (int l = 0; l < 32; ++l) {
        int v = q[l] >> 4;
        if constexpr (fifth_bit) v += ((x[i].qh[l] >> (2 * j + 1)) & 1) * 16;
        *y++ = d2 * static_cast<float>(v) - m2;
      }
    }
  }
}

void dequantize_q4_k(const block_q4_k* x, float* y, int64_t nb) {
  dequantize_k_with_mins(x, y, nb);
}

void dequantize_q5_k(const block_q5_k* x, float* y, int64_t nb) {
  dequantize_k_with_mins(x, y, nb);
}

void dequantize_q6_k(const block_q6_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int n = 0; n < qk_k; n += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * sc[is] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

/// Q2_K: per 16 elements d·scale·q − dmin·min (ggml's dequantize_row_q2_K, unfused).
void dequantize_q2_k(const block_q2_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += qk_k) {
    const float d = fp16_to_fp32(x[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin);
    for (int e = 0; e < qk_k; ++e) {
      const uint8_t sc = x[i].scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
      const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

/// The value of element e of a Q3_K block: its two low bits, minus 4 where its high bit is clear.
inline int q3_k_value(const block_q3_k& b, int e) {
  const int low = (b.qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
  return (b.hmask[e % 32] >> (e / 32)) & 1 ? low : low - 4;
}

void dequantize_q3_k(const block_q3_k* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += qk_k) {
    const float d = fp16_to_fp32(x[i].d);
    int8_t sc[16];
    q3_k_scales(x[i].scales, sc);
    for (int e = 0; e < qk_k; ++e)
      y[e] = (d * static_cast<float>(sc[e / 16])) * static_cast<float>(q3_k_value(x[i], e));
  }
}

/// The value of element j (0..31) of a 16-byte run of IQ4 nibbles.
inline int iq4_value(const uint8_t* qs, int j) {
  return iq4_values[j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4];
}

void dequantize_iq4_nl(const block_iq4_nl* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += qk4_nl) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < qk4_nl; ++j) y[j] = d * static_cast<float>(iq4_value(x[i].qs, j));
  }
}

void dequantize_iq4_xs(const block_iq4_xs* x, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int s = 0; s < qk_k / 32; ++s, y += 32) {
      const float dl = d * static_cast<float>(iq4_xs_scale(x[i], s));
      for (int j = 0; j < 32; ++j) y[j] = dl * static_cast<float>(iq4_value(x[i].qs + 16 * s, j));
    }
  }
}

// ---- scalar activation quantisers ----------------------------------------------------------

void quantize_q8_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t i = 0; i < n / qk8_0; ++i) {
    const float* xb = x + i * qk8_0;
    float amax = 0.0f;
    for (int j = 0; j < qk8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < qk8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
  }
}

void quantize_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_1*>(vy);
  for (int64_t i = 0; i < n / qk8_1; ++i) {
    const float* xb = x + i * qk8_1;
    float amax = 0.0f;
    for (int j = 0; j < qk8_1; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < qk8_1; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
      sum += y[i].qs[j];
    }
    y[i].d = d;
    y[i].s = d * static_cast<float>(sum);
  }
}

void quantize_q8_k(const float* x, void* vy, int64_t n) { quantize_q8_k_ggml(x, vy, n); }

// ---- scalar dot products -------------------------------------------------------------------

float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

float dot_f16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += fp16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_bf16(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += bf16_to_fp32(x[i]) * y[i];
  return s;
}

float dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk8_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < qk8_0; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    s += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return s;
}

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk4_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < qk4_0 / 2; ++j) {
      sumi += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
      sumi += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + qk4_0 / 2];
    }
    s += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return s;
}

float dot_q4_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q4_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk4_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < qk4_1 / 2; ++j) {
      sumi += (x[i].qs[j] & 0x0F) * y[i].qs[j];
      sumi += (x[i].qs[j] >> 4) * y[i].qs[j + qk4_1 / 2];
    }
    s += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * y[i].d) +
         fp16_to_fp32(x[i].m) * y[i].s;
  }
  return s;
}

float dot_q5_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q5_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk5_0; ++i) {
    int sumi = 0;
    for (int j = 0; j < qk5_0; ++j) sumi += (q5_value(x[i].qs, x[i].qh, j) - 16) * y[i].qs[j];
    s += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return s;
}

float dot_q5_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q5_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk5_1; ++i) {
    int sumi = 0;
    for (int j = 0; j < qk5_1; ++j) sumi += q5_value(x[i].qs, x[i].qh, j) * y[i].qs[j];
    s += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * y[i].d) +
         fp16_to_fp32(x[i].m) * y[i].s;
  }
  return s;
}

/// A Q4_K or Q5_K row against Q8_K: per 32 elements a 6-bit scale and min; Q5_K adds bit 2j /
/// 2j+1 of qh[l] as 16 to the low / high nibble of sub-block pair j.
template <class Block>
float dot_k_with_mins(int64_t n, const void* w, const void* a) {
  constexpr bool fifth_bit = std::is_same_v<Block, block_q5_k>;
  const auto* x = static_cast<const Block*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const uint8_t* q = x[i].qs;
    const int8_t* q8 = y[i].qs;
    int sumi = 0, summ = 0;
    for (int j = 0; j < qk_k / 64; ++j) {
      uint8_t sc1, m1, sc2, m2;
      q4_k_scale_min(2 * j, x[i].scales, &sc1, &m1);
      q4_k_scale_min(2 * j + 1, x[i].scales, &sc2, &m2);
      int s1 = 0, s2 = 0;
      for (int l = 0; l < 32; ++l) {
        int lo = q[l] & 0xF, hi = q[l] >> 4;
        if constexpr (fifth_bit) {
          lo += ((x[i].qh[l] >> (2 * j)) & 1) * 16;
          hi += ((x[i].qh[l] >> (2 * j + 1)) & 1) * 16;
        }
        s1 += lo * q8[l];
        s2 += hi * q8[l + 32];
      }
      sumi += sc1 * s1 + sc2 * s2;
      summ += m1 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
              m2 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
      q += 32;
      q8 += 64;
    }
    s += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi) -
         fp16_to_fp32(x[i].dmin) * y[i].d * static_cast<float>(summ);
  }
  return s;
}

float dot_q4_k(int64_t n, const void* w, const void* a) {
  return dot_k_with_mins<block_q4_k>(n, w, a);
}

float dot_q5_k(int64_t n, const void* w, const void* a) {
  return dot_k_with_mins<block_q5_k>(n, w, a);
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q6_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  float s = 0.0f;
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    const int8_t* q8 = y[i].qs;
    int sumi = 0;
    for (int h = 0; h < 2; ++h) {
      int sums[8] = {};
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        sums[is] += q1 * q8[l];
        sums[is + 2] += q2 * q8[l + 32];
        sums[is + 4] += q3 * q8[l + 64];
        sums[is + 6] += q4 * q8[l + 96];
      }
      for (int k = 0; k < 8; ++k) sumi += sc[k] * sums[k];
      ql += 64;
      qh += 32;
      sc += 8;
      q8 += 128;
    }
    s += fp16_to_fp32(x[i].d) * y[i].d * static_cast<float>(sumi);
  }
  return s;
}

// The four kernels below keep the AVX2 kernels' (and ggml's) order of floating-point operations
// exactly, so that the scalar level gives the same bits: 8 lanes of integer sums per block, lane
// m holding elements 4m..4m+3 of each 32-element run; per lane an fp32 FMA accumulator; at the
// end hsum_lanes. (std::fma: this file is compiled without FMA, and GCC contracts nothing here.)

/// Σ of 8 lanes as the AVX2 kernels' hsum (ggml's hsum_float_8) adds them.
float hsum_lanes(const float* v) {
  float h[4];
  for (int l = 0; l < 4; ++l) h[l] = v[l] + v[l + 4];
  return (h[0] + h[2]) + (h[1] + h[3]);
}

/// Q2_K against Q8_K: per lane and block, first −dmin times its two sub-blocks' Σ min·bsum
/// (lane k: sub-blocks 2k, 2k+1), then d times its Σ scale·q·q8.
float dot_q2_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q2_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  float acc[8] = {};
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const float d = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = -y[i].d * fp16_to_fp32(x[i].dmin);
    int sumi[8] = {};
    for (int e = 0; e < qk_k; ++e) {
      const int q = (x[i].qs[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3;
      sumi[(e / 4) % 8] += (x[i].scales[e / 16] & 0xF) * q * y[i].qs[e];
    }
    for (int k = 0; k < 8; ++k) {
      const int mins = (x[i].scales[2 * k] >> 4) * y[i].bsums[2 * k] +
                       (x[i].scales[2 * k + 1] >> 4) * y[i].bsums[2 * k + 1];
      acc[k] = std::fma(dmin, static_cast<float>(mins), acc[k]);
      acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
    }
  }
  return hsum_lanes(acc);
}

float dot_q3_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q3_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  float acc[8] = {};
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const float d = y[i].d * fp16_to_fp32(x[i].d);
    int8_t sc[16];
    q3_k_scales(x[i].scales, sc);
    int sumi[8] = {};
    for (int e = 0; e < qk_k; ++e)
      sumi[(e / 4) % 8] += sc[e / 16] * q3_k_value(x[i], e) * y[i].qs[e];
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
  }
  return hsum_lanes(acc);
}

/// IQ4_NL against Q8_0: blocks in pairs, even ones into one set of lanes and odd ones into
/// another, added lane by lane before the horizontal sum; an odd last block is added after it
/// (unfused, as ggml's `sumf += d·sumi` is compiled).
float dot_iq4_nl(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_iq4_nl*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const int64_t nb = n / qk4_nl;
  float acc[2][8] = {};
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    for (int p = 0; p < 2; ++p) {
      const block_iq4_nl& b = x[ib + p];
      const float d = fp16_to_fp32(y[ib + p].d) * fp16_to_fp32(b.d);
      int sumi[8] = {};
      for (int j = 0; j < qk4_nl; ++j) sumi[j / 4] += iq4_value(b.qs, j) * y[ib + p].qs[j];
      for (int k = 0; k < 8; ++k) acc[p][k] = std::fma(d, static_cast<float>(sumi[k]), acc[p][k]);
    }
  }
  float lanes[8];
  for (int k = 0; k < 8; ++k) lanes[k] = acc[0][k] + acc[1][k];
  float s = hsum_lanes(lanes);
  for (; ib < nb; ++ib) {
    const float d = fp16_to_fp32(y[ib].d) * fp16_to_fp32(x[ib].d);
    int sumi = 0;
    for (int j = 0; j < qk4_nl; ++j) sumi += iq4_value(x[ib].qs, j) * y[ib].qs[j];
    s += d * static_cast<float>(sumi);
  }
  return s;
}

float dot_iq4_xs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_iq4_xs*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  float acc[8] = {};
  for (int64_t i = 0; i < n / qk_k; ++i) {
    int sumi[8] = {};
    for (int s = 0; s < qk_k / 32; ++s) {
      const int ls = iq4_xs_scale(x[i], s);
      for (int j = 0; j < 32; ++j)
        sumi[j / 4] += ls * iq4_value(x[i].qs + 16 * s, j) * y[i].qs[32 * s + j];
    }
    const float d = fp16_to_fp32(x[i].d) * y[i].d;
    for (int k = 0; k < 8; ++k) acc[k] = std::fma(d, static_cast<float>(sumi[k]), acc[k]);
  }
  return hsum_lanes(acc);
}

}  // namespace

const kernel_table& scalar_kernels() noexcept {
  static const kernel_table table{dot_f32,       dot_f16,   dot_bf16, dot_q8_0,      dot_q4_0,
                                  dot_q4_1,      dot_q4_k,  dot_q6_k, quantize_q8_0, quantize_q8_1,
                                  quantize_q8_k, nullptr,   nullptr,  dot_q5_0,      dot_q5_1,
                                  nullptr,       nullptr,   dot_q5_k, dot_q2_k,      dot_q3_k,
                                  dot_iq4_nl,    dot_iq4_xs,  nullptr,
                                  nullptr,       nullptr,     nullptr,
                                  nullptr,       nullptr,     nullptr,
                                  nullptr,       {},          {}};
  return table;
}

}  // namespace detail

// ---- dispatch ------------------------------------------------------------------------------

const char* to_string(isa level) noexcept {
  switch (level) {
    case isa::scalar: return "scalar";
    case isa::avx2: return "avx2";
    case isa::avx512: return "avx512";
    case isa::best: return "best";
  }
  return "unknown";
}

namespace {

bool probe_cpu(isa level) noexcept {
#if defined(__x86_64__) && defined(TROUPE_KERNELS_HAVE_AVX2)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (level == isa::avx2) return avx2;
#if defined(TROUPE_KERNELS_HAVE_AVX512)
  if (level == isa::avx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
#endif
#endif
  return level == isa::scalar;
}

/// probe_cpu, asked once per level: the kernels' dispatch asks on every call.
bool cpu_has(isa level) noexcept {
  static const bool avx2 = probe_cpu(isa::avx2);
  static const bool avx512 = probe_cpu(isa::avx512);
  switch (level) {
    case isa::scalar: return true;
    case isa::avx2: return avx2;
    case isa::avx512: return avx512;
    default: return false;
  }
}

isa detect_best() noexcept {
  isa cap = isa::avx512;
  if (const char* env = std::getenv("TROUPE_KERNELS_ISA")) {
    std::string_view v = env;
    if (v == "scalar") cap = isa::scalar;
    else if (v == "avx2") cap = isa::avx2;
  }
  for (isa l : {isa::avx512, isa::avx2}) {
    if (static_cast<int>(l) <= static_cast<int>(cap) && cpu_has(l)) return l;
  }
  return isa::scalar;
}

const detail::kernel_table* table_for(isa level) noexcept {
  if (level == isa::best) level = best_isa();
  if (!isa_available(level)) return nullptr;
  switch (level) {
#if defined(TROUPE_KERNELS_HAVE_AVX2)
    case isa::avx2: return &detail::avx2_kernels();
#endif
#if defined(TROUPE_KERNELS_HAVE_AVX512)
    case isa::avx512: return &detail::avx512_kernels();
#endif
    case isa::scalar: return &detail::scalar_kernels();
    default: return nullptr;
  }
}

detail::dot_fn dot_for(const detail::kernel_table& t, quant_type weight) noexcept {
  switch (weight) {
    case quant_type::f32: return t.dot_f32;
    case quant_type::f16: return t.dot_f16;
    case quant_type::bf16: return t.dot_bf16;
    case quant_type::q8_0: return t.dot_q8_0;
    case quant_type::q4_0: return t.dot_q4_0;
    case quant_type::q4_1: return t.dot_q4_1;
    case quant_type::q5_0: return t.dot_q5_0;
    case quant_type::q5_1: return t.dot_q5_1;
    case quant_type::q4_k: return t.dot_q4_k;
    case quant_type::q5_k: return t.dot_q5_k;
    case quant_type::q6_k: return t.dot_q6_k;
    case quant_type::q2_k: return t.dot_q2_k;
    case quant_type::q3_k: return t.dot_q3_k;
    case quant_type::iq4_nl: return t.dot_iq4_nl;
    case quant_type::iq4_xs: return t.dot_iq4_xs;
    default: return nullptr;
  }
}

/// Checks the shared preconditions of vec_dot/mat_vec and resolves the kernel.
status resolve_dot(quant_type weight, int64_t n, isa level, detail::dot_fn* fn) noexcept {
  const detail::kernel_table* t = table_for(level);
  if (t == nullptr) return status::unsupported_isa;
  *fn = dot_for(*t, weight);
  if (*fn == nullptr) return status::unsupported_type;
  if (n < 0 || n % block_elements(weight) != 0) return status::bad_size;
  return status::ok;
}

}  // namespace

bool isa_available(isa level) noexcept {
  if (level == isa::best) return true;
  return cpu_has(level);
}

isa best_isa() noexcept {
  static const isa best = detect_best();
  return best;
}

status dequantize_row(quant_type t, const void* x, float* y, int64_t n, isa level) noexcept {
  if (table_for(level) == nullptr) return status::unsupported_isa;
  const int64_t be = block_elements(t);
  if (be == 0 || t == quant_type::q8_1 || t == quant_type::q8_k) return status::unsupported_type;
  if (n < 0 || n % be != 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (x == nullptr || y == nullptr) return status::null_pointer;
  const int64_t nb = n / be;
  switch (t) {
    case quant_type::f32: std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float)); break;
    case quant_type::f16: {
      const auto* h = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_fp32(h[i]);
      break;
    }
    case quant_type::bf16: {
      const auto* h = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_fp32(h[i]);
      break;
    }
    case quant_type::q8_0: detail::dequantize_q8_0(static_cast<const block_q8_0*>(x), y, nb); break;
    case quant_type::q4_0: detail::dequantize_q4_0(static_cast<const block_q4_0*>(x), y, nb); break;
    case quant_type::q4_1: detail::dequantize_q4_1(static_cast<const block_q4_1*>(x), y, nb); break;
    case quant_type::q5_0: detail::dequantize_q5_0(static_cast<const block_q5_0*>(x), y, nb); break;
    case quant_type::q5_1: detail::dequantize_q5_1(static_cast<const block_q5_1*>(x), y, nb); break;
    case quant_type::q4_k: detail::dequantize_q4_k(static_cast<const block_q4_k*>(x), y, nb); break;
    case quant_type::q5_k: detail::dequantize_q5_k(static_cast<const block_q5_k*>(x), y, nb); break;
    case quant_type::q6_k: detail::dequantize_q6_k(static_cast<const block_q6_k*>(x), y, nb); break;
    case quant_type::q2_k: detail::dequantize_q2_k(static_cast<const block_q2_k*>(x), y, nb); break;
    case quant_type::q3_k: detail::dequantize_q3_k(static_cast<const block_q3_k*>(x), y, nb); break;
    case quant_type::iq4_nl:
      detail::dequantize_iq4_nl(static_cast<const block_iq4_nl*>(x), y, nb);
      break;
    case quant_type::iq4_xs:
      detail::dequantize_iq4_xs(static_cast<const block_iq4_xs*>(x), y, nb);
      break;
    default: return status::unsupported_type;
  }
  return status::ok;
}

status quantize_row(quant_type t, const float* x, void* y, int64_t n, isa level) noexcept {
  const detail::kernel_table* table = table_for(level);
  if (table == nullptr) return status::unsupported_isa;
  detail::quantize_fn fn = nullptr;
  switch (t) {
    case quant_type::q8_0: fn = table->quantize_q8_0; break;
    case quant_type::q8_1: fn = table->quantize_q8_1; break;
    case quant_type::q8_k: fn = table->quantize_q8_k; break;
    case quant_type::f32: break;
    default: return status::unsupported_type;
  }
  if (n < 0 || n % block_elements(t) != 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (x == nullptr || y == nullptr) return status::null_pointer;
  if (fn == nullptr) {
    std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
  } else {
    fn(x, y, n);
  }
  return status::ok;
}

status vec_dot(quant_type weight, int64_t n, const void* w, const void* a, float* out,
               isa level) noexcept {
  detail::dot_fn fn = nullptr;
  if (status s = resolve_dot(weight, n, level, &fn); s != status::ok) return s;
  if (out == nullptr || (n > 0 && (w == nullptr || a == nullptr))) return status::null_pointer;
  *out = n == 0 ? 0.0f : fn(n, w, a);
  return status::ok;
}

namespace {

/// The level's multi-row / multi-token kernel for `weight`; nullptr where it has none (mat_mat
/// then loops over the row dot).
detail::mat_mat_fn multi_for(const detail::kernel_table& t, quant_type weight) noexcept {
  switch (weight) {
    case quant_type::q4_1: return t.mat_mat_q4_1;
    case quant_type::q8_0: return t.mat_mat_q8_0;
    case quant_type::q5_0: return t.mat_mat_q5_0;
    case quant_type::q5_1: return t.mat_mat_q5_1;
    case quant_type::q4_0: return t.mat_mat_q4_0;
    case quant_type::q4_k: return t.mat_mat_q4_k;
    case quant_type::q5_k: return t.mat_mat_q5_k;
    case quant_type::q6_k: return t.mat_mat_q6_k;
    case quant_type::iq4_nl: return t.mat_mat_iq4_nl;
    case quant_type::iq4_xs: return t.mat_mat_iq4_xs;
    case quant_type::q2_k: return t.mat_mat_q2_k;
    case quant_type::q3_k: return t.mat_mat_q3_k;
    default: return nullptr;
  }
}

/// From this many tokens on, mat_mat widens Q5_0 / Q4_0 rows to Q8_0 (one row's widening costs
/// about one token's dot product).
constexpr int64_t widen_tokens = 4;

/// nb blocks of a Q5_0, Q4_0 or IQ4_NL row as Q8_0 blocks: the same fp16 scale, the element
/// values (ggml's dequantize_row_* before the scale) as int8.
void widen_to_q8_0(quant_type t, const unsigned char* row, block_q8_0* out, int64_t nb) noexcept {
  for (int64_t b = 0; b < nb; ++b) {
    block_q8_0& o = out[b];
    if (t == quant_type::q5_0) {
      block_q5_0 x;
      std::memcpy(&x, row + b * sizeof(block_q5_0), sizeof x);
      uint32_t qh;
      std::memcpy(&qh, x.qh, sizeof qh);
      o.d = x.d;
      for (int j = 0; j < qk5_0 / 2; ++j) {
        const int lo = (x.qs[j] & 0x0F) | static_cast<int>(((qh >> j) << 4) & 0x10);
        const int hi = (x.qs[j] >> 4) | static_cast<int>((qh >> (j + 12)) & 0x10);
        o.qs[j] = static_cast<int8_t>(lo - 16);
        o.qs[j + qk5_0 / 2] = static_cast<int8_t>(hi - 16);
      }
    } else if (t == quant_type::iq4_nl) {
      block_iq4_nl x;
      std::memcpy(&x, row + b * sizeof(block_iq4_nl), sizeof x);
      o.d = x.d;
      for (int j = 0; j < qk4_nl / 2; ++j) {
        o.qs[j] = iq4_values[x.qs[j] & 0x0F];
        o.qs[j + qk4_nl / 2] = iq4_values[x.qs[j] >> 4];
      }
    } else {
      block_q4_0 x;
      std::memcpy(&x, row + b * sizeof(block_q4_0), sizeof x);
      o.d = x.d;
      for (int j = 0; j < qk4_0 / 2; ++j) {
        o.qs[j] = static_cast<int8_t>((x.qs[j] & 0x0F) - 8);
        o.qs[j + qk4_0 / 2] = static_cast<int8_t>((x.qs[j] >> 4) - 8);
      }
    }
  }
}

/// mat_mat of Q5_0 / Q4_0 / IQ4_NL rows through the level's Q8_0 tiles: the rows widened to
/// Q8_0 blocks first (a per-thread buffer: mat_mul calls this on 16-row tiles).
void mat_mat_widened(const detail::kernel_table& table, quant_type weight, int64_t rows,
                     int64_t n, const void* w, size_t row_stride, const void* a,
                     size_t act_stride, int64_t tokens, float* y, int64_t y_stride) {
  thread_local std::vector<block_q8_0> wide;
  const int64_t nb = n / qk8_0;
  wide.resize(static_cast<size_t>(rows * nb));
  const auto* base = static_cast<const unsigned char*>(w);
  for (int64_t r = 0; r < rows; ++r)
    widen_to_q8_0(weight, base + static_cast<size_t>(r) * row_stride, wide.data() + r * nb, nb);
  table.mat_mat_q8_0(rows, n, wide.data(), static_cast<size_t>(nb) * sizeof(block_q8_0), a,
                     act_stride, tokens, y, y_stride);
}

}  // namespace

status mat_vec(quant_type weight, int64_t rows, int64_t n, const void* w, size_t row_stride,
               const void* a, float* y, isa level) noexcept {
  return mat_mat(weight, rows, n, w, row_stride, a, 0, 1, y, rows, level);
}

status mat_mat(quant_type weight, int64_t rows, int64_t n, const void* w, size_t row_stride,
               const void* a, size_t act_stride, int64_t tokens, float* y, int64_t y_stride,
               isa level) noexcept {
  detail::dot_fn fn = nullptr;
  if (status s = resolve_dot(weight, n, level, &fn); s != status::ok) return s;
  if (rows < 0 || tokens < 0 || (tokens > 1 && y_stride < rows)) return status::bad_size;
  if (rows == 0 || tokens == 0) return status::ok;
  if (y == nullptr || (n > 0 && (w == nullptr || a == nullptr))) return status::null_pointer;
  const auto* base = static_cast<const unsigned char*>(w);
  const auto* act = static_cast<const unsigned char*>(a);
  if (n == 0) {
    for (int64_t t = 0; t < tokens; ++t) std::fill(y + t * y_stride, y + t * y_stride + rows, 0.0f);
    return status::ok;
  }
  const detail::kernel_table& table = *table_for(level);
  // Q5_0 and Q4_0 rows are Q8_0 rows of smaller integers, and ggml's SIMD dots of the three sum
  // alike (the 32 products of a block in mul_sum_i8_pairs_float's lanes, then one FMA by
  // d_w·d_a per block; troupe's tiles reproduce them bit for bit): for several tokens the rows
  // may be widened once to Q8_0 blocks and go through the Q8_0 tiles, which unpack nothing,
  // where the level's table says that is faster than its own tiles.
  if (((weight == quant_type::q5_0 && table.widen_q5_0) ||
       (weight == quant_type::q4_0 && table.widen_q4_0)) &&
      tokens >= widen_tokens && table.mat_mat_q8_0 != nullptr) {
    mat_mat_widened(table, weight, rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
    return status::ok;
  }
  const detail::mat_mat_fn multi = multi_for(table, weight);
  if (multi != nullptr) {
    multi(rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
    return status::ok;
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const unsigned char* at = act + static_cast<size_t>(t) * act_stride;
    for (int64_t r = 0; r < rows; ++r) {
      y[t * y_stride + r] = fn(n, base + static_cast<size_t>(r) * row_stride, at);
    }
  }
  return status::ok;
}

namespace {

/// Index of `weight` in kernel_table::tiled_k; -1 for the types ggml does not tile.
int tiled_index(quant_type weight) noexcept {
  switch (weight) {
    case quant_type::q2_k: return 0;
    case quant_type::q3_k: return 1;
    case quant_type::q4_k: return 2;
    case quant_type::q5_k: return 3;
    case quant_type::q6_k: return 4;
    case quant_type::iq4_xs: return 5;
    default: return -1;
  }
}

}  // namespace

bool ggml_batched_order(quant_type weight, int64_t tokens) noexcept {
  if (weight == quant_type::iq4_nl) return tokens >= 2;  // llamafile_sgemm: n >= 2
  return tiled_index(weight) >= 0 && tokens >= 8;          // ggml_tiled_min_batch
}

status mat_mat_ggml_batched(quant_type weight, int64_t rows, int64_t n, const void* w,
                            size_t row_stride, const void* a, size_t act_stride, int64_t tokens,
                            float* y, int64_t y_stride, isa level) noexcept {
  const detail::kernel_table* table = table_for(level);
  const int k = tiled_index(weight);
  const bool tiled = table != nullptr && k >= 0 && table->tiled_k[k] != nullptr;
  const bool tinyblas =
      table != nullptr && weight == quant_type::iq4_nl && table->mat_mat_q8_0 != nullptr;
  if (!ggml_batched_order(weight, tokens) || (!tiled && !tinyblas))
    return mat_mat(weight, rows, n, w, row_stride, a, act_stride, tokens, y, y_stride, level);
  detail::dot_fn fn = nullptr;
  if (status s = resolve_dot(weight, n, level, &fn); s != status::ok) return s;
  if (rows < 0 || (tokens > 1 && y_stride < rows)) return status::bad_size;
  if (rows == 0) return status::ok;
  if (y == nullptr || (n > 0 && (w == nullptr || a == nullptr))) return status::null_pointer;
  if (n == 0) {
    for (int64_t t = 0; t < tokens; ++t) std::fill(y + t * y_stride, y + t * y_stride + rows, 0.0f);
    return status::ok;
  }
  if (tiled && table->tiled_k_lanes[k] != nullptr) {
    thread_local std::vector<unsigned char> lanes;
    lanes.resize(static_cast<size_t>(q8_k_lanes_bytes(n, tokens)));
    if (status s = pack_q8_k_lanes(a, act_stride, n, tokens, lanes.data()); s != status::ok)
      return s;
    table->tiled_k_lanes[k](rows, n, w, row_stride, lanes.data(), tokens, y, y_stride);
  } else if (tiled) {
    table->tiled_k[k](rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
  } else if (table->tinyblas_iq4_nl != nullptr) {  // tinyBLAS for iq4_nl: Q8_0's order
    table->tinyblas_iq4_nl(rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
  } else {
    mat_mat_widened(*table, weight, rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
  }
  return status::ok;
}

bool q8_k_lanes_available(quant_type weight, int64_t tokens, isa level) noexcept {
  const detail::kernel_table* table = table_for(level);
  const int k = tiled_index(weight);
  return table != nullptr && k >= 0 && table->tiled_k_lanes[k] != nullptr &&
         ggml_batched_order(weight, tokens);
}

int64_t q8_k_lanes_bytes(int64_t n, int64_t tokens) noexcept {
  if (n < 0 || n % qk_k != 0 || tokens < 0) return -1;
  const int64_t groups = (tokens + detail::lanes_tokens - 1) / detail::lanes_tokens;
  return groups * (n / qk_k) * static_cast<int64_t>(detail::lanes_block_bytes);
}

status pack_q8_k_lanes(const void* a, size_t act_stride, int64_t n, int64_t tokens,
                       void* out) noexcept {
  const int64_t bytes = q8_k_lanes_bytes(n, tokens);
  if (bytes < 0) return status::bad_size;
  if (bytes == 0) return status::ok;
  if (a == nullptr || out == nullptr) return status::null_pointer;
  constexpr int64_t L = detail::lanes_tokens;
  const int64_t nb = n / qk_k;
  auto* o = static_cast<unsigned char*>(out);
  std::memset(o, 0, static_cast<size_t>(bytes));
  for (int64_t t = 0; t < tokens; ++t) {
    const auto* row = reinterpret_cast<const block_q8_k*>(static_cast<const unsigned char*>(a) +
                                                          static_cast<size_t>(t) * act_stride);
    const int64_t lane = t % L;
    for (int64_t b = 0; b < nb; ++b) {
      unsigned char* blk = o + static_cast<size_t>((t / L) * nb + b) * detail::lanes_block_bytes;
      for (int k = 0; k < qk_k / 4; ++k)  // [dword k][lane][4 bytes]
        std::memcpy(blk + k * 64 + lane * 4, row[b].qs + 4 * k, 4);
      for (int p = 0; p < 8; ++p)
        std::memcpy(blk + detail::lanes_quants_bytes + p * 64 + lane * 4, &row[b].bsums[2 * p], 4);
      std::memcpy(blk + detail::lanes_quants_bytes + detail::lanes_bsums_bytes + lane * 4,
                  &row[b].d, 4);
    }
  }
  return status::ok;  // padding lanes: q, bsums and d 0
}

status mat_mat_ggml_batched_lanes(quant_type weight, int64_t rows, int64_t n, const void* w,
                                  size_t row_stride, const void* lanes, int64_t tokens, float* y,
                                  int64_t y_stride, isa level) noexcept {
  if (!q8_k_lanes_available(weight, tokens, level)) return status::unsupported_type;
  detail::dot_fn fn = nullptr;
  if (status s = resolve_dot(weight, n, level, &fn); s != status::ok) return s;
  if (rows < 0 || y_stride < rows) return status::bad_size;
  if (rows == 0) return status::ok;
  if (y == nullptr || (n > 0 && (w == nullptr || lanes == nullptr))) return status::null_pointer;
  if (n == 0) {
    for (int64_t t = 0; t < tokens; ++t) std::fill(y + t * y_stride, y + t * y_stride + rows, 0.0f);
    return status::ok;
  }
  table_for(level)->tiled_k_lanes[tiled_index(weight)](rows, n, w, row_stride, lanes, tokens, y,
                                                        y_stride);
  return status::ok;
}

}  // namespace troupe::kernels::cpu
