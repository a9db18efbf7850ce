/// The fs plugin: read_file, list_dir, grep and write_file, confined to one root directory.
///
/// Configuration (JSON object given to init):
///   root              directory the tools may see (required); every path is relative to it
///   read_only         refuse write_file (default false)
///   max_read_bytes    most bytes one read_file returns (default 1 MiB)
///   max_write_bytes   most bytes one write_file writes (default 1 MiB)
///   max_list_entries  most entries one list_dir returns (default 1000)
///   max_grep_matches  most matches one grep returns (default 200)
///   max_grep_bytes    most bytes one grep scans in all (default 64 MiB)
///
/// Confinement. A path is first normalised lexically ("a/./b/../c" -> "a/c"); one that climbs
/// above the root with "..", or an absolute path outside the root, is refused. Reads then open the
/// path relative to a descriptor of the root with openat2(RESOLVE_BENEATH), so the kernel refuses
/// any symbolic link (or "..") that would leave the root, without a window between check and use;
/// where openat2 is unavailable (kernels before 5.6, some seccomp filters) the canonical path
/// (realpath) must lie inside the root. Writes walk the path one component at a time with
/// O_NOFOLLOW and refuse every symbolic link, create missing directories, and refuse files with
/// several hard links. grep never descends into symbolic links.

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <regex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "troupe/plugin/plugin.hpp"

namespace {

using troupe::plugin::call;
using troupe::plugin::result;
using troupe::plugin::tool_error;
namespace json = troupe::plugin::json;

/// An owned file descriptor.
class fd_handle {
 public:
  fd_handle() = default;
  explicit fd_handle(int fd) : fd_(fd) {}
  fd_handle(fd_handle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  fd_handle& operator=(fd_handle&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~fd_handle() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// The instance state: the root and the limits.
struct fs_root {
  std::string root;  // canonical, no trailing '/' (except "/" itself)
  fd_handle root_fd;
  bool read_only = false;
  int64_t max_read_bytes = 1 << 20;
  int64_t max_write_bytes = 1 << 20;
  int64_t max_list_entries = 1000;
  int64_t max_grep_matches = 200;
  int64_t max_grep_bytes = int64_t{64} << 20;
};

int64_t config_int(const json::value& config, const char* key, int64_t fallback) {
  const json::value* v = config.find(key);
  if (!v) return fallback;
  if (!v->is_integer() || v->as_int64() < 0)
    throw tool_error(std::string("configuration '") + key + "' must be a non-negative integer");
  return v->as_int64();
}

fs_root make_root(const json::value& config) {
  const json::value* root = config.find("root");
  if (!root || !root->is_string() || root->as_string().empty())
    throw tool_error(
      "configuration needs 'root', the directory the fs tools may use, e.g. {\"root\":\"/srv/work\"}");
  fs_root r;
  char* canonical = ::realpath(root->as_string().c_str(), nullptr);
  if (!canonical)
    throw tool_error("root directory '" + root->as_string() + "' cannot be used: " +
                     std::strerror(errno));
  r.root = canonical;
  std::free(canonical);
  r.root_fd = fd_handle(::open(r.root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r.root_fd)
    throw tool_error("root directory '" + r.root + "' cannot be opened: " + std::strerror(errno));
  if (const json::value* ro = config.find("read_only")) {
    if (!ro->is_bool()) throw tool_error("configuration 'read_only' must be a boolean");
    r.read_only = ro->as_bool();
  }
  r.max_read_bytes = config_int(config, "max_read_bytes", r.max_read_bytes);
  r.max_write_bytes = config_int(config, "max_write_bytes", r.max_write_bytes);
  r.max_list_entries = config_int(config, "max_list_entries", r.max_list_entries);
  r.max_grep_matches = config_int(config, "max_grep_matches", r.max_grep_matches);
  r.max_grep_bytes = config_int(config, "max_grep_bytes", r.max_grep_bytes);
  return r;
}

[[noreturn]] void leaves_root(const fs_root& r, const std::string& path, const char* how = "") {
  throw tool_error("path '" + path + "' leaves the tool's root " + r.root + how +
                   ": use a path inside the root");
}

/// The components of `path` relative to the root after lexical normalisation; empty for the root.
std::vector<std::string> confine(const fs_root& r, const std::string& path) {
  if (path.find('\0') != std::string::npos) throw tool_error("path contains a NUL byte");
  std::string_view rest = path;
  std::vector<std::string> parts;
  auto push_components = [&](std::string_view p, bool allow_climb) {
    size_t i = 0;
    while (i <= p.size()) {
      size_t j = p.find('/', i);
      if (j == std::string_view::npos) j = p.size();
      std::string_view c = p.substr(i, j - i);
      if (c == "..") {
        if (parts.empty()) {
          if (!allow_climb) return false;
        } else {
          parts.pop_back();
        }
      } else if (!c.empty() && c != ".") {
        parts.emplace_back(c);
      }
      i = j + 1;
    }
    return true;
  };
  if (!rest.empty() && rest[0] == '/') {
    // Absolute: normalise, then it must lie at or below the root.
    if (!push_components(rest, true)) leaves_root(r, path);
    std::vector<std::string> root_parts;
    std::swap(parts, root_parts);
    push_components(r.root, true);
    std::swap(parts, root_parts);
    if (parts.size() < root_parts.size() ||
        !std::equal(root_parts.begin(), root_parts.end(), parts.begin()))
      leaves_root(r, path);
    parts.erase(parts.begin(), parts.begin() + static_cast<ptrdiff_t>(root_parts.size()));
    return parts;
  }
  if (!push_components(rest, false)) leaves_root(r, path);
  return parts;
}

std::string join(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += '/';
    out += p;
  }
  return out.empty() ? "." : out;
}

/// Opens `path` (already confined) for reading with `flags`; symbolic links may be followed while
/// they stay inside the root.
fd_handle open_beneath(const fs_root& r, const std::string& shown, const std::string& rel,
                       int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOCTTY);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, r.root_fd.get(), rel.c_str(), &how, sizeof how);
  int err = errno;
  if (fd < 0 && (err == ENOSYS || err == EPERM)) {
    // No openat2 here: check the canonical path instead.
    std::string full = r.root == "/" ? "/" + rel : r.root + "/" + rel;
    char* canonical = ::realpath(full.c_str(), nullptr);
    if (!canonical) {
      err = errno;
    } else {
      std::string c = canonical;
      std::free(canonical);
      bool inside = c == r.root || r.root == "/" ||
                    (c.size() > r.root.size() && c.compare(0, r.root.size(), r.root) == 0 &&
                     c[r.root.size()] == '/');
      if (!inside) leaves_root(r, shown, " through a symbolic link");
      fd = ::open(c.c_str(), flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
      err = errno;
    }
  }
  if (fd >= 0) return fd_handle(static_cast<int>(fd));
  switch (err) {
    case EXDEV: leaves_root(r, shown, " through a symbolic link");
    case ENOENT:
      throw tool_error("no such file or directory '" + shown + "' under the tool's root " +
                       r.root + ": list_dir shows what exists");
    case ENOTDIR:
      throw tool_error("'" + shown + "' is not a directory (or a part of it is a file)");
    case ELOOP:
      throw tool_error("path '" + shown + "' has too many levels of symbolic links");
    default:
      throw tool_error("cannot open '" + shown + "': " + std::strerror(err));
  }
}

/// Drops a UTF-8 sequence cut off at the end of `s`, so that the next read starts on a character.
size_t complete_utf8_prefix(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

std::string_view kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "file";
  if (S_ISDIR(mode)) return "dir";
  if (S_ISLNK(mode)) return "symlink";
  return "other";
}

result read_file(call& c) {
  const fs_root& r = c.state<fs_root>();
  std::string path = c.arg<std::string>("path");
  int64_t offset = c.arg_or<int64_t>("offset", 0);
  int64_t max_bytes = c.arg_or<int64_t>("max_bytes", r.max_read_bytes);
  if (offset < 0) throw tool_error("argument 'offset' must not be negative");
  if (max_bytes <= 0) throw tool_error("argument 'max_bytes' must be positive");
  max_bytes = std::min(max_bytes, r.max_read_bytes);

  std::string rel = join(confine(r, path));
  fd_handle fd = open_beneath(r, path, rel, O_RDONLY | O_NONBLOCK);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw tool_error("cannot stat '" + path + "'");
  if (S_ISDIR(st.st_mode))
    throw tool_error("'" + path + "' is a directory: use list_dir to see its entries");
  if (!S_ISREG(st.st_mode)) throw tool_error("'" + path + "' is not a regular file");

  std::string data(static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(
                     max_bytes, st.st_size > offset ? st.st_size - offset : 0))),
                   '\0');
  size_t got = 0;
  while (got < data.size()) {
    ssize_t n = ::pread(fd.get(), data.data() + got, data.size() - got,
                        static_cast<off_t>(offset + static_cast<int64_t>(got)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw tool_error("cannot read '" + path + "': " + std::strerror(errno));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  data.resize(got);
  if (data.find('\0') != std::string::npos)
    throw tool_error("file '" + path + "' looks binary (it contains NUL bytes): read_file reads text");
  bool at_end = offset + static_cast<int64_t>(got) >= st.st_size;
  if (!at_end) data.resize(complete_utf8_prefix(data));
  int64_t next = offset + static_cast<int64_t>(data.size());
  json::object_writer out;
  out.string("path", path).number("size", st.st_size).number("offset", offset);
  out.string("content", data);
  if (next < st.st_size) out.number("next_offset", next);
  else out.null("next_offset");
  return result::ok(out.str());
}

result list_dir(call& c) {
  const fs_root& r = c.state<fs_root>();
  std::string path = c.arg_or<std::string>("path", ".");
  std::string rel = join(confine(r, path));
  fd_handle fd = open_beneath(r, path, rel, O_RDONLY | O_DIRECTORY);
  DIR* dir = ::fdopendir(fd.get());
  if (!dir) throw tool_error("cannot list '" + path + "': " + std::strerror(errno));
  int dfd = fd.release();
  struct entry {
    std::string name;
    std::string_view kind;
    int64_t size;
  };
  std::vector<entry> entries;
  while (dirent* d = ::readdir(dir)) {
    std::string_view name = d->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    if (::fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    entries.push_back({std::string(name), kind_of(st.st_mode), S_ISREG(st.st_mode) ? st.st_size : -1});
  }
  ::closedir(dir);
  std::sort(entries.begin(), entries.end(),
            [](const entry& a, const entry& b) { return a.name < b.name; });
  bool truncated = static_cast<int64_t>(entries.size()) > r.max_list_entries;
  if (truncated) entries.resize(static_cast<size_t>(r.max_list_entries));
  json::array_writer items;
  for (const auto& e : entries) {
    json::object_writer item;
    item.string("name", e.name).string("type", e.kind);
    if (e.size >= 0) item.number("size", e.size);
    items.raw(item.str());
  }
  return result::ok(json::object_writer()
                      .string("path", path)
                      .raw("entries", items.str())
                      .boolean("truncated", truncated)
                      .str());
}

/// Searches files under a directory for lines that match.
class grep_search {
 public:
  grep_search(const fs_root& r, const call& c, std::string pattern, bool use_regex,
              bool ignore_case, int64_t max_matches)
      : root_(r), call_(c), pattern_(std::move(pattern)), use_regex_(use_regex),
        ignore_case_(ignore_case), max_matches_(max_matches), bytes_left_(r.max_grep_bytes) {
    if (use_regex_) {
      int flags = REG_EXTENDED | REG_NOSUB | (ignore_case_ ? REG_ICASE : 0);
      int rc = ::regcomp(&regex_, pattern_.c_str(), flags);
      if (rc != 0) {
        char buf[256];
        ::regerror(rc, &regex_, buf, sizeof buf);
        throw tool_error("pattern '" + pattern_ +
                         "' is not a POSIX extended regular expression: " + buf +
                         " (or pass \"regex\": false to search for the plain text)");
      }
      compiled_ = true;
    } else if (ignore_case_) {
      lowered_pattern_ = lower(pattern_);
    }
  }
  ~grep_search() {
    if (compiled_) ::regfree(&regex_);
  }
  grep_search(const grep_search&) = delete;
  grep_search& operator=(const grep_search&) = delete;

  void search(fd_handle fd, const std::string& shown, int depth) {
    if (done()) return;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return;
    if (S_ISREG(st.st_mode)) return search_file(fd, shown, st);
    if (!S_ISDIR(st.st_mode) || depth > 64) return;
    DIR* dir = ::fdopendir(fd.get());
    if (!dir) return;
    int dfd = fd.release();
    std::vector<std::string> names;
    while (dirent* d = ::readdir(dir)) {
      std::string_view name = d->d_name;
      if (name == "." || name == ".." || name == ".git") continue;
      names.emplace_back(name);
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      if (done()) break;
      // O_NOFOLLOW: symbolic links are never followed while walking.
      fd_handle child(::openat(dfd, name.c_str(),
                               O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
      if (!child) continue;
      search(std::move(child), shown == "." ? name : shown + "/" + name, depth + 1);
    }
    ::closedir(dir);
  }

  std::string report() const {
    return json::object_writer()
      .raw("matches", matches_.str())
      .number("files_searched", files_)
      .boolean("truncated", truncated_)
      .str();
  }

 private:
  bool done() const { return truncated_ || call_.cancelled(); }

  static std::string lower(std::string_view s) {
    std::string out(s);
    for (char& ch : out)
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    return out;
  }

  bool matches(const std::string& line) const {
    if (use_regex_) return ::regexec(&regex_, line.c_str(), 0, nullptr, 0) == 0;
    if (ignore_case_) return lower(line).find(lowered_pattern_) != std::string::npos;
    return line.find(pattern_) != std::string::npos;
  }

  void search_file(fd_handle& fd, const std::string& shown, const struct stat& st) {
    if (st.st_size > bytes_left_) {
      truncated_ = true;
      return;
    }
    std::string data(static_cast<size_t>(st.st_size), '\0');
    size_t got = 0;
    while (got < data.size()) {
      ssize_t n = ::read(fd.get(), data.data() + got, data.size() - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    data.resize(got);
    bytes_left_ -= static_cast<int64_t>(got);
    if (data.find('\0') != std::string::npos) return;  // binary
    ++files_;
    size_t start = 0;
    int64_t line_no = 0;
    std::string line;
    while (start < data.size()) {
      size_t end = data.find('\n', start);
      if (end == std::string::npos) end = data.size();
      ++line_no;
      line.assign(data, start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (matches(line)) {
        if (count_ == max_matches_) {
          truncated_ = true;
          return;
        }
        ++count_;
        if (line.size() > 300) line.resize(complete_utf8_prefix(std::string_view(line).substr(0, 300)));
        matches_.raw(
          json::object_writer().string("path", shown).number("line", line_no).string("text", line).str());
      }
      start = end + 1;
    }
  }

  const fs_root& root_;
  const call& call_;
  std::string pattern_;
  std::string lowered_pattern_;
  bool use_regex_;
  bool ignore_case_;
  int64_t max_matches_;
  int64_t bytes_left_;
  regex_t regex_{};
  bool compiled_ = false;
  json::array_writer matches_;
  int64_t count_ = 0;
  int64_t files_ = 0;
  bool truncated_ = false;
};

result grep(call& c) {
  const fs_root& r = c.state<fs_root>();
  std::string pattern = c.arg<std::string>("pattern");
  if (pattern.empty()) throw tool_error("argument 'pattern' must not be empty");
  if (pattern.find('\0') != std::string::npos) throw tool_error("pattern contains a NUL byte");
  std::string path = c.arg_or<std::string>("path", ".");
  int64_t max_matches = std::min(c.arg_or<int64_t>("max_matches", r.max_grep_matches),
                                 r.max_grep_matches);
  if (max_matches <= 0) throw tool_error("argument 'max_matches' must be positive");
  grep_search search(r, c, pattern, c.arg_or<bool>("regex", false),
                     c.arg_or<bool>("ignore_case", false), max_matches);
  std::vector<std::string> parts = confine(r, path);
  std::string rel = join(parts);
  search.search(open_beneath(r, path, rel, O_RDONLY | O_NONBLOCK), parts.empty() ? "." : rel, 0);
  return result::ok(search.report());
}

/// Opens the directory that holds parts[0..n-1], creating missing ones, refusing symbolic links.
fd_handle open_parent_for_write(const fs_root& r, const std::string& shown,
                                const std::vector<std::string>& parts) {
  fd_handle dir(::fcntl(r.root_fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!dir) throw tool_error("cannot use the tool's root: " + std::string(std::strerror(errno)));
  std::string walked;
  for (size_t k = 0; k + 1 < parts.size(); ++k) {
    const std::string& comp = parts[k];
    walked += (walked.empty() ? "" : "/") + comp;
    if (::mkdirat(dir.get(), comp.c_str(), 0755) != 0 && errno != EEXIST)
      throw tool_error("cannot create directory '" + walked + "': " + std::strerror(errno));
    fd_handle next(::openat(dir.get(), comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!next) {
      int err = errno;
      struct stat st {};
      if (::fstatat(dir.get(), comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        throw tool_error("path '" + shown + "' goes through the symbolic link '" + walked +
                         "': write_file does not write through symbolic links; use a path "
                         "without links inside the root " + r.root);
      if (err == ENOTDIR)
        throw tool_error("cannot write '" + shown + "': '" + walked + "' is a file, not a directory");
      throw tool_error("cannot open directory '" + walked + "': " + std::strerror(err));
    }
    dir = std::move(next);
  }
  return dir;
}

result write_file(call& c) {
  const fs_root& r = c.state<fs_root>();
  std::string path = c.arg<std::string>("path");
  std::string content = c.arg<std::string>("content");
  if (r.read_only)
    throw tool_error("write_file is disabled: the fs tools are read-only under " + r.root);
  if (static_cast<int64_t>(content.size()) > r.max_write_bytes)
    throw tool_error("content of " + std::to_string(content.size()) +
                     " bytes is over write_file's limit of " + std::to_string(r.max_write_bytes) +
                     " bytes: write a smaller file");
  std::vector<std::string> parts = confine(r, path);
  if (parts.empty()) throw tool_error("path '" + path + "' is the root directory, not a file");
  fd_handle dir = open_parent_for_write(r, path, parts);
  const std::string& base = parts.back();
  fd_handle fd(::openat(dir.get(), base.c_str(),
                        O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY, 0644));
  if (!fd) {
    int err = errno;
    if (err == ELOOP)
      throw tool_error("path '" + path +
                       "' is a symbolic link: write_file does not write through symbolic links; "
                       "use a path without links inside the root " + r.root);
    if (err == EISDIR) throw tool_error("'" + path + "' is a directory, not a file");
    throw tool_error("cannot write '" + path + "': " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw tool_error("'" + path + "' is not a regular file");
  if (st.st_nlink > 1)
    throw tool_error("'" + path + "' has several hard links: write_file does not write to it");
  if (::ftruncate(fd.get(), 0) != 0)
    throw tool_error("cannot truncate '" + path + "': " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw tool_error("cannot write '" + path + "': " + std::strerror(errno));
    done += static_cast<size_t>(n);
  }
  return result::ok(json::object_writer()
                      .string("path", path)
                      .number("bytes_written", static_cast<int64_t>(done))
                      .str());
}

}  // namespace

TROUPE_PLUGIN("fs", "0.1.0") {
  plugin.on_init<fs_root>(make_root);
  plugin.tool("read_file",
              "Reads a UTF-8 text file under the tool's root. Returns JSON with the content and, "
              "when the file goes on, next_offset to continue from.",
              R"js({"type":"object","properties":{)js"
              R"js("path":{"type":"string","description":"File path relative to the root"},)js"
              R"js("offset":{"type":"integer","minimum":0,"description":"Byte offset to start at (default 0)"},)js"
              R"js("max_bytes":{"type":"integer","minimum":1,"description":"Most bytes to return"})js"
              R"js(},"required":["path"],"additionalProperties":false})js",
              read_file);
  plugin.tool("list_dir",
              "Lists a directory under the tool's root: name, type (file, dir, symlink, other) and "
              "size of each entry, sorted by name.",
              R"js({"type":"object","properties":{)js"
              R"js("path":{"type":"string","description":"Directory relative to the root (default \".\")"})js"
              R"js(},"additionalProperties":false})js",
              list_dir);
  plugin.tool("grep",
              "Searches text files under a directory (recursively, skipping .git, binary files and "
              "symbolic links) for lines containing a pattern: plain text by default, or a POSIX "
              "extended regular expression with regex=true. Returns path, line number and text.",
              R"js({"type":"object","properties":{)js"
              R"js("pattern":{"type":"string","description":"Text or regular expression to find"},)js"
              R"js("path":{"type":"string","description":"File or directory relative to the root (default \".\")"},)js"
              R"js("max_matches":{"type":"integer","minimum":1,"description":"Most matches to return"},)js"
              R"js("regex":{"type":"boolean","description":"Treat pattern as a POSIX extended regular expression"},)js"
              R"js("ignore_case":{"type":"boolean","description":"Match regardless of case"})js"
              R"js(},"required":["pattern"],"additionalProperties":false})js",
              grep);
  plugin.tool("write_file",
              "Writes a text file under the tool's root, replacing it if it exists and creating "
              "missing directories. Refuses symbolic links.",
              R"js({"type":"object","properties":{)js"
              R"js("path":{"type":"string","description":"File path relative to the root"},)js"
              R"js("content":{"type":"string","description":"The whole new content of the file"})js"
              R"js(},"required":["path","content"],"additionalProperties":false})js",
              write_file);
}
