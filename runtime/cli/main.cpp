// troupe: the command-line front end of the troupe swarm runtime.

#include <CLI/CLI.hpp>

#include <cstdio>

#include "chat_command.hpp"
#include "generate_command.hpp"
#include "index_command.hpp"
#include "plugins_command.hpp"

#include "run_command.hpp"
#include "serve_command.hpp"

int main(int argc, char** argv) {
  CLI::App app{
    "troupe: run LLM agent swarms.\n\n"
    "An orchestrator agent, driven by a model, spawns sub-agents (create_subagent, assign_task,\n"
    "spawn_swarm) whose tool calls run in parallel under budgets the runtime enforces.\n\n"
    "Examples:\n"
    "  troupe run samples/hello_swarm/task.toml          run a swarm, result on stdout\n"
    "  troupe run --json samples/swarm_scale/scale.toml  the run report as JSON\n"
    "  troupe plugins list --plugin-dir build/plugins    the tool plugins that can be loaded\n"
    "  troupe index docs/ --out docs.sqlite              index a corpus for the search plugin\n"
    "  troupe generate -m smollm2 \"Write a haiku\"        text from the embedded local model\n"
    "  troupe chat                                        talk with the embedded local model\n"
    "  troupe serve -m smollm2 --port 8080                OpenAI-compatible server on 127.0.0.1\n"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "troupe 0.1.0");

  troupe::cli::run_options run_opts;
  auto* run = app.add_subcommand(
    "run", "Run a swarm described by a task file (TOML: [task], [model], [tools], [budgets], ...).\n"
           "Progress goes to stderr (a live table on a terminal, plain lines otherwise; NO_COLOR\n"
           "is respected), the result to stdout. Exit status: 0 done, 1 the run failed, 2 bad\n"
           "task file or unwritable trace file.");
  run->add_option("task", run_opts.task_file, "Task file (.toml)")->required();
  run->add_flag("--json", run_opts.json,
                "Print the run report as JSON: per agent steps, tool calls, tokens; critical "
                "steps; wall-clock");
  run->add_flag("-q,--quiet", run_opts.quiet, "No progress on stderr");
  auto* trace = run->add_option("--trace", run_opts.trace_file,
                                "Write the run as a Chrome trace (JSON) to FILE: a track per agent, "
                                "model steps and tool calls; open it in https://ui.perfetto.dev");
  run->add_flag("--trace-content", run_opts.trace_content,
                "Put tool-call arguments and results in the trace (they may be sensitive)")
    ->needs(trace);

  troupe::cli::plugins_options plugins_opts;
  auto* plugins = troupe::cli::add_plugins_command(app, plugins_opts);
  troupe::cli::generate_options generate_opts;
  auto* generate = troupe::cli::add_generate_command(app, generate_opts);
  troupe::cli::chat_options chat_opts;
  auto* chat = troupe::cli::add_chat_command(app, chat_opts);
  troupe::cli::index_command_options index_opts;
  auto* index = troupe::cli::add_index_command(app, index_opts);
  troupe::cli::serve_options serve_opts;
  auto* serve = troupe::cli::add_serve_command(app, serve_opts);

  CLI11_PARSE(app, argc, argv);
  if (*run) return troupe::cli::run_command(run_opts);
  if (*plugins) return troupe::cli::plugins_command(plugins_opts);
  if (*index) return troupe::cli::index_command(index_opts);
  if (*generate) return troupe::cli::generate_command(generate_opts);
  if (*chat) return troupe::cli::chat_command(chat_opts);
  if (*serve) return troupe::cli::serve_command(serve_opts);
  return 2;
}
