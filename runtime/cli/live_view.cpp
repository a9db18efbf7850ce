#include "live_view.hpp"

#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace troupe::cli {

namespace {

using clock = std::chrono::steady_clock;

bool dumb_terminal() {
  const char* term = std::getenv("TERM");
  return term && std::strcmp(term, "dumb") == 0;
}

size_t terminal_width(std::FILE* out) {
  winsize ws{};
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/// `line` cut to `width` columns: escape sequences take none, UTF-8 continuation bytes none.
std::string fit(const std::string& line, size_t width, bool color) {
  std::string out;
  size_t cols = 0;
  for (size_t k = 0; k < line.size(); ++k) {
    unsigned char c = static_cast<unsigned char>(line[k]);
    if (c == 0x1b && k + 1 < line.size() && line[k + 1] == '[') {
      size_t end = k + 2;
      while (end < line.size() && !(line[end] >= 0x40 && line[end] <= 0x7e)) ++end;
      out.append(line, k, end - k + 1);
      k = end;
      continue;
    }
    if ((c & 0xc0) != 0x80) {
      if (cols == width) {
        if (color) out += "\x1b[0m";
        return out;
      }
      ++cols;
    }
    out += line[k];
  }
  return out;
}

std::string seconds(clock::duration d) {
  auto s = std::chrono::duration<double>(d).count();
  return s < 10 ? fmt::format("{:.2f}s", s) : fmt::format("{:.1f}s", s);
}

}  // namespace

bool live_view_suits(std::FILE* out) { return isatty(fileno(out)) && !dumb_terminal(); }

bool color_suits(std::FILE* out) {
  const char* no_color = std::getenv("NO_COLOR");
  return live_view_suits(out) && !(no_color && *no_color);
}

progress_observer tee_observers(progress_observer a, progress_observer b) {
  if (!a) return b;
  if (!b) return a;
  return [a = std::move(a), b = std::move(b)](const progress_event& ev) {
    a(ev);
    b(ev);
  };
}

live_view::live_view(std::FILE* out, live_view_options opts)
    : out_(out), opts_(opts), start_(clock::now()) {
  if (opts_.period < std::chrono::milliseconds(100)) opts_.period = std::chrono::milliseconds(100);
  if (opts_.max_rows == 0) opts_.max_rows = 1;
}

live_view::~live_view() { stop(); }

progress_observer live_view::observer() {
  return [this](const progress_event& ev) { on_event(ev); };
}

void live_view::on_event(const progress_event& ev) {
  using k = progress_event::kind;
  std::lock_guard<std::mutex> guard{mtx_};
  auto [it, fresh] = agents_.try_emplace(ev.agent_id);
  auto& a = it->second;
  if (fresh) {
    a.id = ev.agent_id;
    a.order = agents_.size();
    a.started = ev.at;
  }
  a.name = ev.agent;
  a.parent_id = ev.parent_id;
  a.steps = ev.steps;
  if (ev.tokens > a.tokens) {
    tokens_ += ev.tokens - a.tokens;
    a.tokens = ev.tokens;
  }
  a.last_change = ev.at;
  switch (ev.what) {
    case k::agent_started: a.state = "starting"; break;
    case k::model_request: a.state = "thinking"; break;
    case k::model_reply: a.state = "waiting"; break;
    case k::tool_started:
      a.in_flight.insert(ev.detail);
      a.tool = ev.detail;
      a.state = "tools";
      ++tool_calls_in_flight_;
      break;
    case k::tool_finished:
      // Orchestration calls (and calls refused before they ran) report no start: they are not
      // tool calls of the registry, which is what the totals count (as the run report does).
      if (auto f = a.in_flight.find(ev.detail); f != a.in_flight.end()) {
        a.in_flight.erase(f);
        --tool_calls_in_flight_;
        ++tool_calls_done_;
      }
      if (a.in_flight.empty()) {
        a.tool.clear();
        a.state = "waiting";
      } else if (!a.in_flight.count(a.tool)) {
        a.tool = *a.in_flight.begin();
      }
      break;
    case k::agent_finished:
      tool_calls_in_flight_ -= std::min(tool_calls_in_flight_, a.in_flight.size());
      a.in_flight.clear();
      a.tool.clear();
      a.finished = true;
      a.failed = ev.is_error;
      a.state = ev.detail == "completed" ? "done" : ev.detail.empty() ? "failed" : ev.detail;
      a.ended = ev.at;
      break;
  }
  dirty_ = true;
}

std::vector<std::string> live_view::render(clock::time_point now) {
  const bool color = opts_.color;
  auto paint = [&](const char* code, const std::string& s) {
    return color ? fmt::format("\x1b[{}m{}\x1b[0m", code, s) : s;
  };
  const size_t width = opts_.width ? opts_.width : terminal_width(out_);
  std::vector<std::string> lines;
  std::lock_guard<std::mutex> guard{mtx_};

  // The rows shown: live agents, most recently active first, then the most recently finished;
  // shown in the order the agents started so that rows do not jump around.
  std::vector<const agent_row*> rows;
  for (const auto& [id, a] : agents_) rows.push_back(&a);
  std::sort(rows.begin(), rows.end(), [](const agent_row* x, const agent_row* y) {
    if (x->finished != y->finished) return !x->finished;
    auto tx = x->finished ? x->ended : x->last_change;
    auto ty = y->finished ? y->ended : y->last_change;
    return tx != ty ? tx > ty : x->order < y->order;
  });
  const size_t hidden = rows.size() > opts_.max_rows ? rows.size() - opts_.max_rows : 0;
  size_t live = 0;
  for (const auto* a : rows) live += a->finished ? 0 : 1;
  size_t hidden_live = 0;
  for (size_t k = opts_.max_rows; k < rows.size(); ++k) hidden_live += rows[k]->finished ? 0 : 1;
  rows.resize(std::min(rows.size(), opts_.max_rows));
  std::sort(rows.begin(), rows.end(),
            [](const agent_row* x, const agent_row* y) { return x->order < y->order; });

  std::map<uint64_t, size_t> live_children;
  for (const auto& [id, a] : agents_)
    if (!a.finished && a.parent_id != 0) ++live_children[a.parent_id];

  lines.push_back(paint("1", fmt::format("{:<24} {:<10} {:<16} {:>5} {:>8} {:>7}", "AGENT", "STATE",
                                         "TOOL", "STEPS", "TOKENS", "TIME")));
  for (const auto* a : rows) {
    auto who = fmt::format("{}#{}", a->name, a->id);
    if (who.size() > 24) who = who.substr(0, 23) + "~";
    auto tool = a->tool;
    if (a->in_flight.size() > 1) tool += fmt::format(" +{}", a->in_flight.size() - 1);
    if (tool.empty() && !a->finished)
      if (auto c = live_children.find(a->id); c != live_children.end())
        tool = fmt::format("{} sub-agent{}", c->second, c->second == 1 ? "" : "s");
    if (tool.size() > 16) tool = tool.substr(0, 15) + "~";
    const char* code = a->failed                ? "31"
                       : a->finished            ? "32"
                       : a->state == "thinking" ? "33"
                       : a->state == "tools"    ? "36"
                                                : "0";
    auto state = fmt::format("{:<10}", a->state);
    lines.push_back(fmt::format("{:<24} {} {:<16} {:>5} {:>8} {:>7}", who, paint(code, state), tool,
                                a->steps, a->tokens,
                                seconds((a->finished ? a->ended : now) - a->started)));
  }
  if (hidden > 0)
    lines.push_back(fmt::format("... and {} more ({} live)", hidden, hidden_live));

  // Tokens per second over the last few seconds (over the whole run when it is shorter).
  token_samples_.emplace_back(now, tokens_);
  while (token_samples_.size() > 2 && now - token_samples_[1].first > std::chrono::seconds(3))
    token_samples_.pop_front();
  double rate = 0;
  auto span = std::chrono::duration<double>(now - token_samples_.front().first).count();
  if (span >= 0.5) {
    rate = static_cast<double>(tokens_ - token_samples_.front().second) / span;
  } else {
    auto elapsed = std::chrono::duration<double>(now - start_).count();
    rate = elapsed > 0 ? static_cast<double>(tokens_) / elapsed : 0;
  }
  lines.push_back(paint("1", fmt::format("{} live agents, {} done | {} tool calls in flight, {} "
                                         "done | {} tokens, {:.0f} tok/s | {}",
                                         live, agents_.size() - live, tool_calls_in_flight_,
                                         tool_calls_done_, tokens_, rate, seconds(now - start_))));
  for (auto& l : lines) l = fit(l, width > 1 ? width - 1 : 1, color);
  dirty_ = false;
  return lines;
}

void live_view::draw(bool final) {
  auto lines = render(clock::now());
  std::string frame;
  if (lines_drawn_ > 0) frame += fmt::format("\r\x1b[{}A", lines_drawn_);
  for (const auto& l : lines) {
    frame += "\x1b[2K";
    frame += l;
    frame += '\n';
  }
  if (lines.size() < lines_drawn_) frame += "\x1b[J";
  lines_drawn_ = final ? 0 : lines.size();
  std::fwrite(frame.data(), 1, frame.size(), out_);
  std::fflush(out_);
}

void live_view::loop() {
  std::unique_lock<std::mutex> lk{mtx_};
  while (!stopping_) {
    lk.unlock();
    draw(false);
    lk.lock();
    wake_.wait_for(lk, opts_.period, [this] { return stopping_; });
  }
}

void live_view::start() {
  std::lock_guard<std::mutex> guard{mtx_};
  if (thread_.joinable() || stopped_) return;
  thread_ = std::thread{[this] { loop(); }};
}

void live_view::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    if (stopped_) return;
    stopping_ = true;
    stopped_ = true;
  }
  wake_.notify_all();
  if (!thread_.joinable()) return;  // Never started: nothing on screen to finish.
  thread_.join();
  draw(true);
}

}  // namespace troupe::cli
