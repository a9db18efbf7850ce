#pragma once
/// Task files: a swarm run described in TOML, as `troupe run TASK.toml` executes it.
///
///   [task]          goal = "..."                      (the orchestrator's prompt), or
///                   prompt_template = "... {{item}} ..." and items = [...] (a direct fan-out)
///   [orchestrator]  name, system_prompt, tools = [...], max_steps
///   [worker]        name, system_prompt, tools = [...], max_steps   (spawn_swarm's sub-agents)
///   [budgets]       max_live_subagents, max_tool_calls, max_steps_per_agent, max_tokens, deadline_s
///   [tools]         builtin = [...], max_concurrency, timeout_ms
///   [model]         backend = "scripted", latency_ms, [[model.rules]] match, [[model.rules.turns]]
///                   text, reasoning, repeat, tool_calls = [{ id?, name, arguments = {...} | "json" }]
///                   or backend = "local": model = "smollm2" | "path.gguf", threads, context,
///                   max_batch, kv_budget_mib, max_tokens, temperature, top_p, top_k, min_p,
///                   repetition_penalty (troupe/local_model.hpp)
///                   or backend = "openai": base_url, model, api_key_env (the name of the variable
///                   that holds the key; the key itself is refused), timeout_s, max_retries,
///                   max_concurrency, extra_body = {...} | "json", ca_file, retry_base_ms,
///                   retry_max_ms, max_retry_after_s (troupe/openai_model.hpp)
///
/// Unknown sections and keys are errors, so that a typo never silently changes a run.

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/agent.hpp"
#include "troupe/budget.hpp"
#include "troupe/local_model.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/scripted_model.hpp"
#include "troupe/tool.hpp"

namespace troupe {

struct task_spec {
  std::string source;  ///< File name, for messages.
  std::string goal;
  std::string prompt_template;
  std::vector<std::string> items;
  agent_config orchestrator;
  agent_config worker;
  bool has_worker = false;
  budgets limits;
  std::vector<std::string> builtin_tools;
  tool_options tools;
  std::string model_backend = "scripted";  ///< "scripted", "local" or "openai"
  model_script script;                     ///< backend = "scripted"
  local_model_config local;                ///< backend = "local"
  openai_config openai;                    ///< backend = "openai"

  bool is_fan_out() const { return goal.empty(); }
};

/// Parses a task file's text. Throws troupe::error (parse_error or invalid_argument) whose message
/// names the source, the line and the problem, e.g. "scale.toml:12: unknown key 'max_tool' in
/// [budgets]; known keys: ...".
task_spec parse_task(std::string_view text, std::string_view source = "task");

/// Reads and parses a task file. Throws troupe::error (not_found / io_error / parse_error).
task_spec load_task_file(const std::filesystem::path& path);

}  // namespace troupe
