// What the OpenAI-compatible HTTP path costs: N concurrent clients (64 by default, Arg) each send
// one chat request per round; the same requests go to a model actor directly (the baseline) and
// through troupe's OpenAI backend -> HTTP/1.1 on 127.0.0.1 -> openai_server -> the same actor.
//  - instant_*: a model that answers at once (fixed text and usage): the HTTP path's own cost.
//  - engine_*:  the local engine (embedded SmolLM2, greedy, 4 new tokens): what a user sees.
// Counters: requests/s (items_per_second), mean_ms and max_ms (per-request latency in the round).
// Each round's answers are checked (text, usage) before its time counts.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <string>

#include "caf/all.hpp"
#include "troupe/local_model.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/openai_server.hpp"
#include "troupe/troupe.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

model_actor::behavior_type instant_model() {
  return {
    [](chat_atom, const chat_request& req) -> assistant_turn {
      assistant_turn t;
      t.text = "ok " + req.messages.back().text();
      t.usage = usage{20, 4};
      return t;
    },
    [](cancel_atom, uint64_t) {},
  };
}

/// One round: `n` requests at once, each from its own relay actor; returns the latencies (ms).
/// Fails the benchmark on an error or a wrong answer.
std::vector<double> round_of(caf::actor_system& sys, const model_actor& model, int n,
                             uint32_t max_tokens, uint64_t& next_id, benchmark::State& state,
                             bool instant) {
  caf::scoped_actor self{sys};
  caf::actor me = caf::actor_cast<caf::actor>(self);
  for (int i = 0; i < n; ++i) {
    chat_request req;
    req.id = next_id++;
    req.messages = {chat_message::user("Say hello to client " + std::to_string(i) + ".")};
    req.max_tokens = max_tokens;
    sys.spawn([model, req, me](caf::event_based_actor* relay) {
      auto start = std::chrono::steady_clock::now();
      relay->request(model, 300s, chat_atom::value, req)
        .then(
          [relay, me, start](assistant_turn& t) {
            double ms = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - start)
                          .count();
            relay->send(me, ms, std::move(t));
          },
          [relay, me](caf::error& e) { relay->send(me, std::move(e)); });
    });
  }
  std::vector<double> latencies;
  std::string problem;
  for (int i = 0; i < n; ++i)
    self->receive(
      [&](double ms, assistant_turn& t) {
        latencies.push_back(ms);
        bool good = instant ? t.text.rfind("ok Say hello", 0) == 0 && t.usage.total() == 24
                            : t.usage.completion_tokens == max_tokens && !t.text.empty();
        if (!good && problem.empty()) problem = "unexpected answer: '" + t.text + "'";
      },
      [&](caf::error& e) {
        if (problem.empty()) problem = from_caf_error(e, "chat").render();
      },
      caf::after(std::chrono::seconds(600)) >> [&] { problem = "no answer within 600 s"; });
  if (!problem.empty()) state.SkipWithError(problem.c_str());
  return latencies;
}

enum class path { direct, http };

void run(benchmark::State& state, bool instant, path via) {
  const int clients = static_cast<int>(state.range(0));
  const uint32_t max_tokens = 4;
  if (!instant && !std::filesystem::exists(default_model_path())) {
    state.SkipWithError("the embedded model is not installed (scripts/install-deps)");
    return;
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  model_actor model;
  if (instant) {
    model = sys.spawn(instant_model);
  } else {
    local_model_config lc;
    lc.max_batch = 64;
    lc.context = 256;
    lc.kv_budget_bytes = int64_t{256} << 20;
    model = spawn_local_model(sys, lc);
  }
  std::unique_ptr<openai_server> server;
  model_actor target = model;
  if (via == path::http) {
    openai_server_options so;
    so.port = 0;
    so.model_id = "bench";
    server = std::make_unique<openai_server>(sys, model, so);
    openai_config oc;
    oc.base_url = server->base_url();
    oc.model = "bench";
    oc.api_key_env = "";
    oc.max_concurrency = static_cast<uint32_t>(clients);
    oc.max_retries = 0;
    oc.timeout = 300s;
    target = spawn_openai_model(sys, oc);
  }
  uint64_t next_id = 1;
  round_of(sys, target, clients, max_tokens, next_id, state, instant);  // Warm-up.
  std::vector<double> all;
  for (auto _ : state) {
    auto lat = round_of(sys, target, clients, max_tokens, next_id, state, instant);
    all.insert(all.end(), lat.begin(), lat.end());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * clients);
  if (!all.empty()) {
    state.counters["mean_ms"] = std::accumulate(all.begin(), all.end(), 0.0) / all.size();
    state.counters["max_ms"] = *std::max_element(all.begin(), all.end());
  }
  server.reset();
  if (target != model) caf::anon_send_exit(target, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
}

void instant_direct(benchmark::State& s) { run(s, true, path::direct); }
void instant_http(benchmark::State& s) { run(s, true, path::http); }
void engine_direct(benchmark::State& s) { run(s, false, path::direct); }
void engine_http(benchmark::State& s) { run(s, false, path::http); }

}  // namespace

BENCHMARK(instant_direct)->Arg(64)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(instant_http)->Arg(64)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(engine_direct)->Arg(64)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(engine_http)->Arg(64)->Arg(4)->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
