// AVX-512 (F + BW + VL) variants of the CPU quant kernels. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx2 -mfma -mf16c; reached only through quant.cpp's dispatch after the CPU check.
// The activation quantisers are the AVX2 ones: they are O(n) per row, the dots are O(n·rows).
// Q8_0/Q4_0/Q4_1 dots are the AVX2 ones too (see avx512_kernels()).

// GCC 12 warns about the deliberate `__Y = __Y` self-initialisation inside its own AVX-512
// intrinsics headers (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

inline float fp16(uint16_t h) { return _cvtsh_ss(h); }

inline __m512i load512(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline __m512i join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

float dot_f32(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const float*>(w);
  const auto* y = static_cast<const float*>(a);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), acc1);
  }
  if (i < n) {  // masked tail, at most two steps
    for (; i < n; i += 16) {
      const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
      acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc0);
    }
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

inline __m512 load_f16x16(__mmask16 m, const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

inline __m512 load_bf16x16(__mmask16 m, const uint16_t* p) {
  const __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

template <__m512 (*Load)(__mmask16, const uint16_t*)>
float dot_half(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const uint16_t*>(w);
  const auto* y = static_cast<const float*>(a);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm512_fmadd_ps(Load(0xFFFF, x + i), _mm512_loadu_ps(y + i), acc0);
    acc1 = _mm512_fmadd_ps(Load(0xFFFF, x + i + 16), _mm512_loadu_ps(y + i + 16), acc1);
  }
  for (; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (n - i)) - 1);
    acc0 = _mm512_fmadd_ps(Load(m, x + i), _mm512_maskz_loadu_ps(m, y + i), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

float dot_q4_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q4_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  __m512 acc = _mm512_setzero_ps();
  float accm = 0.0f;
  for (int64_t i = 0; i < n / qk_k; ++i) {
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; ++j) q4_k_scale_min(j, x[i].scales, &sc[j], &m[j]);
    int summ = 0;
    for (int j = 0; j < 8; ++j) summ += m[j] * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    __m512i sumi = _mm512_setzero_si512();
    for (int j = 0; j < 4; ++j) {
      // 64 elements: the 32 low nibbles then the 32 high nibbles, matching q8 bytes 64j..64j+63.
      const __m256i q4 = load256(x[i].qs + 32 * j);
      const __m512i qx = join(_mm256_and_si256(q4, low4),
                              _mm256_and_si256(_mm256_srli_epi16(q4, 4), low4));
      const __m512i p = _mm512_maddubs_epi16(qx, load512(y[i].qs + 64 * j));
      const __m512i s = _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_set1_epi16(sc[2 * j]),
                                                _mm512_set1_epi16(sc[2 * j + 1]));
      sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(p, s));
    }
    const float d = fp16(x[i].d) * y[i].d;
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
    accm += fp16(x[i].dmin) * y[i].d * static_cast<float>(summ);
  }
  return _mm512_reduce_add_ps(acc) - accm;
}

float dot_q6_k(int64_t n, const void* w, const void* a) {
  const auto* x = static_cast<const block_q6_k*>(w);
  const auto* y = static_cast<const block_q8_k*>(a);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i two = _mm512_set1_epi8(0x03);
  // Per 16-bit lane shift of the high bits: quants 0..31 take qh bits 0-1 / 4-5, 32..63 bits 2-3 / 6-7.
  const __m512i shift12 = join(_mm256_set1_epi16(0), _mm256_set1_epi16(2));
  const __m512i shift34 = join(_mm256_set1_epi16(4), _mm256_set1_epi16(6));
  // Each 128-bit lane (16 quants) takes one scale: lanes 0..3 <- scales 0..3 (or 4..7).
  const __m512i pick_lo = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1,
                                           1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512i pick_hi = _mm512_add_epi16(pick_lo, _mm512_set1_epi16(4));
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < n / qk_k; ++i) {
    __m512i sumi = _mm512_setzero_si512();
    int corr = 0;
    for (int j = 0; j < 16; ++j) corr += x[i].scales[j] * y[i].bsums[j];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = x[i].ql + 64 * h;
      const int8_t* q8 = y[i].qs + 128 * h;
      const __m512i l = load512(ql);  // [ql 0..31 | ql 32..63]
      const __m256i hb256 = load256(x[i].qh + 32 * h);
      const __m512i hb = join(hb256, hb256);
      const __m512i h12 = _mm512_and_si512(_mm512_srlv_epi16(hb, shift12), two);
      const __m512i h34 = _mm512_and_si512(_mm512_srlv_epi16(hb, shift34), two);
      const __m512i q12 = _mm512_or_si512(_mm512_and_si512(l, low4), _mm512_slli_epi16(h12, 4));
      const __m512i q34 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), low4),
                                          _mm512_slli_epi16(h34, 4));
      const __m128i sc16 = _mm_cvtepi8_epi16(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[i].scales + 8 * h)));
      const __m512i scb = _mm512_broadcast_i32x4(sc16);
      const __m512i s12 = _mm512_permutexvar_epi16(pick_lo, scb);
      const __m512i s34 = _mm512_permutexvar_epi16(pick_hi, scb);
      sumi = _mm512_add_epi32(sumi, _mm512_madd_epi16(_mm512_maddubs_epi16(q12, load512(q8)), s12));
      sumi = _mm512_add_epi32(sumi,
                              _mm512_madd_epi16(_mm512_maddubs_epi16(q34, load512(q8 + 64)), s34));
    }
    sumi = _mm512_sub_epi32(sumi, _mm512_maskz_set1_epi32(1, 32 * corr));
    const float d = fp16(x[i].d) * y[i].d;
    acc = _mm512_fmadd_ps(_mm512_set1_ps(d), _mm512_cvtepi32_ps(sumi), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace

const kernel_table& avx512_kernels() noexcept {
  static const kernel_table table = [] {
    kernel_table t = avx2_kernels();  // activation quantisers
    t.dot_f32 = dot_f32;
    t.dot_f16 = dot_half<load_f16x16>;
    t.dot_bf16 = dot_half<load_bf16x16>;
    // Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 keep the AVX2 dot products: two-blocks-per-zmm versions
    // measured 1.4-1.9x slower than AVX2 on the dev VM (bench_quant, mat_vec 256x4096), and only
    // the order of the AVX2 one matches ggml. Their multi-row kernels (Q4_0's excepted) take two
    // rows per zmm with VNNI where the CPU has it (quant_avx512_vnni.cpp), else the AVX2 ones.
    if (__builtin_cpu_supports("avx512vnni")) {
      t.mat_mat_q4_1 = mat_mat_q4_1_avx512_vnni;
      t.mat_mat_q8_0 = mat_mat_q8_0_avx512_vnni;
      t.mat_mat_q5_0 = mat_mat_q5_0_avx512_vnni;
      t.mat_mat_q5_1 = mat_mat_q5_1_avx512_vnni;
    }
    t.dot_q4_k = dot_q4_k;
    t.dot_q6_k = dot_q6_k;
    return t;
  }();
  return table;
}

}  // namespace troupe::kernels::cpu::detail
