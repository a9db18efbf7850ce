#pragma once
/// A llama-architecture decoder (SmolLM2, Llama 1/2/3.x, TinyLlama, Mistral 7B, ...) loaded from a
/// GGUF file and run on the CPU: RMSNorm, adjacent-pair RoPE (llama.cpp's NORM rope, which GGUF
/// llama q/k weights are permuted for) with linear, YaRN or per-frequency (Llama 3.1) scaling,
/// grouped-query attention over a KV cache, SwiGLU, optional biases, separate or fused q/k/v,
/// tied or separate output. The same forward pass runs the llama-like architectures llama.cpp
/// runs through its own graphs:
/// - `qwen2`: llama with q/k/v biases and NEOX rope (the halves of each head rotated);
/// - `phi3` (Phi-3, 3.5, 4): NEOX rope, fused q/k/v and gate/up, q scaled before attention,
///   LongRoPE's long and short frequency factors;
/// - `qwen3`: NEOX rope after an RMSNorm of each q and k head, heads of attention.key_length;
/// - `gemma3`: qwen3's attention with q scaled first, embeddings times sqrt(hidden), RMSNorms
///   after attention and after the feed-forward, GELU, soft-capped logits, sliding-window
///   layers; `gemma2`: the same without q/k norms, with soft-capped attention scores;
/// - `granite`: llama with embedding, residual, attention and logit multipliers;
/// - `smollm3`: every fourth layer without RoPE; `ernie4_5` (ERNIE 4.5 dense): llama's layer;
/// - `mistral3` (Ministral 3): llama with YaRN's betas and log multiplier from the file and
///   Llama 4's attention temperature;
/// - `olmo2` (OLMo 2, OLMo 3): no norms before attention and feed-forward but after them, q and
///   k RMS-normalised whole, sliding-window layers (OLMo 3);
/// - mixtures of experts (llama files in Mixtral's layout, `qwen2moe` and `granitemoe` with their
///   shared experts, `qwen3moe`): per layer a softmax router picks expert_used_count of
///   expert_count SwiGLU experts per token, each expert's tokens multiplied together
///   (kernels/cpu/moe_ops.hpp).
/// Weights stay in the file's quantised formats inside the memory map; nothing is converted.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/formats/gguf.hpp"

namespace troupe::llama {

/// Hyper-parameters read from the `<arch>.*` metadata keys.
struct llama_hparams {
  std::string arch = "llama";  ///< general.architecture (llama, qwen2, qwen3, phi3, gemma3, ...)
  bool rope_neox = false;  ///< rotate (x[i], x[i + rope_dim/2]) pairs (qwen2, phi3), not neighbours
  bool scale_q = false;    ///< scale q by 1/sqrt(head_dim) before attention, not inside (phi3)
  bool qk_norm = false;    ///< RMS-normalise each head of q and k before RoPE (qwen3, gemma3)
  bool qk_norm_whole = false;  ///< ... the whole q and k vectors instead (olmo2)
  bool pre_norms = true;       ///< RMSNorm before attention and feed-forward (not olmo2)
  float q_scale = 1;       ///< what scale_q multiplies q by
  bool gelu = false;       ///< feed-forward GELU(gate)·up (ggml's table), not SiLU (gemma)
  bool post_norms = false;  ///< RMSNorm after attention and after the feed-forward (gemma)
  float embed_scale = 0;    ///< embeddings times this (gemma: sqrt(hidden), granite); 0: as stored
  float final_softcap = 0;  ///< logits = cap·tanh(logits / cap) (final_logit_softcapping); 0: off
  float attn_softcap = 0;   ///< the same for attention scores (gemma2); 0: off
  /// Sliding-window attention (gemma2, gemma3): the layers marked here see their last
  /// swa_window positions only, rotated with rope.freq_base_swa. Empty / 0 without.
  int64_t swa_window = 0;
  std::vector<bool> sliding_layers;
  int64_t vocab = 0;
  int64_t hidden = 0;        ///< llama.embedding_length
  int64_t layers = 0;        ///< llama.block_count
  int64_t ffn = 0;           ///< llama.feed_forward_length (MoE: each expert's width)
  int64_t heads = 0;         ///< llama.attention.head_count
  int64_t kv_heads = 0;      ///< llama.attention.head_count_kv
  int64_t head_dim = 0;      ///< attention.key_length, else hidden / heads
  int64_t rope_dim = 0;      ///< llama.rope.dimension_count (default head_dim)
  int64_t context = 0;       ///< llama.context_length
  float rms_eps = 1e-5f;     ///< llama.attention.layer_norm_rms_epsilon
  float rope_base = 10000;   ///< llama.rope.freq_base
  /// llama.rope.scaling.type as llama.cpp reads it: "linear" when only a factor is given,
  /// "none" when there is no factor either.
  std::string rope_scaling = "none";
  float rope_scaling_factor = 1;  ///< llama.rope.scaling.factor (or the older rope.scale_linear)
  int64_t rope_original_context = 0;  ///< YaRN: rope.scaling.original_context_length
  bool rope_freq_factors = false;     ///< rope_freqs.weight present (Llama 3.1+ frequency factors)
  /// LongRoPE (rope_factors_long/short.weight: Phi-3 128k, Phi-3.5): a sequence whose reserved
  /// context exceeds rope_original_context is rotated with the long factors, any other with the
  /// short ones (llama.cpp's rule, its per-sequence context in the place of ours).
  bool rope_long_factors = false;
  bool biases = false;                ///< attention or feed-forward biases present
  /// Mixture of experts (Mixtral and other llama files with llama.expert_count): each layer's
  /// feed-forward is `experts` SwiGLU experts of `ffn` rows, of which a softmax router picks
  /// `experts_used` per token. 0 for a dense model.
  int64_t experts = 0;
  int64_t experts_used = 0;
  /// The chosen experts' weights renormalised to sum to 1 (llama.cpp's norm_w: llama, qwen3moe;
  /// not qwen2moe).
  bool experts_normalized = true;
  /// A shared expert: a SwiGLU of this width that every token takes, added to the routed sum
  /// (qwen2moe: times sigmoid(ffn_gate_inp_shexp · x), shared_gated; granitemoe: as it is).
  /// 0 without.
  int64_t shared_ffn = 0;
  bool shared_gated = false;
  /// IBM Granite's multipliers (granite, granitemoe): attention output and feed-forward output
  /// times residual_scale before each residual add, softmax scale attention_scale, logits divided
  /// by logit_scale. 0: not applied (attention_scale 0: 1/sqrt(head size)).
  float residual_scale = 0, attention_scale = 0, logit_scale = 0;
  /// SmolLM3: every no_rope_step-th layer (counting from 1) attends without RoPE. 0: none.
  int64_t no_rope_step = 0;
  /// Whether layer il attends through the sliding window.
  bool layer_slides(int64_t il) const noexcept {
    return !sliding_layers.empty() && sliding_layers[static_cast<size_t>(il)];
  }
  /// Whether layer il rotates q and k (all but every no_rope_step-th).
  bool layer_rotates(int64_t il) const noexcept {
    return no_rope_step == 0 || (il + 1) % no_rope_step != 0;
  }
  /// mistral3 (Llama 4's temperature tuning): q at position p times
  /// log(floor(p / rope_original_context) + 1) · attn_temp_scale + 1 after RoPE. 0: off.
  float attn_temp_scale = 0;
};

/// The loaded weights. Immutable after load, so one model serves any number of llama_sessions on
/// any threads. Throws troupe::error: not_found (file or tensor), parse_error (malformed file),
/// unsupported (not llama architecture, or a tensor type/shape the CPU kernels do not take).
class llama_model {
 public:
  static std::shared_ptr<const llama_model> load(const std::filesystem::path& path);

  ~llama_model();
  llama_model(const llama_model&) = delete;
  llama_model& operator=(const llama_model&) = delete;

  const llama_hparams& hparams() const noexcept { return hparams_; }
  const gguf_file& file() const noexcept { return file_; }

  struct impl;
  const impl& weights() const noexcept { return *impl_; }

 private:
  explicit llama_model(gguf_file file);
  gguf_file file_;
  llama_hparams hparams_;
  std::unique_ptr<impl> impl_;
};

/// Element type of the KV cache. f32 is llama.cpp's arithmetic with type_k = type_v = f32; f16
/// halves the cache and is llama.cpp's with type_k = type_v = f16 (its default cache type;
/// non-flash attention in both): keys and values rounded to f16 as they are stored, q and the
/// softmax rounded to f16 for their products with them. Logits stay bit-identical to llama.cpp
/// configured the same way.
enum class kv_cache_type : uint8_t { f32, f16 };
/// "f32" / "f16".
const char* to_string(kv_cache_type t) noexcept;
/// Parses "f32" or "f16"; throws troupe::error invalid_argument naming the accepted values.
kv_cache_type parse_kv_cache_type(std::string_view name);

/// One sequence being decoded: a KV cache of `context` positions of type `kv`, scratch buffers
/// and a thread pool of `threads` (caller included). Not thread-safe; use one session per thread.
class llama_session {
 public:
  llama_session(std::shared_ptr<const llama_model> model, int64_t context = 2048, int threads = 2,
                kv_cache_type kv = kv_cache_type::f32);
  ~llama_session();
  llama_session(const llama_session&) = delete;
  llama_session& operator=(const llama_session&) = delete;

  /// Runs `tokens` at positions [position(), position() + tokens.size()) as one batch (prefill
  /// when there are many, decode when there is one), appends them to the KV cache and returns the
  /// logits of the last one: [vocab], valid until the next call. Throws troupe::error:
  /// invalid_argument for an empty batch or a token id outside the vocabulary, budget_exceeded
  /// when the context is full.
  std::span<const float> decode(std::span<const int32_t> tokens);

  /// Positions already in the KV cache.
  int64_t position() const noexcept;
  int64_t context() const noexcept;
  /// Forgets the KV cache (the next decode starts at position 0).
  void reset() noexcept;
  const llama_model& model() const noexcept { return *model_; }

 private:
  struct state;
  std::shared_ptr<const llama_model> model_;
  std::unique_ptr<state> state_;
};

}  // namespace troupe::llama
