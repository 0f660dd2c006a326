// HTTP/1.1 client on Beast with a keep-alive pool per (scheme, host, port).
#include "common/http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
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
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {
struct Conn {
  std::unique_ptr<beast::tcp_stream> plain;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls;
  beast::flat_buffer buf;
  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

Error map_ec(const boost::system::error_code& ec, const std::string& what) {
  if (ec == beast::error::timeout || ec == asio::error::timed_out)
    return Error(Errc::timeout, what + ": timed out");
  if (ec == asio::error::connection_refused || ec == asio::error::connection_reset ||
      ec == asio::error::host_unreachable || ec == asio::error::network_unreachable ||
      ec == asio::error::host_not_found || ec == asio::error::eof || ec == bhttp::error::end_of_stream)
    return Error(Errc::unavailable, what + ": " + ec.message());
  return Error(Errc::internal, what + ": " + ec.message());
}
}  // namespace

struct Client::Impl {
  asio::any_io_executor ex;
  ClientOptions opts;
  ssl::context tls_ctx{ssl::context::tls_client};
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle;
};

Client::Client(asio::any_io_executor ex, ClientOptions opts) : impl_(std::make_shared<Impl>()) {
  impl_->ex = ex;
  impl_->opts = std::move(opts);
  if (impl_->opts.verify) {
    impl_->tls_ctx.set_verify_mode(ssl::verify_peer);
    if (impl_->opts.ca_file)
      impl_->tls_ctx.load_verify_file(*impl_->opts.ca_file);
    else
      impl_->tls_ctx.set_default_verify_paths();
  } else {
    impl_->tls_ctx.set_verify_mode(ssl::verify_none);
  }
}

Client::~Client() = default;

namespace {

template <class Stream>
Task<Result<ClientResponse>> exchange(Stream& s, beast::flat_buffer& buf, bhttp::request<bhttp::string_body>& req,
                                      std::size_t body_limit, bool* reusable) {
  auto [wec, wn] = co_await bhttp::async_write(s, req, tuple_awaitable);
  if (wec) co_return map_ec(wec, "write request");
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(body_limit);
  if (req.method() == bhttp::verb::head) parser.skip(true);
  auto [rec, rn] = co_await bhttp::async_read(s, buf, parser, tuple_awaitable);
  if (rec) co_return map_ec(rec, "read response");
  auto& msg = parser.get();
  ClientResponse out;
  out.status = static_cast<int>(msg.result_int());
  for (const auto& f : msg) out.headers.add(std::string(f.name_string()), std::string(f.value()));
  out.body = std::move(msg.body());
  *reusable = msg.keep_alive();
  Result<ClientResponse> result(std::move(out));
  co_return result;
}

}  // namespace

Task<Result<ClientResponse>> Client::request(ClientRequest creq) {
  auto impl = impl_;
  auto url = parse_url(creq.url);
  if (!url.ok()) co_return url.error();
  const bool https = url->scheme == "https";
  const std::string key = url->scheme + "://" + url->host + ":" + std::to_string(url->port);
  const auto deadline = std::chrono::steady_clock::now() + creq.timeout;

  bhttp::request<bhttp::string_body> req;
  req.method_string(creq.method);
  req.target(url->target);
  req.version(11);
  for (const auto& h : creq.headers.all()) req.insert(h.name, h.value);
  if (!creq.headers.has("host")) {
    bool default_port = (https && url->port == 443) || (!https && url->port == 80);
    req.set(bhttp::field::host, default_port ? url->host : url->host + ":" + std::to_string(url->port));
  }
  req.body() = std::move(creq.body);
  req.keep_alive(true);
  if (req.body().empty() && (creq.method == "GET" || creq.method == "HEAD"))
    ;  // no Content-Length on bodiless GET
  else
    req.prepare_payload();

  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Conn> conn;
    bool pooled = false;
    auto& idle = impl->idle[key];
    if (!idle.empty()) {
      conn = std::move(idle.back());
      idle.pop_back();
      pooled = true;
    } else {
      conn = std::make_unique<Conn>();
      tcp::resolver resolver(impl->ex);
      auto [rec, results] = co_await resolver.async_resolve(url->host, std::to_string(url->port), tuple_awaitable);
      if (rec) co_return map_ec(rec, "resolve " + url->host);
      conn->plain = std::make_unique<beast::tcp_stream>(impl->ex);
      conn->plain->expires_at(deadline);
      auto [cec, ep] = co_await conn->plain->async_connect(results, tuple_awaitable);
      if (cec) co_return map_ec(cec, "connect " + key);
      conn->plain->socket().set_option(tcp::no_delay(true));
      if (https) {
        conn->tls = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*conn->plain), impl->tls_ctx);
        conn->plain.reset();
        if (!SSL_set_tlsext_host_name(conn->tls->native_handle(), url->host.c_str()))
          co_return Error(Errc::internal, "TLS SNI setup failed");
        if (impl->opts.verify)
          conn->tls->set_verify_callback(ssl::host_name_verification(url->host));
        auto [hec] = co_await conn->tls->async_handshake(ssl::stream_base::client, tuple_awaitable);
        if (hec) co_return map_ec(hec, "TLS handshake with " + key);
      }
    }
    conn->lowest().expires_at(deadline);
    bool reusable = false;
    // (GCC 12: no co_await inside a conditional expression.)
    Result<ClientResponse> r = Error(Errc::internal, "no exchange");
    if (conn->tls) {
      r = co_await exchange(*conn->tls, conn->buf, req, impl->opts.response_body_limit, &reusable);
    } else {
      r = co_await exchange(*conn->plain, conn->buf, req, impl->opts.response_body_limit, &reusable);
    }
    if (!r.ok()) {
      // A pooled connection the server closed meanwhile: retry once, fresh.
      if (pooled && r.error().code == Errc::unavailable && std::chrono::steady_clock::now() < deadline) continue;
      co_return r;
    }
    if (reusable) {
      conn->lowest().expires_never();
      auto& pool = impl->idle[key];
      if (pool.size() < impl->opts.max_idle_per_host) pool.push_back(std::move(conn));
    }
    co_return r;
  }
  co_return Error(Errc::unavailable, "connection to " + key + " failed");
}

}  // namespace koukan::http
