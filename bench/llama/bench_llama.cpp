// SmolLM2-135M-Instruct (Q4_1) on the CPU kernels: prefill tokens/s for a 128-token prompt
// (bench/llama/prompt_128.txt) and greedy decode tokens/s for 64 tokens after it, 2 threads.
// Each benchmark first checks that the forward pass is deterministic on this prompt (the same
// next token on every run; tests/llama checks it against llama.cpp), then times it.
// tools/reference/bench_vs_llama_cpp.py runs llama.cpp on the same file, prompt and threads and
// prints the ratio; run it for comparisons (these machines are noisy).
// Batched decode: N sequences decoding together (llama::batch_decoder, the engine's forward pass)
// and N concurrent requests through the engine actor (continuous batching); aggregate tokens/s.
// The baseline is N = 1 in the same run: the ratio is what batching buys. Decode at a long
// context (1,536 positions) measures attention over the KV cache; $TROUPE_BENCH_KV=f16 runs
// every benchmark with an f16 cache (f32 by default), so two runs give the cache type's ratio.
// The engine's prefix cache, on (prefix:1) against off (prefix:0, the baseline) in the same run:
// a swarm of 32 requests sharing a sub-agent's system prompt of ~500 tokens (bm_engine_swarm),
// and one agent's conversation of 8 turns, each re-sending everything so far (bm_engine_turns);
// wall time per swarm or conversation, and the share of prompt tokens taken from the cache.
//
//   bench_llama --benchmark_repetitions=5 --benchmark_report_aggregates_only=true

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/llama/batch_decoder.hpp"
#include "troupe/llama/llama_model.hpp"
#include "troupe/local_model.hpp"
#include "troupe/llama/tokenizer.hpp"

namespace {

using troupe::llama::llama_model;
using troupe::llama::llama_session;

constexpr int decode_tokens = 64;

/// $TROUPE_BENCH_MODEL (any llama-architecture GGUF file), else the embedded SmolLM2 Q4_1 file.
std::filesystem::path model_path() {
  if (const char* m = std::getenv("TROUPE_BENCH_MODEL"); m != nullptr && *m != 0) return m;
  std::filesystem::path dir;
  if (const char* d = std::getenv("TROUPE_MODEL_DIR"); d != nullptr && *d != 0) {
    dir = d;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    dir = std::filesystem::path(home) / ".cache/troupe/models";
  }
  auto p = dir / "SmolLM2-135M-Instruct.Q4_1.gguf";
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

/// $TROUPE_BENCH_KV: the KV cache type, f32 (default) or f16.
troupe::llama::kv_cache_type kv_type() {
  const char* k = std::getenv("TROUPE_BENCH_KV");
  return troupe::llama::parse_kv_cache_type(k != nullptr && *k != 0 ? k : "f32");
}

/// The model and the tokenised prompt, loaded once for all benchmarks.
struct fixture {
  std::shared_ptr<const llama_model> model;
  std::vector<int32_t> prompt;
};

const fixture* shared_fixture() {
  static const std::unique_ptr<fixture> f = []() -> std::unique_ptr<fixture> {
    const auto path = model_path();
    if (path.empty()) return nullptr;
    auto out = std::make_unique<fixture>();
    out->model = llama_model::load(path);
    std::ifstream in(TROUPE_BENCH_PROMPT, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    out->prompt = troupe::llama::tokenizer::from_gguf(out->model->file()).encode(s, true, false);
    return out;
  }();
  return f.get();
}

int32_t arg_max(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void bm_prefill(benchmark::State& state) {
  const fixture* f = shared_fixture();
  if (f == nullptr) {
    state.SkipWithError("SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/install-deps)");
    return;
  }
  llama_session session(f->model, 2048, static_cast<int>(state.range(0)), kv_type());
  const int32_t expected = arg_max(session.decode(f->prompt));
  for (auto _ : state) {
    session.reset();
    const auto logits = session.decode(f->prompt);
    if (arg_max(logits) != expected) state.SkipWithError("prefill is not deterministic");
  }
  state.counters["prompt_tokens"] = static_cast<double>(f->prompt.size());
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(f->prompt.size()),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

void bm_decode(benchmark::State& state) {
  const fixture* f = shared_fixture();
  if (f == nullptr) {
    state.SkipWithError("SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/install-deps)");
    return;
  }
  llama_session session(f->model, 2048, static_cast<int>(state.range(0)), kv_type());
  // Untimed check: two greedy runs give the same 64 tokens.
  session.reset();
  std::vector<int32_t> reference;
  {
    auto logits = session.decode(f->prompt);
    for (int i = 0; i < decode_tokens; ++i) {
      const int32_t next = arg_max(logits);
      reference.push_back(next);
      logits = session.decode(std::span<const int32_t>(&next, 1));
    }
  }
  for (auto _ : state) {
    state.PauseTiming();
    session.reset();
    auto logits = session.decode(f->prompt);
    state.ResumeTiming();
    std::vector<int32_t> got;
    for (int i = 0; i < decode_tokens; ++i) {
      const int32_t next = arg_max(logits);
      got.push_back(next);
      logits = session.decode(std::span<const int32_t>(&next, 1));
    }
    if (got != reference) state.SkipWithError("greedy decode is not deterministic");
  }
  state.counters["tok_per_s"] = benchmark::Counter(decode_tokens,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

/// Decode at a long context: 64 greedy tokens after the benchmark prompt (BOS included)
/// repeated to $TROUPE_BENCH_CONTEXT tokens (1,536 by default), where attention reads that many
/// cached positions per layer and token (the KV cache type matters here). Counters: generated
/// tokens per second, and the prompt's tokens per second in its (untimed) prefill, one batch.
void bm_decode_long_context(benchmark::State& state) {
  const fixture* f = shared_fixture();
  if (f == nullptr) {
    state.SkipWithError("SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/install-deps)");
    return;
  }
  const char* env = std::getenv("TROUPE_BENCH_CONTEXT");
  const size_t context = env != nullptr && *env != 0 ? std::strtoul(env, nullptr, 10) : 1536;
  if (context < 1 || context + decode_tokens > 8192) {
    state.SkipWithError("TROUPE_BENCH_CONTEXT must be 1..8128");
    return;
  }
  std::vector<int32_t> prompt;
  while (prompt.size() < context)
    prompt.insert(prompt.end(), f->prompt.begin(), f->prompt.end());
  prompt.resize(context);
  llama_session session(f->model, static_cast<int64_t>(context) + decode_tokens, 2, kv_type());
  double prefill_seconds = 0;  // the untimed prefills, for their own counter
  for (auto _ : state) {
    state.PauseTiming();
    session.reset();
    const auto p0 = std::chrono::steady_clock::now();
    auto logits = session.decode(prompt);
    prefill_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - p0).count();
    state.ResumeTiming();
    for (int i = 0; i < decode_tokens; ++i) {
      const int32_t next = arg_max(logits);
      logits = session.decode(std::span<const int32_t>(&next, 1));
    }
  }
  state.counters["context"] = static_cast<double>(context);
  state.counters["prefill_tok_per_s"] =
      static_cast<double>(context * state.iterations()) / std::max(prefill_seconds, 1e-9);
  state.counters["tok_per_s"] = benchmark::Counter(decode_tokens,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

/// N sequences, each after a 16-token prompt of its own, decode 64 tokens together: one forward
/// pass per step for the whole batch. Counter: aggregate generated tokens per second.
void bm_batched_decode(benchmark::State& state) {
  const fixture* f = shared_fixture();
  if (f == nullptr) {
    state.SkipWithError("SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/install-deps)");
    return;
  }
  const auto n = static_cast<size_t>(state.range(0));
  troupe::llama::batch_decoder dec(f->model, 2, kv_type());
  const auto vocab = static_cast<size_t>(f->model->hparams().vocab);
  std::vector<uint32_t> seqs;
  for (size_t i = 0; i < n; ++i) seqs.push_back(dec.open(256));
  std::vector<troupe::llama::batch_decoder::chunk> chunks(n);
  std::vector<int32_t> next(n);
  // Untimed: each sequence's prompt is a different 16-token window of the benchmark prompt.
  auto prefill = [&] {
    for (size_t i = 0; i < n; ++i) {
      dec.reset(seqs[i]);
      const size_t at = (i * 7) % (f->prompt.size() - 16);
      chunks[i] = {seqs[i], std::span<const int32_t>(f->prompt.data() + at, 16)};
    }
    return dec.decode(chunks);
  };
  for (auto _ : state) {
    state.PauseTiming();
    auto logits = prefill();
    state.ResumeTiming();
    for (int step = 0; step < decode_tokens; ++step) {
      for (size_t i = 0; i < n; ++i) {
        next[i] = arg_max(logits.subspan(i * vocab, vocab));
        chunks[i] = {seqs[i], std::span<const int32_t>(&next[i], 1)};
      }
      logits = dec.decode(chunks);
    }
  }
  state.counters["sequences"] = static_cast<double>(n);
  state.counters["tok_per_s"] = benchmark::Counter(static_cast<double>(n * decode_tokens),
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

/// A sub-agent's instructions and tool declarations: ~500 tokens. `run` makes it unique to one
/// benchmark iteration (at its start), so that no iteration finds an earlier one's cache.
std::string agent_system_prompt(int64_t run) {
  std::string s = "Run " + std::to_string(run) +
                  ". You are a research sub-agent. Use the tools to answer the question you are "
                  "given, then reply with a short summary of what you found.\n\nTools:\n";
  const char* tools[] = {"read_file", "list_dir", "grep", "web_fetch", "sqlite_query",
                         "write_note", "python_exec", "search_index"};
  for (const char* t : tools) {
    s += std::string("- ") + t +
         ": takes a JSON object with the fields path (string), pattern (string, optional) and "
         "max_results (integer, at most 50); returns the matching records as JSON lines, or an "
         "error object that says what was wrong with the arguments.\n";
  }
  return s;
}

/// Sends `requests` and waits for all replies; adds their usage to `u`. False on an error.
bool ask_all(caf::scoped_actor& self, const troupe::model_actor& model,
             const std::vector<troupe::chat_request>& requests, troupe::usage& u,
             std::vector<std::string>* texts, benchmark::State& state) {
  std::vector<decltype(self->request(model, caf::infinite, troupe::chat_atom::value,
                                     troupe::chat_request{}))> handles;
  for (const auto& r : requests)
    handles.push_back(self->request(model, caf::infinite, troupe::chat_atom::value, r));
  bool ok = true;
  for (auto& h : handles) {
    h.receive(
      [&](troupe::assistant_turn& t) {
        u += t.usage;
        if (texts) texts->push_back(std::move(t.text));
      },
      [&](caf::error& e) {
        state.SkipWithError(caf::to_string(e).c_str());
        ok = false;
      });
  }
  return ok;
}

/// Runs `workload(self, model, run, usage)` once per iteration on an engine with the prefix cache
/// on or off; `run` counts the iterations from 1. The workload returns false after an error (it
/// has called SkipWithError). Reports the prompt tokens per iteration and the share of them
/// taken from the cache; returns the usage of all iterations.
template <class Workload>
troupe::usage engine_workload(benchmark::State& state, bool prefix_cache, Workload workload) {
  troupe::usage u;
  if (shared_fixture() == nullptr) {
    state.SkipWithError("SmolLM2-135M-Instruct.Q4_1.gguf not found (run scripts/install-deps)");
    return u;
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  troupe::local_model_config lc;
  lc.model = model_path().string();
  lc.threads = 2;
  lc.kv_cache_type = troupe::llama::to_string(kv_type());
  lc.prefix_cache = prefix_cache;
  auto model = troupe::spawn_local_model(sys, lc);
  caf::scoped_actor self{sys};
  int64_t run = 0;
  for (auto _ : state)
    if (!workload(self, model, ++run, u)) break;
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  state.counters["prompt_tokens"] =
    benchmark::Counter(static_cast<double>(u.prompt_tokens), benchmark::Counter::kAvgIterations);
  state.counters["cached_share"] =
    u.prompt_tokens == 0 ? 0.0
                         : static_cast<double>(u.cached_prompt_tokens) /
                             static_cast<double>(u.prompt_tokens);
  return u;
}

/// N concurrent chat requests (64 tokens each) through the engine actor: scheduling, sampling,
/// detokenisation and messaging included. Counter: aggregate generated tokens per second. The
/// prefix cache is off: every iteration sends the same prompts, which it would serve from the
/// cache after the first, and this measures decoding.
void bm_engine_requests(benchmark::State& state) {
  const auto n = static_cast<size_t>(state.range(0));
  uint64_t id = 0;
  const troupe::usage total = engine_workload(
    state, false,
    [&](caf::scoped_actor& self, const troupe::model_actor& model, int64_t, troupe::usage& u) {
      std::vector<troupe::chat_request> requests;
      for (size_t i = 0; i < n; ++i) {
        troupe::chat_request req;
        req.id = ++id;
        req.messages = {troupe::chat_message::user("Tell me fact number " + std::to_string(i) +
                                                   " about lighthouses.")};
        req.max_tokens = decode_tokens;
        requests.push_back(std::move(req));
      }
      return ask_all(self, model, requests, u, nullptr, state);
    });
  state.counters["sequences"] = static_cast<double>(n);
  state.counters["tok_per_s"] =
    benchmark::Counter(static_cast<double>(total.completion_tokens), benchmark::Counter::kIsRate);
}

/// 32 sub-agents of one swarm at once: the same system prompt, a question each, 16 tokens each.
void bm_engine_swarm(benchmark::State& state) {
  uint64_t id = 0;
  engine_workload(state, state.range(0) != 0, [&](caf::scoped_actor& self,
                                                  const troupe::model_actor& model, int64_t run,
                                                  troupe::usage& u) {
    const std::string system = agent_system_prompt(run);
    std::vector<troupe::chat_request> requests;
    for (int i = 0; i < 32; ++i) {
      troupe::chat_request r;
      r.id = ++id;
      r.messages = {troupe::chat_message::system(system),
                    troupe::chat_message::user("Find the keeper's log of lighthouse number " +
                                               std::to_string(i) + ".")};
      r.max_tokens = 16;
      requests.push_back(std::move(r));
    }
    return ask_all(self, model, requests, u, nullptr, state);
  });
}

/// One agent's conversation: 8 turns, each the whole conversation so far (system prompt, task,
/// then per turn the model's answer and a tool result of ~60 tokens), 24 tokens per answer.
void bm_engine_turns(benchmark::State& state) {
  uint64_t id = 0;
  engine_workload(state, state.range(0) != 0, [&](caf::scoped_actor& self,
                                                  const troupe::model_actor& model, int64_t run,
                                                  troupe::usage& u) {
    std::vector<troupe::chat_message> conversation{
      troupe::chat_message::system(agent_system_prompt(run)),
      troupe::chat_message::user("Which lighthouses on the north coast were automated first?")};
    for (int turn = 0; turn < 8; ++turn) {
      troupe::chat_request r;
      r.id = ++id;
      r.messages = conversation;
      r.max_tokens = 24;
      std::vector<std::string> texts;
      if (!ask_all(self, model, {r}, u, &texts, state)) return false;
      conversation.push_back(troupe::chat_message::assistant(texts.front()));
      conversation.push_back(troupe::chat_message::user(
        "Tool result " + std::to_string(turn) +
        ": {\"records\": [{\"lighthouse\": \"North Point\", \"automated\": 1961}, "
        "{\"lighthouse\": \"Cape Wrath\", \"automated\": 1998}, {\"lighthouse\": "
        "\"Muckle Flugga\", \"automated\": 1995}]}"));
    }
    return true;
  });
}

BENCHMARK(bm_engine_swarm)->Arg(0)->Arg(1)->ArgName("prefix")
  ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_engine_turns)->Arg(0)->Arg(1)->ArgName("prefix")
  ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_batched_decode)->Arg(1)->Arg(8)->Arg(32)->ArgName("seqs")
  ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_engine_requests)->Arg(1)->Arg(8)->Arg(32)->ArgName("requests")
  ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_prefill)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_decode)->Arg(2)->ArgName("threads")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_decode_long_context)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
