#include "run_command.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "caf/all.hpp"
#include "live_view.hpp"
#include "progress.hpp"
#include "troupe/builtin_tools.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"
#include "troupe/local_model.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/scripted_model.hpp"
#include "troupe/swarm.hpp"
#include "troupe/task_file.hpp"
#include "troupe/tool_registry.hpp"
#include "troupe/trace.hpp"

namespace troupe::cli {

namespace {

std::string fan_out_json(const std::vector<std::string>& items,
                         const std::vector<agent_result>& results) {
  json::array out;
  for (size_t k = 0; k < items.size(); ++k) {
    json::object o;
    o.emplace_back("item", items[k]);
    o.emplace_back("outcome", results[k].ok() ? "completed" : "failed");
    if (results[k].ok()) o.emplace_back("result", results[k].text);
    else o.emplace_back("error", results[k].failure.render());
    out.emplace_back(std::move(o));
  }
  return json::dump(json::value{std::move(out)});
}

}  // namespace

int run_command(const run_options& opts) {
  task_spec task;
  try {
    task = load_task_file(opts.task_file);
  } catch (const error& e) {
    std::fprintf(stderr, "troupe run: %s\n", e.what());
    return 2;
  }
  if (!opts.trace_file.empty()) {  // Find out now, not after the run, that it cannot be written.
    std::FILE* probe = std::fopen(opts.trace_file.c_str(), "wb");
    if (!probe) {
      std::fprintf(stderr, "troupe run: cannot write the trace file '%s': %s\n",
                   opts.trace_file.c_str(), std::strerror(errno));
      return 2;
    }
    std::fclose(probe);
  }
  troupe::actor_system_config cfg;
  caf::actor_system sys{cfg};
  auto registry = spawn_tool_registry(sys);
  model_actor model;
  try {
    register_builtin_tools(sys, registry, task.builtin_tools, task.tools);
    if (task.model_backend == "local")
      model = spawn_local_model(sys, task.local);
    else if (task.model_backend == "openai")
      model = spawn_openai_model(sys, task.openai);
    else
      model = spawn_scripted_model(sys, task.script);
  } catch (const error& e) {
    std::fprintf(stderr, "troupe run: %s: %s\n", task.source.c_str(), e.what());
    caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
    return 2;
  }
  // On a terminal a live table, else plain lines; nothing with --quiet.
  const bool live = !opts.quiet && live_view_suits(stderr);
  progress_printer progress{stderr, opts.quiet || live};
  live_view_options view_opts;
  view_opts.color = color_suits(stderr);
  live_view view{stderr, view_opts};
  trace_options trace_opts;
  trace_opts.model = task.model_backend;
  trace_opts.content = opts.trace_content;
  trace_recorder trace{trace_opts};
  int code = 0;
  {
    swarm sw{sys, model, registry, task.limits};
    sw.set_observer(tee_observers(live ? view.observer() : progress.observer(),
                                  opts.trace_file.empty() ? progress_observer{} : trace.observer()));
    if (live) view.start();
    if (task.has_worker) sw.set_worker_template(task.worker);
    run_report report;
    std::string result;
    if (task.is_fan_out()) {
      auto results = sw.fan_out(task.worker, task.prompt_template, task.items, &report);
      result = fan_out_json(task.items, results);
      report.result = result;
    } else {
      report = sw.run(task.orchestrator, task.goal);
      result = report.result;
    }
    view.stop();  // The final table stays above the result.
    if (!opts.trace_file.empty()) {
      try {
        trace.write(opts.trace_file);
      } catch (const error& e) {
        std::fprintf(stderr, "troupe run: %s\n", e.what());
        code = 1;
      }
    }
    if (opts.json) {
      std::printf("%s\n", report.to_json().c_str());
    } else if (report.ok()) {
      std::printf("%s\n", result.c_str());
    }
    if (!report.ok()) {
      std::fprintf(stderr, "troupe run: the run failed: %s\n", report.failure.render().c_str());
      code = 1;
    }
    if (!opts.quiet)
      std::fprintf(stderr,
                   "troupe run: %u agents, %u steps, %u critical steps, %u tool calls, "
                   "%llu tokens, %.1f ms\n",
                   static_cast<unsigned>(report.agents.size()), report.total_steps,
                   report.critical_steps, report.tool_calls,
                   static_cast<unsigned long long>(report.tokens.total()), report.wall_ms);
  }
  caf::anon_send_exit(registry, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(model, caf::exit_reason::user_shutdown);
  return code;
}

}  // namespace troupe::cli
