#pragma once
/// The DeepSeek-V3 forward pass over many sequences at once (the batch a continuous-batching
/// scheduler runs each step). Multi-head latent attention keeps a latent KV cache: per position
/// and layer only the normalised kv_lora latent and the rotated shared rope key (576 floats for
/// Kimi K2 instead of 2·64·192). Attention runs in one of two forms over that same cache:
///  - plain: the latents are expanded through kv_b into per-head keys and values (what HF
///    transformers computes; cheap for prefill chunks);
///  - absorbed: W_UK is folded into the query and W_UV applied after attention, so scores and the
///    weighted sum run in the latent space (DeepSeek's "absorb" decode; FlashMLA's form).
/// Both give the same logits up to rounding. The routed experts of every MoE layer run on an
/// expert_runner: the decoder's own threads by default, or expert-shard actors.

#include <cstdint>
#include <memory>
#include <span>

#include "troupe/deepseek/experts.hpp"
#include "troupe/deepseek/model.hpp"

namespace troupe::deepseek {

enum class attention_form : uint8_t {
  automatic,  ///< plain for chunks of several tokens (prefill), absorbed for single tokens
  plain,
  absorbed,
};

class batch_decoder {
 public:
  struct options {
    int threads = 2;  ///< parallelism of the dense kernels, caller included
    attention_form attention = attention_form::automatic;
    /// Computes the routed experts; nullptr: the decoder's threads. Not owned; must outlive the
    /// decoder's decode() calls.
    expert_runner* experts = nullptr;
    /// Rounds to bf16 where gpu::cuda_decoder does: the input of every dense GEMM (q_a, q_b or q,
    /// kv_a, kv_b, o, the dense and shared MLPs, lm_head), the latent cache, and the routed
    /// experts' input and SiLU·up output (expert_batch::bf16; runners other than the decoder's own
    /// do their own rounding). With attention_form::absorbed this is a CPU reference of the GPU
    /// decoder's numerics for its tests; off: fp32 throughout.
    bool bf16_activations = false;
  };

  batch_decoder(std::shared_ptr<const model> m, options opts);
  explicit batch_decoder(std::shared_ptr<const model> m) : batch_decoder(std::move(m), options{}) {}
  ~batch_decoder();
  batch_decoder(const batch_decoder&) = delete;
  batch_decoder& operator=(const batch_decoder&) = delete;

  /// Bytes of latent cache per position of one sequence (all layers).
  static int64_t kv_bytes_per_position(const config& c) noexcept;

  /// Opens a sequence with room for `capacity` positions (memory reserved, committed as written).
  /// Throws invalid_argument when capacity <= 0.
  uint32_t open(int64_t capacity);
  void close(uint32_t seq) noexcept;
  void reset(uint32_t seq);
  /// Keeps a sequence's first n positions (llama::batch_decoder::truncate's contract).
  void truncate(uint32_t seq, int64_t n);
  /// Copies the first n cached positions of `from` into `to` (llama::batch_decoder::copy_prefix's
  /// contract; every capacity is interchangeable here: YaRN's rotation is the same for all).
  void copy_prefix(uint32_t from, uint32_t to, int64_t n);
  int64_t position(uint32_t seq) const;
  int64_t capacity(uint32_t seq) const;

  struct chunk {
    uint32_t seq = 0;
    std::span<const int32_t> tokens;
  };

  /// Runs every chunk in one forward pass (chunk i's tokens go to positions [position(seq), ...)
  /// of its sequence). Returns logits [chunks.size(), vocab] of each chunk's last token, or with
  /// all_positions [Σ tokens, vocab] for every token in chunk order; valid until the next call.
  /// Throws invalid_argument (no chunks, empty chunk, unknown or repeated sequence, token outside
  /// the vocabulary) or budget_exceeded (a chunk does not fit its capacity); nothing changes then.
  std::span<const float> decode(std::span<const chunk> chunks, bool all_positions = false);

  const model& get_model() const noexcept { return *model_; }
  const options& opts() const noexcept { return opts_; }

 private:
  struct state;
  std::shared_ptr<const model> model_;
  options opts_;
  std::unique_ptr<state> state_;
};

}  // namespace troupe::deepseek
