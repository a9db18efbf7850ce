#include "troupe/gpu/nccl_id.hpp"

#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/decoder_protocol.hpp"

namespace troupe::gpu {

void add_gpu_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<nccl_unique_id>("troupe.nccl_unique_id");
  cfg.add_message_type<nccl_bootstrap_actor>("troupe.nccl_bootstrap_actor");
  cfg.add_message_type<decode_batch>("troupe.gpu_decode_batch");
  cfg.add_message_type<decode_result>("troupe.gpu_decode_result");
  cfg.add_message_type<decoder_actor>("troupe.gpu_decoder_actor");
}

namespace {

struct bootstrap_state {
  nccl_unique_id id;
  int32_t ranks = 0;
  std::vector<bool> joined;
  static inline const char* name = "troupe.nccl_bootstrap";
};

nccl_bootstrap_actor::behavior_type bootstrap(
    nccl_bootstrap_actor::stateful_pointer<bootstrap_state> self, nccl_unique_id id,
    int32_t ranks) {
  self->state.id = id;
  self->state.ranks = ranks;
  self->state.joined.assign(static_cast<size_t>(ranks), false);
  return {
      [self](nccl_join_atom, int32_t rank, int32_t ranks) -> caf::result<nccl_unique_id> {
        auto& st = self->state;
        if (ranks != st.ranks)
          return to_caf_error(error(errc::invalid_argument,
                                    "nccl bootstrap: rank " + std::to_string(rank) + " expects " +
                                        std::to_string(ranks) + " ranks, the communicator has " +
                                        std::to_string(st.ranks)));
        if (rank <= 0 || rank >= st.ranks)
          return to_caf_error(error(errc::invalid_argument,
                                    "nccl bootstrap: rank " + std::to_string(rank) +
                                        " cannot join; ranks 1 to " +
                                        std::to_string(st.ranks - 1) + " fetch the id (0 made it)"));
        if (st.joined[static_cast<size_t>(rank)])
          return to_caf_error(error(errc::invalid_argument, "nccl bootstrap: rank " +
                                                                std::to_string(rank) +
                                                                " joined twice"));
        st.joined[static_cast<size_t>(rank)] = true;
        return st.id;
      },
  };
}

}  // namespace

nccl_bootstrap_actor spawn_nccl_bootstrap(caf::actor_system& sys, const nccl_unique_id& id,
                                          int32_t ranks) {
  if (ranks < 1)
    throw error(errc::invalid_argument,
                "nccl bootstrap: a communicator of " + std::to_string(ranks) + " ranks");
  return sys.spawn(bootstrap, id, ranks);
}

}  // namespace troupe::gpu
