#pragma once
/// Private to the low-bit kernels: the per-ISA entry points that low_bit.cpp dispatches to after
/// it has checked every argument.

#include <cstdint>

#include "cpu/low_bit.hpp"

namespace troupe::kernels::cpu::detail {

/// A checked product: rows [row_begin, row_end) of w times `tokens` rows of x. Sizes are positive
/// and strides large enough; the kernels still skip nothing and write only those rows of y.
template <class Matrix>
struct low_bit_gemm_args {
  const Matrix* w;
  int64_t row_begin, row_end;
  const float* x;
  int64_t ldx, tokens;
  float* y;
  int64_t ldy;
};

struct low_bit_table {
  void (*int4_gemm)(const low_bit_gemm_args<int4_group_matrix>& a) noexcept;
  void (*fp8_gemm)(const low_bit_gemm_args<fp8_block_matrix>& a) noexcept;
};

const low_bit_table& scalar_low_bit_kernels() noexcept;
/// Defined in low_bit_avx2.cpp; only call after the CPU check passed.
const low_bit_table& avx2_low_bit_kernels() noexcept;

}  // namespace troupe::kernels::cpu::detail
