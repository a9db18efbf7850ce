#pragma once
/// The routed experts of a DeepSeek-V3-architecture model (INT4 experts: Kimi K2 / K2.5) on one
/// or more GPUs, as a deepseek::expert_runner: plug it into batch_decoder::options::experts and
/// every MoE layer's routed experts run on the GPUs while the rest of the step runs on the CPU.
///
/// Structure (actors/gpu/device_actors.hpp has the protocols): one detached device actor per GPU
/// owns the experts that expert_placement gives its rank, repacked into the grouped GEMM's tiles,
/// and its step buffers; each device actor has a stream actor that owns a CUDA stream and replays
/// one CUDA graph per (layer, row bucket). With N > 1 devices the device actors form an NCCL
/// communicator bootstrapped through actor messages (nccl_id.hpp: rank 0's ncclGetUniqueId
/// travels as an nccl_unique_id) and each layer's rows go out and come back by ncclSend/ncclRecv
/// along the all-to-all plan (all_to_all_plan.hpp) with the batch's tokens on rank 0. Messages
/// carry batches and pointers, never per-token traffic.
///
/// Only where troupe was built with CUDA (TROUPE_HAVE_CUDA; the library troupe_gpu); several
/// devices also need NCCL. UNVERIFIED on a GPU so far: see tests/gpu/test_gpu_experts.cpp.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "caf/actor_system.hpp"
#include "troupe/deepseek/experts.hpp"
#include "troupe/gpu/expert_placement.hpp"
#include "troupe/gpu/nccl_id.hpp"

namespace troupe::gpu {

class gpu_expert_group final : public deepseek::expert_runner {
 public:
  struct options {
    int devices = 0;           ///< this process's GPUs 0..devices-1; 0: every visible device
    /// Expert parallelism across processes: this process's devices are ranks [first_rank,
    /// first_rank + devices) of `world` ranks (0: world = devices, all in this process). The
    /// process with first_rank 0 makes the communicator's id and hands its bootstrap actor to
    /// on_bootstrap before waiting for the others (publish it with caf::io::publish); the other
    /// processes pass it (caf::io::remote_actor<nccl_bootstrap_actor>) as `bootstrap`. The
    /// constructors of all processes must run at the same time (NCCL's init waits for every
    /// rank), and every process must then call run() for every MoE layer in the same order, each
    /// with its own tokens (none is fine): the decoders step in lockstep.
    int world = 0;
    int first_rank = 0;
    nccl_bootstrap_actor bootstrap{};
    std::function<void(const nccl_bootstrap_actor&)> on_bootstrap{};
    int64_t max_rows = 8192;   ///< most (token, slot) rows one step brings to or from a device
    std::vector<int64_t> buckets{16, 32, 64, 128, 256, 512};  ///< row counts replayed as graphs
    int64_t block = 16;        ///< grouped GEMM rows per block: 16, 32 or 64
    /// Several ranks: the longest a device waits for one NCCL exchange of a layer (counts,
    /// dispatch, combine) before it gives up on its peers; see run() for what follows. It bounds
    /// the wait for the slowest rank to arrive, so keep it well above the longest a step of any
    /// process can take. 0: no deadline (a dead peer hangs the step, as cudaStreamSynchronize
    /// would; NCCL async errors still end it); negative: invalid_argument.
    std::chrono::milliseconds nccl_timeout{std::chrono::seconds(30)};
  };

  /// Spawns the device actors in `sys`, checks each device's memory budget and uploads the
  /// experts. Throws troupe::error: unsupported (no CUDA device, several devices without NCCL,
  /// experts that are not INT4 group-32 with bf16 scales, naming the tensor), invalid_argument
  /// (more devices than visible or than experts, ranks outside world, no bootstrap for a process
  /// with first_rank > 0), budget_exceeded (the sizes that do not fit),
  /// model_failed (a CUDA or NCCL call, naming device and call).
  gpu_expert_group(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m, options opts);
  ~gpu_expert_group() override;
  gpu_expert_group(const gpu_expert_group&) = delete;
  gpu_expert_group& operator=(const gpu_expert_group&) = delete;

  /// Computes every expert of batch.layer on the devices of every rank (the batch's tokens enter
  /// at this process's first rank); batch.out complete on return. Throws
  /// troupe::error(model_failed) naming the device and call that failed, budget_exceeded when the
  /// step has more rows than max_rows.
  ///
  /// A dead peer (several ranks; UNVERIFIED on a GPU): when a rank dies, throws, or skips a layer,
  /// its peers' NCCL exchanges never complete. Each device waits at most options::nccl_timeout
  /// per exchange, or until NCCL reports an async error, then aborts its NCCL communicator
  /// (ncclCommAbort), and run() throws model_failed naming the device and rank, the exchange
  /// (counts, dispatch or combine), the layer and what happened (timed out after N ms, or the
  /// NCCL error). A device whose own step fails aborts its communicator the same way, and so
  /// does a failed run() of several ranks for any other reason. From then on this group is
  /// unusable: every later run() throws model_failed at once with that first reason, touching no
  /// GPU. Destroy it and build a new group in every process (every rank's communicator is gone);
  /// the other ranks' logs say which rank failed first. Not bounded: the constructor's
  /// ncclCommInitRank, which waits for every rank (the constructor gives up after 600 s but the
  /// device actor stays blocked), and the first exchange with a peer, whose connection setup in
  /// ncclGroupEnd may block with NCCL's default blocking communicator.
  void run(const deepseek::expert_batch& batch) override;

  int devices() const noexcept;  ///< in this process
  const expert_placement& placement() const noexcept;  ///< over all `world` ranks

  /// CUDA devices this process sees (0 when none, or when the driver is missing).
  static int visible_devices() noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::gpu
