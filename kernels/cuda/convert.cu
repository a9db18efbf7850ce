// Device code of the element-type conversions (contract: convert.hpp).

#include "cuda/common.cuh"
#include "cuda/convert.hpp"

#include <algorithm>

namespace troupe::kernels::cuda {

namespace {

__global__ void f32_to_bf16_kernel(const float* x, int64_t ldx, uint16_t* y, int64_t ldy, int64_t n) {
  const int64_t r = blockIdx.y;
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    y[r * ldy + i] = detail::f32_to_bf16(x[r * ldx + i]);
}

}  // namespace

status launch_f32_to_bf16(const float* x, int64_t ldx, uint16_t* y, int64_t ldy, int64_t rows,
                          int64_t n, cudaStream_t stream) noexcept {
  if (rows < 0 || n < 0 || ldx < n || ldy < n || rows > 65535) return status::bad_size;
  if (rows == 0 || n == 0) return status::ok;
  if (x == nullptr || y == nullptr) return status::null_pointer;
  constexpr int threads = 256;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(detail::ceil_div(n, threads), 64)),
                  static_cast<unsigned>(rows));
  f32_to_bf16_kernel<<<grid, threads, 0, stream>>>(x, ldx, y, ldy, n);
  return detail::launched();
}

}  // namespace troupe::kernels::cuda
