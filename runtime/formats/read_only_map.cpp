#include "formats/read_only_map.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "troupe/error.hpp"

namespace troupe {

read_only_map map_read_only(const std::string& file, uint64_t min_bytes,
                            const std::function<std::string(uint64_t size)>& too_short) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) throw error(errc::not_found, file + ": no such file; check the model path");
    throw error(errc::io_error, file + ": cannot open: " + std::strerror(e));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw error(errc::io_error, file + ": not a regular file");
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < min_bytes) {
    ::close(fd);
    throw error(errc::parse_error, file + ": " + too_short(size));
  }
  void* m = ::mmap(nullptr, static_cast<size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (m == MAP_FAILED) {
    throw error(errc::io_error, file + ": cannot map " + std::to_string(size) +
                                    " bytes: " + std::strerror(map_errno));
  }
  return {static_cast<const std::byte*>(m), size};
}

void unmap(const read_only_map& m) noexcept {
  if (m.data != nullptr) ::munmap(const_cast<std::byte*>(m.data), static_cast<size_t>(m.size));
}

}  // namespace troupe
