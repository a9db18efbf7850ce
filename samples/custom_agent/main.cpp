// A custom agent written in C++ and plugged into a swarm.
//
// The orchestrator (driven by the deterministic scripted model) fans out one "fact_checker" per
// claim. fact_checker is not a model loop: it is C++ logic that looks the claim up with a tool,
// asks the model for a verdict, and answers in a fixed format. Run it:
//   build/release/samples/custom_agent/custom_agent
#include <iostream>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

namespace {

/// The custom agent: one tool call, one model step, a formatted answer.
troupe::task<std::string> fact_checker(troupe::agent_context& ctx, std::string claim) {
  // (g++ 12 miscompiles braced initialiser lists inside a co_await expression: build them first.)
  auto args = troupe::json::dump(troupe::json::object{{"text", "archive entry for: " + claim}});
  auto evidence = co_await ctx.call("echo", args);
  if (evidence.is_error) co_return "could not look up '" + claim + "': " + evidence.content;
  std::vector<troupe::chat_message> question{
    troupe::chat_message::system("You are a strict fact checker. Answer TRUE or FALSE."),
    troupe::chat_message::user("Claim: " + claim + "\nEvidence: " + evidence.content),
  };
  auto turn = co_await ctx.chat(std::move(question));
  co_return claim + " -> " + turn.text;
}

const char* script = R"(
[task]
goal = "Check three claims."
[model]
[[model.rules]]
match = "orchestrator"
[[model.rules.turns]]
tool_calls = [{ name = "spawn_swarm", arguments = { agent = "fact_checker", prompt_template = "{{item}}", items = ["water boils at 100 C at sea level", "the moon is made of cheese", "CAF is an actor framework"] } }]
[[model.rules.turns]]
text = "{{tool_results}}"
[[model.rules]]
match = "moon"
[[model.rules.turns]]
text = "FALSE"
[[model.rules]]
match = "fact checker"
[[model.rules.turns]]
text = "TRUE"
)";

}  // namespace

int main() {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = troupe::spawn_tool_registry(sys);
  troupe::register_builtin_tools(sys, registry, {"echo"});
  auto model = troupe::spawn_scripted_model(sys, troupe::parse_task(script, "sample").script);
  int code = 0;
  {
    troupe::swarm sw{sys, model, registry};
    sw.add_agent_type("fact_checker", troupe::make_agent(fact_checker),
                      "Checks one claim: tool lookup, then a model verdict");
    troupe::agent_config orchestrator;
    orchestrator.name = "orchestrator";
    orchestrator.system_prompt = "You are the orchestrator.";
    orchestrator.orchestrator = true;
    orchestrator.tools = {"echo"};
    auto report = sw.run(orchestrator, "Check three claims.");
    if (!report.ok()) {
      std::cerr << "custom_agent: " << report.failure.render() << "\n";
      code = 1;
    } else {
      auto swarm_result = troupe::json::parse(report.result, "the swarm's result");
      for (const auto& r : swarm_result.find("results")->as_array()) {
        const auto* text = r.find("result");
        std::cout << (text ? text->as_string() : "failed: " + r.find("error")->as_string()) << "\n";
      }
      std::cout << "agents: " << report.agents.size() << ", critical steps: "
                << report.critical_steps << ", tool calls: " << report.tool_calls << "\n";
    }
  }
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  return code;
}
