#pragma once
// Shared test fixture: an actor system with troupe's types, a registry with the built-in tools,
// and scripted models built from TOML snippets in the task-file format.

#include <string>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

namespace troupe::testing {

struct swarm_fixture {
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  tool_registry_actor registry = spawn_tool_registry(sys);
  std::vector<model_actor> models;

  swarm_fixture() { register_builtin_tools(sys, registry); }

  ~swarm_fixture() {
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    for (auto& m : models) caf::anon_send_exit(m, caf::exit_reason::user_shutdown);
  }

  /// A task parsed from `toml` (which needs a [task] and a [model] section).
  static task_spec task(const std::string& toml) { return parse_task(toml, "test.toml"); }

  /// A scripted model from the [model] part of `toml` (a [task] is added when missing).
  model_actor model(const std::string& toml) {
    auto text = toml.find("[task]") == std::string::npos ? "[task]\ngoal = \"g\"\n" + toml : toml;
    auto m = spawn_scripted_model(sys, task(text).script);
    models.push_back(m);
    return m;
  }
};

}  // namespace troupe::testing
