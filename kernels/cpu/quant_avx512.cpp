// AVX-512 (F + BW + VL) variants of the CPU quant kernels. Compiled with -mavx512f -mavx512bw
// -mavx512vl -mavx2 -mfma -mf16c; reached only through quant.cpp's dispatch after the CPU check.
// The activation quantisers are the AVX2 ones: they are O(n) per row, the dots are O(n·rows).
// The GGUF quant-type dots are the AVX2 ones too (see avx512_kernels()): f32/f16/bf16 here.

// GCC 12 warns about the deliberate `__Y = __Y` self-initialisation inside its own AVX-512
// intrinsics headers (GCC bug 105593); the warning is about the header, not this code.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "cpu/quant_impl.hpp"

namespace troupe::kernels::cpu::detail {
namespace {

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

}  // namespace

const kernel_table& avx512_kernels() noexcept {
  static const kernel_table table = [] {
    kernel_table t = avx2_kernels();  // activation quantisers
    t.dot_f32 = dot_f32;
    t.dot_f16 = dot_half<load_f16x16>;
    t.dot_bf16 = dot_half<load_bf16x16>;
    // The GGUF quant types keep the AVX2 dot products: their lane-for-lane order is ggml's (whose
    // x86 kernels for them are AVX2 ones), and two-blocks-per-zmm Q8_0/Q4_x versions measured
    // 1.4-1.9x slower than AVX2 on the dev VM (bench_quant, mat_vec 256x4096). Their multi-row
    // kernels use VNNI where the CPU has it (quant_avx512_vnni.cpp), else the AVX2 ones.
    if (__builtin_cpu_supports("avx512vnni")) use_avx512_vnni_kernels(t);
    return t;
  }();
  return table;
}

}  // namespace troupe::kernels::cpu::detail
