// The plugin loader: loading from allowed directories only, clear errors for files that are not
// plugins, tools reached through the registry, unload once calls are done, and out-of-process
// isolation (a crash, abort, garbage or hang is a tool error for that call; the next call works).
#define BOOST_TEST_MODULE plugin_loader
#include <unistd.h>

#include <atomic>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "troupe/plugin_loader.hpp"
#include "troupe_fixture.hpp"

using namespace troupe;
namespace fs = std::filesystem;

namespace {

const fs::path plugin_dir = fs::path{TROUPE_FS_PLUGIN}.parent_path();       // fs, exec
const fs::path testing_dir = fs::path{TROUPE_CRASHY_PLUGIN}.parent_path();  // crashy, ...

/// A fresh directory, removed at the end of the test.
struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "troupe_plugin_loader_XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct loader_fixture : troupe::testing::swarm_fixture {
  temp_dir scratch;  // an allowed directory the tests put files into
  temp_dir outside;  // not allowed
  plugin_loader_actor loader;

  loader_fixture() {
    plugin_options opts;
    opts.allowed_dirs = {plugin_dir, testing_dir, scratch.path};
#ifdef TROUPE_PLUGIN_HOST_PATH
    opts.host_path = TROUPE_PLUGIN_HOST_PATH;
#endif
    loader = spawn_plugin_loader(sys, registry, opts);
  }
  ~loader_fixture() { caf::anon_send_exit(loader, caf::exit_reason::user_shutdown); }

  tool_result call(const std::string& tool, const std::string& args = "{}") {
    caf::scoped_actor self{sys};
    tool_result out;
    self->request(registry, std::chrono::seconds(60), invoke_atom::value,
                  tool_call{"c1", tool, args})
        .receive([&](tool_result& r) { out = std::move(r); },
                 [&](caf::error& e) { out = tool_result::failure("c1", caf::to_string(e)); });
    return out;
  }

  std::vector<std::string> registered() {
    caf::scoped_actor self{sys};
    std::vector<std::string> names;
    self->request(registry, std::chrono::seconds(30), list_atom::value)
        .receive(
            [&](std::vector<tool_spec>& specs) {
              for (auto& s : specs) names.push_back(s.name);
            },
            [&](caf::error&) {});
    return names;
  }

  /// The error load_plugin throws for `path`.
  error load_error(const std::string& path, plugin_config cfg = {}) {
    try {
      load_plugin(sys, loader, path, cfg);
    } catch (const error& e) {
      return e;
    }
    return error{};
  }

  static plugin_config crashy_config(bool out_of_process) {
    plugin_config cfg;
    cfg.out_of_process = out_of_process;
    cfg.restart_backoff_ms = 10;
    cfg.max_backoff_ms = 100;
    return cfg;
  }
};

/// A tool that holds every call with {"phase": n} until the test opens phase n.
using reset_atom = caf::atom_constant<caf::atom("reset")>;
using gate_actor = tool_actor::extend<caf::reacts_to<resume_atom, int>, caf::reacts_to<reset_atom>>;

struct gate_state {
  int open = 0;
  std::vector<std::pair<int, std::pair<std::string, caf::typed_response_promise<tool_result>>>>
      waiting;
};

gate_actor::behavior_type gate_behavior(gate_actor::stateful_pointer<gate_state> self) {
  return {
      [self](invoke_atom, const tool_call& c) -> caf::result<tool_result> {
        int phase = static_cast<int>(json::parse(c.arguments).find("phase")->as_int());
        if (phase <= self->state.open) return tool_result::ok(c.id, "open");
        auto rp = self->make_response_promise<tool_result>();
        self->state.waiting.push_back({phase, {c.id, rp}});
        return rp;
      },
      [self](resume_atom, int phase) {
        self->state.open = phase;
        auto& w = self->state.waiting;
        for (auto it = w.begin(); it != w.end();) {
          if (it->first <= phase) {
            it->second.second.deliver(tool_result::ok(it->second.first, "open"));
            it = w.erase(it);
          } else {
            ++it;
          }
        }
      },
      [self](reset_atom) { self->state.open = 0; },
  };
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(plugin_loader, loader_fixture)

BOOST_AUTO_TEST_CASE(fs_tools_are_reached_through_the_registry_in_and_out_of_process) {
  std::ofstream{scratch.path / "hello.txt"} << "hello from disk";
  for (bool oop : {false, true}) {
    BOOST_TEST_CONTEXT("out_of_process = " << oop) {
      plugin_config cfg;
      cfg.out_of_process = oop;
      cfg.config_json = json::dump(json::value{json::object{{"root", scratch.path.string()}}});
      auto tools = load_plugin(sys, loader, "fs", cfg);
      std::sort(tools.begin(), tools.end());
      BOOST_TEST(tools == (std::vector<std::string>{"grep", "list_dir", "read_file", "write_file"}),
                 boost::test_tools::per_element());
      auto r = call("read_file", R"({"path":"hello.txt"})");
      BOOST_TEST(!r.is_error, r.content);
      BOOST_TEST(contains(r.content, "hello from disk"), r.content);
      BOOST_TEST(r.call_id == "c1");
      // Schema checks still happen in the registry.
      r = call("read_file", R"({"path": 5})");
      BOOST_TEST(r.is_error);
      auto info = describe_plugin(sys, loader, "fs");
      BOOST_TEST(info.out_of_process == oop);
      BOOST_TEST(info.path == fs::canonical(TROUPE_FS_PLUGIN).string());
      BOOST_TEST(info.tools.size() == 4u);
      BOOST_TEST(list_plugins(sys, loader).size() == 1u);
      unload_plugin(sys, loader, "fs");
      BOOST_TEST(list_plugins(sys, loader).empty());
      r = call("read_file", R"({"path":"hello.txt"})");
      BOOST_TEST(r.is_error);
      BOOST_TEST(contains(r.content, "unknown tool 'read_file'"), r.content);
      auto names = registered();
      BOOST_TEST(std::count(names.begin(), names.end(), "read_file") == 0);
    }
  }
}

BOOST_AUTO_TEST_CASE(files_that_are_not_usable_plugins_get_clear_errors) {
  // Not a shared library at all.
  std::ofstream{scratch.path / "libfake.so"} << "this is text, not ELF";
  // A plugin outside the allowed directories, and a symbolic link that leads there.
  fs::copy_file(TROUPE_CRASHY_PLUGIN, outside.path / "libcrashy_copy.so");
  fs::create_symlink(outside.path / "libcrashy_copy.so", scratch.path / "libescape.so");
  const auto before = registered();
  for (bool oop : {false, true}) {
    BOOST_TEST_CONTEXT("out_of_process = " << oop) {
      plugin_config cfg;
      cfg.out_of_process = oop;
      auto e = load_error(TROUPE_WRONG_ABI_PLUGIN, cfg);
      BOOST_TEST(e.code() == errc::unsupported, e.render());
      BOOST_TEST(contains(e.message(), "ABI version 999"), e.message());
      BOOST_TEST(contains(e.message(), "speaks version 1"), e.message());

      e = load_error(TROUPE_NO_ENTRY_PLUGIN, cfg);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "not a troupe plugin"), e.message());
      BOOST_TEST(contains(e.message(), "troupe_plugin_entry"), e.message());

      e = load_error((scratch.path / "libfake.so").string(), cfg);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "not a loadable shared library"), e.message());

      e = load_error((outside.path / "libcrashy_copy.so").string(), cfg);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "outside the allowed plugin directories"), e.message());

      e = load_error((scratch.path / "libescape.so").string(), cfg);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "outside the allowed plugin directories"), e.message());
      BOOST_TEST(contains(e.message(), "resolves to"), e.message());

      e = load_error((scratch.path / "libmissing.so").string(), cfg);
      BOOST_TEST(e.code() == errc::not_found, e.render());

      e = load_error(scratch.path.string(), cfg);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "not a regular file"), e.message());

      plugin_config bad = cfg;
      bad.config_json = "{\"root\": 5}";
      e = load_error("fs", bad);
      BOOST_TEST(e.code() == errc::invalid_argument, e.render());
      BOOST_TEST(contains(e.message(), "refused its configuration"), e.message());
    }
  }
  BOOST_TEST(registered() == before, boost::test_tools::per_element());
  BOOST_TEST(list_plugins(sys, loader).empty());
}

BOOST_AUTO_TEST_CASE(a_loader_without_directories_loads_nothing) {
  auto strict = spawn_plugin_loader(sys, registry, plugin_options{});
  try {
    load_plugin(sys, strict, TROUPE_CRASHY_PLUGIN);
    BOOST_FAIL("loaded a plugin without any allowed directory");
  } catch (const error& e) {
    BOOST_TEST(contains(e.message(), "no plugin directory is configured"), e.message());
  }
  caf::anon_send_exit(strict, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(names_must_stay_unique) {
  load_plugin(sys, loader, "crashy", crashy_config(false));
  fs::copy_file(TROUPE_CRASHY_PLUGIN, scratch.path / "libcrashy_again.so");
  auto e = load_error((scratch.path / "libcrashy_again.so").string());
  BOOST_TEST(contains(e.message(), "a plugin named 'crashy' is already loaded"), e.message());
  e = load_error(TROUPE_CRASHY_PLUGIN);
  BOOST_TEST(contains(e.message(), "already loaded"), e.message());
  unload_plugin(sys, loader, "crashy");
  // A tool name taken by a built-in tool: refused, unless prefixed.
  plugin_config cfg = crashy_config(false);
  register_tool(sys, registry, tool_spec{"ok", "taken", R"({"type":"object"})"},
                spawn_function_tool(
                    sys, [](const tool_call& c) { return tool_result::ok(c.id, "the other ok"); }));
  e = load_error("crashy", cfg);
  BOOST_TEST(contains(e.message(), "provides tool 'ok', but a tool of that name is already"),
             e.message());
  cfg.tool_prefix = "crashy_";
  auto tools = load_plugin(sys, loader, "crashy", cfg);
  BOOST_TEST(std::count(tools.begin(), tools.end(), "crashy_ok") == 1);
  auto r = call("crashy_ok", R"({"text":"prefixed"})");
  BOOST_TEST(!r.is_error, r.content);
  BOOST_TEST(r.content == "prefixed");
  BOOST_TEST(call("ok", R"({"text":"x"})").content == "the other ok");
  e = error{};
  try {
    unload_plugin(sys, loader, "nope");
  } catch (const error& x) {
    e = x;
  }
  BOOST_TEST(e.code() == errc::not_found, e.render());
}

BOOST_AUTO_TEST_CASE(out_of_process_crashes_fail_one_call_and_the_next_call_works) {
  load_plugin(sys, loader, "crashy", crashy_config(true));
  BOOST_TEST(call("ok", R"({"text":"first"})").content == "first");
  struct case_ {
    const char* tool;
    const char* expected;
  };
  for (auto [tool, expected] :
       {case_{"segv", "crashed (SIGSEGV)"}, case_{"abort", "crashed (SIGABRT)"},
        case_{"garbage", "sent malformed data"}}) {
    BOOST_TEST_CONTEXT(tool) {
      auto r = call(tool);
      BOOST_TEST(r.is_error);
      BOOST_TEST(contains(r.content, "plugin 'crashy' " + std::string(expected)), r.content);
      BOOST_TEST(contains(r.content, std::string("during the call to '") + tool + "'"), r.content);
      BOOST_TEST(contains(r.content, "the host is being restarted"), r.content);
      auto ok = call("ok", R"({"text":"after"})");
      BOOST_TEST(!ok.is_error, ok.content);
      BOOST_TEST(ok.content == "after");
    }
  }
  BOOST_TEST(describe_plugin(sys, loader, "crashy").restarts == 3u);
  unload_plugin(sys, loader, "crashy");
}

BOOST_AUTO_TEST_CASE(a_host_that_keeps_crashing_is_disabled_after_max_restarts) {
  auto cfg = crashy_config(true);
  cfg.max_restarts = 2;
  load_plugin(sys, loader, "crashy", cfg);
  for (int i = 0; i < 3; ++i) BOOST_TEST(contains(call("segv").content, "SIGSEGV"));
  auto r = call("ok", R"({"text":"x"})");
  BOOST_TEST(r.is_error);
  BOOST_TEST(contains(r.content, "is disabled: its host failed 3 times in a row"), r.content);
  BOOST_TEST(describe_plugin(sys, loader, "crashy").state == "failed");
  unload_plugin(sys, loader, "crashy");
  // Loading it again starts afresh.
  load_plugin(sys, loader, "crashy", cfg);
  BOOST_TEST(call("ok", R"({"text":"again"})").content == "again");
}

BOOST_AUTO_TEST_CASE(a_hanging_call_hits_its_timeout_and_the_next_call_works) {
  for (bool oop : {false, true}) {
    BOOST_TEST_CONTEXT("out_of_process = " << oop) {
      auto cfg = crashy_config(oop);
      cfg.tools.timeout_ms = 300;
      load_plugin(sys, loader, "crashy", cfg);
      auto start = std::chrono::steady_clock::now();
      auto r = call("hang");
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start)
                    .count();
      BOOST_TEST(r.is_error);
      BOOST_TEST(contains(r.content, "tool 'hang' of plugin 'crashy'"), r.content);
      BOOST_TEST(contains(r.content, "within 300 ms"), r.content);
      BOOST_TEST(contains(r.content, oop ? "the plugin host was killed" : "cancelled"), r.content);
      BOOST_TEST(ms >= 300);
      BOOST_TEST(ms < 2000);  // the tool actor's timeout, not the registry's backstop
      auto ok = call("ok", R"({"text":"after"})");
      BOOST_TEST(!ok.is_error, ok.content);
      BOOST_TEST(ok.content == "after");
      unload_plugin(sys, loader, "crashy");
    }
  }
}

BOOST_AUTO_TEST_CASE(unload_waits_for_calls_in_flight_and_refuses_new_ones) {
  for (bool oop : {false, true}) {
    BOOST_TEST_CONTEXT("out_of_process = " << oop) {
      auto cfg = crashy_config(oop);
      cfg.tools.timeout_ms = 400;  // ends the hang: cancelled in process, host killed out of it
      load_plugin(sys, loader, "crashy", cfg);
      caf::scoped_actor self{sys};
      auto hang = self->request(registry, std::chrono::seconds(30), invoke_atom::value,
                                tool_call{"h", "hang", "{}"});
      // The call is in flight once the plugin counts it.
      while (describe_plugin(sys, loader, "crashy").calls_in_flight == 0) std::this_thread::yield();
      auto unload = self->request(loader, std::chrono::seconds(30), unload_atom::value,
                                  std::string{"crashy"});
      while (describe_plugin(sys, loader, "crashy").state != "unloading") std::this_thread::yield();
      auto refused = call("ok", R"({"text":"x"})");
      BOOST_TEST(refused.is_error);
      BOOST_TEST(contains(refused.content, "plugin 'crashy' is being unloaded"), refused.content);
      bool unloaded = false;
      std::move(unload).receive([&](bool b) { unloaded = b; },
                                [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
      BOOST_TEST(unloaded);
      tool_result hung;
      std::move(hang).receive([&](tool_result& r) { hung = std::move(r); },
                              [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
      BOOST_TEST(hung.is_error);
      BOOST_TEST(contains(hung.content, "within 400 ms"), hung.content);
      BOOST_TEST(list_plugins(sys, loader).empty());
      BOOST_TEST(contains(call("ok", R"({"text":"x"})").content, "unknown tool 'ok'"));
    }
  }
}

BOOST_AUTO_TEST_CASE(load_and_unload_while_a_swarm_runs) {
  // 20 workers each call the plugin's ok, pass gate 1, call ok, pass gate 2, call ok. While every
  // worker waits at gate 1 the plugin is unloaded; while they wait at gate 2 it is loaded again.
  auto gate = sys.spawn(gate_behavior);
  register_tool(sys, registry,
                tool_spec{"gate", "Waits until the test opens the gate.",
                          R"({"type":"object","properties":{"phase":{"type":"integer"}}})"},
                caf::actor_cast<tool_actor>(gate));
  for (bool oop : {false, true}) {
    BOOST_TEST_CONTEXT("out_of_process = " << oop) {
      caf::anon_send(gate, reset_atom::value);
      load_plugin(sys, loader, "crashy", crashy_config(oop));
      auto m = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "spawn_swarm", arguments = '{"prompt_template": "task {{item}}", "items": [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]}' }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
match = "task"
[[model.rules.turns]]
tool_calls = [{ name = "ok", arguments = '{"text": "loaded"}' }]
[[model.rules.turns]]
tool_calls = [{ name = "gate", arguments = '{"phase": 1}' }]
[[model.rules.turns]]
tool_calls = [{ name = "ok", arguments = '{"text": "unloaded?"}' }]
[[model.rules.turns]]
tool_calls = [{ name = "gate", arguments = '{"phase": 2}' }]
[[model.rules.turns]]
tool_calls = [{ name = "ok", arguments = '{"text": "reloaded"}' }]
[[model.rules.turns]]
text = "{{tool_results}}"
)");
      swarm sw{sys, m, registry};
      std::mutex mtx;
      std::condition_variable cv;
      int at_gate = 0, ok_done = 0, ok_failed = 0;
      sw.set_observer([&](const progress_event& ev) {
        std::lock_guard<std::mutex> g{mtx};
        if (ev.what == progress_event::kind::tool_started && ev.detail == "gate") ++at_gate;
        if (ev.what == progress_event::kind::tool_finished && ev.detail == "ok")
          ++(ev.is_error ? ok_failed : ok_done);
        cv.notify_all();
      });
      agent_config orch;
      orch.name = "orchestrator";
      orch.system_prompt = "ORCH";
      orch.orchestrator = true;
      orch.tools = {"*"};
      run_report rep;
      std::thread runner{[&] { rep = sw.run(orch, "go"); }};
      auto wait_for_gate = [&](int n) {
        std::unique_lock<std::mutex> g{mtx};
        return cv.wait_for(g, std::chrono::seconds(60), [&] { return at_gate == n; });
      };
      BOOST_REQUIRE(wait_for_gate(20));
      unload_plugin(sys, loader, "crashy");
      caf::anon_send(gate, resume_atom::value, 1);
      BOOST_REQUIRE(wait_for_gate(40));
      load_plugin(sys, loader, "crashy", crashy_config(oop));
      caf::anon_send(gate, resume_atom::value, 2);
      runner.join();
      BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
      BOOST_TEST(ok_done == 40);
      BOOST_TEST(ok_failed == 20);
      // Each worker answers with its last tool result.
      auto result = json::parse(rep.result);
      BOOST_TEST(result.find("completed")->as_int() == 20);
      for (const auto& r : result.find("results")->as_array())
        BOOST_TEST(r.find("result")->as_string() == "reloaded");
      BOOST_TEST(sw.live_agents() == 0u);
      unload_plugin(sys, loader, "crashy");
    }
  }
  caf::anon_send_exit(gate, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(plugins_stop_with_the_loader) {
  load_plugin(sys, loader, "crashy", crashy_config(true));
  BOOST_TEST(call("ok", R"({"text":"x"})").content == "x");
  caf::scoped_actor self{sys};
  self->monitor(loader);
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {});
  // The plugin's tool actor stops with it: the registry then reports it down. (The loader's
  // down message can arrive before its linked tool actor has finished exiting, so a call made
  // at once may still be answered; within a few seconds it no longer is.)
  auto r = call("ok", R"({"text":"x"})");
  for (int i = 0; i < 500 && !r.is_error; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = call("ok", R"({"text":"x"})");
  }
  BOOST_TEST(r.is_error);
}

BOOST_AUTO_TEST_CASE(default_directories_and_plugin_files) {
  auto files = find_plugin_files({plugin_dir, testing_dir});
  auto has = [&](const char* p) {
    return std::find(files.begin(), files.end(), fs::canonical(p)) != files.end();
  };
  BOOST_TEST(has(TROUPE_FS_PLUGIN));
  BOOST_TEST(has(TROUPE_CRASHY_PLUGIN));
  BOOST_TEST(!find_plugin_host(
#ifdef TROUPE_PLUGIN_HOST_PATH
                  TROUPE_PLUGIN_HOST_PATH
#endif
                  )
                  .empty());
  BOOST_CHECK_THROW(find_plugin_host("/nonexistent/troupe-plugin-host"), error);
}

BOOST_AUTO_TEST_SUITE_END()
