// ByteStream over TCP with optional TLS (tcp_stream.hpp), and connect_tcp()
// (client.hpp). The only SMTP file that includes <boost/asio/ssl.hpp>.
//
// Deadlines: every read/write/handshake/connect arms one steady_timer; when
// it fires first it cancels the socket, the operation completes with
// operation_aborted and we report Errc::timeout and close the stream. The
// timer handler holds only a weak_ptr to the stream's core and a
// generation number, so a late handler neither touches a destroyed stream
// nor cancels a later operation.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <fstream>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "common/smtp/client.hpp"
#include "common/smtp/tcp_stream.hpp"

namespace koukan::smtp {

namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;
using boost::system::error_code;

namespace {
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

std::string ssl_error_text(const error_code& ec) {
  std::string s = ec.message();
  if (ec.category() == asio::error::get_ssl_category()) {
    // The reason string is often more telling than the generic message.
    const char* r = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    if (r && s.find(r) == std::string::npos) s += std::string(" (") + r + ")";
  }
  return s;
}

bool readable(const std::string& path) {
  std::ifstream f(path);
  return f.good();
}

void harden(ssl::context& ctx) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                  ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
}

std::optional<HostPort> to_hostport(const tcp::endpoint& ep) {
  return HostPort{ep.address().to_string(), ep.port()};
}
}  // namespace

struct TlsContext::Impl {
  explicit Impl(ssl::context::method m) : ctx(m) {}
  ssl::context ctx;
  bool verify = false;
};

TlsContext::~TlsContext() = default;

Result<std::shared_ptr<TlsContext>> TlsContext::server(const std::string& cert_file,
                                                       const std::string& key_file) {
  auto c = std::make_shared<TlsContext>();
  c->impl = std::make_unique<Impl>(ssl::context::tls_server);
  harden(c->impl->ctx);
  if (!readable(cert_file)) return Error(Errc::bad_request, "cannot read TLS certificate file " + cert_file);
  if (!readable(key_file)) return Error(Errc::bad_request, "cannot read TLS key file " + key_file);
  error_code ec;
  c->impl->ctx.use_certificate_chain_file(cert_file, ec);
  if (ec)
    return Error(Errc::bad_request,
                 "invalid TLS certificate file " + cert_file + ": " + ssl_error_text(ec));
  c->impl->ctx.use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) return Error(Errc::bad_request, "invalid TLS key file " + key_file + ": " + ssl_error_text(ec));
  if (SSL_CTX_check_private_key(c->impl->ctx.native_handle()) != 1)
    return Error(Errc::bad_request,
                 "TLS key file " + key_file + " does not match certificate file " + cert_file);
  return c;
}

std::shared_ptr<TlsContext> TlsContext::client(bool verify) {
  // Two process-wide client contexts (loading the CA store is not free).
  auto make = [](bool v) {
    auto c = std::make_shared<TlsContext>();
    c->impl = std::make_unique<Impl>(ssl::context::tls_client);
    harden(c->impl->ctx);
    c->impl->verify = v;
    error_code ec;
    if (v) {
      c->impl->ctx.set_default_verify_paths(ec);
      if (ec) log::warn("TLS client: cannot load the system CA store: {}", ec.message());
      c->impl->ctx.set_verify_mode(ssl::verify_peer, ec);
    } else {
      c->impl->ctx.set_verify_mode(ssl::verify_none, ec);
    }
    return c;
  };
  static const std::shared_ptr<TlsContext> verified = make(true);
  static const std::shared_ptr<TlsContext> unverified = make(false);
  return verify ? verified : unverified;
}

namespace {

// Everything the deadline timer may touch; owned by TcpStream, observed by
// the timer handler through a weak_ptr.
struct Core {
  Core(tcp::socket s, std::shared_ptr<TlsContext> c)
      : sock(std::move(s)), timer(sock.get_executor()), ctx(std::move(c)) {}
  tcp::socket sock;                                // plain, until start_tls
  std::optional<ssl::stream<tcp::socket>> tls;     // owns the socket after start_tls
  asio::steady_timer timer;
  std::shared_ptr<TlsContext> ctx;
  std::uint64_t gen = 0;  // bumped by every arm/disarm
  bool expired = false;
  bool closed = false;

  tcp::socket& socket() { return tls ? tls->next_layer() : sock; }
};

class TcpStream final : public ByteStream {
 public:
  TcpStream(tcp::socket s, std::shared_ptr<TlsContext> ctx, bool server, bool implicit_tls,
            std::string server_name)
      : core_(std::make_shared<Core>(std::move(s), std::move(ctx))),
        server_(server),
        implicit_(implicit_tls),
        server_name_(std::move(server_name)) {
    error_code ec;
    core_->sock.set_option(tcp::no_delay(true), ec);  // small SMTP writes
    auto r = core_->sock.remote_endpoint(ec);
    if (!ec) remote_ = to_hostport(r);
    auto l = core_->sock.local_endpoint(ec);
    if (!ec) local_ = to_hostport(l);
    if (implicit_ && !core_->ctx) {
      implicit_ = false;
      pending_error_ = Error(Errc::unavailable, "implicit TLS without a TLS context");
    }
  }
  ~TcpStream() override { close(); }

  Task<Result<std::size_t>> read_some(std::span<char> buf) override {
    if (auto e = co_await ready(); !e.ok()) co_return e.error();
    if (buf.empty()) co_return std::size_t{0};
    arm();
    error_code ec;
    std::size_t n = 0;
    auto b = asio::buffer(buf.data(), buf.size());
    if (core_->tls) {
      auto [e, k] = co_await core_->tls->async_read_some(b, kTuple);
      ec = e;
      n = k;
    } else {
      auto [e, k] = co_await core_->sock.async_read_some(b, kTuple);
      ec = e;
      n = k;
    }
    bool timed_out = disarm();
    if (!ec) co_return n;
    if (ec == asio::error::eof || ec == ssl::error::stream_truncated) co_return std::size_t{0};
    // A read deadline leaves the connection open for one last write (the
    // server's "421 ... timeout"); the caller closes afterwards.
    if (timed_out) co_return Error(Errc::timeout, "read timed out");
    co_return fail(ec, timed_out, "read");
  }

  Task<Result<void>> write_all(std::string_view data) override {
    if (auto e = co_await ready(); !e.ok()) co_return e.error();
    if (data.empty()) co_return Result<void>();
    arm();
    error_code ec;
    auto b = asio::buffer(data.data(), data.size());
    if (core_->tls) {
      auto [e, k] = co_await asio::async_write(*core_->tls, b, kTuple);
      ec = e;
    } else {
      auto [e, k] = co_await asio::async_write(core_->sock, b, kTuple);
      ec = e;
    }
    bool timed_out = disarm();
    if (!ec) co_return Result<void>();
    co_return fail(ec, timed_out, "write");
  }

  Task<Result<void>> start_tls() override {
    if (core_->closed) co_return Error(Errc::unavailable, "connection closed");
    if (!core_->ctx) co_return Error(Errc::unavailable, "no TLS context for this connection");
    if (core_->tls || implicit_) co_return Error(Errc::conflict, "TLS already active");
    co_return co_await handshake();
  }

  bool tls_available() const override {
    return core_->ctx && !core_->tls && !implicit_ && !core_->closed;
  }
  bool is_tls() const override { return core_->tls.has_value() || implicit_; }
  void set_timeout(std::chrono::milliseconds t) override { timeout_ = t; }

  void close() override {
    if (core_->closed) return;
    core_->closed = true;
    error_code ec;
    core_->timer.cancel();
    core_->socket().shutdown(tcp::socket::shutdown_both, ec);
    core_->socket().close(ec);
  }

  std::optional<HostPort> remote_endpoint() const override { return remote_; }
  std::optional<HostPort> local_endpoint() const override { return local_; }

 private:
  // Implicit TLS: the handshake before the first read or write.
  Task<Result<void>> ready() {
    if (pending_error_) co_return *pending_error_;
    if (core_->closed) co_return Error(Errc::unavailable, "connection closed");
    if (implicit_ && !core_->tls) {
      auto r = co_await handshake();
      if (!r.ok()) {
        pending_error_ = r.error();
        co_return r;
      }
    }
    co_return Result<void>();
  }

  Task<Result<void>> handshake() {
    core_->tls.emplace(std::move(core_->sock), core_->ctx->impl->ctx);
    auto type = server_ ? ssl::stream_base::server : ssl::stream_base::client;
    if (!server_) {
      SSL* h = core_->tls->native_handle();
      error_code ec;
      (void)asio::ip::make_address(server_name_, ec);
      bool is_name = !server_name_.empty() && ec;
      if (is_name) SSL_set_tlsext_host_name(h, server_name_.c_str());  // SNI: names only
      if (core_->ctx->impl->verify && !server_name_.empty()) {
        X509_VERIFY_PARAM* p = SSL_get0_param(h);
        if (is_name) {
          X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
          X509_VERIFY_PARAM_set1_host(p, server_name_.c_str(), 0);
        } else {
          X509_VERIFY_PARAM_set1_ip_asc(p, server_name_.c_str());
        }
      }
    }
    arm();
    auto [ec] = co_await core_->tls->async_handshake(type, kTuple);
    bool timed_out = disarm();
    if (!ec) co_return Result<void>();
    std::string what = "TLS handshake";
    if (!server_ && core_->ctx->impl->verify) {
      long vr = SSL_get_verify_result(core_->tls->native_handle());
      if (vr != X509_V_OK)
        what += std::string(" (certificate: ") + X509_verify_cert_error_string(vr) + ")";
    }
    co_return fail(ec, timed_out, what.c_str());
  }

  void arm() {
    core_->expired = false;
    ++core_->gen;
    if (timeout_.count() <= 0) return;
    core_->timer.expires_after(timeout_);
    std::weak_ptr<Core> w = core_;
    core_->timer.async_wait([w, g = core_->gen](error_code ec) {
      if (ec) return;
      auto c = w.lock();
      if (!c || c->gen != g || c->closed) return;
      c->expired = true;
      error_code ignored;
      c->socket().cancel(ignored);
    });
  }
  // Returns whether the deadline expired during the operation.
  bool disarm() {
    ++core_->gen;
    if (timeout_.count() > 0) core_->timer.cancel();
    return core_->expired;
  }

  Error fail(const error_code& ec, bool timed_out, const char* what) {
    close();
    if (timed_out) return Error(Errc::timeout, std::string(what) + " timed out");
    if (ec == asio::error::operation_aborted) return Error(Errc::unavailable, std::string(what) + ": connection closed");
    bool tls_err = ec.category() == asio::error::get_ssl_category();
    return Error(tls_err ? Errc::internal : Errc::unavailable, std::string(what) + ": " + ssl_error_text(ec));
  }

  std::shared_ptr<Core> core_;
  bool server_;
  bool implicit_;
  std::string server_name_;
  std::chrono::milliseconds timeout_{0};
  std::optional<Error> pending_error_;
  std::optional<HostPort> remote_, local_;
};

}  // namespace

std::unique_ptr<ByteStream> make_tcp_stream(tcp::socket socket, std::shared_ptr<TlsContext> tls,
                                            bool server, bool implicit_tls) {
  return std::make_unique<TcpStream>(std::move(socket), std::move(tls), server, implicit_tls,
                                     std::string());
}

std::unique_ptr<ByteStream> make_tcp_client_stream(tcp::socket socket, std::shared_ptr<TlsContext> tls,
                                                   std::string server_name) {
  return std::make_unique<TcpStream>(std::move(socket), std::move(tls), false, false,
                                     std::move(server_name));
}

Task<Result<std::unique_ptr<ByteStream>>> connect_tcp(asio::any_io_executor ex, const HostPort& to,
                                                      ConnectOptions opts) {
  error_code ec;
  auto addr = asio::ip::make_address(to.host, ec);
  if (ec) co_return Error(Errc::bad_request, "not a valid IP address: " + to.host);
  if (to.port <= 0 || to.port > 65535)
    co_return Error(Errc::bad_request, "invalid port " + std::to_string(to.port));
  tcp::endpoint ep(addr, static_cast<unsigned short>(to.port));
  std::string where = (addr.is_v6() ? "[" + to.host + "]" : to.host) + ":" + std::to_string(to.port);

  // The socket lives in a shared block so the timer handler can cancel it
  // safely even if it fires late.
  struct Conn {
    explicit Conn(const asio::any_io_executor& e) : sock(e), timer(e) {}
    tcp::socket sock;
    asio::steady_timer timer;
    bool expired = false;
    bool done = false;
  };
  auto c = std::make_shared<Conn>(ex);
  if (opts.timeout.count() > 0) {
    c->timer.expires_after(opts.timeout);
    std::weak_ptr<Conn> w = c;
    c->timer.async_wait([w](error_code e) {
      auto cc = w.lock();
      if (e || !cc || cc->done) return;
      cc->expired = true;
      error_code ignored;
      cc->sock.close(ignored);
    });
  }
  auto [cec] = co_await c->sock.async_connect(ep, kTuple);
  c->done = true;
  c->timer.cancel();
  if (c->expired) co_return Error(Errc::timeout, "connect to " + where + ": timed out");
  if (cec) co_return Error(Errc::unavailable, "connect to " + where + ": " + cec.message());
  auto stream = make_tcp_client_stream(std::move(c->sock), TlsContext::client(opts.verify_tls), to.host);
  co_return Result<std::unique_ptr<ByteStream>>(std::move(stream));
}

}  // namespace koukan::smtp
