// repack_int4_experts: gate and up rows of each expert stacked and repacked equal, after the exact
// inverse (int4_unpack_expert), the checkpoint's words and scales; formats the GEMM lacks refused.
#include <boost/test/unit_test.hpp>

#include <random>

#include "cpu/low_bit.hpp"
#include "cuda/int4_repack.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/int4_expert_stack.hpp"

using troupe::deepseek::linear_weight;

namespace {

struct stored {
  std::vector<uint32_t> packed;
  std::vector<uint16_t> scales;
  linear_weight w;
};

// A random [rows, cols] INT4 weight with row strides wider than needed (as a checkpoint view).
stored make(int64_t rows, int64_t cols, std::mt19937& rng, const std::string& name) {
  stored s;
  const int64_t ps = cols / 8 + 3, ss = cols / 32 + 1;
  s.packed.resize(static_cast<size_t>(rows * ps));
  s.scales.resize(static_cast<size_t>(rows * ss));
  for (auto& v : s.packed) v = static_cast<uint32_t>(rng());
  for (auto& v : s.scales) v = static_cast<uint16_t>(rng());
  s.w.name = name;
  s.w.fmt = linear_weight::format::int4_group;
  s.w.rows = rows;
  s.w.cols = cols;
  s.w.packed = s.packed.data();
  s.w.packed_stride = ps;
  s.w.scales = s.scales.data();
  s.w.scale_type = static_cast<uint8_t>(troupe::kernels::cpu::scale_type::bf16);
  s.w.scale_stride = ss;
  s.w.group = 32;
  return s;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(int4_expert_stack_tests)

BOOST_AUTO_TEST_CASE(gate_and_up_stack_round_trips) {
  std::mt19937 rng(7);
  const int64_t E = 3, I = 5, K = 64;
  std::vector<stored> gate, up;
  for (int64_t e = 0; e < E; ++e) {
    gate.push_back(make(I, K, rng, "gate" + std::to_string(e)));
    up.push_back(make(I, K, rng, "up" + std::to_string(e)));
  }
  std::vector<const linear_weight*> g, u;
  for (int64_t e = 0; e < E; ++e) {
    g.push_back(&gate[static_cast<size_t>(e)].w);
    u.push_back(&up[static_cast<size_t>(e)].w);
  }
  std::vector<uint32_t> tiles;
  std::vector<uint16_t> scales;
  troupe::gpu::repack_int4_experts(g, u, 2 * I, K, tiles, scales);
  namespace kc = troupe::kernels::cuda;
  BOOST_CHECK_EQUAL(tiles.size(), static_cast<size_t>(E * kc::int4_tile_words(2 * I, K)));
  std::vector<uint32_t> packed(static_cast<size_t>(2 * I * K / 8));
  std::vector<uint16_t> sc(static_cast<size_t>(2 * I * K / 32));
  for (int64_t e = 0; e < E; ++e) {
    BOOST_REQUIRE(kc::int4_unpack_expert(tiles.data(), scales.data(), 2 * I, K, e, packed.data(), sc.data()) ==
                  kc::status::ok);
    for (int64_t r = 0; r < 2 * I; ++r) {
      const auto& src = r < I ? gate[static_cast<size_t>(e)] : up[static_cast<size_t>(e)];
      const int64_t sr = r % I;
      for (int64_t j = 0; j < K / 8; ++j)
        BOOST_REQUIRE_EQUAL(packed[static_cast<size_t>(r * K / 8 + j)],
                            src.packed[static_cast<size_t>(sr * src.w.packed_stride + j)]);
      for (int64_t j = 0; j < K / 32; ++j)
        BOOST_REQUIRE_EQUAL(sc[static_cast<size_t>(r * K / 32 + j)],
                            src.scales[static_cast<size_t>(sr * src.w.scale_stride + j)]);
    }
  }
  // One matrix per expert (the down projection).
  troupe::gpu::repack_int4_experts(g, {}, I, K, tiles, scales);
  BOOST_CHECK_EQUAL(scales.size(), static_cast<size_t>(E * I * K / 32));
}

BOOST_AUTO_TEST_CASE(refusals_name_the_tensor) {
  std::mt19937 rng(1);
  auto a = make(4, 64, rng, "model.layers.1.mlp.experts.0.gate_proj");
  const linear_weight* one[] = {&a.w};
  std::vector<uint32_t> tiles;
  std::vector<uint16_t> scales;
  // Wrong stacked shape.
  BOOST_CHECK_THROW(troupe::gpu::repack_int4_experts(one, {}, 5, 64, tiles, scales), troupe::error);
  BOOST_CHECK_THROW(troupe::gpu::repack_int4_experts(one, {}, 4, 96, tiles, scales), troupe::error);
  // bf16 experts are not for the W4A16 GEMM.
  a.w.fmt = linear_weight::format::dense;
  try {
    troupe::gpu::repack_int4_experts(one, {}, 4, 64, tiles, scales);
    BOOST_FAIL("no error");
  } catch (const troupe::error& e) {
    BOOST_CHECK(e.code() == troupe::errc::unsupported);
    BOOST_CHECK_NE(e.message().find("model.layers.1.mlp.experts.0.gate_proj"), std::string::npos);
  }
}

BOOST_AUTO_TEST_SUITE_END()
