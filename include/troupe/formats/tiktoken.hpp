#pragma once
/// tiktoken-format byte-level BPE tokenizer, as Kimi K2 / K2.5 checkpoints ship it: a
/// `tiktoken.model` file (one line per token: base64 of the token's bytes, a space, its rank =
/// its id), a split pattern, and special tokens from `tokenizer_config.json`. encode() gives
/// exactly the ids of tiktoken's `Encoding.encode` built the way Kimi's tokenization_kimi.py
/// builds it, and decode(encode(s)) == s for any byte string, valid UTF-8 or not.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// Kimi's split pattern (`pat_str` of tokenization_kimi.py), in the Rust-regex syntax tiktoken
/// compiles, class intersections `[X&&[^Y]]` included. The default when the config has none.
extern const char* const kimi_pat_str;

/// Rewrites a tiktoken (Rust regex) split pattern for PCRE2: class intersections
/// `[X&&Y]` becomes `(?:(?=Y)X)` (so `[X&&[^Y]]` excludes Y), nested classes are merged, script
/// names in `\p{...}` (e.g. `\p{Han}`) become `\p{sc:...}` since PCRE2 10.40+ reads a bare script
/// name as Script_Extensions where Rust reads Script, and `\s` / `\S` become Unicode White_Space
/// (PCRE2's `\s` also matches U+180E). Throws troupe::error: unsupported for forms it cannot
/// translate (an intersection in a negated class), invalid_argument for unclosed classes.
std::string tiktoken_pattern_to_pcre2(std::string_view pattern);

/// A loaded tokenizer. Ids [0, ranks) are the BPE ranks of tiktoken.model; the special ids follow,
/// 256 of them (Kimi's `num_reserved_special_tokens`) or up to the highest id that
/// tokenizer_config.json names: named ones take their `added_tokens_decoder` text, the others are
/// `<|reserved_token_ID|>`. Immutable after loading, so one instance may serve many threads.
class tiktoken_tokenizer {
 public:
  /// Loads `dir`/tiktoken.model and `dir`/tokenizer_config.json (see from_files).
  static tiktoken_tokenizer from_directory(const std::filesystem::path& dir);

  /// Throws troupe::error: not_found (a file is missing), io_error (cannot read it), parse_error
  /// (a malformed line, with the file and line: bad base64, a rank that is not an integer, a
  /// duplicate rank or token, ranks that are not 0..n-1, a missing single byte; or malformed
  /// JSON / keys, with the file and key), invalid_argument (a `pat_str` that does not compile).
  /// The config's "pat_str" key, when present, replaces Kimi's pattern; "bos_token" and
  /// "eos_token" (strings or {"content": ...}) default to "[BOS]" and "[EOS]".
  static tiktoken_tokenizer from_files(const std::filesystem::path& model,
                                       const std::filesystem::path& config_json);

  tiktoken_tokenizer(tiktoken_tokenizer&&) noexcept;
  tiktoken_tokenizer& operator=(tiktoken_tokenizer&&) noexcept;
  ~tiktoken_tokenizer();

  /// Token ids of `text` (no BOS added). parse_special: the text of a special token becomes its
  /// id (tiktoken's allowed_special="all"); otherwise it is ordinary text (disallowed_special=()).
  /// Bytes that are not valid UTF-8 are encoded as byte tokens, never dropped.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = false) const;

  /// Concatenated bytes of the tokens. Control tokens (config "special": true, and the reserved
  /// ones) give their text only when render_special; special ids marked "special": false (Kimi's
  /// tool-call markers) always give theirs. Ids out of range give nothing. The result can end
  /// inside a UTF-8 sequence.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  /// Bytes of one token, by decode's rules.
  std::string token_to_piece(int32_t id, bool render_special = false) const;

  /// Ranks plus special ids (Kimi K2: 163,584 + 256 = 163,840).
  int32_t vocab_size() const noexcept;
  /// Number of BPE ranks; the first special id.
  int32_t num_ranks() const noexcept;
  /// Id of a special token's text, e.g. "<|im_end|>"; nullopt when it is none.
  std::optional<int32_t> special_id(std::string_view text) const;
  int32_t bos_id() const noexcept;
  int32_t eos_id() const noexcept;
  /// True for the special ids (those past the ranks), whichever their "special" flag.
  bool is_special(int32_t id) const noexcept;

 private:
  struct impl;
  explicit tiktoken_tokenizer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe
