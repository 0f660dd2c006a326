// HTTP/1.1 server on Beast. One coroutine per connection owns its stream;
// a deadline before every read and write; bodies are streamed to the handler
// through a BodyReader over a buffer_body parser.
#include "common/http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <map>

#include "common/base/log.hpp"
#include "common/http/error.hpp"

namespace koukan::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

struct Server::Impl : std::enable_shared_from_this<Impl> {
  asio::io_context& io;
  ServerOptions opts;
  Handler handler;
  tcp::acceptor acceptor;
  std::optional<ssl::context> tls;
  bool stopping = false;
  std::uint64_t next_conn = 0;
  std::size_t busy = 0;  // connections inside a request
  std::map<std::uint64_t, std::function<void()>> closers;

  Impl(asio::io_context& io_, ServerOptions o, Handler h)
      : io(io_), opts(std::move(o)), handler(std::move(h)), acceptor(io_) {}
};

namespace {

// Streams the body of the request being parsed.
template <class Stream>
class ParserBodyReader : public BodyReader {
 public:
  ParserBodyReader(Stream& s, beast::flat_buffer& b, bhttp::request_parser<bhttp::buffer_body>& p,
                   const ServerOptions& o, bool expect_continue)
      : stream_(s), buf_(b), parser_(p), opts_(o), need_continue_(expect_continue) {}

  Task<Result<void>> read_some(std::string& out, std::size_t max) override {
    out.clear();
    if (max == 0) max = 1;
    while (out.empty() && !parser_.is_done()) {
      if (need_continue_) {
        need_continue_ = false;
        bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
        beast::get_lowest_layer(stream_).expires_after(opts_.write_timeout);
        auto [wec, wn] = co_await bhttp::async_write(stream_, cont, tuple_awaitable);
        if (wec) co_return Error(Errc::internal, "write 100-continue: " + wec.message());
      }
      out.resize(max);
      parser_.get().body().data = out.data();
      parser_.get().body().size = max;
      parser_.get().body().more = true;
      beast::get_lowest_layer(stream_).expires_after(opts_.body_read_timeout);
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buf_, parser_, tuple_awaitable);
      out.resize(max - parser_.get().body().size);
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        failed_ = true;
        out.clear();
        if (ec == bhttp::error::body_limit)
          co_return Error(Errc::payload_too_large, "request body too large");
        if (ec == beast::error::timeout) co_return Error(Errc::timeout, "timed out reading request body");
        if (ec.category() == bhttp::make_error_code(bhttp::error::body_limit).category() ||
            ec == bhttp::error::bad_chunk || ec == bhttp::error::bad_chunk_extension)
          co_return Error(Errc::bad_request, "malformed request body: " + ec.message());
        co_return Error(Errc::internal, "connection lost reading request body: " + ec.message());
      }
    }
    co_return Result<void>();
  }

  bool failed() const { return failed_; }

 private:
  Stream& stream_;
  beast::flat_buffer& buf_;
  bhttp::request_parser<bhttp::buffer_body>& parser_;
  const ServerOptions& opts_;
  bool need_continue_;
  bool failed_ = false;
};

template <class Stream>
Task<bool> write_response(Stream& stream, const ServerOptions& opts, Response resp, bool keep_alive) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(resp.status), 11};
  for (const auto& h : resp.headers.all()) res.insert(h.name, h.value);
  if (resp.status == 304 || resp.status == 204 || resp.status < 200) {
    res.body().clear();
  } else {
    res.body() = std::move(resp.body);
  }
  res.keep_alive(keep_alive);
  res.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(opts.write_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream, res, tuple_awaitable);
  co_return !ec;
}

Response json_error(int status, const std::string& msg) {
  return Response::json(status, "{\"error\":" + json_quote(msg) + "}");
}

template <class Stream>
Task<void> serve_requests(std::shared_ptr<Server::Impl> impl, Stream& stream, std::string remote) {
  const ServerOptions& opts = impl->opts;
  beast::flat_buffer buf;
  bool first = true;
  for (;;) {
    bhttp::request_parser<bhttp::buffer_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(opts.header_limit));
    parser.body_limit(opts.body_limit);
    beast::get_lowest_layer(stream).expires_after(first ? opts.read_header_timeout : opts.idle_timeout);
    first = false;
    auto [ec, n] = co_await bhttp::async_read_header(stream, buf, parser, tuple_awaitable);
    if (ec) {
      if (ec == bhttp::error::header_limit) {
        co_await write_response(stream, opts, json_error(431, "request header too large"), false);
      } else if (ec == bhttp::error::body_limit) {
        co_await write_response(stream, opts, json_error(413, "request body too large"), false);
      } else if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() && ec != bhttp::error::end_of_stream &&
                 ec != bhttp::error::partial_message) {
        co_await write_response(stream, opts, json_error(400, "malformed request: " + ec.message()), false);
      }
      break;  // eof, timeout, reset: just close
    }
    auto& msg = parser.get();
    Request req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    auto q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    for (const auto& f : msg) req.headers.add(std::string(f.name_string()), std::string(f.value()));
    if (auto cl = parser.content_length()) req.content_length = *cl;
    req.chunked = parser.chunked();
    req.remote_addr = remote;
    bool expect_continue = false;
    if (auto e = req.headers.get("expect")) expect_continue = iequals(*e, "100-continue");
    ParserBodyReader<Stream> reader(stream, buf, parser, opts, expect_continue && !parser.is_done());
    req.body = &reader;

    ++impl->busy;
    Response resp;
    try {
      resp = co_await impl->handler(req);
    } catch (const std::exception& e) {
      log::error("http: handler for {} {} threw: {}", req.method, req.path, e.what());
      resp = json_error(500, "internal error");
    }
    --impl->busy;

    bool keep = parser.keep_alive() && !impl->stopping && !reader.failed();
    if (!parser.is_done() && keep) {
      // Drain a small unread remainder so the connection can be reused.
      std::string sink;
      std::size_t drained = 0;
      while (!parser.is_done() && drained <= 64 * 1024) {
        auto r = co_await reader.read_some(sink, 16 * 1024);
        if (!r.ok()) break;
        drained += sink.size();
      }
      if (!parser.is_done()) keep = false;
    }
    if (!co_await write_response(stream, opts, std::move(resp), keep)) break;
    if (!keep) break;
  }
}

Task<void> run_connection(std::shared_ptr<Server::Impl> impl, tcp::socket sock) {
  std::string remote;
  {
    boost::system::error_code ec;
    auto ep = sock.remote_endpoint(ec);
    if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  const std::uint64_t id = impl->next_conn++;
  if (impl->tls) {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(sock)), *impl->tls);
    impl->closers[id] = [&stream] { beast::get_lowest_layer(stream).socket().close(); };
    beast::get_lowest_layer(stream).expires_after(impl->opts.read_header_timeout);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, tuple_awaitable);
    if (!ec) {
      co_await serve_requests(impl, stream, remote);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(tuple_awaitable);
    } else {
      log::debug("http: TLS handshake from {} failed: {}", remote, ec.message());
    }
    impl->closers.erase(id);
  } else {
    beast::tcp_stream stream(std::move(sock));
    impl->closers[id] = [&stream] { stream.socket().close(); };
    co_await serve_requests(impl, stream, remote);
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    impl->closers.erase(id);
  }
}

Task<void> accept_loop(std::shared_ptr<Server::Impl> impl) {
  for (;;) {
    auto [ec, sock] = co_await impl->acceptor.async_accept(tuple_awaitable);
    if (ec) {
      if (impl->stopping || ec == asio::error::operation_aborted) co_return;
      log::warn("http: accept failed: {}", ec.message());
      asio::steady_timer t(impl->io, std::chrono::milliseconds(50));
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    if (impl->closers.size() >= impl->opts.max_connections) {
      boost::system::error_code ig;
      sock.close(ig);
      continue;
    }
    sock.set_option(tcp::no_delay(true));
    spawn(impl->io.get_executor(), run_connection(impl, std::move(sock)), "http connection");
  }
}

}  // namespace

Server::Server(asio::io_context& io, ServerOptions opts, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(opts), std::move(handler))) {}

Server::~Server() {
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
}

Result<void> Server::listen() {
  auto& o = impl_->opts;
  std::string where = o.host + ":" + std::to_string(o.port);
  try {
    if (o.cert_file || o.key_file) {
      if (!o.cert_file || !o.key_file) return Error(Errc::bad_request, "TLS needs both cert and key");
      impl_->tls.emplace(ssl::context::tls_server);
      impl_->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                              ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      impl_->tls->use_certificate_chain_file(*o.cert_file);
      impl_->tls->use_private_key_file(*o.key_file, ssl::context::pem);
    }
    tcp::resolver resolver(impl_->io);
    auto results = resolver.resolve(o.host, std::to_string(o.port), tcp::resolver::passive);
    if (results.empty()) return Error(Errc::bad_request, "cannot resolve " + where);
    tcp::endpoint ep = results.begin()->endpoint();
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    return Error(Errc::internal, "listen on " + where + ": " + e.code().message());
  }
  return {};
}

std::uint16_t Server::port() const {
  boost::system::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Server::start() { spawn(impl_->io.get_executor(), accept_loop(impl_), "http accept"); }

Task<void> Server::shutdown(std::chrono::milliseconds grace) {
  auto impl = impl_;
  impl->stopping = true;
  boost::system::error_code ec;
  impl->acceptor.close(ec);
  auto deadline = std::chrono::steady_clock::now() + grace;
  asio::steady_timer t(impl->io);
  while (impl->busy > 0 && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(tuple_awaitable);
  }
  auto closers = impl->closers;
  for (auto& [id, close] : closers) close();
  co_return;
}

}  // namespace koukan::http
