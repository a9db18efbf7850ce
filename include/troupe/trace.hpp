#pragma once
/// Traces of swarm runs for Perfetto and chrome://tracing: a progress observer that records every
/// agent, model step and tool call, and writes them as Chrome Trace Event Format JSON with span
/// names and attributes after the OpenTelemetry GenAI conventions.
///
/// Layout of the file (one process, the run):
///  - one track (tid) per agent, named "<agent>#<id>", holding the `invoke_agent <agent>` slice
///    with its `chat <model>` steps and its tool calls nested inside;
///  - the calls of one turn run in parallel and may overlap, and Perfetto's JSON importer needs the
///    slices of one track to nest perfectly, so a call that overlaps another goes on an extra track
///    of that agent, "<agent>#<id> tools N", placed right after the agent's own track;
///  - a flow arrow ("s" → "f", category "spawn") from the parent's spawning call (assign_task,
///    spawn_swarm, or the parent's own slice) to the child's `invoke_agent` slice.
/// Timestamps are microseconds since the recorder was made, with nanosecond decimals.

#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "troupe/swarm.hpp"

namespace troupe {

struct trace_options {
  /// gen_ai.request.model of chat spans, and the suffix of their names ("chat <model>").
  std::string model = "model";
  /// gen_ai.provider.name, omitted when empty.
  std::string provider;
  /// Name of the trace's process track.
  std::string process_name = "troupe run";
  /// Record tool arguments and results (gen_ai.tool.call.arguments / .result) when the progress
  /// events carry them. Off by default: they may hold anything the model or a tool produced.
  bool content = false;
};

/// Records the progress events of runs and writes them as a trace. Thread-safe: `record` may be
/// called from every agent thread at once (it only appends under a lock; all the work happens in
/// `to_json`). Spans still open when the trace is rendered (an agent cut off by cancellation, a
/// call whose agent finished first) end at the agent's end, or at the last event, and carry
/// "troupe.unfinished": true.
class trace_recorder {
 public:
  explicit trace_recorder(trace_options opts = {});

  /// An observer to give to swarm::set_observer; valid while this recorder lives.
  progress_observer observer();

  void record(const progress_event& ev);

  /// Number of progress events recorded so far.
  size_t size() const;

  /// The trace: {"traceEvents":[...],"displayTimeUnit":"ms"}.
  std::string to_json() const;

  /// Writes to_json() to `path`. Throws troupe::error (io_error) naming the file on failure.
  void write(const std::string& path) const;

 private:
  /// The parts of a progress_event a trace uses.
  struct record_entry {
    progress_event::kind what;
    uint64_t agent_id;
    uint64_t parent_id;
    std::string agent;
    std::string detail;
    std::string call_id;
    std::string arguments;
    std::string result;
    uint64_t tokens;
    uint64_t input_tokens;
    uint64_t output_tokens;
    bool has_usage;
    bool is_error;
    int64_t at_ns;
    uint32_t run = 0;  ///< How many earlier agents had this id (runs reuse ids: 1, 2, ...).
  };

  trace_options opts_;
  std::chrono::steady_clock::time_point origin_;
  mutable std::mutex mtx_;
  std::vector<record_entry> events_;
  std::map<uint64_t, uint32_t> starts_;  ///< Agent id -> its latest run number.
};

}  // namespace troupe
