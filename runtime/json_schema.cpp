/// validate(): the JSON Schema subset that tool parameter schemas use. Keywords apply only to
/// instances of their type (minimum to numbers, required to objects, ...), as the standard says.
/// A keyword whose own value is malformed (e.g. "required": "path") is reported as an invalid
/// schema rather than ignored, so that a broken tool definition is noticed.

#include <cmath>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "troupe/json.hpp"

namespace troupe::json {

namespace {

/// Longest dump of a value quoted in a message; longer ones are cut.
constexpr size_t max_quoted_value = 120;

std::string brief(const value& v) {
  std::string text = dump(v);
  if (text.size() > max_quoted_value) {
    size_t cut = max_quoted_value;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
    text.resize(cut);
    text += "...";
  }
  return text;
}

/// `x` compared with `y`, exactly, also between int64 and double; unordered when one is NaN.
std::partial_ordering compare_mixed(int64_t x, double y) {
  if (std::isnan(y)) return std::partial_ordering::unordered;
  if (y >= 9223372036854775808.0) return std::partial_ordering::less;     // y >= 2^63
  if (y < -9223372036854775808.0) return std::partial_ordering::greater;  // y < -2^63
  double whole = std::trunc(y);
  auto by_whole = x <=> static_cast<int64_t>(whole);
  if (by_whole != 0) return by_whole;
  return 0.0 <=> (y - whole);
}

/// Both must be numbers.
std::partial_ordering compare_numbers(const value& a, const value& b) {
  const auto& ra = a.raw();
  const auto& rb = b.raw();
  if (a.is_int() && b.is_int()) return std::get<int64_t>(ra) <=> std::get<int64_t>(rb);
  if (a.is_int()) return compare_mixed(std::get<int64_t>(ra), std::get<double>(rb));
  if (b.is_int()) {
    auto r = compare_mixed(std::get<int64_t>(rb), std::get<double>(ra));
    return 0 <=> r;  // reverse
  }
  return std::get<double>(ra) <=> std::get<double>(rb);
}

/// JSON equality: 1 equals 1.0, and objects are equal regardless of member order.
bool json_equal(const value& a, const value& b) {
  if (a.is_number() && b.is_number()) return compare_numbers(a, b) == 0;
  if (a.raw().index() != b.raw().index()) return false;
  if (a.is_array()) {
    const array& x = a.as_array();
    const array& y = b.as_array();
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (!json_equal(x[i], y[i])) return false;
    }
    return true;
  }
  if (a.is_object()) {
    const object& x = a.as_object();
    const object& y = b.as_object();
    if (x.size() != y.size()) return false;
    for (const auto& [key, item] : x) {
      const value* other = b.find(key);
      if (other == nullptr || !json_equal(item, *other)) return false;
    }
    return true;
  }
  return a == b;
}

bool is_integral(const value& v) {
  if (v.is_int()) return true;
  if (const double* d = std::get_if<double>(&v.raw()))
    return std::isfinite(*d) && std::trunc(*d) == *d;
  return false;
}

/// Length in Unicode code points, as minLength and maxLength count.
size_t code_points(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

enum class type_match { yes, no, unknown_name };

type_match matches_type(std::string_view name, const value& v) {
  auto result = [](bool ok) { return ok ? type_match::yes : type_match::no; };
  if (name == "null") return result(v.is_null());
  if (name == "boolean") return result(v.is_bool());
  if (name == "integer") return result(is_integral(v));
  if (name == "number") return result(v.is_number());
  if (name == "string") return result(v.is_string());
  if (name == "array") return result(v.is_array());
  if (name == "object") return result(v.is_object());
  return type_match::unknown_name;
}

/// Walks instance and schema together; `pointer_` is the JSON pointer of the current instance.
class validator {
 public:
  std::string check(const value& instance, const value& schema);

 private:
  std::string pointer_;

  std::string where() const { return pointer_.empty() ? std::string{"/"} : pointer_; }

  std::string fail(std::string_view what) const {
    std::string msg = where();
    msg += ": ";
    msg += what;
    return msg;
  }

  std::string bad_schema(std::string_view keyword, std::string_view must) const {
    std::string msg = "invalid schema: '";
    msg += keyword;
    msg += "' must be ";
    msg += must;
    return fail(msg);
  }

  /// Validates `instance` as the child `segment` of the current value.
  std::string check_child(const value& instance, const value& schema, std::string_view segment) {
    size_t old = pointer_.size();
    pointer_ += '/';
    for (char c : segment) {
      if (c == '~')
        pointer_ += "~0";
      else if (c == '/')
        pointer_ += "~1";
      else
        pointer_ += c;
    }
    std::string msg = check(instance, schema);
    pointer_.resize(old);
    return msg;
  }

  std::string check_child(const value& instance, const value& schema, size_t index) {
    return check_child(instance, schema, std::to_string(index));
  }

  std::string check_type(const value& instance, const value& type);
  std::string check_number(const value& instance, const value& schema);
  std::string check_string(const value& instance, const value& schema);
  std::string check_array(const value& instance, const value& schema);
  std::string check_object(const value& instance, const value& schema);
  std::string check_alternatives(const value& instance, const value& schema, bool exactly_one);

  /// Reads a non-negative integer keyword into `out`; returns a message when it is malformed.
  std::string read_count(const value& schema, const char* keyword, const value*& found,
                         uint64_t& out) const {
    found = schema.find(keyword);
    if (found == nullptr) return {};
    if (!is_integral(*found) || found->as_number() < 0) {
      return bad_schema(keyword, "a non-negative integer");
    }
    if (found->is_int())
      out = uint64_t(found->as_int());
    else
      out =
          found->as_number() >= 18446744073709551615.0 ? UINT64_MAX : uint64_t(found->as_number());
    return {};
  }
};

std::string validator::check_type(const value& instance, const value& type) {
  if (type.is_string()) {
    switch (matches_type(type.as_string(), instance)) {
      case type_match::yes:
        return {};
      case type_match::unknown_name:
        return bad_schema("type", "one of null, boolean, integer, number, string, array, object");
      case type_match::no:
        break;
    }
    return fail("expected " + type.as_string() + ", got " + instance.type_name());
  }
  if (!type.is_array() || type.as_array().empty()) {
    return bad_schema("type", "a type name or a non-empty array of type names");
  }
  const array& names = type.as_array();
  bool matched = false;
  for (const value& name : names) {
    if (!name.is_string())
      return bad_schema("type", "a type name or a non-empty array of type names");
    switch (matches_type(name.as_string(), instance)) {
      case type_match::yes:
        matched = true;
        break;
      case type_match::unknown_name:
        return bad_schema("type", "one of null, boolean, integer, number, string, array, object");
      case type_match::no:
        break;
    }
  }
  if (matched) return {};
  std::string expected;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) expected += i + 1 == names.size() ? " or " : ", ";
    expected += names[i].as_string();
  }
  return fail("expected " + expected + ", got " + instance.type_name());
}

std::string validator::check_number(const value& instance, const value& schema) {
  if (const value* min = schema.find("minimum")) {
    if (!min->is_number()) return bad_schema("minimum", "a number");
    if (!(compare_numbers(instance, *min) >= 0)) {
      return fail("value " + brief(instance) + " is less than minimum " + brief(*min));
    }
  }
  if (const value* max = schema.find("maximum")) {
    if (!max->is_number()) return bad_schema("maximum", "a number");
    if (!(compare_numbers(instance, *max) <= 0)) {
      return fail("value " + brief(instance) + " is greater than maximum " + brief(*max));
    }
  }
  return {};
}

std::string validator::check_string(const value& instance, const value& schema) {
  const value* found = nullptr;
  uint64_t min = 0, max = 0;
  if (auto msg = read_count(schema, "minLength", found, min); !msg.empty()) return msg;
  const bool has_min = found != nullptr;
  if (auto msg = read_count(schema, "maxLength", found, max); !msg.empty()) return msg;
  const bool has_max = found != nullptr;
  if (!has_min && !has_max) return {};
  const uint64_t length = code_points(instance.as_string());
  if (has_min && length < min) {
    return fail("string of " + std::to_string(length) + " characters is shorter than minLength " +
                std::to_string(min));
  }
  if (has_max && length > max) {
    return fail("string of " + std::to_string(length) + " characters is longer than maxLength " +
                std::to_string(max));
  }
  return {};
}

std::string validator::check_array(const value& instance, const value& schema) {
  const array& items = instance.as_array();
  const value* found = nullptr;
  uint64_t min = 0, max = 0;
  if (auto msg = read_count(schema, "minItems", found, min); !msg.empty()) return msg;
  if (found != nullptr && items.size() < min) {
    return fail("array of " + std::to_string(items.size()) + " items is shorter than minItems " +
                std::to_string(min));
  }
  if (auto msg = read_count(schema, "maxItems", found, max); !msg.empty()) return msg;
  if (found != nullptr && items.size() > max) {
    return fail("array of " + std::to_string(items.size()) + " items is longer than maxItems " +
                std::to_string(max));
  }
  if (const value* item_schema = schema.find("items")) {
    if (item_schema->is_array()) {  // the positional (tuple) form of older drafts
      const array& positional = item_schema->as_array();
      for (size_t i = 0; i < items.size() && i < positional.size(); ++i) {
        if (auto msg = check_child(items[i], positional[i], i); !msg.empty()) return msg;
      }
    } else {
      for (size_t i = 0; i < items.size(); ++i) {
        if (auto msg = check_child(items[i], *item_schema, i); !msg.empty()) return msg;
      }
    }
  }
  return {};
}

std::string validator::check_object(const value& instance, const value& schema) {
  if (const value* required = schema.find("required")) {
    if (!required->is_array()) return bad_schema("required", "an array of property names");
    for (const value& name : required->as_array()) {
      if (!name.is_string()) return bad_schema("required", "an array of property names");
      if (instance.find(name.as_string()) == nullptr) {
        return fail("missing required property '" + name.as_string() + "'");
      }
    }
  }
  const value* properties = schema.find("properties");
  if (properties != nullptr && !properties->is_object()) {
    return bad_schema("properties", "an object that maps property names to schemas");
  }
  const value* additional = schema.find("additionalProperties");
  if (properties == nullptr && additional == nullptr) return {};
  for (const auto& [key, member] : instance.as_object()) {
    const value* member_schema = properties != nullptr ? properties->find(key) : nullptr;
    if (member_schema == nullptr) {
      if (additional == nullptr) continue;
      if (additional->is_bool() && !additional->as_bool()) {
        return fail("property '" + key + "' is not allowed (additionalProperties is false)");
      }
      member_schema = additional;
    }
    if (auto msg = check_child(member, *member_schema, key); !msg.empty()) return msg;
  }
  return {};
}

std::string validator::check_alternatives(const value& instance, const value& schema,
                                          bool exactly_one) {
  const char* keyword = exactly_one ? "oneOf" : "anyOf";
  const value* alternatives = schema.find(keyword);
  if (alternatives == nullptr) return {};
  if (!alternatives->is_array() || alternatives->as_array().empty()) {
    return bad_schema(keyword, "a non-empty array of schemas");
  }
  const array& list = alternatives->as_array();
  std::string failures;
  size_t first_match = list.size();
  for (size_t i = 0; i < list.size(); ++i) {
    std::string msg = check(instance, list[i]);
    if (msg.empty()) {
      if (!exactly_one) return {};
      if (first_match != list.size()) {
        return fail("value matches schemas " + std::to_string(first_match) + " and " +
                    std::to_string(i) + " of oneOf, but must match exactly one");
      }
      first_match = i;
      continue;
    }
    failures += failures.empty() ? "" : "; ";
    failures += "[" + std::to_string(i) + "] " + msg;
  }
  if (first_match != list.size()) return {};
  return fail(std::string{"value matches no schema in "} + keyword + ": " + failures);
}

std::string validator::check(const value& instance, const value& schema) {
  if (schema.is_bool()) {
    return schema.as_bool() ? std::string{}
                            : fail("no value is allowed here (the schema is false)");
  }
  if (!schema.is_object()) {
    return fail(std::string{"invalid schema: expected an object or a boolean, got "} +
                schema.type_name());
  }
  if (const value* type = schema.find("type")) {
    if (auto msg = check_type(instance, *type); !msg.empty()) return msg;
  }
  if (const value* constant = schema.find("const")) {
    if (!json_equal(instance, *constant)) {
      return fail("value " + brief(instance) + " is not the constant " + brief(*constant));
    }
  }
  if (const value* options = schema.find("enum")) {
    if (!options->is_array()) return bad_schema("enum", "an array of values");
    bool found = false;
    for (const value& option : options->as_array()) {
      if (json_equal(instance, option)) {
        found = true;
        break;
      }
    }
    if (!found) return fail("value " + brief(instance) + " is not one of " + brief(*options));
  }
  std::string msg;
  if (instance.is_number())
    msg = check_number(instance, schema);
  else if (instance.is_string())
    msg = check_string(instance, schema);
  else if (instance.is_array())
    msg = check_array(instance, schema);
  else if (instance.is_object())
    msg = check_object(instance, schema);
  if (!msg.empty()) return msg;
  if (msg = check_alternatives(instance, schema, false); !msg.empty()) return msg;
  return check_alternatives(instance, schema, true);
}

}  // namespace

std::string validate(const value& instance, const value& schema) {
  validator v;
  return v.check(instance, schema);
}

}  // namespace troupe::json
