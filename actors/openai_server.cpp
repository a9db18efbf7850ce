#include "troupe/openai_server.hpp"

#include <fmt/format.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "caf/all.hpp"
#include "troupe/caf_types.hpp"
#include "troupe/json.hpp"

namespace troupe {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

using error_code = boost::system::error_code;
using http_request = bhttp::request<bhttp::string_body>;

// ------------------------------------------------------------------------------------------------
// Errors in OpenAI's shape
// ------------------------------------------------------------------------------------------------

/// A failure to answer with: HTTP status plus the fields of {"error":{...}}.
struct api_error {
  unsigned status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  ///< Empty: null.
  std::string code;   ///< Empty: null.
};

/// Builds an api_error (a function, not braces, inside coroutines: g++ 12 miscompiles aggregate
/// temporaries in co_await expressions).
api_error make_error(unsigned status, std::string message, std::string type, std::string param,
                     std::string code) {
  api_error e;
  e.status = status;
  e.message = std::move(message);
  e.type = std::move(type);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

std::string error_body(const api_error& e) {
  json::object err{{"message", e.message}, {"type", e.type}};
  err.emplace_back("param", e.param.empty() ? json::value{} : json::value{e.param});
  err.emplace_back("code", e.code.empty() ? json::value{} : json::value{e.code});
  return json::dump(json::object{{"error", std::move(err)}});
}

api_error bad_field(std::string param, std::string message) {
  return api_error{400, std::move(message), "invalid_request_error", std::move(param), {}};
}

/// An error of the model, as the client should see it.
api_error from_model_error(const error& e) {
  switch (e.code()) {
    case errc::invalid_argument:
    case errc::malformed_arguments:
    case errc::parse_error:
      return api_error{400, e.message(), "invalid_request_error", {}, {}};
    case errc::unsupported:
      return api_error{400, e.message(), "invalid_request_error", {}, "unsupported"};
    case errc::timeout:
    case errc::cancelled:
    case errc::budget_exceeded:
      return api_error{503, e.message(), "server_error", {}, to_string(e.code())};
    default:
      return api_error{500, e.message(), "server_error", {}, to_string(e.code())};
  }
}

// ------------------------------------------------------------------------------------------------
// Requests: JSON -> chat_request
// ------------------------------------------------------------------------------------------------

struct parsed_completion {
  chat_request request;
  bool stream = false;
  bool include_usage = false;
};

const json::value* member(const json::value& v, std::string_view key) {
  auto* m = v.find(key);
  return m && !m->is_null() ? m : nullptr;
}

std::string string_field(const json::value& v, std::string_view key, const std::string& where) {
  auto* m = member(v, key);
  if (!m) return {};
  if (!m->is_string())
    throw bad_field(where + "." + std::string(key),
                    fmt::format("'{}.{}' must be a string, not {}", where, key, m->type_name()));
  return m->as_string();
}

/// Message content: a string, or an array of {type: text|image_url} parts, or null.
std::vector<content_part> content_of(const json::value* c, const std::string& where) {
  std::vector<content_part> out;
  if (!c) return out;
  if (c->is_string()) {
    out.push_back(content_part::text(c->as_string()));
    return out;
  }
  if (!c->is_array())
    throw bad_field(where, fmt::format("'{}' must be a string or an array of content parts, not {}",
                                       where, c->type_name()));
  for (size_t i = 0; i < c->as_array().size(); ++i) {
    const auto& p = c->as_array()[i];
    auto at = fmt::format("{}[{}]", where, i);
    if (!p.is_object()) throw bad_field(at, fmt::format("'{}' must be an object", at));
    auto type = string_field(p, "type", at);
    if (type == "text") {
      out.push_back(content_part::text(string_field(p, "text", at)));
    } else if (type == "image_url") {
      auto* img = member(p, "image_url");
      std::string url;
      if (img && img->is_string()) url = img->as_string();
      else if (img && img->is_object()) url = string_field(*img, "url", at + ".image_url");
      if (url.empty())
        throw bad_field(at + ".image_url", fmt::format("'{}.image_url.url' is missing", at));
      out.push_back(content_part::image_url(std::move(url)));
    } else {
      throw bad_field(at + ".type",
                      fmt::format("content part type '{}' is not supported here (text, image_url)",
                                  type));
    }
  }
  return out;
}

chat_message message_of(const json::value& m, size_t index) {
  auto where = fmt::format("messages[{}]", index);
  if (!m.is_object()) throw bad_field(where, fmt::format("'{}' must be an object", where));
  auto role_name = string_field(m, "role", where);
  chat_message msg;
  if (role_name == "system" || role_name == "developer") msg.role = role::system;
  else if (role_name == "user") msg.role = role::user;
  else if (role_name == "assistant") msg.role = role::assistant;
  else if (role_name == "tool") msg.role = role::tool;
  else
    throw bad_field(where + ".role",
                    role_name.empty()
                      ? fmt::format("'{}.role' is missing", where)
                      : fmt::format("'{}.role' is '{}'; expected system, developer, user, "
                                    "assistant or tool", where, role_name));
  msg.content = content_of(member(m, "content"), where + ".content");
  msg.name = string_field(m, "name", where);
  if (msg.role == role::tool) {
    msg.tool_call_id = string_field(m, "tool_call_id", where);
    if (msg.tool_call_id.empty())
      throw bad_field(where + ".tool_call_id",
                      fmt::format("'{}' is a tool message without tool_call_id", where));
  }
  if (msg.role == role::assistant) {
    msg.reasoning = string_field(m, "reasoning_content", where);
    if (auto* calls = member(m, "tool_calls")) {
      if (!calls->is_array())
        throw bad_field(where + ".tool_calls", fmt::format("'{}.tool_calls' must be an array", where));
      for (size_t j = 0; j < calls->as_array().size(); ++j) {
        const auto& c = calls->as_array()[j];
        auto at = fmt::format("{}.tool_calls[{}]", where, j);
        if (!c.is_object()) throw bad_field(at, fmt::format("'{}' must be an object", at));
        tool_call call;
        call.id = string_field(c, "id", at);
        auto* fn = member(c, "function");
        if (!fn || !fn->is_object())
          throw bad_field(at + ".function", fmt::format("'{}.function' must be an object", at));
        call.name = string_field(*fn, "name", at + ".function");
        if (auto* a = member(*fn, "arguments"))
          call.arguments = a->is_string() ? a->as_string() : json::dump(*a);
        msg.tool_calls.push_back(std::move(call));
      }
    }
  }
  return msg;
}

double number_field(const json::value& body, std::string_view key, double lo, double hi) {
  auto* v = member(body, key);
  if (!v) return -1;
  if (!v->is_number())
    throw bad_field(std::string(key),
                    fmt::format("'{}' must be a number, not {}", key, v->type_name()));
  double x = v->as_number();
  if (!(x >= lo && x <= hi))
    throw bad_field(std::string(key),
                    fmt::format("'{}' must be between {} and {}, got {}", key, lo, hi, x));
  return x;
}

/// Reads a chat-completions body; throws api_error naming the field at fault.
parsed_completion parse_completion(std::string_view text, const std::string& model_id) {
  json::value body;
  try {
    body = json::parse(text, "the request body");
  } catch (const error& e) {
    throw api_error{400, "the request body is not valid JSON: " + e.message() +
                           " (send a JSON object with model and messages)",
                    "invalid_request_error", {}, "invalid_json"};
  }
  if (!body.is_object())
    throw api_error{400,
                    fmt::format("the request body must be a JSON object, not {}", body.type_name()),
                    "invalid_request_error", {}, "invalid_json"};
  parsed_completion out;
  auto& req = out.request;

  auto model = string_field(body, "model", "body");
  if (model.empty()) throw bad_field("model", "'model' is missing; this server serves '" + model_id + "'");
  if (model != model_id)
    throw api_error{404,
                    fmt::format("the model '{}' does not exist here; this server serves '{}'", model,
                                model_id),
                    "invalid_request_error", "model", "model_not_found"};

  auto* messages = member(body, "messages");
  if (!messages || !messages->is_array() || messages->as_array().empty())
    throw bad_field("messages", "'messages' must be a non-empty array of messages");
  for (size_t i = 0; i < messages->as_array().size(); ++i)
    req.messages.push_back(message_of(messages->as_array()[i], i));

  if (auto* tools = member(body, "tools")) {
    if (!tools->is_array()) throw bad_field("tools", "'tools' must be an array");
    for (size_t i = 0; i < tools->as_array().size(); ++i) {
      const auto& t = tools->as_array()[i];
      auto at = fmt::format("tools[{}]", i);
      auto* fn = t.is_object() ? member(t, "function") : nullptr;
      if (!fn || !fn->is_object())
        throw bad_field(at, fmt::format("'{}' must be {{\"type\":\"function\",\"function\":{{...}}}}", at));
      auto type = string_field(t, "type", at);
      if (!type.empty() && type != "function")
        throw bad_field(at + ".type", fmt::format("tool type '{}' is not supported (function)", type));
      tool_spec spec;
      spec.name = string_field(*fn, "name", at + ".function");
      if (spec.name.empty())
        throw bad_field(at + ".function.name", fmt::format("'{}.function.name' is missing", at));
      spec.description = string_field(*fn, "description", at + ".function");
      if (auto* p = member(*fn, "parameters")) {
        if (!p->is_object())
          throw bad_field(at + ".function.parameters",
                          fmt::format("'{}.function.parameters' must be a JSON Schema object", at));
        spec.parameters = json::dump(*p);
      }
      req.tools.push_back(std::move(spec));
    }
  }
  if (auto* choice = member(body, "tool_choice")) {
    if (choice->is_string()) {
      const auto& c = choice->as_string();
      if (c == "auto") req.choice.mode = tool_choice_mode::automatic;
      else if (c == "none") req.choice.mode = tool_choice_mode::none;
      else if (c == "required") req.choice.mode = tool_choice_mode::required;
      else
        throw bad_field("tool_choice",
                        fmt::format("tool_choice '{}' is not one of auto, none, required", c));
    } else if (choice->is_object()) {
      auto* fn = member(*choice, "function");
      std::string name = fn && fn->is_object() ? string_field(*fn, "name", "tool_choice.function") : "";
      if (name.empty())
        throw bad_field("tool_choice", "a named tool_choice needs function.name");
      req.choice.mode = tool_choice_mode::named;
      req.choice.name = std::move(name);
    } else {
      throw bad_field("tool_choice", "'tool_choice' must be a string or an object");
    }
    if (req.choice.mode != tool_choice_mode::none && req.choice.mode != tool_choice_mode::automatic &&
        req.tools.empty())
      throw bad_field("tool_choice", "tool_choice requires tools");
  }

  for (const char* key : {"max_completion_tokens", "max_tokens"}) {
    auto* v = member(body, key);
    if (!v || req.max_tokens > 0) continue;
    if (!v->is_int() || v->as_int() < 1 || v->as_int() > (int64_t{1} << 24))
      throw bad_field(key, fmt::format("'{}' must be an integer from 1 to {}", key, 1 << 24));
    req.max_tokens = static_cast<uint32_t>(v->as_int());
  }
  req.sampling.temperature = static_cast<float>(number_field(body, "temperature", 0, 2));
  req.sampling.top_p = static_cast<float>(number_field(body, "top_p", 0, 1));
  if (auto* seed = member(body, "seed")) {
    if (!seed->is_int()) throw bad_field("seed", "'seed' must be an integer");
    req.sampling.seed = static_cast<uint64_t>(seed->as_int());
  }
  for (auto [key, field] : {std::pair{"frequency_penalty", &sampling_params::frequency_penalty},
                            std::pair{"presence_penalty", &sampling_params::presence_penalty}}) {
    if (auto* v = member(body, key); v && !v->is_null()) {
      if (!v->is_number() || !(v->as_number() >= -2 && v->as_number() <= 2))
        throw bad_field(key, fmt::format("'{}' must be a number from -2 to 2", key));
      req.sampling.*field = static_cast<float>(v->as_number());
    }
  }
  if (auto* stop = member(body, "stop"); stop && !stop->is_null()) {
    // A string or up to 16 strings (OpenAI takes 4; vLLM and llama.cpp more).
    constexpr size_t max_stops = 16, max_length = 1024;
    auto add = [&](const json::value& v, const std::string& at) {
      if (!v.is_string() || v.as_string().size() > max_length)
        throw bad_field("stop", fmt::format("'{}' must be a string of at most {} bytes", at,
                                            max_length));
      req.stop.push_back(v.as_string());
    };
    if (stop->is_array()) {
      if (stop->as_array().size() > max_stops)
        throw bad_field("stop", fmt::format("'stop' takes at most {} strings", max_stops));
      for (size_t i = 0; i < stop->as_array().size(); ++i)
        add(stop->as_array()[i], fmt::format("stop[{}]", i));
    } else {
      add(*stop, "stop");
    }
  }
  if (auto* bias = member(body, "logit_bias")) {
    // {"token id": bias from -100 to 100}, as OpenAI takes it (ids of the served model).
    if (!bias->is_object() || bias->as_object().size() > 1024)
      throw bad_field("logit_bias",
                      "'logit_bias' must be an object of at most 1024 \"token id\": bias pairs");
    for (const auto& [key, v] : bias->as_object()) {
      char* end = nullptr;
      const long id = std::strtol(key.c_str(), &end, 10);
      if (key.empty() || *end != '\0' || id < 0 || id > INT32_MAX)
        throw bad_field("logit_bias",
                        fmt::format("logit_bias key '{}' is not a token id (a non-negative "
                                    "integer as a string)",
                                    key));
      if (!v.is_number() || !(v.as_number() >= -100 && v.as_number() <= 100))
        throw bad_field("logit_bias", fmt::format(
                                        "logit_bias of token {} must be a number from -100 to 100",
                                        key));
      req.sampling.logit_bias.push_back(
        {static_cast<int32_t>(id), static_cast<float>(v.as_number())});
    }
  }
  bool logprobs = false;
  if (auto* lp = member(body, "logprobs")) {
    if (!lp->is_bool()) throw bad_field("logprobs", "'logprobs' must be true or false");
    logprobs = lp->as_bool();
  }
  if (auto* top = member(body, "top_logprobs")) {
    if (!top->is_int() || top->as_int() < 0 || top->as_int() > 20)
      throw bad_field("top_logprobs", "'top_logprobs' must be an integer from 0 to 20");
    if (!logprobs) throw bad_field("top_logprobs", "'top_logprobs' needs \"logprobs\": true");
    req.top_logprobs = static_cast<int32_t>(top->as_int());
  } else if (logprobs) {
    req.top_logprobs = 0;
  }
  if (auto* n = member(body, "n"); n && !(n->is_int() && n->as_int() == 1))
    throw api_error{400, "only n = 1 is supported", "invalid_request_error", "n", "unsupported"};
  if (auto* s = member(body, "stream")) {
    if (!s->is_bool()) throw bad_field("stream", "'stream' must be true or false");
    out.stream = s->as_bool();
  }
  if (auto* so = member(body, "stream_options")) {
    if (!so->is_object()) throw bad_field("stream_options", "'stream_options' must be an object");
    if (auto* iu = member(*so, "include_usage")) {
      if (!iu->is_bool())
        throw bad_field("stream_options.include_usage", "'include_usage' must be true or false");
      out.include_usage = iu->as_bool();
    }
  }
  if (auto* rf = member(body, "response_format")) {
    auto type = rf->is_object() ? string_field(*rf, "type", "response_format") : "";
    if (type == "json_schema") {
      auto* js = member(*rf, "json_schema");
      auto* schema = js && js->is_object() ? member(*js, "schema") : nullptr;
      if (!schema || !schema->is_object())
        throw bad_field("response_format", "response_format json_schema needs json_schema.schema");
      req.response_schema = json::dump(*schema);
    } else if (type == "json_object") {
      req.response_schema = R"({"type":"object"})";
    } else if (type != "text") {
      throw bad_field("response_format",
                      "response_format.type must be text, json_object or json_schema");
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Responses
// ------------------------------------------------------------------------------------------------

const char* finish_name(finish_reason r) {
  switch (r) {
    case finish_reason::length: return "length";
    case finish_reason::tool_calls: return "tool_calls";
    default: return "stop";
  }
}

/// OpenAI's {"token", "logprob", "bytes"}: the token as text (invalid UTF-8, a piece of a
/// character, becomes U+FFFD in JSON) and its exact bytes.
json::object logprob_entry(const std::string& token, float logprob) {
  json::array bytes;
  for (unsigned char c : token) bytes.emplace_back(static_cast<int64_t>(c));
  return json::object{{"token", token}, {"logprob", double{logprob}}, {"bytes", std::move(bytes)}};
}

/// A choice's "logprobs": {"content": [...], "refusal": null}.
json::value logprobs_json(const std::vector<token_logprob>& lps) {
  json::array content;
  for (const auto& t : lps) {
    auto entry = logprob_entry(t.token, t.logprob);
    json::array top;
    for (const auto& alt : t.top) top.emplace_back(logprob_entry(alt.token, alt.logprob));
    entry.emplace_back("top_logprobs", std::move(top));
    content.emplace_back(std::move(entry));
  }
  return json::object{{"content", std::move(content)}, {"refusal", nullptr}};
}

json::value usage_json(const usage& u) {
  return json::object{
    {"prompt_tokens", static_cast<int64_t>(u.prompt_tokens)},
    {"completion_tokens", static_cast<int64_t>(u.completion_tokens)},
    {"total_tokens", static_cast<int64_t>(u.total())},
    {"prompt_tokens_details",
     json::object{{"cached_tokens", static_cast<int64_t>(u.cached_prompt_tokens)}}}};
}

json::value tool_call_json(const tool_call& c) {
  return json::object{{"id", c.id},
                      {"type", "function"},
                      {"function", json::object{{"name", c.name}, {"arguments", c.arguments}}}};
}

// ------------------------------------------------------------------------------------------------
// From the model's relay actor (CAF threads) to the connection (its strand)
// ------------------------------------------------------------------------------------------------

struct model_event {
  enum kind_t { delta, done, failed } kind = delta;
  turn_delta piece;
  assistant_turn turn;
  error failure;
};

/// A queue filled by the relay actor and drained by the connection's coroutine. `push` may run on
/// any thread; everything else on the connection's strand. Once `close`d, pushes are dropped, so
/// nothing is posted to a connection that has gone.
class event_channel : public std::enable_shared_from_this<event_channel> {
 public:
  explicit event_channel(asio::any_io_executor ex) : timer_(std::move(ex)) {}

  void push(model_event e) {
    std::lock_guard<std::mutex> g{mtx_};
    if (closed_) return;
    queue_.push_back(std::move(e));
    asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
  }

  void close() {
    std::lock_guard<std::mutex> g{mtx_};
    closed_ = true;
  }

  /// Wakes next() without an event (the client left).
  void wake() { timer_.cancel(); }

  /// The next event, or nothing when `stop` turned true while waiting.
  asio::awaitable<std::optional<model_event>> next(const bool& stop) {
    for (;;) {
      {
        std::lock_guard<std::mutex> g{mtx_};
        if (!queue_.empty()) {
          auto e = std::move(queue_.front());
          queue_.pop_front();
          co_return e;
        }
      }
      if (stop) co_return std::nullopt;
      timer_.expires_at(asio::steady_timer::time_point::max());
      error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }

 private:
  asio::steady_timer timer_;
  std::mutex mtx_;
  std::deque<model_event> queue_;
  bool closed_ = false;
};

/// Asks the model for one turn, forwarding deltas and the outcome to `ch`. Deltas and the reply
/// both come from the model to this actor, so they arrive in the order the model sent them.
caf::behavior relay(caf::event_based_actor* self, model_actor model, chat_request req,
                    std::shared_ptr<event_channel> ch, std::chrono::milliseconds timeout) {
  const uint64_t id = req.id;
  self->request(model, timeout, chat_atom::value, std::move(req))
    .then(
      [self, ch](assistant_turn& t) {
        model_event e;
        e.kind = model_event::done;
        e.turn = std::move(t);
        ch->push(std::move(e));
        self->quit();
      },
      [self, ch, timeout, model, id](caf::error& err) {
        model_event e;
        e.kind = model_event::failed;
        e.failure = from_caf_error(err, "the model");
        if (err == caf::sec::request_timeout) {
          self->send(model, cancel_atom::value, id);  // Stop the work nobody waits for.
          e.failure = error(errc::timeout, fmt::format("the model did not answer within {} ms "
                                                       "(the server's request timeout)",
                                                       timeout.count()));
        }
        ch->push(std::move(e));
        self->quit();
      });
  return {
    [ch](delta_atom, turn_delta& d) {
      model_event e;
      e.piece = std::move(d);
      ch->push(std::move(e));
    },
  };
}

std::string random_hex(size_t n) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s(n, '0');
  for (auto& c : s) c = digits[rng() & 15];
  return s;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// The server
// ------------------------------------------------------------------------------------------------

struct openai_server::impl {
  caf::actor_system& sys;
  model_actor model;
  openai_server_options opts;
  int64_t created = unix_now();
  // Destroyed explicitly in ~impl (acceptor first, then the context with every coroutine frame
  // still in it), while the members below are alive: those frames' destructors use them.
  std::unique_ptr<asio::io_context> io_owner = std::make_unique<asio::io_context>();
  asio::io_context& io = *io_owner;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  std::optional<tcp::acceptor> acceptor{std::in_place, io};
  uint16_t bound_port = 0;
  std::vector<std::thread> threads;
  std::atomic<uint64_t> next_id{1};
  std::atomic<bool> stopped{false};

  std::atomic<uint64_t> n_requests{0}, n_completions{0}, n_disconnects{0}, n_errors{0};

  std::mutex flight_mtx;
  std::map<uint64_t, caf::actor> in_flight;  // Request id -> its relay.

  impl(caf::actor_system& s, model_actor m, openai_server_options o)
      : sys(s), model(std::move(m)), opts(std::move(o)) {}

  // -- sending ----------------------------------------------------------------------------------

  template <class Stream>
  asio::awaitable<bool> send(Stream& stream, bhttp::response<bhttp::string_body> res) {
    res.set(bhttp::field::server, "troupe");
    res.prepare_payload();
    stream.expires_after(std::chrono::seconds(60));
    error_code ec;
    co_await bhttp::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec && res.keep_alive();
  }

  template <class Stream>
  asio::awaitable<bool> send_json(Stream& stream, unsigned status, std::string body, bool keep) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), 11};
    res.set(bhttp::field::content_type, "application/json");
    res.keep_alive(keep);
    res.body() = std::move(body);
    co_return co_await send(stream, std::move(res));
  }

  template <class Stream>
  asio::awaitable<bool> send_error(Stream& stream, const api_error& e, bool keep,
                                   const char* allow = nullptr) {
    ++n_errors;
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(e.status), 11};
    res.set(bhttp::field::content_type, "application/json");
    if (allow) res.set(bhttp::field::allow, allow);
    res.keep_alive(keep);
    res.body() = error_body(e);
    co_return co_await send(stream, std::move(res));
  }

  // -- routes -----------------------------------------------------------------------------------

  // JSON bodies are built outside the coroutines: g++ 12 rejects braced initializer lists in
  // some coroutine expressions ("array used as initializer").
  json::value model_json() const {
    return json::object{{"id", opts.model_id},
                        {"object", "model"},
                        {"created", created},
                        {"owned_by", "troupe"}};
  }
  std::string health_body() const {
    return json::dump(json::object{{"status", "ok"}, {"model", opts.model_id}});
  }
  std::string models_body() const {
    return json::dump(json::object{{"object", "list"}, {"data", json::array{model_json()}}});
  }

  /// The whole answer of a non-streamed completion; its choice's logprobs with `logprobs`.
  std::string completion_body(const std::string& cid, int64_t created_at, const assistant_turn& t,
                              bool logprobs) const {
    json::object msg{{"role", "assistant"}};
    msg.emplace_back("content", t.text.empty() && !t.tool_calls.empty() ? json::value{}
                                                                         : json::value{t.text});
    if (!t.reasoning.empty()) msg.emplace_back("reasoning_content", t.reasoning);
    if (!t.tool_calls.empty()) {
      json::array calls;
      for (const auto& c : t.tool_calls) calls.push_back(tool_call_json(c));
      msg.emplace_back("tool_calls", std::move(calls));
    }
    json::object choice{{"index", 0},
                        {"message", std::move(msg)},
                        {"logprobs", logprobs ? logprobs_json(t.logprobs) : json::value{}}};
    choice.emplace_back("finish_reason", finish_name(t.finish));
    json::object body{{"id", cid},
                      {"object", "chat.completion"},
                      {"created", created_at},
                      {"model", opts.model_id},
                      {"choices", json::array{json::value{std::move(choice)}}},
                      {"usage", usage_json(t.usage)}};
    return json::dump(body);
  }

  /// The SSE event of one delta; empty when the delta carries nothing.
  std::string delta_event(const std::string& cid, int64_t created_at, const turn_delta& d,
                          bool usage_null) const {
    json::object delta;
    if (!d.reasoning.empty()) delta.emplace_back("reasoning_content", d.reasoning);
    if (!d.text.empty()) delta.emplace_back("content", d.text);
    if (d.tool_index >= 0) {
      json::object fn;
      if (!d.tool_name.empty()) fn.emplace_back("name", d.tool_name);
      fn.emplace_back("arguments", d.arguments);
      json::object call{{"index", d.tool_index}};
      if (!d.tool_id.empty()) {
        call.emplace_back("id", d.tool_id);
        call.emplace_back("type", "function");
      }
      call.emplace_back("function", std::move(fn));
      delta.emplace_back("tool_calls", json::array{json::value{std::move(call)}});
    }
    if (delta.empty() && d.logprobs.empty()) return {};
    return chunk_event(cid, created_at, std::move(delta), nullptr, usage_null,
                       d.logprobs.empty() ? json::value{} : logprobs_json(d.logprobs));
  }

  std::string first_event(const std::string& cid, int64_t created_at, bool usage_null) const {
    return chunk_event(cid, created_at, json::object{{"role", "assistant"}, {"content", ""}},
                       nullptr, usage_null);
  }

  /// The end of a stream: the finish chunk, the usage chunk if asked for, [DONE]; or an error
  /// event (and no [DONE]) when the turn failed.
  std::string final_events(const std::string& cid, int64_t created_at, const model_event& e,
                           bool include_usage) const {
    if (e.kind == model_event::failed || e.turn.finish == finish_reason::cancelled ||
        e.turn.finish == finish_reason::error) {
      auto err = e.kind == model_event::failed
                   ? from_model_error(e.failure)
                   : from_model_error(error(errc::model_failed, "the model stopped the turn"));
      return "data: " + error_body(err) + "\n\n";
    }
    std::string tail =
      chunk_event(cid, created_at, json::object{}, finish_name(e.turn.finish), include_usage);
    if (include_usage) {
      json::object chunk{{"id", cid},
                         {"object", "chat.completion.chunk"},
                         {"created", created_at},
                         {"model", opts.model_id},
                         {"choices", json::array{}},
                         {"usage", usage_json(e.turn.usage)}};
      tail += "data: " + json::dump(chunk) + "\n\n";
    }
    return tail + "data: [DONE]\n\n";
  }

  static api_error turn_error(const assistant_turn& t) {
    return from_model_error(t.finish == finish_reason::cancelled
                              ? error(errc::cancelled, "the model cancelled the request")
                              : error(errc::model_failed, "the model failed to finish the turn"));
  }

  /// Answers one request; returns whether the connection may be kept.
  asio::awaitable<bool> handle(beast::tcp_stream& stream, http_request& req) {
    bool keep = req.keep_alive();
    std::string_view target = req.target();
    if (auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    auto method = req.method();
    auto wrong_method = [&](const char* allowed) {
      return make_error(405,
                       fmt::format("{} is not allowed on {}; use {}",
                                   std::string(req.method_string()), std::string(target), allowed),
                       "invalid_request_error", std::string{}, "method_not_allowed");
    };
    if (target == "/health") {
      if (method != bhttp::verb::get) co_return co_await send_error(stream, wrong_method("GET"), keep, "GET");
      co_return co_await send_json(stream, 200, health_body(), keep);
    }
    if (target == "/v1/models") {
      if (method != bhttp::verb::get) co_return co_await send_error(stream, wrong_method("GET"), keep, "GET");
      co_return co_await send_json(stream, 200, models_body(), keep);
    }
    if (target.starts_with("/v1/models/")) {
      if (method != bhttp::verb::get) co_return co_await send_error(stream, wrong_method("GET"), keep, "GET");
      auto id = target.substr(std::string_view("/v1/models/").size());
      if (id != opts.model_id)
        co_return co_await send_error(
          stream,
          make_error(404, fmt::format("the model '{}' does not exist here; this server serves '{}'",
                                     std::string(id), opts.model_id),
                    "invalid_request_error", "model", "model_not_found"),
          keep);
      co_return co_await send_json(stream, 200, json::dump(model_json()), keep);
    }
    if (target == "/v1/chat/completions") {
      if (method != bhttp::verb::post) co_return co_await send_error(stream, wrong_method("POST"), keep, "POST");
      co_return co_await complete(stream, req, keep);
    }
    co_return co_await send_error(
      stream,
      make_error(404,
                fmt::format("there is no route {} {}; this server has POST /v1/chat/completions, "
                            "GET /v1/models and GET /health",
                            std::string(req.method_string()), std::string(target)),
                "invalid_request_error", std::string{}, "not_found"),
      keep);
  }

  /// Watches the socket while the model works: when the client closes it, flags `gone`, cancels
  /// the request in the model and wakes the connection. Stops at the first readable byte (a
  /// pipelined request is left for the next read) or when the socket's waits are cancelled.
  void watch(beast::tcp_stream& stream, std::shared_ptr<event_channel> ch,
             std::shared_ptr<bool> gone, std::shared_ptr<bool> finished, uint64_t id) {
    auto& sock = stream.socket();
    sock.async_wait(tcp::socket::wait_read, [this, &sock, ch, gone, finished, id](error_code ec) {
      if (ec || *finished) return;
      char byte;
      error_code peek;
      size_t n = sock.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, peek);
      if (n > 0 && !peek) return;
      *gone = true;
      ++n_disconnects;
      caf::anon_send(model, cancel_atom::value, id);
      ch->wake();
    });
  }

  template <class Stream>
  asio::awaitable<bool> write_chunk(Stream& stream, const std::string& data) {
    stream.expires_after(std::chrono::seconds(60));
    error_code ec;
    co_await asio::async_write(stream, bhttp::make_chunk(asio::buffer(data)),
                               asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec;
  }

  std::string chunk_event(const std::string& cid, int64_t created_at, json::value delta,
                          const char* finish, bool usage_null,
                          json::value logprobs = json::value{}) const {
    json::object choice{
      {"index", 0}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)}};
    choice.emplace_back("finish_reason", finish ? json::value{finish} : json::value{});
    json::object chunk{{"id", cid},
                       {"object", "chat.completion.chunk"},
                       {"created", created_at},
                       {"model", opts.model_id},
                       {"choices", json::array{json::value{std::move(choice)}}}};
    if (usage_null) chunk.emplace_back("usage", nullptr);
    return "data: " + json::dump(chunk) + "\n\n";
  }

  /// POST /v1/chat/completions: one request to the model through a relay actor; the answer as
  /// one JSON document or as SSE chunks. Returns whether the connection may be kept.
  asio::awaitable<bool> complete(beast::tcp_stream& stream, http_request& req, bool keep) {
    parsed_completion pc;
    std::optional<api_error> refused;
    try {
      pc = parse_completion(req.body(), opts.model_id);
    } catch (const api_error& e) {
      refused = e;
    }
    if (refused) co_return co_await send_error(stream, *refused, keep);
    const uint64_t id = next_id++;
    pc.request.id = id;
    auto ch = std::make_shared<event_channel>(stream.get_executor());
    auto gone = std::make_shared<bool>(false);
    auto finished = std::make_shared<bool>(false);
    struct closer {  // However this coroutine ends, the relay stops posting to this connection.
      impl* self;
      std::shared_ptr<event_channel> ch;
      std::shared_ptr<bool> finished;
      uint64_t id;
      ~closer() {
        *finished = true;
        ch->close();
        std::lock_guard<std::mutex> g{self->flight_mtx};
        self->in_flight.erase(id);
      }
    } guard{this, ch, finished, id};
    const bool streaming = pc.stream;
    const bool with_logprobs = pc.request.top_logprobs >= 0;
    {
      std::lock_guard<std::mutex> g{flight_mtx};
      if (stopped)
        co_return co_await send_error(
          stream, make_error(503, "the server is shutting down", "server_error", std::string{}, "shutting_down"),
          false);
      // The relay is its own delta sink when streaming (see relay()).
      auto r = sys.spawn([m = model, timeout = opts.request_timeout, ch, streaming,
                          req = std::move(pc.request)](caf::event_based_actor* self) mutable {
        if (streaming) req.stream_to = caf::actor_cast<delta_sink_actor>(self);
        return relay(self, std::move(m), std::move(req), ch, timeout);
      });
      in_flight.emplace(id, std::move(r));
    }
    watch(stream, ch, gone, finished, id);

    const std::string cid = "chatcmpl-" + random_hex(24);
    const int64_t created_at = unix_now();
    if (!streaming) {
      for (;;) {
        auto e = co_await ch->next(*gone);
        if (!e) co_return false;  // The client left; the model was told to cancel.
        if (e->kind == model_event::delta) continue;
        *finished = true;
        cancel_watch(stream);
        if (e->kind == model_event::failed)
          co_return co_await send_error(stream, from_model_error(e->failure), keep);
        const auto& t = e->turn;
        if (t.finish == finish_reason::cancelled || t.finish == finish_reason::error) {
          auto err = turn_error(t);
          co_return co_await send_error(stream, err, keep);
        }
        auto body = completion_body(cid, created_at, t, with_logprobs);
        ++n_completions;
        co_return co_await send_json(stream, 200, std::move(body), keep);
      }
    }

    // Streaming: the head goes out with the first event, so that a request the model refuses at
    // once still gets a proper error status.
    bool head_sent = false;
    const bool usage_null = pc.include_usage;
    auto start_stream = [&]() -> asio::awaitable<bool> {
      bhttp::response<bhttp::empty_body> res{bhttp::status::ok, 11};
      res.set(bhttp::field::server, "troupe");
      res.set(bhttp::field::content_type, "text/event-stream");
      res.set(bhttp::field::cache_control, "no-cache");
      res.keep_alive(keep);
      res.chunked(true);
      bhttp::response_serializer<bhttp::empty_body> sr{res};
      stream.expires_after(std::chrono::seconds(60));
      error_code ec;
      co_await bhttp::async_write_header(stream, sr, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
      head_sent = true;
      auto first = first_event(cid, created_at, usage_null);
      co_return co_await write_chunk(stream, first);
    };
    auto client_left = [&]() {
      if (*gone) return;
      *gone = true;
      ++n_disconnects;
      caf::anon_send(model, cancel_atom::value, id);
    };
    for (;;) {
      auto e = co_await ch->next(*gone);
      if (!e) co_return false;
      if (e->kind == model_event::failed && !head_sent) {
        *finished = true;
        cancel_watch(stream);
        co_return co_await send_error(stream, from_model_error(e->failure), keep);
      }
      if (!head_sent && !co_await start_stream()) {
        client_left();
        co_return false;
      }
      if (e->kind == model_event::delta) {
        auto data = delta_event(cid, created_at, e->piece, usage_null);
        if (data.empty()) continue;
        if (!co_await write_chunk(stream, data)) {
          client_left();
          co_return false;
        }
        continue;
      }
      *finished = true;
      cancel_watch(stream);
      const bool ok = e->kind == model_event::done && e->turn.finish != finish_reason::cancelled &&
                      e->turn.finish != finish_reason::error;
      ++(ok ? n_completions : n_errors);
      auto tail = final_events(cid, created_at, *e, pc.include_usage);
      if (!co_await write_chunk(stream, tail)) co_return false;
      stream.expires_after(std::chrono::seconds(60));
      error_code ec;
      co_await asio::async_write(stream, bhttp::make_chunk_last(),
                                 asio::redirect_error(asio::use_awaitable, ec));
      co_return !ec && keep;
    }
  }

  /// Ends a watch() still waiting (its handler then sees `finished` and does nothing).
  static void cancel_watch(beast::tcp_stream& stream) {
    error_code ignored;
    stream.socket().cancel(ignored);
  }

  asio::awaitable<void> session(tcp::socket sock) {
    beast::tcp_stream stream(std::move(sock));
    beast::flat_buffer buffer;
    for (;;) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(opts.max_request_bytes);
      parser.header_limit(64 << 10);
      stream.expires_after(opts.idle_timeout);
      error_code ec;
      co_await bhttp::async_read(stream, buffer, parser,
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec == bhttp::error::body_limit) {
        ++n_requests;
        co_await send_error(
          stream,
          make_error(413,
                    fmt::format("the request body is larger than this server's limit of {} bytes",
                                opts.max_request_bytes),
                    "invalid_request_error", std::string{}, "request_too_large"),
          false);
        break;
      }
      if (ec == bhttp::error::header_limit) {
        ++n_requests;
        co_await send_error(stream,
                            make_error(431, "the request headers are larger than 64 KiB",
                                      "invalid_request_error", std::string{}, "headers_too_large"),
                            false);
        break;
      }
      if (ec == bhttp::error::end_of_stream || ec == asio::error::eof ||
          ec == beast::error::timeout || ec == asio::error::connection_reset ||
          ec == asio::error::operation_aborted)
        break;
      if (ec) {
        ++n_requests;
        co_await send_error(stream,
                            make_error(400, "malformed HTTP request: " + ec.message(),
                                      "invalid_request_error", std::string{}, "bad_http"),
                            false);
        break;
      }
      ++n_requests;
      auto req = parser.release();
      bool keep = false;
      std::string failure;
      try {
        keep = co_await handle(stream, req);
      } catch (const std::exception& e) {
        failure = e.what();
      } catch (...) {
        failure = "unknown exception";
      }
      if (!failure.empty()) {
        auto err = make_error(500, "internal error: " + failure + " (please report it)",
                              "server_error", std::string{}, "internal");
        co_await send_error(stream, err, false);
        break;
      }
      if (!keep || stopped) break;
    }
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream.socket().close(ignored);
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      error_code ec;
      tcp::socket sock{asio::make_strand(io)};
      co_await acceptor->async_accept(sock, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == asio::error::operation_aborted || stopped) co_return;
      if (ec) continue;  // EMFILE and the like: the next accept may succeed.
      auto ex = sock.get_executor();
      asio::co_spawn(ex, session(std::move(sock)), [](std::exception_ptr) {});
    }
  }
  void stop() {
    if (stopped.exchange(true)) return;
    asio::post(io, [this] {
      error_code ignored;
      acceptor->close(ignored);
    });
    {
      // Completions in flight: cancelled in the model, their relays stopped (a relay would
      // otherwise wait for a reply up to request_timeout and hold up the actor system).
      std::lock_guard<std::mutex> g{flight_mtx};
      for (auto& [id, r] : in_flight) {
        caf::anon_send(model, cancel_atom::value, id);
        caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
      }
    }
    work.reset();
    io.stop();
    for (auto& t : threads)
      if (t.joinable()) t.join();
  }

  ~impl() {
    stop();
    acceptor.reset();
    io_owner.reset();  // Destroys the suspended coroutines (connections) while members live.
  }
};

openai_server::openai_server(caf::actor_system& sys, model_actor model, openai_server_options opts)
    : impl_(std::make_shared<impl>(sys, std::move(model), std::move(opts))) {
  auto& o = impl_->opts;
  if (o.model_id.empty())
    throw error(errc::invalid_argument, "the server needs a model id to serve (model_id)");
  if (o.io_threads < 1 || o.io_threads > 256)
    throw error(errc::invalid_argument,
                fmt::format("io_threads must be between 1 and 256, got {}", o.io_threads));
  if (o.max_request_bytes < 1024)
    throw error(errc::invalid_argument, "max_request_bytes must be at least 1024");
  error_code ec;
  auto addr = asio::ip::make_address(o.host, ec);
  if (ec)
    throw error(errc::invalid_argument,
                fmt::format("'{}' is not an IP address to listen on (e.g. 127.0.0.1 or ::1)", o.host));
  tcp::endpoint at{addr, o.port};
  auto& acc = *impl_->acceptor;
  acc.open(at.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(at, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    throw error(errc::io_error,
                fmt::format("cannot listen on {}:{}: {} (pick another --port, or 0 for any free "
                            "port)", o.host, o.port, ec.message()));
  impl_->bound_port = acc.local_endpoint().port();
  auto* self = impl_.get();
  asio::co_spawn(self->io, self->accept_loop(), [](std::exception_ptr) {});
  for (int i = 0; i < o.io_threads; ++i)
    self->threads.emplace_back([self] { self->io.run(); });
}

openai_server::~openai_server() = default;

uint16_t openai_server::port() const { return impl_->bound_port; }

std::string openai_server::base_url() const {
  auto host = impl_->opts.host.find(':') != std::string::npos ? "[" + impl_->opts.host + "]"
                                                               : impl_->opts.host;
  return fmt::format("http://{}:{}/v1", host, impl_->bound_port);
}

openai_server_counters openai_server::counters() const {
  return {impl_->n_requests.load(), impl_->n_completions.load(), impl_->n_disconnects.load(),
          impl_->n_errors.load()};
}

void openai_server::stop() { impl_->stop(); }

}  // namespace troupe
