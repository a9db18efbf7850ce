#pragma once
/// Chat messages with content parts (text, images by URL or inline base64), token usage.

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "caf/meta/type_name.hpp"
#include "troupe/tool_call.hpp"

namespace troupe {

enum class role : uint8_t { system = 0, user = 1, assistant = 2, tool = 3 };

/// "system", "user", "assistant" or "tool" (the OpenAI names).
const char* to_string(role r) noexcept;
std::ostream& operator<<(std::ostream& os, role r);

enum class part_kind : uint8_t { text = 0, image_url = 1, image_data = 2 };
const char* to_string(part_kind k) noexcept;
std::ostream& operator<<(std::ostream& os, part_kind k);

/// One piece of a message's content. For text, `value` is the text; for image_url, the URL; for
/// image_data, base64 bytes with `media_type` such as "image/png".
struct content_part {
  part_kind kind = part_kind::text;
  std::string value;
  std::string media_type;

  static content_part text(std::string s) { return {part_kind::text, std::move(s), {}}; }
  static content_part image_url(std::string url) { return {part_kind::image_url, std::move(url), {}}; }
  static content_part image_base64(std::string media_type, std::string base64) {
    return {part_kind::image_data, std::move(base64), std::move(media_type)};
  }

  friend bool operator==(const content_part&, const content_part&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, content_part& x) {
  return f(caf::meta::type_name("troupe.content_part"), x.kind, x.value, x.media_type);
}

/// One message of a conversation. Assistant messages may carry reasoning text and tool calls;
/// tool messages answer the call named by `tool_call_id`.
struct chat_message {
  troupe::role role = troupe::role::user;
  std::vector<content_part> content;
  std::string reasoning;               ///< Assistant only: the model's reasoning text, if any.
  std::vector<tool_call> tool_calls;   ///< Assistant only.
  std::string tool_call_id;            ///< Tool only.
  std::string name;                    ///< Tool: the tool's name; others: optional speaker name.
  bool is_error = false;               ///< Tool only: the result is an error.

  /// The concatenation of all text parts.
  std::string text() const;

  static chat_message system(std::string text);
  static chat_message user(std::string text);
  static chat_message assistant(std::string text, std::vector<tool_call> calls = {},
                                std::string reasoning = {});
  static chat_message tool(const tool_call& call, const tool_result& result);

  friend bool operator==(const chat_message&, const chat_message&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, chat_message& x) {
  return f(caf::meta::type_name("troupe.chat_message"), x.role, x.content, x.reasoning,
           x.tool_calls, x.tool_call_id, x.name, x.is_error);
}

/// Tokens a model consumed and produced.
struct usage {
  uint64_t prompt_tokens = 0;
  uint64_t completion_tokens = 0;
  /// Of the prompt tokens, those the model did not compute again: their KV cache came from an
  /// earlier request with the same beginning (OpenAI's prompt_tokens_details.cached_tokens).
  uint64_t cached_prompt_tokens = 0;

  uint64_t total() const { return prompt_tokens + completion_tokens; }
  usage& operator+=(const usage& o) {
    prompt_tokens += o.prompt_tokens;
    completion_tokens += o.completion_tokens;
    cached_prompt_tokens += o.cached_prompt_tokens;
    return *this;
  }
  friend bool operator==(const usage&, const usage&) = default;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, usage& x) {
  return f(caf::meta::type_name("troupe.usage"), x.prompt_tokens, x.completion_tokens,
           x.cached_prompt_tokens);
}

}  // namespace troupe
