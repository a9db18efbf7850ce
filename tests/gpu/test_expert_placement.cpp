// Expert placement over devices: contiguous ranges covering every expert once, as the CPU shards,
// owner() agreeing with the ranges, local maps, bad counts refused.
#include <boost/test/unit_test.hpp>
#include <cstdint>

#include "troupe/error.hpp"
#include "troupe/gpu/expert_placement.hpp"

using troupe::gpu::expert_placement;

BOOST_AUTO_TEST_SUITE(expert_placement_suite)

BOOST_AUTO_TEST_CASE(ranges_cover_every_expert_once) {
  for (int64_t E : {1, 2, 7, 16, 64, 384})
    for (int N = 1; N <= 8 && N <= E; ++N) {
      const expert_placement p(E, N);
      BOOST_TEST(p.devices() == N);
      BOOST_TEST(p.first(0) == 0);
      BOOST_TEST(p.last(N - 1) == E);
      for (int d = 0; d < N; ++d) {
        // the CPU shard split: [E·d/N, E·(d+1)/N)
        BOOST_TEST(p.first(d) == E * d / N);
        BOOST_TEST(p.last(d) == E * (d + 1) / N);
        BOOST_TEST(p.last(d) > p.first(d));
        const auto map = p.local_map(d);
        for (int64_t e = 0; e < E; ++e) {
          const bool here = e >= p.first(d) && e < p.last(d);
          BOOST_TEST(map[static_cast<size_t>(e)] == (here ? e - p.first(d) : -1));
          if (here) BOOST_TEST(p.owner(e) == d);
        }
      }
    }
}

BOOST_AUTO_TEST_CASE(bad_counts_are_refused) {
  BOOST_CHECK_THROW(expert_placement(0, 1), troupe::error);
  BOOST_CHECK_THROW(expert_placement(4, 0), troupe::error);
  try {
    expert_placement(4, 5);
    BOOST_FAIL("5 devices for 4 experts accepted");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.code() == troupe::errc::invalid_argument);
    BOOST_TEST(e.message().find("4 routed experts over 5 devices") != std::string::npos);
  }
  const expert_placement p(10, 3);
  BOOST_CHECK_THROW(p.owner(-1), troupe::error);
  BOOST_CHECK_THROW(p.owner(10), troupe::error);
}

BOOST_AUTO_TEST_SUITE_END()
