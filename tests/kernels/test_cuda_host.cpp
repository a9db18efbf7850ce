// Host side of the CUDA backend, on the CPU: vLLM's moe_align_block_size (a worked example and
// the invariants on random routings, with and without an expert-parallel expert_map) and the INT4
// repack into 16-byte K-group tiles (lossless both ways; a tile dequantises to what
// kernels/cpu/low_bit.hpp reads from the checkpoint layout). A scalar emulation of the grouped
// GEMM's dispatch (block -> expert, sorted id -> activation row and output row, sentinel rows
// skipped) over the repacked tiles equals cpu::int4_group_gemm per (token, slot) pair.

#define BOOST_TEST_MODULE cuda_host
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cmath>
#include <cstdint>
#include <ostream>
#include <random>
#include <vector>

#include "cpu/low_bit.hpp"
#include "cuda/int4_repack.hpp"
#include "cuda/moe_align.hpp"

namespace troupe::kernels::cuda {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
}  // namespace troupe::kernels::cuda
namespace troupe::kernels::cpu {
inline std::ostream& operator<<(std::ostream& os, status s) { return os << to_string(s); }
}  // namespace troupe::kernels::cpu

namespace kc = troupe::kernels::cuda;
namespace cpu = troupe::kernels::cpu;
using kc::status;

namespace {

struct alignment {
  std::vector<int32_t> sorted, experts;
  int32_t rows = -1;
};

alignment align(const std::vector<int32_t>& ids, int64_t tokens, int64_t k, int64_t experts,
                int64_t block, const int32_t* map = nullptr) {
  alignment a;
  const int64_t cap = kc::moe_align_capacity(tokens, k, experts, block);
  a.sorted.assign(static_cast<size_t>(cap) + 1, 777);  // + a guard
  a.experts.assign(static_cast<size_t>(cap / block) + 1, 777);
  BOOST_REQUIRE_EQUAL(kc::moe_align_block_size(ids.data(), tokens, k, experts, block, map,
                                               a.sorted.data(), a.experts.data(), cap, &a.rows),
                      status::ok);
  BOOST_REQUIRE_EQUAL(a.sorted.back(), 777);
  BOOST_REQUIRE_EQUAL(a.experts.back(), 777);
  a.sorted.pop_back();
  a.experts.pop_back();
  return a;
}

}  // namespace

BOOST_AUTO_TEST_CASE(moe_align_worked_example) {
  // 3 tokens, top-2, 4 experts, block 4. Pairs (flat t*2+j): 0->e2, 1->e0, 2->e2, 3->e3, 4->e0,
  // 5->e2. Expert 0: {1,4} padded to 4; expert 1: none; expert 2: {0,2,5} padded to 4; 3: {3}.
  const std::vector<int32_t> ids{2, 0, 2, 3, 0, 2};
  const alignment a = align(ids, 3, 2, 4, 4);
  BOOST_TEST(a.rows == 12);
  const std::vector<int32_t> head(a.sorted.begin(), a.sorted.begin() + 12);
  const std::vector<int32_t> want{1, 4, 6, 6, 0, 2, 5, 6, 3, 6, 6, 6};
  BOOST_TEST(head == want, boost::test_tools::per_element());
  BOOST_TEST(a.sorted.size() == 20u);  // 6 + 4*3 = 18, rounded up to 20
  for (size_t i = 12; i < a.sorted.size(); ++i) BOOST_TEST(a.sorted[i] == 6);
  const std::vector<int32_t> want_e{0, 2, 3, -1, -1};
  BOOST_TEST(a.experts == want_e, boost::test_tools::per_element());

  // Expert parallelism: this rank holds experts 2 (local 0) and 3 (local 1).
  const std::vector<int32_t> map{-1, -1, 0, 1};
  const alignment b = align(ids, 3, 2, 4, 4, map.data());
  BOOST_TEST(b.rows == 8);
  const std::vector<int32_t> want_b{0, 2, 5, 6, 3, 6, 6, 6};
  BOOST_TEST(std::vector<int32_t>(b.sorted.begin(), b.sorted.begin() + 8) == want_b,
             boost::test_tools::per_element());
  BOOST_TEST(b.experts[0] == 0);
  BOOST_TEST(b.experts[1] == 1);
  BOOST_TEST(b.experts[2] == -1);
}

BOOST_AUTO_TEST_CASE(moe_align_invariants_on_random_routings) {
  std::mt19937 rng(8);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t tokens = std::uniform_int_distribution<int>(0, 37)(rng);
    const int64_t experts = std::uniform_int_distribution<int>(1, 70)(rng);
    const int64_t k = std::uniform_int_distribution<int>(1, std::min<int>(9, experts))(rng);
    const int64_t block = std::vector<int64_t>{1, 3, 16, 64}[trial % 4];
    std::vector<int32_t> ids(static_cast<size_t>(tokens * k));
    for (auto& v : ids) v = std::uniform_int_distribution<int32_t>(0, experts - 1)(rng);
    std::vector<int32_t> map(static_cast<size_t>(experts));
    int32_t next = 0;
    for (auto& m : map) m = (rng() % 3 == 0) ? -1 : next++;
    const bool use_map = trial % 2 == 1;
    const alignment a = align(ids, tokens, k, experts, block, use_map ? map.data() : nullptr);
    BOOST_REQUIRE(a.rows % block == 0);
    const int32_t sentinel = static_cast<int32_t>(tokens * k);
    std::vector<int> seen(ids.size(), 0);
    for (int64_t b = 0; b < a.rows / block; ++b) {
      const int32_t e = a.experts[b];
      BOOST_REQUIRE(e >= 0);
      bool any = false;
      for (int64_t r = b * block; r < (b + 1) * block; ++r) {
        const int32_t p = a.sorted[r];
        if (p == sentinel) continue;
        BOOST_REQUIRE(p >= 0 && p < sentinel);
        any = true;
        ++seen[p];
        const int32_t want = use_map ? map[ids[p]] : ids[p];
        BOOST_REQUIRE_EQUAL(e, want);
      }
      BOOST_REQUIRE(any || block == 1);  // no block is all padding
    }
    for (size_t p = 0; p < ids.size(); ++p)
      BOOST_REQUIRE_EQUAL(seen[p], (!use_map || map[ids[p]] >= 0) ? 1 : 0);
    for (size_t r = static_cast<size_t>(a.rows); r < a.sorted.size(); ++r)
      BOOST_REQUIRE_EQUAL(a.sorted[r], sentinel);
    for (size_t b = static_cast<size_t>(a.rows / block); b < a.experts.size(); ++b)
      BOOST_REQUIRE_EQUAL(a.experts[b], -1);
  }
}

BOOST_AUTO_TEST_CASE(moe_align_rejects_bad_arguments) {
  const std::vector<int32_t> ids{0, 5};
  std::vector<int32_t> sorted(64), experts(64);
  int32_t rows = 0;
  BOOST_TEST(kc::moe_align_block_size(ids.data(), 1, 2, 4, 4, nullptr, sorted.data(),
                                      experts.data(), 16, &rows) == status::bad_size);  // id 5
  const std::vector<int32_t> ok{0, 3};
  BOOST_TEST(kc::moe_align_block_size(ok.data(), 1, 2, 4, 4, nullptr, sorted.data(),
                                      experts.data(), 12, &rows) == status::bad_size);  // < 16
  BOOST_TEST(kc::moe_align_block_size(ok.data(), 1, 2, 4, 4, nullptr, sorted.data(),
                                      experts.data(), 18, &rows) == status::bad_size);  // % 4
  BOOST_TEST(kc::moe_align_block_size(ok.data(), 1, 2, 4, 0, nullptr, sorted.data(),
                                      experts.data(), 16, &rows) == status::bad_size);
  BOOST_TEST(kc::moe_align_block_size(ok.data(), 1, 2, 4, 4, nullptr, nullptr, experts.data(), 16,
                                      &rows) == status::null_pointer);
  const std::vector<int32_t> bad_map{0, -2, 1, 2};
  BOOST_TEST(kc::moe_align_block_size(ok.data(), 1, 2, 4, 4, bad_map.data(), sorted.data(),
                                      experts.data(), 16, &rows) == status::bad_size);
  BOOST_TEST(kc::moe_align_capacity(1, 2, 4, 4) == 16);
  BOOST_TEST(kc::moe_align_capacity(-1, 2, 4, 4) == -1);
}

namespace {

struct int4_stack {
  int64_t experts, n, k;
  std::vector<uint32_t> packed;  // [E, N, K/8]
  std::vector<uint16_t> scales;  // [E, N, K/32]
};

int4_stack random_stack(std::mt19937& rng, int64_t experts, int64_t n, int64_t k) {
  int4_stack s{experts, n, k, {}, {}};
  s.packed.resize(static_cast<size_t>(experts * n * (k / 8)));
  s.scales.resize(static_cast<size_t>(experts * n * (k / 32)));
  for (auto& w : s.packed) w = static_cast<uint32_t>(rng());
  std::uniform_real_distribution<float> d(0.001f, 0.05f);
  for (auto& v : s.scales) v = cpu::fp32_to_bf16(d(rng));
  return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(int4_repack_is_lossless_and_tiles_hold_whole_groups) {
  std::mt19937 rng(4);
  for (const auto& [n, k] : std::vector<std::pair<int64_t, int64_t>>{{1, 32}, {7, 96}, {33, 64},
                                                                   {65, 160}}) {
    const int64_t experts = 3;
    const int4_stack s = random_stack(rng, experts, n, k);
    std::vector<uint32_t> tiles(static_cast<size_t>(experts * kc::int4_tile_words(n, k)) + 1, 0xABCD);
    std::vector<uint16_t> tscales(static_cast<size_t>(experts * kc::int4_tile_scales(n, k)) + 1,
                                  0xABCD);
    for (int64_t e = 0; e < experts; ++e)
      BOOST_REQUIRE_EQUAL(kc::int4_repack_expert(s.packed.data() + e * n * (k / 8), k / 8,
                                                 s.scales.data() + e * n * (k / 32), k / 32, n, k,
                                                 e, tiles.data(), tscales.data()),
                          status::ok);
    BOOST_TEST(tiles.back() == 0xABCDu);
    BOOST_TEST(tscales.back() == 0xABCD);
    // Unpack: bit-identical.
    for (int64_t e = 0; e < experts; ++e) {
      std::vector<uint32_t> p(static_cast<size_t>(n * (k / 8)));
      std::vector<uint16_t> sc(static_cast<size_t>(n * (k / 32)));
      BOOST_REQUIRE_EQUAL(kc::int4_unpack_expert(tiles.data(), tscales.data(), n, k, e, p.data(),
                                                 sc.data()),
                          status::ok);
      BOOST_TEST(std::equal(p.begin(), p.end(), s.packed.begin() + e * n * (k / 8)));
      BOOST_TEST(std::equal(sc.begin(), sc.end(), s.scales.begin() + e * n * (k / 32)));
    }
    // A tile read as the GPU kernel reads it dequantises to the checkpoint's values.
    const int64_t e = experts - 1;
    cpu::int4_group_matrix m;
    m.rows = n;
    m.cols = k;
    m.group = 32;
    m.packed = s.packed.data() + e * n * (k / 8);
    m.packed_stride = k / 8;
    m.scales = s.scales.data() + e * n * (k / 32);
    m.scale_stride = k / 32;
    std::vector<float> row(static_cast<size_t>(k));
    for (int64_t r = 0; r < n; ++r) {
      BOOST_REQUIRE_EQUAL(cpu::int4_group_dequantize_row(m, r, row.data()), cpu::status::ok);
      for (int64_t c = 0; c < k; ++c) {
        const int64_t g = c / 32;
        const uint32_t* tile = tiles.data() + e * kc::int4_tile_words(n, k) + (g * n + r) * 4;
        const int q = static_cast<int>((tile[(c % 32) / 8] >> (4 * (c % 8))) & 0xF) - 8;
        const float scale = cpu::bf16_to_fp32(tscales[e * kc::int4_tile_scales(n, k) + g * n + r]);
        BOOST_REQUIRE_EQUAL(static_cast<float>(q) * scale, row[c]);
      }
    }
  }
  std::vector<uint32_t> t(64);
  std::vector<uint16_t> sc(64);
  const std::vector<uint32_t> p(64);
  const std::vector<uint16_t> ps(64);
  BOOST_TEST(kc::int4_repack_expert(p.data(), 5, ps.data(), 1, 1, 40, 0, t.data(), sc.data()) ==
             status::bad_size);  // K not a multiple of 32
  BOOST_TEST(kc::int4_repack_expert(p.data(), 3, ps.data(), 1, 1, 32, 0, t.data(), sc.data()) ==
             status::bad_size);  // packed stride < K/8
  BOOST_TEST(kc::int4_repack_expert(p.data(), 4, nullptr, 1, 1, 32, 0, t.data(), sc.data()) ==
             status::null_pointer);
}

// The grouped GEMM's dispatch, emulated on the CPU exactly as launch_moe_w4a16_gemm walks it:
// block b -> local expert expert_ids[b]; row r of the block -> pair p = sorted[r] (skipped when
// p is the sentinel), activation row p / a_div, output row p, times weight[p] when given.
BOOST_AUTO_TEST_CASE(grouped_gemm_dispatch_over_tiles_equals_per_pair_int4_gemm) {
  std::mt19937 rng(16);
  const int64_t tokens = 5, top_k = 3, experts = 6, n = 19, k = 96, block = 4;
  const int4_stack s = random_stack(rng, experts, n, k);
  std::vector<uint32_t> tiles(static_cast<size_t>(experts * kc::int4_tile_words(n, k)));
  std::vector<uint16_t> tscales(static_cast<size_t>(experts * kc::int4_tile_scales(n, k)));
  for (int64_t e = 0; e < experts; ++e)
    BOOST_REQUIRE_EQUAL(kc::int4_repack_expert(s.packed.data() + e * n * (k / 8), k / 8,
                                               s.scales.data() + e * n * (k / 32), k / 32, n, k, e,
                                               tiles.data(), tscales.data()),
                        status::ok);
  std::vector<int32_t> ids(static_cast<size_t>(tokens * top_k));
  for (int64_t t = 0; t < tokens; ++t) {  // top_k distinct experts per token
    std::vector<int32_t> all{0, 1, 2, 3, 4, 5};
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t j = 0; j < top_k; ++j) ids[t * top_k + j] = all[j];
  }
  std::vector<float> x(static_cast<size_t>(tokens * k)), w(ids.size());
  std::uniform_real_distribution<float> d(-1, 1);
  for (auto& v : x) v = d(rng);
  for (auto& v : w) v = d(rng);
  const alignment a = align(ids, tokens, top_k, experts, block);

  const int64_t pairs = tokens * top_k;
  std::vector<float> y(static_cast<size_t>(pairs * n), NAN);
  for (int64_t b = 0; b < a.rows / block; ++b) {
    const int64_t e = a.experts[b];
    const uint32_t* et = tiles.data() + e * kc::int4_tile_words(n, k);
    const uint16_t* es = tscales.data() + e * kc::int4_tile_scales(n, k);
    for (int64_t r = b * block; r < (b + 1) * block; ++r) {
      const int32_t p = a.sorted[r];
      if (p >= pairs) continue;
      const float* xr = x.data() + (p / top_k) * k;
      for (int64_t col = 0; col < n; ++col) {
        float acc = 0;
        for (int64_t g = 0; g < k / 32; ++g) {
          const uint32_t* tile = et + (g * n + col) * 4;
          float part = 0;
          for (int i = 0; i < 32; ++i)
            part += static_cast<float>(static_cast<int>((tile[i / 8] >> (4 * (i % 8))) & 0xF) - 8) *
                    xr[g * 32 + i];
          acc += part * cpu::bf16_to_fp32(es[g * n + col]);
        }
        y[p * n + col] = acc * w[p];
      }
    }
  }
  for (int64_t p = 0; p < pairs; ++p) {
    const int64_t e = ids[p];
    cpu::int4_group_matrix m;
    m.rows = n;
    m.cols = k;
    m.group = 32;
    m.packed = s.packed.data() + e * n * (k / 8);
    m.packed_stride = k / 8;
    m.scales = s.scales.data() + e * n * (k / 32);
    m.scale_stride = k / 32;
    std::vector<float> ref(static_cast<size_t>(n));
    BOOST_REQUIRE_EQUAL(cpu::int4_group_gemm(m, 0, n, x.data() + (p / top_k) * k, k, 1, ref.data(),
                                             n, cpu::isa::scalar),
                        cpu::status::ok);
    for (int64_t col = 0; col < n; ++col)
      BOOST_REQUIRE_CLOSE_FRACTION(y[p * n + col], ref[col] * w[p], 1e-5);
  }
}
