// SentencePiece and byte-level BPE tokenizers against llama.cpp on real vocabularies: the
// vocab-only GGUF files of llama.cpp's tokenizer tests (models/ggml-vocab-*.gguf with their .inp
// inputs and llama.cpp's .out ids, installed by scripts/install-deps), several hundred more
// strings tokenised by llama.cpp (tests/fixtures/llama/spm_vocab_reference.json), and a tiny
// SentencePiece vocabulary written here whose merges, byte fallback and specials are known.

#define BOOST_TEST_MODULE llama_tokenizer_vocabs
#include <unistd.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"
#include "troupe/json.hpp"
#include "troupe/llama/tokenizer.hpp"

namespace fs = std::filesystem;
using troupe::errc;
using troupe::gguf_file;
using troupe::gguf_value_type;
using troupe::llama::token_type;
using troupe::llama::tokenizer;

namespace {

/// $TROUPE_MODEL_DIR/llama.cpp-vocab, else ~/.cache/troupe/models/llama.cpp-vocab; empty when
/// absent.
fs::path vocab_dir() {
  fs::path dir;
  if (const char* d = std::getenv("TROUPE_MODEL_DIR"); d != nullptr && *d != 0) {
    dir = d;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    dir = fs::path(home) / ".cache/troupe/models";
  }
  dir /= "llama.cpp-vocab";
  return fs::is_directory(dir) ? dir : fs::path();
}

void report(const std::string& line) {
  std::cout << line << std::endl;
  BOOST_TEST_MESSAGE(line);
}

void skip_without_vocabularies() {
  report(
      "SKIPPED: llama.cpp's vocabularies are not installed (run scripts/install-deps, which "
      "puts them into ${TROUPE_MODEL_DIR:-~/.cache/troupe/models}/llama.cpp-vocab)");
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The tokenizer model and pre-tokenizer of each vocabulary of llama.cpp's tests, and whether
/// troupe supports it. A file missing from this table fails the test, so that a new vocabulary
/// in a future llama.cpp is looked at.
struct vocab_expectation {
  bool supported;
  const char* refused_value;  // the tokenizer.ggml.model or .pre value the refusal names
};
const std::map<std::string, vocab_expectation>& expectations() {
  static const std::map<std::string, vocab_expectation> m{
      {"ggml-vocab-llama-spm.gguf", {true, nullptr}},       // llama (SentencePiece)
      {"ggml-vocab-phi-3.gguf", {true, nullptr}},           // llama (SentencePiece)
      {"ggml-vocab-baichuan.gguf", {true, nullptr}},        // llama (SentencePiece), no .inp
      {"ggml-vocab-gpt-2.gguf", {true, nullptr}},           // gpt2, pre gpt-2
      {"ggml-vocab-llama-bpe.gguf", {true, nullptr}},       // gpt2, pre llama-bpe
      {"ggml-vocab-starcoder.gguf", {true, nullptr}},       // gpt2, pre starcoder
      {"ggml-vocab-qwen2.gguf", {true, nullptr}},           // gpt2, pre qwen2
      {"ggml-vocab-refact.gguf", {true, nullptr}},          // gpt2, pre refact
      {"ggml-vocab-command-r.gguf", {true, nullptr}},       // gpt2, pre command-r
      {"ggml-vocab-mpt.gguf", {true, nullptr}},             // gpt2, pre mpt
      {"ggml-vocab-aquila.gguf", {true, nullptr}},          // gpt2, no pre (default), no .inp
      {"ggml-vocab-gpt-neox.gguf", {true, nullptr}},        // gpt2, no pre (default), no .inp
      {"ggml-vocab-falcon.gguf", {true, nullptr}},          // gpt2, pre falcon
      {"ggml-vocab-qwen35.gguf", {true, nullptr}},          // gpt2, pre qwen35
      {"ggml-vocab-deepseek-coder.gguf", {true, nullptr}},  // gpt2, pre deepseek-coder
      {"ggml-vocab-deepseek-llm.gguf", {true, nullptr}},    // gpt2, pre deepseek-llm
      {"ggml-vocab-bert-bge.gguf", {false, "bert"}},        // WordPiece
      {"ggml-vocab-gemma-4.gguf", {false, "gemma4"}},       // Gemma 4's BPE
      {"ggml-vocab-nomic-bert-moe.gguf", {false, "t5"}},    // Unigram
  };
  return m;
}

/// A .inp/.out pair split as llama.cpp's tests/test-tokenizer-0.cpp does: inputs separated by
/// "\n__ggml_vocab_test__\n", one line of space-separated ids per input.
struct vocab_case {
  std::string text;
  std::vector<int32_t> ids;
};
std::vector<vocab_case> read_cases(const fs::path& inp, const fs::path& out) {
  const std::string raw = read_file(inp);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0; pos < raw.size();) {
    const size_t next = raw.find(sep, pos);
    if (next == std::string::npos) {
      inputs.push_back(raw.substr(pos));
      break;
    }
    inputs.push_back(raw.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<vocab_case> cases;
  std::istringstream lines(read_file(out));
  std::string line;
  for (size_t i = 0; std::getline(lines, line); ++i) {
    BOOST_REQUIRE_LT(i, inputs.size());
    vocab_case c{inputs[i], {}};
    std::istringstream ids(line);
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
  }
  BOOST_REQUIRE_EQUAL(cases.size(), inputs.size());
  return cases;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

/// A string field of a fixture case, stored as text or, when not UTF-8, as "<name>_hex".
std::string field(const troupe::json::value& c, const std::string& name) {
  if (const auto* v = c.find(name)) return v->as_string();
  return from_hex(c.find(name + "_hex")->as_string());
}

std::vector<int32_t> ids_of(const troupe::json::value& v) {
  std::vector<int32_t> out;
  for (const auto& x : v.as_array()) out.push_back(static_cast<int32_t>(x.as_int()));
  return out;
}

/// Writes GGUF files that hold only metadata (enough for a tokenizer).
class metadata_writer {
 public:
  void string(const std::string& key, const std::string& v) {
    entry(key, gguf_value_type::string);
    str(v);
  }
  void u32(const std::string& key, uint32_t v) {
    entry(key, gguf_value_type::u32);
    pod(v);
  }
  void boolean(const std::string& key, bool v) {
    entry(key, gguf_value_type::boolean);
    pod(static_cast<uint8_t>(v));
  }
  void strings(const std::string& key, const std::vector<std::string>& v) {
    array(key, gguf_value_type::string, v.size());
    for (const auto& s : v) str(s);
  }
  void floats(const std::string& key, const std::vector<float>& v) {
    array(key, gguf_value_type::f32, v.size());
    for (float x : v) pod(x);
  }
  void ints(const std::string& key, const std::vector<int32_t>& v) {
    array(key, gguf_value_type::i32, v.size());
    for (int32_t x : v) pod(x);
  }
  fs::path write(const fs::path& dir, const std::string& name) const {
    std::string out = "GGUF";
    const uint32_t version = 3;
    const uint64_t tensors = 0;
    out.append(reinterpret_cast<const char*>(&version), 4);
    out.append(reinterpret_cast<const char*>(&tensors), 8);
    out.append(reinterpret_cast<const char*>(&count_), 8);
    out += body_;
    while (out.size() % 32) out += '\0';
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary).write(out.data(), static_cast<std::streamsize>(out.size()));
    return p;
  }

 private:
  template <class T>
  void pod(const T& v) {
    body_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& s) {
    pod(static_cast<uint64_t>(s.size()));
    body_ += s;
  }
  void entry(const std::string& key, gguf_value_type t) {
    str(key);
    pod(static_cast<uint32_t>(t));
    ++count_;
  }
  void array(const std::string& key, gguf_value_type elem, size_t n) {
    entry(key, gguf_value_type::array);
    pod(static_cast<uint32_t>(elem));
    pod(static_cast<uint64_t>(n));
  }
  std::string body_;
  uint64_t count_ = 0;
};

struct scratch_dir {
  scratch_dir() {
    path =
        fs::temp_directory_path() / ("troupe_test_tokenizer_vocabs_" + std::to_string(::getpid()) +
                                     "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
  static inline int counter = 0;
};

/// A tiny SentencePiece vocabulary: <unk> <s> </s>, byte tokens for \n, 0xC3 and 0xA9 only, a
/// user-defined <|user|>, and normal tokens whose scores the caller may change.
struct tiny_spm {
  std::vector<std::string> tokens{"<unk>",
                                  "<s>",
                                  "</s>",
                                  "<0x0A>",
                                  "<0xC3>",
                                  "<0xA9>",
                                  "<|user|>",
                                  "\xE2\x96\x81",
                                  "a",
                                  "b",
                                  "c",
                                  "ab",
                                  "bc",
                                  "\xE2\x96\x81"
                                  "a",
                                  "aa",
                                  "\xE2\x96\x81"
                                  "b",
                                  "hi",
                                  "\xE2\x96\x81"
                                  "hi"};
  std::vector<int32_t> types{2, 3, 3, 6, 6, 6, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  std::vector<float> scores{0, 0, 0, 0, 0, 0, 0, -1, -2, -2, -2, -5, -1, -3, -4, -3, -6, -2};
  bool add_space_prefix = true;
  bool add_eos = false;
  std::string model = "llama";

  void set_score(const std::string& token, float s) {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == token) scores[i] = s;
  }
  int32_t id(const std::string& token) const {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i] == token) return static_cast<int32_t>(i);
    BOOST_FAIL("no token " << token);
    return -1;
  }
  tokenizer load(const scratch_dir& dir) const {
    metadata_writer w;
    w.string("general.architecture", "llama");
    w.string("tokenizer.ggml.model", model);
    w.strings("tokenizer.ggml.tokens", tokens);
    w.floats("tokenizer.ggml.scores", scores);
    w.ints("tokenizer.ggml.token_type", types);
    w.boolean("tokenizer.ggml.add_space_prefix", add_space_prefix);
    w.boolean("tokenizer.ggml.add_eos_token", add_eos);
    // BOS, EOS, UNK and add_bos from llama.cpp's SentencePiece defaults (1, 2, 0, true).
    auto file = gguf_file::open(w.write(dir.path, "tiny_spm.gguf"));
    return tokenizer::from_gguf(file);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(llama_cpp_vocabularies_tokenise_as_llama_cpp) {
  const fs::path dir = vocab_dir();
  if (dir.empty()) return skip_without_vocabularies();
  std::set<std::string> seen;
  int vocabs_checked = 0;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".gguf") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& path : files) {
    const std::string name = path.filename().string();
    seen.insert(name);
    BOOST_TEST_CONTEXT("vocabulary " << name) {
      auto it = expectations().find(name);
      BOOST_REQUIRE_MESSAGE(it != expectations().end(), "a vocabulary this test does not know");
      auto file = gguf_file::open(path);
      if (!it->second.supported) {
        try {
          (void)tokenizer::from_gguf(file);
          BOOST_ERROR("an unsupported vocabulary was accepted");
        } catch (const troupe::error& e) {
          BOOST_CHECK_EQUAL(e.code(), errc::unsupported);
          const std::string what = e.what();
          BOOST_CHECK_MESSAGE(what.find(name) != std::string::npos, what);
          BOOST_CHECK_MESSAGE(
              what.find(std::string("'") + it->second.refused_value + "'") != std::string::npos,
              what);
          report(name + ": refused (" + what.substr(what.find(": ") + 2) + ")");
        }
        continue;
      }
      const tokenizer tok = tokenizer::from_gguf(file);
      const fs::path inp = path.string() + ".inp";
      if (!fs::exists(inp)) {
        // No llama.cpp cases: the vocabulary loads, and text round-trips.
        for (const std::string t : {"Hello world", " leading space", "日本語 🦙 x=1;\n\tok"}) {
          BOOST_CHECK_EQUAL(tok.decode(tok.encode(t, false)), t);
        }
        report(name + ": loads (no llama.cpp cases in its test set)");
        continue;
      }
      int passed = 0, round_trips = 0, total = 0;
      for (const vocab_case& c : read_cases(inp, path.string() + ".out")) {
        BOOST_TEST_CONTEXT("input '" << c.text << "'") {
          // As tests/test-tokenizer-0.cpp: add_special = false, parse_special = false.
          const std::vector<int32_t> got = tok.encode(c.text, false, false);
          BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), c.ids.begin(), c.ids.end());
          passed += got == c.ids;
          const std::string back = tok.decode(c.ids);
          BOOST_CHECK_EQUAL(back, c.text);
          round_trips += back == c.text;
          ++total;
        }
      }
      ++vocabs_checked;
      report(name + ": " + std::to_string(passed) + "/" + std::to_string(total) +
             " inputs give llama.cpp's ids, " + std::to_string(round_trips) + "/" +
             std::to_string(total) + " decode back to the input (" + tok.pre_tokenizer() +
             (tok.is_sentencepiece() ? ", SentencePiece)" : ", byte-level BPE)"));
    }
  }
  for (const auto& [name, e] : expectations()) {
    BOOST_CHECK_MESSAGE(seen.count(name) == 1, name << " is missing from " << dir);
  }
  BOOST_CHECK_GE(vocabs_checked, 10);
}

// Files without tokenizer.ggml.add_bos_token get llama.cpp's default: BOS for SentencePiece and
// for the Llama 3 family's pre-tokenizers, none for other byte-level ones (GPT-2, Qwen2); the
// key decides where it is present (llama-spm has it).
BOOST_AUTO_TEST_CASE(bos_is_added_by_default_as_llama_cpp_does) {
  const fs::path dir = vocab_dir();
  if (dir.empty()) return skip_without_vocabularies();
  const std::pair<const char*, bool> cases[] = {{"ggml-vocab-llama-bpe.gguf", true},
                                                {"ggml-vocab-llama-spm.gguf", true},
                                                {"ggml-vocab-gpt-2.gguf", false},
                                                {"ggml-vocab-qwen2.gguf", false}};
  for (const auto& [file, adds] : cases) {
    BOOST_TEST_CONTEXT(file) {
      const troupe::gguf_file f = troupe::gguf_file::open(dir / file);
      const bool key = f.contains("tokenizer.ggml.add_bos_token");
      const auto tok = tokenizer::from_gguf(f);
      const auto ids = tok.encode("Hi", true, false);
      BOOST_REQUIRE(!ids.empty());
      BOOST_CHECK_EQUAL(ids.front() == tok.bos() && tok.bos() >= 0,
                        key ? f.get_bool("tokenizer.ggml.add_bos_token") : adds);
    }
  }
}

BOOST_AUTO_TEST_CASE(spm_vocabularies_match_llama_cpp_on_generated_strings) {
  const fs::path dir = vocab_dir();
  if (dir.empty()) return skip_without_vocabularies();
  const fs::path fixture =
      fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/llama/spm_vocab_reference.json";
  const troupe::json::value ref = troupe::json::parse(read_file(fixture), fixture.string());
  for (const auto& v : ref.find("vocabularies")->as_array()) {
    const std::string name = v.find("file")->as_string();
    auto file = gguf_file::open(dir / name);
    const tokenizer tok = tokenizer::from_gguf(file);
    BOOST_CHECK(tok.is_sentencepiece());
    int encoded = 0, decoded = 0, total = 0;
    for (const auto& c : v.find("cases")->as_array()) {
      const std::string text = field(c, "text");
      const bool add = c.find("add_special")->as_bool();
      const bool special = c.find("parse_special")->as_bool();
      BOOST_TEST_CONTEXT(name << " text '" << text << "' add_special " << add << " parse_special "
                              << special) {
        const std::vector<int32_t> expected = ids_of(*c.find("ids"));
        const std::vector<int32_t> got = tok.encode(text, add, special);
        BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), expected.begin(), expected.end());
        encoded += got == expected;
        const std::string back = tok.decode(expected, special);
        BOOST_CHECK_EQUAL(back, field(c, "decoded"));
        decoded += back == field(c, "decoded");
        ++total;
      }
    }
    report(name + ": " + std::to_string(encoded) + "/" + std::to_string(total) +
           " generated strings give llama.cpp's ids, " + std::to_string(decoded) + "/" +
           std::to_string(total) + " decode as llama_detokenize");
  }
}

// Pre-tokenizers that llama.cpp's vocabulary test set has no file for (Mistral Nemo's tekken,
// Phi-4's gpt-4o, dbrx, smaug-bpe, viking, poro-chat, bloom, gpt3-finnish, seed-coder), each over
// Llama 3's vocabulary with tokenizer.ggml.pre rewritten, against llama.cpp on the same rewrite
// (tools/reference/llama_cpp_pre_tokenizer_reference.py: its test strings and 60 generated).
BOOST_AUTO_TEST_CASE(other_bpe_pre_tokenizers_match_llama_cpp) {
  const fs::path dir = vocab_dir();
  if (dir.empty()) return skip_without_vocabularies();
  const fs::path fixture =
      fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/llama/bpe_pre_reference.json";
  const troupe::json::value ref = troupe::json::parse(read_file(fixture), fixture.string());
  auto base = gguf_file::open(dir / ref.find("base")->as_string());
  const auto tokens = base.get_string_array("tokenizer.ggml.tokens");
  const auto merges = base.get_string_array("tokenizer.ggml.merges");
  std::vector<int32_t> types;
  for (int64_t t : base.get_int_array("tokenizer.ggml.token_type"))
    types.push_back(static_cast<int32_t>(t));
  scratch_dir tmp;
  for (const auto& p : ref.find("pre_tokenizers")->as_array()) {
    const std::string pre = p.find("pre")->as_string();
    metadata_writer w;
    w.string("tokenizer.ggml.model", "gpt2");
    w.string("tokenizer.ggml.pre", pre);
    w.strings("tokenizer.ggml.tokens", tokens);
    w.ints("tokenizer.ggml.token_type", types);
    w.strings("tokenizer.ggml.merges", merges);
    auto file = gguf_file::open(w.write(tmp.path, pre + ".gguf"));
    const tokenizer tok = tokenizer::from_gguf(file);
    BOOST_CHECK_EQUAL(tok.pre_tokenizer(), pre);
    int same = 0, total = 0;
    for (const auto& c : p.find("cases")->as_array()) {
      const std::string text = field(c, "text");
      BOOST_TEST_CONTEXT("pre " << pre << ", text '" << text << "'") {
        const std::vector<int32_t> expected = ids_of(*c.find("ids"));
        const std::vector<int32_t> got = tok.encode(text, false, false);
        BOOST_CHECK_EQUAL_COLLECTIONS(got.begin(), got.end(), expected.begin(), expected.end());
        same += got == expected;
        ++total;
      }
    }
    report("pre-tokenizer " + pre + ": " + std::to_string(same) + "/" + std::to_string(total) +
           " strings give llama.cpp's ids");
  }
}

BOOST_AUTO_TEST_CASE(spm_scores_decide_the_merges) {
  scratch_dir dir;
  tiny_spm v;
  v.add_space_prefix = false;
  {
    // "bc" (-1) beats "ab" (-5): a + bc.
    const tokenizer tok = v.load(dir);
    const std::vector<int32_t> ids = tok.encode("abc", false);
    const std::vector<int32_t> expected{v.id("a"), v.id("bc")};
    BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  }
  {
    // The same text with "ab" scored higher: ab + c.
    v.set_score("ab", -0.5f);
    const tokenizer tok = v.load(dir);
    const std::vector<int32_t> ids = tok.encode("abc", false);
    const std::vector<int32_t> expected{v.id("ab"), v.id("c")};
    BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  }
  {
    // Equal scores: the leftmost pair merges first ("aa" + "a", not "a" + "aa").
    const tokenizer tok = v.load(dir);
    const std::vector<int32_t> ids = tok.encode("aaa", false);
    const std::vector<int32_t> expected{v.id("aa"), v.id("a")};
    BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  }
}

BOOST_AUTO_TEST_CASE(spm_space_prefix_and_spaces) {
  scratch_dir dir;
  tiny_spm v;
  const tokenizer tok = v.load(dir);
  BOOST_CHECK(tok.is_sentencepiece());
  BOOST_CHECK(tok.adds_space_prefix());
  BOOST_CHECK_EQUAL(tok.bos(), 1);
  BOOST_CHECK_EQUAL(tok.eos(), 2);
  BOOST_CHECK_EQUAL(tok.unknown(), 0);
  // "hi b": the prefix makes "▁hi"; the inner space joins the next word.
  std::vector<int32_t> ids = tok.encode("hi b", false);
  std::vector<int32_t> expected{v.id("\xE2\x96\x81hi"), v.id("\xE2\x96\x81"
                                                             "b")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  // add_special: BOS by llama.cpp's SentencePiece default (the file does not say).
  ids = tok.encode("hi", true);
  expected = {1, v.id("\xE2\x96\x81hi")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  BOOST_CHECK(tok.encode("", false).empty());
  BOOST_CHECK_EQUAL(tok.encode("", true).size(), 1u);
  // Pieces read "▁" as a space; decode drops the prefix's space from the first token only,
  // and not when BOS comes first (llama_detokenize).
  BOOST_CHECK_EQUAL(tok.token_to_piece(v.id("\xE2\x96\x81hi")), " hi");
  BOOST_CHECK_EQUAL(tok.decode(tok.encode("hi b", false)), "hi b");
  BOOST_CHECK_EQUAL(tok.decode(tok.encode("hi b", true)), " hi b");
  BOOST_CHECK_EQUAL(tok.decode(tok.encode("  hi", false)), "  hi");
  // Without the prefix no space is added, and none is dropped.
  tiny_spm plain = v;
  plain.add_space_prefix = false;
  const tokenizer tok2 = plain.load(dir);
  BOOST_CHECK(!tok2.adds_space_prefix());
  ids = tok2.encode("hi", false);
  expected = {v.id("hi")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  BOOST_CHECK_EQUAL(tok2.decode(tok2.encode(" hi", false)), " hi");
  // add_eos_token: EOS appended with add_special.
  tiny_spm with_eos = v;
  with_eos.add_eos = true;
  const tokenizer tok3 = with_eos.load(dir);
  ids = tok3.encode("hi", true);
  expected = {1, v.id("\xE2\x96\x81hi"), 2};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
}

BOOST_AUTO_TEST_CASE(spm_byte_fallback_and_unknown_bytes) {
  scratch_dir dir;
  tiny_spm v;
  v.add_space_prefix = false;
  const tokenizer tok = v.load(dir);
  // "é" (C3 A9) is no token: its two byte tokens; "\n" is <0x0A>.
  std::vector<int32_t> ids = tok.encode("a\xC3\xA9\n", false);
  std::vector<int32_t> expected{v.id("a"), v.id("<0xC3>"), v.id("<0xA9>"), v.id("<0x0A>")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  BOOST_CHECK_EQUAL(tok.token_to_piece(v.id("<0xC3>")), "\xC3");
  BOOST_CHECK_EQUAL(tok.decode(ids), "a\xC3\xA9\n");
  // "☃" (E2 98 83) has no byte tokens: one <unk> for the character; "\x01" another.
  ids = tok.encode(
      "a\xE2\x98\x83"
      "b\x01",
      false);
  expected = {v.id("a"), 0, v.id("b"), 0};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  BOOST_CHECK_EQUAL(tok.decode(ids), "ab");
  BOOST_CHECK_EQUAL(tok.decode(ids, true), "a<unk>b<unk>");
  // Half a character: C3 alone still has its byte token.
  ids = tok.encode("\xC3", false);
  expected = {v.id("<0xC3>")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
}

BOOST_AUTO_TEST_CASE(spm_special_tokens) {
  scratch_dir dir;
  tiny_spm v;
  const tokenizer tok = v.load(dir);
  const std::string u = "\xE2\x96\x81";
  // Control tokens only with parse_special; after one, the space prefix comes again.
  std::vector<int32_t> ids = tok.encode("hi</s>hi", false, true);
  std::vector<int32_t> expected{v.id(u + "hi"), 2, v.id(u + "hi")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  ids = tok.encode("</s>", false, false);
  BOOST_CHECK(std::find(ids.begin(), ids.end(), 2) == ids.end());
  // User-defined tokens match always, and also bring the prefix back after them.
  ids = tok.encode("hi<|user|>hi", false, false);
  expected = {v.id(u + "hi"), v.id("<|user|>"), v.id(u + "hi")};
  BOOST_CHECK_EQUAL_COLLECTIONS(ids.begin(), ids.end(), expected.begin(), expected.end());
  BOOST_CHECK_EQUAL(tok.token_to_piece(v.id("<|user|>")), "<|user|>");
  BOOST_CHECK_EQUAL(tok.token_to_piece(2), "");
  BOOST_CHECK_EQUAL(tok.token_to_piece(2, true), "</s>");
  BOOST_CHECK(tok.is_end_of_generation(2));
  BOOST_CHECK_EQUAL(tok.token_to_piece(-1), "");
  BOOST_CHECK_EQUAL(tok.token_to_piece(tok.vocab_size()), "");
  BOOST_CHECK_EQUAL(tok.token_text(v.id(u + "hi")), u + "hi");
}

BOOST_AUTO_TEST_CASE(unknown_tokenizer_models_are_refused_naming_file_and_value) {
  scratch_dir dir;
  tiny_spm v;
  v.model = "bert";
  try {
    (void)v.load(dir);
    BOOST_ERROR("tokenizer.ggml.model 'bert' was accepted");
  } catch (const troupe::error& e) {
    BOOST_CHECK_EQUAL(e.code(), errc::unsupported);
    const std::string what = e.what();
    BOOST_CHECK_MESSAGE(what.find("tiny_spm.gguf") != std::string::npos, what);
    BOOST_CHECK_MESSAGE(what.find("'bert'") != std::string::npos, what);
  }
  // A byte-level BPE file with a pre-tokenizer troupe does not know.
  metadata_writer w;
  w.string("tokenizer.ggml.model", "gpt2");
  w.string("tokenizer.ggml.pre", "no-such-pre");
  w.strings("tokenizer.ggml.tokens", {"a", "b", "ab"});
  w.strings("tokenizer.ggml.merges", {"a b"});
  auto file = gguf_file::open(w.write(dir.path, "unknown_pre.gguf"));
  try {
    (void)tokenizer::from_gguf(file);
    BOOST_ERROR("tokenizer.ggml.pre 'no-such-pre' was accepted");
  } catch (const troupe::error& e) {
    BOOST_CHECK_EQUAL(e.code(), errc::unsupported);
    const std::string what = e.what();
    BOOST_CHECK_MESSAGE(what.find("unknown_pre.gguf") != std::string::npos, what);
    BOOST_CHECK_MESSAGE(what.find("'no-such-pre'") != std::string::npos, what);
  }
}
