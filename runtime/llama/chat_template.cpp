// Chat templates as code (see troupe/llama/chat_template.hpp).

#include "troupe/llama/chat_template.hpp"

#include "troupe/error.hpp"

namespace troupe::llama {

namespace {

/// SmolLM2's template inserts this system turn when the first message is not a system message.
constexpr std::string_view smollm_system =
  "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

}  // namespace

chat_template chat_template::chatml(std::string default_system) {
  return chat_template(kind::chatml, std::move(default_system));
}

chat_template chat_template::from_gguf(const gguf_file& file) {
  const std::string t = file.get_string("tokenizer.chat_template", "");
  if (t.empty()) return chatml();
  if (t.find("<|im_start|>") != std::string::npos) {
    return chatml(t.find(smollm_system) != std::string::npos ? std::string(smollm_system)
                                                             : std::string());
  }
  throw error(errc::unsupported,
              file.path().string() + ": tokenizer.chat_template is not a format troupe knows "
                                     "(supported: ChatML); pass raw prompts instead");
}

std::string chat_template::apply(std::span<const chat_message> messages,
                                 bool add_generation_prompt) const {
  std::string out;
  if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
    if (!messages.empty()) out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
  }
  for (const chat_message& m : messages) {
    out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string_view chat_template::end_of_turn() const noexcept { return "<|im_end|>"; }

}  // namespace troupe::llama
