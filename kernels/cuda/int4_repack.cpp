// The INT4 expert repack (checkpoint layout <-> K-group-major 16-byte tiles); see int4_repack.hpp.

#include "cuda/int4_repack.hpp"

namespace troupe::kernels::cuda {

namespace {

status check(int64_t n, int64_t k, int64_t expert) noexcept {
  if (n < 1 || k < int4_tile_group || k % int4_tile_group != 0 || expert < 0)
    return status::bad_size;
  return status::ok;
}

}  // namespace

status int4_repack_expert(const uint32_t* packed, int64_t packed_stride, const uint16_t* scales,
                          int64_t scale_stride, int64_t n, int64_t k, int64_t expert,
                          uint32_t* tiles, uint16_t* tile_scales) noexcept {
  if (const status s = check(n, k, expert); s != status::ok) return s;
  const int64_t groups = k / int4_tile_group;
  if (packed_stride < k / 8 || scale_stride < groups) return status::bad_size;
  if (packed == nullptr || scales == nullptr || tiles == nullptr || tile_scales == nullptr)
    return status::null_pointer;
  uint32_t* t = tiles + expert * int4_tile_words(n, k);
  uint16_t* ts = tile_scales + expert * int4_tile_scales(n, k);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < n; ++r) {
      const uint32_t* src = packed + r * packed_stride + g * 4;
      uint32_t* dst = t + (g * n + r) * 4;
      for (int w = 0; w < 4; ++w) dst[w] = src[w];
      ts[g * n + r] = scales[r * scale_stride + g];
    }
  return status::ok;
}

status int4_unpack_expert(const uint32_t* tiles, const uint16_t* tile_scales, int64_t n, int64_t k,
                          int64_t expert, uint32_t* packed, uint16_t* scales) noexcept {
  if (const status s = check(n, k, expert); s != status::ok) return s;
  if (packed == nullptr || scales == nullptr || tiles == nullptr || tile_scales == nullptr)
    return status::null_pointer;
  const int64_t groups = k / int4_tile_group;
  const uint32_t* t = tiles + expert * int4_tile_words(n, k);
  const uint16_t* ts = tile_scales + expert * int4_tile_scales(n, k);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < n; ++r) {
      for (int w = 0; w < 4; ++w) packed[r * (k / 8) + g * 4 + w] = t[(g * n + r) * 4 + w];
      scales[r * groups + g] = ts[g * n + r];
    }
  return status::ok;
}

}  // namespace troupe::kernels::cuda
