// The swarm runtime end to end: fan-out at scale, budgets, cancellation, parallelism, critical
// steps, and model output that must never crash a run.
#define BOOST_TEST_MODULE swarm
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "troupe_fixture.hpp"

using namespace troupe;
using troupe::testing::swarm_fixture;

namespace {

std::string numbers(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += (out.empty() ? "" : ",") + std::to_string(i);
  return out;
}

/// An orchestrator that fans out `items` workers with one turn, then answers {{tool_results}}.
std::string fan_out_script(const std::string& items, const std::string& worker_turns) {
  return R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "spawn_swarm", arguments = '{"prompt_template": "task {{item}}", "items": [)" +
         items + R"(]}' }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
match = "task"
)" + worker_turns;
}

agent_config orchestrator() {
  agent_config c;
  c.name = "orchestrator";
  c.system_prompt = "ORCH";
  c.orchestrator = true;
  c.tools = {"*"};
  return c;
}

json::value parse_swarm_result(const std::string& text) { return json::parse(text, "swarm result"); }

}  // namespace

BOOST_FIXTURE_TEST_SUITE(swarm_runs, swarm_fixture)

BOOST_AUTO_TEST_CASE(hundred_subagents_make_1500_calls_and_every_result_arrives_once) {
  // Each worker makes 15 echo calls in one turn, then answers with all 15 results.
  std::string calls;
  for (int k = 0; k < 15; ++k)
    calls += std::string(k ? ", " : "") + "{ name = \"echo\", arguments = '{\"text\": \"{{prompt}}/" +
             std::to_string(k) + "\"}' }";
  auto m = model(fan_out_script(numbers(1, 100), "[[model.rules.turns]]\ntool_calls = [" + calls +
                                                    "]\n[[model.rules.turns]]\ntext = \"{{tool_results}}\"\n"));
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
  BOOST_TEST(rep.tool_calls == 1500u);
  BOOST_TEST(rep.subagents == 100u);
  BOOST_TEST(rep.agents.size() == 101u);
  auto result = parse_swarm_result(rep.result);
  BOOST_TEST(result.find("completed")->as_int() == 100);
  std::multiset<std::string> seen;
  for (const auto& e : result.find("results")->as_array()) {
    std::string text = e.find("result")->as_string();
    size_t pos = 0;
    while (pos <= text.size()) {
      auto nl = text.find('\n', pos);
      if (nl == std::string::npos) nl = text.size();
      seen.insert(text.substr(pos, nl - pos));
      pos = nl + 1;
    }
  }
  BOOST_TEST(seen.size() == 1500u);
  for (int i = 1; i <= 100; ++i)
    for (int k = 0; k < 15; ++k) {
      auto key = "task " + std::to_string(i) + "/" + std::to_string(k);
      BOOST_TEST(seen.count(key) == 1u, key);
    }
  BOOST_TEST(sw.live_agents() == 0u);
}

BOOST_AUTO_TEST_CASE(the_101st_live_subagent_gets_a_budget_error) {
  auto m = model(fan_out_script(numbers(1, 101), R"(
[[model.rules.turns]]
tool_calls = [{ name = "wait", arguments = { ms = 300 } }]
[[model.rules.turns]]
text = "done"
)"));
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE(rep.ok());
  auto result = parse_swarm_result(rep.result);
  BOOST_TEST(result.find("completed")->as_int() == 100);
  BOOST_TEST(result.find("failed")->as_int() == 1);
  int refused = 0;
  for (const auto& e : result.find("results")->as_array())
    if (e.find("outcome")->as_string() == "failed") {
      ++refused;
      auto err = e.find("error")->as_string();
      BOOST_TEST(err.find("budget_exceeded") != std::string::npos, err);
      BOOST_TEST(err.find("max_live_subagents = 100") != std::string::npos, err);
    }
  BOOST_TEST(refused == 1);
  BOOST_TEST(rep.peak_live_subagents == 100u);
}

BOOST_AUTO_TEST_CASE(the_1501st_tool_call_gets_a_budget_error) {
  std::string script = fan_out_script(numbers(1, 100), R"(
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 15
[[model.rules.turns]]
text = "done"
)");
  // After the fan-out the orchestrator tries one more call: the 1,501st.
  auto pos = script.find("[[model.rules.turns]]\ntext = \"{{tool_results}}\"");
  script.insert(pos, "[[model.rules.turns]]\ntool_calls = [{ name = \"noop\" }]\n");
  auto m = model(script);
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(rep.tool_calls == 1500u);
  BOOST_TEST(rep.result.find("tool-call budget exhausted") != std::string::npos, rep.result);
  BOOST_TEST(rep.result.find("max_tool_calls = 1500") != std::string::npos, rep.result);
}

BOOST_AUTO_TEST_CASE(cancel_mid_run_stops_every_agent) {
  auto m = model(fan_out_script(numbers(1, 50), R"(
[[model.rules.turns]]
tool_calls = [{ name = "wait", arguments = { ms = 60000 } }]
[[model.rules.turns]]
text = "done"
)"));
  swarm sw{sys, m, registry};
  std::mutex mtx;
  std::condition_variable cv;
  int waiting = 0;
  sw.set_observer([&](const progress_event& ev) {
    if (ev.what == progress_event::kind::tool_started && ev.detail == "wait") {
      std::lock_guard<std::mutex> g{mtx};
      ++waiting;
      cv.notify_all();
    }
  });
  run_report rep;
  std::thread runner{[&] { rep = sw.run(orchestrator(), "go"); }};
  {
    std::unique_lock<std::mutex> g{mtx};
    BOOST_REQUIRE(cv.wait_for(g, std::chrono::seconds(30), [&] { return waiting == 50; }));
  }
  BOOST_TEST(sw.live_agents() == 51u);
  sw.cancel();
  runner.join();
  BOOST_TEST(!rep.ok());
  BOOST_TEST(rep.failure.code() == errc::cancelled, rep.failure.render());
  // An agent leaves the live set only when its actor terminates (attach_functor), and run()
  // returns only once the live set is empty: so no actor of the run is left.
  BOOST_TEST(sw.live_agents() == 0u);
  size_t cancelled = 0;
  for (const auto& a : rep.agents) cancelled += a.outcome == "cancelled";
  BOOST_TEST(cancelled == 51u);
}

BOOST_AUTO_TEST_CASE(hundred_tool_calls_of_100ms_run_in_parallel) {
  auto m = model(fan_out_script(numbers(1, 100), R"(
[[model.rules.turns]]
tool_calls = [{ name = "wait", arguments = { ms = 100 } }]
[[model.rules.turns]]
text = "done"
)"));
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(parse_swarm_result(rep.result).find("completed")->as_int() == 100);
  // Serially this is 100 x 100 ms = 10 s. A wide margin: a quarter of that.
  BOOST_TEST(rep.wall_ms < 2500.0, "wall-clock " << rep.wall_ms << " ms");
  BOOST_TEST(rep.wall_ms >= 100.0);
}

BOOST_AUTO_TEST_CASE(nothing_the_model_says_crashes_the_run) {
  std::string text = R"(
[task]
goal = "g"
[model]
[[model.rules]]
[[model.rules.turns]]
tool_calls = [
  { name = "no_such_tool" },
  { name = "echo", arguments = '{"text": ' },
  { name = "echo", arguments = '{"txt": "x"}' },
  { name = "echo", arguments = '[1, 2]' },
  { id = "dup", name = "noop" },
  { id = "dup", name = "noop" },
  { id = "", name = "noop" },
  { name = "spawn_swarm", arguments = '{"items": "not an array"}' },
  { name = "assign_task", arguments = '{"agent": "ghost", "prompt": "boo"}' },
]
[[model.rules.turns]]
text = "{{tool_results}}"
)";
  // A call without a name cannot be written in a task file; add it to the parsed script.
  auto script = task(text).script;
  script.rules[0].turns[0].tool_calls.push_back(tool_call{"nameless", "", "{}"});
  script.rules[0].turns[0].tool_calls.push_back(tool_call{"bad\nid", "noop", "{}"});
  auto m = spawn_scripted_model(sys, script);
  models.push_back(m);
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
  const auto& r = rep.result;
  BOOST_TEST(r.find("unknown tool 'no_such_tool'") != std::string::npos, r);
  BOOST_TEST(r.find("not valid JSON") != std::string::npos, r);
  BOOST_TEST(r.find("missing required property 'text'") != std::string::npos, r);
  BOOST_TEST(r.find("must be a JSON object") != std::string::npos, r);
  BOOST_TEST(r.find("reuses the id 'dup'") != std::string::npos, r);
  BOOST_TEST(r.find("contains control characters") != std::string::npos, r);
  BOOST_TEST(r.find("no tool name given") != std::string::npos, r);
  BOOST_TEST(r.find("arguments of spawn_swarm do not match its schema") != std::string::npos, r);
  BOOST_TEST(r.find("no sub-agent named 'ghost'") != std::string::npos, r);
  // The first "dup" ran; the second did not.
  BOOST_TEST(rep.tool_calls == 5u);
}

BOOST_AUTO_TEST_CASE(an_agent_stops_at_its_step_budget) {
  auto m = model(fan_out_script("1", R"(
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 1000
)"));
  budgets b;
  b.max_steps_per_agent = 5;
  swarm sw{sys, m, registry, b};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(rep.result.find("step budget (max_steps_per_agent = 5)") != std::string::npos,
             rep.result);
}

BOOST_AUTO_TEST_CASE(a_run_stops_at_its_deadline) {
  auto m = model(fan_out_script("1,2", R"(
[[model.rules.turns]]
tool_calls = [{ name = "wait", arguments = { ms = 20000 } }]
)"));
  budgets b;
  b.deadline = std::chrono::milliseconds{300};
  swarm sw{sys, m, registry, b};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_TEST(!rep.ok());
  BOOST_TEST(rep.failure.code() == errc::budget_exceeded);
  BOOST_TEST(rep.failure.message().find("deadline") != std::string::npos, rep.failure.message());
  BOOST_TEST(rep.wall_ms < 10000.0);
  BOOST_TEST(sw.live_agents() == 0u);
}

BOOST_AUTO_TEST_CASE(critical_steps_sum_the_slowest_subagent_of_each_stage) {
  // Stage 1: orchestrator step + slowest of {1-step worker, 3-step worker}; stage 2: final answer.
  auto m = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [
  { name = "assign_task", arguments = { agent = "worker", prompt = "quick" } },
  { name = "assign_task", arguments = { agent = "worker", prompt = "slow" } },
]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
match = "quick"
[[model.rules.turns]]
text = "quick done"
[[model.rules]]
match = "slow"
[[model.rules.turns]]
tool_calls = [{ name = "noop" }]
repeat = 2
[[model.rules.turns]]
text = "slow done"
)");
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "go");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(rep.result == "quick done\nslow done");
  BOOST_TEST(rep.critical_steps == (1u + 3u) + 1u);
  BOOST_TEST(rep.total_steps == 2u + 1u + 3u);
}

BOOST_AUTO_TEST_CASE(cpp_fan_out_returns_results_in_item_order) {
  auto m = model(R"(
[model]
[[model.rules]]
[[model.rules.turns]]
tool_calls = [{ name = "echo", arguments = '{"text": "<{{prompt}}>"}' }]
[[model.rules.turns]]
text = "{{tool_results}}"
)");
  swarm sw{sys, m, registry};
  agent_config w;
  w.name = "w";
  w.tools = {"echo"};
  std::vector<std::string> items;
  for (int i = 0; i < 20; ++i) items.push_back("n" + std::to_string(i));
  run_report rep;
  auto results = sw.fan_out(w, "item {{item}}", items, &rep);
  BOOST_REQUIRE(results.size() == 20u);
  for (int i = 0; i < 20; ++i) {
    BOOST_TEST(results[i].ok());
    BOOST_TEST(results[i].text == "<item n" + std::to_string(i) + ">");
  }
  BOOST_TEST(rep.critical_steps == 2u);
  BOOST_TEST(rep.tool_calls == 20u);
}

BOOST_AUTO_TEST_CASE(unknown_tools_in_the_agent_config_are_refused_up_front) {
  auto m = model("[model]\n");
  swarm sw{sys, m, registry};
  agent_config c = orchestrator();
  c.tools = {"echo", "teleport"};
  auto rep = sw.run(c, "go");
  BOOST_TEST(rep.failure.code() == errc::not_found);
  BOOST_TEST(rep.failure.message().find("'teleport'") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

// A model that records what each agent was shown, to check that sub-agents see only their prompt.
namespace {

struct recorder {
  std::mutex mtx;
  std::vector<std::vector<chat_message>> requests;
};

model_actor::behavior_type recording_model(model_actor::pointer self, model_actor inner,
                                           std::shared_ptr<recorder> rec) {
  return {
    [=](chat_atom, const chat_request& req) {
      {
        std::lock_guard<std::mutex> g{rec->mtx};
        rec->requests.push_back(req.messages);
      }
      return self->delegate(inner, chat_atom::value, req);
    },
    [=](cancel_atom, uint64_t id) { self->send(inner, cancel_atom::value, id); },
  };
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_subagent_sees_only_its_own_prompt, swarm_fixture) {
  auto inner = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
text = "thinking out loud"
tool_calls = [{ name = "assign_task", arguments = { agent = "worker", prompt = "SUBTASK" } }]
[[model.rules.turns]]
text = "final: {{tool_results}}"
[[model.rules]]
match = "SUBTASK"
[[model.rules.turns]]
text = "sub answer"
)");
  auto rec = std::make_shared<recorder>();
  auto m = sys.spawn(recording_model, inner, rec);
  models.push_back(m);
  swarm sw{sys, m, registry};
  auto rep = sw.run(orchestrator(), "the secret goal");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(rep.result == "final: sub answer");
  std::lock_guard<std::mutex> g{rec->mtx};
  BOOST_REQUIRE(rec->requests.size() == 3u);
  bool found = false;
  for (const auto& msgs : rec->requests) {
    if (msgs.back().text() != "SUBTASK") continue;
    found = true;
    BOOST_TEST(msgs.size() == 1u);  // No system prompt for the default worker, no parent context.
    for (const auto& msg : msgs) BOOST_TEST(msg.text().find("secret") == std::string::npos);
  }
  BOOST_TEST(found);
}
