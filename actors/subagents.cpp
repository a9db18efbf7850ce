#include "subagents.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "caf/all.hpp"

namespace troupe {

bool resolve_subagent(const agent_env& parent, const std::string& name, agent_env& child,
                      const agent_factory*& factory, std::string& why, const std::string& known) {
  const auto& run = *parent.run;
  child.model = parent.model;
  child.registry = parent.registry;
  child.run = parent.run;
  child.parent_id = parent.id;
  factory = nullptr;
  if (auto it = run.agent_types.find(name); it != run.agent_types.end()) {
    child.config = agent_config{};
    child.config.name = name;
    child.config.sampling = parent.config.sampling;
    child.tool_specs = parent.tool_specs;
    for (const auto& spec : parent.tool_specs) child.config.tools.push_back(spec.name);
    factory = &it->second.factory;
    return true;
  }
  if (name.empty() || name == "worker") {
    agent_config c;
    if (run.has_worker_template) {
      c = run.worker_template;
    } else {
      c.name = "worker";
      for (const auto& spec : parent.tool_specs) c.tools.push_back(spec.name);
    }
    c.sampling = parent.config.sampling;
    child.config = std::move(c);
    // A configured worker template names its own tools; the default worker gets the parent's.
    const auto& pool = run.has_worker_template ? run.registered_tools : parent.tool_specs;
    const bool all = child.config.tools.size() == 1 && child.config.tools[0] == "*";
    child.tool_specs.clear();
    for (const auto& spec : pool)
      if (all || std::find(child.config.tools.begin(), child.config.tools.end(), spec.name) !=
                   child.config.tools.end())
        child.tool_specs.push_back(spec);
    return true;
  }
  std::string names = known;
  for (const auto& [n, t] : run.agent_types) names += (names.empty() ? "" : ", ") + n;
  names += (names.empty() ? "" : ", ") + std::string{"worker"};
  why = fmt::format("no sub-agent named '{}'; create it with create_subagent first (known: {})",
                    name, names);
  return false;
}

agent_actor spawn_subagent(caf::actor_system& sys, agent_env child, const agent_factory* factory,
                           std::string& why) {
  if (!child.run->try_acquire_subagent(why)) return {};
  child.id = child.run->next_agent_id.fetch_add(1, std::memory_order_relaxed);
  return factory ? (*factory)(sys, std::move(child)) : spawn_agent(sys, std::move(child));
}

std::chrono::milliseconds subagent_timeout(const run_state& run) {
  using namespace std::chrono;
  if (run.limits.deadline.count() <= 0) return duration_cast<milliseconds>(hours{24});
  return duration_cast<milliseconds>(run.deadline - steady_clock::now()) + seconds{5};
}

void notify_progress(const agent_env& env, progress_event ev, uint32_t steps, uint64_t tokens) {
  ev.agent_id = env.id;
  ev.parent_id = env.parent_id;
  ev.agent = env.config.name;
  ev.steps = steps;
  ev.tokens = tokens;
  env.run->notify(std::move(ev));
}

agent_report make_agent_report(const agent_env& env, const agent_result& r,
                               std::chrono::steady_clock::time_point started) {
  agent_report rep;
  rep.id = env.id;
  rep.parent_id = env.parent_id;
  rep.name = env.config.name;
  rep.outcome = r.ok() ? "completed"
                       : (r.failure.code() == errc::cancelled ? "cancelled" : "failed");
  if (!r.ok()) rep.error = r.failure.render();
  rep.steps = r.steps;
  rep.tool_calls = r.tool_calls;
  rep.critical_steps = r.critical_steps;
  rep.tokens = r.tokens;
  rep.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                          started).count();
  return rep;
}

}  // namespace troupe
