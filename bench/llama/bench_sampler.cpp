// Time per token of the sampler over a SmolLM2-sized vocabulary (49,152 logits), against the
// bare arg-max in the same run: greedy, greedy with the repetition penalty, OpenAI-style
// temperature + top_p, llama.cpp's default chain (top_k 40, top_p 0.95, min_p 0.05, T 0.8),
// temperature alone, top_p over a flat distribution (the worst case for a nucleus), and
// log-probabilities with five alternatives. Results are checked before timing: every sampled
// token is one the filters keep.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "troupe/llama/sampler.hpp"

using troupe::llama::sampler;
using troupe::llama::sampler_params;

namespace {

constexpr size_t vocab = 49152;

/// Logits shaped like a language model's: a broad normal body and a few tokens far above it.
std::vector<float> peaked_logits(uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> body(0.0f, 2.0f);
  std::vector<float> l(vocab);
  for (auto& x : l) x = body(gen);
  std::uniform_int_distribution<size_t> pick(0, vocab - 1);
  const float peaks[] = {16.0f, 15.0f, 14.5f, 13.0f, 12.5f, 12.0f, 11.0f, 10.5f};
  for (float p : peaks) l[pick(gen)] = p;
  return l;
}

std::vector<float> flat_logits(uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> body(0.0f, 1.0f);
  std::vector<float> l(vocab);
  for (auto& x : l) x = body(gen);
  return l;
}

/// A sampler with 64 generated tokens in its history, as in the middle of an answer.
sampler with_history(sampler_params p) {
  sampler s{p};
  std::mt19937 gen(7);
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab) - 1);
  for (int i = 0; i < 64; ++i) s.accept(tok(gen));
  return s;
}

void bm_arg_max(benchmark::State& state) {
  const auto l = peaked_logits(1);
  for (auto _ : state) {
    auto it = std::max_element(l.begin(), l.end());
    benchmark::DoNotOptimize(it);
  }
  state.SetLabel("baseline");
}
BENCHMARK(bm_arg_max)->Unit(benchmark::kMicrosecond);

void bm_sample(benchmark::State& state, sampler_params p, bool flat) {
  const auto l = flat ? flat_logits(2) : peaked_logits(2);
  auto s = with_history(p);
  // Check first: the token drawn is among the candidates the filters keep.
  const auto kept = s.candidates(l);
  for (int i = 0; i < 20; ++i) {
    const int32_t t = s.sample(l);
    if (std::none_of(kept.begin(), kept.end(), [&](const auto& c) { return c.first == t; })) {
      state.SkipWithError("a sampled token is not among the kept candidates");
      return;
    }
  }
  for (auto _ : state) benchmark::DoNotOptimize(s.sample(l));
  state.counters["kept"] = static_cast<double>(kept.size());
}
BENCHMARK_CAPTURE(bm_sample, greedy, sampler_params{}, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, greedy_repeat_penalty, sampler_params{.repeat_penalty = 1.1f}, false)
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, greedy_presence_penalty, sampler_params{.presence_penalty = 0.5f},
                  false)
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, openai_t07_top_p09, sampler_params{.temperature = 0.7f, .top_p = 0.9f},
                  false)
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, llama_cpp_chain,
                  sampler_params{.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f},
                  false)
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, temperature_only, sampler_params{.temperature = 1.0f}, false)
  ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(bm_sample, flat_top_p095, sampler_params{.temperature = 1.0f, .top_p = 0.95f},
                  true)
  ->Unit(benchmark::kMicrosecond);

void bm_logprobs_top5(benchmark::State& state) {
  const auto l = peaked_logits(3);
  for (auto _ : state) benchmark::DoNotOptimize(troupe::llama::logprobs_of(l, 5, 5));
}
BENCHMARK(bm_logprobs_top5)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
