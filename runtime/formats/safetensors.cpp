// safetensors reader and writer. Layout (huggingface/safetensors README, "Format"): u64
// little-endian header length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets":
// [begin, end]}, ...,
// "__metadata__": {string: string}}, then the data section; offsets are relative to its start.

#include "troupe/formats/safetensors.hpp"

#include <simdjson.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>

#include "formats/read_only_map.hpp"
#include "troupe/error.hpp"
#include "troupe/json.hpp"

namespace troupe {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; troupe maps it without byte swapping");

namespace {

/// Headers above this are refused before parsing: the Rust reference refuses above 100 MB too, and
/// the largest real headers (a trillion-parameter shard) are a few MB.
constexpr uint64_t max_header_bytes = 100'000'000;

struct dtype_row {
  const char* name;
  safetensors_dtype type;
  size_t size;
};

constexpr dtype_row dtype_table[] = {
    {"F64", safetensors_dtype::f64, 8},         {"F32", safetensors_dtype::f32, 4},
    {"F16", safetensors_dtype::f16, 2},         {"BF16", safetensors_dtype::bf16, 2},
    {"I64", safetensors_dtype::i64, 8},         {"I32", safetensors_dtype::i32, 4},
    {"I16", safetensors_dtype::i16, 2},         {"I8", safetensors_dtype::i8, 1},
    {"U8", safetensors_dtype::u8, 1},           {"BOOL", safetensors_dtype::boolean, 1},
    {"F8_E4M3", safetensors_dtype::f8_e4m3, 1}, {"F8_E5M2", safetensors_dtype::f8_e5m2, 1},
};
static_assert(std::size(dtype_table) == static_cast<size_t>(safetensors_dtype::f8_e5m2) + 1,
              "dtype_table must list every safetensors_dtype in enum order");

/// Dtypes the format defines (safetensors 0.5+ Dtype) that troupe does not read.
constexpr const char* unread_dtypes[] = {"U16", "U32",     "U64",     "F8_E8M0",
                                         "F4",  "F6_E2M3", "F6_E3M2", "C64"};

std::string known_dtype_list() {
  std::string out;
  for (const dtype_row& r : dtype_table) out += (out.empty() ? "" : ", ") + std::string(r.name);
  return out;
}

std::string quote_name(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  if (s.size() > 200) out += "...";
  return out + "'";
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

/// Product of non-negative dims; false on overflow of int64.
bool shape_elements(const std::vector<int64_t>& shape, int64_t* out) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (__builtin_mul_overflow(n, d, &n)) return false;
  *out = n;
  return true;
}

/// simdjson's message for a parse failure of the header.
std::string simdjson_problem(simdjson::error_code code) { return simdjson::error_message(code); }

const char* json_type_name(simdjson::dom::element_type t) {
  using simdjson::dom::element_type;
  switch (t) {
    case element_type::ARRAY:
      return "an array";
    case element_type::OBJECT:
      return "an object";
    case element_type::INT64:
    case element_type::UINT64:
      return "an integer";
    case element_type::DOUBLE:
      return "a number";
    case element_type::STRING:
      return "a string";
    case element_type::BOOL:
      return "a boolean";
    case element_type::NULL_VALUE:
      return "null";
  }
  return "a JSON value";
}

/// Reads a JSON integer as int64; false for other types and for integers above int64.
bool json_int(simdjson::dom::element e, int64_t* out) {
  return e.type() == simdjson::dom::element_type::INT64 && !e.get_int64().get(*out);
}

bool json_uint(simdjson::dom::element e, uint64_t* out) {
  int64_t v = 0;
  if (e.type() == simdjson::dom::element_type::UINT64) return !e.get_uint64().get(*out);
  if (!json_int(e, &v) || v < 0) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

[[noreturn]] void throw_parse_error(const std::string& file, const std::string& what) {
  throw error(errc::parse_error, file + ": " + what);
}

std::string read_text_file(const std::filesystem::path& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      throw error(errc::not_found, path.string() + ": no such " + std::string(what));
    }
    throw error(errc::io_error, path.string() + ": cannot read the " + std::string(what));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw error(errc::io_error, path.string() + ": cannot read the " + std::string(what));
  return std::move(text).str();
}

}  // namespace

const char* to_string(safetensors_dtype t) noexcept {
  const auto i = static_cast<size_t>(t);
  return i < std::size(dtype_table) ? dtype_table[i].name : "unknown";
}

size_t element_size(safetensors_dtype t) noexcept {
  const auto i = static_cast<size_t>(t);
  return i < std::size(dtype_table) ? dtype_table[i].size : 0;
}

int64_t safetensors_tensor::elements() const noexcept {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---- safetensors_file ----------------------------------------------------------------------

safetensors_file safetensors_file::open(const std::filesystem::path& path) {
  safetensors_file f;
  f.path_ = std::make_unique<std::filesystem::path>(path);
  const std::string file = path.string();
  const auto fail = [&file](const std::string& what) { throw_parse_error(file, what); };

  const auto m = map_read_only(file, 8, [](uint64_t size) {
    return "only " + std::to_string(size) +
           " bytes, too short for the 8-byte header length of a safetensors file; the file is "
           "truncated or not a safetensors file";
  });
  f.map_ = m.data;
  f.size_ = m.size;

  uint64_t header_len = 0;
  std::memcpy(&header_len, f.map_, 8);
  if (header_len > max_header_bytes) {
    fail("the header length field says " + std::to_string(header_len) +
         " bytes, more than the 100 MB that any safetensors header needs (file size " +
         std::to_string(f.size_) + "); the file is corrupted or not a safetensors file");
  }
  if (header_len > f.size_ - 8) {
    fail("the header length field says " + std::to_string(header_len) + " bytes, but only " +
         std::to_string(f.size_ - 8) +
         " bytes follow it; the file is truncated: download it again");
  }
  f.data_offset_ = 8 + header_len;
  const uint64_t data_size = f.size_ - f.data_offset_;

  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto code =
          parser.parse(reinterpret_cast<const char*>(f.map_) + 8, header_len, true).get(root)) {
    fail("the " + std::to_string(header_len) + "-byte header (offset 8) is not valid JSON: " +
         simdjson_problem(code) + "; the file is corrupted or not a safetensors file");
  }
  simdjson::dom::object header;
  if (root.get(header)) {
    fail(std::string("the header is ") + json_type_name(root.type()) +
         ", not a JSON object; the file is corrupted or not a safetensors file");
  }

  const std::string dtypes = known_dtype_list();
  bool have_metadata = false;
  for (auto field : header) {
    const std::string_view key = field.key;
    if (key == "__metadata__") {
      if (have_metadata) fail("the header has two \"__metadata__\" entries");
      have_metadata = true;
      simdjson::dom::object meta;
      if (field.value.get(meta)) {
        fail(std::string("\"__metadata__\" is ") + json_type_name(field.value.type()) +
             ", but must be an object of strings");
      }
      for (auto kv : meta) {
        std::string_view v;
        if (kv.value.get(v)) {
          fail("\"__metadata__\" entry " + quote_name(kv.key) + " is " +
               json_type_name(kv.value.type()) + ", but metadata values must be strings");
        }
        f.metadata_.insert_or_assign(std::string(kv.key), std::string(v));
      }
      continue;
    }
    const auto where = [key] { return "tensor " + quote_name(key); };
    if (key.empty()) fail("a tensor has an empty name");
    simdjson::dom::object info;
    if (field.value.get(info)) {
      fail(where() + " is described by " + json_type_name(field.value.type()) +
           " instead of an object with dtype, shape and data_offsets");
    }
    safetensors_tensor t{std::string(key), safetensors_dtype::u8, {}, nullptr, 0, f.path_.get()};

    // dtype
    simdjson::dom::element e;
    std::string_view dtype;
    if (info["dtype"].get(e)) fail(where() + " has no \"dtype\"");
    if (e.get(dtype))
      fail(where() + ": \"dtype\" is " + json_type_name(e.type()) +
           ", expected a string such as \"BF16\"");
    const dtype_row* row = nullptr;
    for (const dtype_row& r : dtype_table)
      if (dtype == r.name) row = &r;
    if (row == nullptr) {
      for (const char* u : unread_dtypes) {
        if (dtype == u) {
          throw error(errc::unsupported, file + ": " + where() + " has dtype " + quote_name(dtype) +
                                             ", which troupe does not read (it reads " + dtypes +
                                             ")");
        }
      }
      fail(where() + " has unknown dtype " + quote_name(dtype) +
           " (safetensors dtypes troupe reads: " + dtypes +
           "); the file is corrupted or written by a newer tool");
    }
    t.dtype = row->type;

    // shape
    simdjson::dom::array dims;
    if (info["shape"].get(e)) fail(where() + " has no \"shape\"");
    if (e.get(dims))
      fail(where() + ": \"shape\" is " + json_type_name(e.type()) +
           ", expected an array of integers");
    for (auto d : dims) {
      int64_t v = 0;
      if (!json_int(d, &v)) {
        if (d.type() == simdjson::dom::element_type::UINT64) {
          fail(where() + " has a dimension of " + std::to_string(d.get_uint64().value_unsafe()) +
               ", beyond int64");
        }
        fail(where() + ": \"shape\" holds " + json_type_name(d.type()) + ", expected integers");
      }
      if (v < 0)
        fail(where() + " has a negative dimension " + std::to_string(v) + " in its shape " +
             shape_text([&] {
               auto s = t.shape;
               s.push_back(v);
               return s;
             }()));
      t.shape.push_back(v);
    }
    int64_t elements = 0;
    uint64_t expected = 0;
    if (!shape_elements(t.shape, &elements) ||
        __builtin_mul_overflow(static_cast<uint64_t>(elements), row->size, &expected)) {
      fail(where() + " has shape " + shape_text(t.shape) + ", whose size overflows 64 bits");
    }

    // data_offsets
    simdjson::dom::array offsets;
    if (info["data_offsets"].get(e)) fail(where() + " has no \"data_offsets\"");
    uint64_t bounds[2] = {0, 0};
    size_t n_bounds = 0;
    bool bounds_ok = !e.get(offsets);
    if (bounds_ok) {
      for (auto b : offsets) {
        if (n_bounds == 2 || !json_uint(b, &bounds[n_bounds])) {
          bounds_ok = false;
          break;
        }
        ++n_bounds;
      }
    }
    if (!bounds_ok || n_bounds != 2) {
      fail(where() + ": \"data_offsets\" must be [begin, end], two non-negative integers");
    }
    const uint64_t begin = bounds[0], end = bounds[1];
    if (begin > end) {
      fail(where() + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           "] with begin after end");
    }
    if (end > data_size) {
      fail(where() + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
           "], past the end of the " + std::to_string(data_size) +
           "-byte data section; the file is truncated: download it again");
    }
    t.size = end - begin;
    if (t.size != expected) {
      fail(where() + " (" + row->name + ", shape " + shape_text(t.shape) + ") needs " +
           std::to_string(expected) + " bytes, but its data_offsets [" + std::to_string(begin) +
           ", " + std::to_string(end) + "] span " + std::to_string(t.size));
    }
    t.data = f.map_ + f.data_offset_ + begin;
    f.tensors_.push_back(std::move(t));
  }
  if (f.tensors_.size() > std::numeric_limits<uint32_t>::max()) fail("has too many tensors");

  // Names are unique.
  f.by_name_.resize(f.tensors_.size());
  std::iota(f.by_name_.begin(), f.by_name_.end(), uint32_t{0});
  std::sort(f.by_name_.begin(), f.by_name_.end(),
            [&](uint32_t a, uint32_t b) { return f.tensors_[a].name < f.tensors_[b].name; });
  for (size_t k = 1; k < f.by_name_.size(); ++k) {
    if (f.tensors_[f.by_name_[k - 1]].name == f.tensors_[f.by_name_[k]].name) {
      fail("tensor " + quote_name(f.tensors_[f.by_name_[k]].name) +
           " appears twice in the header; the file is corrupted");
    }
  }

  // Byte ranges do not overlap (empty tensors occupy nothing).
  std::vector<const safetensors_tensor*> by_offset;
  by_offset.reserve(f.tensors_.size());
  for (const safetensors_tensor& t : f.tensors_)
    if (t.size != 0) by_offset.push_back(&t);
  std::sort(
      by_offset.begin(), by_offset.end(),
      [](const safetensors_tensor* a, const safetensors_tensor* b) { return a->data < b->data; });
  for (size_t k = 1; k < by_offset.size(); ++k) {
    const safetensors_tensor& a = *by_offset[k - 1];
    const safetensors_tensor& b = *by_offset[k];
    if (a.data + a.size > b.data) {
      const auto off = [&](const safetensors_tensor& t) {
        return static_cast<uint64_t>(t.data - f.map_) - f.data_offset_;
      };
      fail("tensors " + quote_name(a.name) + " (data_offsets [" + std::to_string(off(a)) + ", " +
           std::to_string(off(a) + a.size) + "]) and " + quote_name(b.name) + " (data_offsets [" +
           std::to_string(off(b)) + ", " + std::to_string(off(b) + b.size) +
           "]) overlap; the file is corrupted");
    }
  }
  return f;
}

safetensors_file::safetensors_file(safetensors_file&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      data_offset_(other.data_offset_),
      tensors_(std::move(other.tensors_)),
      by_name_(std::move(other.by_name_)),
      metadata_(std::move(other.metadata_)) {}

safetensors_file& safetensors_file::operator=(safetensors_file&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    size_ = std::exchange(other.size_, 0);
    data_offset_ = other.data_offset_;
    tensors_ = std::move(other.tensors_);
    by_name_ = std::move(other.by_name_);
    metadata_ = std::move(other.metadata_);
  }
  return *this;
}

safetensors_file::~safetensors_file() { release(); }

void safetensors_file::release() noexcept {
  unmap({map_, size_});
  map_ = nullptr;
}

const safetensors_tensor* safetensors_file::find(std::string_view name) const noexcept {
  auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                             [&](uint32_t i, std::string_view n) { return tensors_[i].name < n; });
  if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
  return &tensors_[*it];
}

// ---- safetensors_checkpoint ----------------------------------------------------------------

namespace {

/// A shard file name from an index must stay inside the checkpoint directory.
bool is_plain_relative(const std::string& name) {
  const std::filesystem::path p(name);
  if (name.empty() || p.is_absolute()) return false;
  for (const auto& part : p)
    if (part == "..") return false;
  return true;
}

}  // namespace

safetensors_checkpoint safetensors_checkpoint::open(const std::filesystem::path& file_or_dir) {
  namespace fs = std::filesystem;
  safetensors_checkpoint c;
  c.path_ = file_or_dir;
  std::error_code ec;
  const fs::file_status st = fs::status(file_or_dir, ec);
  if (!fs::exists(st)) {
    throw error(errc::not_found,
                file_or_dir.string() + ": no such file or directory; check the model path");
  }

  fs::path index_path;
  if (fs::is_directory(st)) {
    if (fs::exists(file_or_dir / "model.safetensors.index.json", ec)) {
      index_path = file_or_dir / "model.safetensors.index.json";
    } else if (fs::exists(file_or_dir / "model.safetensors", ec)) {
      c.files_.push_back(safetensors_file::open(file_or_dir / "model.safetensors"));
    } else {
      throw error(errc::not_found, file_or_dir.string() +
                                       ": has neither model.safetensors nor "
                                       "model.safetensors.index.json; is it a safetensors model "
                                       "directory?");
    }
  } else if (file_or_dir.filename().string().ends_with(".index.json")) {
    index_path = file_or_dir;
  } else {
    c.files_.push_back(safetensors_file::open(file_or_dir));
  }

  if (index_path.empty()) {
    const safetensors_file& f = c.files_.front();
    c.metadata_ = f.metadata();
    for (const safetensors_tensor& t : f.tensors()) c.index_.push_back(&t);
  } else {
    const std::string where = index_path.string();
    const std::string text = read_text_file(index_path, "checkpoint index");
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (auto code = parser.parse(text.data(), text.size(), true).get(root)) {
      throw error(errc::parse_error, where + ": not valid JSON: " + simdjson_problem(code) +
                                         "; the index is corrupted: download it again");
    }
    simdjson::dom::object index;
    if (root.get(index)) {
      throw error(errc::parse_error, where + ": the index is " + json_type_name(root.type()) +
                                         ", expected an object with \"weight_map\"");
    }
    simdjson::dom::element map_element;
    simdjson::dom::object map;
    if (index["weight_map"].get(map_element) || map_element.get(map)) {
      throw error(
          errc::parse_error,
          where +
              (index["weight_map"].error()
                   ? std::string(": has no \"weight_map\"")
                   : ": \"weight_map\" is " + std::string(json_type_name(map_element.type())) +
                         ", expected an object") +
              " mapping each tensor name to its shard file; the index is corrupted");
    }
    simdjson::dom::object meta;
    if (!index["metadata"].get(meta)) {
      for (auto kv : meta) {
        std::string_view v;
        c.metadata_[std::string(kv.key)] =
            kv.value.get(v) ? simdjson::to_string(kv.value) : std::string(v);
      }
    }
    // Shards in order of first mention; tensors grouped by shard. Names view the parser's buffer.
    std::vector<std::pair<std::string_view, std::vector<std::string_view>>> shards;
    std::unordered_map<std::string_view, size_t> shard_of;
    for (auto field : map) {
      const std::string_view name = field.key;
      std::string_view shard;
      if (field.value.get(shard)) {
        throw error(errc::parse_error, where + ": weight_map entry " + quote_name(name) + " is " +
                                           json_type_name(field.value.type()) +
                                           ", expected the shard's file name");
      }
      auto it = shard_of.find(shard);
      if (it == shard_of.end()) {
        if (!is_plain_relative(std::string(shard))) {
          throw error(errc::parse_error,
                      where + ": weight_map places tensor " + quote_name(name) + " in " +
                          quote_name(shard) +
                          ", which is not a file name inside the checkpoint directory");
        }
        it = shard_of.emplace(shard, shards.size()).first;
        shards.push_back({shard, {}});
      }
      shards[it->second].second.push_back(name);
    }
    const fs::path dir = index_path.parent_path();
    c.files_.reserve(shards.size());
    for (const auto& [shard, names] : shards) {
      const fs::path shard_path = dir / std::string(shard);
      if (!fs::exists(shard_path, ec)) {
        throw error(errc::not_found, where + ": shard " + quote_name(shard) +
                                         " (which should hold tensor " + quote_name(names.front()) +
                                         " and " + std::to_string(names.size() - 1) +
                                         " others) is missing from " + dir.string() +
                                         "; the download is incomplete: fetch the missing shard");
      }
      c.files_.push_back(safetensors_file::open(shard_path));
      const safetensors_file& f = c.files_.back();
      for (std::string_view name : names) {
        const safetensors_tensor* t = f.find(name);
        if (t == nullptr) {
          throw error(errc::parse_error, where + ": the index places tensor " + quote_name(name) +
                                             " in shard " + quote_name(shard) + " (" +
                                             shard_path.string() +
                                             "), which does not hold it; the index and the "
                                             "shards are from different downloads");
        }
        c.index_.push_back(t);
      }
    }
  }
  std::sort(
      c.index_.begin(), c.index_.end(),
      [](const safetensors_tensor* a, const safetensors_tensor* b) { return a->name < b->name; });
  return c;
}

const safetensors_tensor* safetensors_checkpoint::find(std::string_view name) const noexcept {
  auto it =
      std::lower_bound(index_.begin(), index_.end(), name,
                       [](const safetensors_tensor* t, std::string_view n) { return t->name < n; });
  if (it == index_.end() || (*it)->name != name) return nullptr;
  return *it;
}

const safetensors_tensor& safetensors_checkpoint::tensor(std::string_view name) const {
  if (const safetensors_tensor* t = find(name)) return *t;
  throw error(errc::not_found, path_.string() + ": has no tensor " + quote_name(name) + " (" +
                                   std::to_string(index_.size()) +
                                   " tensors); the checkpoint does not match the architecture "
                                   "its config.json claims");
}

std::vector<std::string_view> safetensors_checkpoint::names() const {
  std::vector<std::string_view> out;
  out.reserve(index_.size());
  for (const safetensors_tensor* t : index_) out.push_back(t->name);
  return out;
}

// ---- write_safetensors ---------------------------------------------------------------------

void write_safetensors(const std::filesystem::path& path,
                       std::span<const safetensors_entry> tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  auto invalid = [&](const std::string& what) -> void {
    throw error(errc::invalid_argument, "write_safetensors " + file + ": " + what);
  };
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  {
    std::vector<std::string_view> names;
    for (const safetensors_entry& t : tensors) {
      if (t.name.empty()) invalid("a tensor has an empty name");
      if (t.name == "__metadata__")
        invalid("\"__metadata__\" is reserved and cannot name a tensor");
      if (element_size(t.dtype) == 0)
        invalid("tensor " + quote_name(t.name) + " has an invalid dtype");
      for (int64_t d : t.shape)
        if (d < 0)
          invalid("tensor " + quote_name(t.name) + " has a negative dimension in shape " +
                  shape_text(t.shape));
      int64_t n = 0;
      uint64_t bytes = 0;
      if (!shape_elements(t.shape, &n) ||
          __builtin_mul_overflow(static_cast<uint64_t>(n), element_size(t.dtype), &bytes)) {
        invalid("tensor " + quote_name(t.name) + " has shape " + shape_text(t.shape) +
                ", whose size overflows");
      }
      if (bytes != t.data.size()) {
        invalid("tensor " + quote_name(t.name) + " (" + to_string(t.dtype) + ", shape " +
                shape_text(t.shape) + ") needs " + std::to_string(bytes) + " bytes, but " +
                std::to_string(t.data.size()) + " were given");
      }
      names.push_back(t.name);
    }
    std::sort(names.begin(), names.end());
    if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end()) {
      invalid("tensor " + quote_name(*dup) + " is given twice");
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return element_size(tensors[a].dtype) > element_size(tensors[b].dtype);
  });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      json::append_quoted(header, k);
      header += ':';
      json::append_quoted(header, v);
    }
    header += '}';
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const safetensors_entry& t = tensors[i];
    if (header.size() > 1) header += ',';
    json::append_quoted(header, t.name);
    header += ":{\"dtype\":\"";
    header += to_string(t.dtype);
    header += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d)
      header += (d ? "," : "") + std::to_string(t.shape[d]);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + t.data.size()) + "]}";
    offset += t.data.size();
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');

  const std::filesystem::path tmp = file + ".part" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      throw error(errc::io_error,
                  file + ": cannot create " + tmp.string() + ": " + std::strerror(errno));
    const uint64_t n = header.size();
    char len[8];
    std::memcpy(len, &n, 8);
    out.write(len, 8);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (size_t i : order) {
      const auto data = tensors[i].data;
      out.write(reinterpret_cast<const char*>(data.data()),
                static_cast<std::streamsize>(data.size()));
    }
    out.flush();
    if (!out) {
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw error(errc::io_error, file + ": cannot write " + tmp.string() + " (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    throw error(errc::io_error,
                file + ": cannot move the written file into place: " + ec.message());
  }
}

}  // namespace troupe
