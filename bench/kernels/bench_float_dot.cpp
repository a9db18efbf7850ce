// f32/f16/bf16 weights times a batch of activations, one thread: float_dot's tinyBLAS-order tiles
// (llama.cpp's prefill arithmetic, kernels/cpu/float_dot.hpp) per weight type and instruction
// set, on SmolLM2's shape (576 × 576 weights, a 113-token prompt). Counter `x_row_dot`: the
// speed-up over quant.hpp's mat_mat (one row dot per output, f32 activations: what troupe ran
// before float_dot), measured in the same process, median of 7 timed repeats each; GFLOP/s as
// `flops`.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/float_dot.hpp"
#include "cpu/quant.hpp"

namespace q = troupe::kernels::cpu;

namespace {

constexpr int64_t rows = 576, cols = 576, tokens = 113;

struct problem {
  q::quant_type type;
  size_t w_stride, a_stride;
  std::vector<unsigned char> w, a, a_f32;
};

problem make_problem(q::quant_type t) {
  const int64_t wb = t == q::quant_type::f32 ? 4 : 2, ab = q::ggml_float_activation_bytes(t);
  problem p{t, static_cast<size_t>(cols * wb), static_cast<size_t>(cols * ab), {}, {}, {}};
  p.w.resize(p.w_stride * rows);
  p.a.resize(p.a_stride * tokens);
  p.a_f32.resize(cols * 4 * tokens);
  std::mt19937 gen(99);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : x) v = 0.05f * d(gen);
    unsigned char* out = &p.w[r * p.w_stride];
    if (t == q::quant_type::f32) {
      std::memcpy(out, x.data(), cols * 4);
    } else {
      auto* h = reinterpret_cast<uint16_t*>(out);
      for (int64_t i = 0; i < cols; ++i)
        h[i] = t == q::quant_type::f16 ? q::fp32_to_fp16(x[i]) : q::fp32_to_bf16(x[i]);
    }
  }
  for (int64_t k = 0; k < tokens; ++k) {
    for (float& v : x) v = d(gen);
    q::ggml_float_activations(t, x.data(), &p.a[k * p.a_stride], cols);
    std::memcpy(&p.a_f32[k * cols * 4], x.data(), cols * 4);
  }
  return p;
}

template <class F>
double median_seconds(F&& f) {
  std::vector<double> t;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void bm_tinyblas(benchmark::State& state, q::quant_type t, q::isa level) {
  if (!q::isa_available(level)) {
    state.SkipWithError("instruction set not available on this CPU");
    return;
  }
  const problem p = make_problem(t);
  std::vector<float> y(rows * tokens), before(rows * tokens);
  const auto tiles = [&] {
    q::ggml_float_mat_mat(t, q::ggml_float_order::tinyblas, rows, cols, p.w.data(), p.w_stride,
                          p.a.data(), p.a_stride, tokens, y.data(), rows, level);
    benchmark::DoNotOptimize(y.data());
  };
  const auto row_dots = [&] {
    q::mat_mat(t, rows, cols, p.w.data(), p.w_stride, p.a_f32.data(), cols * 4, tokens,
               before.data(), rows, level);
    benchmark::DoNotOptimize(before.data());
  };
  for (auto _ : state) tiles();
  state.counters["flops"] =
      benchmark::Counter(2.0 * rows * cols * tokens, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["x_row_dot"] = median_seconds(row_dots) / median_seconds(tiles);
}

const int registered = [] {
  for (q::quant_type t : {q::quant_type::f32, q::quant_type::f16, q::quant_type::bf16})
    for (q::isa l : {q::isa::avx2, q::isa::avx512})  // scalar: the definition, not a target
      benchmark::RegisterBenchmark(
          (std::string("tinyblas_576x576x113/") + q::type_name(t) + "/" + q::to_string(l)).c_str(),
          [t, l](benchmark::State& s) { bm_tinyblas(s, t, l); })
          ->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
