// The stream actor: one CUDA stream, the expert FFN launched on it or replayed from CUDA graphs
// (protocol: device_actors.hpp). UNVERIFIED on a GPU: compiled only (no device in CI).

#include <map>
#include <utility>

#include "caf/all.hpp"
#include "cuda/convert.hpp"
#include "device_actors.hpp"
#include "cuda_check.hpp"
#include "troupe/caf_types.hpp"

namespace troupe::gpu {

namespace {

using detail::check_cuda;
using detail::check_launch;

struct stream_state {
  int device = 0;
  cudaStream_t stream = nullptr;
  std::map<std::pair<int64_t, int64_t>, cudaGraphExec_t> graphs;
  static inline const char* name = "troupe.gpu_stream";

  ~stream_state() {
    if (stream == nullptr) return;
    cudaSetDevice(device);
    for (auto& [key, exec] : graphs) cudaGraphExecDestroy(exec);
    cudaStreamDestroy(stream);
  }

  void launch(const expert_ffn& f) {
    namespace kc = kernels::cuda;
    check_launch(kc::launch_moe_w4a16_gemm(f.gate_up, stream), device, "expert gate/up GEMM");
    check_launch(kc::launch_silu_mul(f.gate_up_out, 2 * f.inter, f.act, f.inter, f.rows, f.inter,
                                     stream),
                 device, "expert SiLU");
    check_launch(kc::launch_f32_to_bf16(f.act, f.inter, f.act_bf16, f.inter, f.rows, f.inter, stream),
                 device, "expert activation to bf16");
    check_launch(kc::launch_moe_w4a16_gemm(f.down, stream), device, "expert down GEMM");
  }

  void run(const expert_ffn& f) {
    check_cuda(cudaSetDevice(device), device, "cudaSetDevice");
    if (f.bucket_index < 0) {
      launch(f);
    } else {
      const auto key = std::make_pair(f.layer, f.bucket_index);
      auto it = graphs.find(key);
      if (it == graphs.end()) {
        check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), device,
                   "cudaStreamBeginCapture");
        cudaGraph_t graph = nullptr;
        try {
          launch(f);
        } catch (...) {
          cudaStreamEndCapture(stream, &graph);
          if (graph != nullptr) cudaGraphDestroy(graph);
          throw;
        }
        check_cuda(cudaStreamEndCapture(stream, &graph), device, "cudaStreamEndCapture");
        cudaGraphExec_t exec = nullptr;
        const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
        cudaGraphDestroy(graph);
        check_cuda(e, device, "cudaGraphInstantiate");
        it = graphs.emplace(key, exec).first;
      }
      check_cuda(cudaGraphLaunch(it->second, stream), device, "cudaGraphLaunch");
    }
    check_cuda(cudaStreamSynchronize(stream), device, "expert FFN (stream synchronisation)");
  }
};

stream_actor::behavior_type stream_behavior(stream_actor::stateful_pointer<stream_state> self,
                                            int device) {
  self->state.device = device;
  return {
      [self](gpu_ffn_atom, const expert_ffn& f) -> caf::result<bool> {
        auto& st = self->state;
        try {
          if (st.stream == nullptr) {
            check_cuda(cudaSetDevice(st.device), st.device, "cudaSetDevice");
            check_cuda(cudaStreamCreateWithFlags(&st.stream, cudaStreamNonBlocking), st.device,
                       "cudaStreamCreate");
          }
          st.run(f);
          return true;
        } catch (const error& e) {
          return to_caf_error(e);
        }
      },
  };
}

}  // namespace

stream_actor spawn_stream_actor(caf::actor_system& sys, int device) {
  return sys.spawn<caf::detached>(stream_behavior, device);
}

}  // namespace troupe::gpu
