// Bandwidth of the CUDA kernels against the device's own copy bandwidth, measured in the same run:
// each kernel's unique bytes (weights, cache, activations read once, outputs written) divided by its
// median time, as a fraction of cudaMemcpy device-to-device bandwidth (read + write). Decode-sized
// shapes of Kimi K2 (hidden 7168, moe_intermediate 2048, 64 heads, kv_lora 512 + rope 64).
// Results are checked for finiteness before timing. Plain main (not Google Benchmark) so that
// device-bundle carries nothing but this file and the CUDA libraries of the GPU machine.
//
//   bench_cuda_kernels [--quick]     --quick: small shapes, 3 repetitions (CI smoke run)
// Exits 77 with "SKIPPED: no CUDA device" on a machine without one.

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda/ops.hpp"

namespace kc = troupe::kernels::cuda;

namespace {

bool quick = false;

#define CHECK_CUDA(x)                                                                   \
  do {                                                                                  \
    const cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) {                                                            \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

#define CHECK_OK(x)                                                                       \
  do {                                                                                    \
    const kc::status s_ = (x);                                                            \
    if (s_ != kc::status::ok) {                                                           \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, kc::to_string(s_)); \
      std::exit(1);                                                                       \
    }                                                                                     \
  } while (0)

template <typename T>
T* alloc(size_t n) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)));
  return static_cast<T*>(p);
}

template <typename T>
T* upload(const std::vector<T>& v) {
  T* p = alloc<T>(v.size());
  CHECK_CUDA(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

/// Random bits; bf16 callers get values of either sign with exponents near 1 (0x3C00..0x3FFF
/// ranges after masking), weights get arbitrary nibbles.
template <typename T>
std::vector<T> random_bits(size_t n, uint32_t seed, uint32_t mask = 0xFFFFFFFFu, uint32_t set = 0) {
  std::mt19937 rng(seed);
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>((rng() & mask) | set);
  return v;
}

std::vector<uint16_t> random_bf16(size_t n, uint32_t seed) {
  return random_bits<uint16_t>(n, seed, 0x807F, 0x3C00);  // ±[2^-7, 2^-6)
}

struct timing {
  double median_us, spread_us;
};

/// Median and (max - min) of `reps` timed runs after 2 warm-ups, with CUDA events.
timing time_it(const std::function<void()>& run) {
  const int reps = quick ? 3 : 25;
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) run();
  std::vector<double> us;
  for (int i = 0; i < reps; ++i) {
    CHECK_CUDA(cudaEventRecord(a));
    run();
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    us.push_back(ms * 1e3);
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us.back() - us.front()};
}

double copy_gbps = 0;

void row(const char* name, const std::string& shape, double bytes, timing t) {
  const double gbps = bytes / (t.median_us * 1e-6) / 1e9;
  std::printf("| %-22s | %-34s | %10.1f | %8.1f | %9.1f | %6.1f%% |\n", name, shape.c_str(),
              t.median_us, t.spread_us, gbps, 100.0 * gbps / copy_gbps);
}

template <typename T>
void require_finite(const T* dev, size_t n, const char* what) {
  std::vector<T> h(n);
  CHECK_CUDA(cudaMemcpy(h.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost));
  for (const T& v : h)
    if (!std::isfinite(static_cast<double>(v))) {
      std::fprintf(stderr, "%s: non-finite output\n", what);
      std::exit(1);
    }
}

void bench_copy() {
  const size_t bytes = quick ? (size_t{64} << 20) : (size_t{2} << 30);
  auto* src = alloc<uint8_t>(bytes);
  auto* dst = alloc<uint8_t>(bytes);
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  const timing t = time_it([&] { CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice)); });
  copy_gbps = 2.0 * bytes / (t.median_us * 1e-6) / 1e9;
  row("copy (roofline)", std::to_string(bytes >> 20) + " MiB d2d", 2.0 * bytes, t);
  CHECK_CUDA(cudaFree(src));
  CHECK_CUDA(cudaFree(dst));
}

void bench_moe(int64_t tokens, int64_t n, int64_t k, int64_t block) {
  const int64_t experts = quick ? 16 : 384, top_k = 8, pairs = tokens * top_k;
  std::mt19937 rng(static_cast<uint32_t>(tokens));
  std::vector<int32_t> ids(pairs);
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<int32_t> all(experts);
    for (int64_t e = 0; e < experts; ++e) all[e] = static_cast<int32_t>(e);
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + top_k, ids.begin() + t * top_k);
  }
  const int64_t cap = kc::moe_align_capacity(tokens, top_k, experts, block);
  std::vector<int32_t> sorted(cap), eids(cap / block);
  int32_t rows = 0;
  CHECK_OK(kc::moe_align_block_size(ids.data(), tokens, top_k, experts, block, nullptr, sorted.data(),
                                    eids.data(), cap, &rows));
  std::vector<bool> used(experts, false);
  for (int32_t e : ids) used[e] = true;
  const int64_t touched = std::count(used.begin(), used.end(), true);
  // The whole stack is allocated (the kernel indexes it by expert), filled once with random bits.
  const size_t words = static_cast<size_t>(experts * kc::int4_tile_words(n, k));
  const size_t nscales = static_cast<size_t>(experts * kc::int4_tile_scales(n, k));
  auto* tiles = alloc<uint32_t>(words);
  auto* scales = upload(random_bits<uint16_t>(nscales, 2, 0x007F, 0x3C00));
  CHECK_CUDA(cudaMemset(tiles, 0x5A, words * 4));
  auto* a = upload(random_bf16(static_cast<size_t>(tokens * k), 3));
  auto* dsorted = upload(sorted);
  auto* deids = upload(eids);
  auto* drows = upload(std::vector<int32_t>{rows});
  auto* y = alloc<float>(static_cast<size_t>(pairs * n));
  kc::moe_gemm_args args;
  args.a = a;
  args.lda = k;
  args.a_div = top_k;
  args.tiles = tiles;
  args.scales = scales;
  args.experts = experts;
  args.n = n;
  args.k = k;
  args.sorted_token_ids = dsorted;
  args.expert_ids = deids;
  args.num_tokens_post_padded = drows;
  args.capacity = cap;
  args.block = block;
  args.pairs = pairs;
  args.y = y;
  args.ldy = n;
  CHECK_OK(kc::launch_moe_w4a16_gemm(args, nullptr));
  require_finite(y, static_cast<size_t>(pairs * n), "moe_w4a16_gemm");
  const timing t = time_it([&] { CHECK_OK(kc::launch_moe_w4a16_gemm(args, nullptr)); });
  const double bytes = touched * (n * k / 2.0 + n * (k / 32) * 2.0) + tokens * k * 2.0 + pairs * n * 4.0;
  row("moe_w4a16_gemm", "T=" + std::to_string(tokens) + " N=" + std::to_string(n) + " K=" +
                            std::to_string(k) + " blk=" + std::to_string(block) + " E=" +
                            std::to_string(touched),
      bytes, t);
  for (void* p : {static_cast<void*>(tiles), static_cast<void*>(scales), static_cast<void*>(a),
                  static_cast<void*>(dsorted), static_cast<void*>(deids), static_cast<void*>(drows),
                  static_cast<void*>(y)})
    CHECK_CUDA(cudaFree(p));
}

void bench_mla(int64_t batch, int64_t heads, int64_t len) {
  const int64_t kv_lora = 512, rope = 64, width = kv_lora + rope;
  const int64_t max_pages = (len + 63) / 64, pages = batch * max_pages;
  std::vector<int32_t> table(pages);
  for (int64_t i = 0; i < pages; ++i) table[i] = static_cast<int32_t>((i * 7919) % pages);
  auto* cache = upload(random_bf16(static_cast<size_t>(pages * 64 * width), 4));
  auto* dt = upload(table);
  auto* dl = upload(std::vector<int32_t>(batch, static_cast<int32_t>(len)));
  auto* ql = upload(std::vector<float>(batch * heads * kv_lora, 0.01f));
  auto* qr = upload(std::vector<float>(batch * heads * rope, 0.01f));
  auto* out = alloc<float>(static_cast<size_t>(batch * heads * kv_lora));
  kc::mla_decode_args a;
  a.q_latent = ql;
  a.q_rope = qr;
  a.cache = cache;
  a.block_table = dt;
  a.seq_lens = dl;
  a.batch = batch;
  a.heads = heads;
  a.max_pages = max_pages;
  a.scale = 0.1f;
  a.out = out;
  CHECK_OK(kc::launch_mla_decode(a, nullptr));
  require_finite(out, static_cast<size_t>(batch * heads * kv_lora), "mla_decode");
  const timing t = time_it([&] { CHECK_OK(kc::launch_mla_decode(a, nullptr)); });
  const double bytes = batch * len * width * 2.0 + batch * heads * (kv_lora * 8.0 + rope * 4.0);
  row("mla_decode", "B=" + std::to_string(batch) + " H=" + std::to_string(heads) + " len=" +
                        std::to_string(len),
      bytes, t);
  for (void* p : {static_cast<void*>(cache), static_cast<void*>(dt), static_cast<void*>(dl),
                  static_cast<void*>(ql), static_cast<void*>(qr), static_cast<void*>(out)})
    CHECK_CUDA(cudaFree(p));
}

void bench_mat_vec(uint32_t type, int64_t rows, int64_t n) {
  const int64_t bb = type == 8 ? 34 : 20, row_bytes = n / 32 * bb;
  // Zeroed weight blocks: finite scales, the timing does not depend on the values.
  auto* w = alloc<uint8_t>(static_cast<size_t>(rows * row_bytes));
  CHECK_CUDA(cudaMemset(w, 0, static_cast<size_t>(rows * row_bytes)));
  auto* x = upload(std::vector<float>(n, 0.5f));
  auto* y = alloc<float>(static_cast<size_t>(rows));
  CHECK_OK(kc::launch_ggml_mat_vec(type, w, rows, n, row_bytes, x, n, 1, y, rows, nullptr));
  require_finite(y, static_cast<size_t>(rows), "ggml_mat_vec");
  const timing t = time_it([&] {
    CHECK_OK(kc::launch_ggml_mat_vec(type, w, rows, n, row_bytes, x, n, 1, y, rows, nullptr));
  });
  row(type == 8 ? "mat_vec q8_0" : "mat_vec q4_1",
      std::to_string(rows) + " x " + std::to_string(n), rows * row_bytes + n * 4.0 + rows * 4.0, t);
  for (void* p : {static_cast<void*>(w), static_cast<void*>(x), static_cast<void*>(y)})
    CHECK_CUDA(cudaFree(p));
}

void bench_rms_norm(int64_t rows, int64_t n) {
  auto* x = upload(std::vector<float>(rows * n, 0.25f));
  auto* w = upload(std::vector<float>(n, 1.0f));
  auto* y = alloc<float>(static_cast<size_t>(rows * n));
  CHECK_OK(kc::launch_rms_norm(x, n, w, y, n, rows, n, 1e-6f, nullptr));
  require_finite(y, static_cast<size_t>(rows * n), "rms_norm");
  const timing t = time_it([&] { CHECK_OK(kc::launch_rms_norm(x, n, w, y, n, rows, n, 1e-6f, nullptr)); });
  row("rms_norm", std::to_string(rows) + " x " + std::to_string(n), rows * n * 8.0 + n * 4.0, t);
  for (void* p : {static_cast<void*>(x), static_cast<void*>(w), static_cast<void*>(y)})
    CHECK_CUDA(cudaFree(p));
}

void bench_dense(int64_t m, int64_t n, int64_t k) {
  cublasLtHandle_t h = nullptr;
  if (cublasLtCreate(&h) != CUBLAS_STATUS_SUCCESS) std::exit(1);
  auto* a = upload(random_bf16(static_cast<size_t>(m * k), 5));
  auto* w = upload(random_bf16(static_cast<size_t>(n * k), 6));
  auto* y = alloc<float>(static_cast<size_t>(m * n));
  const size_t ws_bytes = size_t{32} << 20;
  auto* ws = alloc<uint8_t>(ws_bytes);
  CHECK_OK(kc::launch_dense_bf16_gemm(h, a, k, w, k, y, n, m, n, k, ws, ws_bytes, nullptr));
  require_finite(y, static_cast<size_t>(m * n), "dense_bf16_gemm");
  const timing t = time_it([&] {
    CHECK_OK(kc::launch_dense_bf16_gemm(h, a, k, w, k, y, n, m, n, k, ws, ws_bytes, nullptr));
  });
  row("dense_bf16_gemm", "M=" + std::to_string(m) + " N=" + std::to_string(n) + " K=" +
                             std::to_string(k),
      n * k * 2.0 + m * k * 2.0 + m * n * 4.0, t);
  cublasLtDestroy(h);
  for (void* p : {static_cast<void*>(a), static_cast<void*>(w), static_cast<void*>(y),
                  static_cast<void*>(ws)})
    CHECK_CUDA(cudaFree(p));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) quick = quick || std::strcmp(argv[i], "--quick") == 0;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d), %s\n", prop.name, prop.major, prop.minor,
              quick ? "quick shapes" : "Kimi K2 decode shapes");
  std::printf("| %-22s | %-34s | %10s | %8s | %9s | %7s |\n", "kernel", "shape", "median us",
              "spread", "GB/s", "of copy");
  std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(24, '-').c_str(), std::string(36, '-').c_str(),
              std::string(12, '-').c_str(), std::string(10, '-').c_str(),
              std::string(11, '-').c_str(), std::string(9, '-').c_str());
  bench_copy();
  if (quick) {
    bench_moe(2, 256, 512, 16);
    bench_mla(2, 4, 200);
    bench_mat_vec(8, 256, 1024);
    bench_mat_vec(3, 256, 1024);
    bench_rms_norm(4, 7168);
    bench_dense(4, 256, 512);
  } else {
    for (int64_t t : {1, 8, 64}) bench_moe(t, 4096, 7168, 16);  // gate+up fused, N = 2·2048
    bench_moe(8, 7168, 2048, 16);                                 // down
    bench_mla(1, 64, 4096);
    bench_mla(16, 64, 4096);
    bench_mat_vec(8, 4096, 4096);
    bench_mat_vec(3, 4096, 4096);
    bench_rms_norm(64, 7168);
    bench_dense(1, 7168, 7168);
    bench_dense(64, 7168, 7168);
  }
  return 0;
}
