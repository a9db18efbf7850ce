// The fetch plugin against real HTTP and HTTPS servers that the test runs on 127.0.0.1 (Boost.Beast,
// one thread per connection): HTML reduced to text, the size limit, a server that stalls, the
// redirect limit, refused connections, non-text content, and TLS with a certificate generated at
// test time (openssl CLI) that is trusted through ca_file, untrusted, or issued for another name.
// Loopback only. The plugin is loaded with dlopen and called through the C ABI only.
#define BOOST_TEST_MODULE fetch_plugin
#include <unistd.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plugin_host.hpp"
#include "troupe/plugin/plugin.hpp"  // only for its JSON reader and writer

#ifndef TROUPE_FETCH_PLUGIN
#error "TROUPE_FETCH_PLUGIN must name the plugin library"
#endif

namespace fs = std::filesystem;
namespace json = troupe::plugin::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using troupe::test::loaded_plugin;

namespace {

const char* const page_html = R"html(<!DOCTYPE html>
<html><head><title>A &amp; B
  test</title><style>body { color: red }</style>
<script>var x = "<p>not text</p>";</script></head>
<body><h1>Hello&nbsp;world</h1><p>Fish &amp; chips &lt;3 &#8212; &#x41;&eacute;? 1 < 2</p>
<!-- a <p>comment</p> --><ul><li>one</li><li>two</li></ul>
<table><tr><td>a</td><td>b</td></tr></table>
<p>  spread
   over   lines </p><noscript>enable JavaScript</noscript></body></html>
)html";

/// An HTTP (or, given a TLS context, HTTPS) server on 127.0.0.1 with a few fixed routes:
///   /page.html /plain /json /latin1 /image.png /big /stall /missing
///   /redirect/N  302 to /redirect/N-1, and /redirect/1 to http(s)://127.0.0.1:port/plain
class test_server {
 public:
  explicit test_server(ssl::context* tls = nullptr) : tls_(tls) {
    acceptor_.open(tcp::v4());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind({asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { accept_loop(); });
  }
  ~test_server() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    {  // wake the blocking accept
      boost::system::error_code ec;
      tcp::socket s(ioc_);
      s.connect({asio::ip::make_address("127.0.0.1"), port_}, ec);
      thread_.join();
    }
    for (auto& t : connections_) t.join();
  }

  unsigned short port() const { return port_; }
  std::string url(const std::string& path) const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + path;
  }
  int requests() const { return requests_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      tcp::socket socket(ioc_);
      boost::system::error_code ec;
      acceptor_.accept(socket, ec);
      {
        std::lock_guard<std::mutex> guard(mutex_);
        if (stopping_) return;
      }
      if (ec) continue;
      connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }

  void serve(tcp::socket socket) {
    try {
      if (tls_) {
        ssl::stream<tcp::socket&> stream(socket, *tls_);
        stream.handshake(ssl::stream_base::server);
        handle(stream);
        boost::system::error_code ec;
        stream.shutdown(ec);
      } else {
        handle(socket);
      }
    } catch (const std::exception&) {
      // a client that gave up (timeout, size limit, untrusted certificate): nothing to do
    }
  }

  template <class Stream>
  void handle(Stream& stream) {
    beast::flat_buffer buffer;
    http::request<http::string_body> req;
    http::read(stream, buffer, req);
    ++requests_;
    std::string target(req.target());
    http::response<http::string_body> res{http::status::ok, 11};
    res.set(http::field::server, "troupe-test");
    auto reply = [&](const char* type, std::string body) {
      res.set(http::field::content_type, type);
      res.body() = std::move(body);
    };
    if (target == "/page.html") {
      reply("text/html; charset=utf-8", page_html);
    } else if (target == "/plain") {
      reply("text/plain", "just text\n  kept as it is\n");
    } else if (target == "/json") {
      reply("application/json", R"({"a": [1, 2]})");
    } else if (target == "/latin1") {
      reply("text/plain; charset=ISO-8859-1", "caf\xE9");
    } else if (target == "/image.png") {
      reply("image/png", std::string("\x89PNG\r\n\x1a\n\0\0\0", 11));
    } else if (target == "/big") {
      reply("text/plain", std::string(100000, 'x'));
    } else if (target == "/stall") {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_; });
      return;
    } else if (target.rfind("/redirect/", 0) == 0) {
      int n = std::atoi(target.c_str() + 10);
      res.result(http::status::found);
      res.set(http::field::location,
              n <= 1 ? url("/plain") : "/redirect/" + std::to_string(n - 1));
    } else {
      res.result(http::status::not_found);
      reply("text/plain", "no such page");
    }
    res.prepare_payload();
    http::write(stream, res);
  }

  ssl::context* tls_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_{ioc_};
  unsigned short port_ = 0;
  std::thread thread_;
  std::vector<std::thread> connections_;  // touched by the accept thread only, until joined
  std::atomic<int> requests_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
};

/// A scratch directory with self-signed certificates made by the openssl CLI:
/// ip.pem for IP:127.0.0.1, name.pem for DNS:localhost only.
struct cert_dir {
  fs::path dir;
  cert_dir() {
    char tmpl[] = "/tmp/troupe-fetch-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    make("ip", "/CN=127.0.0.1", "IP:127.0.0.1");
    make("name", "/CN=localhost", "DNS:localhost");
  }
  ~cert_dir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  void make(const std::string& name, const std::string& subject, const std::string& san) {
    std::string cmd = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                      " -days 2 -subj '" + subject + "' -addext 'subjectAltName=" + san +
                      "' -keyout '" + (dir / (name + "-key.pem")).string() + "' -out '" +
                      (dir / (name + ".pem")).string() + "' 2>/dev/null";
    BOOST_REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, "openssl failed: " << cmd);
  }
  std::unique_ptr<ssl::context> server_context(const std::string& name) const {
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->use_certificate_chain_file((dir / (name + ".pem")).string());
    ctx->use_private_key_file((dir / (name + "-key.pem")).string(), ssl::context::pem);
    return ctx;
  }
  std::string pem(const std::string& name) const { return (dir / (name + ".pem")).string(); }
};

json::value ok_json(const troupe::test::plugin_reply& r) {
  BOOST_TEST_INFO("result: " << r.content);
  BOOST_REQUIRE(!r.is_error);
  BOOST_REQUIRE_EQUAL(r.calls, 1);
  return json::parse(r.content);
}

std::string url_args(const std::string& url) {
  return json::object_writer().string("url", url).str();
}

/// The error message of a call that must fail.
std::string error_of(const loaded_plugin& p, const std::string& url) {
  auto r = p.invoke("fetch", url_args(url));
  BOOST_TEST_INFO("result: " << r.content);
  BOOST_TEST(r.is_error);
  BOOST_TEST(r.calls == 1);
  return r.content;
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
unsigned short closed_port() {
  asio::io_context ioc;
  tcp::acceptor a(ioc, {asio::ip::make_address("127.0.0.1"), 0});
  unsigned short port = a.local_endpoint().port();
  a.close();
  return port;
}

}  // namespace

BOOST_AUTO_TEST_CASE(html_is_reduced_to_readable_text) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, "{}");
  json::value v = ok_json(p.invoke("fetch", url_args(server.url("/page.html"))));
  BOOST_TEST(v.find("url")->as_string() == server.url("/page.html"));
  BOOST_TEST(v.find("status")->as_int64() == 200);
  BOOST_TEST(v.find("content_type")->as_string() == "text/html; charset=utf-8");
  BOOST_TEST(v.find("title")->as_string() == "A & B test");
  BOOST_TEST(v.find("text")->as_string() ==
             "Hello world\n"
             "Fish & chips <3 \xE2\x80\x94 A\xC3\xA9? 1 < 2\n"
             "- one\n"
             "- two\n"
             "a b\n"
             "spread over lines");
  BOOST_TEST(v.find("redirects")->as_int64() == 0);
}

BOOST_AUTO_TEST_CASE(text_and_json_come_back_as_they_are) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, "{}");
  json::value v = ok_json(p.invoke("fetch", url_args(server.url("/plain#fragment"))));
  BOOST_TEST(v.find("text")->as_string() == "just text\n  kept as it is\n");
  BOOST_TEST(v.find("title") == nullptr);
  v = ok_json(p.invoke("fetch", url_args(server.url("/json"))));
  BOOST_TEST(v.find("text")->as_string() == R"({"a": [1, 2]})");
  v = ok_json(p.invoke("fetch", url_args(server.url("/latin1"))));
  BOOST_TEST(v.find("text")->as_string() == "caf\xC3\xA9");
}

BOOST_AUTO_TEST_CASE(http_errors_and_non_text_content_are_tool_errors) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, "{}");
  BOOST_TEST(error_of(p, server.url("/missing")) ==
             "GET " + server.url("/missing") + " returned HTTP 404 Not Found");
  BOOST_TEST(error_of(p, server.url("/image.png")) ==
             server.url("/image.png") +
               " is image/png, not text: fetch reads text/*, HTML, JSON and XML only");
}

BOOST_AUTO_TEST_CASE(responses_over_max_bytes_are_refused) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, R"({"max_bytes":1000})");
  BOOST_TEST(error_of(p, server.url("/big")) ==
             "cannot fetch " + server.url("/big") +
               ": the response is larger than the plugin's limit of 1000 bytes (max_bytes)");
  ok_json(p.invoke("fetch", url_args(server.url("/plain"))));  // small ones still pass
}

BOOST_AUTO_TEST_CASE(a_stalling_server_times_out) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, R"({"timeout_ms":300})");
  auto start = std::chrono::steady_clock::now();
  BOOST_TEST(error_of(p, server.url("/stall")) ==
             "cannot fetch " + server.url("/stall") +
               ": timed out after 300 ms while reading the response (the plugin's timeout_ms)");
  auto elapsed = std::chrono::steady_clock::now() - start;
  BOOST_TEST(elapsed >= std::chrono::milliseconds(290));
  BOOST_TEST(elapsed < std::chrono::seconds(3));
}

BOOST_AUTO_TEST_CASE(redirects_are_followed_up_to_the_limit) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, R"({"max_redirects":3})");
  json::value v = ok_json(p.invoke("fetch", url_args(server.url("/redirect/3"))));
  BOOST_TEST(v.find("url")->as_string() == server.url("/plain"));
  BOOST_TEST(v.find("redirects")->as_int64() == 3);
  BOOST_TEST(v.find("text")->as_string() == "just text\n  kept as it is\n");
  int before = server.requests();
  BOOST_TEST(error_of(p, server.url("/redirect/4")) ==
             "cannot fetch " + server.url("/redirect/4") +
               ": stopped after 3 redirects (the plugin's max_redirects); the last one pointed "
               "to " + server.url("/plain"));
  BOOST_TEST(server.requests() - before == 4);  // the fifth request is never made
}

BOOST_AUTO_TEST_CASE(refused_connections_and_bad_urls_are_clear_errors) {
  loaded_plugin p(TROUPE_FETCH_PLUGIN, "{}");
  std::string url = "http://127.0.0.1:" + std::to_string(closed_port()) + "/";
  BOOST_TEST(error_of(p, url) == "cannot fetch " + url +
                                   ": connection refused while connecting to " +
                                   url.substr(7, url.size() - 8) +
                                   ": no server is listening there");
  BOOST_TEST(error_of(p, "file:///etc/passwd") ==
             "'file:///etc/passwd' is not a URL fetch can use: the scheme 'file' is not allowed "
             "(only http and https)");
  BOOST_TEST(error_of(p, "ftp://127.0.0.1/x").find("the scheme 'ftp' is not allowed") !=
             std::string::npos);
  BOOST_TEST(error_of(p, "127.0.0.1/page") ==
             "'127.0.0.1/page' is not a URL fetch can use: write it as http://host/path or "
             "https://...");
  BOOST_TEST(error_of(p, "http://user:pw@127.0.0.1/").find("user names or passwords") !=
             std::string::npos);
  BOOST_TEST(error_of(p, "http://127.0.0.1:99999/").find("is not a number from 1 to 65535") !=
             std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_host_allow_list_applies_to_every_hop) {
  test_server server;
  loaded_plugin p(TROUPE_FETCH_PLUGIN, R"({"allowed_hosts":["example.org","*.example.net"]})");
  BOOST_TEST(error_of(p, server.url("/plain")) ==
             "fetch may not contact '127.0.0.1': the host is not in the plugin's allowed_hosts");
  BOOST_TEST(server.requests() == 0);
  loaded_plugin q(TROUPE_FETCH_PLUGIN, R"({"allowed_hosts":["127.0.0.1"]})");
  ok_json(q.invoke("fetch", url_args(server.url("/plain"))));
}

BOOST_AUTO_TEST_CASE(https_with_a_certificate_trusted_through_ca_file) {
  cert_dir certs;
  auto ctx = certs.server_context("ip");
  test_server server(ctx.get());
  loaded_plugin p(TROUPE_FETCH_PLUGIN,
                  json::object_writer().string("ca_file", certs.pem("ip")).str());
  json::value v = ok_json(p.invoke("fetch", url_args(server.url("/page.html"))));
  BOOST_TEST(v.find("title")->as_string() == "A & B test");
  v = ok_json(p.invoke("fetch", url_args(server.url("/redirect/2"))));
  BOOST_TEST(v.find("url")->as_string() == server.url("/plain"));
}

BOOST_AUTO_TEST_CASE(https_with_an_untrusted_certificate_fails_verification) {
  cert_dir certs;
  auto ctx = certs.server_context("ip");
  test_server server(ctx.get());
  loaded_plugin p(TROUPE_FETCH_PLUGIN, "{}");  // the system store only
  BOOST_TEST(error_of(p, server.url("/plain")) ==
             "cannot fetch " + server.url("/plain") +
               ": the server's certificate is not trusted: self-signed certificate (if you trust "
               "this server, add its CA with the plugin's ca_file option)");
}

BOOST_AUTO_TEST_CASE(https_with_a_certificate_for_another_host_fails_verification) {
  cert_dir certs;
  auto ctx = certs.server_context("name");  // valid for localhost, not for 127.0.0.1
  test_server server(ctx.get());
  loaded_plugin p(TROUPE_FETCH_PLUGIN,
                  json::object_writer().string("ca_file", certs.pem("name")).str());
  BOOST_TEST(error_of(p, server.url("/plain")) ==
             "cannot fetch " + server.url("/plain") +
               ": the server's certificate is not valid for 127.0.0.1 (IP address mismatch)");
}

BOOST_AUTO_TEST_CASE(bad_configuration_is_refused_at_init) {
  auto init_error = [](const std::string& config) -> std::string {
    try {
      loaded_plugin p(TROUPE_FETCH_PLUGIN, config);
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  BOOST_TEST(init_error(R"({"ca_file":"/nonexistent/ca.pem"})")
                 .find("ca_file '/nonexistent/ca.pem' cannot be loaded") != std::string::npos);
  BOOST_TEST(init_error(R"({"max_bytes":0})") ==
             "init failed: plugin 'fetch' cannot start: configuration 'max_bytes' must be an "
             "integer >= 1");
  BOOST_TEST(init_error(R"({"allowed_hosts":"example.org"})").find("must be an array") !=
             std::string::npos);
}
