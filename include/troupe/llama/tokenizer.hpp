#pragma once
/// The tokenizer of a llama-architecture GGUF file, built from its metadata, mapping text to the
/// same ids as llama.cpp. Two tokenizer models (`tokenizer.ggml.model`):
/// - "gpt2", byte-level BPE (SmolLM2, Llama 3, Qwen2, ...): tokens, merges and the pre-tokenizer
///   named by `tokenizer.ggml.pre` (per-pre-tokenizer regex split with Unicode classes, merge
///   ranks over GPT-2's byte alphabet, so tokens read "Ġthe").
/// - "llama", SentencePiece BPE (Llama 2, TinyLlama, Mistral, Phi-3, ...): spaces become "▁"
///   (U+2581), a space is put before the text (`tokenizer.ggml.add_space_prefix`, default true),
///   adjacent symbols merge by token score (`tokenizer.ggml.scores`), and bytes that form no
///   token fall back to the <0xXX> byte tokens (else the unknown token). Tokens read "▁the".
/// Both partition special tokens first, as llama.cpp does. Both models map every token back to
/// its bytes, so decode(encode(text, false)) == text for valid UTF-8 text (the gpt2 pre-tokenizers
/// lose bytes that are not UTF-8).

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
  /// Throws troupe::error naming the file: not_found (missing tokenizer keys), unsupported (a
  /// tokenizer model other than gpt2 and llama, or a gpt2 pre-tokenizer not known here; the
  /// message names the value), parse_error (inconsistent arrays).
  static tokenizer from_gguf(const gguf_file& file);

  tokenizer(tokenizer&&) noexcept;
  tokenizer& operator=(tokenizer&&) noexcept;
  ~tokenizer();

  /// Token ids of `text`. add_special: prepend BOS and append EOS when the model asks for them
  /// (tokenizer.ggml.add_bos_token, add_eos_token; SentencePiece files add BOS unless they say
  /// otherwise). parse_special: text such as "<|im_start|>" becomes its control token;
  /// otherwise it is tokenised as plain text (user-defined tokens always match). SentencePiece:
  /// the space prefix goes before the text and after each special token found in it. As in
  /// llama.cpp, a file whose general.name says Phi-3 drops whitespace after its special tokens
  /// (except <unk>, <s>, <|endoftext|>).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const;

  /// Bytes of a token, as it continues a text: byte-level BPE tokens are decoded from GPT-2's
  /// alphabet; SentencePiece tokens have "▁" as a space (so "▁the" gives " the") and <0xXX>
  /// tokens give their byte; user-defined tokens give their text; control and unknown tokens
  /// give their text only when render_special, else nothing; unused tokens and out-of-range ids
  /// give nothing. Generation streams these pieces as they come.
  std::string token_to_piece(int32_t id, bool render_special = false) const;
  /// Concatenated pieces, as llama_detokenize. The result can end inside a UTF-8 sequence.
  /// SentencePiece with the space prefix: one leading space of the first token's piece is
  /// dropped (the one encode() added), so decode(encode(text, false)) == text; a sequence that
  /// starts with BOS keeps it (BOS renders as nothing and takes the drop, as in llama.cpp).
  std::string decode(std::span<const int32_t> ids, bool render_special = false) const;

  int32_t vocab_size() const noexcept;
  /// The token's text as stored in the model: "Ġthe" in byte-level BPE, "▁the" in
  /// SentencePiece. Text for a person or a grammar comes from token_to_piece, never from here.
  const std::string& token_text(int32_t id) const;
  token_type type(int32_t id) const noexcept;
  /// Id of a token text, e.g. find("<|im_end|>").
  std::optional<int32_t> find(std::string_view text) const;

  int32_t bos() const noexcept;  ///< -1 when the model has none
  int32_t eos() const noexcept;
  int32_t unknown() const noexcept;  ///< <unk>; -1 when the model has none
  /// True for tokens that end a generation: EOS, EOT, and by their text <|im_end|>,
  /// <|endoftext|>, <|eot_id|>, <|end|>, <end_of_turn>, </s>, <|eom_id|>, <|end_of_text|> (as in
  /// llama.cpp, these are control tokens whatever type the file gives them).
  bool is_end_of_generation(int32_t id) const noexcept;
  /// The tokenizer.ggml.pre value ("default" when absent; SentencePiece ignores it).
  const std::string& pre_tokenizer() const noexcept;
  /// True for tokenizer.ggml.model "llama" (SentencePiece), false for "gpt2".
  bool is_sentencepiece() const noexcept;
  /// True when encode() puts a space before the text (SentencePiece's add_space_prefix).
  bool adds_space_prefix() const noexcept;

 private:
  struct impl;
  explicit tokenizer(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

}  // namespace troupe::llama
