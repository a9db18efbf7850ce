// The local inference engine: a continuous-batching scheduler over a model family's batched
// decoder (engine_backend.hpp; see troupe/local_model.hpp for the protocol and the admission rules).

#include "troupe/local_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/tool_calls.hpp"
#include "engine_backend.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/grammar.hpp"
#include "troupe/llama/sampler.hpp"
#include "troupe/llama/token_mask.hpp"
#include "troupe/llama/tokenizer.hpp"
#include "troupe/stop_strings.hpp"

namespace troupe {

std::filesystem::path default_model_path() {
  std::filesystem::path dir;
  if (const char* d = std::getenv("TROUPE_MODEL_DIR"); d && *d) {
    dir = d;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    dir = std::filesystem::path{home} / ".cache" / "troupe" / "models";
  }
  return dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::filesystem::path resolve_model_path(const std::string& name) {
  return name == "smollm2" ? default_model_path() : std::filesystem::path{name};
}

namespace {

using step_atom = caf::atom_constant<caf::atom("step")>;
using engine_actor = model_actor::extend<caf::reacts_to<step_atom>>;

/// A compiled output grammar and the masks computed for it so far (shared by every request with
/// the same tools and tool_choice, or the same response schema).
struct compiled_grammar {
  std::shared_ptr<const llama::grammar> grammar;
  std::shared_ptr<llama::mask_cache> masks;
};

/// What the scheduler shares with nothing else: the model family's weights, tokenizer, template
/// and decoder, and the grammars compiled so far.
struct engine_core {
  local_model_config cfg;
  std::unique_ptr<engine_backend> backend;
  int64_t bytes_per_position = 0;
  int64_t bytes_per_sequence = 0;  ///< engine_backend::kv_bytes_per_sequence

  /// What a sequence of `positions` may hold in memory: what the KV budget counts.
  int64_t kv_bytes(int64_t positions) const {
    return positions * bytes_per_position + bytes_per_sequence;
  }
  std::map<std::string, compiled_grammar> grammars;  ///< By tools + choice, or by schema.
};

/// One request from arrival to reply.
struct sequence_state {
  uint64_t request_id = 0;
  std::vector<int32_t> prompt;
  size_t prefilled = 0;        ///< Prompt tokens already in the KV cache.
  int64_t written = 0;          ///< Positions in the KV cache (prompt, then generated tokens).
  size_t reused = 0;            ///< Prompt tokens copied from the prefix cache.
  /// Admitted, but its prefill waits for an older sequence to compute more of a prompt that
  /// begins as this one does (then copied, not computed twice).
  bool awaits_prefix = false;
  int32_t next = -1;           ///< The sampled token the next step feeds in.
  uint32_t seq = 0;            ///< Decoder sequence, once admitted.
  int64_t positions = 0;       ///< Reserved KV positions (prompt + max tokens, within context).
  uint32_t max_tokens = 0;
  uint32_t generated = 0;
  llama::sampler sampler;
  std::string text;
  std::string pending;         ///< Bytes of an incomplete UTF-8 character.
  std::optional<stop_strings> stops;  ///< The request's stop strings, if it has any.
  int32_t top_logprobs = -1;          ///< chat_request::top_logprobs
  std::vector<token_logprob> logprobs;
  size_t logprobs_sent = 0;           ///< How many of them deltas carried.
  bool cancelled = false;
  delta_sink_actor sink;
  caf::typed_response_promise<assistant_turn> promise;
  // Constrained decoding (tools or a response schema) and tool-call parsing.
  std::optional<llama::grammar_matcher> matcher;
  std::shared_ptr<llama::mask_cache> masks;
  std::optional<tool_call_parser> parser;
  std::vector<tool_call> calls;
  std::string blank;  ///< Whitespace-only parsed text, held until text (not a call) follows it.

  bool decoding() const { return prefilled == prompt.size(); }
};

using sequence_ptr = std::unique_ptr<sequence_state>;

/// A finished request's KV cache, kept for the prefix cache while the budget has room. Only its
/// prompt's positions are offered for reuse: a generated token's position was computed alone,
/// whose attention sums in another order than a prompt's (attention_head_args::single_token),
/// so a prompt continued from it would not be what computing that prompt gives.
struct idle_sequence {
  uint32_t seq = 0;
  int64_t capacity = 0;         ///< Positions it was opened with.
  std::vector<int32_t> tokens;  ///< Its prompt's tokens in the cache, position by position.
  int64_t held = 0;             ///< Positions written (prompt and generated): its memory.
  uint64_t last_use = 0;        ///< For least-recently-used eviction.
  int64_t bytes(const engine_core& core) const { return core.kv_bytes(held); }
};

struct engine_state {
  static inline const char* name = "troupe.model.local";
  std::shared_ptr<engine_core> core;
  std::deque<sequence_ptr> waiting;   ///< Arrival order.
  std::vector<sequence_ptr> running;  ///< Admitted: a KV sequence is open for each.
  int64_t reserved_bytes = 0;         ///< Reservations of the running sequences.
  std::vector<idle_sequence> idle;    ///< The prefix cache.
  int64_t idle_bytes = 0;             ///< What the idle sequences hold (kv_bytes).
  uint64_t clock = 0;                 ///< Ticks at each use of an idle sequence.
  bool step_pending = false;
};

/// At most this many finished sequences are kept, whatever the budget (matching a prompt reads
/// each one's tokens).
constexpr size_t max_idle_sequences = 256;
/// A sequence waits for an older one's prefill only when that saves at least this many tokens.
constexpr size_t min_wait_gain = 32;

size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  return static_cast<size_t>(std::mismatch(a.begin(), a.begin() + static_cast<ptrdiff_t>(n),
                                           b.begin()).first -
                             a.begin());
}

/// The part of a prompt that may come from the prefix cache: all but its last two tokens (see
/// start_prompt).
std::span<const int32_t> reusable_part(const std::vector<int32_t>& prompt) {
  return std::span(prompt).first(prompt.size() < 3 ? 0 : prompt.size() - 2);
}

/// The grammar a request's output must follow, if any: its response schema, else its tool calls
/// in the model's syntax.
std::optional<compiled_grammar> grammar_for(engine_core& core, const chat_request& req) {
  std::string key;
  if (!req.response_schema.empty()) {
    key = "schema:" + req.response_schema;
  } else if (!req.tools.empty() && req.choice.mode != tool_choice_mode::none) {
    key = "tools:" + std::to_string(static_cast<int>(req.choice.mode)) + ":" + req.choice.name;
    for (const auto& t : req.tools) key += "\n" + t.name + "\n" + t.parameters;
  } else {
    return std::nullopt;
  }
  if (auto it = core.grammars.find(key); it != core.grammars.end()) return it->second;
  compiled_grammar g;
  g.grammar = req.response_schema.empty()
                  ? llama::grammar::for_tool_calls(req.tools, req.choice, 8, core.backend->syntax())
                  : llama::grammar::from_schema(req.response_schema);
  g.masks = std::make_shared<llama::mask_cache>();
  if (core.grammars.size() >= 256) core.grammars.clear();
  core.grammars.emplace(key, g);
  return g;
}

llama::sampler_params sampling_of(const local_model_config& cfg, const sampling_params& s) {
  llama::sampler_params p;
  p.temperature = s.temperature >= 0 ? s.temperature : cfg.temperature;
  p.top_p = s.top_p >= 0 ? s.top_p : cfg.top_p;
  p.top_k = s.top_k >= 0 ? s.top_k : cfg.top_k;
  p.min_p = s.min_p >= 0 ? s.min_p : cfg.min_p;
  p.repeat_penalty = s.repetition_penalty >= 0 ? s.repetition_penalty : cfg.repetition_penalty;
  p.seed = s.seed;
  p.frequency_penalty = s.frequency_penalty;
  p.presence_penalty = s.presence_penalty;
  for (const auto& b : s.logit_bias) p.logit_bias.emplace_back(b.token, b.bias);
  return p;
}

double mib(int64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

/// Turns a request into a queued sequence, or says why it can never run.
sequence_ptr prepare(engine_core& core, const chat_request& req) {
  if (req.messages.empty()) {
    throw error(errc::invalid_argument, "local model: the request has no messages");
  }
  auto s = std::make_unique<sequence_state>();
  s->request_id = req.id;
  const engine_backend& model = *core.backend;
  if (model.masker() == nullptr && !req.response_schema.empty()) {
    throw error(errc::unsupported,
                fmt::format("local model: {} models do not take a response_schema yet (no "
                            "constrained decoding over their vocabulary); ask for JSON in the prompt",
                            model.family()));
  }
  if (model.masker() != nullptr) {
    if (auto g = grammar_for(core, req)) {
      s->matcher.emplace(g->grammar);
      s->masks = g->masks;
    }
  }
  if (!req.tools.empty() && req.choice.mode != tool_choice_mode::none &&
      req.response_schema.empty()) {
    s->parser.emplace(model.syntax());
  }
  s->prompt = model.prompt(req);
  const int64_t context = core.cfg.context;
  const auto prompt = static_cast<int64_t>(s->prompt.size());
  if (prompt + 1 > context) {
    throw error(errc::invalid_argument,
                fmt::format("local model: the conversation is {} tokens long, but a sequence "
                            "holds {} positions (prompt plus at least one generated token); "
                            "shorten the conversation or raise the context",
                            prompt, context));
  }
  s->max_tokens = req.max_tokens > 0 ? req.max_tokens : core.cfg.default_max_tokens;
  s->positions = std::min<int64_t>(prompt + s->max_tokens, context);
  const int64_t bytes = core.kv_bytes(s->positions);
  if (bytes > core.cfg.kv_budget_bytes) {
    throw error(errc::budget_exceeded,
                fmt::format("local model: this request needs {:.1f} MiB of KV cache ({} "
                            "positions), more than the engine's whole budget of {:.1f} MiB; "
                            "lower max_tokens or raise the KV budget",
                            mib(bytes), s->positions, mib(core.cfg.kv_budget_bytes)));
  }
  for (const auto& b : req.sampling.logit_bias) {
    if (b.token < 0 || b.token >= model.vocab() || !std::isfinite(b.bias))
      throw error(errc::invalid_argument,
                  fmt::format("local model: logit_bias names token {} with bias {}; token ids go "
                              "from 0 to {} in this model's vocabulary and a bias must be finite",
                              b.token, b.bias, model.vocab() - 1));
  }
  s->sampler = llama::sampler{sampling_of(core.cfg, req.sampling)};
  for (int32_t t : s->prompt) s->sampler.accept_prompt(t);
  if (stop_strings stops{req.stop}; !stops.empty()) s->stops = std::move(stops);
  if (req.top_logprobs > 20)
    throw error(errc::invalid_argument,
                fmt::format("local model: top_logprobs is {}; ask for at most 20",
                            req.top_logprobs));
  s->top_logprobs = req.top_logprobs;
  s->sink = req.stream_to;
  return s;
}

/// The log-probabilities no delta has carried yet.
std::vector<token_logprob> unsent_logprobs(sequence_state& s) {
  const auto from = s.logprobs.begin() + static_cast<ptrdiff_t>(s.logprobs_sent);
  s.logprobs_sent = s.logprobs.size();
  return {from, s.logprobs.end()};
}

void stream_text(engine_actor::pointer self, sequence_state& s, std::string text) {
  if (text.empty()) return;
  s.text += text;
  if (!s.sink) return;
  turn_delta d;
  d.request_id = s.request_id;
  d.text = std::move(text);
  d.logprobs = unsent_logprobs(s);
  self->send(s.sink, delta_atom::value, std::move(d));
}

void stream_calls(engine_actor::pointer self, sequence_state& s, std::vector<tool_call> calls) {
  for (auto& c : calls) {
    // Ids unique within a run: the request id and the call's index in the turn.
    c.id = fmt::format("call_{}_{}", s.request_id, s.calls.size());
    if (s.sink) {
      turn_delta d;
      d.request_id = s.request_id;
      d.tool_index = static_cast<int32_t>(s.calls.size());
      d.tool_id = c.id;
      d.tool_name = c.name;
      d.arguments = c.arguments;
      d.logprobs = unsent_logprobs(s);
      self->send(s.sink, delta_atom::value, std::move(d));
    }
    s.calls.push_back(std::move(c));
  }
}

/// New output text: through the tool-call parser when the request has tools (text outside calls
/// streams as text, each call once it is complete), else straight out. Throws the parser's error.
void send_text(engine_actor::pointer self, sequence_state& s, std::string text) {
  if (!s.parser) return stream_text(self, s, std::move(text));
  auto out = s.parser->feed(text);
  // Newlines around calls are layout, not an answer: whitespace waits for real text.
  s.blank += out.text;
  if (s.blank.find_first_not_of(" \t\r\n") != std::string::npos)
    stream_text(self, s, std::exchange(s.blank, {}));
  stream_calls(self, s, std::move(out.calls));
}

/// Generated text (complete UTF-8) on its way out: through the stop strings, if the request has
/// any, to send_text. True when a stop string is complete: the turn ends before it.
bool emit(engine_actor::pointer self, sequence_state& s, std::string text) {
  if (!s.stops) {
    send_text(self, s, std::move(text));
    return false;
  }
  auto step = s.stops->feed(text);
  send_text(self, s, std::move(step.text));
  return step.stopped;
}

void drop_idle(engine_state& st, size_t i) {
  st.core->backend->close(st.idle[i].seq);
  st.idle_bytes -= st.idle[i].bytes(*st.core);
  st.idle.erase(st.idle.begin() + static_cast<ptrdiff_t>(i));
}

/// Drops the least recently used idle sequence other than the one at index `keep`; false when
/// there is none.
bool evict_one(engine_state& st, size_t keep = SIZE_MAX) {
  size_t victim = st.idle.size();
  for (size_t i = 0; i < st.idle.size(); ++i) {
    if (i == keep) continue;
    if (victim == st.idle.size() || st.idle[i].last_use < st.idle[victim].last_use) victim = i;
  }
  if (victim == st.idle.size()) return false;
  drop_idle(st, victim);
  return true;
}

/// Frees an admitted sequence's reservation. Its KV cache stays as an idle sequence of the
/// prefix cache when `keep` (its content is sound) and the engine keeps one, else it is closed.
void release(engine_state& st, sequence_state& s, bool keep) {
  const auto& core = *st.core;
  st.reserved_bytes -= core.kv_bytes(s.positions);
  if (!keep || !core.cfg.prefix_cache || s.prefilled < 2) {
    core.backend->close(s.seq);
    return;
  }
  s.prompt.resize(s.prefilled);
  // An idle sequence whose tokens this one begins with says nothing new.
  for (size_t i = st.idle.size(); i-- > 0;) {
    if (st.idle[i].tokens.size() <= s.prompt.size() &&
        common_prefix(st.idle[i].tokens, s.prompt) == st.idle[i].tokens.size())
      drop_idle(st, i);
  }
  if (st.idle.size() >= max_idle_sequences) evict_one(st);
  st.idle.push_back({s.seq, s.positions, std::move(s.prompt), s.written, ++st.clock});
  st.idle_bytes += st.idle.back().bytes(core);
}

/// Replies to a sequence and frees what it holds.
void finish(engine_actor::stateful_pointer<engine_state> self, sequence_state& s,
            finish_reason why, bool admitted) {
  auto& st = self->state;
  try {
    // What waited for more bytes (an incomplete character) or for the next piece (a possible
    // beginning of a stop string) was output after all, unless a stop string ended the turn.
    if (!emit(self, s, std::exchange(s.pending, {})) && s.stops)
      send_text(self, s, s.stops->flush());
    if (s.parser && why != finish_reason::cancelled) {
      auto out = s.parser->finish();
      s.blank += out.text;
      if (s.calls.empty() || s.blank.find_first_not_of(" \t\r\n") != std::string::npos)
        stream_text(self, s, std::exchange(s.blank, {}));
    }
    if (s.sink && s.logprobs_sent < s.logprobs.size()) {
      // Tokens whose text was held back and dropped (a stop string) or is whitespace around
      // tool calls: their log-probabilities still stream, before the reply.
      turn_delta d;
      d.request_id = s.request_id;
      d.logprobs = unsent_logprobs(s);
      self->send(s.sink, delta_atom::value, std::move(d));
    }
    assistant_turn turn;
    turn.text = std::move(s.text);
    turn.logprobs = std::move(s.logprobs);
    turn.tool_calls = std::move(s.calls);
    turn.usage = usage{s.prompt.size(), s.generated, s.reused};
    turn.finish = !turn.tool_calls.empty() && why == finish_reason::stop ? finish_reason::tool_calls
                                                                         : why;
    s.promise.deliver(std::move(turn));
  } catch (const error& e) {
    s.promise.deliver(to_caf_error(error{errc::model_failed, "local model: " + e.message()}));
  }
  if (admitted) release(st, s, true);
}

/// Fails a request; its KV cache, which a failed step may have left half written, is closed.
void fail(engine_actor::stateful_pointer<engine_state> self, sequence_state& s, const error& e,
          bool admitted) {
  s.promise.deliver(to_caf_error(e));
  if (admitted) release(self->state, s, false);
}

/// The idle sequence holding the longest part of `s`'s reusable prompt that it may copy (one of
/// an interchangeable capacity): its index in st.idle (st.idle.size(): none) and that length.
struct idle_match {
  size_t index;
  size_t length = 0;
};
idle_match best_idle_for(const engine_state& st, const sequence_state& s) {
  idle_match best{st.idle.size()};
  const auto prompt = reusable_part(s.prompt);
  for (size_t i = 0; i < st.idle.size(); ++i) {
    const size_t n = common_prefix(st.idle[i].tokens, prompt);
    if (n > best.length && st.core->backend->interchangeable(st.idle[i].capacity, s.positions))
      best = {i, n};
  }
  return best;
}

/// Where an admitted sequence's prompt starts: from a copy of the longest beginning of it that an
/// idle or running sequence holds in its cache, or, when an older running sequence still
/// prefilling a prompt that begins the same way would hold at least min_wait_gain tokens more,
/// after waiting for it (awaits_prefix). Only prompt positions are copied, and at least the
/// prompt's last two tokens are computed, as one chunk: a prompt computed in parts of two or
/// more tokens sums as in one part (with weights whose products sum per token, as the embedded
/// model's do, every logit is the same as without the copy), one of a single token would not
/// (attention_head_args::single_token). Called at admission and each step while it waits.
void start_prompt(engine_state& st, sequence_state& s) {
  const auto& core = *st.core;
  s.awaits_prefix = false;
  if (!core.cfg.prefix_cache || s.prefilled > 0) return;
  const std::span<const int32_t> prompt = reusable_part(s.prompt);
  if (prompt.empty()) return;
  auto& backend = *core.backend;
  const idle_match idle = best_idle_for(st, s);
  size_t best = idle.length, best_idle = idle.index;
  uint32_t from = best_idle < st.idle.size() ? st.idle[best_idle].seq : 0;
  size_t pending = 0;  // what an older sequence's prefill would give
  for (const auto& r : st.running) {
    if (r.get() == &s) break;  // only older ones: a sequence never waits for a younger one
    if (r->awaits_prefix || !backend.interchangeable(r->positions, s.positions)) continue;
    const size_t n = common_prefix(std::span(r->prompt).first(r->prefilled), prompt);
    if (n > best) best = n, best_idle = st.idle.size(), from = r->seq;
    if (!r->decoding()) pending = std::max(pending, common_prefix(r->prompt, prompt));
  }
  if (pending >= best + min_wait_gain) {
    s.awaits_prefix = true;
    return;
  }
  if (best == 0) return;
  backend.copy_prefix(from, s.seq, static_cast<int64_t>(best));
  s.prefilled = s.reused = best;
  s.written = static_cast<int64_t>(best);
  if (best_idle < st.idle.size()) {
    auto& donor = st.idle[best_idle];
    donor.last_use = ++st.clock;
    // This sequence will hold all the donor holds and more: one copy is enough.
    if (best == donor.tokens.size()) drop_idle(st, best_idle);
  }
}

/// Moves waiting sequences into the batch while they fit, strictly in arrival order (a large
/// request is not overtaken forever by small ones). Idle sequences of the prefix cache give way
/// to a request that needs their room, least recently used first, the one it would start from
/// last.
void admit(engine_state& st) {
  const auto& cfg = st.core->cfg;
  while (!st.waiting.empty() && static_cast<int32_t>(st.running.size()) < cfg.max_batch) {
    auto& s = st.waiting.front();
    const int64_t bytes = st.core->kv_bytes(s->positions);
    if (st.reserved_bytes + bytes > cfg.kv_budget_bytes) break;  // waits for running ones
    while (st.reserved_bytes + st.idle_bytes + bytes > cfg.kv_budget_bytes) {
      if (!evict_one(st, best_idle_for(st, *s).index)) evict_one(st);  // at last the donor
    }
    s->seq = st.core->backend->open(s->positions);
    st.reserved_bytes += bytes;
    st.running.push_back(std::move(s));
    st.waiting.pop_front();
    start_prompt(st, *st.running.back());
  }
}

void schedule_step(engine_actor::stateful_pointer<engine_state> self) {
  auto& st = self->state;
  if (st.step_pending || (st.waiting.empty() && st.running.empty())) return;
  st.step_pending = true;
  self->send(self, step_atom::value);
}

/// One forward pass over the batch, then sampling, streaming and replies.
void step(engine_actor::stateful_pointer<engine_state> self) {
  auto& st = self->state;
  const auto& core = *st.core;
  // Cancelled sequences leave before the step.
  std::erase_if(st.running, [&](sequence_ptr& s) {
    if (!s->cancelled) return false;
    finish(self, *s, finish_reason::cancelled, true);
    return true;
  });
  admit(st);
  if (st.running.empty()) return;
  for (auto& s : st.running)
    if (s->awaits_prefix) start_prompt(st, *s);

  // Decoding sequences take one token each; prompts share the prefill budget, oldest first.
  std::vector<engine_backend::chunk> chunks;
  std::vector<sequence_state*> in_step;
  int64_t prefill_left = std::max<int32_t>(core.cfg.prefill_chunk, 1);
  for (auto& s : st.running) {
    if (s->awaits_prefix) continue;
    if (s->decoding()) {
      chunks.push_back({s->seq, std::span<const int32_t>(&s->next, 1)});
    } else {
      if (prefill_left <= 0) continue;
      const auto left = static_cast<int64_t>(s->prompt.size() - s->prefilled);
      auto n = std::min<int64_t>(prefill_left, left);
      // No prompt chunk of a single token when the prompt has more: its attention would sum in
      // the one-token order (attention_head_args::single_token), not the prompt's. Such a
      // prompt leaves one token fewer for its next chunk, or waits for a step with more room.
      if (core.cfg.prefill_chunk >= 3 && n < left && (n == 1 || left - n == 1)) {
        if (n <= 2) continue;
        --n;
      }
      chunks.push_back({s->seq, std::span<const int32_t>(s->prompt.data() + s->prefilled,
                                                         static_cast<size_t>(n))});
      prefill_left -= n;
    }
    in_step.push_back(s.get());
  }
  if (chunks.empty()) return;

  std::span<const float> logits;
  try {
    logits = core.backend->decode(chunks);
  } catch (const error& e) {
    // A failed step fails the sequences in it (their caches are unchanged but suspect).
    const error why{errc::model_failed, "local model: the forward pass failed: " + e.message()};
    std::erase_if(st.running, [&](sequence_ptr& s) {
      if (std::find(in_step.begin(), in_step.end(), s.get()) == in_step.end()) return false;
      fail(self, *s, why, true);
      return true;
    });
    return;
  }

  for (size_t i = 0; i < in_step.size(); ++i)
    in_step[i]->written += static_cast<int64_t>(chunks[i].tokens.size());
  const auto vocab = static_cast<size_t>(core.backend->vocab());
  std::vector<sequence_state*> done_stop, done_length, failed;
  std::vector<error> failures;
  std::vector<float> masked;
  for (size_t i = 0; i < in_step.size(); ++i) {
    sequence_state& s = *in_step[i];
    if (!s.decoding()) {
      s.prefilled += chunks[i].tokens.size();
      if (!s.decoding()) continue;  // More prompt to go: these logits are not needed.
    }
    std::span<const float> row = logits.subspan(i * vocab, vocab);
    const std::span<const float> raw = row;  // What the log-probabilities describe.
    if (s.matcher) {
      // Constrained: every token the grammar forbids gets -inf before sampling.
      const auto& masker = *core.backend->masker();
      auto mask = masker.allowed(*s.matcher, s.masks.get());
      // Only tokens after which the output can still be closed with the tokens left (a byte
      // needs at most one token), so a call or a JSON answer always ends before max_tokens.
      const int64_t left = std::min<int64_t>(
        static_cast<int64_t>(s.max_tokens) - s.generated,
        s.positions - static_cast<int64_t>(s.prompt.size()) - s.generated);
      mask = masker.within_budget(*s.matcher, std::move(mask),
                                        static_cast<uint32_t>(std::max<int64_t>(left - 1, 0)));
      masked.assign(row.begin(), row.end());
      bool any = false;
      for (size_t t = 0; t < vocab; ++t) {
        if (llama::test_token(*mask, static_cast<int32_t>(t))) any = true;
        else masked[t] = -INFINITY;
      }
      if (!any) {
        failed.push_back(&s);
        failures.emplace_back(errc::model_failed,
                              "local model: the output grammar allows no token after `" +
                                s.text.substr(s.text.size() > 80 ? s.text.size() - 80 : 0) +
                                "`; this is a bug in troupe's grammar, please report it");
        continue;
      }
      row = masked;
    }
    const int32_t tok = s.sampler.sample(row);
    if (core.backend->is_end_of_generation(tok)) {
      done_stop.push_back(&s);
      continue;
    }
    s.sampler.accept(tok);
    ++s.generated;
    const std::string piece = core.backend->piece(tok);
    if (s.top_logprobs >= 0) {
      auto lp = llama::logprobs_of(raw, tok, s.top_logprobs);
      token_logprob t{piece, lp.logprob, {}};
      for (const auto& [id, l] : lp.top) t.top.push_back({core.backend->piece(id), l});
      s.logprobs.push_back(std::move(t));
    }
    if (s.matcher && !s.matcher->feed(core.backend->masker()->bytes(tok))) {
      failed.push_back(&s);
      failures.emplace_back(errc::internal, "local model: a masked token broke the grammar");
      continue;
    }
    s.pending += piece;
    try {
      if (emit(self, s, llama::take_complete_utf8(s.pending))) {
        done_stop.push_back(&s);
        continue;
      }
    } catch (const error& e) {
      failed.push_back(&s);
      failures.emplace_back(errc::model_failed, "local model: " + e.message());
      continue;
    }
    if (s.matcher && s.matcher->done()) {
      done_stop.push_back(&s);
      continue;
    }
    const int64_t used = static_cast<int64_t>(s.prompt.size()) + s.generated;
    if (s.generated >= s.max_tokens || used >= s.positions) {
      done_length.push_back(&s);
    } else {
      s.next = tok;
    }
  }
  std::erase_if(st.running, [&](sequence_ptr& s) {
    if (auto f = std::find(failed.begin(), failed.end(), s.get()); f != failed.end()) {
      fail(self, *s, failures[static_cast<size_t>(f - failed.begin())], true);
      return true;
    }
    if (std::find(done_stop.begin(), done_stop.end(), s.get()) != done_stop.end()) {
      finish(self, *s, finish_reason::stop, true);
      return true;
    }
    if (std::find(done_length.begin(), done_length.end(), s.get()) != done_length.end()) {
      finish(self, *s, finish_reason::length, true);
      return true;
    }
    return false;
  });
}

engine_actor::behavior_type engine(engine_actor::stateful_pointer<engine_state> self,
                                   std::shared_ptr<engine_core> core) {
  self->state.core = core;
  self->set_exit_handler([self](const caf::exit_msg& msg) {
    // Nobody waits in silence: queued and running requests get an error, then the actor quits.
    auto& st = self->state;
    const error why{errc::cancelled, "local model: the engine is shutting down"};
    for (auto& s : st.waiting) fail(self, *s, why, false);
    for (auto& s : st.running) fail(self, *s, why, true);
    st.waiting.clear();
    st.running.clear();
    self->quit(msg.reason);
  });
  return {
    [self](chat_atom, const chat_request& req) -> caf::result<assistant_turn> {
      auto& st = self->state;
      sequence_ptr s;
      try {
        s = prepare(*st.core, req);
      } catch (const error& e) {
        return to_caf_error(e);
      }
      s->promise = self->make_response_promise<assistant_turn>();
      auto rp = s->promise;
      st.waiting.push_back(std::move(s));
      schedule_step(self);
      return rp;
    },
    [self](cancel_atom, uint64_t request_id) {
      auto& st = self->state;
      for (auto it = st.waiting.begin(); it != st.waiting.end(); ++it) {
        if ((*it)->request_id == request_id) {
          finish(self, **it, finish_reason::cancelled, false);
          st.waiting.erase(it);
          return;
        }
      }
      for (auto& s : st.running)
        if (s->request_id == request_id) s->cancelled = true;  // Ends at the next step.
    },
    [self](step_atom) {
      auto& st = self->state;
      st.step_pending = false;
      try {
        step(self);
      } catch (const std::exception& e) {
        // Never a silent death with requests waiting: whatever broke fails the batch, loudly.
        const error why{errc::internal, std::string("local model: a step failed: ") + e.what()};
        for (auto& s : st.running) fail(self, *s, why, true);
        st.running.clear();
      }
      schedule_step(self);
    },
  };
}

}  // namespace

model_actor spawn_local_model(caf::actor_system& sys, const local_model_config& cfg) {
  if (cfg.threads < 1 || cfg.threads > 256)
    throw error(errc::invalid_argument, "local model: threads must be in 1..256");
  if (cfg.context < 16)
    throw error(errc::invalid_argument, "local model: context must be at least 16 positions");
  if (cfg.max_batch < 1)
    throw error(errc::invalid_argument, "local model: max_batch must be at least 1");
  if (cfg.kv_budget_bytes <= 0)
    throw error(errc::invalid_argument, "local model: the KV budget must be positive");
  const auto path = resolve_model_path(cfg.model);
  if (!std::filesystem::exists(path)) {
    throw error(errc::not_found,
                cfg.model == "smollm2"
                  ? "the embedded model is not installed at " + path.string() +
                      "; run scripts/install-deps (or set TROUPE_MODEL_DIR)"
                  : "model file " + path.string() + " does not exist");
  }
  if (cfg.expert_shards < 0)
    throw error(errc::invalid_argument, "local model: expert_shards must be 0 or more");
  auto core = std::make_shared<engine_core>();
  core->cfg = cfg;
  core->backend = engine_backend::load(path, sys, cfg.threads, cfg.expert_shards,
                                       llama::parse_kv_cache_type(cfg.kv_cache_type));
  core->cfg.context = std::min<int64_t>(cfg.context, core->backend->context());
  core->bytes_per_position = core->backend->kv_bytes_per_position();
  core->bytes_per_sequence = core->backend->kv_bytes_per_sequence();
  return caf::actor_cast<model_actor>(sys.spawn<caf::detached>(engine, std::move(core)));
}

}  // namespace troupe
