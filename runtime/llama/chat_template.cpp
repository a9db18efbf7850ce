// Chat templates as code (see troupe/llama/chat_template.hpp).

#include "troupe/llama/chat_template.hpp"

#include <array>
#include <cstdio>
#include <utility>
#include <vector>

#include "troupe/error.hpp"

namespace troupe::llama {

namespace {

/// SmolLM3's custom instructions when thinking is on and the conversation has no system message.
constexpr std::string_view smollm3_thinking_system =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an "
    "assistant involves thoroughly exploring questions through a systematic thinking process "
    "before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, "
    "backtracking, and iteration to develop well-considered thinking process. Please structure "
    "your response into two main sections: Thought and Solution using the specified format: "
    "<think> Thought section </think> Solution section. In the Thought section, detail your "
    "reasoning process in steps. Each step should include detailed considerations such as "
    "analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the "
    "accuracy of the current steps, refining any errors, and revisiting previous steps. In the "
    "Solution section, based on various attempts, explorations, and reflections from the Thought "
    "section, systematically present the final solution that you deem correct. The Solution "
    "section should be logical, accurate, and concise and detail necessary steps needed to reach "
    "the conclusion.";

/// SmolLM2's and Qwen2.5's templates insert these system turns when the conversation has none.
constexpr std::array<std::string_view, 2> chatml_default_systems = {
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
};

constexpr std::array<chat_template::kind, 17> all_kinds = {
    chat_template::kind::chatml,     chat_template::kind::llama2,
    chat_template::kind::llama2_sys, chat_template::kind::mistral_v1,
    chat_template::kind::mistral_v3, chat_template::kind::mistral_v3_tekken,
    chat_template::kind::mistral_v7, chat_template::kind::mistral_v7_tekken,
    chat_template::kind::llama3,     chat_template::kind::zephyr,
    chat_template::kind::phi3,       chat_template::kind::phi4,
    chat_template::kind::gemma,      chat_template::kind::smollm3,
    chat_template::kind::vicuna,     chat_template::kind::vicuna_orca,
    chat_template::kind::granite,
};

bool has(std::string_view text, std::string_view what) {
  return text.find(what) != std::string_view::npos;
}

/// Python's str.isspace() for one code point: what str.strip() and Jinja's trim filter remove.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/// Decodes the UTF-8 sequence of `n` bytes at `p`; 0xFFFFFFFF when it is not one.
char32_t decode_utf8(const unsigned char* p, size_t n) {
  if (n == 1) return p[0] < 0x80 ? p[0] : 0xFFFFFFFF;
  const unsigned lead_bits = n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07;
  const unsigned lead_tag = n == 2 ? 0xC0 : n == 3 ? 0xE0 : 0xF0;
  if ((p[0] & ~lead_bits) != lead_tag) return 0xFFFFFFFF;
  char32_t c = p[0] & lead_bits;
  for (size_t i = 1; i < n; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0xFFFFFFFF;
    c = (c << 6) | (p[i] & 0x3F);
  }
  return c;
}

/// Python's str.strip(): Unicode whitespace off both ends (bytes that are not UTF-8 stay); only
/// off the front (lstrip) or the back (rstrip) when the other flag is false.
std::string strip(std::string_view s, bool front = true, bool back = true) {
  auto p = reinterpret_cast<const unsigned char*>(s.data());
  size_t b = 0, e = s.size();
  while (front && b < e) {
    const size_t n = p[b] < 0x80 ? 1 : p[b] >= 0xF0 ? 4 : p[b] >= 0xE0 ? 3 : 2;
    if (b + n > e || !is_python_space(decode_utf8(p + b, n))) break;
    b += n;
  }
  while (back && e > b) {
    size_t n = 1;
    while (n < 4 && e - n > b && (p[e - n] & 0xC0) == 0x80) ++n;
    if (!is_python_space(decode_utf8(p + e - n, n))) break;
    e -= n;
  }
  return std::string(s.substr(b, e - b));
}

/// The string as Python's json.dumps(s, ensure_ascii=False) writes it (transformers' tojson).
std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(ch));
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

/// Reads the Jinja string literal at text[pos] (quote included) with its escapes decoded as
/// Python's unicode-escape does; advances pos past it. nullopt when it is not a closed literal.
std::optional<std::string> read_literal(std::string_view text, size_t& pos) {
  const char quote = text[pos];
  std::string out;
  for (size_t i = pos + 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == quote) {
      pos = i + 1;
      return out;
    }
    if (c != '\\' || i + 1 >= text.size()) {
      out += c;
      continue;
    }
    const char e = text[++i];
    auto hex = [&](size_t digits) -> std::optional<char32_t> {
      if (i + digits >= text.size()) return std::nullopt;
      char32_t v = 0;
      for (size_t k = 1; k <= digits; ++k) {
        const char h = text[i + k];
        const int d = h >= '0' && h <= '9'   ? h - '0'
                      : h >= 'a' && h <= 'f' ? h - 'a' + 10
                      : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                             : -1;
        if (d < 0) return std::nullopt;
        v = v * 16 + static_cast<char32_t>(d);
      }
      i += digits;
      return v;
    };
    switch (e) {
      case 'n':
        out += '\n';
        break;
      case 't':
        out += '\t';
        break;
      case 'r':
        out += '\r';
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'x':
      case 'u':
      case 'U': {
        const auto v = hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (!v) return std::nullopt;
        append_utf8(out, *v);
        break;
      }
      default:
        out += '\\', out += e;
    }
  }
  return std::nullopt;
}

/// How a template prints a date.
enum class date_style {
  iso,             ///< strftime "%Y-%m-%d": 2024-07-26 (Mistral Small 3.2)
  day_month_year,  ///< "%d %b %Y": 26 Jul 2024 (Llama 3.1)
  month_day_year   ///< "%B %d, %Y": July 26, 2024 (Granite 3.3)
};

std::string format_date(std::chrono::year_month_day d, date_style style) {
  static constexpr const char* months[] = {"January", "February", "March",     "April",
                                           "May",     "June",     "July",      "August",
                                           "September", "October", "November", "December"};
  char buf[48];
  const int y = static_cast<int>(d.year());
  const unsigned m = static_cast<unsigned>(d.month()), day = static_cast<unsigned>(d.day());
  const char* month = months[(m + 11) % 12];
  switch (style) {
    case date_style::iso:
      std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", y, m, day);
      break;
    case date_style::day_month_year:  // %b: the month's first three letters
      std::snprintf(buf, sizeof buf, "%02u %.3s %04d", day, month, y);
      break;
    case date_style::month_day_year:
      std::snprintf(buf, sizeof buf, "%s %02u, %04d", month, day, y);
      break;
  }
  return buf;
}

/// The template's `{% set default_system_message = ... %}`: string literals joined by `+`, with
/// `today` (set from strftime_now("%Y-%m-%d")) as the date. Empty when absent or not that shape.
std::string default_system_message(std::string_view text, std::chrono::year_month_day date) {
  size_t pos = text.find("default_system_message");
  if (pos == std::string_view::npos) return {};
  pos = text.find_first_not_of(" \t\n", pos + std::string_view("default_system_message").size());
  if (pos == std::string_view::npos || text[pos] != '=') return {};
  std::string out;
  for (++pos; pos < text.size();) {
    const char c = text[pos];
    if (c == ' ' || c == '\t' || c == '\n' || c == '+') {
      ++pos;
    } else if (c == '\'' || c == '"') {
      auto lit = read_literal(text, pos);
      if (!lit) return {};
      out += *lit;
    } else if (text.substr(pos, 5) == "today" && has(text, "today = strftime_now(\"%Y-%m-%d\")")) {
      out += format_date(date, date_style::iso);
      pos += 5;
    } else if (text.substr(pos, 2) == "%}" || text.substr(pos, 3) == "-%}") {
      return out;
    } else {
      return {};
    }
  }
  return {};
}

/// True when `bos_token` is followed (after spaces and '+') by a quoted "[INST]": BOS before
/// every user turn, as Llama-2-chat's template writes it.
bool bos_before_inst(std::string_view text) {
  for (size_t p = text.find("bos_token"); p != std::string_view::npos;
       p = text.find("bos_token", p + 1)) {
    size_t q = text.find_first_not_of(" +", p + 9);
    if (q != std::string_view::npos && q + 1 < text.size() && (text[q] == '\'' || text[q] == '"') &&
        text.substr(q + 1, 6) == "[INST]") {
      return true;
    }
  }
  return false;
}

/// s without leading (front) and/or trailing (back) '\n' characters: Python's lstrip('\n'),
/// rstrip('\n') and strip('\n').
std::string strip_newlines(const std::string& s, bool front, bool back) {
  size_t b = 0, e = s.size();
  while (front && b < e && s[b] == '\n') ++b;
  while (back && e > b && s[e - 1] == '\n') --e;
  return s.substr(b, e - b);
}

/// The messages with role "tool" as "user", and a system message after the first as a user turn
/// when the kind has no system turn (`system_turns` false).
std::vector<chat_message> as_user_turns(std::span<const chat_message> m, bool system_turns) {
  std::vector<chat_message> out(m.begin(), m.end());
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i].role == "tool" || (!system_turns && i > 0 && out[i].role == "system")) {
      out[i].role = "user";
    }
  }
  return out;
}

}  // namespace

std::string_view chat_template::name(kind k) noexcept {
  switch (k) {
    case kind::chatml:
      return "chatml";
    case kind::llama2:
      return "llama2";
    case kind::llama2_sys:
      return "llama2-sys";
    case kind::mistral_v1:
      return "mistral-v1";
    case kind::mistral_v3:
      return "mistral-v3";
    case kind::mistral_v3_tekken:
      return "mistral-v3-tekken";
    case kind::mistral_v7:
      return "mistral-v7";
    case kind::mistral_v7_tekken:
      return "mistral-v7-tekken";
    case kind::llama3:
      return "llama3";
    case kind::zephyr:
      return "zephyr";
    case kind::phi3:
      return "phi3";
    case kind::phi4:
      return "phi4";
    case kind::gemma:
      return "gemma";
    case kind::vicuna:
      return "vicuna";
    case kind::vicuna_orca:
      return "vicuna-orca";
    case kind::granite:
      return "granite";
    case kind::smollm3:
      return "smollm3";
  }
  return "unknown";
}

std::string chat_template::known_kinds() {
  std::string out;
  for (kind k : all_kinds) {
    if (!out.empty()) out += ", ";
    out += name(k);
  }
  return out;
}

chat_template chat_template::chatml(std::string default_system) {
  chat_template t(kind::chatml);
  t.default_system_ = std::move(default_system);
  return t;
}

std::optional<chat_template> chat_template::detect(std::string_view text, chat_context ctx) {
  std::optional<kind> k;
  if (has(text, "<|im_start|>")) {
    // SmolVLM (<end_of_utterance>) uses the tokens otherwise.
    if (has(text, "<|im_sep|>")) {
      k = kind::phi4;
    } else if (has(text, "## Metadata") && has(text, "Reasoning Mode")) {
      k = kind::smollm3;
    } else if (!has(text, "<end_of_utterance>")) {
      k = kind::chatml;
    }
  } else if (text.starts_with("mistral") || has(text, "[INST]")) {
    if (has(text, "[SYSTEM_PROMPT]")) {
      k = has(text, "[INST] ") ? kind::mistral_v7 : kind::mistral_v7_tekken;
    } else if (has(text, "' [INST] ' + system_message") || has(text, "[AVAILABLE_TOOLS]")) {
      k = has(text, " [INST]")      ? kind::mistral_v1
          : has(text, "\"[INST]\"") ? kind::mistral_v3_tekken
                                    : kind::mistral_v3;
    } else {
      k = has(text, "<<SYS>>") ? kind::llama2_sys : kind::llama2;
    }
  } else if (has(text, "<|start_of_role|>") && has(text, "<|end_of_role|>")) {
    k = kind::granite;
  } else if (has(text, "<|start_header_id|>") && has(text, "<|end_header_id|>")) {
    k = kind::llama3;
  } else if (has(text, "<|assistant|>") && has(text, "<|end|>")) {
    k = kind::phi3;
  } else if (has(text, "<|user|>") && !has(text, "[gMASK]") &&
             (has(text, "<|endoftext|>") || has(text, "+ eos_token"))) {
    k = kind::zephyr;
  } else if (has(text, "<start_of_turn>")) {
    k = kind::gemma;
  } else if (has(text, "USER: ") && has(text, "ASSISTANT: ")) {
    k = has(text, "SYSTEM: ") ? kind::vicuna_orca : kind::vicuna;
  }
  if (!k) return std::nullopt;

  chat_template t(*k);
  t.print_bos_ =
      *k != kind::zephyr && *k != kind::vicuna && *k != kind::vicuna_orca && has(text, "bos_token");
  t.bos_each_turn_ = bos_before_inst(text);
  t.strip_ = has(text, ".strip()") || has(text, "| trim") || has(text, "|trim");
  t.knowledge_date_ = has(text, "Cutting Knowledge Date");
  t.eos_without_prompt_ = has(text, "eos_token");
  t.assistant_after_user_ = has(text, "<|im_end|><|im_start|>assistant<|im_sep|>'");
  t.reasoning_ = *k == kind::chatml && has(text, "reasoning_content") && has(text, "</think>");
  if (*k == kind::zephyr) {
    t.turn_end_ =
        has(text, "eos_token") ? (ctx.eos_token.empty() ? "</s>" : ctx.eos_token) : "<|endoftext|>";
  }
  if (*k == kind::chatml) {
    for (std::string_view s : chatml_default_systems) {
      if (has(text, s)) t.default_system_ = s;
    }
  } else if (*k == kind::mistral_v7_tekken) {
    t.default_system_ = default_system_message(text, ctx.date);
  } else if (*k == kind::granite && has(text, "You are Granite, developed by IBM.")) {
    // Granite 3.3 without tools, documents or thinking.
    t.default_system_ = "Knowledge Cutoff Date: April 2024. Today's Date: " +
                        format_date(ctx.date, date_style::month_day_year) +
                        ". You are Granite, developed by IBM. You are a helpful AI assistant.";
  }
  t.ctx_ = std::move(ctx);
  return t;
}

chat_template chat_template::from_gguf(const gguf_file& file, chat_context ctx) {
  const std::string t = file.get_string("tokenizer.chat_template", "");
  if (t.empty()) return chatml();
  if ((has(t, "bos_token") || has(t, "eos_token")) && file.contains("tokenizer.ggml.tokens")) {
    const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
    auto text_of = [&](const char* key) -> std::string {
      const uint32_t id = file.get_u32(key, UINT32_MAX);
      return id < tokens.size() ? tokens[id] : std::string();
    };
    if (ctx.bos_token.empty()) ctx.bos_token = text_of("tokenizer.ggml.bos_token_id");
    if (ctx.eos_token.empty()) ctx.eos_token = text_of("tokenizer.ggml.eos_token_id");
  }
  if (auto tmpl = detect(t, std::move(ctx))) return std::move(*tmpl);
  throw error(errc::unsupported,
              file.path().string() +
                  ": tokenizer.chat_template is not a format troupe knows (supported: " +
                  known_kinds() + "); pass raw prompts instead");
}

std::string chat_template::apply(std::span<const chat_message> messages,
                                 bool add_generation_prompt) const {
  switch (kind_) {
    case kind::chatml:
      return render_chatml(messages, add_generation_prompt);
    case kind::smollm3:
      return render_smollm3(messages, add_generation_prompt);
    case kind::llama2:
    case kind::llama2_sys:
      return render_llama2(messages);
    case kind::mistral_v1:
    case kind::mistral_v3:
    case kind::mistral_v3_tekken:
    case kind::mistral_v7:
    case kind::mistral_v7_tekken:
      return render_mistral(messages);
    case kind::llama3:
      return render_llama3(messages, add_generation_prompt);
    default:
      return render_turns(messages, add_generation_prompt);
  }
}

std::string chat_template::render_chatml(std::span<const chat_message> messages, bool gen) const {
  std::string out = begins_with_bos() ? ctx_.bos_token : std::string();
  if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
    if (!messages.empty()) out += "<|im_start|>system\n" + default_system_ + "<|im_end|>\n";
  }
  // Qwen3: the last user query (not a <tool_response> turn) splits the conversation; an
  // assistant turn before it loses its <think> part, one after it keeps a <think> block (always
  // when it is the last turn).
  size_t last_query = messages.size() - 1;
  if (reasoning_) {
    for (size_t i = messages.size(); i-- > 0;) {
      const std::string& c = messages[i].content;
      if (messages[i].role == "user" &&
          !(c.starts_with("<tool_response>") && c.ends_with("</tool_response>"))) {
        last_query = i;
        break;
      }
    }
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (!reasoning_ || m.role != "assistant") {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      continue;
    }
    std::string content = m.content, reasoning;
    if (const size_t close = content.rfind("</think>"); close != std::string::npos) {
      std::string before = content.substr(0, content.find("</think>"));
      content = strip_newlines(content.substr(close + 8), true, false);
      before = strip_newlines(before, false, true);
      if (const size_t open = before.rfind("<think>"); open != std::string::npos)
        before = before.substr(open + 7);
      reasoning = strip_newlines(before, true, false);
    }
    out += "<|im_start|>assistant\n";
    if (i > last_query && (i + 1 == messages.size() || !reasoning.empty())) {
      out += "<think>\n" + strip_newlines(reasoning, true, true) + "\n</think>\n\n" +
             strip_newlines(content, true, false);
    } else {
      out += content;
    }
    out += "<|im_end|>\n";
  }
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

std::string chat_template::render_smollm3(std::span<const chat_message> messages,
                                          bool gen) const {
  // The system message sets the mode by its flag and, without the flag and trailing whitespace
  // (Python's rstrip), is the custom instructions; a later system message, which the template
  // drops, is a user turn here (nothing the caller wrote is lost).
  bool think = true;
  std::string custom;
  if (!messages.empty() && messages.front().role == "system") {
    const std::string& sys = messages.front().content;
    if (sys.find("/no_think") != std::string::npos)
      think = false;
    custom = sys;
    for (std::string_view flag : {std::string_view("/no_think"), std::string_view("/think")}) {
      for (size_t at = custom.find(flag); at != std::string::npos; at = custom.find(flag, at))
        custom.erase(at, flag.size());
    }
    custom = strip(custom, false, true);
  }
  std::string out = "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n";
  out += think ? "Reasoning Mode: /think\n\n" : "Reasoning Mode: /no_think\n\n";
  out += "## Custom Instructions\n\n";
  if (!custom.empty())
    out += custom;
  else if (think)
    out += smollm3_thinking_system;
  else
    out += "You are a helpful AI assistant named SmolLM, trained by Hugging Face.";
  out += "\n\n";
  out += "<|im_end|>\n";
  const std::string_view empty_think = think ? "" : "<think>\n\n</think>\n";
  for (size_t i = 0; i < messages.size(); ++i) {
    const chat_message& m = messages[i];
    if (m.role == "assistant") {
      out += "<|im_start|>assistant\n";
      out += empty_think;
      out += strip_newlines(m.content, true, false) + "<|im_end|>\n";
    } else if (m.role != "system" || i > 0) {  // user, tool (a user turn) and later systems
      out += "<|im_start|>user\n" + m.content + "<|im_end|>\n";
    }
  }
  if (gen) {
    out += "<|im_start|>assistant\n";
    out += empty_think;
  }
  return out;
}

std::string chat_template::render_llama2(std::span<const chat_message> messages) const {
  // Llama-2-chat: the leading system message becomes a <<SYS>> block in front of the first
  // message's content (stripped together with it); llama2 templates refuse a system message,
  // troupe puts it there followed by "\n\n".
  std::vector<chat_message> m = as_user_turns(messages, false);
  std::string system;
  size_t first = 0;
  if (!m.empty() && m[0].role == "system") {
    system = kind_ == kind::llama2_sys ? "<<SYS>>\n" + m[0].content + "\n<</SYS>>\n\n"
                                       : m[0].content + "\n\n";
    first = 1;
  }
  const std::string& bos = ctx_.bos_token;
  std::string out = print_bos_ && !bos_each_turn_ ? bos : std::string();
  const bool sys = kind_ == kind::llama2_sys;
  for (size_t i = first; i < m.size(); ++i) {
    std::string content = i == first ? system + m[i].content : m[i].content;
    if (strip_) content = strip(content);
    if (m[i].role == "assistant") {
      out += sys ? " " + content + " " + ctx_.eos_token : content + ctx_.eos_token;
    } else {
      out += (bos_each_turn_ ? bos : std::string()) + "[INST] " + content + " [/INST]";
    }
  }
  return out;
}

std::string chat_template::render_mistral(std::span<const chat_message> messages) const {
  const bool v7 = kind_ == kind::mistral_v7 || kind_ == kind::mistral_v7_tekken;
  std::vector<chat_message> m = as_user_turns(messages, v7);
  const std::string_view sp =
      kind_ == kind::mistral_v3_tekken || kind_ == kind::mistral_v7_tekken ? "" : " ";
  std::string out = print_bos_ ? ctx_.bos_token : std::string();
  if (v7) {
    if ((m.empty() || m[0].role != "system") && !default_system_.empty()) {
      out += "[SYSTEM_PROMPT]" + std::string(sp) + default_system_ + "[/SYSTEM_PROMPT]";
    }
    for (const chat_message& x : m) {
      if (x.role == "system") {
        out += "[SYSTEM_PROMPT]" + std::string(sp) + x.content + "[/SYSTEM_PROMPT]";
      } else if (x.role == "assistant") {
        out += std::string(sp) + x.content + ctx_.eos_token;
      } else {
        out += "[INST]" + std::string(sp) + x.content + "[/INST]";
      }
    }
    return out;
  }
  // v1 puts the leading system message into the first user turn; v3 into the last message when
  // that is a user turn (and nowhere otherwise), as their templates do.
  std::string system;
  size_t first = 0;
  if (!m.empty() && m[0].role == "system") system = m[0].content, first = 1;
  for (size_t i = first; i < m.size(); ++i) {
    const chat_message& x = m[i];
    if (x.role == "assistant") {
      if (kind_ == kind::mistral_v1) {
        out += " " + x.content + ctx_.eos_token;
      } else if (kind_ == kind::mistral_v3) {
        out += " " + strip(x.content) + ctx_.eos_token;
      } else {
        out += x.content + ctx_.eos_token;
      }
      continue;
    }
    const bool with_system =
        first == 1 && (kind_ == kind::mistral_v1 ? i == first : i + 1 == m.size());
    const std::string content = with_system ? system + "\n\n" + x.content : x.content;
    if (kind_ == kind::mistral_v1) {
      out += " [INST] " + content + " [/INST]";
    } else {
      out += "[INST]" + std::string(sp) + content + "[/INST]";
    }
  }
  return out;
}

std::string chat_template::render_llama3(std::span<const chat_message> m, bool gen) const {
  auto turn = [](std::string_view role, std::string_view content) {
    return "<|start_header_id|>" + std::string(role) + "<|end_header_id|>\n\n" +
           std::string(content) + "<|eot_id|>";
  };
  std::string out = print_bos_ && (knowledge_date_ || !m.empty()) ? ctx_.bos_token : "";
  size_t first = 0;
  if (knowledge_date_) {
    // Llama 3.1+: the system turn always opens, with the knowledge cut-off and today's date.
    std::string system;
    if (!m.empty() && m[0].role == "system") system = strip(m[0].content), first = 1;
    out += turn("system", "Cutting Knowledge Date: December 2023\nToday Date: " +
                              format_date(ctx_.date, date_style::day_month_year) + "\n\n" + system);
  }
  for (size_t i = first; i < m.size(); ++i) {
    if (m[i].role == "tool" || m[i].role == "ipython") {
      out += turn("ipython", json_quote(m[i].content));
    } else {
      out += turn(m[i].role, strip(m[i].content));
    }
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

std::string chat_template::render_turns(std::span<const chat_message> messages, bool gen) const {
  std::vector<chat_message> m = as_user_turns(messages, kind_ != kind::gemma);
  std::string out = print_bos_ ? ctx_.bos_token : std::string();
  switch (kind_) {
    case kind::zephyr:
      for (const chat_message& x : m) {
        const std::string role = x.role == "system" || x.role == "assistant" ? x.role : "user";
        out += "<|" + role + "|>\n" + x.content + turn_end_ + "\n";
      }
      if (gen && !m.empty()) out += "<|assistant|>\n";
      break;
    case kind::phi3:
      for (const chat_message& x : m) {
        if (x.role == "system" && x.content.empty()) continue;  // Phi-3.5 skips it
        const std::string role = x.role == "system" || x.role == "assistant" ? x.role : "user";
        out += "<|" + role + "|>\n" + x.content + "<|end|>\n";
      }
      if (gen) {
        out += "<|assistant|>\n";
      } else if (eos_without_prompt_) {
        out += ctx_.eos_token;
      }
      break;
    case kind::granite:
      // Roles verbatim (Granite 3.3; 3.0 drops roles other than system, user and assistant);
      // the assistant's opening only after a last message.
      if (!default_system_.empty() && (messages.empty() || messages.front().role != "system")) {
        out += "<|start_of_role|>system<|end_of_role|>" + default_system_ + "<|end_of_text|>\n";
      }
      for (const chat_message& x : messages) {
        out += "<|start_of_role|>" + x.role + "<|end_of_role|>" + x.content + "<|end_of_text|>\n";
      }
      if (gen && !messages.empty()) out += "<|start_of_role|>assistant<|end_of_role|>";
      break;
    case kind::phi4:
      for (const chat_message& x : m) {
        if (x.role == "assistant") {
          if (!assistant_after_user_) out += "<|im_start|>assistant<|im_sep|>";
          out += x.content + "<|im_end|>";
        } else {
          out += "<|im_start|>" + x.role + "<|im_sep|>" + x.content + "<|im_end|>";
          if (assistant_after_user_ && x.role == "user") out += "<|im_start|>assistant<|im_sep|>";
        }
      }
      if (gen && !assistant_after_user_) out += "<|im_start|>assistant<|im_sep|>";
      break;
    case kind::gemma: {
      // Gemma refuses a system message; it goes in front of the first user turn.
      std::string system;
      size_t first = 0;
      if (!m.empty() && m[0].role == "system") system = strip(m[0].content) + "\n\n", first = 1;
      for (size_t i = first; i < m.size(); ++i) {
        const bool model = m[i].role == "assistant";
        std::string content = strip(m[i].content);
        if (!model && !system.empty()) content = std::exchange(system, {}) + content;
        out += std::string("<start_of_turn>") + (model ? "model" : "user") + "\n" + content +
               "<end_of_turn>\n";
      }
      if (gen) out += "<start_of_turn>model\n";
      break;
    }
    case kind::vicuna:
    case kind::vicuna_orca:
      for (const chat_message& x : m) {
        if (x.role == "system") {
          out += kind_ == kind::vicuna_orca ? "SYSTEM: " + x.content + "\n" : x.content + "\n\n";
        } else if (x.role == "assistant") {
          out += "ASSISTANT: " + x.content + "</s>\n";
        } else {
          out += "USER: " + x.content + "\n";
        }
      }
      if (gen) out += "ASSISTANT:";
      break;
    default:
      break;
  }
  return out;
}

std::string_view chat_template::end_of_turn() const noexcept {
  switch (kind_) {
    case kind::chatml:
    case kind::phi4:
    case kind::smollm3:
      return "<|im_end|>";
    case kind::granite:
      return "<|end_of_text|>";
    case kind::llama3:
      return "<|eot_id|>";
    case kind::phi3:
      return "<|end|>";
    case kind::gemma:
      return "<end_of_turn>";
    case kind::zephyr:
      return turn_end_;
    case kind::vicuna:
    case kind::vicuna_orca:
      return "</s>";
    default:
      return ctx_.eos_token.empty() ? std::string_view("</s>") : ctx_.eos_token;
  }
}

}  // namespace troupe::llama
