#include "troupe/task_file.hpp"

#include <fmt/format.h>

#include <fstream>
#include <initializer_list>
#include <sstream>
#include <toml++/toml.h>

#include "troupe/json.hpp"

namespace troupe {
namespace {

/// Reads one task file, keeping its name for messages.
class task_reader {
 public:
  explicit task_reader(std::string_view source) : source_(source) {}

  [[noreturn]] void fail(const toml::node* at, std::string_view problem) const {
    if (at && at->source().begin.line > 0)
      throw error{errc::parse_error,
                  fmt::format("{}:{}: {}", source_, at->source().begin.line, problem)};
    throw error{errc::parse_error, fmt::format("{}: {}", source_, problem)};
  }

  void only_keys(const toml::table& t, std::string_view section,
                 std::initializer_list<std::string_view> known) const {
    for (const auto& [key, node] : t) {
      bool ok = false;
      for (auto k : known) ok = ok || key.str() == k;
      if (!ok)
        fail(&node, fmt::format("unknown key '{}' in {}; known keys: {}", key.str(), section,
                                fmt::join(known, ", ")));
    }
  }

  std::string string(const toml::table& t, std::string_view key, std::string_view section,
                     std::string fallback = {}) const {
    const auto* n = t.get(key);
    if (!n) return fallback;
    if (const auto* s = n->as_string()) return s->get();
    fail(n, fmt::format("'{}' in {} must be a string, not {}", key, section, type_of(*n)));
  }

  int64_t integer(const toml::table& t, std::string_view key, std::string_view section,
                  int64_t fallback, int64_t min, int64_t max) const {
    const auto* n = t.get(key);
    if (!n) return fallback;
    const auto* i = n->as_integer();
    if (!i) fail(n, fmt::format("'{}' in {} must be an integer, not {}", key, section, type_of(*n)));
    if (i->get() < min || i->get() > max)
      fail(n, fmt::format("'{}' in {} must be between {} and {}, got {}", key, section, min, max,
                          i->get()));
    return i->get();
  }

  bool boolean(const toml::table& t, std::string_view key, std::string_view section,
               bool fallback) const {
    const auto* n = t.get(key);
    if (!n) return fallback;
    if (const auto* b = n->as_boolean()) return b->get();
    fail(n, fmt::format("'{}' in {} must be true or false, not {}", key, section, type_of(*n)));
  }

  double number(const toml::table& t, std::string_view key, std::string_view section,
                double fallback, double min, double max) const {
    const auto* n = t.get(key);
    if (!n) return fallback;
    double v = 0;
    if (const auto* i = n->as_integer()) v = static_cast<double>(i->get());
    else if (const auto* f = n->as_floating_point()) v = f->get();
    else fail(n, fmt::format("'{}' in {} must be a number, not {}", key, section, type_of(*n)));
    if (v < min || v > max)
      fail(n, fmt::format("'{}' in {} must be between {} and {}, got {}", key, section, min, max, v));
    return v;
  }

  std::vector<std::string> strings(const toml::table& t, std::string_view key,
                                   std::string_view section, bool allow_scalars = false) const {
    std::vector<std::string> out;
    const auto* n = t.get(key);
    if (!n) return out;
    const auto* arr = n->as_array();
    if (!arr) fail(n, fmt::format("'{}' in {} must be an array", key, section));
    for (const auto& e : *arr) {
      if (const auto* s = e.as_string()) out.push_back(s->get());
      else if (allow_scalars && e.as_integer()) out.push_back(std::to_string(e.as_integer()->get()));
      else if (allow_scalars && e.as_floating_point())
        out.push_back(fmt::format("{}", e.as_floating_point()->get()));
      else fail(&e, fmt::format("every element of '{}' in {} must be a string{}", key, section,
                                allow_scalars ? " or a number" : ""));
    }
    return out;
  }

  const toml::table* table(const toml::table& t, std::string_view key) const {
    const auto* n = t.get(key);
    if (!n) return nullptr;
    if (const auto* tt = n->as_table()) return tt;
    fail(n, fmt::format("'{}' must be a table ([{}])", key, key));
  }

  static std::string type_of(const toml::node& n) {
    switch (n.type()) {
      case toml::node_type::string: return "a string";
      case toml::node_type::integer: return "an integer";
      case toml::node_type::floating_point: return "a float";
      case toml::node_type::boolean: return "a boolean";
      case toml::node_type::array: return "an array";
      case toml::node_type::table: return "a table";
      default: return "a date or time";
    }
  }

  agent_config agent(const toml::table& t, std::string_view section, std::string name) const {
    only_keys(t, section, {"name", "system_prompt", "tools", "max_steps", "temperature", "seed"});
    agent_config c;
    c.name = string(t, "name", section, std::move(name));
    c.system_prompt = string(t, "system_prompt", section);
    c.tools = strings(t, "tools", section);
    c.max_steps = static_cast<uint32_t>(integer(t, "max_steps", section, 0, 0, 100000));
    c.sampling.temperature = static_cast<float>(number(t, "temperature", section, -1, -1, 10));
    c.sampling.seed = static_cast<uint64_t>(integer(t, "seed", section, 0, 0, INT64_MAX));
    return c;
  }

  tool_call call(const toml::node& n, std::string_view section) const {
    const auto* t = n.as_table();
    if (!t) fail(&n, fmt::format("each of {}'s tool_calls must be an inline table "
                                 "{{ name = \"...\", arguments = {{...}} }}", section));
    only_keys(*t, section, {"id", "name", "arguments"});
    tool_call c;
    c.id = string(*t, "id", section);
    c.name = string(*t, "name", section);
    if (c.name.empty()) fail(&n, fmt::format("a tool call in {} needs a name", section));
    if (const auto* a = t->get("arguments")) {
      if (const auto* s = a->as_string()) {
        c.arguments = s->get();  // JSON text, kept verbatim (it may be deliberately malformed).
      } else if (const auto* at = a->as_table()) {
        std::ostringstream os;
        os << toml::json_formatter{*at, toml::format_flags::none};
        c.arguments = os.str();
      } else {
        fail(a, "tool-call arguments must be a table or a JSON string");
      }
    } else {
      c.arguments = "{}";
    }
    return c;
  }

  model_script script(const toml::table& m) const {
    model_script s;
    s.latency = std::chrono::microseconds{
      static_cast<int64_t>(number(m, "latency_ms", "[model]", 0, 0, 3'600'000) * 1000)};
    const auto* rules = m.get("rules");
    if (!rules) return s;
    const auto* arr = rules->as_array();
    if (!arr) fail(rules, "[model] rules must be an array of tables ([[model.rules]])");
    for (const auto& rn : *arr) {
      const auto* rt = rn.as_table();
      if (!rt) fail(&rn, "each [[model.rules]] entry must be a table");
      only_keys(*rt, "[[model.rules]]", {"match", "turns"});
      script_rule rule;
      rule.match = string(*rt, "match", "[[model.rules]]");
      if (const auto* turns = rt->get("turns")) {
        const auto* ta = turns->as_array();
        if (!ta) fail(turns, "turns must be an array of tables ([[model.rules.turns]])");
        for (const auto& tn : *ta) {
          const auto* tt = tn.as_table();
          if (!tt) fail(&tn, "each [[model.rules.turns]] entry must be a table");
          only_keys(*tt, "[[model.rules.turns]]", {"text", "reasoning", "repeat", "tool_calls"});
          scripted_turn turn;
          turn.text = string(*tt, "text", "[[model.rules.turns]]");
          turn.reasoning = string(*tt, "reasoning", "[[model.rules.turns]]");
          turn.repeat = static_cast<uint32_t>(
            integer(*tt, "repeat", "[[model.rules.turns]]", 1, 1, 1'000'000));
          if (const auto* calls = tt->get("tool_calls")) {
            const auto* ca = calls->as_array();
            if (!ca) fail(calls, "tool_calls must be an array");
            for (const auto& cn : *ca) turn.tool_calls.push_back(call(cn, "[[model.rules.turns]]"));
          }
          rule.turns.push_back(std::move(turn));
        }
      }
      s.rules.push_back(std::move(rule));
    }
    return s;
  }

 private:
  std::string source_;
};

}  // namespace

task_spec parse_task(std::string_view text, std::string_view source) {
  task_reader rd{source};
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw error{errc::parse_error,
                fmt::format("{}:{}:{}: {}", source, e.source().begin.line, e.source().begin.column,
                            e.description())};
  }
  rd.only_keys(root, "the task file",
               {"task", "orchestrator", "worker", "budgets", "tools", "model"});
  task_spec spec;
  spec.source = std::string{source};

  const auto* task = rd.table(root, "task");
  if (!task) rd.fail(nullptr, "missing [task] section: give a goal, or a prompt_template and items");
  rd.only_keys(*task, "[task]", {"goal", "prompt_template", "items"});
  spec.goal = rd.string(*task, "goal", "[task]");
  spec.prompt_template = rd.string(*task, "prompt_template", "[task]");
  spec.items = rd.strings(*task, "items", "[task]", true);
  if (spec.goal.empty() && spec.prompt_template.empty())
    rd.fail(task, "[task] needs either goal = \"...\" or prompt_template = \"...\" with items");
  if (!spec.goal.empty() && !spec.prompt_template.empty())
    rd.fail(task, "[task] has both goal and prompt_template: give one of them");
  if (!spec.prompt_template.empty() && spec.items.empty())
    rd.fail(task, "[task] prompt_template needs a non-empty items array");

  spec.orchestrator.name = "orchestrator";
  if (const auto* o = rd.table(root, "orchestrator"))
    spec.orchestrator = rd.agent(*o, "[orchestrator]", "orchestrator");
  spec.orchestrator.orchestrator = true;
  spec.worker.name = "worker";
  if (const auto* w = rd.table(root, "worker")) {
    spec.worker = rd.agent(*w, "[worker]", "worker");
    spec.has_worker = true;
  }

  if (const auto* b = rd.table(root, "budgets")) {
    rd.only_keys(*b, "[budgets]", {"max_live_subagents", "max_tool_calls", "max_steps_per_agent",
                                   "max_tokens", "deadline_s"});
    auto& l = spec.limits;
    l.max_live_subagents = static_cast<uint32_t>(
      rd.integer(*b, "max_live_subagents", "[budgets]", l.max_live_subagents, 0, 1'000'000));
    l.max_tool_calls = static_cast<uint32_t>(
      rd.integer(*b, "max_tool_calls", "[budgets]", l.max_tool_calls, 0, 100'000'000));
    l.max_steps_per_agent = static_cast<uint32_t>(
      rd.integer(*b, "max_steps_per_agent", "[budgets]", l.max_steps_per_agent, 1, 1'000'000));
    l.max_tokens = static_cast<uint64_t>(
      rd.integer(*b, "max_tokens", "[budgets]", 0, 0, INT64_MAX));
    l.deadline = std::chrono::milliseconds{
      static_cast<int64_t>(rd.number(*b, "deadline_s", "[budgets]", 0, 0, 7 * 24 * 3600) * 1000)};
  }

  if (const auto* t = rd.table(root, "tools")) {
    rd.only_keys(*t, "[tools]", {"builtin", "max_concurrency", "timeout_ms"});
    spec.builtin_tools = rd.strings(*t, "builtin", "[tools]");
    spec.tools.max_concurrency = static_cast<uint32_t>(
      rd.integer(*t, "max_concurrency", "[tools]", 0, 0, 1'000'000));
    spec.tools.timeout_ms = static_cast<uint32_t>(
      rd.integer(*t, "timeout_ms", "[tools]", spec.tools.timeout_ms, 0, 86'400'000));
  }

  const auto* m = rd.table(root, "model");
  if (!m) rd.fail(nullptr, "missing [model] section: say which model drives the swarm");
  spec.model_backend = rd.string(*m, "backend", "[model]", "scripted");
  if (spec.model_backend == "scripted") {
    rd.only_keys(*m, "[model] (backend = \"scripted\")", {"backend", "latency_ms", "rules"});
    spec.script = rd.script(*m);
  } else if (spec.model_backend == "local") {
    constexpr std::string_view sec = "[model] (backend = \"local\")";
    rd.only_keys(*m, sec,
                 {"backend", "model", "threads", "context", "max_batch", "kv_budget_mib",
                  "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                  "expert_shards", "kv_cache_type", "prefix_cache"});
    auto& l = spec.local;
    l.model = rd.string(*m, "model", sec, l.model);
    l.threads = static_cast<int>(rd.integer(*m, "threads", sec, l.threads, 1, 256));
    l.context = rd.integer(*m, "context", sec, l.context, 16, 1 << 20);
    l.max_batch = static_cast<int32_t>(rd.integer(*m, "max_batch", sec, l.max_batch, 1, 4096));
    l.expert_shards = static_cast<int>(rd.integer(*m, "expert_shards", sec, l.expert_shards, 0, 1024));
    l.kv_budget_bytes =
      rd.integer(*m, "kv_budget_mib", sec, l.kv_budget_bytes >> 20, 1, 1 << 24) << 20;
    l.kv_cache_type = rd.string(*m, "kv_cache_type", sec, l.kv_cache_type);
    if (l.kv_cache_type != "f32" && l.kv_cache_type != "f16")
      rd.fail(m->get("kv_cache_type"),
              "kv_cache_type must be \"f32\" or \"f16\" (half the KV memory)");
    l.prefix_cache = rd.boolean(*m, "prefix_cache", sec, l.prefix_cache);
    l.default_max_tokens = static_cast<uint32_t>(
      rd.integer(*m, "max_tokens", sec, l.default_max_tokens, 1, 1 << 20));
    l.temperature = static_cast<float>(rd.number(*m, "temperature", sec, l.temperature, 0, 10));
    l.top_p = static_cast<float>(rd.number(*m, "top_p", sec, l.top_p, 0, 1));
    l.top_k = static_cast<int32_t>(rd.integer(*m, "top_k", sec, l.top_k, 0, 1 << 20));
    l.min_p = static_cast<float>(rd.number(*m, "min_p", sec, l.min_p, 0, 1));
    l.repetition_penalty = static_cast<float>(
      rd.number(*m, "repetition_penalty", sec, l.repetition_penalty, 0.01, 10));
  } else if (spec.model_backend == "openai") {
    constexpr std::string_view sec = "[model] (backend = \"openai\")";
    if (const auto* key = m->get("api_key"))
      rd.fail(key, "[model] must not hold the API key itself: put it in an environment variable "
                   "and name that variable with api_key_env (default OPENAI_API_KEY)");
    rd.only_keys(*m, sec,
                 {"backend", "base_url", "model", "api_key_env", "timeout_s", "max_retries",
                  "max_concurrency", "extra_body", "ca_file", "retry_base_ms", "retry_max_ms",
                  "max_retry_after_s"});
    auto& o = spec.openai;
    o.base_url = rd.string(*m, "base_url", sec, o.base_url);
    o.model = rd.string(*m, "model", sec);
    if (o.model.empty())
      rd.fail(m->get("model") ? m->get("model") : m->get("backend"),
              fmt::format("{} needs model = \"...\", the model name the endpoint serves", sec));
    o.api_key_env = rd.string(*m, "api_key_env", sec, o.api_key_env);
    o.timeout = std::chrono::milliseconds{static_cast<int64_t>(
      rd.number(*m, "timeout_s", sec, static_cast<double>(o.timeout.count()) / 1000, 0.001,
                24 * 3600) * 1000)};
    o.max_retries = static_cast<uint32_t>(rd.integer(*m, "max_retries", sec, o.max_retries, 0, 100));
    o.max_concurrency = static_cast<uint32_t>(
      rd.integer(*m, "max_concurrency", sec, o.max_concurrency, 1, 100'000));
    o.ca_file = rd.string(*m, "ca_file", sec);
    o.retry_base_delay = std::chrono::milliseconds{
      rd.integer(*m, "retry_base_ms", sec, o.retry_base_delay.count(), 0, 3'600'000)};
    o.retry_max_delay = std::chrono::milliseconds{
      rd.integer(*m, "retry_max_ms", sec, o.retry_max_delay.count(), 0, 3'600'000)};
    o.max_retry_after = std::chrono::milliseconds{static_cast<int64_t>(
      rd.number(*m, "max_retry_after_s", sec, static_cast<double>(o.max_retry_after.count()) / 1000,
                0, 24 * 3600) * 1000)};
    if (const auto* extra = m->get("extra_body")) {
      if (const auto* t = extra->as_table()) {
        std::ostringstream os;
        os << toml::json_formatter{*t, toml::format_flags::none};
        o.extra_body = os.str();
      } else if (const auto* s = extra->as_string()) {
        o.extra_body = s->get();
      } else {
        rd.fail(extra, "extra_body must be a table or a JSON string, e.g. "
                       "extra_body = { thinking = { type = \"disabled\" } }");
      }
      bool is_object = false;
      std::string problem;
      try {
        is_object = json::parse(o.extra_body, "extra_body").is_object();
      } catch (const error& e) {
        problem = e.message();
      }
      if (!problem.empty()) rd.fail(extra, fmt::format("extra_body is not valid JSON: {}", problem));
      if (!is_object) rd.fail(extra, "extra_body must be a JSON object");
    }
  } else {
    rd.fail(m->get("backend"),
            fmt::format("unknown model backend '{}'; this build supports: scripted, local, openai",
                        spec.model_backend));
  }
  return spec;
}

task_spec load_task_file(const std::filesystem::path& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
      throw error{errc::not_found, fmt::format("task file '{}' does not exist", path.string())};
    throw error{errc::io_error, fmt::format("cannot read task file '{}'", path.string())};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_task(ss.str(), path.filename().string());
}

}  // namespace troupe
