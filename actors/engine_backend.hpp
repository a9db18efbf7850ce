#pragma once
// Private: what the local engine's scheduler (local_model.cpp) needs from a model family — prompt
// rendering and tokenisation, the pieces of generated tokens, and a batched decoder — so that one
// scheduler serves GGUF llama models and DeepSeek-V3 / Kimi checkpoints alike.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "caf/fwd.hpp"
#include "troupe/formats/tool_calls.hpp"
#include "troupe/message.hpp"
#include "troupe/model.hpp"

namespace troupe::llama {
class token_masker;
enum class kv_cache_type : uint8_t;
}

namespace troupe {

class engine_backend {
 public:
  virtual ~engine_backend() = default;

  /// Loads `path`: a directory with config.json is a DeepSeek-V3/Kimi checkpoint, anything else
  /// a GGUF file. `threads`: kernel threads; `expert_shards`: expert-shard actors in `sys` for
  /// MoE models (0: the kernel threads run the experts); `kv`: the KV cache type of llama-family
  /// models (DeepSeek-V3/Kimi models keep their latent cache: f16 is refused for them with
  /// invalid_argument).
  static std::unique_ptr<engine_backend> load(const std::filesystem::path& path, caf::actor_system& sys,
                                              int threads, int expert_shards,
                                              llama::kv_cache_type kv);

  /// "llama" or "deepseek": for messages.
  virtual const char* family() const noexcept = 0;
  virtual int64_t vocab() const noexcept = 0;
  /// Positions the model supports per sequence.
  virtual int64_t context() const noexcept = 0;
  virtual int64_t kv_bytes_per_position() const noexcept = 0;
  /// Bytes one sequence's cache may hold beyond positions · kv_bytes_per_position(): each layer's
  /// arrays are committed page by page, so the pages at both ends of the part written count whole.
  virtual int64_t kv_bytes_per_sequence() const noexcept = 0;
  /// How the model writes tool calls (its prompt declares tools the same way).
  virtual tool_call_syntax syntax() const noexcept = 0;

  /// The request's conversation and tools in the model's chat template, tokenised, ending with
  /// the assistant header.
  virtual std::vector<int32_t> prompt(const chat_request& req) const = 0;
  /// Plain text as the model continues it (no template, special-token text not parsed; BOS
  /// when the model asks for one).
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  virtual bool is_end_of_generation(int32_t token) const = 0;
  /// Bytes of a generated token (control tokens: none).
  virtual std::string piece(int32_t token) const = 0;
  /// Grammar-constrained decoding over this vocabulary (tool calls in syntax(), response
  /// schemas); nullptr when the family has none (then tool calls are parsed, not constrained,
  /// and response schemas are refused). The matcher is fed masker()->bytes(token), which for a
  /// Kimi tool-call marker is its grammar byte (llama::kimi_marker), not piece().
  virtual const llama::token_masker* masker() const noexcept = 0;

  struct chunk {
    uint32_t seq = 0;
    std::span<const int32_t> tokens;
  };
  virtual uint32_t open(int64_t capacity) = 0;
  virtual void close(uint32_t seq) noexcept = 0;
  /// The decoder's prefix-cache operations (llama::batch_decoder::truncate, copy_prefix,
  /// interchangeable).
  virtual void truncate(uint32_t seq, int64_t n) = 0;
  virtual void copy_prefix(uint32_t from, uint32_t to, int64_t n) = 0;
  virtual bool interchangeable(int64_t capacity_a, int64_t capacity_b) const noexcept = 0;
  /// Logits [chunks, vocab] of each chunk's last token (see llama::batch_decoder::decode).
  virtual std::span<const float> decode(std::span<const chunk> chunks) = 0;
};

}  // namespace troupe
