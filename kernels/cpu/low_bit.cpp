// Argument checks, run-time dispatch and the scalar reference of the low-bit weight kernels.
// Built for baseline x86-64 like quant.cpp: the scalar kernels here are what the SIMD variants
// are tested against.

#include "cpu/low_bit.hpp"

#include <cmath>
#include <cstring>

#include "cpu/low_bit_impl.hpp"

namespace troupe::kernels::cpu {

namespace {

int64_t ceil_div(int64_t a, int64_t b) noexcept { return (a + b - 1) / b; }

float float_of(uint32_t u) noexcept {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

float load_scale(const void* scales, scale_type t, int64_t i) noexcept {
  switch (t) {
    case scale_type::bf16:
      return bf16_to_fp32(static_cast<const uint16_t*>(scales)[i]);
    case scale_type::f16:
      return fp16_to_fp32(static_cast<const uint16_t*>(scales)[i]);
    case scale_type::f32:
      return static_cast<const float*>(scales)[i];
  }
  return 0.0f;
}

/// q in [-8, 7] of column c of a packed row.
int int4_at(const uint32_t* row, int64_t c) noexcept {
  return static_cast<int>((row[c / 8] >> (4 * (c % 8))) & 0xF) - 8;
}

status check_matrix(const int4_group_matrix& w) noexcept {
  if (w.rows < 0 || w.cols < 0 || w.group <= 0 || w.group % 8 != 0) return status::bad_size;
  if (w.scales_type != scale_type::bf16 && w.scales_type != scale_type::f16 &&
      w.scales_type != scale_type::f32)
    return status::unsupported_type;
  if (w.packed_stride < ceil_div(w.cols, 8) || w.scale_stride < ceil_div(w.cols, w.group))
    return status::bad_size;
  if (w.rows > 0 && w.cols > 0 && (w.packed == nullptr || w.scales == nullptr))
    return status::null_pointer;
  return status::ok;
}

status check_matrix(const fp8_block_matrix& w) noexcept {
  if (w.rows < 0 || w.cols < 0 || w.block_rows <= 0 || w.block_cols <= 0) return status::bad_size;
  if (w.stride < w.cols || w.scale_stride < ceil_div(w.cols, w.block_cols)) return status::bad_size;
  if (w.rows > 0 && w.cols > 0 && (w.data == nullptr || w.scale_inv == nullptr))
    return status::null_pointer;
  return status::ok;
}

const detail::low_bit_table* table_for(isa level) noexcept {
  if (level == isa::best) level = best_isa();
  if (!isa_available(level)) return nullptr;
  switch (level) {
#if defined(TROUPE_KERNELS_HAVE_AVX2)
    // AVX-512 machines run the AVX2 kernels: no AVX-512 variant yet (the development VM these
    // were written on has no AVX-512 to test one).
    case isa::avx2:
    case isa::avx512:
      return &detail::avx2_low_bit_kernels();
#endif
    case isa::scalar:
      return &detail::scalar_low_bit_kernels();
    default:
      return nullptr;
  }
}

/// Checks what both products share and runs `kernel` unless there is nothing to do.
template <class Matrix>
status run_gemm(const Matrix& w, int64_t row_begin, int64_t row_end, const float* x, int64_t ldx,
                int64_t tokens, float* y, int64_t ldy, isa level,
                void (*detail::low_bit_table::*kernel)(
                    const detail::low_bit_gemm_args<Matrix>&) noexcept) noexcept {
  const detail::low_bit_table* table = table_for(level);
  if (table == nullptr) return status::unsupported_isa;
  if (status s = check_matrix(w); s != status::ok) return s;
  if (row_begin < 0 || row_end < row_begin || row_end > w.rows || tokens < 0)
    return status::bad_size;
  if (tokens > 1 && (ldx < w.cols || ldy < row_end)) return status::bad_size;
  if (tokens == 0 || row_end == row_begin) return status::ok;
  if (y == nullptr || (w.cols > 0 && x == nullptr)) return status::null_pointer;
  if (w.cols == 0) {
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t r = row_begin; r < row_end; ++r) y[t * ldy + r] = 0.0f;
    return status::ok;
  }
  (table->*kernel)({&w, row_begin, row_end, x, ldx, tokens, y, ldy});
  return status::ok;
}

}  // namespace

float fp8_e4m3_to_fp32(uint8_t v) noexcept {
  const uint32_t sign = static_cast<uint32_t>(v & 0x80) << 24;
  const uint32_t e = (v >> 3) & 0xF, m = v & 7;
  if (e == 0xF && m == 7) return float_of(sign | 0x7FC00000u);
  if (e == 0) {  // subnormal: m/8 · 2^-6
    const float v = static_cast<float>(m) * 0x1.0p-9f;
    return sign != 0 ? -v : v;
  }
  return float_of(sign | ((e + 120) << 23) | (m << 20));
}

namespace detail {
namespace {

void int4_gemm_scalar(const low_bit_gemm_args<int4_group_matrix>& a) noexcept {
  const int4_group_matrix& w = *a.w;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const uint32_t* row = w.packed + r * w.packed_stride;
    const int64_t srow = r * w.scale_stride;
    for (int64_t t = 0; t < a.tokens; ++t) {
      const float* x = a.x + t * a.ldx;
      float acc = 0.0f;
      for (int64_t c0 = 0, g = 0; c0 < w.cols; c0 += w.group, ++g) {
        const int64_t c1 = c0 + w.group < w.cols ? c0 + w.group : w.cols;
        float sum = 0.0f;
        for (int64_t c = c0; c < c1; ++c) sum += static_cast<float>(int4_at(row, c)) * x[c];
        acc += sum * load_scale(w.scales, w.scales_type, srow + g);
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

void fp8_gemm_scalar(const low_bit_gemm_args<fp8_block_matrix>& a) noexcept {
  const fp8_block_matrix& w = *a.w;
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const uint8_t* row = w.data + r * w.stride;
    const float* srow = w.scale_inv + (r / w.block_rows) * w.scale_stride;
    for (int64_t t = 0; t < a.tokens; ++t) {
      const float* x = a.x + t * a.ldx;
      float acc = 0.0f;
      for (int64_t c0 = 0, b = 0; c0 < w.cols; c0 += w.block_cols, ++b) {
        const int64_t c1 = c0 + w.block_cols < w.cols ? c0 + w.block_cols : w.cols;
        float sum = 0.0f;
        for (int64_t c = c0; c < c1; ++c) sum += fp8_e4m3_to_fp32(row[c]) * x[c];
        acc += sum * srow[b];
      }
      a.y[t * a.ldy + r] = acc;
    }
  }
}

}  // namespace

const low_bit_table& scalar_low_bit_kernels() noexcept {
  static const low_bit_table table{int4_gemm_scalar, fp8_gemm_scalar};
  return table;
}

}  // namespace detail

status int4_group_gemm(const int4_group_matrix& w, int64_t row_begin, int64_t row_end,
                       const float* x, int64_t ldx, int64_t tokens, float* y, int64_t ldy,
                       isa level) noexcept {
  return run_gemm(w, row_begin, row_end, x, ldx, tokens, y, ldy, level,
                  &detail::low_bit_table::int4_gemm);
}

status fp8_block_gemm(const fp8_block_matrix& w, int64_t row_begin, int64_t row_end, const float* x,
                      int64_t ldx, int64_t tokens, float* y, int64_t ldy, isa level) noexcept {
  return run_gemm(w, row_begin, row_end, x, ldx, tokens, y, ldy, level,
                  &detail::low_bit_table::fp8_gemm);
}

status int4_group_dequantize_row(const int4_group_matrix& w, int64_t r, float* out) noexcept {
  if (status s = check_matrix(w); s != status::ok) return s;
  if (r < 0 || r >= w.rows) return status::bad_size;
  if (w.cols == 0) return status::ok;
  if (out == nullptr) return status::null_pointer;
  const uint32_t* row = w.packed + r * w.packed_stride;
  for (int64_t c0 = 0, g = 0; c0 < w.cols; c0 += w.group, ++g) {
    const float s = load_scale(w.scales, w.scales_type, r * w.scale_stride + g);
    const int64_t c1 = c0 + w.group < w.cols ? c0 + w.group : w.cols;
    for (int64_t c = c0; c < c1; ++c) out[c] = static_cast<float>(int4_at(row, c)) * s;
  }
  return status::ok;
}

status fp8_block_dequantize_row(const fp8_block_matrix& w, int64_t r, float* out) noexcept {
  if (status s = check_matrix(w); s != status::ok) return s;
  if (r < 0 || r >= w.rows) return status::bad_size;
  if (w.cols == 0) return status::ok;
  if (out == nullptr) return status::null_pointer;
  const uint8_t* row = w.data + r * w.stride;
  const float* srow = w.scale_inv + (r / w.block_rows) * w.scale_stride;
  for (int64_t c = 0; c < w.cols; ++c) out[c] = fp8_e4m3_to_fp32(row[c]) * srow[c / w.block_cols];
  return status::ok;
}

status int4_group_quantize(const float* w, int64_t rows, int64_t cols, int64_t group,
                           uint32_t* packed, uint16_t* scales_bf16) noexcept {
  if (rows < 0 || cols < 0 || group <= 0 || group % 8 != 0) return status::bad_size;
  if (rows == 0 || cols == 0) return status::ok;
  if (w == nullptr || packed == nullptr || scales_bf16 == nullptr) return status::null_pointer;
  const int64_t words = ceil_div(cols, 8), groups = ceil_div(cols, group);
  const auto bf16 = [](float f) { return bf16_to_fp32(fp32_to_bf16(f)); };
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = w + r * cols;
    uint32_t* out = packed + r * words;
    for (int64_t i = 0; i < words; ++i) out[i] = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t c0 = g * group, c1 = c0 + group < cols ? c0 + group : cols;
      float absmax = 0.0f;
      for (int64_t c = c0; c < c1; ++c) absmax = std::fmax(absmax, std::fabs(bf16(in[c])));
      // PyTorch on bf16 tensors: each operation in fp32, the result rounded to bf16.
      uint16_t sb = fp32_to_bf16(absmax / 7.5f);
      if (bf16_to_fp32(sb) == 0.0f) sb = fp32_to_bf16(0x1.0p-7f);  // torch.finfo(bf16).eps
      scales_bf16[r * groups + g] = sb;
      const float s = bf16_to_fp32(sb);
      for (int64_t c = c0; c < c1; ++c) {
        float v = bf16(bf16(in[c]) / s);
        if (!(v >= -8.0f)) v = -8.0f;  // NaN lands here too
        if (!(v <= 7.0f)) v = 7.0f;
        const auto q = static_cast<int>(std::nearbyint(v));  // half to even, as torch.round
        out[c / 8] |= static_cast<uint32_t>(q + 8) << (4 * (c % 8));
      }
    }
  }
  return status::ok;
}

}  // namespace troupe::kernels::cpu
