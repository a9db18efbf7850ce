// The live view of `troupe run`: states, row limit, totals, colour and width, fed with progress
// events directly (the pseudo-terminal test tools/tests/live_view_pty.py runs the real command).
#define BOOST_TEST_MODULE live_view
#include <boost/test/unit_test.hpp>

#include <cstdio>
#include <string>

#include "cli/live_view.hpp"

using namespace troupe;
using troupe::cli::live_view;
using troupe::cli::live_view_options;
using clock_type = std::chrono::steady_clock;

namespace {

progress_event event(progress_event::kind k, uint64_t id, std::string detail = {},
                     uint64_t tokens = 0, uint64_t parent = 0) {
  progress_event ev;
  ev.what = k;
  ev.agent_id = id;
  ev.parent_id = parent;
  ev.agent = id == 1 ? "orchestrator" : "worker";
  ev.detail = std::move(detail);
  ev.tokens = tokens;
  ev.at = clock_type::now();
  return ev;
}

live_view_options plain_options(size_t rows = 12, size_t width = 100) {
  live_view_options o;
  o.color = false;
  o.max_rows = rows;
  o.width = width;
  return o;
}

/// The row of agent `who` ("worker#3"), or "" when it is not shown.
std::string row(const std::vector<std::string>& lines, const std::string& who) {
  for (const auto& l : lines)
    if (l.compare(0, who.size() + 1, who + " ") == 0) return l;
  return {};
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

BOOST_AUTO_TEST_CASE(rows_follow_each_agent_through_its_states) {
  live_view view{stderr, plain_options()};
  auto obs = view.observer();
  using k = progress_event::kind;
  obs(event(k::agent_started, 1));
  obs(event(k::model_request, 1));
  obs(event(k::agent_started, 2, {}, 0, 1));
  auto lines = view.render(clock_type::now());
  BOOST_TEST(has(row(lines, "orchestrator#1"), " thinking "));
  BOOST_TEST(has(row(lines, "worker#2"), " starting "));
  BOOST_TEST(has(row(lines, "orchestrator#1"), " 1 sub-agent "));

  obs(event(k::model_reply, 2, {}, 30));
  obs(event(k::tool_started, 2, "echo"));
  obs(event(k::tool_started, 2, "wait"));
  lines = view.render(clock_type::now());
  BOOST_TEST(has(row(lines, "worker#2"), " tools "));
  BOOST_TEST(has(row(lines, "worker#2"), " wait +1 "));
  BOOST_TEST(has(lines.back(), "2 live agents, 0 done | 2 tool calls in flight, 0 done | 30 tokens"));

  obs(event(k::tool_finished, 2, "wait"));
  lines = view.render(clock_type::now());
  BOOST_TEST(has(row(lines, "worker#2"), " echo "));
  BOOST_TEST(has(lines.back(), "1 tool calls in flight, 1 done"));
  obs(event(k::tool_finished, 2, "echo"));
  obs(event(k::tool_finished, 1, "spawn_swarm"));  // No start: not a registry call.
  obs(event(k::agent_finished, 2, "failed", 30, 1));
  lines = view.render(clock_type::now());
  BOOST_TEST(has(row(lines, "worker#2"), " failed "));
  BOOST_TEST(has(lines.back(), "1 live agents, 1 done | 0 tool calls in flight, 2 done | 30 tokens"));
  for (const auto& l : lines) BOOST_TEST(!has(l, "\x1b"), "colour although off: " << l);
}

BOOST_AUTO_TEST_CASE(at_most_max_rows_agents_live_ones_first_and_the_rest_counted) {
  live_view view{stderr, plain_options(4)};
  auto obs = view.observer();
  using k = progress_event::kind;
  for (uint64_t id = 2; id <= 21; ++id) obs(event(k::agent_started, id, {}, 0, 1));
  for (uint64_t id = 2; id <= 18; ++id) obs(event(k::agent_finished, id, "completed"));
  auto lines = view.render(clock_type::now());
  BOOST_REQUIRE_EQUAL(lines.size(), 1u + 4u + 1u + 1u);  // Header, rows, "... and", totals.
  BOOST_TEST(has(lines[0], "AGENT"));
  for (const char* live : {"worker#19", "worker#20", "worker#21"})
    BOOST_TEST(has(row(lines, live), " starting "), live << " not shown");
  BOOST_TEST(lines[5] == "... and 16 more (0 live)");
  BOOST_TEST(has(lines[6], "3 live agents, 17 done"));
}

BOOST_AUTO_TEST_CASE(colour_and_width) {
  auto opts = plain_options(12, 40);
  opts.color = true;
  live_view view{stderr, opts};
  auto obs = view.observer();
  obs(event(progress_event::kind::agent_started, 1));
  obs(event(progress_event::kind::agent_finished, 1, "completed"));
  auto lines = view.render(clock_type::now());
  auto r = row(lines, "orchestrator#1");
  BOOST_TEST(has(r, "\x1b[32mdone"));
  for (const auto& l : lines) {
    size_t cols = 0;
    for (size_t i = 0; i < l.size(); ++i) {
      if (l[i] == '\x1b') {
        while (i < l.size() && l[i] != 'm') ++i;
        continue;
      }
      if ((static_cast<unsigned char>(l[i]) & 0xc0) != 0x80) ++cols;
    }
    BOOST_TEST(cols <= 39u, "line wider than the terminal: " << l);
  }
}

BOOST_AUTO_TEST_CASE(stop_draws_the_final_state_once_and_only_after_start) {
  std::FILE* out = std::tmpfile();
  BOOST_REQUIRE(out);
  {
    live_view idle{out, plain_options()};
    idle.stop();  // Never started: draws nothing.
  }
  BOOST_TEST(std::ftell(out) == 0);
  {
    live_view view{out, plain_options()};
    auto obs = view.observer();
    view.start();
    obs(event(progress_event::kind::agent_started, 1));
    obs(event(progress_event::kind::agent_finished, 1, "completed", 12));
    view.stop();
    view.stop();
  }
  std::string text(static_cast<size_t>(std::ftell(out)), '\0');
  std::rewind(out);
  BOOST_REQUIRE(std::fread(text.data(), 1, text.size(), out) == text.size());
  std::fclose(out);
  // The last frame is the final state: one agent, done, no agent live.
  auto last = text.rfind("AGENT");
  BOOST_REQUIRE(last != std::string::npos);
  auto final_frame = text.substr(last);
  BOOST_TEST(has(final_frame, "orchestrator#1"));
  BOOST_TEST(has(final_frame, " done "));
  BOOST_TEST(has(final_frame, "0 live agents, 1 done"));
  BOOST_TEST(final_frame.back() == '\n');
}
