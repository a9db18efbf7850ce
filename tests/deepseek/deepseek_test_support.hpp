#pragma once
// Shared by the DeepSeek-V3 tests: the HF reference fixtures (expected*.safetensors written by
// tools/reference/make_deepseek_fixtures.py and make_deepseek_gguf_fixture.py), the logit
// comparison, prompt and greedy runs through a batch_decoder, and error checks.

#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "troupe/deepseek/batch_decoder.hpp"
#include "troupe/error.hpp"
#include "troupe/formats/safetensors.hpp"

namespace troupe::deepseek::test {

inline const std::filesystem::path fixtures =
    std::filesystem::path(TROUPE_SOURCE_DIR) / "tests/fixtures/deepseek";
inline constexpr int greedy_tokens = 32;

/// One fixture prompt: its ids, HF's logits at every position [prompt, vocab], HF's greedy tokens.
struct expected_case {
  std::vector<int32_t> prompt;
  std::vector<float> logits;
  std::vector<int32_t> greedy;
};

template <class T>
std::vector<T> values(const safetensors_file& f, const std::string& name) {
  const auto* t = f.find(name);
  BOOST_REQUIRE_MESSAGE(t != nullptr, "fixture lacks " << name);
  std::vector<T> out(static_cast<size_t>(t->elements()));
  BOOST_REQUIRE_EQUAL(t->size, out.size() * sizeof(T));
  std::memcpy(out.data(), t->data, t->size);
  return out;
}

/// prompt_i / logits_i / greedy_i for i = 0, 1, ... of an expected*.safetensors file.
inline std::vector<expected_case> load_expected(const std::filesystem::path& file) {
  auto f = safetensors_file::open(file);
  std::vector<expected_case> cases;
  for (int i = 0; f.find("prompt_" + std::to_string(i)) != nullptr; ++i) {
    const auto n = std::to_string(i);
    cases.push_back({values<int32_t>(f, "prompt_" + n), values<float>(f, "logits_" + n),
                     values<int32_t>(f, "greedy_" + n)});
  }
  BOOST_REQUIRE(!cases.empty());
  return cases;
}

/// max |a - b| / max |b| over one row of n.
inline double relative_error(const float* a, const float* b, int64_t n) {
  double diff = 0, scale = 0;
  for (int64_t i = 0; i < n; ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - b[i]));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return diff / scale;
}

inline int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

/// The prompt in one chunk of a fresh sequence: logits of every position (all) or of the last.
inline std::vector<float> run_prompt(batch_decoder& d, const std::vector<int32_t>& prompt, bool all = true) {
  const uint32_t seq = d.open(256);
  const batch_decoder::chunk ch{seq, prompt};
  auto out = d.decode({&ch, 1}, all);
  std::vector<float> logits(out.begin(), out.end());
  d.close(seq);
  return logits;
}

/// Greedy continuation: prefill in one chunk, then one token per step (the absorbed decode).
inline std::vector<int32_t> greedy(batch_decoder& d, const std::vector<int32_t>& prompt,
                                   int tokens = greedy_tokens) {
  const uint32_t seq = d.open(256);
  batch_decoder::chunk ch{seq, prompt};
  auto out = d.decode({&ch, 1});
  std::vector<int32_t> got;
  for (int i = 0; i < tokens; ++i) {
    got.push_back(argmax(out));
    ch.tokens = {&got.back(), 1};
    if (i + 1 < tokens) out = d.decode({&ch, 1});
  }
  d.close(seq);
  return got;
}

/// Runs f, which must throw troupe::error with `code`; returns the message.
template <class F>
std::string error_of(F f, errc code) {
  try {
    f();
  } catch (const troupe::error& e) {
    BOOST_CHECK_MESSAGE(e.code() == code, "code " << to_string(e.code()) << ": " << e.message());
    BOOST_TEST_MESSAGE(e.message());
    return e.message();
  }
  BOOST_FAIL("no error thrown");
  return {};
}

}  // namespace troupe::deepseek::test
