// The two GGUF tokenizer models of llama-architecture files (see tokenizer.hpp): byte-level BPE
// as llama.cpp's llm_tokenizer_bpe, SentencePiece BPE as its llm_tokenizer_spm.

#define PCRE2_CODE_UNIT_WIDTH 8
#include "troupe/llama/tokenizer.hpp"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <limits>
#include <queue>
#include <set>
#include <string>
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
      pre == "pixtral" || pre == "dbrx" || pre == "smaug-bpe") {
    *ignore_merges = pre != "dbrx" && pre != "smaug-bpe";
    return {
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
        "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "tekken") {  // Mistral Nemo, Mistral Small 3
    *ignore_merges = true;
    return {
        "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}"
        "\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
        "[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "gpt-4o" || pre == "llama4") {  // Phi-4, Llama 4
    return {
        "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|"
        "'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+"
        "((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
        "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "viking") return {" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"};
  if (pre == "poro-chat" || pre == "bloom" || pre == "gpt3-finnish") {
    return {" ?[^(\\s|.,!?…。，、।۔،)]+"};
  }
  if (pre == "seed-coder") {
    return {
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
        "\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "qwen2" || pre == "stablelm2" || pre == "deepseek-r1-qwen") {
    return {
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
        "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "deepseek-llm") {
    // clang-format off (the letter class is split at character boundaries)
    return {
        "[\r\n]",
        "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆ"
        "Έ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷ"
        "ᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐ"
        "ῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄ"
        "Ⰰ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-"
        "Ｚａ-"
        "ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+",
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    };
    // clang-format on
  }
  if (pre == "deepseek-coder") {
    return {
        "[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}",
    };
  }
  if (pre == "qwen35") {
    return {
        "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}"
        "\\p{M}]+|"
        "\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"};
  }
  if (pre == "falcon") {
    return {"[\\p{P}\\$\\+<=>\\^~\\|`]+", gpt2_regex, "[0-9][0-9][0-9]"};
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
      const uint32_t cp =
          printable ? static_cast<uint32_t>(b) : 256u + static_cast<uint32_t>(extra++);
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

/// Length of the UTF-8 sequence that starts with byte c, from its high nibble alone, as
/// llama.cpp's unicode_len_utf8 (the SentencePiece tokenizer's symbols follow it exactly, also on
/// invalid UTF-8).
size_t utf8_len_by_nibble(unsigned char c) {
  static constexpr std::array<uint8_t, 16> lookup{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return lookup[c >> 4];
}

/// SentencePiece's meta symbol for a space, U+2581 "▁".
constexpr std::string_view spm_space = "\xE2\x96\x81";

/// Hash for unordered maps of strings that are searched with string_views (no copies).
struct text_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

/// Value of a byte token's text "<0xXX>"; nullopt for any other text.
std::optional<uint8_t> byte_token_value(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(text[3]), lo = hex(text[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

struct regex_deleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
using regex_ptr = std::unique_ptr<pcre2_code, regex_deleter>;

struct match_data_deleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};

}  // namespace

/// The GGUF tokenizer model (tokenizer.ggml.model) a tokenizer follows.
enum class model_kind {
  byte_level_bpe,  ///< "gpt2": regex pre-tokenizer, GPT-2 byte alphabet, merge ranks
  sentencepiece,   ///< "llama": spaces as "▁", merges by token score, <0xXX> byte fallback
};

struct tokenizer::impl {
  model_kind kind = model_kind::byte_level_bpe;
  std::string pre;
  std::vector<std::string> tokens;
  std::vector<token_type> types;
  std::unordered_map<std::string, int32_t, text_hash, std::equal_to<>> ids;
  std::vector<int32_t> specials;  // control/user-defined/unknown ids, longest text first
  std::vector<bool> rstrip;       // [vocab]: whitespace after this special token is dropped
  int32_t bos = -1, eos = -1, eot = -1, unk = -1;
  bool add_bos = false, add_eos = false;
  std::vector<int32_t> end_of_generation;

  // Byte-level BPE.
  std::unordered_map<std::string, int32_t> merge_rank;  // "left right" -> rank
  std::vector<regex_ptr> regexes;
  bool ignore_merges = false;

  // SentencePiece.
  std::vector<float> scores;
  bool add_space_prefix = true;
  std::array<int32_t, 256> byte_ids{};  // token of each byte for the fallback, -1: none

  std::optional<int32_t> id_of(std::string_view text) const {
    auto it = ids.find(text);
    if (it == ids.end()) return std::nullopt;
    return it->second;
  }

  void compile(const std::vector<std::string>& exprs) {
    for (const std::string& e : exprs) {
      int err = 0;
      PCRE2_SIZE off = 0;
      pcre2_code* c =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(e.c_str()), e.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
      if (c == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        throw error(errc::internal, "tokenizer: pre-tokenizer regex '" + e +
                                        "' does not compile at " + std::to_string(off) + ": " +
                                        reinterpret_cast<char*>(msg));
      }
      pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // optional speed-up; matching works without it
      regexes.emplace_back(c);
    }
  }

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
      if (auto id = id_of(encoded)) {
        out.push_back(*id);
        return;
      }
    }
    std::vector<std::string> sym;
    for (size_t i = 0; i < encoded.size();) {
      const size_t n =
          std::min(utf8_len(static_cast<unsigned char>(encoded[i])), encoded.size() - i);
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
      if (auto id = id_of(s)) {
        out.push_back(*id);
        continue;
      }
      for (char c : s) {
        if (auto id = id_of(std::string_view(&c, 1))) out.push_back(*id);
      }
    }
  }

  /// SentencePiece BPE on one fragment whose spaces are already "▁" (llama.cpp's
  /// llm_tokenizer_spm_session): the text starts as one symbol per UTF-8 character; the adjacent
  /// pair whose concatenation is the vocabulary token with the highest score merges first (ties:
  /// the leftmost pair), until no adjacent pair forms a token. Symbols that are not tokens fall
  /// back to one byte token per byte.
  void spm_fragment(std::string_view text, std::vector<int32_t>& out) const {
    struct symbol {
      int prev, next;
      size_t off, len;  // len == 0: merged into its left neighbour
    };
    struct pair {
      float score;
      int left, right;
      size_t len;  // left.len + right.len when pushed: a mismatch later means the pair is stale
    };
    struct lower_priority {
      bool operator()(const pair& a, const pair& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
      }
    };
    std::vector<symbol> sym;
    for (size_t off = 0; off < text.size();) {
      const size_t n =
          std::min(utf8_len_by_nibble(static_cast<unsigned char>(text[off])), text.size() - off);
      const int i = static_cast<int>(sym.size());
      sym.push_back({i - 1, off + n < text.size() ? i + 1 : -1, off, n});
      off += n;
    }
    if (sym.empty()) return;
    std::priority_queue<pair, std::vector<pair>, lower_priority> queue;
    auto try_pair = [&](int left, int right) {
      if (left < 0 || right < 0) return;
      const size_t len = sym[left].len + sym[right].len;
      if (auto id = id_of(text.substr(sym[left].off, len)))
        queue.push({scores[static_cast<size_t>(*id)], left, right, len});
    };
    for (int i = 1; i < static_cast<int>(sym.size()); ++i) try_pair(i - 1, i);
    while (!queue.empty()) {
      const pair p = queue.top();
      queue.pop();
      symbol& l = sym[p.left];
      symbol& r = sym[p.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != p.len) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = p.left;
      try_pair(l.prev, p.left);
      try_pair(p.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[i].next) {
      const std::string_view piece = text.substr(sym[i].off, sym[i].len);
      if (auto id = id_of(piece)) {
        out.push_back(*id);
        continue;
      }
      // Byte fallback; a byte without a token becomes the unknown token (one per run).
      bool after_unknown = false;
      for (unsigned char c : piece) {
        const int32_t id = byte_ids[c];
        if (id >= 0) {
          out.push_back(id);
          after_unknown = false;
        } else if (unk >= 0 && !after_unknown) {
          out.push_back(unk);
          after_unknown = true;
        }
      }
    }
  }

  std::string spm_piece(int32_t id, bool render_special) const {
    const std::string& text = tokens[static_cast<size_t>(id)];
    switch (types[static_cast<size_t>(id)]) {
      case token_type::normal: {
        std::string out;
        out.reserve(text.size());
        for (size_t i = 0; i < text.size();) {
          if (text.compare(i, spm_space.size(), spm_space) == 0) {
            out += ' ';
            i += spm_space.size();
          } else {
            out += text[i++];
          }
        }
        return out;
      }
      case token_type::byte: {
        if (auto b = byte_token_value(text)) return std::string(1, static_cast<char>(*b));
        return text;
      }
      case token_type::user_defined:
        return text;
      case token_type::control:
      case token_type::unknown:
        return render_special ? text : std::string();
      default:
        return {};  // unused and undefined tokens carry no text, as in llama.cpp
    }
  }

  std::string bpe_piece(int32_t id, bool render_special) const {
    const std::string& text = tokens[static_cast<size_t>(id)];
    switch (types[static_cast<size_t>(id)]) {
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
      case token_type::user_defined:
        return text;
      case token_type::control:
      case token_type::unknown:
        return render_special ? text : std::string();
      default:
        return {};
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
  if (model == "gpt2") {
    p->kind = model_kind::byte_level_bpe;
  } else if (model == "llama") {
    p->kind = model_kind::sentencepiece;
  } else {
    throw error(errc::unsupported, where + "tokenizer.ggml.model '" + model +
                                       "' is not supported (troupe knows 'gpt2', byte-level BPE, "
                                       "and 'llama', SentencePiece BPE)");
  }
  const bool spm = p->kind == model_kind::sentencepiece;
  p->pre = f.get_string("tokenizer.ggml.pre", "default");
  if (!spm) {  // llama.cpp ignores tokenizer.ggml.pre for SentencePiece vocabularies
    const std::vector<std::string> exprs = pre_tokenizer_regexes(p->pre, &p->ignore_merges);
    if (exprs.empty()) {
      throw error(errc::unsupported,
                  where + "pre-tokenizer tokenizer.ggml.pre = '" + p->pre +
                      "' is not known to troupe's tokenizer (it splits as llama.cpp does for "
                      "default, gpt2, smollm, starcoder, llama3/llama-bpe, dbrx, smaug-bpe, "
                      "tekken, gpt-4o, qwen2, qwen35, deepseek-llm, deepseek-coder, falcon, "
                      "command-r, mpt, olmo, viking, bloom, poro-chat, seed-coder and a few more)");
    }
    p->compile(exprs);
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
    for (size_t i = 0; i < t.size(); ++i) {
      const bool known = t[i] >= 0 && t[i] <= static_cast<int64_t>(token_type::byte);
      p->types[i] = known ? static_cast<token_type>(t[i]) : token_type::undefined;
    }
  }
  p->ids.reserve(p->tokens.size());
  for (int32_t i = 0; i < n; ++i) p->ids.emplace(p->tokens[static_cast<size_t>(i)], i);
  if (spm) {
    p->scores.assign(p->tokens.size(), 0.0f);
    if (const gguf_kv* kv = f.find("tokenizer.ggml.scores")) {
      const bool floats =
          kv->type == gguf_value_type::array &&
          (kv->array_type == gguf_value_type::f32 || kv->array_type == gguf_value_type::f64);
      std::vector<float> s;
      if (floats) {
        s = f.get_float_array("tokenizer.ggml.scores");
      } else {
        for (int64_t v : f.get_int_array("tokenizer.ggml.scores"))
          s.push_back(static_cast<float>(v));
      }
      if (s.size() < p->tokens.size()) {
        throw error(errc::parse_error, where + "tokenizer.ggml.scores has " +
                                           std::to_string(s.size()) + " entries for " +
                                           std::to_string(n) + " tokens");
      }
      std::copy_n(s.begin(), p->tokens.size(), p->scores.begin());
    }
    static constexpr char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const std::string name{'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
      const auto id = p->id_of(name);
      const auto raw = p->id_of(std::string(1, static_cast<char>(b)));
      p->byte_ids[static_cast<size_t>(b)] = id ? *id : raw ? *raw : -1;
    }
    if (f.contains("tokenizer.ggml.add_space_prefix"))
      p->add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
  } else {
    const std::vector<std::string> merges = f.get_string_array("tokenizer.ggml.merges");
    p->merge_rank.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i)
      p->merge_rank.emplace(merges[i], static_cast<int32_t>(i));
  }
  // llama.cpp's defaults when the keys are absent: SentencePiece vocabularies have <unk> = 0,
  // <s> = 1, </s> = 2 and add BOS; byte-level BPE ones have no defaults here.
  auto id_key = [&](const char* key, int32_t fallback) -> int32_t {
    if (fallback >= n) fallback = -1;
    if (!f.contains(key)) return fallback;
    const uint32_t v = f.get_u32(key);
    return v < static_cast<uint32_t>(n) ? static_cast<int32_t>(v) : fallback;
  };
  p->bos = id_key("tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  p->eos = id_key("tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  p->eot = id_key("tokenizer.ggml.eot_token_id", -1);
  p->unk = id_key("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  // Without the key, llama.cpp adds BOS for SentencePiece and for the byte-level pre-tokenizers
  // of the Llama 3 family and a few others (llama_vocab::impl::load).
  static const std::set<std::string> bos_by_default = {
      "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral",
      "midm-2.0", "lfm2", "jina-v5-nano", "tekken", "chameleon"};
  p->add_bos = f.contains("tokenizer.ggml.add_bos_token")
                   ? f.get_bool("tokenizer.ggml.add_bos_token")
                   : spm || bos_by_default.count(p->pre) > 0;
  p->add_eos =
      f.contains("tokenizer.ggml.add_eos_token") && f.get_bool("tokenizer.ggml.add_eos_token");
  for (int32_t id : {p->eos, p->eot}) {
    if (id >= 0) p->end_of_generation.push_back(id);
  }
  // Tokens that end a turn by their text. As llama.cpp, one that the file calls user-defined or
  // normal is made a control token (it is then matched in text only with parse_special, and
  // rendered only with render_special): Phi-3's "</s>" is user-defined in its GGUF.
  for (const char* text : {"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>",
                           "</s>", "<|eom_id|>", "<|end_of_text|>"}) {
    if (auto id = p->id_of(text)) {
      p->end_of_generation.push_back(*id);
      p->types[static_cast<size_t>(*id)] = token_type::control;
    }
  }
  for (int32_t i = 0; i < n; ++i) {
    const token_type t = p->types[static_cast<size_t>(i)];
    if (t == token_type::control || t == token_type::user_defined || t == token_type::unknown)
      p->specials.push_back(i);
  }
  std::stable_sort(p->specials.begin(), p->specials.end(), [&](int32_t a, int32_t b) {
    return p->tokens[static_cast<size_t>(a)].size() > p->tokens[static_cast<size_t>(b)].size();
  });
  // llama.cpp's rule for Phi-3 (by general.name): whitespace after a special token is dropped,
  // except after <unk>, <s> and <|endoftext|>.
  p->rstrip.assign(p->tokens.size(), false);
  const gguf_kv* name_kv = f.find("general.name");
  std::string name = name_kv != nullptr && name_kv->type == gguf_value_type::string
                         ? f.get_string("general.name")
                         : std::string();
  std::transform(name.begin(), name.end(), name.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id : p->specials) p->rstrip[static_cast<size_t>(id)] = true;
    if (auto id = p->id_of("</s>")) p->rstrip[static_cast<size_t>(*id)] = true;
    for (const char* text : {"<unk>", "<s>", "<|endoftext|>"}) {
      if (auto id = p->id_of(text)) p->rstrip[static_cast<size_t>(*id)] = false;
    }
  }
  return tokenizer(std::move(p));
}

std::vector<int32_t> tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const impl& p = *impl_;
  // Fragments: raw text (id -1, offset, length) or a special token (id).
  struct fragment {
    int32_t id;
    size_t off, len;
  };
  std::vector<fragment> frags;
  if (!text.empty()) frags.push_back({-1, 0, text.size()});
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
        if (p.rstrip[static_cast<size_t>(sid)]) {
          while (pos < end && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
        }
      }
      if (pos < end) next.push_back({-1, pos, end - pos});
    }
    frags = std::move(next);
  }
  std::vector<int32_t> out;
  if (add_special && p.add_bos && p.bos >= 0) out.push_back(p.bos);
  if (p.kind == model_kind::sentencepiece) {
    // The space prefix goes before text at the start and after any special token, never
    // between two pieces of plain text (llama.cpp's is_prev_special).
    bool after_special = true;
    std::string escaped;
    for (const fragment& fr : frags) {
      if (fr.id >= 0) {
        out.push_back(fr.id);
        after_special = true;
        continue;
      }
      escaped.clear();
      if (p.add_space_prefix && after_special) escaped += spm_space;
      for (char c : text.substr(fr.off, fr.len)) {
        if (c == ' ') {
          escaped += spm_space;
        } else {
          escaped += c;
        }
      }
      p.spm_fragment(escaped, out);
      after_special = false;
    }
  } else {
    for (const fragment& fr : frags) {
      if (fr.id >= 0) {
        out.push_back(fr.id);
        continue;
      }
      const std::string_view raw = text.substr(fr.off, fr.len);
      for (auto [b, len] : p.split(raw)) p.bpe_word(raw.substr(b, len), out);
    }
  }
  if (add_special && p.add_eos && p.eos >= 0) out.push_back(p.eos);
  return out;
}

std::string tokenizer::token_to_piece(int32_t id, bool render_special) const {
  const impl& p = *impl_;
  if (id < 0 || id >= static_cast<int32_t>(p.tokens.size())) return {};
  return p.kind == model_kind::sentencepiece ? p.spm_piece(id, render_special)
                                             : p.bpe_piece(id, render_special);
}

std::string tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  // The space encode() put before the text is not part of it: llama_detokenize drops one
  // leading space of the first token's piece, whatever that token is (a leading BOS, which
  // renders as nothing, uses the drop up: its text keeps the space).
  bool drop_space = impl_->kind == model_kind::sentencepiece && impl_->add_space_prefix;
  for (int32_t id : ids) {
    std::string piece = token_to_piece(id, render_special);
    if (drop_space && !piece.empty() && piece.front() == ' ') piece.erase(0, 1);
    drop_space = false;
    out += piece;
  }
  return out;
}

int32_t tokenizer::vocab_size() const noexcept {
  return static_cast<int32_t>(impl_->tokens.size());
}
const std::string& tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    throw error(errc::invalid_argument, "token id " + std::to_string(id) + " is out of range");
  return impl_->tokens[static_cast<size_t>(id)];
}
token_type tokenizer::type(int32_t id) const noexcept {
  if (id < 0 || id >= vocab_size()) return token_type::undefined;
  return impl_->types[static_cast<size_t>(id)];
}
std::optional<int32_t> tokenizer::find(std::string_view text) const { return impl_->id_of(text); }
int32_t tokenizer::bos() const noexcept { return impl_->bos; }
int32_t tokenizer::eos() const noexcept { return impl_->eos; }
int32_t tokenizer::unknown() const noexcept { return impl_->unk; }
bool tokenizer::is_end_of_generation(int32_t id) const noexcept {
  const auto& e = impl_->end_of_generation;
  return std::find(e.begin(), e.end(), id) != e.end();
}
const std::string& tokenizer::pre_tokenizer() const noexcept { return impl_->pre; }
bool tokenizer::is_sentencepiece() const noexcept {
  return impl_->kind == model_kind::sentencepiece;
}
bool tokenizer::adds_space_prefix() const noexcept {
  return impl_->kind == model_kind::sentencepiece && impl_->add_space_prefix;
}
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
