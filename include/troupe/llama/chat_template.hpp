#pragma once
/// Chat prompt formats, written as code rather than interpreted Jinja, and chosen from the
/// model's `tokenizer.chat_template` metadata the way llama.cpp's llm_chat_detect_template
/// chooses (by marker strings in the template text). apply() reproduces what the template renders
/// under Jinja as HF transformers runs it (trim_blocks, lstrip_blocks), byte for byte: that is the
/// text the model was trained on. tests/fixtures/llama/chat_templates.json holds real templates
/// rendered that way (tools/reference/make_chat_template_fixture.py); where llama.cpp's own C++
/// formatter differs (whitespace, BOS, where a system message goes) the fixture says how.
///
/// Conversations a template refuses (Jinja raise_exception) or silently drops parts of get a
/// stated rule instead of an error, so that any conversation renders:
///  - role "tool": ChatML keeps the role (`<|im_start|>tool`, SmolLM2's template does the same);
///    llama3 renders it as Llama 3.1's `ipython` turn with the content JSON-quoted as that
///    template does; every other kind renders it as a user turn.
///  - a system message where the template has no system turn (llama2, mistral_v1, mistral_v3,
///    gemma) goes into a user turn: a leading one as the template places it (or, for llama2 and
///    gemma whose templates refuse it, before the first user message followed by "\n\n"); a later
///    one becomes a user turn of its own.
///
/// BOS contract: where the template prints `bos_token`, apply() prints the BOS token's text too
/// ("<s>", "<|begin_of_text|>", ...), and begins_with_bos() is true. The caller encodes the text
/// with special tokens parsed and adds no second BOS then; otherwise it adds BOS as the model asks
/// (tokenizer.ggml.add_bos_token), as llama.cpp does for a template without one.

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "troupe/formats/gguf.hpp"

namespace troupe::llama {

struct chat_message {
  std::string role;  ///< "system", "user", "assistant", "tool"
  std::string content;
};

/// The model's tokens a chat template prints, and the date templates print as today's.
struct chat_context {
  std::string bos_token;  ///< BOS text; empty when the model has none
  std::string eos_token;  ///< EOS text
  /// Llama 3.1's template prints it as "26 Jul 2024" (its own fallback, the default here),
  /// Mistral Small 3.2's default system prompt as 2024-07-26. Pass today's date to match what
  /// transformers and llama.cpp render, which call strftime_now.
  std::chrono::year_month_day date{std::chrono::year{2024}, std::chrono::July,
                                   std::chrono::day{26}};
};

class chat_template {
 public:
  enum class kind {
    chatml,  ///< <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen, Hermes, ...)
    /// [INST] user [/INST]answer</s> with no system turn (Mistral-7B-Instruct v0.1/v0.2's and
    /// Mixtral's original templates).
    llama2,
    /// Llama-2-chat: `<<SYS>>\nsystem\n<</SYS>>\n\n` inside the first [INST], " answer </s>".
    /// llama.cpp's variants llama2-sys, -sys-bos and -sys-strip are two flags here, each read
    /// from the template on its own: BOS before every [INST], and stripped contents (llama.cpp's
    /// either-or misses Llama-2-chat itself, which does both).
    llama2_sys,
    mistral_v1,         ///< <s> [INST] system\n\nuser [/INST] answer</s>
    mistral_v3,         ///< <s>[INST] user[/INST] answer</s>, system in the last user turn
    mistral_v3_tekken,  ///< <s>[INST]user[/INST]answer</s> (Mistral Nemo)
    mistral_v7,         ///< <s>[SYSTEM_PROMPT] system[/SYSTEM_PROMPT][INST] user[/INST] answer</s>
    /// <s>[SYSTEM_PROMPT]system[/SYSTEM_PROMPT][INST]user[/INST]answer</s> (Mistral Small 3.x,
    /// Devstral: the template's default system prompt when the conversation has none).
    mistral_v7_tekken,
    /// <|begin_of_text|><|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>; Llama 3.1
    /// and later also open with a system turn carrying "Cutting Knowledge Date" and the date.
    llama3,
    zephyr,       ///< <|role|>\ncontent</s>\n (TinyLlama-1.1B-Chat, Zephyr)
    phi3,         ///< <|role|>\ncontent<|end|>\n (Phi-3, Phi-3.5)
    /// <|im_start|>role<|im_sep|>content<|im_end|> (Phi-4); its first template writes the
    /// assistant's opening after every user turn, whatever add_generation_prompt says.
    phi4,
    gemma,        ///< <start_of_turn>user\ncontent<end_of_turn>\n, the assistant being "model"
    vicuna,       ///< system\n\nUSER: user\nASSISTANT: answer</s>\n
    vicuna_orca,  ///< SYSTEM: system\nUSER: user\nASSISTANT: answer</s>\n
    /// <|start_of_role|>role<|end_of_role|>content<|end_of_text|>\n (IBM Granite 3.x; 3.3's
    /// default system message carries the date).
    granite,
    /// SmolLM3: ChatML behind a system turn of "## Metadata" (knowledge cutoff, reasoning mode)
    /// and "## Custom Instructions" (the system message without its /think or /no_think flag,
    /// else a default one). Thinking is on unless the system message says /no_think; then every
    /// assistant turn and the generation prompt carry an empty <think></think> block. A tool
    /// result is a user turn, as the template renders it; so is a later system message (which
    /// the template drops).
    smollm3,
  };

  /// Recognises the template in tokenizer.chat_template, with BOS/EOS texts from the vocabulary.
  /// Throws troupe::error(unsupported) naming the file and listing the kinds troupe knows when
  /// the model has a template troupe does not implement; a model without a template gets plain
  /// ChatML.
  static chat_template from_gguf(const gguf_file& file, chat_context ctx = {});
  /// The template kind `text` is written in, or nullopt when troupe does not know it.
  static std::optional<chat_template> detect(std::string_view text, chat_context ctx = {});
  /// ChatML; `default_system` is inserted when the conversation has no system message
  /// (SmolLM2's template does this), empty for none.
  static chat_template chatml(std::string default_system = {});

  /// The prompt text; with add_generation_prompt it ends with what opens the assistant turn, ready
  /// for the model to continue (kinds whose templates have no such text — llama2, mistral — end
  /// with the last user turn either way). Encode it with parse_special = true.
  std::string apply(std::span<const chat_message> messages,
                    bool add_generation_prompt = true) const;

  kind type() const noexcept { return kind_; }
  /// "chatml", "llama2-sys", "mistral-v7-tekken", ...
  static std::string_view name(kind k) noexcept;
  /// Every kind's name, comma-separated (for messages).
  static std::string known_kinds();
  /// Text that ends an assistant turn: "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
  /// or the EOS text ("</s>") for the kinds whose turns end with EOS.
  std::string_view end_of_turn() const noexcept;
  /// True when apply()'s text starts with the BOS token's text (see the BOS contract above).
  bool begins_with_bos() const noexcept { return print_bos_ && !ctx_.bos_token.empty(); }

 private:
  explicit chat_template(kind k) : kind_(k) {}
  std::string render_chatml(std::span<const chat_message> m, bool gen) const;
  std::string render_llama2(std::span<const chat_message> m) const;
  std::string render_mistral(std::span<const chat_message> m) const;
  std::string render_llama3(std::span<const chat_message> m, bool gen) const;
  std::string render_turns(std::span<const chat_message> m, bool gen) const;
  std::string render_smollm3(std::span<const chat_message> m, bool gen) const;

  kind kind_;
  chat_context ctx_;
  std::string default_system_;
  std::string turn_end_;             ///< zephyr: the EOS text, or "<|endoftext|>" written literally
  bool print_bos_ = false;           ///< the template prints bos_token first
  bool bos_each_turn_ = false;       ///< llama2: BOS before every [INST]
  bool strip_ = false;               ///< llama2: contents stripped of whitespace
  bool knowledge_date_ = false;      ///< llama3: the 3.1 system preamble
  bool eos_without_prompt_ = false;  ///< phi3: EOS ends the text when no generation prompt
  bool assistant_after_user_ = false;  ///< phi4: the user turn opens the assistant's
  bool reasoning_ = false;  ///< chatml with Qwen3's <think> handling of assistant turns
};

}  // namespace troupe::llama
