// HTTP/1.1 client on Beast with a keep-alive pool per (scheme, host, port).
// One deadline covers resolve + connect + TLS handshake + write + read.
#include "common/http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <map>
#include <vector>

#include "common/base/log.hpp"

namespace koukan::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr std::uint32_t kResponseHeaderLimit = 64 * 1024;

struct Conn {
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buf;
  Clock::time_point idle_since;
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

Error map_ec(const error_code& ec, const std::string& what, Clock::time_point deadline) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out || Clock::now() >= deadline)
    return Error(Errc::timeout, what + ": timed out");
  if (ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
      ec == asio::error::connection_aborted || ec == asio::error::broken_pipe || ec == asio::error::not_connected ||
      ec == asio::error::host_unreachable || ec == asio::error::network_unreachable ||
      ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
      ec == asio::error::eof || ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message ||
      ec == ssl::error::stream_truncated)
    return Error(Errc::unavailable, what + ": " + ec.message());
  if (ec == bhttp::error::body_limit) return Error(Errc::internal, what + ": response body over the limit");
  return Error(Errc::internal, what + ": " + ec.message());
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (c <= 0x20 || c >= 0x7f || std::string_view("\"(),/:;<=>?@[\\]{}").find(static_cast<char>(c)) !=
                                      std::string_view::npos)
      return false;
  return true;
}

using BeastRequest = bhttp::request<bhttp::string_body>;

Result<void> build_request(BeastRequest& req, ClientRequest& creq, const Url& url) {
  if (!is_token(creq.method)) return Error(Errc::bad_request, "invalid HTTP method '" + creq.method + "'");
  req.version(11);
  req.method_string(creq.method);
  req.target(url.target);
  for (const auto& h : creq.headers.all()) {
    if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding") || iequals(h.name, "connection"))
      continue;
    if (!is_token(h.name) || h.value.find_first_of("\r\n") != std::string::npos ||
        h.value.find('\0') != std::string::npos)
      return Error(Errc::bad_request, "invalid request header '" + h.name + "'");
    req.insert(h.name, h.value);
  }
  if (!creq.headers.has("host")) {
    bool default_port = (url.scheme == "https" && url.port == 443) || (url.scheme == "http" && url.port == 80);
    std::string host = url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host;
    if (!default_port) host += ":" + std::to_string(url.port);
    req.set(bhttp::field::host, host);
  }
  const bool body_method = creq.method == "POST" || creq.method == "PUT" || creq.method == "PATCH";
  req.body() = std::move(creq.body);
  if (!req.body().empty() || body_method) req.content_length(req.body().size());
  req.keep_alive(true);
  return {};
}

struct Outcome {
  bool reusable = false;   // the connection may go back to the pool
  bool retryable = false;  // failed before any response byte arrived
};

template <class Stream>
Task<Result<ClientResponse>> exchange(Stream& s, beast::flat_buffer& buf, const BeastRequest& req,
                                      std::size_t body_limit, Clock::time_point deadline, Outcome* out) {
  auto [wec, wn] = co_await bhttp::async_write(s, req, tuple_awaitable);
  if (wec) {
    out->retryable = true;
    co_return map_ec(wec, "writing the request", deadline);
  }
  for (;;) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(kResponseHeaderLimit);
    parser.body_limit(body_limit);
    if (req.method() == bhttp::verb::head) parser.skip(true);
    auto [rec, rn] = co_await bhttp::async_read(s, buf, parser, tuple_awaitable);
    if (rec) {
      out->retryable = !parser.got_some();
      co_return map_ec(rec, "reading the response", deadline);
    }
    auto& msg = parser.get();
    const unsigned status = msg.result_int();
    if (status >= 100 && status < 200 && status != 101) continue;  // interim (e.g. 100 Continue)
    ClientResponse resp;
    resp.status = static_cast<int>(status);
    for (const auto& f : msg) resp.headers.add(std::string(f.name_string()), std::string(f.value()));
    resp.body = std::move(msg.body());
    out->reusable = msg.keep_alive() && !parser.need_eof() && status != 101;
    co_return resp;
  }
}

}  // namespace

struct Client::Impl {
  asio::any_io_executor ex;
  ClientOptions opts;
  ssl::context tls_ctx{ssl::context::tls_client};
  std::optional<Error> setup_error;  // e.g. unreadable ca_file: every request fails with it
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle;

  std::unique_ptr<Conn> take_idle(const std::string& key) {
    auto it = idle.find(key);
    if (it == idle.end()) return nullptr;
    auto& v = it->second;
    const auto now = Clock::now();
    while (!v.empty()) {
      auto c = std::move(v.back());
      v.pop_back();
      if (now - c->idle_since < opts.idle_timeout) return c;
    }
    return nullptr;
  }

  void put_idle(const std::string& key, std::unique_ptr<Conn> c) {
    auto& v = idle[key];
    if (v.size() >= opts.max_idle_per_host) return;
    c->lowest().expires_never();
    c->idle_since = Clock::now();
    v.push_back(std::move(c));
  }
};

Client::Client(asio::any_io_executor ex, ClientOptions opts) : impl_(std::make_shared<Impl>()) {
  impl_->ex = std::move(ex);
  impl_->opts = std::move(opts);
  auto& ctx = impl_->tls_ctx;
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  error_code ec;
  if (impl_->opts.verify) {
    ctx.set_verify_mode(ssl::verify_peer, ec);
    if (impl_->opts.ca_file) {
      ctx.load_verify_file(*impl_->opts.ca_file, ec);
      if (ec) impl_->setup_error = Error(Errc::internal, "TLS CA file " + *impl_->opts.ca_file + ": " + ec.message());
    } else {
      ctx.set_default_verify_paths(ec);
      if (ec) log::warn("http client: no system CA paths: {}", ec.message());
    }
  } else {
    ctx.set_verify_mode(ssl::verify_none, ec);
  }
}

Client::~Client() = default;

namespace {

// `tls_ctx` outlives the call (the caller holds the Client's Impl).
Task<Result<std::unique_ptr<Conn>>> connect(asio::any_io_executor ex, ssl::context& tls_ctx, bool verify, Url url,
                                            Clock::time_point deadline) {
  const std::string what = url.scheme + "://" + url.host + ":" + std::to_string(url.port);
  auto conn = std::make_unique<Conn>();
  conn->plain.emplace(ex);
  conn->plain->expires_at(deadline);

  error_code aec;
  auto addr = asio::ip::make_address(url.host, aec);
  if (!aec) {
    tcp::endpoint ep(addr, url.port);
    auto [cec] = co_await conn->plain->async_connect(ep, tuple_awaitable);
    if (cec) co_return map_ec(cec, "connecting to " + what, deadline);
  } else {
    // The resolver has no deadline of its own: a timer cancels it.
    auto resolver = std::make_shared<tcp::resolver>(ex);
    asio::steady_timer timer(ex, deadline);
    std::weak_ptr<tcp::resolver> weak = resolver;
    timer.async_wait([weak](error_code ec) {
      if (ec) return;
      if (auto r = weak.lock()) r->cancel();
    });
    const std::string port = std::to_string(url.port);
    auto [rec, results] = co_await resolver->async_resolve(url.host, port, tuple_awaitable);
    timer.cancel();
    if (rec) {
      if (rec == asio::error::operation_aborted) co_return Error(Errc::timeout, "resolving " + url.host + ": timed out");
      co_return map_ec(rec, "resolving " + url.host, deadline);
    }
    auto [cec, ep] = co_await conn->plain->async_connect(results, tuple_awaitable);
    if (cec) co_return map_ec(cec, "connecting to " + what, deadline);
  }
  error_code ig;
  conn->plain->socket().set_option(tcp::no_delay(true), ig);

  if (url.scheme == "https") {
    conn->tls.emplace(std::move(*conn->plain), tls_ctx);
    conn->plain.reset();
    SSL* ssl_handle = conn->tls->native_handle();
    if (aec) {  // SNI only for names, never for IP literals (RFC 6066)
      if (!SSL_set_tlsext_host_name(ssl_handle, url.host.c_str()))
        co_return Error(Errc::internal, "TLS: cannot set SNI for " + url.host);
    }
    if (verify) {
      auto verifier = ssl::host_name_verification(url.host);
      conn->tls->set_verify_callback(verifier);
    }
    conn->lowest().expires_at(deadline);
    auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, tuple_awaitable);
    if (hec) {
      if (hec.category() == asio::error::get_ssl_category() && Clock::now() < deadline) {
        std::string reason = hec.message();
        long vr = SSL_get_verify_result(ssl_handle);
        if (vr != X509_V_OK) reason += std::string(" (") + X509_verify_cert_error_string(vr) + ")";
        co_return Error(Errc::internal, "TLS handshake with " + what + ": " + reason);
      }
      co_return map_ec(hec, "TLS handshake with " + what, deadline);
    }
  }
  co_return conn;
}

}  // namespace

Task<Result<ClientResponse>> Client::request(ClientRequest creq) {
  auto impl = impl_;
  if (impl->setup_error) co_return *impl->setup_error;
  auto url = parse_url(creq.url);
  if (!url.ok()) co_return url.error();
  const std::string key = url->scheme + "://" + url->host + ":" + std::to_string(url->port);
  const auto deadline = Clock::now() + creq.timeout;

  BeastRequest req;
  auto built = build_request(req, creq, *url);
  if (!built.ok()) co_return built.error();

  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<Conn> conn = impl->take_idle(key);
    const bool pooled = conn != nullptr;
    if (!conn) {
      auto c = co_await connect(impl->ex, impl->tls_ctx, impl->opts.verify, *url, deadline);
      if (!c.ok()) co_return c.error();
      conn = std::move(c).value();
    }
    conn->lowest().expires_at(deadline);
    Outcome outcome;
    const std::size_t limit = impl->opts.response_body_limit;
    Result<ClientResponse> r = Error(Errc::internal, "unreachable");
    if (conn->tls) {
      r = co_await exchange(*conn->tls, conn->buf, req, limit, deadline, &outcome);
    } else {
      r = co_await exchange(*conn->plain, conn->buf, req, limit, deadline, &outcome);
    }
    if (!r.ok()) {
      // A pooled connection the server closed meanwhile: once more, fresh.
      if (pooled && attempt == 0 && outcome.retryable && r.error().code != Errc::timeout) {
        log::debug("http client: stale pooled connection to {} ({}), retrying", key, r.error().message);
        continue;
      }
      co_return r;
    }
    if (outcome.reusable) impl->put_idle(key, std::move(conn));
    co_return r;
  }
}

}  // namespace koukan::http
