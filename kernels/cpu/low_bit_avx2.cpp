// AVX2 + FMA + F16C variants of the low-bit weight products. Compiled with -mavx2 -mfma -mf16c;
// only reached through low_bit.cpp's dispatch after the CPU check.
//
// INT4: a 256-bit load holds 8 packed words = 64 columns; lane j is word j (columns 8j..8j+7).
// Masking nibble i in place (and, no shift) and converting gives u·2^(4i) for the 8 columns
// 8j+i at once, so the activations are reordered once per call to match: x'[i][j] =
// x[8j+i]·2^(-4i), plus b[j] = -8·Σ_i x[8j+i] for the offset 8. Per word lane, Σ_i u·x' + b =
// Σ_i q·x exactly as the scalar kernel forms it up to rounding, then times the lane's group scale.
// The reordered activations live in a 64 KiB stack buffer; when all tokens do not fit at once
// the columns are cut into slabs and y accumulates, so each weight byte is still read once.
//
// FP8: 16 e4m3 bytes become 16 fp16 bit patterns with two shifts and a mask (e4m3 is fp16 with
// a 4-bit exponent and 3-bit mantissa: the same value times 2^-8), F16C converts them exactly
// (subnormals included, whatever MXCSR says), and 2^8 goes into the block scale.

#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "cpu/low_bit_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

inline float hsum(__m256 x) {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}


template <scale_type S>
inline float scale_at(const void* s, int64_t i) {
  if constexpr (S == scale_type::bf16)
    return bf16_to_fp32(static_cast<const uint16_t*>(s)[i]);
  else if constexpr (S == scale_type::f16)
    return _cvtsh_ss(static_cast<const uint16_t*>(s)[i]);
  else
    return static_cast<const float*>(s)[i];
}

/// Two consecutive scales s[i], s[i+1] as [s0 s0 s0 s0 s1 s1 s1 s1].
template <scale_type S>
inline __m256 scale_pair(const void* s, int64_t i) {
  __m128 two;
  if constexpr (S == scale_type::f32) {
    int64_t bits;  // two floats, any alignment
    std::memcpy(&bits, static_cast<const float*>(s) + i, 8);
    two = _mm_castsi128_ps(_mm_cvtsi64_si128(bits));
  } else {
    uint32_t bits;
    std::memcpy(&bits, static_cast<const uint16_t*>(s) + i, 4);
    const __m128i h = _mm_cvtsi32_si128(static_cast<int>(bits));
    if constexpr (S == scale_type::bf16)
      two = _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16));
    else
      two = _mm_cvtph_ps(h);
  }
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two),
                                  _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

constexpr int64_t chunk_cols = 64;                // columns per 256-bit load of packed words
constexpr int64_t chunk_floats = chunk_cols + 8;  // x' (64) then b (8) per chunk and token
constexpr int64_t scratch_floats = 16384;         // 64 KiB of reordered activations on the stack

/// Writes x' and b of chunks [k0, k0 + nk) for one token (x: one activation row).
void reorder_activations(const float* x, int64_t cols, int64_t k0, int64_t nk, float* out) {
  const float pow2[8] = {1.0f,       0x1.0p-4f,  0x1.0p-8f,  0x1.0p-12f,
                         0x1.0p-16f, 0x1.0p-20f, 0x1.0p-24f, 1.0f};
  for (int64_t k = 0; k < nk; ++k, out += chunk_floats) {
    const int64_t c0 = (k0 + k) * chunk_cols;
    alignas(32) float padded[chunk_cols];
    const float* xs = x + c0;
    if (c0 + chunk_cols > cols) {  // the row's last chunk: zeros past the end
      for (int64_t c = 0; c < chunk_cols; ++c) padded[c] = c0 + c < cols ? xs[c] : 0.0f;
      xs = padded;
    }
    // Row j of the 8×8 block is word j's 8 columns; transposed, row i holds nibble i of every word.
    __m256 r[8];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(xs + 8 * j);
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
    const __m256 sum =
        _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[0], r[1]), _mm256_add_ps(r[2], r[3])),
                      _mm256_add_ps(_mm256_add_ps(r[4], r[5]), _mm256_add_ps(r[6], r[7])));
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i)
      _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(r[i], _mm256_set1_ps(pow2[i])));
    _mm256_storeu_ps(out + 64, _mm256_mul_ps(sum, _mm256_set1_ps(-8.0f)));
  }
}

/// The packed words of chunk kk of a row (8 words; fewer at the end of the row, the rest 0).
inline __m256i load_words(const uint32_t* prow, int64_t kk, int64_t words) {
  const int64_t left = words - kk * 8;
  if (left >= 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prow + kk * 8));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(left)), lanes);
  return _mm256_maskload_epi32(reinterpret_cast<const int*>(prow + kk * 8), m);
}

/// The scale of each word lane of chunk kk (0 past the row's end, where x' is 0 too).
template <scale_type S>
inline __m256 load_scales(const int4_group_matrix& w, const void* srow, int64_t kk) {
  const int64_t c0 = kk * chunk_cols;
  if (w.group % chunk_cols == 0) return _mm256_set1_ps(scale_at<S>(srow, c0 / w.group));
  if (w.group == 32 && c0 + 32 < w.cols) return scale_pair<S>(srow, c0 / 32);
  alignas(32) float lane[8];
  for (int j = 0; j < 8; ++j) {
    const int64_t c = c0 + 8 * j;
    lane[j] = c < w.cols ? scale_at<S>(srow, c / w.group) : 0.0f;
  }
  return _mm256_load_ps(lane);
}

/// Nibble i of every word lane, as the float u·2^(4i) (u for i = 7).
inline __m256 nibble(__m256i wv, int i) {
  const __m256i u =
      i == 7 ? _mm256_srli_epi32(wv, 28) : _mm256_and_si256(wv, _mm256_set1_epi32(0xF << (4 * i)));
  return _mm256_cvtepi32_ps(u);
}

/// Σ over chunks [k0, k0+nk) of R packed rows (prow[ρ], srow[ρ]) times TB tokens of reordered
/// activations (token t's chunks at xr + t·xr_stride); adds the sums into out[ρ·TB + t].
/// One token: per row and chunk Σ u·x' + b in one accumulator, then times the lane scales (the
/// dequantisation is the cost there, so the scale is applied once per chunk). Several tokens:
/// u·2^(4i)·scale is formed once per row and nibble and serves every token.
template <int R, int TB, scale_type S>
inline void int4_rows(const int4_group_matrix& w, const uint32_t* const* prow,
                      const void* const* srow, int64_t k0, int64_t nk, const float* xr,
                      int64_t xr_stride, float* out) {
  const int64_t words = (w.cols + 7) / 8;
  __m256 acc[R][TB];
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) acc[q][t] = _mm256_setzero_ps();
  // Full chunks of a group-32 matrix (Kimi's layout) take the branch-free path.
  const auto chunk = [&](int64_t k, auto full_group32) __attribute__((always_inline)) {
    const int64_t kk = k0 + k;
    const float* xk = xr + k * chunk_floats;
    __m256i wv[R];
    __m256 s[R];
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) {
      if constexpr (decltype(full_group32)::value) {
        wv[q] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(prow[q] + kk * 8));
        s[q] = scale_pair<S>(srow[q], kk * 2);
      } else {
        wv[q] = load_words(prow[q], kk, words);
        s[q] = load_scales<S>(w, srow[q], kk);
      }
    }
    if constexpr (TB == 1) {
      __m256 l[R];
      const __m256 b = _mm256_loadu_ps(xk + 64);
#pragma GCC unroll 8
      for (int q = 0; q < R; ++q) l[q] = b;
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        const __m256 xv = _mm256_loadu_ps(xk + 8 * i);
#pragma GCC unroll 8
        for (int q = 0; q < R; ++q) l[q] = _mm256_fmadd_ps(nibble(wv[q], i), xv, l[q]);
      }
#pragma GCC unroll 8
      for (int q = 0; q < R; ++q) acc[q][0] = _mm256_fmadd_ps(s[q], l[q], acc[q][0]);
    } else {
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t) {
        const __m256 b = _mm256_loadu_ps(xk + t * xr_stride + 64);
#pragma GCC unroll 8
        for (int q = 0; q < R; ++q) acc[q][t] = _mm256_fmadd_ps(s[q], b, acc[q][t]);
      }
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) {
        __m256 f[R];
#pragma GCC unroll 8
        for (int q = 0; q < R; ++q) f[q] = _mm256_mul_ps(nibble(wv[q], i), s[q]);
#pragma GCC unroll 8
        for (int t = 0; t < TB; ++t) {
          const __m256 xv = _mm256_loadu_ps(xk + t * xr_stride + 8 * i);
#pragma GCC unroll 8
          for (int q = 0; q < R; ++q) acc[q][t] = _mm256_fmadd_ps(f[q], xv, acc[q][t]);
        }
      }
    }
  };
  int64_t k = 0;
  if (w.group == 32) {
    int64_t full = w.cols / chunk_cols - k0;  // chunks [k0, k0 + full) lie inside the row
    if (full > nk) full = nk;
    for (; k < full; ++k) chunk(k, std::true_type{});
  }
  for (; k < nk; ++k) chunk(k, std::false_type{});
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q)
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) out[q * TB + t] += hsum(acc[q][t]);
}

/// Rows [r, r + R) for all tp tokens of the slab, 4 tokens at a time: the rows' slab of weights
/// stays in L1 while the token blocks pass over it.
template <int R, scale_type S>
void int4_row_group(const low_bit_gemm_args<int4_group_matrix>& a, int64_t r, int64_t k0,
                    int64_t nk, const float* xr, int64_t xr_stride, int64_t t0, int64_t tp) {
  const int4_group_matrix& w = *a.w;
  constexpr int64_t scale_bytes = S == scale_type::f32 ? 4 : 2;
  const uint32_t* prow[R];
  const void* srow[R];
  for (int q = 0; q < R; ++q) {
    prow[q] = w.packed + (r + q) * w.packed_stride;
    srow[q] = static_cast<const char*>(w.scales) + (r + q) * w.scale_stride * scale_bytes;
  }
  for (int64_t t = 0; t < tp; t += 4) {
    const int64_t tb = tp - t < 4 ? tp - t : 4;
    float sum[R * 4] = {};
    const float* xt = xr + t * xr_stride;
    if constexpr (R == 3) {  // only used for one token
      int4_rows<R, 1, S>(w, prow, srow, k0, nk, xt, xr_stride, sum);
    } else
      switch (tb) {
        case 1:
          int4_rows<R, 1, S>(w, prow, srow, k0, nk, xt, xr_stride, sum);
          break;
        case 2:
          int4_rows<R, 2, S>(w, prow, srow, k0, nk, xt, xr_stride, sum);
          break;
        case 3:
          int4_rows<R, 3, S>(w, prow, srow, k0, nk, xt, xr_stride, sum);
          break;
        default:
          int4_rows<R, 4, S>(w, prow, srow, k0, nk, xt, xr_stride, sum);
          break;
      }
    for (int q = 0; q < R; ++q) {
      for (int64_t i = 0; i < tb; ++i) {
        float& y = a.y[(t0 + t + i) * a.ldy + r + q];
        y = k0 == 0 ? sum[q * tb + i] : y + sum[q * tb + i];
      }
    }
  }
}

template <scale_type S>
void int4_gemm_typed(const low_bit_gemm_args<int4_group_matrix>& a) noexcept {
  const int4_group_matrix& w = *a.w;
  const int64_t chunks = (w.cols + chunk_cols - 1) / chunk_cols;
  const int64_t max_tokens = scratch_floats / chunk_floats;
  alignas(32) float scratch[scratch_floats];
  for (int64_t t0 = 0; t0 < a.tokens; t0 += max_tokens) {
    const int64_t tp = a.tokens - t0 < max_tokens ? a.tokens - t0 : max_tokens;
    int64_t slab = scratch_floats / (chunk_floats * tp);
    if (slab > chunks) slab = chunks;
    for (int64_t k0 = 0; k0 < chunks; k0 += slab) {
      const int64_t nk = chunks - k0 < slab ? chunks - k0 : slab;
      const int64_t xr_stride = nk * chunk_floats;
      for (int64_t t = 0; t < tp; ++t)
        reorder_activations(a.x + (t0 + t) * a.ldx, w.cols, k0, nk, scratch + t * xr_stride);
      int64_t r = a.row_begin;
      if (tp == 1) {
        for (; r + 3 <= a.row_end; r += 3)
          int4_row_group<3, S>(a, r, k0, nk, scratch, xr_stride, t0, tp);
      } else {
        for (; r + 2 <= a.row_end; r += 2)
          int4_row_group<2, S>(a, r, k0, nk, scratch, xr_stride, t0, tp);
      }
      for (; r < a.row_end; ++r) int4_row_group<1, S>(a, r, k0, nk, scratch, xr_stride, t0, tp);
    }
  }
}

void int4_gemm(const low_bit_gemm_args<int4_group_matrix>& a) noexcept {
  switch (a.w->scales_type) {
    case scale_type::bf16:
      int4_gemm_typed<scale_type::bf16>(a);
      break;
    case scale_type::f16:
      int4_gemm_typed<scale_type::f16>(a);
      break;
    case scale_type::f32:
      int4_gemm_typed<scale_type::f32>(a);
      break;
  }
}

// ---- FP8 E4M3 ------------------------------------------------------------------------------

/// 16 e4m3 bytes -> 16 fp16 patterns of value/256 (0x7F/0xFF -> fp16 NaN).
inline __m256i e4m3_to_f16x16(const uint8_t* p) {
  const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  // b << 8 puts the sign at bit 15 and exponent+mantissa at 8..14; an arithmetic shift right by
  // one moves them to fp16's places (mantissa 7..9, exponent 10..13) and copies the sign into
  // bit 14, which the mask clears.
  const __m256i h = _mm256_and_si256(_mm256_srai_epi16(_mm256_slli_epi16(b, 8), 1),
                                     _mm256_set1_epi16(static_cast<short>(0xBFFF)));
  const __m256i nan =
      _mm256_cmpeq_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7F)), _mm256_set1_epi16(0x7F));
  return _mm256_or_si256(h, nan);
}

/// Σ_c w[c]·x_t[c] over columns [c0, c1) of one row for TB tokens, with every 16-column step
/// inside one scale block (s = scale·256 broadcast), c1 - c0 a multiple of 16.
template <int TB>
inline void fp8_span(const uint8_t* row, __m256 s, int64_t c0, int64_t c1, const float* x,
                     int64_t ldx, __m256* acc) {
  for (int64_t c = c0; c < c1; c += 16) {
    const __m256i h = e4m3_to_f16x16(row + c);
    const __m256 w0 = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), s);
    const __m256 w1 = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), s);
#pragma GCC unroll 8
    for (int t = 0; t < TB; ++t) {
      acc[2 * t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * ldx + c), acc[2 * t]);
      acc[2 * t + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * ldx + c + 8), acc[2 * t + 1]);
    }
  }
}

template <int TB>
void fp8_row(const fp8_block_matrix& w, int64_t r, const float* x, int64_t ldx, float* out) {
  const uint8_t* row = w.data + r * w.stride;
  const float* srow = w.scale_inv + (r / w.block_rows) * w.scale_stride;
  __m256 acc[2 * TB];
#pragma GCC unroll 8
  for (int t = 0; t < 2 * TB; ++t) acc[t] = _mm256_setzero_ps();
  float tail[TB] = {};
  // 16-column steps that stay inside one block; a block's last cols % 16 columns (only the
  // last block's when block_cols % 16 == 0) go through the scalar conversion.
  const int64_t bc = w.block_cols;
  for (int64_t b0 = 0; b0 < w.cols; b0 += bc) {
    const int64_t b1 = b0 + bc < w.cols ? b0 + bc : w.cols;
    const int64_t v1 = b0 + (b1 - b0) / 16 * 16;
    const float scale = srow[b0 / bc];
    fp8_span<TB>(row, _mm256_set1_ps(scale * 256.0f), b0, v1, x, ldx, acc);
    for (int64_t c = v1; c < b1; ++c) {
      const float wv = fp8_e4m3_to_fp32(row[c]) * scale;
#pragma GCC unroll 8
      for (int t = 0; t < TB; ++t) tail[t] += wv * x[t * ldx + c];
    }
  }
#pragma GCC unroll 8
  for (int t = 0; t < TB; ++t) out[t] = hsum(_mm256_add_ps(acc[2 * t], acc[2 * t + 1])) + tail[t];
}

void fp8_gemm(const low_bit_gemm_args<fp8_block_matrix>& a) noexcept {
  const fp8_block_matrix& w = *a.w;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    for (int64_t t = 0; t < a.tokens; t += 4) {
      float sum[4];
      const float* x = a.x + t * a.ldx;
      switch (a.tokens - t) {
        case 1:
          fp8_row<1>(w, r, x, a.ldx, sum);
          break;
        case 2:
          fp8_row<2>(w, r, x, a.ldx, sum);
          break;
        case 3:
          fp8_row<3>(w, r, x, a.ldx, sum);
          break;
        default:
          fp8_row<4>(w, r, x, a.ldx, sum);
          break;
      }
      const int64_t n = a.tokens - t < 4 ? a.tokens - t : 4;
      for (int64_t i = 0; i < n; ++i) a.y[(t + i) * a.ldy + r] = sum[i];
    }
  }
}

}  // namespace

const low_bit_table& avx2_low_bit_kernels() noexcept {
  static const low_bit_table table{int4_gemm, fp8_gemm};
  return table;
}

}  // namespace troupe::kernels::cpu::detail
