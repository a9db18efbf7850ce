#include "troupe/scripted_model.hpp"

#include <fmt/format.h>

#include <unordered_map>

#include "caf/all.hpp"
#include "troupe/json.hpp"

namespace troupe {
namespace {

using scripted_model_actor = model_actor::extend<caf::reacts_to<resume_atom, uint64_t>>;

struct delayed_reply {
  assistant_turn turn;
  delta_sink_actor sink;
  uint64_t request_id = 0;
  caf::typed_response_promise<assistant_turn> promise;
};

struct scripted_state {
  static inline const char* name = "troupe.model.scripted";
  model_script script;
  uint64_t next = 1;
  std::unordered_map<uint64_t, delayed_reply> delayed;        // By internal sequence number.
  std::unordered_map<uint64_t, uint64_t> seq_of_request;      // Request id -> sequence number.
};

/// Replaces {{prompt}}, {{tool_results}} and {{step}}; JSON-escapes the values when `in_json`.
std::string expand(std::string_view tmpl, const std::string& prompt, const std::string& results,
                   size_t step, bool in_json) {
  if (tmpl.find("{{") == std::string_view::npos) return std::string{tmpl};
  auto esc = [&](const std::string& s) {
    if (!in_json) return s;
    auto q = json::quote(s);
    return q.substr(1, q.size() - 2);
  };
  std::string out;
  size_t pos = 0;
  for (;;) {
    auto open = tmpl.find("{{", pos);
    if (open == std::string_view::npos) break;
    auto close = tmpl.find("}}", open);
    if (close == std::string_view::npos) break;
    out.append(tmpl.substr(pos, open - pos));
    auto key = tmpl.substr(open + 2, close - open - 2);
    if (key == "prompt") out += esc(prompt);
    else if (key == "tool_results") out += esc(results);
    else if (key == "step") out += std::to_string(step);
    else out.append(tmpl.substr(open, close + 2 - open));
    pos = close + 2;
  }
  out.append(tmpl.substr(pos));
  return out;
}

uint64_t estimate_tokens(std::string_view s) { return (s.size() + 3) / 4; }

assistant_turn make_turn(const model_script& script, const chat_request& req) {
  std::string system, prompt, results;
  size_t step = 0;
  uint64_t in_tokens = 0;
  size_t last_assistant = 0;
  for (size_t i = 0; i < req.messages.size(); ++i) {
    const auto& m = req.messages[i];
    for (const auto& p : m.content) in_tokens += estimate_tokens(p.value);
    in_tokens += 4;
    if (m.role == role::system && system.empty()) system = m.text();
    else if (m.role == role::user && prompt.empty()) prompt = m.text();
    else if (m.role == role::assistant) {
      ++step;
      last_assistant = i;
    }
  }
  // Results of the previous turn: the tool messages after the last assistant message.
  for (size_t i = last_assistant; step > 0 && i < req.messages.size(); ++i) {
    const auto& m = req.messages[i];
    if (m.role != role::tool) continue;
    if (!results.empty()) results += '\n';
    results += m.text();
  }
  assistant_turn turn;
  const script_rule* rule = nullptr;
  for (const auto& r : script.rules)
    if (r.match.empty() || system.find(r.match) != std::string::npos ||
        prompt.find(r.match) != std::string::npos) {
      rule = &r;
      break;
    }
  const scripted_turn* chosen = nullptr;
  if (rule && !rule->turns.empty()) {
    size_t k = step;
    for (const auto& t : rule->turns) {
      auto n = std::max<uint32_t>(t.repeat, 1);
      if (k < n) {
        chosen = &t;
        break;
      }
      k -= n;
    }
    if (!chosen && rule->turns.back().tool_calls.empty()) chosen = &rule->turns.back();
  }
  if (!chosen) {
    turn.text = rule ? "(script exhausted)" : "(no script rule matches this conversation)";
  } else {
    turn.text = expand(chosen->text, prompt, results, step, false);
    turn.reasoning = expand(chosen->reasoning, prompt, results, step, false);
    for (size_t i = 0; i < chosen->tool_calls.size(); ++i) {
      auto call = chosen->tool_calls[i];
      if (call.id.empty()) call.id = fmt::format("call_{}_{}", step, i);
      call.arguments = expand(call.arguments, prompt, results, step, true);
      turn.tool_calls.push_back(std::move(call));
    }
  }
  turn.finish = turn.tool_calls.empty() ? finish_reason::stop : finish_reason::tool_calls;
  uint64_t out = estimate_tokens(turn.text) + estimate_tokens(turn.reasoning);
  for (const auto& c : turn.tool_calls) out += estimate_tokens(c.name) + estimate_tokens(c.arguments);
  turn.usage = usage{in_tokens, out};
  return turn;
}

void stream(scripted_model_actor::pointer self, const delta_sink_actor& sink, uint64_t id,
            const assistant_turn& turn) {
  if (!sink) return;
  if (!turn.reasoning.empty()) {
    turn_delta d;
    d.request_id = id;
    d.reasoning = turn.reasoning;
    self->send(sink, delta_atom::value, std::move(d));
  }
  if (!turn.text.empty()) {
    turn_delta d;
    d.request_id = id;
    d.text = turn.text;
    self->send(sink, delta_atom::value, std::move(d));
  }
  for (size_t i = 0; i < turn.tool_calls.size(); ++i) {
    turn_delta d;
    d.request_id = id;
    d.tool_index = static_cast<int32_t>(i);
    d.tool_id = turn.tool_calls[i].id;
    d.tool_name = turn.tool_calls[i].name;
    d.arguments = turn.tool_calls[i].arguments;
    self->send(sink, delta_atom::value, std::move(d));
  }
}

scripted_model_actor::behavior_type
scripted_behavior(scripted_model_actor::stateful_pointer<scripted_state> self, model_script script) {
  self->state.script = std::move(script);
  return {
    [self](chat_atom, const chat_request& req) -> caf::result<assistant_turn> {
      auto& st = self->state;
      auto turn = make_turn(st.script, req);
      if (st.script.latency.count() <= 0) {
        stream(self, req.stream_to, req.id, turn);
        return turn;
      }
      auto rp = self->make_response_promise<assistant_turn>();
      auto seq = st.next++;
      st.delayed.emplace(seq, delayed_reply{std::move(turn), req.stream_to, req.id, rp});
      st.seq_of_request[req.id] = seq;
      self->delayed_send(self, st.script.latency, resume_atom::value, seq);
      return rp;
    },
    [self](cancel_atom, uint64_t request_id) {
      auto& st = self->state;
      auto it = st.seq_of_request.find(request_id);
      if (it == st.seq_of_request.end()) return;
      auto d = st.delayed.find(it->second);
      st.seq_of_request.erase(it);
      if (d == st.delayed.end()) return;
      assistant_turn cancelled;
      cancelled.finish = finish_reason::cancelled;
      d->second.promise.deliver(std::move(cancelled));
      st.delayed.erase(d);
    },
    [self](resume_atom, uint64_t seq) {
      auto& st = self->state;
      auto d = st.delayed.find(seq);
      if (d == st.delayed.end()) return;
      auto r = std::move(d->second);
      st.delayed.erase(d);
      st.seq_of_request.erase(r.request_id);
      stream(self, r.sink, r.request_id, r.turn);
      r.promise.deliver(std::move(r.turn));
    },
  };
}

}  // namespace

model_actor spawn_scripted_model(caf::actor_system& sys, model_script script) {
  return caf::actor_cast<model_actor>(sys.spawn(scripted_behavior, std::move(script)));
}

}  // namespace troupe
