// Task files: every field of a good file read into task_spec, every kind of bad file refused with
// a message that names the file, the line and the problem, and the committed samples.
#define BOOST_TEST_MODULE task_file
#include <boost/test/unit_test.hpp>

#include <string>

#include "troupe/json.hpp"
#include "troupe/task_file.hpp"

using namespace troupe;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// The error parse_task throws for `text` (read as "bad.toml"); fails the test if it accepts it.
error parse_error_of(const std::string& text) {
  try {
    parse_task(text, "bad.toml");
  } catch (const error& e) {
    return e;
  }
  BOOST_FAIL("parse_task accepted a bad file:\n" << text);
  return {};
}

/// Checks code, "bad.toml:<line>:" and each of `problems` in the error for `text`.
void check_refused(const std::string& text, errc code, int line,
                   std::initializer_list<std::string> problems) {
  auto e = parse_error_of(text);
  BOOST_TEST_CONTEXT(e.message()) {
    BOOST_TEST(e.code() == code);
    BOOST_TEST(contains(e.message(), "bad.toml:" + std::to_string(line) + ":"));
    for (const auto& p : problems) BOOST_TEST(contains(e.message(), p), "missing: " << p);
  }
}

const std::string full_task = R"(# every section and key
[task]
goal = "Find the answer."

[orchestrator]
name = "boss"
system_prompt = "You lead."
tools = ["echo", "wait"]
max_steps = 12
temperature = 0.5
seed = 42

[worker]
name = "minion"
system_prompt = "You follow."
tools = ["noop"]
max_steps = 3
temperature = 1
seed = 7

[budgets]
max_live_subagents = 8
max_tool_calls = 99
max_steps_per_agent = 5
max_tokens = 123456789012
deadline_s = 1.5

[tools]
builtin = ["noop", "echo"]
max_concurrency = 4
timeout_ms = 2500

[model]
backend = "scripted"
latency_ms = 2.5

[[model.rules]]
match = "You lead"
[[model.rules.turns]]
reasoning = "think first"
tool_calls = [
  { id = "c1", name = "spawn_swarm", arguments = { prompt_template = "do {{item}}", items = [1, "two"], nested = { flag = true, ratio = 0.25 } } },
  { name = "echo", arguments = '{"text": "verbatim {{prompt}}" , "x":1}' },
  { name = "noop" },
]
[[model.rules.turns]]
text = "final: {{tool_results}}"
repeat = 3

[[model.rules]]
[[model.rules.turns]]
text = "anyone"
)";

}  // namespace

BOOST_AUTO_TEST_SUITE(good_files)

BOOST_AUTO_TEST_CASE(every_field_of_a_goal_task_is_read) {
  auto t = parse_task(full_task, "full.toml");
  BOOST_TEST(t.source == "full.toml");
  BOOST_TEST(t.goal == "Find the answer.");
  BOOST_TEST(t.prompt_template.empty());
  BOOST_TEST(t.items.empty());
  BOOST_TEST(!t.is_fan_out());

  BOOST_TEST(t.orchestrator.name == "boss");
  BOOST_TEST(t.orchestrator.system_prompt == "You lead.");
  BOOST_TEST(t.orchestrator.tools == (std::vector<std::string>{"echo", "wait"}));
  BOOST_TEST(t.orchestrator.max_steps == 12u);
  BOOST_TEST(t.orchestrator.sampling.temperature == 0.5f);
  BOOST_TEST(t.orchestrator.sampling.seed == 42u);
  BOOST_TEST(t.orchestrator.orchestrator);

  BOOST_TEST(t.has_worker);
  BOOST_TEST(t.worker.name == "minion");
  BOOST_TEST(t.worker.system_prompt == "You follow.");
  BOOST_TEST(t.worker.tools == (std::vector<std::string>{"noop"}));
  BOOST_TEST(t.worker.max_steps == 3u);
  BOOST_TEST(t.worker.sampling.temperature == 1.0f);
  BOOST_TEST(t.worker.sampling.seed == 7u);
  BOOST_TEST(!t.worker.orchestrator);

  BOOST_TEST(t.limits.max_live_subagents == 8u);
  BOOST_TEST(t.limits.max_tool_calls == 99u);
  BOOST_TEST(t.limits.max_steps_per_agent == 5u);
  BOOST_TEST(t.limits.max_tokens == 123456789012u);
  BOOST_TEST(t.limits.deadline.count() == 1500);  // seconds -> milliseconds

  BOOST_TEST(t.builtin_tools == (std::vector<std::string>{"noop", "echo"}));
  BOOST_TEST(t.tools.max_concurrency == 4u);
  BOOST_TEST(t.tools.timeout_ms == 2500u);

  BOOST_TEST(t.model_backend == "scripted");
  BOOST_TEST(t.script.latency.count() == 2500);  // milliseconds -> microseconds
  BOOST_REQUIRE(t.script.rules.size() == 2u);
  const auto& lead = t.script.rules[0];
  BOOST_TEST(lead.match == "You lead");
  BOOST_REQUIRE(lead.turns.size() == 2u);
  const auto& first = lead.turns[0];
  BOOST_TEST(first.text.empty());
  BOOST_TEST(first.reasoning == "think first");
  BOOST_TEST(first.repeat == 1u);
  BOOST_REQUIRE(first.tool_calls.size() == 3u);

  // A table of arguments becomes JSON text with the same content.
  const auto& swarm = first.tool_calls[0];
  BOOST_TEST(swarm.id == "c1");
  BOOST_TEST(swarm.name == "spawn_swarm");
  auto args = json::parse(swarm.arguments, "spawn_swarm arguments");
  BOOST_REQUIRE(args.is_object());
  BOOST_TEST(args.as_object().size() == 3u);
  BOOST_TEST(args.find("prompt_template")->as_string() == "do {{item}}");
  const auto& items = args.find("items")->as_array();
  BOOST_REQUIRE(items.size() == 2u);
  BOOST_TEST(items[0].as_int() == 1);
  BOOST_TEST(items[1].as_string() == "two");
  const auto* nested = args.find("nested");
  BOOST_REQUIRE(nested);
  BOOST_TEST(nested->find("flag")->as_bool());
  BOOST_TEST(nested->find("ratio")->as_number() == 0.25);

  // A string of arguments is kept byte for byte.
  BOOST_TEST(first.tool_calls[1].id.empty());
  BOOST_TEST(first.tool_calls[1].name == "echo");
  BOOST_TEST(first.tool_calls[1].arguments == R"({"text": "verbatim {{prompt}}" , "x":1})");
  // No arguments: an empty object.
  BOOST_TEST(first.tool_calls[2].name == "noop");
  BOOST_TEST(first.tool_calls[2].arguments == "{}");

  const auto& last = lead.turns[1];
  BOOST_TEST(last.text == "final: {{tool_results}}");
  BOOST_TEST(last.repeat == 3u);
  BOOST_TEST(last.tool_calls.empty());

  BOOST_TEST(t.script.rules[1].match.empty());
  BOOST_REQUIRE(t.script.rules[1].turns.size() == 1u);
  BOOST_TEST(t.script.rules[1].turns[0].text == "anyone");
}

BOOST_AUTO_TEST_CASE(a_fan_out_task_turns_numbers_into_strings_and_keeps_defaults) {
  auto t = parse_task(R"(
[task]
prompt_template = "summarise {{item}}"
items = ["a.txt", 7, 2.5, -3]
[model]
)",
                      "fan.toml");
  BOOST_TEST(t.is_fan_out());
  BOOST_TEST(t.goal.empty());
  BOOST_TEST(t.prompt_template == "summarise {{item}}");
  BOOST_TEST(t.items == (std::vector<std::string>{"a.txt", "7", "2.5", "-3"}));
  // Defaults of every section left out.
  budgets defaults;
  BOOST_TEST(t.orchestrator.name == "orchestrator");
  BOOST_TEST(t.orchestrator.orchestrator);
  BOOST_TEST(!t.has_worker);
  BOOST_TEST(t.worker.name == "worker");
  BOOST_TEST(t.limits.max_live_subagents == defaults.max_live_subagents);
  BOOST_TEST(t.limits.max_tool_calls == defaults.max_tool_calls);
  BOOST_TEST(t.limits.max_steps_per_agent == defaults.max_steps_per_agent);
  BOOST_TEST(t.limits.max_tokens == 0u);
  BOOST_TEST(t.limits.deadline.count() == 0);
  BOOST_TEST(t.builtin_tools.empty());
  BOOST_TEST((t.tools == tool_options{}));
  BOOST_TEST(t.model_backend == "scripted");
  BOOST_TEST(t.script.latency.count() == 0);
  BOOST_TEST(t.script.rules.empty());
}

BOOST_AUTO_TEST_CASE(the_hello_swarm_sample_parses) {
  auto t = load_task_file(TROUPE_SOURCE_DIR "/samples/hello_swarm/task.toml");
  BOOST_TEST(t.source == "task.toml");
  BOOST_TEST(t.goal == "Greet three troupe members in parallel, then sum up.");
  BOOST_TEST(t.orchestrator.system_prompt == "You are the hello-swarm orchestrator.");
  BOOST_TEST(t.orchestrator.tools == (std::vector<std::string>{"echo", "wait"}));
  BOOST_TEST(t.has_worker);
  BOOST_TEST(t.worker.system_prompt == "You are a greeter.");
  BOOST_TEST(t.builtin_tools == (std::vector<std::string>{"echo", "wait"}));
  BOOST_TEST(t.script.latency.count() == 50'000);
  BOOST_REQUIRE(t.script.rules.size() == 3u);
  const auto& orch = t.script.rules[0];
  BOOST_TEST(orch.match == "hello-swarm orchestrator");
  BOOST_REQUIRE(orch.turns.size() == 3u);
  BOOST_REQUIRE(orch.turns[1].tool_calls.size() == 2u);
  const auto& swarm = orch.turns[1].tool_calls[1];
  BOOST_TEST(swarm.name == "spawn_swarm");
  auto args = json::parse(swarm.arguments);
  const auto& items = args.find("items")->as_array();
  BOOST_REQUIRE(items.size() == 3u);
  BOOST_TEST(items[2].as_string() == "linus");
  BOOST_TEST(t.script.rules[1].turns[0].tool_calls[0].arguments ==
             R"({"text": "cast confirmed for: {{prompt}}"})");
  const auto& wait = t.script.rules[2].turns[0].tool_calls[1];
  BOOST_TEST(wait.name == "wait");
  BOOST_TEST(json::parse(wait.arguments).find("ms")->as_int() == 100);
}

BOOST_AUTO_TEST_CASE(the_swarm_scale_sample_parses) {
  auto t = load_task_file(TROUPE_SOURCE_DIR "/samples/swarm_scale/scale.toml");
  BOOST_TEST(t.source == "scale.toml");
  BOOST_TEST(t.goal == "Fan out 100 no-op workers.");
  BOOST_TEST(t.limits.max_live_subagents == 100u);
  BOOST_TEST(t.limits.max_tool_calls == 1500u);
  BOOST_TEST(t.builtin_tools == (std::vector<std::string>{"noop"}));
  BOOST_TEST(t.script.latency.count() == 0);
  BOOST_REQUIRE(t.script.rules.size() == 2u);
  const auto& orch = t.script.rules[0].turns;
  BOOST_REQUIRE(orch.size() == 2u);
  BOOST_REQUIRE(orch[0].tool_calls.size() == 1u);
  BOOST_TEST(orch[0].tool_calls[0].name == "spawn_swarm");
  auto args = json::parse(orch[0].tool_calls[0].arguments, "spawn_swarm arguments");
  BOOST_TEST(args.find("prompt_template")->as_string() == "scale task {{item}}");
  const auto& items = args.find("items")->as_array();
  BOOST_REQUIRE(items.size() == 100u);
  for (int i = 0; i < 100; ++i) BOOST_TEST(items[i].as_int() == i + 1);
  const auto& worker = t.script.rules[1];
  BOOST_TEST(worker.match == "scale-test worker");
  BOOST_REQUIRE(worker.turns.size() == 2u);
  BOOST_TEST(worker.turns[0].repeat == 15u);
  BOOST_REQUIRE(worker.turns[0].tool_calls.size() == 1u);
  BOOST_TEST(worker.turns[0].tool_calls[0].name == "noop");
  BOOST_TEST(worker.turns[0].tool_calls[0].arguments == "{}");
  BOOST_TEST(worker.turns[1].text == "worker done: {{prompt}}");
}

BOOST_AUTO_TEST_CASE(the_local_fanout_sample_configures_the_engine) {
  const auto t = load_task_file(TROUPE_SOURCE_DIR "/samples/local_fanout/task.toml");
  BOOST_TEST(t.model_backend == "local");
  BOOST_TEST(t.local.model == "smollm2");
  BOOST_TEST(t.local.threads == 2);
  BOOST_TEST(t.local.default_max_tokens == 48u);
  BOOST_TEST(t.local.temperature == 0.0f);
  BOOST_TEST(t.local.max_batch == local_model_config{}.max_batch);
  BOOST_TEST(t.is_fan_out());
  BOOST_TEST(t.items.size() == 6u);
  const auto k = parse_task("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\n"
                            "model = \"/m/x.gguf\"\nkv_budget_mib = 64\ncontext = 1024\n"
                            "max_batch = 4\ntop_k = 40\nrepetition_penalty = 1.1\n"
                            "expert_shards = 3\nkv_cache_type = \"f16\"\n"
                            "prefix_cache = false\n");
  BOOST_TEST(k.local.model == "/m/x.gguf");
  BOOST_TEST(!k.local.prefix_cache);
  BOOST_TEST(t.local.prefix_cache);
  BOOST_TEST(k.local.kv_cache_type == "f16");
  BOOST_TEST(t.local.kv_cache_type == "f32");
  BOOST_TEST(k.local.expert_shards == 3);
  BOOST_TEST(k.local.kv_budget_bytes == int64_t{64} << 20);
  BOOST_TEST(k.local.context == 1024);
  BOOST_TEST(k.local.max_batch == 4);
  BOOST_TEST(k.local.top_k == 40);
  BOOST_TEST(k.local.repetition_penalty == 1.1f);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(bad_files)

BOOST_AUTO_TEST_CASE(a_toml_syntax_error_names_line_and_column) {
  check_refused("[task]\ngoal = \"g\"\n[model]\nlatency_ms = = 3\n", errc::parse_error, 4,
                {"bad.toml:4:14:", "could not determine value type"});
  check_refused("[task]\ngoal = \"unterminated\n[model]\n", errc::parse_error, 2,
                {"Error while parsing string"});
}

BOOST_AUTO_TEST_CASE(an_unknown_section_is_refused) {
  check_refused("[task]\ngoal = \"g\"\n\n[modle]\nbackend = \"scripted\"\n[model]\n",
                errc::parse_error, 4,
                {"unknown key 'modle' in the task file",
                 "known keys: task, orchestrator, worker, budgets, tools, model"});
}

BOOST_AUTO_TEST_CASE(an_unknown_key_is_refused_with_the_known_keys) {
  check_refused("[task]\ngoal = \"g\"\n[budgets]\nmax_live_subagents = 3\nmax_tool = 5\n[model]\n",
                errc::parse_error, 5,
                {"unknown key 'max_tool' in [budgets]",
                 "known keys: max_live_subagents, max_tool_calls, max_steps_per_agent, "
                 "max_tokens, deadline_s"});
  check_refused(
    "[task]\ngoal = \"g\"\n[model]\n[[model.rules]]\n[[model.rules.turns]]\ntext = \"t\"\n"
    "repeats = 2\n",
    errc::parse_error, 7,
    {"unknown key 'repeats' in [[model.rules.turns]]", "text, reasoning, repeat, tool_calls"});
}

BOOST_AUTO_TEST_CASE(a_value_of_the_wrong_type_is_refused) {
  check_refused("[task]\ngoal = \"g\"\n[orchestrator]\nmax_steps = \"ten\"\n[model]\n",
                errc::parse_error, 4,
                {"'max_steps' in [orchestrator] must be an integer, not a string"});
  check_refused("[task]\ngoal = 5\n[model]\n", errc::parse_error, 2,
                {"'goal' in [task] must be a string, not an integer"});
  check_refused("[task]\ngoal = \"g\"\n[model]\nlatency_ms = \"fast\"\n", errc::parse_error, 4,
                {"'latency_ms' in [model] must be a number, not a string"});
  check_refused("[task]\ngoal = \"g\"\n[tools]\nbuiltin = [\"noop\", 3]\n[model]\n",
                errc::parse_error, 4, {"every element of 'builtin' in [tools] must be a string"});
}

BOOST_AUTO_TEST_CASE(an_integer_out_of_range_is_refused) {
  check_refused("[task]\ngoal = \"g\"\n[tools]\nmax_concurrency = -1\n[model]\n",
                errc::parse_error, 4,
                {"'max_concurrency' in [tools] must be between 0 and 1000000, got -1"});
  check_refused("[task]\ngoal = \"g\"\n[budgets]\n\nmax_steps_per_agent = 0\n[model]\n",
                errc::parse_error, 5,
                {"'max_steps_per_agent' in [budgets] must be between 1 and 1000000, got 0"});
}

BOOST_AUTO_TEST_CASE(a_missing_task_section_is_refused) {
  // There is no line to point at: the message names the file and the missing section.
  auto e = parse_error_of("[model]\nbackend = \"scripted\"\n");
  BOOST_TEST(e.code() == errc::parse_error);
  BOOST_TEST(contains(e.message(), "bad.toml: missing [task] section"), e.message());
}

BOOST_AUTO_TEST_CASE(goal_and_prompt_template_together_are_refused) {
  check_refused("\n[task]\ngoal = \"g\"\nprompt_template = \"p {{item}}\"\nitems = [1]\n[model]\n",
                errc::parse_error, 2, {"[task] has both goal and prompt_template"});
}

BOOST_AUTO_TEST_CASE(a_prompt_template_without_items_is_refused) {
  check_refused("[task]\nprompt_template = \"p {{item}}\"\n[model]\n", errc::parse_error, 1,
                {"prompt_template needs a non-empty items array"});
  check_refused("[task]\nprompt_template = \"p {{item}}\"\nitems = []\n[model]\n",
                errc::parse_error, 1, {"prompt_template needs a non-empty items array"});
}

BOOST_AUTO_TEST_CASE(a_missing_model_section_is_refused) {
  auto e = parse_error_of("[task]\ngoal = \"g\"\n");
  BOOST_TEST(e.code() == errc::parse_error);
  BOOST_TEST(contains(e.message(), "bad.toml: missing [model] section"), e.message());
}

BOOST_AUTO_TEST_CASE(an_unknown_backend_is_refused) {
  check_refused("[task]\ngoal = \"g\"\n[model]\n\nbackend = \"gpt-9\"\n", errc::parse_error, 5,
                {"unknown model backend 'gpt-9'", "supports: scripted, local, openai"});
}

BOOST_AUTO_TEST_CASE(local_backend_keys_are_checked) {
  check_refused("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\nlatency_ms = 5\n",
                errc::parse_error, 5,
                {"unknown key 'latency_ms' in [model] (backend = \"local\")",
                 "model, threads, context, max_batch, kv_budget_mib"});
  check_refused("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\nthreads = 0\n",
                errc::parse_error, 5, {"'threads' in [model] (backend = \"local\") must be between 1"});
  check_refused("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\ntop_p = 1.5\n",
                errc::parse_error, 5, {"'top_p'", "must be between 0 and 1"});
  check_refused("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\nkv_cache_type = \"q8\"\n",
                errc::parse_error, 5, {"kv_cache_type must be \"f32\" or \"f16\""});
  check_refused("[task]\ngoal = \"g\"\n[model]\nbackend = \"local\"\nprefix_cache = \"yes\"\n",
                errc::parse_error, 5, {"'prefix_cache'", "must be true or false, not"});
}

BOOST_AUTO_TEST_CASE(every_key_of_the_openai_backend_is_read) {
  auto spec = parse_task(R"([task]
goal = "g"
[model]
backend = "openai"
base_url = "https://api.moonshot.ai/v1"
model = "kimi-k2.5"
api_key_env = "MOONSHOT_API_KEY"
timeout_s = 2.5
max_retries = 7
max_concurrency = 3
extra_body = { thinking = { type = "disabled" } }
ca_file = "/etc/ssl/extra.pem"
retry_base_ms = 100
retry_max_ms = 900
max_retry_after_s = 30
)",
                         "kimi.toml");
  BOOST_TEST(spec.model_backend == "openai");
  const auto& o = spec.openai;
  BOOST_TEST(o.base_url == "https://api.moonshot.ai/v1");
  BOOST_TEST(o.model == "kimi-k2.5");
  BOOST_TEST(o.api_key_env == "MOONSHOT_API_KEY");
  BOOST_TEST(o.timeout.count() == 2500);
  BOOST_TEST(o.max_retries == 7u);
  BOOST_TEST(o.max_concurrency == 3u);
  BOOST_TEST(o.ca_file == "/etc/ssl/extra.pem");
  BOOST_TEST(o.retry_base_delay.count() == 100);
  BOOST_TEST(o.retry_max_delay.count() == 900);
  BOOST_TEST(o.max_retry_after.count() == 30000);
  auto extra = json::parse(o.extra_body);
  BOOST_TEST(json::dump(extra) == R"({"thinking":{"type":"disabled"}})");

  // Defaults: those of openai_config; extra_body may also be JSON text.
  auto d = parse_task(
    "[task]\ngoal = \"g\"\n[model]\nbackend = \"openai\"\nmodel = \"m\"\n"
    "extra_body = '{\"parallel_tool_calls\": true}'\n");
  openai_config defaults;
  BOOST_TEST(d.openai.base_url == defaults.base_url);
  BOOST_TEST(d.openai.api_key_env == "OPENAI_API_KEY");
  BOOST_TEST(d.openai.timeout.count() == defaults.timeout.count());
  BOOST_TEST(d.openai.max_retries == defaults.max_retries);
  BOOST_TEST(d.openai.extra_body == R"({"parallel_tool_calls": true})");
}

BOOST_AUTO_TEST_CASE(openai_backend_keys_are_checked_and_keys_in_the_file_refused) {
  const std::string head = "[task]\ngoal = \"g\"\n[model]\nbackend = \"openai\"\n";
  check_refused(head + "model = \"m\"\napi_key = \"sk-secret-123\"\n", errc::parse_error, 6,
                {"must not hold the API key", "api_key_env"});
  BOOST_TEST(!contains(parse_error_of(head + "model = \"m\"\napi_key = \"sk-secret-123\"\n").message(),
                       "sk-secret-123"));
  check_refused(head + "base_url = \"http://127.0.0.1:1/v1\"\n", errc::parse_error, 4,
                {"needs model = "});
  check_refused(head + "model = \"m\"\nthreads = 2\n", errc::parse_error, 6,
                {"unknown key 'threads' in [model] (backend = \"openai\")", "base_url, model"});
  check_refused(head + "model = \"m\"\nmax_concurrency = 0\n", errc::parse_error, 6,
                {"'max_concurrency'", "must be between 1"});
  check_refused(head + "model = \"m\"\ntimeout_s = \"soon\"\n", errc::parse_error, 6,
                {"'timeout_s'", "must be a number"});
  check_refused(head + "model = \"m\"\nextra_body = \"[1, 2]\"\n", errc::parse_error, 6,
                {"extra_body must be a JSON object"});
  check_refused(head + "model = \"m\"\nextra_body = \"{oops\"\n", errc::parse_error, 6,
                {"extra_body is not valid JSON"});
  check_refused(head + "model = \"m\"\nextra_body = 3\n", errc::parse_error, 6,
                {"extra_body must be a table or a JSON string"});
}

BOOST_AUTO_TEST_CASE(a_tool_call_without_a_name_is_refused) {
  check_refused(
    "[task]\ngoal = \"g\"\n[model]\n[[model.rules]]\n[[model.rules.turns]]\n"
    "tool_calls = [\n  { name = \"noop\" },\n  { arguments = { a = 1 } },\n]\n",
    errc::parse_error, 8, {"a tool call in [[model.rules.turns]] needs a name"});
}

BOOST_AUTO_TEST_CASE(a_missing_file_is_not_found) {
  try {
    load_task_file(TROUPE_SOURCE_DIR "/samples/no_such_task.toml");
    BOOST_FAIL("a missing task file was loaded");
  } catch (const error& e) {
    BOOST_TEST(e.code() == errc::not_found, e.render());
    BOOST_TEST(contains(e.message(), "no_such_task.toml"), e.message());
    BOOST_TEST(contains(e.message(), "does not exist"), e.message());
  }
}

BOOST_AUTO_TEST_SUITE_END()
