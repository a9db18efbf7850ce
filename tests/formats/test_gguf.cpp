// GGUF reader: files written by a small writer in this test (versions 2 and 3, every metadata
// type), one corruption per case with the exact complaint expected, truncation at every header
// byte, random byte flips, and the real SmolLM2 file when it is in the model cache.

#define BOOST_TEST_MODULE gguf
#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/formats/gguf.hpp"
#include "gguf_test_writer.hpp"

namespace fs = std::filesystem;
using troupe::errc;
using troupe::gguf_file;
using troupe::gguf_value_type;

namespace {

using troupe::test::gguf_writer;
using troupe::test::scratch;

template <class T>
void patch(std::string& bytes, size_t at, T v) {
  std::memcpy(bytes.data() + at, &v, sizeof v);
}

std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 31 + seed * 7) & 0xFF);
  return s;
}

/// A small valid model: metadata of several kinds and four tensors of different types.
gguf_writer small_model(uint32_t version = 3) {
  gguf_writer w(version);
  w.kv_string("general.architecture", "llama");
  w.kv("llama.block_count", gguf_value_type::u32, uint32_t(2));
  w.kv("llama.context_length", gguf_value_type::i32, int32_t(8192));
  w.kv("llama.attention.layer_norm_rms_epsilon", gguf_value_type::f32, 1e-5f);
  w.kv_string_array("tokenizer.ggml.tokens", {"<s>", "hello", "", "world"});
  w.kv_array("tokenizer.ggml.token_type", gguf_value_type::i32, std::vector<int32_t>{3, 1, 1, 1});
  w.tensor("token_embd.weight", 8, {32, 4}, pattern(4 * 34, 1));  // Q8_0
  w.tensor("blk.0.attn_q.weight", 3, {64, 2}, pattern(2 * 2 * 20, 2));  // Q4_1
  w.tensor("output_norm.weight", 0, {5}, pattern(20, 3));  // F32, odd size
  w.tensor("blk.0.ffn_down.weight", 12, {256, 3}, pattern(3 * 144, 4));  // Q4_K
  return w;
}

/// Opens the bytes and expects a troupe::error with `code` whose message contains every part.
void expect_error(const std::string& bytes, errc code, const std::vector<std::string>& parts) {
  scratch s;
  const fs::path p = s.write(bytes);
  try {
    gguf_file f = gguf_file::open(p);
    BOOST_FAIL("opened a corrupted file without complaint");
  } catch (const troupe::error& e) {
    BOOST_TEST_MESSAGE(e.message());
    BOOST_TEST(troupe::to_string(e.code()) == troupe::to_string(code), e.message());
    BOOST_TEST(e.message().find(p.string()) == 0u, "message starts with the path: " << e.message());
    for (const auto& part : parts)
      BOOST_TEST(e.message().find(part) != std::string::npos, "'" << part << "' in: " << e.message());
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(reads_versions_2_and_3) {
  for (uint32_t version : {2u, 3u}) {
    BOOST_TEST_CONTEXT("version " << version) {
      gguf_writer w = small_model(version);
      const std::string bytes = w.bytes();
      scratch s;
      gguf_file f = gguf_file::open(s.write(bytes));
      BOOST_TEST(f.version() == version);
      BOOST_TEST(f.alignment() == 32u);
      BOOST_TEST(f.file_size() == bytes.size());
      BOOST_TEST(f.data_offset() == w.at["data"]);
      BOOST_TEST(f.metadata().size() == 6u);
      BOOST_TEST(f.get_string("general.architecture") == "llama");
      BOOST_TEST(f.get_u32("llama.block_count") == 2u);
      BOOST_TEST(f.get_u32("llama.context_length") == 8192u);  // stored as i32
      BOOST_TEST(f.get_f32("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
      BOOST_TEST(f.get_string_array("tokenizer.ggml.tokens") ==
                 (std::vector<std::string>{"<s>", "hello", "", "world"}));
      BOOST_TEST(f.get_int_array("tokenizer.ggml.token_type") == (std::vector<int64_t>{3, 1, 1, 1}));
      BOOST_TEST_REQUIRE(f.tensors().size() == 4u);
      const auto& q = f.tensor("blk.0.attn_q.weight");
      BOOST_TEST(q.type == 3u);
      BOOST_TEST(troupe::ggml_type_name(q.type) == "Q4_1");
      BOOST_TEST(q.shape == (std::vector<uint64_t>{64, 2}));
      BOOST_TEST(q.elements() == 128u);
      BOOST_TEST(q.size == 80u);
      BOOST_TEST(f.tensor("blk.0.ffn_down.weight").size == 3u * 144u);
      for (int i = 0; i < 4; ++i) {
        const auto& t = f.tensors()[i];
        BOOST_TEST(t.offset % 32 == 0u);
        BOOST_TEST(std::memcmp(t.data, pattern(t.size, i + 1).data(), t.size) == 0, t.name);
        BOOST_TEST(t.data == reinterpret_cast<const std::byte*>(t.bytes().data()));
      }
      BOOST_TEST(f.find_tensor("nope") == nullptr);
      BOOST_TEST(!f.contains("nope"));
    }
  }
}

BOOST_AUTO_TEST_CASE(every_metadata_type_and_custom_alignment) {
  gguf_writer w;
  w.kv("u8", gguf_value_type::u8, uint8_t(200));
  w.kv("i8", gguf_value_type::i8, int8_t(-100));
  w.kv("u16", gguf_value_type::u16, uint16_t(60000));
  w.kv("i16", gguf_value_type::i16, int16_t(-30000));
  w.kv("u32", gguf_value_type::u32, uint32_t(4000000000u));
  w.kv("i32", gguf_value_type::i32, int32_t(-2000000000));
  w.kv("f32", gguf_value_type::f32, 3.5f);
  w.kv("bool", gguf_value_type::boolean, uint8_t(1));
  w.kv_string("string", "héllo wörld");
  w.kv("u64", gguf_value_type::u64, uint64_t(1) << 40);
  w.kv("i64", gguf_value_type::i64, -(int64_t(1) << 40));
  w.kv("f64", gguf_value_type::f64, 0.25);
  w.kv("general.alignment", gguf_value_type::u32, uint32_t(64));
  w.kv_array("a_u8", gguf_value_type::u8, std::vector<uint8_t>{1, 255});
  w.kv_array("a_i16", gguf_value_type::i16, std::vector<int16_t>{-5, 7});
  w.kv_array("a_u64", gguf_value_type::u64, std::vector<uint64_t>{1, uint64_t(1) << 62});
  w.kv_array("a_bool", gguf_value_type::boolean, std::vector<uint8_t>{0, 1, 1});
  w.kv_array("a_f32", gguf_value_type::f32, std::vector<float>{0.5f, -1.0f});
  w.kv_array("a_f64", gguf_value_type::f64, std::vector<double>{0.125});
  w.kv_array("a_empty", gguf_value_type::i32, std::vector<int32_t>{});
  w.kv_string_array("a_str", {"x", "yz"});
  w.alignment(64);
  w.tensor("a", 0, {3}, pattern(12, 1));
  w.tensor("b", 1, {7, 3}, pattern(42, 2));   // F16
  w.tensor("c", 30, {5}, pattern(10, 3));     // BF16
  w.tensor("d", 14, {256}, pattern(210, 4));  // Q6_K
  scratch s;
  gguf_file f = gguf_file::open(s.write(w.bytes()));
  BOOST_TEST(f.alignment() == 64u);
  BOOST_TEST(f.data_offset() % 64 == 0u);
  BOOST_TEST(f.get_u32("u8") == 200u);
  BOOST_TEST(f.get_i64("i8") == -100);
  BOOST_TEST(f.get_u32("u16") == 60000u);
  BOOST_TEST(f.get_i64("i16") == -30000);
  BOOST_TEST(f.get_u32("u32") == 4000000000u);
  BOOST_TEST(f.get_i64("i32") == -2000000000);
  BOOST_TEST(f.get_f32("f32") == 3.5f);
  BOOST_TEST(f.get_bool("bool"));
  BOOST_TEST(f.get_string("string") == "héllo wörld");
  BOOST_TEST(f.get_u64("u64") == uint64_t(1) << 40);
  BOOST_TEST(f.get_i64("i64") == -(int64_t(1) << 40));
  BOOST_TEST(f.get_f32("f64") == 0.25f);
  BOOST_TEST(f.get_int_array("a_u8") == (std::vector<int64_t>{1, 255}));
  BOOST_TEST(f.get_int_array("a_i16") == (std::vector<int64_t>{-5, 7}));
  BOOST_TEST(f.get_int_array("a_u64") == (std::vector<int64_t>{1, int64_t(1) << 62}));
  BOOST_TEST(f.get_int_array("a_bool") == (std::vector<int64_t>{0, 1, 1}));
  BOOST_TEST(f.get_float_array("a_f32") == (std::vector<float>{0.5f, -1.0f}));
  BOOST_TEST(f.get_float_array("a_f64") == (std::vector<float>{0.125f}));
  BOOST_TEST(f.get_int_array("a_empty").empty());
  BOOST_TEST(f.get_string_array("a_str") == (std::vector<std::string>{"x", "yz"}));
  BOOST_TEST(f.find("a_str")->count == 2u);
  BOOST_TEST((f.find("a_str")->array_type == gguf_value_type::string));
  BOOST_TEST(f.get_u32("absent", 7u) == 7u);
  BOOST_TEST(f.get_string("absent", "dflt") == "dflt");
  for (const auto& t : f.tensors()) BOOST_TEST(t.offset % 64 == 0u);
  BOOST_TEST(f.tensor("b").size == 42u);
  BOOST_TEST(f.tensor("d").size == 210u);
  // Moving keeps the mapping alive and valid.
  gguf_file g = std::move(f);
  BOOST_TEST(std::memcmp(g.tensor("d").data, pattern(210, 4).data(), 210) == 0);
}

BOOST_AUTO_TEST_CASE(typed_getters_name_the_key) {
  gguf_writer w;
  w.kv("neg", gguf_value_type::i32, int32_t(-5));
  w.kv("big", gguf_value_type::u64, uint64_t(1) << 40);
  w.kv_string("name", "x");
  w.kv_array("ints", gguf_value_type::i32, std::vector<int32_t>{1});
  scratch s;
  gguf_file f = gguf_file::open(s.write(w.bytes()));
  auto expect = [&](auto fn, errc code, std::vector<std::string> parts) {
    try {
      fn();
      BOOST_FAIL("no error");
    } catch (const troupe::error& e) {
      BOOST_TEST_MESSAGE(e.message());
      BOOST_TEST(int(e.code()) == int(code), e.message());
      for (const auto& p : parts) BOOST_TEST(e.message().find(p) != std::string::npos, e.message());
    }
  };
  expect([&] { f.get_u32("llama.block_count"); }, errc::not_found, {"'llama.block_count'", "model.gguf"});
  expect([&] { f.get_u32("neg"); }, errc::parse_error, {"'neg'", "-5", "u32"});
  expect([&] { f.get_u32("big"); }, errc::parse_error, {"'big'", "1099511627776", "u32"});
  expect([&] { f.get_string("neg"); }, errc::parse_error, {"'neg'", "is i32", "expected string"});
  expect([&] { f.get_f32("name"); }, errc::parse_error, {"'name'", "string"});
  expect([&] { f.get_string_array("ints"); }, errc::parse_error, {"'ints'", "array of i32"});
  expect([&] { f.get_float_array("ints"); }, errc::parse_error, {"'ints'"});
  expect([&] { f.tensor("output.weight"); }, errc::not_found, {"'output.weight'"});
  BOOST_TEST(f.get_i64("big") == int64_t(1) << 40);
}

BOOST_AUTO_TEST_CASE(missing_empty_and_foreign_files) {
  scratch s;
  try {
    gguf_file::open(s.dir / "absent.gguf");
    BOOST_FAIL("no error");
  } catch (const troupe::error& e) {
    BOOST_TEST(int(e.code()) == int(errc::not_found));
    BOOST_TEST(e.message().find("absent.gguf") != std::string::npos);
  }
  expect_error("", errc::parse_error, {"0 bytes", "too small"});
  expect_error("GGUF\3\0\0", errc::parse_error, {"too small"});
  expect_error(std::string("PK\3\4") + std::string(60, 'x'), errc::parse_error, {"not a GGUF file", "50 4b 03 04"});
}

BOOST_AUTO_TEST_CASE(header_corruptions) {
  gguf_writer w = small_model();
  const std::string good = w.bytes();
  std::string b;

  b = good; patch(b, 4, uint32_t(1));
  expect_error(b, errc::unsupported, {"version 1"});
  b = good; patch(b, 4, uint32_t(7));
  expect_error(b, errc::parse_error, {"unknown GGUF version 7"});
  b = good; patch(b, 4, uint32_t(0x03000000));
  expect_error(b, errc::unsupported, {"big-endian"});
  b = good; patch(b, w.at["kv_count"], uint64_t(1) << 60);
  expect_error(b, errc::parse_error, {"1152921504606846976 metadata entries"});
  b = good; patch(b, w.at["tensor_count"], uint64_t(-1));
  expect_error(b, errc::parse_error, {"18446744073709551615 tensors"});
}

BOOST_AUTO_TEST_CASE(metadata_corruptions) {
  gguf_writer w = small_model();
  const std::string good = w.bytes();
  std::string b;

  b = good; patch(b, w.at["key:llama.block_count"], uint64_t(1) << 50);
  expect_error(b, errc::parse_error, {"length of the key of metadata entry 1", "offset " + std::to_string(w.at["key:llama.block_count"])});
  b = good; patch(b, w.at["type:llama.block_count"], uint32_t(99));
  expect_error(b, errc::parse_error, {"'llama.block_count'", "entry 1", "unknown value type 99"});
  b = good; patch(b, w.at["elem_type:tokenizer.ggml.tokens"], uint32_t(13));
  expect_error(b, errc::parse_error, {"'tokenizer.ggml.tokens'", "array of unknown value type 13"});
  b = good; patch(b, w.at["elem_type:tokenizer.ggml.token_type"], uint32_t(9));
  expect_error(b, errc::parse_error, {"'tokenizer.ggml.token_type'", "array of arrays"});
  b = good; patch(b, w.at["count:tokenizer.ggml.token_type"], uint64_t(1) << 61);
  expect_error(b, errc::parse_error, {"'tokenizer.ggml.token_type'", "2305843009213693952 i32 elements"});
  b = good; patch(b, w.at["value:tokenizer.ggml.tokens"] + 8 + 3, uint64_t(1) << 40);  // 2nd string
  expect_error(b, errc::parse_error, {"string 1 of metadata 'tokenizer.ggml.tokens'", "1099511627776 bytes long"});

  gguf_writer d;
  d.kv("x", gguf_value_type::u32, uint32_t(1));
  d.kv("x", gguf_value_type::u32, uint32_t(2));
  expect_error(d.bytes(), errc::parse_error, {"'x'", "repeats a key"});

  gguf_writer a;
  a.kv("general.alignment", gguf_value_type::u32, uint32_t(48));
  expect_error(a.bytes(), errc::parse_error, {"'general.alignment' is 48", "power of two"});
  gguf_writer a2;
  a2.kv("general.alignment", gguf_value_type::u64, uint64_t(32));
  expect_error(a2.bytes(), errc::parse_error, {"'general.alignment' is a u64"});
  gguf_writer bl;
  bl.kv("flag", gguf_value_type::boolean, uint8_t(2));
  expect_error(bl.bytes(), errc::parse_error, {"'flag'", "bool holding 2"});
}

BOOST_AUTO_TEST_CASE(tensor_corruptions) {
  gguf_writer w = small_model();
  const std::string good = w.bytes();
  std::string b;

  b = good; patch(b, w.at["ttype:blk.0.attn_q.weight"], uint32_t(77));
  expect_error(b, errc::parse_error, {"tensor 'blk.0.attn_q.weight'", "unknown ggml type 77"});
  b = good; patch(b, w.at["ttype:blk.0.attn_q.weight"], uint32_t(4));  // removed Q4_2
  expect_error(b, errc::parse_error, {"'blk.0.attn_q.weight'", "unknown ggml type 4"});
  b = good; patch(b, w.at["n_dims:output_norm.weight"], uint32_t(5));
  expect_error(b, errc::parse_error, {"'output_norm.weight'", "5 dimensions"});
  b = good; patch(b, w.at["shape:blk.0.attn_q.weight"], uint64_t(33));
  expect_error(b, errc::parse_error, {"'blk.0.attn_q.weight'", "rows of 33 elements", "Q4_1 block size 32"});
  b = good; patch(b, w.at["shape:blk.0.attn_q.weight"] + 8, uint64_t(1) << 62);
  patch(b, w.at["shape:blk.0.attn_q.weight"], uint64_t(1) << 40);
  expect_error(b, errc::parse_error, {"'blk.0.attn_q.weight'", "overflows 64 bits"});
  b = good; patch(b, w.at["shape:blk.0.attn_q.weight"] + 8, uint64_t(1000));
  expect_error(b, errc::parse_error, {"'blk.0.attn_q.weight'", "extends past the end of the file", "truncated; download it again"});
  b = good; patch(b, w.at["offset:output_norm.weight"], uint64_t(136 + 80 + 4));
  expect_error(b, errc::parse_error, {"'output_norm.weight'", "not a multiple of the alignment 32"});
  b = good; patch(b, w.at["offset:output_norm.weight"], uint64_t(0));
  expect_error(b, errc::parse_error, {"'token_embd.weight'", "'output_norm.weight'", "overlap"});
  b = good; patch(b, w.at["offset:output_norm.weight"], uint64_t(-32));
  expect_error(b, errc::parse_error, {"'output_norm.weight'", "extends past the end"});

  // A download cut short: the last tensor's bytes are missing.
  b = good.substr(0, good.size() - 100);
  expect_error(b, errc::parse_error, {"tensor 'blk.0.ffn_down.weight'", "extends past the end of the file (size " + std::to_string(b.size()) + ")"});

  gguf_writer dup;
  dup.tensor("same", 0, {8}, pattern(32, 1));
  dup.tensor("same", 0, {8}, pattern(32, 2));
  expect_error(dup.bytes(), errc::parse_error, {"'same'", "same name as an earlier tensor"});
}

BOOST_AUTO_TEST_CASE(truncation_at_every_header_byte) {
  gguf_writer w = small_model();
  const std::string good = w.bytes();
  scratch s;
  for (size_t cut = 0; cut < good.size(); ++cut) {
    const fs::path p = s.write(good.substr(0, cut), "cut.gguf");
    try {
      gguf_file f = gguf_file::open(p);
      BOOST_FAIL("a file cut at " << cut << " of " << good.size() << " bytes opened");
    } catch (const troupe::error& e) {
      BOOST_TEST_REQUIRE(int(e.code()) == int(errc::parse_error), "cut " << cut << ": " << e.message());
      if (cut >= 8 && cut < w.at["data"])
        BOOST_TEST_REQUIRE((e.message().find("truncated") != std::string::npos ||
                            e.message().find("remaining bytes") != std::string::npos ||
                            e.message().find("bytes follow") != std::string::npos),
                           "cut " << cut << ": " << e.message());
    }
  }
}

BOOST_AUTO_TEST_CASE(random_byte_flips_never_crash) {
  gguf_writer w = small_model();
  const std::string good = w.bytes();
  const size_t header = w.at["data"];
  std::mt19937 gen(7);
  scratch s;
  int opened = 0, rejected = 0;
  for (int round = 0; round < 1500; ++round) {
    std::string b = good;
    const int flips = 1 + int(gen() % 3);
    for (int k = 0; k < flips; ++k) b[gen() % header] = char(gen() & 0xFF);
    try {
      gguf_file f = gguf_file::open(s.write(b, "flip.gguf"));
      // Whatever opened must be self-consistent: every tensor inside the file.
      for (const auto& t : f.tensors()) {
        BOOST_TEST_REQUIRE(f.data_offset() + t.offset + t.size <= f.file_size(), t.name);
        BOOST_TEST_REQUIRE(t.offset % f.alignment() == 0u);
      }
      ++opened;
    } catch (const troupe::error& e) {
      BOOST_TEST_REQUIRE(!e.message().empty());
      ++rejected;
    }
  }
  BOOST_TEST_MESSAGE("random flips: " << opened << " opened, " << rejected << " rejected");
  BOOST_TEST(rejected > 0);
}

BOOST_AUTO_TEST_CASE(real_smollm2_file) {
  const char* home = std::getenv("HOME");
  const fs::path p = fs::path(home ? home : "/nonexistent") / ".cache/troupe/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(p)) {
    BOOST_TEST_MESSAGE("skipped: " << p.string() << " is not there");
    return;
  }
  gguf_file f = gguf_file::open(p);
  BOOST_TEST(f.file_size() == 98362432u);
  BOOST_TEST(f.get_string("general.architecture") == "llama");
  BOOST_TEST(f.get_u32("llama.block_count") == 30u);
  BOOST_TEST(f.get_u32("llama.embedding_length") == 576u);
  BOOST_TEST(f.get_u32("llama.feed_forward_length") == 1536u);
  BOOST_TEST(f.get_u32("llama.attention.head_count") == 9u);
  BOOST_TEST(f.get_u32("llama.attention.head_count_kv") == 3u);
  BOOST_TEST(f.get_string("tokenizer.ggml.model") == "gpt2");
  const auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  BOOST_TEST(tokens.size() == 49152u);
  BOOST_TEST(tokens[1] == "<|im_start|>");
  BOOST_TEST(tokens[2] == "<|im_end|>");
  BOOST_TEST(f.get_string_array("tokenizer.ggml.merges").size() == 48900u);
  BOOST_TEST(f.get_int_array("tokenizer.ggml.token_type").size() == 49152u);
  const auto& embd = f.tensor("token_embd.weight");
  BOOST_TEST(embd.shape == (std::vector<uint64_t>{576, 49152}));
  const auto& q = f.tensor("blk.3.attn_q.weight");
  BOOST_TEST(troupe::ggml_type_name(q.type) == "Q4_1");
  BOOST_TEST(q.shape == (std::vector<uint64_t>{576, 576}));
  BOOST_TEST(f.tensor("blk.29.attn_k.weight").shape == (std::vector<uint64_t>{576, 192}));
  BOOST_TEST(troupe::ggml_type_name(f.tensor("blk.0.attn_norm.weight").type) == "F32");
  BOOST_TEST(f.find_tensor("output.weight") == nullptr);  // tied embeddings
  std::map<std::string, int> by_type;
  uint64_t bytes = 0;
  for (const auto& t : f.tensors()) {
    ++by_type[std::string(troupe::ggml_type_name(t.type))];
    bytes += t.size;
  }
  for (const auto& [name, n] : by_type) BOOST_TEST_MESSAGE("SmolLM2 tensors of type " << name << ": " << n);
  BOOST_TEST_MESSAGE("token_embd.weight type " << troupe::ggml_type_name(embd.type));
  BOOST_TEST(f.tensors().size() == 30u * 9u + 2u);
  BOOST_TEST(by_type["Q4_1"] >= 30 * 7 - 10);
  BOOST_TEST(bytes <= f.file_size() - f.data_offset());
}
