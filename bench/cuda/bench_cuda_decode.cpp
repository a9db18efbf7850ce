// The whole decode step of a Moonlight-shaped DeepSeek-V3 model on one GPU (gpu::cuda_decoder)
// against its roofline, measured in the same run: for batch 1, 8 and 64 sequences at a context of
// --context positions, the median over --steps CUDA-graph replays of the step time (device time
// between events around the replay, and the wall time of the whole step call: inputs, replay,
// greedy tokens back), the bytes of weights the step reads given its actual routing
// (gpu::weight_bytes_of_step: attention, dense MLP, shared experts, router, lm_head, and every
// routed expert some live token chose, INT4 group 32), and the device's copy bandwidth (cudaMemcpy
// device-to-device of 2 GiB, bytes read + written per second, as
// tools/reference/hf_eager_decode_bench.py measures it). Roofline time = weight bytes / copy
// bandwidth (the read+write figure, the strict one; the HF script divides by half of it).
// Goals (issue 8): >= 80 % of roofline at batch 1, batch-64 tokens/s >= 30x batch 1. (For this
// shape the two conflict: batch 64 touches nearly every expert, 10.54 GB against 3.22 GB at batch
// 1, so at equal fractions of the roofline the ratio is 64 · 3.22 / 10.54 = 19.5x; 30x needs batch
// 1 at under 65 % of batch 64's fraction. The program prints both figures.)
//
// The model: moonshotai/Moonlight-16B-A3B-Instruct's shape (hidden 2048, 27 layers, 16 heads,
// kv_lora 512, nope 128, rope 64, v 128, no q_lora, 64 routed experts top 6 INT4 group 32, 2 shared,
// first layer dense with intermediate 11264, moe_intermediate 1408, vocab 163840), random weights
// made on the device (no file). Results are checked finite before timing.
//
//   bench_cuda_decode [--quick] [--context N] [--steps N] [--batches 1,8,64] [--json OUT]
//                     [--hf-json HF.json]
// --quick: a small shape, context 64, 5 steps (CI smoke run). --hf-json: the output of
// hf_eager_decode_bench.py --json from the same machine; adds HF's step time and our speed-up.
// Exits 77 with "SKIPPED: no CUDA device" on a machine without one. UNVERIFIED on a GPU so far.

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/gpu/cuda_decoder.hpp"
#include "troupe/gpu/decode_roofline.hpp"

namespace {

using troupe::deepseek::config;
using troupe::gpu::cuda_decoder;

#define CHECK_CUDA(x)                                                                           \
  do {                                                                                          \
    const cudaError_t e_ = (x);                                                                 \
    if (e_ != cudaSuccess) {                                                                    \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

config moonlight(bool quick) {
  config c;
  c.model_type = "deepseek_v3";
  c.vocab_size = quick ? 8192 : 163840;
  c.hidden_size = quick ? 512 : 2048;
  c.intermediate_size = quick ? 1536 : 11264;
  c.moe_intermediate_size = quick ? 256 : 1408;
  c.num_hidden_layers = quick ? 4 : 27;
  c.num_attention_heads = c.num_key_value_heads = quick ? 4 : 16;
  c.q_lora_rank = 0;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_routed_experts = quick ? 16 : 64;
  c.n_shared_experts = 2;
  c.num_experts_per_tok = 6;
  c.first_k_dense_replace = 1;
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.446;
  c.rope_theta = 50000;
  c.rms_norm_eps = 1e-5;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.max_position_embeddings = 8192;
  // Routed experts INT4 group 32 (Kimi's compressed-tensors rule), so the memory plan counts them so.
  c.quant.kind = troupe::deepseek::weight_quant::int4_group;
  c.quant.ignore = {"lm_head", "re:.*self_attn.*", "re:.*shared_experts.*",
                    "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"};
  return c;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// cudaMemcpy device-to-device of `bytes`, median of 10: bytes read + written per second.
double copy_bandwidth(size_t bytes) {
  void *src = nullptr, *dst = nullptr;
  CHECK_CUDA(cudaMalloc(&src, bytes));
  CHECK_CUDA(cudaMalloc(&dst, bytes));
  CHECK_CUDA(cudaMemset(src, 1, bytes));
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  CHECK_CUDA(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
  std::vector<double> t;
  for (int i = 0; i < 10; ++i) {
    CHECK_CUDA(cudaEventRecord(a));
    CHECK_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice));
    CHECK_CUDA(cudaEventRecord(b));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms / 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaFree(src);
  cudaFree(dst);
  return 2.0 * static_cast<double>(bytes) / median(t);
}

// HF's step_ms per batch from hf_eager_decode_bench.py --json (its "results" rows).
std::map<int64_t, double> read_hf(const std::string& path) {
  std::map<int64_t, double> out;
  std::ifstream f(path);
  if (!f) {
    std::fprintf(stderr, "bench_cuda_decode: cannot read %s\n", path.c_str());
    return out;
  }
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  for (size_t p = s.find("\"batch\""); p != std::string::npos; p = s.find("\"batch\"", p + 1)) {
    const size_t colon = s.find(':', p), q = s.find("\"step_ms\"", p);
    if (colon == std::string::npos || q == std::string::npos) break;
    out[std::strtoll(s.c_str() + colon + 1, nullptr, 10)] = std::strtod(s.c_str() + s.find(':', q) + 1, nullptr);
  }
  return out;
}

struct row {
  int64_t batch = 0;
  double device_ms = 0, wall_ms = 0, bytes = 0, expected_bytes = 0, experts_per_layer = 0;
  double roofline_ms = 0, fraction = 0, tokens_per_s = 0, hf_ms = 0;
};

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  int64_t context = -1, steps = -1;
  std::string json, hf_json, batches_arg = "1,8,64";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_cuda_decode: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--quick") quick = true;
    else if (a == "--context") context = std::stoll(next());
    else if (a == "--steps") steps = std::stoll(next());
    else if (a == "--batches") batches_arg = next();
    else if (a == "--json") json = next();
    else if (a == "--hf-json") hf_json = next();
    else {
      std::fprintf(stderr, "usage: bench_cuda_decode [--quick] [--context N] [--steps N] [--batches 1,8,64] "
                           "[--json OUT] [--hf-json HF.json]\n");
      return 2;
    }
  }
  if (troupe::gpu::cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  if (context < 0) context = quick ? 64 : 256;
  if (steps < 1) steps = quick ? 5 : 50;
  std::vector<int64_t> batches;
  {
    std::stringstream ss(batches_arg);
    for (std::string t; std::getline(ss, t, ',');) batches.push_back(std::stoll(t));
  }
  const config c = moonlight(quick);
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  const double bandwidth = copy_bandwidth(quick ? (size_t{256} << 20) : (size_t{2} << 30));

  try {
    cuda_decoder::options o;
    o.buckets = {1, 2, 4, 8, 16, 32, 64};
    for (int64_t b : batches)
      if (std::find(o.buckets.begin(), o.buckets.end(), b) == o.buckets.end()) o.buckets.push_back(b);
    o.max_context = context + steps + 64;
    const auto t0 = std::chrono::steady_clock::now();
    cuda_decoder d(c, 1, o);
    const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("bench_cuda_decode: %s shape, %s, copy bandwidth %.0f GB/s (read+write), weights %.2f GB on "
                "the device (random, made in %.1f s), context %lld, %lld timed steps per batch\n",
                quick ? "quick" : "Moonlight", prop.name, bandwidth / 1e9, static_cast<double>(d.weight_bytes()) / 1e9,
                setup_s, static_cast<long long>(context), static_cast<long long>(steps));
    const auto hf = hf_json.empty() ? std::map<int64_t, double>{} : read_hf(hf_json);
    std::mt19937 rng(7);
    std::vector<row> rows;
    for (int64_t B : batches) {
      std::vector<uint32_t> seqs;
      for (int64_t i = 0; i < B; ++i) seqs.push_back(d.open(o.max_context));
      std::vector<int32_t> tok(static_cast<size_t>(B));
      for (auto& t : tok) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size));
      // The context: `context` real decode steps (the first captures the bucket's graph).
      for (int64_t p = 0; p < context; ++p) {
        const auto next = d.step(seqs, tok, p + 1 == context);
        std::copy(next.begin(), next.end(), tok.begin());
      }
      const auto logits = d.logits();
      if (!std::all_of(logits.begin(), logits.end(), [](float v) { return std::isfinite(v); })) {
        std::fprintf(stderr, "bench_cuda_decode: non-finite logits at batch %lld\n", static_cast<long long>(B));
        return 1;
      }
      std::vector<double> device, wall, bytes, touched;
      for (int64_t s = 0; s < steps; ++s) {
        const auto w0 = std::chrono::steady_clock::now();
        const auto next = d.step(seqs, tok, false);
        wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count());
        std::copy(next.begin(), next.end(), tok.begin());
        device.push_back(d.last_step_device_ms());
        const auto r = d.last_routing();
        const auto t = troupe::gpu::experts_touched(r.ids, r.moe_layers, r.row_stride, r.live, r.top_k,
                                                     c.n_routed_experts);
        bytes.push_back(troupe::gpu::weight_bytes_of_step(c, t, true).total());
        double sum = 0;
        for (int64_t x : t) sum += static_cast<double>(x);
        touched.push_back(t.empty() ? 0 : sum / static_cast<double>(t.size()));
      }
      // Where the step's device time goes (one more step, launched directly with an event after
      // each kernel: slower than the graph, but the shares are what matter).
      const auto prof = d.profile_step(seqs, tok);
      double total = 0;
      for (const auto& p : prof) total += p.second;
      std::printf("batch %lld, direct launches %.3f ms:", static_cast<long long>(B), total);
      for (size_t i = 0; i < prof.size() && i < 8; ++i)
        std::printf(" %s %.0f%%%s", prof[i].first.c_str(), 100 * prof[i].second / total, i + 1 < 8 ? "," : "");
      std::printf("\n");
      for (uint32_t s : seqs) d.close(s);
      row r;
      r.batch = B;
      r.device_ms = median(device);
      r.wall_ms = median(wall);
      r.bytes = median(bytes);
      r.expected_bytes = troupe::gpu::expected_weight_bytes(c, B, true).total();
      r.experts_per_layer = median(touched);
      r.roofline_ms = r.bytes / bandwidth * 1e3;
      r.fraction = r.roofline_ms / r.device_ms;
      r.tokens_per_s = static_cast<double>(B) / (r.wall_ms / 1e3);
      if (auto it = hf.find(B); it != hf.end()) r.hf_ms = it->second;
      rows.push_back(r);
    }
    std::printf("\n| batch | device ms | wall ms | tokens/s | experts/layer | weights read | roofline ms | of roofline |%s\n",
                hf.empty() ? "" : " HF eager ms | speed-up |");
    std::printf("|---|---|---|---|---|---|---|---|%s\n", hf.empty() ? "" : "---|---|");
    for (const auto& r : rows) {
      std::printf("| %lld | %.3f | %.3f | %.1f | %.1f | %.3f GB | %.3f | %.1f%% |", static_cast<long long>(r.batch),
                  r.device_ms, r.wall_ms, r.tokens_per_s, r.experts_per_layer, r.bytes / 1e9, r.roofline_ms,
                  100 * r.fraction);
      if (!hf.empty()) {
        if (r.hf_ms > 0) std::printf(" %.2f | %.1fx |", r.hf_ms, r.hf_ms / r.wall_ms);
        else std::printf(" - | - |");
      }
      std::printf("\n");
    }
    const auto find = [&](int64_t b) -> const row* {
      for (const auto& r : rows)
        if (r.batch == b) return &r;
      return nullptr;
    };
    const row *b1 = find(1), *b64 = find(64);
    if (b1 != nullptr)
      std::printf("\nbatch 1: %.1f%% of roofline (goal >= 80%%)\n", 100 * b1->fraction);
    if (b1 != nullptr && b64 != nullptr)
      std::printf("batch 64 / batch 1 tokens/s: %.1fx (goal >= 30x; at equal fractions of the roofline the "
                  "weight bytes allow 64 x %.3f / %.3f GB = %.1fx)\n",
                  b64->tokens_per_s / b1->tokens_per_s, b1->bytes / 1e9, b64->bytes / 1e9,
                  64.0 * b1->bytes / b64->bytes);
    if (!json.empty()) {
      std::ofstream f(json);
      f << "{\"generator\": \"bench/cuda/bench_cuda_decode\", \"shape\": \"" << (quick ? "quick" : "moonlight")
        << "\", \"device_name\": \"" << prop.name << "\", \"copy_bandwidth_bytes_per_s\": " << bandwidth
        << ", \"context\": " << context << ", \"steps\": " << steps << ", \"results\": [";
      for (size_t i = 0; i < rows.size(); ++i) {
        const auto& r = rows[i];
        f << (i ? ", " : "") << "{\"batch\": " << r.batch << ", \"device_ms\": " << r.device_ms
          << ", \"wall_ms\": " << r.wall_ms << ", \"tokens_per_s\": " << r.tokens_per_s
          << ", \"experts_per_layer\": " << r.experts_per_layer << ", \"weight_bytes\": " << r.bytes
          << ", \"expected_weight_bytes\": " << r.expected_bytes << ", \"roofline_ms\": " << r.roofline_ms
          << ", \"fraction_of_roofline\": " << r.fraction;
        if (r.hf_ms > 0) f << ", \"hf_eager_ms\": " << r.hf_ms;
        f << "}";
      }
      f << "]}\n";
    }
  } catch (const troupe::error& e) {
    std::fprintf(stderr, "bench_cuda_decode: %s\n", e.what());
    return 1;
  }
  return 0;
}
