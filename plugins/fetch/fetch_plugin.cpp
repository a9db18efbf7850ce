/// The fetch plugin: HTTP(S) GET of one URL, returned as text (HTML reduced to readable text).
///
/// Configuration (JSON object given to init; every key optional):
///   ca_file        a PEM file of extra trusted certificate authorities, added to the system store
///                  (e.g. a test server's self-signed certificate); verification is always on
///   max_bytes      most bytes of response body accepted (default 2 MiB); a larger response is a
///                  tool error, refused from its Content-Length before the body is read
///   timeout_ms     time for the whole call, redirects included (default 15000)
///   max_redirects  most redirects followed (default 5); one more is a tool error
///   allowed_hosts  if present, the only hosts fetch may contact (every hop of a redirect chain is
///                  checked): exact names or IP literals, or "*.example.org" for the subdomains of
///                  example.org. Without it any host is reachable, loopback and private addresses
///                  included: give an allow-list (or run the plugin where the network is fenced)
///                  when the model must not reach internal services.
///   user_agent     the User-Agent header (default "troupe-fetch/0.1")
///
/// Tool fetch(url) -> {"url" (after redirects), "status", "content_type", "title" (HTML only),
/// "text", "redirects"}. Only http and https URLs; only text responses (text/*, JSON, XML) are
/// read. HTTP errors (4xx, 5xx), TLS failures (certificate not trusted, wrong host), refused
/// connections, timeouts and size limits are tool errors that say what happened. DNS resolution
/// runs on a resolver thread and is not interrupted by the timeout; everything after it is.
///
/// HTML to text: <script>, <style>, <noscript>, <template>, <svg> and comments are dropped, tags
/// removed (block elements and <br> start a new line, list items start with "- ", table cells are
/// separated by a space), entities decoded (the common named ones and every numeric one),
/// whitespace collapsed, empty lines dropped. ISO-8859-1 and windows-1252 bodies become UTF-8.

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cctype>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/plugin/plugin.hpp"

namespace {

using troupe::plugin::call;
using troupe::plugin::result;
using troupe::plugin::tool_error;
namespace json = troupe::plugin::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;

struct fetch_state {
  std::shared_ptr<ssl::context> tls;
  int64_t max_bytes = int64_t{2} << 20;
  int64_t timeout_ms = 15000;
  int64_t max_redirects = 5;
  std::vector<std::string> allowed_hosts;  // empty: any host
  std::string user_agent = "troupe-fetch/0.1";
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  return out;
}

int64_t config_int(const json::value& config, const char* key, int64_t fallback, int64_t min) {
  const json::value* v = config.find(key);
  if (!v) return fallback;
  if (!v->is_integer() || v->as_int64() < min)
    throw tool_error(std::string("configuration '") + key + "' must be an integer >= " +
                     std::to_string(min));
  return v->as_int64();
}

fetch_state make_state(const json::value& config) {
  fetch_state s;
  s.max_bytes = config_int(config, "max_bytes", s.max_bytes, 1);
  s.timeout_ms = config_int(config, "timeout_ms", s.timeout_ms, 1);
  s.max_redirects = config_int(config, "max_redirects", s.max_redirects, 0);
  if (const json::value* ua = config.find("user_agent")) {
    if (!ua->is_string()) throw tool_error("configuration 'user_agent' must be a string");
    s.user_agent = ua->as_string();
  }
  if (const json::value* hosts = config.find("allowed_hosts")) {
    if (!hosts->is_array())
      throw tool_error("configuration 'allowed_hosts' must be an array of host names");
    for (const auto& h : hosts->as_array()) {
      if (!h.is_string() || h.as_string().empty())
        throw tool_error("configuration 'allowed_hosts' must hold non-empty strings");
      s.allowed_hosts.push_back(lower(h.as_string()));
    }
  }
  s.tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  s.tls->set_verify_mode(ssl::verify_peer);
  boost::system::error_code ec;
  s.tls->set_default_verify_paths(ec);
  if (ec) throw tool_error("the system's trusted certificates cannot be loaded: " + ec.message());
  if (const json::value* ca = config.find("ca_file")) {
    if (!ca->is_string()) throw tool_error("configuration 'ca_file' must be a file name");
    s.tls->load_verify_file(ca->as_string(), ec);
    if (ec)
      throw tool_error("ca_file '" + ca->as_string() + "' cannot be loaded: " + ec.message() +
                       " (it must be a PEM file of certificates)");
  }
  return s;
}

// ------------------------------------------------------------------------------------------------
// URLs
// ------------------------------------------------------------------------------------------------

struct url {
  std::string scheme;  // "http" or "https"
  std::string host;    // lower case; IPv6 without brackets
  std::string port;
  std::string target;  // path and query, starting with '/'

  bool default_port() const {
    return (scheme == "http" && port == "80") || (scheme == "https" && port == "443");
  }
  std::string authority() const {
    std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    return default_port() ? h : h + ":" + port;
  }
  std::string str() const { return scheme + "://" + authority() + target; }
};

url parse_url(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return tool_error("'" + std::string(text) + "' is not a URL fetch can use: " + why);
  };
  size_t colon = text.find("://");
  if (colon == std::string_view::npos) throw bad("write it as http://host/path or https://...");
  url u;
  u.scheme = lower(text.substr(0, colon));
  if (u.scheme != "http" && u.scheme != "https")
    throw bad("the scheme '" + u.scheme + "' is not allowed (only http and https)");
  std::string_view rest = text.substr(colon + 3);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.find('@') != std::string_view::npos)
    throw bad("URLs with user names or passwords are not supported");
  std::string_view host = authority, port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) throw bad("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
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
    if (static_cast<unsigned char>(ch) <= ' ' || ch == '/' || ch == '\\')
      throw bad("the host contains invalid characters");
  u.host = lower(host);
  if (port.empty()) {
    u.port = u.scheme == "https" ? "443" : "80";
  } else {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoi(std::string(port)) == 0 || std::stoi(std::string(port)) > 65535)
      throw bad("the port '" + std::string(port) + "' is not a number from 1 to 65535");
    u.port = std::string(port);
  }
  size_t hash = tail.find('#');
  if (hash != std::string_view::npos) tail = tail.substr(0, hash);
  u.target = tail.empty() ? "/" : tail[0] == '?' ? "/" + std::string(tail) : std::string(tail);
  for (char ch : u.target)
    if (static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f)
      throw bad("the path contains spaces or control characters (percent-encode them)");
  return u;
}

/// The URL a Location header points to, relative to `base`.
url resolve_location(const url& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return parse_url(location);
  if (location.substr(0, 2) == "//") return parse_url(base.scheme + ":" + std::string(location));
  url u = base;
  if (location.empty()) return u;
  if (location[0] == '/') {
    u.target = std::string(location);
  } else if (location[0] == '?') {
    u.target = base.target.substr(0, base.target.find('?')) + std::string(location);
  } else {
    std::string path = base.target.substr(0, base.target.find('?'));
    u.target = path.substr(0, path.rfind('/') + 1) + std::string(location);
  }
  return parse_url(u.str());
}

bool host_allowed(const fetch_state& s, const std::string& host) {
  if (s.allowed_hosts.empty()) return true;
  for (const auto& pattern : s.allowed_hosts) {
    if (pattern == host) return true;
    if (pattern.size() > 2 && pattern.compare(0, 2, "*.") == 0) {
      std::string_view suffix = std::string_view(pattern).substr(1);  // ".example.org"
      if (host.size() > suffix.size() &&
          host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0)
        return true;
    }
  }
  return false;
}

// ------------------------------------------------------------------------------------------------
// One request
// ------------------------------------------------------------------------------------------------

struct response {
  unsigned status = 0;
  std::string reason;
  std::string content_type;
  std::string location;
  std::string body;
};

/// Whether a media type (lower case, without parameters) is text fetch reads.
bool is_text_type(std::string_view media) {
  auto ends_with = [&](std::string_view s) {
    return media.size() >= s.size() && media.substr(media.size() - s.size()) == s;
  };
  return media.substr(0, 5) == "text/" || media == "application/json" ||
         media == "application/xml" || media == "application/xhtml+xml" ||
         media == "application/javascript" || ends_with("+json") || ends_with("+xml");
}

std::string media_type(std::string_view content_type) {
  std::string m = lower(content_type.substr(0, content_type.find(';')));
  while (!m.empty() && m.back() == ' ') m.pop_back();
  while (!m.empty() && m.front() == ' ') m.erase(m.begin());
  return m;
}

/// What went wrong in which step, for the error message.
struct failure {
  std::string stage;
  boost::system::error_code ec;
  std::string detail;
};

template <class Stream>
asio::awaitable<response> exchange(Stream& stream, const url& u, const fetch_state& s,
                                   std::string& stage) {
  http::request<http::empty_body> req{http::verb::get, u.target, 11};
  req.set(http::field::host, u.authority());
  req.set(http::field::user_agent, s.user_agent);
  req.set(http::field::accept,
          "text/html, text/plain;q=0.9, application/json;q=0.9, text/*;q=0.8, */*;q=0.1");
  req.set(http::field::accept_encoding, "identity");
  req.set(http::field::connection, "close");
  stage = "sending the request";
  co_await http::async_write(stream, req, asio::use_awaitable);

  stage = "reading the response";
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.header_limit(64 << 10);
  parser.body_limit(static_cast<uint64_t>(s.max_bytes));
  co_await http::async_read_header(stream, buffer, parser, asio::use_awaitable);
  response r;
  const auto& head = parser.get();
  r.status = head.result_int();
  r.reason = std::string(head.reason());
  r.content_type = std::string(head[http::field::content_type]);
  r.location = std::string(head[http::field::location]);
  bool redirect = r.status >= 300 && r.status < 400;
  if (!redirect && r.status < 400 && !r.content_type.empty() &&
      !is_text_type(media_type(r.content_type)))
    co_return r;  // the caller refuses it; do not download the body
  if (!parser.is_done()) co_await http::async_read(stream, buffer, parser, asio::use_awaitable);
  r.body = std::move(parser.get().body());
  co_return r;
}

asio::awaitable<response> get_once(const url& u, const fetch_state& s,
                                   clock_type::time_point deadline, failure& fail) {
  auto ex = co_await asio::this_coro::executor;
  fail.stage = "resolving " + u.host;
  tcp::resolver resolver(ex);
  auto endpoints = co_await resolver.async_resolve(u.host, u.port, asio::use_awaitable);
  fail.stage = "connecting to " + u.authority();
  if (u.scheme == "http") {
    beast::tcp_stream stream(ex);
    stream.expires_at(deadline);
    co_await stream.async_connect(endpoints, asio::use_awaitable);
    response r = co_await exchange(stream, u, s, fail.stage);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return r;
  }
  beast::ssl_stream<beast::tcp_stream> stream(ex, *s.tls);
  // OpenSSL checks that the certificate names the host (an IP literal against its IP entries).
  boost::system::error_code ec;
  asio::ip::make_address(u.host, ec);
  SSL* tls = stream.native_handle();
  bool tls_ok = ec ? SSL_set_tlsext_host_name(tls, u.host.c_str()) == 1 &&  // SNI: names only
                       SSL_set1_host(tls, u.host.c_str()) == 1
                   : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(tls), u.host.c_str()) == 1;
  if (!tls_ok) throw tool_error("TLS setup for " + u.host + " failed");
  beast::get_lowest_layer(stream).expires_at(deadline);
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::use_awaitable);
  fail.stage = "the TLS handshake with " + u.authority();
  try {
    co_await stream.async_handshake(ssl::stream_base::client, asio::use_awaitable);
  } catch (const boost::system::system_error&) {
    long verify = SSL_get_verify_result(stream.native_handle());
    if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
      fail.detail = "the server's certificate is not valid for " + u.host + " (" +
                    X509_verify_cert_error_string(verify) + ")";
    else if (verify != X509_V_OK)
      fail.detail = std::string("the server's certificate is not trusted: ") +
                    X509_verify_cert_error_string(verify) +
                    " (if you trust this server, add its CA with the plugin's ca_file option)";
    throw;
  }
  response r = co_await exchange(stream, u, s, fail.stage);
  beast::get_lowest_layer(stream).close();  // no TLS close_notify: the response is complete
  co_return r;
}

// ------------------------------------------------------------------------------------------------
// HTML to text
// ------------------------------------------------------------------------------------------------

void append_utf8(std::string& out, uint32_t cp) {
  if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

/// Decodes the entity at s[i] == '&' into out; returns the bytes consumed (1 when it is not one).
size_t decode_entity(std::string_view s, size_t i, std::string& out) {
  size_t semi = s.find(';', i);
  if (semi == std::string_view::npos || semi - i > 12) {
    out += '&';
    return 1;
  }
  std::string_view name = s.substr(i + 1, semi - i - 1);
  if (!name.empty() && name[0] == '#') {
    uint32_t cp = 0;
    bool hex = name.size() > 1 && (name[1] == 'x' || name[1] == 'X');
    std::string_view digits = name.substr(hex ? 2 : 1);
    if (digits.empty()) {
      out += '&';
      return 1;
    }
    for (char ch : digits) {
      int d = ch >= '0' && ch <= '9'               ? ch - '0'
              : hex && ch >= 'a' && ch <= 'f'      ? ch - 'a' + 10
              : hex && ch >= 'A' && ch <= 'F'      ? ch - 'A' + 10
                                                   : -1;
      if (d < 0) {
        out += '&';
        return 1;
      }
      cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(d);
      if (cp > 0x10FFFF) cp = 0x110000;
    }
    append_utf8(out, cp);
    return semi - i + 1;
  }
  static constexpr std::pair<std::string_view, uint32_t> named[] = {
    {"amp", '&'},      {"lt", '<'},         {"gt", '>'},        {"quot", '"'},
    {"apos", '\''},    {"nbsp", ' '},       {"copy", 0xA9},     {"reg", 0xAE},
    {"trade", 0x2122}, {"mdash", 0x2014},   {"ndash", 0x2013},  {"hellip", 0x2026},
    {"lsquo", 0x2018}, {"rsquo", 0x2019},   {"ldquo", 0x201C},  {"rdquo", 0x201D},
    {"laquo", 0xAB},   {"raquo", 0xBB},     {"middot", 0xB7},   {"bull", 0x2022},
    {"euro", 0x20AC},  {"pound", 0xA3},     {"yen", 0xA5},      {"cent", 0xA2},
    {"deg", 0xB0},     {"times", 0xD7},     {"divide", 0xF7},   {"para", 0xB6},
    {"sect", 0xA7},    {"shy", 0xAD},       {"eacute", 0xE9},   {"egrave", 0xE8},
    {"auml", 0xE4},    {"ouml", 0xF6},      {"uuml", 0xFC},     {"szlig", 0xDF},
  };
  for (const auto& [n, cp] : named) {
    if (n == name) {
      if (cp != 0xAD) append_utf8(out, cp);
      return semi - i + 1;
    }
  }
  out += '&';
  return 1;
}

bool is_block(std::string_view tag) {
  static constexpr std::string_view blocks[] = {
    "address", "article", "aside", "blockquote", "body", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
    "header", "hr", "html", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
    "tbody", "thead", "tfoot", "tr", "ul", "br", "caption"};
  for (auto b : blocks)
    if (b == tag) return true;
  return false;
}

/// Index just past the '>' that ends the tag starting at s[i] == '<' (quotes respected).
size_t tag_end(std::string_view s, size_t i) {
  char quote = 0;
  for (size_t k = i + 1; k < s.size(); ++k) {
    char ch = s[k];
    if (quote) {
      if (ch == quote) quote = 0;
    } else if (ch == '"' || ch == '\'') {
      quote = ch;
    } else if (ch == '>') {
      return k + 1;
    }
  }
  return s.size();
}

/// Index of the closing tag </name (case-insensitive) at or after i, or s.size().
size_t find_close(std::string_view s, size_t i, std::string_view name) {
  for (size_t k = s.find("</", i); k != std::string_view::npos; k = s.find("</", k + 2))
    if (lower(s.substr(k + 2, name.size())) == name) return k;
  return s.size();
}

/// Collapses runs of blanks to one space, trims lines, drops empty lines.
std::string collapse(std::string_view raw) {
  std::string out;
  std::string line;
  auto flush = [&] {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) {
      if (!out.empty()) out += '\n';
      out += line;
    }
    line.clear();
  };
  for (char ch : raw) {
    if (ch == '\n') {
      flush();
    } else if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\f' || ch == '\v') {
      if (!line.empty() && line.back() != ' ') line += ' ';
    } else {
      line += ch;
    }
  }
  flush();
  return out;
}

struct page_text {
  std::string title;
  std::string text;
};

page_text html_to_text(std::string_view s) {
  page_text page;
  std::string raw;
  size_t i = 0;
  while (i < s.size()) {
    char ch = s[i];
    if (ch == '&') {
      i += decode_entity(s, i, raw);
      continue;
    }
    if (ch != '<') {
      raw += (ch == '\n' || ch == '\r' || ch == '\t') ? ' ' : ch;  // only tags break lines
      ++i;
      continue;
    }
    if (s.substr(i, 4) == "<!--") {
      size_t end = s.find("-->", i + 4);
      i = end == std::string_view::npos ? s.size() : end + 3;
      continue;
    }
    size_t k = i + 1;
    bool closing = k < s.size() && s[k] == '/';
    if (closing) ++k;
    size_t name_start = k;
    bool starts_name = k < s.size() && std::isalpha(static_cast<unsigned char>(s[k]));
    while (starts_name && k < s.size() &&
           (std::isalnum(static_cast<unsigned char>(s[k])) || s[k] == '-'))
      ++k;
    if (k == name_start && !(k < s.size() && (s[k] == '!' || s[k] == '?'))) {
      raw += '<';  // a lone '<' in text
      ++i;
      continue;
    }
    std::string name = lower(s.substr(name_start, k - name_start));
    size_t after = tag_end(s, i);
    if (!closing && (name == "script" || name == "style" || name == "noscript" ||
                     name == "template" || name == "svg" || name == "title")) {
      size_t close = find_close(s, after, name);
      if (name == "title" && page.title.empty()) {
        std::string t;
        std::string_view inner = s.substr(after, close - after);
        for (size_t j = 0; j < inner.size();)
          if (inner[j] == '&') j += decode_entity(inner, j, t);
          else t += inner[j++];
        page.title = collapse(t);
        for (char& c : page.title)
          if (c == '\n') c = ' ';
      }
      i = close < s.size() ? tag_end(s, close) : s.size();
      continue;
    }
    if (name == "li" && !closing) raw += "\n- ";
    else if (name == "td" || name == "th") raw += ' ';
    else if (is_block(name)) raw += '\n';
    i = after;
  }
  page.text = collapse(raw);
  return page;
}

/// ISO-8859-1 (and, approximately, windows-1252) to UTF-8.
std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char ch : s) append_utf8(out, ch);
  return out;
}

// ------------------------------------------------------------------------------------------------
// The tool
// ------------------------------------------------------------------------------------------------

std::string describe(const failure& f, const fetch_state& s) {
  if (!f.detail.empty()) return f.detail;
  if (f.ec == beast::error::timeout || f.ec == asio::error::operation_aborted)
    return "timed out after " + std::to_string(s.timeout_ms) + " ms while " + f.stage +
           " (the plugin's timeout_ms)";
  if (f.ec == http::error::body_limit)
    return "the response is larger than the plugin's limit of " + std::to_string(s.max_bytes) +
           " bytes (max_bytes)";
  if (f.ec == asio::error::connection_refused)
    return "connection refused while " + f.stage + ": no server is listening there";
  if (f.ec == asio::error::host_not_found || f.ec == asio::error::host_not_found_try_again)
    return "the host name cannot be resolved (" + f.ec.message() + ")";
  return f.ec.message() + " while " + f.stage;
}

result fetch(call& c) {
  const fetch_state& s = c.state<fetch_state>();
  const std::string requested = c.arg<std::string>("url");
  url u = parse_url(requested);
  const auto deadline = clock_type::now() + std::chrono::milliseconds(s.timeout_ms);
  int64_t redirects = 0;
  for (;;) {
    if (!host_allowed(s, u.host))
      throw tool_error("fetch may not contact '" + u.host + "'" +
                       (redirects ? " (redirected from " + requested + ")" : std::string()) +
                       ": the host is not in the plugin's allowed_hosts");
    failure fail;
    std::optional<response> got;
    std::exception_ptr error;
    asio::io_context ioc;
    asio::co_spawn(ioc, get_once(u, s, deadline, fail),
                   [&](std::exception_ptr e, response r) {
                     if (e) error = e;
                     else got = std::move(r);
                   });
    // Poll for cancellation and for a deadline the socket timers cannot see (DNS).
    while (!got && !error && !ioc.stopped()) {
      ioc.run_for(std::chrono::milliseconds(50));
      if (c.cancelled()) throw tool_error("fetch of " + u.str() + " was cancelled");
      if (!got && !error && clock_type::now() > deadline + std::chrono::milliseconds(200))
        throw tool_error("cannot fetch " + u.str() + ": timed out after " +
                         std::to_string(s.timeout_ms) + " ms while " + fail.stage);
    }
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const boost::system::system_error& e) {
        fail.ec = e.code();
        throw tool_error("cannot fetch " + u.str() + ": " + describe(fail, s));
      }
    }
    if (!got) throw tool_error("cannot fetch " + u.str() + ": no response");
    response& r = *got;
    if (r.status >= 300 && r.status < 400 && r.status != 304) {
      if (r.location.empty())
        throw tool_error("cannot fetch " + u.str() + ": HTTP " + std::to_string(r.status) +
                         " without a Location to follow");
      if (redirects == s.max_redirects)
        throw tool_error("cannot fetch " + requested + ": stopped after " +
                         std::to_string(s.max_redirects) +
                         " redirects (the plugin's max_redirects); the last one pointed to " +
                         r.location);
      u = resolve_location(u, r.location);
      ++redirects;
      continue;
    }
    if (r.status >= 400 || r.status < 200)
      throw tool_error("GET " + u.str() + " returned HTTP " + std::to_string(r.status) +
                       (r.reason.empty() ? std::string() : " " + r.reason));
    std::string media = media_type(r.content_type);
    if (!media.empty() && !is_text_type(media))
      throw tool_error(u.str() + " is " + media +
                       ", not text: fetch reads text/*, HTML, JSON and XML only");
    if (r.body.find('\0') != std::string::npos)
      throw tool_error(u.str() + " sent binary data (NUL bytes), not text");
    std::string charset = lower(r.content_type);
    if (charset.find("charset=iso-8859-1") != std::string::npos ||
        charset.find("charset=latin1") != std::string::npos ||
        charset.find("charset=windows-1252") != std::string::npos)
      r.body = latin1_to_utf8(r.body);
    json::object_writer out;
    out.string("url", u.str()).number("status", r.status).string("content_type", r.content_type);
    if (media == "text/html" || media == "application/xhtml+xml") {
      page_text page = html_to_text(r.body);
      out.string("title", page.title).string("text", page.text);
    } else {
      out.string("text", r.body);
    }
    out.number("redirects", redirects);
    return result::ok(out.str());
  }
}

}  // namespace

TROUPE_PLUGIN("fetch", "0.1.0") {
  plugin.on_init<fetch_state>(make_state);
  plugin.tool("fetch",
              "Fetches a web page or text file by HTTP(S) GET and returns its text (HTML reduced "
              "to readable text, with the page title). Follows a few redirects; refuses "
              "non-text content and very large responses.",
              R"js({"type":"object","properties":{)js"
              R"js("url":{"type":"string","description":"An http:// or https:// URL"})js"
              R"js(},"required":["url"],"additionalProperties":false})js",
              fetch);
}
