// CUDA-graph batch buckets: the smallest captured size that holds a step, padding rows that
// attention ignores (sequence length 0) and that are marked dead, steps that are too large.
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <vector>

#include "troupe/error.hpp"
#include "troupe/gpu/graph_buckets.hpp"

using troupe::gpu::graph_buckets;

BOOST_AUTO_TEST_SUITE(graph_buckets_suite)

BOOST_AUTO_TEST_CASE(smallest_size_that_holds_the_step) {
  const graph_buckets b({64, 8, 1, 8, 24});
  BOOST_TEST(b.sizes() == (std::vector<int64_t>{1, 8, 24, 64}), boost::test_tools::per_element());
  const std::vector<std::pair<int64_t, int64_t>> want = {
      {1, 1}, {2, 8}, {8, 8}, {9, 24}, {24, 24}, {25, 64}, {63, 64}, {64, 64}};
  for (auto [batch, bucket] : want) BOOST_TEST(b.bucket_for(batch) == bucket);
  BOOST_TEST(b.index_for(25) == 3u);
}

BOOST_AUTO_TEST_CASE(powers_of_two_up_to_a_largest) {
  BOOST_TEST(graph_buckets::powers_of_two(1).sizes() == (std::vector<int64_t>{1}),
             boost::test_tools::per_element());
  BOOST_TEST(graph_buckets::powers_of_two(48).sizes() ==
                 (std::vector<int64_t>{1, 2, 4, 8, 16, 32, 48}),
             boost::test_tools::per_element());
  BOOST_TEST(graph_buckets::powers_of_two(64).largest() == 64);
  // every batch up to the largest finds a bucket no more than twice its size
  const auto b = graph_buckets::powers_of_two(128);
  for (int64_t n = 1; n <= 128; ++n) {
    BOOST_TEST(b.bucket_for(n) >= n);
    BOOST_TEST(b.bucket_for(n) < 2 * n);
  }
}

BOOST_AUTO_TEST_CASE(bad_sizes_and_steps) {
  BOOST_CHECK_THROW(graph_buckets(std::vector<int64_t>{}), troupe::error);
  BOOST_CHECK_THROW(graph_buckets({4, 0}), troupe::error);
  BOOST_CHECK_THROW(graph_buckets::powers_of_two(0), troupe::error);
  const graph_buckets b({1, 8});
  try {
    (void)b.bucket_for(9);
    BOOST_FAIL("a step of 9 accepted");
  } catch (const troupe::error& e) {
    BOOST_TEST(e.code() == troupe::errc::budget_exceeded);
    BOOST_TEST(e.message().find("9 sequences exceeds the largest captured batch of 8") !=
               std::string::npos);
  }
  BOOST_CHECK_THROW((void)b.bucket_for(0), troupe::error);
}

BOOST_AUTO_TEST_CASE(padding_rows_are_masked) {
  const graph_buckets b({1, 4, 8});
  const std::vector<int32_t> tokens{11, 12, 13, 14, 15}, positions{0, 7, 3, 100, 2};
  const auto s = troupe::gpu::pad_step(b, tokens, positions);
  BOOST_TEST(s.bucket == 8);
  BOOST_TEST(s.tokens == (std::vector<int32_t>{11, 12, 13, 14, 15, 0, 0, 0}),
             boost::test_tools::per_element());
  BOOST_TEST(s.positions == (std::vector<int32_t>{0, 7, 3, 100, 2, 0, 0, 0}),
             boost::test_tools::per_element());
  BOOST_TEST(s.seq_lens == (std::vector<int32_t>{1, 8, 4, 101, 3, 0, 0, 0}),
             boost::test_tools::per_element());
  BOOST_TEST(s.live == (std::vector<uint8_t>{1, 1, 1, 1, 1, 0, 0, 0}),
             boost::test_tools::per_element());
  // an exact fit has no padding
  const auto f = troupe::gpu::pad_step(b, std::vector<int32_t>{5, 6, 7, 8},
                                       std::vector<int32_t>{1, 2, 3, 4});
  BOOST_TEST(f.bucket == 4);
  BOOST_TEST(f.live == (std::vector<uint8_t>{1, 1, 1, 1}), boost::test_tools::per_element());
  BOOST_CHECK_THROW(troupe::gpu::pad_step(b, tokens, std::vector<int32_t>{1, 2}), troupe::error);
  BOOST_CHECK_THROW(troupe::gpu::pad_step(b, std::vector<int32_t>{1}, std::vector<int32_t>{-1}),
                    troupe::error);
}

BOOST_AUTO_TEST_SUITE_END()
