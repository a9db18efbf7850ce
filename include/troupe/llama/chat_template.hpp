#pragma once
/// Chat prompt formats, written as code rather than interpreted Jinja, and chosen from the
/// model's `tokenizer.chat_template` metadata.

#include <span>
#include <string>
#include <string_view>

#include "troupe/formats/gguf.hpp"

namespace troupe::llama {

struct chat_message {
  std::string role;  ///< "system", "user", "assistant", "tool"
  std::string content;
};

class chat_template {
 public:
  enum class kind {
    chatml,  ///< <|im_start|>role\ncontent<|im_end|>\n (SmolLM2, Qwen, ...)
  };

  /// Recognises the template in tokenizer.chat_template. Throws troupe::error(unsupported)
  /// naming the file when the model has a template troupe does not implement; a model without a
  /// template gets plain ChatML.
  static chat_template from_gguf(const gguf_file& file);
  /// ChatML; `default_system` is inserted when the conversation has no system message
  /// (SmolLM2's template does this), empty for none.
  static chat_template chatml(std::string default_system = {});

  /// The prompt text; with add_generation_prompt it ends with the assistant header, ready for
  /// the model to continue. Encode it with parse_special = true.
  std::string apply(std::span<const chat_message> messages, bool add_generation_prompt = true) const;

  kind type() const noexcept { return kind_; }
  /// Text that ends an assistant turn ("<|im_end|>").
  std::string_view end_of_turn() const noexcept;

 private:
  chat_template(kind k, std::string default_system)
      : kind_(k), default_system_(std::move(default_system)) {}
  kind kind_;
  std::string default_system_;
};

}  // namespace troupe::llama
