// Seeded token sampling (see troupe/llama/sampler.hpp).

#include "troupe/llama/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

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
  return (params_.repeat_penalty != 1.0f && !history_.empty()) || !counts_.empty() ||
         !params_.logit_bias.empty();
}

double sampler::next_uniform() {
  return static_cast<double>(splitmix64(state_) >> 11) * 0x1.0p-53;
}

std::span<const float> sampler::penalised(std::span<const float> logits) const {
  if (!penalises()) return logits;
  scratch_.assign(logits.begin(), logits.end());
  auto in_vocab = [&](int32_t t) { return t >= 0 && static_cast<size_t>(t) < scratch_.size(); };
  for (const auto& [t, bias] : params_.logit_bias)
    if (in_vocab(t)) scratch_[static_cast<size_t>(t)] += bias;
  if (params_.repeat_penalty != 1.0f && !history_.empty()) {
    std::vector<int32_t> seen(history_.begin(), history_.end());  // once per distinct token
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen) {
      if (!in_vocab(t)) continue;
      float& l = scratch_[static_cast<size_t>(t)];
      l = l > 0 ? l / params_.repeat_penalty : l * params_.repeat_penalty;
    }
  }
  for (const auto& [t, n] : counts_) {
    if (!in_vocab(t)) continue;
    scratch_[static_cast<size_t>(t)] -=
      static_cast<float>(n) * params_.frequency_penalty + params_.presence_penalty;
  }
  return scratch_;
}

namespace {

/// The first index of the largest value (std::max_element's answer for logits, which are finite
/// or -inf): the value from eight independent running maxima, then its first position.
int32_t arg_max(std::span<const float> l) {
  const size_t n = l.size();
  if (n < 64) return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
  float m[8];
  for (size_t j = 0; j < 8; ++j) m[j] = l[j];
  size_t i = 8;
  for (; i + 8 <= n; i += 8)
    for (size_t j = 0; j < 8; ++j) m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
  float mx = m[0];
  for (size_t j = 1; j < 8; ++j) mx = m[j] > mx ? m[j] : mx;
  for (; i < n; ++i) mx = l[i] > mx ? l[i] : mx;
  for (i = 0; i < n; ++i)
    if (l[i] == mx) return static_cast<int32_t>(i);
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());  // NaNs
}

bool by_logit(const std::pair<int32_t, float>& a, const std::pair<int32_t, float>& b) {
  return a.second > b.second || (a.second == b.second && a.first < b.first);
}

}  // namespace

std::vector<std::pair<int32_t, float>> sampler::candidates(std::span<const float> logits) const {
  const auto l = penalised(logits);
  std::vector<std::pair<int32_t, float>> c;  // (id, logit) then (id, probability)
  if (l.empty()) return c;
  c.reserve(l.size());
  for (size_t i = 0; i < l.size(); ++i) c.emplace_back(static_cast<int32_t>(i), l[i]);
  const float mx = l[static_cast<size_t>(arg_max(l))];
  // c's leading entries in by_logit order; the rest in any order.
  bool sorted = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < c.size()) {
    const auto k = static_cast<ptrdiff_t>(params_.top_k);
    std::partial_sort(c.begin(), c.begin() + k, c.end(), by_logit);
    c.resize(static_cast<size_t>(k));
    sorted = true;
  }
  if (params_.top_p < 1.0f) {
    // The smallest most-likely set whose probability reaches top_p: sort a prefix, and a longer
    // one (x8) only when that prefix does not reach it.
    double sum = 0;
    for (const auto& e : c) sum += std::exp(static_cast<double>(e.second) - mx);
    size_t n = sorted ? c.size() : std::min<size_t>(c.size(), 64);
    size_t done = 0;  // c[0, done) holds the most likely tokens, in order
    size_t keep = 0;
    double cum = 0;
    for (;;) {
      if (!sorted) {  // The next most likely n - done tokens, in order.
        const auto first = c.begin() + static_cast<ptrdiff_t>(done);
        const auto last = c.begin() + static_cast<ptrdiff_t>(n);
        if ((n - done) * 64 <= c.size()) {  // a few: one comparison for most of the rest
          std::partial_sort(first, last, c.end(), by_logit);
        } else {
          if (last != c.end()) std::nth_element(first, last, c.end(), by_logit);
          std::sort(first, last, by_logit);
        }
      }
      for (size_t i = done; i < n && keep == 0; ++i) {
        cum += std::exp(static_cast<double>(c[i].second) - mx) / sum;
        if (cum >= params_.top_p) keep = i + 1;
      }
      if (keep > 0 || n == c.size()) break;
      // Grow x8, or to twice what the mass so far says the nucleus needs (a flat distribution
      // goes to a full sort at once); a quarter of the vocabulary or more: all of it.
      const double want = cum > 0 ? 2.0 * static_cast<double>(n) * params_.top_p / cum
                                  : static_cast<double>(c.size());
      const size_t next =
        std::max(n * 8, static_cast<size_t>(std::min(want, static_cast<double>(c.size()))));
      done = n;
      n = next >= c.size() / 4 ? c.size() : next;
    }
    c.resize(keep > 0 ? keep : c.size());
    sorted = true;
  }
  if (params_.min_p > 0.0f) {
    // Relative to the most likely token: p / p_max = exp(logit - max).
    auto dropped = [&](const std::pair<int32_t, float>& e) {
      return std::exp(static_cast<double>(e.second) - mx) < params_.min_p;
    };
    if (sorted) {
      size_t keep = 1;
      while (keep < c.size() && !dropped(c[keep])) ++keep;
      c.resize(keep);
    } else {
      std::erase_if(c, dropped);  // never the maximum: exp(0) = 1 >= min_p
    }
  }
  if (!sorted) std::sort(c.begin(), c.end(), by_logit);
  const float t = params_.temperature > 0.0f ? params_.temperature : 1.0f;
  std::vector<double> p(c.size());
  double sum = 0;
  for (size_t i = 0; i < c.size(); ++i) sum += p[i] = std::exp((c[i].second - c.front().second) / t);
  for (size_t i = 0; i < c.size(); ++i) c[i].second = static_cast<float>(p[i] / sum);
  return c;
}

int32_t sampler::sample(std::span<const float> logits) {
  if (logits.empty()) return -1;
  if (params_.temperature <= 0.0f) return arg_max(penalised(logits));
  const bool filtered = (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < logits.size()) ||
                        params_.top_p < 1.0f || params_.min_p > 0.0f;
  if (!filtered) {
    // The whole distribution, drawn in token order: no sort needed.
    const auto l = penalised(logits);
    const float mx = l[static_cast<size_t>(arg_max(l))];
    const double t = params_.temperature;
    double sum = 0;
    for (float x : l) sum += std::exp((static_cast<double>(x) - mx) / t);
    const double u = next_uniform() * sum;
    double cum = 0;
    for (size_t i = 0; i < l.size(); ++i) {
      cum += std::exp((static_cast<double>(l[i]) - mx) / t);
      if (u < cum) return static_cast<int32_t>(i);
    }
    return arg_max(l);
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
