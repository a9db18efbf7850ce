// The OpenAI-compatible server (troupe/openai_server.hpp) over a fake model actor, on 127.0.0.1:
// routes, the fields a request carries to the model, plain and SSE answers, tool calls, error
// shapes and status codes, the request-size limit, cancel on disconnect, and troupe's own
// OpenAI backend and a swarm talking to it.
#define BOOST_TEST_MODULE openai_server
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>

#include "http_client.hpp"
#include "troupe/json.hpp"
#include "troupe/openai_model.hpp"
#include "troupe/openai_server.hpp"
#include "troupe_fixture.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using troupe::testing::swarm_fixture;

namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

/// What the fake model saw, shared with the test thread.
struct model_log {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<chat_request> requests;
  std::set<uint64_t> cancelled;

  void add_request(const chat_request& r) {
    std::lock_guard<std::mutex> g{mtx};
    requests.push_back(r);
    cv.notify_all();
  }
  void add_cancel(uint64_t id) {
    std::lock_guard<std::mutex> g{mtx};
    cancelled.insert(id);
    cv.notify_all();
  }
  /// Waits (at most 10 s) until `pred` holds.
  template <class Pred>
  bool wait(Pred pred) {
    std::unique_lock<std::mutex> g{mtx};
    return cv.wait_for(g, 10s, pred);
  }
  size_t count() {
    std::lock_guard<std::mutex> g{mtx};
    return requests.size();
  }
  chat_request last() {
    std::lock_guard<std::mutex> g{mtx};
    return requests.empty() ? chat_request{} : requests.back();
  }
};

turn_delta text_delta(std::string text) {
  turn_delta d;
  d.text = std::move(text);
  return d;
}

struct fake_state {
  std::map<uint64_t, caf::typed_response_promise<assistant_turn>> hanging;
};

/// Answers by the last user message: "echo: X" -> X (streamed word by word, each word a token
/// with made-up log-probabilities when they are asked for); "tools" -> two
/// parallel tool calls; "hang" -> one delta, then nothing until (cancel, id); "bad" -> an
/// invalid_argument error; "boom" -> model_failed. In a conversation whose last message is a
/// tool result it answers "got: <result>"; a user message "use echo: X" calls the echo tool.
model_actor::behavior_type fake_model(model_actor::stateful_pointer<fake_state> self,
                                      std::shared_ptr<model_log> log) {
  return {
    [self, log](chat_atom, const chat_request& req) -> caf::result<assistant_turn> {
      log->add_request(req);
      auto send_delta = [&](turn_delta d) {
        d.request_id = req.id;
        if (req.stream_to) self->send(req.stream_to, delta_atom::value, std::move(d));
      };
      const auto& lastm = req.messages.back();
      std::string said = lastm.text();
      assistant_turn t;
      t.usage = usage{11, 3, 4};
      if (lastm.role == role::tool) {
        t.text = "got: " + said;
        send_delta(text_delta(t.text));
        return t;
      }
      if (said.rfind("use echo: ", 0) == 0) {
        t.tool_calls.push_back(
          tool_call{"call_e", "echo", json::dump(json::object{{"text", said.substr(10)}})});
        t.finish = finish_reason::tool_calls;
        turn_delta d;
        d.tool_index = 0;
        d.tool_id = "call_e";
        d.tool_name = "echo";
        d.arguments = t.tool_calls[0].arguments;
        send_delta(d);
        return t;
      }
      if (said.rfind("echo: ", 0) == 0) {
        t.text = said.substr(6);
        size_t pos = 0;
        while (pos < t.text.size()) {
          size_t sp = t.text.find(' ', pos + 1);
          if (sp == std::string::npos) sp = t.text.size();
          turn_delta d;
          d.text = t.text.substr(pos, sp - pos);
          if (req.top_logprobs >= 0) {  // Each word is a token; alternatives "alt0", "alt1", ...
            token_logprob lp{d.text, -0.25f * static_cast<float>(t.logprobs.size() + 1), {}};
            for (int32_t j = 0; j < req.top_logprobs; ++j)
              lp.top.push_back({"alt" + std::to_string(j), -1.0f - static_cast<float>(j)});
            t.logprobs.push_back(lp);
            d.logprobs = {lp};
          }
          send_delta(d);
          pos = sp;
        }
        return t;
      }
      if (said == "tools") {
        t.reasoning = "two lookups";
        t.tool_calls = {tool_call{"call_a", "lookup", R"({"q":"a"})"},
                        tool_call{"call_b", "lookup", R"({"q":"b"})"}};
        t.finish = finish_reason::tool_calls;
        turn_delta r;
        r.reasoning = t.reasoning;
        send_delta(r);
        for (int i = 0; i < 2; ++i) {
          turn_delta head;
          head.tool_index = i;
          head.tool_id = t.tool_calls[i].id;
          head.tool_name = "lookup";
          send_delta(head);
          for (const auto& piece : {std::string(R"({"q":)"), R"(")" + std::string(1, 'a' + i) +
                                                                R"("})"}) {
            turn_delta a;
            a.tool_index = i;
            a.arguments = piece;
            send_delta(a);
          }
        }
        return t;
      }
      if (said == "hang") {
        send_delta(text_delta("partial"));
        auto rp = self->make_response_promise<assistant_turn>();
        self->state.hanging.emplace(req.id, rp);
        return rp;
      }
      if (said == "bad") return to_caf_error(error(errc::invalid_argument, "prompt too long"));
      return to_caf_error(error(errc::model_failed, "the fake model broke"));
    },
    [self, log](cancel_atom, uint64_t id) {
      log->add_cancel(id);
      auto it = self->state.hanging.find(id);
      if (it == self->state.hanging.end()) return;
      assistant_turn t;
      t.finish = finish_reason::cancelled;
      it->second.deliver(t);
      self->state.hanging.erase(it);
    },
  };
}

struct http_reply {
  unsigned status = 0;
  http::header_list headers;
  std::string body;
  error failure;

  std::string header(std::string_view name) const {
    http::response_head h;
    h.headers = headers;
    return h.header(name);
  }
};

/// Collects one exchange; `on_chunk` sees the body as it grows (for streams).
class collector : public http::response_handler {
 public:
  std::function<void(const std::string&)> on_chunk;
  std::promise<http_reply> done;

  void on_head(const http::response_head& head) override {
    reply_.status = head.status;
    reply_.headers = head.headers;
  }
  bool on_body(std::string_view bytes) override {
    reply_.body.append(bytes);
    if (on_chunk) on_chunk(reply_.body);
    return true;
  }
  void on_done(const error& failure) override {
    reply_.failure = failure;
    done.set_value(std::move(reply_));
  }

 private:
  http_reply reply_;
};

struct server_fixture : swarm_fixture {
  std::shared_ptr<model_log> log = std::make_shared<model_log>();
  model_actor model = sys.spawn(fake_model, log);
  std::unique_ptr<openai_server> server;
  http::client client;
  http::endpoint ep;

  server_fixture() {
    models.push_back(model);
    openai_server_options o;
    o.port = 0;
    o.model_id = "fake-1";
    o.max_request_bytes = 64 << 10;
    server = std::make_unique<openai_server>(sys, model, o);
    ep = http::parse_endpoint(server->base_url());
  }
  ~server_fixture() { server.reset(); }

  http_reply call(std::string method, std::string target, std::string body = {},
                  std::function<void(const std::string&)> on_chunk = {}) {
    http::request r;
    r.method = std::move(method);
    r.target = std::move(target);
    r.body = std::move(body);
    r.timeout = 10s;
    if (!r.body.empty()) r.headers.emplace_back("Content-Type", "application/json");
    auto c = std::make_shared<collector>();
    c->on_chunk = std::move(on_chunk);
    auto f = c->done.get_future();
    client.start(ep, std::move(r), c);
    BOOST_REQUIRE(f.wait_for(15s) == std::future_status::ready);
    return f.get();
  }

  http_reply post(const std::string& body) { return call("POST", "/v1/chat/completions", body); }

  static std::string chat(const std::string& user, const std::string& extra = {}) {
    return R"({"model":"fake-1","messages":[{"role":"user","content":)" + json::quote(user) + "}]" +
           extra + "}";
  }
};

/// The data payloads of an SSE body, in order.
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    size_t end = body.find("\n\n", pos);
    BOOST_REQUIRE(end != std::string::npos);
    out.push_back(body.substr(pos + 6, end - pos - 6));
    pos = end + 2;
  }
  return out;
}

/// Checks an OpenAI error body and returns its error object.
json::value error_of(const http_reply& r, unsigned status) {
  BOOST_TEST(r.status == status, "status " << r.status << " body " << r.body);
  BOOST_TEST(contains(r.header("content-type"), "application/json"));
  auto v = json::parse(r.body);
  auto* e = v.find("error");
  BOOST_REQUIRE(e);
  BOOST_REQUIRE(e->is_object());
  BOOST_TEST(e->find("message")->is_string());
  BOOST_TEST(!e->find("message")->as_string().empty());
  BOOST_TEST(e->find("type")->is_string());
  BOOST_TEST((e->find("param") != nullptr));
  BOOST_TEST((e->find("code") != nullptr));
  return *e;
}

std::string param_of(const json::value& e) {
  auto* p = e.find("param");
  return p && p->is_string() ? p->as_string() : std::string{};
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(openai_server_suite, server_fixture)

BOOST_AUTO_TEST_CASE(models_and_health_describe_the_served_model) {
  auto models_reply = call("GET", "/v1/models");
  BOOST_TEST(models_reply.status == 200u);
  auto v = json::parse(models_reply.body);
  BOOST_TEST(v.find("object")->as_string() == "list");
  BOOST_REQUIRE(v.find("data")->as_array().size() == 1u);
  const auto& m = v.find("data")->as_array()[0];
  BOOST_TEST(m.find("id")->as_string() == "fake-1");
  BOOST_TEST(m.find("object")->as_string() == "model");
  BOOST_TEST(m.find("created")->as_int() > 1700000000);

  auto one = call("GET", "/v1/models/fake-1");
  BOOST_TEST(one.status == 200u);
  BOOST_TEST(json::parse(one.body).find("id")->as_string() == "fake-1");
  BOOST_TEST(error_of(call("GET", "/v1/models/gpt-5"), 404).find("code")->as_string() ==
             "model_not_found");

  auto health = call("GET", "/health");
  BOOST_TEST(health.status == 200u);
  BOOST_TEST(json::parse(health.body).find("status")->as_string() == "ok");
}

BOOST_AUTO_TEST_CASE(a_plain_completion_carries_every_field_to_the_model_and_back) {
  auto body = R"({"model":"fake-1","messages":[
      {"role":"developer","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"look at "},
                                {"type":"image_url","image_url":{"url":"https://x.test/a.png"}}]},
      {"role":"assistant","content":null,"reasoning_content":"hmm",
       "tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}]},
      {"role":"tool","tool_call_id":"c1","content":"42"},
      {"role":"user","content":"echo: hello brave world"}],
    "tools":[{"type":"function","function":{"name":"lookup","description":"Looks up.",
              "parameters":{"type":"object","properties":{"q":{"type":"integer"}}}}}],
    "tool_choice":{"type":"function","function":{"name":"lookup"}},
    "max_completion_tokens":17,"temperature":0.5,"top_p":0.9,"seed":1234,"user":"ignored",
    "frequency_penalty":0.25,"presence_penalty":-1.5,"stop":["\n\n","END"],
    "logit_bias":{"50256":-100,"7":2.5}})";
  auto r = post(body);
  BOOST_TEST(r.status == 200u, r.body);
  auto v = json::parse(r.body);
  BOOST_TEST(v.find("id")->as_string().rfind("chatcmpl-", 0) == 0u);
  BOOST_TEST(v.find("object")->as_string() == "chat.completion");
  BOOST_TEST(v.find("model")->as_string() == "fake-1");
  const auto& choice = v.find("choices")->as_array().at(0);
  BOOST_TEST(choice.find("finish_reason")->as_string() == "stop");
  BOOST_TEST(choice.find("message")->find("role")->as_string() == "assistant");
  BOOST_TEST(choice.find("message")->find("content")->as_string() == "hello brave world");
  BOOST_TEST(v.find("usage")->find("prompt_tokens")->as_int() == 11);
  BOOST_TEST(v.find("usage")->find("completion_tokens")->as_int() == 3);
  BOOST_TEST(v.find("usage")->find("total_tokens")->as_int() == 14);
  BOOST_TEST(v.find("usage")->find("prompt_tokens_details")->find("cached_tokens")->as_int() == 4);

  auto req = log->last();
  BOOST_TEST(req.max_tokens == 17u);
  BOOST_TEST(req.sampling.temperature == 0.5f);
  BOOST_TEST(req.sampling.top_p == 0.9f);
  BOOST_TEST(req.sampling.seed == 1234u);
  BOOST_TEST(req.sampling.frequency_penalty == 0.25f);
  BOOST_TEST(req.sampling.presence_penalty == -1.5f);
  BOOST_TEST(req.stop == (std::vector<std::string>{"\n\n", "END"}));
  BOOST_TEST(req.sampling.logit_bias ==
             (std::vector<token_bias>{{50256, -100.0f}, {7, 2.5f}}));
  BOOST_TEST(!req.stream_to);
  BOOST_REQUIRE(req.messages.size() == 5u);
  BOOST_TEST((req.messages[0].role == role::system));
  BOOST_TEST(req.messages[0].text() == "Be brief.");
  BOOST_REQUIRE(req.messages[1].content.size() == 2u);
  BOOST_TEST((req.messages[1].content[1].kind == part_kind::image_url));
  BOOST_TEST(req.messages[1].content[1].value == "https://x.test/a.png");
  BOOST_TEST(req.messages[2].reasoning == "hmm");
  BOOST_REQUIRE(req.messages[2].tool_calls.size() == 1u);
  BOOST_TEST(req.messages[2].tool_calls[0].name == "lookup");
  BOOST_TEST(req.messages[2].tool_calls[0].arguments == R"({"q":1})");
  BOOST_TEST((req.messages[3].role == role::tool));
  BOOST_TEST(req.messages[3].tool_call_id == "c1");
  BOOST_REQUIRE(req.tools.size() == 1u);
  BOOST_TEST(req.tools[0].name == "lookup");
  BOOST_TEST(req.tools[0].description == "Looks up.");
  BOOST_TEST(json::parse(req.tools[0].parameters).find("properties")->find("q") != nullptr);
  BOOST_TEST((req.choice.mode == tool_choice_mode::named));
  BOOST_TEST(req.choice.name == "lookup");

  // max_tokens works too; each request gets its own id.
  auto first_id = req.id;
  BOOST_TEST(post(chat("echo: x", R"(,"max_tokens":5)")).status == 200u);
  BOOST_TEST(log->last().max_tokens == 5u);
  BOOST_TEST(log->last().id != first_id);
  BOOST_TEST(log->last().sampling.presence_penalty == 0.0f);  // absent: off
  BOOST_TEST(log->last().stop.empty());
  // One stop string may come as a plain string; null is no stop.
  BOOST_TEST(post(chat("echo: x", R"(,"stop":"###","frequency_penalty":null)")).status == 200u);
  BOOST_TEST(log->last().stop == (std::vector<std::string>{"###"}));
  BOOST_TEST(post(chat("echo: x", R"(,"stop":null)")).status == 200u);
  BOOST_TEST(log->last().stop.empty());
}

BOOST_AUTO_TEST_CASE(a_streamed_completion_is_sse_chunks_ending_with_done) {
  auto r = post(chat("echo: one two three", R"(,"stream":true,"stream_options":{"include_usage":true})"));
  BOOST_TEST(r.status == 200u, r.body);
  BOOST_TEST(contains(r.header("content-type"), "text/event-stream"));
  auto events = sse_data(r.body);
  BOOST_REQUIRE(events.size() >= 4u);
  BOOST_TEST(events.back() == "[DONE]");
  std::string text, id, finish;
  bool saw_usage = false;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    auto c = json::parse(events[i]);
    BOOST_TEST(c.find("object")->as_string() == "chat.completion.chunk");
    if (id.empty()) id = c.find("id")->as_string();
    BOOST_TEST(c.find("id")->as_string() == id);
    const auto& choices = c.find("choices")->as_array();
    if (choices.empty()) {  // The usage chunk, last before [DONE].
      BOOST_TEST(i + 2 == events.size());
      BOOST_TEST(c.find("usage")->find("total_tokens")->as_int() == 14);
      saw_usage = true;
      continue;
    }
    BOOST_TEST(c.find("usage")->is_null());
    const auto& delta = *choices[0].find("delta");
    if (i == 0) BOOST_TEST(delta.find("role")->as_string() == "assistant");
    if (auto* content = delta.find("content")) text += content->as_string();
    if (auto* f = choices[0].find("finish_reason"); f && f->is_string()) finish = f->as_string();
  }
  BOOST_TEST(text == "one two three");
  BOOST_TEST(finish == "stop");
  BOOST_TEST(saw_usage);
  BOOST_TEST(static_cast<bool>(log->last().stream_to));

  // Without include_usage: no usage chunk and no usage member.
  auto plain = sse_data(post(chat("echo: a", R"(,"stream":true)")).body);
  for (size_t i = 0; i + 1 < plain.size(); ++i) {
    auto c = json::parse(plain[i]);
    BOOST_TEST(c.find("usage") == nullptr);
    BOOST_TEST(!c.find("choices")->as_array().empty());
  }
}

BOOST_AUTO_TEST_CASE(logprobs_come_back_plain_and_streamed_when_asked_for) {
  auto r = post(chat("echo: hé brave world", R"(,"logprobs":true,"top_logprobs":2)"));
  BOOST_TEST(r.status == 200u, r.body);
  BOOST_TEST(log->last().top_logprobs == 2);
  const auto v = json::parse(r.body);
  const auto& choice = v.find("choices")->as_array().at(0);
  const auto& content = choice.find("logprobs")->find("content")->as_array();
  BOOST_REQUIRE(content.size() == 3u);
  BOOST_TEST(content[0].find("token")->as_string() == "hé");
  BOOST_TEST(json::dump(*content[0].find("bytes")) == "[104,195,169]");
  BOOST_TEST(content[2].find("logprob")->as_number() == -0.75);
  const auto& top = content[1].find("top_logprobs")->as_array();
  BOOST_REQUIRE(top.size() == 2u);
  BOOST_TEST(top[1].find("token")->as_string() == "alt1");
  BOOST_TEST(top[1].find("logprob")->as_number() == -2.0);
  BOOST_TEST(json::dump(*top[1].find("bytes")) == "[97,108,116,49]");

  // logprobs alone: no alternatives; not asked for: null, and the model was not asked either.
  BOOST_TEST(post(chat("echo: a b", R"(,"logprobs":true)")).status == 200u);
  BOOST_TEST(log->last().top_logprobs == 0);
  auto plain = json::parse(post(chat("echo: a b", R"(,"logprobs":false)")).body);
  BOOST_TEST(plain.find("choices")->as_array().at(0).find("logprobs")->is_null());
  BOOST_TEST(log->last().top_logprobs == -1);

  // Streamed: each chunk carries the log-probabilities of its tokens.
  auto events = sse_data(post(chat("echo: one two three",
                                   R"(,"stream":true,"logprobs":true,"top_logprobs":1)")).body);
  std::vector<std::string> tokens;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const auto chunk = json::parse(events[i]);
    const auto& c = chunk.find("choices")->as_array().at(0);
    const auto* lp = c.find("logprobs");
    if (lp->is_null()) continue;
    for (const auto& e : lp->find("content")->as_array()) {
      tokens.push_back(e.find("token")->as_string());
      BOOST_TEST(e.find("top_logprobs")->as_array().size() == 1u);
    }
  }
  BOOST_TEST(tokens == (std::vector<std::string>{"one", " two", " three"}));
}

BOOST_AUTO_TEST_CASE(tool_calls_come_back_plain_and_streamed_by_index) {
  auto r = post(chat("tools", R"(,"tools":[{"type":"function","function":{"name":"lookup"}}])"));
  BOOST_TEST(r.status == 200u, r.body);
  auto v = json::parse(r.body);
  const auto& choice = v.find("choices")->as_array().at(0);
  BOOST_TEST(choice.find("finish_reason")->as_string() == "tool_calls");
  const auto& msg = *choice.find("message");
  BOOST_TEST(msg.find("content")->is_null());
  BOOST_TEST(msg.find("reasoning_content")->as_string() == "two lookups");
  const auto& calls = msg.find("tool_calls")->as_array();
  BOOST_REQUIRE(calls.size() == 2u);
  BOOST_TEST(calls[1].find("id")->as_string() == "call_b");
  BOOST_TEST(calls[1].find("type")->as_string() == "function");
  BOOST_TEST(calls[1].find("function")->find("name")->as_string() == "lookup");
  BOOST_TEST(calls[1].find("function")->find("arguments")->as_string() == R"({"q":"b"})");
  auto req = log->last();
  BOOST_REQUIRE(req.tools.size() == 1u);
  BOOST_TEST(req.tools[0].parameters == R"({"type":"object","properties":{}})");  // The default.
  BOOST_TEST((req.choice.mode == tool_choice_mode::automatic));

  // Streamed: assemble the arguments by index as a client does.
  auto s = post(chat("tools", R"(,"stream":true,"tools":[{"type":"function","function":{"name":"lookup"}}],"tool_choice":"required")"));
  BOOST_TEST((log->last().choice.mode == tool_choice_mode::required));
  std::map<int64_t, std::pair<std::string, std::string>> assembled;  // index -> (id+name, args)
  std::string finish;
  for (const auto& e : sse_data(s.body)) {
    if (e == "[DONE]") continue;
    auto c = json::parse(e);
    const auto& ch = c.find("choices")->as_array().at(0);
    if (auto* f = ch.find("finish_reason"); f && f->is_string()) finish = f->as_string();
    auto* tc = ch.find("delta")->find("tool_calls");
    if (!tc) continue;
    for (const auto& call : tc->as_array()) {
      auto& slot = assembled[call.find("index")->as_int()];
      if (auto* id = call.find("id")) slot.first += id->as_string() + "/";
      if (auto* name = call.find("function")->find("name")) slot.first += name->as_string();
      slot.second += call.find("function")->find("arguments")->as_string();
    }
  }
  BOOST_TEST(finish == "tool_calls");
  BOOST_REQUIRE(assembled.size() == 2u);
  BOOST_TEST(assembled[0].first == "call_a/lookup");
  BOOST_TEST(assembled[0].second == R"({"q":"a"})");
  BOOST_TEST(assembled[1].first == "call_b/lookup");
  BOOST_TEST(assembled[1].second == R"({"q":"b"})");
}

BOOST_AUTO_TEST_CASE(malformed_requests_get_openai_error_shapes) {
  struct bad_case {
    std::string method, target, body;
    unsigned status;
    std::string param, code;
  };
  const std::vector<bad_case> cases = {
    {"POST", "/v1/chat/completions", "{not json", 400, "", "invalid_json"},
    {"POST", "/v1/chat/completions", "[1,2]", 400, "", "invalid_json"},
    {"POST", "/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}]})", 400, "model", ""},
    {"POST", "/v1/chat/completions", R"({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]})", 404, "model", "model_not_found"},
    {"POST", "/v1/chat/completions", R"({"model":"fake-1","messages":[]})", 400, "messages", ""},
    {"POST", "/v1/chat/completions", R"({"model":"fake-1","messages":"hi"})", 400, "messages", ""},
    {"POST", "/v1/chat/completions", R"({"model":"fake-1","messages":[{"role":"wizard","content":"x"}]})", 400, "messages[0].role", ""},
    {"POST", "/v1/chat/completions", R"({"model":"fake-1","messages":[{"role":"user","content":5}]})", 400, "messages[0].content", ""},
    {"POST", "/v1/chat/completions", R"({"model":"fake-1","messages":[{"role":"tool","content":"x"}]})", 400, "messages[0].tool_call_id", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"temperature":7)"), 400, "temperature", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"temperature":"hot")"), 400, "temperature", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"top_p":-1)"), 400, "top_p", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"max_tokens":0)"), 400, "max_tokens", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"max_completion_tokens":1.5)"), 400, "max_completion_tokens", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"seed":"s")"), 400, "seed", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"n":3)"), 400, "n", "unsupported"},
    {"POST", "/v1/chat/completions", chat("x", R"(,"frequency_penalty":2.5)"), 400, "frequency_penalty", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"presence_penalty":"no")"), 400, "presence_penalty", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"stop":7)"), 400, "stop", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logprobs":"yes")"), 400, "logprobs", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logit_bias":[1])"), 400, "logit_bias", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logit_bias":{"a":1})"), 400, "logit_bias", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logit_bias":{"-3":1})"), 400, "logit_bias", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logit_bias":{"3":101})"), 400, "logit_bias", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"top_logprobs":3)"), 400, "top_logprobs", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"logprobs":true,"top_logprobs":21)"), 400, "top_logprobs", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"stop":["a",1])"), 400, "stop", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"stop":["1","2","3","4","5","6","7","8","9","10","11","12","13","14","15","16","17"])"), 400, "stop", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"stream":"yes")"), 400, "stream", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"tools":{})"), 400, "tools", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"tools":[{"type":"function","function":{}}])"), 400, "tools[0].function.name", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"tool_choice":"maybe")"), 400, "tool_choice", ""},
    {"POST", "/v1/chat/completions", chat("x", R"(,"tool_choice":"required")"), 400, "tool_choice", ""},
    {"GET", "/v1/chat/completions", "", 405, "", "method_not_allowed"},
    {"POST", "/v1/models", "{}", 405, "", "method_not_allowed"},
    {"GET", "/v1/embeddings", "", 404, "", "not_found"},
    {"GET", "/", "", 404, "", "not_found"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.method << " " << c.target << " " << c.body) {
      auto r = call(c.method, c.target, c.body);
      auto e = error_of(r, c.status);
      BOOST_TEST(param_of(e) == c.param);
      if (!c.code.empty()) BOOST_TEST(e.find("code")->as_string() == c.code);
      if (c.status == 405) BOOST_TEST(!r.header("allow").empty());
    }
  }
  // None of them reached the model, and the server still answers.
  BOOST_TEST(log->count() == 0u);
  BOOST_TEST(post(chat("echo: still here")).status == 200u);
}

BOOST_AUTO_TEST_CASE(oversized_and_garbage_requests_are_refused_without_harm) {
  std::string huge = chat(std::string(100 << 10, 'x'));
  auto r = post(huge);
  auto e = error_of(r, 413);
  BOOST_TEST(e.find("code")->as_string() == "request_too_large");

  // Bytes that are not HTTP at all, on a raw socket: a 400 in the error shape, then close.
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket sock{io};
  sock.connect({boost::asio::ip::make_address("127.0.0.1"), server->port()});
  std::string garbage = "\x01\x02 NOT HTTP\r\n\r\n";
  boost::asio::write(sock, boost::asio::buffer(garbage));
  std::string answer;
  boost::system::error_code ec;
  char buf[4096];
  for (int i = 0; i < 100; ++i) {  // Until the server closes (bounded).
    size_t n = sock.read_some(boost::asio::buffer(buf), ec);
    answer.append(buf, n);
    if (ec) break;
  }
  BOOST_TEST(answer.rfind("HTTP/1.1 400", 0) == 0u, answer);
  BOOST_TEST(contains(answer, R"("error":{"message":)"));

  BOOST_TEST(post(chat("echo: fine")).status == 200u);
}

BOOST_AUTO_TEST_CASE(model_errors_map_to_status_codes) {
  auto e = error_of(post(chat("bad")), 400);
  BOOST_TEST(contains(e.find("message")->as_string(), "prompt too long"));
  auto f = error_of(post(chat("boom")), 500);
  BOOST_TEST(f.find("type")->as_string() == "server_error");
  BOOST_TEST(contains(f.find("message")->as_string(), "the fake model broke"));
  // A stream the model refuses before any delta gets a real status, not a 200.
  error_of(post(chat("bad", R"(,"stream":true)")), 400);
}

BOOST_AUTO_TEST_CASE(a_client_that_disconnects_has_its_request_cancelled) {
  for (bool stream : {true, false}) {
    BOOST_TEST_CONTEXT("stream " << stream) {
      size_t before = log->count();
      http::request r;
      r.target = "/v1/chat/completions";
      r.body = chat("hang", stream ? R"(,"stream":true)" : "");
      r.timeout = 10s;
      auto c = std::make_shared<collector>();
      std::promise<void> partial;
      auto partial_seen = partial.get_future();
      auto once = std::make_shared<std::once_flag>();
      if (stream)
        c->on_chunk = [&partial, once](const std::string& body) {
          if (contains(body, "partial")) std::call_once(*once, [&] { partial.set_value(); });
        };
      auto f = c->done.get_future();
      auto x = client.start(ep, std::move(r), c);
      if (stream) {
        BOOST_REQUIRE(partial_seen.wait_for(10s) == std::future_status::ready);
      } else {
        BOOST_REQUIRE(log->wait([&] { return log->requests.size() > before; }));
      }
      uint64_t id = log->last().id;
      client.cancel(x);  // Closes the connection.
      BOOST_REQUIRE(f.wait_for(10s) == std::future_status::ready);
      BOOST_TEST(log->wait([&] { return log->cancelled.count(id) == 1; }),
                 "the model never got (cancel, " << id << ")");
    }
  }
  BOOST_TEST(server->counters().disconnects == 2u);
}

BOOST_AUTO_TEST_CASE(a_completion_past_the_request_timeout_is_cancelled_and_gets_503) {
  openai_server_options o;
  o.port = 0;
  o.model_id = "fake-1";
  o.request_timeout = 300ms;
  openai_server quick{sys, model, o};
  ep = http::parse_endpoint(quick.base_url());
  auto e = error_of(post(chat("hang")), 503);
  BOOST_TEST(e.find("code")->as_string() == "timeout");
  BOOST_TEST(contains(e.find("message")->as_string(), "300 ms"));
  uint64_t id = log->last().id;
  BOOST_TEST(log->wait([&] { return log->cancelled.count(id) == 1; }),
             "the model never got (cancel, " << id << ")");
}

BOOST_AUTO_TEST_CASE(troupes_openai_backend_talks_to_the_server) {
  openai_config oc;
  oc.base_url = server->base_url();
  oc.model = "fake-1";
  oc.api_key_env = "";
  oc.timeout = 10s;
  auto backend = spawn_openai_model(sys, oc);
  models.push_back(backend);
  caf::scoped_actor self{sys};

  chat_request req;
  req.id = 1;
  req.messages = {chat_message::user("tools")};
  req.tools = {tool_spec{"lookup", "Looks up.", R"({"type":"object"})"}};
  assistant_turn plain;
  self->request(backend, 10s, chat_atom::value, req)
    .receive([&](assistant_turn& t) { plain = std::move(t); },
             [&](caf::error& e) { BOOST_FAIL(from_caf_error(e, "chat").render()); });
  BOOST_TEST((plain.finish == finish_reason::tool_calls));
  BOOST_REQUIRE(plain.tool_calls.size() == 2u);
  BOOST_TEST(plain.tool_calls[0].id == "call_a");
  BOOST_TEST(plain.tool_calls[1].arguments == R"({"q":"b"})");
  BOOST_TEST(plain.reasoning == "two lookups");
  BOOST_TEST(plain.usage.total() == 14u);

  // Streamed through both: deltas reach the requester, then the whole turn.
  req.id = 2;
  req.messages = {chat_message::user("echo: streamed over http")};
  req.stream_to = caf::actor_cast<delta_sink_actor>(self);
  caf::actor me = caf::actor_cast<caf::actor>(self);
  sys.spawn([backend, req, me](caf::event_based_actor* relay) {
    relay->request(backend, 10s, chat_atom::value, req)
      .then([relay, me](assistant_turn& t) { relay->send(me, std::move(t)); },
            [relay, me](caf::error& e) { relay->send(me, std::move(e)); });
  });
  std::string streamed;
  assistant_turn final_turn;
  bool done = false;
  for (int i = 0; i < 100 && !done; ++i)
    self->receive([&](delta_atom, const turn_delta& d) { streamed += d.text; },
                  [&](assistant_turn& t) {
                    final_turn = std::move(t);
                    done = true;
                  },
                  [&](caf::error& e) { BOOST_FAIL(from_caf_error(e, "stream").render()); },
                  caf::after(10s) >> [&] { BOOST_FAIL("no reply within 10 s"); });
  BOOST_TEST(done);
  BOOST_TEST(streamed == "streamed over http");
  BOOST_TEST(final_turn.text == "streamed over http");
}

BOOST_AUTO_TEST_CASE(a_swarm_on_the_openai_backend_uses_tools_through_the_server) {
  openai_config oc;
  oc.base_url = server->base_url();
  oc.model = "fake-1";
  oc.api_key_env = "";
  oc.timeout = 10s;
  auto backend = spawn_openai_model(sys, oc);
  models.push_back(backend);
  swarm sw{sys, backend, registry};
  agent_config worker;
  worker.name = "worker";
  worker.tools = {"echo"};
  std::vector<std::string> items = {"ada", "grace", "linus", "barbara", "edsger", "alan"};
  run_report report;
  auto results = sw.fan_out(worker, "use echo: {{item}}", items, &report);
  BOOST_REQUIRE(results.size() == items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    BOOST_TEST_CONTEXT(items[i]) {
      BOOST_TEST(results[i].ok(), results[i].failure.render());
      BOOST_TEST(contains(results[i].text, "got: "));
      BOOST_TEST(contains(results[i].text, items[i]));
      BOOST_TEST(results[i].tool_calls == 1u);
      BOOST_TEST(results[i].steps == 2u);
    }
  }
  // Two model turns per worker went over HTTP.
  BOOST_TEST(server->counters().completions == 2 * items.size());
}

BOOST_AUTO_TEST_SUITE_END()
