#pragma once
/// Decoder actors: a DeepSeek-V3-architecture model served behind decoder_protocol.hpp's messages,
/// one actor per device, so that a scheduler (or another process, through CAF's middleman) sends
/// each step's whole batch as one message. Both actors are detached and own their decoder; send
/// them an exit to release it.

#include <memory>

#include "caf/actor_system.hpp"
#include "troupe/deepseek/model.hpp"
#include "troupe/gpu/cuda_decoder.hpp"
#include "troupe/gpu/decoder_protocol.hpp"

namespace troupe::gpu {

/// The CPU decoder (deepseek::batch_decoder with `threads` threads, automatic attention form).
/// Library troupe_gpu_host (always built).
decoder_actor spawn_cpu_decoder_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                      int threads);

/// The whole model on one GPU (gpu::cuda_decoder, made on the actor's thread). Waits until the
/// model is on the device; throws cuda_decoder's errors. Library troupe_gpu (only with CUDA).
/// UNVERIFIED on a GPU (tests/gpu/test_gpu_decoder_actor.cpp).
decoder_actor spawn_cuda_decoder_actor(caf::actor_system& sys, std::shared_ptr<const deepseek::model> m,
                                       cuda_decoder::options opts);

}  // namespace troupe::gpu
