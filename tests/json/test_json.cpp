#define BOOST_TEST_MODULE json
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "troupe/json.hpp"

namespace troupe {
/// Lets Boost.Test print codes in failed assertions.
std::ostream& operator<<(std::ostream& os, errc code) { return os << to_string(code); }
}  // namespace troupe

namespace json = troupe::json;
using json::value;
using troupe::errc;

namespace {

/// The error that `f` throws; fails the test when it throws nothing or something else.
template <class F>
troupe::error error_of(F&& f) {
  try {
    f();
  } catch (const troupe::error& e) {
    return e;
  } catch (const std::exception& e) {
    BOOST_FAIL("expected troupe::error, got std::exception: " << e.what());
  }
  BOOST_FAIL("expected troupe::error, nothing was thrown");
  return {};
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

/// Bit-exact double comparison (tells -0.0 from 0.0).
bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

double as_double(const value& v) {
  BOOST_REQUIRE(std::holds_alternative<double>(v.raw()));
  return std::get<double>(v.raw());
}

std::string check(std::string_view instance, std::string_view schema) {
  return json::validate(json::parse(instance), json::parse(schema));
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Parsing and dumping
// ------------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(scalars_round_trip_with_their_type) {
  const std::vector<value> values = {
      value{},
      value{true},
      value{false},
      value{0},
      value{-1},
      value{std::numeric_limits<int64_t>::max()},
      value{std::numeric_limits<int64_t>::min()},
      value{0.5},
      value{-2.25},
      value{1.0},
      value{"text"},
      value{""},
  };
  for (const value& v : values) {
    value back = json::parse(json::dump(v));
    BOOST_TEST(back.raw().index() == v.raw().index(), json::dump(v));
    BOOST_TEST((back == v), json::dump(v));
  }
}

BOOST_AUTO_TEST_CASE(dump_is_compact_and_keeps_member_order) {
  value v = json::object{{"z", value{json::array{1, 2.5, "x", nullptr, true, false}}},
                         {"a", value{json::object{}}},
                         {"m", value{json::array{}}}};
  BOOST_TEST(json::dump(v) == R"({"z":[1,2.5,"x",null,true,false],"a":{},"m":[]})");
  BOOST_TEST(json::dump(value{1.0}) == "1.0");
  BOOST_TEST(json::dump(value{-0.0}) == "-0.0");
  BOOST_TEST(json::dump(value{uint32_t{4000000000u}}) == "4000000000");
}

BOOST_AUTO_TEST_CASE(containers_round_trip) {
  const std::string text =
      R"({"name":"read_file","args":{"path":"/tmp/a b","lines":[1,2,3],"opts":{}},)"
      R"("empty":[],"nested":[[],[[]],{"k":[null]}],"f":-0.125,"t":true})";
  value v = json::parse(text);
  BOOST_TEST(json::dump(v) == text);
  BOOST_TEST(v.find("args")->find("lines")->as_array().at(2).as_int() == 3);
  BOOST_TEST(v.find("f")->as_number() == -0.125);
  BOOST_TEST((json::parse(json::dump(v)) == v));
}

BOOST_AUTO_TEST_CASE(whitespace_around_values_is_accepted) {
  value v = json::parse(" \t\r\n{ \"a\" : [ 1 , 2 ] }\n ");
  BOOST_TEST(json::dump(v) == R"({"a":[1,2]})");
}

BOOST_AUTO_TEST_CASE(integers_in_int64_stay_exact) {
  value max = json::parse("9223372036854775807");
  BOOST_TEST(max.is_int());
  BOOST_TEST(max.as_int() == std::numeric_limits<int64_t>::max());
  value min = json::parse("-9223372036854775808");
  BOOST_TEST(min.is_int());
  BOOST_TEST(min.as_int() == std::numeric_limits<int64_t>::min());
  BOOST_TEST(json::dump(max) == "9223372036854775807");
  BOOST_TEST(json::dump(min) == "-9223372036854775808");
  // 2^53 + 1 is not representable as a double: it must survive exactly.
  value odd = json::parse("9007199254740993");
  BOOST_TEST(odd.as_int() == int64_t{9007199254740993});
  BOOST_TEST(json::dump(odd) == "9007199254740993");
  BOOST_TEST(json::parse("-0").is_int());
}

BOOST_AUTO_TEST_CASE(integers_beyond_int64_become_doubles) {
  value just_above = json::parse("9223372036854775808");
  BOOST_TEST(!just_above.is_int());
  BOOST_TEST(as_double(just_above) == 9223372036854775808.0);
  BOOST_TEST(as_double(json::parse("18446744073709551615")) == 18446744073709551616.0);
  // Beyond uint64 too (simdjson rejects these by itself).
  BOOST_TEST(as_double(json::parse("123456789012345678901234567890")) == 1.2345678901234568e29);
  BOOST_TEST(as_double(json::parse("-9223372036854775809")) == -9223372036854775808.0);
  value arr = json::parse(R"([1, 99999999999999999999, "99999999999999999999", -1])");
  BOOST_TEST(json::dump(arr) == R"([1,1e+20,"99999999999999999999",-1])");
  // Digits inside strings, also after escaped quotes, are left alone.
  value strings = json::parse(R"(["\"99999999999999999999\\", 99999999999999999999])");
  BOOST_TEST(strings.as_array().at(0).as_string() == "\"99999999999999999999\\");
  BOOST_TEST(as_double(strings.as_array().at(1)) == 1e20);
  // A double after re-parse: the dump keeps it a double.
  BOOST_TEST(!json::parse(json::dump(just_above)).is_int());
}

BOOST_AUTO_TEST_CASE(doubles_round_trip_bit_exactly) {
  const double values[] = {0.1,
                           1.0 / 3.0,
                           -2.5e-300,
                           1e300,
                           std::numeric_limits<double>::max(),
                           std::numeric_limits<double>::min(),
                           std::numeric_limits<double>::denorm_min(),
                           -0.0,
                           123456789.125,
                           9007199254740993.0};
  for (double d : values) {
    std::string text = json::dump(value{d});
    double back = as_double(json::parse(text));
    BOOST_TEST(same_bits(back, d), text);
  }
  BOOST_TEST(as_double(json::parse("1E2")) == 100.0);
  BOOST_TEST(as_double(json::parse("-1.5e-3")) == -0.0015);
}

BOOST_AUTO_TEST_CASE(non_finite_doubles_dump_as_null) {
  BOOST_TEST(json::dump(value{std::nan("")}) == "null");
  BOOST_TEST(json::dump(value{std::numeric_limits<double>::infinity()}) == "null");
  value arr = json::array{value{-std::numeric_limits<double>::infinity()}, value{1}};
  BOOST_TEST(json::dump(arr) == "[null,1]");
}

BOOST_AUTO_TEST_CASE(string_escapes_parse_to_the_right_bytes) {
  value v = json::parse(R"("q\" b\\ s\/ \b\f\n\r\t \u0041\u00e9\u20ac\ud83d\ude00 \u0000!")");
  const std::string expected =
      std::string{"q\" b\\ s/ \b\f\n\r\t A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80 "} +
      std::string(1, '\0') + "!";
  BOOST_TEST(v.as_string() == expected);
  BOOST_TEST(v.as_string().size() == expected.size());
}

BOOST_AUTO_TEST_CASE(quote_escapes_as_rfc_8259_requires) {
  BOOST_TEST(json::quote("plain") == "\"plain\"");
  BOOST_TEST(json::quote("a\"b\\c") == R"("a\"b\\c")");
  BOOST_TEST(json::quote("l1\nl2\r\t\b\f") == R"("l1\nl2\r\t\b\f")");
  BOOST_TEST(json::quote(std::string_view{"a\0b", 3}) == R"("a\u0000b")");
  BOOST_TEST(json::quote("\x01\x1f") == R"("\u0001\u001f")");
  BOOST_TEST(json::quote("/ \x7f") == "\"/ \x7f\"");  // neither needs escaping
  // Valid UTF-8 is kept as it is.
  BOOST_TEST(json::quote("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80") ==
             "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"");
  std::string out = "prefix:";
  json::append_quoted(out, "x\ny");
  BOOST_TEST(out == R"(prefix:"x\ny")");
}

BOOST_AUTO_TEST_CASE(every_ascii_byte_round_trips_through_quote) {
  std::string all;
  for (int c = 0; c < 128; ++c) all += static_cast<char>(c);
  BOOST_TEST(json::parse(json::quote(all)).as_string() == all);
  value obj = json::object{{all, value{all}}};
  value back = json::parse(json::dump(obj));
  BOOST_TEST(back.as_object().at(0).first == all);
  BOOST_TEST(back.find(all)->as_string() == all);
}

BOOST_AUTO_TEST_CASE(invalid_utf8_is_replaced_so_the_output_stays_valid_json) {
  const std::string fffd = "\xEF\xBF\xBD";
  BOOST_TEST(json::quote("a\xFF"
                         "b") == "\"a" + fffd + "b\"");
  BOOST_TEST(json::quote("\xE2\x82") == "\"" + fffd + "\"");         // truncated sequence
  BOOST_TEST(json::quote("\xC0\xAF") == "\"" + fffd + fffd + "\"");  // overlong
  BOOST_TEST(json::quote("\xED\xA0\x80") == "\"" + fffd + fffd + fffd + "\"");  // surrogate
  BOOST_TEST(json::quote("\xF0\x9F\x98"
                         "x\n") == "\"" + fffd + "x\\n\"");
  const std::string messy = "ok \xC3\xA9 \xF8\x88\x80 \xE2\x82\xAC\x80 end\x01";
  std::string quoted = json::quote(messy);
  BOOST_TEST(json::parse(quoted).as_string() ==
             "ok \xC3\xA9 " + fffd + fffd + fffd + " \xE2\x82\xAC" + fffd + " end\x01");
}

BOOST_AUTO_TEST_CASE(deep_nesting_round_trips) {
  const int depth = 1000;
  std::string text = std::string(depth, '[') + "7" + std::string(depth, ']');
  value v = json::parse(text);
  BOOST_TEST(json::dump(v) == text);
  const value* cur = &v;
  for (int i = 0; i < depth; ++i) cur = &cur->as_array().at(0);
  BOOST_TEST(cur->as_int() == 7);

  std::string objects;
  for (int i = 0; i < 500; ++i) objects += R"({"k":)";
  objects += "null";
  objects += std::string(500, '}');
  BOOST_TEST(json::dump(json::parse(objects)) == objects);
}

BOOST_AUTO_TEST_CASE(nesting_beyond_the_limit_is_a_parse_error) {
  std::string text = std::string(5000, '[') + std::string(5000, ']');
  troupe::error e = error_of([&] { json::parse(text, "deep document"); });
  BOOST_TEST((e.code() == errc::parse_error));
  BOOST_TEST(contains(e.message(), "deep document"));
  BOOST_TEST(contains(e.message(), "DEPTH_ERROR"));
}

BOOST_AUTO_TEST_CASE(malformed_inputs_give_parse_errors_that_name_what_was_parsed) {
  struct bad_case {
    std::string text;
    std::string code;  // simdjson's error name in the message; empty: any
  };
  const std::vector<bad_case> cases = {
      {"", "EMPTY"},
      {"   \n", "EMPTY"},
      {R"({"path": "/tmp/x")", ""},  // truncated object
      {"[1, 2", ""},                 // truncated array
      {R"("abc)", "UNCLOSED_STRING"},
      {"[1] x", "TAPE_ERROR"},  // trailing garbage
      {"{} {}", "TAPE_ERROR"},
      {"[1,2,]", "TAPE_ERROR"},
      {R"({"a":})", "TAPE_ERROR"},
      {"{a:1}", ""},
      {"{'a':1}", ""},
      {R"("bad \x escape")", "STRING_ERROR"},
      {R"("\u12")", "STRING_ERROR"},
      {R"("\ud800")", "STRING_ERROR"},  // lone surrogate
      {"\"tab\there\"", "UNESCAPED_CHARS"},
      {"tru", "T_ATOM_ERROR"},
      {"[nul]", "N_ATOM_ERROR"},
      {"fals", "F_ATOM_ERROR"},
      {"01", "NUMBER_ERROR"},
      {"1.", "NUMBER_ERROR"},
      {"-", ""},
      {"1e400", "NUMBER_ERROR"},
      {"NaN", ""},
      {"\"\xFF\"", "UTF8_ERROR"},
  };
  const std::string what = "arguments of tool call 'read_file'";
  for (const bad_case& c : cases) {
    troupe::error e = error_of([&] { json::parse(c.text, what); });
    BOOST_TEST((e.code() == errc::parse_error), c.text);
    BOOST_TEST(e.message().rfind(what + ": not valid JSON: ", 0) == 0, e.message());
    if (!c.code.empty())
      BOOST_TEST(contains(e.message(), c.code + ": "), c.text << " -> " << e.message());
  }
}

BOOST_AUTO_TEST_CASE(parse_error_message_has_simdjson_text_and_a_hint) {
  troupe::error e = error_of([] { json::parse("{\"a\":1,}", "arguments of tool call 'x'"); });
  BOOST_TEST(e.message() ==
             "arguments of tool call 'x': not valid JSON: TAPE_ERROR: The JSON document has an "
             "improper structure: missing or superfluous commas, braces, missing keys, etc. "
             "(check for missing or extra commas, colons, brackets, braces or quotes, unquoted "
             "keys, and text after the value)");
  troupe::error plain = error_of([] { json::parse("["); });
  BOOST_TEST(plain.message().rfind("JSON text: not valid JSON: ", 0) == 0, plain.message());
}

BOOST_AUTO_TEST_CASE(the_parser_is_reusable_after_errors_and_for_large_documents) {
  BOOST_TEST(error_of([] { json::parse("[1,"); }).code() == errc::parse_error);
  BOOST_TEST(json::parse("[1]").as_array().size() == 1u);
  // Larger than the reusable parser's limit (1 MiB): parsed by a parser of its own.
  std::string big = "[";
  const int n = 300000;
  for (int i = 0; i < n; ++i) {
    if (i) big += ',';
    big += std::to_string(i);
  }
  big += ']';
  BOOST_REQUIRE(big.size() > (size_t{1} << 20));
  value v = json::parse(big);
  BOOST_REQUIRE(v.as_array().size() == size_t(n));
  int64_t sum = 0;
  for (const value& x : v.as_array()) sum += x.as_int();
  BOOST_TEST(sum == int64_t{n} * (n - 1) / 2);
  BOOST_TEST(json::parse(R"({"small":true})").find("small")->as_bool());
}

BOOST_AUTO_TEST_CASE(threads_parse_concurrently) {
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &ok] {
      for (int i = 0; i < 500; ++i) {
        std::string text = R"({"t":)" + std::to_string(t) + R"(,"i":)" + std::to_string(i) + "}";
        value v = json::parse(text);
        if (v.find("t")->as_int() == t && v.find("i")->as_int() == i && json::dump(v) == text) {
          ++ok[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) BOOST_TEST(ok[t] == 500);
}

BOOST_AUTO_TEST_CASE(duplicate_keys_keep_the_last_value_at_the_first_position) {
  value v = json::parse(R"({"a":1,"b":2,"a":3})");
  BOOST_TEST(json::dump(v) == R"({"a":3,"b":2})");
  // Large objects take another path.
  std::string text = "{";
  for (int i = 0; i < 40; ++i) text += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  text += R"("k5":"late"})";
  value big = json::parse(text);
  BOOST_TEST(big.as_object().size() == 40u);
  BOOST_TEST(big.as_object().at(5).second.as_string() == "late");
  BOOST_TEST(big.find("k39")->as_int() == 39);
}

// ------------------------------------------------------------------------------------------------
// value: accessors, find, set, type_name
// ------------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(type_names) {
  BOOST_TEST(value{}.type_name() == std::string{"null"});
  BOOST_TEST(value{true}.type_name() == std::string{"boolean"});
  BOOST_TEST(value{1}.type_name() == std::string{"integer"});
  BOOST_TEST(value{1.5}.type_name() == std::string{"number"});
  BOOST_TEST(value{"s"}.type_name() == std::string{"string"});
  BOOST_TEST(value{json::array{}}.type_name() == std::string{"array"});
  BOOST_TEST(value{json::object{}}.type_name() == std::string{"object"});
}

BOOST_AUTO_TEST_CASE(accessors_return_values) {
  value v = json::parse(R"({"b":true,"i":-42,"d":2.5,"s":"x","a":[1],"o":{"k":null}})");
  BOOST_TEST(v.find("b")->as_bool() == true);
  BOOST_TEST(v.find("i")->as_int() == -42);
  BOOST_TEST(v.find("i")->as_number() == -42.0);
  BOOST_TEST(v.find("d")->as_number() == 2.5);
  BOOST_TEST(v.find("s")->as_string() == "x");
  BOOST_TEST(v.find("a")->as_array().size() == 1u);
  BOOST_TEST(v.find("o")->as_object().at(0).first == "k");
  // Mutable access changes the value in place.
  v.as_object().at(4).second.as_array().push_back(value{2});
  v.as_object().at(5).second.as_object().emplace_back("n", value{1});
  BOOST_TEST(json::dump(v) ==
             R"({"b":true,"i":-42,"d":2.5,"s":"x","a":[1,2],"o":{"k":null,"n":1}})");
}

BOOST_AUTO_TEST_CASE(as_int_accepts_integral_doubles_only) {
  BOOST_TEST(value{3.0}.as_int() == 3);
  BOOST_TEST(value{-9223372036854775808.0}.as_int() == std::numeric_limits<int64_t>::min());
  for (double d : {3.5, 9223372036854775808.0, 1e300, std::nan("")}) {
    troupe::error e = error_of([&] { value{d}.as_int(); });
    BOOST_TEST((e.code() == errc::invalid_argument));
    BOOST_TEST(e.message() == "expected integer, got number");
  }
}

BOOST_AUTO_TEST_CASE(accessors_name_expected_and_actual_type) {
  auto message = [](auto&& f) {
    troupe::error e = error_of(f);
    BOOST_TEST((e.code() == errc::invalid_argument));
    return e.message();
  };
  const value i{7};
  const value s{"x"};
  const value n{};
  value m{json::array{}};
  BOOST_TEST(message([&] { i.as_string(); }) == "expected string, got integer");
  BOOST_TEST(message([&] { s.as_bool(); }) == "expected boolean, got string");
  BOOST_TEST(message([&] { s.as_int(); }) == "expected integer, got string");
  BOOST_TEST(message([&] { n.as_number(); }) == "expected number, got null");
  BOOST_TEST(message([&] { i.as_array(); }) == "expected array, got integer");
  BOOST_TEST(message([&] { s.as_object(); }) == "expected object, got string");
  BOOST_TEST(message([&] { m.as_object(); }) == "expected object, got array");
  value b{true};
  BOOST_TEST(message([&] { b.as_array(); }) == "expected array, got boolean");
  BOOST_TEST(message([&] { value{1.5}.as_bool(); }) == "expected boolean, got number");
}

BOOST_AUTO_TEST_CASE(find_looks_up_members) {
  value v = json::parse(R"({"a":1,"b":{"c":"d"}})");
  BOOST_REQUIRE(v.find("a") != nullptr);
  BOOST_TEST(v.find("a")->as_int() == 1);
  BOOST_TEST(v.find("b")->find("c")->as_string() == "d");
  BOOST_TEST(v.find("c") == nullptr);
  BOOST_TEST(v.find("") == nullptr);
  BOOST_TEST(value{"a"}.find("a") == nullptr);
  BOOST_TEST(value{}.find("a") == nullptr);
  BOOST_TEST(json::parse("[1]").find("0") == nullptr);
}

BOOST_AUTO_TEST_CASE(set_adds_replaces_and_turns_null_into_object) {
  value v;
  value& x = v.set("x", 1);
  BOOST_TEST(x.as_int() == 1);
  BOOST_TEST(v.is_object());
  v.set("y", "two");
  v.set("x", json::array{true});  // replaced in place, order kept
  BOOST_TEST(json::dump(v) == R"({"x":[true],"y":"two"})");
  v.set("z", nullptr).set("inner", 3.5);  // set on the returned null member
  BOOST_TEST(json::dump(v) == R"({"x":[true],"y":"two","z":{"inner":3.5}})");

  value s{"text"};
  troupe::error e = error_of([&] { s.set("k", 1); });
  BOOST_TEST((e.code() == errc::invalid_argument));
  BOOST_TEST(e.message() == "expected object, got string");
  BOOST_TEST(s.as_string() == "text");
}

// ------------------------------------------------------------------------------------------------
// Schema validation
// ------------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(trivial_schemas) {
  for (const char* instance : {"null", "1", "\"s\"", "[1,{}]", R"({"a":1})"}) {
    BOOST_TEST(check(instance, "{}") == "");
    BOOST_TEST(check(instance, "true") == "");
    BOOST_TEST(check(instance, "false") == "/: no value is allowed here (the schema is false)");
  }
  BOOST_TEST(check(R"({"a":1})", R"({"properties":{"a":false}})") ==
             "/a: no value is allowed here (the schema is false)");
}

BOOST_AUTO_TEST_CASE(type_keyword) {
  BOOST_TEST(check("null", R"({"type":"null"})") == "");
  BOOST_TEST(check("false", R"({"type":"boolean"})") == "");
  BOOST_TEST(check("\"s\"", R"({"type":"string"})") == "");
  BOOST_TEST(check("[]", R"({"type":"array"})") == "");
  BOOST_TEST(check("{}", R"({"type":"object"})") == "");
  BOOST_TEST(check("3", R"({"type":"integer"})") == "");
  BOOST_TEST(check("3.0", R"({"type":"integer"})") == "");
  BOOST_TEST(check("-1e3", R"({"type":"integer"})") == "");
  BOOST_TEST(check("3.5", R"({"type":"integer"})") == "/: expected integer, got number");
  BOOST_TEST(check("3", R"({"type":"number"})") == "");
  BOOST_TEST(check("3.5", R"({"type":"number"})") == "");
  BOOST_TEST(check("\"3\"", R"({"type":"number"})") == "/: expected number, got string");
  BOOST_TEST(check("0", R"({"type":"boolean"})") == "/: expected boolean, got integer");
  BOOST_TEST(check("null", R"({"type":"object"})") == "/: expected object, got null");
  BOOST_TEST(check("{}", R"({"type":"array"})") == "/: expected array, got object");
  BOOST_TEST(check("[]", R"({"type":"string"})") == "/: expected string, got array");
  BOOST_TEST(check("true", R"({"type":"null"})") == "/: expected null, got boolean");
}

BOOST_AUTO_TEST_CASE(type_arrays) {
  BOOST_TEST(check("null", R"({"type":["string","null"]})") == "");
  BOOST_TEST(check("\"s\"", R"({"type":["string","null"]})") == "");
  BOOST_TEST(check("1", R"({"type":["string","null"]})") ==
             "/: expected string or null, got integer");
  BOOST_TEST(check("true", R"({"type":["string","integer","null"]})") ==
             "/: expected string, integer or null, got boolean");
  BOOST_TEST(check("2.0", R"({"type":["integer"]})") == "");
}

BOOST_AUTO_TEST_CASE(properties_and_nested_pointers) {
  const char* schema = R"({"type":"object","properties":{
      "items":{"type":"array","items":{"type":"string"}},
      "opts":{"type":"object","properties":{"depth":{"type":"integer"},
                                              "tags":{"type":"array","items":{"type":"object",
                                                 "properties":{"name":{"type":"string"}}}}}}}})";
  BOOST_TEST(check(R"({"items":["a","b"],"opts":{"depth":2}})", schema) == "");
  BOOST_TEST(check(R"({"items":["a","b",3]})", schema) == "/items/2: expected string, got integer");
  BOOST_TEST(check(R"({"opts":{"depth":"deep"}})", schema) ==
             "/opts/depth: expected integer, got string");
  BOOST_TEST(check(R"({"opts":{"tags":[{"name":"a"},{"name":false}]}})", schema) ==
             "/opts/tags/1/name: expected string, got boolean");
  BOOST_TEST(check(R"({"items":"a"})", schema) == "/items: expected array, got string");
  // Properties not mentioned are allowed by default.
  BOOST_TEST(check(R"({"other":1})", schema) == "");
}

BOOST_AUTO_TEST_CASE(pointer_segments_are_escaped) {
  BOOST_TEST(check(R"({"a/b~c":1})", R"({"properties":{"a/b~c":{"type":"string"}}})") ==
             "/a~1b~0c: expected string, got integer");
}

BOOST_AUTO_TEST_CASE(required_keyword) {
  const char* schema = R"({"type":"object","required":["path","mode"],
      "properties":{"opts":{"type":"object","required":["x"]}}})";
  BOOST_TEST(check(R"({"path":"a","mode":"r"})", schema) == "");
  BOOST_TEST(check(R"({"mode":"r"})", schema) == "/: missing required property 'path'");
  BOOST_TEST(check(R"({"path":"a"})", schema) == "/: missing required property 'mode'");
  BOOST_TEST(check(R"({"path":"a","mode":"r","opts":{}})", schema) ==
             "/opts: missing required property 'x'");
  // A null member is present.
  BOOST_TEST(check(R"({"path":null,"mode":null})", schema) == "");
  // Only objects are checked.
  BOOST_TEST(check("[]", R"({"required":["path"]})") == "");
}

BOOST_AUTO_TEST_CASE(additional_properties_keyword) {
  const char* closed = R"({"properties":{"path":{"type":"string"}},"additionalProperties":false})";
  BOOST_TEST(check(R"({"path":"a"})", closed) == "");
  BOOST_TEST(check(R"({"path":"a","extra":1})", closed) ==
             "/: property 'extra' is not allowed (additionalProperties is false)");
  BOOST_TEST(
      check(R"({"o":{"path":"a","x":1}})", std::string{R"({"properties":{"o":)"} + closed + "}}") ==
      "/o: property 'x' is not allowed (additionalProperties is false)");
  const char* typed =
      R"({"properties":{"a":{"type":"string"}},"additionalProperties":{"type":"integer"}})";
  BOOST_TEST(check(R"({"a":"s","b":1,"c":2})", typed) == "");
  BOOST_TEST(check(R"({"a":"s","b":1,"c":"x"})", typed) == "/c: expected integer, got string");
  BOOST_TEST(check(R"({"a":1})", typed) == "/a: expected string, got integer");
  BOOST_TEST(check(R"({"z":1})", R"({"additionalProperties":true})") == "");
  BOOST_TEST(check(R"({"z":1})", R"({"additionalProperties":false})") ==
             "/: property 'z' is not allowed (additionalProperties is false)");
}

BOOST_AUTO_TEST_CASE(items_min_items_max_items) {
  const char* schema =
      R"({"type":"array","items":{"type":"integer","minimum":0},"minItems":1,"maxItems":3})";
  BOOST_TEST(check("[0]", schema) == "");
  BOOST_TEST(check("[1,2,3]", schema) == "");
  BOOST_TEST(check("[]", schema) == "/: array of 0 items is shorter than minItems 1");
  BOOST_TEST(check("[1,2,3,4]", schema) == "/: array of 4 items is longer than maxItems 3");
  BOOST_TEST(check("[1,-2]", schema) == "/1: value -2 is less than minimum 0");
  BOOST_TEST(check("[[1,\"x\"]]", R"({"items":{"items":{"type":"integer"}}})") ==
             "/0/1: expected integer, got string");
  // The positional form: each item has its schema; extra items are free.
  const char* tuple = R"({"items":[{"type":"string"},{"type":"integer"}]})";
  BOOST_TEST(check(R"(["a",1,null])", tuple) == "");
  BOOST_TEST(check(R"(["a","b"])", tuple) == "/1: expected integer, got string");
}

BOOST_AUTO_TEST_CASE(enum_keyword) {
  const char* schema = R"({"properties":{"mode":{"enum":["a","b"]}}})";
  BOOST_TEST(check(R"({"mode":"a"})", schema) == "");
  BOOST_TEST(check(R"({"mode":"x"})", schema) == R"(/mode: value "x" is not one of ["a","b"])");
  BOOST_TEST(check(R"({"mode":1})", schema) == R"(/mode: value 1 is not one of ["a","b"])");
  // JSON equality: 1 equals 1.0, objects ignore member order.
  BOOST_TEST(check("1.0", R"({"enum":[1,null]})") == "");
  BOOST_TEST(check("null", R"({"enum":[1,null]})") == "");
  BOOST_TEST(check(R"({"b":2,"a":[1]})", R"({"enum":[{"a":[1],"b":2}]})") == "");
  BOOST_TEST(check(R"({"a":[1]})", R"({"enum":[{"a":[1],"b":2}]})") ==
             R"(/: value {"a":[1]} is not one of [{"a":[1],"b":2}])");
  BOOST_TEST(check("[1,2]", R"({"enum":[[2,1]]})") == R"(/: value [1,2] is not one of [[2,1]])");
  BOOST_TEST(check("true", R"({"enum":[1]})") == "/: value true is not one of [1]");
}

BOOST_AUTO_TEST_CASE(long_values_are_cut_in_messages) {
  std::string long_text(500, 'x');
  std::string msg = check(json::quote(long_text), R"({"enum":["a"]})");
  BOOST_TEST(msg.rfind("/: value \"xxxx", 0) == 0, msg);
  BOOST_TEST(contains(msg, "... is not one of [\"a\"]"), msg);
  BOOST_TEST(msg.size() < 200u);
}

BOOST_AUTO_TEST_CASE(const_keyword) {
  BOOST_TEST(check(R"("v1")", R"({"const":"v1"})") == "");
  BOOST_TEST(check("2.0", R"({"const":2})") == "");
  BOOST_TEST(check(R"("v2")", R"({"const":"v1"})") == R"(/: value "v2" is not the constant "v1")");
  BOOST_TEST(check(R"({"k":[3]})", R"({"properties":{"k":{"items":{"const":4}}}})") ==
             "/k/0: value 3 is not the constant 4");
  BOOST_TEST(check("null", R"({"const":null})") == "");
  BOOST_TEST(check("false", R"({"const":null})") == "/: value false is not the constant null");
}

BOOST_AUTO_TEST_CASE(minimum_and_maximum) {
  const char* schema = R"({"minimum":1,"maximum":10})";
  BOOST_TEST(check("1", schema) == "");
  BOOST_TEST(check("10", schema) == "");
  BOOST_TEST(check("5.5", schema) == "");
  BOOST_TEST(check("0", schema) == "/: value 0 is less than minimum 1");
  BOOST_TEST(check("0.999", schema) == "/: value 0.999 is less than minimum 1");
  BOOST_TEST(check("11", schema) == "/: value 11 is greater than maximum 10");
  BOOST_TEST(check("10.5", schema) == "/: value 10.5 is greater than maximum 10");
  BOOST_TEST(check("-0.5", R"({"minimum":-0.5})") == "");
  BOOST_TEST(check("-1", R"({"minimum":-0.5})") == "/: value -1 is less than minimum -0.5");
  // Exact between int64 and double: 2^53 + 1 is above the double 2^53.
  BOOST_TEST(check("9007199254740993", R"({"maximum":9007199254740992.0})") ==
             "/: value 9007199254740993 is greater than maximum 9007199254740992.0");
  BOOST_TEST(check("9007199254740992.0", R"({"maximum":9007199254740993})") == "");
  BOOST_TEST(check("9223372036854775807", R"({"maximum":1e19})") == "");
  BOOST_TEST(check("-9223372036854775808", R"({"minimum":-1e19})") == "");
  // Only numbers are checked.
  BOOST_TEST(check("\"0\"", schema) == "");
}

BOOST_AUTO_TEST_CASE(min_length_and_max_length_count_code_points) {
  const char* schema = R"({"type":"string","minLength":2,"maxLength":3})";
  BOOST_TEST(check(R"("ab")", schema) == "");
  BOOST_TEST(check("\"\xC3\xA9\xF0\x9F\x98\x80\"", schema) == "");  // 2 code points, 6 bytes
  BOOST_TEST(check(R"("a")", schema) == "/: string of 1 characters is shorter than minLength 2");
  BOOST_TEST(check(R"("abcd")", schema) == "/: string of 4 characters is longer than maxLength 3");
  BOOST_TEST(check(R"({"p":""})", R"({"properties":{"p":{"minLength":1}}})") ==
             "/p: string of 0 characters is shorter than minLength 1");
  BOOST_TEST(check("12345", R"({"maxLength":1})") == "");  // only strings are checked
}

BOOST_AUTO_TEST_CASE(any_of_keyword) {
  const char* schema = R"({"anyOf":[{"type":"string"},{"type":"integer","minimum":0}]})";
  BOOST_TEST(check(R"("s")", schema) == "");
  BOOST_TEST(check("3", schema) == "");
  BOOST_TEST(check("-3", schema) ==
             "/: value matches no schema in anyOf: [0] /: expected string, got integer; "
             "[1] /: value -3 is less than minimum 0");
  BOOST_TEST(
      check(R"({"v":[true]})", R"({"properties":{"v":{"items":{"anyOf":[{"type":"null"}]}}}})") ==
      "/v/0: value matches no schema in anyOf: [0] /v/0: expected null, got boolean");
}

BOOST_AUTO_TEST_CASE(one_of_keyword) {
  const char* schema = R"({"oneOf":[{"type":"integer"},{"type":"number","minimum":10}]})";
  BOOST_TEST(check("3", schema) == "");
  BOOST_TEST(check("10.5", schema) == "");
  BOOST_TEST(check("12", schema) ==
             "/: value matches schemas 0 and 1 of oneOf, but must match exactly one");
  BOOST_TEST(check("2.5", schema) ==
             "/: value matches no schema in oneOf: [0] /: expected integer, got number; "
             "[1] /: value 2.5 is less than minimum 10");
}

BOOST_AUTO_TEST_CASE(keywords_apply_only_to_their_type_and_unknown_ones_are_ignored) {
  const char* schema = R"({"minimum":5,"minLength":5,"minItems":5,"required":["a"],
      "description":"d","format":"uri","pattern":"^z","$schema":"x","default":1})";
  BOOST_TEST(check("null", schema) == "");
  BOOST_TEST(check("true", schema) == "");
  BOOST_TEST(check("\"abcde\"", schema) == "");
  BOOST_TEST(check("7", schema) == "");
  BOOST_TEST(check("[1,2,3,4,5]", schema) == "");
  BOOST_TEST(check(R"({"a":0})", schema) == "");
}

BOOST_AUTO_TEST_CASE(malformed_schemas_are_reported) {
  BOOST_TEST(check("{}", R"({"required":"path"})") ==
             "/: invalid schema: 'required' must be an array of property names");
  BOOST_TEST(check("1", R"({"type":"int"})") ==
             "/: invalid schema: 'type' must be one of null, boolean, integer, number, string, "
             "array, object");
  BOOST_TEST(check("1", R"({"type":[]})") ==
             "/: invalid schema: 'type' must be a type name or a non-empty array of type names");
  BOOST_TEST(check("1", R"({"minimum":"0"})") == "/: invalid schema: 'minimum' must be a number");
  BOOST_TEST(check("\"s\"", R"({"maxLength":-1})") ==
             "/: invalid schema: 'maxLength' must be a non-negative integer");
  BOOST_TEST(check("[1]", R"({"items":3})") ==
             "/0: invalid schema: expected an object or a boolean, got integer");
  BOOST_TEST(check("1", R"({"anyOf":{}})") ==
             "/: invalid schema: 'anyOf' must be a non-empty array of schemas");
  BOOST_TEST(check("1", R"({"enum":1})") == "/: invalid schema: 'enum' must be an array of values");
  BOOST_TEST(check("1", "\"string\"") ==
             "/: invalid schema: expected an object or a boolean, got string");
}

BOOST_AUTO_TEST_CASE(a_realistic_tool_schema) {
  const char* schema = R"({
    "type": "object",
    "properties": {
      "path": {"type": "string", "minLength": 1, "description": "file to read"},
      "offset": {"type": "integer", "minimum": 0},
      "encoding": {"enum": ["utf-8", "latin-1"]},
      "ranges": {"type": "array", "maxItems": 4,
                 "items": {"type": "object", "required": ["from", "to"],
                           "properties": {"from": {"type": "integer"}, "to": {"type": "integer"}},
                           "additionalProperties": false}}
    },
    "required": ["path"],
    "additionalProperties": false
  })";
  BOOST_TEST(
      check(R"({"path":"a.txt","offset":10,"encoding":"utf-8","ranges":[{"from":1,"to":2}]})",
            schema) == "");
  BOOST_TEST(check(R"({"offset":10})", schema) == "/: missing required property 'path'");
  BOOST_TEST(check(R"({"path":""})", schema) ==
             "/path: string of 0 characters is shorter than minLength 1");
  BOOST_TEST(check(R"({"path":"a","offset":-1})", schema) ==
             "/offset: value -1 is less than minimum 0");
  BOOST_TEST(check(R"({"path":"a","encoding":"ascii"})", schema) ==
             R"(/encoding: value "ascii" is not one of ["utf-8","latin-1"])");
  BOOST_TEST(check(R"({"path":"a","ranges":[{"from":1,"to":2},{"from":1}]})", schema) ==
             "/ranges/1: missing required property 'to'");
  BOOST_TEST(check(R"({"path":"a","ranges":[{"from":1,"to":2,"step":1}]})", schema) ==
             "/ranges/0: property 'step' is not allowed (additionalProperties is false)");
  BOOST_TEST(check(R"({"path":"a","recursive":true})", schema) ==
             "/: property 'recursive' is not allowed (additionalProperties is false)");
}
