#pragma once
/// The whole DeepSeek-V3 decode step on one GPU (DeepSeek-V3, Kimi K2 / K2.5, Moonlight): every
/// weight resident on the device (INT4 routed experts repacked for the W4A16 grouped GEMM, bf16
/// everything else), a paged latent cache (bf16, 64 positions a page: latent_page_table.hpp), and
/// per step: embedding, per layer RMSNorm, q (q_lora or direct) and kv_a GEMMs (cuBLASLt), the
/// latent norm, YaRN/plain rope on adjacent pairs, the latent cache write, absorbed MLA decode
/// (W_UK folded into the queries, W_UV after attention), o_proj, the dense MLP of the first
/// layers or the router (fp32), top-k (sigmoid + bias), moe_align, the gate/up and down grouped
/// GEMMs with the routing weights, shared experts and the combine; final norm, lm_head, argmax.
///
/// Steps run for fixed batch sizes (graph_buckets): a step of b sequences runs in the smallest
/// bucket B >= b; its inputs (tokens, positions, lengths, cache slots, block table, live count)
/// are copied into fixed device buffers, then the bucket's CUDA graph, captured on first use
/// (cudaStreamBeginCapture ... cudaGraphInstantiate), is replayed (or, with graphs off, the same
/// launches are issued directly). Padding rows compute on token 0 but write only the scratch page,
/// route to no expert and are never returned.
///
/// Prefill runs as successive decode steps (one position per sequence per step, the absorbed
/// form throughout): correct, not fast; the decode step is what this class is for.
///
/// Numerics: activations fp32 between ops, rounded to bf16 at the input of every GEMM (cuBLASLt
/// and the grouped GEMM read bf16) and in the latent cache; the CPU decoder keeps fp32 throughout,
/// so logits agree within a relative ~1e-2 (tests/gpu/test_cuda_decoder.cpp states the bound).
///
/// Kernels per MoE layer (a graph node each): residual + norm, q (or q_a, norm, q_b), kv_a, the
/// latent's norm + rope + cache write, absorbed queries + q rope, MLA decode (split over the pages
/// for small buckets, + merge), W_UV, o, residual + norm, router, top-k, padding mask, moe_align,
/// expert gate/up, SiLU, expert down, shared gate/up, SiLU, shared down: about 20.
///
/// Only where troupe was built with CUDA (library troupe_cuda_decoder). Not thread-safe: one
/// caller at a time (gpu::decoder_actor serves one through messages). UNVERIFIED on a GPU until
/// tests/gpu/test_cuda_decoder.cpp has run on one.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/deepseek/model.hpp"

namespace troupe::gpu {

class cuda_decoder {
 public:
  struct options {
    int device = 0;
    std::vector<int64_t> buckets{1, 2, 4, 8, 16, 32, 64};  ///< batch sizes captured as graphs
    int64_t max_context = 4096;  ///< most positions of one sequence (block-table row width)
    int64_t cache_pages = 0;     ///< latent-cache pages incl. the scratch page; 0: enough for every
                                 ///< row of the largest bucket at max_context
    bool graphs = true;          ///< false: issue the step's launches directly (same results)
    int64_t block = 16;          ///< grouped GEMM rows per block: 16, 32 or 64
    /// Buckets with fewer (row, head) pairs than two waves of CTAs split their attention over
    /// the cache pages (flash-decoding); false: one CTA per pair always.
    bool split_attention = true;
    /// Larger buckets: all heads of a row share each read of the cache (launch_mla_decode_heads,
    /// up to 32 heads); false: one CTA per (row, head).
    bool shared_read_attention = true;
    /// Routed experts through launch_moe_w4a16_gemv (8 warps split K, only real rows computed:
    /// meant for decode steps) when block is 16; false: launch_moe_w4a16_gemm.
    bool moe_gemv = true;
  };

  /// Uploads `m` to the device. Throws troupe::error: unsupported (no CUDA device; routed
  /// experts not INT4 group 32 with bf16 scales, or a dense weight not bf16/f16/f32, naming the
  /// tensor; softmax scoring), budget_exceeded (weights + cache + buffers above the device's
  /// free memory, with the sizes), model_failed (a CUDA call, naming it).
  cuda_decoder(std::shared_ptr<const deepseek::model> m, options opts);
  /// A model of config `c` with random weights made on the device (bf16 uniform, INT4 experts
  /// with random nibbles and scales, unit norms, zero router bias) and a randomly filled cache:
  /// for benchmarks only; nothing is read from a file. `c` must have INT4-shaped experts
  /// (hidden and moe_intermediate multiples of 32) and sigmoid scoring.
  cuda_decoder(const deepseek::config& c, uint64_t seed, options opts);
  ~cuda_decoder();
  cuda_decoder(const cuda_decoder&) = delete;
  cuda_decoder& operator=(const cuda_decoder&) = delete;

  const deepseek::config& cfg() const noexcept;
  const options& opts() const noexcept;

  /// As batch_decoder: a sequence with room for `capacity` positions (<= max_context; pages are
  /// taken as positions are written). Throws invalid_argument (capacity <= 0) or budget_exceeded
  /// (capacity > max_context).
  uint32_t open(int64_t capacity);
  void close(uint32_t seq) noexcept;
  /// Back to position 0, keeping its pages. Throws invalid_argument for an unknown sequence.
  void reset(uint32_t seq);
  int64_t position(uint32_t seq) const;
  int64_t capacity(uint32_t seq) const;

  /// batch_decoder::decode's contract (same chunks, same errors, nothing changes on error;
  /// budget_exceeded also when the cache's pages run out), computed as successive decode steps:
  /// step i feeds token i of every chunk that has one. Returns logits [chunks, vocab] of each
  /// chunk's last token, or with all_positions [Σ tokens, vocab] in chunk order; valid until the
  /// next call.
  std::span<const float> decode(std::span<const deepseek::batch_decoder::chunk> chunks,
                                bool all_positions = false);

  /// One decode step: token i to sequence seqs[i] (distinct, open, not full). Returns the greedy
  /// (argmax) token of every row; logits() then holds the step's logits [seqs, vocab] when
  /// want_logits (copying them back costs vocab·4 bytes a row). Errors as decode.
  std::span<const int32_t> step(std::span<const uint32_t> seqs, std::span<const int32_t> tokens,
                                bool want_logits = true);
  std::span<const float> logits() const noexcept;

  /// The last step's routing, fetched from the device on call: ids [moe layers, row_stride,
  /// top_k] of which rows [0, bucket) were written (padding rows' ids are n_routed_experts), the
  /// bucket and the live rows (gpu::experts_touched counts its experts).
  struct routing {
    std::vector<int32_t> ids;
    int64_t bucket = 0, live = 0, top_k = 0, moe_layers = 0;
    int64_t row_stride = 0;  ///< rows per layer in ids (the largest bucket)
  };
  routing last_routing() const;

  /// Device time of the last step's graph replay (or direct launches), in milliseconds (CUDA
  /// events around the launch, inputs copy excluded).
  float last_step_device_ms() const;

  /// step(seqs, tokens, false) run with its launches issued directly (no graph) and a CUDA event
  /// after each: the device time of every kind of launch ("q GEMM", "MLA decode", ...) summed over
  /// the layers, in milliseconds, largest first. Gaps between launches count towards the next one.
  /// For finding where a step's time goes; the step is a real one (positions advance).
  std::vector<std::pair<std::string, double>> profile_step(std::span<const uint32_t> seqs,
                                                           std::span<const int32_t> tokens);

  /// Bytes of device memory the weights take (what upload wrote; excludes cache and buffers).
  int64_t weight_bytes() const noexcept;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// CUDA devices this process sees (0 when none or no driver).
int cuda_device_count() noexcept;

}  // namespace troupe::gpu
