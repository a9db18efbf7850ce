#pragma once
/// The messages of a GPU decoder actor (gpu/decoder_actor.hpp): one message per step carries the
/// whole batch (every sequence's new tokens) and one reply carries every sequence's greedy token
/// and, on request, its logits. Logits travel as raw bytes, never as floats: CAF 0.17 hangs
/// serialising ±inf, and a logit may be -inf. Registered by add_gpu_message_types (nccl_id.hpp),
/// so the actor can serve another process through CAF's middleman.
///
/// Protocol of decoder_actor (one detached actor per GPU, owning its weights, latent cache,
/// stream and CUDA graphs, or one serving a CPU decoder; requests are served one at a time, in
/// arrival order):
///   (gpu_ready_atom) -> bool                   builds the decoder on the actor's own thread (the
///                                              spawn functions send it and wait; later: true)
///   (gpu_open_atom, capacity) -> uint32_t      opens a sequence of up to `capacity` positions
///   (gpu_close_atom, seq) -> bool              closes it (true; unknown ids are ignored)
///   (gpu_decode_atom, decode_batch) -> decode_result
///       feeds chunk i (tokens [offsets[i], offsets[i+1]) of `tokens`) to sequence seqs[i], all
///       in one decode call; replies with the argmax of each chunk's last logits and, when
///       want_logits, those logits [chunks, vocab] as fp32 bytes.
/// Failures reply with the troupe::error of the decoder (invalid_argument, budget_exceeded,
/// model_failed, ...): the caller's request fails, the actor keeps serving.

#include <cstdint>
#include <vector>

#include "caf/atom.hpp"
#include "caf/meta/type_name.hpp"
#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"

namespace troupe::gpu {

using gpu_ready_atom = caf::atom_constant<caf::atom("gpuready")>;
using gpu_open_atom = caf::atom_constant<caf::atom("gpuopen")>;
using gpu_close_atom = caf::atom_constant<caf::atom("gpuclose")>;
using gpu_decode_atom = caf::atom_constant<caf::atom("gpudecode")>;

/// One step's batch: chunk i is tokens[offsets[i] .. offsets[i+1]) for sequence seqs[i].
struct decode_batch {
  std::vector<uint32_t> seqs;
  std::vector<int32_t> tokens;
  std::vector<uint32_t> offsets;  ///< [seqs + 1], offsets[0] = 0, ascending, back = tokens.size()
  bool want_logits = false;

  /// Appends one chunk.
  void add(uint32_t seq, const int32_t* chunk, size_t n) {
    if (offsets.empty()) offsets.push_back(0);
    seqs.push_back(seq);
    tokens.insert(tokens.end(), chunk, chunk + n);
    offsets.push_back(static_cast<uint32_t>(tokens.size()));
  }
  /// Whether offsets describe seqs.size() chunks of tokens (each may be checked further by the
  /// decoder: empty chunks, unknown sequences).
  bool well_formed() const noexcept {
    if (offsets.size() != seqs.size() + 1 || offsets.front() != 0 || offsets.back() != tokens.size())
      return false;
    for (size_t i = 0; i + 1 < offsets.size(); ++i)
      if (offsets[i] > offsets[i + 1]) return false;
    return true;
  }

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, decode_batch& x) {
    return f(caf::meta::type_name("troupe.gpu_decode_batch"), x.seqs, x.tokens, x.offsets, x.want_logits);
  }
};

/// A step's reply: greedy[i] for chunk i; logits [chunks, vocab] fp32 bytes (empty unless asked).
struct decode_result {
  std::vector<int32_t> greedy;
  std::vector<char> logits;

  template <class Inspector>
  friend typename Inspector::result_type inspect(Inspector& f, decode_result& x) {
    return f(caf::meta::type_name("troupe.gpu_decode_result"), x.greedy, x.logits);
  }
};

using decoder_actor = caf::typed_actor<caf::replies_to<gpu_ready_atom>::with<bool>,
                                       caf::replies_to<gpu_open_atom, int64_t>::with<uint32_t>,
                                       caf::replies_to<gpu_close_atom, uint32_t>::with<bool>,
                                       caf::replies_to<gpu_decode_atom, decode_batch>::with<decode_result>>;

}  // namespace troupe::gpu
