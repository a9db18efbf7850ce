#pragma once
/// The llama forward pass over many sequences at once: the batch a continuous-batching scheduler
/// runs each step. Every sequence has its own KV cache; the weight matrices are read once per step
/// for all tokens of all sequences (the point of batching: decode is bound by weight bandwidth),
/// while attention runs per sequence over its own cache. A sequence's logits do not depend on what
/// else is in the batch: the same tokens give bit-identical logits alone or batched.

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "troupe/llama/llama_model.hpp"

namespace troupe::llama {

class batch_decoder {
 public:
  /// `threads`: parallelism of the kernels, caller included (>= 1); `kv`: the cache's type.
  batch_decoder(std::shared_ptr<const llama_model> model, int threads = 2,
                kv_cache_type kv = kv_cache_type::f32);
  ~batch_decoder();
  batch_decoder(const batch_decoder&) = delete;
  batch_decoder& operator=(const batch_decoder&) = delete;

  /// Bytes of KV cache that one position of one sequence takes (keys and values, all layers).
  static int64_t kv_bytes_per_position(const llama_hparams& h,
                                       kv_cache_type kv = kv_cache_type::f32) noexcept;
  kv_cache_type kv_type() const noexcept;

  /// Opens a sequence with room for `capacity` positions and returns its id. The cache memory is
  /// reserved, not touched: pages are committed as positions are written. Throws troupe::error
  /// invalid_argument when capacity <= 0.
  uint32_t open(int64_t capacity);
  /// Frees a sequence's cache; its id may be reused. Unknown ids are ignored.
  void close(uint32_t seq) noexcept;
  /// Forgets a sequence's cache content: its next token goes to position 0.
  void reset(uint32_t seq);
  /// Keeps the first `n` positions of a sequence's cache and forgets the rest: its next token
  /// goes to position n. Throws invalid_argument for an unknown id or n outside [0, position].
  void truncate(uint32_t seq, int64_t n);
  /// Copies the first `n` cached positions of sequence `from` into sequence `to`, replacing what
  /// `to` held: `to`'s next token goes to position n, and its logits from there on are those of
  /// `from`'s tokens followed by its own. The prefix cache of an engine: a prompt that begins
  /// with tokens another sequence has run starts from a copy, not a prefill. Throws
  /// invalid_argument for an unknown id, from == to, n outside [0, position(from)] or beyond
  /// capacity(to), or caches that are not interchangeable (see below); nothing changes then.
  void copy_prefix(uint32_t from, uint32_t to, int64_t n);
  /// Whether the same tokens at the same positions leave the same cache in sequences of these
  /// two capacities: false only for LongRoPE models (Phi-3 128k) when one capacity exceeds the
  /// original context and the other does not (each is rotated with its own factors).
  bool interchangeable(int64_t capacity_a, int64_t capacity_b) const noexcept;
  /// Positions already in the sequence's cache. Throws invalid_argument for an unknown id.
  int64_t position(uint32_t seq) const;
  int64_t capacity(uint32_t seq) const;
  /// Sequences open now.
  size_t open_sequences() const noexcept;

  /// Tokens to append to one sequence in a step.
  struct chunk {
    uint32_t seq = 0;
    std::span<const int32_t> tokens;
  };

  /// Runs every chunk in one forward pass: chunk i's tokens go to positions
  /// [position(seq), position(seq) + size) of its sequence, whose position then advances. Returns
  /// the logits of each chunk's last token: [chunks.size(), vocab], row i for chunk i, valid until
  /// the next call. Throws troupe::error invalid_argument (no chunks, an empty chunk, an unknown or
  /// repeated sequence, a token outside the vocabulary) or budget_exceeded (a chunk does not fit
  /// in its sequence's capacity); nothing is changed then.
  std::span<const float> decode(std::span<const chunk> chunks);

  const llama_model& model() const noexcept { return *model_; }
  int threads() const noexcept;

 private:
  struct state;
  std::shared_ptr<const llama_model> model_;
  std::unique_ptr<state> state_;
};

}  // namespace troupe::llama
