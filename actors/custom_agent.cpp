// Custom agents: a C++20 coroutine driven by an agent actor. Every co_await issues a CAF request;
// its reply (handled on the actor) resumes the coroutine. Budgets and reports as for built-in
// agents.

#include "troupe/custom_agent.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "caf/all.hpp"
#include "run_state.hpp"
#include "subagents.hpp"
#include "troupe/caf_types.hpp"

namespace troupe {

namespace {
using clock = std::chrono::steady_clock;
struct custom_state;
using custom_pointer = agent_actor::stateful_pointer<custom_state>;
}  // namespace

struct agent_context::impl {
  agent_actor::pointer self = nullptr;  // The agent actor (its state is this object's owner).
  agent_env env;
  agent_body body;
  agent_context context{this};  // What the coroutine holds a reference to: lives with the agent.
  std::optional<task<std::string>> root;
  caf::typed_response_promise<agent_result> promise;
  std::shared_ptr<std::atomic<bool>> slot_released = std::make_shared<std::atomic<bool>>(false);
  std::unordered_map<uint64_t, agent_actor> children;
  clock::time_point started;
  bool running = false;
  bool done = false;
  uint32_t steps = 0;
  uint32_t calls = 0;
  uint32_t critical = 0;
  usage tokens;

  uint32_t max_steps() const {
    return env.config.max_steps ? env.config.max_steps : env.run->limits.max_steps_per_agent;
  }

  /// The failure that stops the agent before its next request, if any.
  std::optional<error> stop_reason() const {
    std::string why;
    errc code = errc::none;
    if (done) return error{errc::cancelled, "the agent has finished"};
    if (env.run->stopped(why, code)) return error{code, why};
    return std::nullopt;
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

  /// Called after the coroutine was resumed: finishes the agent once its coroutine is done.
  void after_resume() {
    if (done || !root || !root->handle().done()) return;
    agent_result r;
    try {
      r.text = root->await_resume();
    } catch (const error& e) {
      r.failure = e;
    } catch (const std::exception& e) {
      r.failure = error{errc::internal,
                        fmt::format("custom agent '{}' threw: {}", env.config.name, e.what())};
    }
    finish(std::move(r));
  }

  void start(std::string prompt) {
    running = true;
    started = clock::now();
    notify(progress_event::kind::agent_started);
    try {
      root.emplace(body(context, std::move(prompt)));
    } catch (const std::exception& e) {
      agent_result r;
      r.failure = error{errc::internal, fmt::format("custom agent '{}' failed to start: {}",
                                                    env.config.name, e.what())};
      return finish(std::move(r));
    }
    root->handle().resume();
    after_resume();
  }

  void finish(agent_result r) {
    if (done) return;
    done = true;
    for (auto& [id, child] : children) self->send(child, cancel_atom::value);
    children.clear();
    r.agent = env.config.name;
    r.steps = steps;
    r.tool_calls = calls;
    r.critical_steps = critical;
    r.tokens = tokens;
    auto rep = make_agent_report(env, r, started);
    notify(progress_event::kind::agent_finished, rep.outcome, !r.ok());
    env.run->add_report(std::move(rep));
    if (!slot_released->exchange(true) && env.parent_id != 0) env.run->release_subagent();
    if (promise.pending()) promise.deliver(std::move(r));
    root.reset();  // Destroys the suspended coroutine frame, if any; late replies are dropped.
    self->quit();
  }

  /// Spawns a sub-agent for `name` and calls `done` with its result (failures included).
  void run_child(const std::string& name, std::string prompt,
                 std::function<void(agent_result)> done) {
    agent_env child;
    const agent_factory* factory = nullptr;
    std::string why;
    agent_result failed;
    failed.agent = name;
    if (!resolve_subagent(env, name, child, factory, why)) {
      failed.failure = error{errc::not_found, why};
      return done(std::move(failed));
    }
    auto handle = spawn_subagent(self->system(), std::move(child), factory, why);
    if (!handle) {
      failed.failure = error{errc::budget_exceeded, why};
      return done(std::move(failed));
    }
    auto id = handle->id();
    children.emplace(id, handle);
    self->request(handle, subagent_timeout(*env.run), run_atom::value, std::move(prompt))
      .then(
        [this, id, done](agent_result& r) {
          children.erase(id);
          done(std::move(r));
        },
        [this, id, name, done](caf::error& e) {
          children.erase(id);
          agent_result r;
          r.agent = name;
          r.failure = from_caf_error(e, fmt::format("sub-agent '{}'", name));
          done(std::move(r));
        });
  }
};

namespace {

struct custom_state {
  static inline const char* name = "troupe.custom_agent";
  agent_context::impl core;
  explicit custom_state(custom_pointer self) { core.self = self; }
};

agent_actor::behavior_type custom_behavior(custom_pointer self, agent_env env, agent_body body) {
  auto& core = self->state.core;
  core.env = std::move(env);
  core.body = std::move(body);
  core.env.run->add_live(core.env.id, caf::actor_cast<caf::actor>(self));
  self->attach_functor([run = core.env.run, id = core.env.id, parent = core.env.parent_id,
                        released = core.slot_released] {
    if (!released->exchange(true) && parent != 0) run->release_subagent();
    run->remove_live(id);
  });
  return {
    [self](run_atom, std::string& prompt) -> caf::result<agent_result> {
      auto& core = self->state.core;
      auto rp = self->make_response_promise<agent_result>();
      if (core.running) {
        rp.deliver(to_caf_error(error{
          errc::invalid_argument,
          fmt::format("agent '{}' is already running; spawn a new one", core.env.config.name)}));
        return rp;
      }
      core.promise = rp;
      core.start(std::move(prompt));
      return rp;
    },
    [self](cancel_atom) {
      auto& core = self->state.core;
      if (!core.running) {
        self->quit();
        return;
      }
      agent_result r;
      r.failure = error{errc::cancelled, fmt::format("agent '{}' was cancelled", core.env.config.name)};
      core.finish(std::move(r));
    },
  };
}

}  // namespace

const std::string& agent_context::name() const { return impl_->env.config.name; }

const agent_env& agent_context::env() const { return impl_->env; }

request_awaiter<assistant_turn> agent_context::chat(std::vector<chat_message> messages,
                                                    bool offer_tools) {
  return chat_request_of(std::move(messages), offer_tools, {});
}

request_awaiter<assistant_turn> agent_context::chat_json(std::vector<chat_message> messages,
                                                         std::string json_schema) {
  return chat_request_of(std::move(messages), false, std::move(json_schema));
}

request_awaiter<assistant_turn> agent_context::chat_request_of(std::vector<chat_message> messages,
                                                               bool offer_tools,
                                                               std::string json_schema) {
  auto* core = impl_;
  return request_awaiter<assistant_turn>{
    [core, messages = std::move(messages), offer_tools, json_schema = std::move(json_schema)](
      std::function<void(assistant_turn)> on_value, std::function<void(error)> on_error) mutable {
      if (auto stop = core->stop_reason()) return on_error(*stop);
      if (core->steps >= core->max_steps())
        return on_error(error{errc::budget_exceeded,
                              fmt::format("agent '{}' used its step budget (max_steps_per_agent "
                                          "= {})",
                                          core->env.config.name, core->max_steps())});
      chat_request req;
      req.id = core->env.run->next_request_id.fetch_add(1, std::memory_order_relaxed);
      req.messages = std::move(messages);
      if (offer_tools) req.tools = core->env.tool_specs;
      req.response_schema = std::move(json_schema);
      req.sampling = core->env.config.sampling;
      req.max_tokens = core->env.config.max_tokens_per_turn;
      core->notify(progress_event::kind::model_request);
      core->self->request(core->env.model, core->env.config.model_timeout, chat_atom::value,
                          std::move(req))
        .then(
          [core, on_value, on_error](assistant_turn& turn) {
            ++core->steps;
            ++core->critical;
            core->tokens += turn.usage;
            core->notify_reply(turn.usage);
            std::string why;
            if (!core->env.run->add_tokens(turn.usage.total(), why))
              on_error(error{errc::budget_exceeded, why});
            else
              on_value(std::move(turn));
            core->after_resume();
          },
          [core, on_error](caf::error& e) {
            on_error(from_caf_error(e, fmt::format("the model of agent '{}'",
                                                   core->env.config.name)));
            core->after_resume();
          });
    }};
}

request_awaiter<tool_result> agent_context::call(std::string tool, std::string arguments) {
  auto* core = impl_;
  return request_awaiter<tool_result>{
    [core, tool = std::move(tool), arguments = std::move(arguments)](
      std::function<void(tool_result)> on_value, std::function<void(error)> on_error) mutable {
      if (auto stop = core->stop_reason()) return on_error(*stop);
      auto call_id = fmt::format("call_{}_{}", core->env.id, core->calls);
      ++core->calls;
      const auto& specs = core->env.tool_specs;
      if (std::none_of(specs.begin(), specs.end(),
                       [&](const tool_spec& s) { return s.name == tool; })) {
        std::string names;
        for (const auto& s : specs) names += (names.empty() ? "" : ", ") + s.name;
        return on_value(tool_result::failure(
          call_id, fmt::format("unknown tool '{}'; the available tools are: {}", tool,
                               names.empty() ? std::string{"(none)"} : names)));
      }
      std::string why;
      if (!core->env.run->try_acquire_tool_call(why))
        return on_value(tool_result::failure(call_id, why));
      tool_call call{call_id, tool, std::move(arguments)};
      core->notify_call(call, nullptr);
      tool_call named{call.id, call.name, {}};  // Names the call in the finish notification.
      core->self->request(core->env.registry, core->env.config.tool_timeout, invoke_atom::value,
                          std::move(call))
        .then(
          [core, call = named, on_value](tool_result& r) {
            core->notify_call(call, &r);
            on_value(std::move(r));
            core->after_resume();
          },
          [core, call = named, on_value](caf::error& e) {
            auto r = tool_result::failure(
              call.id, from_caf_error(e, fmt::format("the tool registry (call to '{}')", call.name))
                         .message());
            core->notify_call(call, &r);
            on_value(std::move(r));
            core->after_resume();
          });
    }};
}

request_awaiter<agent_result> agent_context::delegate(std::string agent, std::string prompt) {
  auto* core = impl_;
  return request_awaiter<agent_result>{
    [core, agent = std::move(agent), prompt = std::move(prompt)](
      std::function<void(agent_result)> on_value, std::function<void(error)> on_error) mutable {
      if (auto stop = core->stop_reason()) return on_error(*stop);
      ++core->calls;
      core->run_child(agent, std::move(prompt), [core, on_value](agent_result r) {
        core->critical += r.critical_steps;
        on_value(std::move(r));
        core->after_resume();
      });
    }};
}

request_awaiter<std::vector<agent_result>> agent_context::fan_out(std::string agent,
                                                                  std::string prompt_template,
                                                                  std::vector<std::string> items) {
  auto* core = impl_;
  return request_awaiter<std::vector<agent_result>>{
    [core, agent = std::move(agent), tmpl = std::move(prompt_template), items = std::move(items)](
      std::function<void(std::vector<agent_result>)> on_value,
      std::function<void(error)> on_error) mutable {
      if (auto stop = core->stop_reason()) return on_error(*stop);
      if (items.empty()) return on_value({});
      ++core->calls;
      struct gather {
        std::vector<agent_result> results;
        size_t pending = 0;
        uint32_t slowest = 0;
      };
      auto g = std::make_shared<gather>();
      g->results.resize(items.size());
      g->pending = items.size();
      for (size_t k = 0; k < items.size(); ++k)
        core->run_child(agent, render_item_template(tmpl, items[k]),
                        [core, g, k, on_value](agent_result r) {
                          g->slowest = std::max(g->slowest, r.critical_steps);
                          g->results[k] = std::move(r);
                          if (--g->pending > 0) return;
                          core->critical += g->slowest;
                          on_value(std::move(g->results));
                          core->after_resume();
                        });
    }};
}

agent_actor spawn_custom_agent(caf::actor_system& sys, agent_env env, agent_body body) {
  if (env.id == 0) env.id = env.run->next_agent_id.fetch_add(1, std::memory_order_relaxed);
  return sys.spawn(custom_behavior, std::move(env), std::move(body));
}

agent_factory make_agent(agent_body body) {
  return [body = std::move(body)](caf::actor_system& sys, agent_env env) {
    return spawn_custom_agent(sys, std::move(env), body);
  };
}

}  // namespace troupe
