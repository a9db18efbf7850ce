#pragma once
/// Reader for GGUF model files (versions 2 and 3, little-endian): metadata, tensor infos and a
/// read-only memory map of the tensor data. Every count, length, type, offset and size is checked
/// against the file when it is opened, so a truncated or corrupted file is rejected with a
/// troupe::error that names the file, the entry and the byte offset, instead of crashing later.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// Metadata value types, numbered as in the GGUF specification.
enum class gguf_value_type : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

/// "u32", "string", "array", ...; "unknown" for other numbers.
const char* to_string(gguf_value_type t) noexcept;

/// Name of a ggml tensor type id as ggml spells it ("Q4_K", "F32"); empty for unknown ids.
std::string_view ggml_type_name(uint32_t type) noexcept;

/// Elements per block and bytes per block of a ggml tensor type; {0, 0} for unknown ids.
struct ggml_type_size {
  uint32_t block_elements;
  uint32_t block_bytes;
};
ggml_type_size ggml_type_layout(uint32_t type) noexcept;

/// One metadata entry. Scalars and arrays are read from the mapping on request by gguf_file's
/// getters; `value` points at the encoded value inside the mapping (valid while the file lives).
struct gguf_kv {
  std::string key;
  gguf_value_type type;
  gguf_value_type array_type;  ///< Element type when type == array, else == type.
  uint64_t count;              ///< Elements when type == array, else 1.
  uint64_t file_offset;        ///< Byte offset of the encoded value in the file.
  const std::byte* value;
};

/// One tensor: name, ggml type, shape with the fastest-varying dimension first (ggml's ne[]),
/// and where its bytes are.
struct gguf_tensor {
  std::string name;
  uint32_t type;                ///< ggml type id (0 F32, 1 F16, 2 Q4_0, 3 Q4_1, 8 Q8_0, 12 Q4_K, ...).
  std::vector<uint64_t> shape;  ///< ne[0..n_dims), e.g. [576, 49152] for token_embd.
  uint64_t offset;              ///< Byte offset relative to the start of the data section.
  uint64_t size;                ///< Bytes, computed from the type and the shape.
  const std::byte* data;        ///< Points into the mapping; valid while the gguf_file lives.

  uint64_t elements() const noexcept;
  std::span<const std::byte> bytes() const noexcept { return {data, static_cast<size_t>(size)}; }
};

/// An open, validated, memory-mapped GGUF file. Move-only; unmaps on destruction.
class gguf_file {
 public:
  /// Maps and validates the whole header. Throws troupe::error: not_found (no such file),
  /// io_error (cannot open or map), parse_error (malformed: the message names what and where),
  /// unsupported (GGUF version 1 or a big-endian file).
  static gguf_file open(const std::filesystem::path& path);

  gguf_file(gguf_file&& other) noexcept;
  gguf_file& operator=(gguf_file&& other) noexcept;
  gguf_file(const gguf_file&) = delete;
  gguf_file& operator=(const gguf_file&) = delete;
  ~gguf_file();

  const std::filesystem::path& path() const noexcept { return path_; }
  uint32_t version() const noexcept { return version_; }
  /// general.alignment, or 32 when the file does not set it.
  uint64_t alignment() const noexcept { return alignment_; }
  uint64_t file_size() const noexcept { return size_; }
  /// Byte offset of the data section (the tensor offsets are relative to it).
  uint64_t data_offset() const noexcept { return data_offset_; }

  // ---- metadata ----
  std::span<const gguf_kv> metadata() const noexcept { return kvs_; }
  /// nullptr when the key is absent.
  const gguf_kv* find(std::string_view key) const noexcept;
  bool contains(std::string_view key) const noexcept { return find(key) != nullptr; }

  // Typed getters. They throw troupe::error naming the file and the key: not_found when the key
  // is absent, parse_error when its type does not fit (integers convert when the value fits).
  std::string get_string(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  /// Any integer array (u8..i64, bool); throws when an element does not fit in int64.
  std::vector<int64_t> get_int_array(std::string_view key) const;
  /// f32 or f64 arrays.
  std::vector<float> get_float_array(std::string_view key) const;

  /// The same getters with a fallback for an absent key (a present key of the wrong type throws).
  std::string get_string(std::string_view key, std::string_view fallback) const;
  uint32_t get_u32(std::string_view key, uint32_t fallback) const;
  float get_f32(std::string_view key, float fallback) const;

  // ---- tensors ----
  std::span<const gguf_tensor> tensors() const noexcept { return tensors_; }
  /// nullptr when absent.
  const gguf_tensor* find_tensor(std::string_view name) const noexcept;
  /// Throws troupe::error(not_found) naming the file and the tensor.
  const gguf_tensor& tensor(std::string_view name) const;

 private:
  gguf_file() = default;
  const gguf_kv& require(std::string_view key) const;
  [[noreturn]] void wrong_type(const gguf_kv& kv, std::string_view wanted) const;
  void release() noexcept;

  std::filesystem::path path_;
  const std::byte* map_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<gguf_kv> kvs_;
  std::vector<gguf_tensor> tensors_;
};

}  // namespace troupe
