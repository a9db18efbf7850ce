#pragma once
/// The routed-expert half of a DeepSeek-V3 MoE layer, cut so that it can run anywhere: the router
/// picks each token's experts, the tokens are grouped by expert (as vLLM's moe_align_block_size
/// does), and an expert_runner computes every expert over its group — on the caller's threads or
/// on expert-shard actors (expert_shards.hpp), each owning a slice of the experts. Every (token,
/// slot) output row is written by exactly one expert, so the result does not depend on how the
/// experts are partitioned: one shard or eight give bit-identical logits. (What else is in the
/// batch can change an expert's token blocking, hence rounding, by ~1e-6 relative.)

#include <cstdint>
#include <span>
#include <vector>

#include "troupe/deepseek/model.hpp"

namespace troupe::deepseek {

/// DeepseekV3TopkRouter for `tokens` rows of router logits [tokens, experts]: scores = sigmoid
/// (softmax when scoring_func is "softmax"); selection on scores + bias, limited to the
/// topk_group best of n_group groups (group score = sum of its two best; experts of other groups
/// count as 0, as HF masks them); weights = the unbiased scores of the chosen experts, normalised
/// when norm_topk_prob (sum + 1e-20), times routed_scaling_factor. ids, weights: [tokens, top_k].
void route(const config& cfg, const float* logits, const float* bias, int64_t tokens, int32_t* ids,
           float* weights);

/// One MoE layer's routed work for a batch. Built by group(); read-only while runners work,
/// except `out`, whose rows each expert writes for its own (token, slot) pairs.
struct expert_batch {
  int64_t layer = 0;
  int64_t tokens = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  const float* x = nullptr;      ///< [tokens, hidden] the layer's normalised input
  std::vector<int32_t> ids;      ///< [tokens, top_k] chosen experts
  std::vector<float> weights;    ///< [tokens, top_k] routing weights
  std::vector<int32_t> offsets;  ///< [experts + 1] start of each expert's pairs in `pairs`
  std::vector<int32_t> pairs;    ///< token·top_k + slot, grouped by expert, ascending within one
  float* out = nullptr;          ///< [tokens·top_k, hidden] unweighted expert outputs
  /// compute_experts rounds each expert's input rows and its SiLU·up output to bf16, as the GPU
  /// grouped GEMMs read them (batch_decoder::options::bf16_activations); false: fp32.
  bool bf16 = false;

  /// Fills offsets/pairs from ids (counting sort by expert).
  void group(int64_t experts);
  /// Experts with at least one token.
  int64_t active_experts() const noexcept;
};

/// Per-worker buffers for compute_experts (gathered inputs, intermediate activations).
struct expert_scratch {
  std::vector<float> in, gate, up, down;
  std::vector<std::byte> act;
};

/// Runs experts [first, last) of batch.layer over their tokens on the calling thread:
/// out[pair] = down(silu(gate·x) ⊙ up·x) for each pair of each expert in range.
void compute_experts(const model& m, const expert_batch& batch, int64_t first, int64_t last,
                     expert_scratch& scratch);

/// Something that computes every expert of a batch (all of batch.layer's experts) and returns
/// when batch.out is complete. Implementations: the decoder's own threads (the default) and
/// expert_shard_group (actors).
class expert_runner {
 public:
  virtual ~expert_runner() = default;
  virtual void run(const expert_batch& batch) = 0;
};

}  // namespace troupe::deepseek
