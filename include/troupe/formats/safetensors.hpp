#pragma once
/// Reader and writer for safetensors files (huggingface/safetensors): an 8-byte little-endian
/// header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
/// Files are memory-mapped read-only and validated when opened, so a truncated or corrupted file
/// is rejected with a troupe::error naming the file, the tensor and what is wrong instead of
/// crashing later. A checkpoint is one file or a directory of shards with an index, as Hugging Face
/// repositories store models.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

/// Element types of safetensors, all little-endian. f8_e4m3 is the "fn" variant (no infinities,
/// one NaN) that PyTorch calls float8_e4m3fn.
enum class safetensors_dtype : uint8_t {
  f64,
  f32,
  f16,
  bf16,
  i64,
  i32,
  i16,
  i8,
  u8,
  boolean,
  f8_e4m3,
  f8_e5m2
};

/// The dtype as files spell it: "F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8",
/// "BOOL", "F8_E4M3", "F8_E5M2"; "unknown" for values outside the enum.
const char* to_string(safetensors_dtype t) noexcept;

/// Bytes per element (1 for BOOL and the F8 types); 0 for values outside the enum.
size_t element_size(safetensors_dtype t) noexcept;

/// One tensor of a mapped file. `data` is not necessarily aligned to the element size (the format
/// does not promise it; writers that sort by alignment, as the Python package and
/// write_safetensors do, produce aligned data): read through memcpy or check the alignment.
struct safetensors_tensor {
  std::string name;
  safetensors_dtype dtype;
  std::vector<int64_t> shape;         ///< As in the file: outermost first ([out, in] for a Linear).
  const std::byte* data;              ///< Into the mapping; valid while the file/checkpoint lives.
  uint64_t size;                      ///< Bytes.
  const std::filesystem::path* file;  ///< The shard it lives in (stable while the file lives).

  /// Product of the shape; 1 for a scalar (empty shape).
  int64_t elements() const noexcept;
  std::span<const std::byte> bytes() const noexcept { return {data, static_cast<size_t>(size)}; }
};

/// One mapped, validated .safetensors file. Move-only; unmaps on destruction. Moving keeps the
/// tensors (and their `file` and `data` pointers) where they are.
class safetensors_file {
 public:
  /// Maps and validates the file. Throws troupe::error: not_found (no such file), io_error (cannot
  /// open or map), parse_error (malformed: the message names the file, the tensor and the
  /// problem), unsupported (a dtype of the format that troupe does not read, such as U32).
  static safetensors_file open(const std::filesystem::path& path);

  safetensors_file(safetensors_file&& other) noexcept;
  safetensors_file& operator=(safetensors_file&& other) noexcept;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;
  ~safetensors_file();

  const std::filesystem::path& path() const noexcept { return *path_; }
  /// In the order of the header.
  std::span<const safetensors_tensor> tensors() const noexcept { return tensors_; }
  /// nullptr when absent.
  const safetensors_tensor* find(std::string_view name) const noexcept;
  /// The "__metadata__" object of the header (string to string); empty when absent.
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  uint64_t file_size() const noexcept { return size_; }
  /// Byte offset of the data section (8 + the header length).
  uint64_t data_offset() const noexcept { return data_offset_; }

 private:
  safetensors_file() = default;
  void release() noexcept;

  std::unique_ptr<std::filesystem::path> path_;  // on the heap: tensors point at it
  const std::byte* map_ = nullptr;
  uint64_t size_ = 0;
  uint64_t data_offset_ = 0;
  std::vector<safetensors_tensor> tensors_;
  std::vector<uint32_t> by_name_;  // indices into tensors_, sorted by name
  std::map<std::string, std::string> metadata_;
};

/// A model's tensors: one .safetensors file, or a directory with model.safetensors or with
/// model.safetensors.index.json whose "weight_map" maps each tensor to the shard file holding it
/// (a Hugging Face sharded checkpoint). Every shard is mapped and validated when opened. Move-only.
class safetensors_checkpoint {
 public:
  /// Opens `file_or_dir`. Throws troupe::error: not_found (no such path, a directory without
  /// model.safetensors or an index, a shard the index names that is missing), parse_error (a
  /// malformed file or index, a tensor the index places in a shard that does not hold it), and the
  /// errors of safetensors_file::open.
  static safetensors_checkpoint open(const std::filesystem::path& file_or_dir);

  safetensors_checkpoint(safetensors_checkpoint&&) noexcept = default;
  safetensors_checkpoint& operator=(safetensors_checkpoint&&) noexcept = default;
  safetensors_checkpoint(const safetensors_checkpoint&) = delete;
  safetensors_checkpoint& operator=(const safetensors_checkpoint&) = delete;

  /// The path given to open().
  const std::filesystem::path& path() const noexcept { return path_; }
  /// nullptr when absent. With an index, only the tensors the index lists are found.
  const safetensors_tensor* find(std::string_view name) const noexcept;
  /// Throws troupe::error(not_found) naming the tensor and the checkpoint.
  const safetensors_tensor& tensor(std::string_view name) const;
  /// All tensor names, sorted; they view the tensors and live as long as the checkpoint.
  std::vector<std::string_view> names() const;
  /// Number of tensors.
  size_t size() const noexcept { return index_.size(); }
  /// The mapped shard files (one for a single-file checkpoint).
  std::span<const safetensors_file> files() const noexcept { return files_; }
  /// The "metadata" object of the index, or the single file's "__metadata__".
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

 private:
  safetensors_checkpoint() = default;

  std::filesystem::path path_;
  std::vector<safetensors_file> files_;
  std::vector<const safetensors_tensor*> index_;  // sorted by name
  std::map<std::string, std::string> metadata_;
};

/// One tensor to write: `data` holds product(shape) * element_size(dtype) bytes, little-endian.
struct safetensors_entry {
  std::string name;
  safetensors_dtype dtype;
  std::vector<int64_t> shape;
  std::span<const std::byte> data;
};

/// Writes a valid file (8-byte little-endian header length, JSON header padded with spaces to a
/// multiple of 8 bytes, data). Tensors are laid out without gaps, by decreasing element size
/// (stable, so in the given order within a size), which keeps every tensor aligned to its element
/// size as the Python package does. The file is written next to `path` and renamed into place.
/// Throws troupe::error: invalid_argument (empty, duplicate or reserved "__metadata__" name,
/// negative dimension, data size that does not match the shape), io_error (cannot write).
void write_safetensors(const std::filesystem::path& path,
                       std::span<const safetensors_entry> tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace troupe
