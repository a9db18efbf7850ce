#pragma once
/// A model backend for OpenAI-compatible chat-completions endpoints (OpenAI, Moonshot/Kimi, vLLM,
/// SGLang, llama.cpp's server, Ollama), behind the model interface of troupe/model.hpp.
///
/// Protocol: that of model_actor. Per chat request the backend POSTs {base_url}/chat/completions
/// (streaming with SSE when the request has a valid `stream_to`, else one JSON response) and
/// replies with the assembled assistant_turn. Deltas: text and reasoning fragments are sent as
/// they arrive; each tool call is sent as one delta (index, id, name and the whole arguments) only
/// once the stream has ended cleanly, so a broken stream never yields half a tool call. A server
/// that ignores `stream` and answers with one JSON document is read as such (its text then
/// arrives as one delta).
/// Assistant messages with tool calls carry their reasoning back as `reasoning_content` (Kimi
/// rejects tool-call turns without it when thinking is on).
///
/// Failures: HTTP 408, 409, 429 and 5xx, connection failures, timeouts and streams that break
/// before any delta was sent are retried up to `max_retries` times, waiting what the server asks
/// (retry-after-ms, then retry-after) or else an exponential backoff with jitter; a server that
/// asks for more than `max_retry_after` is not retried. Other failures reply with a troupe::error
/// (as caf::error) that names the endpoint, the HTTP status and the server's error.message:
/// 400/422 -> invalid_argument, 404 -> not_found, timeouts -> timeout, connection and TLS
/// failures -> io_error, the rest -> model_failed. The API key is read from the environment at
/// spawn time and never appears in a message or log.
///
/// Concurrency: requests to one endpoint (scheme, host and port), from all backends of the
/// process, share an adaptive limit that starts at `max_concurrency`, halves on every 429 and
/// grows back by about one request per `limit` successes; requests beyond it wait in FIFO order.
/// All network I/O runs on an Asio thread owned by the backend, never on CAF's scheduler.

#include <chrono>
#include <cstdint>
#include <string>

#include "caf/fwd.hpp"
#include "troupe/model.hpp"

namespace troupe {

/// How to reach one OpenAI-compatible endpoint.
struct openai_config {
  std::string base_url = "https://api.openai.com/v1";  ///< Without "/chat/completions".
  std::string model;                                   ///< The "model" field of each request.
  std::string api_key_env = "OPENAI_API_KEY";  ///< Unset or empty variable: no Authorization.
  /// Limit for connecting plus receiving the response head, and for each wait for more of a
  /// streamed body.
  std::chrono::milliseconds timeout{120000};
  uint32_t max_retries = 4;       ///< Retries after the first attempt.
  uint32_t max_concurrency = 16;  ///< Requests in flight per endpoint, before adaptation.
  /// A JSON object merged into every request body (e.g. {"thinking":{"type":"disabled"}} or
  /// {"parallel_tool_calls":true}); its members replace those troupe sets. Empty: none.
  std::string extra_body;
  std::chrono::milliseconds retry_base_delay{500};    ///< First backoff, doubled per retry.
  std::chrono::milliseconds retry_max_delay{8000};    ///< Largest backoff (before jitter).
  std::chrono::milliseconds max_retry_after{120000};  ///< A longer retry-after is not honoured.
  std::string ca_file;  ///< Extra trusted CAs (PEM) for https; the system store is always used.
};

/// Spawns a backend for `cfg`. Throws troupe::error (invalid_argument) when the base URL, the
/// model name or `extra_body` is unusable, and when `ca_file` cannot be loaded.
model_actor spawn_openai_model(caf::actor_system& sys, openai_config cfg);

}  // namespace troupe
