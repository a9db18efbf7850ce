#include "plugin_wire.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace troupe::plugin_wire {
namespace {

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}

/// A bounds-checked cursor over a payload.
class cursor {
 public:
  explicit cursor(std::string_view s) : s_(s) {}
  bool u8(uint8_t& v) {
    if (s_.size() - i_ < 1) return false;
    v = static_cast<uint8_t>(s_[i_++]);
    return true;
  }
  bool u32(uint32_t& v) {
    if (s_.size() - i_ < 4) return false;
    v = 0;
    for (int k = 0; k < 4; ++k) v |= uint32_t{static_cast<uint8_t>(s_[i_ + k])} << (8 * k);
    i_ += 4;
    return true;
  }
  bool u64(uint64_t& v) {
    if (s_.size() - i_ < 8) return false;
    v = 0;
    for (int k = 0; k < 8; ++k) v |= uint64_t{static_cast<uint8_t>(s_[i_ + k])} << (8 * k);
    i_ += 8;
    return true;
  }
  bool str(std::string& v) {
    uint32_t n = 0;
    if (!u32(n) || s_.size() - i_ < n) return false;
    v.assign(s_.substr(i_, n));
    i_ += n;
    return true;
  }
  bool at_end() const { return i_ == s_.size(); }

 private:
  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::string encode(const frame& f) {
  std::string out(4, '\0');
  out.push_back(static_cast<char>(f.type));
  switch (f.type) {
    case frame_type::init:
      put_str(out, f.text1);
      put_str(out, f.text2);
      break;
    case frame_type::hello:
      put_str(out, f.text1);
      put_str(out, f.text2);
      put_u32(out, f.flags);
      put_u32(out, static_cast<uint32_t>(f.tools.size()));
      for (const auto& t : f.tools) {
        put_str(out, t.name);
        put_str(out, t.description);
        put_str(out, t.parameters);
      }
      break;
    case frame_type::load_error:
      put_u32(out, f.flags);
      put_str(out, f.text1);
      break;
    case frame_type::invoke:
      put_u64(out, f.seq);
      put_str(out, f.text1);
      put_str(out, f.text2);
      break;
    case frame_type::result:
      put_u64(out, f.seq);
      out.push_back(f.is_error ? '\1' : '\0');
      put_str(out, f.text1);
      break;
    case frame_type::shutdown:
      break;
  }
  uint32_t n = static_cast<uint32_t>(out.size() - 4);
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

std::string decode(std::string_view payload, frame& out) {
  cursor c{payload};
  uint8_t type = 0;
  if (!c.u8(type)) return "empty frame";
  out = frame{};
  bool ok = true;
  switch (static_cast<frame_type>(type)) {
    case frame_type::init:
      ok = c.str(out.text1) && c.str(out.text2);
      break;
    case frame_type::hello: {
      uint32_t n = 0;
      ok = c.str(out.text1) && c.str(out.text2) && c.u32(out.flags) && c.u32(n);
      // Each tool takes at least 12 bytes: a count beyond that is garbage, not an allocation.
      if (ok && n > payload.size() / 12) return "hello frame claims more tools than it holds";
      for (uint32_t i = 0; ok && i < n; ++i) {
        wire_tool t;
        ok = c.str(t.name) && c.str(t.description) && c.str(t.parameters);
        out.tools.push_back(std::move(t));
      }
      break;
    }
    case frame_type::load_error:
      ok = c.u32(out.flags) && c.str(out.text1);
      break;
    case frame_type::invoke:
      ok = c.u64(out.seq) && c.str(out.text1) && c.str(out.text2);
      break;
    case frame_type::result: {
      uint8_t e = 0;
      ok = c.u64(out.seq) && c.u8(e) && c.str(out.text1);
      if (ok && e > 1) return "result frame has an is_error flag other than 0 or 1";
      out.is_error = e == 1;
      break;
    }
    case frame_type::shutdown:
      break;
    default:
      return "unknown frame type " + std::to_string(type);
  }
  if (!ok) return "truncated frame of type " + std::to_string(type);
  if (!c.at_end()) return "frame of type " + std::to_string(type) + " has trailing bytes";
  out.type = static_cast<frame_type>(type);
  return {};
}

namespace {

/// 1: all read; 0: EOF before the first byte; -1: error or EOF in the middle (errno 0 then).
int read_exact(int fd, char* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, buf + got, n - got);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r == 0) {
      if (got == 0) return 0;
      errno = 0;
      return -1;
    } else if (errno != EINTR) {
      return -1;
    }
  }
  return 1;
}

}  // namespace

read_status read_frame(int fd, frame& out, std::string& problem) {
  char len_bytes[4];
  int r = read_exact(fd, len_bytes, 4);
  if (r == 0) return read_status::eof;
  if (r < 0) {
    if (errno == 0) return read_status::eof;
    problem = std::strerror(errno);
    return read_status::io_error;
  }
  uint32_t n = 0;
  for (int k = 0; k < 4; ++k) n |= uint32_t{static_cast<uint8_t>(len_bytes[k])} << (8 * k);
  if (n == 0 || n > max_frame_bytes) {
    problem = "a frame length of " + std::to_string(n) + " bytes";
    return read_status::garbage;
  }
  std::string payload(n, '\0');
  r = read_exact(fd, payload.data(), n);
  if (r <= 0) {
    if (r == 0 || errno == 0) {
      problem = "a frame cut short by end of stream";
      return read_status::garbage;
    }
    problem = std::strerror(errno);
    return read_status::io_error;
  }
  problem = decode(payload, out);
  return problem.empty() ? read_status::ok : read_status::garbage;
}

bool write_all(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t r = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (r >= 0) {
      done += static_cast<size_t>(r);
    } else if (errno == ENOTSOCK) {
      r = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (r < 0 && errno != EINTR) return false;
      if (r > 0) done += static_cast<size_t>(r);
    } else if (errno != EINTR) {
      return false;
    }
  }
  return true;
}

}  // namespace troupe::plugin_wire
