// INT4 (compressed-tensors, group 32) and FP8 E4M3 (128×128 blocks) weight products against the
// same matrix in bf16 through the existing mat_mul (quant_type::bf16, fp32 activations), single
// thread, at 1 and 8 tokens: a 2048×7168 routed-expert gate/up projection of Kimi K2.5 and a
// 256×1024 one. Each case checks its result against the bf16 product first, reports GB/s of
// weight bytes read (bytes_per_second), and the speed-up over bf16 measured in the same process
// (counter x_bf16: medians of 9 runs each in thread CPU time).

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "cpu/low_bit.hpp"
#include "cpu/transformer_ops.hpp"

namespace k = troupe::kernels::cpu;

namespace {

/// One weight matrix in INT4, FP8 and bf16 (the bf16 copy holds the INT4 weights' values).
struct problem {
  int64_t rows, cols;
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales;
  std::vector<uint8_t> fp8;
  std::vector<float> fp8_scales;
  std::vector<uint16_t> bf16;
  k::int4_group_matrix int4;
  k::fp8_block_matrix f8;

  problem(int64_t r, int64_t c) : rows(r), cols(c) {
    std::mt19937 gen(42);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (auto& v : w) v = nd(gen);
    packed.resize(static_cast<size_t>(rows * cols / 8));
    scales.resize(static_cast<size_t>(rows * cols / 32));
    k::int4_group_quantize(w.data(), rows, cols, 32, packed.data(), scales.data());
    int4.rows = rows;
    int4.cols = cols;
    int4.packed = packed.data();
    int4.packed_stride = cols / 8;
    int4.scales = scales.data();
    int4.scale_stride = cols / 32;
    bf16.resize(w.size());
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t i = 0; i < rows; ++i) {
      k::int4_group_dequantize_row(int4, i, row.data());
      for (int64_t j = 0; j < cols; ++j) bf16[i * cols + j] = k::fp32_to_bf16(row[j]);
    }
    fp8.resize(w.size());
    for (auto& b : fp8) b = static_cast<uint8_t>(gen() & 0x77);  // finite, |v| < 2
    fp8_scales.assign(static_cast<size_t>((rows + 127) / 128 * ((cols + 127) / 128)), 0.01f);
    f8.rows = rows;
    f8.cols = cols;
    f8.data = fp8.data();
    f8.stride = cols;
    f8.scale_inv = fp8_scales.data();
    f8.scale_stride = (cols + 127) / 128;
  }

  int64_t int4_bytes() const { return rows * cols / 2 + rows * cols / 32 * 2; }
  int64_t fp8_bytes() const { return rows * cols + static_cast<int64_t>(fp8_scales.size()) * 4; }
  int64_t bf16_bytes() const { return rows * cols * 2; }
};

enum class kind { int4, fp8, bf16 };

struct runner {
  const problem& p;
  int64_t tokens;
  std::vector<float> x, y;
  k::thread_pool pool{1};
  std::vector<std::byte> scratch;

  runner(const problem& pr, int64_t t) : p(pr), tokens(t) {
    std::mt19937 gen(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    x.resize(static_cast<size_t>(tokens * p.cols));
    for (auto& v : x) v = nd(gen);
    y.resize(static_cast<size_t>(tokens * p.rows));
  }

  bool run(kind what) {
    switch (what) {
      case kind::int4:
        return k::int4_group_gemm(p.int4, 0, p.rows, x.data(), p.cols, tokens, y.data(), p.rows) ==
               k::status::ok;
      case kind::fp8:
        return k::fp8_block_gemm(p.f8, 0, p.rows, x.data(), p.cols, tokens, y.data(), p.rows) ==
               k::status::ok;
      case kind::bf16:
        return k::mat_mul(pool, k::quant_type::bf16, p.rows, p.cols, p.bf16.data(),
                          static_cast<size_t>(p.cols) * 2, x.data(), tokens, y.data(),
                          scratch) == k::status::ok;
    }
    return false;
  }

  /// Median of 9 runs in this thread's CPU time: on a shared, loaded VM, wall time mostly
  /// measures the other tenants.
  double median_seconds(kind what) {
    std::vector<double> t;
    run(what);  // warm
    for (int rep = 0; rep < 9; ++rep) {
      const double t0 = thread_seconds();
      run(what);
      benchmark::DoNotOptimize(y.data());
      t.push_back(thread_seconds() - t0);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

  static double thread_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
  }
};

const problem& shape(int which) {
  if (which == 0) {
    static const problem expert(2048, 7168);
    return expert;
  }
  static const problem small(256, 1024);
  return small;
}

void bm_low_bit(benchmark::State& state, kind what, int which, int64_t tokens) {
  const problem& p = shape(which);
  runner r(p, tokens);
  // Check before timing: INT4 against the bf16 product of the same weights (bf16 rounding of
  // q·scale allows ~0.4 % per weight); FP8 against its scalar kernel.
  std::vector<float> ref;
  if (what == kind::fp8) {
    ref.resize(r.y.size());
    k::fp8_block_gemm(p.f8, 0, p.rows, r.x.data(), p.cols, tokens, ref.data(), p.rows,
                      k::isa::scalar);
  } else {
    r.run(kind::bf16);
    ref = r.y;
  }
  if (!r.run(what)) {
    state.SkipWithError("kernel failed");
    return;
  }
  double err = 0, norm = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    err += (r.y[i] - ref[i]) * double(r.y[i] - ref[i]);
    norm += double(ref[i]) * ref[i];
  }
  if (!(std::sqrt(err / norm) < (what == kind::fp8 ? 1e-5 : 1e-2))) {
    state.SkipWithError("result differs from the reference product");
    return;
  }
  for (auto _ : state) {
    r.run(what);
    benchmark::DoNotOptimize(r.y.data());
    benchmark::ClobberMemory();
  }
  const int64_t bytes = what == kind::int4  ? p.int4_bytes()
                        : what == kind::fp8 ? p.fp8_bytes()
                                            : p.bf16_bytes();
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["weights_MB"] = double(bytes) / 1e6;
  if (what != kind::bf16)
    state.counters["x_bf16"] = r.median_seconds(kind::bf16) / r.median_seconds(what);
}

const int registered = [] {
  const char* names[] = {"int4_g32", "fp8_b128", "bf16_mat_mul"};
  const char* shapes[] = {"2048x7168", "256x1024"};
  for (int which : {0, 1})
    for (int64_t tokens : {1, 8})
      for (kind what : {kind::bf16, kind::int4, kind::fp8}) {
        const std::string name = std::string("low_bit/") + shapes[which] + "/t" +
                                 std::to_string(tokens) + "/" + names[static_cast<int>(what)];
        benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& s) {
          bm_low_bit(s, what, which, tokens);
        })->Unit(benchmark::kMicrosecond);
      }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
