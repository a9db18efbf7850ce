// The sampler: greedy, each filter's exact effect on a hand-made distribution, the repetition,
// frequency and presence penalties, and seeded reproducibility.
#define BOOST_TEST_MODULE llama_sampler
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "troupe/llama/sampler.hpp"

using troupe::llama::sampler;
using troupe::llama::sampler_params;

namespace {

/// Logits whose softmax is exactly {0.5, 0.25, 0.125, 0.0625, 0.0625}.
std::vector<float> halving() {
  return {std::log(0.5f), std::log(0.25f), std::log(0.125f), std::log(0.0625f), std::log(0.0625f)};
}

std::vector<int32_t> ids(const std::vector<std::pair<int32_t, float>>& c) {
  std::vector<int32_t> out;
  for (const auto& [id, p] : c) out.push_back(id);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(greedy_takes_the_arg_max_and_the_lowest_id_on_ties) {
  sampler s;
  BOOST_TEST(s.sample(halving()) == 0);
  std::vector<float> tie{1.0f, 3.0f, 3.0f};
  BOOST_TEST(s.sample(tie) == 1);
  BOOST_TEST(s.sample(std::vector<float>{}) == -1);
}

BOOST_AUTO_TEST_CASE(without_filters_the_candidates_are_the_softmax) {
  sampler s{sampler_params{.temperature = 1.0f}};
  auto c = s.candidates(halving());
  BOOST_REQUIRE(c.size() == 5u);
  const float expect[] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.0625f};
  for (size_t i = 0; i < 5; ++i) BOOST_TEST(c[i].second == expect[i], boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(ids(c) == (std::vector<int32_t>{0, 1, 2, 3, 4}));
}

BOOST_AUTO_TEST_CASE(top_k_top_p_and_min_p_keep_exactly_what_they_should) {
  {
    sampler s{sampler_params{.temperature = 1.0f, .top_k = 2}};
    auto c = s.candidates(halving());
    BOOST_TEST(ids(c) == (std::vector<int32_t>{0, 1}));
    BOOST_TEST(c[0].second == 2.0f / 3.0f, boost::test_tools::tolerance(1e-6f));
  }
  {
    // Cumulative 0.5, 0.75: the smallest set reaching 0.7 has two tokens.
    sampler s{sampler_params{.temperature = 1.0f, .top_p = 0.7f}};
    BOOST_TEST(ids(s.candidates(halving())) == (std::vector<int32_t>{0, 1}));
  }
  {
    sampler s{sampler_params{.temperature = 1.0f, .top_p = 0.8f}};
    BOOST_TEST(ids(s.candidates(halving())) == (std::vector<int32_t>{0, 1, 2}));
  }
  {
    // Relative to the best: 1, 0.5, 0.25, 0.125: min_p 0.3 keeps two, 0.2 keeps three.
    sampler s{sampler_params{.temperature = 1.0f, .min_p = 0.3f}};
    BOOST_TEST(ids(s.candidates(halving())) == (std::vector<int32_t>{0, 1}));
    sampler s2{sampler_params{.temperature = 1.0f, .min_p = 0.2f}};
    BOOST_TEST(ids(s2.candidates(halving())) == (std::vector<int32_t>{0, 1, 2}));
  }
}

BOOST_AUTO_TEST_CASE(temperature_sharpens_and_flattens) {
  // Temperature 0.5 squares the probabilities before normalising.
  sampler s{sampler_params{.temperature = 0.5f}};
  auto c = s.candidates(halving());
  const double sq[] = {0.25, 0.0625, 0.015625, 0.00390625, 0.00390625};
  double sum = 0;
  for (double v : sq) sum += v;
  for (size_t i = 0; i < 5; ++i)
    BOOST_TEST(c[i].second == static_cast<float>(sq[i] / sum), boost::test_tools::tolerance(1e-5f));
  sampler hot{sampler_params{.temperature = 1000.0f}};
  auto flat = hot.candidates(halving());
  for (const auto& [id, p] : flat) BOOST_TEST(p == 0.2f, boost::test_tools::tolerance(0.01f));
}

BOOST_AUTO_TEST_CASE(the_repetition_penalty_demotes_recent_tokens) {
  std::vector<float> logits{2.0f, 1.5f, 1.2f, -1.0f};
  sampler s{sampler_params{.repeat_penalty = 2.0f}};
  BOOST_TEST(s.sample(logits) == 0);
  s.accept(0);  // 2.0 / 2 = 1.0 < 1.5
  BOOST_TEST(s.sample(logits) == 1);
  s.accept(1);  // 1.5 / 2 = 0.75: now 1.2 beats 1.0 and 0.75
  BOOST_TEST(s.sample(logits) == 2);
  s.reset();
  BOOST_TEST(s.sample(logits) == 0);
  // Negative logits are multiplied, pushing them further down.
  sampler t{sampler_params{.temperature = 1.0f, .repeat_penalty = 2.0f}};
  t.accept(3);
  auto c = t.candidates(logits);
  BOOST_TEST(c.back().first == 3);
  double z = std::exp(2.0) + std::exp(1.5) + std::exp(1.2) + std::exp(-2.0);
  BOOST_TEST(c.back().second == static_cast<float>(std::exp(-2.0) / z),
             boost::test_tools::tolerance(1e-5f));
  // Only the last repeat_last_n tokens count.
  sampler u{sampler_params{.repeat_penalty = 2.0f, .repeat_last_n = 1}};
  u.accept(0);
  u.accept(2);
  BOOST_TEST(u.sample(logits) == 0);
}

BOOST_AUTO_TEST_CASE(the_same_seed_gives_the_same_tokens) {
  auto draw = [](uint64_t seed) {
    sampler s{sampler_params{.temperature = 1.0f, .seed = seed}};
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(halving()));
    return out;
  };
  BOOST_TEST(draw(42) == draw(42));
  BOOST_TEST(draw(42) != draw(43));
  // reset() restarts the sequence.
  sampler s{sampler_params{.temperature = 1.0f, .seed = 9}};
  std::vector<int32_t> first, second;
  for (int i = 0; i < 50; ++i) first.push_back(s.sample(halving()));
  s.reset();
  for (int i = 0; i < 50; ++i) second.push_back(s.sample(halving()));
  BOOST_TEST(first == second);
}

BOOST_AUTO_TEST_CASE(draws_follow_the_distribution) {
  sampler s{sampler_params{.temperature = 1.0f, .seed = 1}};
  std::map<int32_t, int> counts;
  constexpr int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(halving())];
  const double expect[] = {0.5, 0.25, 0.125, 0.0625, 0.0625};
  for (int32_t id = 0; id < 5; ++id)
    BOOST_TEST(static_cast<double>(counts[id]) / n == expect[id], boost::test_tools::tolerance(0.1));
  // With top_k = 1 every draw is the best token, whatever the seed.
  sampler k1{sampler_params{.temperature = 1.0f, .top_k = 1, .seed = 5}};
  for (int i = 0; i < 100; ++i) BOOST_TEST(k1.sample(halving()) == 0);
}

BOOST_AUTO_TEST_CASE(frequency_and_presence_penalties_count_generated_tokens_only) {
  std::vector<float> logits{2.0f, 1.5f, 1.2f, -1.0f};
  // OpenAI's formula: logit − c · frequency − (c > 0) · presence.
  sampler s{sampler_params{.temperature = 1.0f, .frequency_penalty = 0.25f,
                           .presence_penalty = 0.5f}};
  for (int i = 0; i < 50; ++i) s.accept_prompt(0);  // prompt tokens do not count
  sampler greedy{sampler_params{.frequency_penalty = 0.25f, .presence_penalty = 0.5f}};
  for (int i = 0; i < 50; ++i) greedy.accept_prompt(0);
  BOOST_TEST(greedy.sample(logits) == 0);
  greedy.accept(0);  // 2.0 − 0.25 − 0.5 = 1.25 < 1.5
  BOOST_TEST(greedy.sample(logits) == 1);
  greedy.accept(1);  // 1.5 − 0.75 = 0.75: 1.25 leads again
  BOOST_TEST(greedy.sample(logits) == 0);
  greedy.accept(0);  // 2.0 − 0.5 − 0.5 = 1.0 < 1.2
  BOOST_TEST(greedy.sample(logits) == 2);

  s.accept(0);
  s.accept(0);
  s.accept(3);
  const double l[] = {2.0 - 0.5 - 0.5, 1.5, 1.2, -1.0 - 0.25 - 0.5};
  double z = 0;
  for (double v : l) z += std::exp(v);
  std::map<int32_t, float> p;
  for (const auto& [id, prob] : s.candidates(logits)) p[id] = prob;
  for (int32_t t = 0; t < 4; ++t)
    BOOST_TEST(p[t] == static_cast<float>(std::exp(l[t]) / z), boost::test_tools::tolerance(1e-5f));
  // A negative penalty favours what was said (OpenAI allows down to −2).
  sampler echo{sampler_params{.presence_penalty = -1.0f}};
  echo.accept(2);
  BOOST_TEST(echo.sample(logits) == 2);
  echo.reset();
  BOOST_TEST(echo.sample(logits) == 0);
}

BOOST_AUTO_TEST_CASE(logprobs_are_the_log_softmax_and_the_top_tokens_come_first) {
  const auto lp = troupe::llama::logprobs_of(halving(), 2, 3);
  BOOST_TEST(lp.logprob == std::log(0.125f), boost::test_tools::tolerance(1e-6f));
  BOOST_REQUIRE(lp.top.size() == 3u);
  const float expect[] = {0.5f, 0.25f, 0.125f};
  for (int32_t i = 0; i < 3; ++i) {
    BOOST_TEST(lp.top[static_cast<size_t>(i)].first == i);
    BOOST_TEST(lp.top[static_cast<size_t>(i)].second == std::log(expect[i]),
               boost::test_tools::tolerance(1e-6f));
  }
  // Equal logits: the lower id first; more than the vocabulary: all of it; large logits stay
  // finite (computed around the maximum).
  std::vector<float> big{1000.0f, 1000.0f, 0.0f};
  const auto b = troupe::llama::logprobs_of(big, 1, 10);
  BOOST_TEST(b.logprob == std::log(0.5f), boost::test_tools::tolerance(1e-6f));
  BOOST_REQUIRE(b.top.size() == 3u);
  BOOST_TEST(b.top[0].first == 0);
  BOOST_TEST(b.top[1].first == 1);
  BOOST_TEST(std::isfinite(b.top[2].second));
  BOOST_TEST(b.top[2].second < -999.0f);
  BOOST_TEST(troupe::llama::logprobs_of(big, 0, 0).top.empty());
}

namespace {

/// The filters as plainly as they can be written: a full sort, then each cut in turn.
std::vector<int32_t> reference_kept(std::vector<float> l, const sampler_params& p) {
  std::vector<std::pair<int32_t, float>> c;
  for (size_t i = 0; i < l.size(); ++i) c.emplace_back(static_cast<int32_t>(i), l[i]);
  std::sort(c.begin(), c.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < c.size())
    c.resize(static_cast<size_t>(p.top_k));
  const double mx = c.front().second;
  if (p.top_p < 1.0f) {
    double sum = 0, cum = 0;
    for (const auto& e : c) sum += std::exp(e.second - mx);
    size_t keep = c.size();
    for (size_t i = 0; i < c.size(); ++i) {
      cum += std::exp(c[i].second - mx) / sum;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
    c.resize(keep);
  }
  if (p.min_p > 0.0f)
    std::erase_if(c, [&](const auto& e) { return std::exp(e.second - mx) < p.min_p; });
  return ids(c);
}

}  // namespace

BOOST_AUTO_TEST_CASE(filters_over_a_full_vocabulary_keep_what_a_full_sort_keeps) {
  // 49,152 logits: peaked (a nucleus of a few tokens) and flat (a nucleus of thousands, found
  // over several partial sorts), with repeated values so that ties are ordered by id.
  std::mt19937 gen(11);
  std::normal_distribution<float> body(0.0f, 2.0f);
  std::vector<float> peaked(49152), flat(49152);
  for (auto& x : peaked) x = std::round(body(gen) * 8.0f) / 8.0f;
  for (auto& x : flat) x = std::round(body(gen) * 64.0f) / 256.0f;
  std::uniform_int_distribution<size_t> pick(0, peaked.size() - 1);
  for (float v : {14.0f, 14.0f, 13.5f, 12.0f, 11.0f}) peaked[pick(gen)] = v;
  const std::vector<sampler_params> settings = {
    {.temperature = 1.0f, .top_p = 0.9f},
    {.temperature = 1.0f, .top_p = 0.999f},
    {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f},
    {.temperature = 1.0f, .min_p = 0.01f},
    {.temperature = 1.0f, .top_k = 3000},
  };
  for (const auto* logits : {&peaked, &flat}) {
    for (size_t i = 0; i < settings.size(); ++i) {
      BOOST_TEST_CONTEXT((logits == &peaked ? "peaked" : "flat") << ", setting " << i) {
        sampler s{settings[i]};
        const auto c = s.candidates(*logits);
        BOOST_TEST(ids(c) == reference_kept(*logits, settings[i]));
        double total = 0;
        for (const auto& [id, prob] : c) total += prob;
        BOOST_TEST(total == 1.0, boost::test_tools::tolerance(1e-5));
        // The draw is always one of them.
        for (int d = 0; d < 20; ++d) {
          const int32_t t = s.sample(*logits);
          BOOST_TEST(std::any_of(c.begin(), c.end(), [&](const auto& e) { return e.first == t; }));
        }
      }
    }
  }
  // Greedy: the first of the largest values, with penalties applied to a copy.
  sampler greedy{sampler_params{.repeat_penalty = 2.0f}};
  const auto first_max = std::max_element(peaked.begin(), peaked.end()) - peaked.begin();
  BOOST_TEST(greedy.sample(peaked) == first_max);
  greedy.accept(static_cast<int32_t>(first_max));
  auto penalised = peaked;
  penalised[static_cast<size_t>(first_max)] /= 2.0f;
  BOOST_TEST(greedy.sample(peaked) ==
             std::max_element(penalised.begin(), penalised.end()) - penalised.begin());
}

BOOST_AUTO_TEST_CASE(logit_biases_come_first_and_can_ban_or_force_a_token) {
  sampler ban{sampler_params{.logit_bias = {{0, -100.0f}, {99, 5.0f}, {-1, 5.0f}}}};
  BOOST_TEST(ban.sample(halving()) == 1);  // ids outside the logits are ignored
  sampler force{sampler_params{.logit_bias = {{4, 10.0f}}}};
  BOOST_TEST(force.sample(halving()) == 4);
  // Before the repetition penalty, as in llama.cpp's chain: (log 0.0625 + 3) · ... is positive,
  // so the penalty divides the biased logit.
  sampler both{sampler_params{.temperature = 1.0f, .repeat_penalty = 2.0f,
                              .logit_bias = {{3, 3.0f}}}};
  both.accept(3);
  const auto c = both.candidates(halving());
  const double l3 = (std::log(0.0625) + 3.0) / 2.0;
  double z = std::exp(l3);
  for (size_t t : {0u, 1u, 2u, 4u}) z += std::exp(static_cast<double>(halving()[t]));
  for (const auto& [id, p] : c)
    if (id == 3)
      BOOST_TEST(p == static_cast<float>(std::exp(l3) / z), boost::test_tools::tolerance(1e-5f));
}
