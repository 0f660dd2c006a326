// TcpStream and connect_tcp over real loopback sockets (127.0.0.1, port 0):
// plain I/O, STARTTLS in both roles, implicit TLS, deadlines, EOF,
// connect errors, TLS context errors.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fstream>

#include "common/smtp/client.hpp"
#include "common/smtp/tcp_stream.hpp"
#include "test/common/smtp/tcp_test_util.hpp"

namespace koukan::smtp {
namespace {

using namespace std::chrono_literals;
using boost::asio::ip::tcp;
using testing::run_io;
using testing::test_cert;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Reads exactly n bytes (less on EOF/error).
Task<std::string> read_n(ByteStream& s, std::size_t n) {
  std::string out;
  char b[256];
  while (out.size() < n) {
    std::span<char> sp(b, std::min(sizeof b, n - out.size()));
    auto r = co_await s.read_some(sp);
    if (!r.ok() || *r == 0) break;
    out.append(b, *r);
  }
  co_return out;
}

struct Listener {
  explicit Listener(asio::io_context& ioc) : acc(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
  tcp::acceptor acc;
  int port() const { return acc.local_endpoint().port(); }
  HostPort where() const { return HostPort{"127.0.0.1", port()}; }
};

Task<tcp::socket> accept_one(tcp::acceptor& acc) {
  auto [ec, sock] = co_await acc.async_accept(kTuple);
  EXPECT_FALSE(ec) << ec.message();
  co_return std::move(sock);
}

std::shared_ptr<TlsContext> server_ctx() {
  const auto& c = test_cert();
  EXPECT_TRUE(c.ok) << "openssl CLI failed to make a test certificate";
  auto r = TlsContext::server(c.cert, c.key);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? *r : nullptr;
}

// ---- plain --------------------------------------------------------------------

struct PlainLog {
  std::string server_got, client_got;
  std::size_t server_eof = 99;
  std::optional<HostPort> c_remote, c_local, s_remote;
  bool done = false;
};

Task<void> plain_server(tcp::acceptor& acc, PlainLog* log) {
  tcp::socket sock = co_await accept_one(acc);
  auto s = make_tcp_stream(std::move(sock), nullptr, true);
  s->set_timeout(5s);
  log->s_remote = s->remote_endpoint();
  EXPECT_FALSE(s->tls_available());
  log->server_got = co_await read_n(*s, 5);
  std::string w = "world";
  auto wr = co_await s->write_all(w);
  EXPECT_TRUE(wr.ok());
  char b[8];
  std::span<char> sp(b);
  auto r = co_await s->read_some(sp);
  log->server_eof = r.ok() ? *r : 77;
}

Task<void> plain_client(HostPort to, PlainLog* log) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await connect_tcp(ex, to);
  if (!c.ok()) {
    ADD_FAILURE() << c.error().message;
    co_return;
  }
  auto& s = **c;
  s.set_timeout(5s);
  EXPECT_FALSE(s.is_tls());
  EXPECT_TRUE(s.tls_available());  // client contexts always exist
  std::string hello = "hello";
  auto w = co_await s.write_all(hello);
  EXPECT_TRUE(w.ok());
  log->client_got = co_await read_n(s, 5);
  log->c_remote = s.remote_endpoint();
  log->c_local = s.local_endpoint();
  s.close();
  s.close();  // idempotent
  log->done = true;
}

TEST(TcpStream, PlainRoundTripEndpointsAndEof) {
  asio::io_context ioc;
  Listener l(ioc);
  PlainLog log;
  spawn(ioc.get_executor(), plain_server(l.acc, &log), "server");
  spawn(ioc.get_executor(), plain_client(l.where(), &log), "client");
  run_io(ioc);
  ASSERT_TRUE(log.done);
  EXPECT_EQ(log.server_got, "hello");
  EXPECT_EQ(log.client_got, "world");
  EXPECT_EQ(log.server_eof, 0u);  // the client closed: EOF
  ASSERT_TRUE(log.c_remote);
  EXPECT_EQ(*log.c_remote, l.where());
  ASSERT_TRUE(log.c_local && log.s_remote);
  EXPECT_EQ(log.c_local->host, "127.0.0.1");
  EXPECT_EQ(*log.c_local, *log.s_remote);
}

// ---- STARTTLS -------------------------------------------------------------------

struct TlsLog {
  bool s_tls_before = true, s_tls_after = false, c_tls_after = false;
  std::string s_got, c_got, c_err;
  int done = 0;
};

Task<void> starttls_server(tcp::acceptor& acc, std::shared_ptr<TlsContext> ctx, TlsLog* log) {
  tcp::socket sock = co_await accept_one(acc);
  auto s = make_tcp_stream(std::move(sock), ctx, true);
  s->set_timeout(5s);
  EXPECT_TRUE(s->tls_available());
  log->s_tls_before = s->is_tls();
  std::string cmd = co_await read_n(*s, 10);
  EXPECT_EQ(cmd, "STARTTLS\r\n");
  std::string go = "220 go\r\n";
  auto w = co_await s->write_all(go);
  EXPECT_TRUE(w.ok());
  auto t = co_await s->start_tls();
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  log->s_tls_after = s->is_tls();
  EXPECT_FALSE(s->tls_available());
  log->s_got = co_await read_n(*s, 6);
  std::string ok = "ok";
  auto w2 = co_await s->write_all(ok);
  EXPECT_TRUE(w2.ok());
  auto again = co_await s->start_tls();
  EXPECT_FALSE(again.ok());
  ++log->done;
}

Task<void> starttls_client(HostPort to, TlsLog* log) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await connect_tcp(ex, to);
  if (!c.ok()) co_return;
  auto& s = **c;
  s.set_timeout(5s);
  std::string cmd = "STARTTLS\r\n";
  auto w = co_await s.write_all(cmd);
  EXPECT_TRUE(w.ok());
  std::string reply = co_await read_n(s, 8);
  EXPECT_EQ(reply, "220 go\r\n");
  auto t = co_await s.start_tls();
  if (!t.ok()) log->c_err = t.error().message;
  log->c_tls_after = s.is_tls();
  std::string secret = "secret";
  auto w2 = co_await s.write_all(secret);
  EXPECT_TRUE(w2.ok());
  log->c_got = co_await read_n(s, 2);
  ++log->done;
}

TEST(TcpStream, StartTlsBothRoles) {
  auto ctx = server_ctx();
  ASSERT_TRUE(ctx);
  asio::io_context ioc;
  Listener l(ioc);
  TlsLog log;
  spawn(ioc.get_executor(), starttls_server(l.acc, ctx, &log), "server");
  spawn(ioc.get_executor(), starttls_client(l.where(), &log), "client");
  run_io(ioc);
  EXPECT_EQ(log.done, 2);
  EXPECT_EQ(log.c_err, "");
  EXPECT_FALSE(log.s_tls_before);
  EXPECT_TRUE(log.s_tls_after);
  EXPECT_TRUE(log.c_tls_after);
  EXPECT_EQ(log.s_got, "secret");
  EXPECT_EQ(log.c_got, "ok");
}

// ---- implicit TLS -------------------------------------------------------------

Task<void> implicit_server(tcp::acceptor& acc, std::shared_ptr<TlsContext> ctx, TlsLog* log,
                           bool expect_ok) {
  tcp::socket sock = co_await accept_one(acc);
  auto s = make_tcp_stream(std::move(sock), ctx, true, /*implicit_tls=*/true);
  s->set_timeout(5s);
  log->s_tls_before = s->is_tls();
  EXPECT_FALSE(s->tls_available());
  std::string hi = "220 hi\r\n";
  auto w = co_await s->write_all(hi);  // the handshake runs first
  EXPECT_EQ(w.ok(), expect_ok);
  if (!w.ok()) {
    log->s_got = "error: " + w.error().message;
    char b[4];
    std::span<char> sp(b);
    auto r = co_await s->read_some(sp);  // the error sticks
    EXPECT_FALSE(r.ok());
  } else {
    log->s_got = co_await read_n(*s, 1);
  }
  ++log->done;
}

Task<void> implicit_client(HostPort to, TlsLog* log, bool tls) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await connect_tcp(ex, to);
  if (!c.ok()) co_return;
  auto& s = **c;
  s.set_timeout(5s);
  if (tls) {
    auto t = co_await s.start_tls();
    if (!t.ok()) log->c_err = t.error().message;
    log->c_got = co_await read_n(s, 8);
    std::string x = "x";
    auto w = co_await s.write_all(x);
    EXPECT_TRUE(w.ok());
  } else {
    std::string junk = "EHLO plaintext\r\n";
    auto w = co_await s.write_all(junk);
    (void)w;
    log->c_got = co_await read_n(s, 8);
  }
  ++log->done;
}

TEST(TcpStream, ImplicitTlsHandshakesBeforeFirstIo) {
  auto ctx = server_ctx();
  ASSERT_TRUE(ctx);
  asio::io_context ioc;
  Listener l(ioc);
  TlsLog log;
  spawn(ioc.get_executor(), implicit_server(l.acc, ctx, &log, true), "server");
  spawn(ioc.get_executor(), implicit_client(l.where(), &log, true), "client");
  run_io(ioc);
  EXPECT_EQ(log.done, 2);
  EXPECT_TRUE(log.s_tls_before);
  EXPECT_EQ(log.c_err, "");
  EXPECT_EQ(log.c_got, "220 hi\r\n");
  EXPECT_EQ(log.s_got, "x");
}

TEST(TcpStream, ImplicitTlsPlaintextClientFails) {
  auto ctx = server_ctx();
  ASSERT_TRUE(ctx);
  asio::io_context ioc;
  Listener l(ioc);
  TlsLog log;
  spawn(ioc.get_executor(), implicit_server(l.acc, ctx, &log, false), "server");
  spawn(ioc.get_executor(), implicit_client(l.where(), &log, false), "client");
  run_io(ioc);
  EXPECT_EQ(log.done, 2);
  EXPECT_NE(log.s_got.find("TLS handshake"), std::string::npos) << log.s_got;
  EXPECT_EQ(log.c_got.find("220"), std::string::npos);  // no greeting in plaintext
}

// verify_tls against a self-signed certificate: the handshake fails and
// says why.
TEST(TcpStream, VerifyingClientRejectsSelfSigned) {
  auto ctx = server_ctx();
  ASSERT_TRUE(ctx);
  asio::io_context ioc;
  Listener l(ioc);
  std::string err;
  bool server_failed = false;
  auto server = [](tcp::acceptor& acc, std::shared_ptr<TlsContext> ctx, bool* failed) -> Task<void> {
    tcp::socket sock = co_await accept_one(acc);
    auto s = make_tcp_stream(std::move(sock), ctx, true, true);
    s->set_timeout(5s);
    std::string hi = "220 hi\r\n";
    auto w = co_await s->write_all(hi);
    *failed = !w.ok();
  };
  auto client = [](HostPort to, std::string* err) -> Task<void> {
    auto ex = co_await asio::this_coro::executor;
    ConnectOptions o;
    o.verify_tls = true;
    auto c = co_await connect_tcp(ex, to, o);
    if (!c.ok()) co_return;
    (*c)->set_timeout(5s);
    auto t = co_await (*c)->start_tls();
    *err = t.ok() ? "ok" : t.error().message;
  };
  spawn(ioc.get_executor(), server(l.acc, ctx, &server_failed), "server");
  spawn(ioc.get_executor(), client(l.where(), &err), "client");
  run_io(ioc);
  EXPECT_NE(err.find("certificate"), std::string::npos) << err;
  EXPECT_TRUE(server_failed);
}

// ---- deadlines, EOF, close ----------------------------------------------------

struct Hold {
  std::unique_ptr<ByteStream> s;
};

Task<void> hold_server(tcp::acceptor& acc, Hold* h, std::string say, bool close_after) {
  tcp::socket sock = co_await accept_one(acc);
  h->s = make_tcp_stream(std::move(sock), nullptr, true);
  if (!say.empty()) {
    auto w = co_await h->s->write_all(say);
    EXPECT_TRUE(w.ok());
  }
  if (close_after) h->s->close();
}

struct TimeoutLog {
  Errc first = Errc::internal, second = Errc::internal;
  bool first_ok = true, second_ok = true;
  std::chrono::milliseconds took{0};
  std::string got;
  std::size_t eof = 99;
  bool done = false;
};

Task<void> timeout_client(HostPort to, TimeoutLog* log, bool tls) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await connect_tcp(ex, to);
  if (!c.ok()) co_return;
  auto& s = **c;
  s.set_timeout(150ms);
  auto t0 = std::chrono::steady_clock::now();
  if (tls) {
    auto r = co_await s.start_tls();
    log->first_ok = r.ok();
    if (!r.ok()) log->first = r.error().code;
  } else {
    char b[8];
    std::span<char> sp(b);
    auto r = co_await s.read_some(sp);
    log->first_ok = r.ok();
    if (!r.ok()) log->first = r.error().code;
  }
  log->took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  if (tls) {
    char b[8];
    std::span<char> sp(b);
    auto r2 = co_await s.read_some(sp);  // closed after a handshake timeout
    log->second_ok = r2.ok();
    if (!r2.ok()) log->second = r2.error().code;
  } else {
    // After a READ timeout one last write still goes out (the server's 421).
    auto w = co_await s.write_all("421 4.4.2 timeout\r\n");
    log->second_ok = w.ok();
    if (!w.ok()) log->second = w.error().code;
    s.close();
  }
  log->done = true;
}

TEST(TcpStream, ReadTimeoutLeavesOneLastWrite) {
  asio::io_context ioc;
  Listener l(ioc);
  Hold h;
  TimeoutLog log;
  spawn(ioc.get_executor(), hold_server(l.acc, &h, "", false), "server");
  spawn(ioc.get_executor(), timeout_client(l.where(), &log, false), "client");
  run_io(ioc);
  ASSERT_TRUE(log.done);
  EXPECT_FALSE(log.first_ok);
  EXPECT_EQ(log.first, Errc::timeout);
  EXPECT_GE(log.took, 140ms);
  EXPECT_LT(log.took, 3000ms);
  EXPECT_TRUE(log.second_ok);
}

TEST(TcpStream, HandshakeTimeout) {
  asio::io_context ioc;
  Listener l(ioc);
  Hold h;
  TimeoutLog log;
  spawn(ioc.get_executor(), hold_server(l.acc, &h, "", false), "server");
  spawn(ioc.get_executor(), timeout_client(l.where(), &log, true), "client");
  run_io(ioc);
  ASSERT_TRUE(log.done);
  EXPECT_FALSE(log.first_ok);
  EXPECT_EQ(log.first, Errc::timeout);
}

TEST(TcpStream, EofAfterData) {
  asio::io_context ioc;
  Listener l(ioc);
  Hold h;
  TimeoutLog log;
  auto client = [](HostPort to, TimeoutLog* log) -> Task<void> {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await connect_tcp(ex, to);
    if (!c.ok()) co_return;
    (*c)->set_timeout(5s);
    log->got = co_await read_n(**c, 3);
    char b[8];
    std::span<char> sp(b);
    auto r = co_await (*c)->read_some(sp);
    log->eof = r.ok() ? *r : 77;
    log->done = true;
  };
  spawn(ioc.get_executor(), hold_server(l.acc, &h, "bye", true), "server");
  spawn(ioc.get_executor(), client(l.where(), &log), "client");
  run_io(ioc);
  ASSERT_TRUE(log.done);
  EXPECT_EQ(log.got, "bye");
  EXPECT_EQ(log.eof, 0u);
}

// close() from another coroutine ends a pending read at once.
TEST(TcpStream, CloseCancelsPendingRead) {
  asio::io_context ioc;
  Listener l(ioc);
  Hold h;
  TimeoutLog log;
  auto client = [](HostPort to, TimeoutLog* log, std::unique_ptr<ByteStream>* out) -> Task<void> {
    auto ex = co_await asio::this_coro::executor;
    auto c = co_await connect_tcp(ex, to);
    if (!c.ok()) co_return;
    *out = std::move(*c);
    (*out)->set_timeout(10s);
    char b[8];
    std::span<char> sp(b);
    auto t0 = std::chrono::steady_clock::now();
    auto r = co_await (*out)->read_some(sp);
    log->took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    log->first_ok = r.ok();
    if (!r.ok()) log->first = r.error().code;
    log->done = true;
  };
  auto closer = [](std::unique_ptr<ByteStream>* s) -> Task<void> {
    asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
    co_await t.async_wait(asio::use_awaitable);
    if (*s) (*s)->close();
  };
  std::unique_ptr<ByteStream> cs;
  spawn(ioc.get_executor(), hold_server(l.acc, &h, "", false), "server");
  spawn(ioc.get_executor(), client(l.where(), &log, &cs), "client");
  spawn(ioc.get_executor(), closer(&cs), "closer");
  run_io(ioc);
  ASSERT_TRUE(log.done);
  EXPECT_FALSE(log.first_ok);
  EXPECT_EQ(log.first, Errc::unavailable);
  EXPECT_LT(log.took, 5000ms);
}

// ---- connect ------------------------------------------------------------------

Task<void> connect_only(HostPort to, Result<std::unique_ptr<ByteStream>>* out) {
  auto ex = co_await asio::this_coro::executor;
  ConnectOptions o;
  o.timeout = 5s;
  *out = co_await connect_tcp(ex, to, o);
}

TEST(TcpStream, ConnectRefused) {
  asio::io_context ioc;
  int port = 0;
  {
    Listener l(ioc);
    port = l.port();
  }  // closed: nobody listens there now
  Result<std::unique_ptr<ByteStream>> r;
  HostPort to{"127.0.0.1", port};
  spawn(ioc.get_executor(), connect_only(to, &r), "client");
  run_io(ioc);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_NE(r.error().message.find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.error().message;
}

TEST(TcpStream, ConnectNeedsAnIpLiteral) {
  asio::io_context ioc;
  Result<std::unique_ptr<ByteStream>> r1, r2;
  HostPort name{"mx.example.com", 25};
  HostPort bad_port{"127.0.0.1", 70000};
  spawn(ioc.get_executor(), connect_only(name, &r1), "c1");
  spawn(ioc.get_executor(), connect_only(bad_port, &r2), "c2");
  run_io(ioc);
  ASSERT_FALSE(r1.ok());
  EXPECT_EQ(r1.error().code, Errc::bad_request);
  EXPECT_NE(r1.error().message.find("mx.example.com"), std::string::npos);
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, Errc::bad_request);
}

// ---- TLS context errors --------------------------------------------------------

TEST(TlsContext, ServerErrorsNameTheFile) {
  const auto& c = test_cert();
  ASSERT_TRUE(c.ok);
  auto missing = TlsContext::server(c.dir + "/nope.pem", c.key);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find(c.dir + "/nope.pem"), std::string::npos)
      << missing.error().message;

  std::string junk = c.dir + "/junk.pem";
  {
    std::ofstream f(junk);
    f << "not a pem file\n";
  }
  auto bad_cert = TlsContext::server(junk, c.key);
  ASSERT_FALSE(bad_cert.ok());
  EXPECT_NE(bad_cert.error().message.find(junk), std::string::npos) << bad_cert.error().message;
  auto bad_key = TlsContext::server(c.cert, junk);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(bad_key.error().message.find(junk), std::string::npos) << bad_key.error().message;
  // Certificate given as the key: not a key.
  auto swapped = TlsContext::server(c.cert, c.cert);
  ASSERT_FALSE(swapped.ok());
  EXPECT_NE(swapped.error().message.find(c.cert), std::string::npos) << swapped.error().message;

  auto good = TlsContext::server(c.cert, c.key);
  EXPECT_TRUE(good.ok());
}

}  // namespace
}  // namespace koukan::smtp
