// Per-call overhead of plugin tools: the raw C call (baseline), a built-in tool through the
// registry (the actor path without a plugin), and the crashy plugin's ok tool through the
// registry in process (inline and default asynchronous calls) and out of process.
//
// Each iteration is one batch of sequential calls made by an event-based driver actor (one call in
// flight at a time), so the figures are latencies; "per_call" is the time of one call. The plugin
// layer's own overhead = a mode's per_call minus registry_builtin_echo's (same registry path, no
// plugin); the whole actor path's = minus raw_c_call's. BENCH_SCHEDULER=sharing switches CAF to
// its work-sharing scheduler, which wakes actors from foreign threads (plugin callbacks, the host
// reader thread) without the work-stealing scheduler's idle naps.
#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "caf/all.hpp"
#include "troupe/builtin_tools.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/plugin/plugin_api.h"
#include "troupe/plugin_loader.hpp"
#include "troupe/tool_registry.hpp"

namespace {

constexpr int batch = 200;
const std::string args = R"({"text":"hello"})";

using run_atom_t = troupe::run_atom;

/// Makes `n` sequential calls of `call` through `registry`, then answers with the number of
/// error results.
caf::behavior driver(caf::event_based_actor* self, troupe::tool_registry_actor registry) {
  return {
      [=](run_atom_t, troupe::tool_call call, int n) -> caf::result<int> {
        auto rp = self->make_response_promise<int>();
        auto errors = std::make_shared<int>(0);
        auto left = std::make_shared<int>(n);
        auto step = std::make_shared<std::function<void()>>();
        *step = [=] {
          self->request(registry, std::chrono::seconds(30), troupe::invoke_atom::value, call)
              .then(
                  [=](const troupe::tool_result& r) mutable {
                    *errors += r.is_error;
                    if (--*left == 0) {
                      rp.deliver(*errors);
                      *step = nullptr;  // break the cycle
                    } else {
                      (*step)();
                    }
                  },
                  [=](caf::error&) mutable {
                    rp.deliver(-1);
                    *step = nullptr;
                  });
        };
        (*step)();
        return rp;
      },
  };
}

/// BENCH_SCHEDULER=sharing selects CAF's work-sharing scheduler (default: work stealing).
caf::actor_system_config& configure(caf::actor_system_config& cfg) {
  if (const char* p = std::getenv("BENCH_SCHEDULER"); p && std::string{p} == "sharing")
    cfg.set("scheduler.policy", caf::atom("sharing"));
  return cfg;
}

struct world {
  troupe::actor_system_config cfg;
  caf::actor_system sys{configure(cfg)};
  troupe::tool_registry_actor registry = troupe::spawn_tool_registry(sys);
  troupe::plugin_loader_actor loader;
  caf::actor drv = sys.spawn(driver, registry);

  world() {
    troupe::register_builtin_tools(sys, registry, {"echo"});
    troupe::plugin_options opts;
    opts.allowed_dirs = {std::filesystem::path{TROUPE_CRASHY_PLUGIN}.parent_path()};
#ifdef TROUPE_PLUGIN_HOST_PATH
    opts.host_path = TROUPE_PLUGIN_HOST_PATH;
#endif
    loader = troupe::spawn_plugin_loader(sys, registry, opts);
  }
  ~world() {
    caf::anon_send_exit(drv, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  }

  /// Runs one batch; checks every result.
  void run_batch(const std::string& tool, int n) {
    caf::scoped_actor self{sys};
    int errors = -1;
    self->request(drv, std::chrono::seconds(120), run_atom_t::value,
                  troupe::tool_call{"b", tool, args}, n)
        .receive([&](int e) { errors = e; }, [&](caf::error&) {});
    if (errors != 0) throw std::runtime_error("benchmark calls failed: " + std::to_string(errors));
  }
};

void report(benchmark::State& state) {
  state.counters["per_call"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * batch,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void collect(void* ud, const char* content, size_t size, int is_error) {
  auto* out = static_cast<std::string*>(ud);
  out->assign(content, size);
  if (is_error) out->insert(0, "ERROR ");
}

/// Baseline: the plugin's invoke called directly through the C ABI.
void raw_c_call(benchmark::State& state) {
  void* h = ::dlopen(TROUPE_CRASHY_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  auto entry = reinterpret_cast<troupe_plugin_entry_fn>(::dlsym(h, TROUPE_PLUGIN_ENTRY_SYMBOL));
  const troupe_plugin_descriptor* d = entry(TROUPE_PLUGIN_ABI_VERSION);
  std::string out;
  auto* inst = d->init("{}", 2, &collect, &out);
  d->invoke(inst, "ok", args.data(), args.size(), &collect, &out);
  if (out != "hello") state.SkipWithError("raw call gave a wrong result");
  for (auto _ : state)
    for (int i = 0; i < batch; ++i) {
      d->invoke(inst, "ok", args.data(), args.size(), &collect, &out);
      benchmark::DoNotOptimize(out.data());
    }
  report(state);
  d->unload(inst);
  ::dlclose(h);
}

/// The actor path without a plugin: the built-in echo tool through the registry.
void registry_builtin_echo(benchmark::State& state) {
  world w;
  w.run_batch("echo", 10);
  for (auto _ : state) w.run_batch("echo", batch);
  report(state);
}

void plugin_call(benchmark::State& state, bool out_of_process, bool inline_calls) {
  world w;
  troupe::plugin_config cfg;
  cfg.out_of_process = out_of_process;
  cfg.inline_calls = inline_calls;
  try {
    troupe::load_plugin(w.sys, w.loader, "crashy", cfg);
    w.run_batch("ok", 10);  // warm up, and check the results
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  for (auto _ : state) w.run_batch("ok", batch);
  report(state);
  troupe::unload_plugin(w.sys, w.loader, "crashy");
}

void plugin_in_process_inline(benchmark::State& s) { plugin_call(s, false, true); }
void plugin_in_process_async(benchmark::State& s) { plugin_call(s, false, false); }
void plugin_out_of_process(benchmark::State& s) { plugin_call(s, true, false); }

}  // namespace

BENCHMARK(raw_c_call);
BENCHMARK(registry_builtin_echo)->UseRealTime();
BENCHMARK(plugin_in_process_inline)->UseRealTime();
BENCHMARK(plugin_in_process_async)->UseRealTime();
BENCHMARK(plugin_out_of_process)->UseRealTime();

BENCHMARK_MAIN();
