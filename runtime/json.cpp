#include "troupe/json.hpp"

#include <simdjson.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <system_error>
#include <unordered_map>

namespace troupe::json {

namespace {

[[noreturn]] void throw_type_mismatch(const char* expected, const value& actual) {
  std::string msg = "expected ";
  msg += expected;
  msg += ", got ";
  msg += actual.type_name();
  throw error(errc::invalid_argument, std::move(msg));
}

// ---------------------------------------------------------------------------------------------
// Parsing: simdjson DOM -> json::value.
// ---------------------------------------------------------------------------------------------

/// Documents above this size are parsed with a parser of their own, so that one huge document does
/// not leave its buffers allocated in the thread's reusable parser for the life of the thread.
constexpr size_t reusable_parser_limit = size_t{1} << 20;

/// simdjson's names of its error codes, in the order of simdjson::error_code (3.0).
constexpr const char* error_code_names[] = {
    "SUCCESS",
    "CAPACITY",
    "MEMALLOC",
    "TAPE_ERROR",
    "DEPTH_ERROR",
    "STRING_ERROR",
    "T_ATOM_ERROR",
    "F_ATOM_ERROR",
    "N_ATOM_ERROR",
    "NUMBER_ERROR",
    "UTF8_ERROR",
    "UNINITIALIZED",
    "EMPTY",
    "UNESCAPED_CHARS",
    "UNCLOSED_STRING",
    "UNSUPPORTED_ARCHITECTURE",
    "INCORRECT_TYPE",
    "NUMBER_OUT_OF_RANGE",
    "INDEX_OUT_OF_BOUNDS",
    "NO_SUCH_FIELD",
    "IO_ERROR",
    "INVALID_JSON_POINTER",
    "INVALID_URI_FRAGMENT",
    "UNEXPECTED_ERROR",
    "PARSER_IN_USE",
    "OUT_OF_ORDER_ITERATION",
    "INSUFFICIENT_PADDING",
    "INCOMPLETE_ARRAY_OR_OBJECT",
    "SCALAR_DOCUMENT_AS_VALUE",
    "OUT_OF_BOUNDS",
    "TRAILING_CONTENT",
};
static_assert(std::size(error_code_names) == simdjson::NUM_ERROR_CODES,
              "simdjson's error codes changed: update error_code_names");
static_assert(simdjson::TAPE_ERROR == 3 && simdjson::TRAILING_CONTENT == 30,
              "simdjson's error codes changed: update error_code_names");

const char* error_code_name(simdjson::error_code code) {
  auto i = static_cast<size_t>(code);
  return i < std::size(error_code_names) ? error_code_names[i] : "UNKNOWN_ERROR";
}

/// What the author of the text can do about a simdjson error.
const char* error_hint(simdjson::error_code code) {
  using namespace simdjson;
  switch (code) {
    case EMPTY:
      return "send exactly one JSON value, e.g. {} when there is nothing to say";
    case TAPE_ERROR:
    case INCOMPLETE_ARRAY_OR_OBJECT:
    case TRAILING_CONTENT:
      return "check for missing or extra commas, colons, brackets, braces or quotes, unquoted "
             "keys, and text after the value";
    case STRING_ERROR:
    case UNCLOSED_STRING:
    case UNESCAPED_CHARS:
      return "close every string with a double quote, escape quotes, backslashes and control "
             "characters, and use only the escapes \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX";
    case T_ATOM_ERROR:
    case F_ATOM_ERROR:
    case N_ATOM_ERROR:
      return "write true, false and null in lowercase, and quote every string";
    case NUMBER_ERROR:
      return "write numbers like 12, -3.5 or 1e9 (no leading zeros, no NaN or Infinity, no '+', "
             "at most about 1.8e308 in magnitude)";
    case UTF8_ERROR:
      return "the text must be valid UTF-8";
    case DEPTH_ERROR:
      return "nest arrays and objects less than 1024 levels deep";
    case CAPACITY:
    case MEMALLOC:
      return "send a smaller document";
    default:
      return "send one complete, well-formed JSON value";
  }
}

[[noreturn]] void throw_parse_error(std::string_view what, simdjson::error_code code) {
  std::string msg{what};
  msg += ": not valid JSON: ";
  msg += error_code_name(code);
  msg += ": ";
  msg += simdjson::error_message(code);
  msg += " (";
  msg += error_hint(code);
  msg += ')';
  throw error(errc::parse_error, std::move(msg));
}

/// simdjson 3.0 rejects integers outside [-2^63, 2^64) (NUMBER_ERROR), which JSON allows. Returns
/// `text` with ".0" after each such integer, so that they parse as doubles, or an empty string
/// when there is none (the error is then a real one).
std::string widen_big_integers(std::string_view text) {
  std::string out;
  bool in_string = false;
  size_t copied = 0;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      ++i;
      continue;
    }
    if (c != '-' && (c < '0' || c > '9')) {
      ++i;
      continue;
    }
    if (c == '-') ++i;
    size_t digits_start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    size_t digits = i - digits_start;
    bool fraction = i < text.size() && (text[i] == '.' || text[i] == 'e' || text[i] == 'E');
    // 19 digits still fit int64 or uint64 in most cases; simdjson handles those.
    if (!fraction && digits >= 19) {
      out.append(text.data() + copied, i - copied);
      out += ".0";
      copied = i;
    }
    while (i < text.size() &&
           (text[i] == '.' || text[i] == 'e' || text[i] == 'E' || text[i] == '+' ||
            text[i] == '-' || (text[i] >= '0' && text[i] <= '9'))) {
      ++i;
    }
  }
  if (copied == 0) return {};
  out.append(text.data() + copied, text.size() - copied);
  return out;
}

value convert(simdjson::dom::element e);

/// Duplicate member names: the last value wins (as in JavaScript and Python), at the position of
/// the first occurrence, so that find() and validate() see what most producers meant.
object convert_object(simdjson::dom::object o) {
  object out;
  out.reserve(o.size());
  // Keys view the parser's string buffer, which outlives this function.
  std::unordered_map<std::string_view, size_t> index;
  const bool use_index = o.size() > 16;  // a linear scan is faster for small objects
  for (auto field : o) {
    std::string_view key = field.key;
    size_t pos = out.size();
    if (use_index) {
      auto [it, inserted] = index.emplace(key, out.size());
      if (!inserted) pos = it->second;
    } else {
      for (size_t i = 0; i < out.size(); ++i) {
        if (out[i].first == key) {
          pos = i;
          break;
        }
      }
    }
    if (pos == out.size()) {
      out.emplace_back(std::string{key}, convert(field.value));
    } else {
      out[pos].second = convert(field.value);
    }
  }
  return out;
}

value convert(simdjson::dom::element e) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::NULL_VALUE:
      return value{nullptr};
    case element_type::BOOL:
      return value{bool(e.get_bool().value_unsafe())};
    case element_type::INT64:
      return value{int64_t(e.get_int64().value_unsafe())};
    case element_type::UINT64:
      return value{double(e.get_uint64().value_unsafe())};
    case element_type::DOUBLE:
      return value{double(e.get_double().value_unsafe())};
    case element_type::STRING:
      return value{std::string{e.get_string().value_unsafe()}};
    case element_type::ARRAY: {
      simdjson::dom::array a = e.get_array().value_unsafe();
      array out;
      out.reserve(a.size());
      for (simdjson::dom::element item : a) out.push_back(convert(item));
      return value{std::move(out)};
    }
    case element_type::OBJECT:
      return value{convert_object(e.get_object().value_unsafe())};
  }
  throw error(errc::internal, "simdjson returned an element of unknown type");
}

// ---------------------------------------------------------------------------------------------
// Serialisation.
// ---------------------------------------------------------------------------------------------

constexpr char hex_digits[] = "0123456789abcdef";

/// True for the bytes RFC 8259 requires to be escaped inside a string.
inline bool needs_escape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

void append_escape(std::string& out, unsigned char c) {
  switch (c) {
    case '"':
      out += "\\\"";
      return;
    case '\\':
      out += "\\\\";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    default: {
      char buf[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
      out.append(buf, sizeof buf);
    }
  }
}

/// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not one.
size_t utf8_sequence_length(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = byte(i);
  size_t n = s.size() - i;
  auto cont = [&](size_t k) { return (byte(i + k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return (n >= 2 && cont(1)) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (n < 3 || !cont(1) || !cont(2)) return 0;
    unsigned char c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
    if (c == 0xED && c1 > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (n < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
    unsigned char c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

void append_number(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest text that round-trips
  if (ec != std::errc{}) throw error(errc::internal, "cannot format a double as JSON");
  std::string_view text(buf, size_t(end - buf));
  out += text;
  // Keep doubles doubles: "1" would parse back as an integer.
  if (text.find_first_of(".eE") == std::string_view::npos) out += ".0";
}

void dump_to(std::string& out, const value& v) {
  struct visitor {
    std::string& out;
    void operator()(std::nullptr_t) const { out += "null"; }
    void operator()(bool b) const { out += b ? "true" : "false"; }
    void operator()(int64_t i) const {
      char buf[24];
      auto [end, ec] = std::to_chars(buf, buf + sizeof buf, i);
      out.append(buf, size_t(end - buf));
    }
    void operator()(double d) const { append_number(out, d); }
    void operator()(const std::string& s) const { append_quoted(out, s); }
    void operator()(const array& a) const {
      out += '[';
      bool first = true;
      for (const value& item : a) {
        if (!first) out += ',';
        first = false;
        dump_to(out, item);
      }
      out += ']';
    }
    void operator()(const object& o) const {
      out += '{';
      bool first = true;
      for (const auto& [key, item] : o) {
        if (!first) out += ',';
        first = false;
        append_quoted(out, key);
        out += ':';
        dump_to(out, item);
      }
      out += '}';
    }
  };
  std::visit(visitor{out}, v.raw());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// value
// ---------------------------------------------------------------------------------------------

bool value::as_bool() const {
  if (const bool* b = std::get_if<bool>(&v_)) return *b;
  throw_type_mismatch("boolean", *this);
}

/// Also accepts a double with no fractional part that fits int64 (e.g. 3.0), as validate() does
/// for "integer".
int64_t value::as_int() const {
  if (const int64_t* i = std::get_if<int64_t>(&v_)) return *i;
  if (const double* d = std::get_if<double>(&v_)) {
    // [-2^63, 2^63) is exactly representable at both ends as doubles.
    if (std::isfinite(*d) && std::trunc(*d) == *d && *d >= -9223372036854775808.0 &&
        *d < 9223372036854775808.0) {
      return static_cast<int64_t>(*d);
    }
  }
  throw_type_mismatch("integer", *this);
}

double value::as_number() const {
  if (const int64_t* i = std::get_if<int64_t>(&v_)) return static_cast<double>(*i);
  if (const double* d = std::get_if<double>(&v_)) return *d;
  throw_type_mismatch("number", *this);
}

const std::string& value::as_string() const {
  if (const std::string* s = std::get_if<std::string>(&v_)) return *s;
  throw_type_mismatch("string", *this);
}

const array& value::as_array() const {
  if (const array* a = std::get_if<array>(&v_)) return *a;
  throw_type_mismatch("array", *this);
}

array& value::as_array() {
  if (array* a = std::get_if<array>(&v_)) return *a;
  throw_type_mismatch("array", *this);
}

const object& value::as_object() const {
  if (const object* o = std::get_if<object>(&v_)) return *o;
  throw_type_mismatch("object", *this);
}

object& value::as_object() {
  if (object* o = std::get_if<object>(&v_)) return *o;
  throw_type_mismatch("object", *this);
}

const value* value::find(std::string_view key) const {
  const object* o = std::get_if<object>(&v_);
  if (o == nullptr) return nullptr;
  for (const auto& [k, v] : *o) {
    if (k == key) return &v;
  }
  return nullptr;
}

value& value::set(std::string key, value v) {
  if (is_null()) v_ = object{};
  object& o = as_object();
  for (auto& [k, existing] : o) {
    if (k == key) {
      existing = std::move(v);
      return existing;
    }
  }
  o.emplace_back(std::move(key), std::move(v));
  return o.back().second;
}

const char* value::type_name() const {
  static constexpr const char* names[] = {"null",   "boolean", "integer", "number",
                                          "string", "array",   "object"};
  static_assert(std::size(names) == std::variant_size_v<storage>,
                "type_name() must name every alternative of value::storage");
  return names[v_.index()];
}

// ---------------------------------------------------------------------------------------------
// Free functions
// ---------------------------------------------------------------------------------------------

value parse(std::string_view text, std::string_view what) {
  // parse(buf, len, realloc_if_needed = true) copies the text into the parser's padded buffer,
  // which the thread-local parser keeps between calls.
  thread_local simdjson::dom::parser reusable;
  simdjson::dom::parser one_off;
  simdjson::dom::parser& parser = text.size() <= reusable_parser_limit ? reusable : one_off;
  simdjson::dom::element root;
  simdjson::error_code code = parser.parse(text.data(), text.size(), true).get(root);
  if (code == simdjson::NUMBER_ERROR) {
    std::string widened = widen_big_integers(text);
    if (!widened.empty() && !parser.parse(widened.data(), widened.size(), true).get(root)) {
      return convert(root);
    }
  }
  if (code) throw_parse_error(what, code);
  return convert(root);
}

std::string dump(const value& v) {
  std::string out;
  dump_to(out, v);
  return out;
}

/// Invalid UTF-8 (which cannot come from parse(), but can from process output) is replaced by
/// U+FFFD per maximal ill-formed subpart, so the result is always valid JSON.
void append_quoted(std::string& out, std::string_view s) {
  out.reserve(out.size() + s.size() + 2);
  out += '"';
  const bool valid_utf8 = simdjson::validate_utf8(s.data(), s.size());
  size_t run = 0;  // start of the pending run of bytes copied as they are
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (needs_escape(c)) {
        out.append(s.data() + run, i - run);
        append_escape(out, c);
        run = i + 1;
      }
      ++i;
      continue;
    }
    if (valid_utf8) {
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(s, i);
    if (n != 0) {
      i += n;
      continue;
    }
    out.append(s.data() + run, i - run);
    out += "\xEF\xBF\xBD";  // U+FFFD
    // Skip the maximal prefix of a well-formed sequence (Unicode's "substitution of maximal
    // subparts"): the lead byte plus the continuation bytes that could still have fit.
    ++i;
    if (c >= 0xC2 && c <= 0xF4) {
      size_t want = c <= 0xDF ? 1 : c <= 0xEF ? 2 : 3;
      for (size_t k = 0; k < want && i < s.size(); ++k) {
        unsigned char cc = static_cast<unsigned char>(s[i]);
        unsigned char lo = 0x80, hi = 0xBF;
        if (k == 0) {
          if (c == 0xE0) lo = 0xA0;
          if (c == 0xED) hi = 0x9F;
          if (c == 0xF0) lo = 0x90;
          if (c == 0xF4) hi = 0x8F;
        }
        if (cc < lo || cc > hi) break;
        ++i;
      }
    }
    run = i;
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

std::string quote(std::string_view s) {
  std::string out;
  append_quoted(out, s);
  return out;
}

}  // namespace troupe::json
