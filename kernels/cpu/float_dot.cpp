// float_dot: the scalar definitions of llama.cpp's float-weight orders (float_dot.hpp), which
// every SIMD variant reproduces, and the dispatch. Built with -ffp-contract=off: each fma below
// is one of ggml's FMAs, each + one of its adds.
#include "cpu/float_dot.hpp"

#include <cmath>
#include <cstring>

#include "cpu/float_dot_impl.hpp"

namespace troupe::kernels::cpu {
namespace detail {

float reduce16(const float* v) noexcept {
  float h8[8], h4[4];
  for (int l = 0; l < 8; ++l) h8[l] = v[l + 8] + v[l];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l + 4] + h8[l];
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

namespace {

/// Element i of a weight row of `T` (f32, f16 or bf16 bits) as a float.
template <quant_type T>
float at(const void* p, int64_t i) noexcept {
  if constexpr (T == quant_type::f32) {
    return static_cast<const float*>(p)[i];
  } else if constexpr (T == quant_type::f16) {
    return fp16_to_fp32(static_cast<const uint16_t*>(p)[i]);
  } else {
    return bf16_to_fp32(static_cast<const uint16_t*>(p)[i]);
  }
}

/// Element i of an activation row for `T` weights (floats; bf16 bits for bf16).
template <quant_type T>
float act(const void* p, int64_t i) noexcept {
  if constexpr (T == quant_type::bf16) {
    return bf16_to_fp32(static_cast<const uint16_t*>(p)[i]);
  } else {
    return static_cast<const float*>(p)[i];
  }
}

float flush(float f) noexcept {
  return std::fpclassify(f) == FP_SUBNORMAL ? std::copysign(0.0f, f) : f;
}

/// One lane of VDPBF16PS: acc + w1·a1, then + w0·a0; products exact, sums rounded once each
/// (the double sum of a float and a 16-bit product rounds to the float sum), subnormal inputs
/// and results flushed to zero.
float dpbf16_lane(float acc, float w0, float a0, float w1, float a1) noexcept {
  const double p1 = static_cast<double>(flush(w1)) * flush(a1);
  const double p0 = static_cast<double>(flush(w0)) * flush(a0);
  const float t = flush(static_cast<float>(static_cast<double>(flush(acc)) + p1));
  return flush(static_cast<float>(static_cast<double>(t) + p0));
}

template <quant_type T>
float vec_dot(int64_t n, const void* w, const void* a) noexcept {
  const int64_t np = n & ~int64_t{63};
  if constexpr (T == quant_type::bf16) {
    float c[2][16] = {};
    for (int64_t i = 0; i < np; i += 64)
      for (int h = 0; h < 2; ++h)
        for (int l = 0; l < 16; ++l) {
          const int64_t e = i + h * 32 + 2 * l;
          c[h][l] =
              dpbf16_lane(c[h][l], at<T>(w, e), act<T>(a, e), at<T>(w, e + 1), act<T>(a, e + 1));
        }
    double sum = reduce16(c[0]);
    sum += static_cast<double>(reduce16(c[1]));
    for (int64_t i = np; i < n; ++i) sum += static_cast<double>(at<T>(w, i) * act<T>(a, i));
    return static_cast<float>(sum);
  } else {
    float acc[4][16] = {};
    for (int64_t i = 0; i < np; i += 64)
      for (int g = 0; g < 4; ++g)
        for (int l = 0; l < 16; ++l) {
          const int64_t e = i + g * 16 + l;
          acc[g][l] = std::fma(at<T>(w, e), act<T>(a, e), acc[g][l]);
        }
    float s[16];
    for (int l = 0; l < 16; ++l) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    if constexpr (T == quant_type::f16) {
      double sum = reduce16(s);  // f16 products are exact in float
      for (int64_t i = np; i < n; ++i) sum += static_cast<double>(at<T>(w, i) * act<T>(a, i));
      return static_cast<float>(sum);
    } else {
      float sum = reduce16(s);
      const int64_t fused = n - (n - np) % 8;  // the tail rule of float_dot.hpp
      for (int64_t i = np; i < fused; ++i) sum += at<T>(w, i) * act<T>(a, i);
      for (int64_t i = fused; i < n; ++i) sum = std::fma(at<T>(w, i), act<T>(a, i), sum);
      return sum;
    }
  }
}

template <quant_type T>
float tinyblas(int64_t n, const void* w, const void* a) noexcept {
  float acc[16] = {};
  if constexpr (T == quant_type::bf16) {
    for (int64_t i = 0; i < n; i += 32)
      for (int l = 0; l < 16; ++l) {
        const int64_t e = i + 2 * l;
        acc[l] = dpbf16_lane(acc[l], at<T>(w, e), act<T>(a, e), at<T>(w, e + 1), act<T>(a, e + 1));
      }
  } else {
    for (int64_t i = 0; i < n; i += 16)
      for (int l = 0; l < 16; ++l) acc[l] = std::fma(at<T>(w, i + l), act<T>(a, i + l), acc[l]);
  }
  return reduce16(acc);
}

template <quant_type T, ggml_float_order O>
void mat_mat(int64_t rows, int64_t n, const void* w, size_t row_stride, const void* a,
             size_t act_stride, int64_t tokens, float* y, int64_t y_stride) {
  const auto* wb = static_cast<const std::byte*>(w);
  const auto* ab = static_cast<const std::byte*>(a);
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      const void* wr = wb + static_cast<size_t>(r) * row_stride;
      const void* at_ = ab + static_cast<size_t>(t) * act_stride;
      y[t * y_stride + r] =
          O == ggml_float_order::vec_dot ? vec_dot<T>(n, wr, at_) : tinyblas<T>(n, wr, at_);
    }
}

void round_f16(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(fp32_to_fp16(x[i]));
}

void to_bf16(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_bf16(x[i]);
}

template <quant_type T>
constexpr float_mat_mat_fn pair[2] = {mat_mat<T, ggml_float_order::vec_dot>,
                                      mat_mat<T, ggml_float_order::tinyblas>};

bool cpu_has_avx512_bf16() noexcept {
#if defined(TROUPE_KERNELS_HAVE_AVX512)
  static const bool has = __builtin_cpu_supports("avx512bf16") && isa_available(isa::avx512);
  return has;
#else
  return false;
#endif
}

}  // namespace

const float_dot_table& scalar_float_dot() noexcept {
  static const float_dot_table t{"scalar",
                                 {{pair<quant_type::f32>[0], pair<quant_type::f32>[1]},
                                  {pair<quant_type::f16>[0], pair<quant_type::f16>[1]},
                                  {pair<quant_type::bf16>[0], pair<quant_type::bf16>[1]}},
                                 round_f16,
                                 to_bf16};
  return t;
}

std::vector<const float_dot_table*> float_dot_variants() {
  std::vector<const float_dot_table*> v{&scalar_float_dot()};
#if defined(TROUPE_KERNELS_HAVE_AVX2)
  if (isa_available(isa::avx2)) v.push_back(&avx2_float_dot());
#endif
#if defined(TROUPE_KERNELS_HAVE_AVX512)
  if (isa_available(isa::avx512)) v.push_back(&avx512_float_dot());
  if (cpu_has_avx512_bf16()) v.push_back(&avx512_bf16_float_dot());
#endif
  return v;
}

namespace {

const float_dot_table* table_for(isa level) noexcept {
  if (level == isa::best) level = best_isa();
  if (!isa_available(level)) return nullptr;
  switch (level) {
#if defined(TROUPE_KERNELS_HAVE_AVX512)
    case isa::avx512:
      return cpu_has_avx512_bf16() ? &avx512_bf16_float_dot() : &avx512_float_dot();
#endif
#if defined(TROUPE_KERNELS_HAVE_AVX2)
    case isa::avx2:
      return &avx2_float_dot();
#endif
    case isa::scalar:
      return &scalar_float_dot();
    default:
      return nullptr;
  }
}

int type_index(quant_type t) noexcept {
  switch (t) {
    case quant_type::f32:
      return 0;
    case quant_type::f16:
      return 1;
    case quant_type::bf16:
      return 2;
    default:
      return -1;
  }
}

}  // namespace
}  // namespace detail

int64_t ggml_float_activation_bytes(quant_type weight) noexcept {
  switch (weight) {
    case quant_type::f32:
    case quant_type::f16:
      return 4;
    case quant_type::bf16:
      return 2;
    default:
      return 0;
  }
}

ggml_float_order ggml_float_order_for(quant_type weight, int64_t rows, int64_t n,
                                      int64_t tokens) noexcept {
  const int64_t lanes = weight == quant_type::bf16 ? 32 : 16;
  if (tokens < 2 || rows % 4 != 0 || n % lanes != 0) return ggml_float_order::vec_dot;
  return ggml_float_order::tinyblas;
}

status ggml_float_activations(quant_type weight, const float* x, void* out, int64_t n,
                              isa level) noexcept {
  const detail::float_dot_table* table = detail::table_for(level);
  if (table == nullptr) return status::unsupported_isa;
  if (detail::type_index(weight) < 0) return status::unsupported_type;
  if (n < 0) return status::bad_size;
  if (n == 0) return status::ok;
  if (x == nullptr || out == nullptr) return status::null_pointer;
  if (weight == quant_type::f32) {
    std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
  } else if (weight == quant_type::f16) {
    table->round_f16(x, static_cast<float*>(out), n);
  } else {
    table->to_bf16(x, static_cast<uint16_t*>(out), n);
  }
  return status::ok;
}

status ggml_float_mat_mat(quant_type weight, ggml_float_order order, int64_t rows, int64_t n,
                          const void* w, size_t row_stride, const void* a, size_t act_stride,
                          int64_t tokens, float* y, int64_t y_stride, isa level) noexcept {
  const detail::float_dot_table* table = detail::table_for(level);
  if (table == nullptr) return status::unsupported_isa;
  const int ti = detail::type_index(weight);
  if (ti < 0) return status::unsupported_type;
  const int oi = static_cast<int>(order);
  if (oi > 1) return status::bad_size;
  const int64_t lanes = weight == quant_type::bf16 ? 32 : 16;
  if (rows < 0 || n < 0 || tokens < 0 || (tokens > 1 && y_stride < rows) ||
      (order == ggml_float_order::tinyblas && n % lanes != 0))
    return status::bad_size;
  if (rows == 0 || tokens == 0) return status::ok;
  if (y == nullptr || (n > 0 && (w == nullptr || a == nullptr))) return status::null_pointer;
  table->fn[ti][oi](rows, n, w, row_stride, a, act_stride, tokens, y, y_stride);
  return status::ok;
}

}  // namespace troupe::kernels::cpu
