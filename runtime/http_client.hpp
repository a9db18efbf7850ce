#pragma once
/// An HTTP/1.1 client for model endpoints: keep-alive connection pooling, TLS with certificate
/// verification, per-exchange timeouts, and response bodies delivered as they arrive (for
/// Server-Sent Events). All I/O runs on one Asio thread owned by the client; no CAF thread ever
/// blocks on the network. Boost.Beast stays in the .cpp.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "troupe/error.hpp"

namespace troupe::http {

/// Parts of an http:// or https:// base URL such as "https://api.moonshot.ai/v1".
struct endpoint {
  bool tls = false;
  std::string host;  ///< Lower case; IPv6 without brackets.
  std::string port;
  std::string path;  ///< Without a trailing '/', e.g. "/v1" (empty for the root).

  /// "host:port" with the scheme, for messages and as the key of the connection pool.
  std::string origin() const;
};

/// Parses a base URL; throws troupe::error (invalid_argument) that says what is wrong.
endpoint parse_endpoint(std::string_view url);

using header_list = std::vector<std::pair<std::string, std::string>>;

struct request {
  std::string method = "POST";
  std::string target;   ///< Path and query, starting with '/'.
  header_list headers;  ///< Host, Content-Length and User-Agent are added by the client.
  std::string body;
  /// Limit for connecting plus receiving the response head, and for each wait for more body.
  std::chrono::milliseconds timeout{60000};
};

/// Status and headers of a response. Header names are compared case-insensitively.
struct response_head {
  unsigned status = 0;
  header_list headers;
  /// The first value of header `name`, or "" when absent.
  std::string header(std::string_view name) const;
};

/// Receives one exchange's events, on the client's thread, in this order: on_head once (unless
/// the exchange fails before a response head arrives), on_body zero or more times, then on_done
/// exactly once. Keep the callbacks short: they run on the only I/O thread.
class response_handler {
 public:
  virtual ~response_handler() = default;
  virtual void on_head(const response_head& head) = 0;
  /// Return false to stop reading (the connection is then closed, not pooled).
  virtual bool on_body(std::string_view bytes) = 0;
  /// `failure` is empty when the whole body arrived. Otherwise its code is io_error (connection
  /// refused, reset, TLS failure), timeout or cancelled, and its message names the endpoint and
  /// the stage that failed.
  virtual void on_done(const error& failure) = 0;
};

/// One exchange in flight; pass it to client::cancel.
class exchange;

/// Options of a client.
struct client_options {
  std::string ca_file;              ///< Extra trusted CAs (PEM), added to the system store.
  size_t max_idle_per_origin = 32;  ///< Idle keep-alive connections kept per origin.
  std::string user_agent = "troupe/0.1";
};

/// Owns the I/O thread, the TLS context and the connection pool. Thread-safe: start, cancel and
/// post may be called from any thread. The destructor aborts exchanges in flight without calling
/// their handlers and joins the thread; do not destroy a client from inside one of its callbacks.
class client {
 public:
  explicit client(client_options opts = {});
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Starts one exchange with `to`. A pooled connection is reused when one is idle; when a reused
  /// connection turns out to be closed before any response byte arrives, the exchange is retried
  /// once on a fresh connection (that is not a retry of the request in the HTTP sense).
  std::shared_ptr<exchange> start(const endpoint& to, request req,
                                  std::shared_ptr<response_handler> handler);

  /// Aborts an exchange: its handler's on_done then reports errc::cancelled (unless it was done).
  void cancel(const std::shared_ptr<exchange>& x);

  /// Connections opened so far (for tests of keep-alive).
  uint64_t connections_opened() const;

  struct impl;

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace troupe::http
