// The OpenAI-compatible backend against a fault server on 127.0.0.1: request bodies, plain and
// streamed turns, retries (429 with retry-after, 5xx, caps), non-retryable errors, timeouts,
// broken streams, keep-alive, the per-endpoint concurrency limit, and cancel.
#define BOOST_TEST_MODULE openai_model
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>

#include "troupe/json.hpp"
#include "troupe/openai_model.hpp"
#include "troupe_fixture.hpp"

using namespace troupe;
using troupe::testing::swarm_fixture;
namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

/// What the fault server answers to one request.
struct reply {
  unsigned status = 200;
  std::vector<std::string> headers;    ///< "Name: value" lines.
  std::string body;                    ///< Without `events`: the whole body (Content-Length).
  std::vector<std::string> events;     ///< SSE: each is sent as "data: <event>\n\n", chunked.
  bool truncate = false;               ///< Close after the events, without the last chunk.
  std::chrono::milliseconds delay{0};  ///< Before the response head.
};

struct received {
  std::string target;
  std::string authorization;
  std::string body;
};

/// An HTTP/1.1 server on 127.0.0.1 (port 0) with keep-alive; `script` picks each reply.
class fault_server {
 public:
  std::function<reply(const received&, int)> script;  ///< (request, 0-based request number).

  fault_server() {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  ~fault_server() {
    io_.stop();
    thread_.join();
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  std::vector<received> requests() {
    std::lock_guard<std::mutex> g{mtx_};
    return log_;
  }
  int connections() const { return connections_.load(); }
  int peak() const { return peak_.load(); }
  /// Starts measuring the peak of concurrent requests afresh (callable from `script`).
  void reset_peak() { peak_ = active_.load(); }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto sock = co_await acceptor_.async_accept(asio::use_awaitable);
      ++connections_;
      asio::co_spawn(io_, serve(std::move(sock)), asio::detached);
    }
  }

  asio::awaitable<void> serve(tcp::socket sock) {
    boost::beast::flat_buffer buf;
    try {
      for (;;) {
        bhttp::request<bhttp::string_body> req;
        co_await bhttp::async_read(sock, buf, req, asio::use_awaitable);
        received r{std::string(req.target()), std::string(req[bhttp::field::authorization]),
                   req.body()};
        int n;
        {
          std::lock_guard<std::mutex> g{mtx_};
          n = static_cast<int>(log_.size());
          log_.push_back(r);
        }
        int now = ++active_;
        for (int p = peak_.load(); now > p && !peak_.compare_exchange_weak(p, now);) {
        }
        reply rep = script(r, n);
        if (rep.delay.count() > 0) {
          asio::steady_timer t{sock.get_executor(), rep.delay};
          co_await t.async_wait(asio::use_awaitable);
        }
        std::string head = "HTTP/1.1 " + std::to_string(rep.status) + " X\r\n";
        for (const auto& h : rep.headers) head += h + "\r\n";
        if (rep.events.empty()) {
          head += "Content-Type: application/json\r\nContent-Length: " +
                  std::to_string(rep.body.size()) + "\r\n\r\n" + rep.body;
          co_await asio::async_write(sock, asio::buffer(head), asio::use_awaitable);
        } else {
          head += "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
          co_await asio::async_write(sock, asio::buffer(head), asio::use_awaitable);
          for (const auto& e : rep.events) {
            std::string data = "data: " + e + "\n\n";
            char size[32];
            std::snprintf(size, sizeof size, "%zx\r\n", data.size());
            std::string chunk = size + data + "\r\n";
            co_await asio::async_write(sock, asio::buffer(chunk), asio::use_awaitable);
          }
          if (rep.truncate) {
            --active_;
            sock.close();
            co_return;
          }
          co_await asio::async_write(sock, asio::buffer(std::string("0\r\n\r\n")),
                                     asio::use_awaitable);
        }
        --active_;
      }
    } catch (...) {
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_{io_};
  unsigned short port_ = 0;
  std::thread thread_;
  std::mutex mtx_;
  std::vector<received> log_;
  std::atomic<int> connections_{0};
  std::atomic<int> active_{0};
  std::atomic<int> peak_{0};
};

std::string ok_body(const std::string& text) {
  return R"({"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":)" +
         json::quote(text) +
         R"(},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}})";
}

/// A self-signed certificate for IP 127.0.0.1 (and no host name), valid until 2126.
const char* test_cert = R"(-----BEGIN CERTIFICATE-----
MIIBqDCCAU6gAwIBAgIUJ/v2xVJXCcj601S0KXpJ1Ur4r24wCgYIKoZIzj0EAwIw
IDEeMBwGA1UEAwwVdHJvdXBlIHRlc3QgMTI3LjAuMC4xMCAXDTI2MTEyMjIxNTIy
N1oYDzIxMjYxMDI5MjE1MjI3WjAgMR4wHAYDVQQDDBV0cm91cGUgdGVzdCAxMjcu
MC4wLjEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATlXIfwp+zWMCe+ySO4u6Mf
Um/kr+HxS4JY/lk2q8PCQCMd4YitI7XoO+1n9Dg1x/0+NNTLfGn4CMv0wB0T5TL+
o2QwYjAdBgNVHQ4EFgQUUaEX0bw4u66ZyijbMHpm9r9aJJowHwYDVR0jBBgwFoAU
UaEX0bw4u66ZyijbMHpm9r9aJJowDwYDVR0RBAgwBocEfwAAATAPBgNVHRMBAf8E
BTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD7Oa8Vl4sXQUZmdNqE5OfnwF/GyuFj
33f/To/OaQsKmQIgSwtGo01qFkQVzRq+ftONHHXTvFegT9TqkP64MVBf2Y0=
-----END CERTIFICATE-----
)";
const char* test_key = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg4HEGaqTFsTmCfQmD
aG7fDcpI2kJGnzvH+OU3e0x4BayhRANCAATlXIfwp+zWMCe+ySO4u6MfUm/kr+Hx
S4JY/lk2q8PCQCMd4YitI7XoO+1n9Dg1x/0+NNTLfGn4CMv0wB0T5TL+
-----END PRIVATE KEY-----
)";

/// An HTTPS server on 127.0.0.1 that answers every request with ok("over tls").
class tls_server {
 public:
  tls_server() {
    tls_.use_certificate_chain(asio::buffer(std::string_view(test_cert)));
    tls_.use_private_key(asio::buffer(std::string_view(test_key)), asio::ssl::context::pem);
    acceptor_.open(tcp::v4());
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~tls_server() {
    io_.stop();
    thread_.join();
  }
  unsigned short port() const { return port_; }

 private:
  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto sock = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(io_, serve(std::move(sock)), asio::detached);
    }
  }
  asio::awaitable<void> serve(tcp::socket sock) {
    try {
      boost::beast::ssl_stream<tcp::socket> s{std::move(sock), tls_};
      co_await s.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
      boost::beast::flat_buffer buf;
      for (;;) {
        bhttp::request<bhttp::string_body> req;
        co_await bhttp::async_read(s, buf, req, asio::use_awaitable);
        bhttp::response<bhttp::string_body> res{bhttp::status::ok, 11};
        res.set(bhttp::field::content_type, "application/json");
        res.body() = ok_body("over tls");
        res.prepare_payload();
        co_await bhttp::async_write(s, res, asio::use_awaitable);
      }
    } catch (...) {
    }
  }

  asio::io_context io_;
  asio::ssl::context tls_{asio::ssl::context::tls_server};
  tcp::acceptor acceptor_{io_};
  unsigned short port_ = 0;
  std::thread thread_;
};

reply answer(unsigned status, std::vector<std::string> headers, std::string body) {
  reply r;
  r.status = status;
  r.headers = std::move(headers);
  r.body = std::move(body);
  return r;
}

reply ok(const std::string& text = "fine") { return answer(200, {}, ok_body(text)); }

std::string error_body(const std::string& msg) {
  return R"({"error":{"message":)" + json::quote(msg) + R"(,"type":"server_error","code":null}})";
}

/// Collects deltas sent to a sink actor.
struct delta_log {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<turn_delta> deltas;
};

struct openai_fixture : swarm_fixture {
  fault_server server;

  openai_config config() {
    openai_config c;
    c.base_url = server.base_url();
    c.model = "test-model";
    c.api_key_env = "TROUPE_TEST_OPENAI_KEY";
    c.timeout = 5s;
    c.max_retries = 3;
    c.retry_base_delay = 20ms;
    c.retry_max_delay = 100ms;
    return c;
  }

  model_actor backend(openai_config c) {
    auto m = spawn_openai_model(sys, std::move(c));
    models.push_back(m);
    return m;
  }

  /// Asks for one turn: the turn, or the error it failed with.
  std::pair<assistant_turn, error> ask(const model_actor& m, chat_request req) {
    caf::scoped_actor self{sys};
    std::pair<assistant_turn, error> out;
    self->request(m, 30s, chat_atom::value, std::move(req))
        .receive([&](assistant_turn& t) { out.first = std::move(t); },
                 [&](caf::error& e) { out.second = from_caf_error(e, "test request"); });
    return out;
  }

  delta_sink_actor sink(std::shared_ptr<delta_log> log) {
    return sys.spawn([log]() -> delta_sink_actor::behavior_type {
      return {[log](delta_atom, const turn_delta& d) {
        std::lock_guard<std::mutex> g{log->mtx};
        log->deltas.push_back(d);
        log->cv.notify_all();
      }};
    });
  }
};

chat_request simple(uint64_t id = 1) {
  chat_request req;
  req.id = id;
  req.messages = {chat_message::user("hello")};
  return req;
}

int64_t ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

/// Waits until `log` holds `n` deltas (they are sent before the reply but may arrive after it).
std::vector<turn_delta> wait_deltas(const std::shared_ptr<delta_log>& log, size_t n) {
  std::unique_lock<std::mutex> g{log->mtx};
  log->cv.wait_for(g, 5s, [&] { return log->deltas.size() >= n; });
  return log->deltas;
}

}  // namespace

BOOST_FIXTURE_TEST_SUITE(openai, openai_fixture)

BOOST_AUTO_TEST_CASE(request_body_follows_the_openai_format_and_plain_replies_parse) {
  ::setenv("TROUPE_TEST_OPENAI_KEY", "sk-secret-123", 1);
  server.script = [](const received&, int) {
    return answer(200, {}, R"({"choices":[{"index":0,"message":{"role":"assistant","content":null,
      "reasoning_content":"I should read it",
      "tool_calls":[{"id":"call_a","type":"function","function":{"name":"read","arguments":"{\"path\":\"x\"}"}},
                    {"id":"call_b","type":"function","function":{"name":"noop","arguments":""}}]},
      "finish_reason":"tool_calls"}],"usage":{"prompt_tokens":11,"completion_tokens":5,
      "cached_tokens":6}})");
  };
  auto c = config();
  c.extra_body = R"({"thinking":{"type":"enabled"},"parallel_tool_calls":true})";
  auto m = backend(c);
  chat_request req;
  req.id = 9;
  chat_message user = chat_message::user("look");
  user.content.push_back(content_part::image_url("https://example.org/a.png"));
  user.content.push_back(content_part::image_base64("image/jpeg", "QUJD"));
  req.messages = {
      chat_message::system("sys"), user,
      chat_message::assistant("", {tool_call{"c0", "read", R"({"path":"y"})"}}, "thought before"),
      chat_message::tool(tool_call{"c0", "read", "{}"}, tool_result::ok("c0", "data"))};
  req.tools = {tool_spec{"read", "Reads a file",
                         R"({"type":"object","properties":{"path":{"type":"string"}}})"}};
  req.choice = tool_choice{tool_choice_mode::named, "read"};
  req.sampling.temperature = 0.5f;
  req.sampling.presence_penalty = 0.5f;
  req.sampling.logit_bias = {{42, -100.0f}};
  req.max_tokens = 100;
  req.stop = {"", "</done>"};
  auto [turn, err] = ask(m, req);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_TEST(turn.text == "");
  BOOST_TEST(turn.reasoning == "I should read it");
  BOOST_REQUIRE(turn.tool_calls.size() == 2u);
  BOOST_TEST(turn.tool_calls[0].id == "call_a");
  BOOST_TEST(turn.tool_calls[0].arguments == R"({"path":"x"})");
  BOOST_TEST(turn.tool_calls[1].arguments == "{}");
  BOOST_TEST(turn.finish == finish_reason::tool_calls);
  BOOST_TEST(turn.usage.prompt_tokens == 11u);
  BOOST_TEST(turn.usage.completion_tokens == 5u);
  BOOST_TEST(turn.usage.cached_prompt_tokens == 6u);  // Kimi's top-level cached_tokens

  auto reqs = server.requests();
  BOOST_REQUIRE(reqs.size() == 1u);
  BOOST_TEST(reqs[0].target == "/v1/chat/completions");
  BOOST_TEST(reqs[0].authorization == "Bearer sk-secret-123");
  auto body = json::parse(reqs[0].body);
  BOOST_TEST(body.find("model")->as_string() == "test-model");
  BOOST_TEST(body.find("stream") == nullptr);
  BOOST_TEST(body.find("temperature")->as_number() == 0.5);
  BOOST_TEST(body.find("max_tokens")->as_int() == 100);
  BOOST_TEST(body.find("top_p") == nullptr);  // Unset sampling fields stay out.
  BOOST_TEST(body.find("frequency_penalty") == nullptr);
  BOOST_TEST(body.find("presence_penalty")->as_number() == 0.5);
  BOOST_TEST(json::dump(*body.find("stop")) == R"(["</done>"])");  // empty strings dropped
  BOOST_TEST(body.find("logit_bias")->as_object().size() == 1u);
  BOOST_TEST(body.find("logit_bias")->find("42")->as_number() == -100.0);
  BOOST_TEST(body.find("parallel_tool_calls")->as_bool() == true);
  BOOST_TEST(json::dump(*body.find("thinking")) == R"({"type":"enabled"})");
  BOOST_TEST(json::dump(*body.find("tool_choice")) ==
             R"({"type":"function","function":{"name":"read"}})");
  BOOST_TEST(json::dump(*body.find("tools")) ==
             R"([{"type":"function","function":{"name":"read","description":"Reads a file",)"
             R"("parameters":{"type":"object","properties":{"path":{"type":"string"}}}}}])");
  const auto& msgs = body.find("messages")->as_array();
  BOOST_REQUIRE(msgs.size() == 4u);
  BOOST_TEST(json::dump(msgs[0]) == R"({"role":"system","content":"sys"})");
  BOOST_TEST(json::dump(msgs[1]) ==
             R"({"role":"user","content":[{"type":"text","text":"look"},)"
             R"({"type":"image_url","image_url":{"url":"https://example.org/a.png"}},)"
             R"({"type":"image_url","image_url":{"url":"data:image/jpeg;base64,QUJD"}}]})");
  BOOST_TEST(json::dump(msgs[2]) ==
             R"({"role":"assistant","content":"","reasoning_content":"thought before",)"
             R"("tool_calls":[{"id":"c0","type":"function","function":{"name":"read",)"
             R"("arguments":"{\"path\":\"y\"}"}}]})");
  BOOST_TEST(json::dump(msgs[3]) == R"({"role":"tool","content":"data","tool_call_id":"c0"})");
  ::unsetenv("TROUPE_TEST_OPENAI_KEY");
}

BOOST_AUTO_TEST_CASE(streams_assemble_parallel_tool_calls_by_index) {
  server.script = [](const received&, int) {
    reply r;
    r.events = {
        R"({"choices":[{"index":0,"delta":{"role":"assistant","reasoning_content":"plan"}}]})",
        R"({"choices":[{"index":0,"delta":{"content":"Hel"}}]})",
        R"({"choices":[{"index":0,"delta":{"content":"lo"}}]})",
        R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"read","arguments":""}}]}}]})",
        R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"grep","arguments":"{\"q\":"}}]}}]})",
        R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]})",
        R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"a\"}"}},{"index":1,"function":{"arguments":"\"b\"}"}}]}}]})",
        R"({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null})",
        R"({"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29,)"
        R"("prompt_tokens_details":{"cached_tokens":16}}})",
        "[DONE]"};
    return r;
  };
  auto m = backend(config());
  auto log = std::make_shared<delta_log>();
  auto req = simple(5);
  req.stream_to = sink(log);
  auto [turn, err] = ask(m, req);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_TEST(turn.text == "Hello");
  BOOST_TEST(turn.reasoning == "plan");
  BOOST_REQUIRE(turn.tool_calls.size() == 2u);
  BOOST_TEST(turn.tool_calls[0].name == "read");
  BOOST_TEST(turn.tool_calls[0].arguments == R"({"path":"a"})");
  BOOST_TEST(turn.tool_calls[1].id == "call_2");
  BOOST_TEST(turn.tool_calls[1].arguments == R"({"q":"b"})");
  BOOST_TEST(turn.finish == finish_reason::tool_calls);
  BOOST_TEST(turn.usage.prompt_tokens == 20u);
  BOOST_TEST(turn.usage.completion_tokens == 9u);
  BOOST_TEST(turn.usage.cached_prompt_tokens == 16u);  // OpenAI's prompt_tokens_details
  auto deltas = wait_deltas(log, 5);
  BOOST_REQUIRE(deltas.size() == 5u);
  BOOST_TEST(deltas[0].reasoning == "plan");
  BOOST_TEST(deltas[1].text == "Hel");
  BOOST_TEST(deltas[2].text == "lo");
  BOOST_TEST(deltas[3].tool_index == 0);
  BOOST_TEST(deltas[3].arguments == R"({"path":"a"})");  // Whole calls only.
  BOOST_TEST(deltas[4].tool_name == "grep");
  for (const auto& d : deltas) BOOST_TEST(d.request_id == 5u);
  auto body = json::parse(server.requests().at(0).body);
  BOOST_TEST(body.find("stream")->as_bool() == true);
  BOOST_TEST(json::dump(*body.find("stream_options")) == R"({"include_usage":true})");
  caf::anon_send_exit(req.stream_to, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(logprobs_are_asked_for_and_read_plain_and_streamed) {
  server.script = [](const received& rq, int) {
    if (json::parse(rq.body).find("stream") == nullptr)
      return answer(200, {}, R"({"choices":[{"index":0,"message":{"role":"assistant",
        "content":"hi"},"logprobs":{"content":[{"token":"h","logprob":-0.5,"bytes":[104],
        "top_logprobs":[{"token":"h","logprob":-0.5,"bytes":[104]},{"token":"y","logprob":-1.5}]},
        {"token":"\ufffd","logprob":-0.25,"bytes":[226,130],"top_logprobs":[]}]},
        "finish_reason":"stop"}]})");
    reply r;
    r.events = {
        R"({"choices":[{"index":0,"delta":{"content":"a"},"logprobs":{"content":[{"token":"a","logprob":-1.0,"top_logprobs":[]}]}}]})",
        R"({"choices":[{"index":0,"delta":{"content":"b"},"logprobs":null}]})",
        R"({"choices":[{"index":0,"delta":{},"logprobs":{"content":[{"token":"c","logprob":-3.0,"top_logprobs":[]}]},"finish_reason":"stop"}]})",
        "[DONE]"};
    return r;
  };
  auto m = backend(config());
  auto req = simple(3);
  req.top_logprobs = 2;
  auto [turn, err] = ask(m, req);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  auto body = json::parse(server.requests().at(0).body);
  BOOST_TEST(body.find("logprobs")->as_bool() == true);
  BOOST_TEST(body.find("top_logprobs")->as_int() == 2);
  BOOST_REQUIRE(turn.logprobs.size() == 2u);
  BOOST_TEST(turn.logprobs[0].token == "h");
  BOOST_TEST(turn.logprobs[0].logprob == -0.5f);
  BOOST_REQUIRE(turn.logprobs[0].top.size() == 2u);
  BOOST_TEST(turn.logprobs[0].top[1].token == "y");  // no bytes: the token text
  BOOST_TEST(turn.logprobs[0].top[1].logprob == -1.5f);
  BOOST_TEST(turn.logprobs[1].token == "\xe2\x82");  // the bytes, not the U+FFFD shown

  auto log = std::make_shared<delta_log>();
  auto streamed = simple(4);
  streamed.top_logprobs = 0;
  streamed.stream_to = sink(log);
  auto [turn2, err2] = ask(m, streamed);
  BOOST_REQUIRE_MESSAGE(!err2, err2.render());
  BOOST_TEST(turn2.text == "ab");
  BOOST_REQUIRE(turn2.logprobs.size() == 2u);
  BOOST_TEST(turn2.logprobs[1].token == "c");
  auto deltas = wait_deltas(log, 3);
  BOOST_REQUIRE(deltas.size() == 3u);
  BOOST_TEST(deltas[0].logprobs.size() == 1u);
  BOOST_TEST(deltas[1].logprobs.empty());
  BOOST_TEST(deltas[2].text.empty());  // log-probabilities alone
  BOOST_TEST(deltas[2].logprobs.at(0).logprob == -3.0f);
  BOOST_TEST(json::parse(server.requests().at(1).body).find("top_logprobs")->as_int() == 0);
  // Not asked for: not in the body.
  ask(m, simple(5));
  BOOST_TEST(json::parse(server.requests().at(2).body).find("logprobs") == nullptr);
  caf::anon_send_exit(streamed.stream_to, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(retryable_statuses_are_retried_and_retry_after_is_honoured) {
  server.script = [](const received&, int n) {
    if (n == 0) return answer(429, {"retry-after-ms: 300"}, error_body("slow down"));
    if (n == 1) return answer(503, {}, error_body("overloaded"));
    if (n == 2) return answer(429, {"Retry-After: 1"}, error_body("slow down more"));
    return ok("after retries");
  };
  auto m = backend(config());
  auto start = std::chrono::steady_clock::now();
  auto [turn, err] = ask(m, simple());
  auto elapsed = ms_since(start);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_TEST(turn.text == "after retries");
  BOOST_TEST(turn.usage.prompt_tokens == 7u);
  BOOST_TEST(server.requests().size() == 4u);
  BOOST_TEST(elapsed >= 1300);  // 300 ms, a short backoff, then 1 s.
  BOOST_TEST(elapsed < 5000);
  BOOST_TEST(server.connections() == 1);  // Keep-alive across attempts.
}

BOOST_AUTO_TEST_CASE(retries_stop_at_the_cap_with_the_servers_message) {
  server.script = [](const received&, int) { return answer(500, {}, error_body("boom inside")); };
  auto c = config();
  c.max_retries = 2;
  auto m = backend(c);
  auto [turn, err] = ask(m, simple());
  BOOST_REQUIRE(err);
  BOOST_TEST(err.code() == errc::model_failed);
  BOOST_TEST(err.message().find("HTTP 500") != std::string::npos, err.message());
  BOOST_TEST(err.message().find("boom inside") != std::string::npos, err.message());
  BOOST_TEST(err.message().find("after 3 attempts") != std::string::npos, err.message());
  BOOST_TEST(server.requests().size() == 3u);
}

BOOST_AUTO_TEST_CASE(client_errors_are_not_retried_and_the_key_is_never_shown) {
  ::setenv("TROUPE_TEST_OPENAI_KEY", "sk-secret-456", 1);
  server.script = [](const received&, int n) {
    if (n == 0) return answer(400, {}, error_body("messages[1].content is invalid"));
    return answer(401, {}, error_body("Incorrect API key provided"));
  };
  auto m = backend(config());
  auto [t1, e1] = ask(m, simple(1));
  BOOST_TEST(e1.code() == errc::invalid_argument);
  BOOST_TEST(e1.message().find("messages[1].content is invalid") != std::string::npos,
             e1.message());
  auto [t2, e2] = ask(m, simple(2));
  BOOST_TEST(e2.code() == errc::model_failed);
  BOOST_TEST(e2.message().find("HTTP 401") != std::string::npos, e2.message());
  BOOST_TEST(e2.message().find("sk-secret") == std::string::npos, e2.message());
  BOOST_TEST(server.requests().size() == 2u);
  ::unsetenv("TROUPE_TEST_OPENAI_KEY");
}

BOOST_AUTO_TEST_CASE(a_retry_after_beyond_the_cap_is_not_waited_for) {
  server.script = [](const received&, int) {
    return answer(429, {"retry-after: 600"}, error_body("quota"));
  };
  auto c = config();
  c.max_retry_after = 2s;
  auto m = backend(c);
  auto start = std::chrono::steady_clock::now();
  auto [turn, err] = ask(m, simple());
  BOOST_TEST(ms_since(start) < 2000);
  BOOST_TEST(err.code() == errc::model_failed);
  BOOST_TEST(err.message().find("600000 ms") != std::string::npos, err.message());
  BOOST_TEST(server.requests().size() == 1u);
}

BOOST_AUTO_TEST_CASE(slow_responses_time_out_and_are_retried) {
  server.script = [](const received&, int n) {
    reply r = ok("late but fine");
    if (n < 2) r.delay = 1500ms;
    return r;
  };
  auto c = config();
  c.timeout = 400ms;
  auto m = backend(c);
  auto [turn, err] = ask(m, simple());
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_TEST(turn.text == "late but fine");
  BOOST_TEST(server.requests().size() == 3u);
  // Always too slow: a timeout error once the retries are spent.
  server.script = [](const received&, int) {
    reply r = ok();
    r.delay = 1500ms;
    return r;
  };
  c.max_retries = 1;
  auto m2 = backend(c);
  auto [t2, e2] = ask(m2, simple());
  BOOST_TEST(e2.code() == errc::timeout);
  BOOST_TEST(e2.message().find("400 ms") != std::string::npos, e2.message());
}

BOOST_AUTO_TEST_CASE(a_server_that_ignores_stream_true_is_read_as_one_document) {
  server.script = [](const received&, int) { return ok("whole answer"); };
  auto m = backend(config());
  auto log = std::make_shared<delta_log>();
  auto req = simple(9);
  req.stream_to = sink(log);
  auto [turn, err] = ask(m, req);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_TEST(turn.text == "whole answer");
  BOOST_TEST(turn.usage.total() == 10u);
  BOOST_TEST(server.requests().size() == 1u);  // Not retried as a broken stream.
  auto deltas = wait_deltas(log, 1);
  BOOST_REQUIRE(deltas.size() == 1u);
  BOOST_TEST(deltas[0].text == "whole answer");
  BOOST_TEST(deltas[0].request_id == 9u);
}

BOOST_AUTO_TEST_CASE(broken_streams_never_yield_half_a_tool_call) {
  const std::string call_start =
      R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"write","arguments":"{\"pa"}}]}}]})";
  server.script = [&](const received&, int n) {
    reply r;
    if (n == 0) {  // A mid-stream error after half a tool call: nothing was shown, so retried.
      r.events = {call_start, R"({"error":{"message":"upstream crashed","type":"server_error"}})"};
    } else if (n == 1) {  // Truncated in the middle of a tool call: retried too.
      r.events = {call_start};
      r.truncate = true;
    } else if (n == 2) {
      r.events = {
          call_start,
          R"({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":1}"}}]},"finish_reason":"tool_calls"}]})",
          "[DONE]"};
    } else if (n == 3) {  // Text was shown, then the stream breaks: an error, not a retry.
      r.events = {R"({"choices":[{"index":0,"delta":{"content":"partial"}}]})", call_start};
      r.truncate = true;
    } else {  // Invalid JSON: a clear error.
      r.events = {R"({"choices":[{"index":0,"delta":{"content":)"};
    }
    return r;
  };
  auto m = backend(config());
  auto log = std::make_shared<delta_log>();
  auto s = sink(log);
  auto req = simple(1);
  req.stream_to = s;
  auto [turn, err] = ask(m, req);
  BOOST_REQUIRE_MESSAGE(!err, err.render());
  BOOST_REQUIRE(turn.tool_calls.size() == 1u);
  BOOST_TEST(turn.tool_calls[0].arguments == R"({"path":1})");
  auto deltas = wait_deltas(log, 1);
  BOOST_REQUIRE(deltas.size() == 1u);
  BOOST_TEST(deltas[0].arguments == R"({"path":1})");
  BOOST_TEST(server.requests().size() == 3u);

  req.id = 2;
  auto [t2, e2] = ask(m, req);
  BOOST_TEST(e2.code() == errc::model_failed);
  BOOST_TEST(e2.message().find("before the turn was complete") != std::string::npos, e2.message());
  BOOST_TEST(e2.message().find("partial answer was dropped") != std::string::npos, e2.message());
  BOOST_TEST(server.requests().size() == 4u);
  deltas = wait_deltas(log, 2);
  BOOST_REQUIRE(deltas.size() == 2u);
  BOOST_TEST(deltas[1].text == "partial");
  BOOST_TEST(deltas[1].tool_index == -1);  // No tool-call delta from the broken stream.

  req.id = 3;
  auto [t3, e3] = ask(m, req);
  BOOST_TEST(e3.code() == errc::model_failed);
  BOOST_TEST(e3.message().find("not valid JSON") != std::string::npos, e3.message());
  BOOST_TEST(server.requests().size() == 5u);
  caf::anon_send_exit(s, caf::exit_reason::user_shutdown);
}

BOOST_AUTO_TEST_CASE(concurrency_per_endpoint_is_limited_and_backs_off_on_429) {
  std::atomic<int> limited{0};
  server.script = [&](const received&, int n) {
    if (n < 3) {
      ++limited;
      return answer(429, {"retry-after-ms: 50"}, error_body("rate limited"));
    }
    reply r = ok("done");
    r.delay = 60ms;
    return r;
  };
  auto c = config();
  c.max_concurrency = 4;
  c.max_retries = 5;
  auto m = backend(c);
  caf::scoped_actor self{sys};
  std::vector<decltype(self->request(m, 30s, chat_atom::value, chat_request{}))> handles;
  for (uint64_t i = 1; i <= 16; ++i)
    handles.push_back(self->request(m, 30s, chat_atom::value, simple(i)));
  int ok_count = 0;
  for (auto& h : handles)
    h.receive([&](assistant_turn& t) { ok_count += t.text == "done"; },
              [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(ok_count == 16);
  BOOST_TEST(server.peak() <= 4);
  BOOST_TEST(limited.load() == 3);
  BOOST_TEST(server.requests().size() == 19u);
}

BOOST_AUTO_TEST_CASE(cancel_answers_at_once_and_errors_name_the_problem) {
  server.script = [](const received&, int) {
    reply r = ok();
    r.delay = 3s;
    return r;
  };
  auto m = backend(config());
  caf::scoped_actor self{sys};
  auto start = std::chrono::steady_clock::now();
  auto h = self->request(m, 10s, chat_atom::value, simple(77));
  self->send(m, cancel_atom::value, uint64_t{77});
  h.receive([](assistant_turn& t) { BOOST_TEST(t.finish == finish_reason::cancelled); },
            [](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(ms_since(start) < 1000);

  // TLS to a plain-HTTP server fails clearly (and is retried as a connection failure).
  auto c = config();
  c.base_url = "https://127.0.0.1:" + server.base_url().substr(17);
  c.max_retries = 0;
  auto tls = backend(c);
  auto [t2, e2] = ask(tls, simple());
  BOOST_TEST(e2.code() == errc::io_error);
  BOOST_TEST(e2.message().find("https://127.0.0.1") != std::string::npos, e2.message());

  // Unusable configurations are refused at spawn.
  c.base_url = "ftp://x";
  BOOST_CHECK_THROW(spawn_openai_model(sys, c), troupe::error);
  c = config();
  c.extra_body = "[1]";
  BOOST_CHECK_THROW(spawn_openai_model(sys, c), troupe::error);
}

BOOST_AUTO_TEST_CASE(a_storm_of_429s_lowers_the_limit_which_recovers_slowly) {
  server.script = [&](const received&, int n) {
    if (n < 8) return answer(429, {"retry-after-ms: 30"}, error_body("rate limited"));
    if (n == 8) server.reset_peak();  // From here on every request succeeds.
    reply r = ok("done");
    r.delay = 50ms;
    return r;
  };
  auto c = config();
  c.max_concurrency = 8;
  c.max_retries = 3;
  auto m = backend(c);
  caf::scoped_actor self{sys};
  std::vector<decltype(self->request(m, 30s, chat_atom::value, chat_request{}))> handles;
  for (uint64_t i = 1; i <= 16; ++i)
    handles.push_back(self->request(m, 30s, chat_atom::value, simple(i)));
  int ok_count = 0;
  for (auto& h : handles)
    h.receive([&](assistant_turn& t) { ok_count += t.text == "done"; },
              [&](caf::error& e) { BOOST_FAIL(caf::to_string(e)); });
  BOOST_TEST(ok_count == 16);
  BOOST_TEST(server.requests().size() == 24u);
  // Eight 429s take the limit from 8 down to 1; 16 successes bring it back to about 5 (+1/limit
  // each), so the 16 successful requests never ran 8 at once.
  BOOST_TEST_MESSAGE("peak concurrency after the 429s: " << server.peak());
  BOOST_TEST(server.peak() >= 2);
  BOOST_TEST(server.peak() <= 6);
}

BOOST_AUTO_TEST_CASE(tls_verifies_the_servers_certificate) {
  tls_server https;
  auto ca = std::filesystem::temp_directory_path() /
            ("troupe_openai_ca_" + std::to_string(::getpid()) + ".pem");
  std::ofstream{ca} << test_cert;
  auto c = config();
  c.max_retries = 0;
  c.base_url = "https://127.0.0.1:" + std::to_string(https.port()) + "/v1";
  c.ca_file = ca.string();
  auto trusted = backend(c);
  auto [t1, e1] = ask(trusted, simple(1));
  BOOST_TEST(!e1, e1.render());
  BOOST_TEST(t1.text == "over tls");
  auto [t1b, e1b] = ask(trusted, simple(2));  // Again, over the pooled connection.
  BOOST_TEST(t1b.text == "over tls");
  // The certificate names 127.0.0.1, not localhost.
  c.base_url = "https://localhost:" + std::to_string(https.port()) + "/v1";
  auto wrong_name = backend(c);
  auto [t2, e2] = ask(wrong_name, simple(3));
  BOOST_TEST(e2.code() == errc::io_error);
  BOOST_TEST(e2.message().find("certificate") != std::string::npos, e2.message());
  // Without the CA the certificate is not trusted.
  c.base_url = "https://127.0.0.1:" + std::to_string(https.port()) + "/v1";
  c.ca_file.clear();
  auto untrusted = backend(c);
  auto [t3, e3] = ask(untrusted, simple(4));
  BOOST_TEST(e3.code() == errc::io_error);
  BOOST_TEST(e3.message().find("certificate") != std::string::npos, e3.message());
  std::filesystem::remove(ca);
}

BOOST_AUTO_TEST_SUITE_END()
