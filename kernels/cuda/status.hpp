#pragma once
/// What the CUDA backend's host entries report. Launch entries check their arguments before
/// touching the device, so a bad argument never reaches a kernel; device-side faults surface later,
/// at the stream's next synchronisation, as CUDA errors of the caller's own.

#include <cstdint>

namespace troupe::kernels::cuda {

enum class status : uint8_t {
  ok = 0,
  bad_size = 1,        ///< A size is negative, zero where it must not be, or not a required multiple.
  null_pointer = 2,    ///< A pointer the work needs is null.
  unsupported = 3,     ///< A shape or parameter this backend has no kernel for (say which in the doc).
  launch_failed = 4,   ///< cudaGetLastError after the launch was not cudaSuccess.
  library_failed = 5,  ///< cuBLASLt refused the problem or failed.
};

/// "ok", "bad_size", ...
const char* to_string(status s) noexcept;

}  // namespace troupe::kernels::cuda
