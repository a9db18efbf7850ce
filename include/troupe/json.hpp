#pragma once
/// JSON values for the few places troupe must look inside JSON (tool arguments of orchestration
/// tools, schemas, configuration). Text that only passes through (tool arguments, results) stays a
/// std::string. Parsing uses simdjson; the header does not include it.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "troupe/error.hpp"

namespace troupe::json {

class value;
using array = std::vector<value>;
/// Object members keep their order of appearance; lookups are linear (objects here are small).
using object = std::vector<std::pair<std::string, value>>;

/// An owned JSON value. Integers that fit int64 stay exact; other numbers are doubles.
class value {
 public:
  using storage = std::variant<std::nullptr_t, bool, int64_t, double, std::string, array, object>;

  value() : v_(nullptr) {}
  value(std::nullptr_t) : v_(nullptr) {}
  value(bool b) : v_(b) {}
  value(int i) : v_(int64_t{i}) {}
  value(int64_t i) : v_(i) {}
  value(uint32_t i) : v_(int64_t{i}) {}
  value(double d) : v_(d) {}
  value(const char* s) : v_(std::string{s}) {}
  value(std::string s) : v_(std::move(s)) {}
  value(std::string_view s) : v_(std::string{s}) {}
  value(array a) : v_(std::move(a)) {}
  value(object o) : v_(std::move(o)) {}

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v_); }
  bool is_bool() const { return std::holds_alternative<bool>(v_); }
  bool is_int() const { return std::holds_alternative<int64_t>(v_); }
  bool is_number() const { return is_int() || std::holds_alternative<double>(v_); }
  bool is_string() const { return std::holds_alternative<std::string>(v_); }
  bool is_array() const { return std::holds_alternative<array>(v_); }
  bool is_object() const { return std::holds_alternative<object>(v_); }

  /// Accessors throw troupe::error (invalid_argument) naming the expected and actual type.
  bool as_bool() const;
  int64_t as_int() const;
  double as_number() const;
  const std::string& as_string() const;
  const array& as_array() const;
  array& as_array();
  const object& as_object() const;
  object& as_object();

  /// Member lookup on an object; nullptr when absent or when this is not an object.
  const value* find(std::string_view key) const;
  /// Sets (or replaces) a member; turns a null value into an object first.
  value& set(std::string key, value v);

  /// "null", "boolean", "integer", "number", "string", "array" or "object".
  const char* type_name() const;

  const storage& raw() const { return v_; }

  friend bool operator==(const value& a, const value& b) { return a.v_ == b.v_; }

 private:
  storage v_;
};

/// Parses one JSON document. Throws troupe::error (parse_error) that names `what` (e.g. "arguments
/// of tool call 'read_file'") and the problem.
value parse(std::string_view text, std::string_view what = "JSON text");

/// Serialises compactly (no spaces), escaping as RFC 8259 requires. Non-finite doubles become null.
std::string dump(const value& v);

/// Appends `s` as a quoted, escaped JSON string to `out`.
void append_quoted(std::string& out, std::string_view s);

/// `s` as a quoted, escaped JSON string.
std::string quote(std::string_view s);

/// Validates `instance` against a JSON Schema subset: type (incl. arrays of types), properties,
/// required, additionalProperties (bool or schema), items, minItems, maxItems, enum, const,
/// minimum, maximum, minLength, maxLength, anyOf, oneOf. Unknown keywords are ignored.
/// Returns an empty string when valid, else a message naming the JSON pointer of the first
/// violation, e.g. "/items/2: expected string, got integer".
std::string validate(const value& instance, const value& schema);

}  // namespace troupe::json
