// The CPU decoder actor (contract: include/troupe/gpu/decoder_actor.hpp).

#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/gpu/decoder_actor.hpp"
#include "troupe/gpu/detail/decoder_behavior.hpp"

namespace troupe::gpu {

decoder_actor spawn_cpu_decoder_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                      int threads) {
  return detail::spawn_decoder<deepseek::batch_decoder>(sys, [m, threads] {
    return std::make_unique<deepseek::batch_decoder>(m, deepseek::batch_decoder::options{.threads = threads});
  });
}

}  // namespace troupe::gpu
