// AVX-512 VNNI kernels for llama.cpp's tiled K-quant order (mat_mat_ggml_batched from 8 tokens):
// Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS weights by Q8_K activations packed with the tokens
// in the lanes (pack_q8_k_lanes, quant_impl.hpp). Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c; reached only through avx512_kernels() after the
// CPU reported avx512vnni.
//
// What ggml's order fixes is only the float arithmetic per 256-element block: from the block's
// exact integer sums s1 = Σ scale·Σ value·activation and (types with mins) s2 = Σ min·bsum, it
// forms f = (float)s1·d_w, f -= d_min·(float)s2 fused, out += f·d_a fused. Integers are exact
// however they are summed, so here each zmm lane is one token: a weight row's block is unpacked
// once (values as bytes in element order, one scale and one min per 16 elements), and vpdpbusd
// multiplies four of its values, broadcast, by the same four activations of 16 tokens at once.
// vpdpbusd takes one side unsigned: the weights. Types with signed values (Q6_K, Q3_K, IQ4_XS)
// are unpacked as value + bias (32, 4, 128), and bias·Σ scale·bsum, which that adds to s1, comes
// off again through the activations' bsums (as ggml's own Q6_K dot does). The float steps then
// run on 16 tokens' lanes, each lane exactly the scalar operations above.
//
// Bounds: values + bias <= 255 and |q| <= 127, so a 16-element group's sum is below 2^19 and
// s1, with scales below 2^7, below 2^31 (as in ggml, whose int32 sums are the same integers).

// GCC 12 warns about the deliberate `__Y = __Y` self-initialisation inside its own AVX-512
// intrinsics headers (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store256(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }

/// One row's 256-element block as the lanes kernel reads it.
struct alignas(64) unpacked_block {
  uint8_t v[qk_k];    ///< value + bias of each element, element order (what meets activation e)
  int32_t scale[16];  ///< the integer scale of each 16 elements
  /// Per 16 elements: the integer min (types with mins), or bias·scale (signed types), as the
  /// factor of the activations' bsum in s2 (subtracted from s1 for the signed types).
  int16_t min[16];
  float d, dmin;  ///< the fp16 super-block scales, widened
};

// Unpackers: the same values, scales and mins as the dot products of quant_avx2.cpp (and
// ggml's) give each element. Unsigned types: bias 0; signed ones: see above.

/// Q4_K and Q5_K's 8 scales and mins, each for two 16-element groups.
inline void k_scales(const uint8_t* packed, unpacked_block& u) {
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    q4_k_scale_min(j, packed, &sc, &m);
    u.scale[2 * j] = u.scale[2 * j + 1] = sc;
    u.min[2 * j] = u.min[2 * j + 1] = m;
  }
}

void unpack(const block_q4_k& x, unpacked_block& u) {
  k_scales(x.scales, u);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {  // low nibbles: elements 64j.., high: 64j + 32..
    const __m256i q = load256(x.qs + 32 * j);
    store256(u.v + 64 * j, _mm256_and_si256(q, low4));
    store256(u.v + 64 * j + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
  }
  u.d = fp16(x.d);
  u.dmin = fp16(x.dmin);
}

void unpack(const block_q5_k& x, unpacked_block& u) {
  k_scales(x.scales, u);
  const __m256i low4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
  const __m256i hbits = load256(x.qh);  // bit 2j / 2j+1 of byte l: elements 64j + l / + 32 + l
  for (int j = 0; j < 4; ++j) {
    const __m256i q = load256(x.qs + 32 * j);
    const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), one);
    const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), one);
    store256(u.v + 64 * j, _mm256_or_si256(_mm256_and_si256(q, low4), _mm256_slli_epi16(h0, 4)));
    store256(u.v + 64 * j + 32, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), low4),
                                                _mm256_slli_epi16(h1, 4)));
  }
  u.d = fp16(x.d);
  u.dmin = fp16(x.dmin);
}

void unpack(const block_q6_k& x, unpacked_block& u) {  // values q − 32: bias 32
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = x.scales[g];
    u.min[g] = static_cast<int16_t>(32 * x.scales[g]);
  }
  const __m256i low4 = _mm256_set1_epi8(0x0F), two = _mm256_set1_epi8(0x03);
  for (int h = 0; h < 2; ++h) {
    const __m256i l0 = load256(x.ql + 64 * h), l1 = load256(x.ql + 64 * h + 32);
    const __m256i hb = load256(x.qh + 32 * h);
    const auto high = [&](int shift) {
      return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, shift), two), 4);
    };
    uint8_t* v = u.v + 128 * h;
    store256(v, _mm256_or_si256(_mm256_and_si256(l0, low4), high(0)));
    store256(v + 32, _mm256_or_si256(_mm256_and_si256(l1, low4), high(2)));
    store256(v + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), high(4)));
    store256(v + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), high(6)));
  }
  u.d = fp16(x.d);
  u.dmin = 0.0f;
}

void unpack(const block_q3_k& x, unpacked_block& u) {  // values low − 4·(high bit clear): bias 4
  int8_t sc[16];
  q3_k_scales(x.scales, sc);
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = sc[g];
    u.min[g] = static_cast<int16_t>(4 * sc[g]);
  }
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i hbits = load256(x.hmask);
  for (int h = 0; h < 2; ++h) {
    const __m256i bits = load256(x.qs + 32 * h);
    for (int c = 0; c < 4; ++c) {  // + 4 where the high bit is set
      const __m256i low = _mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3);
      const __m256i high = _mm256_slli_epi16(
          _mm256_and_si256(_mm256_srli_epi16(hbits, 4 * h + c), _mm256_set1_epi8(1)), 2);
      store256(u.v + 128 * h + 32 * c, _mm256_or_si256(low, high));
    }
  }
  u.d = fp16(x.d);
  u.dmin = 0.0f;
}

void unpack(const block_q2_k& x, unpacked_block& u) {
  for (int g = 0; g < 16; ++g) {
    u.scale[g] = x.scales[g] & 0x0F;
    u.min[g] = static_cast<int16_t>(x.scales[g] >> 4);
  }
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i bits = load256(x.qs + 32 * h);
    for (int c = 0; c < 4; ++c)
      store256(u.v + 128 * h + 32 * c, _mm256_and_si256(_mm256_srli_epi16(bits, 2 * c), m3));
  }
  u.d = fp16(x.d);
  u.dmin = fp16(x.dmin);
}

void unpack(const block_iq4_xs& x, unpacked_block& u) {  // kvalues_iq4nl + 128: bias 128
  alignas(16) static constexpr uint8_t biased[16] = {1,   24,  45,  63,  79,  93,  106, 118,
                                                     129, 141, 153, 166, 181, 197, 217, 241};
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(biased)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  for (int s = 0; s < 8; s += 2) {  // sub-block s: low nibbles of 16 bytes, then the high ones
    const int ls0 = iq4_xs_scale(x, s), ls1 = iq4_xs_scale(x, s + 1);
    u.scale[2 * s] = u.scale[2 * s + 1] = ls0;
    u.scale[2 * s + 2] = u.scale[2 * s + 3] = ls1;
    u.min[2 * s] = u.min[2 * s + 1] = static_cast<int16_t>(128 * ls0);
    u.min[2 * s + 2] = u.min[2 * s + 3] = static_cast<int16_t>(128 * ls1);
    const __m256i q = load256(x.qs + 16 * s);  // sub-blocks s and s + 1
    const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(q, low4));
    const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(q, 4), low4));
    // [s: lo 0-15 | s: hi 0-15 | s+1: lo | s+1: hi]
    store256(u.v + 32 * s, _mm256_permute2x128_si256(lo, hi, 0x20));
    store256(u.v + 32 * s + 32, _mm256_permute2x128_si256(lo, hi, 0x31));
  }
  u.d = fp16(x.d);
  u.dmin = 0.0f;
}

inline __m512i bcast32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm512_set1_epi32(v);
}

/// R rows (ub: R·nb unpacked blocks, row-major) × every token group of the packed activations:
/// y[t·ys + r] for t < tokens. G is the elements per scale group the type has (16 or 32; the
/// scales of a 32-element sub-block are repeated in both its 16-element halves).
template <int R, int G, bool HasMin>
void lanes_rows(int64_t nb, const unpacked_block* ub, const unsigned char* lanes, int64_t tokens,
                float* y, int64_t ys) {
  constexpr int dwords = G / 4;  // activation dword columns per scale group
  const int64_t groups = (tokens + lanes_tokens - 1) / lanes_tokens;
  for (int64_t tg = 0; tg < groups; ++tg) {
    __m512 out[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) out[r] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const unsigned char* pa = lanes + static_cast<size_t>(tg * nb + b) * lanes_block_bytes;
      __m512i s1[R], s2[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) s1[r] = s2[r] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int g = 0; g < qk_k / G; ++g) {
        __m512i dp[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) dp[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < dwords; ++k) {
          const __m512i act = _mm512_loadu_si512(pa + (g * dwords + k) * 64);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r)
            dp[r] = _mm512_dpbusd_epi32(dp[r], bcast32(ub[r * nb + b].v + g * G + 4 * k), act);
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          s1[r] = _mm512_add_epi32(
              s1[r],
              _mm512_mullo_epi32(dp[r], _mm512_set1_epi32(ub[r * nb + b].scale[g * G / 16])));
      }
#pragma GCC unroll 8
      for (int p = 0; p < 8; ++p) {
        const __m512i bs = _mm512_loadu_si512(pa + lanes_quants_bytes + p * 64);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r)
          s2[r] = _mm512_dpwssd_epi32(s2[r], bs, bcast32(ub[r * nb + b].min + 2 * p));
      }
      const __m512 da = _mm512_loadu_ps(pa + lanes_quants_bytes + lanes_bsums_bytes);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const unpacked_block& u = ub[r * nb + b];
        if constexpr (HasMin) {
          __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s1[r]), _mm512_set1_ps(u.d));
          f = _mm512_fnmadd_ps(_mm512_set1_ps(u.dmin), _mm512_cvtepi32_ps(s2[r]), f);
          out[r] = _mm512_fmadd_ps(f, da, out[r]);
        } else {  // s2 = bias·Σ scale·bsum
          const __m512i exact = _mm512_sub_epi32(s1[r], s2[r]);
          const __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(exact), _mm512_set1_ps(u.d));
          out[r] = _mm512_fmadd_ps(f, da, out[r]);
        }
      }
    }
    const int64_t t0 = tg * lanes_tokens;
    const int64_t valid = tokens - t0 < lanes_tokens ? tokens - t0 : lanes_tokens;
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      alignas(64) float lane[lanes_tokens];
      _mm512_store_ps(lane, out[r]);
      for (int64_t t = 0; t < valid; ++t) y[(t0 + t) * ys + r] = lane[t];
    }
  }
}

/// Every row of a Block matrix, R at a time (the rest one by one), against packed activations.
template <class Block, int G, bool HasMin>
void lanes_matrix(int64_t rows, int64_t n, const void* w, size_t ws, const void* lanes,
                  int64_t tokens, float* y, int64_t ys) {
  constexpr int R = 4;
  const int64_t nb = n / qk_k;
  thread_local std::vector<unpacked_block> ub;
  ub.resize(static_cast<size_t>(R * nb));
  const auto* wp = static_cast<const unsigned char*>(w);
  const auto* ap = static_cast<const unsigned char*>(lanes);
  int64_t r = 0;
  auto unpack_rows = [&](int64_t count) {
    for (int64_t i = 0; i < count; ++i) {
      const auto* x = reinterpret_cast<const Block*>(wp + static_cast<size_t>(r + i) * ws);
      for (int64_t b = 0; b < nb; ++b) {
        unpack(x[b], ub[static_cast<size_t>(i * nb + b)]);
      }
    }
  };
  for (; r + R <= rows; r += R) {
    unpack_rows(R);
    lanes_rows<R, G, HasMin>(nb, ub.data(), ap, tokens, y + r, ys);
  }
  for (; r < rows; ++r) {
    unpack_rows(1);
    lanes_rows<1, G, HasMin>(nb, ub.data(), ap, tokens, y + r, ys);
  }
}

}  // namespace

const lanes_fn* avx512_vnni_lanes_kernels() noexcept {
  static constexpr lanes_fn table[6] = {
      lanes_matrix<block_q2_k, 16, true>,  lanes_matrix<block_q3_k, 16, false>,
      lanes_matrix<block_q4_k, 32, true>,  lanes_matrix<block_q5_k, 32, true>,
      lanes_matrix<block_q6_k, 16, false>, lanes_matrix<block_iq4_xs, 32, false>};
  return table;
}

}  // namespace troupe::kernels::cpu::detail
