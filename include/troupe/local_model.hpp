#pragma once
/// The local inference engine behind the model interface: a GGUF llama-architecture model (the
/// embedded SmolLM2-135M-Instruct by default) or a DeepSeek-V3 / Kimi K2 checkpoint directory,
/// served to any number of agents at once by one scheduler actor with continuous batching. For
/// MoE checkpoints the routed experts run on `expert_shards` expert-shard actors
/// (troupe/deepseek/expert_shards.hpp).
///
/// Protocol: troupe::model_actor. Each (chat, chat_request) is rendered with the model's chat
/// template, tokenised and queued. Every step the scheduler runs one forward pass over all running
/// sequences: prompt chunks of those still in prefill, one token of each one decoding; a request
/// that arrives during a step joins at the next one, a finished one leaves at once (continuous
/// batching). Text is streamed to `stream_to` as (delta, turn_delta) before the reply. A
/// request's `stop` strings end its turn where the first of them appears in the generated text
/// (checked on the raw output, tool-call markup included, as vLLM does); sampling takes the
/// request's penalties (repetition over the prompt and the output, frequency and presence over
/// the output). With top_logprobs >= 0 each generated token's log-probability (and the most
/// likely alternatives) comes with the reply and, streamed, with the deltas.
///
/// KV memory: a request reserves the positions it can use (prompt + max tokens, at most the
/// context; with the pages its cache may commit beyond them at the ends of each layer's arrays)
/// out of `kv_budget_bytes` when admitted. One that does not fit now waits in arrival
/// order; one that could never fit (prompt longer than the context, or a reservation larger than
/// the whole budget) is refused at once with an error that says what to change. Nothing the
/// requests say can make the engine run out of memory.
///
/// Prefix cache (`prefix_cache`, on by default): a finished request's KV cache is kept, with its
/// prompt's tokens, while the budget has room, and a new request whose prompt begins with tokens
/// that an idle or running sequence computed as its prompt starts from a copy of that part of
/// the cache instead of computing it again: an agent's next turn (the conversation so far), the
/// system prompt and tool declarations many sub-agents share. A request admitted while an older
/// one is still prefilling a prompt that begins the same way waits for that prefill and copies
/// it. Idle caches count against the budget by the positions they hold and are evicted, least
/// recently used first, when a request needs their room; they never make a request wait or
/// fail. usage.cached_prompt_tokens counts the prompt tokens copied. Generated tokens' positions
/// are not reused, at least a prompt's last two tokens are computed, and no prompt is split so
/// that a chunk of one token is left: then a prompt's logits are the same, bit for bit, with or
/// without the copy, wherever the model's products sum per token (the embedded model; K-quant,
/// IQ4 and float weights sum batches of tokens in another order, as llama.cpp does).
///
/// Tools (llama models): a request's tools are declared in the system message in the Hermes style and its output
/// is parsed for `<tool_call>` blocks, which come back as tool calls (streamed as one delta each
/// once complete; text outside them streams as text). Decoding is constrained by a grammar, so a
/// call always names a declared tool and its arguments follow that tool's JSON Schema:
/// tool_choice required / named (the turn is calls only), automatic (text, or a conforming call
/// once the model opens one), none (no tools shown). A `response_schema` constrains the whole
/// answer to JSON of that schema instead. See troupe/llama/grammar.hpp for the schema subset.
/// DeepSeek/Kimi models: the same, in Kimi K2's format (tool-call section tokens, which the
/// grammar reads as marker bytes: llama::kimi_marker) over tiktoken's vocabulary.
///
/// Cancel: (cancel, id) ends that request at the next step boundary with finish == cancelled and
/// the text so far; a queued request is answered at once. The scheduler is a detached actor (the
/// forward pass blocks its thread, not CAF's workers); the kernels use `threads` threads.

#include <cstdint>
#include <filesystem>
#include <string>

#include "caf/fwd.hpp"
#include "troupe/model.hpp"

namespace troupe {

struct local_model_config {
  /// A .gguf file, a DeepSeek-V3/Kimi checkpoint directory (config.json, *.safetensors,
  /// tiktoken.model, tokenizer_config.json), or "smollm2" for the embedded default.
  std::string model = "smollm2";
  /// MoE checkpoints: expert-shard actors computing the routed experts (0: the kernel threads).
  int expert_shards = 2;
  int threads = 2;                              ///< Kernel threads, scheduler thread included.
  int64_t context = 2048;                       ///< Positions per sequence; capped by the model's.
  int64_t kv_budget_bytes = int64_t{1} << 30;   ///< KV cache of all sequences together.
  /// Element type of the KV cache of llama-family GGUF models: "f32", or "f16" (half the bytes
  /// per position, so twice the positions in kv_budget_bytes; bit-identical to llama.cpp run
  /// with type_k = type_v = f16). DeepSeek-V3/Kimi models take f32 only (their latent cache).
  std::string kv_cache_type = "f32";
  /// Reuse the KV caches of earlier requests for prompts that begin the same way (see above).
  bool prefix_cache = true;
  int32_t max_batch = 32;                       ///< Sequences decoded together at most.
  int32_t prefill_chunk = 256;                  ///< Prompt tokens per step, all sequences together.
  uint32_t default_max_tokens = 512;            ///< When a request says 0.
  /// Sampling for fields a request leaves negative. Greedy by default: runs are reproducible.
  float temperature = 0.0f;
  float top_p = 1.0f;
  int32_t top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
};

/// Where the embedded model lives: $TROUPE_MODEL_DIR, else ~/.cache/troupe/models, joined with
/// SmolLM2-135M-Instruct.Q4_1.gguf (scripts/install-deps puts it there).
std::filesystem::path default_model_path();

/// `name` as a file: "smollm2" is default_model_path(), anything else is a path as given.
std::filesystem::path resolve_model_path(const std::string& name);

/// Loads the model (blocking; throws troupe::error: not_found with a hint to run
/// scripts/install-deps for a missing embedded model, parse_error / unsupported for a bad file,
/// invalid_argument for a bad configuration) and spawns its scheduler.
model_actor spawn_local_model(caf::actor_system& sys, const local_model_config& cfg);

}  // namespace troupe
