// Orchestration overhead of the swarm runtime, with raw CAF round trips as the baseline:
//  - actor_round_trip: one request/response between two plain CAF actors (the floor).
//  - registry_dispatch: one tool call through the registry (argument check, limits) to noop.
//  - swarm_1500: 100 sub-agents x 15 no-op tool calls against a zero-latency scripted model,
//    spawned by an orchestrator's spawn_swarm: everything but the model and the tools' own work.
// Counters: calls_per_s, s_per_call (overhead per tool call, all orchestration included; printed
// with SI suffixes, so 3.1u is 3.1 microseconds).
#include <benchmark/benchmark.h>

#include <string>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

using namespace troupe;

namespace {

using ping_atom = caf::atom_constant<caf::atom("ping")>;

struct bench_env {
  troupe::actor_system_config cfg = [] {
    troupe::actor_system_config c;
    if (const char* t = std::getenv("BENCH_THREADS")) c.set("scheduler.max-threads", std::atoi(t));
    if (const char* p = std::getenv("BENCH_POLICY")) c.set("scheduler.policy", caf::atom_from_string(p));
    return c;
  }();
  caf::actor_system sys{cfg};
  tool_registry_actor registry = spawn_tool_registry(sys);
  bench_env() { register_builtin_tools(sys, registry, {"noop"}); }
  ~bench_env() { caf::anon_send_exit(registry, caf::exit_reason::user_shutdown); }
};

// Owned by main(): an actor system must not outlive main (CAF's own globals die first).
bench_env* the_env = nullptr;

bench_env& env() { return *the_env; }

caf::behavior echo_actor() {
  return {[](ping_atom, int x) { return x; }};
}

/// Runs `n` sequential request/response round trips from inside an actor; replies when done.
caf::behavior driver(caf::event_based_actor* self, caf::actor target, int n) {
  return {[=](ping_atom, int) -> caf::result<int> {
    auto rp = self->make_response_promise<int>();
    auto left = std::make_shared<int>(n);
    auto step = std::make_shared<std::function<void()>>();
    *step = [=]() mutable {
      if (*left == 0) {
        rp.deliver(n);
        *step = nullptr;
        return;
      }
      --*left;
      self->request(target, std::chrono::seconds(10), ping_atom::value, *left)
        .then([=](int) { (*step)(); });
    };
    (*step)();
    return rp;
  }};
}

void actor_round_trip(benchmark::State& state) {
  auto& e = env();
  constexpr int n = 1500;
  auto target = e.sys.spawn(echo_actor);
  auto d = e.sys.spawn(driver, target, n);
  caf::scoped_actor self{e.sys};
  for (auto _ : state) {
    int done = 0;
    self->request(d, caf::infinite, ping_atom::value, 0).receive([&](int k) { done = k; },
                                                                [](caf::error&) {});
    if (done != n) state.SkipWithError("driver failed");
  }
  state.counters["s_per_call"] =
    benchmark::Counter(static_cast<double>(state.iterations()) * n,
                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  self->send_exit(d, caf::exit_reason::user_shutdown);
  self->send_exit(target, caf::exit_reason::user_shutdown);
}

/// Pipelines `n` tool calls through the registry from inside an actor, `window` at a time.
caf::behavior registry_driver(caf::event_based_actor* self, tool_registry_actor registry, int n) {
  return {[=](ping_atom, int) -> caf::result<int> {
    auto rp = self->make_response_promise<int>();
    auto left = std::make_shared<int>(n);
    auto ok = std::make_shared<int>(0);
    for (int i = 0; i < n; ++i)
      self->request(registry, std::chrono::seconds(10), invoke_atom::value,
                    tool_call{"c" + std::to_string(i), "noop", "{}"})
        .then([=](const tool_result& r) mutable {
          *ok += !r.is_error;
          if (--*left == 0) rp.deliver(*ok);
        });
    return rp;
  }};
}

void registry_dispatch(benchmark::State& state) {
  auto& e = env();
  constexpr int n = 1500;
  auto d = e.sys.spawn(registry_driver, e.registry, n);
  caf::scoped_actor self{e.sys};
  for (auto _ : state) {
    int ok = 0;
    self->request(d, caf::infinite, ping_atom::value, 0).receive([&](int k) { ok = k; },
                                                                [](caf::error&) {});
    if (ok != n) state.SkipWithError("a tool call failed");
  }
  state.counters["calls_per_s"] =
    benchmark::Counter(static_cast<double>(state.iterations()) * n, benchmark::Counter::kIsRate);
  state.counters["s_per_call"] =
    benchmark::Counter(static_cast<double>(state.iterations()) * n,
                       benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  self->send_exit(d, caf::exit_reason::user_shutdown);
}

std::string scale_script() {
  std::string items;
  for (int i = 1; i <= 100; ++i) items += (i > 1 ? "," : "") + std::to_string(i);
  return R"(
[task]
goal = "scale"
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "spawn_swarm", arguments = '{"prompt_template": "task {{item}}", "items": [)" +
         items + R"(]}' }]
[[model.rules.turns]]
text = "done"
[[model.rules]]
match = "task"
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 15
[[model.rules.turns]]
text = "worker done"
)";
}

void swarm_1500(benchmark::State& state) {
  auto& e = env();
  auto model = spawn_scripted_model(e.sys, parse_task(scale_script(), "scale").script);
  agent_config orch;
  orch.name = "orchestrator";
  orch.system_prompt = "ORCH";
  orch.orchestrator = true;
  orch.tools = {"noop"};
  swarm sw{e.sys, model, e.registry};
  for (auto _ : state) {
    auto rep = sw.run(orch, "go");
    if (!rep.ok() || rep.tool_calls != 1500 || rep.subagents != 100) {
      state.SkipWithError("the swarm did not make its 1500 calls");
      break;
    }
  }
  const double calls = static_cast<double>(state.iterations()) * 1500;
  state.counters["calls_per_s"] = benchmark::Counter(calls, benchmark::Counter::kIsRate);
  state.counters["s_per_call"] =
    benchmark::Counter(calls, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
}

}  // namespace

BENCHMARK(actor_round_trip)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(registry_dispatch)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(swarm_1500)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  {
    bench_env e;
    the_env = &e;
    benchmark::RunSpecifiedBenchmarks();
    the_env = nullptr;
  }
  benchmark::Shutdown();
  return 0;
}
