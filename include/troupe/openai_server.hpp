#pragma once
/// An OpenAI-compatible HTTP/1.1 server in front of any model actor (the local engine in
/// `troupe serve`), so that OpenAI clients (the `openai` SDKs, troupe's own backend) can use it.
///
/// Endpoints: POST /v1/chat/completions (one JSON reply, or Server-Sent Events with `stream`:
/// `data: {chunk}` lines ending with `data: [DONE]`, a usage chunk with
/// stream_options.include_usage), GET /v1/models, GET /v1/models/{id}, GET /health.
/// Requests: messages (system, developer, user, assistant with tool_calls, tool; text and
/// image_url parts), tools, tool_choice, max_tokens / max_completion_tokens, temperature, top_p,
/// seed, response_format json_schema; other fields are ignored, n > 1 is refused.
///
/// Errors have OpenAI's shape {"error":{"message","type","param","code"}}: 400 malformed JSON or
/// fields (param names the field), 404 unknown route or model, 405 wrong method (with Allow),
/// 413 a body over `max_request_bytes`, 431 headers over 64 KiB, 400/500/503 when the model fails
/// (invalid request / failure / timeout or shutdown). Nothing a client sends can crash it.
///
/// Threads: all network I/O runs on `io_threads` Asio threads owned by the server (one strand
/// per connection); each completion is one CAF request to the model from a small relay actor,
/// so no CAF worker ever blocks on a socket. Concurrent requests reach the model concurrently
/// (the local engine batches them). A client that disconnects before its answer is complete
/// gets its request cancelled in the model with (cancel, id).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "caf/fwd.hpp"
#include "troupe/model.hpp"

namespace troupe {

struct openai_server_options {
  std::string host = "127.0.0.1";  ///< Address to listen on (loopback by default).
  uint16_t port = 8080;            ///< 0: any free port (see openai_server::port()).
  std::string model_id = "troupe"; ///< The model /v1/models lists; requests must name it.
  size_t max_request_bytes = size_t{8} << 20;  ///< Larger bodies are refused with 413.
  /// Longest wait for one completion; after it the request is cancelled in the model and the
  /// client gets 503.
  std::chrono::milliseconds request_timeout{600000};
  std::chrono::milliseconds idle_timeout{120000};  ///< Keep-alive connections idle longer close.
  int io_threads = 1;
};

/// What the server has done so far (for tests and logs).
struct openai_server_counters {
  uint64_t requests = 0;     ///< HTTP requests read.
  uint64_t completions = 0;  ///< Chat completions answered in full.
  uint64_t disconnects = 0;  ///< Completions whose client left early (each cancelled in the model).
  uint64_t errors = 0;       ///< Error responses sent.
};

/// A running server. The constructor binds and starts listening; the destructor (or stop) stops
/// accepting, cancels the completions in flight in the model and joins the I/O threads.
class openai_server {
 public:
  /// Throws troupe::error: invalid_argument for bad options, io_error when the address cannot be
  /// bound (the message names host and port and what to do).
  openai_server(caf::actor_system& sys, model_actor model, openai_server_options opts);
  ~openai_server();
  openai_server(const openai_server&) = delete;
  openai_server& operator=(const openai_server&) = delete;

  uint16_t port() const;
  /// "http://HOST:PORT/v1", for clients.
  std::string base_url() const;
  openai_server_counters counters() const;
  /// Idempotent; safe from any thread except the server's own I/O threads.
  void stop();

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace troupe
