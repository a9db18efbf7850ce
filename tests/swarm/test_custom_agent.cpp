// Custom agents written as coroutines: they plug into swarms, obey budgets, fail cleanly.
#define BOOST_TEST_MODULE custom_agent
#include <boost/test/unit_test.hpp>

#include "troupe_fixture.hpp"

using namespace troupe;
using troupe::testing::swarm_fixture;

namespace {

/// Calls echo, asks the model, and reports both.
task<std::string> echo_then_ask(agent_context& ctx, std::string prompt) {
  auto args = json::dump(json::object{{"text", "seen " + prompt}});
  auto seen = co_await ctx.call("echo", args);
  std::vector<chat_message> question{chat_message::user("judge " + prompt)};
  auto turn = co_await ctx.chat(std::move(question));
  co_return seen.content + " / " + turn.text;
}

/// Delegates to two workers one after the other, then fans out over three items.
task<std::string> manager(agent_context& ctx, std::string prompt) {
  auto a = co_await ctx.delegate("worker", "first " + prompt);
  auto b = co_await ctx.delegate("worker", "second " + prompt);
  std::vector<std::string> items{"x", "y", "z"};
  auto many = co_await ctx.fan_out("worker", "item {{item}}", std::move(items));
  std::string out = a.text + "|" + b.text;
  for (const auto& r : many) out += "|" + r.text;
  co_return out;
}

task<std::string> thrower(agent_context&, std::string) {
  throw std::runtime_error("boom");
  co_return "never";
}

task<std::string> greedy(agent_context& ctx, std::string) {
  for (int i = 0;; ++i) {
    auto r = co_await ctx.call("noop");
    if (r.is_error) co_return "stopped after " + std::to_string(i) + ": " + r.content;
  }
}

task<std::string> chatty(agent_context& ctx, std::string) {
  for (;;) {
    std::vector<chat_message> m{chat_message::user("again")};
    co_await ctx.chat(std::move(m));
  }
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(custom_agents, swarm_fixture)

BOOST_AUTO_TEST_CASE(a_custom_agent_calls_tools_and_the_model) {
  auto m = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "spawn_swarm", arguments = { agent = "checker", prompt_template = "{{item}}", items = ["p", "q"] } }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
match = "judge"
[[model.rules.turns]]
text = "fine"
)");
  swarm sw2{sys, m, registry};
  sw2.add_agent_type("checker", make_agent(echo_then_ask));
  agent_config orch;
  orch.name = "orchestrator";
  orch.system_prompt = "ORCH";
  orch.orchestrator = true;
  orch.tools = {"echo"};
  auto rep = sw2.run(orch, "go");
  BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
  auto out = json::parse(rep.result);
  const auto& entries = out.find("results")->as_array();
  BOOST_REQUIRE(entries.size() == 2u);
  BOOST_TEST(entries[0].find("result")->as_string() == "seen p / fine");
  BOOST_TEST(entries[1].find("result")->as_string() == "seen q / fine");
  BOOST_TEST(rep.tool_calls == 2u);
  // Orchestrator: 2 steps; each checker 1 step: critical = (1 + 1) + 1.
  BOOST_TEST(rep.critical_steps == 3u);
  BOOST_TEST(sw2.live_agents() == 0u);
}

BOOST_AUTO_TEST_CASE(a_custom_agent_delegates_and_fans_out) {
  auto m = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "assign_task", arguments = { agent = "manager", prompt = "job" } }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
[[model.rules.turns]]
text = "did {{prompt}}"
)");
  swarm sw2{sys, m, registry};
  sw2.add_agent_type("manager", make_agent(manager));
  agent_config orch;
  orch.name = "orchestrator";
  orch.system_prompt = "ORCH";
  orch.orchestrator = true;
  auto rep = sw2.run(orch, "go");
  BOOST_REQUIRE_MESSAGE(rep.ok(), rep.failure.render());
  BOOST_TEST(rep.result == "did first job|did second job|did item x|did item y|did item z");
  BOOST_TEST(rep.subagents == 6u);  // The manager and its five workers.
  // Manager: two sequential workers (1 + 1) then a parallel stage (1) = 3; orchestrator 1 + 3 + 1.
  BOOST_TEST(rep.critical_steps == 5u);
}

BOOST_AUTO_TEST_CASE(an_exception_in_a_custom_agent_is_a_failure_not_a_crash) {
  auto m = model(R"(
[model]
[[model.rules]]
[[model.rules.turns]]
tool_calls = [{ name = "assign_task", arguments = { agent = "thrower", prompt = "x" } }]
[[model.rules.turns]]
text = "{{tool_results}}"
)");
  swarm sw{sys, m, registry};
  sw.add_agent_type("thrower", make_agent(thrower));
  agent_config orch;
  orch.orchestrator = true;
  auto rep = sw.run(orch, "go");
  BOOST_REQUIRE(rep.ok());
  BOOST_TEST(rep.result.find("sub-agent 'thrower' failed") != std::string::npos, rep.result);
  BOOST_TEST(rep.result.find("boom") != std::string::npos, rep.result);
}

BOOST_AUTO_TEST_CASE(budgets_apply_to_custom_agents) {
  {
    budgets b;
    b.max_tool_calls = 7;
    auto m = model(R"(
[model]
[[model.rules]]
[[model.rules.turns]]
tool_calls = [{ name = "assign_task", arguments = { agent = "greedy", prompt = "x" } }]
[[model.rules.turns]]
text = "{{tool_results}}"
)");
    swarm sw2{sys, m, registry, b};
    sw2.add_agent_type("greedy", make_agent(greedy));
    agent_config orch;
    orch.orchestrator = true;
    orch.tools = {"noop"};
    auto rep = sw2.run(orch, "go");
    BOOST_REQUIRE(rep.ok());
    BOOST_TEST(rep.result.find("stopped after 7: tool-call budget exhausted") != std::string::npos,
               rep.result);
  }
  {
    budgets b;
    b.max_steps_per_agent = 4;
    auto m = model(R"(
[model]
[[model.rules]]
match = "ORCH"
[[model.rules.turns]]
tool_calls = [{ name = "assign_task", arguments = { agent = "chatty", prompt = "x" } }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
[[model.rules.turns]]
text = "more"
)");
    swarm sw{sys, m, registry, b};
    sw.add_agent_type("chatty", make_agent(chatty));
    agent_config orch;
    orch.system_prompt = "ORCH";
    orch.orchestrator = true;
    auto rep = sw.run(orch, "go");
    BOOST_REQUIRE(rep.ok());
    BOOST_TEST(rep.result.find("step budget (max_steps_per_agent = 4)") != std::string::npos,
               rep.result);
  }
}

BOOST_AUTO_TEST_SUITE_END()
