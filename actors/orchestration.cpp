#include "orchestration.hpp"

#include <map>
#include <string>

namespace troupe {
namespace {

std::vector<tool_spec> make_specs() {
  return {
    {"create_subagent",
     "Defines a named sub-agent with its own system prompt and a subset of your tools. It keeps no "
     "memory between tasks: each assign_task starts it with a fresh context.",
     R"({"type":"object","properties":{)"
     R"("name":{"type":"string","minLength":1,"maxLength":64,"description":"Unique name"},)"
     R"("system_prompt":{"type":"string","description":"Instructions for the sub-agent"},)"
     R"("tools":{"type":"array","items":{"type":"string"},"description":"Tool names it may use; default: all of yours"}},)"
     R"("required":["name","system_prompt"],"additionalProperties":false})"},
    {"assign_task",
     "Runs one task on a sub-agent and returns only its final answer. The sub-agent sees only this "
     "prompt, so make it self-contained. Several assign_task calls in one turn run in parallel.",
     R"({"type":"object","properties":{)"
     R"("agent":{"type":"string","description":"Name given to create_subagent, or 'worker'"},)"
     R"("prompt":{"type":"string","minLength":1,"description":"The complete, self-contained task"}},)"
     R"("required":["agent","prompt"],"additionalProperties":false})"},
    {"spawn_swarm",
     "Fans out one sub-agent per item, all in parallel: each gets prompt_template with {{item}} "
     "replaced by its item. Returns every sub-agent's outcome and final answer, in item order.",
     R"({"type":"object","properties":{)"
     R"("prompt_template":{"type":"string","minLength":1,"description":"Task text containing {{item}}"},)"
     R"("items":{"type":"array","minItems":1,"items":{"type":["string","number","integer","boolean","object","array"]}},)"
     R"("agent":{"type":"string","description":"Sub-agent name; default: worker"}},)"
     R"("required":["prompt_template","items"],"additionalProperties":false})"},
  };
}

}  // namespace

const std::vector<tool_spec>& orchestration_tool_specs() {
  static const std::vector<tool_spec> specs = make_specs();
  return specs;
}

bool is_orchestration_tool(std::string_view name) {
  return name == "create_subagent" || name == "assign_task" || name == "spawn_swarm";
}

const json::value& orchestration_schema(std::string_view name) {
  static const std::map<std::string, json::value, std::less<>> schemas = [] {
    std::map<std::string, json::value, std::less<>> m;
    for (const auto& spec : orchestration_tool_specs())
      m.emplace(spec.name, json::parse(spec.parameters, spec.name + " schema"));
    return m;
  }();
  static const json::value empty{json::object{}};
  auto it = schemas.find(name);
  return it == schemas.end() ? empty : it->second;
}

}  // namespace troupe
