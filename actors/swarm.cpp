#include "troupe/swarm.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "caf/all.hpp"
#include "run_state.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"

namespace troupe {

namespace {

using clock = std::chrono::steady_clock;

/// How long to wait for the agents of a cancelled or finished run to quit.
constexpr std::chrono::seconds drain_timeout{30};

std::vector<tool_spec> resolve_tools(const std::vector<std::string>& names,
                                     const std::vector<tool_spec>& registered,
                                     std::string_view agent) {
  std::vector<tool_spec> out;
  for (const auto& name : names) {
    if (name == "*") return registered;
    auto it = std::find_if(registered.begin(), registered.end(),
                           [&](const tool_spec& s) { return s.name == name; });
    if (it == registered.end()) {
      std::string known;
      for (const auto& s : registered) known += (known.empty() ? "" : ", ") + s.name;
      throw error{errc::not_found,
                  fmt::format("agent '{}' asks for tool '{}', which is not registered; registered "
                              "tools: {}",
                              agent, name, known.empty() ? std::string{"(none)"} : known)};
    }
    out.push_back(*it);
  }
  return out;
}

}  // namespace

std::string render_item_template(std::string_view tmpl, std::string_view item) {
  static constexpr std::string_view marker = "{{item}}";
  std::string out;
  out.reserve(tmpl.size() + item.size());
  size_t pos = 0;
  for (;;) {
    auto hit = tmpl.find(marker, pos);
    if (hit == std::string_view::npos) break;
    out.append(tmpl.substr(pos, hit - pos));
    out.append(item);
    pos = hit + marker.size();
  }
  out.append(tmpl.substr(pos));
  return out;
}

struct swarm::impl {
  caf::actor_system& sys;
  model_actor model;
  tool_registry_actor registry;
  budgets limits;
  std::map<std::string, agent_type_entry> agent_types;
  agent_config worker;
  bool has_worker = false;
  progress_observer observer;
  mutable std::mutex mtx;
  std::shared_ptr<run_state> current;

  impl(caf::actor_system& s, model_actor m, tool_registry_actor r, budgets b)
      : sys(s), model(std::move(m)), registry(std::move(r)), limits(b) {}

  std::shared_ptr<run_state> begin_run() {
    auto st = std::make_shared<run_state>(limits, observer);
    st->agent_types = agent_types;
    st->worker_template = worker;
    st->has_worker_template = has_worker;
    std::lock_guard<std::mutex> guard{mtx};
    current = st;
    return st;
  }

  std::vector<tool_spec> registered_tools(caf::scoped_actor& self) {
    std::vector<tool_spec> out;
    error failure;
    self->request(registry, std::chrono::seconds(30), list_atom::value)
      .receive([&](std::vector<tool_spec>& specs) { out = std::move(specs); },
               [&](caf::error& e) { failure = from_caf_error(e, "the tool registry"); });
    if (failure) throw failure;
    return out;
  }

  caf::duration run_timeout(const run_state& st) const {
    if (st.limits.deadline.count() <= 0) return caf::infinite;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st.deadline - clock::now());
    return caf::duration{std::max(left, std::chrono::milliseconds{1})};
  }

  void finish_report(run_state& st, run_report& rep) {
    if (!st.wait_drained(drain_timeout) && rep.ok())
      rep.failure = error{errc::internal, "agents of the run did not stop within 30 s"};
    rep.agents = st.reports();
    for (const auto& a : rep.agents) {
      rep.total_steps += a.steps;
      rep.tokens += a.tokens;
    }
    rep.tool_calls = st.tool_calls.load();
    rep.subagents = st.spawned_subagents.load();
    rep.peak_live_subagents = st.peak_live_subagents.load();
    rep.wall_ms = std::chrono::duration<double, std::milli>(clock::now() - st.started).count();
  }

  error deadline_error(const run_state& st) const {
    return error{errc::budget_exceeded,
                 fmt::format("deadline exceeded: the run did not finish within its deadline of "
                             "{} ms; raise the deadline or narrow the task",
                             st.limits.deadline.count())};
  }
};

swarm::swarm(caf::actor_system& sys, model_actor model, tool_registry_actor registry,
             budgets limits)
    : impl_(std::make_unique<impl>(sys, std::move(model), std::move(registry), limits)) {}

swarm::~swarm() {
  cancel();
  std::shared_ptr<run_state> st;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    st = impl_->current;
  }
  if (st) st->wait_drained(drain_timeout);
}

void swarm::add_agent_type(std::string name, agent_factory factory, std::string description) {
  impl_->agent_types[std::move(name)] = agent_type_entry{std::move(factory), std::move(description)};
}

void swarm::set_worker_template(agent_config worker) {
  impl_->worker = std::move(worker);
  impl_->has_worker = true;
}

void swarm::set_observer(progress_observer observer) { impl_->observer = std::move(observer); }

run_report swarm::run(const agent_config& root, std::string prompt) {
  auto st = impl_->begin_run();
  run_report rep;
  caf::scoped_actor self{impl_->sys};
  agent_env env;
  try {
    st->registered_tools = impl_->registered_tools(self);
    env.tool_specs = resolve_tools(root.tools, st->registered_tools, root.name);
    if (st->has_worker_template)
      resolve_tools(st->worker_template.tools, st->registered_tools, st->worker_template.name);
  } catch (const error& e) {
    rep.failure = e;
    impl_->finish_report(*st, rep);
    return rep;
  }
  env.config = root;
  env.model = impl_->model;
  env.registry = impl_->registry;
  env.run = st;
  env.id = st->next_agent_id.fetch_add(1);
  auto agent = spawn_agent(impl_->sys, std::move(env));
  self->request(agent, impl_->run_timeout(*st), run_atom::value, std::move(prompt))
    .receive(
      [&](agent_result& r) {
        rep.result = std::move(r.text);
        rep.failure = std::move(r.failure);
        rep.critical_steps = r.critical_steps;
      },
      [&](caf::error& e) {
        if (e == caf::sec::request_timeout && st->limits.deadline.count() > 0) {
          rep.failure = impl_->deadline_error(*st);
          st->cancel();
        } else {
          rep.failure = from_caf_error(e, fmt::format("agent '{}'", root.name));
        }
      });
  impl_->finish_report(*st, rep);
  return rep;
}

std::vector<agent_result> swarm::fan_out(const agent_config& worker,
                                         std::string_view prompt_template,
                                         const std::vector<std::string>& items,
                                         run_report* report) {
  auto st = impl_->begin_run();
  run_report rep;
  std::vector<agent_result> results(items.size());
  caf::scoped_actor self{impl_->sys};
  std::vector<tool_spec> specs;
  try {
    specs = resolve_tools(worker.tools, impl_->registered_tools(self), worker.name);
  } catch (const error& e) {
    for (auto& r : results) {
      r.agent = worker.name;
      r.failure = e;
    }
    rep.failure = e;
    impl_->finish_report(*st, rep);
    if (report) *report = std::move(rep);
    return results;
  }
  // The calling program plays the orchestrator (id 1): one stage, no model steps of its own.
  const uint64_t program_id = st->next_agent_id.fetch_add(1);
  std::vector<std::pair<size_t, agent_actor>> running;
  for (size_t k = 0; k < items.size(); ++k) {
    std::string why;
    if (!st->try_acquire_subagent(why)) {
      results[k].agent = worker.name;
      results[k].failure = error{errc::budget_exceeded, why};
      continue;
    }
    agent_env env;
    env.config = worker;
    env.model = impl_->model;
    env.registry = impl_->registry;
    env.tool_specs = specs;
    env.run = st;
    env.parent_id = program_id;
    // A registered custom agent type of that name runs instead of the built-in agent.
    auto custom = impl_->agent_types.find(worker.name);
    running.emplace_back(k, custom != impl_->agent_types.end()
                              ? custom->second.factory(impl_->sys, std::move(env))
                              : spawn_agent(impl_->sys, std::move(env)));
  }
  const auto timeout = impl_->run_timeout(*st);
  std::vector<caf::response_handle<caf::blocking_actor,
                                   caf::response_type_t<agent_actor::signatures, run_atom,
                                                        std::string>,
                                   true>>
    handles;
  for (auto& [k, a] : running)
    handles.push_back(
      self->request(a, timeout, run_atom::value, render_item_template(prompt_template, items[k])));
  uint32_t slowest = 0;
  for (size_t h = 0; h < handles.size(); ++h) {
    auto k = running[h].first;
    handles[h].receive(
      [&](agent_result& r) {
        slowest = std::max(slowest, r.critical_steps);
        results[k] = std::move(r);
      },
      [&](caf::error& e) {
        results[k].agent = worker.name;
        if (e == caf::sec::request_timeout && st->limits.deadline.count() > 0) {
          results[k].failure = impl_->deadline_error(*st);
          st->cancel();
        } else {
          results[k].failure = from_caf_error(e, fmt::format("sub-agent '{}'", worker.name));
        }
      });
  }
  rep.critical_steps = slowest;
  impl_->finish_report(*st, rep);
  if (report) *report = std::move(rep);
  return results;
}

void swarm::cancel() {
  std::shared_ptr<run_state> st;
  {
    std::lock_guard<std::mutex> guard{impl_->mtx};
    st = impl_->current;
  }
  if (st) st->cancel();
}

size_t swarm::live_agents() const {
  std::lock_guard<std::mutex> guard{impl_->mtx};
  return impl_->current ? impl_->current->live_count() : 0;
}

std::string run_report::to_json() const {
  json::array agent_list;
  for (const auto& a : agents) {
    json::object o;
    o.emplace_back("id", static_cast<int64_t>(a.id));
    o.emplace_back("parent", static_cast<int64_t>(a.parent_id));
    o.emplace_back("name", a.name);
    o.emplace_back("outcome", a.outcome);
    if (!a.error.empty()) o.emplace_back("error", a.error);
    o.emplace_back("steps", static_cast<int64_t>(a.steps));
    o.emplace_back("tool_calls", static_cast<int64_t>(a.tool_calls));
    o.emplace_back("critical_steps", static_cast<int64_t>(a.critical_steps));
    o.emplace_back("prompt_tokens", static_cast<int64_t>(a.tokens.prompt_tokens));
    o.emplace_back("completion_tokens", static_cast<int64_t>(a.tokens.completion_tokens));
    o.emplace_back("cached_prompt_tokens", static_cast<int64_t>(a.tokens.cached_prompt_tokens));
    o.emplace_back("wall_ms", a.wall_ms);
    agent_list.emplace_back(std::move(o));
  }
  json::object o;
  o.emplace_back("ok", ok());
  o.emplace_back("result", result);
  if (!ok()) o.emplace_back("error", failure.render());
  o.emplace_back("critical_steps", static_cast<int64_t>(critical_steps));
  o.emplace_back("total_steps", static_cast<int64_t>(total_steps));
  o.emplace_back("tool_calls", static_cast<int64_t>(tool_calls));
  o.emplace_back("subagents", static_cast<int64_t>(subagents));
  o.emplace_back("peak_live_subagents", static_cast<int64_t>(peak_live_subagents));
  o.emplace_back("prompt_tokens", static_cast<int64_t>(tokens.prompt_tokens));
  o.emplace_back("completion_tokens", static_cast<int64_t>(tokens.completion_tokens));
  o.emplace_back("cached_prompt_tokens", static_cast<int64_t>(tokens.cached_prompt_tokens));
  o.emplace_back("wall_ms", wall_ms);
  o.emplace_back("agents", std::move(agent_list));
  return json::dump(json::value{std::move(o)});
}

}  // namespace troupe
