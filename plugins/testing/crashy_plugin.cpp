/// The crashy plugin: tools that misbehave on purpose, for testing how troupe isolates plugins.
/// Never load it in production. Tools:
///   ok(text)    returns text
///   segv()      raises SIGSEGV
///   abort()     calls std::abort (SIGABRT)
///   hang()      never returns on its own; stops once the host cancels the call (in process)
///   garbage()   writes bytes that are not a frame to fd 3, the channel of troupe-plugin-host
///               (out of process only; in process it returns an error and writes nothing)

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <thread>

#include "troupe/plugin/plugin.hpp"

using troupe::plugin::call;
using troupe::plugin::result;

namespace {
constexpr const char* no_args = R"({"type":"object","properties":{}})";
}

TROUPE_PLUGIN("crashy", "0.1.0") {
  plugin.tool("ok", "Returns its text argument.",
              R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]})",
              [](call& c) { return result::ok(c.arg<std::string>("text")); });
  plugin.tool("segv", "Crashes with SIGSEGV.", no_args, [](call&) -> result {
    std::raise(SIGSEGV);
    return result::error("SIGSEGV did not stop the process");
  });
  plugin.tool("abort", "Crashes with SIGABRT.", no_args, [](call&) -> result { std::abort(); });
  plugin.tool("hang", "Never returns unless cancelled.", no_args, [](call& c) -> result {
    while (!c.cancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return result::error("hang was cancelled");
  });
  plugin.tool("garbage", "Writes garbage to the plugin host's channel.", no_args,
              [](call&) -> result {
                struct stat st {};
                if (::fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode))
                  return result::error("garbage() only works in troupe-plugin-host");
                const char junk[] = "\xff\xff\xff\x7fthis is not a frame";
                (void)::send(3, junk, sizeof junk, MSG_NOSIGNAL);
                return result::ok("wrote garbage");
              });
}
