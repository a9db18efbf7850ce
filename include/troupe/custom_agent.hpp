#pragma once
/// Custom agents in C++: write an agent's logic as a coroutine that awaits the model, tools and
/// sub-agents, and plug it into a swarm. The coroutine runs inside a CAF actor: every co_await is
/// an asynchronous request, and the actor's thread is never blocked.
///
///   troupe::task<std::string> reviewer(troupe::agent_context& ctx, std::string prompt) {
///     auto hits = co_await ctx.call("grep", R"({"pattern": "TODO"})");
///     auto turn = co_await ctx.chat({troupe::chat_message::user("Summarise:\n" + hits.content)});
///     co_return turn.text;
///   }
///   swarm.add_agent_type("reviewer", troupe::make_agent(reviewer));
///
/// The runtime's budgets apply to custom agents exactly as to built-in ones: each chat() is a
/// step, each call() a budgeted tool call, each sub-agent a live sub-agent. A co_await throws
/// troupe::error when the run is cancelled, a budget is spent, or the model fails; an exception
/// that leaves the coroutine ends the agent with that error. Tool errors are not exceptions:
/// call() returns the tool_result, is_error included, as the model would see it.

#include <coroutine>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "troupe/agent.hpp"

namespace troupe {

template <class T>
class task;

namespace detail {

/// Resumes whoever awaits a finished task (symmetric transfer), or returns to the actor.
struct final_awaiter {
  std::coroutine_handle<> continuation;
  bool await_ready() const noexcept { return false; }
  template <class P>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<P>) noexcept {
    return continuation ? continuation : std::noop_coroutine();
  }
  void await_resume() const noexcept {}
};

template <class T>
struct task_promise {
  std::optional<T> value;
  std::exception_ptr failure;
  std::coroutine_handle<> continuation;

  task<T> get_return_object();
  std::suspend_always initial_suspend() noexcept { return {}; }
  final_awaiter final_suspend() noexcept { return {continuation}; }
  void return_value(T v) { value = std::move(v); }
  void unhandled_exception() { failure = std::current_exception(); }
};

}  // namespace detail

/// A lazily started coroutine producing T. Awaitable from another task; the root task of a custom
/// agent is started and driven by the agent actor.
template <class T>
class [[nodiscard]] task {
 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;

  explicit task(handle_type h) : h_(h) {}
  task(task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (h_) h_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
    h_.promise().continuation = awaiting;
    return h_;
  }
  T await_resume() {
    if (h_.promise().failure) std::rethrow_exception(h_.promise().failure);
    return std::move(*h_.promise().value);
  }

  /// For the driver: the coroutine handle.
  handle_type handle() const noexcept { return h_; }

 private:
  handle_type h_;
};

template <class T>
task<T> detail::task_promise<T>::get_return_object() {
  return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}

class agent_context;

/// An asynchronous request issued when awaited; resumes the coroutine with its answer.
template <class T>
class request_awaiter {
 public:
  using starter = std::function<void(std::function<void(T)>, std::function<void(error)>)>;

  explicit request_awaiter(starter start) : start_(std::move(start)) {}

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h);
  T await_resume() {
    if (failure_) throw *failure_;
    return std::move(*value_);
  }

 private:
  starter start_;
  std::optional<T> value_;
  std::optional<error> failure_;
};

/// What a custom agent can do. Valid only inside the agent's coroutine.
class agent_context {
 public:
  struct impl;
  explicit agent_context(impl* i) : impl_(i) {}

  /// The agent's name and its environment (configuration, run, tools it may call).
  const std::string& name() const;
  const agent_env& env() const;

  /// One model turn (one step) over `messages`. With `offer_tools`, the agent's tools are offered
  /// to the model; a turn's tool calls are returned, not executed: run them with call().
  request_awaiter<assistant_turn> chat(std::vector<chat_message> messages, bool offer_tools = false);

  /// One model turn whose text is JSON following `json_schema` (a JSON Schema text): the
  /// backend's response_schema, which the local engine enforces by constrained decoding.
  request_awaiter<assistant_turn> chat_json(std::vector<chat_message> messages,
                                            std::string json_schema);

  /// Calls one registry tool with JSON arguments. Returns its result, errors included.
  request_awaiter<tool_result> call(std::string tool, std::string arguments = "{}");

  /// Runs one sub-agent (a registered agent type, or "worker") on `prompt`.
  request_awaiter<agent_result> delegate(std::string agent, std::string prompt);

  /// Runs one sub-agent per item in parallel ("{{item}}" in the template); results in item order.
  request_awaiter<std::vector<agent_result>> fan_out(std::string agent, std::string prompt_template,
                                                     std::vector<std::string> items);

 private:
  request_awaiter<assistant_turn> chat_request_of(std::vector<chat_message> messages,
                                                  bool offer_tools, std::string json_schema);
  impl* impl_;
};

template <class T>
void request_awaiter<T>::await_suspend(std::coroutine_handle<> h) {
  // The callbacks run later, on the agent actor; it resumes the coroutine, and afterwards checks
  // whether the agent's coroutine has finished.
  start_([this, h](T v) {
           value_ = std::move(v);
           h.resume();
         },
         [this, h](error e) {
           failure_ = std::move(e);
           h.resume();
         });
}

/// The logic of a custom agent.
using agent_body = std::function<task<std::string>(agent_context& ctx, std::string prompt)>;

/// Spawns a custom agent running `body` (protocol: troupe::agent_actor).
agent_actor spawn_custom_agent(caf::actor_system& sys, agent_env env, agent_body body);

/// A factory for swarm::add_agent_type.
agent_factory make_agent(agent_body body);

}  // namespace troupe
