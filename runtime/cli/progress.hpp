#pragma once
/// Progress of a run on stderr: one line per agent start/finish and per tool call, with colour on
/// terminals unless NO_COLOR is set; nothing with --quiet.

#include <chrono>
#include <cstdio>
#include <mutex>

#include "troupe/swarm.hpp"

namespace troupe::cli {

class progress_printer {
 public:
  /// `quiet`: print nothing. Colour only when `out` is a terminal and NO_COLOR is unset/empty.
  progress_printer(std::FILE* out, bool quiet);

  /// An observer to give to swarm::set_observer; valid while this printer lives.
  progress_observer observer();

 private:
  void print(const progress_event& ev);

  std::FILE* out_;
  bool quiet_;
  bool color_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mtx_;
};

}  // namespace troupe::cli
