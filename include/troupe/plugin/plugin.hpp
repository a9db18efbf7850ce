#pragma once
/// Writing a tool plugin in a few readable lines: a header-only C++ layer over plugin_api.h.
///
///   #include "troupe/plugin/plugin.hpp"
///
///   TROUPE_PLUGIN("echo", "0.1.0") {
///     plugin.tool("echo", "Returns its text argument.",
///                 R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]})",
///                 [](troupe::plugin::call& c) -> troupe::plugin::result {
///                   return troupe::plugin::result::ok(c.arg<std::string>("text"));
///                 });
///   }
///
/// The body runs once, the first time the host calls troupe_plugin_entry; it declares the tools and
/// optionally how to build per-instance state from the host's configuration (`plugin.on_init`).
/// A tool is a function from a `call` (arguments, configuration, state, cancellation) to a
/// `result`. A tool reports a failure the model can act on by throwing `tool_error` or returning
/// `result::error`; any other exception becomes an error result naming the tool. Nothing escapes
/// across the C boundary.
///
/// This header includes only plugin_api.h and the standard library, so plugins build against the
/// public plugin headers alone. Everything in it has hidden visibility: a plugin exports only
/// troupe_plugin_entry, even when built without -fvisibility=hidden.

#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "troupe/plugin/plugin_api.h"

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(hidden)
#endif

namespace troupe::plugin {

// ------------------------------------------------------------------------------------------------
// JSON: a small, strict (RFC 8259) reader and a writer, enough for tool arguments and results.
// ------------------------------------------------------------------------------------------------
namespace json {

/// Thrown by parse for text that is not JSON; `offset` is the byte where reading stopped.
class parse_error : public std::runtime_error {
 public:
  parse_error(const std::string& what, size_t offset)
      : std::runtime_error(what + " at byte " + std::to_string(offset)), offset_(offset) {}
  size_t offset() const noexcept { return offset_; }

 private:
  size_t offset_;
};

enum class kind : uint8_t { null, boolean, number, string, array, object };

/// One JSON value. Objects keep their members in document order; `find` returns the first member
/// with a given key.
class value {
 public:
  using array_type = std::vector<value>;
  using object_type = std::vector<std::pair<std::string, value>>;

  value() = default;

  kind type() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == kind::null; }
  bool is_bool() const noexcept { return kind_ == kind::boolean; }
  bool is_number() const noexcept { return kind_ == kind::number; }
  bool is_string() const noexcept { return kind_ == kind::string; }
  bool is_array() const noexcept { return kind_ == kind::array; }
  bool is_object() const noexcept { return kind_ == kind::object; }
  /// A number written without fraction or exponent that fits in int64_t.
  bool is_integer() const noexcept { return kind_ == kind::number && is_int_; }

  bool as_bool() const { return check(kind::boolean), bool_; }
  double as_double() const { return check(kind::number), num_; }
  int64_t as_int64() const {
    check(kind::number);
    if (!is_int_) throw std::invalid_argument("JSON number is not an integer");
    return int_;
  }
  const std::string& as_string() const { return check(kind::string), str_; }
  const array_type& as_array() const { return check(kind::array), arr_; }
  const object_type& as_object() const { return check(kind::object), obj_; }

  /// The member named `key` of an object, or nullptr (also when this is not an object).
  const value* find(std::string_view key) const noexcept {
    if (kind_ != kind::object) return nullptr;
    for (const auto& [k, v] : obj_)
      if (k == key) return &v;
    return nullptr;
  }

  static value make_null() { return value{}; }
  static value make_bool(bool b) {
    value v;
    v.kind_ = kind::boolean;
    v.bool_ = b;
    return v;
  }
  static value make_string(std::string s) {
    value v;
    v.kind_ = kind::string;
    v.str_ = std::move(s);
    return v;
  }

 private:
  friend class reader;
  void check(kind k) const {
    if (kind_ != k) throw std::invalid_argument("JSON value has another type");
  }

  kind kind_ = kind::null;
  bool bool_ = false;
  bool is_int_ = false;
  int64_t int_ = 0;
  double num_ = 0;
  std::string str_;
  array_type arr_;
  object_type obj_;
};

/// Name of a kind for messages: "a string", "an object", ...
inline const char* describe(kind k) noexcept {
  switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::number: return "a number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
  }
  return "?";
}

/// Recursive-descent reader with a depth limit; rejects trailing commas, leading zeros, control
/// characters and invalid UTF-8 in strings, lone surrogates, and anything after the value.
class reader {
 public:
  static constexpr int max_depth = 128;

  explicit reader(std::string_view text) : s_(text) {}

  value read_document() {
    value v = read_value(0);
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the JSON value");
    return v;
  }

 private:
  [[noreturn]] void fail(const char* what) const { throw parse_error(what, i_); }

  void skip_ws() noexcept {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
      ++i_;
  }

  bool consume(std::string_view word) noexcept {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }

  value read_value(int depth) {
    if (depth > max_depth) fail("JSON nested too deeply");
    skip_ws();
    if (i_ >= s_.size()) fail("unexpected end of JSON");
    value v;
    switch (s_[i_]) {
      case '{': {
        ++i_;
        v.kind_ = kind::object;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == '}') {
          ++i_;
          return v;
        }
        for (;;) {
          skip_ws();
          if (i_ >= s_.size() || s_[i_] != '"') fail("expected a string key in JSON object");
          std::string key = read_string();
          skip_ws();
          if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':' in JSON object");
          ++i_;
          v.obj_.emplace_back(std::move(key), read_value(depth + 1));
          skip_ws();
          if (i_ < s_.size() && s_[i_] == ',') {
            ++i_;
            continue;
          }
          if (i_ < s_.size() && s_[i_] == '}') {
            ++i_;
            return v;
          }
          fail("expected ',' or '}' in JSON object");
        }
      }
      case '[': {
        ++i_;
        v.kind_ = kind::array;
        skip_ws();
        if (i_ < s_.size() && s_[i_] == ']') {
          ++i_;
          return v;
        }
        for (;;) {
          v.arr_.push_back(read_value(depth + 1));
          skip_ws();
          if (i_ < s_.size() && s_[i_] == ',') {
            ++i_;
            continue;
          }
          if (i_ < s_.size() && s_[i_] == ']') {
            ++i_;
            return v;
          }
          fail("expected ',' or ']' in JSON array");
        }
      }
      case '"':
        v.kind_ = kind::string;
        v.str_ = read_string();
        return v;
      case 't':
        if (!consume("true")) fail("invalid JSON literal");
        return value::make_bool(true);
      case 'f':
        if (!consume("false")) fail("invalid JSON literal");
        return value::make_bool(false);
      case 'n':
        if (!consume("null")) fail("invalid JSON literal");
        return v;
      default:
        return read_number();
    }
  }

  value read_number() {
    size_t start = i_;
    bool integral = true;
    if (i_ < s_.size() && s_[i_] == '-') ++i_;
    if (i_ >= s_.size() || !is_digit(s_[i_])) fail("invalid JSON value");
    if (s_[i_] == '0') {
      ++i_;
      if (i_ < s_.size() && is_digit(s_[i_])) fail("leading zero in JSON number");
    } else {
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      integral = false;
      ++i_;
      if (i_ >= s_.size() || !is_digit(s_[i_])) fail("expected a digit after '.' in JSON number");
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      integral = false;
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (i_ >= s_.size() || !is_digit(s_[i_])) fail("expected a digit in JSON exponent");
      while (i_ < s_.size() && is_digit(s_[i_])) ++i_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    value v;
    v.kind_ = kind::number;
    if (integral) {
      auto [p, ec] = std::from_chars(first, last, v.int_);
      v.is_int_ = ec == std::errc{} && p == last;
    }
    auto [p, ec] = std::from_chars(first, last, v.num_);
    if (ec == std::errc::result_out_of_range) {
      // Magnitude beyond double: keep the sign, saturate.
      v.num_ = (*first == '-') ? -std::numeric_limits<double>::infinity()
                               : std::numeric_limits<double>::infinity();
    } else if (ec != std::errc{} || p != last) {
      fail("invalid JSON number");
    }
    return v;
  }

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  unsigned read_hex4() {
    if (s_.size() - i_ < 4) fail("truncated \\u escape in JSON string");
    unsigned cp = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s_[i_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= unsigned(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= unsigned(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= unsigned(c - 'A' + 10);
      else fail("invalid \\u escape in JSON string");
    }
    return cp;
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xC0 | (cp >> 6));
      out += char(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += char(0xE0 | (cp >> 12));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    } else {
      out += char(0xF0 | (cp >> 18));
      out += char(0x80 | ((cp >> 12) & 0x3F));
      out += char(0x80 | ((cp >> 6) & 0x3F));
      out += char(0x80 | (cp & 0x3F));
    }
  }

  std::string read_string() {
    ++i_;  // opening quote
    std::string out;
    for (;;) {
      if (i_ >= s_.size()) fail("unterminated JSON string");
      unsigned char c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) fail("control character in JSON string");
      if (c == '\\') {
        ++i_;
        if (i_ >= s_.size()) fail("unterminated JSON string");
        char e = s_[i_++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            unsigned cp = read_hex4();
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (!consume("\\u")) fail("lone surrogate in JSON string");
              unsigned lo = read_hex4();
              if (lo < 0xDC00 || lo > 0xDFFF) fail("invalid surrogate pair in JSON string");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              fail("lone surrogate in JSON string");
            }
            append_utf8(out, cp);
            break;
          }
          default: --i_; fail("invalid escape in JSON string");
        }
        continue;
      }
      if (c < 0x80) {
        out += char(c);
        ++i_;
        continue;
      }
      size_t n = utf8_sequence_length(s_, i_);
      if (n == 0) fail("invalid UTF-8 in JSON string");
      out.append(s_.data() + i_, n);
      i_ += n;
    }
  }

 public:
  /// Length of the well-formed UTF-8 sequence starting at s[i] (a non-ASCII lead byte), or 0.
  static size_t utf8_sequence_length(std::string_view s, size_t i) noexcept {
    auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
    unsigned char c = b(0);
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
      n = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return 0;
    }
    if (s.size() - i < n) return 0;
    if (b(1) < lo || b(1) > hi) return 0;
    for (size_t k = 2; k < n; ++k)
      if (b(k) < 0x80 || b(k) > 0xBF) return 0;
    return n;
  }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

/// Parses one JSON document; throws parse_error.
inline value parse(std::string_view text) { return reader(text).read_document(); }

/// Appends `s` as a JSON string literal. Invalid UTF-8 bytes become U+FFFD, so the output is
/// always valid JSON whatever bytes a file or a process produced.
inline void append_quoted(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t n = reader::utf8_sequence_length(s, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";
        ++i;
      } else {
        out.append(s.data() + i, n);
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += char(c);
        }
    }
    ++i;
  }
  out += '"';
}

inline std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_quoted(out, s);
  return out;
}

/// Builds a JSON array: array_writer().string("a").number(1).str().
class array_writer {
 public:
  array_writer& string(std::string_view v) { return sep(), append_quoted(out_, v), *this; }
  array_writer& number(int64_t v) { return sep(), out_ += std::to_string(v), *this; }
  array_writer& boolean(bool v) { return sep(), out_ += v ? "true" : "false", *this; }
  array_writer& raw(std::string_view json_text) { return sep(), out_ += json_text, *this; }
  std::string str() const { return out_ + ']'; }

 private:
  void sep() {
    if (out_.size() > 1) out_ += ',';
  }
  std::string out_ = "[";
};

/// Builds a JSON object: object_writer().string("path", p).number("size", n).str().
class object_writer {
 public:
  object_writer& string(std::string_view key, std::string_view v) {
    return field(key), append_quoted(out_, v), *this;
  }
  object_writer& number(std::string_view key, int64_t v) {
    return field(key), out_ += std::to_string(v), *this;
  }
  object_writer& boolean(std::string_view key, bool v) {
    return field(key), out_ += v ? "true" : "false", *this;
  }
  object_writer& null(std::string_view key) { return field(key), out_ += "null", *this; }
  /// `json_text` must already be valid JSON (e.g. from another writer).
  object_writer& raw(std::string_view key, std::string_view json_text) {
    return field(key), out_ += json_text, *this;
  }
  std::string str() const { return out_ + '}'; }

 private:
  void field(std::string_view key) {
    if (out_.size() > 1) out_ += ',';
    append_quoted(out_, key);
    out_ += ':';
  }
  std::string out_ = "{";
};

}  // namespace json

// ------------------------------------------------------------------------------------------------
// Tools
// ------------------------------------------------------------------------------------------------

/// Thrown by a tool (or by `call` accessors) for a failure the model can act on; its message is the
/// whole error result, so say what went wrong and what to do.
class tool_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What a tool returns: JSON or plain text, and whether it is an error.
struct result {
  std::string content;
  bool is_error = false;

  static result ok(std::string content) { return {std::move(content), false}; }
  static result error(std::string message) { return {std::move(message), true}; }
};

namespace detail {
struct instance;
template <class T>
struct is_vector : std::false_type {};
template <class T>
struct is_vector<std::vector<T>> : std::true_type {};

/// Converts a JSON value to T for argument `name`; throws tool_error naming the argument.
template <class T>
T convert(const json::value& v, std::string_view name) {
  auto wrong = [&](const char* expected) -> tool_error {
    return tool_error("argument '" + std::string(name) + "' must be " + expected + ", not " +
                      json::describe(v.type()));
  };
  if constexpr (std::is_same_v<T, json::value>) {
    return v;
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) throw wrong("a string");
    return v.as_string();
  } else if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_bool()) throw wrong("a boolean");
    return v.as_bool();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) throw wrong("a number");
    return static_cast<T>(v.as_double());
  } else if constexpr (std::is_integral_v<T>) {
    if (!v.is_integer()) throw wrong("an integer");
    int64_t x = v.as_int64();
    if constexpr (std::is_unsigned_v<T>) {
      if (x < 0 || static_cast<uint64_t>(x) > std::numeric_limits<T>::max())
        throw tool_error("argument '" + std::string(name) + "' is out of range (0 to " +
                         std::to_string(std::numeric_limits<T>::max()) + ")");
    } else {
      if (x < std::numeric_limits<T>::min() || x > std::numeric_limits<T>::max())
        throw tool_error("argument '" + std::string(name) + "' is out of range");
    }
    return static_cast<T>(x);
  } else if constexpr (is_vector<T>::value) {
    if (!v.is_array()) throw wrong("an array");
    T out;
    const auto& items = v.as_array();
    out.reserve(items.size());
    for (size_t k = 0; k < items.size(); ++k)
      out.push_back(convert<typename T::value_type>(
        items[k], std::string(name) + "[" + std::to_string(k) + "]"));
    return out;
  } else {
    static_assert(sizeof(T) == 0,
                  "call::arg supports std::string, bool, integers, floating point, json::value "
                  "and std::vector of those");
  }
}
}  // namespace detail

/// One call of a tool: its arguments, the instance's configuration and state, and whether the host
/// asked to cancel it. Accessors throw tool_error with a message naming the argument, which the
/// plugin layer turns into an error result.
class call {
 public:
  call(std::string_view tool, json::value args, detail::instance& inst,
       const std::atomic<bool>* cancel)
      : tool_(tool), args_(std::move(args)), inst_(inst), cancel_(cancel) {}

  std::string_view tool() const noexcept { return tool_; }
  const json::value& args() const noexcept { return args_; }

  /// True when the argument is present and not null.
  bool has(std::string_view name) const noexcept {
    const json::value* v = args_.find(name);
    return v && !v->is_null();
  }

  /// A required argument; throws tool_error when it is missing or has another type.
  template <class T>
  T arg(std::string_view name) const {
    const json::value* v = args_.find(name);
    if (!v || v->is_null())
      throw tool_error("tool '" + tool_ + "' needs the argument '" + std::string(name) + "'");
    return detail::convert<T>(*v, name);
  }

  /// An optional argument: std::nullopt when missing or null.
  template <class T>
  std::optional<T> optional_arg(std::string_view name) const {
    const json::value* v = args_.find(name);
    if (!v || v->is_null()) return std::nullopt;
    return detail::convert<T>(*v, name);
  }

  /// An optional argument with a default.
  template <class T>
  T arg_or(std::string_view name, T fallback) const {
    auto x = optional_arg<T>(name);
    return x ? std::move(*x) : std::move(fallback);
  }

  /// True once the host cancelled this call (asynchronous calls only); long tools poll it.
  bool cancelled() const noexcept {
    return cancel_ && cancel_->load(std::memory_order_relaxed);
  }

  /// The configuration object given to init ({} when the host gave none).
  const json::value& config() const noexcept;

  /// The state built by plugin.on_init<State>; throws std::logic_error for another type.
  template <class State>
  State& state() const;

 private:
  std::string tool_;
  json::value args_;
  detail::instance& inst_;
  const std::atomic<bool>* cancel_;
};

/// The signature of a tool.
using tool_function = std::function<result(call&)>;

/// What the TROUPE_PLUGIN body fills in: the plugin's tools and how to build its state.
class definition {
 public:
  definition(std::string name, std::string version)
      : name_(std::move(name)), version_(std::move(version)) {}

  /// Declares a tool. `parameters` is the JSON Schema (object) of its arguments.
  definition& tool(std::string name, std::string description, std::string parameters,
                   tool_function fn) {
    for (const auto& t : tools_)
      if (t.name == name) throw std::logic_error("tool '" + name + "' is declared twice");
    tools_.push_back({std::move(name), std::move(description), std::move(parameters),
                      std::move(fn)});
    return *this;
  }

  /// Builds per-instance state from the configuration at init: `make(const json::value& config)`
  /// returns a State (throw tool_error to refuse the configuration with a message). Tools reach it
  /// with `call.state<State>()`.
  template <class State, class F>
  definition& on_init(F make) {
    init_ = [make = std::move(make)](const json::value& config) -> std::shared_ptr<void> {
      return std::make_shared<State>(make(config));
    };
    state_type_ = &typeid(State);
    return *this;
  }

  /// Declares that tools must not run concurrently on one instance (default: they may).
  definition& serialized() {
    thread_safe_ = false;
    return *this;
  }

  const std::string& name() const noexcept { return name_; }
  const std::string& version() const noexcept { return version_; }

  struct tool_entry {
    std::string name;
    std::string description;
    std::string parameters;
    tool_function fn;
  };
  const std::vector<tool_entry>& tools() const noexcept { return tools_; }
  const tool_entry* find(std::string_view tool) const noexcept {
    for (const auto& t : tools_)
      if (t.name == tool) return &t;
    return nullptr;
  }

 private:
  std::string name_;
  std::string version_;
  std::vector<tool_entry> tools_;
  std::function<std::shared_ptr<void>(const json::value&)> init_;
  const std::type_info* state_type_ = nullptr;
  bool thread_safe_ = true;

 public:
  bool thread_safe() const noexcept { return thread_safe_; }
  const std::type_info* state_type() const noexcept { return state_type_; }
  std::shared_ptr<void> make_state(const json::value& config) const {
    return init_ ? init_(config) : nullptr;
  }
};

// ------------------------------------------------------------------------------------------------
// The C boundary.
// ------------------------------------------------------------------------------------------------
namespace detail {

/// One asynchronous call in flight.
struct pending_call {
  std::atomic<bool> cancel{false};
  bool done = false;  // guarded by instance::mutex
  std::thread worker;
};

/// The object behind a troupe_plugin_instance*.
struct instance {
  const definition* def = nullptr;
  json::value config;
  std::shared_ptr<void> state;

  std::mutex mutex;
  std::map<uint64_t, std::shared_ptr<pending_call>> pending;  // guarded by mutex
  bool unloading = false;                                      // guarded by mutex

  /// Joins the workers of finished calls; called with the mutex released.
  void reap() {
    std::vector<std::thread> finished;
    {
      std::lock_guard<std::mutex> guard(mutex);
      for (auto it = pending.begin(); it != pending.end();) {
        if (it->second->done) {
          finished.push_back(std::move(it->second->worker));
          it = pending.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& t : finished)
      if (t.joinable()) t.join();
  }
};

inline void report(troupe_plugin_result_fn fn, void* ud, const std::string& s, bool is_error) {
  fn(ud, s.data(), s.size(), is_error ? 1 : 0);
}

/// Runs one call; never throws.
inline result run_tool(instance& inst, std::string_view tool, std::string_view args_json,
                       const std::atomic<bool>* cancel) noexcept {
  const std::string& plugin_name = inst.def->name();
  try {
    const definition::tool_entry* entry = inst.def->find(tool);
    if (!entry)
      return result::error("plugin '" + plugin_name + "' has no tool named '" + std::string(tool) +
                           "'");
    json::value args;
    try {
      args = json::parse(args_json.empty() ? std::string_view("{}") : args_json);
    } catch (const json::parse_error& e) {
      return result::error("arguments of tool '" + entry->name +
                           "' are not valid JSON: " + e.what());
    }
    if (!args.is_object())
      return result::error("arguments of tool '" + entry->name + "' must be a JSON object, not " +
                           json::describe(args.type()));
    call c(entry->name, std::move(args), inst, cancel);
    return entry->fn(c);
  } catch (const tool_error& e) {
    return result::error(e.what());
  } catch (const std::bad_alloc&) {
    return result::error("tool '" + std::string(tool) + "' of plugin '" + plugin_name +
                         "' ran out of memory: try a smaller request");
  } catch (const std::exception& e) {
    try {
      return result::error("tool '" + std::string(tool) + "' of plugin '" + plugin_name +
                           "' failed: " + e.what());
    } catch (...) {
      return result::error("tool failed");
    }
  } catch (...) {
    try {
      return result::error("tool '" + std::string(tool) + "' of plugin '" + plugin_name +
                           "' failed with an unknown exception");
    } catch (...) {
      return result::error("tool failed");
    }
  }
}

inline void deliver(const result& r, troupe_plugin_result_fn on_result, void* ud) noexcept {
  on_result(ud, r.content.data(), r.content.size(), r.is_error ? 1 : 0);
}

inline void deliver_error(const char* message, troupe_plugin_result_fn on_result,
                          void* ud) noexcept {
  on_result(ud, message, std::strlen(message), 1);
}

/// The plugin module: the definition and the C descriptor that points into it.
struct module {
  definition def;
  std::vector<troupe_plugin_tool> tools;
  troupe_plugin_descriptor desc{};

  module(const char* name, const char* version) : def(name, version) {}
};

inline module*& current_module() noexcept {
  static module* m = nullptr;
  return m;
}

inline troupe_plugin_instance* c_init(const char* config_json, size_t config_size,
                                      troupe_plugin_result_fn on_error, void* ud) noexcept {
  module* m = current_module();
  if (!m) {
    deliver_error("plugin is not initialised: call troupe_plugin_entry first", on_error, ud);
    return nullptr;
  }
  const std::string& name = m->def.name();
  try {
    auto inst = std::make_unique<instance>();
    inst->def = &m->def;
    std::string_view text(config_json ? config_json : "", config_json ? config_size : 0);
    try {
      inst->config = json::parse(text.empty() ? std::string_view("{}") : text);
    } catch (const json::parse_error& e) {
      report(on_error, ud,
             "configuration of plugin '" + name + "' is not valid JSON: " + e.what(), true);
      return nullptr;
    }
    if (!inst->config.is_object()) {
      report(on_error, ud,
             "configuration of plugin '" + name + "' must be a JSON object, not " +
               json::describe(inst->config.type()),
             true);
      return nullptr;
    }
    inst->state = m->def.make_state(inst->config);
    return reinterpret_cast<troupe_plugin_instance*>(inst.release());
  } catch (const std::exception& e) {
    try {
      report(on_error, ud, "plugin '" + name + "' cannot start: " + e.what(), true);
    } catch (...) {
      deliver_error("plugin cannot start", on_error, ud);
    }
  } catch (...) {
    deliver_error("plugin cannot start: unknown exception", on_error, ud);
  }
  return nullptr;
}

inline void c_unload(troupe_plugin_instance* handle) noexcept {
  if (!handle) return;
  auto* inst = reinterpret_cast<instance*>(handle);
  std::vector<std::shared_ptr<pending_call>> calls;
  {
    std::lock_guard<std::mutex> guard(inst->mutex);
    inst->unloading = true;
    for (auto& [h, p] : inst->pending) {
      p->cancel.store(true);
      calls.push_back(p);
    }
    inst->pending.clear();
  }
  for (auto& p : calls)
    if (p->worker.joinable()) p->worker.join();
  delete inst;
}

inline void c_invoke(troupe_plugin_instance* handle, const char* tool, const char* args_json,
                     size_t args_size, troupe_plugin_result_fn on_result, void* ud) noexcept {
  if (!handle || !tool) return deliver_error("invalid call: no instance or tool", on_result, ud);
  auto& inst = *reinterpret_cast<instance*>(handle);
  result r = run_tool(inst, tool, std::string_view(args_json ? args_json : "", args_json ? args_size : 0),
                      nullptr);
  deliver(r, on_result, ud);
}

inline void c_invoke_async(troupe_plugin_instance* handle, uint64_t call_handle, const char* tool,
                           const char* args_json, size_t args_size,
                           troupe_plugin_result_fn on_result, void* ud) noexcept {
  if (!handle || !tool) return deliver_error("invalid call: no instance or tool", on_result, ud);
  auto& inst = *reinterpret_cast<instance*>(handle);
  inst.reap();
  try {
    auto p = std::make_shared<pending_call>();
    std::string tool_copy(tool);
    std::string args_copy(args_json ? args_json : "", args_json ? args_size : 0);
    std::lock_guard<std::mutex> guard(inst.mutex);
    if (inst.unloading) return deliver_error("plugin instance is unloading", on_result, ud);
    if (inst.pending.count(call_handle))
      return deliver_error("call handle is already in flight: use a fresh handle per call",
                           on_result, ud);
    inst.pending.emplace(call_handle, p);
    // The worker needs the mutex to mark itself done, so it cannot finish before we release it.
    p->worker = std::thread([&inst, p, tool_copy = std::move(tool_copy),
                             args_copy = std::move(args_copy), on_result, ud]() noexcept {
      result r;
      if (p->cancel.load()) {
        r = result::error("call of tool '" + tool_copy + "' was cancelled before it started");
      } else {
        r = run_tool(inst, tool_copy, args_copy, &p->cancel);
        if (p->cancel.load() && !r.is_error)
          r = result::error("call of tool '" + tool_copy + "' was cancelled");
      }
      deliver(r, on_result, ud);
      std::lock_guard<std::mutex> guard(inst.mutex);
      p->done = true;
    });
  } catch (const std::system_error&) {
    std::lock_guard<std::mutex> guard(inst.mutex);
    inst.pending.erase(call_handle);
    deliver_error("plugin cannot start a thread for this call: too many calls in flight",
                  on_result, ud);
  } catch (...) {
    deliver_error("plugin cannot start this call: out of memory", on_result, ud);
  }
}

inline void c_cancel(troupe_plugin_instance* handle, uint64_t call_handle) noexcept {
  if (!handle) return;
  auto& inst = *reinterpret_cast<instance*>(handle);
  std::lock_guard<std::mutex> guard(inst.mutex);
  auto it = inst.pending.find(call_handle);
  if (it != inst.pending.end()) it->second->cancel.store(true);
}

inline module* build_module(const char* name, const char* version,
                            void (*define)(definition&)) noexcept {
  try {
    auto m = std::make_unique<module>(name, version);
    define(m->def);
    for (const auto& t : m->def.tools())
      m->tools.push_back({t.name.c_str(), t.description.c_str(), t.parameters.c_str()});
    troupe_plugin_descriptor& d = m->desc;
    d.struct_size = sizeof(troupe_plugin_descriptor);
    d.abi_version = TROUPE_PLUGIN_ABI_VERSION;
    d.name = m->def.name().c_str();
    d.version = m->def.version().c_str();
    d.flags = m->def.thread_safe() ? TROUPE_PLUGIN_THREAD_SAFE : 0u;
    d.tool_desc_size = sizeof(troupe_plugin_tool);
    d.tool_count = m->tools.size();
    d.tools = m->tools.data();
    d.init = &c_init;
    d.unload = &c_unload;
    d.invoke = &c_invoke;
    d.invoke_async = &c_invoke_async;
    d.cancel = &c_cancel;
    return m.release();
  } catch (...) {
    return nullptr;  // a definition that throws (e.g. a duplicate tool) yields no descriptor
  }
}

/// The body of troupe_plugin_entry. The module lives until the library is unloaded.
inline const troupe_plugin_descriptor* entry(uint32_t host_abi_version, const char* name,
                                             const char* version,
                                             void (*define)(definition&)) noexcept {
  if (host_abi_version < 1) return nullptr;  // this plugin speaks ABI 1
  static const std::unique_ptr<module> m(build_module(name, version, define));
  current_module() = m.get();
  return m ? &m->desc : nullptr;
}

}  // namespace detail

inline const json::value& call::config() const noexcept { return inst_.config; }

template <class State>
State& call::state() const {
  if (!inst_.def->state_type() || *inst_.def->state_type() != typeid(State) || !inst_.state)
    throw std::logic_error("plugin state has another type than the one asked for");
  return *static_cast<State*>(inst_.state.get());
}

}  // namespace troupe::plugin

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

/// Defines a plugin named NAME (a string literal) at VERSION; the braces that follow are its
/// definition, with `plugin` (a troupe::plugin::definition&) in scope. Use once per library.
#define TROUPE_PLUGIN(NAME, VERSION)                                                            \
  static void troupe_plugin_define_(::troupe::plugin::definition& plugin);                    \
  extern "C" TROUPE_PLUGIN_EXPORT const troupe_plugin_descriptor* troupe_plugin_entry(        \
    uint32_t host_abi_version) {                                                               \
    return ::troupe::plugin::detail::entry(host_abi_version, NAME, VERSION,                    \
                                           &troupe_plugin_define_);                            \
  }                                                                                            \
  static void troupe_plugin_define_(::troupe::plugin::definition& plugin)
