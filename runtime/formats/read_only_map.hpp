#pragma once
// Private: a whole regular file mapped read-only, as the model-format readers (GGUF, safetensors)
// validate and then point into it.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace troupe {

struct read_only_map {
  const std::byte* data = nullptr;
  uint64_t size = 0;
};

/// Maps `file` read-only. Throws troupe::error: not_found (no such file), io_error (cannot open,
/// not a regular file, cannot map), parse_error "<file>: <too_short(size)>" when the file holds
/// fewer than `min_bytes` bytes (checked before mapping, so an empty file is a parse error too).
read_only_map map_read_only(const std::string& file, uint64_t min_bytes,
                            const std::function<std::string(uint64_t size)>& too_short);

/// Unmaps what map_read_only mapped; a null map is ignored.
void unmap(const read_only_map& m) noexcept;

}  // namespace troupe
