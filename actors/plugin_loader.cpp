// The plugin loader actor and the per-plugin tool actors it registers (in process and out of
// process). Protocols: include/troupe/plugin_loader.hpp; host wire protocol:
// runtime/plugin_wire.hpp.

#include "troupe/plugin_loader.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "caf/all.hpp"
#include "plugin_library.hpp"
#include "plugin_wire.hpp"
#include "troupe/caf_types.hpp"

extern char** environ;

namespace troupe {
namespace {

namespace wire = plugin_wire;
namespace loading = plugin_loading;
using namespace std::chrono_literals;

// Messages a plugin tool actor sends itself or receives from its helper threads.
using open_atom = caf::atom_constant<caf::atom("plg_open")>;      // loader -> plugin: start
using opened_atom = caf::atom_constant<caf::atom("plg_opened")>;  // open thread -> plugin
using done_atom = caf::atom_constant<caf::atom("plg_done")>;      // (gen, seq, content, is_error)
using hello_atom = caf::atom_constant<caf::atom("plg_hello")>;    // (gen, name, version, tools)
using lderr_atom = caf::atom_constant<caf::atom("plg_lderr")>;    // (gen, kind, message)
using down_atom = caf::atom_constant<caf::atom("plg_down")>;      // (gen, reason, garbage)
using timeout_atom = caf::atom_constant<caf::atom("plg_tmo")>;    // (seq)
using start_atom = caf::atom_constant<caf::atom("plg_start")>;    // (gen): restart the host
using drain_atom = caf::atom_constant<caf::atom("plg_drain")>;    // loader -> plugin: unload
using closed_atom = caf::atom_constant<caf::atom("plg_closed")>;  // close thread -> plugin

constexpr auto open_timeout = std::chrono::seconds(30);
constexpr auto host_start_timeout = std::chrono::seconds(20);
constexpr auto host_exit_grace = std::chrono::milliseconds(2000);
constexpr auto registry_timeout = std::chrono::seconds(30);
/// The registry's own timeout for plugin tools lies beyond the tool actor's, so that the tool
/// actor's more precise message (cancelled, host restarted) is the one the model sees.
constexpr uint32_t registry_timeout_margin_ms = 2000;

errc to_errc(loading::failure why) {
  switch (why) {
    case loading::failure::not_found:
      return errc::not_found;
    case loading::failure::abi_mismatch:
      return errc::unsupported;
    case loading::failure::none:
      return errc::internal;
    default:
      return errc::invalid_argument;
  }
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

// ------------------------------------------------------------------------------------------------
// One troupe-plugin-host process and the thread that reads its frames.
// ------------------------------------------------------------------------------------------------

/// Only the reader thread reaps the process; kill() is refused once it has, so a recycled pid is
/// never signalled.
struct host_process {
  pid_t pid = -1;
  int fd = -1;
  std::mutex mutex;
  bool reaped = false;
  std::thread reader;

  void kill_now() {
    std::lock_guard<std::mutex> guard(mutex);
    if (!reaped && pid > 0) ::kill(pid, SIGKILL);
  }

  /// Waits for the process to end (killing it if it lingers after closing its channel), reaps it
  /// and says how it ended.
  std::string reap() {
    siginfo_t info{};
    bool ended = false;
    for (int i = 0; i < 250 && !ended; ++i) {
      info.si_pid = 0;
      if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) break;  // ECHILD
      ended = info.si_pid == pid;
      if (!ended) std::this_thread::sleep_for(2ms);
    }
    if (!ended) {
      kill_now();
      info.si_pid = 0;
      while (::waitid(P_PID, pid, &info, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
      }
    }
    {
      std::lock_guard<std::mutex> guard(mutex);
      ::waitpid(pid, nullptr, WNOHANG);
      reaped = true;
    }
    if (info.si_pid != pid) return "exited";
    if (info.si_code == CLD_EXITED) return fmt::format("exited with status {}", info.si_status);
    return fmt::format("crashed ({})", signal_name(info.si_status));
  }

  /// Kills the process (if still running) and waits for the reader. Called by the tool actor.
  void stop() {
    if (reader.joinable()) {
      kill_now();
      reader.join();
    }
    if (fd >= 0) ::close(fd);
    fd = -1;
  }

  ~host_process() { stop(); }
};

void read_host(host_process* hp, caf::actor target, uint64_t gen) {
  std::string garbage;
  for (;;) {
    wire::frame f;
    std::string problem;
    auto st = wire::read_frame(hp->fd, f, problem);
    if (st == wire::read_status::garbage) {
      garbage = problem;
      break;
    }
    if (st != wire::read_status::ok) break;
    if (f.type == wire::frame_type::result) {
      caf::anon_send(target, done_atom::value, gen, f.seq, std::move(f.text1), f.is_error);
    } else if (f.type == wire::frame_type::hello) {
      std::vector<tool_spec> tools;
      for (auto& t : f.tools)
        tools.push_back({std::move(t.name), std::move(t.description), std::move(t.parameters)});
      caf::anon_send(target, hello_atom::value, gen, std::move(f.text1), std::move(f.text2),
                     std::move(tools));
    } else if (f.type == wire::frame_type::load_error) {
      caf::anon_send(target, lderr_atom::value, gen, f.flags, std::move(f.text1));
    } else {
      garbage = fmt::format("a frame of type {} that a host never sends", static_cast<int>(f.type));
      break;
    }
  }
  if (!garbage.empty()) hp->kill_now();
  auto how = hp->reap();
  caf::anon_send(target, down_atom::value, gen,
                 garbage.empty() ? how : fmt::format("sent malformed data ({})", garbage),
                 !garbage.empty());
}

/// Starts a host and sends it the init frame. Throws troupe::error.
std::unique_ptr<host_process> start_host(const std::string& host_path, const std::string& path,
                                         const std::string& config_json, const caf::actor& target,
                                         uint64_t gen) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw error{errc::io_error, fmt::format("cannot create a socket pair for the plugin host: {}",
                                            std::strerror(errno))};
  // The child's end must not be fd 3 already (dup2 onto itself would keep FD_CLOEXEC).
  int child = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
  ::close(sv[1]);
  auto hp = std::make_unique<host_process>();
  hp->fd = sv[0];
  if (child < 0)
    throw error{errc::io_error,
                fmt::format("cannot prepare the plugin host's channel: {}", std::strerror(errno))};
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, child, 3);
  std::string fd_arg = "3";
  char* argv[] = {const_cast<char*>(host_path.c_str()), const_cast<char*>("--fd"), fd_arg.data(),
                  nullptr};
  int rc = ::posix_spawn(&hp->pid, host_path.c_str(), &fa, nullptr, argv, environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(child);
  if (rc != 0) {
    hp->pid = -1;
    throw error{errc::io_error, fmt::format("cannot start the plugin host '{}': {}; set "
                                            "TROUPE_PLUGIN_HOST to a working troupe-plugin-host",
                                            host_path, std::strerror(rc))};
  }
  // A host whose main loop stops reading for 2 s is treated as hung (the write fails).
  timeval tv{2, 0};
  ::setsockopt(hp->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int buf = 1 << 20;
  ::setsockopt(hp->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  wire::frame init;
  init.type = wire::frame_type::init;
  init.text1 = path;
  init.text2 = config_json;
  wire::write_all(hp->fd, wire::encode(init));  // a failure shows up as the host's exit
  hp->reader = std::thread(read_host, hp.get(), target, gen);
  return hp;
}

// ------------------------------------------------------------------------------------------------
// The tool actor of one plugin.
// ------------------------------------------------------------------------------------------------

/// One call the plugin has not answered yet.
struct pending_call {
  std::string tool;  // the plugin's name for it (without prefix)
  std::string call_id;
  std::string args;
  caf::typed_response_promise<tool_result> rp;
  bool sent = false;  // out of process: written to the current host
};

/// What the thread that runs dlopen hands back.
struct open_slot {
  std::unique_ptr<loading::library> lib;
  loading::failure why = loading::failure::none;
  std::string message;
};

/// The context of one in-process call, owned by the plugin until its callback runs.
struct call_context {
  caf::actor target;
  uint64_t seq;
  std::shared_ptr<std::atomic<int>> running;
};

void on_async_result(void* ud, const char* content, size_t size, int is_error) {
  auto* ctx = static_cast<call_context*>(ud);
  caf::anon_send(ctx->target, done_atom::value, uint64_t{0}, ctx->seq,
                 std::string(content ? content : "", content ? size : 0), is_error != 0);
  ctx->running->fetch_sub(1);
  delete ctx;
}

struct inline_sink {
  std::string content;
  bool is_error = true;
};

void on_inline_result(void* ud, const char* content, size_t size, int is_error) {
  auto* s = static_cast<inline_sink*>(ud);
  s->content.assign(content ? content : "", content ? size : 0);
  s->is_error = is_error != 0;
}

enum class plugin_state { opening, ready, restarting, failed, draining, closed };

struct plugin_actor_state {
  static inline const char* name = "troupe.plugin";
  plugin_actor_state() = default;

  // Configuration.
  std::string path;
  plugin_config cfg;
  std::string host_path;
  plugin_info info;
  caf::typed_response_promise<plugin_info> open_rp;
  std::shared_ptr<open_slot> slot;  // filled by the thread that runs dlopen

  plugin_state st = plugin_state::opening;
  std::string failed_message;
  uint64_t next_seq = 1;
  std::map<uint64_t, pending_call> pending;
  std::set<uint64_t> abandoned;  // in process: timed out, still running in the plugin
  caf::typed_response_promise<bool> drain_rp;

  // In process.
  std::unique_ptr<loading::library> lib;
  std::shared_ptr<std::atomic<int>> running = std::make_shared<std::atomic<int>>(0);
  std::deque<uint64_t> serial_queue;  // calls waiting for a non-thread-safe plugin
  bool serial_busy = false;

  // Out of process.
  std::unique_ptr<host_process> host;
  uint64_t gen = 0;
  uint32_t restarts_in_a_row = 0;

  ~plugin_actor_state() {
    if (host) host->stop();
    // A call still inside the plugin (a tool that never returns) makes unloading unsafe: the
    // library then stays mapped until the process exits.
    if (lib && running->load() != 0) (void)lib.release();
  }
};

using plugin_pointer = caf::stateful_actor<plugin_actor_state>*;

const std::string& plugin_label(plugin_pointer self) {
  return self->state.info.name.empty() ? self->state.path : self->state.info.name;
}

void finish_call(plugin_pointer self, uint64_t seq, tool_result r) {
  auto it = self->state.pending.find(seq);
  if (it == self->state.pending.end()) return;
  auto rp = std::move(it->second.rp);
  r.call_id = it->second.call_id;
  self->state.pending.erase(it);
  rp.deliver(std::move(r));
}

void check_drained(plugin_pointer self);
void start_inproc_call(plugin_pointer self, uint64_t seq);

// --- in process ---

void start_next_serial(plugin_pointer self) {
  auto& s = self->state;
  while (!s.serial_busy && !s.serial_queue.empty()) {
    auto seq = s.serial_queue.front();
    s.serial_queue.pop_front();
    if (s.pending.count(seq)) start_inproc_call(self, seq);
  }
}

void start_inproc_call(plugin_pointer self, uint64_t seq) {
  auto& s = self->state;
  auto& c = s.pending.at(seq);
  const auto& d = s.lib->descriptor();
  if (s.cfg.inline_calls) {
    inline_sink sink;
    s.running->fetch_add(1);
    d.invoke(s.lib->instance(), c.tool.c_str(), c.args.data(), c.args.size(), &on_inline_result,
             &sink);
    s.running->fetch_sub(1);
    finish_call(self, seq, tool_result{{}, std::move(sink.content), sink.is_error});
    return;
  }
  bool serial = !s.lib->thread_safe() && !s.lib->invoke_async();
  if (serial && s.serial_busy) {
    s.serial_queue.push_back(seq);
    return;
  }
  auto* ctx = new call_context{caf::actor_cast<caf::actor>(self), seq, s.running};
  s.running->fetch_add(1);
  if (auto async = s.lib->invoke_async()) {
    async(s.lib->instance(), seq, c.tool.c_str(), c.args.data(), c.args.size(), &on_async_result,
          ctx);
    return;
  }
  // No invoke_async: the synchronous invoke on a thread of its own, as the ABI asks.
  s.serial_busy = serial;
  try {
    std::thread([fn = d.invoke, inst = s.lib->instance(), tool = c.tool, args = c.args, ctx] {
      fn(inst, tool.c_str(), args.data(), args.size(), &on_async_result, ctx);
    }).detach();
  } catch (const std::system_error& e) {
    s.serial_busy = false;
    s.running->fetch_sub(1);
    delete ctx;
    finish_call(
        self, seq,
        tool_result::failure(
            {}, fmt::format("plugin '{}' cannot start a thread for tool '{}': {}; try again later",
                            s.info.name, c.tool, e.what())));
  }
}

// --- out of process ---

void fail_sent_calls(plugin_pointer self,
                     const std::function<std::string(const std::string&)>& why) {
  std::vector<uint64_t> sent;
  for (const auto& [seq, c] : self->state.pending)
    if (c.sent) sent.push_back(seq);
  for (auto seq : sent) {
    auto msg = why(self->state.pending.at(seq).tool);
    finish_call(self, seq, tool_result::failure({}, std::move(msg)));
  }
}

void send_invoke(plugin_pointer self, uint64_t seq) {
  auto& s = self->state;
  auto& c = s.pending.at(seq);
  wire::frame f;
  f.type = wire::frame_type::invoke;
  f.seq = seq;
  f.text1 = c.tool;
  f.text2 = c.args;
  c.sent = true;
  // A failed write means the host died or stopped reading: kill it; its down message fails the
  // call and restarts the host.
  if (!wire::write_all(s.host->fd, wire::encode(f))) s.host->kill_now();
}

void launch_host(plugin_pointer self) {
  auto& s = self->state;
  if (s.host) s.host->stop();
  ++s.gen;
  try {
    s.host = start_host(s.host_path, s.path, s.cfg.config_json, caf::actor_cast<caf::actor>(self),
                        s.gen);
  } catch (const error& e) {
    s.host.reset();
    // Treat as a crash at start: the down handler's logic, without a process.
    caf::anon_send(caf::actor_cast<caf::actor>(self), down_atom::value, s.gen,
                   fmt::format("could not start ({})", e.message()), false);
    return;
  }
  self->delayed_send(self, host_start_timeout, start_atom::value, s.gen);
}

void schedule_restart(plugin_pointer self) {
  auto& s = self->state;
  if (s.st == plugin_state::draining || s.st == plugin_state::closed) {
    check_drained(self);
    return;
  }
  if (s.restarts_in_a_row >= s.cfg.max_restarts) {
    s.st = plugin_state::failed;
    s.failed_message = fmt::format(
        "plugin '{}' is disabled: its host failed {} times in a row (max_restarts = {}); unload "
        "the plugin and load it again, or fix the plugin",
        plugin_label(self), s.restarts_in_a_row + 1, s.cfg.max_restarts);
    std::vector<uint64_t> all;
    for (const auto& [seq, c] : s.pending) all.push_back(seq);
    for (auto seq : all) finish_call(self, seq, tool_result::failure({}, s.failed_message));
    return;
  }
  uint64_t delay = s.cfg.restart_backoff_ms;
  for (uint32_t i = 0; i < s.restarts_in_a_row && delay < s.cfg.max_backoff_ms; ++i) delay *= 2;
  delay = std::min<uint64_t>(delay, s.cfg.max_backoff_ms);
  ++s.restarts_in_a_row;
  ++s.info.restarts;
  s.st = plugin_state::restarting;
  // A new generation now, so that messages of the dead host are ignored from here on.
  ++s.gen;
  self->delayed_send(self, std::chrono::milliseconds(delay), start_atom::value, s.gen);
}

/// The host of the current generation is gone (crashed, killed, hung): fail what it was running.
void host_lost(plugin_pointer self, const std::string& reason, bool garbage) {
  auto& s = self->state;
  if (s.host) {
    s.host->stop();
    s.host.reset();
  }
  if (s.st == plugin_state::opening) {
    s.st = plugin_state::failed;
    s.failed_message =
        fmt::format("the plugin host for '{}' {} before it reported the plugin", s.path, reason);
    s.open_rp.deliver(to_caf_error(error{errc::tool_failed, s.failed_message}));
    return;
  }
  auto name = plugin_label(self);
  fail_sent_calls(self, [&](const std::string& tool) {
    return fmt::format(
        "plugin '{}' {} during the call to '{}'; the host is being restarted, "
        "so call the tool again if that makes sense",
        name, reason, tool);
  });
  schedule_restart(self);
}

// --- both ---

void check_drained(plugin_pointer self) {
  auto& s = self->state;
  if (s.st != plugin_state::draining || !s.pending.empty() || !s.abandoned.empty()) return;
  s.st = plugin_state::closed;
  if (s.cfg.out_of_process) {
    if (s.host) {
      wire::frame f;
      f.type = wire::frame_type::shutdown;
      wire::write_all(s.host->fd, wire::encode(f));
      // The host exits by itself (its down message ends the unload); after a grace period it is
      // killed.
      self->delayed_send(self, host_exit_grace, closed_atom::value);
    } else {
      caf::anon_send(caf::actor_cast<caf::actor>(self), closed_atom::value);
    }
    return;
  }
  // dlclose runs the plugin's destructors: off the scheduler.
  std::thread([lib = std::move(s.lib), target = caf::actor_cast<caf::actor>(self)]() mutable {
    lib.reset();
    caf::anon_send(target, closed_atom::value);
  }).detach();
}

caf::behavior plugin_actor(plugin_pointer self, std::string path, plugin_config cfg,
                           std::string host_path) {
  self->state.path = std::move(path);
  self->state.cfg = std::move(cfg);
  self->state.host_path = std::move(host_path);
  self->state.info.path = self->state.path;
  self->state.info.out_of_process = self->state.cfg.out_of_process;
  return {
      [self](open_atom) -> caf::result<plugin_info> {
        auto& s = self->state;
        s.open_rp = self->make_response_promise<plugin_info>();
        if (s.cfg.out_of_process) {
          launch_host(self);
          return s.open_rp;
        }
        auto slot = std::make_shared<open_slot>();
        s.slot = slot;
        std::thread([slot, path = s.path, config = s.cfg.config_json,
                     target = caf::actor_cast<caf::actor>(self)] {
          try {
            slot->lib = loading::library::open(path, config);
          } catch (const loading::load_error& e) {
            slot->why = e.why();
            slot->message = e.what();
          } catch (const std::exception& e) {
            slot->why = loading::failure::not_a_library;
            slot->message = fmt::format("loading plugin '{}' failed: {}", path, e.what());
          }
          caf::anon_send(target, opened_atom::value);
        }).detach();
        return s.open_rp;
      },
      [self](opened_atom) {
        auto& s = self->state;
        auto slot = std::move(s.slot);
        if (!slot->lib) {
          s.st = plugin_state::failed;
          s.open_rp.deliver(to_caf_error(error{to_errc(slot->why), slot->message}));
          return;
        }
        s.lib = std::move(slot->lib);
        s.info.name = s.lib->name();
        s.info.version = s.lib->version();
        for (const auto& t : s.lib->tools())
          s.info.tools.push_back({s.cfg.tool_prefix + t.name, t.description, t.parameters});
        s.st = plugin_state::ready;
        s.open_rp.deliver(s.info);
      },
      [self](hello_atom, uint64_t gen, std::string& name, std::string& version,
             std::vector<tool_spec>& tools) {
        auto& s = self->state;
        if (gen != s.gen) return;
        if (s.st == plugin_state::opening) {
          s.info.name = std::move(name);
          s.info.version = std::move(version);
          for (auto& t : tools) t.name = s.cfg.tool_prefix + t.name;
          s.info.tools = std::move(tools);
          s.st = plugin_state::ready;
          s.open_rp.deliver(s.info);
          return;
        }
        if (s.st != plugin_state::restarting) return;
        s.st = plugin_state::ready;
        for (auto& [seq, c] : s.pending)
          if (!c.sent) send_invoke(self, seq);
      },
      [self](lderr_atom, uint64_t gen, uint32_t why, std::string& message) {
        auto& s = self->state;
        if (gen != s.gen) return;
        if (s.st == plugin_state::opening) {
          s.st = plugin_state::failed;
          s.open_rp.deliver(
              to_caf_error(error{to_errc(static_cast<loading::failure>(why)), std::move(message)}));
          return;
        }
        // The file changed under a running plugin: stop trying.
        s.st = plugin_state::failed;
        s.failed_message = fmt::format("plugin '{}' cannot be restarted: {}", s.info.name, message);
        std::vector<uint64_t> all;
        for (const auto& [seq, c] : s.pending) all.push_back(seq);
        for (auto seq : all) finish_call(self, seq, tool_result::failure({}, s.failed_message));
        check_drained(self);
      },
      [self](down_atom, uint64_t gen, const std::string& reason, bool garbage) {
        auto& s = self->state;
        if (gen != s.gen) return;
        if (s.st == plugin_state::closed) {  // the host exited after shutdown, as asked
          if (s.host) s.host->stop();
          s.host.reset();
          if (s.drain_rp.pending()) s.drain_rp.deliver(true);
          return;
        }
        host_lost(self, reason, garbage);
      },
      [self](start_atom, uint64_t gen) {
        auto& s = self->state;
        if (gen != s.gen) return;
        if (s.st == plugin_state::restarting && !s.host) {
          launch_host(self);
          s.st = plugin_state::restarting;
        } else if (s.st == plugin_state::opening || s.st == plugin_state::restarting) {
          // Started but never said hello.
          s.host->kill_now();
        }
      },
      [self](invoke_atom, tool_call& call) -> caf::result<tool_result> {
        auto& s = self->state;
        const auto& name = plugin_label(self);
        if (s.st == plugin_state::draining || s.st == plugin_state::closed)
          return tool_result::failure(
              call.id,
              fmt::format("plugin '{}' is being unloaded: tool '{}' is no longer available", name,
                          call.name));
        if (s.st == plugin_state::failed) return tool_result::failure(call.id, s.failed_message);
        if (s.st == plugin_state::opening)
          return tool_result::failure(call.id, fmt::format("plugin '{}' is still loading", name));
        std::string tool = call.name;
        if (!s.cfg.tool_prefix.empty() && tool.rfind(s.cfg.tool_prefix, 0) == 0)
          tool.erase(0, s.cfg.tool_prefix.size());
        auto seq = s.next_seq++;
        auto rp = self->make_response_promise<tool_result>();
        s.pending.emplace(seq,
                          pending_call{std::move(tool), call.id, std::move(call.arguments), rp});
        if (s.cfg.tools.timeout_ms != 0 && !(s.cfg.inline_calls && !s.cfg.out_of_process))
          self->delayed_send(self, std::chrono::milliseconds(s.cfg.tools.timeout_ms),
                             timeout_atom::value, seq);
        if (!s.cfg.out_of_process)
          start_inproc_call(self, seq);
        else if (s.st == plugin_state::ready)
          send_invoke(self, seq);
        return rp;
      },
      [self](done_atom, uint64_t gen, uint64_t seq, std::string& content, bool is_error) {
        auto& s = self->state;
        if (s.cfg.out_of_process) {
          if (gen != s.gen) return;
          if (!s.pending.count(seq) || !s.pending.at(seq).sent) {
            s.host->kill_now();  // an answer to a call it never got: the down message follows
            return;
          }
          s.restarts_in_a_row = 0;
        } else if (s.serial_busy) {
          s.serial_busy = false;
          start_next_serial(self);
        }
        s.abandoned.erase(seq);
        finish_call(self, seq, tool_result{{}, std::move(content), is_error});
        check_drained(self);
      },
      [self](timeout_atom, uint64_t seq) {
        auto& s = self->state;
        auto it = s.pending.find(seq);
        if (it == s.pending.end()) return;
        auto tool = it->second.tool;
        auto name = plugin_label(self);
        auto ms = s.cfg.tools.timeout_ms;
        if (!s.cfg.out_of_process) {
          bool started =
              std::find(s.serial_queue.begin(), s.serial_queue.end(), seq) == s.serial_queue.end();
          if (started) {
            s.abandoned.insert(seq);
            if (auto cancel = s.lib ? s.lib->cancel() : nullptr) cancel(s.lib->instance(), seq);
          }
          finish_call(self, seq,
                      tool_result::failure(
                          {}, fmt::format("tool '{}' of plugin '{}' did not finish within {} ms, "
                                          "so the call was {}; try again, "
                                          "perhaps with smaller input",
                                          tool, name, ms,
                                          started && s.lib && s.lib->cancel() ? "cancelled"
                                                                              : "abandoned")));
          check_drained(self);
          return;
        }
        if (!it->second.sent) {  // still waiting for a restarting host
          finish_call(
              self, seq,
              tool_result::failure(
                  {},
                  fmt::format(
                      "tool '{}' of plugin '{}' did not answer within {} ms: the plugin's host is "
                      "restarting; try again later",
                      tool, name, ms)));
          check_drained(self);
          return;
        }
        finish_call(self, seq,
                    tool_result::failure(
                        {}, fmt::format("tool '{}' of plugin '{}' did not answer within {} ms; the "
                                        "plugin host was killed and is "
                                        "being restarted; try again, perhaps with smaller input",
                                        tool, name, ms)));
        host_lost(self, fmt::format("was killed because a call to '{}' timed out", tool), false);
        check_drained(self);
      },
      [self](drain_atom) -> caf::result<bool> {
        auto& s = self->state;
        s.drain_rp = self->make_response_promise<bool>();
        if (s.st == plugin_state::closed && !s.lib && !s.host) {
          s.drain_rp.deliver(true);
          return s.drain_rp;
        }
        // Calls waiting for a restart will not run any more.
        std::vector<uint64_t> unsent;
        for (const auto& [seq, c] : s.pending)
          if (s.cfg.out_of_process && !c.sent) unsent.push_back(seq);
        for (auto seq : unsent)
          finish_call(
              self, seq,
              tool_result::failure(
                  {}, fmt::format("plugin '{}' is being unloaded: tool '{}' is no longer available",
                                  plugin_label(self), s.pending.at(seq).tool)));
        s.st = plugin_state::draining;
        check_drained(self);
        return s.drain_rp;
      },
      [self](closed_atom) {
        auto& s = self->state;
        if (s.host) {
          s.host->stop();
          s.host.reset();
        }
        if (s.drain_rp.pending()) s.drain_rp.deliver(true);
      },
      [self](describe_atom) {
        auto info = self->state.info;
        auto& s = self->state;
        info.calls_in_flight = static_cast<uint32_t>(s.pending.size() + s.abandoned.size());
        switch (s.st) {
          case plugin_state::restarting:
            info.state = "restarting";
            break;
          case plugin_state::failed:
            info.state = "failed";
            break;
          case plugin_state::draining:
          case plugin_state::closed:
            info.state = "unloading";
            break;
          default:
            info.state = "loaded";
            break;
        }
        return info;
      },
  };
}

// ------------------------------------------------------------------------------------------------
// The loader.
// ------------------------------------------------------------------------------------------------

struct loaded_plugin {
  plugin_info info;
  plugin_config cfg;
  caf::actor actor;
  bool unloading = false;
};

struct loader_state {
  static inline const char* name = "troupe.plugin_loader";
  loader_state() = default;  // not an aggregate: CAF must not build it from the self pointer
  tool_registry_actor registry;
  plugin_options options;
  std::map<std::string, loaded_plugin> plugins;  // by plugin name
  std::set<std::string> loading;                 // canonical paths being loaded
};

using loader_pointer = plugin_loader_actor::stateful_pointer<loader_state>;

void stop_actor(const caf::actor& a) { caf::anon_send_exit(a, caf::exit_reason::user_shutdown); }

/// Registers `info`'s tools one after the other, then calls done(error-or-none).
void register_tools(loader_pointer self, std::shared_ptr<plugin_info> info, tool_options opts,
                    caf::actor pa, size_t i, std::function<void(error)> done) {
  if (i == info->tools.size()) return done(error{});
  self->request(self->state.registry, registry_timeout, register_atom::value, info->tools[i], opts,
                caf::actor_cast<tool_actor>(pa))
      .then([=](bool) { register_tools(self, info, opts, pa, i + 1, done); },
            [=](caf::error& e) {
              done(from_caf_error(e, fmt::format("registering tool '{}'", info->tools[i].name)));
            });
}

void unregister_tools(loader_pointer self, const std::vector<tool_spec>& tools) {
  for (const auto& t : tools)
    self->request(self->state.registry, registry_timeout, unregister_atom::value, t.name)
        .then([](bool) {}, [](caf::error&) {});
}

caf::result<std::vector<std::string>> do_load(loader_pointer self, const std::string& path,
                                              const plugin_config& cfg) {
  auto& s = self->state;
  std::string canon;
  try {
    canon = loading::check_plugin_path(path, s.options.allowed_dirs);
  } catch (const loading::load_error& e) {
    return to_caf_error(error{to_errc(e.why()), e.what()});
  }
  for (const auto& [n, p] : s.plugins)
    if (p.info.path == canon)
      return to_caf_error(error{errc::invalid_argument,
                                fmt::format("plugin '{}' is already loaded from {}; unload it "
                                            "first",
                                            n, canon)});
  if (s.loading.count(canon))
    return to_caf_error(
        error{errc::invalid_argument, fmt::format("plugin {} is being loaded already", canon)});
  std::string host;
  if (cfg.out_of_process) {
    try {
      host = find_plugin_host(s.options.host_path);
    } catch (const error& e) {
      return to_caf_error(e);
    }
  }
  s.loading.insert(canon);
  auto pa = self->spawn(plugin_actor, canon, cfg, host);
  // The plugin stops when the loader or the registry stops.
  self->attach_functor([pa] { stop_actor(pa); });
  caf::actor_cast<caf::abstract_actor*>(s.registry)->attach_functor([pa] { stop_actor(pa); });
  auto rp = self->make_response_promise<std::vector<std::string>>();
  auto timeout = cfg.out_of_process ? host_start_timeout + 5s : open_timeout;
  self->request(pa, timeout, open_atom::value)
      .then(
          [=](plugin_info& info) mutable {
            auto fail = [=](error e) mutable {
              self->state.loading.erase(canon);
              stop_actor(pa);
              rp.deliver(to_caf_error(e));
            };
            if (self->state.plugins.count(info.name))
              return fail(
                  error{errc::invalid_argument,
                        fmt::format("a plugin named '{}' is already loaded (from {}); unload "
                                    "it before loading {}",
                                    info.name, self->state.plugins[info.name].info.path, canon)});
            auto shared = std::make_shared<plugin_info>(std::move(info));
            self->request(self->state.registry, registry_timeout, list_atom::value)
                .then(
                    [=](const std::vector<tool_spec>& existing) mutable {
                      for (const auto& t : shared->tools)
                        for (const auto& e : existing)
                          if (e.name == t.name)
                            return fail(error{errc::invalid_argument,
                                              fmt::format("plugin '{}' provides tool '{}', but a "
                                                          "tool of that name is already "
                                                          "registered; unload the plugin that "
                                                          "provides it, or load this one with a "
                                                          "tool_prefix",
                                                          shared->name, t.name)});
                      tool_options opts = cfg.tools;
                      if (opts.timeout_ms != 0) opts.timeout_ms += registry_timeout_margin_ms;
                      register_tools(self, shared, opts, pa, 0, [=](error e) mutable {
                        if (e) {
                          unregister_tools(self, shared->tools);
                          return fail(std::move(e));
                        }
                        self->state.loading.erase(canon);
                        self->monitor(pa);
                        std::vector<std::string> names;
                        for (const auto& t : shared->tools) names.push_back(t.name);
                        self->state.plugins[shared->name] = loaded_plugin{*shared, cfg, pa, false};
                        rp.deliver(std::move(names));
                      });
                    },
                    [=](caf::error& e) mutable { fail(from_caf_error(e, "the tool registry")); });
          },
          [=](caf::error& e) mutable {
            self->state.loading.erase(canon);
            stop_actor(pa);
            rp.deliver(to_caf_error(from_caf_error(e, fmt::format("loading plugin {}", canon))));
          });
  return rp;
}

plugin_loader_actor::behavior_type loader_behavior(loader_pointer self,
                                                   tool_registry_actor registry,
                                                   plugin_options options) {
  self->state.registry = std::move(registry);
  self->state.options = std::move(options);
  // A plugin actor that stops without being unloaded (e.g. killed): forget it and its tools.
  self->set_down_handler([self](caf::down_msg& dm) {
    for (auto it = self->state.plugins.begin(); it != self->state.plugins.end(); ++it)
      if (it->second.actor.address() == dm.source) {
        if (!it->second.unloading) unregister_tools(self, it->second.info.tools);
        self->state.plugins.erase(it);
        return;
      }
  });
  return {
      [self](load_atom, const std::string& path) {
        return do_load(self, path, self->state.options);
      },
      [self](load_atom, const std::string& path, const plugin_config& cfg) {
        return do_load(self, path, cfg);
      },
      [self](unload_atom, const std::string& name) -> caf::result<bool> {
        auto it = self->state.plugins.find(name);
        if (it == self->state.plugins.end())
          return to_caf_error(error{
              errc::not_found,
              fmt::format(
                  "no plugin named '{}' is loaded; `troupe plugins list` or (list) shows what is",
                  name)});
        if (it->second.unloading)
          return to_caf_error(error{errc::invalid_argument,
                                    fmt::format("plugin '{}' is already being unloaded", name)});
        it->second.unloading = true;
        auto pa = it->second.actor;
        auto tools = it->second.info.tools;
        auto ms = it->second.cfg.unload_timeout_ms;
        auto rp = self->make_response_promise<bool>();
        self->request(pa, std::chrono::milliseconds(ms), drain_atom::value)
            .then(
                [=](bool) mutable {
                  // Unregister, then stop the actor once the registry no longer routes to it.
                  auto left = std::make_shared<size_t>(tools.size());
                  auto finish = [=]() mutable {
                    self->demonitor(pa);
                    self->state.plugins.erase(name);
                    stop_actor(pa);
                    rp.deliver(true);
                  };
                  if (tools.empty()) return finish();
                  for (const auto& t : tools)
                    self->request(self->state.registry, registry_timeout, unregister_atom::value,
                                  t.name)
                        .then(
                            [=](bool) mutable {
                              if (--*left == 0) finish();
                            },
                            [=](caf::error&) mutable {
                              if (--*left == 0) finish();
                            });
                },
                [=](caf::error& e) mutable {
                  auto err = from_caf_error(e, fmt::format("unloading plugin '{}'", name));
                  if (err.code() == errc::timeout)
                    err =
                        error{errc::timeout, fmt::format("plugin '{}' still has calls running "
                                                         "after {} ms; it stays loaded but refuses "
                                                         "new calls; try unloading it again later",
                                                         name, ms)};
                  if (auto it2 = self->state.plugins.find(name); it2 != self->state.plugins.end())
                    it2->second.unloading = false;
                  rp.deliver(to_caf_error(err));
                });
        return rp;
      },
      [self](list_atom) {
        std::vector<plugin_info> out;
        for (const auto& [n, p] : self->state.plugins) {
          out.push_back(p.info);
          out.back().state = p.unloading ? "unloading" : "loaded";
        }
        return out;
      },
      [self](describe_atom, const std::string& name) -> caf::result<plugin_info> {
        auto it = self->state.plugins.find(name);
        if (it == self->state.plugins.end())
          return to_caf_error(
              error{errc::not_found, fmt::format("no plugin named '{}' is loaded", name)});
        auto rp = self->make_response_promise<plugin_info>();
        self->request(it->second.actor, 10s, describe_atom::value)
            .then([=](plugin_info& info) mutable { rp.deliver(std::move(info)); },
                  [=](caf::error& e) mutable {
                    rp.deliver(to_caf_error(from_caf_error(e, fmt::format("plugin '{}'", name))));
                  });
        return rp;
      },
  };
}

template <class T, class... Ts>
T ask(caf::actor_system& sys, const plugin_loader_actor& loader, std::chrono::milliseconds timeout,
      const std::string& what, Ts&&... xs) {
  caf::scoped_actor self{sys};
  T out{};
  error failure;
  self->request(loader, timeout, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& e) { failure = from_caf_error(e, what); });
  if (failure) throw failure;
  return out;
}

std::string library_dir() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&find_plugin_host), &info) == 0 || !info.dli_fname)
    return {};
  char* c = ::realpath(info.dli_fname, nullptr);
  if (!c) return {};
  std::filesystem::path p{c};
  std::free(c);
  return p.parent_path().string();
}

}  // namespace

plugin_loader_actor spawn_plugin_loader(caf::actor_system& sys, tool_registry_actor registry,
                                        plugin_options options) {
  auto loader = sys.spawn(loader_behavior, registry, std::move(options));
  caf::actor_cast<caf::abstract_actor*>(registry)->attach_functor(
      [l = caf::actor_cast<caf::actor>(loader)] { stop_actor(l); });
  return loader;
}

std::vector<std::string> load_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                                     const std::string& path) {
  return ask<std::vector<std::string>>(sys, loader, 60s, fmt::format("loading plugin '{}'", path),
                                       load_atom::value, path);
}

std::vector<std::string> load_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                                     const std::string& path, const plugin_config& config) {
  return ask<std::vector<std::string>>(sys, loader, 60s, fmt::format("loading plugin '{}'", path),
                                       load_atom::value, path, config);
}

void unload_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                   const std::string& name) {
  ask<bool>(sys, loader, std::chrono::milliseconds(10 * 60 * 1000),
            fmt::format("unloading plugin '{}'", name), unload_atom::value, name);
}

std::vector<plugin_info> list_plugins(caf::actor_system& sys, const plugin_loader_actor& loader) {
  return ask<std::vector<plugin_info>>(sys, loader, 30s, "listing plugins", list_atom::value);
}

plugin_info describe_plugin(caf::actor_system& sys, const plugin_loader_actor& loader,
                            const std::string& name) {
  return ask<plugin_info>(sys, loader, 30s, fmt::format("describing plugin '{}'", name),
                          describe_atom::value, name);
}

std::vector<std::filesystem::path> default_plugin_dirs() {
  std::vector<std::filesystem::path> out;
  auto add = [&](const std::filesystem::path& p) {
    std::error_code ec;
    if (p.empty() || !std::filesystem::is_directory(p, ec)) return;
    auto c = std::filesystem::canonical(p, ec);
    if (ec) return;
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  if (const char* env = std::getenv("TROUPE_PLUGIN_PATH")) {
    std::string_view rest{env};
    while (!rest.empty()) {
      auto colon = rest.find(':');
      add(std::filesystem::path{std::string{rest.substr(0, colon)}});
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  if (auto dir = library_dir(); !dir.empty()) {
    add(std::filesystem::path{dir} / ".." / "plugins");
    add(std::filesystem::path{dir} / "troupe" / "plugins");
  }
  return out;
}

std::vector<std::filesystem::path> find_plugin_files(
    const std::vector<std::filesystem::path>& dirs) {
  std::vector<std::filesystem::path> out;
  for (const auto& d : dirs) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(d, ec)) {
      if (e.path().extension() != ".so" || !e.is_regular_file(ec)) continue;
      auto c = std::filesystem::canonical(e.path(), ec);
      if (!ec && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string find_plugin_host(const std::string& configured) {
  auto usable = [](const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; };
  if (!configured.empty()) {
    if (usable(configured)) return configured;
    throw error{errc::not_found, fmt::format("the configured plugin host '{}' is not an "
                                             "executable file",
                                             configured)};
  }
  if (const char* env = std::getenv("TROUPE_PLUGIN_HOST"); env && *env) {
    if (usable(env)) return env;
    throw error{errc::not_found, fmt::format("TROUPE_PLUGIN_HOST names '{}', which is not an "
                                             "executable file",
                                             env)};
  }
  auto dir = library_dir();
  for (const auto& p : {dir + "/troupe-plugin-host", dir + "/../libexec/troupe/troupe-plugin-host"})
    if (!dir.empty() && usable(p)) return p;
  throw error{errc::not_found,
              fmt::format("cannot find troupe-plugin-host next to libtroupe ({}) or in "
                          "../libexec/troupe: set TROUPE_PLUGIN_HOST to its path",
                          dir.empty() ? std::string{"unknown location"} : dir)};
}

}  // namespace troupe
