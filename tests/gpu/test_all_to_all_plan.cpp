// The MoE all-to-all plan, executed on the host with memcpy over 1..5 simulated ranks on random
// routings (odd sizes, ranks without tokens, experts without pairs): every expert receives exactly
// the rows, in the order, that the single-device grouping (deepseek::expert_batch::group over all
// ranks' tokens) gives it; the grouped GEMM's blocks (moe_align over the received rows) cover each
// row once with its own expert, also padded to a graph bucket; the combine restores token order
// bit for bit.
#include <algorithm>
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "cuda/moe_align.hpp"
#include "troupe/deepseek/experts.hpp"
#include "troupe/error.hpp"
#include "troupe/gpu/all_to_all_plan.hpp"

namespace gpu = troupe::gpu;

namespace {

// What expert e computes from a row in this test: exact in fp32 for small integers.
float expert_fn(int64_t e, float x) { return x * static_cast<float>(e + 1) + 0.5f * static_cast<float>(e); }

struct rank_data {
  int64_t tokens = 0;
  std::vector<int32_t> ids;  // [tokens, k]
  std::vector<float> x;      // [tokens, hidden]
};

}  // namespace

BOOST_AUTO_TEST_SUITE(all_to_all_plan_suite)

BOOST_AUTO_TEST_CASE(worked_example) {
  // 2 ranks, 4 experts (rank 0: 0-1, rank 1: 2-3), top 2.
  const gpu::expert_placement pl(4, 2);
  const std::vector<int32_t> ids{3, 0, 1, 3, 2, 0};  // tokens 0..2
  const auto p = gpu::plan_dispatch(pl, 0, ids, 3, 2);
  BOOST_TEST(p.send_counts == (std::vector<int64_t>{3, 3}), boost::test_tools::per_element());
  BOOST_TEST(p.send_offsets == (std::vector<int64_t>{0, 3, 6}), boost::test_tools::per_element());
  // expert 0: pairs 1, 5; expert 1: pair 2; expert 2: pair 4; expert 3: pairs 0, 3
  BOOST_TEST(p.send_pairs == (std::vector<int32_t>{1, 5, 2, 4, 0, 3}), boost::test_tools::per_element());
  BOOST_TEST(p.send_experts == (std::vector<int32_t>{0, 0, 1, 2, 3, 3}), boost::test_tools::per_element());
  // a round trip through identity experts gives each pair its token's row
  const std::vector<float> x{10, 11, 12};
  std::vector<float> send(6), out(6);
  gpu::pack_dispatch(p, x.data(), sizeof(float), send.data());
  BOOST_TEST(send == (std::vector<float>{10, 12, 11, 12, 10, 11}), boost::test_tools::per_element());
  gpu::unpack_combine(p, send.data(), sizeof(float), out.data());
  BOOST_TEST(out == (std::vector<float>{10, 10, 11, 11, 12, 12}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(random_routings_match_the_single_device_path) {
  std::mt19937 rng(20261202);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 300; ++trial) {
    const int ranks = static_cast<int>(uni(1, 5));
    const int64_t E = uni(ranks, 37), k = uni(1, std::min<int64_t>(E, 6)), hidden = uni(1, 13);
    const int64_t block = std::vector<int64_t>{1, 3, 16}[static_cast<size_t>(uni(0, 2))];
    const gpu::expert_placement pl(E, ranks);
    BOOST_TEST_CONTEXT("trial " << trial << ": " << ranks << " ranks, " << E << " experts, top " << k
                                << ", hidden " << hidden << ", block " << block) {
      // Each rank's tokens (some ranks have none), distinct experts per token, small integers.
      std::vector<rank_data> rd(static_cast<size_t>(ranks));
      std::vector<int64_t> token_base(static_cast<size_t>(ranks) + 1, 0);
      std::vector<int32_t> perm(static_cast<size_t>(E));
      for (int r = 0; r < ranks; ++r) {
        auto& d = rd[static_cast<size_t>(r)];
        d.tokens = uni(0, 4) == 0 ? 0 : uni(1, 19);
        for (int64_t t = 0; t < d.tokens; ++t) {
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng);
          d.ids.insert(d.ids.end(), perm.begin(), perm.begin() + k);
        }
        for (int64_t i = 0; i < d.tokens * hidden; ++i) d.x.push_back(static_cast<float>(uni(-8, 8)));
        token_base[static_cast<size_t>(r) + 1] = token_base[static_cast<size_t>(r)] + d.tokens;
      }
      const int64_t T = token_base.back();

      // Single device: all tokens in rank order, grouped by expert.
      troupe::deepseek::expert_batch ref;
      ref.top_k = k;
      for (auto& d : rd) ref.ids.insert(ref.ids.end(), d.ids.begin(), d.ids.end());
      ref.group(E);
      std::vector<float> X;
      for (auto& d : rd) X.insert(X.end(), d.x.begin(), d.x.end());
      std::vector<float> ref_out(static_cast<size_t>(T * k * hidden));
      for (int64_t p = 0; p < T * k; ++p)
        for (int64_t h = 0; h < hidden; ++h)
          ref_out[p * hidden + h] = expert_fn(ref.ids[p], X[(p / k) * hidden + h]);

      // Dispatch.
      std::vector<gpu::dispatch_plan> plans;
      std::vector<std::vector<float>> send(static_cast<size_t>(ranks));
      for (int r = 0; r < ranks; ++r) {
        const auto& d = rd[static_cast<size_t>(r)];
        plans.push_back(gpu::plan_dispatch(pl, r, d.ids, d.tokens, k));
        const auto& p = plans.back();
        BOOST_TEST(p.rows() == d.tokens * k);
        BOOST_TEST(p.send_offsets.back() == p.rows());
        send[static_cast<size_t>(r)].resize(static_cast<size_t>(p.rows() * hidden));
        gpu::pack_dispatch(p, d.x.data(), hidden * sizeof(float), send[static_cast<size_t>(r)].data());
      }
      std::vector<std::vector<float>> recv_out(static_cast<size_t>(ranks));
      std::vector<gpu::receive_layout> layouts;
      for (int p = 0; p < ranks; ++p) {
        std::vector<int64_t> counts;
        for (int r = 0; r < ranks; ++r) counts.push_back(plans[static_cast<size_t>(r)].send_counts[static_cast<size_t>(p)]);
        layouts.push_back(gpu::plan_receive(counts));
        const auto& lay = layouts.back();
        std::vector<float> rx;
        std::vector<int32_t> rexp, rglobal;  // expert and global pair of each received row
        for (int r = 0; r < ranks; ++r) {
          const auto& pr = plans[static_cast<size_t>(r)];
          for (int64_t i = pr.send_offsets[static_cast<size_t>(p)]; i < pr.send_offsets[static_cast<size_t>(p) + 1]; ++i) {
            rx.insert(rx.end(), send[static_cast<size_t>(r)].begin() + i * hidden,
                      send[static_cast<size_t>(r)].begin() + (i + 1) * hidden);
            rexp.push_back(pr.send_experts[static_cast<size_t>(i)]);
            rglobal.push_back(static_cast<int32_t>(token_base[static_cast<size_t>(r)] * k + pr.send_pairs[static_cast<size_t>(i)]));
          }
        }
        BOOST_TEST(static_cast<int64_t>(rexp.size()) == lay.rows());
        // Per expert held here: exactly the single-device rows, in the same order.
        for (int64_t e = pl.first(p); e < pl.last(p); ++e) {
          std::vector<int32_t> got;
          for (size_t i = 0; i < rexp.size(); ++i)
            if (rexp[i] == e) got.push_back(rglobal[i]);
          const std::vector<int32_t> want(ref.pairs.begin() + ref.offsets[e], ref.pairs.begin() + ref.offsets[e + 1]);
          BOOST_TEST(got == want, boost::test_tools::per_element());
        }
        // The grouped GEMM's blocks: each received row once, in a block of its own expert.
        const auto blocks = gpu::align_received(pl, p, rexp, block);
        BOOST_TEST(blocks.rows_post_padded % block == 0);
        std::vector<int> seen(rexp.size(), 0);
        auto& out = recv_out[static_cast<size_t>(p)];
        out.assign(rx.size(), -1.0f);
        for (int64_t b = 0; b < blocks.rows_post_padded / block; ++b) {
          const int32_t local = blocks.expert_ids[static_cast<size_t>(b)];
          BOOST_TEST_REQUIRE((local >= 0 && local < pl.last(p) - pl.first(p)));
          for (int64_t j = 0; j < block; ++j) {
            const int32_t row = blocks.sorted_rows[static_cast<size_t>(b * block + j)];
            if (row >= static_cast<int32_t>(rexp.size())) continue;  // padding
            BOOST_TEST(rexp[static_cast<size_t>(row)] == pl.first(p) + local);
            ++seen[static_cast<size_t>(row)];
            for (int64_t h = 0; h < hidden; ++h)
              out[static_cast<size_t>(row * hidden + h)] = expert_fn(pl.first(p) + local, rx[static_cast<size_t>(row * hidden + h)]);
          }
        }
        BOOST_TEST(std::all_of(seen.begin(), seen.end(), [](int s) { return s == 1; }));
      }

      // Combine: rank r gets back, from each peer in peer order, the rows it sent there.
      for (int r = 0; r < ranks; ++r) {
        const auto& pr = plans[static_cast<size_t>(r)];
        std::vector<float> back;
        for (int p = 0; p < ranks; ++p) {
          const auto& lay = layouts[static_cast<size_t>(p)];
          const auto& o = recv_out[static_cast<size_t>(p)];
          back.insert(back.end(), o.begin() + lay.offsets[static_cast<size_t>(r)] * hidden,
                      o.begin() + lay.offsets[static_cast<size_t>(r) + 1] * hidden);
        }
        BOOST_TEST(static_cast<int64_t>(back.size()) == pr.rows() * hidden);
        std::vector<float> out(static_cast<size_t>(pr.rows() * hidden), -99.0f);
        gpu::unpack_combine(pr, back.data(), hidden * sizeof(float), out.data());
        const auto base = static_cast<size_t>(token_base[static_cast<size_t>(r)] * k * hidden);
        const std::vector<float> want(ref_out.begin() + base, ref_out.begin() + base + out.size());
        BOOST_TEST(out == want, boost::test_tools::per_element());
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(padding_to_a_graph_bucket_keeps_every_real_row) {
  // The grouped GEMM's dispatch emulated over (pairs, capacity): which (row, expert) it computes.
  auto dispatched = [](const gpu::expert_blocks& b, int64_t pairs, int32_t used) {
    std::vector<std::pair<int32_t, int32_t>> out;
    for (int64_t blk = 0; blk * b.block < used; ++blk) {
      const int32_t e = b.expert_ids[static_cast<size_t>(blk)];
      if (e < 0) continue;
      for (int64_t j = 0; j < b.block; ++j) {
        const int32_t r = b.sorted_rows[static_cast<size_t>(blk * b.block + j)];
        if (r < pairs) out.emplace_back(r, e);
      }
    }
    return out;
  };
  std::mt19937 rng(77);
  auto uni = [&](int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng); };
  for (int trial = 0; trial < 200; ++trial) {
    const int ranks = static_cast<int>(uni(1, 4));
    const int64_t E = uni(ranks, 40), block = std::vector<int64_t>{1, 16, 32}[static_cast<size_t>(uni(0, 2))];
    const gpu::expert_placement pl(E, ranks);
    const int rank = static_cast<int>(uni(0, ranks - 1));
    const int64_t rows = uni(0, 70), bucket = rows + uni(0, 50);
    std::vector<int32_t> experts(static_cast<size_t>(rows));
    for (auto& e : experts) e = static_cast<int32_t>(uni(pl.first(rank), pl.last(rank) - 1));
    BOOST_TEST_CONTEXT("trial " << trial << ": " << rows << " rows in a bucket of " << bucket << ", block " << block) {
      const auto exact = gpu::align_received(pl, rank, experts, block);
      auto padded = exact;
      gpu::pad_to_bucket(padded, rows, bucket, E);
      BOOST_TEST(padded.capacity == troupe::kernels::cuda::moe_align_capacity(bucket, 1, E, block));
      BOOST_TEST(padded.sorted_rows.size() == static_cast<size_t>(padded.capacity));
      BOOST_TEST(padded.expert_ids.size() == static_cast<size_t>(padded.capacity / block));
      BOOST_TEST(padded.rows_post_padded == exact.rows_post_padded);
      const auto used = static_cast<int32_t>(exact.rows_post_padded);
      const auto a = dispatched(exact, rows, used), b = dispatched(padded, bucket, used);
      BOOST_TEST((a == b));
      BOOST_TEST(a.size() == static_cast<size_t>(rows));  // every real row exactly once
      for (size_t i = static_cast<size_t>(used); i < padded.sorted_rows.size(); ++i)
        BOOST_TEST_REQUIRE(padded.sorted_rows[i] == bucket);
    }
  }
  gpu::expert_blocks b = gpu::align_received(gpu::expert_placement(4, 1), 0, std::vector<int32_t>{1, 2}, 16);
  BOOST_CHECK_THROW(gpu::pad_to_bucket(b, 2, 1, 4), troupe::error);
}

BOOST_AUTO_TEST_CASE(bad_routings_are_refused) {
  const gpu::expert_placement pl(8, 2);
  const std::vector<int32_t> ids{1, 8};
  try {
    (void)gpu::plan_dispatch(pl, 0, ids, 1, 2);
    BOOST_FAIL("expert 8 of 8 accepted");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.code() == troupe::errc::invalid_argument);
    BOOST_TEST(e.message().find("token 0 slot 1 is routed to expert 8") != std::string::npos);
  }
  BOOST_CHECK_THROW((void)gpu::plan_dispatch(pl, 2, std::vector<int32_t>{1}, 1, 1), troupe::error);
  BOOST_CHECK_THROW((void)gpu::plan_dispatch(pl, 0, std::vector<int32_t>{1, 2, 3}, 1, 2), troupe::error);
  BOOST_CHECK_THROW((void)gpu::plan_receive(std::vector<int64_t>{1, -1}), troupe::error);
  // rank 0 holds experts 0-3: a row for expert 5 is not its own
  BOOST_CHECK_THROW((void)gpu::align_received(pl, 0, std::vector<int32_t>{1, 5}, 4), troupe::error);
}

BOOST_AUTO_TEST_SUITE_END()
