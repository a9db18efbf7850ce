// tiktoken-format BPE tokenizer (see tiktoken.hpp). The merge loop follows tiktoken's
// `_byte_pair_merge` (src/lib.rs): repeatedly merge the adjacent pair whose concatenation has the
// lowest rank, the leftmost one among equals; a piece that is itself a token maps to it directly.

#define PCRE2_CODE_UNIT_WIDTH 8
#include "troupe/formats/tiktoken.hpp"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>

#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe {

const char* const kimi_pat_str =
  "[\\p{Han}]+"
  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*"
  "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
  "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+"
  "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
  "|\\p{N}{1,3}"
  "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
  "|\\s*[\\r\\n]+"
  "|\\s+(?!\\S)"
  "|\\s+";

namespace {

constexpr int32_t no_rank = std::numeric_limits<int32_t>::max();
constexpr int32_t kimi_reserved_special_tokens = 256;  // tokenization_kimi.py

// --- pattern translation -------------------------------------------------------------------------

/// Unicode White_Space, which Rust's \s is; PCRE2's \s also takes U+180E (no longer White_Space
/// since Unicode 6.3). As class items.
constexpr std::string_view white_space_items =
  "\\t-\\r\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}"
  "\\x{3000}";

/// Copies the escape at p[i] ('\\' first) to out, rewriting script names in \p{..} / \P{..} and
/// \s / \S (outside classes; \s inside) to Rust's meaning; returns the index after it.
size_t copy_escape(std::string_view p, size_t i, std::string& out, bool in_class) {
  if (i + 1 >= p.size()) {
    out += p.substr(i);
    return p.size();
  }
  const char kind = p[i + 1];
  if (kind == 's' || (kind == 'S' && !in_class)) {
    if (in_class) {
      out += white_space_items;
    } else {
      out += kind == 's' ? "[" : "[^";
      out += white_space_items;
      out += ']';
    }
    return i + 2;
  }
  if ((kind == 'p' || kind == 'P') && i + 2 < p.size() && p[i + 2] == '{') {
    const size_t close = p.find('}', i + 3);
    if (close == std::string_view::npos) {
      throw error(errc::invalid_argument,
                  "tiktoken pattern: unterminated \\" + std::string(1, kind) + "{ at offset " +
                    std::to_string(i) + "; close the property name with '}'");
    }
    std::string_view name = p.substr(i + 3, close - i - 3);
    std::string prefix;
    if (!name.empty() && name.front() == '^') {
      prefix = "^";
      name.remove_prefix(1);
    }
    const bool category = name.size() <= 2 || name == "L&" || name == "Any" || name == "Xan" ||
                          name == "Xps" || name == "Xsp" || name == "Xwd" || name == "Xuc";
    const bool qualified = name.find_first_of(":=") != std::string_view::npos;
    out += '\\';
    out += kind;
    out += '{';
    out += prefix;
#if PCRE2_MAJOR > 10 || (PCRE2_MAJOR == 10 && PCRE2_MINOR >= 40)
    // PCRE2 10.40+ reads \p{Han} as Script_Extensions=Han (CJK punctuation such as U+3002
    // included); Rust's regex, which tiktoken uses, reads it as Script=Han.
    if (!category && !qualified) out += "sc:";
#endif
    out += name;
    out += '}';
    return close + 1;
  }
  out += p.substr(i, 2);
  return i + 2;
}

/// One character class of a Rust regex, translated. `flat` holds its items when the class is a
/// plain union that can be spliced into an enclosing class.
struct class_translation {
  std::string expr;
  std::string flat;
  bool flat_ok = false;
  size_t end = 0;
};

class_translation translate_class(std::string_view p, size_t i);

/// One operand of a class (between `&&`s): items and nested classes, as an expression.
struct operand {
  std::string items;                   // plain items, copied
  std::vector<class_translation> sub;  // nested classes
  bool empty() const { return items.empty() && sub.empty(); }
  /// The union as one PCRE2 expression.
  std::string expr() const {
    std::vector<std::string> alts;
    std::string merged = items;
    for (const auto& s : sub) {
      if (s.flat_ok) {
        merged += s.flat;
      } else {
        alts.push_back(s.expr);
      }
    }
    if (!merged.empty()) alts.insert(alts.begin(), "[" + merged + "]");
    if (alts.size() == 1) return alts.front();
    std::string out = "(?:";
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? "|" : "") + alts[k];
    return out + ")";
  }
};

class_translation translate_class(std::string_view p, size_t i) {
  const size_t open = i;
  ++i;  // '['
  bool negated = false;
  if (i < p.size() && p[i] == '^') {
    negated = true;
    ++i;
  }
  std::vector<operand> ops(1);
  if (i < p.size() && p[i] == ']') {  // a ']' first is a literal
    ops.back().items += "\\]";
    ++i;
  }
  while (true) {
    if (i >= p.size()) {
      throw error(errc::invalid_argument, "tiktoken pattern: the character class at offset " +
                                            std::to_string(open) + " is not closed with ']'");
    }
    const char c = p[i];
    if (c == ']') {
      ++i;
      break;
    }
    if (c == '\\') {
      i = copy_escape(p, i, ops.back().items, true);
    } else if (c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX [:name:]
      const size_t close = p.find(":]", i + 2);
      if (close == std::string_view::npos) {
        throw error(errc::invalid_argument, "tiktoken pattern: unterminated [: at offset " +
                                              std::to_string(i));
      }
      ops.back().items += p.substr(i, close + 2 - i);
      i = close + 2;
    } else if (c == '[') {
      ops.back().sub.push_back(translate_class(p, i));
      i = ops.back().sub.back().end;
    } else if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') {
      ops.emplace_back();
      i += 2;
    } else {
      ops.back().items += c;
      ++i;
    }
  }
  class_translation r;
  r.end = i;
  for (const operand& o : ops) {
    if (o.empty()) {
      throw error(errc::invalid_argument, "tiktoken pattern: empty operand of '&&' in the class "
                                          "at offset " + std::to_string(open));
    }
  }
  if (ops.size() == 1) {
    const operand& o = ops.front();
    if (negated) {
      if (!o.sub.empty()) {
        throw error(errc::unsupported, "tiktoken pattern: a nested class inside the negated class "
                                       "at offset " + std::to_string(open) +
                                         " cannot be translated to PCRE2");
      }
      r.expr = "[^" + o.items + "]";
      return r;
    }
    const bool all_flat =
      std::all_of(o.sub.begin(), o.sub.end(), [](const auto& s) { return s.flat_ok; });
    if (all_flat) {
      r.flat = o.items;
      for (const auto& s : o.sub) r.flat += s.flat;
      r.flat_ok = true;
      r.expr = "[" + r.flat + "]";
    } else {
      r.expr = o.expr();
    }
    return r;
  }
  if (negated) {
    throw error(errc::unsupported, "tiktoken pattern: '&&' inside the negated class at offset " +
                                     std::to_string(open) + " cannot be translated to PCRE2");
  }
  // [A&&B&&C]: a character that A matches and B and C match too, as lookaheads at its start.
  r.expr = "(?:";
  for (size_t k = 1; k < ops.size(); ++k) r.expr += "(?=" + ops[k].expr() + ")";
  r.expr += ops.front().expr() + ")";
  return r;
}

// --- files ---------------------------------------------------------------------------------------

std::string read_file(const std::filesystem::path& path, const char* what) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw error(errc::not_found, path.string() + ": no such file; a tiktoken tokenizer needs " +
                                   what + " (tiktoken.model and tokenizer_config.json side by side)");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw error(errc::io_error, path.string() + ": cannot open " + what + " for reading");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw error(errc::io_error, path.string() + ": read error in " + what);
  return ss.str();
}

int base64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/// Strict standard base64 (padding required); nullopt when `s` is not such text.
std::optional<std::string> decode_base64(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  size_t pad = 0;
  if (s.back() == '=') ++pad;
  if (s.size() >= 2 && s[s.size() - 2] == '=') ++pad;
  std::string out;
  out.reserve(s.size() / 4 * 3);
  for (size_t i = 0; i < s.size(); i += 4) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) {
      const size_t at = i + k;
      int d = 0;
      if (at >= s.size() - pad) {
        if (s[at] != '=') return std::nullopt;
      } else {
        d = base64_value(static_cast<unsigned char>(s[at]));
        if (d < 0) return std::nullopt;
      }
      v = (v << 6) | static_cast<uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 0xFF);
    out += static_cast<char>((v >> 8) & 0xFF);
    out += static_cast<char>(v & 0xFF);
  }
  out.resize(out.size() - pad);
  return out;
}

struct string_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using rank_map = std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>>;

struct regex_deleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct match_data_deleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
struct jit_stack_deleter {
  void operator()(pcre2_jit_stack* s) const { pcre2_jit_stack_free(s); }
};
struct match_context_deleter {
  void operator()(pcre2_match_context* c) const { pcre2_match_context_free(c); }
};

/// This thread's match context: a JIT stack that may grow to 256 MiB (the default 32 KiB runs
/// out on pieces of some ten thousand letters, whose class-intersection groups backtrack per
/// character) and a generous heap limit for the interpreter when JIT is unavailable.
pcre2_match_context* thread_match_context() {
  thread_local std::unique_ptr<pcre2_jit_stack, jit_stack_deleter> stack(
    pcre2_jit_stack_create(32 * 1024, 256 * 1024 * 1024, nullptr));
  thread_local std::unique_ptr<pcre2_match_context, match_context_deleter> context([] {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    if (c != nullptr) {
      if (stack) pcre2_jit_stack_assign(c, nullptr, stack.get());
      pcre2_set_heap_limit(c, 4u * 1024 * 1024);  // KiB
    }
    return c;
  }());
  return context.get();
}

/// Text of a "bos_token"-style config value: a string or {"content": "..."}.
std::optional<std::string> token_text(const json::value* v) {
  if (v == nullptr || v->is_null()) return std::nullopt;
  if (v->is_string()) return v->as_string();
  if (const json::value* c = v->find("content"); c != nullptr && c->is_string())
    return c->as_string();
  return std::nullopt;
}

}  // namespace

std::string tiktoken_pattern_to_pcre2(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  size_t i = 0;
  while (i < p.size()) {
    if (p[i] == '\\') {
      i = copy_escape(p, i, out, false);
    } else if (p[i] == '[') {
      class_translation c = translate_class(p, i);
      out += c.expr;
      i = c.end;
    } else {
      out += p[i++];
    }
  }
  return out;
}

struct tiktoken_tokenizer::impl {
  std::vector<std::string> pieces;  // by rank
  rank_map ranks;
  std::array<int32_t, 256> byte_rank{};
  std::vector<std::string> special_text;  // by id - n
  std::vector<bool> special_hidden;       // by id - n: a control token, shown on request only
  std::unordered_map<std::string, int32_t, string_hash, std::equal_to<>> special_ids;
  std::vector<size_t> special_lengths;  // distinct, longest first
  std::array<bool, 256> special_first{};
  std::unique_ptr<pcre2_code, regex_deleter> regex;
  int32_t n = 0;
  int32_t bos = -1, eos = -1;

  int32_t rank_of(std::string_view bytes) const {
    auto it = ranks.find(bytes);
    return it == ranks.end() ? no_rank : it->second;
  }

  /// tiktoken's merge loop, for short pieces: a vector of (start, rank of merging with the next
  /// part), scanned for the minimum after each merge.
  void merge_small(std::string_view piece, std::vector<int32_t>& out) const {
    std::vector<std::pair<uint32_t, int32_t>> parts;
    parts.reserve(piece.size() + 1);
    for (size_t i = 0; i + 1 < piece.size(); ++i)
      parts.emplace_back(static_cast<uint32_t>(i), rank_of(piece.substr(i, 2)));
    parts.emplace_back(static_cast<uint32_t>(piece.size() - 1), no_rank);
    parts.emplace_back(static_cast<uint32_t>(piece.size()), no_rank);
    auto pair_rank = [&](size_t i) {  // parts i and i+1 together, once i+1 absorbed i+2
      if (i + 3 >= parts.size()) return no_rank;
      return rank_of(piece.substr(parts[i].first, parts[i + 3].first - parts[i].first));
    };
    while (true) {
      int32_t best = no_rank;
      size_t at = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        if (parts[i].second < best) {
          best = parts[i].second;
          at = i;
        }
      }
      if (best == no_rank) break;
      if (at > 0) parts[at - 1].second = pair_rank(at - 1);
      parts[at].second = pair_rank(at);
      parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (size_t i = 0; i + 1 < parts.size(); ++i)
      out.push_back(rank_of(piece.substr(parts[i].first, parts[i + 1].first - parts[i].first)));
  }

  /// The same merges in O(n log n) for long pieces: a heap of (rank, start) over a linked list of
  /// parts; stale entries are skipped by a per-part version. (rank, start) order picks the lowest
  /// rank and, among equals, the leftmost pair, as the scan does.
  void merge_large(std::string_view piece, std::vector<int32_t>& out) const {
    const auto len = static_cast<uint32_t>(piece.size());
    std::vector<uint32_t> next(len), prev(len), version(len, 0);
    std::vector<bool> alive(len, true);
    for (uint32_t i = 0; i < len; ++i) {
      next[i] = i + 1;  // == len: no next part
      prev[i] = i == 0 ? len : i - 1;
    }
    struct entry {
      int32_t rank;
      uint32_t start;
      uint32_t version;
      bool operator>(const entry& o) const {
        return rank != o.rank ? rank > o.rank : start > o.start;
      }
    };
    std::priority_queue<entry, std::vector<entry>, std::greater<>> heap;
    auto end_of = [&](uint32_t i) { return next[i]; };  // parts are contiguous
    auto push = [&](uint32_t i) {
      if (next[i] >= len) return;
      const uint32_t stop = end_of(next[i]);
      const int32_t r = rank_of(piece.substr(i, stop - i));
      if (r != no_rank) heap.push({r, i, version[i]});
    };
    for (uint32_t i = 0; i + 1 < len; ++i) push(i);
    while (!heap.empty()) {
      const entry e = heap.top();
      heap.pop();
      if (!alive[e.start] || version[e.start] != e.version) continue;
      const uint32_t i = e.start, j = next[i];
      // Merge j into i.
      alive[j] = false;
      next[i] = next[j];
      if (next[i] < len) prev[next[i]] = i;
      ++version[i];
      push(i);
      if (prev[i] < len) {
        ++version[prev[i]];
        push(prev[i]);
      }
    }
    for (uint32_t i = 0; i < len; i = next[i]) out.push_back(rank_of(piece.substr(i, next[i] - i)));
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.empty()) return;
    if (piece.size() == 1) {
      out.push_back(byte_rank[static_cast<unsigned char>(piece[0])]);
      return;
    }
    if (const int32_t r = rank_of(piece); r != no_rank) {
      out.push_back(r);
      return;
    }
    if (piece.size() <= 64) {
      merge_small(piece, out);
    } else {
      merge_large(piece, out);
    }
  }

  /// Splits `text` with the pattern; bytes no match covers (invalid UTF-8) form pieces of their
  /// own, so nothing is dropped.
  void encode_ordinary(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::unique_ptr<pcre2_match_data, match_data_deleter> md(
      pcre2_match_data_create_from_pattern(regex.get(), nullptr));
    if (!md) throw error(errc::internal, "tiktoken tokenizer: out of memory for regex match data");
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    size_t pos = 0;
    while (pos < text.size()) {
      const int rc =
        pcre2_match(regex.get(), subject, text.size(), pos, 0, md.get(), thread_match_context());
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof msg);
        throw error(errc::internal, "tiktoken tokenizer: split pattern failed at byte " +
                                      std::to_string(pos) + ": " + reinterpret_cast<char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
      const size_t ms = ov[0], me = ov[1];
      if (ms > pos) encode_piece(text.substr(pos, ms - pos), out);
      if (me == ms) {  // an empty match (possible with a custom pat_str): step over one byte
        encode_piece(text.substr(ms, 1), out);
        pos = ms + 1;
        continue;
      }
      encode_piece(text.substr(ms, me - ms), out);
      pos = me;
    }
    if (pos < text.size()) encode_piece(text.substr(pos), out);
  }

  /// Earliest special token at or after `from`, the longest one there: (position, id).
  std::pair<size_t, int32_t> find_special(std::string_view text, size_t from) const {
    for (size_t i = from; i < text.size(); ++i) {
      if (!special_first[static_cast<unsigned char>(text[i])]) continue;
      for (size_t len : special_lengths) {
        if (len > text.size() - i) continue;
        if (auto it = special_ids.find(text.substr(i, len)); it != special_ids.end())
          return {i, it->second};
      }
    }
    return {std::string_view::npos, -1};
  }
};

tiktoken_tokenizer::tiktoken_tokenizer(std::unique_ptr<impl> p) : impl_(std::move(p)) {}
tiktoken_tokenizer::tiktoken_tokenizer(tiktoken_tokenizer&&) noexcept = default;
tiktoken_tokenizer& tiktoken_tokenizer::operator=(tiktoken_tokenizer&&) noexcept = default;
tiktoken_tokenizer::~tiktoken_tokenizer() = default;

tiktoken_tokenizer tiktoken_tokenizer::from_directory(const std::filesystem::path& dir) {
  return from_files(dir / "tiktoken.model", dir / "tokenizer_config.json");
}

tiktoken_tokenizer tiktoken_tokenizer::from_files(const std::filesystem::path& model,
                                                  const std::filesystem::path& config_json) {
  auto p = std::make_unique<impl>();
  const std::string model_name = model.string();

  // tiktoken.model: "<base64> <rank>" per line; empty lines are skipped, as tiktoken does.
  {
    const std::string text = read_file(model, "the BPE ranks file");
    std::vector<std::pair<std::string, int32_t>> entries;  // (bytes, rank)
    std::vector<size_t> line_of;                           // per entry
    size_t line_no = 0, at = 0;
    while (at < text.size()) {
      size_t eol = text.find('\n', at);
      if (eol == std::string::npos) eol = text.size();
      std::string_view line(text.data() + at, eol - at);
      at = eol + 1;
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) continue;
      auto where = [&] { return model_name + ":" + std::to_string(line_no) + ": "; };
      const size_t sp = line.find(' ');
      if (sp == std::string_view::npos || line.find(' ', sp + 1) != std::string_view::npos) {
        throw error(errc::parse_error,
                    where() + "expected '<base64 token> <rank>', got '" +
                      std::string(line.substr(0, 80)) + "'; is this a tiktoken.model file?");
      }
      const std::string_view b64 = line.substr(0, sp), rank_text = line.substr(sp + 1);
      std::optional<std::string> bytes = decode_base64(b64);
      if (!bytes || bytes->empty()) {
        throw error(errc::parse_error, where() + "'" + std::string(b64.substr(0, 80)) +
                                         "' is not standard base64 of a non-empty token");
      }
      int32_t rank = -1;
      const auto [ptr, ec] =
        std::from_chars(rank_text.data(), rank_text.data() + rank_text.size(), rank);
      if (ec != std::errc{} || ptr != rank_text.data() + rank_text.size() || rank < 0) {
        throw error(errc::parse_error, where() + "rank '" + std::string(rank_text.substr(0, 40)) +
                                         "' is not a non-negative 32-bit integer");
      }
      entries.emplace_back(std::move(*bytes), rank);
      line_of.push_back(line_no);
    }
    if (entries.empty()) {
      throw error(errc::parse_error, model_name + ": no tokens; a tiktoken.model has one "
                                                  "'<base64> <rank>' line per token");
    }
    const auto n = static_cast<int32_t>(entries.size());
    p->n = n;
    p->pieces.assign(entries.size(), {});
    std::vector<size_t> rank_line(entries.size(), 0);
    p->ranks.reserve(entries.size());
    for (size_t k = 0; k < entries.size(); ++k) {
      auto& [bytes, rank] = entries[k];
      const std::string where = model_name + ":" + std::to_string(line_of[k]) + ": ";
      if (rank >= n) {
        throw error(errc::parse_error, where + "rank " + std::to_string(rank) + " is not below " +
                                         std::to_string(n) + ", the number of tokens; ranks "
                                         "must be 0..n-1");
      }
      if (rank_line[static_cast<size_t>(rank)] != 0) {
        throw error(errc::parse_error,
                    where + "duplicate rank " + std::to_string(rank) + " (first on line " +
                      std::to_string(rank_line[static_cast<size_t>(rank)]) + ")");
      }
      rank_line[static_cast<size_t>(rank)] = line_of[k];
      if (!p->ranks.emplace(bytes, rank).second) {
        throw error(errc::parse_error, where + "duplicate token (the same bytes have rank " +
                                         std::to_string(p->ranks.find(bytes)->second) + ")");
      }
      p->pieces[static_cast<size_t>(rank)] = std::move(bytes);
    }
    for (int b = 0; b < 256; ++b) {
      const int32_t r = p->rank_of(std::string(1, static_cast<char>(b)));
      if (r == no_rank) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02X", b);
        throw error(errc::parse_error, model_name + ": the single byte " + hex +
                                         " has no rank; byte-level BPE needs all 256 bytes");
      }
      p->byte_rank[static_cast<size_t>(b)] = r;
    }
  }

  // tokenizer_config.json: special tokens, bos/eos, optional pat_str.
  const std::string config_name = config_json.string();
  const std::string config_text = read_file(config_json, "the tokenizer config");
  json::value config;
  try {
    config = json::parse(config_text, config_name);
  } catch (const error& e) {
    throw error(errc::parse_error, config_name + ": " + e.message());
  }
  if (!config.is_object()) {
    throw error(errc::parse_error, config_name + ": expected a JSON object at the top level");
  }
  int32_t count = kimi_reserved_special_tokens;
  std::vector<std::pair<int32_t, std::pair<std::string, bool>>> named;
  if (const json::value* added = config.find("added_tokens_decoder"); added != nullptr) {
    if (!added->is_object()) {
      throw error(errc::parse_error, config_name + ": \"added_tokens_decoder\" must be an object "
                                                   "of id -> {\"content\": ..., \"special\": ...}");
    }
    for (const auto& [key, entry] : added->as_object()) {
      const std::string where = config_name + ": added_tokens_decoder[\"" + key + "\"]: ";
      int64_t id = -1;
      const auto [ptr, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (ec != std::errc{} || ptr != key.data() + key.size() || id < 0 ||
          id > std::numeric_limits<int32_t>::max() - 1) {
        throw error(errc::parse_error, where + "the key is not a token id");
      }
      const json::value* content = entry.find("content");
      if (content == nullptr || !content->is_string() || content->as_string().empty()) {
        throw error(errc::parse_error, where + "needs a non-empty string \"content\"");
      }
      if (id < p->n) continue;  // a BPE rank: tiktoken.model decides its bytes
      bool special = true;
      if (const json::value* s = entry.find("special"); s != nullptr && s->is_bool())
        special = s->as_bool();
      const auto rel = static_cast<int32_t>(id - p->n);
      count = std::max(count, rel + 1);
      named.push_back({rel, {content->as_string(), special}});
    }
  }
  if (count > std::numeric_limits<int32_t>::max() - p->n || count > (1 << 20)) {
    throw error(errc::parse_error, config_name + ": added_tokens_decoder names ids far beyond the "
                                                 "ranks of " + model_name);
  }
  p->special_text.resize(static_cast<size_t>(count));
  p->special_hidden.assign(static_cast<size_t>(count), true);
  for (int32_t k = 0; k < count; ++k)
    p->special_text[static_cast<size_t>(k)] = "<|reserved_token_" + std::to_string(p->n + k) + "|>";
  for (auto& [rel, v] : named) {
    p->special_text[static_cast<size_t>(rel)] = std::move(v.first);
    p->special_hidden[static_cast<size_t>(rel)] = v.second;
  }
  for (int32_t k = 0; k < count; ++k) {
    const std::string& t = p->special_text[static_cast<size_t>(k)];
    if (!p->special_ids.emplace(t, p->n + k).second) {
      throw error(errc::parse_error, config_name + ": special token '" + t +
                                       "' is given to two ids; each must be unique");
    }
    p->special_first[static_cast<unsigned char>(t[0])] = true;
    if (std::find(p->special_lengths.begin(), p->special_lengths.end(), t.size()) ==
        p->special_lengths.end())
      p->special_lengths.push_back(t.size());
  }
  std::sort(p->special_lengths.rbegin(), p->special_lengths.rend());

  std::string pattern = kimi_pat_str;
  if (const json::value* pat = config.find("pat_str"); pat != nullptr && !pat->is_null()) {
    if (!pat->is_string()) {
      throw error(errc::parse_error, config_name + ": \"pat_str\" must be a string");
    }
    pattern = pat->as_string();
  }
  std::string translated;
  try {
    translated = tiktoken_pattern_to_pcre2(pattern);
  } catch (const error& e) {
    throw error(e.code(), config_name + ": pat_str: " + e.message());
  }
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* c = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.c_str()), translated.size(),
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off,
                                nullptr);
  if (c == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw error(errc::invalid_argument,
                config_name + ": split pattern does not compile (as PCRE2 '" + translated +
                  "', at offset " + std::to_string(off) + "): " + reinterpret_cast<char*>(msg));
  }
  pcre2_jit_compile(c, PCRE2_JIT_COMPLETE);  // optional speed-up; matching works without it
  p->regex.reset(c);

  auto special_key = [&](const char* key, const char* fallback) {
    const std::string text = token_text(config.find(key)).value_or(fallback);
    auto it = p->special_ids.find(text);
    if (it == p->special_ids.end()) {
      throw error(errc::parse_error, config_name + ": \"" + key + "\" is '" + text +
                                       "', which is none of the special tokens");
    }
    return it->second;
  };
  p->bos = special_key("bos_token", "[BOS]");
  p->eos = special_key("eos_token", "[EOS]");
  return tiktoken_tokenizer(std::move(p));
}

std::vector<int32_t> tiktoken_tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 1);
  if (!parse_special) {
    impl_->encode_ordinary(text, out);
    return out;
  }
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [at, id] = impl_->find_special(text, pos);
    if (id < 0) break;
    impl_->encode_ordinary(text.substr(pos, at - pos), out);
    out.push_back(id);
    pos = at + impl_->special_text[static_cast<size_t>(id - impl_->n)].size();
  }
  impl_->encode_ordinary(text.substr(std::min(pos, text.size())), out);
  return out;
}

std::string tiktoken_tokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (id >= 0 && id < impl_->n) return impl_->pieces[static_cast<size_t>(id)];
  if (!is_special(id)) return {};
  const auto k = static_cast<size_t>(id - impl_->n);
  if (impl_->special_hidden[k] && !render_special) return {};
  return impl_->special_text[k];
}

std::string tiktoken_tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  for (int32_t id : ids) {
    if (id >= 0 && id < impl_->n) {
      out += impl_->pieces[static_cast<size_t>(id)];
    } else if (is_special(id)) {
      const auto k = static_cast<size_t>(id - impl_->n);
      if (!impl_->special_hidden[k] || render_special) out += impl_->special_text[k];
    }
  }
  return out;
}

int32_t tiktoken_tokenizer::vocab_size() const noexcept {
  return impl_->n + static_cast<int32_t>(impl_->special_text.size());
}
int32_t tiktoken_tokenizer::num_ranks() const noexcept { return impl_->n; }

std::optional<int32_t> tiktoken_tokenizer::special_id(std::string_view text) const {
  auto it = impl_->special_ids.find(text);
  if (it == impl_->special_ids.end()) return std::nullopt;
  return it->second;
}

int32_t tiktoken_tokenizer::bos_id() const noexcept { return impl_->bos; }
int32_t tiktoken_tokenizer::eos_id() const noexcept { return impl_->eos; }

bool tiktoken_tokenizer::is_special(int32_t id) const noexcept {
  return id >= impl_->n && id < vocab_size();
}

}  // namespace troupe
