// AVX2 + FMA variants of the forward-pass inner loops (see transformer_ops_impl.hpp). Built with
// -mavx2 -mfma -ffp-contract=off: every fused multiply-add here is written out, so each result
// is bit-identical to the scalar definition in transformer_ops.cpp (and to ggml's AVX-512 code).
// Only reached through transformer_ops.cpp's dispatch after the CPU check.

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "cpu/quant.hpp"
#include "cpu/transformer_ops_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

/// 2^k for integer lanes k in [-126, 127].
inline __m256 pow2(__m256i k) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}

/// ggml_v_expf as built for AVX-512, on 8 lanes. _mm512_scalef_ps(j, n) is j·2^n rounded once;
/// with |n| <= 192 it is (j·2^k1)·2^k2 with |k1| <= 100: the first product is exact (normal), the
/// second rounds once.
inline __m256 expf8(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b,
                                      _mm256_set1_ps(0x1.573e2ep-5f)),
                      u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b,
                                      _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i k1 =
      _mm256_max_epi32(_mm256_min_epi32(ni, _mm256_set1_epi32(100)), _mm256_set1_epi32(-100));
  const __m256i k2 = _mm256_sub_epi32(ni, k1);
  const __m256 res = _mm256_mul_ps(_mm256_mul_ps(j, pow2(k1)), pow2(k2));
  const __m256 out_of_range = _mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), n),
                                            _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256 non_positive = _mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ);
  const __m256 alt =
      _mm256_andnot_ps(non_positive, _mm256_set1_ps(std::numeric_limits<float>::infinity()));
  return _mm256_blendv_ps(res, alt, out_of_range);
}

/// _mm512_reduce_add_ps of the 16 lanes (lo = 0..7, hi = 8..15).
inline float reduce16(__m256 lo, __m256 hi) {
  const __m256 h8 = _mm256_add_ps(hi, lo);
  const __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
  const __m128 t = _mm_add_ps(h4, _mm_shuffle_ps(h4, h4, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

void swiglu_avx2(float* gate, const float* up, int64_t n) noexcept {
  int64_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = expf8(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(one, e));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
  }
  if (i < n) scalar_transformer_kernels().swiglu(gate + i, up + i, n - i);
}

/// geglu_scalar 8 at a time: x rounded to fp16 by F16C (nearest-even, as ggml's
/// GGML_CPU_FP32_TO_FP16), the table gathered, the ±10 cases blended in.
void geglu_avx2(float* gate, const float* up, int64_t n) noexcept {
  const float* table = gelu_table();
  const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(gate + i);
    const __m256i h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
    const __m256 g = _mm256_i32gather_ps(table, h, 4);
    const __m256 v = _mm256_blendv_ps(g, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
    const __m256 y = _mm256_mul_ps(v, _mm256_loadu_ps(up + i));
    _mm256_storeu_ps(gate + i, _mm256_blendv_ps(y, _mm256_setzero_ps(),
                                                 _mm256_cmp_ps(x, lo, _CMP_LE_OQ)));
  }
  if (i < n) scalar_transformer_kernels().geglu(gate + i, up + i, n - i);
}

void rope_avx2(float* x, int64_t heads, int64_t head_dim, int64_t rope_dim, const float* ca,
               const float* cb) noexcept {
  const int64_t vec = rope_dim & ~int64_t{7};
  for (int64_t h = 0; h < heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < vec; i += 8) {
      const __m256 xv = _mm256_loadu_ps(v + i);
      const __m256 x0 = _mm256_moveldup_ps(xv);  // x[2p] in both lanes of pair p
      const __m256 x1 = _mm256_movehdup_ps(xv);  // x[2p+1]
      _mm256_storeu_ps(v + i, _mm256_fmadd_ps(x0, _mm256_loadu_ps(ca + i),
                                              _mm256_mul_ps(x1, _mm256_loadu_ps(cb + i))));
    }
    for (int64_t i = vec; i < rope_dim; i += 2) {
      const float x0 = v[i], x1 = v[i + 1];
      v[i] = std::fma(x0, ca[i], x1 * cb[i]);
      v[i + 1] = std::fma(x0, ca[i + 1], x1 * cb[i + 1]);
    }
  }
}

/// 8 values of a cache row: floats, or f16 widened.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

/// ggml_vec_dot_f32 (AVX-512 order) of an f32 key row x and q, or ggml_vec_dot_f16 of an f16
/// key row (E = uint16_t) and q rounded to f16 (as floats), for n >= 0: the same 64 lanes, then
/// the n % 64 tail, which ggml adds in float (f32: products rounded in order, the last
/// (n % 64) % 8 fused, as GCC compiled it; see dot_vec_ggml) or in double (f16).
template <class E>
inline float dot_vec(const E* x, const float* y, int64_t n) {
  const int64_t np = n & ~int64_t{63};
  // Four 16-lane accumulators as eight named registers (an array of them was kept on the stack,
  // every FMA waiting on a store-forwarded reload).
  __m256 a0l = _mm256_setzero_ps(), a0h = a0l, a1l = a0l, a1h = a0l, a2l = a0l, a2h = a0l,
         a3l = a0l, a3h = a0l;
  for (int64_t i = 0; i < np; i += 64) {
    const auto fma = [&](__m256& acc, int64_t o) {
      acc = _mm256_fmadd_ps(load8(x + i + o), _mm256_loadu_ps(y + i + o), acc);
    };
    fma(a0l, 0), fma(a0h, 8), fma(a1l, 16), fma(a1h, 24);
    fma(a2l, 32), fma(a2h, 40), fma(a3l, 48), fma(a3h, 56);
  }
  const __m256 lo = _mm256_add_ps(_mm256_add_ps(a0l, a2l), _mm256_add_ps(a1l, a3l));
  const __m256 hi = _mm256_add_ps(_mm256_add_ps(a0h, a2h), _mm256_add_ps(a1h, a3h));
  if constexpr (std::is_same_v<E, uint16_t>) {
    double sum = reduce16(lo, hi);
    for (int64_t i = np; i < n; ++i) {
      const float p = _cvtsh_ss(x[i]) * y[i];
      sum += static_cast<double>(p);
    }
    return static_cast<float>(sum);
  } else {
    float sum = reduce16(lo, hi);
    const int64_t fused = n - (n - np) % 8;
    for (int64_t i = np; i < fused; ++i) sum += x[i] * y[i];
    for (int64_t i = fused; i < n; ++i) sum = __builtin_fmaf(x[i], y[i], sum);
    return sum;
  }
}

/// tinyBLAS's f16 order (n % 16 == 0): element i in lane i % 16 of one accumulator, reduced.
inline float dot_tinyblas_f16(const uint16_t* x, const float* y, int64_t n) {
  __m256 lo = _mm256_setzero_ps(), hi = lo;
  for (int64_t i = 0; i < n; i += 16) {
    lo = _mm256_fmadd_ps(load8(x + i), _mm256_loadu_ps(y + i), lo);
    hi = _mm256_fmadd_ps(load8(x + i + 8), _mm256_loadu_ps(y + i + 8), hi);
  }
  return reduce16(lo, hi);
}

template <class E>
void pv_lanes(const attention_head_args& a) noexcept;

void to_f16_avx2(const float* x, uint16_t* y, int64_t n) noexcept {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

/// round_to_f16 with F16C.
void round_to_f16_avx2(float* p, int64_t n) noexcept {
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    _mm256_storeu_ps(p + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(p + j),
                                                            _MM_FROUND_TO_NEAREST_INT)));
  for (; j < n; ++j) p[j] = _cvtsh_ss(_cvtss_sh(p[j], _MM_FROUND_TO_NEAREST_INT));
}

/// The scores s[j] = q·k_j of [first, n) over a cache of E (float, or f16 as uint16_t), -inf
/// before: ggml_vec_dot_f32's order for f32 keys in every batch, ggml_vec_dot_f16's or
/// tinyBLAS's (several tokens, head_dim % 16 == 0) for f16 keys with q rounded to f16 (q: a.q,
/// or a.q16 for f16; f16_scores is the scalar definition). Cache rows are kv_heads·head_dim
/// apart and, a layer later, no longer cached: the key and the value 8 positions ahead are
/// asked for, so that the keys arrive in time and the values are in L2 (a head's n·head_dim
/// elements) when the product with V walks them.
template <class E>
void scores_avx2(const attention_head_args& a, const float* q) noexcept {
  const int64_t n = a.n, d = a.head_dim;
  float* s = a.scores;
  const auto* k = static_cast<const E*>(a.k);
  const auto* v = static_cast<const E*>(a.v);
  constexpr int64_t per_line = 64 / sizeof(E);
  for (int64_t j = 0; j < a.first; ++j) s[j] = -std::numeric_limits<float>::infinity();
  for (int64_t j = a.first; j < n; ++j) {
    const int64_t ahead = (j + 8) * a.stride;
    for (int64_t i = 0; i < d; i += per_line) {
      __builtin_prefetch(k + ahead + i, 0, 3);
      __builtin_prefetch(v + ahead + i, 0, 2);
    }
    if constexpr (std::is_same_v<E, uint16_t>) {
      s[j] = !a.single_token && d % 16 == 0 ? dot_tinyblas_f16(k + j * a.stride, q, d)
                                            : dot_vec(k + j * a.stride, q, d);
    } else {
      s[j] = dot_vec(k + j * a.stride, q, d);
    }
  }
}

void attention_head_avx2(const attention_head_args& a) noexcept {
  const int64_t n = a.n, d = a.head_dim;
  if (d % 8 != 0) {
    scalar_transformer_kernels().attention_head(a);
    return;
  }
  float* s = a.scores;
  if (a.kv_f16) {
    std::copy_n(a.q, d, a.q16);
    round_to_f16_avx2(a.q16, d);
    scores_avx2<uint16_t>(a, a.q16);
  } else {
    scores_avx2<float>(a, a.q);
  }
  softcap_scores(s, a.first, n, a.softcap);
  // Softmax over 16-lane chunks; the padding lanes are -inf, whose exp is 0 as in ggml's mask.
  const int64_t n16 = (n + 15) / 16 * 16;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    s[j] *= a.scale;
    mx = std::max(mx, s[j]);
  }
  std::fill(s + n, s + n16, -std::numeric_limits<float>::infinity());
  const __m256 vmx = _mm256_set1_ps(mx);
  double sum = 0.0;
  for (int64_t c = 0; c < n16; c += 16) {
    const __m256 lo = expf8(_mm256_sub_ps(_mm256_loadu_ps(s + c), vmx));
    const __m256 hi = expf8(_mm256_sub_ps(_mm256_loadu_ps(s + c + 8), vmx));
    _mm256_storeu_ps(s + c, lo);
    _mm256_storeu_ps(s + c + 8, hi);
    sum += static_cast<double>(reduce16(lo, hi));
  }
  const auto inv = static_cast<float>(1.0 / sum);
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
  if (a.kv_f16) {
    round_to_f16_avx2(s, n);
    pv_lanes<uint16_t>(a);
  } else {
    pv_lanes<float>(a);
  }
}

/// attention_head_avx2's a.out = Σ_j p_j·v_j, p in a.scores, V of element type E.
template <class E>
void pv_lanes(const attention_head_args& a) noexcept {
  const int64_t n = a.n, d = a.head_dim;
  const float* s = a.scores;
  const E* v = static_cast<const E*>(a.v);
  // out = Σ_j p_j·v_j in ggml's accumulator lanes (see attention_head_args::single_token).
  const int64_t lanes = a.single_token ? 64 : 16;
  // Lane row l sums the positions j ≡ l (mod lanes) in increasing j, independently of the other
  // rows. V is walked once, row after row (each row's lane in acc, which stays in L1): walking
  // it lane by lane instead (each lane's sum in registers) jumped `lanes` rows at every step,
  // and at long contexts the cache misses cost more than the sums.
  float* acc = a.acc;  // [lanes, d]; rows at or past n are never stored
  const int64_t used = std::min(n, lanes);
  std::fill(acc, acc + used * d, 0.0f);
  // Masked positions (before a.first) have p = 0: their terms would leave the sums as they are
  // (a sum that starts at +0 never becomes -0), so the walk starts at the first visible one.
  for (int64_t j = a.first; j < n; ++j) {
    const __m256 p = _mm256_set1_ps(s[j]);
    const E* vj = v + j * a.stride;
    float* al = acc + (j & (lanes - 1)) * d;
    for (int64_t i = 0; i < d; i += 8)
      _mm256_storeu_ps(al + i, _mm256_fmadd_ps(load8(vj + i), p, _mm256_loadu_ps(al + i)));
  }
  // A row past n is the +0.0 it would hold (a short context need not clear and read 64 rows).
  const auto row = [&](int64_t l, int64_t i) {
    return l < used ? _mm256_loadu_ps(acc + l * d + i) : _mm256_setzero_ps();
  };
  for (int64_t i = 0; i < d; i += 8) {
    __m256 l16[16], h8[8], h4[4];
    for (int l = 0; l < 16; ++l) {
      l16[l] = lanes == 16 ? row(l, i)
                           : _mm256_add_ps(_mm256_add_ps(row(l, i), row(32 + l, i)),
                                           _mm256_add_ps(row(16 + l, i), row(48 + l, i)));
    }
    for (int l = 0; l < 8; ++l) h8[l] = _mm256_add_ps(l16[l + 8], l16[l]);
    for (int l = 0; l < 4; ++l) h4[l] = _mm256_add_ps(h8[l + 4], h8[l]);
    _mm256_storeu_ps(a.out + i, _mm256_add_ps(_mm256_add_ps(h4[0], h4[2]), _mm256_add_ps(h4[1], h4[3])));
  }
}

/// One block of ggml's x86 quantize_row_q8_{0,1}: writes qs, returns d (fp32) and Σq.
inline float quantize_block(const float* xb, int8_t* qs, int* sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
  const __m256 m8 =
      _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                    _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m8, 1), _mm256_castps256_ps128(m8));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
  const __m256i s4 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  *sum = _mm_cvtsi128_si32(s);
  const __m256i p =
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs),
                      _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return amax / 127.0f;
}

void quantize_q8_1_avx2(const float* x, void* vy, int64_t n) noexcept {
  auto* y = static_cast<block_q8_1*>(vy);
  for (int64_t b = 0; b < n / qk8_1; ++b) {
    int sum = 0;
    const float d = quantize_block(x + b * qk8_1, y[b].qs, &sum);
    y[b].d = _cvtsh_ss(_cvtss_sh(d, 0));
    y[b].s = _cvtsh_ss(_cvtss_sh(d * static_cast<float>(sum), 0));
  }
}

void quantize_q8_0_avx2(const float* x, void* vy, int64_t n) noexcept {
  auto* y = static_cast<block_q8_0*>(vy);
  for (int64_t b = 0; b < n / qk8_0; ++b) {
    int sum = 0;
    y[b].d = _cvtss_sh(quantize_block(x + b * qk8_0, y[b].qs, &sum), 0);
  }
}

}  // namespace

const transformer_table& avx2_transformer_kernels() noexcept {
  static constexpr transformer_table table{swiglu_avx2,        rope_avx2,
                                           attention_head_avx2, quantize_q8_1_avx2,
                                           quantize_q8_0_avx2,  geglu_avx2,
                                           to_f16_avx2};
  return table;
}

}  // namespace troupe::kernels::cpu::detail
