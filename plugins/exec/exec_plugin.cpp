/// The exec plugin: run_command and run_python, each in a fresh bubblewrap sandbox.
///
/// Every call gets a new scratch directory (mounted as /scratch, the working directory, and as
/// /tmp) and nothing else writable: /usr is bound read-only, the rest of the root is a read-only
/// tmpfs, there is no network (--unshare-net: only a loopback of its own), no view of host
/// processes (--unshare-pid), no capabilities, and a cleared environment. Limits: CPU seconds and
/// address space (setrlimit in the child before exec, inherited by everything in the sandbox),
/// file size, bytes kept of stdout and stderr, and wall time (the sandbox is killed with SIGKILL;
/// --die-with-parent and the PID namespace take every process inside with it). The scratch
/// directory is removed after the call.
///
/// If bubblewrap is missing or cannot create its namespaces on this host, init still succeeds and
/// every call returns an error naming the cause: commands never run outside the sandbox.
///
/// Configuration (JSON object given to init), all optional:
///   bwrap             path of bwrap (default /usr/bin/bwrap)
///   python            interpreter inside the sandbox (default /usr/bin/python3)
///   cpu_seconds       CPU time per call (default 10)
///   memory_bytes      address-space limit per process (default 1 GiB)
///   file_bytes        largest file a call may write (default 64 MiB)
///   wall_ms           wall-clock limit per call, and the most a call may ask for (default 30000)
///   max_output_bytes  bytes kept of stdout and of stderr each (default 64 KiB)
///   scratch_parent    where scratch directories are made (default $TMPDIR or /tmp)

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
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
using clock_type = std::chrono::steady_clock;

struct exec_config {
  std::string bwrap = "/usr/bin/bwrap";
  std::string python = "/usr/bin/python3";
  int64_t cpu_seconds = 10;
  int64_t memory_bytes = int64_t{1} << 30;
  int64_t file_bytes = int64_t{64} << 20;
  int64_t wall_ms = 30000;
  int64_t max_output_bytes = 64 << 10;
  std::string scratch_parent;
  /// Empty when the sandbox works; otherwise why it does not, as the error every call returns.
  std::string sandbox_error;
};

/// What one sandboxed process did.
struct outcome {
  int exit_code = -1;
  std::string out;
  std::string err;
  bool timed_out = false;
  bool cancelled = false;
  bool truncated = false;
};

class fd_handle {
 public:
  fd_handle() = default;
  explicit fd_handle(int fd) : fd_(fd) {}
  fd_handle(fd_handle&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  fd_handle& operator=(fd_handle&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~fd_handle() { reset(); }
  int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

/// A scratch directory that removes itself (without following symbolic links) when destroyed.
class scratch_dir {
 public:
  explicit scratch_dir(const std::string& parent) {
    std::string tmpl = parent + "/troupe-exec-XXXXXX";
    if (!::mkdtemp(tmpl.data()))
      throw tool_error("cannot create a scratch directory under " + parent + ": " +
                       std::strerror(errno));
    path_ = tmpl;
  }
  ~scratch_dir() {
    ::nftw(
      path_.c_str(),
      [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p), 0; }, 16,
      FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

/// The bwrap command line around `inner` (the command as seen inside the sandbox).
std::vector<std::string> sandbox_argv(const exec_config& cfg, const std::string& scratch,
                                      const std::vector<std::string>& inner) {
  std::vector<std::string> a = {
    cfg.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
    "--ro-bind", "/usr", "/usr",
    "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
    "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
    "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
    "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
    "--ro-bind-try", "/etc/localtime", "/etc/localtime",
    "--proc", "/proc", "--dev", "/dev",
    "--bind", scratch, "/scratch", "--bind", scratch, "/tmp",
    "--remount-ro", "/",
    "--chdir", "/scratch",
    "--clearenv",
    "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
    "--setenv", "HOME", "/scratch", "--setenv", "TMPDIR", "/tmp",
    "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
    "--"};
  a.insert(a.end(), inner.begin(), inner.end());
  return a;
}

struct limits {
  int64_t cpu_seconds;
  int64_t memory_bytes;
  int64_t file_bytes;
  int64_t wall_ms;
  int64_t max_output_bytes;
};

/// Appends what is readable on `fd` to `sink`, keeping at most `cap` bytes; false at end of file.
bool drain(int fd, std::string& sink, int64_t cap, bool& truncated) {
  char buf[16384];
  ssize_t n = ::read(fd, buf, sizeof buf);
  if (n < 0) return errno == EINTR || errno == EAGAIN;
  if (n == 0) return false;
  size_t room = static_cast<size_t>(cap) > sink.size() ? static_cast<size_t>(cap) - sink.size() : 0;
  if (static_cast<size_t>(n) > room) truncated = true;
  sink.append(buf, std::min(room, static_cast<size_t>(n)));
  return true;
}

/// Runs argv (bwrap first) with the limits; never throws after the child has started.
/// `c` is null for the sandbox check at init, which cannot be cancelled.
outcome run_process(const std::vector<std::string>& argv, const limits& lim, const call* c) {
  auto cancelled = [c] { return c && c->cancelled(); };
  std::vector<char*> cargv;
  for (const auto& s : argv) cargv.push_back(const_cast<char*>(s.c_str()));
  cargv.push_back(nullptr);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw tool_error("cannot create a pipe");
  fd_handle out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw tool_error("cannot create a pipe");
  fd_handle err_r(err_pipe[0]), err_w(err_pipe[1]);
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) throw tool_error("cannot create a pipe");
  fd_handle exec_r(exec_pipe[0]), exec_w(exec_pipe[1]);
  fd_handle null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_in.get() < 0) throw tool_error("cannot open /dev/null");

  struct rlimit cpu {
    static_cast<rlim_t>(lim.cpu_seconds), static_cast<rlim_t>(lim.cpu_seconds + 1)
  };
  struct rlimit mem {
    static_cast<rlim_t>(lim.memory_bytes), static_cast<rlim_t>(lim.memory_bytes)
  };
  struct rlimit fsize {
    static_cast<rlim_t>(lim.file_bytes), static_cast<rlim_t>(lim.file_bytes)
  };
  struct rlimit core {
    0, 0
  };

  pid_t pid = ::fork();
  if (pid < 0) throw tool_error(std::string("cannot start a process: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int ok = ::setrlimit(RLIMIT_CPU, &cpu) == 0 && ::setrlimit(RLIMIT_AS, &mem) == 0 &&
             ::setrlimit(RLIMIT_FSIZE, &fsize) == 0 && ::setrlimit(RLIMIT_CORE, &core) == 0;
    if (ok && ::dup2(null_in.get(), 0) >= 0 && ::dup2(out_w.get(), 1) >= 0 &&
        ::dup2(err_w.get(), 2) >= 0) {
      // Close every other descriptor the host may have left without O_CLOEXEC.
      int keep = exec_w.get();
      if (keep > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(keep - 1), 0u);
      ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u);
      ::execv(cargv[0], cargv.data());
    }
    int e = errno;
    ssize_t ignored = ::write(exec_w.get(), &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }

  out_w.reset();
  err_w.reset();
  exec_w.reset();
  outcome o;
  int exec_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_r.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof exec_errno) {
    int status;
    ::waitpid(pid, &status, 0);
    throw tool_error("cannot run the sandbox " + argv[0] + ": " + std::strerror(exec_errno));
  }

  auto deadline = clock_type::now() + std::chrono::milliseconds(lim.wall_ms);
  bool killed = false;
  clock_type::time_point kill_time;
  bool out_open = true, err_open = true;
  ::fcntl(out_r.get(), F_SETFL, O_NONBLOCK);
  ::fcntl(err_r.get(), F_SETFL, O_NONBLOCK);
  while (out_open || err_open) {
    auto now = clock_type::now();
    if (!killed && (now >= deadline || cancelled())) {
      (now >= deadline ? o.timed_out : o.cancelled) = true;
      ::kill(-pid, SIGKILL);
      killed = true;
      kill_time = now;
    }
    // After a kill, give the pipes a moment to close, then stop waiting for them.
    if (killed && now - kill_time > std::chrono::seconds(2)) break;
    pollfd fds[2] = {{out_open ? out_r.get() : -1, POLLIN, 0},
                     {err_open ? err_r.get() : -1, POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int wait_ms = static_cast<int>(std::clamp<int64_t>(left, 0, 50));
    if (killed) wait_ms = 50;
    int rc = ::poll(fds, 2, wait_ms);
    if (rc < 0 && errno != EINTR) break;
    if (rc <= 0) continue;
    if (out_open && (fds[0].revents & (POLLIN | POLLHUP | POLLERR)))
      out_open = drain(out_r.get(), o.out, lim.max_output_bytes, o.truncated);
    if (err_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)))
      err_open = drain(err_r.get(), o.err, lim.max_output_bytes, o.truncated);
  }
  int status = 0;
  // The pipes are closed, so bwrap is exiting; a still-running bwrap here was killed above.
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) o.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) o.exit_code = 128 + WTERMSIG(status);
  return o;
}

/// Runs `inner` inside a fresh sandbox; `setup` may write files into the scratch directory first.
template <class Setup>
result run_sandboxed(const call& c, const std::vector<std::string>& inner, Setup setup) {
  const exec_config& cfg = c.state<exec_config>();
  if (!cfg.sandbox_error.empty()) throw tool_error(cfg.sandbox_error);
  int64_t wall = cfg.wall_ms;
  if (auto t = c.optional_arg<int64_t>("timeout_ms")) {
    if (*t <= 0) throw tool_error("argument 'timeout_ms' must be positive");
    wall = std::min(*t, cfg.wall_ms);
  }
  scratch_dir scratch(cfg.scratch_parent);
  setup(scratch.path());
  limits lim{cfg.cpu_seconds, cfg.memory_bytes, cfg.file_bytes, wall, cfg.max_output_bytes};
  outcome o = run_process(sandbox_argv(cfg, scratch.path(), inner), lim, &c);
  if (o.cancelled) throw tool_error("call of tool '" + std::string(c.tool()) + "' was cancelled");
  return result::ok(json::object_writer()
                      .number("exit_code", o.exit_code)
                      .string("stdout", o.out)
                      .string("stderr", o.err)
                      .boolean("timed_out", o.timed_out)
                      .boolean("truncated", o.truncated)
                      .str());
}

result run_command(call& c) {
  std::vector<std::string> inner;
  if (c.has("argv")) {
    if (c.has("command")) throw tool_error("give either 'argv' or 'command', not both");
    inner = c.arg<std::vector<std::string>>("argv");
    if (inner.empty() || inner[0].empty()) throw tool_error("argument 'argv' must not be empty");
  } else if (c.has("command")) {
    inner = {"/bin/sh", "-c", c.arg<std::string>("command")};
  } else {
    throw tool_error(
      "run_command needs 'argv' (e.g. [\"ls\", \"-l\"]) or 'command' (a shell command line)");
  }
  for (const auto& a : inner)
    if (a.find('\0') != std::string::npos) throw tool_error("argv contains a NUL byte");
  return run_sandboxed(c, inner, [](const std::string&) {});
}

result run_python(call& c) {
  std::string code = c.arg<std::string>("code");
  const exec_config& cfg = c.state<exec_config>();
  return run_sandboxed(c, {cfg.python, "-I", "/scratch/main.py"}, [&](const std::string& dir) {
    std::string file = dir + "/main.py";
    fd_handle fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644));
    if (fd.get() < 0) throw tool_error("cannot write the script to the scratch directory");
    size_t done = 0;
    while (done < code.size()) {
      ssize_t n = ::write(fd.get(), code.data() + done, code.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw tool_error("cannot write the script to the scratch directory");
      done += static_cast<size_t>(n);
    }
  });
}

int64_t config_int(const json::value& config, const char* key, int64_t fallback, int64_t min) {
  const json::value* v = config.find(key);
  if (!v) return fallback;
  if (!v->is_integer() || v->as_int64() < min)
    throw tool_error(std::string("configuration '") + key + "' must be an integer >= " +
                     std::to_string(min));
  return v->as_int64();
}

/// Checks once, at init, that bwrap can build the sandbox here; returns why not, or "".
std::string probe_sandbox(const exec_config& cfg) {
  if (::access(cfg.bwrap.c_str(), X_OK) != 0)
    return "the exec tools are disabled: bubblewrap is not installed at " + cfg.bwrap +
           " (Debian package 'bubblewrap'); commands are never run without the sandbox";
  try {
    scratch_dir scratch(cfg.scratch_parent);
    limits lim{5, cfg.memory_bytes, cfg.file_bytes, 10000, 4096};
    outcome o = run_process(sandbox_argv(cfg, scratch.path(), {"/bin/true"}), lim, nullptr);
    if (o.exit_code == 0) return "";
    std::string why = o.err.empty() ? "exit code " + std::to_string(o.exit_code) : o.err;
    while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
    return "the exec tools are disabled: bubblewrap cannot create its sandbox on this host (" +
           why +
           "). It needs user, network, PID and mount namespaces: allow unprivileged user "
           "namespaces (sysctl kernel.unprivileged_userns_clone=1, "
           "kernel.apparmor_restrict_unprivileged_userns=0) or run with CAP_SYS_ADMIN. Commands "
           "are never run without the sandbox";
  } catch (const std::exception& e) {
    return std::string("the exec tools are disabled: the sandbox check failed: ") + e.what();
  }
}

exec_config make_config(const json::value& config) {
  exec_config cfg;
  auto str = [&](const char* key, std::string& out) {
    if (const json::value* v = config.find(key)) {
      if (!v->is_string() || v->as_string().empty())
        throw tool_error(std::string("configuration '") + key + "' must be a non-empty string");
      out = v->as_string();
    }
  };
  str("bwrap", cfg.bwrap);
  str("python", cfg.python);
  const char* tmp = std::getenv("TMPDIR");
  cfg.scratch_parent = tmp && *tmp ? tmp : "/tmp";
  str("scratch_parent", cfg.scratch_parent);
  cfg.cpu_seconds = config_int(config, "cpu_seconds", cfg.cpu_seconds, 1);
  cfg.memory_bytes = config_int(config, "memory_bytes", cfg.memory_bytes, 16 << 20);
  cfg.file_bytes = config_int(config, "file_bytes", cfg.file_bytes, 0);
  cfg.wall_ms = config_int(config, "wall_ms", cfg.wall_ms, 1);
  cfg.max_output_bytes = config_int(config, "max_output_bytes", cfg.max_output_bytes, 0);
  cfg.sandbox_error = probe_sandbox(cfg);
  return cfg;
}

}  // namespace

TROUPE_PLUGIN("exec", "0.1.0") {
  plugin.on_init<exec_config>(make_config);
  plugin.tool(
    "run_command",
    "Runs a command in an isolated sandbox: no network, read-only system, a fresh empty "
    "writable working directory /scratch, and limits on CPU time, memory, output and wall time. "
    "Returns JSON {exit_code, stdout, stderr, timed_out, truncated}.",
    R"js({"type":"object","properties":{)js"
    R"js("argv":{"type":"array","items":{"type":"string"},"minItems":1,"description":"Program and arguments, run directly"},)js"
    R"js("command":{"type":"string","description":"A shell command line, run with /bin/sh -c"},)js"
    R"js("timeout_ms":{"type":"integer","minimum":1,"description":"Wall-clock limit in milliseconds"})js"
    R"js(},"additionalProperties":false})js",
    run_command);
  plugin.tool(
    "run_python",
    "Runs a Python 3 program in an isolated sandbox (no network, read-only system, writable "
    "/scratch as the working directory, limits on CPU, memory, output and wall time). Returns "
    "JSON {exit_code, stdout, stderr, timed_out, truncated}.",
    R"js({"type":"object","properties":{)js"
    R"js("code":{"type":"string","description":"The Python source to run"},)js"
    R"js("timeout_ms":{"type":"integer","minimum":1,"description":"Wall-clock limit in milliseconds"})js"
    R"js(},"required":["code"],"additionalProperties":false})js",
    run_python);
}
