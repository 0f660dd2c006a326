// Edge cases of the HTTP server and client over loopback: exact body bytes
// in small pieces, 100-continue variants, handler mistakes the server must
// repair, error shapes as a client sees them, keep-alive after bodiless
// responses, and a client facing a server that stalls mid-body.
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <mutex>

#include "common/http/client.hpp"
#include "common/http/error.hpp"
#include "common/http/server.hpp"
#include "test/common/http/http_test_util.hpp"

namespace koukan::http {
namespace {

using namespace std::chrono_literals;
using testing::IoThread;
using testing::ServerClientFixture;
using testing::RawConn;
using testing::RawResponse;

// What the handler saw, shared with the test thread.
struct Record {
  std::mutex mu;
  std::string body;
  std::size_t max_piece = 0;
  std::size_t pieces = 0;
  std::vector<std::string> remotes;
  std::string error;
};

// Reads the body with read_some(piece) and answers with its length.
Task<Response> read_pieces(Request& req, std::shared_ptr<Record> rec, std::size_t piece) {
  {
    std::lock_guard l(rec->mu);
    rec->remotes.push_back(req.remote_addr);
  }
  std::string all, p;
  std::size_t pieces = 0, max_seen = 0;
  for (;;) {
    auto r = co_await req.body->read_some(p, piece);
    if (!r.ok()) {
      std::lock_guard l(rec->mu);
      rec->error = r.error().message;
      co_return error_response(r.error());
    }
    if (p.empty()) break;
    ++pieces;
    max_seen = std::max(max_seen, p.size());
    all += p;
  }
  {
    std::lock_guard l(rec->mu);
    rec->body = all;
    rec->pieces = pieces;
    rec->max_piece = max_seen;
  }
  co_return Response::text(200, std::to_string(all.size()));
}

// Reads the whole body through Request::read_all(limit).
Task<Response> read_all_limited(Request& req, std::size_t limit) {
  auto r = co_await req.read_all(limit);
  if (!r.ok()) co_return error_response(r.error());
  co_return Response::text(200, *r);
}

// Answers by path; every branch is something a handler might get wrong.
Task<Response> by_path(std::string path, std::shared_ptr<Record> rec, std::string remote) {
  {
    std::lock_guard l(rec->mu);
    rec->remotes.push_back(remote);
  }
  if (path == "/conflict") co_return error_response(Errc::conflict, "state is \"final\"\n");
  if (path == "/unavailable") co_return error_response(Errc::unavailable, "busy");
  if (path == "/redirect") co_return error_response(Errc::redirect, "http://other.invalid:8000/tx/1");
  if (path == "/304") {
    Response r = Response::json(304, "{\"must\":\"not be sent\"}");
    r.headers.set("etag", "v2");
    co_return r;
  }
  if (path == "/204") co_return Response::text(204, "must not be sent");
  if (path == "/status42") co_return Response::text(42, "nonsense status");
  if (path == "/status101") co_return Response::text(101, "no upgrades here");
  if (path == "/lying-length") {
    Response r = Response::text(200, "12345");
    r.headers.set("Content-Length", "999");
    r.headers.set("Transfer-Encoding", "chunked");
    co_return r;
  }
  if (path == "/injection") {
    Response r = Response::text(200, "ok");
    r.headers.add("x-bad", "a\r\nset-cookie: stolen=1");
    r.headers.add("bad name", "v");
    r.headers.add("x-good", "kept");
    co_return r;
  }
  if (path == "/close") {
    Response r = Response::text(200, "closing");
    r.headers.set("Connection", "close");
    co_return r;
  }
  co_return Response::text(200, "path " + path);
}

// Bytes 0..255 over and over: any dropped, duplicated or reordered byte shows.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 256) & 0xff);
  return s;
}

std::string hex(std::size_t n, bool upper) {
  char buf[32];
  std::snprintf(buf, sizeof buf, upper ? "%zX" : "%zx", n);
  return buf;
}

class HttpEdge : public ServerClientFixture {
 protected:
  void start_pieces(std::size_t piece, ServerOptions o = {}) {
    auto rec = rec_;
    Handler h = [rec, piece](Request& r) { return read_pieces(r, rec, piece); };
    start(std::move(h), std::move(o));
  }

  void start_by_path() {
    auto rec = rec_;
    Handler h = [rec](Request& r) { return by_path(r.path, rec, r.remote_addr); };
    start(std::move(h));
  }

  Result<ClientResponse> call(const std::string& method, const std::string& path, std::string body = {}) {
    ClientRequest req;
    req.method = method;
    req.url = "http://127.0.0.1:" + std::to_string(port_) + path;
    req.body = std::move(body);
    req.timeout = 10s;
    return fetch(std::move(req));
  }

  std::vector<std::string> remotes() {
    std::lock_guard l(rec_->mu);
    return rec_->remotes;
  }

  // {"error": "<string>"}; returns the string.
  static std::string error_text(const std::string& body) {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    EXPECT_FALSE(ec) << body;
    if (ec || !v.is_object() || !v.as_object().contains("error") || !v.as_object().at("error").is_string()) {
      ADD_FAILURE() << "not an {\"error\": string} body: " << body;
      return {};
    }
    EXPECT_EQ(v.as_object().size(), 1u) << body;
    return std::string(v.as_object().at("error").as_string());
  }

  std::shared_ptr<Record> rec_ = std::make_shared<Record>();
};

// ---- request bodies, byte for byte ----------------------------------------------------

TEST_F(HttpEdge, ContentLengthBodyExactBytesInSevenBytePieces) {
  start_pieces(7);
  const std::string body = pattern(20'011);
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /b HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  // Several writes with odd boundaries.
  ASSERT_TRUE(c.send(body.substr(0, 1)));
  ASSERT_TRUE(c.send(body.substr(1, 4999)));
  ASSERT_TRUE(c.send(body.substr(5000)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, std::to_string(body.size()));
  std::lock_guard l(rec_->mu);
  EXPECT_TRUE(rec_->body == body) << "body differs (got " << rec_->body.size() << " bytes)";
  EXPECT_LE(rec_->max_piece, 7u);
  EXPECT_GE(rec_->pieces, body.size() / 7);
}

TEST_F(HttpEdge, ChunkedBodyExactBytesAcrossManyChunks) {
  start_pieces(5);
  const std::string body = pattern(3000);
  std::string wire = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::size_t pos = 0, n = 1;
  bool upper = false;
  while (pos < body.size()) {
    std::size_t len = std::min(n, body.size() - pos);
    wire += hex(len, upper);
    if (n % 5 == 0) wire += ";name=value";  // chunk extensions are ignored
    wire += "\r\n" + body.substr(pos, len) + "\r\n";
    pos += len;
    n = n * 3 % 97 + 1;
    upper = !upper;
  }
  wire += "0\r\nX-Trailer: t\r\n\r\n";
  RawConn c(port_);
  // Dribble the wire bytes in 333-byte writes so chunk headers straddle reads.
  for (std::size_t i = 0; i < wire.size(); i += 333) ASSERT_TRUE(c.send(wire.substr(i, 333)));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "3000");
  {
    std::lock_guard l(rec_->mu);
    EXPECT_TRUE(rec_->body == body) << "body differs (got " << rec_->body.size() << " bytes)";
    EXPECT_LE(rec_->max_piece, 5u);
  }
  // The trailer was consumed: the connection is in sync for the next request.
  ASSERT_TRUE(c.send("POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz"));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "3");
}

TEST_F(HttpEdge, ExpectContinueWithChunkedBody) {
  start_pieces(1024);
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-Continue\r\n\r\n"));
  auto interim = c.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  EXPECT_EQ(interim->head, "HTTP/1.1 100 Continue");
  ASSERT_TRUE(c.send("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "5");
  std::lock_guard l(rec_->mu);
  EXPECT_EQ(rec_->body, "abcde");
}

// RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST
// be ignored (an HTTP/1.0 client cannot parse an interim response).
TEST_F(HttpEdge, ExpectContinueIgnoredForHttp10) {
  start_pieces(1024);
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /e HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nwxyz"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->head;
  EXPECT_EQ(r->body, "4");
}

TEST_F(HttpEdge, ReadAllLimitOverTheWireIs413Json) {
  Handler h = [](Request& r) { return read_all_limited(r, 10); };
  start(std::move(h));
  {
    // Declared too large: refused without reading.
    RawConn c(port_);
    ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n01234567890"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(r->get("content-type"), "application/json");
    EXPECT_NE(error_text(r->body).find("10"), std::string::npos) << r->body;
  }
  {
    // Chunked: found out while reading.
    RawConn c(port_);
    ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413);
    EXPECT_EQ(r->get("content-type"), "application/json");
    error_text(r->body);
  }
  {
    // Exactly at the limit is fine.
    RawConn c(port_);
    ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "0123456789");
  }
}

TEST_F(HttpEdge, TruncatedBodyReportsAnErrorToTheHandler) {
  start_pieces(1024);
  {
    RawConn c(port_);
    ASSERT_TRUE(c.send("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-this"));
  }  // closed mid-body
  for (int i = 0; i < 100; ++i) {
    {
      std::lock_guard l(rec_->mu);
      if (!rec_->error.empty()) break;
    }
    std::this_thread::sleep_for(20ms);
  }
  std::lock_guard l(rec_->mu);
  EXPECT_FALSE(rec_->error.empty()) << "read_some must fail, not report a short body as complete";
  EXPECT_TRUE(rec_->body.empty());
}

// ---- what the server repairs in a handler's response ----------------------------------

TEST_F(HttpEdge, InvalidStatusFromHandlerBecomes500Json) {
  start_by_path();
  for (const char* path : {"/status42", "/status101"}) {
    RawConn c(port_);
    ASSERT_TRUE(c.send(std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 500) << path;
    EXPECT_EQ(r->get("content-type"), "application/json") << path;
    EXPECT_EQ(error_text(r->body), "internal error");
  }
}

TEST_F(HttpEdge, HandlerFramingHeadersAreReplaced) {
  start_by_path();
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /lying-length HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->get("content-length"), "5");
  EXPECT_FALSE(r->has("transfer-encoding"));
  EXPECT_EQ(r->body, "12345");
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->body, "path /next");
}

TEST_F(HttpEdge, InvalidResponseHeadersAreDropped) {
  start_by_path();
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /injection HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(r->has("set-cookie")) << r->head;
  EXPECT_FALSE(r->has("x-bad")) << r->head;
  EXPECT_FALSE(r->has("bad name")) << r->head;
  EXPECT_EQ(r->get("x-good"), "kept");
  EXPECT_EQ(r->body, "ok");
}

// ---- error shapes as a client sees them -----------------------------------------------

TEST_F(HttpEdge, ErrorResponsesThroughTheClient) {
  start_by_path();
  auto c = call("GET", "/conflict");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->status, 409);
  EXPECT_EQ(c->headers.get("Content-Type").value_or(""), "application/json");
  EXPECT_EQ(error_text(c->body), "state is \"final\"\n");

  auto u = call("POST", "/unavailable", "{}");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->status, 503);
  EXPECT_EQ(error_text(u->body), "busy");

  auto r = call("GET", "/redirect");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 308);
  EXPECT_EQ(r->headers.get("LOCATION").value_or(""), "http://other.invalid:8000/tx/1");
  EXPECT_TRUE(r->body.empty());
  EXPECT_EQ(r->headers.get("content-length").value_or(""), "0");
}

TEST(HttpErrorMapping, EveryErrcHasItsStatusAndJsonShape) {
  const std::pair<Errc, int> table[] = {
      {Errc::bad_request, 400},  {Errc::not_found, 404},
      {Errc::conflict, 409},     {Errc::precondition_failed, 412},
      {Errc::payload_too_large, 413}, {Errc::range_not_satisfiable, 416},
      {Errc::unavailable, 503},  {Errc::timeout, 504},
      {Errc::internal, 500},
  };
  for (const auto& [code, status] : table) {
    EXPECT_EQ(http_status(code), status) << errc_name(code);
    auto r = error_response(code, "m");
    EXPECT_EQ(r.status, status) << errc_name(code);
    EXPECT_EQ(r.headers.get("content-type").value_or(""), "application/json");
    EXPECT_EQ(r.body, R"({"error":"m"})");
  }
  EXPECT_EQ(http_status(Errc::redirect), 308);
  auto red = error_response(Error(Errc::redirect, "http://h:1/x"));
  EXPECT_EQ(red.status, 308);
  EXPECT_EQ(red.headers.get("Location").value_or(""), "http://h:1/x");
  EXPECT_TRUE(red.body.empty());
}

TEST(HttpErrorMapping, JsonQuoteProducesValidJson) {
  std::string nasty = "q\"b\\s/\n\r\t";
  nasty += '\0';
  nasty += "\x01\x1f\x7f caf\xc3\xa9";
  auto quoted = json_quote(nasty);
  boost::system::error_code ec;
  auto v = boost::json::parse(quoted, ec);
  ASSERT_FALSE(ec) << quoted;
  ASSERT_TRUE(v.is_string());
  EXPECT_EQ(std::string(v.as_string()), nasty);
  EXPECT_EQ(json_quote(""), "\"\"");
}

// ---- keep-alive after bodiless responses, through the client ---------------------------

TEST_F(HttpEdge, ClientKeepsConnectionAcross304And204) {
  start_by_path();
  auto a = call("GET", "/304");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->status, 304);
  EXPECT_TRUE(a->body.empty());
  EXPECT_EQ(a->headers.get("etag").value_or(""), "v2");
  auto b = call("DELETE", "/204");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->status, 204);
  EXPECT_TRUE(b->body.empty());
  auto c = call("GET", "/after");
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->body, "path /after");
  auto seen = remotes();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1], seen[0]);
  EXPECT_EQ(seen[2], seen[0]);
}

TEST_F(HttpEdge, ClientHeadGetsNoBodyAndKeepsTheConnection) {
  start_by_path();
  auto h = call("HEAD", "/h");
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(h->status, 200);
  EXPECT_TRUE(h->body.empty());
  auto g = call("GET", "/g");
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->body, "path /g");
  auto seen = remotes();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1], seen[0]);
}

TEST_F(HttpEdge, ClientOpensNewConnectionAfterConnectionClose) {
  start_by_path();
  auto a = call("GET", "/close");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->body, "closing");
  auto b = call("GET", "/b");
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_EQ(b->body, "path /b");
  auto seen = remotes();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_NE(seen[1], seen[0]);
}

// A raw server that accepts one connection, reads the request head, sends a
// response head promising 10 bytes, sends 3, then goes silent.
class StallingServer {
 public:
  StallingServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 4);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~StallingServer() {
    done_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::uint16_t port() const { return port_; }

 private:
  void run() {
    int c = ::accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    std::string got;
    char buf[4096];
    while (got.find("\r\n\r\n") == std::string::npos) {
      ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    std::string_view resp = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
    while (!done_) std::this_thread::sleep_for(10ms);
    ::close(c);
  }
  int fd_;
  std::uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

TEST_F(HttpEdge, ClientTimesOutOnAStalledResponseBody) {
  StallingServer s;
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(s.port()) + "/";
  req.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = fetch(std::move(req));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::timeout) << r.error().message;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
}

// ---- shutdown -----------------------------------------------------------------------------

Task<Response> wait_then_answer(std::shared_ptr<std::promise<void>> entered, std::chrono::milliseconds delay) {
  entered->set_value();
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer t(ex, delay);
  co_await t.async_wait(asio::use_awaitable);
  co_return Response::text(200, "finished");
}

// During the grace period (not only after it) new connections are refused,
// while the in-flight raw request still gets its complete response.
TEST_F(HttpEdge, ShutdownRefusesNewConnectionsDuringGrace) {
  auto entered = std::make_shared<std::promise<void>>();
  Handler h = [entered](Request&) { return wait_then_answer(entered, 400ms); };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(entered->get_future().wait_for(5s), std::future_status::ready);
  auto done = io_.start(server_->shutdown(5s));
  // Give the io thread a moment to close the acceptor.
  std::this_thread::sleep_for(50ms);
  EXPECT_THROW(RawConn late(port_), std::runtime_error);
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "finished");
  EXPECT_EQ(testing::lower(r->get("connection")), "close");
  EXPECT_TRUE(c.wait_closed());
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  done.get();
}

TEST_F(HttpEdge, ShutdownWithNothingInFlightIsImmediate) {
  start_by_path();
  auto t0 = std::chrono::steady_clock::now();
  auto s = server_->shutdown(5s);
  io_.run(std::move(s));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  server_.reset();
}

}  // namespace
}  // namespace koukan::http

namespace koukan::http {
namespace {

// Request smuggling guards: ambiguous framing is a 400, never a guess.
TEST_F(HttpEdge, AmbiguousBodyFramingIs400Json) {
  start_pieces(1024);
  const char* requests[] = {
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
  };
  for (const char* wire : requests) {
    RawConn c(port_);
    ASSERT_TRUE(c.send(wire));
    auto r = c.read_response();
    ASSERT_TRUE(r) << wire;
    EXPECT_EQ(r->status, 400) << wire;
    EXPECT_EQ(r->get("content-type"), "application/json") << wire;
    EXPECT_NE(error_text(r->body), "") << wire;
  }
  std::lock_guard l(rec_->mu);
  EXPECT_TRUE(rec_->remotes.empty()) << "the handler must not run";
}

// A client that stops sending mid-body: the handler's read_some fails with
// a timeout after body_read_timeout, and the connection goes away.
TEST_F(HttpEdge, StalledRequestBodyTimesOut) {
  ServerOptions o;
  o.body_read_timeout = 150ms;
  start_pieces(1024, o);
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial"));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.wait_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  // The deadline closes the socket as it fires, so the peer can see the
  // close before the handler has recorded its error: wait for it.
  std::string error;
  for (int i = 0; i < 200 && error.empty(); ++i) {
    {
      std::lock_guard l(rec_->mu);
      error = rec_->error;
    }
    if (error.empty()) std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(error.find("timed out"), std::string::npos) << error;
}

// IPv6 loopback end to end (URL with a bracketed literal); skipped where
// the host has no ::1.
TEST_F(HttpEdge, Ipv6LiteralRoundTrip) {
  ServerOptions o;
  auto rec = rec_;
  Handler h = [rec](Request& r) { return by_path(r.path, rec, r.remote_addr); };
  o.host = "::1";
  o.port = 0;
  server_ = std::make_unique<Server>(io_.io(), o, h);
  auto l = server_->listen();
  if (!l.ok()) GTEST_SKIP() << "no IPv6 loopback: " << l.error().message;
  server_->start();
  ClientRequest req;
  req.url = "http://[::1]:" + std::to_string(server_->port()) + "/v6?q=1";
  auto r = fetch(std::move(req));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body, "path /v6");
  auto seen = remotes();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].rfind("::1:", 0), 0u) << seen[0];
}

}  // namespace
}  // namespace koukan::http
