#include "troupe/gpu/int4_expert_stack.hpp"

#include <cstring>
#include <string>

#include "cpu/low_bit.hpp"
#include "cuda/int4_repack.hpp"
#include "troupe/error.hpp"

namespace troupe::gpu {

namespace kc = kernels::cuda;

void require_int4_group32(const deepseek::linear_weight& w) {
  if (w.fmt != deepseek::linear_weight::format::int4_group || w.group != 32 ||
      w.scale_type != static_cast<uint8_t>(kernels::cpu::scale_type::bf16))
    throw error(errc::unsupported,
                "gpu: " + w.name + " is not INT4 with group-32 bf16 scales; the GPU grouped GEMM "
                "(W4A16) computes only compressed-tensors pack-quantized experts (Kimi K2/K2.5)");
}

void repack_int4_experts(std::span<const deepseek::linear_weight* const> first,
                         std::span<const deepseek::linear_weight* const> second, int64_t n,
                         int64_t k, std::vector<uint32_t>& tiles, std::vector<uint16_t>& scales) {
  if (!second.empty() && second.size() != first.size())
    throw error(errc::invalid_argument, "gpu::repack_int4_experts: " + std::to_string(first.size()) +
                                            " first and " + std::to_string(second.size()) +
                                            " second matrices");
  if (n < 1 || k < 32 || k % 32 != 0)
    throw error(errc::invalid_argument, "gpu::repack_int4_experts: [" + std::to_string(n) + ", " +
                                            std::to_string(k) + "] is not a group-32 shape");
  const auto E = static_cast<int64_t>(first.size());
  tiles.assign(static_cast<size_t>(E * kc::int4_tile_words(n, k)), 0);
  scales.assign(static_cast<size_t>(E * kc::int4_tile_scales(n, k)), 0);
  std::vector<uint32_t> packed(static_cast<size_t>(n * (k / 8)));
  std::vector<uint16_t> sc(static_cast<size_t>(n * (k / 32)));
  for (int64_t e = 0; e < E; ++e) {
    int64_t row = 0;
    const auto i = static_cast<size_t>(e);
    for (const auto* w : {first[i], second.empty() ? nullptr : second[i]}) {
      if (w == nullptr) continue;
      require_int4_group32(*w);
      if (w->cols != k || row + w->rows > n)
        throw error(errc::invalid_argument, "gpu::repack_int4_experts: " + w->name + " is [" +
                                                std::to_string(w->rows) + ", " + std::to_string(w->cols) +
                                                "], which does not fit an expert of [" +
                                                std::to_string(n) + ", " + std::to_string(k) + "]");
      const auto* s = static_cast<const uint16_t*>(w->scales);
      for (int64_t r = 0; r < w->rows; ++r, ++row) {
        std::memcpy(packed.data() + row * (k / 8), w->packed + r * w->packed_stride,
                    static_cast<size_t>(k / 8) * sizeof(uint32_t));
        std::memcpy(sc.data() + row * (k / 32), s + r * w->scale_stride,
                    static_cast<size_t>(k / 32) * sizeof(uint16_t));
      }
    }
    if (row != n)
      throw error(errc::invalid_argument, "gpu::repack_int4_experts: expert " + std::to_string(e) +
                                              " has " + std::to_string(row) + " rows, expected " +
                                              std::to_string(n));
    const auto st = kc::int4_repack_expert(packed.data(), k / 8, sc.data(), k / 32, n, k, e,
                                           tiles.data(), scales.data());
    if (st != kc::status::ok)
      throw error(errc::internal, std::string("gpu: int4_repack_expert: ") + kc::to_string(st));
  }
}

}  // namespace troupe::gpu
