#pragma once
/// Byte-level BPE tokenizer (GGUF `tokenizer.ggml.model = "gpt2"`) built from a model's metadata:
/// tokens, merges, token types, special token ids and the pre-tokenizer named by
/// `tokenizer.ggml.pre`. It reproduces llama.cpp's tokenisation (special-token partitioning,
/// per-pre-tokenizer regex split with Unicode classes, merge ranks), so that prompts map to the
/// same ids as llama.cpp, and decode(encode(text)) == text for any byte string.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/formats/gguf.hpp"

namespace troupe::llama {

/// GGUF token types (tokenizer.ggml.token_type).
enum class token_type : int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

/// Token pieces can end inside a UTF-8 character. Removes from `pending` and returns everything
/// up to its last complete character; an incomplete tail stays for the next piece.
std::string take_complete_utf8(std::string& pending);

class tokenizer {
 public:
  /// Throws troupe::error: not_found (missing tokenizer keys), unsupported (a tokenizer model
  /// other than gpt2, or a pre-tokenizer not known here), parse_error (inconsistent arrays).
  static tokenizer from_gguf(const gguf_file& file);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  /// Token ids of `text`. add_bos: prepend BOS when the model asks for it
  /// (tokenizer.ggml.add_bos_token). parse_special: text such as "<|im_start|>" becomes its
  /// control token; otherwise it is tokenised as plain text (user-defined tokens always match).
  std::vector<int32_t> encode(std::string_view text, bool add_bos = true,
                              bool parse_special = false) const;

  /// Bytes of a token: byte-level tokens are decoded; control tokens give their text only when
  /// render_special, else nothing. Out-of-range ids give nothing.
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  /// Concatenated pieces. The result can end inside a UTF-8 sequence.
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t vocab_size() const noexcept;
  /// The token's text as stored in the model (byte-level form, e.g. "Ġthe").
  const std::string& token_text(int32_t id) const;
  token_type type(int32_t id) const noexcept;
  /// Id of a token text, e.g. find("<|im_end|>").
  std::optional<int32_t> find(std::string_view text) const;

  int32_t bos() const noexcept;  ///< -1 when the model has none
  int32_t eos() const noexcept;
  /// True for tokens that end a generation: EOS, EOT, <|im_end|>, <|endoftext|>, <|eot_id|>.
  bool is_end_of_generation(int32_t id) const noexcept;
  /// The tokenizer.ggml.pre value this tokenizer follows.
  const std::string& pre_tokenizer() const noexcept;

 private:
  struct impl;
  explicit tokenizer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::llama
