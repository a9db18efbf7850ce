// The GPU decoder actor (contract: include/troupe/gpu/decoder_actor.hpp). UNVERIFIED on a GPU.

#include "troupe/gpu/cuda_decoder.hpp"
#include "troupe/gpu/decoder_actor.hpp"
#include "troupe/gpu/detail/decoder_behavior.hpp"

namespace troupe::gpu {

decoder_actor spawn_cuda_decoder_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                       cuda_decoder::options opts) {
  return detail::spawn_decoder<cuda_decoder>(sys, [m, opts] { return std::make_unique<cuda_decoder>(m, opts); });
}

}  // namespace troupe::gpu
