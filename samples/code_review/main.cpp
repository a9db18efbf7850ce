// Code review by a swarm: a lead agent lists the files of a directory with the `fs` plugin and
// fans out one reviewer per file; each reviewer reads its file (fs), compiles it in the `exec`
// plugin's bubblewrap sandbox, and asks the model for findings as JSON; the lead merges the
// findings into one report, files that do not compile first.
//
//   code_review [DIR] [--model smollm2|FILE.gguf]      (DIR: samples/code_review/project)
//
// The compile results come from running the code, so they are exact; the findings are the
// model's (SmolLM2-135M by default: read them as a demonstration of the plumbing).

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "caf/all.hpp"
#include "troupe/troupe.hpp"

namespace fs = std::filesystem;
using troupe::json::object;

namespace {

const char* const findings_schema =
  R"({"type":"object","properties":{"summary":{"type":"string","minLength":1,"maxLength":120},)"
  R"("issues":{"type":"array","maxItems":3,"items":{"type":"string","minLength":1,)"
  R"("maxLength":100}}},"required":["summary","issues"],"additionalProperties":false})";

/// Python that compiles `source` as `name` and prints one line: "ok" or the syntax error.
std::string compile_check(const std::string& name, const std::string& source) {
  return "import sys\nsrc = " + troupe::json::quote(source) + "\ntry:\n    compile(src, " +
         troupe::json::quote(name) +
         ", 'exec')\n    print('ok')\nexcept SyntaxError as e:\n"
         "    print(f'SyntaxError at line {e.lineno}: {e.msg}')\n";
}

/// One file: read it, compile it in the sandbox, ask the model for findings.
troupe::task<std::string> reviewer(troupe::agent_context& ctx, std::string file) {
  auto read_args = troupe::json::dump(object{{"path", file}});
  auto read = co_await ctx.call("read_file", read_args);
  if (read.is_error) co_return troupe::json::dump(object{{"file", file}, {"error", read.content}});
  const auto source = troupe::json::parse(read.content, "read_file result").find("content")->as_string();
  auto run_args = troupe::json::dump(object{{"code", compile_check(file, source)}});
  auto run = co_await ctx.call("run_python", run_args);
  std::string compiled = "not checked: " + run.content;
  if (!run.is_error) {
    const auto r = troupe::json::parse(run.content, "run_python result");
    compiled = r.find("stdout")->as_string();
    while (!compiled.empty() && compiled.back() == '\n') compiled.pop_back();
  }
  std::vector<troupe::chat_message> question{
    troupe::chat_message::system(
      "You are a Python code reviewer. Reply in JSON: a one-sentence summary of what the file "
      "does, and up to three concrete issues (bugs or risky patterns)."),
    troupe::chat_message::user("File " + file + " (compile check: " + compiled + "):\n```python\n" +
                               source + "```")};
  auto turn = co_await ctx.chat_json(std::move(question), findings_schema);
  auto findings = troupe::json::parse(turn.text, "findings");
  findings.set("file", file);
  findings.set("compiles", compiled == "ok");
  findings.set("compile_check", compiled);
  co_return troupe::json::dump(findings);
}

/// The lead: lists the directory, fans out reviewers, merges their findings.
troupe::task<std::string> lead(troupe::agent_context& ctx, std::string dir) {
  auto list_args = troupe::json::dump(object{{"path", dir}});
  auto listing = co_await ctx.call("list_dir", list_args);
  if (listing.is_error) co_return "cannot list " + dir + ": " + listing.content;
  std::vector<std::string> files;
  const auto entries = troupe::json::parse(listing.content, "list_dir result");
  for (const auto& e : entries.find("entries")->as_array()) {
    const auto& name = e.find("name")->as_string();
    if (e.find("type")->as_string() == "file" && name.size() > 3 &&
        name.compare(name.size() - 3, 3, ".py") == 0)
      files.push_back(name);
  }
  auto reviews = co_await ctx.fan_out("reviewer", "{{item}}", files);
  // Merge: files that do not compile first, then by name.
  std::vector<troupe::json::value> merged;
  for (size_t i = 0; i < files.size(); ++i) {
    if (!reviews[i].ok()) {
      merged.push_back(object{{"file", files[i]}, {"error", reviews[i].failure.render()}});
      continue;
    }
    merged.push_back(troupe::json::parse(reviews[i].text, "review"));
  }
  std::stable_sort(merged.begin(), merged.end(), [](const auto& a, const auto& b) {
    const auto* ca = a.find("compiles");
    const auto* cb = b.find("compiles");
    const bool fa = ca && !ca->as_bool(), fb = cb && !cb->as_bool();
    return fa != fb ? fa : a.find("file")->as_string() < b.find("file")->as_string();
  });
  std::string report;
  size_t broken = 0;
  for (const auto& r : merged) {
    report += "== " + r.find("file")->as_string() + "\n";
    if (const auto* err = r.find("error")) {
      report += "   review failed: " + err->as_string() + "\n";
      continue;
    }
    const bool ok = r.find("compiles")->as_bool();
    broken += ok ? 0 : 1;
    report += std::string("   compiles: ") + (ok ? "yes" : "NO, " + r.find("compile_check")->as_string()) + "\n";
    report += "   summary: " + r.find("summary")->as_string() + "\n";
    for (const auto& issue : r.find("issues")->as_array()) report += "   - " + issue.as_string() + "\n";
  }
  report += std::to_string(files.size()) + " files reviewed, " + std::to_string(broken) +
            " do not compile\n";
  co_return report;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = TROUPE_CODE_REVIEW_PROJECT, model_file = "smollm2";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--model") == 0 && i + 1 < argc) model_file = argv[++i];
    else dir = argv[i];
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = troupe::spawn_tool_registry(sys);
  troupe::plugin_options opts;
  opts.allowed_dirs = {fs::path{TROUPE_FS_PLUGIN}.parent_path()};
  auto loader = troupe::spawn_plugin_loader(sys, registry, opts);
  troupe::model_actor model;
  int status = 0;
  try {
    troupe::plugin_config fs_cfg;  // the reviewed directory, read-only
    fs_cfg.config_json = troupe::json::dump(object{{"root", fs::absolute(dir).string()},
                                                   {"read_only", true}});
    troupe::load_plugin(sys, loader, TROUPE_FS_PLUGIN, fs_cfg);
    troupe::plugin_config exec_cfg;
    exec_cfg.config_json = troupe::json::dump(object{{"cpu_seconds", 5}, {"wall_ms", 20000}});
    troupe::load_plugin(sys, loader, TROUPE_EXEC_PLUGIN, exec_cfg);
    troupe::local_model_config lc;
    lc.model = model_file;
    lc.default_max_tokens = 160;
    model = troupe::spawn_local_model(sys, lc);
    troupe::swarm sw{sys, model, registry};
    sw.add_agent_type("reviewer", troupe::make_agent(reviewer), "Reviews one file");
    sw.add_agent_type("lead", troupe::make_agent(lead), "Reviews a directory with reviewers");
    troupe::agent_config lead_cfg;
    lead_cfg.name = "lead";
    lead_cfg.tools = {"list_dir", "read_file", "run_python"};
    lead_cfg.sampling.temperature = 0;
    lead_cfg.sampling.repetition_penalty = 1.3f;  // the reviewers inherit it
    troupe::run_report report;
    auto result = sw.fan_out(lead_cfg, "{{item}}", {"."}, &report);
    if (!result[0].ok()) throw result[0].failure;
    std::cout << result[0].text;
    std::cerr << "code_review: " << report.agents.size() << " agents, " << report.tool_calls
              << " tool calls, " << report.critical_steps << " critical steps, " << report.wall_ms
              << " ms\n";
  } catch (const troupe::error& e) {
    std::cerr << "code_review: " << e.render() << "\n";
    status = 1;
  }
  if (model) caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(loader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  return status;
}
