#pragma once
/// Next-token selection from logits: logit biases, repetition penalty, frequency and presence
/// penalties, then top-k, top-p, min-p and temperature (llama.cpp's default chain order), then a
/// draw from a seeded generator, or the arg-max when temperature <= 0. Cost per token:
/// O(vocab) for greedy and for temperature alone; the filters sort only the part of the
/// vocabulary they keep (the top k, or a nucleus found by partial sorts of growing prefixes). The same seed, parameters
/// and logits give the same tokens on every platform (the generator and the draw are implemented
/// here, not by the standard library).

#include <cstdint>
#include <deque>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

namespace troupe::llama {

struct sampler_params {
  float temperature = 0.0f;     ///< <= 0: greedy (arg-max, lowest id on ties)
  int32_t top_k = 0;            ///< keep the k most likely; <= 0 keeps all
  float top_p = 1.0f;           ///< keep the smallest set whose probability reaches p; >= 1 off
  float min_p = 0.0f;           ///< drop tokens below min_p · p(most likely); <= 0 off
  float repeat_penalty = 1.0f;  ///< > 1 penalises tokens among the last repeat_last_n
  int32_t repeat_last_n = 64;
  uint64_t seed = 0;
  /// OpenAI's penalties, over the generated tokens (not the prompt): a token generated c times
  /// loses c · frequency_penalty + (c > 0) · presence_penalty from its logit. 0: off.
  float frequency_penalty = 0.0f;
  float presence_penalty = 0.0f;
  /// (token, bias) added to those logits first, before every penalty and filter (llama.cpp's
  /// logit_bias sampler); ids outside the logits are ignored.
  std::vector<std::pair<int32_t, float>> logit_bias = {};
};

class sampler {
 public:
  explicit sampler(sampler_params params = {});

  /// Picks the next token from logits [vocab]. Does not record it: call accept().
  int32_t sample(std::span<const float> logits);
  /// Records a generated token (for every penalty).
  void accept(int32_t token);
  /// Records a prompt token (for the repetition penalty only).
  void accept_prompt(int32_t token);
  /// Clears the history and reseeds.
  void reset();

  const sampler_params& params() const noexcept { return params_; }

  /// The candidates after penalty and filters, with normalised probabilities, sorted by
  /// probability (descending). Exposed for tests and for logprob reporting.
  std::vector<std::pair<int32_t, float>> candidates(std::span<const float> logits) const;

 private:
  double next_uniform();  // [0, 1)
  bool penalises() const;
  /// `logits`, or a copy with the penalties applied (in scratch_) when any applies.
  std::span<const float> penalised(std::span<const float> logits) const;

  sampler_params params_;
  uint64_t state_;
  std::deque<int32_t> history_;                ///< The last repeat_last_n tokens.
  std::unordered_map<int32_t, int32_t> counts_;  ///< Generated tokens: how often each.
  mutable std::vector<float> scratch_;
};

/// A token's log-probability under `logits` (their log-softmax) and the `top` most likely tokens
/// with theirs, most likely first (the lowest id first among equal logits).
struct token_logprobs {
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};
token_logprobs logprobs_of(std::span<const float> logits, int32_t token, int32_t top);

}  // namespace troupe::llama
