// latent_page_table: pages lent and returned, all-or-nothing growth, out-of-pages refusals that
// change nothing, cache slots, block tables and the padded inputs of a captured step.
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <set>

#include "troupe/error.hpp"
#include "troupe/gpu/latent_page_table.hpp"

using troupe::errc;
using troupe::gpu::graph_buckets;
using troupe::gpu::latent_page_table;
using troupe::gpu::pack_decode_step;

namespace {

template <class F>
std::string error_of(F f, errc code) {
  try {
    f();
  } catch (const troupe::error& e) {
    BOOST_CHECK_MESSAGE(e.code() == code, "code " << to_string(e.code()) << ": " << e.message());
    return e.message();
  }
  BOOST_FAIL("no error thrown");
  return {};
}

}  // namespace

BOOST_AUTO_TEST_SUITE(latent_page_table_tests)

BOOST_AUTO_TEST_CASE(sequences_of_different_lengths_get_disjoint_pages) {
  latent_page_table t(10, 4);  // 9 pages to lend
  BOOST_CHECK_EQUAL(t.free_pages(), 9);
  const uint32_t a = t.open(), b = t.open(), c = t.open();
  const std::vector<uint32_t> seqs{a, b, c};
  const std::vector<int64_t> lengths{1, 64, 65};  // 1, 1 and 2 pages
  t.reserve(seqs, lengths);
  BOOST_CHECK_EQUAL(t.pages_of(a).size(), 1u);
  BOOST_CHECK_EQUAL(t.pages_of(b).size(), 1u);
  BOOST_CHECK_EQUAL(t.pages_of(c).size(), 2u);
  BOOST_CHECK_EQUAL(t.reserved(c), 128);
  BOOST_CHECK_EQUAL(t.free_pages(), 5);
  std::set<int32_t> all;
  for (uint32_t s : seqs)
    for (int32_t p : t.pages_of(s)) {
      BOOST_CHECK_NE(p, latent_page_table::scratch_page);
      BOOST_CHECK(p > 0 && p < 10);
      BOOST_CHECK(all.insert(p).second);  // never lent twice
    }
  // Growing never shrinks and only adds what is missing.
  const std::vector<uint32_t> one{c};
  const std::vector<int64_t> shorter{3};
  t.reserve(one, shorter);
  BOOST_CHECK_EQUAL(t.pages_of(c).size(), 2u);
  const std::vector<int64_t> longer{129};
  t.reserve(one, longer);
  BOOST_CHECK_EQUAL(t.pages_of(c).size(), 3u);
  BOOST_CHECK_EQUAL(t.free_pages(), 4);
  // Slots: page · 64 + pos % 64.
  BOOST_CHECK_EQUAL(t.slot(c, 0), t.pages_of(c)[0] * 64);
  BOOST_CHECK_EQUAL(t.slot(c, 70), t.pages_of(c)[1] * 64 + 6);
  BOOST_CHECK_EQUAL(t.slot(c, 128), t.pages_of(c)[2] * 64);
  error_of([&] { (void)t.slot(c, 192); }, errc::invalid_argument);
  error_of([&] { (void)t.slot(a, -1); }, errc::invalid_argument);
  // Closing returns the pages; they are lent again.
  t.close(c);
  BOOST_CHECK_EQUAL(t.free_pages(), 7);
  BOOST_CHECK(!t.contains(c));
  error_of([&] { (void)t.reserved(c); }, errc::invalid_argument);
  const uint32_t d = t.open();
  const std::vector<uint32_t> dd{d};
  const std::vector<int64_t> seven{7 * 64 - 10};
  BOOST_CHECK_EXCEPTION(t.reserve(dd, seven), troupe::error,
                        [](const troupe::error& e) { return e.code() == errc::budget_exceeded; });
  const std::vector<int64_t> four{4 * 64};
  t.reserve(dd, four);
  BOOST_CHECK_EQUAL(t.free_pages(), 3);
  t.close(12345);  // unknown: ignored
}

BOOST_AUTO_TEST_CASE(out_of_pages_is_refused_with_the_counts_and_nothing_changes) {
  latent_page_table t(4, 8);  // 3 pages to lend
  const uint32_t a = t.open(), b = t.open();
  const std::vector<uint32_t> seqs{a, b};
  const std::vector<int64_t> fits{64, 128};
  t.reserve(seqs, fits);
  BOOST_CHECK_EQUAL(t.free_pages(), 0);
  const std::vector<int64_t> too_many{65, 128};  // a needs one more page: none is free
  const auto msg = error_of([&] { t.reserve(seqs, too_many); }, errc::budget_exceeded);
  BOOST_CHECK_NE(msg.find("needs 1 more latent-cache pages but only 0 of 3 are free"), std::string::npos);
  BOOST_CHECK_NE(msg.find("close finished sequences"), std::string::npos);
  BOOST_CHECK_EQUAL(t.pages_of(a).size(), 1u);  // all or nothing
  BOOST_CHECK_EQUAL(t.pages_of(b).size(), 2u);
  // A length beyond a block-table row is refused whatever is free.
  latent_page_table u(100, 2);
  const uint32_t c = u.open();
  const std::vector<uint32_t> cc{c};
  const std::vector<int64_t> long_one{129};
  const auto msg2 = error_of([&] { u.reserve(cc, long_one); }, errc::budget_exceeded);
  BOOST_CHECK_NE(msg2.find("more than the 128 a block-table row holds"), std::string::npos);
  BOOST_CHECK(u.pages_of(c).empty());
  // Bad arguments.
  error_of([&] { latent_page_table(1, 4); }, errc::invalid_argument);
  error_of([&] { latent_page_table(8, 0); }, errc::invalid_argument);
  const std::vector<uint32_t> twice{c, c};
  const std::vector<int64_t> two{1, 1};
  error_of([&] { u.reserve(twice, two); }, errc::invalid_argument);
  const std::vector<uint32_t> unknown{77};
  const std::vector<int64_t> one{1};
  error_of([&] { u.reserve(unknown, one); }, errc::invalid_argument);
  error_of([&] { u.reserve(cc, two); }, errc::invalid_argument);
  const std::vector<int64_t> negative{-1};
  error_of([&] { u.reserve(cc, negative); }, errc::invalid_argument);
}

BOOST_AUTO_TEST_CASE(a_step_is_padded_to_its_bucket_with_scratch_rows) {
  latent_page_table t(16, 3);
  const uint32_t a = t.open(), b = t.open(), c = t.open();
  const std::vector<uint32_t> seqs{a, b, c};
  const std::vector<int64_t> lengths{5, 70, 1};
  t.reserve(seqs, lengths);
  const graph_buckets buckets({1, 2, 4, 8});
  const std::vector<int32_t> tokens{11, 22, 33};
  const std::vector<int32_t> positions{4, 69, 0};
  const auto in = pack_decode_step(buckets, t, seqs, tokens, positions);
  BOOST_CHECK_EQUAL(in.rows.bucket, 4);  // 3 sequences run in the bucket of 4
  const std::vector<int32_t> want_tokens{11, 22, 33, 0}, want_pos{4, 69, 0, 0}, want_lens{5, 70, 1, 0};
  const std::vector<uint8_t> want_live{1, 1, 1, 0};
  BOOST_CHECK_EQUAL_COLLECTIONS(in.rows.tokens.begin(), in.rows.tokens.end(), want_tokens.begin(), want_tokens.end());
  BOOST_CHECK_EQUAL_COLLECTIONS(in.rows.positions.begin(), in.rows.positions.end(), want_pos.begin(), want_pos.end());
  BOOST_CHECK_EQUAL_COLLECTIONS(in.rows.seq_lens.begin(), in.rows.seq_lens.end(), want_lens.begin(), want_lens.end());
  BOOST_CHECK_EQUAL_COLLECTIONS(in.rows.live.begin(), in.rows.live.end(), want_live.begin(), want_live.end());
  const std::vector<int32_t> want_slots{t.pages_of(a)[0] * 64 + 4, t.pages_of(b)[1] * 64 + 5,
                                        t.pages_of(c)[0] * 64, 0};
  BOOST_CHECK_EQUAL_COLLECTIONS(in.slots.begin(), in.slots.end(), want_slots.begin(), want_slots.end());
  const std::vector<int32_t> want_table{t.pages_of(a)[0], 0, 0,  //
                                        t.pages_of(b)[0], t.pages_of(b)[1], 0,  //
                                        t.pages_of(c)[0], 0, 0,  //
                                        0, 0, 0};
  BOOST_CHECK_EQUAL_COLLECTIONS(in.block_table.begin(), in.block_table.end(), want_table.begin(), want_table.end());
  // One sequence: bucket 1, no padding.
  const std::vector<uint32_t> just_b{b};
  const std::vector<int32_t> tok{9}, pos{69};
  const auto one = pack_decode_step(buckets, t, just_b, tok, pos);
  BOOST_CHECK_EQUAL(one.rows.bucket, 1);
  BOOST_CHECK_EQUAL(one.block_table.size(), 3u);
  // A position the pages do not hold, a batch beyond the largest bucket, mismatched sizes.
  const std::vector<int32_t> beyond{128};  // b holds 2 pages: positions 0..127
  error_of([&] { (void)pack_decode_step(buckets, t, just_b, tok, beyond); }, errc::invalid_argument);
  std::vector<uint32_t> nine(9, a);
  std::vector<int32_t> nine_tok(9, 1), nine_pos(9, 0);
  error_of([&] { (void)pack_decode_step(buckets, t, nine, nine_tok, nine_pos); }, errc::budget_exceeded);
  error_of([&] { (void)pack_decode_step(buckets, t, seqs, tok, pos); }, errc::invalid_argument);
}

BOOST_AUTO_TEST_SUITE_END()
