// AVX2 + FMA + F16C variants of the CPU quant kernels. Compiled with -mavx2 -mfma -mf16c; only
// reached through quant.cpp's dispatch after the CPU check, so the library still loads anywhere.

#include <immintrin.h>

#include <cstring>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

inline float hsum(__m256 x) {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline int hsum_i32(__m256i x) {
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
  r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, 0xB1));
  return _mm_cvtsi128_si32(r);
}

/// 16 bytes of packed nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31.
inline __m256i unpack_nibbles(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/// Sums of products of signed bytes, 8 int32 lanes (y must not hold -128 where x is negative).
inline __m256i dot_i8_pairs(__m256i x, __m256i y) {
  const __m256i ax = _mm256_sign_epi8(x, x);
  const __m256i sy = _mm256_sign_epi8(y, x);
  return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

/// A Q4_K / Q5_K block's 8 scales and 8 mins (q4_k_scale_min for j = 0..7) as int16: the
/// scales in the low 128 bits, the mins in the high 128. The 12 packed bytes are unpacked as
/// three 32-bit words (6 bits of bytes 0-3 and 4-7; bytes 8-11's nibbles with the top 2 bits of
/// bytes 0-7), the same values as the byte-by-byte q4_k_scale_min in a few integer operations.
inline __m256i q4_k_scales_mins(const uint8_t* packed) {
  uint32_t w[3];
  std::memcpy(w, packed, sizeof w);
  constexpr uint32_t low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, top2 = 0x03030303;
  const uint32_t sc_lo = w[0] & low6, m_lo = w[1] & low6;
  const uint32_t sc_hi = (w[2] & low4) | (((w[0] >> 6) & top2) << 4);
  const uint32_t m_hi = ((w[2] >> 4) & low4) | (((w[1] >> 6) & top2) << 4);
  return _mm256_cvtepu8_epi16(_mm_setr_epi32(static_cast<int>(sc_lo), static_cast<int>(sc_hi),
                                             static_cast<int>(m_lo), static_cast<int>(m_hi)));
}

/// The int16 scale k (0..7) of q4_k_scales_mins's scales `sc` (both halves holding the 8
/// scales) in all 16 int16 lanes.
inline __m256i q4_k_scale(__m256i sc, int k) {
  return _mm256_shuffle_epi8(sc, _mm256_set1_epi16(static_cast<short>(0x0101 * 2 * k + 0x0100)));
}

float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

inline __m256 load_f16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

inline __m256 load_bf16x8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <__m256 (*Load)(const uint16_t*), float (*Convert)(uint16_t)>
float dot_half(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(Load(x + i), _mm256_loadu_ps(y + i), acc0);
    acc1 = _mm256_fmadd_ps(Load(x + i + 8), _mm256_loadu_ps(y + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(Load(x + i), _mm256_loadu_ps(y + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += Convert(x[i]) * y[i];
  return s;
}


float dot_q8_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q8_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk8_0; ++i) {
    const __m256 d = _mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d));
    const __m256i p = dot_i8_pairs(load256(x[i].qs), load256(y[i].qs));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q4_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q4_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  const __m256i eight = _mm256_set1_epi8(8);
  for (int64_t i = 0; i < n / qk4_0; ++i) {
    const __m256 d = _mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d));
    const __m256i qx = _mm256_sub_epi8(unpack_nibbles(x[i].qs), eight);
    const __m256i p = dot_i8_pairs(qx, load256(y[i].qs));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q4_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q4_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < n / qk4_1; ++i) {
    const __m256 d = _mm256_set1_ps(fp16(x[i].d) * y[i].d);
    // Fused, as GCC contracts ggml's `summs += m·s` at -O2/-O3 (an explicit FMA keeps it so at
    // -O0 too, where GCC contracts nothing; the multi-row kernels fuse it the same way).
    summs = _mm_cvtss_f32(
        _mm_fmadd_ss(_mm_set_ss(fp16(x[i].m)), _mm_set_ss(y[i].s), _mm_set_ss(summs)));
    const __m256i p =
        _mm256_madd_epi16(_mm256_maddubs_epi16(unpack_nibbles(x[i].qs), load256(y[i].qs)), ones);
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc) + summs;
}

/// 32 bytes from the 32 bits at p: byte j is 0xFF when bit j is set, else 0.
inline __m256i bytes_from_bits(const uint8_t* p) {
  uint32_t bits;
  __builtin_memcpy(&bits, p, sizeof bits);
  // Byte j takes source byte j / 8, then keeps only its bit j % 8.
  const __m256i spread =
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)),
                          _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                             0x0202020202020202, 0x0303030303030303));
  const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

float dot_q5_0(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q5_0*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk5_0; ++i) {
    const __m256 d = _mm256_set1_ps(fp16(x[i].d) * fp16(y[i].d));
    // nibble + 16·bit − 16 as int8: the nibble when the bit is set, else the nibble | 0xF0.
    const __m256i high =
        _mm256_andnot_si256(bytes_from_bits(x[i].qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    const __m256i qx = _mm256_or_si256(unpack_nibbles(x[i].qs), high);
    const __m256i p = dot_i8_pairs(qx, load256(y[i].qs));
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float dot_q5_1(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q5_1*>(w);
  const auto* y = static_cast<const block_q8_1*>(a);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t i = 0; i < n / qk5_1; ++i) {
    const __m256 d = _mm256_set1_ps(fp16(x[i].d) * y[i].d);
    summs = _mm_cvtss_f32(  // fused, as in dot_q4_1
        _mm_fmadd_ss(_mm_set_ss(fp16(x[i].m)), _mm_set_ss(y[i].s), _mm_set_ss(summs)));
    const __m256i high = _mm256_and_si256(bytes_from_bits(x[i].qh), _mm256_set1_epi8(0x10));
    const __m256i qx = _mm256_or_si256(unpack_nibbles(x[i].qs), high);
    const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qx, load256(y[i].qs)), ones);
    acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc) + summs;
}

float dot_q4_k(int64_t n, const void* w, const void* a) {
  // ggml's AVX2 arithmetic, lane for lane: the scaled quants in 8 int32 lanes times d, and the
  // mins against the 8 sub-block sums of the activations in 4 int32 lanes (pairs of sub-blocks)
  // times -dmin, each in its own fp32 accumulator, added at the end.
  const auto* x = static_cast<const block_q4_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const __m256i sm = q4_k_scales_mins(x[i].scales);
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    // Σ of each sub-block's 32 activations (int16, as two of the block's 16-element sums).
    const __m256i bsums = load256(y[i].bsums);
    const __m128i sub_sums =
        _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
    const __m128i mins = _mm256_extracti128_si256(sm, 1);
    const float dmin = -y[i].d * fp16(x[i].dmin);
    acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins, sub_sums)), acc_m);
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i q4 = load256(x[i].qs + 32 * j);
      const __m256i lo = _mm256_and_si256(q4, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
      __m256i p_lo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * j));
      __m256i p_hi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * j + 32));
      p_lo = _mm256_madd_epi16(p_lo, q4_k_scale(sc, 2 * j));
      p_hi = _mm256_madd_epi16(p_hi, q4_k_scale(sc, 2 * j + 1));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    const float d = y[i].d * fp16(x[i].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
  acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
  return hsum(acc) + _mm_cvtss_f32(acc_m);
}

float dot_q5_k(int64_t n, const void* w, const void* a) {
  // ggml's AVX2 arithmetic: the scaled quants in 8 int32 lanes times d; the mins summed as one
  // integer per block, times -dmin into a scalar sum (fused, as GCC contracts ggml's).
  const auto* x = static_cast<const block_q5_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const __m256i sm = q4_k_scales_mins(x[i].scales);
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m256i bsums = load256(y[i].bsums);
    const __m128i sub_sums =
        _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
    const __m128i mins = _mm256_extracti128_si256(sm, 1);
    __m128i prod = _mm_madd_epi16(mins, sub_sums);
    prod = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
    const int mins_sum = _mm_cvtsi128_si32(_mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0x55)));
    const float dmin = -y[i].d * fp16(x[i].dmin);
    summs = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(dmin), _mm_set_ss(static_cast<float>(mins_sum)),
                                       _mm_set_ss(summs)));
    const __m256i hbits = load256(x[i].qh);
    __m256i sumi = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i q5 = load256(x[i].qs + 32 * j);
      // Fifth bits 2j and 2j+1 of each qh byte, moved to 16 (bytewise: masked before the shift).
      const __m256i h_lo =
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4);
      const __m256i h_hi =
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4);
      const __m256i lo = _mm256_add_epi8(_mm256_and_si256(q5, low4), h_lo);
      const __m256i hi = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q5, 4), low4), h_hi);
      __m256i p_lo = _mm256_maddubs_epi16(lo, load256(y[i].qs + 64 * j));
      __m256i p_hi = _mm256_maddubs_epi16(hi, load256(y[i].qs + 64 * j + 32));
      p_lo = _mm256_madd_epi16(p_lo, q4_k_scale(sc, 2 * j));
      p_hi = _mm256_madd_epi16(p_hi, q4_k_scale(sc, 2 * j + 1));
      sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p_lo, p_hi));
    }
    const float d = y[i].d * fp16(x[i].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc) + summs;
}

/// The int16 scale 2c of s in the low 128-bit half's 8 lanes and scale 2c+1 in the high half's
/// (s holds 8 int16 scales in each half): scale_pairs's scales, the same for every token.
inline __m256i scale_pick(__m256i s, int c) {
  const __m256i pick = _mm256_set_m128i(_mm_set1_epi16(static_cast<short>(0x0302 + 0x0404 * c)),
                                        _mm_set1_epi16(static_cast<short>(0x0100 + 0x0404 * c)));
  return _mm256_shuffle_epi8(s, pick);
}

/// madd of int16 pairs with a scale per 128-bit half: lanes 0-3 take the int16 scale 2c of s,
/// lanes 4-7 the scale 2c+1 (s holds 8 int16 scales in each half).
inline __m256i scale_pairs(__m256i p16, __m256i s, int c) {
  return _mm256_madd_epi16(p16, scale_pick(s, c));
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q6_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i two = _mm256_set1_epi8(0x03);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    __m256i sumi = _mm256_setzero_si256();
    // The quants are stored +32: per lane pair of 16-element groups, 32·Σ scale·(their sum),
    // subtracted lane by lane as ggml's AVX2 kernel does.
    const __m256i scales16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales)));
    const __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(load256(y[i].bsums), scales16), 5);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const __m256i sc = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const int8_t* q8 = y[i].qs + 128 * h;
      const __m256i l0 = load256(ql);
      const __m256i l1 = load256(ql + 32);
      const __m256i hb = load256(x[i].qh + 32 * h);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4),
                             _mm256_slli_epi16(_mm256_and_si256(hb, two), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), two), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), two), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), two), 4));
      for (int c = 0; c < 4; ++c) {
        const __m256i p = _mm256_maddubs_epi16(q[c], load256(q8 + 32 * c));
        sumi = _mm256_add_epi32(sumi, scale_pairs(p, sc, c));
      }
    }
    sumi = _mm256_sub_epi32(sumi, corr);
    const float d = y[i].d * fp16(x[i].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

float dot_q2_k(int64_t n, const void* w, const void* a) {
  // ggml's AVX2 order: per block, the mins against the 16 bsums (lane k: sub-blocks 2k, 2k+1)
  // times -dmin into the accumulator, then the scaled quants (lane m: elements 4m..4m+3 of each
  // 32-element run) times d.
  const auto* x = static_cast<const block_q2_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const float d = y[i].d * fp16(x[i].d);
    const float dmin = -y[i].d * fp16(x[i].dmin);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
    const __m256i prod = _mm256_madd_epi16(mins, load256(y[i].bsums));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc);
    const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i s = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                               : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const __m256i bits = load256(x[i].qs + 32 * h);
      const int8_t* q8 = y[i].qs + 128 * h;
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3);
        const __m256i p16 = _mm256_maddubs_epi16(q, load256(q8 + 32 * c));
        sumi = _mm256_add_epi32(sumi, scale_pairs(p16, s, c));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

/// A Q3_K block's 16 scales (q3_k_scales: 6 bits, minus 32) as int8 lanes, from the 12 packed
/// bytes as three 32-bit words: the low nibbles of bytes 0-7 then their high nibbles, each with
/// two bits of bytes 8-11 (shifted by 0, 2, 4, 6 for scales 0-3, 4-7, 8-11, 12-15) on top.
inline __m128i q3_k_scales16(const uint8_t* packed) {
  uint32_t w[3];
  std::memcpy(w, packed, sizeof w);
  constexpr uint32_t low4 = 0x0F0F0F0F, low2 = 0x03030303;
  const auto scales4 = [&](uint32_t low, int shift) {
    return static_cast<int>((low & low4) | (((w[2] >> shift) & low2) << 4));
  };
  const __m128i biased = _mm_setr_epi32(scales4(w[0], 0), scales4(w[1], 2), scales4(w[0] >> 4, 4),
                                        scales4(w[1] >> 4, 6));
  return _mm_sub_epi8(biased, _mm_set1_epi8(32));
}

float dot_q3_k(int64_t n, const void* w, const void* a) {
  // As dot_q2_k without the mins: quants in -4..3 (two low bits, minus 4 where the high bit is
  // clear), signed 6-bit scales.
  const auto* x = static_cast<const block_q3_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i four = _mm256_set1_epi8(4);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    const __m256i scales16 = _mm256_cvtepi8_epi16(q3_k_scales16(x[i].scales));
    const __m256i hbits = load256(x[i].hmask);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i s = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                               : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const __m256i bits = load256(x[i].qs + 32 * h);
      const int8_t* q8 = y[i].qs + 128 * h;
      for (int c = 0; c < 4; ++c) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + c)));
        const __m256i clear =
            _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), _mm256_setzero_si256());
        const __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3),
                                          _mm256_and_si256(clear, four));
        const __m256i q8c = load256(q8 + 32 * c);
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(q8c, q));
        sumi = _mm256_add_epi32(sumi, scale_pairs(p16, s, c));
      }
    }
    const float d = y[i].d * fp16(x[i].d);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

/// 16 bytes of IQ4 nibbles -> their 32 values: low nibbles in bytes 0..15, high in 16..31.
inline __m256i iq4_lookup(const uint8_t* p) {
  const __m128i values = _mm_loadu_si128(reinterpret_cast<const __m128i*>(iq4_values));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_set_m128i(_mm_shuffle_epi8(values, _mm_and_si128(_mm_srli_epi16(b, 4), m4)),
                          _mm_shuffle_epi8(values, _mm_and_si128(b, m4)));
}

float dot_iq4_nl(int64_t n, const void* w, const void* a) {
  // ggml's AVX2 order: blocks in pairs, even and odd ones in two accumulators added before the
  // horizontal sum; an odd last block after it, multiplied and added unfused (as ggml's binary
  // does it: vmulss, vaddss).
  const auto* x = static_cast<const block_iq4_nl*>(w);
  const auto* y = static_cast<const block_q8_0*>(a);
  const int64_t nb = n / qk4_nl;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t ib = 0;
  for (; ib + 1 < nb; ib += 2) {
    const __m256i p0 = dot_i8_pairs(iq4_lookup(x[ib].qs), load256(y[ib].qs));
    const __m256i p1 = dot_i8_pairs(iq4_lookup(x[ib + 1].qs), load256(y[ib + 1].qs));
    acc0 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(y[ib].d) * fp16(x[ib].d)), _mm256_cvtepi32_ps(p0),
                           acc0);
    acc1 = _mm256_fmadd_ps(_mm256_set1_ps(fp16(y[ib + 1].d) * fp16(x[ib + 1].d)),
                           _mm256_cvtepi32_ps(p1), acc1);
  }
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; ib < nb; ++ib) {
    const int sumi = hsum_i32(dot_i8_pairs(iq4_lookup(x[ib].qs), load256(y[ib].qs)));
    float p = (fp16(y[ib].d) * fp16(x[ib].d)) * static_cast<float>(sumi);
    __asm__("" : "+x"(p));  // rounded before the add, as ggml's is: GCC must not fuse the two
    s += p;
  }
  return s;
}

float dot_iq4_xs(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_iq4_xs*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    __m256i sumi = _mm256_setzero_si256();
    for (int s = 0; s < qk_k / 32; ++s) {
      const __m256i q = iq4_lookup(x[i].qs + 16 * s);
      const __m256i q8 = load256(y[i].qs + 32 * s);
      const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(q8, q));
      const __m256i ls = _mm256_set1_epi16(static_cast<short>(iq4_xs_scale(x[i], s)));
      sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, ls));
    }
    const float d = fp16(x[i].d) * y[i].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// ---- several rows and tokens per pass (bit-identical to the dot products above) ---------------
// Per (row, token) these do exactly what dot_q4_1 / dot_q8_0 do, block after block in the same
// order; what they share is the activation loads and the block scales' conversion, and the
// independent accumulators of R rows × T tokens hide the latency of each one's FMA chain. The
// R·T block scales are computed in one vector, stored, and broadcast back from memory one per
// (row, token): a broadcast load uses a load port, where picking the lane out of the register
// (vpermps) took a shuffle slot from the integer multiplies (prefill +16 % on AMD Zen 3).

inline uint32_t load_u32(const unsigned char* p) {
  uint32_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

inline uint16_t load_u16(const unsigned char* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

inline float lane_value(__m256 x, int lane) {
  alignas(32) float v[8];
  _mm256_store_ps(v, x);
  return v[lane];
}

// Block layouts the tiles read. Unsigned (Q4_1, Q5_1: [fp16 d][fp16 m] first, Q8_1 activations)
// and signed (Q8_0, Q5_0, Q4_0: [fp16 d] first, Q8_0 activations) weights; `values` gives a
// block's 32 quants as bytes in element order, exactly as the one-row dot products form them.
struct q4_1_layout {
  static constexpr size_t bytes = sizeof(block_q4_1);
  static __m256i values(const unsigned char* b) { return unpack_nibbles(b + 4); }
};
struct q5_1_layout {
  static constexpr size_t bytes = sizeof(block_q5_1);
  static __m256i values(const unsigned char* b) {
    return _mm256_or_si256(unpack_nibbles(b + 8),
                           _mm256_and_si256(bytes_from_bits(b + 4), _mm256_set1_epi8(0x10)));
  }
};
struct q8_0_layout {
  static constexpr size_t bytes = sizeof(block_q8_0);
  static __m256i values(const unsigned char* b) { return load256(b + 2); }
};
struct q4_0_layout {
  static constexpr size_t bytes = sizeof(block_q4_0);
  static __m256i values(const unsigned char* b) {
    return _mm256_sub_epi8(unpack_nibbles(b + 2), _mm256_set1_epi8(8));
  }
};
struct q5_0_layout {
  static constexpr size_t bytes = sizeof(block_q5_0);
  static __m256i values(const unsigned char* b) {
    return _mm256_or_si256(
        unpack_nibbles(b + 6),
        _mm256_andnot_si256(bytes_from_bits(b + 2), _mm256_set1_epi8(static_cast<char>(0xF0))));
  }
};

/// R rows (1..4) of unsigned-quant weights (Q4_1 or Q5_1, by L) × T Q8_1 tokens over nb blocks:
/// y[t·ys + r] = dot_q4_1 / dot_q5_1 (row r, token t).
template <class L, int R, int T>
void tile_unsigned(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a, size_t as,
                   float* y, int64_t ys) {
  static_assert(R >= 1 && R <= 4 && T >= 1, "tile_unsigned takes 1-4 rows");
  static_assert(sizeof(block_q8_1) == 40, "block offsets below");
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][T];
  __m256 summs[T];  // lane 2r+1: Σ m·s of row r (fused, as in dot_q4_1 / dot_q5_1)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    summs[t] = _mm256_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][t] = _mm256_setzero_ps();
  }
  const size_t chunk = prefetch_chunk<R>(ws, nb);
  for (int64_t i = 0; i < nb; ++i) {
    const unsigned char* wb = w + i * L::bytes;
    const unsigned char* ab = a + i * 40;
    prefetch_next_tile<R>(w, ws, i, chunk);
    // [d0, m0, d1, m1, ...]: each row's fp16 (d, m) pair as one 32-bit word.
    const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32(
        static_cast<int>(load_u32(wb)), R > 1 ? static_cast<int>(load_u32(wb + ws)) : 0,
        R > 2 ? static_cast<int>(load_u32(wb + 2 * ws)) : 0,
        R > 3 ? static_cast<int>(load_u32(wb + 3 * ws)) : 0));
    alignas(32) float dd[T][8];  // lane 2r: d_w·d_a of row r, broadcast from memory below
    __m256i qa[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      // [d_a, s_a, d_a, s_a, ...]
      const __m256 ds =
          _mm256_castpd_ps(_mm256_broadcast_sd(reinterpret_cast<const double*>(ab + t * as)));
      _mm256_store_ps(dd[t], _mm256_mul_ps(dm, ds));
      summs[t] = _mm256_fmadd_ps(dm, ds, summs[t]);  // lane 2r+1: m_w·s_a + summs
      qa[t] = load256(ab + t * as + 8);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i qw = L::values(wb + r * ws);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qa[t]), ones);
        acc[r][t] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[t][2 * r]), _mm256_cvtepi32_ps(p), acc[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * ys + r] = hsum(acc[r][t]) + lane_value(summs[t], 2 * r + 1);
}

/// R rows (1..4) of signed-quant weights (Q8_0, Q5_0 or Q4_0, by L) × T Q8_0 tokens over nb
/// blocks: y[t·ys + r] = dot_q8_0 / dot_q5_0 / dot_q4_0 (row r, token t).
template <class L, int R, int T>
void tile_signed(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a, size_t as,
                 float* y, int64_t ys) {
  static_assert(R >= 1 && R <= 4 && T >= 1, "tile_signed takes 1-4 rows");
  static_assert(sizeof(block_q8_0) == 34, "activation block offsets below");
  __m256 acc[R][T];
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r][t] = _mm256_setzero_ps();
  const size_t chunk = prefetch_chunk<R>(ws, nb);
  for (int64_t i = 0; i < nb; ++i) {
    const unsigned char* wb = w + i * L::bytes;
    const unsigned char* ab = a + i * 34;
    prefetch_next_tile<R>(w, ws, i, chunk);
    const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16(
        static_cast<short>(load_u16(wb)), R > 1 ? static_cast<short>(load_u16(wb + ws)) : 0,
        R > 2 ? static_cast<short>(load_u16(wb + 2 * ws)) : 0,
        R > 3 ? static_cast<short>(load_u16(wb + 3 * ws)) : 0, 0, 0, 0, 0));
    alignas(16) float dd[T][4];  // lane r: d_w·d_a of row r, broadcast from memory below
    __m256i qa[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      _mm_store_ps(dd[t], _mm_mul_ps(dw, _mm_set1_ps(fp16(load_u16(ab + t * as)))));
      qa[t] = load256(ab + t * as + 2);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i qw = L::values(wb + r * ws);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p = dot_i8_pairs(qw, qa[t]);
        acc[r][t] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(&dd[t][r]), _mm256_cvtepi32_ps(p), acc[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) y[t * ys + r] = hsum(acc[r][t]);
}

/// R rows (1..2) of IQ4_NL weights × T Q8_0 tokens over nb blocks: y[t·ys + r] =
/// dot_iq4_nl(row r, token t) in its order (even and odd blocks in two accumulators added
/// before the horizontal sum, an odd last block after it, unfused); each block's 32 values are
/// looked up once for the T tokens.
template <int R, int T>
void tile_iq4_nl(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a, size_t as,
                 float* y, int64_t ys) {
  static_assert(R >= 1 && R <= 2 && T >= 1, "tile_iq4_nl takes 1-2 rows");
  constexpr size_t wb_bytes = sizeof(block_iq4_nl), ab_bytes = sizeof(block_q8_0);
  __m256 acc0[R][T], acc1[R][T];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) acc0[r][t] = acc1[r][t] = _mm256_setzero_ps();
  // Block i of every row times every token, into acc.
  auto block = [&](int64_t i, __m256(&acc)[R][T]) __attribute__((always_inline)) {
    const unsigned char* wb = w + i * wb_bytes;
    const unsigned char* ab = a + i * ab_bytes;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256i qw = iq4_lookup(wb + r * ws + 2);
      const float dw = fp16(load_u16(wb + r * ws));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p = dot_i8_pairs(qw, load256(ab + t * as + 2));
        acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(fp16(load_u16(ab + t * as)) * dw),
                                    _mm256_cvtepi32_ps(p), acc[r][t]);
      }
    }
  };
  int64_t i = 0;
  const size_t chunk = prefetch_chunk<R>(ws, nb / 2);
  for (; i + 1 < nb; i += 2) {
    prefetch_next_tile<R>(w, ws, i / 2, chunk);
    block(i, acc0);
    block(i + 1, acc1);
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      float sum = hsum(_mm256_add_ps(acc0[r][t], acc1[r][t]));
      if (i < nb) {
        const unsigned char* wb = w + i * wb_bytes + r * ws;
        const unsigned char* ab = a + i * ab_bytes + t * as;
        const int sumi = hsum_i32(dot_i8_pairs(iq4_lookup(wb + 2), load256(ab + 2)));
        float p = (fp16(load_u16(ab)) * fp16(load_u16(wb))) * static_cast<float>(sumi);
        __asm__("" : "+x"(p));  // rounded before the add, as in dot_iq4_nl
        sum += p;
      }
      y[t * ys + r] = sum;
    }
}

struct iq4_nl_tile {
  template <int R, int T>
  struct of {
    static void run(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a,
                    size_t as, float* y, int64_t ys) {
      tile_iq4_nl<R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

template <class L>
struct unsigned_tile {
  template <int R, int T>
  struct of {
    static void run(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a,
                    size_t as, float* y, int64_t ys) {
      tile_unsigned<L, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

template <class L>
struct signed_tile {
  template <int R, int T>
  struct of {
    static void run(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a,
                    size_t as, float* y, int64_t ys) {
      tile_signed<L, R, T>(nb, w, ws, a, as, y, ys);
    }
  };
};

void mat_mat_q4_1(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                  int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<unsigned_tile<q4_1_layout>::of, 4, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

void mat_mat_q8_0(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                  int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<signed_tile<q8_0_layout>::of, 4, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

void mat_mat_q5_0(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                  int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<signed_tile<q5_0_layout>::of, 4, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

void mat_mat_q4_0(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                  int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<signed_tile<q4_0_layout>::of, 4, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

/// ggml's tiled K-quant matmul (ggml-cpu/tiled, AVX-512 VNNI microkernel) per 256-element
/// block: the block's exact integer sums s1 = Σ scale·(quants·activations) and s2 = Σ min·bsums,
/// then f = (float)s1·d_w, f -= d_min·(float)s2 fused, out += f·d_a fused (as GCC compiled it).
template <bool HasMin>
inline float tiled_epilogue(int32_t s1, int32_t s2, float d_w, float d_min, float d_a, float out) {
  float f = static_cast<float>(s1) * d_w;
  __asm__("" : "+x"(f));  // rounded, as the kernel's vmulps
  if constexpr (HasMin)
    f = _mm_cvtss_f32(
        _mm_fnmadd_ss(_mm_set_ss(d_min), _mm_set_ss(static_cast<float>(s2)), _mm_set_ss(f)));
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(f), _mm_set_ss(d_a), _mm_set_ss(out)));
}

/// Σ of the 4 int32 lanes (exact, wrapping as the kernels' adds do).
inline int32_t hsum_i32_4(__m128i x) {
  x = _mm_add_epi32(x, _mm_unpackhi_epi64(x, x));
  return _mm_cvtsi128_si32(_mm_add_epi32(x, _mm_shuffle_epi32(x, 0x55)));
}

/// One Q4_K row × T Q8_K tokens: y[t·ys] = dot_q4_k(row, token t), the same arithmetic per
/// token; the row's scales, mins and nibbles are decoded once for all T tokens. With Vnni, each
/// half's scale multiply-add is one VPDPWSSD (AVX512-VNNI on 256 bits): the same exact int32
/// sums, so the same results bit for bit. Always inlined into q4_k_row or q4_k_row_vnni, which
/// give it their target: only the latter's includes VNNI.
template <int T, bool Tiled, bool Vnni>
[[gnu::always_inline]] inline void q4_k_row_body(int64_t nb, const block_q4_k* x,
                                                 const unsigned char* a, size_t as, float* y,
                                                 int64_t ys) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m256 acc[T];
  __m128 acc_m[T];
  float tiled[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    acc_m[t] = _mm_setzero_ps();
    tiled[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i sm = q4_k_scales_mins(x[i].scales);
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m128i mins = _mm256_extracti128_si256(sm, 1);
    const float xd = fp16(x[i].d), xdmin = fp16(x[i].dmin);
    const block_q8_k* yt[T];
    __m256i sumi[T];
    int32_t s2[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      const __m256i bsums = load256(yt[t]->bsums);
      const __m128i sub_sums =
          _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
      const __m128i prod = _mm_madd_epi16(mins, sub_sums);
      if constexpr (Tiled) {
        s2[t] = hsum_i32_4(prod);
      } else {
        const float dmin = -yt[t]->d * xdmin;
        acc_m[t] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[t]);
      }
      sumi[t] = _mm256_setzero_si256();
    }
    for (int j = 0; j < 4; ++j) {
      const __m256i q4 = load256(x[i].qs + 32 * j);
      const __m256i lo = _mm256_and_si256(q4, low4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4);
      const __m256i s_lo = q4_k_scale(sc, 2 * j), s_hi = q4_k_scale(sc, 2 * j + 1);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i q_lo = _mm256_maddubs_epi16(lo, load256(yt[t]->qs + 64 * j));
        const __m256i q_hi = _mm256_maddubs_epi16(hi, load256(yt[t]->qs + 64 * j + 32));
        if constexpr (Vnni) {
          sumi[t] = _mm256_dpwssd_epi32(_mm256_dpwssd_epi32(sumi[t], q_lo, s_lo), q_hi, s_hi);
        } else {
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(_mm256_madd_epi16(q_lo, s_lo),
                                                               _mm256_madd_epi16(q_hi, s_hi)));
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        tiled[t] = tiled_epilogue<true>(hsum_i32(sumi[t]), s2[t], xd, xdmin, yt[t]->d, tiled[t]);
      } else {
        const float d = yt[t]->d * xd;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    if constexpr (Tiled) {
      y[t * ys] = tiled[t];
    } else {
      __m128 am = _mm_add_ps(acc_m[t], _mm_movehl_ps(acc_m[t], acc_m[t]));
      am = _mm_add_ss(am, _mm_movehdup_ps(am));
      y[t * ys] = hsum(acc[t]) + _mm_cvtss_f32(am);
    }
  }
}

template <int T, bool Tiled>
void q4_k_row(int64_t nb, const block_q4_k* x, const unsigned char* a, size_t as, float* y,
              int64_t ys) {
  q4_k_row_body<T, Tiled, false>(nb, x, a, as, y, ys);
}

/// q4_k_row with VPDPWSSD, for use_avx512_vnni_kernels where the CPU has VNNI.
template <int T, bool Tiled>
__attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma,f16c"))) void q4_k_row_vnni(
    int64_t nb, const block_q4_k* x, const unsigned char* a, size_t as, float* y, int64_t ys) {
  q4_k_row_body<T, Tiled, true>(nb, x, a, as, y, ys);
}

/// One Q5_K row × T Q8_K tokens: y[t·ys] = dot_q5_k(row, token t), as q4_k_row.
template <int T, bool Tiled>
void q5_k_row(int64_t nb, const block_q5_k* x, const unsigned char* a, size_t as, float* y,
              int64_t ys) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i one = _mm256_set1_epi8(1);
  __m256 acc[T];
  float summs[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    summs[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i sm = q4_k_scales_mins(x[i].scales);
    const __m256i sc = _mm256_permute2x128_si256(sm, sm, 0x00);
    const __m128i mins = _mm256_extracti128_si256(sm, 1);
    const float xd = fp16(x[i].d), xdmin = fp16(x[i].dmin);
    const block_q8_k* yt[T];
    __m256i sumi[T];
    int32_t s2[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      const __m256i bsums = load256(yt[t]->bsums);
      const __m128i sub_sums =
          _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
      __m128i prod = _mm_madd_epi16(mins, sub_sums);
      prod = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
      const int mins_sum = _mm_cvtsi128_si32(_mm_add_epi32(prod, _mm_shuffle_epi32(prod, 0x55)));
      if constexpr (Tiled) {
        s2[t] = mins_sum;
      } else {
        const float dmin = -yt[t]->d * xdmin;
        summs[t] = _mm_cvtss_f32(_mm_fmadd_ss(
            _mm_set_ss(dmin), _mm_set_ss(static_cast<float>(mins_sum)), _mm_set_ss(summs[t])));
      }
      sumi[t] = _mm256_setzero_si256();
    }
    const __m256i hbits = load256(x[i].qh);
    for (int j = 0; j < 4; ++j) {
      const __m256i q5 = load256(x[i].qs + 32 * j);
      const __m256i h_lo =
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one), 4);
      const __m256i h_hi =
          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one), 4);
      const __m256i lo = _mm256_add_epi8(_mm256_and_si256(q5, low4), h_lo);
      const __m256i hi = _mm256_add_epi8(_mm256_and_si256(_mm256_srli_epi16(q5, 4), low4), h_hi);
      const __m256i s_lo = q4_k_scale(sc, 2 * j), s_hi = q4_k_scale(sc, 2 * j + 1);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i p_lo =
            _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(yt[t]->qs + 64 * j)), s_lo);
        const __m256i p_hi =
            _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(yt[t]->qs + 64 * j + 32)), s_hi);
        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p_lo, p_hi));
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        summs[t] = tiled_epilogue<true>(hsum_i32(sumi[t]), s2[t], xd, xdmin, yt[t]->d, summs[t]);
      } else {
        const float d = yt[t]->d * xd;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) y[t * ys] = Tiled ? summs[t] : hsum(acc[t]) + summs[t];
}

/// One Q6_K row × T Q8_K tokens: y[t·ys] = dot_q6_k(row, token t), as q4_k_row shares the
/// decoding of the row. Each token's sum starts at -32·Σ scale·bsums (dot_q6_k subtracts the
/// same integer at the end: int32 sums are exact either way). With Vnni the scale multiply-add
/// is one VPDPWSSD (the same exact sums); inlined into q6_k_row or q6_k_row_vnni as q4_k_row_body.
template <int T, bool Tiled, bool Vnni>
[[gnu::always_inline]] inline void q6_k_row_body(int64_t nb, const block_q6_k* x,
                                                 const unsigned char* a, size_t as, float* y,
                                                 int64_t ys) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i two = _mm256_set1_epi8(0x03);
  __m256 acc[T];
  float tiled[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    tiled[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i scales16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales)));
    const block_q8_k* yt[T];
    __m256i sumi[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      sumi[t] = _mm256_sub_epi32(
          _mm256_setzero_si256(),
          _mm256_slli_epi32(_mm256_madd_epi16(load256(yt[t]->bsums), scales16), 5));
    }
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const __m256i sc = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                                : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const __m256i l0 = load256(ql);
      const __m256i l1 = load256(ql + 32);
      const __m256i hb = load256(x[i].qh + 32 * h);
      __m256i q[4];
      q[0] = _mm256_or_si256(_mm256_and_si256(l0, low4),
                             _mm256_slli_epi16(_mm256_and_si256(hb, two), 4));
      q[1] = _mm256_or_si256(_mm256_and_si256(l1, low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), two), 4));
      q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), two), 4));
      q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                             _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), two), 4));
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i s = scale_pick(sc, c);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_maddubs_epi16(q[c], load256(yt[t]->qs + 128 * h + 32 * c));
          if constexpr (Vnni)
            sumi[t] = _mm256_dpwssd_epi32(sumi[t], p, s);
          else
            sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p, s));
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        tiled[t] =
            tiled_epilogue<false>(hsum_i32(sumi[t]), 0, fp16(x[i].d), 0.0f, yt[t]->d, tiled[t]);
      } else {
        const float d = yt[t]->d * fp16(x[i].d);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) y[t * ys] = Tiled ? tiled[t] : hsum(acc[t]);
}

template <int T, bool Tiled>
void q6_k_row(int64_t nb, const block_q6_k* x, const unsigned char* a, size_t as, float* y,
              int64_t ys) {
  q6_k_row_body<T, Tiled, false>(nb, x, a, as, y, ys);
}

/// q6_k_row with VPDPWSSD, for use_avx512_vnni_kernels where the CPU has VNNI.
template <int T, bool Tiled>
__attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma,f16c"))) void q6_k_row_vnni(
    int64_t nb, const block_q6_k* x, const unsigned char* a, size_t as, float* y, int64_t ys) {
  q6_k_row_body<T, Tiled, true>(nb, x, a, as, y, ys);
}

/// One IQ4_XS row × T Q8_K tokens: y[t·ys] = dot_iq4_xs(row, token t); each sub-block's values
/// are looked up, and its scale decoded, once for the T tokens.
template <int T, bool Tiled>
void iq4_xs_row(int64_t nb, const block_iq4_xs* x, const unsigned char* a, size_t as, float* y,
                int64_t ys) {
  __m256 acc[T];
  float tiled[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    tiled[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const block_q8_k* yt[T];
    __m256i sumi[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      sumi[t] = _mm256_setzero_si256();
    }
    for (int s = 0; s < qk_k / 32; ++s) {
      const __m256i q = iq4_lookup(x[i].qs + 16 * s);
      const __m256i aq = _mm256_sign_epi8(q, q);
      const __m256i ls = _mm256_set1_epi16(static_cast<short>(iq4_xs_scale(x[i], s)));
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m256i q8 = load256(yt[t]->qs + 32 * s);
        const __m256i p16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(q8, q));
        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p16, ls));
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        tiled[t] =
            tiled_epilogue<false>(hsum_i32(sumi[t]), 0, fp16(x[i].d), 0.0f, yt[t]->d, tiled[t]);
      } else {
        const float d = fp16(x[i].d) * yt[t]->d;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) y[t * ys] = Tiled ? tiled[t] : hsum(acc[t]);
}

/// One Q2_K row × T Q8_K tokens: y[t·ys] = dot_q2_k(row, token t), the row decoded once.
template <int T, bool Tiled>
void q2_k_row(int64_t nb, const block_q2_k* x, const unsigned char* a, size_t as, float* y,
              int64_t ys) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m256 acc[T];
  float tiled[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    tiled[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const float xd = fp16(x[i].d), xdmin = fp16(x[i].dmin);
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), m4));
    const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, m4));
    const block_q8_k* yt[T];
    __m256i sumi[T];
    int32_t s2[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      const __m256i prod = _mm256_madd_epi16(mins, load256(yt[t]->bsums));
      if constexpr (Tiled) {
        s2[t] = hsum_i32(prod);
      } else {
        const float dmin = -yt[t]->d * xdmin;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(prod), acc[t]);
      }
      sumi[t] = _mm256_setzero_si256();
    }
    for (int h = 0; h < 2; ++h) {
      const __m256i s = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                               : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const __m256i bits = load256(x[i].qs + 32 * h);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3);
        const __m256i picked = scale_pick(s, c);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i p16 = _mm256_maddubs_epi16(q, load256(yt[t]->qs + 128 * h + 32 * c));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p16, picked));
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        tiled[t] = tiled_epilogue<true>(hsum_i32(sumi[t]), s2[t], xd, xdmin, yt[t]->d, tiled[t]);
      } else {
        const float d = yt[t]->d * xd;
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) y[t * ys] = Tiled ? tiled[t] : hsum(acc[t]);
}

/// One Q3_K row × T Q8_K tokens: y[t·ys] = dot_q3_k(row, token t), the row decoded once.
template <int T, bool Tiled>
void q3_k_row(int64_t nb, const block_q3_k* x, const unsigned char* a, size_t as, float* y,
              int64_t ys) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i four = _mm256_set1_epi8(4);
  __m256 acc[T];
  float tiled[T];  // Tiled: the output, block by block (tiled_epilogue)
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    tiled[t] = 0.0f;
  }
  for (int64_t i = 0; i < nb; ++i) {
    const __m256i scales16 = _mm256_cvtepi8_epi16(q3_k_scales16(x[i].scales));
    const __m256i hbits = load256(x[i].hmask);
    const block_q8_k* yt[T];
    __m256i sumi[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      yt[t] = reinterpret_cast<const block_q8_k*>(a + t * as) + i;
      sumi[t] = _mm256_setzero_si256();
    }
    for (int h = 0; h < 2; ++h) {
      const __m256i s = h == 0 ? _mm256_permute2x128_si256(scales16, scales16, 0x00)
                               : _mm256_permute2x128_si256(scales16, scales16, 0x11);
      const __m256i bits = load256(x[i].qs + 32 * h);
#pragma GCC unroll 4
      for (int c = 0; c < 4; ++c) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << (4 * h + c)));
        const __m256i clear =
            _mm256_cmpeq_epi8(_mm256_and_si256(hbits, bit), _mm256_setzero_si256());
        const __m256i q = _mm256_sub_epi8(_mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3),
                                          _mm256_and_si256(clear, four));
        const __m256i aq = _mm256_sign_epi8(q, q);
        const __m256i picked = scale_pick(s, c);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t) {
          const __m256i q8c = load256(yt[t]->qs + 128 * h + 32 * c);
          const __m256i p16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(q8c, q));
          sumi[t] = _mm256_add_epi32(sumi[t], _mm256_madd_epi16(p16, picked));
        }
      }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      if constexpr (Tiled) {
        tiled[t] =
            tiled_epilogue<false>(hsum_i32(sumi[t]), 0, fp16(x[i].d), 0.0f, yt[t]->d, tiled[t]);
      } else {
        const float d = yt[t]->d * fp16(x[i].d);
        acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) y[t * ys] = Tiled ? tiled[t] : hsum(acc[t]);
}

// The row kernels of each K-quant (or IQ4_XS) type, for mat_mat_k: row<T, Tiled> is that
// type's *_row<T, Tiled>.
struct q2_k_rows {
  using block = block_q2_k;
  template <int T, bool Tiled> static constexpr auto row = q2_k_row<T, Tiled>;
};
struct q3_k_rows {
  using block = block_q3_k;
  template <int T, bool Tiled> static constexpr auto row = q3_k_row<T, Tiled>;
};
struct q4_k_rows {
  using block = block_q4_k;
  template <int T, bool Tiled> static constexpr auto row = q4_k_row<T, Tiled>;
};
struct q5_k_rows {
  using block = block_q5_k;
  template <int T, bool Tiled> static constexpr auto row = q5_k_row<T, Tiled>;
};
struct q4_k_rows_vnni {
  using block = block_q4_k;
  template <int T, bool Tiled> static constexpr auto row = q4_k_row_vnni<T, Tiled>;
};
struct q6_k_rows {
  using block = block_q6_k;
  template <int T, bool Tiled> static constexpr auto row = q6_k_row<T, Tiled>;
};
struct q6_k_rows_vnni {
  using block = block_q6_k;
  template <int T, bool Tiled> static constexpr auto row = q6_k_row_vnni<T, Tiled>;
};
struct iq4_xs_rows {
  using block = block_iq4_xs;
  template <int T, bool Tiled> static constexpr auto row = iq4_xs_row<T, Tiled>;
};

/// Every row of a K-quant (or IQ4_XS) matrix, tokens 4 at a time (the last 1-3 together), with
/// K's row kernels (the *_rows above): in vec_dot's order, or (Tiled) in the order of ggml's
/// tiled K-quant matmul (tiled_epilogue), which llama.cpp takes for 8 or more tokens.
template <class K, bool Tiled>
void mat_mat_k(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
               int64_t tokens, float* y, int64_t ys) {
  const int64_t nb = n / qk_k;
  const auto* wb = static_cast<const unsigned char*>(w);
  const auto* ab = static_cast<const unsigned char*>(a);
  for (int64_t t = 0; t < tokens; t += 4) {
    const int64_t left = tokens - t;
    const unsigned char* at = ab + static_cast<size_t>(t) * as;
    for (int64_t r = 0; r < rows; ++r) {
      const auto* x =
          reinterpret_cast<const typename K::block*>(wb + static_cast<size_t>(r) * ws);
      float* yo = y + t * ys + r;
      switch (left < 4 ? left : 4) {
        case 1:
          K::template row<1, Tiled>(nb, x, at, as, yo, ys);
          break;
        case 2:
          K::template row<2, Tiled>(nb, x, at, as, yo, ys);
          break;
        case 3:
          K::template row<3, Tiled>(nb, x, at, as, yo, ys);
          break;
        default:
          K::template row<4, Tiled>(nb, x, at, as, yo, ys);
      }
    }
  }
}


void mat_mat_iq4_nl(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                    int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<iq4_nl_tile::of, 2, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

void mat_mat_q5_1(int64_t rows, int64_t n, const void* w, size_t ws, const void* a, size_t as,
                  int64_t tokens, float* y, int64_t ys) {
  mat_mat_tiles<unsigned_tile<q5_1_layout>::of, 4, 2>(rows, n, w, ws, a, as, tokens, y, ys);
}

// ---- activation quantisers (bit-identical to the scalar ones) --------------------------------

/// Max |x| over 32 floats.
inline float amax32(const float* x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_andnot_ps(sign, _mm256_loadu_ps(x));
  for (int k = 8; k < 32; k += 8)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
  __m128 r = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  r = _mm_max_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

/// Rounds 32 floats · id to nearest-even int8 (|x·id| <= 127 by construction).
inline __m256i round32(const float* x, float id) {
  const __m256 v = _mm256_set1_ps(id);
  __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), v));
  __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), v));
  __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), v));
  __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), v));
  i0 = _mm256_packs_epi32(i0, i1);  // lane-interleaved; fixed up by the permute below
  i2 = _mm256_packs_epi32(i2, i3);
  i0 = _mm256_packs_epi16(i0, i2);
  return _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void quantize_q8_0(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t i = 0; i < n / qk8_0; ++i) {
    const float d = amax32(x + i * qk8_0) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), round32(x + i * qk8_0, id));
  }
}

void quantize_q8_1(const float* x, void* vy, int64_t n) {
  auto* y = static_cast<block_q8_1*>(vy);
  for (int64_t i = 0; i < n / qk8_1; ++i) {
    const float d = amax32(x + i * qk8_1) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256i q = round32(x + i * qk8_1, id);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[i].qs), q);
    const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
    const int sum = hsum_i32(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
    y[i].d = d;
    y[i].s = d * static_cast<float>(sum);
  }
}

void quantize_q8_k(const float* x, void* vy, int64_t n) { quantize_q8_k_ggml(x, vy, n); }

}  // namespace

void mat_mat_q4_k_vnni(int64_t rows, int64_t n, const void* w, size_t ws, const void* a,
                       size_t as, int64_t tokens, float* y, int64_t ys) {
  mat_mat_k<q4_k_rows_vnni, false>(rows, n, w, ws, a, as, tokens, y, ys);
}

void mat_mat_q6_k_vnni(int64_t rows, int64_t n, const void* w, size_t ws, const void* a,
                       size_t as, int64_t tokens, float* y, int64_t ys) {
  mat_mat_k<q6_k_rows_vnni, false>(rows, n, w, ws, a, as, tokens, y, ys);
}

const kernel_table& avx2_kernels() noexcept {
  static const kernel_table table{
      dot_f32,
      dot_half<load_f16x8, fp16>,
      dot_half<load_bf16x8, bf16_to_fp32>,
      dot_q8_0,
      dot_q4_0,
      dot_q4_1,
      dot_q4_k,
      dot_q6_k,
      quantize_q8_0,
      quantize_q8_1,
      quantize_q8_k,
      mat_mat_q8_0,
      mat_mat_q4_1,
      dot_q5_0,
      dot_q5_1,
      mat_mat_q5_0,
      mat_mat_q5_1,
      dot_q5_k,
      dot_q2_k,
      dot_q3_k,
      dot_iq4_nl,
      dot_iq4_xs,
      mat_mat_q4_0,
      mat_mat_k<q4_k_rows, false>,
      mat_mat_k<q6_k_rows, false>,
      mat_mat_k<q5_k_rows, false>,
      mat_mat_iq4_nl,
      mat_mat_k<iq4_xs_rows, false>,
      mat_mat_k<q2_k_rows, false>,
      mat_mat_k<q3_k_rows, false>,
      {mat_mat_k<q2_k_rows, true>, mat_mat_k<q3_k_rows, true>, mat_mat_k<q4_k_rows, true>,
       mat_mat_k<q5_k_rows, true>, mat_mat_k<q6_k_rows, true>, mat_mat_k<iq4_xs_rows, true>},
      {},
      true,
      true,
      nullptr};
  return table;
}

}  // namespace troupe::kernels::cpu::detail
