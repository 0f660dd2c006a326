// Pure pieces of the HTTP layer: headers, URLs, responses, in-memory bodies.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "common/http/error.hpp"
#include "common/http/types.hpp"

namespace koukan::http {
namespace {

template <class T>
T run_sync(Task<T> t) {
  asio::io_context io;
  std::optional<T> out;
  auto done = [&out](std::exception_ptr e, T v) {
    if (e) std::rethrow_exception(e);
    out.emplace(std::move(v));
  };
  asio::co_spawn(io, std::move(t), done);
  io.run();
  EXPECT_TRUE(out.has_value());
  return std::move(*out);
}

TEST(Headers, CaseInsensitiveGetSetRemove) {
  Headers h;
  h.add("Content-Type", "text/plain");
  h.add("X-A", "1");
  h.add("x-a", "2");
  EXPECT_EQ(h.get("content-type").value_or(""), "text/plain");
  EXPECT_EQ(h.get("X-a").value_or(""), "1");  // first wins
  EXPECT_FALSE(h.has("missing"));
  h.set("X-A", "3");
  EXPECT_EQ(h.all().size(), 2u);
  EXPECT_EQ(h.get("x-a").value_or(""), "3");
  h.remove("CONTENT-TYPE");
  EXPECT_FALSE(h.has("content-type"));
  EXPECT_TRUE(iequals("Etag", "ETAG"));
  EXPECT_FALSE(iequals("etag", "etags"));
}

TEST(ParseUrl, Parts) {
  auto u = parse_url("http://example.com/a/b?x=1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/a/b?x=1");

  u = parse_url("HTTPS://127.0.0.1:8443");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->target, "/");

  u = parse_url("https://[::1]:9000/x#frag");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 9000);
  EXPECT_EQ(u->target, "/x");

  u = parse_url("http://h?q=1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->target, "/?q=1");
}

TEST(ParseUrl, Rejects) {
  for (const char* bad : {"ftp://h/", "h/path", "http:///x", "http://h:0/", "http://h:70000/", "http://h:1x/",
                          "http://[::1/", "http://u@h/", "http://:80/"}) {
    auto u = parse_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().code, Errc::bad_request) << bad;
  }
}

TEST(ResponseFactories, JsonTextEmpty) {
  auto j = Response::json(201, "{}");
  EXPECT_EQ(j.status, 201);
  EXPECT_EQ(j.headers.get("content-type").value_or(""), "application/json");
  auto t = Response::text(200, "hi");
  EXPECT_EQ(t.headers.get("content-type").value_or("").substr(0, 10), "text/plain");
  auto e = Response::empty(304);
  EXPECT_TRUE(e.body.empty());
  EXPECT_TRUE(e.headers.all().empty());
  EXPECT_EQ(reason_phrase(308), "Permanent Redirect");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
}

TEST(StringBodyReader, PiecesAndEnd) {
  StringBodyReader r("hello world");
  auto t = [](StringBodyReader* r) -> Task<std::vector<std::string>> {
    std::vector<std::string> pieces;
    std::string p;
    for (;;) {
      auto res = co_await r->read_some(p, 4);
      if (!res.ok() || p.empty()) break;
      pieces.push_back(p);
    }
    co_return pieces;
  };
  auto pieces = run_sync(t(&r));
  ASSERT_EQ(pieces.size(), 3u);
  EXPECT_EQ(pieces[0], "hell");
  EXPECT_EQ(pieces[2], "rld");
}

Task<Result<std::string>> read_all_of(std::string data, std::optional<std::uint64_t> cl, std::size_t limit) {
  StringBodyReader r(std::move(data));
  Request req;
  req.content_length = cl;
  req.body = &r;
  co_return co_await req.read_all(limit);
}

TEST(Request, ReadAllHonoursLimit) {
  auto ok = run_sync(read_all_of("0123456789", std::nullopt, 10));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, "0123456789");
  auto big = run_sync(read_all_of("0123456789", std::nullopt, 9));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, Errc::payload_too_large);
  auto declared = run_sync(read_all_of("", 100, 9));  // Content-Length alone is enough to refuse
  ASSERT_FALSE(declared.ok());
  EXPECT_EQ(declared.error().code, Errc::payload_too_large);
}

TEST(ErrorResponse, JsonBody) {
  auto r = error_response(Errc::payload_too_large, "too \"big\"");
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(r.headers.get("content-type").value_or(""), "application/json");
  EXPECT_EQ(r.body, R"({"error":"too \"big\""})");
}

}  // namespace
}  // namespace koukan::http
