// The GPU decoder actor (decoder_actor.hpp: cuda_decoder behind decoder_protocol.hpp) on the
// K2.5-like INT4 fixture: the same step messages as the CPU decoder actor give logits equal bit for
// bit to a cuda_decoder driven directly with the same calls, greedy tokens that are the argmax of
// those logits; a model the GPU cannot run refused at spawn.
//
// Not compared with the CPU actor: the fixture is a tiny random model in which the GPU's bf16
// roundings (every GEMM input, the latent cache) swap near-tie expert choices, so a CPU emulation of
// those roundings moves some positions' logits by 0.4-0.6 of the largest and greedy continuations
// part within a few steps; the GPU's numerics are test_cuda_decoder's subject. Steps after the prompts
// feed fixed tokens, not each reply's greedy one, so that both runs see the same inputs whatever
// near-tie the device resolves.
//
// Without a CUDA device the program prints "SKIPPED: no CUDA device" and exits with 77 (ctest:
// skipped). UNVERIFIED so far: no GPU was available where this was written.
#define BOOST_TEST_MODULE gpu_decoder_actor
#define BOOST_TEST_NO_MAIN
#include <cuda_runtime_api.h>

#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/gpu/cuda_decoder.hpp"
#include "troupe/gpu/decoder_actor.hpp"
#include "troupe/gpu/nccl_id.hpp"

namespace gpu = troupe::gpu;
namespace ds = troupe::deepseek;

namespace {

std::filesystem::path fixture(const char* name) {
  const char* env = std::getenv("TROUPE_SOURCE_DIR");
  return std::filesystem::path(env != nullptr ? env : TROUPE_SOURCE_DIR) / "tests/fixtures/deepseek" / name;
}

struct config : troupe::actor_system_config {
  config() { gpu::add_gpu_message_types(*this); }
};

template <class R, class... Ts>
R ask(caf::scoped_actor& self, const gpu::decoder_actor& a, const Ts&... xs) {
  R out{};
  std::string failure;
  self->request(a, std::chrono::seconds(120), xs...)
      .receive([&](const R& r) { out = r; },
               [&](caf::error& e) { failure = troupe::from_caf_error(e, "decoder actor").message(); });
  BOOST_REQUIRE_MESSAGE(failure.empty(), failure);
  return out;
}

constexpr int steps = 8;
const std::vector<std::vector<int32_t>> prompts{{1, 2, 3, 4, 5}, {300, 17, 42}, {7, 9, 11, 13, 15, 17, 19}};

// The tokens fed at step s (s = 0: the prompts), one chunk per sequence.
std::vector<std::vector<int32_t>> tokens_of_step(int s) {
  if (s == 0) return prompts;
  std::vector<std::vector<int32_t>> t;
  for (size_t i = 0; i < prompts.size(); ++i) t.push_back({(37 * s + 101 * static_cast<int32_t>(i) + 5) % 384});
  return t;
}

// The three sequences through the actor: the prompts, then `steps` steps of fixed tokens; every
// reply's logits (fp32 from bytes) and greedy tokens.
std::vector<float> run(caf::scoped_actor& self, const gpu::decoder_actor& a, std::vector<int32_t>& greedy_out) {
  std::vector<uint32_t> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.push_back(ask<uint32_t>(self, a, gpu::gpu_open_atom::value, int64_t{64}));
  std::vector<float> all;
  for (int s = 0; s <= steps; ++s) {
    gpu::decode_batch b;
    const auto t = tokens_of_step(s);
    for (size_t i = 0; i < seqs.size(); ++i) b.add(seqs[i], t[i].data(), t[i].size());
    b.want_logits = true;
    const auto r = ask<gpu::decode_result>(self, a, gpu::gpu_decode_atom::value, b);
    BOOST_REQUIRE_EQUAL(r.greedy.size(), seqs.size());
    BOOST_REQUIRE_EQUAL(r.logits.size() % (4 * seqs.size()), 0u);
    const size_t n = r.logits.size() / 4;
    const size_t old = all.size();
    all.resize(old + n);
    std::memcpy(all.data() + old, r.logits.data(), r.logits.size());
    const size_t V = n / seqs.size();
    for (size_t i = 0; i < seqs.size(); ++i) {  // the reply's greedy token is its logits' argmax
      const float* row = all.data() + old + i * V;
      BOOST_CHECK_EQUAL(r.greedy[i], static_cast<int32_t>(std::max_element(row, row + V) - row));
    }
    greedy_out.insert(greedy_out.end(), r.greedy.begin(), r.greedy.end());
  }
  for (auto s : seqs) ask<bool>(self, a, gpu::gpu_close_atom::value, s);
  return all;
}

// The same calls on a decoder driven directly.
std::vector<float> run_direct(gpu::cuda_decoder& d) {
  std::vector<uint32_t> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) seqs.push_back(d.open(64));
  std::vector<float> all;
  for (int s = 0; s <= steps; ++s) {
    const auto t = tokens_of_step(s);
    std::vector<ds::batch_decoder::chunk> chunks;
    for (size_t i = 0; i < seqs.size(); ++i) chunks.push_back({seqs[i], t[i]});
    const auto out = d.decode(chunks);
    all.insert(all.end(), out.begin(), out.end());
  }
  for (auto s : seqs) d.close(s);
  return all;
}

}  // namespace

BOOST_AUTO_TEST_CASE(gpu_actor_equals_the_decoder_driven_directly) {
  config cfg;
  caf::actor_system sys{cfg};
  auto m = ds::model::load(fixture("k25_int4"));
  auto dev = gpu::spawn_cuda_decoder_actor(sys, m, {});
  caf::scoped_actor self{sys};
  std::vector<int32_t> greedy;
  const auto got = run(self, dev, greedy);
  gpu::cuda_decoder direct(m, {});
  const auto want = run_direct(direct);
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  BOOST_CHECK(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
  BOOST_CHECK(std::all_of(got.begin(), got.end(), [](float v) { return std::isfinite(v); }));
  // The CPU actor answers the same messages with the same shapes (its values: see the header).
  auto cpu = gpu::spawn_cpu_decoder_actor(sys, m, 2);
  std::vector<int32_t> cpu_greedy;
  const auto cpu_logits = run(self, cpu, cpu_greedy);
  BOOST_CHECK_EQUAL(cpu_logits.size(), got.size());
  BOOST_CHECK_EQUAL(cpu_greedy.size(), greedy.size());
  self->send_exit(cpu, caf::exit_reason::user_shutdown);
  self->send_exit(dev, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(unsupported_models_are_refused_at_spawn) {
  config cfg;
  caf::actor_system sys{cfg};
  auto m = ds::model::load(fixture("moonlight"));  // bf16 routed experts: no W4A16 GEMM for them
  try {
    gpu::spawn_cuda_decoder_actor(sys, m, {});
    BOOST_FAIL("the Moonlight fixture was accepted");
  } catch (const troupe::error& e) {
    BOOST_TEST_MESSAGE(e.message());
    BOOST_TEST((e.code() == troupe::errc::unsupported));
  }
}

int main(int argc, char** argv) {
  const bool listing = std::any_of(argv + 1, argv + argc, [](const char* a) {
    return std::strncmp(a, "--list_content", 14) == 0;
  });
  int devices = 0;
  if (!listing && (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0)) {
    std::printf("SKIPPED: no CUDA device\n");
    return 77;
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
