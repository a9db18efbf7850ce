// GGUF reader: maps the file, walks the header once with a bounds-checked cursor, and keeps
// pointers into the mapping. Layout: ggml-org/ggml docs/gguf.md.

#include "troupe/formats/gguf.hpp"


#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_set>
#include <utility>

#include "formats/read_only_map.hpp"
#include "troupe/error.hpp"

namespace troupe {

namespace {

constexpr uint64_t default_alignment = 32;
constexpr uint32_t max_dims = 4;  // GGML_MAX_DIMS

struct type_row {
  const char* name;
  uint32_t block_elements;
  uint32_t block_bytes;
};

// ggml type traits (ggml-org/ggml src/ggml.c type_traits); empty rows are removed ids.
constexpr type_row ggml_types[] = {
    {"F32", 1, 4},         {"F16", 1, 2},       {"Q4_0", 32, 18},    {"Q4_1", 32, 20},
    {nullptr, 0, 0},       {nullptr, 0, 0},     {"Q5_0", 32, 22},    {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},      {"Q8_1", 32, 36},    {"Q2_K", 256, 84},   {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},    {"Q5_K", 256, 176},  {"Q6_K", 256, 210},  {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66},  {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},    {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},          {"I16", 1, 2},       {"I32", 1, 4},       {"I64", 1, 8},
    {"F64", 1, 8},         {"IQ1_M", 256, 56},  {"BF16", 1, 2},      {nullptr, 0, 0},
    {nullptr, 0, 0},       {nullptr, 0, 0},     {"TQ1_0", 256, 54},  {"TQ2_0", 256, 66},
    {nullptr, 0, 0},       {nullptr, 0, 0},     {nullptr, 0, 0},     {"MXFP4", 32, 17},
    {"NVFP4", 64, 36},     {"Q1_0", 128, 18},   {"Q2_0", 64, 18},
};
constexpr uint32_t ggml_type_count = sizeof(ggml_types) / sizeof(ggml_types[0]);
static_assert(ggml_type_count == 43, "ggml type table must cover ids 0..42");

/// Encoded size of one scalar of a metadata type; 0 for string and array.
uint64_t scalar_size(gguf_value_type t) {
  switch (t) {
    case gguf_value_type::u8:
    case gguf_value_type::i8:
    case gguf_value_type::boolean: return 1;
    case gguf_value_type::u16:
    case gguf_value_type::i16: return 2;
    case gguf_value_type::u32:
    case gguf_value_type::i32:
    case gguf_value_type::f32: return 4;
    case gguf_value_type::u64:
    case gguf_value_type::i64:
    case gguf_value_type::f64: return 8;
    default: return 0;
  }
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(gguf_value_type::f64); }

bool is_integer(gguf_value_type t) {
  switch (t) {
    case gguf_value_type::u8:
    case gguf_value_type::i8:
    case gguf_value_type::u16:
    case gguf_value_type::i16:
    case gguf_value_type::u32:
    case gguf_value_type::i32:
    case gguf_value_type::u64:
    case gguf_value_type::i64: return true;
    default: return false;
  }
}

template <class T>
T load(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// An integer metadata value, wide enough for every GGUF integer type.
struct wide_int {
  bool negative;
  uint64_t magnitude;  // |value|
};

wide_int load_int(gguf_value_type t, const std::byte* p) {
  auto from_signed = [](int64_t v) {
    return wide_int{v < 0, v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v)};
  };
  switch (t) {
    case gguf_value_type::u8:
    case gguf_value_type::boolean: return {false, load<uint8_t>(p)};
    case gguf_value_type::i8: return from_signed(load<int8_t>(p));
    case gguf_value_type::u16: return {false, load<uint16_t>(p)};
    case gguf_value_type::i16: return from_signed(load<int16_t>(p));
    case gguf_value_type::u32: return {false, load<uint32_t>(p)};
    case gguf_value_type::i32: return from_signed(load<int32_t>(p));
    case gguf_value_type::u64: return {false, load<uint64_t>(p)};
    case gguf_value_type::i64: return from_signed(load<int64_t>(p));
    default: return {false, 0};
  }
}

std::string int_text(wide_int v) {
  return (v.negative ? "-" : "") + std::to_string(v.magnitude);
}

/// Bounds-checked cursor over the mapping; every failure names the file and the offset.
class cursor {
 public:
  cursor(const std::byte* base, uint64_t size, const std::string& file)
      : base_(base), size_(size), file_(file) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  const std::byte* here() const { return base_ + pos_; }

  [[noreturn]] void fail(errc code, const std::string& what) const {
    throw error(code, file_ + ": " + what);
  }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining()) {
      fail(errc::parse_error, "truncated: " + what + " at offset " + std::to_string(pos_) +
                                  " needs " + std::to_string(n) + " bytes, but the file ends at " +
                                  std::to_string(size_) +
                                  "; the file is incomplete or corrupted: download it again");
    }
  }

  void skip(uint64_t n, const std::string& what) {
    need(n, what);
    pos_ += n;
  }

  template <class T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v = load<T>(here());
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>("the length of " + what);
    if (len > remaining()) {
      fail(errc::parse_error, "the length of " + what + " at offset " + std::to_string(at) +
                                  " is " + std::to_string(len) + " bytes, but only " +
                                  std::to_string(remaining()) +
                                  " bytes follow; the file is truncated or corrupted");
    }
    std::string s(reinterpret_cast<const char*>(here()), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  const std::byte* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  const std::string& file_;
};

std::string quote_name(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 200)) out += (static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  if (s.size() > 200) out += "...";
  return out + "'";
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_add_overflow(a, b, out); }

}  // namespace

const char* to_string(gguf_value_type t) noexcept {
  switch (t) {
    case gguf_value_type::u8: return "u8";
    case gguf_value_type::i8: return "i8";
    case gguf_value_type::u16: return "u16";
    case gguf_value_type::i16: return "i16";
    case gguf_value_type::u32: return "u32";
    case gguf_value_type::i32: return "i32";
    case gguf_value_type::f32: return "f32";
    case gguf_value_type::boolean: return "bool";
    case gguf_value_type::string: return "string";
    case gguf_value_type::array: return "array";
    case gguf_value_type::u64: return "u64";
    case gguf_value_type::i64: return "i64";
    case gguf_value_type::f64: return "f64";
  }
  return "unknown";
}

std::string_view ggml_type_name(uint32_t type) noexcept {
  if (type >= ggml_type_count || ggml_types[type].name == nullptr) return {};
  return ggml_types[type].name;
}

ggml_type_size ggml_type_layout(uint32_t type) noexcept {
  if (type >= ggml_type_count) return {0, 0};
  return {ggml_types[type].block_elements, ggml_types[type].block_bytes};
}

uint64_t gguf_tensor::elements() const noexcept {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;
  return n;
}

// ---- open ----------------------------------------------------------------------------------

gguf_file gguf_file::open(const std::filesystem::path& path) {
  gguf_file f;
  f.path_ = path;
  const std::string file = path.string();

  const auto m = map_read_only(file, 8, [](uint64_t size) {
    return "only " + std::to_string(size) +
           " bytes, too small to be a GGUF file (the header alone is 24 bytes); the file is "
           "truncated or not a model";
  });
  f.map_ = m.data;
  f.size_ = m.size;

  cursor c(f.map_, f.size_, file);

  // Header.
  if (std::memcmp(f.map_, "GGUF", 4) != 0) {
    char hex[64];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", static_cast<unsigned>(f.map_[0]),
                  static_cast<unsigned>(f.map_[1]), static_cast<unsigned>(f.map_[2]),
                  static_cast<unsigned>(f.map_[3]));
    c.fail(errc::parse_error, std::string("not a GGUF file: it starts with bytes ") + hex +
                                  " instead of the magic 'GGUF' (47 47 55 46)");
  }
  c.skip(4, "the magic");
  f.version_ = c.read<uint32_t>("the version");
  if (f.version_ == 1) {
    c.fail(errc::unsupported,
           "GGUF version 1 is not supported (only versions 2 and 3); convert the model again "
           "with a current llama.cpp");
  }
  if (f.version_ != 2 && f.version_ != 3) {
    if ((f.version_ & 0xFFFF) == 0 && (f.version_ >> 16) != 0) {
      c.fail(errc::unsupported, "the file is big-endian GGUF (version field " +
                                    std::to_string(f.version_) +
                                    "); troupe reads little-endian GGUF only");
    }
    c.fail(errc::parse_error, "unknown GGUF version " + std::to_string(f.version_) +
                                  " (supported: 2 and 3); the file is corrupted or newer than "
                                  "troupe");
  }
  const uint64_t tensor_count = c.read<uint64_t>("the tensor count");
  const uint64_t kv_count = c.read<uint64_t>("the metadata count");
  // Smallest encodings: a KV is a key length (8) + type (4) + a 1-byte value; a tensor info is a
  // name length (8) + n_dims (4) + one dimension (8) + type (4) + offset (8).
  if (kv_count > c.remaining() / 13) {
    c.fail(errc::parse_error, "the header claims " + std::to_string(kv_count) +
                                  " metadata entries, more than the " +
                                  std::to_string(c.remaining()) +
                                  " remaining bytes can hold; the header is corrupted");
  }
  if (tensor_count > c.remaining() / 32) {
    c.fail(errc::parse_error, "the header claims " + std::to_string(tensor_count) +
                                  " tensors, more than the " + std::to_string(c.remaining()) +
                                  " remaining bytes can hold; the header is corrupted");
  }

  // Metadata.
  f.kvs_.reserve(static_cast<size_t>(kv_count));
  std::unordered_set<std::string> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string entry = "metadata entry " + std::to_string(i);
    const uint64_t key_at = c.pos();
    gguf_kv kv;
    kv.key = c.read_string("the key of " + entry);
    const std::string where = "metadata " + quote_name(kv.key) + " (entry " + std::to_string(i) +
                              ", offset " + std::to_string(key_at) + ")";
    if (kv.key.empty()) c.fail(errc::parse_error, entry + " at offset " + std::to_string(key_at) + " has an empty key");
    if (!keys.insert(kv.key).second) c.fail(errc::parse_error, where + " repeats a key that was already defined");
    const uint32_t type = c.read<uint32_t>("the value type of " + where);
    if (!known_value_type(type)) {
      c.fail(errc::parse_error, where + " has unknown value type " + std::to_string(type) +
                                    " (GGUF defines 0..12); the file is corrupted");
    }
    kv.type = kv.array_type = static_cast<gguf_value_type>(type);
    kv.count = 1;
    if (kv.type == gguf_value_type::array) {
      const uint32_t et = c.read<uint32_t>("the element type of " + where);
      if (!known_value_type(et)) {
        c.fail(errc::parse_error, where + " is an array of unknown value type " +
                                      std::to_string(et) + " (GGUF defines 0..12); the file is corrupted");
      }
      kv.array_type = static_cast<gguf_value_type>(et);
      if (kv.array_type == gguf_value_type::array) {
        c.fail(errc::parse_error, where + " is an array of arrays, which troupe does not read");
      }
      kv.count = c.read<uint64_t>("the length of " + where);
      const uint64_t min_bytes = kv.array_type == gguf_value_type::string ? 8 : scalar_size(kv.array_type);
      if (kv.count > c.remaining() / min_bytes) {
        c.fail(errc::parse_error, where + " claims " + std::to_string(kv.count) + " " +
                                      to_string(kv.array_type) + " elements, more than the " +
                                      std::to_string(c.remaining()) +
                                      " remaining bytes can hold; the file is truncated or corrupted");
      }
    }
    kv.file_offset = c.pos();
    kv.value = c.here();
    if (kv.array_type == gguf_value_type::string) {
      for (uint64_t k = 0; k < kv.count; ++k) {
        const uint64_t at = c.pos();
        const uint64_t len = c.read<uint64_t>("the length of string " + std::to_string(k) + " of " + where);
        if (len > c.remaining()) {
          c.fail(errc::parse_error, "string " + std::to_string(k) + " of " + where + " at offset " +
                                        std::to_string(at) + " is " + std::to_string(len) +
                                        " bytes long, but only " + std::to_string(c.remaining()) +
                                        " bytes follow; the file is truncated or corrupted");
        }
        c.skip(len, "string " + std::to_string(k) + " of " + where);
      }
    } else {
      c.skip(kv.count * scalar_size(kv.array_type), "the value of " + where);  // no overflow: checked above
    }
    if (kv.type == gguf_value_type::boolean && std::to_integer<uint8_t>(*kv.value) > 1) {
      c.fail(errc::parse_error, where + " is a bool holding " +
                                    std::to_string(std::to_integer<unsigned>(*kv.value)) +
                                    " (must be 0 or 1); the file is corrupted");
    }
    f.kvs_.push_back(std::move(kv));
  }

  if (const gguf_kv* a = f.find("general.alignment")) {
    if (a->type != gguf_value_type::u32) {
      c.fail(errc::parse_error, "metadata 'general.alignment' is a " + std::string(to_string(a->type)) +
                                    ", but GGUF requires a u32");
    }
    const uint32_t v = load<uint32_t>(a->value);
    if (v == 0 || (v & (v - 1)) != 0) {
      c.fail(errc::parse_error, "metadata 'general.alignment' is " + std::to_string(v) +
                                    ", which is not a power of two; the file is corrupted");
    }
    f.alignment_ = v;
  }

  // Tensor infos.
  f.tensors_.reserve(static_cast<size_t>(tensor_count));
  std::unordered_set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const uint64_t info_at = c.pos();
    gguf_tensor t;
    t.name = c.read_string("the name of tensor " + std::to_string(i));
    const std::string where = "tensor " + quote_name(t.name) + " (tensor " + std::to_string(i) +
                              ", info at offset " + std::to_string(info_at) + ")";
    if (t.name.empty()) c.fail(errc::parse_error, "tensor " + std::to_string(i) + " at offset " + std::to_string(info_at) + " has an empty name");
    if (!names.insert(t.name).second) c.fail(errc::parse_error, where + " has the same name as an earlier tensor");
    const uint32_t n_dims = c.read<uint32_t>("the dimension count of " + where);
    if (n_dims == 0 || n_dims > max_dims) {
      c.fail(errc::parse_error, where + " has " + std::to_string(n_dims) +
                                    " dimensions (ggml allows 1 to 4); the file is corrupted");
    }
    t.shape.resize(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      t.shape[d] = c.read<uint64_t>("dimension " + std::to_string(d) + " of " + where);
      if (t.shape[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        c.fail(errc::parse_error, where + " has dimension " + std::to_string(d) + " = " +
                                      std::to_string(t.shape[d]) + ", beyond int64; the file is corrupted");
      }
    }
    t.type = c.read<uint32_t>("the type of " + where);
    const ggml_type_size layout = ggml_type_layout(t.type);
    if (layout.block_elements == 0) {
      c.fail(errc::parse_error, where + " has unknown ggml type " + std::to_string(t.type) +
                                    " (known: 0..42 except removed ids); the file is corrupted or "
                                    "uses a quantisation newer than troupe");
    }
    const std::string type_name(ggml_type_name(t.type));
    if (t.shape[0] % layout.block_elements != 0) {
      c.fail(errc::parse_error, where + " has rows of " + std::to_string(t.shape[0]) +
                                    " elements, not a multiple of the " + type_name +
                                    " block size " + std::to_string(layout.block_elements));
    }
    uint64_t blocks = t.shape[0] / layout.block_elements;
    uint64_t elements = t.shape[0];
    bool overflow = false;
    for (uint32_t d = 1; d < n_dims; ++d) {
      overflow |= mul_overflows(blocks, t.shape[d], &blocks);
      overflow |= mul_overflows(elements, t.shape[d], &elements);
    }
    overflow |= mul_overflows(blocks, layout.block_bytes, &t.size);
    if (overflow || elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      std::string dims;
      for (uint64_t d : t.shape) dims += (dims.empty() ? "" : " x ") + std::to_string(d);
      c.fail(errc::parse_error, where + " has shape " + dims + " of " + type_name +
                                    ", whose size overflows 64 bits; the file is corrupted");
    }
    t.offset = c.read<uint64_t>("the data offset of " + where);
    f.tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment.
  uint64_t data = c.pos();
  if (uint64_t rem = data % f.alignment_; rem != 0) data += f.alignment_ - rem;
  f.data_offset_ = data;
  for (gguf_tensor& t : f.tensors_) {
    if (t.offset % f.alignment_ != 0) {
      c.fail(errc::parse_error, "tensor " + quote_name(t.name) + " has data offset " +
                                    std::to_string(t.offset) + ", not a multiple of the alignment " +
                                    std::to_string(f.alignment_) + "; the file is corrupted");
    }
    uint64_t begin = 0, end = 0;
    if (add_overflows(data, t.offset, &begin) || add_overflows(begin, t.size, &end) || end > f.size_) {
      c.fail(errc::parse_error,
             "tensor " + quote_name(t.name) + " (" + std::string(ggml_type_name(t.type)) +
                 ", file offset " + std::to_string(data) + " + " + std::to_string(t.offset) + ", " +
                 std::to_string(t.size) + " bytes) extends past the end of the file (size " +
                 std::to_string(f.size_) + "): the file is truncated; download it again");
    }
    t.data = f.map_ + begin;
  }
  std::vector<size_t> order(f.tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const gguf_tensor& a = f.tensors_[order[k - 1]];
    const gguf_tensor& b = f.tensors_[order[k]];
    if (a.offset + a.size > b.offset) {
      c.fail(errc::parse_error, "tensors " + quote_name(a.name) + " (data offset " +
                                    std::to_string(a.offset) + ", " + std::to_string(a.size) +
                                    " bytes) and " + quote_name(b.name) + " (data offset " +
                                    std::to_string(b.offset) + ") overlap; the file is corrupted");
    }
  }
  return f;
}

// ---- lifetime ------------------------------------------------------------------------------

gguf_file::gguf_file(gguf_file&& other) noexcept
    : path_(std::move(other.path_)),
      map_(std::exchange(other.map_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      version_(other.version_),
      alignment_(other.alignment_),
      data_offset_(other.data_offset_),
      kvs_(std::move(other.kvs_)),
      tensors_(std::move(other.tensors_)) {}

gguf_file& gguf_file::operator=(gguf_file&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    map_ = std::exchange(other.map_, nullptr);
    size_ = std::exchange(other.size_, 0);
    version_ = other.version_;
    alignment_ = other.alignment_;
    data_offset_ = other.data_offset_;
    kvs_ = std::move(other.kvs_);
    tensors_ = std::move(other.tensors_);
  }
  return *this;
}

gguf_file::~gguf_file() { release(); }

void gguf_file::release() noexcept {
  unmap({map_, size_});
  map_ = nullptr;
}

// ---- lookups -------------------------------------------------------------------------------

const gguf_kv* gguf_file::find(std::string_view key) const noexcept {
  for (const gguf_kv& kv : kvs_)
    if (kv.key == key) return &kv;
  return nullptr;
}

const gguf_tensor* gguf_file::find_tensor(std::string_view name) const noexcept {
  for (const gguf_tensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const gguf_tensor& gguf_file::tensor(std::string_view name) const {
  if (const gguf_tensor* t = find_tensor(name)) return *t;
  throw error(errc::not_found, path_.string() + ": has no tensor " + quote_name(name) +
                                   "; the file does not match the architecture it claims");
}

const gguf_kv& gguf_file::require(std::string_view key) const {
  if (const gguf_kv* kv = find(key)) return *kv;
  throw error(errc::not_found, path_.string() + ": has no metadata key " + quote_name(key) +
                                   "; the file is incomplete or for another architecture");
}

void gguf_file::wrong_type(const gguf_kv& kv, std::string_view wanted) const {
  std::string is = to_string(kv.type);
  if (kv.type == gguf_value_type::array) is = std::string("array of ") + to_string(kv.array_type);
  throw error(errc::parse_error, path_.string() + ": metadata " + quote_name(kv.key) + " is " + is +
                                     ", expected " + std::string(wanted));
}

namespace {

/// Range-checked integer conversion of a scalar metadata value.
template <class T>
T narrow_int(const std::string& file, const gguf_kv& kv, wide_int v, const char* target) {
  const bool fits = v.negative
      ? std::numeric_limits<T>::is_signed &&
            v.magnitude <= static_cast<uint64_t>(std::numeric_limits<T>::max()) + 1
      : v.magnitude <= static_cast<uint64_t>(std::numeric_limits<T>::max());
  if (!fits) {
    throw error(errc::parse_error, file + ": metadata " + quote_name(kv.key) + " is " +
                                       to_string(kv.type) + " " + int_text(v) +
                                       ", which does not fit in " + target);
  }
  return v.negative ? static_cast<T>(0 - v.magnitude) : static_cast<T>(v.magnitude);
}

}  // namespace

std::string gguf_file::get_string(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type != gguf_value_type::string) wrong_type(kv, "string");
  const uint64_t len = load<uint64_t>(kv.value);
  return std::string(reinterpret_cast<const char*>(kv.value + 8), static_cast<size_t>(len));
}

uint32_t gguf_file::get_u32(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (!is_integer(kv.type)) wrong_type(kv, "an integer (u32)");
  return narrow_int<uint32_t>(path_.string(), kv, load_int(kv.type, kv.value), "u32");
}

uint64_t gguf_file::get_u64(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (!is_integer(kv.type)) wrong_type(kv, "an integer (u64)");
  return narrow_int<uint64_t>(path_.string(), kv, load_int(kv.type, kv.value), "u64");
}

int64_t gguf_file::get_i64(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (!is_integer(kv.type)) wrong_type(kv, "an integer (i64)");
  return narrow_int<int64_t>(path_.string(), kv, load_int(kv.type, kv.value), "i64");
}

float gguf_file::get_f32(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type == gguf_value_type::f32) return load<float>(kv.value);
  if (kv.type == gguf_value_type::f64) return static_cast<float>(load<double>(kv.value));
  wrong_type(kv, "f32");
}

bool gguf_file::get_bool(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type != gguf_value_type::boolean) wrong_type(kv, "bool");
  return std::to_integer<uint8_t>(*kv.value) != 0;
}

std::vector<std::string> gguf_file::get_string_array(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type != gguf_value_type::array || kv.array_type != gguf_value_type::string)
    wrong_type(kv, "array of string");
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(kv.count));
  const std::byte* p = kv.value;  // lengths and bounds were checked in open()
  for (uint64_t i = 0; i < kv.count; ++i) {
    const uint64_t len = load<uint64_t>(p);
    out.emplace_back(reinterpret_cast<const char*>(p + 8), static_cast<size_t>(len));
    p += 8 + len;
  }
  return out;
}

std::vector<int64_t> gguf_file::get_int_array(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type != gguf_value_type::array ||
      !(is_integer(kv.array_type) || kv.array_type == gguf_value_type::boolean))
    wrong_type(kv, "array of integers");
  const uint64_t step = scalar_size(kv.array_type);
  std::vector<int64_t> out(static_cast<size_t>(kv.count));
  for (uint64_t i = 0; i < kv.count; ++i) {
    const wide_int v = load_int(kv.array_type, kv.value + i * step);
    if (!v.negative && v.magnitude > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      throw error(errc::parse_error, path_.string() + ": element " + std::to_string(i) +
                                         " of metadata " + quote_name(kv.key) + " is " +
                                         int_text(v) + ", which does not fit in i64");
    }
    out[i] = v.negative ? static_cast<int64_t>(0 - v.magnitude) : static_cast<int64_t>(v.magnitude);
  }
  return out;
}

std::vector<float> gguf_file::get_float_array(std::string_view key) const {
  const gguf_kv& kv = require(key);
  if (kv.type != gguf_value_type::array ||
      (kv.array_type != gguf_value_type::f32 && kv.array_type != gguf_value_type::f64))
    wrong_type(kv, "array of f32");
  std::vector<float> out(static_cast<size_t>(kv.count));
  for (uint64_t i = 0; i < kv.count; ++i) {
    out[i] = kv.array_type == gguf_value_type::f32
                 ? load<float>(kv.value + 4 * i)
                 : static_cast<float>(load<double>(kv.value + 8 * i));
  }
  return out;
}

std::string gguf_file::get_string(std::string_view key, std::string_view fallback) const {
  return contains(key) ? get_string(key) : std::string(fallback);
}

uint32_t gguf_file::get_u32(std::string_view key, uint32_t fallback) const {
  return contains(key) ? get_u32(key) : fallback;
}

float gguf_file::get_f32(std::string_view key, float fallback) const {
  return contains(key) ? get_f32(key) : fallback;
}

}  // namespace troupe
