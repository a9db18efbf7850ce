// AVX-512 variants of float_dot: llama.cpp's AVX-512 orders (float_dot.hpp) in their own
// registers, the bf16 products either on VDPBF16PS itself (avx512_bf16_float_dot, only where
// the CPU has AVX512-BF16) or as its odd-then-even adds. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx512bf16 -mfma -mf16c -ffp-contract=off; reached only through float_dot.cpp's
// dispatch after the CPU check, and VDPBF16PS only after the AVX512-BF16 one.

// GCC 12 warns about the deliberate `__Y = __Y` self-initialisation inside its own AVX-512
// intrinsics headers (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/float_dot_impl.hpp"
#include "cpu/quant.hpp"

namespace troupe::kernels::cpu::detail {
namespace {


/// Elements i..i+15 of an f32 or f16 weight row as floats.
template <quant_type T>
inline __m512 load16(const void* p, int64_t i) {
  if constexpr (T == quant_type::f32) {
    return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  } else {
    return _mm512_cvtph_ps(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
  }
}

/// Lane l += pair l of the 32 bf16 in wx and wy (VDPBF16PS or its odd-then-even adds).
template <bool Native>
inline __m512 dpbf16(__m512 acc, __m512i wx, __m512i wy) {
  if constexpr (Native) {
    return _mm512_dpbf16_ps(acc, reinterpret_cast<__m512bh>(wx), reinterpret_cast<__m512bh>(wy));
  } else {
    const __m512i hi_mask = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    const __m512 odd = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(wx, hi_mask)),
                                     _mm512_castsi512_ps(_mm512_and_si512(wy, hi_mask)));
    const __m512 even = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_slli_epi32(wx, 16)),
                                      _mm512_castsi512_ps(_mm512_slli_epi32(wy, 16)));
    return _mm512_add_ps(_mm512_add_ps(acc, odd), even);
  }
}

inline __m512i load_bf16x32(const void* p, int64_t i) {
  return _mm512_loadu_si512(static_cast<const uint16_t*>(p) + i);
}

template <quant_type T, bool Native>
float vec_dot(int64_t n, const void* w, const void* a) {
  const int64_t np = n & ~int64_t{63};
  if constexpr (T == quant_type::bf16) {
    __m512 c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps();
    for (int64_t i = 0; i < np; i += 64) {
      c0 = dpbf16<Native>(c0, load_bf16x32(w, i), load_bf16x32(a, i));
      c1 = dpbf16<Native>(c1, load_bf16x32(w, i + 32), load_bf16x32(a, i + 32));
    }
    double sum = _mm512_reduce_add_ps(c0);
    sum += static_cast<double>(_mm512_reduce_add_ps(c1));
    const auto* x = static_cast<const uint16_t*>(w);
    const auto* y = static_cast<const uint16_t*>(a);
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]));
    return static_cast<float>(sum);
  } else {
    const auto* y = static_cast<const float*>(a);
    __m512 c[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
    for (int64_t i = 0; i < np; i += 64)
      for (int g = 0; g < 4; ++g)
        c[g] = _mm512_fmadd_ps(load16<T>(w, i + 16 * g), _mm512_loadu_ps(y + i + 16 * g), c[g]);
    const __m512 s = _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_add_ps(c[1], c[3]));
    if constexpr (T == quant_type::f16) {
      double sum = _mm512_reduce_add_ps(s);
      const auto* x = static_cast<const uint16_t*>(w);
      for (int64_t i = np; i < n; ++i) sum += static_cast<double>(_cvtsh_ss(x[i]) * y[i]);
      return static_cast<float>(sum);
    } else {
      float sum = _mm512_reduce_add_ps(s);
      const auto* x = static_cast<const float*>(w);
      const int64_t fused = n - (n - np) % 8;
      for (int64_t i = np; i < fused; ++i) sum += x[i] * y[i];
      for (int64_t i = fused; i < n; ++i) sum = __builtin_fmaf(x[i], y[i], sum);
      return sum;
    }
  }
}

/// tinyBLAS outputs of RM weight rows × RN tokens at once (RM·RN accumulators in registers,
/// each one output's 16 lanes, as tinyBLAS's own RM × RN tiles): y[t·y_stride + r].
template <quant_type T, bool Native, int RM, int RN>
void tinyblas_tile(int64_t n, const std::byte* w, size_t row_stride, const std::byte* a,
                   size_t act_stride, float* y, int64_t y_stride) {
  // The loops over RM and RN are unrolled (GCC at -O2 would not), so that the accumulators
  // stay in registers.
  __m512 c[RM][RN];
#pragma GCC unroll 8
  for (int r = 0; r < RM; ++r)
#pragma GCC unroll 8
    for (int t = 0; t < RN; ++t) c[r][t] = _mm512_setzero_ps();
  if constexpr (T == quant_type::bf16) {
    for (int64_t i = 0; i < n; i += 32) {
      __m512i wv[RM];
#pragma GCC unroll 8
      for (int r = 0; r < RM; ++r) wv[r] = load_bf16x32(w + r * row_stride, i);
#pragma GCC unroll 8
      for (int t = 0; t < RN; ++t) {
        const __m512i av = load_bf16x32(a + t * act_stride, i);
#pragma GCC unroll 8
        for (int r = 0; r < RM; ++r) c[r][t] = dpbf16<Native>(c[r][t], wv[r], av);
      }
    }
  } else {
    for (int64_t i = 0; i < n; i += 16) {
      __m512 wv[RM];
#pragma GCC unroll 8
      for (int r = 0; r < RM; ++r) wv[r] = load16<T>(w + r * row_stride, i);
#pragma GCC unroll 8
      for (int t = 0; t < RN; ++t) {
        const __m512 av = _mm512_loadu_ps(reinterpret_cast<const float*>(a + t * act_stride) + i);
#pragma GCC unroll 8
        for (int r = 0; r < RM; ++r) c[r][t] = _mm512_fmadd_ps(wv[r], av, c[r][t]);
      }
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < RN; ++t)
#pragma GCC unroll 8
    for (int r = 0; r < RM; ++r) y[t * y_stride + r] = _mm512_reduce_add_ps(c[r][t]);
}

/// tinyblas_tile for the rows and tokens left over at the edges (rm <= 4, rn <= 6).
template <quant_type T, bool Native, int RM>
void tinyblas_edge(int rn, int64_t n, const std::byte* w, size_t row_stride, const std::byte* a,
                   size_t act_stride, float* y, int64_t y_stride) {
  switch (rn) {
    case 1:
      return tinyblas_tile<T, Native, RM, 1>(n, w, row_stride, a, act_stride, y, y_stride);
    case 2:
      return tinyblas_tile<T, Native, RM, 2>(n, w, row_stride, a, act_stride, y, y_stride);
    case 3:
      return tinyblas_tile<T, Native, RM, 3>(n, w, row_stride, a, act_stride, y, y_stride);
    case 4:
      return tinyblas_tile<T, Native, RM, 4>(n, w, row_stride, a, act_stride, y, y_stride);
    case 5:
      return tinyblas_tile<T, Native, RM, 5>(n, w, row_stride, a, act_stride, y, y_stride);
    default:
      return tinyblas_tile<T, Native, RM, 6>(n, w, row_stride, a, act_stride, y, y_stride);
  }
}

template <quant_type T, int O, bool Native = false>
void mat_mat(int64_t rows, int64_t n, const void* w, size_t row_stride, const void* a,
             size_t act_stride, int64_t tokens, float* y, int64_t y_stride) {
  const auto* wb = static_cast<const std::byte*>(w);
  const auto* ab = static_cast<const std::byte*>(a);
  if constexpr (O == 0) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = 0; r < rows; ++r)
        y[t * y_stride + r] = vec_dot<T, Native>(n, wb + static_cast<size_t>(r) * row_stride,
                                                 ab + static_cast<size_t>(t) * act_stride);
  } else {
    // Tiles of 4 rows × 6 tokens: 24 accumulators, 4 weight and 1 activation register.
    for (int64_t t = 0; t < tokens; t += 6) {
      const int rn = static_cast<int>(tokens - t < 6 ? tokens - t : 6);
      const std::byte* at = ab + static_cast<size_t>(t) * act_stride;
      for (int64_t r = 0; r < rows; r += 4) {
        const std::byte* wr = wb + static_cast<size_t>(r) * row_stride;
        float* yo = y + t * y_stride + r;
        switch (rows - r < 4 ? rows - r : 4) {
          case 1:
            tinyblas_edge<T, Native, 1>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
            break;
          case 2:
            tinyblas_edge<T, Native, 2>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
            break;
          case 3:
            tinyblas_edge<T, Native, 3>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
            break;
          default:
            tinyblas_edge<T, Native, 4>(rn, n, wr, row_stride, at, act_stride, yo, y_stride);
        }
      }
    }
  }
}

}  // namespace

const float_dot_table& avx512_float_dot() noexcept {
  static const float_dot_table t{
      "avx512",
      {{mat_mat<quant_type::f32, 0>, mat_mat<quant_type::f32, 1>},
       {mat_mat<quant_type::f16, 0>, mat_mat<quant_type::f16, 1>},
       {mat_mat<quant_type::bf16, 0>, mat_mat<quant_type::bf16, 1>}},
      avx2_float_dot().round_f16,  // O(n) per activation row: the AVX2 conversions suffice
      avx2_float_dot().to_bf16};
  return t;
}

const float_dot_table& avx512_bf16_float_dot() noexcept {
  static const float_dot_table t{
      "avx512-bf16",
      {{mat_mat<quant_type::f32, 0>, mat_mat<quant_type::f32, 1>},
       {mat_mat<quant_type::f16, 0>, mat_mat<quant_type::f16, 1>},
       {mat_mat<quant_type::bf16, 0, true>, mat_mat<quant_type::bf16, 1, true>}},
      avx2_float_dot().round_f16,
      avx2_float_dot().to_bf16};
  return t;
}

}  // namespace troupe::kernels::cpu::detail
