// The tool registry: routes calls by name, validates arguments against each tool's schema,
// applies per-tool concurrency limits (FIFO queue) and per-call timeouts.

#include "troupe/tool_registry.hpp"

#include <fmt/format.h>

#include <deque>
#include <memory>
#include <unordered_map>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"

namespace troupe {
namespace {

struct queued_call {
  tool_call call;
  caf::typed_response_promise<tool_result> promise;
};

struct registry_entry {
  tool_spec spec;
  tool_options options;
  tool_actor actor;
  json::value schema;
  bool schema_accepts_any_object = false;
  uint32_t in_flight = 0;
  std::deque<queued_call> queue;
};

/// True when every JSON object satisfies the schema, so validation can stop at "is an object".
bool accepts_any_object(const json::value& schema) {
  if (!schema.is_object()) return schema.is_bool() && schema.as_bool();
  for (const auto& [key, v] : schema.as_object()) {
    if (key == "type" && v.is_string() && v.as_string() == "object") continue;
    if (key == "description" || key == "title" || key == "$schema") continue;
    if (key == "properties" && v.is_object() && v.as_object().empty()) continue;
    return false;
  }
  return true;
}

struct registry_state {
  static inline const char* name = "troupe.tool_registry";
  std::unordered_map<std::string, std::shared_ptr<registry_entry>> tools;
};

using registry_pointer = tool_registry_actor::stateful_pointer<registry_state>;

std::string known_tools(const registry_state& st) {
  std::vector<std::string> names;
  for (const auto& [n, e] : st.tools) names.push_back(n);
  std::sort(names.begin(), names.end());
  return names.empty() ? std::string{"(none)"} : fmt::format("{}", fmt::join(names, ", "));
}

/// Returns an error message when `call` cannot be run with `e`'s schema; empty when it can.
std::string check_arguments(const registry_entry& e, const tool_call& call) {
  json::value args;
  try {
    args = json::parse(call.arguments, fmt::format("the arguments of tool '{}'", call.name));
  } catch (const error& err) {
    return fmt::format("malformed arguments: {}; send a JSON object that matches the tool's "
                       "parameters",
                       err.message());
  }
  if (!args.is_object())
    return fmt::format("malformed arguments: the arguments of tool '{}' must be a JSON object, "
                       "not {}",
                       call.name, args.type_name());
  if (e.schema_accepts_any_object) return {};
  auto problem = json::validate(args, e.schema);
  if (problem.empty()) return {};
  return fmt::format("malformed arguments: the arguments of tool '{}' do not match its schema: "
                     "{}; fix them and call again",
                     call.name, problem);
}

void dispatch(registry_pointer self, std::shared_ptr<registry_entry> e, tool_call call,
              caf::typed_response_promise<tool_result> rp);

void drain(registry_pointer self, const std::shared_ptr<registry_entry>& e) {
  while (!e->queue.empty() &&
         (e->options.max_concurrency == 0 || e->in_flight < e->options.max_concurrency)) {
    auto next = std::move(e->queue.front());
    e->queue.pop_front();
    dispatch(self, e, std::move(next.call), std::move(next.promise));
  }
}

void dispatch(registry_pointer self, std::shared_ptr<registry_entry> e, tool_call call,
              caf::typed_response_promise<tool_result> rp) {
  ++e->in_flight;
  caf::duration timeout = e->options.timeout_ms == 0
                            ? caf::duration{caf::infinite}
                            : caf::duration{std::chrono::milliseconds{e->options.timeout_ms}};
  auto id = call.id;
  self->request(e->actor, timeout, invoke_atom::value, std::move(call))
    .then(
      [self, e, rp, id](tool_result& r) mutable {
        --e->in_flight;
        r.call_id = id;
        rp.deliver(std::move(r));
        drain(self, e);
      },
      [self, e, rp, id](caf::error& err) mutable {
        --e->in_flight;
        std::string msg;
        if (err == caf::sec::request_timeout)
          msg = fmt::format("tool '{}' did not answer within {} ms, so the call was abandoned; "
                            "try again, perhaps with smaller input",
                            e->spec.name, e->options.timeout_ms);
        else
          msg = fmt::format("tool '{}' failed: {}",
                            e->spec.name, from_caf_error(err, "the tool").message());
        rp.deliver(tool_result::failure(id, std::move(msg)));
        drain(self, e);
      });
}

tool_registry_actor::behavior_type registry_behavior(registry_pointer self) {
  return {
    [self](register_atom, tool_spec& spec, tool_options& options,
           tool_actor& actor) -> caf::result<bool> {
      if (spec.name.empty() || !actor)
        return to_caf_error(error{errc::invalid_argument,
                                  "register: a tool needs a non-empty name and a valid actor"});
      auto e = std::make_shared<registry_entry>();
      try {
        e->schema = json::parse(spec.parameters,
                                fmt::format("the parameter schema of tool '{}'", spec.name));
      } catch (const error& err) {
        return to_caf_error(err);
      }
      e->schema_accepts_any_object = accepts_any_object(e->schema);
      e->spec = std::move(spec);
      e->options = options;
      e->actor = std::move(actor);
      auto name = e->spec.name;
      self->state.tools[name] = std::move(e);
      return true;
    },
    [self](unregister_atom, const std::string& name) {
      return self->state.tools.erase(name) > 0;
    },
    [self](list_atom) {
      std::vector<tool_spec> out;
      for (const auto& [n, e] : self->state.tools) out.push_back(e->spec);
      std::sort(out.begin(), out.end(),
                [](const tool_spec& a, const tool_spec& b) { return a.name < b.name; });
      return out;
    },
    [self](invoke_atom, tool_call& call) -> caf::result<tool_result> {
      auto it = self->state.tools.find(call.name);
      if (it == self->state.tools.end())
        return tool_result::failure(
          call.id, fmt::format("unknown tool '{}'; the registered tools are: {}", call.name,
                               known_tools(self->state)));
      auto e = it->second;
      if (auto problem = check_arguments(*e, call); !problem.empty())
        return tool_result::failure(call.id, std::move(problem));
      auto rp = self->make_response_promise<tool_result>();
      if (e->options.max_concurrency != 0 && e->in_flight >= e->options.max_concurrency)
        e->queue.push_back(queued_call{std::move(call), rp});
      else
        dispatch(self, e, std::move(call), rp);
      return rp;
    },
  };
}

tool_actor::behavior_type function_tool(tool_actor::pointer, tool_function fn) {
  return {
    [fn](invoke_atom, const tool_call& call) -> tool_result {
      try {
        auto r = fn(call);
        r.call_id = call.id;
        return r;
      } catch (const error& e) {
        return tool_result::failure(call.id, e.message());
      } catch (const std::exception& e) {
        return tool_result::failure(call.id,
                                    fmt::format("tool '{}' failed: {}", call.name, e.what()));
      }
    },
  };
}

}  // namespace

tool_registry_actor spawn_tool_registry(caf::actor_system& sys) {
  return sys.spawn(registry_behavior);
}

tool_actor spawn_function_tool(caf::actor_system& sys, tool_function fn, bool blocking) {
  if (blocking) return sys.spawn<caf::detached>(function_tool, std::move(fn));
  return sys.spawn(function_tool, std::move(fn));
}

void register_tool(caf::actor_system& sys, const tool_registry_actor& registry, tool_spec spec,
                   tool_actor actor, tool_options options) {
  caf::scoped_actor self{sys};
  error failure;
  auto name = spec.name;
  self->request(registry, std::chrono::seconds(30), register_atom::value, std::move(spec),
                options, std::move(actor))
    .receive([](bool) {},
             [&](caf::error& e) {
               failure = from_caf_error(e, fmt::format("registering tool '{}'", name));
             });
  if (failure) throw failure;
}

}  // namespace troupe
