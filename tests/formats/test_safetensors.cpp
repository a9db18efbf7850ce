// safetensors reader and writer: round trips through write_safetensors, files written by the
// Python `safetensors` package and a sharded checkpoint written by huggingface_hub (committed
// fixtures, tools/reference/make_safetensors_fixture.py), one corruption per case with the exact
// complaint expected, truncation at every byte and random byte flips.

#define BOOST_TEST_MODULE safetensors
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/formats/safetensors.hpp"

namespace fs = std::filesystem;
using troupe::errc;
using troupe::safetensors_checkpoint;
using troupe::safetensors_dtype;
using troupe::safetensors_entry;
using troupe::safetensors_file;
using troupe::safetensors_tensor;

namespace {

const fs::path fixtures = fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/safetensors";

/// A scratch directory removed at the end of each test.
struct scratch {
  scratch() {
    dir = fs::temp_directory_path() / ("troupe_test_safetensors_" + std::to_string(::getpid()) +
                                       "_" + std::to_string(counter++));
    fs::create_directories(dir);
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  fs::path write(const std::string& bytes, const std::string& name = "model.safetensors") const {
    const fs::path p = dir / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
    return p;
  }
  fs::path dir;
  static inline int counter = 0;
};

/// A file from a header text and a data section; `header_len` overrides the length field.
std::string raw_file(const std::string& header, const std::string& data,
                     uint64_t header_len = UINT64_MAX) {
  const uint64_t n = header_len == UINT64_MAX ? header.size() : header_len;
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

std::string bytes_of(const std::byte* p, size_t n) {
  return n == 0 ? std::string() : std::string(reinterpret_cast<const char*>(p), n);
}

template <class T>
std::string pod_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::span<const std::byte> span_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// Runs `f` and expects a troupe::error with `code` whose message contains every part.
template <class F>
void expect_error_from(F&& f, errc code, const std::vector<std::string>& parts) {
  try {
    f();
    BOOST_FAIL("no error for bad input");
  } catch (const troupe::error& e) {
    BOOST_TEST_MESSAGE(e.message());
    BOOST_TEST(troupe::to_string(e.code()) == troupe::to_string(code), e.message());
    for (const auto& part : parts)
      BOOST_TEST(e.message().find(part) != std::string::npos,
                 "'" << part << "' in: " << e.message());
  }
}

/// Writes the bytes and expects opening them to fail; the message must start with the path.
void expect_error(const std::string& bytes, errc code, const std::vector<std::string>& parts) {
  scratch s;
  const fs::path p = s.write(bytes);
  std::vector<std::string> all = parts;
  all.push_back(p.string() + ": ");
  expect_error_from([&] { safetensors_file::open(p); }, code, all);
}

/// A valid header with one tensor whose description is `info`.
std::string one_tensor(const std::string& info, const std::string& name = "w") {
  return "{\"" + name + "\":" + info + "}";
}

}  // namespace

BOOST_AUTO_TEST_CASE(dtype_names_and_sizes) {
  const std::map<safetensors_dtype, std::pair<std::string, size_t>> expected = {
      {safetensors_dtype::f64, {"F64", 8}},         {safetensors_dtype::f32, {"F32", 4}},
      {safetensors_dtype::f16, {"F16", 2}},         {safetensors_dtype::bf16, {"BF16", 2}},
      {safetensors_dtype::i64, {"I64", 8}},         {safetensors_dtype::i32, {"I32", 4}},
      {safetensors_dtype::i16, {"I16", 2}},         {safetensors_dtype::i8, {"I8", 1}},
      {safetensors_dtype::u8, {"U8", 1}},           {safetensors_dtype::boolean, {"BOOL", 1}},
      {safetensors_dtype::f8_e4m3, {"F8_E4M3", 1}}, {safetensors_dtype::f8_e5m2, {"F8_E5M2", 1}},
  };
  BOOST_TEST(expected.size() == 12u);
  for (const auto& [t, row] : expected) {
    BOOST_TEST(troupe::to_string(t) == row.first);
    BOOST_TEST(troupe::element_size(t) == row.second);
  }
  BOOST_TEST(troupe::to_string(static_cast<safetensors_dtype>(99)) == std::string("unknown"));
  BOOST_TEST(troupe::element_size(static_cast<safetensors_dtype>(99)) == 0u);
}

BOOST_AUTO_TEST_CASE(round_trip_through_write_safetensors) {
  scratch s;
  const std::string f32 = pod_bytes(std::vector<float>{1.5f, -2.25f, 3e-8f, 65504.f, 0.f, -0.f});
  const std::string bf16 = pod_bytes(std::vector<uint16_t>{0x3F80, 0xC000, 0x7F80});
  const std::string i64 = pod_bytes(std::vector<int64_t>{INT64_MIN, -1, INT64_MAX});
  const std::string u8("\x01\x02\x03\xff\x00", 5);
  const std::string f8 = "\x38\xc0\x7e";
  const std::string boolean = std::string("\x01\x00\x01", 3);
  const std::string scalar = pod_bytes(std::vector<double>{3.141592653589793});
  // Given in an order that would misalign the wider types if written as given.
  const std::vector<safetensors_entry> entries = {
      {"u8", safetensors_dtype::u8, {5}, span_of(u8)},
      {"model.layers.0.self_attn.q_a_proj.weight", safetensors_dtype::bf16, {1, 3}, span_of(bf16)},
      {"f32", safetensors_dtype::f32, {2, 3}, span_of(f32)},
      {"f8", safetensors_dtype::f8_e4m3, {3}, span_of(f8)},
      {"i64", safetensors_dtype::i64, {3}, span_of(i64)},
      {"empty", safetensors_dtype::f32, {0, 7}, {}},
      {"flags", safetensors_dtype::boolean, {3}, span_of(boolean)},
      {"scalar \"quoted\" \xc3\xa9", safetensors_dtype::f64, {}, span_of(scalar)},
  };
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "a \"b\"\n\\c"}};
  const fs::path p = s.dir / "out.safetensors";
  troupe::write_safetensors(p, entries, metadata);
  BOOST_TEST(!fs::exists(p.string() + ".part" + std::to_string(::getpid())));

  // The header length is a multiple of 8 and the header is padded with spaces.
  std::ifstream in(p, std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  BOOST_TEST(header_len % 8 == 0u);
  BOOST_TEST(raw[8] == '{');
  BOOST_TEST(raw.find_last_not_of(' ', 8 + header_len - 1) < 8 + header_len);

  safetensors_file f = safetensors_file::open(p);
  BOOST_TEST(f.path() == p);
  BOOST_TEST(f.data_offset() == 8 + header_len);
  BOOST_TEST(f.file_size() == raw.size());
  BOOST_TEST(f.tensors().size() == entries.size());
  BOOST_TEST((f.metadata() == metadata));
  // Laid out by decreasing element size, stable within a size.
  std::vector<std::string> order;
  for (const safetensors_tensor& t : f.tensors()) order.push_back(t.name);
  const std::vector<std::string> expected_order = {"i64",
                                                   "scalar \"quoted\" \xc3\xa9",
                                                   "f32",
                                                   "empty",
                                                   "model.layers.0.self_attn.q_a_proj.weight",
                                                   "u8",
                                                   "f8",
                                                   "flags"};
  BOOST_TEST(order == expected_order, boost::test_tools::per_element());
  for (const safetensors_entry& e : entries) {
    BOOST_TEST_CONTEXT(e.name) {
      const safetensors_tensor* t = f.find(e.name);
      BOOST_REQUIRE(t != nullptr);
      BOOST_TEST(t->name == e.name);
      BOOST_TEST((t->dtype == e.dtype));
      BOOST_TEST(t->shape == e.shape, boost::test_tools::per_element());
      BOOST_TEST(t->size == e.data.size());
      BOOST_TEST(t->file == &f.path());
      BOOST_TEST(bytes_of(t->data, t->size) == bytes_of(e.data.data(), e.data.size()));
      BOOST_TEST(reinterpret_cast<uintptr_t>(t->data) % troupe::element_size(t->dtype) == 0u,
                 "aligned to its element size");
    }
  }
  BOOST_TEST(f.find("scalar \"quoted\" \xc3\xa9")->elements() == 1);
  BOOST_TEST(f.find("empty")->elements() == 0);
  BOOST_TEST(f.find("f32")->elements() == 6);
  BOOST_TEST(load<float>(f.find("f32")->data + 4) == -2.25f);
  BOOST_TEST(f.find("nope") == nullptr);
  BOOST_TEST(f.find("") == nullptr);

  // Moving keeps the tensors and their file pointer valid.
  const safetensors_tensor* before = f.find("i64");
  safetensors_file g = std::move(f);
  BOOST_TEST(g.find("i64") == before);
  BOOST_TEST(before->file == &g.path());
  BOOST_TEST(load<int64_t>(before->data) == INT64_MIN);

  // The same file as a checkpoint, by file and by directory (model.safetensors).
  safetensors_checkpoint c = safetensors_checkpoint::open(p);
  BOOST_TEST(c.size() == entries.size());
  BOOST_TEST(c.path() == p);
  BOOST_TEST(c.files().size() == 1u);
  BOOST_TEST(c.tensor("u8").size == 5u);
  BOOST_TEST((c.metadata() == metadata));
  const auto names = c.names();
  BOOST_TEST(std::is_sorted(names.begin(), names.end()));
  BOOST_TEST(names.size() == entries.size());
  fs::rename(p, s.dir / "model.safetensors");
  safetensors_checkpoint d = safetensors_checkpoint::open(s.dir);
  BOOST_TEST(d.size() == entries.size());
  BOOST_TEST(load<uint16_t>(d.tensor("model.layers.0.self_attn.q_a_proj.weight").data) == 0x3F80u);

  // No tensors at all is a valid file too.
  troupe::write_safetensors(s.dir / "none.safetensors", {});
  BOOST_TEST(safetensors_file::open(s.dir / "none.safetensors").tensors().empty());
}

BOOST_AUTO_TEST_CASE(write_rejects_bad_entries) {
  scratch s;
  const fs::path p = s.dir / "bad.safetensors";
  const std::string four(4, 'x');
  auto write = [&](std::vector<safetensors_entry> e) { troupe::write_safetensors(p, e); };
  expect_error_from(
      [&] {
        write({{"w", safetensors_dtype::f32, {2}, span_of(four)}});
      },
      errc::invalid_argument, {"'w'", "needs 8 bytes, but 4 were given"});
  expect_error_from(
      [&] {
        write({{"w", safetensors_dtype::u8, {-4}, span_of(four)}});
      },
      errc::invalid_argument, {"'w'", "negative dimension"});
  expect_error_from(
      [&] {
        write({{"w", safetensors_dtype::u8, {4}, span_of(four)},
               {"w", safetensors_dtype::i32, {1}, span_of(four)}});
      },
      errc::invalid_argument, {"'w' is given twice"});
  expect_error_from(
      [&] {
        write({{"__metadata__", safetensors_dtype::u8, {4}, span_of(four)}});
      },
      errc::invalid_argument, {"reserved"});
  expect_error_from(
      [&] {
        write({{"", safetensors_dtype::u8, {4}, span_of(four)}});
      },
      errc::invalid_argument, {"empty name"});
  BOOST_TEST(!fs::exists(p));
  expect_error_from([&] { troupe::write_safetensors(s.dir / "no/such/dir/x.safetensors", {}); },
                    errc::io_error, {"no/such/dir/x.safetensors"});
}

// tiny.safetensors was written by safetensors.torch.save_file (make_safetensors_fixture.py).
BOOST_AUTO_TEST_CASE(reads_a_file_written_by_the_python_package) {
  safetensors_file f = safetensors_file::open(fixtures / "tiny.safetensors");
  BOOST_TEST(f.tensors().size() == 8u);
  const std::map<std::string, std::string> meta = {{"format", "pt"},
                                                   {"producer", "make_safetensors_fixture.py"}};
  BOOST_TEST((f.metadata() == meta));

  const safetensors_tensor& bf16 = *f.find("model.embed_tokens.weight");
  BOOST_TEST((bf16.dtype == safetensors_dtype::bf16));
  BOOST_TEST(bf16.shape == (std::vector<int64_t>{2, 3}), boost::test_tools::per_element());
  BOOST_TEST(bf16.size == 12u);
  const std::vector<uint16_t> bf16_bits = {0x3F80, 0xC000, 0x3F00,
                                           0x4050, 0xBE00, 0x42C8};  // 1 -2 .5 3.25 -.125 100
  for (size_t i = 0; i < bf16_bits.size(); ++i)
    BOOST_TEST(load<uint16_t>(bf16.data + 2 * i) == bf16_bits[i]);

  const safetensors_tensor& f32 = *f.find("model.norm.weight");
  BOOST_TEST((f32.dtype == safetensors_dtype::f32));
  const std::vector<float> f32_values = {0.1f, -1.5f, 3.0e5f, 1e-7f};
  for (size_t i = 0; i < f32_values.size(); ++i)
    BOOST_TEST(load<float>(f32.data + 4 * i) == f32_values[i]);

  const safetensors_tensor& i32 = *f.find("model.layers.0.mlp.experts.0.up_proj.weight_packed");
  BOOST_TEST((i32.dtype == safetensors_dtype::i32));
  BOOST_TEST(i32.shape == (std::vector<int64_t>{2, 2}), boost::test_tools::per_element());
  const std::vector<int32_t> i32_values = {0x12345678, -1, 7, INT32_MIN};
  for (size_t i = 0; i < i32_values.size(); ++i)
    BOOST_TEST(load<int32_t>(i32.data + 4 * i) == i32_values[i]);

  const safetensors_tensor& f8 = *f.find("model.layers.0.self_attn.o_proj.weight");
  BOOST_TEST((f8.dtype == safetensors_dtype::f8_e4m3));
  BOOST_TEST(std::string(troupe::to_string(f8.dtype)) == "F8_E4M3");
  BOOST_TEST(f8.elements() == 5);
  BOOST_TEST(bytes_of(f8.data, 5) == std::string("\x00\x38\xc0\x7e\x08", 5));  // 0 1 -2 448 2^-6

  const safetensors_tensor& scale = *f.find("model.layers.0.self_attn.o_proj.weight_scale_inv");
  BOOST_TEST(scale.shape == (std::vector<int64_t>{1, 1}), boost::test_tools::per_element());
  BOOST_TEST(load<float>(scale.data) == 0.5f);

  const safetensors_tensor& half = *f.find("half");
  BOOST_TEST((half.dtype == safetensors_dtype::f16));
  BOOST_TEST(load<uint16_t>(half.data + 4) == 0x7BFFu);  // 65504

  const safetensors_tensor& scalar = *f.find("scalar");
  BOOST_TEST(scalar.shape.empty());
  BOOST_TEST(scalar.elements() == 1);
  BOOST_TEST(load<float>(scalar.data) == 42.0f);

  const safetensors_tensor& empty = *f.find("empty");
  BOOST_TEST(empty.shape == (std::vector<int64_t>{0, 4}), boost::test_tools::per_element());
  BOOST_TEST(empty.size == 0u);
}

// sharded/ was written by huggingface_hub.save_torch_state_dict with a tiny shard size.
BOOST_AUTO_TEST_CASE(reads_a_sharded_checkpoint_written_by_huggingface_hub) {
  const fs::path dir = fixtures / "sharded";
  safetensors_checkpoint c = safetensors_checkpoint::open(dir);
  BOOST_TEST(c.size() == 6u);
  BOOST_TEST(c.files().size() == 3u);
  BOOST_TEST(c.metadata().at("total_size") == "864");
  const std::vector<std::string_view> expected = {
      "model.layers.0.input_layernorm.weight", "model.layers.0.mlp.down_proj.weight",
      "model.layers.1.input_layernorm.weight", "model.layers.1.mlp.down_proj.weight",
      "model.layers.2.input_layernorm.weight", "model.layers.2.mlp.down_proj.weight"};
  const auto names = c.names();
  BOOST_TEST(names == expected, boost::test_tools::per_element());
  for (int i = 0; i < 3; ++i) {
    BOOST_TEST_CONTEXT("layer " << i) {
      const std::string prefix = "model.layers." + std::to_string(i) + ".";
      const safetensors_tensor& down = c.tensor(prefix + "mlp.down_proj.weight");
      BOOST_TEST(down.shape == (std::vector<int64_t>{8, 8}), boost::test_tools::per_element());
      for (int k = 0; k < 64; ++k) BOOST_TEST(load<float>(down.data + 4 * k) == float(i * 64 + k));
      const safetensors_tensor& norm = c.tensor(prefix + "input_layernorm.weight");
      BOOST_TEST((norm.dtype == safetensors_dtype::bf16));
      const uint16_t bits[] = {0x3F80, 0x4000, 0x4040};  // 1, 2, 3
      BOOST_TEST(load<uint16_t>(norm.data + 30) == bits[i]);
      BOOST_TEST(down.file->filename() ==
                 "model-0000" + std::to_string(i + 1) + "-of-00003.safetensors");
      BOOST_TEST(norm.file == down.file);
    }
  }
  // The index file itself opens the same checkpoint.
  BOOST_TEST(safetensors_checkpoint::open(dir / "model.safetensors.index.json").size() == 6u);
  expect_error_from([&] { (void)c.tensor("lm_head.weight"); }, errc::not_found,
                    {"'lm_head.weight'", dir.string()});
  BOOST_TEST(c.find("lm_head.weight") == nullptr);
  // Moving the checkpoint keeps its tensors in place.
  const safetensors_tensor* t = c.find("model.layers.1.mlp.down_proj.weight");
  safetensors_checkpoint moved = std::move(c);
  BOOST_TEST(moved.find("model.layers.1.mlp.down_proj.weight") == t);
}

BOOST_AUTO_TEST_CASE(sharded_checkpoint_errors) {
  scratch s;
  const std::string a(16, 'a'), b(4, 'b');
  const std::vector<safetensors_entry> shard1 = {
      {"x.weight", safetensors_dtype::f32, {4}, span_of(a)}};
  const std::vector<safetensors_entry> shard2 = {
      {"y.weight", safetensors_dtype::u8, {4}, span_of(b)}};
  troupe::write_safetensors(s.dir / "model-1.safetensors", shard1);
  troupe::write_safetensors(s.dir / "model-2.safetensors", shard2);
  const fs::path index = s.dir / "model.safetensors.index.json";
  auto write_index = [&](const std::string& text) {
    s.write(text, "model.safetensors.index.json");
  };

  write_index(
      R"({"metadata": {"total_size": 20}, "weight_map": {"x.weight": "model-1.safetensors", "y.weight": "model-2.safetensors"}})");
  {
    safetensors_checkpoint c = safetensors_checkpoint::open(s.dir);
    BOOST_TEST(c.size() == 2u);
    BOOST_TEST(c.tensor("y.weight").file->filename() == "model-2.safetensors");
    BOOST_TEST(bytes_of(c.tensor("y.weight").data, 4) == b);
  }
  // Tensors a shard holds but the index does not list are not part of the checkpoint.
  write_index(R"({"weight_map": {"x.weight": "model-1.safetensors"}})");
  BOOST_TEST(safetensors_checkpoint::open(s.dir).size() == 1u);
  BOOST_TEST(safetensors_checkpoint::open(s.dir).find("y.weight") == nullptr);

  auto open_dir = [&] { safetensors_checkpoint::open(s.dir); };
  write_index(
      R"({"weight_map": {"x.weight": "model-1.safetensors", "z.weight": "model-3.safetensors"}})");
  expect_error_from(open_dir, errc::not_found,
                    {index.string(), "shard 'model-3.safetensors'", "'z.weight'", "missing"});
  write_index(
      R"({"weight_map": {"x.weight": "model-1.safetensors", "q.weight": "model-2.safetensors"}})");
  expect_error_from(open_dir, errc::parse_error,
                    {"tensor 'q.weight'", "shard 'model-2.safetensors'", "does not hold it"});
  write_index(R"({"weight_map": {"x.weight": "model-1.safetensors",)");
  expect_error_from(open_dir, errc::parse_error, {index.string(), "not valid JSON"});
  write_index(R"({"metadata": {}})");
  expect_error_from(open_dir, errc::parse_error, {index.string(), "no \"weight_map\""});
  write_index(R"({"weight_map": ["model-1.safetensors"]})");
  expect_error_from(open_dir, errc::parse_error, {"\"weight_map\" is an array"});
  write_index(R"([1, 2])");
  expect_error_from(open_dir, errc::parse_error, {"the index is an array"});
  write_index(R"({"weight_map": {"x.weight": 3}})");
  expect_error_from(open_dir, errc::parse_error, {"'x.weight' is an integer"});
  write_index(R"({"weight_map": {"x.weight": "../model-1.safetensors"}})");
  expect_error_from(open_dir, errc::parse_error,
                    {"'../model-1.safetensors'", "not a file name inside"});
  write_index(R"({"weight_map": {"x.weight": "/etc/passwd"}})");
  expect_error_from(open_dir, errc::parse_error, {"'/etc/passwd'"});
  // A corrupted shard is reported with the shard's name.
  write_index(
      R"({"weight_map": {"x.weight": "model-1.safetensors", "y.weight": "bad.safetensors"}})");
  s.write(raw_file("[}", ""), "bad.safetensors");
  expect_error_from(open_dir, errc::parse_error,
                    {(s.dir / "bad.safetensors").string(), "not valid JSON"});

  // Paths that are not checkpoints.
  expect_error_from([&] { safetensors_checkpoint::open(s.dir / "nothing"); }, errc::not_found,
                    {"nothing", "no such file or directory"});
  fs::create_directories(s.dir / "empty_dir");
  expect_error_from([&] { safetensors_checkpoint::open(s.dir / "empty_dir"); }, errc::not_found,
                    {"empty_dir", "neither model.safetensors nor model.safetensors.index.json"});
  expect_error_from([&] { safetensors_file::open(s.dir / "missing.safetensors"); }, errc::not_found,
                    {"missing.safetensors", "no such file"});
  expect_error_from([&] { safetensors_file::open(s.dir / "empty_dir"); }, errc::io_error,
                    {"not a regular file"});
}

BOOST_AUTO_TEST_CASE(short_files_and_bad_header_lengths) {
  expect_error("", errc::parse_error, {"only 0 bytes", "too short"});
  expect_error(std::string("\x02\0\0\0\0\0\0", 7), errc::parse_error, {"only 7 bytes"});
  expect_error(raw_file("{}", "", 100), errc::parse_error,
               {"header length field says 100 bytes", "only 2 bytes follow", "truncated"});
  expect_error(raw_file("{}", "", uint64_t{1} << 40), errc::parse_error,
               {"1099511627776 bytes", "100 MB"});
  expect_error(raw_file("{}", "", UINT64_MAX - 1), errc::parse_error, {"100 MB"});
  // The smallest valid files: empty header objects, with and without padding.
  {
    scratch s;
    BOOST_TEST(safetensors_file::open(s.write(raw_file("{}", ""))).tensors().empty());
    BOOST_TEST(safetensors_file::open(s.write(raw_file("{}      ", "trailing"))).tensors().empty());
  }
}

BOOST_AUTO_TEST_CASE(header_corruptions) {
  const std::string ok = R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::string data(8, '\x11');
  {
    scratch s;
    safetensors_file f = safetensors_file::open(s.write(raw_file(one_tensor(ok), data)));
    BOOST_TEST(f.tensors().size() == 1u);
  }
  expect_error(raw_file("{\"w\": ", data), errc::parse_error, {"not valid JSON"});
  expect_error(raw_file("\xff\xfe{}", data), errc::parse_error, {"not valid JSON"});
  expect_error(raw_file("[1, 2]", data), errc::parse_error,
               {"the header is an array, not a JSON object"});
  expect_error(raw_file("\"text\"", data), errc::parse_error, {"the header is a string"});
  expect_error(raw_file(one_tensor("[1]"), data), errc::parse_error,
               {"tensor 'w'", "an array instead of an object"});
  expect_error(raw_file(R"({"__metadata__": [1]})", data), errc::parse_error,
               {"\"__metadata__\" is an array"});
  expect_error(raw_file(R"({"__metadata__": {"a": 1}})", data), errc::parse_error,
               {"entry 'a' is an integer", "must be strings"});
  expect_error(raw_file(R"({"__metadata__": {}, "__metadata__": {}})", data), errc::parse_error,
               {"two \"__metadata__\""});
  expect_error(raw_file(one_tensor(ok, ""), data), errc::parse_error, {"empty name"});

  // dtype
  expect_error(raw_file(one_tensor(R"({"shape":[2],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"tensor 'w'", "no \"dtype\""});
  expect_error(raw_file(one_tensor(R"({"dtype":4,"shape":[2],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"tensor 'w'", "\"dtype\" is an integer"});
  expect_error(raw_file(one_tensor(R"({"dtype":"Q4_K","shape":[2],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"tensor 'w'", "unknown dtype 'Q4_K'", "BF16"});
  expect_error(raw_file(one_tensor(R"({"dtype":"f32","shape":[2],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"unknown dtype 'f32'"});
  expect_error(raw_file(one_tensor(R"({"dtype":"U32","shape":[2],"data_offsets":[0,8]})"), data),
               errc::unsupported, {"tensor 'w'", "'U32'", "does not read"});

  // shape
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","data_offsets":[0,8]})"), data),
               errc::parse_error, {"tensor 'w'", "no \"shape\""});
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":2,"data_offsets":[0,8]})"), data),
               errc::parse_error, {"\"shape\" is an integer"});
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2,-1],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"tensor 'w'", "negative dimension -1", "[2, -1]"});
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"\"shape\" holds a number"});
  expect_error(
      raw_file(one_tensor(R"({"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,8]})"),
               data),
      errc::parse_error, {"beyond int64"});
  expect_error(
      raw_file(
          one_tensor(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]})"),
          data),
      errc::parse_error, {"overflows 64 bits"});

  // data_offsets
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2]})"), data), errc::parse_error,
               {"tensor 'w'", "no \"data_offsets\""});
  for (const char* bad : {"8", "[0]", "[0,4,8]", "[-1,7]", "[0,\"8\"]", "[0.0,8]", "{}"}) {
    BOOST_TEST_CONTEXT(bad) {
      expect_error(
          raw_file(
              one_tensor(std::string(R"({"dtype":"F32","shape":[2],"data_offsets":)") + bad + "}"),
              data),
          errc::parse_error, {"tensor 'w'", "\"data_offsets\" must be [begin, end]"});
    }
  }
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[8,0]})"), data),
               errc::parse_error, {"tensor 'w'", "[8, 0]", "begin after end"});
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[4,12]})"), data),
               errc::parse_error,
               {"tensor 'w'", "[4, 12]", "past the end of the 8-byte data section"});
  expect_error(
      raw_file(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551615]})"),
               data),
      errc::parse_error, {"past the end"});
  expect_error(raw_file(one_tensor(R"({"dtype":"F32","shape":[2],"data_offsets":[0,4]})"), data),
               errc::parse_error, {"tensor 'w'", "(F32, shape [2]) needs 8 bytes", "span 4"});
  expect_error(raw_file(one_tensor(R"({"dtype":"BF16","shape":[3,1],"data_offsets":[0,8]})"), data),
               errc::parse_error, {"(BF16, shape [3, 1]) needs 6 bytes"});

  // Overlaps and duplicates.
  expect_error(
      raw_file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}})",
          data),
      errc::parse_error,
      {"tensors 'a' (data_offsets [0, 4]) and 'b' (data_offsets [3, 5]) overlap"});
  expect_error(
      raw_file(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I16","shape":[1],"data_offsets":[2,4]}})",
          data),
      errc::parse_error, {"'a'", "'b'", "overlap"});
  expect_error(
      raw_file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          data),
      errc::parse_error, {"tensor 'a' appears twice"});
  // Empty tensors occupy no bytes, so they overlap nothing; adjacent ranges do not overlap.
  {
    scratch s;
    safetensors_file f = safetensors_file::open(s.write(raw_file(
        R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
        data)));
    BOOST_TEST(f.tensors().size() == 3u);
    BOOST_TEST(f.tensors()[2].data == f.tensors()[0].data + 4);
  }
}

BOOST_AUTO_TEST_CASE(truncation_at_every_byte_and_random_flips) {
  // Every proper prefix of a valid file is rejected with a troupe::error.
  std::ifstream in(fixtures / "tiny.safetensors", std::ios::binary);
  const std::string good((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  BOOST_REQUIRE(good.size() > 100u);
  scratch s;
  int rejected = 0;
  for (size_t n = 0; n < good.size(); ++n) {
    try {
      safetensors_file::open(s.write(good.substr(0, n)));
    } catch (const troupe::error& e) {
      ++rejected;
      if (e.code() != errc::parse_error) BOOST_ERROR("prefix " << n << ": " << e.message());
    }
  }
  BOOST_TEST(rejected == int(good.size()));

  // Random byte flips in the header and the length field: an error or a file that still
  // validates, never a crash (ASan runs this).
  std::mt19937 rng(7);
  uint64_t header_len = 0;
  std::memcpy(&header_len, good.data(), 8);
  std::uniform_int_distribution<size_t> where(0, 8 + header_len - 1);
  std::uniform_int_distribution<int> byte(0, 255);
  int opened = 0, errors = 0;
  for (int i = 0; i < 400; ++i) {
    std::string bad = good;
    for (int k = 0; k < 1 + i % 3; ++k) bad[where(rng)] = char(byte(rng));
    try {
      safetensors_file f = safetensors_file::open(s.write(bad));
      unsigned sum = 0;
      for (const safetensors_tensor& t : f.tensors()) {
        BOOST_TEST(uint64_t(t.elements()) * troupe::element_size(t.dtype) == t.size);
        for (std::byte b : t.bytes()) sum += std::to_integer<unsigned>(b);  // inside the mapping
      }
      BOOST_TEST(sum < 256u * good.size());
      ++opened;
    } catch (const troupe::error&) {
      ++errors;
    }
  }
  BOOST_TEST_MESSAGE("random flips: " << opened << " opened, " << errors << " rejected");
  BOOST_TEST(errors > 100);
}
