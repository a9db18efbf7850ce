#pragma once
/// Tool calls as local models write them, in text: parsing streamed output into text and complete
/// tool calls, and rendering tool declarations and calls into prompts.
///
/// Syntaxes:
/// - hermes (ChatML models: SmolLM2, Qwen, Hermes): `<tool_call>\n{"name": "NAME", "arguments":
///   {...}}\n</tool_call>`, one block per call, after any text.
/// - kimi_k2 (Kimi K2 / K2.5): `<|tool_calls_section_begin|>` then per call
///   `<|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{...}<|tool_call_end|>`, then
///   `<|tool_calls_section_end|>`. The markers are special tokens: feed their text (render them).
///
/// The closing marker counts only outside JSON strings: a string argument may contain it.
/// A call is emitted only once it is complete and its JSON is valid, so a broken or truncated
/// stream never yields half a call: it becomes a troupe::error (parse_error) that says what was
/// wrong and shows the start of the offending text.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/message.hpp"
#include "troupe/tool_call.hpp"

namespace troupe {

enum class tool_call_syntax : uint8_t { hermes = 0, kimi_k2 = 1 };

/// Incremental parser of one model turn. Feed it the text as it is generated, in pieces of any
/// size (byte boundaries included); it returns the text that is certainly not part of a tool call
/// and the calls completed so far. Output does not depend on how the text was split.
class tool_call_parser {
 public:
  struct output {
    std::string text;              ///< Plain text, in order, outside any tool call.
    std::vector<tool_call> calls;  ///< Complete, valid calls, in order.
  };

  explicit tool_call_parser(tool_call_syntax syntax);

  /// Consumes `piece`. Throws troupe::error (parse_error) when a completed call is malformed:
  /// its JSON does not parse, it has no name, its arguments are not an object.
  output feed(std::string_view piece);
  /// The end of the turn: returns the remaining text. Throws troupe::error (parse_error) when a
  /// call was opened but not closed (truncated output).
  output finish();

  /// True while inside a tool call (text fed since is held back).
  bool in_call() const noexcept { return in_call_; }
  tool_call_syntax syntax() const noexcept { return syntax_; }

 private:
  void close_call(std::string_view body, output& out);
  /// Where the closing marker starts in buf_, outside any JSON string; npos while not seen yet.
  size_t find_close(std::string_view close);
  tool_call_syntax syntax_;
  std::string buf_;    ///< Unconsumed text: a possible marker prefix, or a call's body.
  size_t scanned_ = 0;       ///< Call body bytes already scanned for the closing marker.
  bool in_string_ = false;   ///< The scan is inside a JSON string ...
  bool escaped_ = false;     ///< ... right after a backslash.
  bool in_call_ = false;
  bool in_section_ = false;  ///< kimi_k2: between section begin and end.
  uint32_t calls_ = 0;
};

/// Parses a whole turn at once (feed + finish).
tool_call_parser::output parse_tool_calls(tool_call_syntax syntax, std::string_view text);

/// The system-prompt text that declares `tools` to a hermes-syntax model and shows it the call
/// format; appended to the conversation's system message (or used as one).
std::string hermes_tool_declarations(std::span<const tool_spec> tools);

/// One assistant call in hermes syntax: `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`.
std::string hermes_tool_call_text(const tool_call& call);

/// A tool result as a hermes-syntax model reads it: `<tool_response>\n...\n</tool_response>`.
std::string hermes_tool_response_text(const chat_message& tool_message);

/// A whole conversation in Kimi K2's chat template, byte for byte what Kimi-K2-Instruct-0905's
/// chat_template.jinja renders under transformers (tests/fixtures/kimi_tokenizer): the tool
/// declaration block (`# Tools` and the tools as Python's json.dumps writes them), turns headed by
/// the message's name or role, tool-call sections and `## Return of ID` tool results, ending with
/// the assistant header when `add_generation_prompt`. Call ids not of Kimi's form
/// `functions.NAME:IDX` are renamed to it (IDX counts the conversation's calls) and the results
/// answering them follow; empty arguments are written as `{}`; image parts are left out.
std::string kimi_k2_prompt(std::span<const chat_message> messages, std::span<const tool_spec> tools,
                           bool add_generation_prompt = true);

}  // namespace troupe
