// Server and client over real loopback sockets (127.0.0.1, port 0). The
// server runs on a background io thread; raw tests talk to it with a
// blocking POSIX socket so they control every byte.
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
using testing::BlackHole;
using testing::IoThread;
using testing::ServerClientFixture;
using testing::RawConn;
using testing::RawResponse;
using testing::lower;

// Shared between the handler (io thread) and the test thread.
struct Seen {
  std::mutex mu;
  std::vector<std::string> remotes;
  std::vector<std::size_t> piece_sizes;
  std::string body;
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  std::string method, path, query;

  void record(const Request& r) {
    std::lock_guard l(mu);
    remotes.push_back(r.remote_addr);
    content_length = r.content_length;
    chunked = r.chunked;
    method = r.method;
    path = r.path;
    query = r.query;
  }
};

// Reads the body in pieces of at most `piece`, echoes "<METHOD> <path>?<query> <body>".
Task<Response> echo(Request& req, std::shared_ptr<Seen> seen, std::size_t piece) {
  seen->record(req);
  std::string all, p;
  for (;;) {
    auto r = co_await req.body->read_some(p, piece);
    if (!r.ok()) co_return error_response(r.error());
    if (p.empty()) break;
    {
      std::lock_guard l(seen->mu);
      seen->piece_sizes.push_back(p.size());
    }
    all += p;
  }
  {
    std::lock_guard l(seen->mu);
    seen->body = all;
  }
  Response resp = Response::text(200, req.method + " " + req.path + "?" + req.query + " " + all);
  resp.headers.set("x-test", "yes");
  co_return resp;
}

class HttpTest : public ServerClientFixture {
 protected:
  std::uint16_t start_echo(ServerOptions o = {}, std::size_t piece = 64 * 1024) {
    auto seen = seen_;
    Handler h = [seen, piece](Request& r) { return echo(r, seen, piece); };
    return start(std::move(h), std::move(o));
  }

  Result<ClientResponse> get(const std::string& path, std::chrono::milliseconds timeout = 10s) {
    ClientRequest req;
    req.url = "http://127.0.0.1:" + std::to_string(port_) + path;
    req.timeout = timeout;
    return fetch(std::move(req));
  }

  static void expect_json_error(const RawResponse& r, int status) {
    EXPECT_EQ(r.status, status);
    EXPECT_EQ(r.get("content-type"), "application/json");
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    ASSERT_FALSE(ec) << r.body;
    ASSERT_TRUE(v.is_object()) << r.body;
    ASSERT_TRUE(v.as_object().contains("error")) << r.body;
    EXPECT_TRUE(v.as_object().at("error").is_string()) << r.body;
  }

  std::shared_ptr<Seen> seen_ = std::make_shared<Seen>();
};

// ---- basic round trips ----------------------------------------------------------------

TEST_F(HttpTest, GetAndPostRoundTrip) {
  start_echo();
  auto r = get("/a/b?x=1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /a/b?x=1 ");
  EXPECT_EQ(r->headers.get("x-test").value_or(""), "yes");
  EXPECT_EQ(seen_->path, "/a/b");
  EXPECT_EQ(seen_->query, "x=1");

  ClientRequest post;
  post.method = "POST";
  post.url = "http://127.0.0.1:" + std::to_string(port_) + "/tx";
  post.body = std::string(100'000, 'z');
  post.headers.set("content-type", "application/json");
  auto p = fetch(std::move(post));
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->status, 200);
  EXPECT_EQ(p->body, "POST /tx? " + std::string(100'000, 'z'));
  EXPECT_EQ(seen_->content_length, 100'000u);
  EXPECT_FALSE(seen_->chunked);
}

TEST_F(HttpTest, EmptyPatchIsSentWithContentLengthZero) {
  start_echo();
  ClientRequest req;
  req.method = "PATCH";
  req.url = "http://127.0.0.1:" + std::to_string(port_) + "/tx/1";
  auto r = fetch(std::move(req));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body, "PATCH /tx/1? ");
  EXPECT_EQ(seen_->content_length, 0u);
}

TEST_F(HttpTest, ClientKeepAliveReusesOneConnection) {
  start_echo();
  for (int i = 0; i < 4; ++i) {
    auto r = get("/k");
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  std::lock_guard l(seen_->mu);
  ASSERT_EQ(seen_->remotes.size(), 4u);
  for (const auto& a : seen_->remotes) EXPECT_EQ(a, seen_->remotes[0]);
  EXPECT_EQ(seen_->remotes[0].rfind("127.0.0.1:", 0), 0u);
}

TEST_F(HttpTest, RawKeepAliveAndPipelining) {
  start_echo();
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->body, "GET /one? ");
  // Two pipelined requests in one write.
  ASSERT_TRUE(c.send("GET /two HTTP/1.1\r\nHost: x\r\n\r\nPOST /three HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"));
  auto r2 = c.read_response();
  auto r3 = c.read_response();
  ASSERT_TRUE(r2 && r3);
  EXPECT_EQ(r2->body, "GET /two? ");
  EXPECT_EQ(r3->body, "POST /three? abc");
  std::lock_guard l(seen_->mu);
  ASSERT_EQ(seen_->remotes.size(), 3u);
  EXPECT_EQ(seen_->remotes[0], "127.0.0.1:" + std::to_string(c.local_port()));
  EXPECT_EQ(seen_->remotes[2], seen_->remotes[0]);
}

TEST_F(HttpTest, HeaderNamesGoOutLowerCase) {
  Handler h = [](Request&) -> Task<Response> {
    return []() -> Task<Response> {
      Response r = Response::json(201, "{}");
      r.headers.set("Location", "http://h/transactions/1");
      r.headers.set("ETag", "1");
      co_return r;
    }();
  };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_NE(r->head.find("\r\nlocation: http://h/transactions/1"), std::string::npos) << r->head;
  EXPECT_NE(r->head.find("\r\netag: 1"), std::string::npos) << r->head;
  EXPECT_NE(r->head.find("\r\ncontent-type: application/json"), std::string::npos) << r->head;
  EXPECT_NE(r->head.find("\r\ncontent-length: 2"), std::string::npos) << r->head;
  EXPECT_NE(r->head.find("\r\nconnection: close"), std::string::npos) << r->head;
  EXPECT_EQ(r->body, "{}");
}

TEST_F(HttpTest, HeadGetsLengthButNoBody) {
  start_echo();
  RawConn c(port_);
  ASSERT_TRUE(c.send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string expected = "HEAD /h? ";
  // read_response would wait for content-length bytes: read the head only.
  ASSERT_TRUE(c.more_within(2000));
  auto end = c.pending().find("\r\n\r\n");
  ASSERT_NE(end, std::string::npos);
  EXPECT_NE(c.pending().find("content-length: " + std::to_string(expected.size())), std::string::npos) << c.pending();
  EXPECT_EQ(c.pending().size(), end + 4) << "body bytes after a HEAD response";
  EXPECT_FALSE(c.more_within(100));
}

TEST_F(HttpTest, Http10WithoutKeepAliveIsClosed) {
  start_echo();
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /old HTTP/1.0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "GET /old? ");
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpTest, ConnectionCloseIsHonoured) {
  start_echo();
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(lower(r->get("connection")), "close");
  EXPECT_TRUE(c.wait_closed());
}

// ---- request bodies -------------------------------------------------------------------

// The handler gets the first chunk before the client has sent the second:
// the body is streamed, not buffered.
TEST_F(HttpTest, ChunkedBodyIsStreamedInPieces) {
  auto first_piece = std::make_shared<std::promise<std::string>>();
  auto seen = seen_;
  Handler h = [seen, first_piece](Request& req) -> Task<Response> {
    return [](Request& req, std::shared_ptr<Seen> seen, std::shared_ptr<std::promise<std::string>> first) -> Task<Response> {
      seen->record(req);
      std::string all, p;
      bool told = false;
      for (;;) {
        auto r = co_await req.body->read_some(p, 1024);
        if (!r.ok()) co_return error_response(r.error());
        if (p.empty()) break;
        if (!told) {
          first->set_value(p);
          told = true;
        }
        {
          std::lock_guard l(seen->mu);
          seen->piece_sizes.push_back(p.size());
        }
        all += p;
      }
      co_return Response::text(200, all);
    }(req, seen, first_piece);
  };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /blob HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
  auto f = first_piece->get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready) << "handler did not see the first chunk on its own";
  EXPECT_EQ(f.get(), "hello");
  ASSERT_TRUE(c.send("6;ext=1\r\n world\r\n"));
  ASSERT_TRUE(c.send("0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello world");
  EXPECT_TRUE(seen_->chunked);
  EXPECT_FALSE(seen_->content_length.has_value());
  std::lock_guard l(seen_->mu);
  EXPECT_GE(seen_->piece_sizes.size(), 2u);
}

TEST_F(HttpTest, LargeBodyArrivesInBoundedPieces) {
  start_echo({}, 256 * 1024);
  const std::size_t size = 8u << 20;
  RawConn c(port_);
  std::string head = "PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n";
  ASSERT_TRUE(c.send(head));
  std::string block(64 * 1024, 'b');
  for (std::size_t sent = 0; sent < size; sent += block.size()) ASSERT_TRUE(c.send(block));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body.size(), std::string("PUT /big? ").size() + size);
  std::lock_guard l(seen_->mu);
  EXPECT_GT(seen_->piece_sizes.size(), 8u);
  for (auto n : seen_->piece_sizes) EXPECT_LE(n, 256u * 1024);
}

TEST_F(HttpTest, ExpectContinueIsAnsweredWhenTheHandlerReads) {
  start_echo();
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = c.read_response();
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(c.send("data"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "PUT /e? data");
}

TEST_F(HttpTest, ExpectContinueWithoutReadGetsFinalAnswerAndClose) {
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return error_response(Errc::not_found, "no"); }(); };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);  // no 100 Continue first
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpTest, SmallUnreadBodyIsDrainedAndConnectionKept) {
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return Response::empty(204); }(); };
  start(std::move(h));
  RawConn c(port_);
  std::string body(1000, 'q');
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + body));
  auto r1 = c.read_response();
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->status, 204);
  EXPECT_NE(lower(r1->get("connection")), "close");
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r2 = c.read_response();
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->status, 204);
}

TEST_F(HttpTest, LargeUnreadBodyClosesTheConnection) {
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return Response::json(200, "{}"); }(); };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + std::string(1000, 'q')));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(lower(r->get("connection")), "close");
  EXPECT_TRUE(c.wait_closed());
}

// ---- limits and malformed input ---------------------------------------------------------

TEST_F(HttpTest, DeclaredBodyOverLimitIs413Json) {
  ServerOptions o;
  o.body_limit = 1000;
  start_echo(o);
  RawConn c(port_);
  ASSERT_TRUE(c.send("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'a')));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  expect_json_error(*r, 413);
  EXPECT_TRUE(c.wait_closed());
  std::lock_guard l(seen_->mu);
  EXPECT_TRUE(seen_->remotes.empty()) << "the handler must not run";
}

TEST_F(HttpTest, ChunkedBodyOverLimitIs413Json) {
  ServerOptions o;
  o.body_limit = 1000;
  start_echo(o);
  RawConn c(port_);
  std::string chunk = "800\r\n" + std::string(0x800, 'a') + "\r\n";
  ASSERT_TRUE(c.send("PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk + chunk + "0\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  expect_json_error(*r, 413);
  EXPECT_TRUE(c.wait_closed());
}

TEST_F(HttpTest, GarbageIs400JsonAndServerKeepsServing) {
  start_echo();
  {
    RawConn c(port_);
    ASSERT_TRUE(c.send("\x01\x02 this is not http\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    expect_json_error(*r, 400);
    EXPECT_TRUE(c.wait_closed());
  }
  {
    RawConn c(port_);
    ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    expect_json_error(*r, 400);
  }
  {
    RawConn c(port_);
    ASSERT_TRUE(c.send("PUT / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"));
    auto r = c.read_response();
    ASSERT_TRUE(r);
    expect_json_error(*r, 400);  // the handler's read_some failed with bad_request
  }
  auto ok = get("/after");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpTest, HeaderTooLargeIs431) {
  ServerOptions o;
  o.header_limit = 1024;
  start_echo(o);
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'h') + "\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  expect_json_error(*r, 431);
}

TEST_F(HttpTest, SlowHeaderTimesOutAndCloses) {
  ServerOptions o;
  o.read_header_timeout = 200ms;
  start_echo(o);
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n"));  // never finished
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(c.wait_closed());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
}

TEST_F(HttpTest, NotModifiedAndNoContentHaveNoBody) {
  Handler h = [](Request& req) -> Task<Response> {
    return [](std::string path) -> Task<Response> {
      if (path == "/304") {
        Response r = Response::json(304, "unchanged");  // a body the server must drop
        r.headers.set("etag", "7");
        co_return r;
      }
      if (path == "/204") co_return Response::text(204, "dropped too");
      co_return Response::text(200, "after");
    }(req.path);
  };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /304 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 304);
  EXPECT_EQ(r->get("etag"), "7");
  EXPECT_FALSE(r->has("content-length"));
  EXPECT_FALSE(r->has("transfer-encoding"));
  ASSERT_TRUE(c.send("GET /204 HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 204);
  EXPECT_FALSE(r->has("content-length"));
  EXPECT_TRUE(c.pending().empty());
  EXPECT_FALSE(c.more_within(100)) << "bytes after a 204: " << c.pending();
  // The connection is still in sync.
  ASSERT_TRUE(c.send("GET /x HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "after");
}

TEST_F(HttpTest, HandlerExceptionIs500AndServerStaysUp) {
  Handler h = [](Request& req) -> Task<Response> {
    return [](std::string path) -> Task<Response> {
      if (path == "/throw") throw std::runtime_error("boom");
      co_return Response::text(200, "fine");
    }(req.path);
  };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = c.read_response();
  ASSERT_TRUE(r);
  expect_json_error(*r, 500);
  EXPECT_EQ(r->body, R"({"error":"internal error"})");
  ASSERT_TRUE(c.send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
  r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "fine");
}

TEST_F(HttpTest, MaxConnectionsClosesTheExtraOne) {
  ServerOptions o;
  o.max_connections = 1;
  start_echo(o);
  RawConn a(port_);
  ASSERT_TRUE(a.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(a.read_response());  // a is now registered and idle
  RawConn b(port_);
  EXPECT_TRUE(b.wait_closed());
  ASSERT_TRUE(a.send("GET /a2 HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto r = a.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpTest, ListenFailureNamesTheAddress) {
  start_echo();
  ServerOptions o;
  o.host = "127.0.0.1";
  o.port = port_;  // taken
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return Response::empty(204); }(); };
  Server other(io_.io(), o, h);
  auto r = other.listen();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("127.0.0.1:" + std::to_string(port_)), std::string::npos) << r.error().message;
}

// ---- client errors ----------------------------------------------------------------------

TEST_F(HttpTest, ClientTimeoutAgainstSilentServer) {
  BlackHole hole;
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(hole.port()) + "/";
  req.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = fetch(std::move(req));
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::timeout) << r.error().message;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
}

TEST_F(HttpTest, ClientConnectionRefusedIsUnavailable) {
  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(testing::closed_port()) + "/";
  auto r = fetch(std::move(req));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable) << r.error().message;
}

TEST_F(HttpTest, ClientBadUrlIsBadRequest) {
  ClientRequest req;
  req.url = "gopher://x/";
  auto r = fetch(std::move(req));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::bad_request);
  ClientRequest req2;
  req2.url = "http://127.0.0.1:1/";
  req2.headers.add("x-evil", "a\r\nInjected: 1");
  auto r2 = fetch(std::move(req2));
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code, Errc::bad_request);
}

TEST_F(HttpTest, ClientResponseBodyLimit) {
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return Response::text(200, std::string(5000, 'x')); }(); };
  start(std::move(h));
  ClientOptions co;
  co.response_body_limit = 1000;
  client(co);
  auto r = get("/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::internal);
}

TEST_F(HttpTest, ClientResolvesLocalhost) {
  start_echo();
  ClientRequest req;
  req.url = "http://localhost:" + std::to_string(port_) + "/name";
  auto r = fetch(std::move(req));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body, "GET /name? ");
}

TEST_F(HttpTest, ClientDoesNotFollowRedirects) {
  Handler h = [](Request&) -> Task<Response> {
    return []() -> Task<Response> { co_return error_response(Errc::redirect, "http://elsewhere.invalid/"); }();
  };
  start(std::move(h));
  auto r = get("/");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 308);
  EXPECT_EQ(r->headers.get("location").value_or(""), "http://elsewhere.invalid/");
}

// The server closes the idle pooled connection; the client notices on use
// and retries once on a fresh connection.
TEST_F(HttpTest, ClientRetriesStalePooledConnection) {
  ServerOptions o;
  o.idle_timeout = 100ms;
  start_echo(o);
  auto r1 = get("/1");
  ASSERT_TRUE(r1.ok()) << r1.error().message;
  std::this_thread::sleep_for(300ms);  // > idle_timeout: the server closes it
  auto r2 = get("/2");
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->body, "GET /2? ");
  std::lock_guard l(seen_->mu);
  ASSERT_EQ(seen_->remotes.size(), 2u);
  EXPECT_NE(seen_->remotes[0], seen_->remotes[1]);
}

// ---- TLS ----------------------------------------------------------------------------------

class HttpTlsTest : public HttpTest {
 protected:
  void SetUp() override {
    testing::make_self_signed(dir_.file("cert.pem"), dir_.file("key.pem"));
    ServerOptions o;
    o.cert_file = dir_.file("cert.pem");
    o.key_file = dir_.file("key.pem");
    start_echo(o);
  }
  Result<ClientResponse> tls_get(const std::string& host, ClientOptions co) {
    Client c(io_.io().get_executor(), std::move(co));
    ClientRequest req;
    req.url = "https://" + host + ":" + std::to_string(port_) + "/secure";
    req.timeout = 10s;
    auto t = c.request(std::move(req));
    return io_.run(std::move(t));
  }
  testing::TempDir dir_;
};

TEST_F(HttpTlsTest, RoundTripWithoutVerification) {
  ClientOptions co;
  co.verify = false;
  auto r = tls_get("127.0.0.1", co);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "GET /secure? ");
}

TEST_F(HttpTlsTest, RoundTripVerifiedWithCaFile) {
  ClientOptions co;
  co.verify = true;
  co.ca_file = dir_.file("cert.pem");
  auto r = tls_get("127.0.0.1", co);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->body, "GET /secure? ");
  auto byname = tls_get("localhost", co);
  ASSERT_TRUE(byname.ok()) << byname.error().message;
}

TEST_F(HttpTlsTest, UntrustedCertificateIsRejected) {
  ClientOptions co;  // verify against the system CAs: our cert is unknown
  auto r = tls_get("127.0.0.1", co);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::internal) << r.error().message;
}

TEST_F(HttpTlsTest, PlainHttpToTlsPortFailsCleanly) {
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(c.wait_closed());
  ClientOptions co;
  co.verify = false;
  auto r = tls_get("127.0.0.1", co);  // still serving
  ASSERT_TRUE(r.ok()) << r.error().message;
}

TEST(HttpTlsConfig, MissingKeyFileIsAnError) {
  IoThread io;
  ServerOptions o;
  o.cert_file = "/nonexistent/cert.pem";
  o.key_file = "/nonexistent/key.pem";
  Handler h = [](Request&) -> Task<Response> { return []() -> Task<Response> { co_return Response::empty(204); }(); };
  Server s(io.io(), o, h);
  auto r = s.listen();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent/cert.pem"), std::string::npos) << r.error().message;
  io.stop();
}

// ---- graceful shutdown ------------------------------------------------------------------

struct Gate {
  std::promise<void> entered;
};

Task<Response> slow(Request& req, std::shared_ptr<Gate> gate, std::chrono::milliseconds delay) {
  gate->entered.set_value();
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer t(ex, delay);
  co_await t.async_wait(asio::use_awaitable);
  co_return Response::text(200, "slow done");
}

TEST_F(HttpTest, GracefulShutdownFinishesInFlightRequest) {
  auto gate = std::make_shared<Gate>();
  Handler h = [gate](Request& r) { return slow(r, gate, 300ms); };
  start(std::move(h));
  RawConn idle(port_);  // an idle keep-alive connection: closed at once
  ASSERT_TRUE(idle.send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n"));
  // (the handler is slow for every request; let this one finish first)
  auto entered = gate->entered.get_future();
  ASSERT_EQ(entered.wait_for(5s), std::future_status::ready);
  ASSERT_TRUE(idle.read_response());
  *gate = Gate{};
  entered = gate->entered.get_future();

  ClientRequest req;
  req.url = "http://127.0.0.1:" + std::to_string(port_) + "/slow";
  auto inflight = io_.start(client().request(std::move(req)));
  ASSERT_EQ(entered.wait_for(5s), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  auto done = io_.start(server_->shutdown(5s));
  EXPECT_TRUE(idle.wait_closed());
  ASSERT_EQ(inflight.wait_for(5s), std::future_status::ready);
  auto r = inflight.get();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "slow done");
  EXPECT_EQ(lower(std::string(r->headers.get("connection").value_or(""))), "close");
  ASSERT_EQ(done.wait_for(5s), std::future_status::ready);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_THROW(RawConn late(port_), std::runtime_error);  // no longer accepting
}

TEST_F(HttpTest, ShutdownGraceExpiresForStuckRequest) {
  auto gate = std::make_shared<Gate>();
  Handler h = [gate](Request& r) { return slow(r, gate, 3s); };
  start(std::move(h));
  RawConn c(port_);
  ASSERT_TRUE(c.send("GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_EQ(gate->entered.get_future().wait_for(5s), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  auto s = server_->shutdown(200ms);
  io_.run(std::move(s));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 150ms);
  EXPECT_LT(took, 2s);
  EXPECT_TRUE(c.wait_closed());
}

}  // namespace
}  // namespace koukan::http
