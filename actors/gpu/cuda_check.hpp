#pragma once
// CUDA and NCCL failures as troupe::error(model_failed), naming the device and the operation.

#include <cuda_runtime_api.h>

#include <string>

#include "cuda/status.hpp"
#include "troupe/error.hpp"

namespace troupe::gpu::detail {

inline void check_cuda(cudaError_t e, int device, const char* what) {
  if (e != cudaSuccess)
    throw error(errc::model_failed, "gpu device " + std::to_string(device) + ": " + what + ": " +
                                        cudaGetErrorString(e));
}

inline void check_launch(kernels::cuda::status s, int device, const char* what) {
  if (s != kernels::cuda::status::ok)
    throw error(errc::model_failed, "gpu device " + std::to_string(device) + ": " + what + ": " +
                                        kernels::cuda::to_string(s));
}

/// A device allocation owned by one actor (freed on its device by the destructor).
class device_buffer {
 public:
  device_buffer() = default;
  device_buffer(int device, size_t bytes, const char* what) : device_(device), bytes_(bytes) {
    if (bytes > 0) check_cuda(cudaMalloc(&ptr_, bytes), device, what);
  }
  ~device_buffer() {
    if (ptr_ != nullptr) {
      cudaSetDevice(device_);
      cudaFree(ptr_);
    }
  }
  device_buffer(device_buffer&& o) noexcept { swap(o); }
  device_buffer& operator=(device_buffer&& o) noexcept {
    device_buffer t(std::move(o));
    swap(t);
    return *this;
  }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  template <class T>
  T* as() const noexcept { return static_cast<T*>(ptr_); }
  size_t bytes() const noexcept { return bytes_; }

 private:
  void swap(device_buffer& o) noexcept {
    std::swap(device_, o.device_);
    std::swap(bytes_, o.bytes_);
    std::swap(ptr_, o.ptr_);
  }
  int device_ = 0;
  size_t bytes_ = 0;
  void* ptr_ = nullptr;
};

}  // namespace troupe::gpu::detail
