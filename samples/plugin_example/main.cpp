// Loads the word_count plugin (built next to this program) into a running swarm, and has three
// workers call its tool in parallel: a scripted model plays the workers, so the output is exact.
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

int main() {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = troupe::spawn_tool_registry(sys);

  // Plugins load only from directories the program allows.
  troupe::plugin_options opts;
  opts.allowed_dirs = {std::filesystem::path{WORD_COUNT_PLUGIN}.parent_path()};
  auto loader = troupe::spawn_plugin_loader(sys, registry, opts);
  int status = 0;
  try {
    for (const auto& tool : troupe::load_plugin(sys, loader, WORD_COUNT_PLUGIN))
      std::cout << "loaded tool: " << tool << '\n';

    // Each worker calls count_words on its prompt, then answers with the tool's result.
    troupe::scripted_turn call_tool;
    call_tool.tool_calls.push_back({"", "count_words", R"({"text":"{{prompt}}"})"});
    troupe::scripted_turn answer;
    answer.text = "{{tool_results}}";
    troupe::model_script script;
    script.rules.push_back({"", {call_tool, answer}});
    auto model = troupe::spawn_scripted_model(sys, script);

    troupe::agent_config worker;
    worker.name = "counter";
    worker.tools = {"count_words"};
    {
      troupe::swarm s{sys, model, registry};
      std::vector<std::string> items = {"the quick brown fox", "a swarm of agents",
                                        "plugins load at run time"};
      auto results = s.fan_out(worker, "{{item}}", items);
      for (size_t i = 0; i < items.size(); ++i)
        std::cout << items[i] << " -> " << results[i].text << '\n';
    }
    troupe::unload_plugin(sys, loader, "word_count");
    std::cout << "unloaded word_count\n";
    caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  } catch (const troupe::error& e) {
    std::cerr << "plugin_example: " << e.render() << '\n';
    status = 1;
  }
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  return status;
}
