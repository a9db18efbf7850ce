// AVX2 + FMA + F16C variant of float_dot: llama.cpp's AVX-512 orders (float_dot.hpp) with each
// 16-lane accumulator held as two 8-lane halves (lanes 0..7, 8..15). Compiled with -mavx2 -mfma
// -mf16c -ffp-contract=off; reached only through float_dot.cpp's dispatch after the CPU check.
#include <immintrin.h>

#include "cpu/float_dot_impl.hpp"
#include "cpu/quant.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

struct acc16 {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
};

/// _mm512_reduce_add_ps of the 16 lanes.
inline float reduce16(acc16 a) {
  const __m256 h8 = _mm256_add_ps(a.hi, a.lo);
  const __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
  const __m128 t = _mm_add_ps(h4, _mm_shuffle_ps(h4, h4, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}


/// Elements i..i+7 of an f32 or f16 weight row as floats.
template <quant_type T>
inline __m256 load8(const void* p, int64_t i) {
  if constexpr (T == quant_type::f32) {
    return _mm256_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i)));
  }
}

/// Lane l += w[l]·a[l] for the 16 elements at i (element i + l in lane l); a: floats.
template <quant_type T>
inline void fma16(acc16& c, const void* w, const void* a, int64_t i) {
  const auto* y = static_cast<const float*>(a) + i;
  c.lo = _mm256_fmadd_ps(load8<T>(w, i), _mm256_loadu_ps(y), c.lo);
  c.hi = _mm256_fmadd_ps(load8<T>(w, i + 8), _mm256_loadu_ps(y + 8), c.hi);
}

/// VDPBF16PS on 8 element pairs (16 bf16 at p): lane l += odd product, then even product.
inline __m256 dpbf16x8(__m256 acc, const uint16_t* x, const uint16_t* y) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m256i wx = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  const __m256i wy = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(y));
  const __m256 odd = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_and_si256(wx, hi_mask)),
                                   _mm256_castsi256_ps(_mm256_and_si256(wy, hi_mask)));
  const __m256 even = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_slli_epi32(wx, 16)),
                                    _mm256_castsi256_ps(_mm256_slli_epi32(wy, 16)));
  return _mm256_add_ps(_mm256_add_ps(acc, odd), even);
}

/// The 32 bf16 at i: pairs 0..7 into lanes 0..7, pairs 8..15 into lanes 8..15.
inline void dpbf16x16(acc16& c, const void* x, const void* y, int64_t i) {
  const auto* px = static_cast<const uint16_t*>(x) + i;
  const auto* py = static_cast<const uint16_t*>(y) + i;
  c.lo = dpbf16x8(c.lo, px, py);
  c.hi = dpbf16x8(c.hi, px + 16, py + 16);
}

template <quant_type T>
float vec_dot(int64_t n, const void* w, const void* a) {
  const int64_t np = n & ~int64_t{63};
  if constexpr (T == quant_type::bf16) {
    acc16 c0, c1;
    for (int64_t i = 0; i < np; i += 64) {
      dpbf16x16(c0, w, a, i);
      dpbf16x16(c1, w, a, i + 32);
    }
    double sum = reduce16(c0);
    sum += static_cast<double>(reduce16(c1));
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const uint16_t*>(a);
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return static_cast<float>(sum);
  } else {
    acc16 c[4];
    for (int64_t i = 0; i < np; i += 64)
      for (int g = 0; g < 4; ++g) fma16<T>(c[g], w, a, i + 16 * g);
    const acc16 s{_mm256_add_ps(_mm256_add_ps(c[0].lo, c[2].lo), _mm256_add_ps(c[1].lo, c[3].lo)),
                  _mm256_add_ps(_mm256_add_ps(c[0].hi, c[2].hi), _mm256_add_ps(c[1].hi, c[3].hi))};
    if constexpr (T == quant_type::f16) {
      double sum = reduce16(s);
      const auto* x = static_cast<const uint16_t*>(w);
      const auto* y = static_cast<const float*>(a);
      for (int64_t i = np; i < n; ++i) sum += static_cast<double>(_cvtsh_ss(x[i]) * y[i]);
      return static_cast<float>(sum);
    } else {
      float sum = reduce16(s);
      const auto* x = static_cast<const float*>(w);
      const auto* y = static_cast<const float*>(a);
      const int64_t fused = n - (n - np) % 8;
      for (int64_t i = np; i < fused; ++i) sum += x[i] * y[i];
      for (int64_t i = fused; i < n; ++i) sum = __builtin_fmaf(x[i], y[i], sum);
      return sum;
    }
  }
}

/// One half (h = 0: lanes 0..7, h = 1: lanes 8..15) of the tinyBLAS accumulators of RM weight
/// rows × RN tokens, in registers (16 ymm: the halves go one after the other), into out[r][t].
template <quant_type T, int RM, int RN>
void tinyblas_half(int h, int64_t n, const std::byte* w, size_t row_stride, const std::byte* a,
                   size_t act_stride, __m256 (&out)[4][4]) {
  __m256 c[RM][RN];
#pragma GCC unroll 8
  for (int r = 0; r < RM; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < RN; ++t) c[r][t] = _mm256_setzero_ps();
  if constexpr (T == quant_type::bf16) {
    // 32 bf16 per step: pairs 0..7 (elements 0..15) in the low half, 8..15 in the high one.
    const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int64_t i = 16 * h; i < n; i += 32) {
      __m256 wo[RM], we[RM];
#pragma GCC unroll 8
      for (int r = 0; r < RM; ++r) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            reinterpret_cast<const uint16_t*>(w + r * row_stride) + i));
        wo[r] = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
        we[r] = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
      }
#pragma GCC unroll 8
      for (int t = 0; t < RN; ++t) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(
            reinterpret_cast<const uint16_t*>(a + t * act_stride) + i));
        const __m256 ao = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
        const __m256 ae = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
#pragma GCC unroll 8
        for (int r = 0; r < RM; ++r)
          c[r][t] = _mm256_add_ps(_mm256_add_ps(c[r][t], _mm256_mul_ps(wo[r], ao)),
                                  _mm256_mul_ps(we[r], ae));
      }
    }
  } else {
    for (int64_t i = 8 * h; i < n; i += 16) {
      __m256 wv[RM];
#pragma GCC unroll 8
      for (int r = 0; r < RM; ++r) wv[r] = load8<T>(w + r * row_stride, i);
#pragma GCC unroll 8
      for (int t = 0; t < RN; ++t) {
        const __m256 av = _mm256_loadu_ps(reinterpret_cast<const float*>(a + t * act_stride) + i);
#pragma GCC unroll 8
        for (int r = 0; r < RM; ++r) c[r][t] = _mm256_fmadd_ps(wv[r], av, c[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < RM; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < RN; ++t) out[r][t] = c[r][t];
}

/// tinyBLAS outputs of rm (<= RM) rows × rn (<= RN) tokens: y[t·y_stride + r].
template <quant_type T, int RM, int RN>
void tinyblas_tile(int64_t n, const std::byte* w, size_t row_stride, const std::byte* a,
                   size_t act_stride, float* y, int64_t y_stride) {
  __m256 lo[4][4], hi[4][4];
  tinyblas_half<T, RM, RN>(0, n, w, row_stride, a, act_stride, lo);
  tinyblas_half<T, RM, RN>(1, n, w, row_stride, a, act_stride, hi);
  for (int t = 0; t < RN; ++t)
    for (int r = 0; r < RM; ++r) y[t * y_stride + r] = reduce16({lo[r][t], hi[r][t]});
}

template <quant_type T, int RM>
void tinyblas_edge(int rn, int64_t n, const std::byte* w, size_t row_stride, const std::byte* a,
                   size_t act_stride, float* y, int64_t y_stride) {
  switch (rn) {
    case 1:
      return tinyblas_tile<T, RM, 1>(n, w, row_stride, a, act_stride, y, y_stride);
    case 2:
      return tinyblas_tile<T, RM, 2>(n, w, row_stride, a, act_stride, y, y_stride);
    case 3:
      return tinyblas_tile<T, RM, 3>(n, w, row_stride, a, act_stride, y, y_stride);
    default:
      return tinyblas_tile<T, RM, 4>(n, w, row_stride, a, act_stride, y, y_stride);
  }
}

template <quant_type T, int O>
void mat_mat(int64_t rows, int64_t n, const void* w, size_t row_stride, const void* a,
             size_t act_stride, int64_t tokens, float* y, int64_t y_stride) {
  const auto* wb = static_cast<const std::byte*>(w);
  const auto* ab = static_cast<const std::byte*>(a);
  if constexpr (O == 0) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r)
        y[t * y_stride + r] = vec_dot<T>(n, wb + static_cast<size_t>(r) * row_stride,
                                         ab + static_cast<size_t>(t) * act_stride);
  } else {
    // Tiles of 3 rows × 4 tokens (f32/f16: 12 accumulators, 3 weight registers) or of
    // 3 rows × 2 tokens (bf16: each row and token unpacked into odd and even elements).
    constexpr int RM = 3, RN = T == quant_type::bf16 ? 2 : 4;
    for (int64_t t = 0; t < tokens; t += RN) {
      const int rn = static_cast<int>(tokens - t < RN ? tokens - t : RN);
      const std::byte* at = ab + static_cast<size_t>(t) * act_stride;
      for (int64_t r = 0; r < rows; r += RM) {
        const std::byte* wr = wb + static_cast<size_t>(r) * row_stride;
        float* yo = y + t * y_stride + r;
        switch (rows - r < RM ? rows - r : RM) {
          case 1:
            tinyblas_edge<T, 1>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
            break;
          case 2:
            tinyblas_edge<T, 2>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
            break;
          default:
            tinyblas_edge<T, 3>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
        }
      }
    }
  }
}

/// F16C's round to nearest-even, as ggml_cpu_fp32_to_fp16; the tail in the same instruction.
void round_f16(const float* x, float* out, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                                              _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; ++i) out[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

/// ggml_compute_fp32_to_bf16 on 8 lanes: (u + 0x7FFF + (u >> 16 & 1)) >> 16, NaN quietened.
void to_bf16(const float* x, uint16_t* out, int64_t n) {
  int64_t i = 0;
  const __m256i one = _mm256_set1_epi32(1), round = _mm256_set1_epi32(0x7FFF);
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF), inf = _mm256_set1_epi32(0x7F800000);
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(u,
                         _mm256_add_epi32(round, _mm256_and_si256(_mm256_srli_epi32(u, 16), one))),
        16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
    const __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    // 8 × 32-bit -> 8 × 16-bit (values fit: packus keeps them), lanes back in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) {
    uint32_t u;
    __builtin_memcpy(&u, x + i, sizeof u);
    out[i] = (u & 0x7FFFFFFFu) > 0x7F800000u
                 ? static_cast<uint16_t>((u >> 16) | 64)
                 : static_cast<uint16_t>((u + (0x7FFFu + ((u >> 16) & 1))) >> 16);
  }
}

}  // namespace

const float_dot_table& avx2_float_dot() noexcept {
  static const float_dot_table t{"avx2",
                                 {{mat_mat<quant_type::f32, 0>, mat_mat<quant_type::f32, 1>},
                                  {mat_mat<quant_type::f16, 0>, mat_mat<quant_type::f16, 1>},
                                  {mat_mat<quant_type::bf16, 0>, mat_mat<quant_type::bf16, 1>}},
                                 round_f16,
                                 to_bf16};
  return t;
}

}  // namespace troupe::kernels::cpu::detail
