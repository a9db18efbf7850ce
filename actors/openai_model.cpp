#include "troupe/openai_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "caf/all.hpp"
#include "http_client.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"

namespace troupe {
namespace {

// Private messages of the backend (from its I/O thread, its endpoint gate and its timers).
using oai_ok_atom = caf::atom_constant<caf::atom("oai_ok")>;
using oai_fail_atom = caf::atom_constant<caf::atom("oai_fail")>;
using oai_retry_atom = caf::atom_constant<caf::atom("oai_retry")>;
using oai_grant_atom = caf::atom_constant<caf::atom("oai_grant")>;

/// model_actor plus: (oai_ok, request, attempt, turn); (oai_fail, request, attempt, error,
/// retry_after_ms or -1, retryable, rate_limited); (oai_retry, request, attempt) when a backoff
/// ends; (oai_grant, request) when the endpoint gate admits a waiting request.
using backend_actor = model_actor::extend<
    caf::reacts_to<oai_ok_atom, uint64_t, uint32_t, assistant_turn>,
    caf::reacts_to<oai_fail_atom, uint64_t, uint32_t, caf::error, int64_t, bool, bool>,
    caf::reacts_to<oai_retry_atom, uint64_t, uint32_t>, caf::reacts_to<oai_grant_atom, uint64_t>>;

// ------------------------------------------------------------------------------------------------
// Adaptive concurrency per endpoint (AIMD), shared by every backend of the process.
// ------------------------------------------------------------------------------------------------

/// Admits at most floor(limit) requests at once to one endpoint. The limit halves on a 429 (not
/// below 1) and grows by 1/limit on each success (about +1 per `limit` successes) up to `max`.
/// Waiters are admitted in FIFO order; `grant` runs with the slot already taken.
class endpoint_gate {
 public:
  explicit endpoint_gate(uint32_t max) : max_(max), limit_(max) {}

  void lower_max(uint32_t max) {
    std::lock_guard<std::mutex> g{mtx_};
    max_ = std::min<double>(max_, max);
    limit_ = std::min(limit_, max_);
  }

  /// True: admitted now. False: queued; `grant` is called once admitted.
  bool acquire(uint64_t owner, uint64_t key, std::function<void()> grant) {
    std::lock_guard<std::mutex> g{mtx_};
    if (waiters_.empty() && in_flight_ < admitted_limit()) {
      ++in_flight_;
      ++held_[owner];
      return true;
    }
    waiters_.push_back({owner, key, std::move(grant)});
    return false;
  }

  enum class outcome { success, rate_limited, neutral };

  void release(uint64_t owner, outcome o) {
    std::vector<std::function<void()>> grants;
    {
      std::lock_guard<std::mutex> g{mtx_};
      auto it = held_.find(owner);
      if (it == held_.end() || it->second == 0) return;
      if (--it->second == 0) held_.erase(it);
      --in_flight_;
      if (o == outcome::rate_limited)
        limit_ = std::max(1.0, limit_ / 2);
      else if (o == outcome::success)
        limit_ = std::min(max_, limit_ + 1.0 / limit_);
      admit(grants);
    }
    for (auto& f : grants) f();
  }

  /// Removes a queued waiter; false when it is not queued (already admitted, or unknown).
  bool forget(uint64_t owner, uint64_t key) {
    std::lock_guard<std::mutex> g{mtx_};
    for (auto it = waiters_.begin(); it != waiters_.end(); ++it)
      if (it->owner == owner && it->key == key) {
        waiters_.erase(it);
        return true;
      }
    return false;
  }

  /// Drops an owner's waiters and returns every slot it holds (admitted or being admitted).
  void forget_owner(uint64_t owner) {
    std::vector<std::function<void()>> grants;
    {
      std::lock_guard<std::mutex> g{mtx_};
      std::erase_if(waiters_, [&](const waiter& w) { return w.owner == owner; });
      if (auto it = held_.find(owner); it != held_.end()) {
        in_flight_ -= it->second;
        held_.erase(it);
      }
      admit(grants);
    }
    for (auto& f : grants) f();
  }

 private:
  struct waiter {
    uint64_t owner;
    uint64_t key;
    std::function<void()> grant;
  };

  uint32_t admitted_limit() const {
    return static_cast<uint32_t>(std::max(1.0, std::floor(limit_)));
  }

  void admit(std::vector<std::function<void()>>& grants) {
    while (!waiters_.empty() && in_flight_ < admitted_limit()) {
      auto w = std::move(waiters_.front());
      waiters_.pop_front();
      ++in_flight_;
      ++held_[w.owner];
      grants.push_back(std::move(w.grant));
    }
  }

  std::mutex mtx_;
  double max_;
  double limit_;
  uint32_t in_flight_ = 0;
  std::map<uint64_t, uint32_t> held_;
  std::deque<waiter> waiters_;
};

std::shared_ptr<endpoint_gate> gate_for(const std::string& origin, uint32_t max) {
  static std::mutex mtx;
  static std::map<std::string, std::weak_ptr<endpoint_gate>> gates;
  std::lock_guard<std::mutex> g{mtx};
  auto& slot = gates[origin];
  if (auto gate = slot.lock()) {
    gate->lower_max(max);
    return gate;
  }
  auto gate = std::make_shared<endpoint_gate>(max);
  slot = gate;
  return gate;
}

// ------------------------------------------------------------------------------------------------
// Request bodies
// ------------------------------------------------------------------------------------------------

json::value content_of(const chat_message& m) {
  bool plain = true;
  for (const auto& p : m.content) plain = plain && p.kind == part_kind::text;
  if (plain) return json::value{m.text()};
  json::array parts;
  for (const auto& p : m.content) {
    json::object part;
    if (p.kind == part_kind::text) {
      part.emplace_back("type", "text");
      part.emplace_back("text", p.value);
    } else {
      auto url = p.kind == part_kind::image_url
                     ? p.value
                     : "data:" + (p.media_type.empty() ? std::string{"image/png"} : p.media_type) +
                           ";base64," + p.value;
      part.emplace_back("type", "image_url");
      part.emplace_back("image_url", json::object{{"url", std::move(url)}});
    }
    parts.emplace_back(std::move(part));
  }
  return json::value{std::move(parts)};
}

std::string build_body(const openai_config& cfg, const json::value& extra, const chat_request& req,
                       bool stream) {
  json::value body;
  body.set("model", cfg.model);
  json::array messages;
  for (const auto& m : req.messages) {
    json::object msg;
    msg.emplace_back("role", to_string(m.role));
    if (m.role == role::tool) {
      msg.emplace_back("content", m.text());
      msg.emplace_back("tool_call_id", m.tool_call_id);
      messages.emplace_back(std::move(msg));
      continue;
    }
    msg.emplace_back("content", content_of(m));
    if (!m.name.empty()) msg.emplace_back("name", m.name);
    if (m.role == role::assistant && !m.tool_calls.empty()) {
      if (!m.reasoning.empty()) msg.emplace_back("reasoning_content", m.reasoning);
      json::array calls;
      for (const auto& c : m.tool_calls)
        calls.emplace_back(
            json::object{{"id", c.id},
                         {"type", "function"},
                         {"function", json::object{{"name", c.name}, {"arguments", c.arguments}}}});
      msg.emplace_back("tool_calls", std::move(calls));
    }
    messages.emplace_back(std::move(msg));
  }
  body.set("messages", std::move(messages));
  if (!req.tools.empty()) {
    json::array tools;
    for (const auto& t : req.tools) {
      json::object fn{{"name", t.name}};
      if (!t.description.empty()) fn.emplace_back("description", t.description);
      fn.emplace_back("parameters",
                      json::parse(t.parameters, "parameters schema of tool '" + t.name + "'"));
      tools.emplace_back(json::object{{"type", "function"}, {"function", std::move(fn)}});
    }
    body.set("tools", std::move(tools));
  }
  switch (req.choice.mode) {
    case tool_choice_mode::automatic:
      if (!req.tools.empty()) body.set("tool_choice", "auto");
      break;
    case tool_choice_mode::none:
      body.set("tool_choice", "none");
      break;
    case tool_choice_mode::required:
      body.set("tool_choice", "required");
      break;
    case tool_choice_mode::named:
      body.set("tool_choice", json::object{{"type", "function"},
                                           {"function", json::object{{"name", req.choice.name}}}});
      break;
  }
  if (req.sampling.temperature >= 0) body.set("temperature", double{req.sampling.temperature});
  if (req.sampling.top_p >= 0) body.set("top_p", double{req.sampling.top_p});
  if (req.sampling.seed != 0) body.set("seed", static_cast<int64_t>(req.sampling.seed));
  if (req.sampling.frequency_penalty != 0)
    body.set("frequency_penalty", double{req.sampling.frequency_penalty});
  if (req.sampling.presence_penalty != 0)
    body.set("presence_penalty", double{req.sampling.presence_penalty});
  if (req.max_tokens > 0) body.set("max_tokens", req.max_tokens);
  if (std::any_of(req.stop.begin(), req.stop.end(), [](auto& s) { return !s.empty(); })) {
    json::array stop;
    for (const auto& s : req.stop)
      if (!s.empty()) stop.emplace_back(s);
    body.set("stop", std::move(stop));
  }
  if (!req.sampling.logit_bias.empty()) {
    json::object bias;
    for (const auto& b : req.sampling.logit_bias)
      bias.emplace_back(std::to_string(b.token), double{b.bias});
    body.set("logit_bias", std::move(bias));
  }
  if (req.top_logprobs >= 0) {
    body.set("logprobs", true);
    body.set("top_logprobs", static_cast<int64_t>(req.top_logprobs));
  }
  if (!req.response_schema.empty())
    body.set("response_format",
             json::object{
                 {"type", "json_schema"},
                 {"json_schema",
                  json::object{{"name", "reply"},
                               {"schema", json::parse(req.response_schema, "response_schema")}}}});
  if (stream) {
    body.set("stream", true);
    body.set("stream_options", json::object{{"include_usage", true}});
  }
  if (extra.is_object())
    for (const auto& [k, v] : extra.as_object()) body.set(k, v);
  return json::dump(body);
}

// ------------------------------------------------------------------------------------------------
// Responses (parsed on the I/O thread)
// ------------------------------------------------------------------------------------------------

finish_reason map_finish(std::string_view reason, bool has_calls) {
  if (reason == "length") return finish_reason::length;
  if (reason == "tool_calls" || reason == "function_call") return finish_reason::tool_calls;
  if (reason == "content_filter") return finish_reason::error;
  return has_calls ? finish_reason::tool_calls : finish_reason::stop;
}

std::string string_member(const json::value& v, std::string_view key) {
  auto* m = v.find(key);
  return m && m->is_string() ? m->as_string() : std::string{};
}

uint64_t count_member(const json::value& v, std::string_view key) {
  auto* m = v.find(key);
  return m && m->is_int() && m->as_int() > 0 ? static_cast<uint64_t>(m->as_int()) : 0;
}

usage usage_of(const json::value& u) {
  // Cached prompt tokens: OpenAI, vLLM and SGLang put them in prompt_tokens_details, Kimi's API
  // (and DeepSeek's, as prompt_cache_hit_tokens) at the top.
  uint64_t cached = 0;
  if (const auto* d = u.find("prompt_tokens_details"); d && d->is_object())
    cached = count_member(*d, "cached_tokens");
  if (cached == 0) cached = count_member(u, "cached_tokens");
  if (cached == 0) cached = count_member(u, "prompt_cache_hit_tokens");
  return usage{count_member(u, "prompt_tokens"), count_member(u, "completion_tokens"), cached};
}

/// The server's error message from an error body ({"error": {"message": ...}} or a bare object).
std::string server_message(const json::value& v) {
  const json::value* e = v.find("error");
  if (e && e->is_string()) return e->as_string();
  const json::value& obj = e && e->is_object() ? *e : v;
  auto msg = string_member(obj, "message");
  auto type = string_member(obj, "type");
  auto code = obj.find("code");
  std::string tag = type;
  if (code && code->is_string() && code->as_string() != type)
    tag += (tag.empty() ? "" : ", ") + code->as_string();
  if (msg.empty()) msg = json::dump(obj);
  return tag.empty() ? msg : msg + " [" + tag + "]";
}

/// One {"token", "logprob", "bytes"} entry: the token's exact bytes when the server gives them.
top_logprob logprob_entry_of(const json::value& e) {
  top_logprob out;
  if (auto* bytes = e.find("bytes"); bytes && bytes->is_array() && !bytes->as_array().empty()) {
    for (const auto& b : bytes->as_array())
      if (b.is_int() && b.as_int() >= 0 && b.as_int() < 256)
        out.token += static_cast<char>(b.as_int());
  } else {
    out.token = string_member(e, "token");
  }
  if (auto* lp = e.find("logprob"); lp && lp->is_number() && std::isfinite(lp->as_number()))
    out.logprob = static_cast<float>(std::max(lp->as_number(), -1e30));
  return out;
}

/// A choice's logprobs.content (OpenAI, vLLM, SGLang); nothing when absent or malformed.
std::vector<token_logprob> logprobs_of(const json::value& choice) {
  std::vector<token_logprob> out;
  auto* lp = choice.find("logprobs");
  auto* content = lp && lp->is_object() ? lp->find("content") : nullptr;
  if (!content || !content->is_array()) return out;
  for (const auto& e : content->as_array()) {
    if (!e.is_object()) continue;
    auto first = logprob_entry_of(e);
    token_logprob t{std::move(first.token), first.logprob, {}};
    if (auto* top = e.find("top_logprobs"); top && top->is_array())
      for (const auto& alt : top->as_array())
        if (alt.is_object()) t.top.push_back(logprob_entry_of(alt));
    out.push_back(std::move(t));
  }
  return out;
}

struct partial_call {
  std::string id;
  std::string name;
  std::string arguments;
};

/// One attempt of one request: parses the response and reports to the backend actor.
class turn_reader : public http::response_handler {
 public:
  turn_reader(backend_actor backend, uint64_t request, uint32_t attempt, delta_sink_actor sink,
              bool stream, std::string where)
      : backend_(std::move(backend)),
        request_(request),
        attempt_(attempt),
        sink_(std::move(sink)),
        stream_(stream),
        where_(std::move(where)) {}

  void on_head(const http::response_head& head) override {
    status_ = head.status;
    retry_after_ms_ = retry_after(head);
    should_retry_ = head.header("x-should-retry");
    reason_ = head.status == 429 ? "Too Many Requests" : "";
    // Some servers and proxies ignore "stream": true and answer with one JSON document: read it
    // as such and send its text as deltas at the end.
    if (stream_ && head.status >= 200 && head.status < 300 &&
        head.header("content-type").find("application/json") != std::string::npos) {
      stream_ = false;
      late_deltas_ = true;
    }
  }

  bool on_body(std::string_view bytes) override {
    if (!stream_ || status_ < 200 || status_ >= 300) {
      if (body_.size() + bytes.size() > (size_t{64} << 20))
        return fail(error(errc::model_failed, where_ + " sent a response larger than 64 MiB"),
                    false);
      body_.append(bytes);
      return true;
    }
    sse_.append(bytes);
    size_t pos = 0;
    while (!failure_ && !done_) {
      size_t nl = sse_.find('\n', pos);
      if (nl == std::string::npos) break;
      std::string_view line(sse_.data() + pos, nl - pos);
      pos = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {
        if (!data_.empty()) event(std::exchange(data_, {}));
        continue;
      }
      if (line.substr(0, 5) == "data:") {
        auto payload = line.substr(5);
        if (!payload.empty() && payload[0] == ' ') payload.remove_prefix(1);
        if (!data_.empty()) data_ += '\n';
        data_.append(payload);
      }  // Comments (":...") and other fields (event:, id:, retry:) are ignored.
    }
    sse_.erase(0, pos);
    return !failure_ && !done_;
  }

  void on_done(const error& transport) override {
    if (failure_) return report_failure();
    if (transport) {
      // Cancelled exchanges are reported too; the backend has forgotten them by then.
      bool retryable = transport.code() != errc::cancelled && !emitted_;
      if (stream_ && status_ >= 200 && status_ < 300 && transport.code() == errc::io_error)
        return send_fail(
            error(errc::model_failed, where_ + " broke the stream before the turn was complete (" +
                                          transport.message() + ")" +
                                          (emitted_ ? "; the partial answer was dropped" : "")),
            -1, retryable, false);
      return send_fail(transport, -1, retryable, false);
    }
    if (status_ < 200 || status_ >= 300) return report_status();
    if (!stream_) return finish_plain();
    if (!data_.empty() && !done_)
      event(std::exchange(data_, {}));  // Last event without blank line.
    if (failure_) return report_failure();
    if (!done_ && finish_.empty())
      return send_fail(
          error(errc::model_failed, where_ + " ended the stream before the turn was complete" +
                                        (emitted_ ? " (the partial answer was dropped)" : "")),
          -1, !emitted_, false);
    finish_turn();
  }

 private:
  static int64_t retry_after(const http::response_head& head) {
    auto parse = [](const std::string& s, double scale) -> int64_t {
      if (s.empty()) return -1;
      char* end = nullptr;
      double v = std::strtod(s.c_str(), &end);
      if (end == s.c_str() || !std::isfinite(v) || v < 0) return -1;  // HTTP dates: not honoured.
      return static_cast<int64_t>(v * scale);
    };
    auto ms = parse(head.header("retry-after-ms"), 1.0);
    return ms >= 0 ? ms : parse(head.header("retry-after"), 1000.0);
  }

  bool fail(error e, bool retryable) {
    if (!failure_) {
      failure_ = std::move(e);
      failure_retryable_ = retryable;
    }
    return false;
  }

  void report_failure() { send_fail(failure_, -1, failure_retryable_, false); }

  void send_fail(const error& e, int64_t retry_after_ms, bool retryable, bool rate_limited) {
    caf::anon_send(backend_, oai_fail_atom::value, request_, attempt_, to_caf_error(e),
                   retry_after_ms, retryable, rate_limited);
  }

  void report_status() {
    std::string msg;
    try {
      msg = server_message(json::parse(body_, "error body"));
    } catch (const error&) {
      msg = body_.substr(0, 300);
      if (msg.empty()) msg = "(empty body)";
    }
    bool retryable = status_ == 408 || status_ == 409 || status_ == 429 || status_ >= 500;
    if (should_retry_ == "true")
      retryable = true;
    else if (should_retry_ == "false")
      retryable = false;
    errc code = status_ == 400 || status_ == 422 ? errc::invalid_argument
                : status_ == 404                 ? errc::not_found
                                                 : errc::model_failed;
    std::string hint;
    if (status_ == 401 || status_ == 403)
      hint = " (check the API key variable and its permissions)";
    if (status_ == 404) hint = " (check base_url and the model name)";
    send_fail(error(code, fmt::format("{} answered HTTP {}: {}{}", where_, status_, msg, hint)),
              retry_after_ms_, retryable, status_ == 429);
  }

  void emit(turn_delta d) {
    if (!sink_) return;
    d.request_id = request_;
    emitted_ = true;
    caf::anon_send(sink_, delta_atom::value, std::move(d));
  }

  /// One SSE event's data.
  void event(const std::string& data) {
    if (data == "[DONE]") {
      done_ = true;
      return;
    }
    json::value chunk;
    try {
      chunk = json::parse(data, "a streamed chunk");
    } catch (const error& e) {
      fail(error(errc::model_failed,
                 where_ + " streamed a chunk that is not valid JSON: " + e.message()),
           false);
      return;
    }
    if (auto* err = chunk.find("error"); err && !err->is_null()) {
      fail(error(errc::model_failed, where_ + " reported an error in the middle of the stream: " +
                                         server_message(chunk) +
                                         (emitted_ ? " (the partial answer was dropped)" : "")),
           !emitted_);
      return;
    }
    if (auto* u = chunk.find("usage"); u && u->is_object()) usage_ = usage_of(*u);
    auto* choices = chunk.find("choices");
    if (!choices || !choices->is_array()) return;
    for (const auto& choice : choices->as_array()) {
      if (auto* idx = choice.find("index"); idx && idx->is_int() && idx->as_int() != 0) continue;
      auto lps = logprobs_of(choice);
      logprobs_.insert(logprobs_.end(), lps.begin(), lps.end());
      if (auto* delta = choice.find("delta"); delta && delta->is_object()) {
        auto content = string_member(*delta, "content");
        auto reasoning = string_member(*delta, "reasoning_content");
        if (reasoning.empty()) reasoning = string_member(*delta, "reasoning");
        if (!reasoning.empty()) {
          reasoning_ += reasoning;
          turn_delta d;
          d.reasoning = std::move(reasoning);
          emit(std::move(d));
        }
        if (!content.empty() || !lps.empty()) {
          text_ += content;
          turn_delta d;
          d.text = std::move(content);
          d.logprobs = std::exchange(lps, {});
          emit(std::move(d));
        }
        if (auto* calls = delta->find("tool_calls"); calls && calls->is_array()) {
          int64_t pos = 0;
          for (const auto& c : calls->as_array()) {
            auto* index = c.find("index");
            int64_t i = index && index->is_int() ? index->as_int() : pos;
            ++pos;
            auto& call = calls_[i];
            call.id += string_member(c, "id");
            if (auto* fn = c.find("function"); fn && fn->is_object()) {
              call.name += string_member(*fn, "name");
              if (auto* a = fn->find("arguments"); a && a->is_string())
                call.arguments += a->as_string();
              else if (a && a->is_object())
                call.arguments += json::dump(*a);
            }
          }
        }
      }
      if (auto* fr = choice.find("finish_reason"); fr && fr->is_string()) finish_ = fr->as_string();
    }
  }

  void finish_plain() {
    json::value v;
    try {
      v = json::parse(body_, "the response");
    } catch (const error& e) {
      return send_fail(
          error(errc::model_failed,
                where_ + " answered with a body that is not valid JSON: " + e.message()),
          -1, false, false);
    }
    if (auto* err = v.find("error"); err && !err->is_null())
      return send_fail(
          error(errc::model_failed, where_ + " reported an error: " + server_message(v)), -1, false,
          false);
    if (auto* u = v.find("usage"); u && u->is_object()) usage_ = usage_of(*u);
    auto* choices = v.find("choices");
    if (!choices || !choices->is_array() || choices->as_array().empty())
      return send_fail(error(errc::model_failed, where_ + " answered without any choice"), -1,
                       false, false);
    const auto& choice = choices->as_array().front();
    finish_ = string_member(choice, "finish_reason");
    logprobs_ = logprobs_of(choice);
    if (auto* msg = choice.find("message"); msg && msg->is_object()) {
      text_ = string_member(*msg, "content");
      reasoning_ = string_member(*msg, "reasoning_content");
      if (reasoning_.empty()) reasoning_ = string_member(*msg, "reasoning");
      if (auto* calls = msg->find("tool_calls"); calls && calls->is_array()) {
        int64_t i = 0;
        for (const auto& c : calls->as_array()) {
          auto& call = calls_[i++];
          call.id = string_member(c, "id");
          if (auto* fn = c.find("function"); fn && fn->is_object()) {
            call.name = string_member(*fn, "name");
            if (auto* a = fn->find("arguments"); a && a->is_string())
              call.arguments = a->as_string();
            else if (a && a->is_object())
              call.arguments = json::dump(*a);
          }
        }
      }
    }
    if (late_deltas_) {
      if (!reasoning_.empty()) {
        turn_delta d;
        d.reasoning = reasoning_;
        emit(std::move(d));
      }
      if (!text_.empty() || !logprobs_.empty()) {
        turn_delta d;
        d.text = text_;
        d.logprobs = logprobs_;
        emit(std::move(d));
      }
    }
    finish_turn();
  }

  void finish_turn() {
    assistant_turn turn;
    turn.text = std::move(text_);
    turn.reasoning = std::move(reasoning_);
    turn.logprobs = std::move(logprobs_);
    turn.usage = usage_;
    for (auto& [i, c] : calls_) {
      if (c.name.empty())
        return send_fail(
            error(errc::model_failed,
                  fmt::format("{} sent tool call #{} without a function name", where_, i)),
            -1, false, false);
      tool_call call;
      call.id = c.id.empty() ? fmt::format("call_{}_{}", request_, i) : c.id;
      call.name = c.name;
      call.arguments = c.arguments.empty() ? "{}" : c.arguments;
      turn.tool_calls.push_back(std::move(call));
    }
    // Whole tool calls only now that the stream has ended cleanly.
    for (size_t i = 0; i < turn.tool_calls.size(); ++i) {
      turn_delta d;
      d.tool_index = static_cast<int32_t>(i);
      d.tool_id = turn.tool_calls[i].id;
      d.tool_name = turn.tool_calls[i].name;
      d.arguments = turn.tool_calls[i].arguments;
      emit(std::move(d));
    }
    turn.finish = map_finish(finish_, !turn.tool_calls.empty());
    caf::anon_send(backend_, oai_ok_atom::value, request_, attempt_, std::move(turn));
  }

  backend_actor backend_;
  uint64_t request_;
  uint32_t attempt_;
  delta_sink_actor sink_;
  bool stream_;
  bool late_deltas_ = false;  // Streaming was asked for, but the answer came as one JSON document.
  std::string where_;
  unsigned status_ = 0;
  int64_t retry_after_ms_ = -1;
  std::string should_retry_;
  std::string reason_;
  std::string body_;
  std::string sse_;
  std::string data_;
  bool done_ = false;
  bool emitted_ = false;
  error failure_;
  bool failure_retryable_ = false;
  std::string text_;
  std::string reasoning_;
  std::map<int64_t, partial_call> calls_;
  std::string finish_;
  usage usage_;
  std::vector<token_logprob> logprobs_;
};

// ------------------------------------------------------------------------------------------------
// The backend actor
// ------------------------------------------------------------------------------------------------

struct pending_request {
  caf::typed_response_promise<assistant_turn> promise;
  std::string body;
  delta_sink_actor sink;
  uint32_t attempt = 0;  // Attempts started.
  bool holds_slot = false;
  bool waiting = false;
  std::shared_ptr<http::exchange> exchange;
};

struct backend_state {
  static inline const char* name = "troupe.model.openai";
  openai_config cfg;
  http::endpoint ep;
  std::string where;  // "https://host:443/v1/chat/completions" for messages.
  std::string auth;   // "Bearer ..." or empty; never logged.
  json::value extra;
  std::unique_ptr<http::client> client;
  std::shared_ptr<endpoint_gate> gate;
  uint64_t owner = 0;
  std::unordered_map<uint64_t, pending_request> pending;
  std::mt19937_64 rng{std::random_device{}()};

  ~backend_state() {
    if (gate) gate->forget_owner(owner);
    client.reset();  // Aborts exchanges in flight and joins the I/O thread.
  }
};

using backend_pointer = backend_actor::stateful_pointer<backend_state>;

void start_attempt(backend_pointer self, uint64_t id) {
  auto& st = self->state;
  auto& p = st.pending[id];
  ++p.attempt;
  http::request req;
  req.target = st.ep.path + "/chat/completions";
  req.timeout = st.cfg.timeout;
  req.body = p.body;
  req.headers.emplace_back("Content-Type", "application/json");
  req.headers.emplace_back("Accept", p.sink ? "text/event-stream" : "application/json");
  if (!st.auth.empty()) req.headers.emplace_back("Authorization", st.auth);
  auto reader = std::make_shared<turn_reader>(caf::actor_cast<backend_actor>(self), id, p.attempt,
                                              p.sink, static_cast<bool>(p.sink), st.where);
  p.exchange = st.client->start(st.ep, std::move(req), std::move(reader));
}

/// Takes an endpoint slot (or queues for one) and then starts the next attempt.
void admit(backend_pointer self, uint64_t id) {
  auto& st = self->state;
  auto& p = st.pending[id];
  auto handle = caf::actor_cast<backend_actor>(self);
  if (st.gate->acquire(st.owner, id,
                       [handle, id] { caf::anon_send(handle, oai_grant_atom::value, id); })) {
    p.holds_slot = true;
    start_attempt(self, id);
  } else {
    p.waiting = true;
  }
}

void release_slot(backend_pointer self, pending_request& p, endpoint_gate::outcome o) {
  if (!p.holds_slot) return;
  p.holds_slot = false;
  self->state.gate->release(self->state.owner, o);
}

backend_actor::behavior_type backend(backend_pointer self, openai_config cfg, http::endpoint ep,
                                     json::value extra, std::string auth) {
  static std::atomic<uint64_t> next_owner{1};
  auto& st = self->state;
  st.where = ep.origin() + ep.path + "/chat/completions";
  http::client_options copts;
  copts.ca_file = cfg.ca_file;
  // Keep as many idle connections as requests may be in flight, or every burst reconnects.
  copts.max_idle_per_origin = std::max<size_t>(copts.max_idle_per_origin, cfg.max_concurrency);
  st.client = std::make_unique<http::client>(copts);
  st.gate = gate_for(ep.origin(), std::max<uint32_t>(cfg.max_concurrency, 1));
  st.owner = next_owner++;
  st.cfg = std::move(cfg);
  st.ep = std::move(ep);
  st.extra = std::move(extra);
  st.auth = std::move(auth);
  return {
      [self](chat_atom, const chat_request& req) -> caf::result<assistant_turn> {
        auto& st = self->state;
        if (st.pending.count(req.id))
          return to_caf_error(error(errc::invalid_argument,
                                    fmt::format("request id {} is already in flight on the model "
                                                "backend for {}: use a fresh id per request",
                                                req.id, st.where)));
        std::string body;
        try {
          body = build_body(st.cfg, st.extra, req, static_cast<bool>(req.stream_to));
        } catch (const error& e) {
          return to_caf_error(
              error(e.code() == errc::parse_error ? errc::invalid_argument : e.code(),
                    "cannot build the request for " + st.where + ": " + e.message()));
        }
        auto& p = st.pending[req.id];
        p.promise = self->make_response_promise<assistant_turn>();
        p.body = std::move(body);
        p.sink = req.stream_to;
        auto rp = p.promise;
        admit(self, req.id);
        return rp;
      },
      [self](cancel_atom, uint64_t id) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end()) return;
        auto& p = it->second;
        if (p.exchange) st.client->cancel(p.exchange);
        release_slot(self, p, endpoint_gate::outcome::neutral);
        if (p.waiting)
          st.gate->forget(st.owner, id);  // If already admitted, oai_grant releases it.
        assistant_turn t;
        t.finish = finish_reason::cancelled;
        p.promise.deliver(std::move(t));
        st.pending.erase(it);
      },
      [self](oai_grant_atom, uint64_t id) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end() || !it->second.waiting) {
          st.gate->release(st.owner, endpoint_gate::outcome::neutral);
          return;
        }
        it->second.waiting = false;
        it->second.holds_slot = true;
        start_attempt(self, id);
      },
      [self](oai_ok_atom, uint64_t id, uint32_t attempt, assistant_turn& turn) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end() || it->second.attempt != attempt) return;
        release_slot(self, it->second, endpoint_gate::outcome::success);
        it->second.promise.deliver(std::move(turn));
        st.pending.erase(it);
      },
      [self](oai_fail_atom, uint64_t id, uint32_t attempt, caf::error& cause,
             int64_t retry_after_ms, bool retryable, bool rate_limited) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end() || it->second.attempt != attempt) return;
        auto& p = it->second;
        p.exchange.reset();
        release_slot(
            self, p,
            rate_limited ? endpoint_gate::outcome::rate_limited : endpoint_gate::outcome::neutral);
        auto e = from_caf_error(cause, "the model request");
        std::string why;
        if (retryable && attempt > st.cfg.max_retries) {
          why = fmt::format(" (gave up after {} attempts; max_retries = {})", attempt,
                            st.cfg.max_retries);
        } else if (retryable && retry_after_ms > st.cfg.max_retry_after.count()) {
          why = fmt::format(
              " (the server asked to retry after {} ms, more than max_retry_after = {} ms)",
              retry_after_ms, st.cfg.max_retry_after.count());
        } else if (retryable) {
          std::chrono::milliseconds delay;
          if (retry_after_ms >= 0) {
            delay = std::chrono::milliseconds{retry_after_ms};
          } else {
            double d = static_cast<double>(st.cfg.retry_base_delay.count()) *
                       std::pow(2.0, static_cast<double>(attempt - 1));
            d = std::min(d, static_cast<double>(st.cfg.retry_max_delay.count()));
            d *= 1.0 - 0.25 * std::uniform_real_distribution<double>{0.0, 1.0}(st.rng);
            delay = std::chrono::milliseconds{static_cast<int64_t>(d)};
          }
          self->delayed_send(self, delay, oai_retry_atom::value, id, attempt);
          return;
        }
        p.promise.deliver(to_caf_error(error(e.code(), e.message() + why)));
        st.pending.erase(it);
      },
      [self](oai_retry_atom, uint64_t id, uint32_t attempt) {
        auto& st = self->state;
        auto it = st.pending.find(id);
        if (it == st.pending.end() || it->second.attempt != attempt) return;
        admit(self, id);
      },
  };
}

}  // namespace

model_actor spawn_openai_model(caf::actor_system& sys, openai_config cfg) {
  auto ep = http::parse_endpoint(cfg.base_url);
  if (cfg.model.empty())
    throw error(errc::invalid_argument,
                "the OpenAI-compatible backend for " + cfg.base_url + " needs a model name");
  json::value extra;
  if (!cfg.extra_body.empty()) {
    extra = json::parse(cfg.extra_body, "extra_body of the OpenAI-compatible backend");
    if (!extra.is_object())
      throw error(errc::invalid_argument,
                  "extra_body of the OpenAI-compatible backend must be a JSON object, not " +
                      std::string(extra.type_name()));
  }
  std::string auth;
  if (!cfg.api_key_env.empty())
    if (const char* key = std::getenv(cfg.api_key_env.c_str()); key && *key)
      auth = std::string("Bearer ") + key;
  if (!cfg.ca_file.empty()) http::client probe{http::client_options{cfg.ca_file}};  // Fails early.
  auto h = sys.spawn(backend, std::move(cfg), std::move(ep), std::move(extra), std::move(auth));
  return caf::actor_cast<model_actor>(h);
}

}  // namespace troupe
