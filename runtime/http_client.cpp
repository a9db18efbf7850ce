#include "http_client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <map>
#include <thread>

namespace troupe::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace

std::string endpoint::origin() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return (tls ? "https://" : "http://") + h + ":" + port;
}

endpoint parse_endpoint(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return error(errc::invalid_argument,
                 "base URL '" + std::string(text) + "' cannot be used: " + why +
                     " (write it as http://host:port/v1 or https://host/v1)");
  };
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) throw bad("it has no scheme");
  endpoint e;
  auto scheme = lower(text.substr(0, sep));
  if (scheme == "https")
    e.tls = true;
  else if (scheme != "http")
    throw bad("the scheme '" + scheme + "' is not http or https");
  auto rest = text.substr(sep + 3);
  size_t slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
  if (authority.find('@') != std::string_view::npos)
    throw bad("user names or passwords in the URL are not supported (use the API key variable)");
  std::string_view host = authority, port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw bad("unexpected text after the IPv6 address");
      port = after.substr(1);
    }
  } else if (size_t c = authority.rfind(':'); c != std::string_view::npos) {
    host = authority.substr(0, c);
    port = authority.substr(c + 1);
  }
  if (host.empty()) throw bad("it has no host");
  for (char ch : host)
    if (static_cast<unsigned char>(ch) <= ' ' || ch == '\\')
      throw bad("the host has invalid characters");
  e.host = lower(host);
  if (port.empty()) {
    e.port = e.tls ? "443" : "80";
  } else {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535)
      throw bad("the port '" + std::string(port) + "' is not a number from 1 to 65535");
    e.port = std::string(port);
  }
  if (path.find_first_of("?#") != std::string_view::npos) throw bad("it has a query or fragment");
  for (char ch : path)
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
      throw bad("the path has spaces or control characters");
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  e.path = std::string(path);
  return e;
}

std::string response_head::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return {};
}

/// One open connection; touched only on the I/O thread.
struct connection {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
  beast::flat_buffer buffer;

  beast::tcp_stream& lowest() { return secure ? beast::get_lowest_layer(*secure) : *plain; }
};

class exchange {
 public:
  endpoint to;
  request req;
  std::shared_ptr<response_handler> handler;
  std::shared_ptr<connection> conn;  // The connection in use, for cancel.
  bool cancelled = false;            // I/O thread only.
  std::string stage;
};

struct client::impl {
  asio::io_context io;  // Declared first: destroyed after everything that uses it.
  asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
  ssl::context tls{ssl::context::tls_client};
  client_options opts;
  std::map<std::string, std::vector<std::shared_ptr<connection>>> idle;  // By origin.
  std::atomic<uint64_t> opened{0};
  std::thread thread;

  std::shared_ptr<connection> take_idle(const std::string& origin) {
    auto it = idle.find(origin);
    if (it == idle.end() || it->second.empty()) return nullptr;
    auto c = std::move(it->second.back());
    it->second.pop_back();
    return c;
  }

  void give_back(const std::string& origin, std::shared_ptr<connection> c) {
    auto& list = idle[origin];
    c->lowest().expires_never();
    if (list.size() >= opts.max_idle_per_origin) return;
    list.push_back(std::move(c));
  }

  asio::awaitable<std::shared_ptr<connection>> connect(exchange& x) {
    auto ex = co_await asio::this_coro::executor;
    x.stage = "resolving the host";
    tcp::resolver resolver(ex);
    auto endpoints = co_await resolver.async_resolve(x.to.host, x.to.port, asio::use_awaitable);
    if (x.cancelled) throw boost::system::system_error(asio::error::operation_aborted);
    auto c = std::make_shared<connection>();
    x.conn = c;
    x.stage = "connecting";
    if (!x.to.tls) {
      c->plain = std::make_unique<beast::tcp_stream>(ex);
      c->plain->expires_after(x.req.timeout);
      co_await c->plain->async_connect(endpoints, asio::use_awaitable);
      ++opened;
      co_return c;
    }
    c->secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ex, tls);
    // OpenSSL checks that the certificate names the host (an IP literal against its IP entries).
    boost::system::error_code ec;
    asio::ip::make_address(x.to.host, ec);
    SSL* handle = c->secure->native_handle();
    bool ok = ec ? SSL_set_tlsext_host_name(handle, x.to.host.c_str()) == 1 &&
                       SSL_set1_host(handle, x.to.host.c_str()) == 1
                 : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(handle), x.to.host.c_str()) == 1;
    if (!ok) throw error(errc::io_error, "TLS setup for " + x.to.origin() + " failed");
    c->lowest().expires_after(x.req.timeout);
    co_await c->lowest().async_connect(endpoints, asio::use_awaitable);
    ++opened;
    x.stage = "the TLS handshake";
    try {
      co_await c->secure->async_handshake(ssl::stream_base::client, asio::use_awaitable);
    } catch (const boost::system::system_error& e) {
      long verify = SSL_get_verify_result(c->secure->native_handle());
      if (verify != X509_V_OK)
        throw error(errc::io_error,
                    "the TLS certificate of " + x.to.origin() +
                        " is not accepted: " + X509_verify_cert_error_string(verify));
      throw;
    }
    co_return c;
  }

  /// Sends the request and streams the response to the handler. Returns whether the connection
  /// may be reused. `got_bytes` turns true once any part of the response has arrived.
  template <class Stream>
  asio::awaitable<bool> talk(Stream& s, connection& c, exchange& x, bool& got_bytes) {
    bhttp::request<bhttp::string_body> r{
        x.req.method == "GET" ? bhttp::verb::get : bhttp::verb::post, x.req.target, 11};
    std::string host = x.to.host.find(':') != std::string::npos ? "[" + x.to.host + "]" : x.to.host;
    if (x.to.port != (x.to.tls ? "443" : "80")) host += ":" + x.to.port;
    r.set(bhttp::field::host, host);
    r.set(bhttp::field::user_agent, opts.user_agent);
    for (const auto& [k, v] : x.req.headers) r.set(k, v);
    r.body() = x.req.body;
    r.prepare_payload();
    x.stage = "sending the request";
    c.lowest().expires_after(x.req.timeout);
    co_await bhttp::async_write(s, r, asio::use_awaitable);
    x.stage = "waiting for the response";
    bhttp::response_parser<bhttp::string_body> p;
    p.header_limit(64 << 10);
    p.body_limit(uint64_t{256} << 20);
    c.lowest().expires_after(x.req.timeout);
    co_await bhttp::async_read_header(s, c.buffer, p, asio::use_awaitable);
    got_bytes = true;
    response_head head;
    head.status = p.get().result_int();
    for (const auto& f : p.get())
      head.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    x.handler->on_head(head);
    x.stage = "reading the response body";
    while (!p.is_done()) {
      c.lowest().expires_after(x.req.timeout);
      co_await bhttp::async_read_some(s, c.buffer, p, asio::use_awaitable);
      if (x.cancelled) throw boost::system::system_error(asio::error::operation_aborted);
      auto& body = p.get().body();
      if (!body.empty()) {
        bool more = x.handler->on_body(body);
        body.clear();
        if (!more) co_return false;
      }
    }
    auto& body = p.get().body();
    if (!body.empty() && !x.handler->on_body(body)) co_return false;
    co_return p.keep_alive();
  }

  asio::awaitable<void> run(std::shared_ptr<exchange> x) {
    error failure;
    auto origin = x->to.origin();
    try {
      for (int round = 0;; ++round) {
        if (x->cancelled) throw boost::system::system_error(asio::error::operation_aborted);
        auto c = round == 0 ? take_idle(origin) : nullptr;
        bool reused = c != nullptr;
        if (c)
          x->conn = c;
        else
          c = co_await connect(*x);
        bool got_bytes = false, reusable = false;
        try {
          if (c->secure)
            reusable = co_await talk(*c->secure, *c, *x, got_bytes);
          else
            reusable = co_await talk(*c->plain, *c, *x, got_bytes);
        } catch (const boost::system::system_error&) {
          if (reused && !got_bytes && !x->cancelled) continue;  // The server closed an idle one.
          throw;
        }
        x->conn.reset();
        if (reusable && !x->cancelled) give_back(origin, std::move(c));
        break;
      }
    } catch (const error& e) {
      failure = e;
    } catch (const boost::system::system_error& e) {
      auto ec = e.code();
      if (x->cancelled || ec == asio::error::operation_aborted)
        failure = error(errc::cancelled, "the request to " + origin + " was cancelled");
      else if (ec == beast::error::timeout)
        failure = error(errc::timeout, "no answer from " + origin + " within " +
                                           std::to_string(x->req.timeout.count()) + " ms while " +
                                           x->stage);
      else
        failure = error(errc::io_error, x->stage + " with " + origin + " failed: " + ec.message());
    } catch (const std::exception& e) {
      failure = error(errc::io_error, x->stage + " with " + origin + " failed: " + e.what());
    }
    x->conn.reset();
    auto handler = std::move(x->handler);
    if (handler) handler->on_done(failure);
  }
};

client::client(client_options opts) : impl_(std::make_shared<impl>()) {
  impl_->opts = std::move(opts);
  impl_->tls.set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  impl_->tls.set_default_verify_paths(ec);
  if (!impl_->opts.ca_file.empty()) {
    impl_->tls.load_verify_file(impl_->opts.ca_file, ec);
    if (ec)
      throw error(errc::invalid_argument, "ca_file '" + impl_->opts.ca_file +
                                              "' cannot be loaded: " + ec.message() +
                                              " (it must be a PEM file of certificates)");
  }
  auto* self = impl_.get();
  impl_->thread = std::thread([self] { self->io.run(); });
}

client::~client() {
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->idle.clear();
}

std::shared_ptr<exchange> client::start(const endpoint& to, request req,
                                        std::shared_ptr<response_handler> handler) {
  auto x = std::make_shared<exchange>();
  x->to = to;
  x->req = std::move(req);
  x->handler = std::move(handler);
  auto* self = impl_.get();
  asio::co_spawn(self->io, self->run(x), asio::detached);
  return x;
}

void client::cancel(const std::shared_ptr<exchange>& x) {
  if (!x) return;
  asio::post(impl_->io, [x] {
    x->cancelled = true;
    if (x->conn) {
      boost::system::error_code ignored;
      x->conn->lowest().socket().cancel(ignored);
      x->conn->lowest().socket().close(ignored);
    }
  });
}

uint64_t client::connections_opened() const { return impl_->opened.load(); }

}  // namespace troupe::http
