#pragma once
/// How much memory one GPU needs for a DeepSeek-V3-architecture model under expert parallelism,
/// worked out from the config before any weight is read, so that a model that cannot fit is
/// refused at once with the sizes that decide it. Host-only.
///
/// Per device d of N: the weights every device replicates (embeddings, attention, norms, routers,
/// dense and shared MLPs, lm_head) plus the routed experts that device d holds
/// (expert_placement), each at the bytes of its stored format (bf16 unless the checkpoint's
/// quantization covers it: INT4 group-32 is 0.5 byte per weight + one bf16 scale per group, the
/// same size after the tile repack; FP8 1 byte + an fp32 scale per block); the paged latent cache
/// (bf16, 64 positions a page, every layer's kv_lora + rope values); and a workspace for the
/// activations of the largest captured batch plus the cuBLASLt workspace.

#include <cstdint>
#include <string>

#include "troupe/deepseek/config.hpp"
#include "troupe/gpu/expert_placement.hpp"

namespace troupe::gpu {

struct device_memory_plan {
  int device = 0;
  int64_t replicated_weight_bytes = 0;  ///< on every device
  int64_t expert_weight_bytes = 0;      ///< this device's routed experts, all MoE layers
  int64_t kv_cache_bytes = 0;           ///< pages · kv_page_bytes
  int64_t workspace_bytes = 0;
  int64_t total() const noexcept {
    return replicated_weight_bytes + expert_weight_bytes + kv_cache_bytes + workspace_bytes;
  }
  /// "device 0: replicated weights 1.23 GiB + experts 4.56 GiB + latent cache ... = ... GiB"
  std::string describe() const;
};

/// Bytes of one page of the latent cache: 64 positions × layers × (kv_lora + rope) × 2.
int64_t kv_page_bytes(const deepseek::config& cfg) noexcept;

/// cuBLASLt workspace lent to every dense GEMM (ops.hpp: launch_dense_bf16_gemm).
inline constexpr int64_t gemm_workspace_bytes = int64_t{32} << 20;

/// The plan of device `device`: `pages` cache pages and activations for `max_batch` rows.
/// Throws troupe::error(invalid_argument) for device outside the placement, pages < 0,
/// max_batch < 1, or a placement whose expert count is not the config's.
device_memory_plan plan_device_memory(const deepseek::config& cfg, const expert_placement& placement,
                                      int device, int64_t pages, int64_t max_batch);

/// Throws troupe::error(budget_exceeded) when plan.total() exceeds free_bytes: the message names
/// the model (`what`), every part of the plan, the device's free bytes and what to do (more
/// devices, fewer cache pages, a smaller batch).
void check_fits(const device_memory_plan& plan, int64_t free_bytes, const std::string& what);

}  // namespace troupe::gpu
