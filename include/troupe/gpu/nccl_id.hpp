#pragma once
/// The bootstrap of an NCCL communicator through actor messages: rank 0 creates the unique id
/// (ncclGetUniqueId) and runs a bootstrap actor that hands it to every other rank, in the same
/// process or, published through CAF's middleman, in another one; each rank then calls
/// ncclCommInitRank(id, ranks, rank) itself. The id is 128 opaque bytes (ncclUniqueId's size,
/// checked by a static_assert where NCCL is compiled in) and crosses processes as bytes.
///
/// Protocol of nccl_bootstrap_actor:
///   (nccl_join_atom, rank, ranks) -> nccl_unique_id   for 0 < rank < ranks, where ranks is the
///     count the actor was made for; each rank may join once. Otherwise the request fails with
///     troupe::error(invalid_argument) saying which rank or count was wrong. The actor holds no
///     other state and never blocks; it quits when its owner sends it an exit.

#include <array>
#include <cstdint>

#include "caf/actor_system.hpp"
#include "caf/actor_system_config.hpp"
#include "caf/atom.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/typed_actor.hpp"

namespace troupe::gpu {

struct nccl_unique_id {
  std::array<uint8_t, 128> bytes{};

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, nccl_unique_id& x) {
    return f(caf::meta::type_name("troupe.nccl_unique_id"), x.bytes);
  }
  friend bool operator==(const nccl_unique_id&, const nccl_unique_id&) = default;
};

using nccl_join_atom = caf::atom_constant<caf::atom("nccljoin")>;

using nccl_bootstrap_actor = caf::typed_actor<
    caf::replies_to<nccl_join_atom, int32_t, int32_t>::with<nccl_unique_id>>;

/// Registers the GPU backend's message types with `cfg` (every node, before the actor_system is
/// made): nccl_unique_id, nccl_bootstrap_actor and the decoder actor's decode_batch and
/// decode_result (decoder_protocol.hpp). troupe::add_message_types does not include them.
void add_gpu_message_types(caf::actor_system_config& cfg);

/// Spawns the bootstrap actor of a communicator of `ranks` ranks (>= 1) holding `id`. Throws
/// troupe::error(invalid_argument) for ranks < 1.
nccl_bootstrap_actor spawn_nccl_bootstrap(caf::actor_system& sys, const nccl_unique_id& id,
                                          int32_t ranks);

}  // namespace troupe::gpu
