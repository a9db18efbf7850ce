// The built-in agent: model -> all tool calls of the turn at once -> results in call order -> model
// ..., with orchestration tools that spawn sub-agents, and budgets checked at every step.

#include "troupe/agent.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "caf/all.hpp"
#include "orchestration.hpp"
#include "run_state.hpp"
#include "subagents.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"

namespace troupe {
namespace {

using clock = std::chrono::steady_clock;

/// A named sub-agent made by create_subagent.
struct subagent_template {
  agent_config config;
  std::vector<tool_spec> specs;
};

struct agent_state;
using agent_pointer = agent_actor::stateful_pointer<agent_state>;

struct agent_state {
  static inline const char* name = "troupe.agent";

  agent_pointer self = nullptr;
  agent_env env;
  // The conversation lives inside the (chat, chat_request) message sent to the model each step:
  // CAF messages are copy-on-write, so once the model has handled a request the agent owns the
  // only reference again and appends in place instead of copying the whole context every step.
  caf::message request_msg;
  std::vector<tool_spec> model_tools;           // What the model is told it may call.
  std::unordered_set<std::string> allowed;      // Registry tools it may call.
  std::map<std::string, subagent_template> templates;
  std::unordered_set<std::string> seen_ids;
  caf::typed_response_promise<agent_result> promise;
  // Whether the live sub-agent slot was given back (in finish, or at termination if it never ran).
  std::shared_ptr<std::atomic<bool>> slot_released = std::make_shared<std::atomic<bool>>(false);
  clock::time_point started;
  bool running = false;
  bool done = false;
  uint32_t steps = 0;
  uint32_t calls = 0;
  uint32_t critical = 0;
  usage tokens;
  uint64_t model_request = 0;  // Id of the model request in flight, 0 if none.

  // The stage in progress: the calls of the current turn and their results, in call order.
  std::vector<tool_call> stage_calls;
  std::vector<tool_result> stage_results;
  std::vector<std::string> stage_problems;  // Why a call's id was unusable; empty if it was fine.
  size_t stage_pending = 0;
  uint32_t stage_child_max = 0;
  std::unordered_map<uint64_t, agent_actor> children;

  explicit agent_state(agent_pointer s) : self(s) {}

  chat_request& request() { return request_msg.content().get_mutable_as<chat_request>(1); }
  std::vector<chat_message>& messages() { return request().messages; }

  const std::string& agent_name() const { return env.config.name; }

  uint32_t max_steps() const {
    return env.config.max_steps ? env.config.max_steps : env.run->limits.max_steps_per_agent;
  }

  void notify(progress_event::kind k, std::string detail = {}, bool is_error = false) {
    if (!env.run->observer) return;
    progress_event ev;
    ev.what = k;
    ev.detail = std::move(detail);
    ev.is_error = is_error;
    notify_progress(env, std::move(ev), steps, tokens.total());
  }

  /// A tool call starting (with its arguments) or finishing (with its result).
  void notify_call(const tool_call& call, const tool_result* result) {
    if (!env.run->observer) return;
    progress_event ev;
    ev.what = result ? progress_event::kind::tool_finished : progress_event::kind::tool_started;
    ev.detail = call.name;
    ev.call_id = call.id;
    if (result) {
      ev.result = result->content;
      ev.is_error = result->is_error;
    } else {
      ev.arguments = call.arguments;
    }
    notify_progress(env, std::move(ev), steps, tokens.total());
  }

  void notify_reply(const usage& turn_usage) {
    if (!env.run->observer) return;
    progress_event ev;
    ev.what = progress_event::kind::model_reply;
    ev.usage = turn_usage;
    notify_progress(env, std::move(ev), steps, tokens.total());
  }

  void start(std::string prompt) {
    running = true;
    started = clock::now();
    for (const auto& spec : env.tool_specs) allowed.insert(spec.name);
    model_tools = env.tool_specs;
    if (env.config.orchestrator) {
      auto orch = orchestration_tool_specs();
      model_tools.insert(model_tools.end(), orch.begin(), orch.end());
    }
    chat_request req;
    req.tools = model_tools;
    req.sampling = env.config.sampling;
    req.max_tokens = env.config.max_tokens_per_turn;
    if (!env.config.system_prompt.empty())
      req.messages.push_back(chat_message::system(env.config.system_prompt));
    req.messages.push_back(chat_message::user(std::move(prompt)));
    request_msg = caf::make_message(chat_atom::value, std::move(req));
    notify(progress_event::kind::agent_started);
    next_step();
  }

  void next_step() {
    std::string why;
    errc code = errc::none;
    if (env.run->stopped(why, code)) return finish_failed(error{code, why});
    if (steps >= max_steps())
      return finish_failed(error{
        errc::budget_exceeded,
        fmt::format("agent '{}' used its step budget (max_steps_per_agent = {}) without a final "
                    "answer; split the task into smaller ones or raise the budget",
                    agent_name(), max_steps())});
    model_request = env.run->next_request_id.fetch_add(1, std::memory_order_relaxed);
    request().id = model_request;
    notify(progress_event::kind::model_request);
    self->request(caf::actor_cast<caf::actor>(env.model), env.config.model_timeout, request_msg)
      .then([s = self](assistant_turn& turn) { s->state.on_turn(std::move(turn)); },
            [s = self](caf::error& e) {
              auto& st = s->state;
              st.model_request = 0;
              auto err = from_caf_error(e, fmt::format("the model of agent '{}'", st.agent_name()));
              st.finish_failed(error{err.code() == errc::cancelled ? errc::cancelled
                                                                    : errc::model_failed,
                                     err.message()});
            });
  }

  void on_turn(assistant_turn turn) {
    if (done) return;
    model_request = 0;
    ++steps;
    tokens += turn.usage;
    notify_reply(turn.usage);
    if (turn.finish == finish_reason::cancelled)
      return finish_failed(error{errc::cancelled, "the model request was cancelled"});
    std::string why;
    if (!env.run->add_tokens(turn.usage.total(), why))
      return finish_failed(error{errc::budget_exceeded, why});
    if (turn.tool_calls.empty()) {
      messages().push_back(chat_message::assistant(turn.text, {}, turn.reasoning));
      ++critical;
      return finish_ok(std::move(turn.text));
    }
    dispatch(std::move(turn));
  }

  /// Makes every call's id usable: non-empty, unique in this conversation, printable. Returns the
  /// problem with the original id, or an empty string.
  std::string fix_id(tool_call& call, size_t index) {
    std::string problem;
    if (call.id.empty()) {
      problem = "has no id";
    } else if (call.id.size() > 256 ||
               std::any_of(call.id.begin(), call.id.end(),
                           [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      problem = "has an id that is too long or contains control characters";
    } else if (seen_ids.count(call.id)) {
      problem = fmt::format("reuses the id '{}' of an earlier call", call.id);
    }
    if (!problem.empty()) {
      std::string fresh;
      for (uint32_t n = 0;; ++n) {
        fresh = n == 0 ? fmt::format("call_{}_{}", steps, index)
                       : fmt::format("call_{}_{}_{}", steps, index, n);
        if (!seen_ids.count(fresh)) break;
      }
      call.id = std::move(fresh);
    }
    seen_ids.insert(call.id);
    return problem;
  }

  void dispatch(assistant_turn turn) {
    stage_calls = std::move(turn.tool_calls);
    const size_t n = stage_calls.size();
    stage_problems.assign(n, std::string{});
    for (size_t i = 0; i < n; ++i) stage_problems[i] = fix_id(stage_calls[i], i);
    // The context records the calls with the ids their results will carry.
    messages().push_back(chat_message::assistant(turn.text, stage_calls, turn.reasoning));
    stage_results.assign(n, tool_result{});
    stage_pending = n;
    stage_child_max = 0;
    for (size_t i = 0; i < n; ++i) {
      if (done) return;
      dispatch_one(i);
    }
  }

  void dispatch_one(size_t i) {
    const auto& call = stage_calls[i];
    ++calls;
    notify_call(call, nullptr);
    if (!stage_problems[i].empty())
      return complete(i, tool_result::failure(
                           call.id, fmt::format("invalid tool call: the call to '{}' {}, so it was "
                                                "not run; call it again with a fresh, unique id",
                                                call.name, stage_problems[i])));
    if (call.name.empty())
      return complete(i, tool_result::failure(
                           call.id, "invalid tool call: no tool name given; name one of the "
                                    "available tools: " + available_tools()));
    std::string why;
    errc code = errc::none;
    if (env.run->stopped(why, code)) return complete(i, tool_result::failure(call.id, why));
    if (env.config.orchestrator && is_orchestration_tool(call.name)) return orchestrate(i);
    if (!allowed.count(call.name))
      return complete(i, tool_result::failure(
                           call.id, fmt::format("unknown tool '{}'; the available tools are: {}",
                                                call.name, available_tools())));
    if (!env.run->try_acquire_tool_call(why))
      return complete(i, tool_result::failure(call.id, why));
    self->request(env.registry, env.config.tool_timeout, invoke_atom::value, call)
      .then([s = self, i](tool_result& r) { s->state.complete(i, std::move(r)); },
            [s = self, i](caf::error& e) {
              auto& st = s->state;
              auto err = from_caf_error(
                e, fmt::format("the tool registry (call to '{}')", st.stage_calls[i].name));
              st.complete(i, tool_result::failure(st.stage_calls[i].id, err.message()));
            });
  }

  std::string available_tools() const {
    std::string out;
    for (const auto& spec : model_tools) {
      if (!out.empty()) out += ", ";
      out += spec.name;
    }
    return out.empty() ? std::string{"(none)"} : out;
  }

  void complete(size_t i, tool_result r) {
    if (done || i >= stage_results.size()) return;
    r.call_id = stage_calls[i].id;
    notify_call(stage_calls[i], &r);
    stage_results[i] = std::move(r);
    if (--stage_pending > 0) return;
    auto& context = messages();
    for (size_t k = 0; k < stage_calls.size(); ++k)
      context.push_back(chat_message::tool(stage_calls[k], stage_results[k]));
    critical += 1 + stage_child_max;
    stage_calls.clear();
    stage_results.clear();
    next_step();
  }

  // -- orchestration ------------------------------------------------------------------------------

  void orchestrate(size_t i) {
    const auto& call = stage_calls[i];
    json::value args;
    try {
      args = json::parse(call.arguments, fmt::format("arguments of {}", call.name));
      auto problem = json::validate(args, orchestration_schema(call.name));
      if (!problem.empty())
        throw error{errc::malformed_arguments,
                    fmt::format("arguments of {} do not match its schema: {}", call.name, problem)};
    } catch (const error& e) {
      return complete(i, tool_result::failure(call.id, e.message()));
    }
    if (call.name == "create_subagent") return create_subagent(i, args);
    if (call.name == "assign_task") return assign_task(i, args);
    return spawn_swarm(i, args);
  }

  void create_subagent(size_t i, const json::value& args) {
    subagent_template t;
    t.config.name = args.find("name")->as_string();
    t.config.system_prompt = args.find("system_prompt")->as_string();
    t.config.sampling = env.config.sampling;
    t.config.model_timeout = env.config.model_timeout;
    t.config.tool_timeout = env.config.tool_timeout;
    if (const auto* tools = args.find("tools")) {
      for (const auto& v : tools->as_array()) {
        const auto& name = v.as_string();
        if (is_orchestration_tool(name)) {
          t.config.orchestrator = true;
          continue;
        }
        if (!allowed.count(name))
          return complete(i, tool_result::failure(
                               stage_calls[i].id,
                               fmt::format("create_subagent: tool '{}' is not available to give; "
                                           "choose among: {}",
                                           name, available_tools())));
        t.config.tools.push_back(name);
      }
    } else {
      for (const auto& spec : env.tool_specs) t.config.tools.push_back(spec.name);
    }
    for (const auto& name : t.config.tools)
      for (const auto& spec : env.tool_specs)
        if (spec.name == name) t.specs.push_back(spec);
    const bool replaced = templates.count(t.config.name) > 0;
    auto msg = fmt::format("{} sub-agent '{}' with tools [{}]; give it work with assign_task",
                           replaced ? "replaced" : "created", t.config.name,
                           fmt::join(t.config.tools, ", "));
    templates[t.config.name] = std::move(t);
    complete(i, tool_result::ok(stage_calls[i].id, std::move(msg)));
  }

  /// Finds what to spawn for `name`: a template made by create_subagent, else a registered custom
  /// agent type or the worker template. Returns false with a message when there is none.
  bool resolve(const std::string& name, agent_env& child, const agent_factory** factory,
               std::string& why) {
    if (auto it = templates.find(name); it != templates.end()) {
      child.model = env.model;
      child.registry = env.registry;
      child.run = env.run;
      child.parent_id = env.id;
      child.config = it->second.config;
      child.tool_specs = it->second.specs;
      *factory = nullptr;
      return true;
    }
    std::string known;
    for (const auto& [n, t] : templates) known += (known.empty() ? "" : ", ") + n;
    return resolve_subagent(env, name, child, *factory, why, known);
  }

  /// Spawns one sub-agent and runs `prompt` on it; `done` gets its result (also on failure).
  /// Takes a live sub-agent slot first; on refusal calls `done` with a budget failure.
  template <class Done>
  void run_child(agent_env child, const agent_factory* factory, std::string prompt, Done done) {
    std::string why;
    auto child_name = child.config.name;
    agent_actor handle = spawn_subagent(self->system(), std::move(child), factory, why);
    if (!handle) {
      agent_result r;
      r.agent = child_name;
      r.failure = error{errc::budget_exceeded, why};
      return done(std::move(r));
    }
    auto child_id = handle->id();
    children.emplace(child_id, handle);
    self->request(handle, subagent_timeout(*env.run), run_atom::value, std::move(prompt))
      .then(
        [s = self, child_id, done](agent_result& r) mutable {
          s->state.children.erase(child_id);
          s->state.stage_child_max = std::max(s->state.stage_child_max, r.critical_steps);
          done(std::move(r));
        },
        [s = self, child_id, child_name, done](caf::error& e) mutable {
          s->state.children.erase(child_id);
          agent_result r;
          r.agent = child_name;
          r.failure = from_caf_error(e, fmt::format("sub-agent '{}'", child_name));
          done(std::move(r));
        });
  }

  void assign_task(size_t i, const json::value& args) {
    const auto& name = args.find("agent")->as_string();
    std::string prompt = args.find("prompt")->as_string();
    agent_env child;
    const agent_factory* factory = nullptr;
    std::string why;
    if (!resolve(name, child, &factory, why))
      return complete(i, tool_result::failure(stage_calls[i].id, why));
    run_child(std::move(child), factory, std::move(prompt), [s = self, i](agent_result r) {
      auto& st = s->state;
      if (st.done) return;
      auto id = st.stage_calls[i].id;
      st.complete(i, r.ok() ? tool_result::ok(id, std::move(r.text))
                            : tool_result::failure(
                                id, fmt::format("sub-agent '{}' failed: {}", r.agent,
                                                r.failure.render())));
    });
  }

  void spawn_swarm(size_t i, const json::value& args) {
    const auto& tmpl = args.find("prompt_template")->as_string();
    std::string agent_name;
    if (const auto* a = args.find("agent")) agent_name = a->as_string();
    const auto& items = args.find("items")->as_array();
    agent_env proto;
    const agent_factory* factory = nullptr;
    std::string why;
    if (!resolve(agent_name, proto, &factory, why))
      return complete(i, tool_result::failure(stage_calls[i].id, why));
    struct gather {
      std::vector<std::string> items;
      std::vector<agent_result> results;
      size_t pending = 0;
    };
    auto g = std::make_shared<gather>();
    g->results.resize(items.size());
    g->pending = items.size();
    for (const auto& item : items) g->items.push_back(item.is_string() ? item.as_string()
                                                                       : json::dump(item));
    for (size_t k = 0; k < items.size(); ++k) {
      if (done) return;
      auto prompt = render_item_template(tmpl, g->items[k]);
      run_child(proto, factory, std::move(prompt), [s = self, i, k, g](agent_result r) {
        g->results[k] = std::move(r);
        if (--g->pending > 0) return;
        auto& st = s->state;
        if (st.done) return;
        st.complete(i, swarm_result(st.stage_calls[i].id, g->items, g->results));
      });
    }
  }

  static tool_result swarm_result(const std::string& call_id, const std::vector<std::string>& items,
                                  const std::vector<agent_result>& results) {
    json::array entries;
    size_t completed = 0;
    for (size_t k = 0; k < items.size(); ++k) {
      const auto& r = results[k];
      json::object e;
      e.emplace_back("item", items[k]);
      e.emplace_back("agent", r.agent);
      e.emplace_back("outcome", r.ok() ? "completed" : "failed");
      if (r.ok()) {
        ++completed;
        e.emplace_back("result", r.text);
      } else {
        e.emplace_back("error", r.failure.render());
      }
      entries.emplace_back(std::move(e));
    }
    json::object out;
    out.emplace_back("completed", static_cast<int64_t>(completed));
    out.emplace_back("failed", static_cast<int64_t>(items.size() - completed));
    out.emplace_back("results", std::move(entries));
    tool_result res;
    res.call_id = call_id;
    res.content = json::dump(json::value{std::move(out)});
    res.is_error = completed == 0 && !items.empty();
    return res;
  }

  // -- the end --------------------------------------------------------------------------------------

  void finish_ok(std::string text) {
    agent_result r;
    r.text = std::move(text);
    finish(std::move(r));
  }

  void finish_failed(error e) {
    agent_result r;
    r.failure = std::move(e);
    finish(std::move(r));
  }

  void finish(agent_result r) {
    if (done) return;
    done = true;
    if (model_request != 0) {
      self->send(env.model, cancel_atom::value, model_request);
      model_request = 0;
    }
    for (auto& [id, child] : children) self->send(child, cancel_atom::value);
    children.clear();
    r.agent = agent_name();
    r.steps = steps;
    r.tool_calls = calls;
    r.critical_steps = critical;
    r.tokens = tokens;
    auto rep = make_agent_report(env, r, started);
    notify(progress_event::kind::agent_finished, rep.outcome, !r.ok());
    env.run->add_report(std::move(rep));
    // Free the slot before replying, so the parent may spawn again as soon as it hears back.
    release_slot();
    if (promise.pending()) promise.deliver(std::move(r));
    self->quit();
  }

  void release_slot() {
    if (!slot_released->exchange(true) && env.parent_id != 0) env.run->release_subagent();
  }
};

agent_actor::behavior_type agent_behavior(agent_pointer self, agent_env env) {
  auto& st = self->state;
  st.env = std::move(env);
  st.env.run->add_live(st.env.id, caf::actor_cast<caf::actor>(self));
  // However the actor ends (quit, exception, kill), its slot and live entry are given back.
  self->attach_functor([run = st.env.run, id = st.env.id, parent = st.env.parent_id,
                        released = st.slot_released] {
    if (!released->exchange(true) && parent != 0) run->release_subagent();
    run->remove_live(id);  // Last: the run counts as drained only once every actor has ended.
  });
  return {
    [self](run_atom, std::string& prompt) -> caf::result<agent_result> {
      auto& st = self->state;
      auto rp = self->make_response_promise<agent_result>();
      if (st.running) {
        rp.deliver(to_caf_error(
          error{errc::invalid_argument,
                fmt::format("agent '{}' is already running; spawn a new one", st.agent_name())}));
        return rp;
      }
      st.promise = rp;
      st.start(std::move(prompt));
      return rp;
    },
    [self](cancel_atom) {
      auto& st = self->state;
      if (!st.running) {
        self->quit();
        return;
      }
      st.finish_failed(error{errc::cancelled, fmt::format("agent '{}' was cancelled",
                                                          st.agent_name())});
    },
  };
}

}  // namespace

agent_actor spawn_agent(caf::actor_system& sys, agent_env env) {
  if (env.id == 0) env.id = env.run->next_agent_id.fetch_add(1, std::memory_order_relaxed);
  return sys.spawn(agent_behavior, std::move(env));
}

}  // namespace troupe
