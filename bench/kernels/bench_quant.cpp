// Fused dot products per weight type and instruction set: a mat-vec of 256 rows x 4096 columns
// (the weights fit in L2/L3, so this measures the kernels, not DRAM). Each SIMD case checks its
// result against the scalar kernel first, then reports its speed-up over scalar measured in the
// same process (counter `x_scalar`, median of 7 timed repeats each).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/quant.hpp"

namespace q = troupe::kernels::cpu;

namespace {

constexpr int64_t rows = 256;
constexpr int64_t cols = 4096;

struct problem {
  q::quant_type weight;
  q::quant_type act;
  std::vector<unsigned char> w;
  std::vector<unsigned char> a;
  size_t stride;
};

problem make_problem(q::quant_type t) {
  problem p{t, q::quant_type::f32, {}, {}, 0};
  q::activation_type(t, &p.act);
  p.stride = static_cast<size_t>(q::row_bytes(t, cols));
  std::mt19937 gen(1234);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Realistic weights: quantise... the scalar dequantiser only reads, so random bytes with sane
  // scales are enough; fix up the fp16 scale fields so nothing is inf/NaN.
  std::vector<float> row(cols);
  p.w.resize(p.stride * rows);
  for (auto& b : p.w) b = static_cast<unsigned char>(gen());
  const uint16_t small = q::fp32_to_fp16(0.01f);
  for (int64_t r = 0; r < rows; ++r) {
    unsigned char* base = &p.w[r * p.stride];
    const int64_t bb = q::block_bytes(t), nb = cols / q::block_elements(t);
    for (int64_t b = 0; b < nb; ++b) {
      unsigned char* blk = base + b * bb;
      switch (t) {
        case q::quant_type::f32: { float v = u(gen); std::memcpy(blk, &v, 4); break; }
        case q::quant_type::f16: { uint16_t v = q::fp32_to_fp16(u(gen)); std::memcpy(blk, &v, 2); break; }
        case q::quant_type::bf16: { uint16_t v = q::fp32_to_bf16(u(gen)); std::memcpy(blk, &v, 2); break; }
        case q::quant_type::q8_0:
          std::memcpy(blk, &small, 2);
          for (int j = 0; j < 32; ++j) if (blk[2 + j] == 0x80) blk[2 + j] = 0x81;
          break;
        case q::quant_type::q4_0: std::memcpy(blk, &small, 2); break;
        case q::quant_type::q4_1: std::memcpy(blk, &small, 2); std::memcpy(blk + 2, &small, 2); break;
        case q::quant_type::q4_k: std::memcpy(blk, &small, 2); std::memcpy(blk + 2, &small, 2); break;
        case q::quant_type::q6_k: std::memcpy(blk + 208, &small, 2); break;
        case q::quant_type::q5_0: std::memcpy(blk, &small, 2); break;
        case q::quant_type::q5_k: std::memcpy(blk, &small, 2); std::memcpy(blk + 2, &small, 2); break;
        case q::quant_type::q2_k: std::memcpy(blk + 80, &small, 2); std::memcpy(blk + 82, &small, 2); break;
        case q::quant_type::q3_k: std::memcpy(blk + 108, &small, 2); break;
        case q::quant_type::iq4_nl: case q::quant_type::iq4_xs: std::memcpy(blk, &small, 2); break;
        default: break;
      }
    }
  }
  for (auto& v : row) v = u(gen);
  p.a.resize(static_cast<size_t>(q::row_bytes(p.act, cols)));
  q::quantize_row(p.act, row.data(), p.a.data(), cols, q::isa::scalar);
  return p;
}

double median_seconds(const problem& p, q::isa level, std::vector<float>& y) {
  std::vector<double> t;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int k = 0; k < 5; ++k)
      q::mat_vec(p.weight, rows, cols, p.w.data(), p.stride, p.a.data(), y.data(), level);
    benchmark::DoNotOptimize(y.data());
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 5);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void bm_mat_vec(benchmark::State& state, q::quant_type t, q::isa level) {
  if (!q::isa_available(level)) {
    state.SkipWithError("instruction set not available on this CPU");
    return;
  }
  const problem p = make_problem(t);
  std::vector<float> y(rows), ref(rows);
  // Check before timing: this level against the scalar reference.
  q::mat_vec(t, rows, cols, p.w.data(), p.stride, p.a.data(), ref.data(), q::isa::scalar);
  if (q::mat_vec(t, rows, cols, p.w.data(), p.stride, p.a.data(), y.data(), level) != q::status::ok) {
    state.SkipWithError("kernel failed");
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (std::fabs(y[r] - ref[r]) > 1e-3f * (1.0f + std::fabs(ref[r]))) {
      state.SkipWithError("result differs from the scalar kernel");
      return;
    }
  }
  for (auto _ : state) {
    q::mat_vec(t, rows, cols, p.w.data(), p.stride, p.a.data(), y.data(), level);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(p.stride * rows));
  state.counters["weights_MB"] = double(p.stride * rows) / 1e6;
  if (level != q::isa::scalar) {
    const double scalar = median_seconds(p, q::isa::scalar, y);
    const double simd = median_seconds(p, level, y);
    state.counters["x_scalar"] = scalar / simd;
  }
}

/// A prompt's worth of tokens through mat_mat (the multi-row / multi-token tiles: Q8_0, Q4_0,
/// Q5_0 widened to Q8_0, Q4_1, the K-quants, IQ4_NL, IQ4_XS) against one vec_dot per (row, token) in
/// the same process: counter x_row_dot (median of 7 timed repeats each), `ops` = 2·rows·cols·
/// tokens per second. 256 × 4096 weights (cols 4096: a whole number of K-quant super-blocks).
constexpr int64_t batch_tokens = 64;

/// batch_tokens random activation rows of p's activation type (rows p.a.size() bytes apart).
std::vector<unsigned char> batch_activations(const problem& p, unsigned seed) {
  std::vector<unsigned char> acts(p.a.size() * batch_tokens);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> row(cols);
  for (int64_t k = 0; k < batch_tokens; ++k) {
    for (float& v : row) v = u(gen);
    q::quantize_row(p.act, row.data(), &acts[k * p.a.size()], cols);
  }
  return acts;
}

/// Median of 7 timed calls of f, in seconds.
template <class F>
double median_of_7(F&& f) {
  std::vector<double> ts;
  for (int rep = 0; rep < 7; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ts.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ts.begin(), ts.end());
  return ts[ts.size() / 2];
}

void bm_mat_mat(benchmark::State& state, q::quant_type t) {
  const problem p = make_problem(t);
  const std::vector<unsigned char> acts = batch_activations(p, 77);
  const size_t as = p.a.size();
  std::vector<float> y(rows * batch_tokens), ref(rows * batch_tokens);
  const auto tiles = [&] {
    q::mat_mat(t, rows, cols, p.w.data(), p.stride, acts.data(), as, batch_tokens, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  };
  const auto row_dots = [&] {
    for (int64_t k = 0; k < batch_tokens; ++k)
      for (int64_t r = 0; r < rows; ++r)
        q::vec_dot(t, cols, &p.w[r * p.stride], &acts[k * as], &ref[k * rows + r]);
    benchmark::DoNotOptimize(ref.data());
  };
  tiles();
  row_dots();
  if (std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) != 0) {
    state.SkipWithError("mat_mat differs from vec_dot");
    return;
  }
  for (auto _ : state) tiles();
  state.counters["ops"] = benchmark::Counter(2.0 * rows * cols * batch_tokens,
                                             benchmark::Counter::kIsIterationInvariantRate);
  state.counters["x_row_dot"] = median_of_7(row_dots) / median_of_7(tiles);
}

/// The K-quants and IQ4_XS in llama.cpp's batched order (mat_mat_ggml_batched, as a prefill
/// runs them) at the best level, against the AVX2 kernels of that order in the same process:
/// counter x_avx2 (median of 7 timed repeats each). With AVX-512 VNNI the best level is the
/// tokens-in-lanes kernels, the activations' packing included in each call.
void bm_ggml_batched(benchmark::State& state, q::quant_type t) {
  const problem p = make_problem(t);
  const std::vector<unsigned char> acts = batch_activations(p, 78);
  const size_t as = p.a.size();
  std::vector<float> y(rows * batch_tokens), ref(rows * batch_tokens);
  const auto run = [&](q::isa level, std::vector<float>& out) {
    q::mat_mat_ggml_batched(t, rows, cols, p.w.data(), p.stride, acts.data(), as, batch_tokens,
                            out.data(), rows, level);
    benchmark::DoNotOptimize(out.data());
  };
  run(q::isa::best, y);
  run(q::isa::avx2, ref);
  if (std::memcmp(y.data(), ref.data(), y.size() * sizeof(float)) != 0) {
    state.SkipWithError("the best level differs from the AVX2 kernels");
    return;
  }
  for (auto _ : state) run(q::isa::best, y);
  state.counters["ops"] = benchmark::Counter(2.0 * rows * cols * batch_tokens,
                                             benchmark::Counter::kIsIterationInvariantRate);
  state.counters["x_avx2"] = median_of_7([&] { run(q::isa::avx2, ref); }) /
                            median_of_7([&] { run(q::isa::best, y); });
}

const q::quant_type types[] = {q::quant_type::f32,  q::quant_type::f16,  q::quant_type::bf16,
                               q::quant_type::q8_0, q::quant_type::q4_0, q::quant_type::q4_1,
                               q::quant_type::q4_k, q::quant_type::q6_k};

const int registered = [] {
  for (q::quant_type t : types)
    for (q::isa l : {q::isa::scalar, q::isa::avx2, q::isa::avx512})
      benchmark::RegisterBenchmark(
          (std::string("mat_vec/") + q::type_name(t) + "/" + q::to_string(l)).c_str(),
          [t, l](benchmark::State& s) { bm_mat_vec(s, t, l); })
          ->Unit(benchmark::kMicrosecond);
  for (q::quant_type t :
       {q::quant_type::q8_0, q::quant_type::q4_0, q::quant_type::q5_0, q::quant_type::q4_1,
        q::quant_type::q2_k, q::quant_type::q3_k, q::quant_type::q4_k, q::quant_type::q5_k,
        q::quant_type::q6_k, q::quant_type::iq4_nl, q::quant_type::iq4_xs})
    benchmark::RegisterBenchmark((std::string("mat_mat_64_tokens/") + q::type_name(t)).c_str(),
                                 [t](benchmark::State& s) { bm_mat_mat(s, t); })
        ->Unit(benchmark::kMicrosecond);
  for (q::quant_type t : {q::quant_type::q2_k, q::quant_type::q3_k, q::quant_type::q4_k,
                          q::quant_type::q5_k, q::quant_type::q6_k, q::quant_type::iq4_xs})
    benchmark::RegisterBenchmark((std::string("ggml_batched_64_tokens/") + q::type_name(t)).c_str(),
                                 [t](benchmark::State& s) { bm_ggml_batched(s, t); })
        ->Unit(benchmark::kMicrosecond);
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
