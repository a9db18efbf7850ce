#pragma once
/// The live view of `troupe run` on a terminal: a compact table of agents (state, current tool,
/// steps, tokens, time) and run totals (live agents, tool calls in flight, tokens/s), redrawn in
/// place with ANSI cursor movement at most ten times a second from one thread of its own; agent
/// threads only update counters under a lock. The final state stays on screen when it stops.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "troupe/swarm.hpp"

namespace troupe::cli {

struct live_view_options {
  size_t max_rows = 12;  ///< Agent rows at most; the rest are summed up in "... and K more".
  bool color = true;
  std::chrono::milliseconds period{100};  ///< Time between redraws (at least 100 ms is used).
  size_t width = 0;  ///< Columns; 0: ask the terminal (80 when it does not say).
};

/// True when the live view suits `out`: a terminal whose TERM is not "dumb".
bool live_view_suits(std::FILE* out);

/// True when colour may be used on `out`: a terminal, NO_COLOR unset or empty, TERM not "dumb".
bool color_suits(std::FILE* out);

/// One observer that calls each non-empty one of `a` and `b`, in that order.
progress_observer tee_observers(progress_observer a, progress_observer b);

class live_view {
 public:
  live_view(std::FILE* out, live_view_options opts);
  ~live_view();  ///< Calls stop().
  live_view(const live_view&) = delete;
  live_view& operator=(const live_view&) = delete;

  /// An observer to give to swarm::set_observer; valid while this view lives.
  progress_observer observer();

  /// Starts the redraw thread.
  void start();
  /// Stops the redraw thread and draws the final state once (nothing if never started).
  /// Idempotent.
  void stop();

  /// The lines of the table as of `now` (no cursor movement, colour as configured, each cut to the
  /// width). For tests and for the final frame.
  std::vector<std::string> render(std::chrono::steady_clock::time_point now);

 private:
  struct agent_row {
    uint64_t id = 0;
    uint64_t parent_id = 0;
    std::string name;
    std::string state = "starting";
    std::string tool;  // A tool still running, if any.
    std::multiset<std::string> in_flight;
    uint32_t steps = 0;
    uint64_t tokens = 0;
    bool finished = false;
    bool failed = false;
    size_t order = 0;
    std::chrono::steady_clock::time_point started, last_change, ended;
  };

  void on_event(const progress_event& ev);
  void draw(bool final);
  void loop();

  std::FILE* out_;
  live_view_options opts_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mtx_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool stopped_ = false;
  bool dirty_ = true;
  std::thread thread_;
  std::map<uint64_t, agent_row> agents_;
  size_t tool_calls_in_flight_ = 0;
  size_t tool_calls_done_ = 0;
  uint64_t tokens_ = 0;
  std::deque<std::pair<std::chrono::steady_clock::time_point, uint64_t>> token_samples_;
  size_t lines_drawn_ = 0;  // Only the redraw thread (or stop, after it ended) touches this.
};

}  // namespace troupe::cli
