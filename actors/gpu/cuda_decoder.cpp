// The whole decode step on one GPU (contract: include/troupe/gpu/cuda_decoder.hpp).
// UNVERIFIED on a GPU: compiled only where this was written; tests/gpu/test_cuda_decoder.cpp
// checks it against the CPU decoder where a device is present.

#include "troupe/gpu/cuda_decoder.hpp"

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "cpu/quant.hpp"
#include "cuda/decode_step_ops.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"
#include "cuda/ops.hpp"
#include "cuda_check.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/device_memory.hpp"
#include "troupe/gpu/expert_placement.hpp"
#include "troupe/gpu/graph_buckets.hpp"
#include "troupe/gpu/int4_expert_stack.hpp"
#include "troupe/gpu/latent_page_table.hpp"

namespace troupe::gpu {

namespace {

namespace kc = kernels::cuda;
namespace kcpu = kernels::cpu;
using detail::check_cuda;
using detail::device_buffer;

struct layer_buffers {
  bool moe = false;
  device_buffer attn_norm, ffn_norm, q_a_norm, kv_a_norm;  // fp32
  device_buffer q_a, q_b, q, kv_a, o;                      // bf16 [out, in]
  device_buffer w_uk, w_uv;                                // bf16 [H, nope, R], [H, v, R]
  device_buffer gate_up, down;                             // dense MLP: bf16 [2I, hidden], [hidden, I]
  device_buffer router, router_bias;                       // bf16 [E, hidden], fp32 [E]
  device_buffer gu_tiles, gu_scales, dn_tiles, dn_scales;  // routed experts, repacked INT4
  device_buffer shared_gate_up, shared_down;               // bf16 [2S, hidden], [hidden, S]
};

// Host bf16 rows of a dense weight [rows, cols] (the checkpoint's bf16 copied; f16/f32 rounded).
std::vector<uint16_t> bf16_rows(const deepseek::linear_weight& w) {
  using fmt = deepseek::linear_weight::format;
  const auto type = static_cast<kcpu::quant_type>(w.dense_type);
  if (w.fmt != fmt::dense ||
      (type != kcpu::quant_type::bf16 && type != kcpu::quant_type::f16 && type != kcpu::quant_type::f32))
    throw error(errc::unsupported, "gpu::cuda_decoder: " + w.name +
                                       " is not stored as bf16, f16 or f32; the GPU decoder computes "
                                       "dense weights in bf16 (quantised GGUF or FP8 checkpoints are "
                                       "not supported on the GPU)");
  std::vector<uint16_t> out(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    const auto* row = static_cast<const std::byte*>(w.data) + static_cast<size_t>(r) * w.row_stride;
    uint16_t* dst = out.data() + r * w.cols;
    if (type == kcpu::quant_type::bf16) {
      std::memcpy(dst, row, static_cast<size_t>(w.cols) * 2);
    } else if (type == kcpu::quant_type::f16) {
      const auto* h = reinterpret_cast<const uint16_t*>(row);
      for (int64_t c = 0; c < w.cols; ++c) dst[c] = kcpu::fp32_to_bf16(kcpu::fp16_to_fp32(h[c]));
    } else {
      const auto* f = reinterpret_cast<const float*>(row);
      for (int64_t c = 0; c < w.cols; ++c) dst[c] = kcpu::fp32_to_bf16(f[c]);
    }
  }
  return out;
}

std::vector<uint16_t> bf16_of(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = kcpu::fp32_to_bf16(v[i]);
  return out;
}

double yarn_get_mscale(double factor, double mscale) {
  return factor <= 1 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

struct sequence_state {
  int64_t capacity = 0, pos = 0;
};

}  // namespace

struct cuda_decoder::impl {
  deepseek::config c;
  options opts;
  int dev = 0;
  graph_buckets buckets{{1}};
  int64_t Bmax = 1, max_pages = 1, pages = 2, moe_layers = 0, weight_bytes = 0;
  int64_t hidden = 0, H = 0, nope = 0, rope = 0, vdim = 0, qk = 0, R = 0, width = 0, E = 0, k = 0,
          Im = 0, S = 0, Id = 0, V = 0, ql = 0;
  float softmax_scale = 1, amplitude = 1;
  bool fast_mla = true;
  int sms = 1;                           // the device's multiprocessors
  enum class attention_kernel : uint8_t { split, shared_read, fast, plain };
  std::vector<attention_kernel> mla_kernel;  // per bucket index
  std::vector<int64_t> mla_pages_per_split;  // per bucket index (split and shared_read)

  cudaStream_t stream = nullptr;
  cublasLtHandle_t lt = nullptr;
  cudaEvent_t ev0 = nullptr, ev1 = nullptr;
  std::vector<cudaGraphExec_t> graphs;  // per bucket index; null until captured

  // weights
  device_buffer embed, lm_head, final_norm, inv_freq;
  std::vector<layer_buffers> layers;
  // cache and step buffers
  device_buffer cache, workspace, inputs, h, xn, xb, qa, q, kva, q_lat, q_rope, o_lat, attn, proj,
      gu, act_bf, routed, mla_ws, router_logits, ids, route_w, sorted, expert_ids, post_padded, logits,
      next;
  int64_t capacity_max = 0;  // moe_align capacity of the largest bucket
  int32_t* inputs_host = nullptr;  // pinned [input_ints]
  int64_t input_ints = 0;

  latent_page_table table{2, 1};
  std::map<uint32_t, sequence_state> seqs;
  std::vector<float> logits_host;
  std::vector<int32_t> next_host;
  int64_t last_bucket = 0, last_live = 0;
  float last_ms = 0;

  ~impl() {
    cudaSetDevice(dev);
    for (auto g : graphs)
      if (g != nullptr) cudaGraphExecDestroy(g);
    if (inputs_host != nullptr) cudaFreeHost(inputs_host);
    if (ev0 != nullptr) cudaEventDestroy(ev0);
    if (ev1 != nullptr) cudaEventDestroy(ev1);
    for (auto e : prof_events) cudaEventDestroy(e);
    if (lt != nullptr) cublasLtDestroy(lt);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void launch(kc::status s, const char* what) {
    detail::check_launch(s, dev, what);
    mark(what);
  }

  // profile_step: an event after every launch of a direct step, named by the launch.
  bool profiling = false;
  std::vector<cudaEvent_t> prof_events;
  std::vector<const char*> prof_names;
  size_t prof_used = 0;
  void mark(const char* what) {
    if (!profiling) return;
    if (prof_used == prof_events.size()) {
      cudaEvent_t e = nullptr;
      check_cuda(cudaEventCreate(&e), dev, "cudaEventCreate (profile)");
      prof_events.push_back(e);
      prof_names.push_back(nullptr);
    }
    check_cuda(cudaEventRecord(prof_events[prof_used], stream), dev, "cudaEventRecord (profile)");
    prof_names[prof_used++] = what;
  }

  // ---- set-up ----------------------------------------------------------------------------------

  void shape(const deepseek::config& cfg, options o) {
    c = cfg;
    opts = std::move(o);
    dev = opts.device;
    if (c.scoring_func == "softmax")
      throw error(errc::unsupported, "gpu::cuda_decoder: softmax expert scoring (DeepSeek-V2) is "
                                     "not implemented on the GPU; sigmoid (V3, Kimi, Moonlight) is");
    hidden = c.hidden_size;
    H = c.num_attention_heads;
    nope = c.qk_nope_head_dim;
    rope = c.qk_rope_head_dim;
    vdim = c.v_head_dim;
    qk = nope + rope;
    R = c.kv_lora_rank;
    width = R + rope;
    E = c.n_routed_experts;
    k = c.num_experts_per_tok;
    Im = c.moe_intermediate_size;
    S = c.moe_intermediate_size * c.n_shared_experts;
    Id = c.intermediate_size;
    V = c.vocab_size;
    ql = c.q_lora_rank;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.is_moe_layer(l) ? 1 : 0;
    if (moe_layers > 0 && (hidden % 32 != 0 || Im % 32 != 0))
      throw error(errc::unsupported, "gpu::cuda_decoder: hidden_size " + std::to_string(hidden) +
                                         " and moe_intermediate_size " + std::to_string(Im) +
                                         " must be multiples of 32 (INT4 group 32)");
    if (opts.block != 16 && opts.block != 32 && opts.block != 64)
      throw error(errc::invalid_argument, "gpu::cuda_decoder: grouped GEMM block " +
                                              std::to_string(opts.block) + " (16, 32 or 64)");
    buckets = graph_buckets(opts.buckets);
    Bmax = buckets.largest();
    if (opts.max_context < 1)
      throw error(errc::invalid_argument, "gpu::cuda_decoder: max_context " + std::to_string(opts.max_context));
    max_pages = (opts.max_context + latent_page_table::page_size - 1) / latent_page_table::page_size;
    pages = opts.cache_pages > 0 ? opts.cache_pages : Bmax * max_pages + 1;
    table = latent_page_table(pages, max_pages);
    fast_mla = R % 128 == 0 && R <= 1024 && rope <= 128 && rope % 2 == 0;
    softmax_scale = static_cast<float>(c.softmax_scale());
    if (c.yarn && c.yarn->factor > 1) {  // as batch_decoder: HF's cos/sin amplitude
      const auto& y = *c.yarn;
      amplitude = y.mscale != 0 && y.mscale_all_dim != 0
                      ? static_cast<float>(yarn_get_mscale(y.factor, y.mscale) /
                                           yarn_get_mscale(y.factor, y.mscale_all_dim))
                      : static_cast<float>(yarn_get_mscale(y.factor, 1.0));
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
      throw error(errc::unsupported, "gpu::cuda_decoder: no CUDA device is visible");
    if (dev < 0 || dev >= count)
      throw error(errc::invalid_argument, "gpu::cuda_decoder: device " + std::to_string(dev) + " of " +
                                              std::to_string(count) + " visible");
    check_cuda(cudaSetDevice(dev), dev, "cudaSetDevice");
    // Budget before any allocation (device_memory.hpp's plan, one device holding every expert).
    auto plan = plan_device_memory(c, expert_placement(E > 0 ? E : 1, 1), 0, pages, Bmax);
    size_t free_bytes = 0, total_bytes = 0;
    check_cuda(cudaMemGetInfo(&free_bytes, &total_bytes), dev, "cudaMemGetInfo");
    check_fits(plan, static_cast<int64_t>(free_bytes), "the whole model on the GPU");
    check_cuda(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), dev, "cudaStreamCreate");
    if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS)
      throw error(errc::model_failed, "gpu device " + std::to_string(dev) + ": cublasLtCreate failed");
    check_cuda(cudaEventCreate(&ev0), dev, "cudaEventCreate");
    check_cuda(cudaEventCreate(&ev1), dev, "cudaEventCreate");
    graphs.assign(buckets.sizes().size(), nullptr);
    check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), dev, "cudaDeviceGetAttribute");
    // Attention per bucket: with fewer (row, head) pairs than two waves of CTAs, one CTA per pair
    // and split over the pages (flash-decoding) so that the device fills; with more, the heads of
    // a row share each read of the cache (split over the pages for two waves of rows) where the
    // shape allows, else one CTA per pair.
    const auto pages_for = [&](int64_t ctas) {  // pages per split for two waves of `ctas` CTAs
      const int64_t want = (2 * sms + ctas - 1) / ctas;
      return std::max<int64_t>(1, (max_pages + want - 1) / want);
    };
    for (int64_t B : buckets.sizes()) {
      attention_kernel kind = fast_mla ? attention_kernel::fast : attention_kernel::plain;
      int64_t pps = 0;
      if (opts.split_attention && B * H < 2 * sms) {
        pps = pages_for(B * H);
        if (kc::mla_split_count(max_pages, pps) > 1) kind = attention_kernel::split;
      } else if (opts.shared_read_attention && kc::mla_decode_heads_supported(H, R, rope)) {
        kind = attention_kernel::shared_read;
        pps = pages_for(B);
      }
      mla_kernel.push_back(kind);
      mla_pages_per_split.push_back(pps);
    }
  }

  device_buffer alloc(size_t bytes, const char* what, bool weight = false) {
    if (weight) weight_bytes += static_cast<int64_t>(bytes);
    return device_buffer(dev, std::max<size_t>(bytes, 4), what);
  }

  // Every weight buffer, sized from the config (contents written by upload or randomise).
  void allocate_weights() {
    const auto u16 = size_t{2}, f32 = size_t{4};
    auto n = [](int64_t a) { return static_cast<size_t>(a); };
    embed = alloc(n(V * hidden) * u16, "embedding", true);
    lm_head = alloc(n(V * hidden) * u16, "lm_head", true);
    final_norm = alloc(n(hidden) * f32, "final norm", true);
    inv_freq = alloc(n(std::max<int64_t>(rope / 2, 1)) * f32, "rope inverse frequencies");
    layers.resize(static_cast<size_t>(c.num_hidden_layers));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto& L = layers[static_cast<size_t>(l)];
      L.moe = c.is_moe_layer(l);
      L.attn_norm = alloc(n(hidden) * f32, "attn norm", true);
      L.ffn_norm = alloc(n(hidden) * f32, "ffn norm", true);
      L.kv_a_norm = alloc(n(R) * f32, "kv_a norm", true);
      if (ql > 0) {
        L.q_a = alloc(n(ql * hidden) * u16, "q_a", true);
        L.q_a_norm = alloc(n(ql) * f32, "q_a norm", true);
        L.q_b = alloc(n(H * qk * ql) * u16, "q_b", true);
      } else {
        L.q = alloc(n(H * qk * hidden) * u16, "q", true);
      }
      L.kv_a = alloc(n(width * hidden) * u16, "kv_a", true);
      L.o = alloc(n(hidden * H * vdim) * u16, "o", true);
      L.w_uk = alloc(n(H * nope * R) * u16, "w_uk", true);
      L.w_uv = alloc(n(H * vdim * R) * u16, "w_uv", true);
      if (!L.moe) {
        L.gate_up = alloc(n(2 * Id * hidden) * u16, "dense gate/up", true);
        L.down = alloc(n(hidden * Id) * u16, "dense down", true);
        continue;
      }
      L.router = alloc(n(E * hidden) * u16, "router", true);
      L.router_bias = alloc(n(E) * f32, "router bias", true);
      L.gu_tiles = alloc(n(E * kc::int4_tile_words(2 * Im, hidden)) * 4, "expert gate/up tiles", true);
      L.gu_scales = alloc(n(E * kc::int4_tile_scales(2 * Im, hidden)) * u16, "expert gate/up scales", true);
      L.dn_tiles = alloc(n(E * kc::int4_tile_words(hidden, Im)) * 4, "expert down tiles", true);
      L.dn_scales = alloc(n(E * kc::int4_tile_scales(hidden, Im)) * u16, "expert down scales", true);
      if (S > 0) {
        L.shared_gate_up = alloc(n(2 * S * hidden) * u16, "shared gate/up", true);
        L.shared_down = alloc(n(hidden * S) * u16, "shared down", true);
      }
    }
  }

  void allocate_step_buffers() {
    auto n = [](int64_t a) { return static_cast<size_t>(a); };
    const int64_t B = Bmax, pairs = Bmax * std::max<int64_t>(k, 1);
    cache = alloc(n(c.num_hidden_layers * pages * latent_page_table::page_size * width) * 2, "latent cache");
    workspace = alloc(n(gemm_workspace_bytes), "cuBLASLt workspace");
    input_ints = 5 * B + 1 + B * max_pages;
    inputs = alloc(n(input_ints) * 4, "step inputs");
    check_cuda(cudaMallocHost(reinterpret_cast<void**>(&inputs_host), n(input_ints) * 4), dev, "cudaMallocHost (step inputs)");
    std::memset(inputs_host, 0, n(input_ints) * 4);
    const int64_t bf_width = std::max({hidden, ql, Id, S, Im, H * vdim});
    h = alloc(n(B * hidden) * 4, "residual stream");
    xn = alloc(n(B * hidden) * 4, "normalised rows");
    xb = alloc(n(B * bf_width) * 2, "bf16 GEMM input");
    qa = alloc(n(B * std::max<int64_t>(ql, 1)) * 4, "q_a output");
    q = alloc(n(B * H * qk) * 4, "queries");
    kva = alloc(n(B * width) * 4, "kv_a output");
    q_lat = alloc(n(B * H * R) * 4, "absorbed queries");
    q_rope = alloc(n(B * H * std::max<int64_t>(rope, 1)) * 4, "rope queries");
    o_lat = alloc(n(B * H * R) * 4, "latent attention output");
    attn = alloc(n(B * std::max(H * vdim, ql)) * 2, "attention output (bf16), q_b input");
    proj = alloc(n(B * hidden) * 4, "projection output");
    const int64_t gu_rows_width = std::max({B * 2 * Id, B * 2 * S, pairs * 2 * Im});
    gu = alloc(n(gu_rows_width) * 4, "gate/up output");
    act_bf = alloc(n(gu_rows_width / 2) * 2, "SiLU output (bf16)");
    routed = alloc(n(pairs * hidden) * 4, "routed expert outputs");
    int64_t ws = 1;
    for (size_t i = 0; i < buckets.sizes().size(); ++i)
      if (mla_kernel[i] == attention_kernel::split || mla_kernel[i] == attention_kernel::shared_read)
        ws = std::max(ws, kc::mla_split_workspace_floats(buckets.sizes()[i], H, R, max_pages, mla_pages_per_split[i]));
    mla_ws = alloc(n(ws) * 4, "split attention partials");
    router_logits = alloc(n(B * std::max<int64_t>(E, 1)) * 4, "router logits");
    ids = alloc(n(std::max<int64_t>(moe_layers, 1) * pairs) * 4, "routing ids");
    route_w = alloc(n(pairs) * 4, "routing weights");
    capacity_max = E > 0 ? kc::moe_align_capacity(B, k, E, opts.block) : opts.block;
    sorted = alloc(n(capacity_max) * 4, "sorted pair ids");
    expert_ids = alloc(n(capacity_max / opts.block) * 4, "block experts");
    post_padded = alloc(4, "rows post padding");
    logits = alloc(n(B * V) * 4, "logits");
    next = alloc(n(B) * 4, "greedy tokens");
    next_host.resize(n(B));
  }

  template <class T>
  void put(device_buffer& dst, const std::vector<T>& src, const char* what) {
    if (src.size() * sizeof(T) > dst.bytes())
      throw error(errc::internal, std::string("gpu::cuda_decoder: ") + what + ": " +
                                      std::to_string(src.size() * sizeof(T)) + " bytes for a buffer of " +
                                      std::to_string(dst.bytes()));
    check_cuda(cudaMemcpy(dst.as<void>(), src.data(), src.size() * sizeof(T), cudaMemcpyHostToDevice), dev, what);
  }

  void upload(const deepseek::model& m) {
    put(embed, bf16_rows(m_embed(m)), "embedding upload");
    put(lm_head, bf16_rows(m.lm_head()), "lm_head upload");
    put(final_norm, m.final_norm(), "final norm upload");
    put(inv_freq, c.rope_inv_freq(), "rope inv_freq upload");
    std::vector<uint32_t> tiles;
    std::vector<uint16_t> scales;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const auto& W = m.layer(l);
      auto& L = layers[static_cast<size_t>(l)];
      put(L.attn_norm, W.attn_norm, "attn norm upload");
      put(L.ffn_norm, W.ffn_norm, "ffn norm upload");
      put(L.kv_a_norm, W.kv_a_norm, "kv_a norm upload");
      if (ql > 0) {
        put(L.q_a, bf16_rows(W.q_a), "q_a upload");
        put(L.q_a_norm, W.q_a_norm, "q_a norm upload");
        put(L.q_b, bf16_rows(W.q_b), "q_b upload");
      } else {
        put(L.q, bf16_rows(W.q), "q upload");
      }
      put(L.kv_a, bf16_rows(W.kv_a), "kv_a upload");
      put(L.o, bf16_rows(W.o), "o upload");
      put(L.w_uk, bf16_of(W.w_uk), "w_uk upload");  // exact: the fp32 copies of bf16 kv_b values
      put(L.w_uv, bf16_of(W.w_uv), "w_uv upload");
      auto stack = [](const deepseek::linear_weight& a, const deepseek::linear_weight& b) {
        auto x = bf16_rows(a);
        auto y = bf16_rows(b);
        x.insert(x.end(), y.begin(), y.end());
        return x;
      };
      if (!L.moe) {
        put(L.gate_up, stack(W.dense.gate, W.dense.up), "dense gate/up upload");
        put(L.down, bf16_rows(W.dense.down), "dense down upload");
        continue;
      }
      put(L.router, bf16_of(W.router), "router upload");
      put(L.router_bias, W.router_bias, "router bias upload");
      std::vector<const deepseek::linear_weight*> g, u, d;
      for (const auto& e : W.experts) {
        g.push_back(&e.gate);
        u.push_back(&e.up);
        d.push_back(&e.down);
      }
      repack_int4_experts(g, u, 2 * Im, hidden, tiles, scales);
      put(L.gu_tiles, tiles, "expert gate/up tiles upload");
      put(L.gu_scales, scales, "expert gate/up scales upload");
      repack_int4_experts(d, {}, hidden, Im, tiles, scales);
      put(L.dn_tiles, tiles, "expert down tiles upload");
      put(L.dn_scales, scales, "expert down scales upload");
      if (S > 0) {
        put(L.shared_gate_up, stack(W.shared.gate, W.shared.up), "shared gate/up upload");
        put(L.shared_down, bf16_rows(W.shared.down), "shared down upload");
      }
    }
  }

  // The embedding table as a linear_weight view: the model keeps it private, so rebuild the rows
  // through model::embed (fp32, exact for a bf16 table).
  deepseek::linear_weight m_embed(const deepseek::model& m) {
    embed_rows.resize(static_cast<size_t>(V * hidden));
    for (int64_t t = 0; t < V; ++t) m.embed(static_cast<int32_t>(t), embed_rows.data() + t * hidden);
    deepseek::linear_weight w;
    w.name = "embed_tokens";
    w.dense_type = static_cast<uint32_t>(kcpu::quant_type::f32);
    w.rows = V;
    w.cols = hidden;
    w.data = embed_rows.data();
    w.row_stride = static_cast<size_t>(hidden) * 4;
    return w;
  }
  std::vector<float> embed_rows;

  void randomise(uint64_t seed) {
    auto bf = [&](device_buffer& b, float scale) {
      launch(kc::launch_fill_random_bf16(b.as<uint16_t>(), static_cast<int64_t>(b.bytes() / 2), seed++, scale,
                                         stream), "random bf16 fill");
    };
    auto ones = [&](device_buffer& b, float v) {
      launch(kc::launch_fill_f32(b.as<float>(), static_cast<int64_t>(b.bytes() / 4), v, stream), "fill");
    };
    auto words = [&](device_buffer& b) {
      launch(kc::launch_fill_random_u32(b.as<uint32_t>(), static_cast<int64_t>(b.bytes() / 4), seed++, stream),
             "random word fill");
    };
    auto inv_sqrt = [](int64_t n) { return 1.0f / std::sqrt(static_cast<float>(n)); };
    bf(embed, 1.0f);
    bf(lm_head, inv_sqrt(hidden));
    ones(final_norm, 1.0f);
    put(inv_freq, c.rope_inv_freq(), "rope inv_freq upload");
    for (auto& L : layers) {
      ones(L.attn_norm, 1.0f);
      ones(L.ffn_norm, 1.0f);
      ones(L.kv_a_norm, 1.0f);
      if (ql > 0) {
        bf(L.q_a, inv_sqrt(hidden));
        ones(L.q_a_norm, 1.0f);
        bf(L.q_b, inv_sqrt(ql));
      } else {
        bf(L.q, inv_sqrt(hidden));
      }
      bf(L.kv_a, inv_sqrt(hidden));
      bf(L.o, inv_sqrt(H * vdim));
      bf(L.w_uk, inv_sqrt(nope));
      bf(L.w_uv, inv_sqrt(R));
      if (!L.moe) {
        bf(L.gate_up, inv_sqrt(hidden));
        bf(L.down, inv_sqrt(Id));
        continue;
      }
      bf(L.router, inv_sqrt(hidden));
      ones(L.router_bias, 0.0f);
      words(L.gu_tiles);
      bf(L.gu_scales, inv_sqrt(hidden) / 8);  // |q - 8| <= 8: weights within ±1/sqrt(k)
      words(L.dn_tiles);
      bf(L.dn_scales, inv_sqrt(Im) / 8);
      if (S > 0) {
        bf(L.shared_gate_up, inv_sqrt(hidden));
        bf(L.shared_down, inv_sqrt(S));
      }
    }
    bf(cache, 1.0f);  // benchmarks may run on positions they never wrote: keep them finite
    check_cuda(cudaStreamSynchronize(stream), dev, "random weights (stream synchronisation)");
  }

  // ---- one step's launches (captured into a graph per bucket, or issued directly) ---------------

  void gemm(const uint16_t* a, int64_t lda, const device_buffer& w, int64_t n, int64_t kk, float* y,
            int64_t ldy, int64_t m, const char* what) {
    launch(kc::launch_dense_bf16_gemm(lt, a, lda, w.as<uint16_t>(), kk, y, ldy, m, n, kk,
                                      workspace.as<void>(), workspace.bytes(), stream), what);
  }

  // Input layout in `inputs`: tokens [B], positions [B], seq_lens [B], slots [B], live [1],
  // block table [B, max_pages] (B = Bmax strides, the first `bucket` rows used).
  const int32_t* in_tokens() const { return inputs.as<int32_t>(); }
  const int32_t* in_positions() const { return inputs.as<int32_t>() + Bmax; }
  const int32_t* in_lens() const { return inputs.as<int32_t>() + 2 * Bmax; }
  const int32_t* in_slots() const { return inputs.as<int32_t>() + 3 * Bmax; }
  const int32_t* in_live() const { return inputs.as<int32_t>() + 4 * Bmax; }
  const int32_t* in_table() const { return inputs.as<int32_t>() + 4 * Bmax + 1; }

  void issue_step(int64_t B, size_t bi) {
    const float eps = static_cast<float>(c.rms_norm_eps);
    constexpr float lora_eps = 1e-6f;  // HF's q_a / kv_a layernorms (no eps argument)
    const int64_t layer_cache = pages * latent_page_table::page_size * width;
    launch(kc::launch_embedding_f32(embed.as<uint16_t>(), V, hidden, in_tokens(), B, h.as<float>(), stream),
           "embedding");
    // Layer 0's attention norm here; every later norm (the next layer's attention norm, the final
    // norm) is fused into the residual add before it.
    launch(kc::launch_rms_norm_bf16(h.as<float>(), hidden, layers[0].attn_norm.as<float>(), nullptr, 0,
                                    xb.as<uint16_t>(), hidden, B, hidden, eps, stream), "attn norm");
    // The residual add of a block, then the norm that follows it into xb (and xn when given).
    auto residual = [&](const float* add, const float* routed_rows, const device_buffer& norm_w, float* y,
                        const char* what) {
      kc::residual_args r;
      r.h = h.as<float>();
      r.add = add;
      r.routed = routed_rows;
      r.top_k = k;
      r.live = in_live();
      r.rows = B;
      r.n = hidden;
      r.norm_w = norm_w.as<float>();
      r.eps = eps;
      r.y = y;
      r.ldy = hidden;
      r.yb = xb.as<uint16_t>();
      r.ldyb = hidden;
      launch(kc::launch_residual(r, stream), what);
    };
    int64_t moe_index = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto& L = layers[static_cast<size_t>(l)];
      const device_buffer& next_norm =
          l + 1 < c.num_hidden_layers ? layers[static_cast<size_t>(l + 1)].attn_norm : final_norm;
      if (ql > 0) {
        gemm(xb.as<uint16_t>(), hidden, L.q_a, ql, hidden, qa.as<float>(), ql, B, "q_a GEMM");
        // kv_a reads xb below: q_b's bf16 input goes to attn (free until the attention output).
        launch(kc::launch_rms_norm_bf16(qa.as<float>(), ql, L.q_a_norm.as<float>(), nullptr, 0,
                                        attn.as<uint16_t>(), ql, B, ql, lora_eps, stream), "q_a norm");
        gemm(attn.as<uint16_t>(), ql, L.q_b, H * qk, ql, q.as<float>(), H * qk, B, "q_b GEMM");
      } else {
        gemm(xb.as<uint16_t>(), hidden, L.q, H * qk, hidden, q.as<float>(), H * qk, B, "q GEMM");
      }
      gemm(xb.as<uint16_t>(), hidden, L.kv_a, width, hidden, kva.as<float>(), width, B, "kv_a GEMM");
      uint16_t* cache_l = cache.as<uint16_t>() + l * layer_cache;
      launch(kc::launch_latent_norm_rope_write(kva.as<float>(), width, B, R, rope, L.kv_a_norm.as<float>(),
                                               lora_eps, in_positions(), inv_freq.as<float>(), amplitude,
                                               in_slots(), cache_l, stream), "latent norm, rope and cache write");
      launch(kc::launch_mla_absorb_q(q.as<float>(), B, H, nope, rope, L.w_uk.as<uint16_t>(), R, q_lat.as<float>(),
                                     q_rope.as<float>(), in_positions(), inv_freq.as<float>(), amplitude, stream),
             "absorbed queries and q_pe rope");
      kc::mla_decode_args a;
      a.q_latent = q_lat.as<float>();
      a.q_rope = q_rope.as<float>();
      a.cache = cache_l;
      a.block_table = in_table();
      a.seq_lens = in_lens();
      a.batch = B;
      a.heads = H;
      a.kv_lora = R;
      a.rope = rope;
      a.max_pages = max_pages;
      a.scale = softmax_scale;
      a.out = o_lat.as<float>();
      const int64_t pps = mla_pages_per_split[bi], ws_floats = static_cast<int64_t>(mla_ws.bytes() / 4);
      switch (mla_kernel[bi]) {
        case attention_kernel::split:
          launch(kc::launch_mla_decode_split(a, pps, mla_ws.as<float>(), ws_floats, stream), "MLA decode");
          break;
        case attention_kernel::shared_read:
          launch(kc::launch_mla_decode_heads(a, pps, mla_ws.as<float>(), ws_floats, stream), "MLA decode");
          break;
        case attention_kernel::fast:
          launch(kc::launch_mla_decode(a, stream), "MLA decode");
          break;
        case attention_kernel::plain:
          launch(kc::launch_mla_decode_plain(a, stream), "MLA decode");
          break;
      }
      launch(kc::launch_mla_unabsorb_v(o_lat.as<float>(), B, H, R, L.w_uv.as<uint16_t>(), vdim,
                                       attn.as<uint16_t>(), H * vdim, stream), "W_UV");
      gemm(attn.as<uint16_t>(), H * vdim, L.o, hidden, H * vdim, proj.as<float>(), hidden, B, "o GEMM");
      residual(proj.as<float>(), nullptr, L.ffn_norm, xn.as<float>(), "attention residual and ffn norm");
      // SwiGLU over a fused [2I, hidden] weight: gate_up rows → silu·up → bf16 → down.
      auto mlp = [&](const device_buffer& w13, const device_buffer& w2, int64_t I, const char* what) {
        gemm(xb.as<uint16_t>(), hidden, w13, 2 * I, hidden, gu.as<float>(), 2 * I, B, what);
        launch(kc::launch_silu_mul_bf16(gu.as<float>(), 2 * I, act_bf.as<uint16_t>(), I, B, I, stream), "silu_mul");
        gemm(act_bf.as<uint16_t>(), I, w2, hidden, I, proj.as<float>(), hidden, B, what);
      };
      if (!L.moe) {
        mlp(L.gate_up, L.down, Id, "dense MLP GEMM");
        residual(proj.as<float>(), nullptr, next_norm, nullptr, "MLP residual and next norm");
        continue;
      }
      int32_t* ids_l = ids.as<int32_t>() + moe_index * Bmax * k;
      ++moe_index;
      launch(kc::launch_gemv_bf16_f32(L.router.as<uint16_t>(), E, hidden, xn.as<float>(), hidden, B,
                                      router_logits.as<float>(), E, stream), "router");
      launch(kc::launch_route_topk(router_logits.as<float>(), L.router_bias.as<float>(), B, E, c.n_group,
                                   c.topk_group, k, c.norm_topk_prob, static_cast<float>(c.routed_scaling_factor),
                                   ids_l, route_w.as<float>(), stream), "route_topk");
      launch(kc::launch_mask_padding_routes(ids_l, B, k, static_cast<int32_t>(E), in_live(), stream),
             "padding routes");
      const int64_t cap = kc::moe_align_capacity(B, k, E, opts.block);
      launch(kc::launch_moe_align_block_size(ids_l, B, k, E, opts.block, nullptr, sorted.as<int32_t>(),
                                             expert_ids.as<int32_t>(), cap, post_padded.as<int32_t>(), stream),
             "moe_align");
      kc::moe_gemm_args g;
      g.a = xb.as<uint16_t>();
      g.lda = hidden;
      g.a_div = k;
      g.tiles = L.gu_tiles.as<uint32_t>();
      g.scales = L.gu_scales.as<uint16_t>();
      g.experts = E;
      g.n = 2 * Im;
      g.k = hidden;
      g.sorted_token_ids = sorted.as<int32_t>();
      g.expert_ids = expert_ids.as<int32_t>();
      g.num_tokens_post_padded = post_padded.as<int32_t>();
      g.capacity = cap;
      g.block = opts.block;
      g.pairs = B * k;
      g.y = gu.as<float>();
      g.ldy = 2 * Im;
      // Decode-sized steps (a block of 16 rows holds few real ones): the GEMV-shaped kernel.
      const bool gemv = opts.moe_gemv && opts.block == 16;
      auto moe = [&](const kc::moe_gemm_args& args) {
        return gemv ? kc::launch_moe_w4a16_gemv(args, stream) : kc::launch_moe_w4a16_gemm(args, stream);
      };
      launch(moe(g), "expert gate/up GEMM");
      launch(kc::launch_silu_mul_bf16(gu.as<float>(), 2 * Im, act_bf.as<uint16_t>(), Im, B * k, Im, stream),
             "expert silu_mul");
      kc::moe_gemm_args d = g;
      d.a = act_bf.as<uint16_t>();
      d.lda = Im;
      d.a_div = 1;
      d.tiles = L.dn_tiles.as<uint32_t>();
      d.scales = L.dn_scales.as<uint16_t>();
      d.n = hidden;
      d.k = Im;
      d.route_weights = route_w.as<float>();
      d.y = routed.as<float>();
      d.ldy = hidden;
      launch(moe(d), "expert down GEMM");
      if (S > 0) {
        mlp(L.shared_gate_up, L.shared_down, S, "shared expert GEMM");
      } else {
        launch(kc::launch_fill_f32(proj.as<float>(), B * hidden, 0.0f, stream), "zero shared output");
      }
      residual(proj.as<float>(), routed.as<float>(), next_norm, nullptr, "MoE combine and next norm");
    }
    gemm(xb.as<uint16_t>(), hidden, lm_head, V, hidden, logits.as<float>(), V, B, "lm_head GEMM");
    launch(kc::launch_argmax(logits.as<float>(), V, B, V, next.as<int32_t>(), stream), "argmax");
  }

  // Runs bucket index bi: inputs are already in inputs_host.
  void run_bucket(size_t bi) {
    const int64_t B = buckets.sizes()[bi];
    check_cuda(cudaMemcpyAsync(inputs.as<void>(), inputs_host, static_cast<size_t>(input_ints) * 4,
                               cudaMemcpyHostToDevice, stream), dev, "step inputs to the device");
    const bool graph = opts.graphs && !profiling;  // a profiled step runs its launches directly
    if (graph && graphs[bi] == nullptr) {
      // First use of the bucket: the same launches once directly (module loading and cuBLASLt's
      // first-call set-up happen outside the capture; the step is deterministic, so the replay
      // below rewrites the same cache values), then the capture.
      issue_step(B, bi);
      cudaGraph_t graph = nullptr;
      check_cuda(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), dev, "cudaStreamBeginCapture");
      try {
        issue_step(B, bi);
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph != nullptr) cudaGraphDestroy(graph);
        throw;
      }
      check_cuda(cudaStreamEndCapture(stream, &graph), dev, "cudaStreamEndCapture");
      const cudaError_t e = cudaGraphInstantiate(&graphs[bi], graph, 0);
      cudaGraphDestroy(graph);
      check_cuda(e, dev, "cudaGraphInstantiate");
    }
    check_cuda(cudaEventRecord(ev0, stream), dev, "cudaEventRecord");
    if (graph) {
      check_cuda(cudaGraphLaunch(graphs[bi], stream), dev, "cudaGraphLaunch");
    } else {
      mark("start");
      issue_step(B, bi);
    }
    check_cuda(cudaEventRecord(ev1, stream), dev, "cudaEventRecord");
  }

  // One step of rows (seq, token) at each sequence's position; reserves pages first.
  void step_rows(std::span<const uint32_t> s, std::span<const int32_t> tokens, bool want_logits) {
    // The decoder's device, whatever the calling thread last selected (shape() set it only on the
    // constructing thread).
    check_cuda(cudaSetDevice(dev), dev, "cudaSetDevice");
    const auto b = static_cast<int64_t>(s.size());
    std::vector<int32_t> positions(s.size());
    std::vector<int64_t> lengths(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      positions[i] = static_cast<int32_t>(seqs.at(s[i]).pos);
      lengths[i] = seqs.at(s[i]).pos + 1;
    }
    table.reserve(s, lengths);
    const auto in = pack_decode_step(buckets, table, s, tokens, positions);
    const int64_t B = in.rows.bucket;
    auto copy = [&](const std::vector<int32_t>& v, int64_t offset) {
      std::copy(v.begin(), v.end(), inputs_host + offset);
    };
    copy(in.rows.tokens, 0);
    copy(in.rows.positions, Bmax);
    copy(in.rows.seq_lens, 2 * Bmax);
    copy(in.slots, 3 * Bmax);
    inputs_host[4 * Bmax] = static_cast<int32_t>(b);
    // Block table rows at stride max_pages: the first B rows are the step's.
    std::copy(in.block_table.begin(), in.block_table.end(), inputs_host + 4 * Bmax + 1);
    run_bucket(buckets.index_for(b));
    check_cuda(cudaMemcpyAsync(next_host.data(), next.as<void>(), static_cast<size_t>(b) * 4,
                               cudaMemcpyDeviceToHost, stream), dev, "greedy tokens to the host");
    if (want_logits) {
      logits_host.resize(static_cast<size_t>(b * V));
      check_cuda(cudaMemcpyAsync(logits_host.data(), logits.as<void>(), static_cast<size_t>(b * V) * 4,
                                 cudaMemcpyDeviceToHost, stream), dev, "logits to the host");
    }
    check_cuda(cudaStreamSynchronize(stream), dev, "decode step (stream synchronisation)");
    check_cuda(cudaEventElapsedTime(&last_ms, ev0, ev1), dev, "cudaEventElapsedTime");
    last_bucket = B;
    last_live = b;
    for (uint32_t q : s) ++seqs.at(q).pos;
  }

  sequence_state& find(uint32_t seq, const char* where) {
    auto it = seqs.find(seq);
    if (it == seqs.end())
      throw error(errc::invalid_argument, std::string("gpu::cuda_decoder::") + where + ": no open sequence " +
                                              std::to_string(seq));
    return it->second;
  }
};

cuda_decoder::cuda_decoder(std::shared_ptr<const deepseek::model> m, options opts) : impl_(std::make_unique<impl>()) {
  if (!m) throw error(errc::invalid_argument, "gpu::cuda_decoder: no model");
  impl_->shape(m->cfg(), std::move(opts));
  for (int64_t l = 0; l < m->cfg().num_hidden_layers; ++l) {  // refuse before allocating
    const auto& L = m->layer(l);
    for (const auto& e : L.experts)
      for (const auto* w : {&e.gate, &e.up, &e.down}) require_int4_group32(*w);
  }
  impl_->allocate_weights();
  impl_->allocate_step_buffers();
  impl_->upload(*m);
}

cuda_decoder::cuda_decoder(const deepseek::config& c, uint64_t seed, options opts)
    : impl_(std::make_unique<impl>()) {
  impl_->shape(c, std::move(opts));
  impl_->allocate_weights();
  impl_->allocate_step_buffers();
  impl_->randomise(seed);
}

cuda_decoder::~cuda_decoder() = default;

const deepseek::config& cuda_decoder::cfg() const noexcept { return impl_->c; }
const cuda_decoder::options& cuda_decoder::opts() const noexcept { return impl_->opts; }
int64_t cuda_decoder::weight_bytes() const noexcept { return impl_->weight_bytes; }
std::span<const float> cuda_decoder::logits() const noexcept { return impl_->logits_host; }
float cuda_decoder::last_step_device_ms() const { return impl_->last_ms; }

uint32_t cuda_decoder::open(int64_t capacity) {
  if (capacity <= 0)
    throw error(errc::invalid_argument, "gpu::cuda_decoder: a sequence needs a capacity > 0, got " +
                                            std::to_string(capacity));
  if (capacity > impl_->opts.max_context)
    throw error(errc::budget_exceeded, "gpu::cuda_decoder: a capacity of " + std::to_string(capacity) +
                                           " positions exceeds max_context " +
                                           std::to_string(impl_->opts.max_context) +
                                           "; build the decoder with a larger max_context");
  const uint32_t id = impl_->table.open();
  impl_->seqs[id] = sequence_state{capacity, 0};
  return id;
}

void cuda_decoder::close(uint32_t seq) noexcept {
  impl_->seqs.erase(seq);
  impl_->table.close(seq);
}

int64_t cuda_decoder::position(uint32_t seq) const { return impl_->find(seq, "position").pos; }
int64_t cuda_decoder::capacity(uint32_t seq) const { return impl_->find(seq, "capacity").capacity; }
void cuda_decoder::reset(uint32_t seq) { impl_->find(seq, "reset").pos = 0; }

std::span<const int32_t> cuda_decoder::step(std::span<const uint32_t> s, std::span<const int32_t> tokens,
                                            bool want_logits) {
  auto& I = *impl_;
  if (s.empty() || s.size() != tokens.size())
    throw error(errc::invalid_argument, "gpu::cuda_decoder::step: " + std::to_string(s.size()) +
                                            " sequences and " + std::to_string(tokens.size()) + " tokens");
  for (size_t i = 0; i < s.size(); ++i) {
    const auto& q = I.find(s[i], "step");
    for (size_t j = 0; j < i; ++j)
      if (s[j] == s[i])
        throw error(errc::invalid_argument, "gpu::cuda_decoder::step: sequence " + std::to_string(s[i]) +
                                                " appears twice in one step");
    if (tokens[i] < 0 || tokens[i] >= I.V)
      throw error(errc::invalid_argument, "gpu::cuda_decoder::step: token " + std::to_string(tokens[i]) +
                                              " is outside the vocabulary of " + std::to_string(I.V));
    if (q.pos + 1 > q.capacity)
      throw error(errc::budget_exceeded, "gpu::cuda_decoder::step: sequence " + std::to_string(s[i]) +
                                             " is full (capacity " + std::to_string(q.capacity) + ")");
  }
  I.step_rows(s, tokens, want_logits);
  return {I.next_host.data(), s.size()};
}

std::span<const float> cuda_decoder::decode(std::span<const deepseek::batch_decoder::chunk> chunks,
                                            bool all_positions) {
  auto& I = *impl_;
  if (chunks.empty()) throw error(errc::invalid_argument, "gpu::cuda_decoder::decode: no chunks");
  std::vector<uint32_t> ids;
  std::vector<int64_t> lengths;
  size_t longest = 0, total = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const auto& ch = chunks[i];
    if (ch.tokens.empty())
      throw error(errc::invalid_argument, "gpu::cuda_decoder::decode: chunk " + std::to_string(i) + " is empty");
    const auto& q = I.find(ch.seq, "decode");
    if (std::find(ids.begin(), ids.end(), ch.seq) != ids.end())
      throw error(errc::invalid_argument, "gpu::cuda_decoder::decode: sequence " + std::to_string(ch.seq) +
                                              " appears twice in one step");
    for (int32_t t : ch.tokens)
      if (t < 0 || t >= I.V)
        throw error(errc::invalid_argument, "gpu::cuda_decoder::decode: token " + std::to_string(t) +
                                                " is outside the vocabulary of " + std::to_string(I.V));
    const auto n = static_cast<int64_t>(ch.tokens.size());
    if (q.pos + n > q.capacity)
      throw error(errc::budget_exceeded,
                  "gpu::cuda_decoder::decode: sequence " + std::to_string(ch.seq) + " holds " +
                      std::to_string(q.pos) + " positions; " + std::to_string(n) +
                      " more exceed its capacity of " + std::to_string(q.capacity));
    ids.push_back(ch.seq);
    lengths.push_back(q.pos + n);
    longest = std::max(longest, ch.tokens.size());
    total += ch.tokens.size();
  }
  I.table.reserve(ids, lengths);  // every page of the call, or budget_exceeded before any step
  std::vector<size_t> first_row(chunks.size());
  for (size_t i = 1; i < chunks.size(); ++i) first_row[i] = first_row[i - 1] + chunks[i - 1].tokens.size();
  const auto V = static_cast<size_t>(I.V);
  std::vector<float> out((all_positions ? total : chunks.size()) * V);
  for (size_t t = 0; t < longest; ++t) {
    std::vector<size_t> live;
    for (size_t i = 0; i < chunks.size(); ++i)
      if (chunks[i].tokens.size() > t) live.push_back(i);
    // More sequences than the largest bucket: several steps at this offset.
    const auto most = static_cast<size_t>(I.Bmax);
    for (size_t g = 0; g < live.size(); g += most) {
      const size_t n = std::min(most, live.size() - g);
      std::vector<uint32_t> s(n);
      std::vector<int32_t> tok(n);
      bool want = all_positions;
      for (size_t j = 0; j < n; ++j) {
        const auto& ch = chunks[live[g + j]];
        s[j] = ch.seq;
        tok[j] = ch.tokens[t];
        want = want || t + 1 == ch.tokens.size();
      }
      I.step_rows(s, tok, want);
      if (!want) continue;
      for (size_t j = 0; j < n; ++j) {
        const size_t ci = live[g + j];
        const float* row = I.logits_host.data() + j * V;
        if (all_positions) {
          std::copy(row, row + V, out.begin() + static_cast<std::ptrdiff_t>((first_row[ci] + t) * V));
        } else if (t + 1 == chunks[ci].tokens.size()) {
          std::copy(row, row + V, out.begin() + static_cast<std::ptrdiff_t>(ci * V));
        }
      }
    }
  }
  I.logits_host = std::move(out);
  return I.logits_host;
}

std::vector<std::pair<std::string, double>> cuda_decoder::profile_step(std::span<const uint32_t> s,
                                                                      std::span<const int32_t> tokens) {
  auto& I = *impl_;
  I.profiling = true;
  I.prof_used = 0;
  try {
    step(s, tokens, false);
  } catch (...) {
    I.profiling = false;
    throw;
  }
  I.profiling = false;
  std::vector<std::pair<std::string, double>> out;
  for (size_t i = 1; i < I.prof_used; ++i) {
    float ms = 0;
    check_cuda(cudaEventElapsedTime(&ms, I.prof_events[i - 1], I.prof_events[i]), I.dev, "cudaEventElapsedTime");
    const std::string name = I.prof_names[i];
    auto it = std::find_if(out.begin(), out.end(), [&](const auto& p) { return p.first == name; });
    if (it == out.end()) out.emplace_back(name, ms);
    else it->second += ms;
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

cuda_decoder::routing cuda_decoder::last_routing() const {
  const auto& I = *impl_;
  check_cuda(cudaSetDevice(I.dev), I.dev, "cudaSetDevice");
  routing r;
  r.bucket = I.last_bucket;
  r.live = I.last_live;
  r.top_k = I.k;
  r.moe_layers = I.moe_layers;
  r.row_stride = I.Bmax;
  r.ids.resize(static_cast<size_t>(I.moe_layers * I.Bmax * I.k));
  check_cuda(cudaMemcpy(r.ids.data(), I.ids.as<void>(), r.ids.size() * 4, cudaMemcpyDeviceToHost), I.dev,
             "routing ids to the host");
  return r;
}

int cuda_device_count() noexcept {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess ? n : 0;
}

}  // namespace troupe::gpu
