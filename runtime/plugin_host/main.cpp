// troupe-plugin-host: runs one tool plugin out of process, so that a crash, abort, hang or garbage
// output in the plugin costs only the calls in flight, not the runtime.
//
// Usage: troupe-plugin-host [--fd N]   (default N = 3; troupe starts it, people need not)
//
// The runtime passes one end of a socketpair as fd N and speaks the frames of
// runtime/plugin_wire.hpp on it: init first (the host loads the plugin with the same checks as in
// process, and answers hello or load_error), then invoke frames, answered by result frames in any
// order. Calls run with the plugin's synchronous invoke on the thread that read them (leader/
// followers: up to 16 calls at once for a thread-safe plugin, one at a time otherwise). A call
// cannot be cancelled here: the runtime enforces per-call timeouts by killing the host. The host's
// stdout is redirected to stderr so that a plugin that prints cannot corrupt the protocol. EOF or
// shutdown on fd N ends the host.

#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plugin_library.hpp"
#include "plugin_wire.hpp"

namespace {

namespace wire = troupe::plugin_wire;
namespace loading = troupe::plugin_loading;

struct result_sink {
  std::string content;
  bool is_error = true;
};

void collect(void* ud, const char* content, size_t size, int is_error) {
  auto* r = static_cast<result_sink*>(ud);
  r->content.assign(content ? content : "", content ? size : 0);
  r->is_error = is_error != 0;
}

/// Leader/followers: one thread at a time reads the channel; when it has read an invoke frame it
/// hands the reading role to an idle thread (or starts one, up to max_threads) and runs the call
/// itself, so no thread hand-off lies on a call's path.
class host {
 public:
  host(int fd, std::unique_ptr<loading::library> lib)
      : fd_(fd), lib_(std::move(lib)), max_threads_(lib_->thread_safe() ? 16 : 2) {}

  /// Serves invoke frames until EOF or shutdown; returns the exit code.
  int serve() {
    std::unique_lock<std::mutex> lock(mutex_);
    start_thread();
    done_cv_.wait(lock, [&] { return stopping_; });
    if (busy_ != 0) std::_Exit(exit_code_);  // a call still runs (maybe forever): do not wait
    lock.unlock();
    for (auto& t : threads_) t.join();
    lib_->close();
    return exit_code_;
  }

 private:
  void start_thread() {  // with mutex_ held
    threads_.emplace_back([this] { work(); });
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      if (stopping_) return;
      if (reading_) {
        ++idle_;
        cv_.wait(lock);
        --idle_;
        continue;
      }
      reading_ = true;
      lock.unlock();
      wire::frame f;
      std::string problem;
      auto st = wire::read_frame(fd_, f, problem);
      lock.lock();
      reading_ = false;
      if (st != wire::read_status::ok || f.type != wire::frame_type::invoke) {
        if (st == wire::read_status::garbage || st == wire::read_status::io_error ||
            (st == wire::read_status::ok && f.type != wire::frame_type::shutdown)) {
          std::fprintf(stderr, "troupe-plugin-host: bad request from the runtime: %s\n",
                       problem.empty() ? "unexpected frame" : problem.c_str());
          exit_code_ = 3;
        }
        stopping_ = true;
        cv_.notify_all();
        done_cv_.notify_all();
        return;
      }
      // Hand the reading role on, then run the call on this thread.
      if (idle_ > 0)
        cv_.notify_one();
      else if (threads_.size() < max_threads_)
        start_thread();
      ++busy_;
      lock.unlock();
      run(f);
      lock.lock();
      --busy_;
      if (stopping_ && busy_ == 0) done_cv_.notify_all();
    }
  }

  void run(const wire::frame& f) {
    result_sink r{"plugin did not report a result", true};
    {
      std::unique_lock<std::mutex> serial(call_mutex_, std::defer_lock);
      if (!lib_->thread_safe()) serial.lock();
      lib_->descriptor().invoke(lib_->instance(), f.text1.c_str(), f.text2.data(), f.text2.size(),
                                &collect, &r);
    }
    wire::frame out;
    out.type = wire::frame_type::result;
    out.seq = f.seq;
    out.is_error = r.is_error;
    out.text1 = std::move(r.content);
    auto bytes = wire::encode(out);
    std::lock_guard<std::mutex> guard(write_mutex_);
    if (!wire::write_all(fd_, bytes)) std::_Exit(4);  // the runtime is gone
  }

  int fd_;
  std::unique_ptr<loading::library> lib_;
  size_t max_threads_;
  std::mutex mutex_;
  std::condition_variable cv_;       // followers wait here for the reading role
  std::condition_variable done_cv_;  // serve() waits here for the end
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  size_t busy_ = 0;
  bool reading_ = false;
  bool stopping_ = false;
  int exit_code_ = 0;
  std::mutex call_mutex_;  // held around invoke for plugins that are not thread-safe
  std::mutex write_mutex_;
};

}  // namespace

int main(int argc, char** argv) {
  int fd = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--fd" && i + 1 < argc) {
      fd = std::atoi(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: troupe-plugin-host [--fd N]\n"
          "Runs one troupe tool plugin out of process; started by troupe, which speaks\n"
          "the plugin wire protocol on fd N (default 3).\n");
      return 0;
    } else {
      std::fprintf(stderr, "troupe-plugin-host: unknown argument '%s' (try --help)\n", a.c_str());
      return 2;
    }
  }
  // Children of the plugin (e.g. exec) must not inherit the channel, or EOF would never come.
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    std::fprintf(stderr, "troupe-plugin-host: fd %d is not open: started by hand? (try --help)\n",
                 fd);
    return 2;
  }
  ::dup2(STDERR_FILENO, STDOUT_FILENO);

  wire::frame init;
  std::string problem;
  if (wire::read_frame(fd, init, problem) != wire::read_status::ok ||
      init.type != wire::frame_type::init) {
    std::fprintf(stderr, "troupe-plugin-host: expected an init frame first %s\n", problem.c_str());
    return 3;
  }
  std::unique_ptr<loading::library> lib;
  try {
    lib = loading::library::open(init.text1, init.text2);
  } catch (const loading::load_error& e) {
    wire::frame err;
    err.type = wire::frame_type::load_error;
    err.flags = static_cast<uint32_t>(e.why());
    err.text1 = e.what();
    wire::write_all(fd, wire::encode(err));
    return 1;
  }
  wire::frame hello;
  hello.type = wire::frame_type::hello;
  hello.text1 = lib->name();
  hello.text2 = lib->version();
  hello.flags = lib->flags();
  for (const auto& t : lib->tools()) hello.tools.push_back({t.name, t.description, t.parameters});
  if (!wire::write_all(fd, wire::encode(hello))) return 4;
  host h{fd, std::move(lib)};
  return h.serve();
}
