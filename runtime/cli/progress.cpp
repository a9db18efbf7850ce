#include "progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>

namespace troupe::cli {

progress_printer::progress_printer(std::FILE* out, bool quiet)
    : out_(out), quiet_(quiet), start_(std::chrono::steady_clock::now()) {
  const char* no_color = std::getenv("NO_COLOR");
  color_ = isatty(fileno(out)) && !(no_color && *no_color);
}

progress_observer progress_printer::observer() {
  if (quiet_) return {};
  return [this](const progress_event& ev) { print(ev); };
}

void progress_printer::print(const progress_event& ev) {
  using k = progress_event::kind;
  if (ev.what == k::model_request || ev.what == k::model_reply) return;
  if (ev.what == k::tool_started) return;  // The finish line says everything.
  auto secs = std::chrono::duration<double>(ev.at - start_).count();
  auto paint = [&](const char* code, const std::string& s) {
    return color_ ? fmt::format("\x1b[{}m{}\x1b[0m", code, s) : s;
  };
  std::string who = fmt::format("{}#{}", ev.agent, ev.agent_id);
  std::string line;
  switch (ev.what) {
    case k::agent_started:
      line = fmt::format("{} started", paint("1", who));
      break;
    case k::tool_finished:
      line = fmt::format("{} {} {}", who, ev.is_error ? paint("31", "✗") : paint("32", "✓"),
                         ev.detail);
      break;
    case k::agent_finished:
      line = fmt::format("{} {} after {} steps, {} tokens", paint("1", who),
                         ev.is_error ? paint("31", ev.detail) : paint("32", ev.detail), ev.steps,
                         ev.tokens);
      break;
    default: return;
  }
  std::lock_guard<std::mutex> guard{mtx_};
  std::fprintf(out_, "[%7.3fs] %s\n", secs, line.c_str());
}

}  // namespace troupe::cli
