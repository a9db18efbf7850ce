// Stop strings: what is held back, where the output ends, pieces split anywhere, several strings.
#define BOOST_TEST_MODULE stop_strings
#include <boost/test/unit_test.hpp>

#include <string>
#include <vector>

#include "troupe/stop_strings.hpp"

using troupe::stop_strings;

namespace {

/// Feeds `text` in pieces of `size` bytes; returns the output and whether a stop ended it.
std::pair<std::string, bool> run(const std::vector<std::string>& stops, const std::string& text,
                                 size_t size) {
  stop_strings s{stops};
  std::string out;
  for (size_t i = 0; i < text.size(); i += size) {
    auto step = s.feed(std::string_view{text}.substr(i, size));
    out += step.text;
    if (step.stopped) {
      auto after = s.feed("more");
      BOOST_TEST(after.text.empty());
      BOOST_TEST(after.stopped);
      BOOST_TEST(s.flush().empty());
      return {out, true};
    }
  }
  return {out + s.flush(), false};
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_output_ends_before_the_first_stop_string_however_it_is_split) {
  const std::string text = "Paris is the capital.\nUser: and Rome?";
  for (size_t size = 1; size <= text.size(); ++size) {
    BOOST_TEST_CONTEXT("pieces of " << size) {
      auto [out, stopped] = run({"\nUser:"}, text, size);
      BOOST_TEST(stopped);
      BOOST_TEST(out == "Paris is the capital.");
      // The earliest occurrence of any string wins, not the first string listed.
      auto [out2, stopped2] = run({"Rome", "capital"}, text, size);
      BOOST_TEST(stopped2);
      BOOST_TEST(out2 == "Paris is the ");
      auto [out3, stopped3] = run({"London"}, text, size);
      BOOST_TEST(!stopped3);
      BOOST_TEST(out3 == text);
    }
  }
}

BOOST_AUTO_TEST_CASE(only_a_possible_beginning_of_a_stop_string_is_held_back) {
  stop_strings s{{"</answer>", "", "STOP"}};
  BOOST_TEST(!s.empty());
  auto a = s.feed("42 </ans");
  BOOST_TEST(a.text == "42 ");  // "</ans" may begin "</answer>"
  BOOST_TEST(!a.stopped);
  auto b = s.feed("wer is wrong");  // it did not: all of it goes out, nothing is lost
  BOOST_TEST(b.text == "</answer is wrong");
  auto c = s.feed(" ST");
  BOOST_TEST(c.text == " ");
  auto d = s.feed("ST");  // "STST": the second "ST" may still begin "STOP"
  BOOST_TEST(d.text == "ST");
  BOOST_TEST(s.flush() == "ST");
  BOOST_TEST(!s.stopped());
}

BOOST_AUTO_TEST_CASE(a_stop_string_at_the_very_start_gives_empty_output) {
  auto [out, stopped] = run({"\n"}, "\nanything", 3);
  BOOST_TEST(stopped);
  BOOST_TEST(out.empty());
}

BOOST_AUTO_TEST_CASE(overlapping_stop_strings_end_at_the_earliest_complete_one) {
  // "abcd" is only begun when "bc" completes: the complete one decides.
  auto [out, stopped] = run({"abcd", "bc"}, "xabcz", 1);
  BOOST_TEST(stopped);
  BOOST_TEST(out == "xa");
}

BOOST_AUTO_TEST_CASE(without_stop_strings_everything_passes_straight_through) {
  stop_strings s{{"", ""}};
  BOOST_TEST(s.empty());
  auto a = s.feed("<tail");
  BOOST_TEST(a.text == "<tail");
  BOOST_TEST(s.flush().empty());
}
