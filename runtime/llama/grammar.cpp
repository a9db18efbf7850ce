// JSON Schema and tool-call grammars as a byte-level pushdown matcher (see
// troupe/llama/grammar.hpp).

#include "troupe/llama/grammar.hpp"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstring>
#include <limits>

#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe::llama {

namespace {

enum class kind : uint8_t { object, array, string, number, integer, literals, alternatives, hermes };
constexpr uint16_t no_node = 0xFFFF;
constexpr uint32_t unbounded = std::numeric_limits<uint32_t>::max();
constexpr size_t max_properties = 32;
constexpr size_t max_literals = 32;
constexpr uint32_t max_int_digits = 18, max_frac_digits = 18, max_exp_digits = 2;

// Built-in nodes every grammar starts with.
constexpr uint16_t any_node = 0;             // alternatives: any JSON value
constexpr uint16_t string_node = 1;          // any string
constexpr uint16_t number_node = 2;          // any number
constexpr uint16_t keyword_node = 3;         // true | false | null
constexpr uint16_t generic_object_node = 4;  // any object
constexpr uint16_t generic_array_node = 5;   // any array
constexpr uint16_t integer_node = 6;         // any integer

// Object stages.
enum : uint8_t { o_open, o_first, o_key, o_colon, o_space, o_value, o_after, o_next, o_keystart,
                 o_gkey, o_invalue };
// Array stages.
enum : uint8_t { a_open, a_first, a_after, a_next, a_item, a_in };
// String stages (aux: pending UTF-8 continuation bytes, or hex digits left in \u).
enum : uint8_t { s_open, s_body, s_escape, s_hex };
// Number stages: the DFA of RFC 8259 numbers.
enum : uint8_t { n_start, n_minus, n_int, n_zero, n_dot, n_frac, n_e, n_esign, n_exp };
// Tool-call stages (the `hermes` node, either syntax). h_index: Kimi's call index after the name;
// h_closed: Kimi's section closed (nothing but the end may follow).
enum : uint8_t { h_free, h_lit, h_name, h_args, h_after, h_index, h_closed };

/// The fixed text of a tool-call syntax around the names and arguments the tools supply.
struct call_syntax {
  std::string_view trigger;                  ///< opens a call from free text (automatic choice)
  std::array<std::string_view, 4> literals;  ///< 0: a call from the start or after `separator`;
                                             ///< 1: after `trigger`; 2: name to arguments;
                                             ///< 3: after the arguments
  uint8_t separator;                         ///< after a call: another one follows
  uint8_t closing;                           ///< after a call: the calls end (0: no such byte)
  bool index;                                ///< digits follow the name (Kimi's call index)
  bool quoted_names;                         ///< names as JSON strings (Hermes) or bare + ':'
};

constexpr call_syntax hermes_syntax{
  "<tool_call>",
  {"<tool_call>\n{\"name\": ", "\n{\"name\": ", ", \"arguments\": ", "}\n</tool_call>"},
  '\n', 0, false, true};

// Kimi K2's markers are special tokens; here each is one byte that valid UTF-8 never holds
// (grammar.hpp: kimi_marker), as the Kimi engine's mask vocabulary spells those tokens.
constexpr char k_section_begin = static_cast<char>(kimi_marker::section_begin),
               k_call_begin = static_cast<char>(kimi_marker::call_begin),
               k_argument_begin = static_cast<char>(kimi_marker::argument_begin),
               k_call_end = static_cast<char>(kimi_marker::call_end);
// Section begin, call begin, "functions." (a call from the start; literal 1 is its tail).
constexpr char kimi_open[] = {k_section_begin, k_call_begin, 'f', 'u', 'n', 'c',
                              't',             'i',          'o', 'n', 's', '.'};
constexpr call_syntax kimi_syntax{
  std::string_view(kimi_open, 1),
  {std::string_view(kimi_open, sizeof kimi_open),
   std::string_view(kimi_open + 1, sizeof kimi_open - 1), std::string_view(&k_argument_begin, 1),
   std::string_view(&k_call_end, 1)},
  kimi_marker::call_begin, kimi_marker::section_end, true, false};

/// Whether some value of this sign with a magnitude in [mlo, mhi] lies in [lo, hi].
bool meets(bool neg, unsigned __int128 mlo, unsigned __int128 mhi, int64_t lo, int64_t hi) {
  const __int128 vlo = neg ? -static_cast<__int128>(mhi) : static_cast<__int128>(mlo);
  const __int128 vhi = neg ? -static_cast<__int128>(mlo) : static_cast<__int128>(mhi);
  return vlo <= hi && vhi >= lo;
}

/// The fewest more digits (0: none) after which an integer typed so far (sign, magnitude `m`,
/// `digits` digits) lies in [lo, hi]; -1 when no completion can.
int more_digits(bool neg, uint64_t m, uint32_t digits, int64_t lo, int64_t hi) {
  if (digits > 0 && meets(neg, m, m, lo, hi)) return 0;
  if (digits > 0 && m == 0) return -1;  // a leading zero ends the number
  unsigned __int128 p = 1;
  for (uint32_t k = 1; digits + k <= max_int_digits; ++k) {
    p *= 10;
    const unsigned __int128 mlo = digits == 0 ? (k == 1 ? 0 : p / 10) : m * p;
    const unsigned __int128 mhi = digits == 0 ? p - 1 : m * p + p - 1;
    if (meets(neg, mlo, mhi, lo, hi)) return static_cast<int>(k);
  }
  return -1;
}

}  // namespace

namespace {
/// The properties that may come next in a declared object after `from` were passed: each one up to
/// and including the first required one (declared order; optional ones may be skipped).
uint32_t next_keys(const grammar::node& n, uint32_t from);
}  // namespace

struct grammar::node {
  kind k = kind::alternatives;
  // object: declared properties as quoted keys, in order; `open`: any keys (generic object).
  std::vector<std::string> keys;
  std::vector<uint16_t> values;
  std::vector<bool> required;
  bool open = false;
  // array
  uint16_t item = any_node;
  uint32_t min_items = 0, max_items = unbounded;
  // string (code points)
  uint32_t min_len = 0, max_len = unbounded;
  // integer with minimum / maximum
  bool bounded = false;
  int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  // literals: JSON texts (or exact bytes for tool names)
  std::vector<std::string> texts;
  // alternatives: the node to use for each first byte
  std::array<uint16_t, 256> dispatch{};
  // hermes (tool calls, in `syntax`): the tool-name literals node and each tool's argument node
  const call_syntax* syntax = &hermes_syntax;
  uint16_t names = no_node;
  std::vector<uint16_t> tool_args;
  bool automatic = false;
  uint32_t max_calls = 1;
};

namespace {
uint32_t next_keys(const grammar::node& n, uint32_t from) {
  uint32_t mask = 0;
  for (uint32_t j = from; j < n.keys.size(); ++j) {
    mask |= 1u << j;
    if (n.required[j]) break;
  }
  return mask;
}
}  // namespace

struct grammar::impl {
  std::vector<grammar::node> nodes;
  uint16_t root = any_node;
  std::vector<uint32_t> shortest;  ///< per node: bytes of its shortest value

  static uint32_t add_sat(uint64_t a, uint64_t b) {
    return static_cast<uint32_t>(std::min<uint64_t>(a + b, uint32_t{1} << 30));
  }

  /// Bytes from property `from` on to the end of a declared object, after at least one member:
  /// each remaining required member with its comma, then '}'.
  uint32_t object_tail(const node& n, uint32_t from) const {
    uint64_t cost = 1;
    for (size_t j = from; j < n.keys.size(); ++j)
      if (n.required[j]) cost += 1 + n.keys[j].size() + 1 + shortest[n.values[j]];
    return add_sat(cost, 0);
  }

  /// Fills `shortest` (a fixed point: the built-in any/object/array nodes refer to each other).
  void compute_shortest() {
    shortest.assign(nodes.size(), uint32_t{1} << 30);
    for (bool changed = true; changed;) {
      changed = false;
      for (size_t i = 0; i < nodes.size(); ++i) {
        const node& n = nodes[i];
        uint64_t m = uint32_t{1} << 30;
        switch (n.k) {
          case kind::string: m = 2 + uint64_t{n.min_len}; break;
          case kind::number: m = 1; break;
          case kind::integer:
            m = 1;
            if (n.bounded) {
              const int pos = more_digits(false, 0, 0, n.lo, n.hi);
              const int neg = more_digits(true, 0, 0, n.lo, n.hi);
              m = uint32_t{1} << 30;
              if (pos > 0) m = static_cast<uint64_t>(pos);
              if (neg > 0) m = std::min<uint64_t>(m, static_cast<uint64_t>(neg) + 1);
            }
            break;
          case kind::literals:
            for (const auto& t : n.texts) m = std::min<uint64_t>(m, t.size());
            break;
          case kind::object:
            if (n.open) {
              m = 2;
            } else {
              uint64_t c = 2, members = 0;
              for (size_t j = 0; j < n.keys.size(); ++j)
                if (n.required[j]) {
                  c += n.keys[j].size() + 1 + shortest[n.values[j]];
                  ++members;
                }
              m = c + (members > 0 ? members - 1 : 0);
            }
            break;
          case kind::array:
            m = 2 + uint64_t{n.min_items} * shortest[n.item] + (n.min_items > 0 ? n.min_items - 1 : 0);
            break;
          case kind::alternatives:
            for (size_t b = 0; b < 256; ++b)
              if (n.dispatch[b] != no_node) m = std::min<uint64_t>(m, shortest[n.dispatch[b]]);
            break;
          case kind::hermes: m = 0; break;
        }
        const uint32_t v = add_sat(m, 0);
        if (v < shortest[i]) {
          shortest[i] = v;
          changed = true;
        }
      }
    }
  }

  uint16_t add(grammar::node n) {
    if (nodes.size() >= no_node) {
      throw error(errc::invalid_argument, "grammar: the schema is too large (over 65,534 nodes)");
    }
    nodes.push_back(std::move(n));
    return static_cast<uint16_t>(nodes.size() - 1);
  }

  std::bitset<256> first_bytes(uint16_t id) const {
    const auto& n = nodes[id];
    std::bitset<256> out;
    switch (n.k) {
      case kind::object: out.set('{'); break;
      case kind::array: out.set('['); break;
      case kind::string: out.set('"'); break;
      case kind::number:
      case kind::integer:
        out.set('-');
        for (char c = '0'; c <= '9'; ++c) out.set(static_cast<uint8_t>(c));
        break;
      case kind::literals:
        for (const auto& t : n.texts)
          if (!t.empty()) out.set(static_cast<uint8_t>(t[0]));
        break;
      case kind::alternatives:
        for (int b = 0; b < 256; ++b)
          if (n.dispatch[static_cast<size_t>(b)] != no_node) out.set(static_cast<size_t>(b));
        break;
      case kind::hermes: break;
    }
    return out;
  }

  /// An alternatives node over `options`, or any_node when two options can start alike.
  uint16_t alternatives(const std::vector<uint16_t>& options) {
    node n;
    n.k = kind::alternatives;
    n.dispatch.fill(no_node);
    for (uint16_t o : options) {
      const auto first = first_bytes(o);
      for (size_t b = 0; b < 256; ++b) {
        if (!first.test(b)) continue;
        if (n.dispatch[b] != no_node && n.dispatch[b] != o) return any_node;
        n.dispatch[b] = o;
      }
    }
    return add(std::move(n));
  }

  uint16_t literals(std::vector<std::string> texts) {
    node n;
    n.k = kind::literals;
    n.texts = std::move(texts);
    return add(std::move(n));
  }

  void builtins() {
    node any;  // filled below, once the others exist
    add(any);
    node s;
    s.k = kind::string;
    add(s);
    node num;
    num.k = kind::number;
    add(num);
    literals({"true", "false", "null"});
    node obj;
    obj.k = kind::object;
    obj.open = true;
    add(obj);
    node arr;
    arr.k = kind::array;
    add(arr);
    node integer;
    integer.k = kind::integer;
    add(integer);
    node& a = nodes[any_node];
    a.k = kind::alternatives;
    a.dispatch.fill(no_node);
    for (uint16_t o : {string_node, number_node, keyword_node, generic_object_node,
                       generic_array_node}) {
      const auto first = first_bytes(o);
      for (size_t b = 0; b < 256; ++b)
        if (first.test(b)) a.dispatch[b] = o;
    }
  }

  [[noreturn]] static void bad(const std::string& path, const std::string& what) {
    throw error(errc::invalid_argument,
                "JSON Schema at " + (path.empty() ? std::string{"/"} : path) + ": " + what);
  }

  static uint32_t count(const json::value& s, std::string_view key, const std::string& path,
                        uint32_t fallback) {
    const json::value* v = s.find(key);
    if (v == nullptr) return fallback;
    if (!v->is_int() || v->as_int() < 0)
      bad(path, std::string(key) + " must be a non-negative integer");
    return static_cast<uint32_t>(std::min<int64_t>(v->as_int(), unbounded - 1));
  }

  uint16_t compile_type(const std::string& type, const json::value& s, const std::string& path) {
    if (type == "string") {
      const uint32_t lo = count(s, "minLength", path, 0), hi = count(s, "maxLength", path, unbounded);
      if (lo > hi) bad(path, "minLength is larger than maxLength");
      if (lo == 0 && hi == unbounded) return string_node;
      node n;
      n.k = kind::string;
      n.min_len = lo;
      n.max_len = hi;
      return add(std::move(n));
    }
    if (type == "number") return number_node;
    if (type == "integer") {
      node n;
      n.k = kind::integer;
      auto bound = [&](const char* key, bool upper, bool exclusive) {
        const json::value* v = s.find(key);
        if (v == nullptr || v->is_bool()) return;  // draft-4 boolean exclusive* are not bounds
        if (!v->is_number()) bad(path, std::string(key) + " must be a number");
        const double d = v->as_number();
        if (d > 9.2e18 || d < -9.2e18) return;  // beyond what 18 digits can reach anyway
        int64_t b = static_cast<int64_t>(upper ? std::floor(d) : std::ceil(d));
        if (exclusive && static_cast<double>(b) == d) b += upper ? -1 : 1;
        n.bounded = true;
        if (upper) n.hi = std::min(n.hi, b);
        else n.lo = std::max(n.lo, b);
      };
      bound("minimum", false, false);
      bound("exclusiveMinimum", false, true);
      bound("maximum", true, false);
      bound("exclusiveMaximum", true, true);
      if (!n.bounded) return integer_node;
      if (n.lo > n.hi ||
          (more_digits(false, 0, 0, n.lo, n.hi) < 0 && more_digits(true, 0, 0, n.lo, n.hi) < 0))
        bad(path, "no integer satisfies its minimum and maximum");
      return add(std::move(n));
    }
    if (type == "boolean") return literals({"true", "false"});
    if (type == "null") return literals({"null"});
    if (type == "array") {
      node n;
      n.k = kind::array;
      n.min_items = count(s, "minItems", path, 0);
      n.max_items = count(s, "maxItems", path, unbounded);
      if (n.min_items > n.max_items) bad(path, "minItems is larger than maxItems");
      if (const json::value* items = s.find("items")) n.item = compile(*items, path + "/items");
      if (n.item == any_node && n.min_items == 0 && n.max_items == unbounded)
        return generic_array_node;
      return add(std::move(n));
    }
    if (type == "object") {
      const json::value* props = s.find("properties");
      const json::value* extra = s.find("additionalProperties");
      const bool closed = extra != nullptr && extra->is_bool() && !extra->as_bool();
      if (props == nullptr || !props->is_object() || props->as_object().empty()) {
        if (!closed) return generic_object_node;
        node n;  // additionalProperties false and nothing declared: only {}
        n.k = kind::object;
        return add(std::move(n));
      }
      if (props->as_object().size() > max_properties) return generic_object_node;
      std::vector<std::string> req;
      if (const json::value* r = s.find("required")) {
        if (!r->is_array()) bad(path, "required must be an array of property names");
        for (const auto& x : r->as_array()) {
          if (!x.is_string()) bad(path, "required must be an array of property names");
          req.push_back(x.as_string());
        }
      }
      node n;
      n.k = kind::object;
      for (const auto& [name, sub] : props->as_object()) {
        n.keys.push_back(json::quote(name));
        n.required.push_back(std::find(req.begin(), req.end(), name) != req.end());
        n.values.push_back(compile(sub, path + "/properties/" + name));
      }
      for (const auto& r : req) {
        if (std::find(n.keys.begin(), n.keys.end(), json::quote(r)) == n.keys.end())
          bad(path, "required property '" + r + "' is not among the properties");
      }
      return add(std::move(n));
    }
    bad(path, "unknown type '" + type + "'");
  }

  uint16_t compile(const json::value& s, const std::string& path) {
    if (s.is_bool()) {
      if (s.as_bool()) return any_node;
      bad(path, "the schema false admits no value");
    }
    if (!s.is_object()) bad(path, "a schema must be an object or a boolean");
    if (const json::value* c = s.find("const")) return literals({json::dump(*c)});
    if (const json::value* e = s.find("enum")) {
      if (!e->is_array() || e->as_array().empty()) bad(path, "enum must be a non-empty array");
      if (e->as_array().size() > max_literals) return any_node;
      std::vector<std::string> texts;
      for (const auto& v : e->as_array()) texts.push_back(json::dump(v));
      return literals(std::move(texts));
    }
    for (const char* key : {"anyOf", "oneOf"}) {
      if (const json::value* alts = s.find(key)) {
        if (!alts->is_array() || alts->as_array().empty())
          bad(path, std::string(key) + " must be a non-empty array");
        std::vector<uint16_t> options;
        for (size_t i = 0; i < alts->as_array().size(); ++i)
          options.push_back(compile(alts->as_array()[i], path + "/" + key + "/" + std::to_string(i)));
        return alternatives(options);
      }
    }
    const json::value* type = s.find("type");
    if (type == nullptr) {
      if (s.find("properties")) return compile_type("object", s, path);
      if (s.find("items")) return compile_type("array", s, path);
      return any_node;
    }
    if (type->is_string()) return compile_type(type->as_string(), s, path);
    if (type->is_array()) {
      std::vector<uint16_t> options;
      for (const auto& t : type->as_array()) {
        if (!t.is_string()) bad(path, "type must be a string or an array of strings");
        options.push_back(compile_type(t.as_string(), s, path));
      }
      if (options.empty()) bad(path, "type must not be an empty array");
      return options.size() == 1 ? options[0] : alternatives(options);
    }
    bad(path, "type must be a string or an array of strings");
  }
};

grammar::grammar() : impl_(std::make_unique<impl>()) {}
grammar::~grammar() = default;

std::shared_ptr<const grammar> grammar::from_schema(std::string_view schema) {
  std::shared_ptr<grammar> g(new grammar());
  g->impl_->builtins();
  const json::value s = json::parse(schema, "response schema");
  g->impl_->root = g->impl_->compile(s, "");
  g->impl_->compute_shortest();
  return g;
}

std::shared_ptr<const grammar> grammar::for_tool_calls(std::span<const tool_spec> tools,
                                                      const tool_choice& choice,
                                                      uint32_t max_calls, tool_call_syntax syntax) {
  if (tools.empty()) {
    throw error(errc::invalid_argument, "tool-call grammar: the request declares no tools");
  }
  if (choice.mode == tool_choice_mode::none) {
    throw error(errc::invalid_argument, "tool-call grammar: tool_choice is none");
  }
  std::shared_ptr<grammar> g(new grammar());
  impl& im = *g->impl_;
  im.builtins();
  node h;
  h.k = kind::hermes;
  h.syntax = syntax == tool_call_syntax::kimi_k2 ? &kimi_syntax : &hermes_syntax;
  h.automatic = choice.mode == tool_choice_mode::automatic;
  // A named tool_choice asks for that one call (OpenAI's meaning); the others allow several.
  h.max_calls = choice.mode == tool_choice_mode::named ? 1 : std::max<uint32_t>(max_calls, 1);
  std::vector<std::string> names;
  for (const auto& t : tools) {
    if (choice.mode == tool_choice_mode::named && t.name != choice.name) continue;
    if (names.size() >= max_literals) break;
    names.push_back(h.syntax->quoted_names ? json::quote(t.name) : t.name + ":");
    json::value params;
    try {
      params = json::parse(t.parameters, "parameters of tool '" + t.name + "'");
    } catch (const error& e) {
      throw error(errc::invalid_argument, e.message());
    }
    try {
      h.tool_args.push_back(im.compile(params, ""));
    } catch (const error& e) {
      throw error(errc::invalid_argument, "tool '" + t.name + "': " + e.message());
    }
  }
  if (names.empty()) {
    throw error(errc::invalid_argument,
                "tool_choice names the tool '" + choice.name + "', which the request does not "
                                                               "declare");
  }
  h.names = im.literals(std::move(names));
  im.root = im.add(std::move(h));
  im.compute_shortest();
  return g;
}

// ---------------------------------------------------------------------------------------------

grammar_matcher::grammar_matcher(std::shared_ptr<const grammar> g)
    : grammar_(std::move(g)), g_(grammar_->impl_.get()) {
  push(g_->root);
}

bool grammar_matcher::push(uint16_t id) noexcept {
  if (depth_ >= max_depth) return false;
  frame f;
  f.node = id;
  const auto& n = g_->nodes[id];
  if (n.k == kind::literals) f.a = n.texts.size() >= 32 ? 0xFFFFFFFFu : (1u << n.texts.size()) - 1;
  if (n.k == kind::hermes) f.stage = n.automatic ? h_free : h_lit;
  stack_[static_cast<size_t>(depth_++)] = f;
  return true;
}

bool grammar_matcher::child_done(uint32_t value) noexcept {
  if (depth_ == 0) return true;  // The root value is complete.
  frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const auto& n = g_->nodes[f.node];
  switch (n.k) {
    case kind::object:
      f.stage = f.stage == o_gkey ? o_colon : o_after;
      return true;
    case kind::array:
      f.stage = a_after;
      return true;
    case kind::hermes:
      if (f.stage == h_name) {
        f.aux = static_cast<uint8_t>(value);
        f.stage = n.syntax->index ? h_index : h_lit;
        f.a = 2;
        f.b = 0;
      } else {
        f.stage = h_lit;
        f.a = 3;
        f.b = 0;
      }
      return true;
    default: return false;
  }
}

namespace {
bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }
bool is_hex(uint8_t c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
}  // namespace

bool grammar_matcher::step(uint8_t c) noexcept {
  if (depth_ == 0) return false;  // Complete: nothing may follow.
  frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const grammar::node& n = g_->nodes[f.node];
  auto pop_and_restep = [&](uint32_t value) {
    --depth_;
    return child_done(value) && step(c);
  };
  auto pop_done = [&](uint32_t value) {
    --depth_;
    return child_done(value);
  };
  switch (n.k) {
    case kind::alternatives: {
      const uint16_t target = n.dispatch[c];
      if (target == no_node) return false;
      --depth_;
      return push(target) && step(c);
    }
    case kind::string:
      switch (f.stage) {
        case s_open:
          if (c != '"') return false;
          f.stage = s_body;
          return true;
        case s_body:
          if (f.aux > 0) {  // UTF-8 continuation byte
            if ((c & 0xC0) != 0x80) return false;
            if (f.b != 0) {  // The second byte of a sequence whose lead restricts it.
              const uint8_t lo = static_cast<uint8_t>(f.b >> 8), hi = static_cast<uint8_t>(f.b);
              if (c < lo || c > hi) return false;
              f.b = 0;
            }
            --f.aux;
            return true;
          }
          if (c == '"') {
            if (f.a < n.min_len) return false;
            return pop_done(0);
          }
          if (c < 0x20) return false;
          // Count code points only while a limit needs them, so that the states of a long
          // unbounded string stay equal (one cached mask serves the whole string).
          if (n.max_len != unbounded) {
            if (++f.a > n.max_len) return false;
          } else if (f.a < n.min_len) {
            ++f.a;
          }
          if (c == '\\') {
            f.stage = s_escape;
            return true;
          }
          if (c < 0x80) return true;
          if (c >= 0xC2 && c <= 0xDF) {
            f.aux = 1;
          } else if (c >= 0xE0 && c <= 0xEF) {
            f.aux = 2;
            f.b = c == 0xE0 ? 0xA0BF : c == 0xED ? 0x809F : 0;
          } else if (c >= 0xF0 && c <= 0xF4) {
            f.aux = 3;
            f.b = c == 0xF0 ? 0x90BF : c == 0xF4 ? 0x808F : 0;
          } else {
            return false;
          }
          return true;
        case s_escape:
          if (c == 'u') {
            f.stage = s_hex;
            f.aux = 4;
            return true;
          }
          if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
              c == 'r' || c == 't') {
            f.stage = s_body;
            return true;
          }
          return false;
        case s_hex:
          if (!is_hex(c)) return false;
          if (--f.aux == 0) f.stage = s_body;
          return true;
      }
      return false;
    case kind::number:
    case kind::integer: {
      const bool integer = n.k == kind::integer;
      if (integer && n.bounded) {
        // aux: 1 when negative; a: digits; magnitude in b (low) and c (high 32 bits). A byte is
        // taken only if some completion still lands in [lo, hi].
        const bool neg = f.aux == 1;
        const uint64_t m = (uint64_t{f.c} << 32) | f.b;
        const bool started = f.stage == n_int || f.stage == n_zero;
        if (f.stage == n_start && c == '-') {
          if (more_digits(true, 0, 0, n.lo, n.hi) < 0) return false;
          f.aux = 1;
          f.stage = n_minus;
          return true;
        }
        if (is_digit(c) && f.stage != n_zero) {
          const uint64_t next = m * 10 + (c - '0');
          if (more_digits(neg, next, f.a + 1, n.lo, n.hi) < 0) return false;
          ++f.a;
          f.b = static_cast<uint32_t>(next);
          f.c = static_cast<uint32_t>(next >> 32);
          f.stage = next == 0 ? n_zero : n_int;
          return true;
        }
        if (started && meets(neg, m, m, n.lo, n.hi)) return pop_and_restep(0);
        return false;
      }
      auto digit = [&](uint8_t next, uint32_t limit) {
        if (f.stage != next) f.a = 0;
        if (++f.a > limit) return false;
        f.stage = next;
        return true;
      };
      switch (f.stage) {
        case n_start:
          if (c == '-') { f.stage = n_minus; return true; }
          [[fallthrough]];
        case n_minus:
          if (c == '0') { f.stage = n_zero; return true; }
          if (c >= '1' && c <= '9') return digit(n_int, max_int_digits);
          return false;
        case n_int:
          if (is_digit(c)) return digit(n_int, max_int_digits);
          [[fallthrough]];
        case n_zero:
          if (!integer && c == '.') { f.stage = n_dot; return true; }
          if (!integer && (c == 'e' || c == 'E')) { f.stage = n_e; return true; }
          return pop_and_restep(0);
        case n_dot:
          return is_digit(c) && digit(n_frac, max_frac_digits);
        case n_frac:
          if (is_digit(c)) return digit(n_frac, max_frac_digits);
          if (c == 'e' || c == 'E') { f.stage = n_e; return true; }
          return pop_and_restep(0);
        case n_e:
          if (c == '+' || c == '-') { f.stage = n_esign; return true; }
          [[fallthrough]];
        case n_esign:
          return is_digit(c) && digit(n_exp, max_exp_digits);
        case n_exp:
          if (is_digit(c)) return digit(n_exp, max_exp_digits);
          return pop_and_restep(0);
      }
      return false;
    }
    case kind::literals: {
      uint32_t next = 0;
      int complete = -1;
      for (size_t i = 0; i < n.texts.size() && i < 32; ++i) {
        if (!(f.a & (1u << i))) continue;
        const auto& t = n.texts[i];
        if (t.size() > f.b && static_cast<uint8_t>(t[f.b]) == c) next |= 1u << i;
        else if (t.size() == f.b) complete = static_cast<int>(i);
      }
      if (next == 0) return complete >= 0 && pop_and_restep(static_cast<uint32_t>(complete));
      f.a = next;
      ++f.b;
      // Finished and nothing longer shares the prefix: complete now.
      int only = -1, alive = 0;
      for (size_t i = 0; i < n.texts.size() && i < 32; ++i) {
        if (!(f.a & (1u << i))) continue;
        ++alive;
        if (n.texts[i].size() == f.b) only = static_cast<int>(i);
      }
      if (alive == 1 && only >= 0) return pop_done(static_cast<uint32_t>(only));
      return true;
    }
    case kind::object: {
      const auto props = static_cast<uint32_t>(n.keys.size());
      auto required_left = [&] {
        for (uint32_t j = f.c; j < props; ++j)
          if (n.required[j]) return true;
        return false;
      };
      auto start_key = [&]() -> bool {
        if (n.open) {
          f.stage = o_gkey;
          return push(string_node) && step(c);
        }
        const uint32_t mask = next_keys(n, f.c);
        if (mask == 0) return false;
        f.a = mask;
        f.b = 1;  // the opening quote
        f.stage = o_key;
        return true;
      };
      auto start_value = [&]() -> bool {
        const uint16_t v = n.open ? any_node : n.values[f.aux];
        f.stage = o_invalue;
        return push(v) && step(c);
      };
      switch (f.stage) {
        case o_open:
          if (c != '{') return false;
          f.stage = o_first;
          return true;
        case o_first:
          if (c == '}') return (n.open || !required_left()) && pop_done(0);
          return c == '"' && start_key();
        case o_key: {
          uint32_t next = 0;
          int done_at = -1;
          for (uint32_t j = 0; j < props; ++j) {
            if (!(f.a & (1u << j))) continue;
            const auto& k = n.keys[j];
            if (k.size() > f.b && static_cast<uint8_t>(k[f.b]) == c) {
              next |= 1u << j;
              if (k.size() == f.b + 1) done_at = static_cast<int>(j);
            }
          }
          if (next == 0) return false;
          f.a = next;
          ++f.b;
          if (done_at >= 0) {
            f.aux = static_cast<uint8_t>(done_at);
            f.c = static_cast<uint32_t>(done_at) + 1;
            f.a = 0;
            f.b = 0;
            f.stage = o_colon;
          }
          return true;
        }
        case o_colon:
          if (c != ':') return false;
          f.stage = o_space;
          return true;
        case o_space:
          if (c == ' ') {
            f.stage = o_value;
            return true;
          }
          return start_value();
        case o_value:
          return start_value();
        case o_after:
          if (c == '}') return (n.open || !required_left()) && pop_done(0);
          if (c == ',' && (n.open || f.c < props)) {
            f.stage = o_next;
            return true;
          }
          return false;
        case o_next:
          if (c == ' ') {
            f.stage = o_keystart;
            return true;
          }
          [[fallthrough]];
        case o_keystart:
          return c == '"' && start_key();
        default: return false;  // o_gkey / o_invalue: a child frame is on top
      }
    }
    case kind::array: {
      auto start_item = [&]() -> bool {
        if (f.a >= n.max_items) return false;
        ++f.a;
        f.stage = a_in;
        return push(n.item) && step(c);
      };
      switch (f.stage) {
        case a_open:
          if (c != '[') return false;
          f.stage = a_first;
          return true;
        case a_first:
          if (c == ']') return n.min_items == 0 && pop_done(0);
          return start_item();
        case a_after:
          if (c == ']') return f.a >= n.min_items && pop_done(0);
          if (c == ',' && f.a < n.max_items) {
            f.stage = a_next;
            return true;
          }
          return false;
        case a_next:
          if (c == ' ') {
            f.stage = a_item;
            return true;
          }
          [[fallthrough]];
        case a_item:
          return start_item();
        default: return false;
      }
    }
    case kind::hermes:
      switch (f.stage) {
        case h_free: {
          const std::string_view trigger = n.syntax->trigger;
          if (c == static_cast<uint8_t>(trigger[f.aux])) {
            if (++f.aux == trigger.size()) {
              f.aux = 0;
              f.stage = h_lit;
              f.a = 1;
              f.b = 0;
            }
          } else {
            f.aux = c == static_cast<uint8_t>(trigger[0]) ? 1 : 0;
          }
          return true;
        }
        case h_lit: {
          const std::string_view lit = n.syntax->literals[f.a];
          if (c != static_cast<uint8_t>(lit[f.b])) return false;
          if (++f.b < lit.size()) return true;
          f.b = 0;
          if (f.a == 0 || f.a == 1) {
            f.stage = h_name;
            return push(n.names);
          }
          if (f.a == 2) {
            f.stage = h_args;
            return push(n.tool_args[f.aux]);
          }
          ++f.c;  // a call is complete
          f.a = 0;
          f.aux = 0;
          f.stage = h_after;
          return true;
        }
        case h_after:
          if (n.syntax->closing != 0 && c == n.syntax->closing) {
            f.stage = h_closed;
            return true;
          }
          if (c != n.syntax->separator || f.c >= n.max_calls) return false;
          f.stage = h_lit;
          f.b = 0;
          f.a = 0;
          // Hermes: the separator is this "\n" and the whole call literal follows. Kimi: the
          // separator is the next call's first marker, the rest of literal 1 follows.
          if (n.syntax->index) {
            f.a = 1;
            f.b = 1;
          }
          return true;
        case h_index:
          if (is_digit(c) && f.b < 9) {
            ++f.b;
            return true;
          }
          if (f.b == 0) return false;
          f.stage = h_lit;
          f.a = 2;
          f.b = 0;
          return step(c);
        default: return false;
      }
  }
  return false;
}

bool grammar_matcher::feed(uint8_t byte) noexcept { return step(byte); }

bool grammar_matcher::feed(std::string_view bytes) noexcept {
  for (char ch : bytes)
    if (!step(static_cast<uint8_t>(ch))) return false;
  return true;
}

bool grammar_matcher::can_end() const noexcept {
  if (depth_ == 0) return true;
  // Frames that complete only when the next byte shows they are over (numbers, literal
  // prefixes), all the way down to the root.
  for (int d = depth_ - 1; d >= 0; --d) {
    const frame& f = stack_[static_cast<size_t>(d)];
    const auto& n = g_->nodes[f.node];
    if (n.k == kind::hermes)
      return f.stage == h_free || f.stage == h_closed ||
             (f.stage == h_after && n.syntax->closing == 0);
    if (d != depth_ - 1) return false;  // A container below a finished number is not done.
    if (n.k == kind::number || n.k == kind::integer) {
      if (f.stage != n_int && f.stage != n_zero && f.stage != n_frac && f.stage != n_exp)
        return false;
      if (n.bounded) {
        const uint64_t m = (uint64_t{f.c} << 32) | f.b;
        if (!meets(f.aux == 1, m, m, n.lo, n.hi)) return false;
      }
    } else if (n.k == kind::literals) {
      bool complete = false;
      for (size_t i = 0; i < n.texts.size() && i < 32; ++i)
        if ((f.a & (1u << i)) && n.texts[i].size() == f.b) complete = true;
      if (!complete) return false;
    } else {
      return false;
    }
    if (d == 0) return true;
  }
  return false;
}

bool grammar_matcher::done() const noexcept {
  if (depth_ == 0) return true;
  const frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const auto& n = g_->nodes[f.node];
  if (n.k != kind::hermes) return false;
  if (n.syntax->closing != 0) return f.stage == h_closed;
  return f.stage == h_after && f.c >= n.max_calls;
}

uint32_t grammar_matcher::min_completion() const noexcept {
  uint64_t total = 0;
  const auto& sh = g_->shortest;
  for (int d = 0; d < depth_; ++d) {
    const frame& f = stack_[static_cast<size_t>(d)];
    const grammar::node& n = g_->nodes[f.node];
    uint64_t r = 0;
    switch (n.k) {
      case kind::alternatives: r = sh[f.node]; break;
      case kind::string: {
        const uint64_t missing = f.a < n.min_len ? n.min_len - f.a : 0;
        if (f.stage == s_open) r = sh[f.node];
        else if (f.stage == s_body) r = f.aux + missing + 1;
        else if (f.stage == s_escape) r = 1 + missing + 1;
        else r = f.aux + missing + 1;
        break;
      }
      case kind::number:
      case kind::integer:
        if (n.bounded) {
          const uint64_t m = (uint64_t{f.c} << 32) | f.b;
          if (f.stage == n_start) r = sh[f.node];
          else r = static_cast<uint64_t>(std::max(0, more_digits(f.aux == 1, m, f.a, n.lo, n.hi)));
          break;
        }
        r = (f.stage == n_int || f.stage == n_zero || f.stage == n_frac || f.stage == n_exp) ? 0 : 1;
        break;
      case kind::literals: {
        // A tool name also decides which arguments follow: count them with the name.
        const grammar::node* h = nullptr;
        if (d > 0) {
          const frame& parent = stack_[static_cast<size_t>(d - 1)];
          if (g_->nodes[parent.node].k == kind::hermes && parent.stage == h_name)
            h = &g_->nodes[parent.node];
        }
        uint64_t best = uint32_t{1} << 30;
        for (size_t i = 0; i < n.texts.size() && i < 32; ++i)
          if (f.a & (1u << i))
            best = std::min<uint64_t>(best, n.texts[i].size() - f.b + (h ? sh[h->tool_args[i]] : 0));
        r = best;
        break;
      }
      case kind::object: {
        if (n.open) {
          static constexpr uint8_t open_cost[] = {2, 1, 0, 3, 2, 2, 1, 5, 5, 3, 1};
          r = open_cost[f.stage];
          break;
        }
        // A member that starts here: its key from `b` chars in, colon, value, the rest.
        auto member = [&](uint32_t j, uint32_t typed) {
          return uint64_t{n.keys[j].size() - typed} + 1 + sh[n.values[j]] + g_->object_tail(n, j + 1);
        };
        auto best_member = [&](uint32_t mask, uint32_t typed) {
          uint64_t best = uint32_t{1} << 30;
          for (uint32_t j = 0; j < n.keys.size(); ++j)
            if (mask & (1u << j)) best = std::min(best, member(j, typed));
          return best;
        };
        switch (f.stage) {
          case o_open: r = sh[f.node]; break;
          case o_first: {
            // No member yet: the first required one needs no comma.
            const uint64_t tail = g_->object_tail(n, f.c);
            bool any_required = false;
            for (size_t j = f.c; j < n.keys.size(); ++j) any_required = any_required || n.required[j];
            r = any_required ? tail - 1 : tail;
            break;
          }
          case o_key: r = best_member(f.a, f.b); break;
          case o_colon: r = 1 + uint64_t{sh[n.values[f.aux]]} + g_->object_tail(n, f.c); break;
          case o_space:
          case o_value: r = uint64_t{sh[n.values[f.aux]]} + g_->object_tail(n, f.c); break;
          case o_next:
          case o_keystart: r = best_member(next_keys(n, f.c), 0); break;
          default: r = g_->object_tail(n, f.c); break;  // o_after, o_invalue
        }
        break;
      }
      case kind::array: {
        const uint64_t item = sh[n.item];
        auto rest = [&](uint64_t written) {
          return (n.min_items > written ? (n.min_items - written) * (item + 1) : 0) + 1;
        };
        switch (f.stage) {
          case a_open: r = sh[f.node]; break;
          case a_first: r = n.min_items == 0 ? 1 : n.min_items * item + (n.min_items - 1) + 1; break;
          case a_next:
          case a_item: r = item + rest(uint64_t{f.a} + 1); break;
          default: r = rest(f.a); break;  // a_after, a_in
        }
        break;
      }
      case kind::hermes: {
        // The cheapest tool: its quoted name and its shortest arguments.
        const auto& names = g_->nodes[n.names].texts;
        uint64_t call = uint32_t{1} << 30;
        for (size_t i = 0; i < n.tool_args.size(); ++i)
          call = std::min<uint64_t>(call, names[i].size() + sh[n.tool_args[i]]);
        const call_syntax& syn = *n.syntax;
        // After the arguments: literal 3, then the closing byte where the syntax has one.
        const uint64_t close = syn.literals[3].size() + (syn.closing != 0 ? 1 : 0);
        const uint64_t index = syn.index ? 1 : 0;  // one digit at least
        switch (f.stage) {
          case h_free:
          case h_closed: r = 0; break;
          case h_after: r = syn.closing != 0 ? 1 : 0; break;
          case h_name:  // the name frame adds the rest of the name and the arguments
            r = index + syn.literals[2].size() + close;
            break;
          case h_index:
            r = (f.b == 0 ? 1 : 0) + syn.literals[2].size() + sh[n.tool_args[f.aux]] + close;
            break;
          case h_args: r = close; break;
          case h_lit: {
            const uint64_t left = syn.literals[f.a].size() - f.b;
            if (f.a <= 1) r = left + call + index + syn.literals[2].size() + close;
            else if (f.a == 2) r = left + sh[n.tool_args[f.aux]] + close;
            else r = left + (close - syn.literals[3].size());
            break;
          }
        }
        break;
      }
    }
    total += r;
  }
  return static_cast<uint32_t>(std::min<uint64_t>(total, uint32_t{1} << 30));
}

grammar_matcher::mode grammar_matcher::lexical_mode() const noexcept {
  if (depth_ == 0) return mode::other;
  const frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const auto& n = g_->nodes[f.node];
  if (n.k == kind::hermes && f.stage == h_free && f.aux == 0) return mode::free_text;
  if (n.k == kind::string && f.stage == s_body && f.aux == 0) return mode::string_body;
  return mode::other;
}

uint32_t grammar_matcher::string_missing() const noexcept {
  if (lexical_mode() != mode::string_body) return 0;
  const frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const auto& n = g_->nodes[f.node];
  return f.a < n.min_len ? n.min_len - f.a : 0;
}

uint32_t grammar_matcher::string_room() const noexcept {
  if (lexical_mode() != mode::string_body) return 0;
  const frame& f = stack_[static_cast<size_t>(depth_ - 1)];
  const auto& n = g_->nodes[f.node];
  return n.max_len == unbounded ? unbounded : n.max_len - f.a;
}

std::string_view grammar_matcher::key() const noexcept {
  return {reinterpret_cast<const char*>(stack_.data()),
          static_cast<size_t>(depth_) * sizeof(frame)};
}

}  // namespace troupe::llama
