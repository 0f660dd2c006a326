// HTTP/1.1 server on Beast. One coroutine per connection owns its stream;
// a deadline before every read and write; expected errors are values
// (as_tuple). The request body is streamed to the handler through a
// BodyReader over a buffer_body parser, so nothing buffers a large PUT.
#include "common/http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <cctype>
#include <limits>
#include <map>

#include "common/base/log.hpp"
#include "common/http/error.hpp"

namespace koukan::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using boost::system::error_code;
constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

namespace {
// Unread body left by a handler that we read and discard to keep the
// connection; beyond it we close instead.
constexpr std::uint64_t kDrainLimit = 64 * 1024;
// Largest piece one BodyReader::read_some hands out.
constexpr std::size_t kMaxPiece = 1 << 20;
// Lingering close: after our FIN, discard what the peer still sends for a
// short while so that unread input does not turn into an RST that destroys
// the response before the peer reads it.
constexpr auto kLingerTime = std::chrono::milliseconds(500);
constexpr std::size_t kLingerBytes = 1 << 20;
constexpr auto kTlsShutdownTime = std::chrono::milliseconds(1000);
}  // namespace

struct Server::Impl {
  struct Conn {
    std::function<void()> close;  // hard-closes the socket; set by the connection
    bool busy = false;            // between request header and response written
  };

  asio::io_context& io;
  ServerOptions opts;
  Handler handler;
  tcp::acceptor acceptor;
  std::optional<ssl::context> tls;
  asio::steady_timer wake;  // shutdown() waits on it; connections cancel it
  bool stopping = false;
  std::uint64_t next_id = 0;
  std::size_t busy = 0;
  std::map<std::uint64_t, Conn> conns;

  Impl(asio::io_context& io_, ServerOptions o, Handler h)
      : io(io_), opts(std::move(o)), handler(std::move(h)), acceptor(io_), wake(io_) {}

  void notify() {
    if (stopping) wake.cancel();
  }
  void set_busy(std::uint64_t id, bool b) {
    auto it = conns.find(id);
    if (it == conns.end() || it->second.busy == b) return;
    it->second.busy = b;
    if (b) {
      ++busy;
    } else {
      --busy;
      notify();
    }
  }
  void forget(std::uint64_t id) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    if (it->second.busy) --busy;
    conns.erase(it);
  }
  void close_all(bool idle_only) {
    // Copy: closing may not re-enter, but keep iteration independent anyway.
    std::vector<std::function<void()>> todo;
    for (auto& [id, c] : conns)
      if (c.close && (!idle_only || !c.busy)) todo.push_back(c.close);
    for (auto& f : todo) f();
  }
};

namespace {

// Erases the connection record however the connection coroutine ends.
struct ConnGuard {
  std::shared_ptr<Server::Impl> impl;
  std::uint64_t id;
  ~ConnGuard() { impl->forget(id); }
};

Response json_error(int status, std::string_view msg) {
  return Response::json(status, "{\"error\":" + json_quote(msg) + "}");
}

// Error while reading the body, as the handler sees it.
Error body_error(const error_code& ec) {
  if (ec == bhttp::error::body_limit) return Error(Errc::payload_too_large, "request body too large");
  if (ec == beast::error::timeout) return Error(Errc::timeout, "timed out reading the request body");
  if (ec == bhttp::error::partial_message || ec == bhttp::error::end_of_stream || ec == asio::error::eof)
    return Error(Errc::internal, "connection closed in the request body");
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category())
    return Error(Errc::bad_request, "malformed request body: " + ec.message());
  return Error(Errc::internal, "reading the request body: " + ec.message());
}

// Status to answer for an error reading the request header; 0: just close
// (peer gone, timed out: the stream already closed the socket).
int header_error_status(const error_code& ec) {
  if (ec == bhttp::error::header_limit) return 431;
  if (ec == bhttp::error::body_limit) return 413;
  if (ec == bhttp::error::end_of_stream || ec == bhttp::error::partial_message) return 0;
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category()) return 400;
  return 0;
}

bool valid_header_name(std::string_view n) {
  if (n.empty()) return false;
  for (unsigned char c : n)
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  return true;
}

bool valid_header_value(std::string_view v) {
  return v.find_first_of("\r\n", 0) == std::string_view::npos && v.find('\0') == std::string_view::npos;
}

using BeastResponse = bhttp::response<bhttp::string_body>;

// Not a template: builds the wire response once for both stream types.
// Header names go out lower-case (rest-api.md §2.1), including ours.
// A response to HEAD keeps its content-length but sends no body.
void build_response(BeastResponse& res, Response resp, bool keep_alive, unsigned request_version, bool head) {
  if (resp.status < 200 || resp.status > 599) {
    log::error("http: handler returned invalid status {}", resp.status);
    resp = json_error(500, "internal error");
  }
  res.version(11);
  res.result(static_cast<unsigned>(resp.status));
  std::string name;
  for (const auto& h : resp.headers.all()) {
    if (iequals(h.name, "content-length") || iequals(h.name, "transfer-encoding") ||
        iequals(h.name, "connection"))
      continue;
    if (!valid_header_name(h.name) || !valid_header_value(h.value)) {
      log::warn("http: dropping invalid response header '{}'", h.name);
      continue;
    }
    name = h.name;
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    res.insert(name, h.value);
  }
  if (resp.status != 204 && resp.status != 304) {
    res.set("content-length", std::to_string(resp.body.size()));
    if (!head) res.body() = std::move(resp.body);
  }
  if (!keep_alive)
    res.set("connection", "close");
  else if (request_version < 11)
    res.set("connection", "keep-alive");
}

template <class Stream>
Task<bool> write_response(Stream& stream, const ServerOptions& opts, Response resp, bool keep_alive,
                          unsigned request_version = 11, bool head = false) {
  BeastResponse res;
  build_response(res, std::move(resp), keep_alive, request_version, head);
  beast::get_lowest_layer(stream).expires_after(opts.write_timeout);
  auto [ec, n] = co_await bhttp::async_write(stream, res, tuple_awaitable);
  co_return !ec;
}

using Parser = bhttp::request_parser<bhttp::buffer_body>;

// Streams the body of the request being parsed.
template <class Stream>
class ParserBodyReader final : public BodyReader {
 public:
  ParserBodyReader(Stream& s, beast::flat_buffer& b, Parser& p, const ServerOptions& o, bool expect_continue)
      : stream_(s), buf_(b), parser_(p), opts_(o), need_continue_(expect_continue) {}

  Task<Result<void>> read_some(std::string& out, std::size_t max) override {
    out.clear();
    if (err_) co_return *err_;
    max = std::clamp<std::size_t>(max, 1, kMaxPiece);
    // out.resize(max) below zero-fills max octets (and page-faults a fresh
    // 1 MiB allocation): never size it beyond what the body has left.
    if (auto rem = parser_.content_length_remaining(); rem && *rem > 0 && *rem < max)
      max = static_cast<std::size_t>(*rem);
    while (out.empty() && !parser_.is_done()) {
      if (need_continue_) {
        need_continue_ = false;
        static constexpr std::string_view k100 = "HTTP/1.1 100 Continue\r\n\r\n";
        auto cbuf = asio::buffer(k100.data(), k100.size());
        beast::get_lowest_layer(stream_).expires_after(opts_.write_timeout);
        auto [wec, wn] = co_await asio::async_write(stream_, cbuf, tuple_awaitable);
        if (wec) co_return fail(Error(Errc::internal, "writing 100 Continue: " + wec.message()));
      }
      out.resize(max);
      auto& body = parser_.get().body();
      body.data = out.data();
      body.size = max;
      body.more = true;
      beast::get_lowest_layer(stream_).expires_after(opts_.body_read_timeout);
      auto [ec, n] = co_await bhttp::async_read_some(stream_, buf_, parser_, tuple_awaitable);
      out.resize(max - parser_.get().body().size);
      parser_.get().body().data = nullptr;
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) {
        out.clear();
        co_return fail(body_error(ec));
      }
      total_ += out.size();
    }
    co_return Result<void>();
  }

  bool failed() const { return err_.has_value(); }
  bool continue_pending() const { return need_continue_; }
  std::uint64_t total() const { return total_; }

 private:
  Error fail(Error e) {
    err_ = e;
    return e;
  }

  Stream& stream_;
  beast::flat_buffer& buf_;
  Parser& parser_;
  const ServerOptions& opts_;
  bool need_continue_;
  std::optional<Error> err_;
  std::uint64_t total_ = 0;
};

// How a connection's request loop ended.
enum class End {
  gone,    // peer closed, error or timeout: just close
  close,   // we close cleanly; all input consumed
  linger,  // we close with input possibly unread
};

void fill_request(Request& req, Parser& parser, const std::string& remote) {
  auto& msg = parser.get();
  req.method = std::string(msg.method_string());
  req.target = std::string(msg.target());
  auto q = req.target.find('?');
  req.path = req.target.substr(0, q);
  if (q != std::string::npos) req.query = req.target.substr(q + 1);
  for (const auto& f : msg) req.headers.add(std::string(f.name_string()), std::string(f.value()));
  if (auto cl = parser.content_length()) req.content_length = *cl;
  req.chunked = parser.chunked();
  req.remote_addr = remote;
}

template <class Stream>
Task<End> serve_requests(std::shared_ptr<Server::Impl> impl, Stream& stream, std::uint64_t id, std::string remote) {
  const ServerOptions& opts = impl->opts;
  beast::flat_buffer buf;
  bool first = true;
  for (;;) {
    if (impl->stopping) co_return End::close;
    Parser parser;
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(opts.header_limit, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(opts.body_limit);
    beast::get_lowest_layer(stream).expires_after(first ? opts.read_header_timeout : opts.idle_timeout);
    first = false;
    auto [ec, n] = co_await bhttp::async_read_header(stream, buf, parser, tuple_awaitable);
    if (ec) {
      int status = header_error_status(ec);
      if (status == 0) co_return End::gone;
      log::debug("http: bad request from {}: {}", remote, ec.message());
      std::string msg = status == 431   ? "request header too large"
                        : status == 413 ? "request body too large"
                                        : "malformed request: " + ec.message();
      Response r = json_error(status, msg);
      bool ok = co_await write_response(stream, opts, std::move(r), false);
      co_return ok ? End::linger : End::gone;
    }
    if (parser.get().count(bhttp::field::transfer_encoding) != 0 && !parser.chunked()) {
      // RFC 9112 §6.3: without chunked as the final coding the body length
      // is unknowable; Beast would read no body and parse the rest as the
      // next request (smuggling). Refuse and close.
      Response r = json_error(400, "unsupported transfer-encoding");
      bool ok = co_await write_response(stream, opts, std::move(r), false);
      co_return ok ? End::linger : End::gone;
    }
    impl->set_busy(id, true);

    Request req;
    fill_request(req, parser, remote);
    bool expect_continue = false;
    // RFC 9110 §10.1.1: an HTTP/1.0 request's 100-continue is ignored.
    if (auto e = req.headers.get("expect"); e && parser.get().version() >= 11)
      expect_continue = iequals(*e, "100-continue");
    ParserBodyReader<Stream> reader(stream, buf, parser, opts, expect_continue && !parser.is_done());
    req.body = &reader;

    Response resp;
    try {
      resp = co_await impl->handler(req);
    } catch (const std::exception& e) {
      log::error("http: handler for {} {} threw: {}", req.method, req.path, e.what());
      resp = json_error(500, "internal error");
    } catch (...) {
      log::error("http: handler for {} {} threw a non-exception", req.method, req.path);
      resp = json_error(500, "internal error");
    }

    bool keep = parser.keep_alive() && !impl->stopping && !reader.failed();
    if (auto c = resp.headers.get("connection"); c && iequals(*c, "close")) keep = false;
    if (keep && !parser.is_done()) {
      // The handler left body unread. A client waiting for 100 Continue
      // never sends it; otherwise drain a small remainder to keep the
      // connection.
      if (reader.continue_pending()) {
        keep = false;
      } else if (req.content_length && *req.content_length > reader.total() + kDrainLimit) {
        keep = false;
      } else {
        std::string sink;
        std::uint64_t drained = 0;
        while (!parser.is_done() && drained <= kDrainLimit) {
          auto r = co_await reader.read_some(sink, 16 * 1024);
          if (!r.ok()) break;
          drained += sink.size();
        }
        if (!parser.is_done()) keep = false;
      }
    }
    const unsigned version = parser.get().version();
    const bool head = req.method == "HEAD";
    bool ok = co_await write_response(stream, opts, std::move(resp), keep, version, head);
    impl->set_busy(id, false);
    if (!ok) co_return End::gone;
    if (!keep) co_return (parser.is_done() && buf.size() == 0) ? End::close : End::linger;
  }
}

Task<void> linger_close(beast::tcp_stream& stream) {
  error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  std::string sink(16 * 1024, '\0');
  std::size_t total = 0;
  stream.expires_after(kLingerTime);
  while (total < kLingerBytes) {
    auto b = asio::buffer(sink);
    auto [rec, n] = co_await stream.async_read_some(b, tuple_awaitable);
    if (rec) break;
    total += n;
  }
}

Task<void> run_connection(std::shared_ptr<Server::Impl> impl, tcp::socket sock, std::uint64_t id) {
  ConnGuard guard{impl, id};
  if (impl->stopping) {
    impl->forget(id);
    impl->notify();
    co_return;
  }
  std::string remote;
  {
    error_code ec;
    auto ep = sock.remote_endpoint(ec);
    if (!ec) remote = ep.address().to_string() + ":" + std::to_string(ep.port());
  }
  if (impl->tls) {
    beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(sock)), *impl->tls);
    impl->conns[id].close = [&stream] { beast::get_lowest_layer(stream).close(); };
    beast::get_lowest_layer(stream).expires_after(impl->opts.read_header_timeout);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, tuple_awaitable);
    if (ec) {
      log::debug("http: TLS handshake from {} failed: {}", remote, ec.message());
    } else {
      End end = co_await serve_requests(impl, stream, id, remote);
      if (end != End::gone) {
        beast::get_lowest_layer(stream).expires_after(kTlsShutdownTime);
        auto [sec] = co_await stream.async_shutdown(tuple_awaitable);
        (void)sec;
      }
    }
    impl->conns[id].close = nullptr;
  } else {
    beast::tcp_stream stream(std::move(sock));
    impl->conns[id].close = [&stream] { stream.close(); };
    End end = co_await serve_requests(impl, stream, id, remote);
    if (end == End::linger) {
      co_await linger_close(stream);
    } else if (end == End::close) {
      error_code ec;
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    }
    impl->conns[id].close = nullptr;
  }
  impl->forget(id);
  impl->notify();
}

Task<void> accept_loop(std::shared_ptr<Server::Impl> impl) {
  for (;;) {
    auto [ec, sock] = co_await impl->acceptor.async_accept(tuple_awaitable);
    if (impl->stopping) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor) co_return;
      log::warn("http: accept failed: {}", ec.message());
      asio::steady_timer t(impl->io, std::chrono::milliseconds(50));  // e.g. EMFILE: back off
      co_await t.async_wait(tuple_awaitable);
      continue;
    }
    if (impl->conns.size() >= impl->opts.max_connections) {
      log::warn("http: connection limit ({}) reached, closing new connection", impl->opts.max_connections);
      error_code ig;
      sock.close(ig);
      continue;
    }
    error_code ig;
    sock.set_option(tcp::no_delay(true), ig);
    const std::uint64_t id = impl->next_id++;
    impl->conns[id] = {};
    spawn(impl->io.get_executor(), run_connection(impl, std::move(sock), id), "http connection");
  }
}

}  // namespace

Server::Server(asio::io_context& io, ServerOptions opts, Handler handler)
    : impl_(std::make_shared<Impl>(io, std::move(opts), std::move(handler))) {}

Server::~Server() {
  // Without a prior shutdown(): stop hard. Connection coroutines unwind on
  // the io_context (they hold the Impl).
  impl_->stopping = true;
  error_code ec;
  impl_->acceptor.close(ec);
  impl_->close_all(false);
}

Result<void> Server::listen() {
  auto& o = impl_->opts;
  std::string where = o.host + ":" + std::to_string(o.port);
  if (o.cert_file.has_value() != o.key_file.has_value())
    return Error(Errc::bad_request, "TLS for " + where + " needs both a certificate and a key file");
  if (o.cert_file) {
    try {
      impl_->tls.emplace(ssl::context::tls_server);
      impl_->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                              ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 |
                              ssl::context::single_dh_use);
      impl_->tls->use_certificate_chain_file(*o.cert_file);
      impl_->tls->use_private_key_file(*o.key_file, ssl::context::pem);
    } catch (const boost::system::system_error& e) {
      impl_->tls.reset();
      return Error(Errc::bad_request, "TLS certificate " + *o.cert_file + " / key " + *o.key_file + ": " +
                                          e.code().message());
    }
  }
  try {
    tcp::endpoint ep;
    if (o.host.empty()) {
      ep = tcp::endpoint(tcp::v4(), o.port);
    } else {
      tcp::resolver resolver(impl_->io);
      auto results = resolver.resolve(o.host, std::to_string(o.port),
                                      tcp::resolver::passive | tcp::resolver::numeric_service);
      if (results.empty()) return Error(Errc::bad_request, "cannot resolve " + where);
      ep = results.begin()->endpoint();
    }
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const boost::system::system_error& e) {
    error_code ig;
    impl_->acceptor.close(ig);
    return Error(Errc::internal, "listen on " + where + ": " + e.code().message());
  }
  return {};
}

std::uint16_t Server::port() const {
  error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ec ? 0 : ep.port();
}

void Server::start() { spawn(impl_->io.get_executor(), accept_loop(impl_), "http accept"); }

Task<void> Server::shutdown(std::chrono::milliseconds grace) {
  auto impl = impl_;
  impl->stopping = true;
  error_code ec;
  impl->acceptor.close(ec);
  // Idle keep-alive connections go now; busy ones finish their request
  // (and then close, since we are stopping) within the grace period.
  impl->close_all(true);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  while (impl->busy > 0 && std::chrono::steady_clock::now() < deadline) {
    impl->wake.expires_at(deadline);
    auto [wec] = co_await impl->wake.async_wait(tuple_awaitable);
    (void)wec;
  }
  if (impl->busy > 0) log::warn("http: shutdown grace expired with {} request(s) in flight", impl->busy);
  impl->close_all(false);
  // Let the connection coroutines unwind (closing makes their I/O fail
  // now); one still inside its handler finishes when the handler does.
  const auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (impl->conns.size() > impl->busy && std::chrono::steady_clock::now() < hard) {
    impl->wake.expires_at(hard);
    auto [wec] = co_await impl->wake.async_wait(tuple_awaitable);
    (void)wec;
  }
}

}  // namespace koukan::http
