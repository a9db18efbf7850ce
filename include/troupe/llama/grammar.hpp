#pragma once
/// Output grammars for constrained decoding: a JSON Schema (response_format), or the tool calls
/// of a turn in Hermes or Kimi K2 syntax whose arguments follow each tool's schema (tool_choice
/// required, named or auto). A grammar is compiled once and shared; a grammar_matcher is the state of one
/// generation, fed byte by byte; token_masker (token_mask.hpp) turns a state into a token mask.
///
/// JSON Schema support: type (one type, or several with distinct first characters), object with
/// properties / required / additionalProperties, array with items / minItems / maxItems, string
/// with minLength / maxLength (in code points), number, integer (with minimum / maximum and their
/// exclusive forms, enforced digit by digit), boolean, null, enum, const,
/// anyOf (alternatives with distinct first characters). Objects keep the declared property order
/// (optional ones may be skipped) and admit only declared properties when any are declared; `{}`
/// or a missing type admits any JSON value. Ambiguous alternatives, objects of more than 32
/// properties and enums of more than 32 values fall back to "any value of the declared type".
/// Layout is compact JSON with an optional single space after ':' and ','. Numbers have at most
/// 18 integer, 18 fraction and 2 exponent digits, so a model cannot run on forever inside one
/// and every number fits a double.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/formats/tool_calls.hpp"
#include "troupe/model.hpp"
#include "troupe/tool_call.hpp"

namespace troupe::llama {

class grammar_matcher;

/// Kimi K2's tool-call markers are special tokens, not text; the kimi_k2 grammar reads each as
/// one byte that never occurs in valid UTF-8, and a Kimi vocabulary given to token_masker spells
/// those five tokens with these bytes (and keeps raw-byte tokens holding them out of text).
struct kimi_marker {
  static constexpr uint8_t section_begin = 0xF8;  ///< <|tool_calls_section_begin|>
  static constexpr uint8_t call_begin = 0xF9;     ///< <|tool_call_begin|>
  static constexpr uint8_t argument_begin = 0xFA; ///< <|tool_call_argument_begin|>
  static constexpr uint8_t call_end = 0xFB;       ///< <|tool_call_end|>
  static constexpr uint8_t section_end = 0xFC;    ///< <|tool_calls_section_end|>
};

class grammar {
 public:
  /// Output must be one JSON value conforming to `schema` (JSON Schema text). Throws
  /// troupe::error invalid_argument naming the schema path of what cannot be used.
  static std::shared_ptr<const grammar> from_schema(std::string_view schema);
  /// Output is tool calls for `tools` under `choice`, up to `max_calls`: required or named (the
  /// output starts with a call), automatic (free text until the model opens a call, then a
  /// conforming call). Syntax (troupe/formats/tool_calls.hpp):
  /// - hermes: `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>`, newline-separated;
  /// - kimi_k2: section begin, per call `call begin` `functions.NAME:IDX` `argument begin` ARGS
  ///   `call end`, then section end, the markers (special tokens) read as the kimi_marker bytes.
  /// Throws invalid_argument for no tools, an unknown named tool or a schema that cannot be used
  /// (naming the tool).
  static std::shared_ptr<const grammar> for_tool_calls(
      std::span<const tool_spec> tools, const tool_choice& choice, uint32_t max_calls = 8,
      tool_call_syntax syntax = tool_call_syntax::hermes);

  struct node;  // compiled schema nodes (grammar.cpp)
  struct impl;
  const impl& internals() const noexcept { return *impl_; }
  ~grammar();

 private:
  grammar();
  std::unique_ptr<impl> impl_;
  friend class grammar_matcher;
};

/// The state of one generation under a grammar: a bounded stack of small frames, so copying it
/// is cheap and its bytes identify it (key()) for mask caching.
class grammar_matcher {
 public:
  explicit grammar_matcher(std::shared_ptr<const grammar> g);

  /// Advances by one byte; false (and the state unspecified) when the grammar forbids it.
  bool feed(uint8_t byte) noexcept;
  /// Feeds every byte; false at the first forbidden one.
  bool feed(std::string_view bytes) noexcept;
  /// True when the output may end here (end-of-generation tokens are allowed).
  bool can_end() const noexcept;
  /// True when nothing more can follow (only end-of-generation is allowed).
  bool done() const noexcept;
  /// The fewest bytes that bring this state to one that can end (0 when it can end now). The
  /// engine uses it to close the output in time when the token budget runs short: a byte is at
  /// least one token, so with this many tokens left there is always a way to finish.
  uint32_t min_completion() const noexcept;

  /// What the next byte may be, broadly: lets the masker use precomputed token sets.
  enum class mode : uint8_t {
    free_text,    ///< Anything goes (automatic tool choice before a call opens), no '<' pending.
    string_body,  ///< Inside a JSON string, no escape or UTF-8 sequence pending.
    other,
  };
  mode lexical_mode() const noexcept;
  /// In string_body mode: code points the string may still take (UINT32_MAX: no limit).
  uint32_t string_room() const noexcept;
  /// In string_body mode: code points the string still needs to reach its minLength.
  uint32_t string_missing() const noexcept;

  /// The state's identity: equal keys, equal futures.
  std::string_view key() const noexcept;

  /// One level of the stack. Fields mean different things per node kind (grammar.cpp).
  struct frame {
    uint16_t node = 0;
    uint8_t stage = 0;
    uint8_t aux = 0;
    uint32_t a = 0;
    uint32_t b = 0;
    uint32_t c = 0;
  };
  static_assert(sizeof(frame) == 16, "frames are hashed as bytes: no padding allowed");
  static constexpr int max_depth = 32;

 private:
  friend class token_masker;
  struct borrow_t {};
  /// A copy that shares the grammar without owning it: cheap to make in the masker's inner loops,
  /// valid while `o` lives.
  grammar_matcher(const grammar_matcher& o, borrow_t) noexcept : g_(o.g_), depth_(o.depth_) {
    for (int i = 0; i < depth_; ++i) stack_[static_cast<size_t>(i)] = o.stack_[static_cast<size_t>(i)];
  }
  bool push(uint16_t node) noexcept;
  bool step(uint8_t byte) noexcept;
  bool child_done(uint32_t value) noexcept;

  std::shared_ptr<const grammar> grammar_;
  const grammar::impl* g_ = nullptr;
  std::array<frame, max_depth> stack_{};
  int depth_ = 0;
};

}  // namespace troupe::llama
