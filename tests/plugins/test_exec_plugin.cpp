#define BOOST_TEST_MODULE exec_plugin
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/test/unit_test.hpp>
#include <chrono>
#include <filesystem>
#include <string>

#include "plugin_host.hpp"
#include "troupe/plugin/plugin.hpp"  // only for its JSON reader and writer

#ifndef TROUPE_EXEC_PLUGIN
#error "TROUPE_EXEC_PLUGIN must name the plugin library"
#endif

namespace json = troupe::plugin::json;
using troupe::test::loaded_plugin;
using troupe::test::plugin_reply;

namespace {

/// The sandbox must work on the machines that run this suite; if it cannot, every test below
/// fails with the plugin's own explanation, which is the message to read.
json::value run(const loaded_plugin& p, const std::string& tool, const std::string& args) {
  plugin_reply r = p.invoke(tool, args);
  BOOST_TEST_INFO("result: " << r.content);
  BOOST_REQUIRE(!r.is_error);
  BOOST_REQUIRE_EQUAL(r.calls, 1);
  return json::parse(r.content);
}

std::string python(const std::string& code, const char* extra = "") {
  return "{\"code\":" + json::quote(code) + extra + "}";
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

const std::string small_limits =
  R"({"cpu_seconds":1,"memory_bytes":268435456,"wall_ms":20000,"max_output_bytes":1000})";

}  // namespace

BOOST_AUTO_TEST_CASE(describes_its_tools) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  const auto& d = p.descriptor();
  BOOST_TEST(std::string(d.name) == "exec");
  BOOST_REQUIRE_EQUAL(d.tool_count, 2u);
  BOOST_TEST(std::string(TROUPE_PLUGIN_TOOL_AT(&d, 0)->name) == "run_command");
  BOOST_TEST(std::string(TROUPE_PLUGIN_TOOL_AT(&d, 1)->name) == "run_python");
  for (size_t i = 0; i < d.tool_count; ++i)
    BOOST_TEST(json::parse(TROUPE_PLUGIN_TOOL_AT(&d, i)->parameters).is_object());
}

BOOST_AUTO_TEST_CASE(a_command_reports_stdout_stderr_and_exit_code) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  json::value v = run(p, "run_command", R"({"argv":["echo","hello","world"]})");
  BOOST_TEST(v.find("exit_code")->as_int64() == 0);
  BOOST_TEST(v.find("stdout")->as_string() == "hello world\n");
  BOOST_TEST(v.find("stderr")->as_string() == "");
  BOOST_TEST(v.find("timed_out")->as_bool() == false);
  BOOST_TEST(v.find("truncated")->as_bool() == false);

  v = run(p, "run_command", R"({"command":"echo out; echo err >&2; exit 3"})");
  BOOST_TEST(v.find("exit_code")->as_int64() == 3);
  BOOST_TEST(v.find("stdout")->as_string() == "out\n");
  BOOST_TEST(v.find("stderr")->as_string() == "err\n");

  v = run(p, "run_command", R"({"command":"pwd; echo $HOME; ls -A"})");
  BOOST_TEST(v.find("stdout")->as_string() == "/scratch\n/scratch\n");  // fresh and empty

  plugin_reply r = p.invoke("run_command", "{}");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("needs 'argv'") != std::string::npos, r.content);
  v = run(p, "run_command", R"({"argv":["/no/such/program"]})");
  BOOST_TEST(v.find("exit_code")->as_int64() != 0);
}

BOOST_AUTO_TEST_CASE(python_runs) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  json::value v = run(p, "run_python", python("import sys\nprint(sum(range(10)))\nsys.exit(7)"));
  BOOST_TEST(v.find("stdout")->as_string() == "45\n");
  BOOST_TEST(v.find("exit_code")->as_int64() == 7);
  v = run(p, "run_python", python("raise ValueError('boom')"));
  BOOST_TEST(v.find("exit_code")->as_int64() == 1);
  BOOST_TEST(v.find("stderr")->as_string().find("ValueError: boom") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(there_is_no_network) {
  // A server on the host's loopback that the sandbox must not reach.
  int server = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(server >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(server, 1) == 0);
  socklen_t len = sizeof addr;
  ::getsockname(server, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);

  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  std::string code =
    "import socket\n"
    "print(sorted(name for _, name in socket.if_nameindex()))\n"
    "for host in ['127.0.0.1', '1.1.1.1']:\n"
    "    s = socket.socket(); s.settimeout(2)\n"
    "    try:\n"
    "        s.connect((host, " + std::to_string(port) + "))\n"
    "        print('connected', host)\n"
    "    except OSError as e:\n"
    "        print('refused', host)\n";
  json::value v = run(p, "run_python", python(code));
  BOOST_TEST(v.find("stdout")->as_string() == "['lo']\nrefused 127.0.0.1\nrefused 1.1.1.1\n",
             v.find("stderr")->as_string());
  ::close(server);
}

BOOST_AUTO_TEST_CASE(nothing_outside_scratch_is_writable) {
  namespace fs = std::filesystem;
  std::string host_file = "/tmp/troupe-exec-escape-" + std::to_string(::getpid());
  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  std::string code =
    "import os\n"
    "for path in ['/usr/troupe-x', '/troupe-x', '/etc/troupe-x', '" + host_file + "',\n"
    "             '/proc/troupe-x', '/scratch/ok', '/tmp/ok2']:\n"
    "    try:\n"
    "        open(path, 'w').write('x'); print('wrote', path)\n"
    "    except OSError as e:\n"
    "        print('denied', path)\n";
  json::value v = run(p, "run_python", python(code));
  BOOST_TEST(v.find("stdout")->as_string() ==
               "denied /usr/troupe-x\ndenied /troupe-x\ndenied /etc/troupe-x\n"
               // /tmp inside the sandbox is the scratch directory, not the host's /tmp
               "wrote " + host_file + "\ndenied /proc/troupe-x\nwrote /scratch/ok\nwrote /tmp/ok2\n",
             v.find("stderr")->as_string());
  BOOST_TEST(!fs::exists(host_file));
  BOOST_TEST(!fs::exists("/usr/troupe-x"));
  // Each call starts from a fresh scratch directory.
  v = run(p, "run_command", R"({"command":"ls -A /scratch"})");
  BOOST_TEST(v.find("stdout")->as_string() == "");
}

BOOST_AUTO_TEST_CASE(output_is_truncated_at_its_limit) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, small_limits);
  json::value v = run(p, "run_python", python("import sys\nsys.stdout.write('a' * 100000)\nsys.stderr.write('ok')"));
  BOOST_TEST(v.find("stdout")->as_string() == std::string(1000, 'a'));
  BOOST_TEST(v.find("stderr")->as_string() == "ok");
  BOOST_TEST(v.find("truncated")->as_bool());
  BOOST_TEST(v.find("exit_code")->as_int64() == 0);  // the process was not blocked by a full pipe
}

BOOST_AUTO_TEST_CASE(cpu_limit_kills_a_busy_loop) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, small_limits);
  auto start = std::chrono::steady_clock::now();
  json::value v = run(p, "run_python", python("while True: pass"));
  double took = seconds_since(start);
  BOOST_TEST(v.find("timed_out")->as_bool() == false);
  // SIGXCPU (128 + 24) at the soft limit, or SIGKILL (128 + 9) at the hard one.
  int64_t code = v.find("exit_code")->as_int64();
  BOOST_TEST((code == 152 || code == 137), code);
  BOOST_TEST(took < 10.0);
}

BOOST_AUTO_TEST_CASE(memory_limit_stops_a_large_allocation) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, small_limits);  // 256 MiB of address space
  json::value v = run(p, "run_python", python("b = bytearray(1024 * 1024 * 1024)\nprint('allocated')"));
  BOOST_TEST(v.find("exit_code")->as_int64() != 0);
  BOOST_TEST(v.find("stdout")->as_string() == "");
  BOOST_TEST(v.find("stderr")->as_string().find("MemoryError") != std::string::npos);
  v = run(p, "run_python", python("b = bytearray(16 * 1024 * 1024)\nprint('allocated')"));
  BOOST_TEST(v.find("stdout")->as_string() == "allocated\n");
}

BOOST_AUTO_TEST_CASE(wall_limit_kills_the_whole_sandbox) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, small_limits);
  auto start = std::chrono::steady_clock::now();
  // A sleeping child in the background keeps the pipes open: it must die too.
  json::value v = run(p, "run_command", R"({"command":"sleep 30 & sleep 30; echo never","timeout_ms":300})");
  double took = seconds_since(start);
  BOOST_TEST(v.find("timed_out")->as_bool());
  BOOST_TEST(v.find("stdout")->as_string() == "");
  BOOST_TEST(took < 3.0);
}

BOOST_AUTO_TEST_CASE(cancel_stops_an_async_call) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
  const auto& d = p.descriptor();
  troupe::test::async_reply reply;
  std::string args = R"({"argv":["sleep","30"]})";
  auto start = std::chrono::steady_clock::now();
  d.invoke_async(p.instance(), 7, "run_command", args.data(), args.size(), &reply.on_result, &reply);
  d.cancel(p.instance(), 7);
  plugin_reply r = reply.wait();
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("cancelled") != std::string::npos, r.content);
  BOOST_TEST(seconds_since(start) < 5.0);
}

BOOST_AUTO_TEST_CASE(unload_cancels_calls_in_flight) {
  troupe::test::async_reply reply;
  auto start = std::chrono::steady_clock::now();
  {
    loaded_plugin p(TROUPE_EXEC_PLUGIN, "{}");
    std::string args = R"({"argv":["sleep","30"]})";
    p.descriptor().invoke_async(p.instance(), 1, "run_command", args.data(), args.size(),
                                &reply.on_result, &reply);
  }  // unload, then dlclose
  plugin_reply r = reply.wait();
  BOOST_TEST(r.is_error);
  BOOST_TEST(seconds_since(start) < 5.0);
}

BOOST_AUTO_TEST_CASE(a_missing_sandbox_is_a_clear_error_never_an_unsandboxed_run) {
  loaded_plugin p(TROUPE_EXEC_PLUGIN, R"({"bwrap":"/no/such/bwrap"})");
  plugin_reply r = p.invoke("run_command", R"({"argv":["true"]})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("bubblewrap is not installed at /no/such/bwrap") != std::string::npos,
             r.content);
  // A bwrap that cannot build the sandbox (here: /bin/false standing in for one).
  loaded_plugin q(TROUPE_EXEC_PLUGIN, R"({"bwrap":"/bin/false"})");
  r = q.invoke("run_python", python("print(1)"));
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.content.find("bubblewrap cannot create its sandbox on this host") != std::string::npos,
             r.content);
}

BOOST_AUTO_TEST_CASE(exports_only_the_entry_point) {
  void* h = ::dlopen(TROUPE_EXEC_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  BOOST_REQUIRE(h);
  BOOST_TEST(::dlsym(h, "troupe_plugin_entry") != nullptr);
  BOOST_TEST(::dlsym(h, "_ZN6troupe6plugin4json5parseESt17basic_string_viewIcSt11char_traitsIcEE") ==
             nullptr);
  ::dlclose(h);
}
