#pragma once
/// The pipe protocol between troupe and `troupe-plugin-host`: length-prefixed binary frames over a
/// socketpair (the host sees its end as fd 3). No CAF, no JSON parsing: shared by host and runtime.
///
/// A frame is `u32 length` (little-endian, bytes that follow) then `u8 type` and the fields of that
/// type; integers are little-endian, a string is `u32 size` + bytes. Frames larger than
/// max_frame_bytes, unknown types, truncated fields or trailing bytes are garbage: the reader stops
/// and the runtime kills and restarts the host.
///
///   runtime -> host: init(path, config_json)        exactly once, first
///                    invoke(seq, tool, args_json)   any number, concurrently
///                    shutdown()                     unload the plugin and exit 0
///   host -> runtime: hello(name, version, flags, tools)   the answer to init, or
///                    load_error(kind, message)            (then the host exits 1)
///                    result(seq, is_error, content)       exactly one per invoke, any order

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace troupe::plugin_wire {

/// Frames larger than this are garbage (tool arguments and results are far smaller).
inline constexpr uint32_t max_frame_bytes = 64u << 20;

enum class frame_type : uint8_t {
  init = 1,
  hello = 2,
  load_error = 3,
  invoke = 4,
  result = 5,
  shutdown = 6,
};

struct wire_tool {
  std::string name;
  std::string description;
  std::string parameters;
};

/// One decoded frame; only the fields of its type are meaningful.
struct frame {
  frame_type type = frame_type::shutdown;
  uint64_t seq = 0;       // invoke, result
  uint32_t flags = 0;     // hello (TROUPE_PLUGIN_* flags); load_error (failure kind)
  bool is_error = false;  // result
  std::string text1;  // init: path; hello: name; load_error: message; invoke: tool; result: content
  std::string text2;  // init: config; hello: version; invoke: args
  std::vector<wire_tool> tools;  // hello
};

/// The frame with its length prefix, ready to write.
std::string encode(const frame& f);

/// Decodes one payload (without the length prefix). Returns an empty string on success, else what
/// is wrong with it.
std::string decode(std::string_view payload, frame& out);

enum class read_status { ok, eof, io_error, garbage };

/// Reads one whole frame from a blocking descriptor. On garbage or io_error, `problem` says what.
read_status read_frame(int fd, frame& out, std::string& problem);

/// Writes all bytes (retrying short writes and EINTR; no SIGPIPE). False on failure, errno set.
bool write_all(int fd, std::string_view bytes);

}  // namespace troupe::plugin_wire
