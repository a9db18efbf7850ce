#pragma once
// The behaviour of a decoder actor (decoder_protocol.hpp) over any decoder with batch_decoder's
// open / close / decode(chunks) interface: deepseek::batch_decoder (CPU) and gpu::cuda_decoder.
// The decoder is made by `make` on the actor's own thread at its first gpu_ready_atom (a GPU
// decoder's device and stream belong to that thread), and lives as long as the actor.

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/decoder_protocol.hpp"

namespace troupe::gpu::detail {

template <class Decoder>
struct decoder_state {
  std::function<std::unique_ptr<Decoder>()> make;
  std::unique_ptr<Decoder> dec;
  static inline const char* name = "troupe.decoder";
};

template <class Decoder, class F>
caf::result<typename std::invoke_result_t<F>> guarded(F f) {
  try {
    return f();
  } catch (const error& e) {
    return to_caf_error(e);
  } catch (const std::exception& e) {
    return to_caf_error(error(errc::internal, std::string("decoder actor: ") + e.what()));
  }
}

template <class Decoder>
decoder_actor::behavior_type decoder_behavior(
    typename decoder_actor::template stateful_pointer<decoder_state<Decoder>> self,
    std::function<std::unique_ptr<Decoder>()> make) {
  self->state.make = std::move(make);
  auto ready = [self] {
    if (self->state.dec == nullptr)
      throw error(errc::invalid_argument, "decoder actor: not ready (send gpu_ready_atom first)");
    return self->state.dec.get();
  };
  return {
      [self](gpu_ready_atom) -> caf::result<bool> {
        return guarded<Decoder>([&] {
          if (self->state.dec == nullptr) self->state.dec = self->state.make();
          return true;
        });
      },
      [ready](gpu_open_atom, int64_t capacity) -> caf::result<uint32_t> {
        return guarded<Decoder>([&] { return ready()->open(capacity); });
      },
      [self](gpu_close_atom, uint32_t seq) -> caf::result<bool> {
        if (self->state.dec != nullptr) self->state.dec->close(seq);
        return true;
      },
      [ready](gpu_decode_atom, const decode_batch& b) -> caf::result<decode_result> {
        return guarded<Decoder>([&] {
          auto* dec = ready();
          if (!b.well_formed())
            throw error(errc::invalid_argument, "decoder actor: a batch of " + std::to_string(b.seqs.size()) +
                                                    " sequences whose offsets do not describe its " +
                                                    std::to_string(b.tokens.size()) + " tokens");
          std::vector<deepseek::batch_decoder::chunk> chunks;
          for (size_t i = 0; i < b.seqs.size(); ++i)
            chunks.push_back({b.seqs[i], std::span<const int32_t>(b.tokens.data() + b.offsets[i],
                                                                  b.offsets[i + 1] - b.offsets[i])});
          const auto logits = dec->decode(chunks);
          decode_result r;
          const size_t V = chunks.empty() ? 0 : logits.size() / chunks.size();
          for (size_t i = 0; i < chunks.size(); ++i) {
            const auto row = logits.subspan(i * V, V);
            r.greedy.push_back(static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin()));
          }
          if (b.want_logits) {
            r.logits.resize(logits.size() * sizeof(float));
            std::memcpy(r.logits.data(), logits.data(), r.logits.size());
          }
          return r;
        });
      },
  };
}

/// Spawns a detached decoder actor and waits (up to 10 minutes) for its decoder to be made;
/// throws the troupe::error that stopped it.
template <class Decoder>
decoder_actor spawn_decoder(caf::actor_system& sys, std::function<std::unique_ptr<Decoder>()> make) {
  auto a = sys.spawn<caf::detached>(decoder_behavior<Decoder>, std::move(make));
  caf::scoped_actor self{sys};
  std::string failure;
  errc code = errc::model_failed;
  self->request(a, std::chrono::minutes(10), gpu_ready_atom::value)
      .receive([](bool) {},
               [&](caf::error& e) {
                 const error t = from_caf_error(e, "decoder actor");
                 failure = t.message();
                 code = t.code();
               });
  if (!failure.empty()) {
    self->send_exit(a, caf::exit_reason::user_shutdown);
    throw error(code, failure);
  }
  return a;
}

}  // namespace troupe::gpu::detail
