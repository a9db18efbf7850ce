// Run traces: a real swarm (the hello_swarm sample, scripted model) traced, written, parsed back and
// checked against the Trace Event Format rules Perfetto relies on and against the run report.
#define BOOST_TEST_MODULE trace
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "troupe/trace.hpp"
#include "troupe_fixture.hpp"

using namespace troupe;
using troupe::testing::swarm_fixture;

namespace {

/// One slice of the trace, times in integer nanoseconds (the file has µs with 3 decimals).
struct slice {
  std::string name;
  int64_t tid = 0;
  int64_t start = 0;
  int64_t end = 0;
  const json::value* args = nullptr;
};

int64_t ns(const json::value& micros) { return std::llround(micros.as_number() * 1000.0); }

std::string arg(const slice& s, const char* key) {
  const auto* v = s.args ? s.args->find(key) : nullptr;
  return v && v->is_string() ? v->as_string() : std::string{};
}

int64_t int_arg(const slice& s, const char* key) {
  const auto* v = s.args ? s.args->find(key) : nullptr;
  return v && v->is_int() ? v->as_int() : -1;
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

/// A parsed trace, with the checks every trace must pass applied while reading it.
struct parsed_trace {
  json::value doc;
  std::vector<slice> slices;
  std::map<int64_t, std::string> thread_names;
  std::vector<const json::value*> flows;

  explicit parsed_trace(const std::string& text) : doc(json::parse(text, "trace")) {
    const auto* events = doc.find("traceEvents");
    BOOST_REQUIRE(events && events->is_array());
    for (const auto& e : events->as_array()) {
      for (const char* key : {"ph", "ts", "pid", "tid", "name"})
        BOOST_REQUIRE_MESSAGE(e.find(key), "event without " << key << ": " << json::dump(e));
      BOOST_REQUIRE(e.find("ts")->is_number());
      BOOST_REQUIRE(e.find("ts")->as_number() >= 0);
      const auto& ph = e.find("ph")->as_string();
      const auto& name = e.find("name")->as_string();
      const auto tid = e.find("tid")->as_int();
      if (ph == "M") {
        if (name == "thread_name") {
          BOOST_TEST(thread_names.count(tid) == 0u, "two names for tid " << tid);
          thread_names[tid] = e.find("args")->find("name")->as_string();
        }
      } else if (ph == "X") {
        BOOST_REQUIRE(e.find("dur") && e.find("dur")->is_number());
        BOOST_TEST(e.find("dur")->as_number() >= 0);
        auto start = ns(*e.find("ts"));
        slices.push_back({name, tid, start, start + ns(*e.find("dur")), e.find("args")});
      } else if (ph == "s" || ph == "f") {
        BOOST_REQUIRE(e.find("id"));
        flows.push_back(&e);
      } else {
        BOOST_FAIL("unexpected phase " << ph);
      }
    }
  }

  std::vector<slice> named(std::string_view prefix) const {
    std::vector<slice> out;
    for (const auto& s : slices)
      if (starts_with(s.name, prefix)) out.push_back(s);
    return out;
  }

  /// Perfetto's rule: the slices of one track nest perfectly (no partial overlap).
  void check_nesting() const {
    std::map<int64_t, std::vector<slice>> by_tid;
    for (const auto& s : slices) by_tid[s.tid].push_back(s);
    for (auto& [tid, list] : by_tid) {
      BOOST_TEST(thread_names.count(tid) == 1u, "track " << tid << " has no thread_name");
      std::sort(list.begin(), list.end(), [](const slice& a, const slice& b) {
        return a.start != b.start ? a.start < b.start : a.end > b.end;
      });
      std::vector<const slice*> open;
      for (const auto& s : list) {
        while (!open.empty() && open.back()->end <= s.start) open.pop_back();
        if (!open.empty())
          BOOST_TEST(s.end <= open.back()->end,
                     s.name << " overlaps " << open.back()->name << " on track " << tid);
        open.push_back(&s);
      }
    }
  }
};

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

progress_event event(progress_event::kind k, uint64_t id, std::string agent, std::string detail,
                     std::chrono::steady_clock::time_point at, uint64_t tokens = 0) {
  progress_event ev;
  ev.what = k;
  ev.agent_id = id;
  ev.agent = std::move(agent);
  ev.detail = std::move(detail);
  ev.tokens = tokens;
  ev.at = at;
  return ev;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(traces, swarm_fixture)

BOOST_AUTO_TEST_CASE(hello_swarm_trace_has_a_track_per_agent_and_matches_the_report) {
  auto task = load_task_file(std::filesystem::path{TROUPE_SOURCE_DIR} / "samples" / "hello_swarm" /
                             "task.toml");
  auto m = spawn_scripted_model(sys, task.script);
  models.push_back(m);
  trace_options opts;
  opts.model = "scripted";
  trace_recorder trace{opts};
  run_report rep;
  {
    swarm sw{sys, m, registry, task.limits};
    sw.set_observer(trace.observer());
    if (task.has_worker) sw.set_worker_template(task.worker);
    rep = sw.run(task.orchestrator, task.goal);
  }
  BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
  BOOST_REQUIRE_EQUAL(rep.agents.size(), 5u);  // Orchestrator, checker, three greeters.

  auto path = std::filesystem::temp_directory_path() / "troupe_test_trace.json";
  trace.write(path.string());
  parsed_trace t{read_file(path)};
  std::filesystem::remove(path);
  t.check_nesting();

  // One invoke_agent slice and one track named "<agent>#<id>" per agent of the report.
  auto agents = t.named("invoke_agent ");
  BOOST_TEST(agents.size() == rep.agents.size());
  std::map<std::string, slice> agent_by_id;
  for (const auto& a : agents) {
    BOOST_TEST(arg(a, "gen_ai.operation.name") == "invoke_agent");
    BOOST_TEST(a.name == "invoke_agent " + arg(a, "gen_ai.agent.name"));
    BOOST_TEST(t.thread_names.at(a.tid) == arg(a, "gen_ai.agent.name") + "#" +
                                              arg(a, "gen_ai.agent.id"));
    agent_by_id[arg(a, "gen_ai.agent.id")] = a;
  }
  uint32_t report_calls = 0;
  for (const auto& r : rep.agents) {
    auto it = agent_by_id.find(std::to_string(r.id));
    BOOST_REQUIRE_MESSAGE(it != agent_by_id.end(), "no track for agent " << r.name);
    BOOST_TEST(arg(it->second, "gen_ai.agent.name") == r.name);
    BOOST_TEST(arg(it->second, "troupe.outcome") == r.outcome);
    BOOST_TEST(int_arg(it->second, "troupe.usage.total_tokens") ==
               static_cast<int64_t>(r.tokens.total()));
    report_calls += r.tool_calls;
  }

  // Model steps and tool calls: as many as the report counts, each inside its agent's slice.
  auto chats = t.named("chat ");
  auto tools = t.named("execute_tool ");
  BOOST_TEST(chats.size() == rep.total_steps);
  BOOST_TEST(tools.size() == report_calls);
  int64_t chat_tokens = 0;
  for (const auto& c : chats) {
    BOOST_TEST(c.name == "chat scripted");
    BOOST_TEST(arg(c, "gen_ai.operation.name") == "chat");
    BOOST_TEST(arg(c, "gen_ai.request.model") == "scripted");
    chat_tokens += std::max<int64_t>(0, int_arg(c, "troupe.usage.total_tokens"));
  }
  BOOST_TEST(chat_tokens == static_cast<int64_t>(rep.tokens.total()));
  std::multiset<std::string> tool_names;
  for (const auto& s : tools) {
    BOOST_TEST(arg(s, "gen_ai.operation.name") == "execute_tool");
    BOOST_TEST(s.name == "execute_tool " + arg(s, "gen_ai.tool.name"));
    BOOST_TEST(!s.args->find("gen_ai.tool.call.arguments"), "content recorded without asking");
    tool_names.insert(arg(s, "gen_ai.tool.name"));
  }
  BOOST_TEST(tool_names.count("create_subagent") == 1u);
  BOOST_TEST(tool_names.count("assign_task") == 1u);
  BOOST_TEST(tool_names.count("spawn_swarm") == 1u);
  BOOST_TEST(tool_names.count("wait") == 3u);
  BOOST_TEST(tool_names.count("echo") == 4u);
  for (const auto& group : {chats, tools}) {
    for (const auto& s : group) {
      // The agent that owns the track: the track's name starts with "<agent>#<id>".
      const auto& track = t.thread_names.at(s.tid);
      auto owner = std::find_if(agents.begin(), agents.end(), [&](const slice& a) {
        return starts_with(track, t.thread_names.at(a.tid));
      });
      BOOST_REQUIRE_MESSAGE(owner != agents.end(), "no agent owns track " << track);
      BOOST_TEST(arg(s, "gen_ai.agent.name") == arg(*owner, "gen_ai.agent.name"));
      BOOST_TEST(owner->start <= s.start, s.name << " starts before its agent");
      BOOST_TEST(s.end <= owner->end, s.name << " ends after its agent");
    }
  }
  // A greeter's echo and wait run at once, so one of them has a track of its own.
  BOOST_TEST(t.thread_names.size() > rep.agents.size());

  // A spawn arrow into every sub-agent, from a track of its parent.
  std::map<int64_t, int> starts, finishes;
  for (const auto* f : t.flows) {
    BOOST_TEST(f->find("cat")->as_string() == "spawn");
    (f->find("ph")->as_string() == "s" ? starts : finishes)[f->find("id")->as_int()]++;
  }
  BOOST_TEST(starts.size() == rep.subagents);
  BOOST_TEST(finishes.size() == rep.subagents);
  for (const auto& r : rep.agents) {
    if (r.parent_id == 0) continue;
    BOOST_TEST(finishes.count(static_cast<int64_t>(r.id)) == 1u, "no arrow into " << r.name);
  }
  // Each arrow leaves from the call that spawned the child: the innermost slice around its start.
  for (const auto* f : t.flows) {
    if (f->find("ph")->as_string() != "s") continue;
    const auto tid = f->find("tid")->as_int();
    const auto at = ns(*f->find("ts"));
    const slice* inner = nullptr;
    for (const auto& s : t.slices)
      if (s.tid == tid && s.start <= at && at <= s.end &&
          (!inner || s.end - s.start < inner->end - inner->start))
        inner = &s;
    BOOST_REQUIRE(inner);
    const auto& child = f->find("name")->as_string();
    BOOST_TEST(inner->name == (child == "spawn checker" ? "execute_tool assign_task"
                                                        : "execute_tool spawn_swarm"),
               child << " leaves from " << inner->name);
  }
}

BOOST_AUTO_TEST_CASE(spans_cut_off_by_the_agent_end_are_closed_and_marked) {
  trace_options opts;
  opts.model = "m";
  trace_recorder trace{opts};
  auto t0 = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
  auto at = [&](int ms) { return t0 + std::chrono::milliseconds(ms); };
  using k = progress_event::kind;
  trace.record(event(k::agent_started, 7, "solo", "", at(0)));
  trace.record(event(k::model_request, 7, "solo", "", at(1)));
  trace.record(event(k::model_reply, 7, "solo", "", at(3), 40));
  trace.record(event(k::tool_started, 7, "solo", "read", at(4)));
  trace.record(event(k::tool_started, 7, "solo", "read", at(4)));
  trace.record(event(k::tool_finished, 7, "solo", "read", at(6)));
  // A refused call reports only its finish: it started with the turn that asked for it.
  auto refused = event(k::tool_finished, 7, "solo", "fetch", at(5));
  refused.is_error = true;
  trace.record(refused);
  auto done = event(k::agent_finished, 7, "solo", "cancelled", at(10), 40);
  done.is_error = true;
  trace.record(done);
  BOOST_TEST(trace.size() == 8u);

  parsed_trace t{trace.to_json()};
  t.check_nesting();
  auto agent = t.named("invoke_agent solo");
  BOOST_REQUIRE_EQUAL(agent.size(), 1u);
  BOOST_TEST(arg(agent[0], "error.type") == "cancelled");
  BOOST_TEST(agent[0].end - agent[0].start == 10'000'000);
  auto chats = t.named("chat m");
  BOOST_REQUIRE_EQUAL(chats.size(), 1u);
  BOOST_TEST(chats[0].end - chats[0].start == 2'000'000);
  BOOST_TEST(int_arg(chats[0], "troupe.usage.total_tokens") == 40);

  auto reads = t.named("execute_tool read");
  BOOST_REQUIRE_EQUAL(reads.size(), 2u);
  std::sort(reads.begin(), reads.end(), [](auto& a, auto& b) { return a.end < b.end; });
  BOOST_TEST(reads[0].end - reads[0].start == 2'000'000);
  BOOST_TEST(!reads[0].args->find("troupe.unfinished"));
  BOOST_TEST(reads[1].end == agent[0].end);  // Still running when the agent was cancelled.
  BOOST_TEST(reads[1].args->find("troupe.unfinished")->as_bool());
  BOOST_TEST(reads[0].tid != reads[1].tid);  // They overlap: two tracks.

  auto fetch = t.named("execute_tool fetch");
  BOOST_REQUIRE_EQUAL(fetch.size(), 1u);
  BOOST_TEST(fetch[0].start == chats[0].end);
  BOOST_TEST(arg(fetch[0], "error.type") == "tool_error");
  BOOST_TEST(fetch[0].args->find("troupe.start_inferred")->as_bool());
  BOOST_TEST(t.thread_names.size() == 3u);  // solo#7 and two extra lanes for 3 overlapping calls.
  BOOST_TEST(t.thread_names.begin()->second == "solo#7");
}

BOOST_AUTO_TEST_CASE(an_unwritable_trace_file_is_an_io_error_naming_it) {
  trace_recorder trace;
  try {
    trace.write("/nonexistent-dir/trace.json");
    BOOST_FAIL("no error");
  } catch (const error& e) {
    BOOST_TEST(e.code() == errc::io_error);
    BOOST_TEST(e.message().find("/nonexistent-dir/trace.json") != std::string::npos);
  }
  parsed_trace empty{trace.to_json()};
  BOOST_TEST(empty.slices.empty());
}

BOOST_AUTO_TEST_SUITE_END()
