#pragma once
/// The model interface: every model backend (scripted, local engine, OpenAI-compatible endpoint) is
/// an actor with this protocol, so agents use them interchangeably.

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "caf/replies_to.hpp"
#include "caf/typed_actor.hpp"
#include "troupe/atoms.hpp"
#include "troupe/message.hpp"
#include "troupe/tool_call.hpp"

namespace troupe {

/// A bias added to one token's logit before sampling (OpenAI's logit_bias: -100 bans it, 100
/// all but forces it).
struct token_bias {
  int32_t token = 0;
  float bias = 0;
  friend bool operator==(const token_bias&, const token_bias&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_bias& x) {
  return f(caf::meta::type_name("troupe.token_bias"), x.token, x.bias);
}

/// Sampling settings. A negative value means "the backend's default", except for the two
/// penalties at the end, which OpenAI lets go down to -2.
struct sampling_params {
  float temperature = -1.0f;
  float top_p = -1.0f;
  int32_t top_k = -1;
  float min_p = -1.0f;
  float repetition_penalty = -1.0f;
  uint64_t seed = 0;
  /// OpenAI's penalties on tokens already generated in this turn: a token generated c times loses
  /// c · frequency_penalty + (c > 0) · presence_penalty from its logit. 0: off.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  /// Token ids of the model's vocabulary and what to add to their logits, before the penalties
  /// and filters (as llama.cpp's chain does).
  std::vector<token_bias> logit_bias = {};

  friend bool operator==(const sampling_params&, const sampling_params&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sampling_params& x) {
  return f(caf::meta::type_name("troupe.sampling_params"), x.temperature, x.top_p, x.top_k, x.min_p,
           x.repetition_penalty, x.seed, x.frequency_penalty, x.presence_penalty, x.logit_bias);
}

enum class tool_choice_mode : uint8_t { automatic = 0, none = 1, required = 2, named = 3 };

/// OpenAI's tool_choice: "auto", "none", "required" or one named function.
struct tool_choice {
  tool_choice_mode mode = tool_choice_mode::automatic;
  std::string name;  ///< With mode == named.
  friend bool operator==(const tool_choice&, const tool_choice&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tool_choice& x) {
  return f(caf::meta::type_name("troupe.tool_choice"), x.mode, x.name);
}

/// Why a turn ended.
enum class finish_reason : uint8_t { stop = 0, length = 1, tool_calls = 2, cancelled = 3, error = 4 };
const char* to_string(finish_reason r) noexcept;
std::ostream& operator<<(std::ostream& os, finish_reason r);

/// One of the most likely tokens at a step.
struct top_logprob {
  std::string token;  ///< Its bytes (possibly part of a UTF-8 character).
  float logprob = 0;

  friend bool operator==(const top_logprob&, const top_logprob&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, top_logprob& x) {
  return f(caf::meta::type_name("troupe.top_logprob"), x.token, x.logprob);
}

/// A generated token's log-probability (OpenAI's logprobs): the log-softmax of the model's raw
/// logits at that step, before penalties, temperature, filters or grammar masks (as vLLM reports
/// them by default), and the `top` most likely tokens of the same distribution, most likely first.
struct token_logprob {
  std::string token;  ///< Its bytes (possibly part of a UTF-8 character).
  float logprob = 0;  ///< Always finite.
  std::vector<top_logprob> top;

  friend bool operator==(const token_logprob&, const token_logprob&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, token_logprob& x) {
  return f(caf::meta::type_name("troupe.token_logprob"), x.token, x.logprob, x.top);
}

/// A piece of a turn as it is generated. Text and reasoning arrive as appended fragments; a tool
/// call arrives as its index, then (once) its id and name, then argument fragments.
struct turn_delta {
  uint64_t request_id = 0;
  std::string text;
  std::string reasoning;
  int32_t tool_index = -1;  ///< -1: this delta carries no tool-call fragment.
  std::string tool_id;
  std::string tool_name;
  std::string arguments;
  /// With a request's top_logprobs >= 0: the tokens generated since the previous delta (their
  /// text may be held back until a later delta: an incomplete character, a possible stop string).
  std::vector<token_logprob> logprobs;

  friend bool operator==(const turn_delta&, const turn_delta&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, turn_delta& x) {
  return f(caf::meta::type_name("troupe.turn_delta"), x.request_id, x.text, x.reasoning,
           x.tool_index, x.tool_id, x.tool_name, x.arguments, x.logprobs);
}

/// Receives the deltas of a streamed request, in generation order, before the final reply.
using delta_sink_actor = caf::typed_actor<caf::reacts_to<delta_atom, turn_delta>>;

/// One request for an assistant turn.
struct chat_request {
  uint64_t id = 0;  ///< Chosen by the requester; names the request for cancel and deltas.
  std::vector<chat_message> messages;
  std::vector<tool_spec> tools;
  tool_choice choice;
  sampling_params sampling;
  uint32_t max_tokens = 0;         ///< 0: the backend's default.
  std::string response_schema;     ///< JSON Schema text the reply must follow; empty: free text.
  delta_sink_actor stream_to;      ///< Invalid handle: no streaming.
  /// OpenAI's `stop`: the turn ends before the first of these strings in its output text, with
  /// finish == stop, and the text (streamed or not) holds no part of it. Empty strings are ignored.
  std::vector<std::string> stop;
  /// OpenAI's logprobs and top_logprobs: -1, none; 0 to 20, each generated token's
  /// log-probability with that many most likely alternatives (assistant_turn::logprobs).
  int32_t top_logprobs = -1;

  friend bool operator==(const chat_request& a, const chat_request& b) {
    return a.id == b.id && a.messages == b.messages && a.tools == b.tools && a.choice == b.choice &&
           a.sampling == b.sampling && a.max_tokens == b.max_tokens &&
           a.response_schema == b.response_schema && a.stop == b.stop &&
           a.top_logprobs == b.top_logprobs;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_request& x) {
  return f(caf::meta::type_name("troupe.chat_request"), x.id, x.messages, x.tools, x.choice,
           x.sampling, x.max_tokens, x.response_schema, x.stream_to, x.stop, x.top_logprobs);
}

/// The model's answer: text, reasoning, tool calls, usage and why it stopped.
struct assistant_turn {
  std::string text;
  std::string reasoning;
  std::vector<tool_call> tool_calls;
  troupe::usage usage;
  finish_reason finish = finish_reason::stop;
  std::vector<token_logprob> logprobs;  ///< Each generated token's, if the request asked.

  friend bool operator==(const assistant_turn&, const assistant_turn&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, assistant_turn& x) {
  return f(caf::meta::type_name("troupe.assistant_turn"), x.text, x.reasoning, x.tool_calls,
           x.usage, x.finish, x.logprobs);
}

/// Protocol of every model backend.
/// - (chat, chat_request) -> assistant_turn. If `stream_to` is valid, the backend first sends
///   (delta, turn_delta) messages for the request to it, in order, then replies with the whole turn.
///   Failures reply with a troupe::error converted to caf::error (see troupe/caf_error.hpp).
/// - (cancel, request_id): stops that request as soon as possible; its reply is then a turn with
///   finish == cancelled (or an error), never silence. Unknown ids are ignored.
/// Requests are independent: a backend may serve many at once (continuous batching).
using model_actor = caf::typed_actor<caf::replies_to<chat_atom, chat_request>::with<assistant_turn>,
                                     caf::reacts_to<cancel_atom, uint64_t>>;

}  // namespace troupe
