// tiktoken-format tokenizer: ids equal to tiktoken's own on the committed fixture (a small
// vocabulary with Kimi's pattern and special tokens, written by
// tools/reference/make_tiktoken_fixture.py), round trips of random bytes, special-token handling,
// the pattern translation, and malformed files rejected with the file and line.

#define BOOST_TEST_MODULE tiktoken
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/formats/tiktoken.hpp"
#include "troupe/json.hpp"

namespace fs = std::filesystem;
using troupe::errc;
using troupe::tiktoken_tokenizer;

namespace {

const fs::path fixture_dir = fs::path(TROUPE_SOURCE_DIR) / "tests" / "fixtures" / "kimi_tokenizer";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const tiktoken_tokenizer& fixture() {
  static const tiktoken_tokenizer t = tiktoken_tokenizer::from_directory(fixture_dir);
  return t;
}

const troupe::json::value& expected() {
  static const troupe::json::value v = troupe::json::parse(slurp(fixture_dir / "expected.json"));
  return v;
}

std::vector<int32_t> ids_of(const troupe::json::value& a) {
  std::vector<int32_t> out;
  for (const auto& x : a.as_array()) out.push_back(static_cast<int32_t>(x.as_int()));
  return out;
}

std::string show(const std::vector<int32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return s + (v.size() > 40 ? " ...]" : "]");
}

/// A scratch directory with a copy of the fixture's files, for corrupting one of them.
struct scratch {
  fs::path dir;
  scratch() {
    static int counter = 0;
    dir = fs::temp_directory_path() /
          ("troupe_test_tiktoken_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
    fs::copy_file(fixture_dir / "tiktoken.model", dir / "tiktoken.model");
    fs::copy_file(fixture_dir / "tokenizer_config.json", dir / "tokenizer_config.json");
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name, std::ios::binary | std::ios::trunc) << text;
  }
};

/// Loading `s.dir` fails with `code`, and the message names the file and contains each of `parts`.
void expect_load_error(const scratch& s, errc code, const std::string& file,
                       const std::vector<std::string>& parts) {
  try {
    (void)tiktoken_tokenizer::from_directory(s.dir);
    BOOST_FAIL("loading did not fail; expected " << troupe::to_string(code));
  } catch (const troupe::error& e) {
    BOOST_TEST_MESSAGE(e.message());
    BOOST_TEST(troupe::to_string(e.code()) == troupe::to_string(code), e.message());
    BOOST_TEST(e.message().find((s.dir / file).string()) != std::string::npos, e.message());
    for (const auto& part : parts)
      BOOST_TEST(e.message().find(part) != std::string::npos, "'" << part << "' in: " << e.message());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(sizes_and_special_ids_follow_kimi) {
  const auto& t = fixture();
  const auto& e = expected();
  const auto n = static_cast<int32_t>(e.find("num_ranks")->as_int());
  BOOST_TEST(t.num_ranks() == n);
  BOOST_TEST(t.vocab_size() == e.find("vocab_size")->as_int());
  BOOST_TEST(t.vocab_size() == n + 256);
  BOOST_TEST(t.bos_id() == e.find("bos_id")->as_int());
  BOOST_TEST(t.eos_id() == e.find("eos_id")->as_int());
  // Kimi's ids relative to the first special id (163584 in the real vocabulary).
  const std::vector<std::pair<const char*, int32_t>> kimi{
    {"[BOS]", 0},          {"[EOS]", 1},
    {"<|im_end|>", 2},     {"<|im_user|>", 3},
    {"<|im_assistant|>", 4}, {"<|start_header_id|>", 6},
    {"<|end_header_id|>", 7}, {"[EOT]", 9},
    {"<|im_system|>", 10}, {"<|tool_calls_section_begin|>", 11},
    {"<|tool_calls_section_end|>", 12}, {"<|tool_call_begin|>", 13},
    {"<|tool_call_argument_begin|>", 14}, {"<|tool_call_end|>", 15},
    {"<|im_middle|>", 17}};
  for (const auto& [text, rel] : kimi) {
    BOOST_TEST(t.special_id(text).value_or(-1) == n + rel, text);
    BOOST_TEST(t.is_special(n + rel));
  }
  const auto& reserved = e.find("reserved_example")->as_array();
  BOOST_TEST(t.special_id(reserved[0].as_string()).value_or(-1) == reserved[1].as_int());
  BOOST_TEST(t.special_id("<|reserved_token_" + std::to_string(n + 255) + "|>").value_or(-1) ==
             n + 255);
  BOOST_TEST(!t.special_id("<|reserved_token_" + std::to_string(n + 256) + "|>").has_value());
  BOOST_TEST(!t.special_id("hello").has_value());
  BOOST_TEST(!t.is_special(n - 1));
  BOOST_TEST(!t.is_special(n + 256));
  BOOST_TEST(!t.is_special(-1));
}

BOOST_AUTO_TEST_CASE(encodings_equal_tiktoken) {
  const auto& t = fixture();
  const auto& cases = expected().find("cases")->as_array();
  BOOST_TEST_REQUIRE(cases.size() >= 40u);
  size_t checked = 0;
  for (const auto& c : cases) {
    const std::string& text = c.find("text")->as_string();
    const auto ordinary = ids_of(*c.find("ordinary"));
    const auto special = c.find("special") ? ids_of(*c.find("special")) : ordinary;
    const auto got = t.encode(text, false);
    const auto got_special = t.encode(text, true);
    BOOST_TEST(got == ordinary, "ordinary '" << text.substr(0, 60) << "': got " << show(got)
                                              << " want " << show(ordinary));
    BOOST_TEST(got_special == special, "special '" << text.substr(0, 60) << "': got "
                                                   << show(got_special) << " want "
                                                   << show(special));
    BOOST_TEST(t.decode(got) == text);
    BOOST_TEST(t.decode(got_special, true) == text);
    ++checked;
  }
  BOOST_TEST_MESSAGE(checked << " strings equal tiktoken's encodings");
}

BOOST_AUTO_TEST_CASE(a_piece_that_is_a_token_maps_directly) {
  const auto& t = fixture();
  // The fixture adds these two tokens without the merges that would build them.
  for (const char* s : {" supercalifragilisticexpialidocious", "量子纠缠态"}) {
    const auto ids = t.encode(s);
    BOOST_TEST_REQUIRE(ids.size() == 1u, s);
    BOOST_TEST(t.token_to_piece(ids[0]) == s);
  }
  BOOST_TEST(t.encode(" supercalifragilisticexpialidociousness").size() > 1u);
}

BOOST_AUTO_TEST_CASE(special_tokens_parse_only_when_asked) {
  const auto& t = fixture();
  const int32_t im_end = *t.special_id("<|im_end|>");
  const int32_t call_begin = *t.special_id("<|tool_call_begin|>");
  BOOST_TEST(t.encode("<|im_end|>", true) == std::vector<int32_t>{im_end});
  const auto plain = t.encode("<|im_end|>", false);
  BOOST_TEST(plain.size() > 1u);
  for (int32_t id : plain) BOOST_TEST(!t.is_special(id));
  const auto mixed = t.encode("a<|im_end|>b<|tool_call_begin|>", true);
  BOOST_TEST_REQUIRE(mixed.size() == 4u);
  BOOST_TEST(mixed[1] == im_end);
  BOOST_TEST(mixed[3] == call_begin);
  // Control tokens render on request; tool-call markers ("special": false) always.
  BOOST_TEST(t.decode(mixed) == "ab<|tool_call_begin|>");
  BOOST_TEST(t.decode(mixed, true) == "a<|im_end|>b<|tool_call_begin|>");
  BOOST_TEST(t.token_to_piece(im_end).empty());
  BOOST_TEST(t.token_to_piece(im_end, true) == "<|im_end|>");
  BOOST_TEST(t.token_to_piece(t.vocab_size()).empty());
  BOOST_TEST(t.token_to_piece(-5).empty());
  const std::vector<int32_t> bad{-1, t.vocab_size(), 1 << 30};
  BOOST_TEST(t.decode(bad, true).empty());
}

BOOST_AUTO_TEST_CASE(random_bytes_round_trip) {
  const auto& t = fixture();
  std::mt19937 rng(42);
  const std::string pieces[] = {"中", "文", "é", "😀", " ", "\n", "\t", "'s", "A", "z", "9",
                                "<|im_end|>", "\xff", "\xc3", "\xe4\xb8", "\x80"};
  for (int round = 0; round < 400; ++round) {
    std::string s;
    const int len = static_cast<int>(rng() % 200);
    for (int i = 0; i < len; ++i) {
      if (rng() % 3 == 0) {
        s += pieces[rng() % std::size(pieces)];
      } else {
        s += static_cast<char>(rng() % 256);
      }
    }
    const auto ids = t.encode(s);
    BOOST_TEST_REQUIRE(t.decode(ids) == s, "round " << round);
    for (int32_t id : ids) BOOST_TEST_REQUIRE((id >= 0 && id < t.num_ranks()));
    BOOST_TEST_REQUIRE(t.decode(t.encode(s, true), true) == s, "round " << round);
  }
}

BOOST_AUTO_TEST_CASE(long_pieces_encode_in_near_linear_time) {
  const auto& t = fixture();
  // One letter piece of 200 KB and one Han piece of 300 KB: the heap merge keeps these fast.
  std::string latin(200000, 'x');
  for (size_t i = 0; i < latin.size(); i += 7) latin[i] = 'a' + static_cast<char>(i % 26);
  std::string han;
  for (int i = 0; i < 100000; ++i) han += (i % 2) ? "中" : "文";
  for (const std::string* s : {&latin, &han}) {
    const auto start = std::chrono::steady_clock::now();
    const auto ids = t.encode(*s);
    const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    BOOST_TEST_MESSAGE(s->size() << " bytes -> " << ids.size() << " ids in " << secs << " s");
    BOOST_TEST(t.decode(ids) == *s);
    BOOST_TEST(secs < 5.0);  // quadratic merging takes minutes here
  }
}

BOOST_AUTO_TEST_CASE(pattern_translation) {
  using troupe::tiktoken_pattern_to_pcre2;
  const std::string kimi = tiktoken_pattern_to_pcre2(troupe::kimi_pat_str);
  BOOST_TEST(kimi.find("&&") == std::string::npos, kimi);
  BOOST_TEST(tiktoken_pattern_to_pcre2("[\\p{L}&&[^\\p{Han}]]+").find("(?=[^\\p{") == 3u);
  BOOST_TEST(tiktoken_pattern_to_pcre2("a[bc]d") == "a[bc]d");
  BOOST_TEST(tiktoken_pattern_to_pcre2("[a[bc]]") == "[abc]");
  BOOST_TEST(tiktoken_pattern_to_pcre2("\\p{L}\\p{Lu}\\d") == "\\p{L}\\p{Lu}\\d");
  // \s is White_Space, as in Rust: PCRE2's own \s would also take U+180E.
  BOOST_TEST(tiktoken_pattern_to_pcre2("\\s").find("\\x{3000}") != std::string::npos);
  BOOST_TEST(tiktoken_pattern_to_pcre2("\\S").starts_with("[^"));
  BOOST_TEST(tiktoken_pattern_to_pcre2("[^\\s]").find("\\s") == std::string::npos);
  BOOST_TEST(tiktoken_pattern_to_pcre2("[^\\r\\n]") == "[^\\r\\n]");
  BOOST_CHECK_THROW(tiktoken_pattern_to_pcre2("[^a&&b]"), troupe::error);
  BOOST_CHECK_THROW(tiktoken_pattern_to_pcre2("[abc"), troupe::error);
  // The intersection excludes Han from the letter classes: Han text is its own piece, and CJK
  // punctuation (Script=Common, though Script_Extensions has Han) is not Han.
  const auto& t = fixture();
  const auto a = t.encode("abc中文");
  const auto b = t.encode("abc");
  BOOST_TEST(std::vector<int32_t>(a.begin(), a.begin() + static_cast<long>(b.size())) == b);
}

BOOST_AUTO_TEST_CASE(pat_str_from_the_config_replaces_kimis) {
  scratch s;
  std::string cfg = slurp(s.dir / "tokenizer_config.json");
  // Digits one at a time, everything else as Kimi does.
  std::string pat = troupe::kimi_pat_str;
  const std::string kimi_digits = "\\p{N}{1,3}";
  pat.replace(pat.find(kimi_digits), kimi_digits.size(), "\\p{N}");
  cfg.insert(cfg.find('{') + 1, "\n  \"pat_str\": " + troupe::json::quote(pat) + ",");
  s.write("tokenizer_config.json", cfg);
  const auto t = tiktoken_tokenizer::from_directory(s.dir);
  const auto ids = t.encode("12345");
  BOOST_TEST(ids.size() == 5u);
  BOOST_TEST(fixture().encode("12345").size() < 5u);
  // A pattern that does not compile names the config.
  std::string bad = slurp(fixture_dir / "tokenizer_config.json");
  bad.insert(bad.find('{') + 1, "\n  \"pat_str\": \"(unclosed\",");
  s.write("tokenizer_config.json", bad);
  expect_load_error(s, errc::invalid_argument, "tokenizer_config.json", {"does not compile"});
}

BOOST_AUTO_TEST_CASE(missing_files_are_not_found) {
  scratch s;
  fs::remove(s.dir / "tiktoken.model");
  expect_load_error(s, errc::not_found, "tiktoken.model", {"no such file"});
  scratch s2;
  fs::remove(s2.dir / "tokenizer_config.json");
  expect_load_error(s2, errc::not_found, "tokenizer_config.json", {"no such file"});
}

BOOST_AUTO_TEST_CASE(malformed_model_lines_name_file_and_line) {
  const std::string good = slurp(fixture_dir / "tiktoken.model");
  // Replace line 3 (1-based) with `text`.
  auto with_line3 = [&](const std::string& text) {
    size_t a = good.find('\n') + 1;
    a = good.find('\n', a) + 1;
    const size_t b = good.find('\n', a);
    return good.substr(0, a) + text + good.substr(b);
  };
  const size_t first_nl = good.find('\n');
  const std::string line1 = good.substr(0, first_nl);
  const std::string rank1 = line1.substr(line1.find(' ') + 1);
  struct bad_case {
    std::string text;
    std::vector<std::string> parts;
  };
  const std::vector<bad_case> cases{
    {with_line3("AQ!= 2"), {":3:", "base64"}},
    {with_line3("AQ 2"), {":3:", "base64"}},
    {with_line3("Ag== two"), {":3:", "rank 'two'", "integer"}},
    {with_line3("Ag== -2"), {":3:", "rank '-2'"}},
    {with_line3("Ag== 2.5"), {":3:", "rank '2.5'"}},
    {with_line3("Ag==2"), {":3:", "expected '<base64 token> <rank>'"}},
    {with_line3("Ag== 2 7"), {":3:", "expected"}},
    {with_line3("Ag== " + rank1), {":3:", "duplicate rank " + rank1, "line 1"}},
    {with_line3("AA== 2"), {":3:", "duplicate token"}},
    {with_line3("Ag== 99999"), {":3:", "rank 99999 is not below"}},
    {with_line3("//79/A== 2"), {"0x02", "no rank"}},
    {"", {"no tokens"}},
  };
  for (const auto& c : cases) {
    scratch s;
    s.write("tiktoken.model", c.text);
    BOOST_TEST_CONTEXT(c.parts.front()) {
      expect_load_error(s, errc::parse_error, "tiktoken.model", c.parts);
    }
  }
}

BOOST_AUTO_TEST_CASE(malformed_configs_name_file_and_key) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases{
    {"{\"added_tokens_decoder\": ", {"tokenizer_config.json"}},
    {"[1, 2]", {"object at the top level"}},
    {"{\"added_tokens_decoder\": []}", {"\"added_tokens_decoder\" must be an object"}},
    {"{\"added_tokens_decoder\": {\"x\": {\"content\": \"<a>\"}}}", {"[\"x\"]", "not a token id"}},
    {"{\"added_tokens_decoder\": {\"2000\": {\"special\": true}}}", {"[\"2000\"]", "content"}},
    {"{\"bos_token\": \"<s>\"}", {"\"bos_token\" is '<s>'"}},
    {"{\"pat_str\": 7}", {"\"pat_str\" must be a string"}},
  };
  for (const auto& [text, parts] : cases) {
    scratch s;
    s.write("tokenizer_config.json", text);
    BOOST_TEST_CONTEXT(text) {
      expect_load_error(s, errc::parse_error, "tokenizer_config.json", parts);
    }
  }
  // Without special-token entries all 256 ids are reserved, so the default "[BOS]" is unknown.
  scratch s;
  s.write("tokenizer_config.json", "{\"bos_token\": null, \"eos_token\": null}");
  expect_load_error(s, errc::parse_error, "tokenizer_config.json", {"[BOS]"});
}
