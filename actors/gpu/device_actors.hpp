#pragma once
// The actors of the GPU backend (private: in-process only; their messages carry host and device
// pointers, which is why the message types are CAF_ALLOW_UNSAFE and never cross a process).
//
// stream_actor: owns one CUDA stream of one device and the CUDA graphs captured on it.
//   (gpu_ffn_atom, expert_ffn) -> bool
//     runs one MoE layer's routed-expert FFN over moe-aligned rows on its stream: grouped W4A16
//     GEMM (gate and up fused) -> SiLU·up -> bf16 -> grouped GEMM (down). With bucket_index >= 0
//     the sequence is captured once per (layer, bucket_index) as a CUDA graph
//     (cudaStreamBeginCapture/EndCapture/GraphInstantiate) on first use and replayed after: the
//     caller must pass the same pointers and sizes for the same key every time (the graph holds
//     them). Replies after cudaStreamSynchronize, or with the troupe::error(model_failed) of the
//     failing call. Detached: it blocks its own thread only.
//
// device_actor: owns one GPU (cudaSetDevice on its thread), the routed experts of every MoE
//   layer that expert_placement gives its rank (INT4 repacked to tiles, int4_repack.hpp), the step
//   buffers, a copy/communication stream, its stream_actor and, with several ranks, its NCCL
//   communicator. Detached. Messages, in this order:
//   (gpu_load_atom) -> bool           checks the memory budget (device_memory.hpp), uploads the
//                                      experts, allocates buffers. Errors: budget_exceeded (sizes
//                                      named), unsupported (a weight format the kernels lack,
//                                      naming the tensor), model_failed (a CUDA call).
//   (nccl_id_atom) -> nccl_unique_id  rank 0 only: ncclGetUniqueId.
//   (nccl_init_atom, bootstrap, id, rank, ranks) -> bool
//                                      rank 0 uses `id`; other ranks fetch the id from `bootstrap`
//                                      (nccl_id.hpp protocol), then ncclCommInitRank, which blocks
//                                      until every rank has called it: send this to all ranks at
//                                      once. unsupported when troupe was built without NCCL.
//   (expert_step_atom, device_step) -> bool
//                                      one MoE layer's all-to-all (all_to_all_plan.hpp): every
//                                      rank brings its own rows in its plan's order (possibly
//                                      none); with several ranks the per-peer counts are exchanged
//                                      first (one int64 each way per peer), then rows (bf16) and
//                                      their experts (int32) go by ncclSend/ncclRecv, are aligned
//                                      to blocks on the host (align_received), computed by the
//                                      stream actor, and return by ncclSend/ncclRecv; each rank
//                                      copies its own rows back to step.back in plan order. Every
//                                      rank of the communicator must get every layer's step, in
//                                      the same order (NCCL calls pair up across ranks). The step's
//                                      host arrays are borrowed until the reply.
//                                      Failure with several ranks (UNVERIFIED on a GPU): each
//                                      NCCL exchange (counts, dispatch, combine) is awaited by
//                                      polling a CUDA event and ncclCommGetAsyncError for at most
//                                      device_options::nccl_timeout (completion_wait.hpp). On a
//                                      timeout, an NCCL async error, or any other failure of the
//                                      step (once a rank skips part of a step, its peers' NCCL
//                                      calls no longer pair with its own), the actor calls
//                                      ncclCommAbort, drops the communicator and is broken: it
//                                      replies with the step's error (model_failed naming device,
//                                      rank, exchange, layer and what happened for a timeout or
//                                      an NCCL error), then answers every later message at once
//                                      with model_failed naming that first reason, touching no
//                                      NCCL. The peers of a failed rank time out in their own
//                                      wait and break the same way: the expert group must be
//                                      rebuilt. Not bounded: ncclCommInitRank (blocks until every
//                                      rank joins) and ncclGroupEnd (a blocking communicator may
//                                      wait there while it connects to a peer on first use).
//                                      With one rank there is no NCCL and nothing breaks.

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "caf/allowed_unsafe_message_type.hpp"
#include "caf/typed_actor.hpp"
#include "cuda/ops.hpp"
#include "troupe/atoms.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/gpu/expert_placement.hpp"
#include "troupe/gpu/nccl_id.hpp"

namespace troupe::gpu {

using gpu_ffn_atom = caf::atom_constant<caf::atom("gpuffn")>;
using gpu_load_atom = caf::atom_constant<caf::atom("gpuload")>;
using nccl_id_atom = caf::atom_constant<caf::atom("ncclid")>;
using nccl_init_atom = caf::atom_constant<caf::atom("ncclinit")>;

/// One layer's expert FFN on device buffers (see stream_actor).
struct expert_ffn {
  int64_t layer = 0;
  int64_t bucket_index = -1;  ///< >= 0: captured and replayed as a graph under (layer, index)
  kernels::cuda::moe_gemm_args gate_up;  ///< y = gate_up_out [rows, 2·inter]
  kernels::cuda::moe_gemm_args down;     ///< a = act_bf16 [rows, inter]
  float* gate_up_out = nullptr;
  float* act = nullptr;         ///< [rows, inter] fp32
  uint16_t* act_bf16 = nullptr;  ///< [rows, inter]
  int64_t rows = 0, inter = 0;
};

using stream_actor = caf::typed_actor<caf::replies_to<gpu_ffn_atom, expert_ffn>::with<bool>>;

/// One MoE layer's exchange as seen by one rank: its own rows, planned by plan_dispatch.
struct device_step {
  int64_t layer = 0;
  int64_t rows = 0;                       ///< this rank's (token, slot) rows
  const uint16_t* send_x = nullptr;       ///< [rows, hidden] bf16, plan order
  const int32_t* send_experts = nullptr;  ///< [rows] global expert of each row
  const int64_t* send_counts = nullptr;   ///< [ranks] rows to each peer
  const int64_t* send_offsets = nullptr;  ///< [ranks + 1]
  float* back = nullptr;                  ///< [rows, hidden] fp32 out, plan order
};

using device_actor = caf::typed_actor<
    caf::replies_to<gpu_load_atom>::with<bool>,
    caf::replies_to<nccl_id_atom>::with<nccl_unique_id>,
    caf::replies_to<nccl_init_atom, nccl_bootstrap_actor, nccl_unique_id, int32_t, int32_t>::with<bool>,
    caf::replies_to<expert_step_atom, device_step>::with<bool>>;

struct device_options {
  int device = 0;            ///< CUDA ordinal
  int64_t max_rows = 8192;   ///< most (token, slot) rows a step may bring to or from this rank
  std::vector<int64_t> buckets{16, 32, 64, 128, 256, 512};  ///< row counts captured as graphs
  int64_t block = 16;        ///< grouped GEMM block (16, 32 or 64)
  /// With several ranks: the longest this rank waits for one NCCL exchange of a step (counts,
  /// dispatch or combine) to complete before it aborts its communicator and fails the step (a
  /// peer that died, threw, or never got the step). It bounds the wait for the slowest peer to
  /// arrive, not only the transfer: keep it well above the longest a peer's step can run. 0: no
  /// deadline (an NCCL async error still ends the wait); negative: refused by gpu_load_atom.
  std::chrono::milliseconds nccl_timeout{std::chrono::seconds(30)};
};

/// Spawns the (detached) stream actor of `device`.
stream_actor spawn_stream_actor(caf::actor_system& sys, int device);
/// Spawns the (detached) device actor of rank `rank` of `placement`.
device_actor spawn_device_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                const expert_placement& placement, int rank, device_options opts);

}  // namespace troupe::gpu

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::gpu::expert_ffn)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::gpu::device_step)
