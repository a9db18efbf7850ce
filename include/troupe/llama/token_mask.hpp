#pragma once
/// Which tokens of a vocabulary a grammar state allows next: the mask the sampler applies in
/// constrained decoding. What does not depend on the state is computed once per vocabulary (as
/// XGrammar and LLGuidance do): a byte trie of all tokens, the set of tokens that fit inside any
/// JSON string, the tokens that contain '<'. Per state, then:
/// - inside a string with room for any token: the precomputed string-safe set, plus the tokens with a
///   quote, backslash, control byte or partial UTF-8 checked one by one;
/// - free text: every token, but those containing '<' checked one by one;
/// - elsewhere: a walk of the trie that prunes a whole subtree at the first forbidden byte.
/// Masks are cached per grammar by the state's key, so a state seen before (the same string
/// position shape, the same schema in another agent) costs a copy.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "troupe/llama/grammar.hpp"
#include "troupe/llama/tokenizer.hpp"

namespace troupe::llama {

/// A set of token ids as bits: token t is allowed when words[t / 64] has bit t % 64.
using token_bitset = std::vector<uint64_t>;

inline bool test_token(const token_bitset& m, int32_t t) {
  return (m[static_cast<size_t>(t) >> 6] >> (static_cast<unsigned>(t) & 63)) & 1;
}

/// The tokens a state allows, and how far from an end the farthest of them leads.
struct token_mask {
  token_bitset bits;
  uint32_t max_need = 0;  ///< The largest min_completion() after any allowed text token.
};

inline bool test_token(const token_mask& m, int32_t t) { return test_token(m.bits, t); }

/// Masks computed for one grammar, by state key. Thread-safe; bounded (cleared when full).
class mask_cache {
 public:
  explicit mask_cache(size_t max_entries = 4096) : max_entries_(max_entries) {}
  std::shared_ptr<const token_mask> find(std::string_view key) const;
  void insert(std::string_view key, std::shared_ptr<const token_mask> mask);
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const token_mask>> map_;
  size_t max_entries_;
};

/// A vocabulary as the masker sees it, whatever tokenizer it comes from (GGUF byte-level BPE or
/// SentencePiece, tiktoken): token t's text bytes and its kind. Control tokens carry no text.
struct mask_vocabulary {
  enum class kind : uint8_t { text, control, end_of_generation };
  std::vector<std::string> bytes;  ///< [vocab]; ignored for control and end-of-generation tokens
  std::vector<kind> kinds;         ///< [vocab]
};

class token_masker {
 public:
  /// Precomputes the vocabulary's token classes (once per model).
  explicit token_masker(const tokenizer& tok);
  /// The same from any vocabulary. Throws troupe::error(invalid_argument) when bytes and kinds
  /// differ in size.
  explicit token_masker(const mask_vocabulary& vocab);

  int32_t vocab_size() const noexcept { return vocab_; }

  /// The tokens allowed after `state`. End-of-generation tokens are allowed exactly when the
  /// state can end; other control tokens never in a constrained state, always in free text.
  /// With a cache, a state seen before costs a lookup.
  std::shared_ptr<const token_mask> allowed(const grammar_matcher& state,
                                              mask_cache* cache = nullptr) const;

  /// Of `mask` (allowed after `state`), the tokens after which the output can still end within
  /// `budget` more bytes (state.min_completion() after the token <= budget). With one token per
  /// byte at worst, `budget` = tokens left after this one keeps every output closable in time.
  /// Returns `mask` itself when nothing would be removed (budget >= mask->max_need: no work) or
  /// when nothing would be left.
  std::shared_ptr<const token_mask> within_budget(const grammar_matcher& state,
                                                    std::shared_ptr<const token_mask> mask,
                                                    uint32_t budget) const;

  /// The bytes token `t` contributes to the text (empty for control tokens).
  const std::string& bytes(int32_t t) const { return bytes_[static_cast<size_t>(t)]; }
  bool is_end_of_generation(int32_t t) const { return test_token(eog_, t); }

 private:
  struct trie_node {
    uint32_t first_child = 0;  ///< index into children_ (edges sorted by byte)
    uint32_t child_count = 0;
    int32_t token = -1;        ///< token whose bytes end here (first id if several)
  };
  struct trie_edge {
    uint8_t byte;
    uint32_t node;
  };

  void walk(const grammar_matcher& state, uint32_t node, token_mask& out) const;
  void check_each(const grammar_matcher& state, std::span<const int32_t> tokens,
                  token_mask& out) const;

  int32_t vocab_ = 0;
  std::vector<std::string> bytes_;
  token_bitset eog_, control_, string_safe_, all_text_;
  std::vector<int32_t> string_sensitive_;  ///< text tokens not in string_safe_
  size_t max_safe_len_ = 0;                ///< longest string_safe_ token, in bytes
  std::vector<int32_t> with_lt_;           ///< text tokens containing '<'
  std::vector<trie_node> nodes_;
  std::vector<trie_edge> edges_;
  std::vector<std::pair<uint32_t, int32_t>> duplicates_;  ///< (node, token): same bytes again
};

}  // namespace troupe::llama
