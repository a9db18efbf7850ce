// Byte-level BPE tokenizer following llama.cpp's llm_tokenizer_bpe (see tokenizer.hpp).

#define PCRE2_CODE_UNIT_WIDTH 8
#include "troupe/llama/tokenizer.hpp"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <limits>
#include <unordered_map>
#include <utility>

#include "troupe/error.hpp"

namespace troupe::llama {

namespace {

constexpr const char* gpt2_regex =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";

/// The regexes llama.cpp applies in turn for a tokenizer.ggml.pre value (llama-vocab.cpp);
/// empty when unknown.
std::vector<std::string> pre_tokenizer_regexes(const std::string& pre, bool* ignore_merges) {
  *ignore_merges = false;
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r" ||
      pre == "codeshell" || pre == "exaone" || pre == "minerva-7b") {
    return {"\\p{N}", gpt2_regex};
  }
  if (pre == "gpt-2" || pre == "gpt2" || pre == "mpt" || pre == "olmo" || pre == "jais" ||
      pre == "trillion") {
    return {gpt2_regex};
  }
  if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" || pre == "falcon3" ||
      pre == "pixtral") {
    *ignore_merges = true;
    return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
            "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "qwen2" || pre == "stablelm2" || pre == "deepseek-r1-qwen") {
    return {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
            "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "default") {
    return {"[\\p{P}\\$\\+<=>\\^~\\|]+", gpt2_regex, "\\p{N}+", "[0-9][0-9][0-9]"};
  }
  return {};
}

/// GPT-2's reversible map from bytes to printable code points, as UTF-8 strings.
struct byte_map {
  std::array<std::string, 256> to_text;
  std::unordered_map<std::string, uint8_t> from_text;

  byte_map() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(extra++);
      std::string s;
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      to_text[static_cast<size_t>(b)] = s;
      from_text.emplace(s, static_cast<uint8_t>(b));
    }
  }
};

const byte_map& bytes() {
  static const byte_map m;
  return m;
}

/// Length of the UTF-8 sequence that starts with byte c (1 for stray continuation bytes).
size_t utf8_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  if ((c & 0xF8) == 0xF0) return 4;
  return 1;
}

struct regex_deleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using regex_ptr = std::unique_ptr<pcre2_code, regex_deleter>;

struct match_data_deleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

struct tokenizer::impl {
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<token_type> types;
  std::unordered_map<std::string, int32_t> ids;
  std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank
  std::vector<regex_ptr> regexes;
  bool ignore_merges = false;
  std::vector<int32_t> specials;  // control/user-defined/unknown ids, longest text first
  int32_t bos = -1, eos = -1, eot = -1;
  bool add_bos = false;
  std::vector<int32_t> end_of_generation;

  /// Splits [begin, end) of text into pieces with each regex in turn; text between matches
  /// stays a piece of its own (llama.cpp unicode_regex_split).
  std::vector<std::pair<size_t, size_t>> split(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> pieces{{0, text.size()}};
    std::unique_ptr<pcre2_match_data, match_data_deleter> md;
    for (const regex_ptr& re : regexes) {
      md.reset(pcre2_match_data_create_from_pattern(re.get(), nullptr));
      std::vector<std::pair<size_t, size_t>> next;
      for (auto [b, len] : pieces) {
        const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + b);
        size_t pos = 0;
        while (pos < len) {
          const int rc = pcre2_match(re.get(), subject, len, pos, 0, md.get(), nullptr);
          if (rc < 0) break;
          const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
          const size_t ms = ov[0], me = ov[1];
          if (me == ms) {  // empty match: step over one character
            pos = ms + utf8_len(static_cast<unsigned char>(text[b + ms]));
            continue;
          }
          if (ms > pos) next.emplace_back(b + pos, ms - pos);
          next.emplace_back(b + ms, me - ms);
          pos = me;
        }
        if (pos < len) next.emplace_back(b + pos, len - pos);
      }
      pieces = std::move(next);
    }
    return pieces;
  }

  void bpe_word(std::string_view word, std::vector<int32_t>& out) const {
    std::string encoded;
    for (unsigned char c : word) encoded += bytes().to_text[c];
    if (ignore_merges) {
      if (auto it = ids.find(encoded); it != ids.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<std::string> sym;
    for (size_t i = 0; i < encoded.size();) {
      const size_t n = std::min(utf8_len(static_cast<unsigned char>(encoded[i])), encoded.size() - i);
      sym.emplace_back(encoded.substr(i, n));
      i += n;
    }
    std::string key;
    while (sym.size() > 1) {
      int32_t best = std::numeric_limits<int32_t>::max();
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        key.assign(sym[i]).append(1, ' ').append(sym[i + 1]);
        if (auto it = merge_rank.find(key); it != merge_rank.end() && it->second < best) {
          best = it->second;
          at = i;
        }
      }
      if (best == std::numeric_limits<int32_t>::max()) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (const std::string& s : sym) {
      if (auto it = ids.find(s); it != ids.end()) {
        out.push_back(it->second);
        continue;
      }
      for (char c : s) {
        if (auto it = ids.find(std::string(1, c)); it != ids.end()) out.push_back(it->second);
      }
    }
  }
};

tokenizer::tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tokenizer::tokenizer(tokenizer&&) noexcept = default;
tokenizer& tokenizer::operator=(tokenizer&&) noexcept = default;
tokenizer::~tokenizer() = default;

tokenizer tokenizer::from_gguf(const gguf_file& f) {
  auto p = std::make_unique<impl>();
  const std::string where = f.path().string() + ": ";
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    throw error(errc::unsupported, where + "tokenizer.ggml.model '" + model +
                                       "' is not supported (only 'gpt2', byte-level BPE)");
  }
  p->pre = f.get_string("tokenizer.ggml.pre", "default");
  const std::vector<std::string> exprs = pre_tokenizer_regexes(p->pre, &p->ignore_merges);
  if (exprs.empty()) {
    throw error(errc::unsupported, where + "pre-tokenizer tokenizer.ggml.pre = '" + p->pre +
                                       "' is not known to troupe's tokenizer");
  }
  for (const std::string& e : exprs) {
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(e.c_str()), e.size(),
                                  PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off,
                                  nullptr);
    if (c == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      throw error(errc::internal, "tokenizer: pre-tokenizer regex '" + e + "' does not compile at " +
                                      std::to_string(off) + ": " + reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // optional speed-up; matching works without it
    p->regexes.emplace_back(c);
  }
  p->tokens = f.get_string_array("tokenizer.ggml.tokens");
  const auto n = static_cast<int32_t>(p->tokens.size());
  p->types.assign(p->tokens.size(), token_type::normal);
  if (f.contains("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> t = f.get_int_array("tokenizer.ggml.token_type");
    if (t.size() != p->tokens.size()) {
      throw error(errc::parse_error, where + "tokenizer.ggml.token_type has " +
                                         std::to_string(t.size()) + " entries for " +
                                         std::to_string(n) + " tokens");
    }
    for (size_t i = 0; i < t.size(); ++i) p->types[i] = static_cast<token_type>(t[i]);
  }
  p->ids.reserve(p->tokens.size());
  for (int32_t i = 0; i < n; ++i) p->ids.emplace(p->tokens[static_cast<size_t>(i)], i);
  const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
  p->merge_rank.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i)
    p->merge_rank.emplace(merges[i], static_cast<int32_t>(i));
  auto id_key = [&](const char* key) -> int32_t {
    if (!f.contains(key)) return -1;
    const uint32_t v = f.get_u32(key);
    return v < static_cast<uint32_t>(n) ? static_cast<int32_t>(v) : -1;
  };
  p->bos = id_key("tokenizer.ggml.bos_token_id");
  p->eos = id_key("tokenizer.ggml.eos_token_id");
  p->eot = id_key("tokenizer.ggml.eot_token_id");
  p->add_bos = f.contains("tokenizer.ggml.add_bos_token") && f.get_bool("tokenizer.ggml.add_bos_token");
  for (int32_t i = 0; i < n; ++i) {
    const token_type t = p->types[static_cast<size_t>(i)];
    if (t == token_type::control || t == token_type::user_defined || t == token_type::unknown)
      p->specials.push_back(i);
  }
  std::stable_sort(p->specials.begin(), p->specials.end(), [&](int32_t a, int32_t b) {
    return p->tokens[static_cast<size_t>(a)].size() > p->tokens[static_cast<size_t>(b)].size();
  });
  for (int32_t id : {p->eos, p->eot}) {
    if (id >= 0) p->end_of_generation.push_back(id);
  }
  for (const char* text : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"}) {
    if (auto it = p->ids.find(text); it != p->ids.end()) p->end_of_generation.push_back(it->second);
  }
  return tokenizer(std::move(p));
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  const impl& p = *impl_;
  // Fragments: raw text (id -1, offset, length) or a special token (id).
  struct fragment {
    int32_t id;
    size_t off, len;
  };
  std::vector<fragment> frags{{-1, 0, text.size()}};
  for (int32_t sid : p.specials) {
    const token_type t = p.types[static_cast<size_t>(sid)];
    if (!parse_special && (t == token_type::control || t == token_type::unknown)) continue;
    const std::string& st = p.tokens[static_cast<size_t>(sid)];
    if (st.empty()) continue;
    std::vector<fragment> next;
    for (const fragment& fr : frags) {
      if (fr.id >= 0) {
        next.push_back(fr);
        continue;
      }
      size_t pos = fr.off;
      const size_t end = fr.off + fr.len;
      while (pos < end) {
        const size_t hit = text.substr(0, end).find(st, pos);
        if (hit == std::string_view::npos) break;
        if (hit > pos) next.push_back({-1, pos, hit - pos});
        next.push_back({sid, hit, st.size()});
        pos = hit + st.size();
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags = std::move(next);
  }
  std::vector<int32_t> out;
  if (add_bos && p.add_bos && p.bos >= 0) out.push_back(p.bos);
  for (const fragment& fr : frags) {
    if (fr.id >= 0) {
      out.push_back(fr.id);
      continue;
    }
    const std::string_view raw = text.substr(fr.off, fr.len);
    for (auto [b, len] : p.split(raw)) p.bpe_word(raw.substr(b, len), out);
  }
  return out;
}

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const impl& p = *impl_;
  if (id < 0 || id >= static_cast<int32_t>(p.tokens.size())) return {};
  const std::string& text = p.tokens[static_cast<size_t>(id)];
  switch (p.types[static_cast<size_t>(id)]) {
    case token_type::normal:
    case token_type::undefined: {
      std::string out;
      for (size_t i = 0; i < text.size();) {
        const size_t n = std::min(utf8_len(static_cast<unsigned char>(text[i])), text.size() - i);
        auto it = bytes().from_text.find(text.substr(i, n));
        if (it != bytes().from_text.end()) {
          out += static_cast<char>(it->second);
        } else {
          out.append(text, i, n);
        }
        i += n;
      }
      return out;
    }
    case token_type::user_defined: return text;
    case token_type::control:
    case token_type::unknown: return render_special ? text : std::string();
    default: return {};
  }
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) out += token_to_piece(id, render_special);
  return out;
}

int32_t tokenizer::vocab_size() const noexcept { return static_cast<int32_t>(impl_->tokens.size()); }
const std::string& tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw error(errc::invalid_argument, "token id " + std::to_string(id) + " is out of range");
  return impl_->tokens[static_cast<size_t>(id)];
}
token_type tokenizer::type(int32_t id) const noexcept {
  if (id < 0 || id >= vocab_size()) return token_type::undefined;
  return impl_->types[static_cast<size_t>(id)];
}
std::optional<int32_t> tokenizer::find(std::string_view text) const {
  auto it = impl_->ids.find(std::string(text));
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}
int32_t tokenizer::bos() const noexcept { return impl_->bos; }
int32_t tokenizer::eos() const noexcept { return impl_->eos; }
bool tokenizer::is_end_of_generation(int32_t id) const noexcept {
  const auto& e = impl_->end_of_generation;
  return std::find(e.begin(), e.end(), id) != e.end();
}
const std::string& tokenizer::pre_tokenizer() const noexcept { return impl_->pre; }

std::string take_complete_utf8(std::string& pending) {
  size_t cut = pending.size();
  for (size_t back = 1; back <= 3 && back <= pending.size(); ++back) {
    auto c = static_cast<unsigned char>(pending[pending.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // A continuation byte: look further back.
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (need > back) cut = pending.size() - back;
    break;
  }
  std::string out = pending.substr(0, cut);
  pending.erase(0, cut);
  return out;
}

}  // namespace troupe::llama
