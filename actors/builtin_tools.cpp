#include "troupe/builtin_tools.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "caf/all.hpp"
#include "troupe/json.hpp"
#include "troupe/tool_registry.hpp"

namespace troupe {
namespace {

// wait: answers later through a message to itself, so a thousand waits need no thread.
using wait_tool_actor = tool_actor::extend<caf::reacts_to<resume_atom, uint64_t>>;

struct pending_wait {
  std::string call_id;
  std::string text;
  caf::typed_response_promise<tool_result> promise;
};

struct wait_state {
  static inline const char* name = "troupe.tool.wait";
  uint64_t next = 1;
  std::unordered_map<uint64_t, pending_wait> pending;
};

constexpr int64_t max_wait_ms = 10 * 60 * 1000;

wait_tool_actor::behavior_type wait_behavior(wait_tool_actor::stateful_pointer<wait_state> self) {
  return {
    [self](invoke_atom, const tool_call& call) -> caf::result<tool_result> {
      int64_t ms = 0;
      std::string text;
      try {
        auto args = json::parse(call.arguments, "the arguments of tool 'wait'");
        const auto* v = args.find("ms");
        if (!v || !v->is_number())
          return tool_result::failure(call.id, "wait needs {\"ms\": <milliseconds>}");
        ms = v->is_int() ? v->as_int() : static_cast<int64_t>(v->as_number());
        if (const auto* t = args.find("text"); t && t->is_string()) text = t->as_string();
      } catch (const error& e) {
        return tool_result::failure(call.id, e.message());
      }
      if (ms < 0 || ms > max_wait_ms)
        return tool_result::failure(
          call.id, fmt::format("wait: ms must be between 0 and {}, got {}", max_wait_ms, ms));
      if (text.empty()) text = fmt::format("waited {} ms", ms);
      auto rp = self->make_response_promise<tool_result>();
      auto id = self->state.next++;
      self->state.pending.emplace(id, pending_wait{call.id, std::move(text), rp});
      self->delayed_send(self, std::chrono::milliseconds{ms}, resume_atom::value, id);
      return rp;
    },
    [self](resume_atom, uint64_t id) {
      auto it = self->state.pending.find(id);
      if (it == self->state.pending.end()) return;
      auto w = std::move(it->second);
      self->state.pending.erase(it);
      w.promise.deliver(tool_result::ok(w.call_id, std::move(w.text)));
    },
  };
}

struct builtin {
  tool_spec spec;
  tool_function fn;  // Empty for actor-based tools.
};

std::vector<builtin> builtins() {
  return {
    {{"noop", "Does nothing and returns \"ok\".", R"({"type":"object","properties":{}})"},
     [](const tool_call& c) { return tool_result::ok(c.id, "ok"); }},
    {{"echo", "Returns the text it is given.",
      R"({"type":"object","properties":{"text":{"type":"string"}},"required":["text"]})"},
     [](const tool_call& c) {
       auto args = json::parse(c.arguments, "the arguments of tool 'echo'");
       return tool_result::ok(c.id, args.find("text")->as_string());
     }},
    {{"wait", "Waits the given number of milliseconds, then returns text (or a note).",
      R"({"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":600000},)"
      R"("text":{"type":"string"}},"required":["ms"]})"},
     {}},
    {{"fail", "Always fails with the given message (for testing error handling).",
      R"({"type":"object","properties":{"message":{"type":"string"}}})"},
     [](const tool_call& c) {
       auto args = json::parse(c.arguments, "the arguments of tool 'fail'");
       const auto* m = args.find("message");
       return tool_result::failure(c.id, m && m->is_string() ? m->as_string()
                                                             : std::string{"fail: as asked"});
     }},
  };
}

}  // namespace

std::vector<std::string> builtin_tool_names() {
  std::vector<std::string> out;
  for (const auto& b : builtins()) out.push_back(b.spec.name);
  return out;
}

void register_builtin_tools(caf::actor_system& sys, const tool_registry_actor& registry,
                            const std::vector<std::string>& names, tool_options options) {
  auto all = builtins();
  for (const auto& n : names)
    if (std::none_of(all.begin(), all.end(), [&](const builtin& b) { return b.spec.name == n; }))
      throw error{errc::not_found, fmt::format("there is no built-in tool '{}'; built-in tools: {}",
                                               n, fmt::join(builtin_tool_names(), ", "))};
  for (auto& b : all) {
    if (!names.empty() && std::find(names.begin(), names.end(), b.spec.name) == names.end())
      continue;
    tool_actor actor = b.fn ? spawn_function_tool(sys, std::move(b.fn))
                            : caf::actor_cast<tool_actor>(sys.spawn(wait_behavior));
    // The registry owns the built-in tools: they stop when it stops (a pending wait would
    // otherwise keep its actor, and the actor system's shutdown, alive until it fires).
    caf::actor_cast<caf::abstract_actor*>(registry)->attach_functor(
      [tool = caf::actor_cast<caf::actor>(actor)] {
        caf::anon_send_exit(tool, caf::exit_reason::user_shutdown);
      });
    register_tool(sys, registry, std::move(b.spec), std::move(actor), options);
  }
}

}  // namespace troupe
