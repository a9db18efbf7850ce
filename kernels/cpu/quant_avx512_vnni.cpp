// AVX-512 VNNI multi-row kernels for Q4_1, Q5_1, Q8_0 and Q5_0 weights (the decode and prefill
// mat-muls of GGUF models). Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2
// -mfma -mf16c; reached only through avx512_kernels() after the CPU reported avx512vnni.
//
// Bit-identical to dot_q4_1 / dot_q5_1 / dot_q8_0 / dot_q5_0 of quant_avx2.cpp (and so to ggml's
// AVX2 vec_dot): each row keeps its own 8 fp32 lanes, each lane the same 4-product integer sum, scaled and
// accumulated block after block by the same FMA, and reduced by the same horizontal sum. What
// changes is only the packing: two rows share one zmm register (one row per 128-bit chunk pair),
// and vpdpbusd does maddubs + madd in one instruction (exact here: no pair sum can saturate,
// |q5·q8| <= 31·127 and |q8·q8| <= 128·128).

// GCC 12 warns about the deliberate `__Y = __Y` self-initialisation inside its own AVX-512
// intrinsics headers (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

static_assert(sizeof(block_q4_1) == 20 && sizeof(block_q8_1) == 40 && sizeof(block_q8_0) == 34,
              "block offsets below");

inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

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

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

/// The 8 bytes at p (a Q8_1 block's fp32 d and s) in every 64-bit lane: [d, s, d, s, ...].
inline __m512 broadcast_pair(const unsigned char* p) {
  double v;
  __builtin_memcpy(&v, p, sizeof v);
  return _mm512_castpd_ps(_mm512_set1_pd(v));
}

/// quant_avx2.cpp's hsum, from the two 128-bit halves of a row's 8 lanes (lo = lanes 0-3).
inline float hsum(__m128 lo, __m128 hi) {
  __m128 r = _mm_add_ps(lo, hi);
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

/// Index vector that spreads lanes `a` and `b` of a __m512 over four 128-bit chunks as
/// [a a a a, b b b b, a a a a, b b b b] (the chunk order of tile_unsigned).
inline __m512i spread_q4_1(int a, int b) {
  const __m512i va = _mm512_set1_epi32(a), vb = _mm512_set1_epi32(b);
  return _mm512_mask_blend_epi32(0xF0F0, va, vb);
}

/// [a × 8, b × 8] (the chunk order of tile_signed).
inline __m512i spread_q8_0(int a, int b) {
  return _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(a), _mm512_set1_epi32(b));
}

inline uint32_t high_bits(const unsigned char* p) { return load_u32(p); }

/// Two rows' 16 packed bytes (quants j and j+16 in byte j) as unsigned nibbles in the chunk order
/// of tile_unsigned: [a: elements 0-15, b: 0-15, a: 16-31, b: 16-31].
inline __m512i nibble_pair(const unsigned char* a, const unsigned char* b) {
  const __m256i packed = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(b),
                                             reinterpret_cast<const __m128i*>(a));
  return _mm512_and_si512(
      _mm512_inserti64x4(_mm512_castsi256_si512(packed), _mm256_srli_epi16(packed, 4), 1),
      _mm512_set1_epi8(0x0F));
}

// Block layouts (see quant_avx2.cpp): each gives a row pair's 64 quant bytes in its tile's order.
struct q4_1_layout {  // [fp16 d][fp16 m][16 nibble pairs]
  static constexpr size_t bytes = sizeof(block_q4_1);
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    return nibble_pair(a + 4, b + 4);
  }
};
struct q5_1_layout {  // [fp16 d][fp16 m][32 high bits][16 nibble pairs]: nibble + 16·bit
  static constexpr size_t bytes = sizeof(block_q5_1);
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    const uint64_t ha = high_bits(a + 4), hb = high_bits(b + 4);
    const __mmask64 set = (ha & 0xFFFF) | (hb & 0xFFFF) << 16 | (ha >> 16) << 32 | (hb >> 16) << 48;
    return _mm512_or_si512(nibble_pair(a + 8, b + 8),
                           _mm512_maskz_mov_epi8(set, _mm512_set1_epi8(0x10)));
  }
};
struct q8_0_layout {  // [fp16 d][32 int8]; tile_signed's order: [a: 0-31, b: 0-31]
  static constexpr size_t bytes = sizeof(block_q8_0);
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(load256(a + 2)), load256(b + 2), 1);
  }
};
struct q5_0_layout {  // [fp16 d][32 high bits][16 nibble pairs]: nibble + 16·bit − 16 as int8
  static constexpr size_t bytes = sizeof(block_q5_0);
  static __m256i row(const unsigned char* p) {  // elements 0-15 then 16-31, as unsigned nibbles
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                            _mm256_set1_epi8(0x0F));
  }
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    const __mmask64 set = uint64_t{high_bits(a + 2)} | uint64_t{high_bits(b + 2)} << 32;
    const __m512i nibbles = _mm512_inserti64x4(_mm512_castsi256_si512(row(a + 6)), row(b + 6), 1);
    return _mm512_or_si512(nibbles,
                           _mm512_maskz_mov_epi8(~set, _mm512_set1_epi8(static_cast<char>(0xF0))));
  }
};

struct q4_0_layout {  // [fp16 d][16 nibble pairs]: nibble − 8 as int8
  static constexpr size_t bytes = sizeof(block_q4_0);
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    const __m512i nibbles = _mm512_inserti64x4(
        _mm512_castsi256_si512(q5_0_layout::row(a + 2)), q5_0_layout::row(b + 2), 1);
    return _mm512_sub_epi8(nibbles, _mm512_set1_epi8(8));
  }
};
struct iq4_nl_layout {  // [fp16 d][16 nibble pairs]: kvalues_iq4nl[nibble]
  static constexpr size_t bytes = sizeof(block_iq4_nl);
  static __m512i pair(const unsigned char* a, const unsigned char* b) {
    const __m512i nibbles = _mm512_inserti64x4(
        _mm512_castsi256_si512(q5_0_layout::row(a + 2)), q5_0_layout::row(b + 2), 1);
    const __m512i table = _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(iq4_values)));
    return _mm512_shuffle_epi8(table, nibbles);
  }
};

/// R rows (1..8) of unsigned-quant weights (Q4_1 or Q5_1, by L) × T Q8_1 tokens over nb blocks:
/// y[t·ys + r] = dot_q4_1 / dot_q5_1 (row r, token t).
///
/// Row pair p (rows 2p and 2p+1; an odd last row is paired with itself and its twin discarded)
/// lives in one zmm as 128-bit chunks [2p: elements 0-15, 2p+1: 0-15, 2p: 16-31, 2p+1: 16-31]:
/// exactly the AVX2 kernel's two 128-bit halves per row, so int32 lane k of each chunk is the
/// same 4-product sum as there. The activations are laid out to match once per block and token.
template <class L, int R, int T>
void tile_unsigned(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a, size_t as,
               float* y, int64_t ys) {
  static_assert(R >= 1 && R <= 8 && T >= 1, "tile_unsigned takes 1-8 rows");
  constexpr int P = (R + 1) / 2;
  const unsigned char* row[2 * P];
#pragma GCC unroll 8
  for (int j = 0; j < 2 * P; ++j) row[j] = w + static_cast<size_t>(j < R ? j : R - 1) * ws;
  __m512i scale_of[P];  // lanes of dd (below) for each pair, in the pair's chunk order
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) scale_of[p] = spread_q4_1(4 * p, 4 * p + 2);
  __m512 acc[P][T];
  __m512 summs[T];  // lane 2j+1: Σ m·s of row j, fused as in dot_q4_1 / dot_q5_1
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    summs[t] = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) acc[p][t] = _mm512_setzero_ps();
  }
  const size_t chunk = prefetch_chunk<R>(ws, nb);
  for (int64_t i = 0; i < nb; ++i) {
    const size_t wo = static_cast<size_t>(i) * L::bytes;
    prefetch_next_tile<R>(w, ws, i, chunk);
    // [d0, m0, d1, m1, ...]: each row's fp16 (d, m) pair as one 32-bit word.
    // (Built in registers: a store of 8 words and a reload would stall store forwarding.)
    auto word = [&](int j) { return j < R ? static_cast<int>(load_u32(row[j] + wo)) : 0; };
    const __m512 dm = _mm512_cvtph_ps(
        _mm256_setr_epi32(word(0), word(1), word(2), word(3), word(4), word(5), word(6), word(7)));
    __m512 dd[T];
    __m512i qa[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const unsigned char* ab = a + t * as + static_cast<size_t>(i) * 40;
      // [d_a, s_a, d_a, s_a, ...]
      const __m512 ds = broadcast_pair(ab);
      dd[t] = _mm512_mul_ps(dm, ds);                // lane 2j: d_w·d_a of row j
      summs[t] = _mm512_fmadd_ps(dm, ds, summs[t]);  // lane 2j+1: m_w·s_a + summs
      // [q 0-15, q 0-15, q 16-31, q 16-31]
      const __m512i q = _mm512_castsi256_si512(load256(ab + 8));
      qa[t] = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(1, 1, 0, 0));
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m512i qw = L::pair(row[2 * p] + wo, row[2 * p + 1] + wo);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), qw, qa[t]);
        acc[p][t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(scale_of[p], dd[t]),
                                    _mm512_cvtepi32_ps(s), acc[p][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
    alignas(64) float sm[16];
    _mm512_store_ps(sm, summs[t]);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m512 v = acc[p][t];
      y[t * ys + 2 * p] = hsum(_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 2)) +
                          sm[4 * p + 1];
      if (2 * p + 1 < R)
        y[t * ys + 2 * p + 1] =
            hsum(_mm512_extractf32x4_ps(v, 1), _mm512_extractf32x4_ps(v, 3)) + sm[4 * p + 3];
    }
  }
}

/// R rows (1..8) of signed-quant weights (Q8_0, Q5_0, Q4_0 or IQ4_NL, by L) × T Q8_0 tokens
/// over nb blocks: y[t·ys + r] = dot_q8_0 / dot_q5_0 / dot_q4_0 (row r, token t); for IQ4_NL,
/// Q8_0's order over its values (tinyBLAS's, not dot_iq4_nl's). Row pair p is one zmm [row 2p's 32
/// quants | row 2p+1's], in element order; the activations are broadcast to both halves.
template <class L, int R, int T, bool Split = false>
void tile_signed(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a, size_t as,
               float* y, int64_t ys) {
  static_assert(R >= 1 && R <= 8 && T >= 1, "tile_signed takes 1-8 rows");
  constexpr int P = (R + 1) / 2;
  const unsigned char* row[2 * P];
#pragma GCC unroll 8
  for (int j = 0; j < 2 * P; ++j) row[j] = w + static_cast<size_t>(j < R ? j : R - 1) * ws;
  __m512i scale_of[P];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) scale_of[p] = spread_q8_0(2 * p, 2 * p + 1);
  constexpr int sets = Split ? 2 : 1;
  __m512 acc[sets][P][T];
#pragma GCC unroll 2
  for (int k = 0; k < sets; ++k)
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
#pragma GCC unroll 8
      for (int p = 0; p < P; ++p) acc[k][p][t] = _mm512_setzero_ps();
  // vpdpbusd takes the weights unsigned, w + 128 (w xor 0x80), starting from −128·Σ
  // activation: each int32 lane is Σ w·a over its 4 products exactly, as dot_i8_pairs forms it.
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  const auto start_of = [&](__m512i qa) {
    return _mm512_sub_epi32(_mm512_setzero_si512(),
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, qa));
  };
  // Split (dot_iq4_nl's order): even blocks into acc[0], odd ones into acc[1], an odd last block
  // after the horizontal sums.
  const int64_t blocks = Split ? nb & ~int64_t{1} : nb;
  const size_t chunk = prefetch_chunk<R>(ws, nb);
  for (int64_t i = 0; i < blocks; ++i) {
    const size_t wo = static_cast<size_t>(i) * L::bytes;
    prefetch_next_tile<R>(w, ws, i, chunk);
    auto half = [&](int j) { return j < R ? static_cast<short>(load_u16(row[j] + wo)) : short{0}; };
    const __m256 dw = _mm256_cvtph_ps(
        _mm_setr_epi16(half(0), half(1), half(2), half(3), half(4), half(5), half(6), half(7)));
    __m512 dd[T];
    __m512i qa[T];
    __m512i start[T];
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t) {
      const unsigned char* ab = a + t * as + static_cast<size_t>(i) * 34;
      dd[t] = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_set1_ps(fp16(load_u16(ab)))));
      qa[t] = _mm512_broadcast_i64x4(load256(ab + 2));
      start[t] = start_of(qa[t]);
    }
    __m512(&sum)[P][T] = acc[Split ? (i & 1) : 0];
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m512i uw = _mm512_xor_si512(L::pair(row[2 * p] + wo, row[2 * p + 1] + wo), bias);
#pragma GCC unroll 8
      for (int t = 0; t < T; ++t) {
        const __m512i s = _mm512_dpbusd_epi32(start[t], uw, qa[t]);
        sum[p][t] = _mm512_fmadd_ps(_mm512_permutexvar_ps(scale_of[p], dd[t]),
                                    _mm512_cvtepi32_ps(s), sum[p][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < T; ++t) {
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m512 v = Split ? _mm512_add_ps(acc[0][p][t], acc[sets - 1][p][t]) : acc[0][p][t];
      float out[2] = {hsum(_mm512_extractf32x4_ps(v, 0), _mm512_extractf32x4_ps(v, 1)),
                      hsum(_mm512_extractf32x4_ps(v, 2), _mm512_extractf32x4_ps(v, 3))};
      if (Split && blocks < nb) {  // the odd last block: exact Σ, (d_a·d_w)·Σ rounded, added
        const size_t wo = static_cast<size_t>(blocks) * L::bytes;
        const unsigned char* ab = a + t * as + static_cast<size_t>(blocks) * 34;
        const __m512i qa = _mm512_broadcast_i64x4(load256(ab + 2));
        const __m512i s = _mm512_dpbusd_epi32(
            start_of(qa), _mm512_xor_si512(L::pair(row[2 * p] + wo, row[2 * p + 1] + wo), bias),
            qa);
        const int32_t sumi[2] = {_mm512_mask_reduce_add_epi32(0x00FF, s),
                                 _mm512_mask_reduce_add_epi32(0xFF00, s)};
        for (int h = 0; h < 2; ++h) {
          float prod = (fp16(load_u16(ab)) * fp16(load_u16(row[2 * p + h] + wo))) *
                       static_cast<float>(sumi[h]);
          __asm__("" : "+x"(prod));  // rounded before the add, as in dot_iq4_nl
          out[h] += prod;
        }
      }
      y[t * ys + 2 * p] = out[0];
      if (2 * p + 1 < R) y[t * ys + 2 * p + 1] = out[1];
    }
  }
}

// The kernels use_avx512_vnni_kernels installs walk 8 rows by 4 tokens (the rest of the tokens
// one by one; IQ4_NL in its dot order 8 by 2): measured on AMD Zen 4 (bench_quant
// mat_mat_64_tokens) 8×4 beat the earlier 4×2 (Q4_1: 71 -> 100 Gop/s) and 8×2 (Q8_0: 75 -> 93),
// with one-token products unchanged.
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

template <class L, bool Split = false>
struct signed_tile {
  template <int R, int T>
  struct of {
    static void run(int64_t nb, const unsigned char* w, size_t ws, const unsigned char* a,
                    size_t as, float* y, int64_t ys) {
      tile_signed<L, R, T, Split>(nb, w, ws, a, as, y, ys);
    }
  };
};

}  // namespace

void use_avx512_vnni_kernels(kernel_table& t) noexcept {
  t.mat_mat_q4_1 = mat_mat_tiles<unsigned_tile<q4_1_layout>::of, 8, 4>;
  t.mat_mat_q5_1 = mat_mat_tiles<unsigned_tile<q5_1_layout>::of, 8, 4>;
  t.mat_mat_q8_0 = mat_mat_tiles<signed_tile<q8_0_layout>::of, 8, 4>;
  t.mat_mat_q5_0 = mat_mat_tiles<signed_tile<q5_0_layout>::of, 8, 4>;
  t.mat_mat_q4_0 = mat_mat_tiles<signed_tile<q4_0_layout>::of, 8, 4>;
  t.mat_mat_iq4_nl = mat_mat_tiles<signed_tile<iq4_nl_layout, true>::of, 8, 2>;
  t.tinyblas_iq4_nl = mat_mat_tiles<signed_tile<iq4_nl_layout>::of, 8, 4>;
  t.mat_mat_q4_k = mat_mat_q4_k_vnni;
  t.mat_mat_q6_k = mat_mat_q6_k_vnni;
  t.widen_q5_0 = false;  // (quant_impl.hpp says why; Q4_0 stays widened from 4 tokens)
  for (int k = 0; k < 6; ++k) t.tiled_k_lanes[k] = avx512_vnni_lanes_kernels()[k];
}

}  // namespace troupe::kernels::cpu::detail
