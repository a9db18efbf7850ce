// One decode step's attention of one layer, SmolLM2-135M's shape (9 query heads over 3 KV heads
// of 64), on 2 threads: a single token over a KV cache of 256 to 4,096 positions, f32 or f16.
// Counter `kv_bytes_per_second`: the cache bytes read (keys and values, every position) over the
// time, the figure to hold against the machine's memory bandwidth; `x_f32` on the f16 rows is the
// speed-up over the f32 cache of the same context, measured in the same process.

#include <benchmark/benchmark.h>

#include <chrono>
#include <map>
#include <random>
#include <vector>

#include "cpu/quant.hpp"
#include "cpu/thread_pool.hpp"
#include "cpu/transformer_ops.hpp"

namespace kc = troupe::kernels::cpu;

namespace {

constexpr int64_t heads = 9, kv_heads = 3, head_dim = 64;
constexpr int64_t kv_dim = kv_heads * head_dim, q_dim = heads * head_dim;

/// Seconds per call, for x_f32: f32 results by context.
std::map<int64_t, double>& f32_seconds() {
  static std::map<int64_t, double> m;
  return m;
}

void bm_attention(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool f16 = state.range(1) != 0;
  std::mt19937 gen(5);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> q(q_dim), k(static_cast<size_t>(n * kv_dim)), v(k.size());
  for (auto& x : q) x = dist(gen);
  for (auto& x : k) x = dist(gen);
  for (auto& x : v) x = dist(gen);
  std::vector<uint16_t> kh(k.size()), vh(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    kh[i] = kc::fp32_to_fp16(k[i]);
    vh[i] = kc::fp32_to_fp16(v[i]);
  }
  const kc::attention_shape shape{heads, kv_heads, head_dim, 0.125f, 0, 0,
                                  f16 ? kc::quant_type::f16 : kc::quant_type::f32};
  kc::thread_pool pool(2);
  std::vector<float> out(q_dim), scratch;
  const void* keys = f16 ? static_cast<const void*>(kh.data()) : k.data();
  const void* values = f16 ? static_cast<const void*>(vh.data()) : v.data();
  const auto t0 = std::chrono::steady_clock::now();
  int64_t calls = 0;
  for (auto _ : state) {
    if (kc::attention(pool, shape, q.data(), 1, n - 1, keys, values, out.data(), scratch) !=
        kc::status::ok) {
      state.SkipWithError("attention failed");
      return;
    }
    benchmark::DoNotOptimize(out.data());
    ++calls;
  }
  const double per_call =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() /
      static_cast<double>(std::max<int64_t>(calls, 1));
  const double bytes = static_cast<double>(2 * n * kv_dim) * (f16 ? 2.0 : 4.0);
  state.counters["kv_bytes_per_second"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  if (!f16) {
    f32_seconds()[n] = per_call;
  } else if (auto it = f32_seconds().find(n); it != f32_seconds().end()) {
    state.counters["x_f32"] = it->second / per_call;
  }
}

}  // namespace

BENCHMARK(bm_attention)
    ->ArgNames({"context", "f16"})
    ->ArgsProduct({{256, 1536, 4096}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
