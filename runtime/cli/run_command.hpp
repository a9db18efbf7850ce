#pragma once
/// `troupe run TASK.toml`: runs a swarm from a task file.

#include <string>

namespace troupe::cli {

struct run_options {
  std::string task_file;
  bool json = false;
  bool quiet = false;
  std::string trace_file;      ///< --trace FILE: write a Chrome trace of the run; empty: none.
  bool trace_content = false;  ///< --trace-content: tool arguments and results in the trace.
};

/// Returns the process exit code: 0 success, 1 the run failed, 2 the task file is unusable.
int run_command(const run_options& opts);

}  // namespace troupe::cli
