// Seeded token sampling (see troupe/llama/sampler.hpp).

#include "troupe/llama/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace troupe::llama {

namespace {

/// splitmix64: a tiny, well-mixed generator with a fully specified output sequence.
uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

sampler::sampler(sampler_params params) : params_(params), state_(params.seed) {}

void sampler::reset() {
  history_.clear();
  counts_.clear();
  state_ = params_.seed;
}

void sampler::accept(int32_t token) {
  if (params_.frequency_penalty != 0.0f || params_.presence_penalty != 0.0f) ++counts_[token];
  accept_prompt(token);
}

void sampler::accept_prompt(int32_t token) {
  if (params_.repeat_last_n <= 0) return;
  history_.push_back(token);
  while (history_.size() > static_cast<size_t>(params_.repeat_last_n)) history_.pop_front();
}

bool sampler::penalises() const {
  return (params_.repeat_penalty != 1.0f && !history_.empty()) || !counts_.empty();
}

double sampler::next_uniform() {
  return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
}

std::vector<std::pair<int32_t, float>> sampler::candidates(std::span<const float> logits) const {
  std::vector<std::pair<int32_t, float>> c;  // (id, logit) then (id, probability)
  c.reserve(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) c.emplace_back(static_cast<int32_t>(i), logits[i]);
  if (params_.repeat_penalty != 1.0f && !history_.empty()) {
    std::unordered_set<int32_t> seen(history_.begin(), history_.end());
    for (int32_t t : seen) {
      if (t < 0 || static_cast<size_t>(t) >= c.size()) continue;
      float& l = c[static_cast<size_t>(t)].second;
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
  }
  for (const auto& [t, n] : counts_) {
    if (t < 0 || static_cast<size_t>(t) >= c.size()) continue;
    c[static_cast<size_t>(t)].second -=
      static_cast<float>(n) * params_.frequency_penalty + params_.presence_penalty;
  }
  auto by_logit = [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  };
  std::sort(c.begin(), c.end(), by_logit);
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < c.size()) c.resize(static_cast<size_t>(params_.top_k));
  auto normalise = [&](float temperature) {
    const float mx = c.front().second;
    std::vector<double> p(c.size());
    double sum = 0;
    for (size_t i = 0; i < c.size(); ++i) sum += p[i] = std::exp((c[i].second - mx) / temperature);
    return std::make_pair(p, sum);
  };
  if (params_.top_p < 1.0f) {
    auto [p, sum] = normalise(1.0f);
    double cum = 0;
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      cum += p[i] / sum;
      if (cum >= params_.top_p) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }
  if (params_.min_p > 0.0f) {
    auto [p, sum] = normalise(1.0f);
    const double threshold = p.front() * params_.min_p;  // p.front() == 1 (the max)
    size_t keep = 1;
    while (keep < c.size() && p[keep] >= threshold) ++keep;
    c.resize(keep);
  }
  const float t = params_.temperature > 0.0f ? params_.temperature : 1.0f;
  auto [p, sum] = normalise(t);
  for (size_t i = 0; i < c.size(); ++i) c[i].second = static_cast<float>(p[i] / sum);
  return c;
}

int32_t sampler::sample(std::span<const float> logits) {
  if (logits.empty()) return -1;
  if (params_.temperature <= 0.0f) {
    if (!penalises()) {
      return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    }
    return candidates(logits).front().first;
  }
  const auto c = candidates(logits);
  const double u = next_uniform();
  double cum = 0;
  for (const auto& [id, prob] : c) {
    cum += prob;
    if (u < cum) return id;
  }
  return c.back().first;
}

token_logprobs logprobs_of(std::span<const float> logits, int32_t token, int32_t top) {
  token_logprobs out;
  if (logits.empty()) return out;
  const float mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  const double lse = mx + std::log(sum);
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(logits[static_cast<size_t>(id)]) - lse);
  };
  if (token >= 0 && static_cast<size_t>(token) < logits.size()) out.logprob = logprob(token);
  const size_t k = std::min(static_cast<size_t>(std::max(top, 0)), logits.size());
  if (k == 0) return out;
  std::vector<int32_t> ids(logits.size());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
  std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(k), ids.end(),
                    [&](int32_t a, int32_t b) {
                      const float la = logits[static_cast<size_t>(a)];
                      const float lb = logits[static_cast<size_t>(b)];
                      return la > lb || (la == lb && a < b);
                    });
  for (size_t i = 0; i < k; ++i) out.top.emplace_back(ids[i], logprob(ids[i]));
  return out;
}

}  // namespace troupe::llama
