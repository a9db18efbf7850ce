#include "troupe/deepseek/experts.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "cpu/quant.hpp"
#include "cpu/transformer_ops.hpp"
#include "deepseek/linear.hpp"

namespace troupe::deepseek {

namespace {

// Indices of the k largest values (ties: lower index first), in descending order of value.
void top_k(const float* v, int64_t n, int64_t k, int32_t* out, std::vector<int32_t>& idx) {
  idx.resize(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [v](int32_t a, int32_t b) {
    return v[a] > v[b] || (v[a] == v[b] && a < b);
  });
  std::copy(idx.begin(), idx.begin() + k, out);
}

}  // namespace

void route(const config& cfg, const float* logits, const float* bias, int64_t tokens, int32_t* ids,
           float* weights) {
  const int64_t E = cfg.n_routed_experts;
  const int64_t k = cfg.num_experts_per_tok;
  const int64_t groups = std::max<int64_t>(1, cfg.n_group);
  const int64_t per_group = E / groups;
  std::vector<float> scores(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  std::vector<float> group_score(static_cast<size_t>(groups));
  std::vector<int32_t> idx, kept(static_cast<size_t>(std::max<int64_t>(1, cfg.topk_group)));
  for (int64_t t = 0; t < tokens; ++t) {
    const float* l = logits + t * E;
    if (cfg.scoring_func == "softmax") {
      const float mx = *std::max_element(l, l + E);
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += scores[e] = std::exp(l[e] - mx);
      for (int64_t e = 0; e < E; ++e) scores[e] = static_cast<float>(scores[e] / sum);
    } else {
      for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-l[e]));
    }
    for (int64_t e = 0; e < E; ++e) choice[e] = scores[e] + (bias != nullptr ? bias[e] : 0.0f);
    if (groups > 1 && cfg.topk_group < groups) {
      for (int64_t g = 0; g < groups; ++g) {
        const float* c = choice.data() + g * per_group;
        float best = -INFINITY, second = -INFINITY;
        for (int64_t j = 0; j < per_group; ++j) {
          if (c[j] > best) {
            second = best;
            best = c[j];
          } else if (c[j] > second) {
            second = c[j];
          }
        }
        group_score[g] = per_group > 1 ? best + second : best;
      }
      top_k(group_score.data(), groups, cfg.topk_group, kept.data(), idx);
      std::vector<bool> keep(static_cast<size_t>(groups), false);
      for (int64_t i = 0; i < cfg.topk_group; ++i) keep[kept[i]] = true;
      for (int64_t e = 0; e < E; ++e)
        if (!keep[e / per_group]) choice[e] = 0.0f;
    }
    int32_t* id = ids + t * k;
    float* w = weights + t * k;
    top_k(choice.data(), E, k, id, idx);
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) sum += w[j] = scores[id[j]];
    if (cfg.norm_topk_prob) {
      const float denom = sum + 1e-20f;
      for (int64_t j = 0; j < k; ++j) w[j] /= denom;
    }
    for (int64_t j = 0; j < k; ++j) w[j] *= static_cast<float>(cfg.routed_scaling_factor);
  }
}

void expert_batch::group(int64_t experts) {
  offsets.assign(static_cast<size_t>(experts + 1), 0);
  for (int32_t e : ids) ++offsets[static_cast<size_t>(e) + 1];
  for (int64_t e = 0; e < experts; ++e) offsets[e + 1] += offsets[e];
  pairs.resize(ids.size());
  std::vector<int32_t> next(offsets.begin(), offsets.end() - 1);
  for (size_t p = 0; p < ids.size(); ++p) pairs[next[ids[p]]++] = static_cast<int32_t>(p);
}

int64_t expert_batch::active_experts() const noexcept {
  int64_t n = 0;
  for (size_t e = 0; e + 1 < offsets.size(); ++e) n += offsets[e + 1] > offsets[e];
  return n;
}

void compute_experts(const model& m, const expert_batch& b, int64_t first, int64_t last,
                     expert_scratch& s) {
  const auto& L = m.layer(b.layer);
  const int64_t inter = m.cfg().moe_intermediate_size;
  for (int64_t e = first; e < last; ++e) {
    const int32_t begin = b.offsets[e], end = b.offsets[e + 1];
    const int64_t n = end - begin;
    if (n == 0) continue;
    const auto& w = L.experts[static_cast<size_t>(e)];
    s.in.resize(static_cast<size_t>(n * b.hidden));
    for (int64_t i = 0; i < n; ++i) {
      const int64_t token = b.pairs[begin + i] / b.top_k;
      std::copy_n(b.x + token * b.hidden, b.hidden, s.in.data() + i * b.hidden);
    }
    s.gate.resize(static_cast<size_t>(n * inter));
    s.up.resize(static_cast<size_t>(n * inter));
    s.down.resize(static_cast<size_t>(n * b.hidden));
    if (b.bf16)
      for (auto& v : s.in) v = kc::bf16_to_fp32(kc::fp32_to_bf16(v));
    linear_rows(w.gate, 0, inter, s.in.data(), n, s.gate.data(), s.act);
    linear_rows(w.up, 0, inter, s.in.data(), n, s.up.data(), s.act);
    kc::silu_mul(s.gate.data(), s.up.data(), n * inter);
    if (b.bf16)
      for (int64_t i = 0; i < n * inter; ++i)
        s.gate[i] = kc::bf16_to_fp32(kc::fp32_to_bf16(s.gate[i]));
    linear_rows(w.down, 0, b.hidden, s.gate.data(), n, s.down.data(), s.act);
    for (int64_t i = 0; i < n; ++i)
      std::copy_n(s.down.data() + i * b.hidden, b.hidden, b.out + static_cast<int64_t>(b.pairs[begin + i]) * b.hidden);
  }
}

}  // namespace troupe::deepseek
