#pragma once
/// Element-type conversions between the CUDA backend's ops: the grouped and dense GEMMs read bf16
/// activations (ops.hpp), the elementwise ops write fp32. Device pointers; contract as ops.hpp.

#include <cuda_runtime_api.h>

#include <cstdint>

#include "cuda/status.hpp"

namespace troupe::kernels::cuda {

/// y[r, i] = bf16(x[r, i]) (round to nearest even, NaN kept quiet: kernels/cpu fp32_to_bf16) for
/// r < rows, i < n; x [rows, ldx] fp32, y [rows, ldy] bf16 bits; ldx, ldy >= n.
/// bad_size: negative sizes or strides below n; null_pointer: a null pointer with work to do.
status launch_f32_to_bf16(const float* x, int64_t ldx, uint16_t* y, int64_t ldy, int64_t rows,
                          int64_t n, cudaStream_t stream) noexcept;

}  // namespace troupe::kernels::cuda
