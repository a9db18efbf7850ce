// The trace recorder: progress events in, Chrome Trace Event Format JSON out (see trace.hpp).

#include "troupe/trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <utility>

#include "troupe/json.hpp"

namespace troupe {

namespace {

using kind = progress_event::kind;

// progress_event carries neither a turn's token split, nor the call id, arguments or result of a
// tool call (yet). These pick them up once it does, under the names proposed for it.
template <class Event>
bool event_usage(const Event& ev, uint64_t& input, uint64_t& output) {
  if constexpr (requires { ev.usage.prompt_tokens; ev.usage.completion_tokens; }) {
    input = ev.usage.prompt_tokens;
    output = ev.usage.completion_tokens;
    return true;
  } else {
    return false;
  }
}

template <class Event>
std::string event_call_id(const Event& ev) {
  if constexpr (requires { std::string{ev.call_id}; }) return std::string{ev.call_id};
  else return {};
}

template <class Event>
std::pair<std::string, std::string> event_content(const Event& ev) {
  if constexpr (requires { std::string{ev.arguments}; std::string{ev.result}; })
    return {std::string{ev.arguments}, std::string{ev.result}};
  else return {};
}

bool is_spawning_tool(const std::string& name) {
  return name == "assign_task" || name == "spawn_swarm";
}

struct span {
  int64_t start = 0;
  int64_t end = -1;  // -1 while open.
  bool unfinished = false;
  bool is_error = false;
  bool inferred_start = false;
  std::string tool;  // Tool spans only.
  std::string call_id, arguments, result;
  uint64_t tokens_before = 0, tokens = 0, input_tokens = 0, output_tokens = 0;
  bool has_usage = false;
  size_t lane = 0;  // Tool spans: 0 = the agent's own track.
};

struct agent_spans {
  uint64_t id = 0;
  uint32_t run = 0;
  uint64_t parent_id = 0;
  std::string name;
  size_t order = 0;  // Order of first appearance.
  int64_t start = -1;
  int64_t end = -1;
  bool finished = false;
  bool is_error = false;
  std::string outcome;
  uint64_t tokens = 0;
  int64_t last_reply = -1;
  std::vector<span> chats;
  std::vector<span> tools;
  size_t lanes = 1;
  int64_t first_tid = 0;
};

/// "12.345" µs from nanoseconds, exactly.
std::string micros(int64_t ns) {
  if (ns < 0) ns = 0;
  return fmt::format("{}.{:03}", ns / 1000, ns % 1000);
}

struct trace_writer {
  std::string out;
  bool first = true;

  void begin() { out = "{\"traceEvents\":[\n"; }
  void end() { out += "\n],\"displayTimeUnit\":\"ms\"}\n"; }

  void event(std::string_view body) {
    if (!first) out += ",\n";
    first = false;
    out += '{';
    out += body;
    out += '}';
  }

  void metadata(const char* name, int64_t tid, json::object args) {
    event(fmt::format(R"("name":"{}","ph":"M","ts":0,"pid":1,"tid":{},"args":{})", name, tid,
                      json::dump(json::value{std::move(args)})));
  }

  void complete(const std::string& name, const char* cat, int64_t tid, int64_t start, int64_t end,
                json::object args) {
    event(fmt::format(R"("name":{},"cat":"{}","ph":"X","ts":{},"dur":{},"pid":1,"tid":{},"args":{})",
                      json::quote(name), cat, micros(start), micros(std::max<int64_t>(0, end - start)),
                      tid, json::dump(json::value{std::move(args)})));
  }

  void flow(char ph, uint64_t id, const std::string& name, int64_t tid, int64_t at) {
    event(fmt::format(R"("name":{},"cat":"spawn","ph":"{}",{}"id":{},"ts":{},"pid":1,"tid":{})",
                      json::quote(name), ph, ph == 'f' ? "\"bp\":\"e\"," : "", id, micros(at),
                      tid));
  }
};

/// Closes every open span of `a` at `at`.
void close_open(agent_spans& a, int64_t at) {
  for (auto* list : {&a.chats, &a.tools})
    for (auto& s : *list)
      if (s.end < 0) {
        s.end = std::max(at, s.start);
        s.unfinished = true;
      }
}

bool overlaps(const span& s, int64_t start, int64_t end) { return s.start < end && start < s.end; }

/// Puts each tool span on the lowest lane where it overlaps nothing; lane 0 (the agent's track)
/// also holds the chat spans.
void assign_lanes(agent_spans& a) {
  std::vector<size_t> order(a.tools.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t x, size_t y) { return a.tools[x].start < a.tools[y].start; });
  std::vector<std::vector<size_t>> lanes(1);
  for (size_t k : order) {
    auto& t = a.tools[k];
    for (size_t lane = 0;; ++lane) {
      if (lane == lanes.size()) lanes.emplace_back();
      bool free = std::none_of(lanes[lane].begin(), lanes[lane].end(), [&](size_t other) {
        return overlaps(a.tools[other], t.start, t.end);
      });
      if (free && lane == 0)
        free = std::none_of(a.chats.begin(), a.chats.end(),
                            [&](const span& c) { return overlaps(c, t.start, t.end); });
      if (free) {
        t.lane = lane;
        lanes[lane].push_back(k);
        break;
      }
    }
  }
  a.lanes = lanes.size();
}

}  // namespace

trace_recorder::trace_recorder(trace_options opts)
    : opts_(std::move(opts)), origin_(std::chrono::steady_clock::now()) {}

progress_observer trace_recorder::observer() {
  return [this](const progress_event& ev) { record(ev); };
}

void trace_recorder::record(const progress_event& ev) {
  record_entry e{ev.what, ev.agent_id, ev.parent_id, ev.agent, {}, {}, {}, {}, ev.tokens, 0, 0,
                 false, ev.is_error,
                 std::chrono::duration_cast<std::chrono::nanoseconds>(ev.at - origin_).count()};
  if (ev.what == kind::tool_started || ev.what == kind::tool_finished ||
      ev.what == kind::agent_finished)
    e.detail = ev.detail;
  if (ev.what == kind::model_reply) e.has_usage = event_usage(ev, e.input_tokens, e.output_tokens);
  if (ev.what == kind::tool_started || ev.what == kind::tool_finished) {
    e.call_id = event_call_id(ev);
    if (opts_.content) {
      auto [args, result] = event_content(ev);
      if (ev.what == kind::tool_started) e.arguments = std::move(args);
      else e.result = std::move(result);
    }
  }
  std::lock_guard<std::mutex> guard{mtx_};
  // Every run numbers its agents from 1: a second start of an id is another agent.
  if (ev.what == kind::agent_started) {
    auto [it, fresh] = starts_.try_emplace(ev.agent_id, 0);
    if (!fresh) ++it->second;
    e.run = it->second;
  } else if (auto it = starts_.find(ev.agent_id); it != starts_.end()) {
    e.run = it->second;
  }
  events_.push_back(std::move(e));
}

size_t trace_recorder::size() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return events_.size();
}

std::string trace_recorder::to_json() const {
  std::vector<record_entry> events;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    events = events_;
  }
  // Events of one agent arrive in its order (one thread at a time runs an actor); the global order
  // is only roughly by time, which no step below relies on.
  std::map<std::pair<uint32_t, uint64_t>, agent_spans> agents;  // by (run, agent id)
  int64_t last = 0;
  for (const auto& e : events) {
    last = std::max(last, e.at_ns);
    auto [it, fresh] = agents.try_emplace({e.run, e.agent_id});
    auto& a = it->second;
    if (fresh) {
      a.id = e.agent_id;
      a.run = e.run;
      a.order = agents.size();
      a.start = e.at_ns;
    }
    a.parent_id = e.parent_id;
    a.name = e.agent;
    a.tokens = std::max(a.tokens, e.tokens);
    switch (e.what) {
      case kind::agent_started:
        a.start = e.at_ns;
        break;
      case kind::model_request: {
        for (auto& c : a.chats)
          if (c.end < 0) {
            c.end = e.at_ns;
            c.unfinished = true;
          }
        span c;
        c.start = e.at_ns;
        c.tokens_before = e.tokens;
        a.chats.push_back(std::move(c));
        break;
      }
      case kind::model_reply: {
        a.last_reply = e.at_ns;
        for (auto& c : a.chats)
          if (c.end < 0) {
            c.end = e.at_ns;
            c.tokens = e.tokens - std::min(e.tokens, c.tokens_before);
            c.has_usage = e.has_usage;
            c.input_tokens = e.input_tokens;
            c.output_tokens = e.output_tokens;
          }
        break;
      }
      case kind::tool_started: {
        span t;
        t.start = e.at_ns;
        t.tool = e.detail;
        t.call_id = e.call_id;
        t.arguments = e.arguments;
        a.tools.push_back(std::move(t));
        break;
      }
      case kind::tool_finished: {
        // The oldest open call of that tool (and id, when events carry ids).
        span* match = nullptr;
        for (auto& t : a.tools)
          if (t.end < 0 && t.tool == e.detail && (e.call_id.empty() || t.call_id == e.call_id)) {
            match = &t;
            break;
          }
        if (!match) {
          // Calls that never report a start (orchestration tools, calls refused before they ran)
          // were dispatched together with the turn that asked for them.
          span t;
          t.start = a.last_reply >= 0 ? a.last_reply : a.start;
          t.inferred_start = true;
          t.tool = e.detail;
          t.call_id = e.call_id;
          a.tools.push_back(std::move(t));
          match = &a.tools.back();
        }
        match->end = std::max(e.at_ns, match->start);
        match->is_error = e.is_error;
        match->result = e.result;
        break;
      }
      case kind::agent_finished:
        a.end = e.at_ns;
        a.finished = true;
        a.is_error = e.is_error;
        a.outcome = e.detail;
        close_open(a, e.at_ns);
        break;
    }
  }

  // Tracks: each agent, then its extra tool lanes, in order of first appearance.
  std::vector<agent_spans*> ordered;
  for (auto& [id, a] : agents) {
    if (a.end < 0) a.end = last;
    close_open(a, a.end);
    assign_lanes(a);
    ordered.push_back(&a);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const agent_spans* x, const agent_spans* y) { return x->order < y->order; });
  int64_t next_tid = 1;
  for (auto* a : ordered) {
    a->first_tid = next_tid;
    next_tid += static_cast<int64_t>(a->lanes);
  }

  trace_writer w;
  w.begin();
  w.metadata("process_name", 0, json::object{{"name", opts_.process_name}});
  for (auto* a : ordered) {
    auto label = fmt::format("{}#{}", a->name, a->id);
    for (size_t lane = 0; lane < a->lanes; ++lane) {
      auto tid = a->first_tid + static_cast<int64_t>(lane);
      w.metadata("thread_name", tid,
                 json::object{{"name", lane == 0 ? label : fmt::format("{} tools {}", label, lane + 1)}});
      w.metadata("thread_sort_index", tid, json::object{{"sort_index", tid}});
    }
  }
  for (auto* a : ordered) {
    const auto tid = a->first_tid;
    json::object args{{"gen_ai.operation.name", "invoke_agent"},
                      {"gen_ai.agent.name", a->name},
                      {"gen_ai.agent.id", std::to_string(a->id)},
                      {"troupe.steps", static_cast<int64_t>(std::count_if(
                                         a->chats.begin(), a->chats.end(),
                                         [](const span& c) { return !c.unfinished; }))},
                      {"troupe.usage.total_tokens", static_cast<int64_t>(a->tokens)}};
    if (a->parent_id != 0) args.emplace_back("troupe.parent_agent.id", std::to_string(a->parent_id));
    if (!a->outcome.empty()) args.emplace_back("troupe.outcome", a->outcome);
    if (a->is_error) args.emplace_back("error.type", a->outcome.empty() ? "_OTHER" : a->outcome);
    if (!a->finished) args.emplace_back("troupe.unfinished", true);
    w.complete("invoke_agent " + a->name, "gen_ai.agent", tid, a->start, std::max(a->end, a->start),
               std::move(args));
    for (const auto& c : a->chats) {
      json::object cargs{{"gen_ai.operation.name", "chat"},
                         {"gen_ai.request.model", opts_.model},
                         {"gen_ai.agent.name", a->name}};
      if (!opts_.provider.empty()) cargs.emplace_back("gen_ai.provider.name", opts_.provider);
      if (c.has_usage) {
        cargs.emplace_back("gen_ai.usage.input_tokens", static_cast<int64_t>(c.input_tokens));
        cargs.emplace_back("gen_ai.usage.output_tokens", static_cast<int64_t>(c.output_tokens));
      }
      if (!c.unfinished) cargs.emplace_back("troupe.usage.total_tokens", static_cast<int64_t>(c.tokens));
      else cargs.emplace_back("troupe.unfinished", true);
      w.complete("chat " + opts_.model, "gen_ai.chat", tid, c.start, c.end, std::move(cargs));
    }
    for (const auto& t : a->tools) {
      json::object targs{{"gen_ai.operation.name", "execute_tool"},
                         {"gen_ai.tool.name", t.tool},
                         {"gen_ai.agent.name", a->name}};
      if (!t.call_id.empty()) targs.emplace_back("gen_ai.tool.call.id", t.call_id);
      if (opts_.content && !t.arguments.empty())
        targs.emplace_back("gen_ai.tool.call.arguments", t.arguments);
      if (opts_.content && !t.result.empty()) targs.emplace_back("gen_ai.tool.call.result", t.result);
      if (t.is_error) targs.emplace_back("error.type", "tool_error");
      if (t.unfinished) targs.emplace_back("troupe.unfinished", true);
      if (t.inferred_start) targs.emplace_back("troupe.start_inferred", true);
      w.complete("execute_tool " + t.tool, "gen_ai.tool", tid + static_cast<int64_t>(t.lane),
                 t.start, t.end, std::move(targs));
    }
  }
  // Spawn arrows: from the parent's call that was running when the child started.
  for (auto* child : ordered) {
    auto parent = agents.find({child->run, child->parent_id});
    if (child->parent_id == 0 || parent == agents.end()) continue;
    const auto& p = parent->second;
    const auto at = child->start;
    if (at < p.start || at > p.end) continue;
    // The call that ran while the child did and ended first after it: assign_task ends with its
    // one child, spawn_swarm with the last of its children.
    int64_t from_tid = p.first_tid;
    const span* from = nullptr;
    for (const auto& t : p.tools)
      if (is_spawning_tool(t.tool) && t.start <= at && at <= t.end && t.end >= child->end &&
          (!from || t.end < from->end))
        from = &t;
    if (from) from_tid = p.first_tid + static_cast<int64_t>(from->lane);
    auto name = fmt::format("spawn {}", child->name);
    w.flow('s', child->id, name, from_tid, at);
    w.flow('f', child->id, name, child->first_tid, at);
  }
  w.end();
  return std::move(w.out);
}

void trace_recorder::write(const std::string& path) const {
  auto text = to_json();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f)
    throw error{errc::io_error, fmt::format("cannot write the trace file '{}': {}; check that its "
                                            "directory exists and is writable",
                                            path, std::strerror(errno))};
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok)
    throw error{errc::io_error,
                fmt::format("writing the trace file '{}' failed: {}", path, std::strerror(errno))};
}

}  // namespace troupe
