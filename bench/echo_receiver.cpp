// A minimal REST receiver for bench/delivery_bench.sh, speaking the receiver
// protocol of spec/rest-api.md §9.4 on our http::Server: every transaction is
// accepted at once (mail/rcpt 250 in the create response, data 250 as soon
// as the body is complete). In memory and bounded: only lengths are kept,
// never bodies, and old transactions are forgotten.
//   echo_receiver PORT     (0: ephemeral; prints "listening on 127.0.0.1:P")
// Prints "delivered N created M ..." every 5 s when it changed, and on
// SIGTERM/SIGINT; `GET /stats` answers the same line.
//
// Routes:
//   POST  /senders/<s>/transactions      201, location, etag, READ body
//   GET   /transactions/<id>             200 + etag, or 304 after waiting up
//                                        to request-timeout (if-none-match)
//   PATCH /transactions/<id>             200 + etag + READ body (heartbeat)
//   PUT   /transactions/<id>/body        whole, content-range pieces, or
//                                        x-finalize-blob-length
//   POST  /transactions/<id>/cancel      200
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/base/log.hpp"
#include "common/http/server.hpp"

using namespace koukan;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t kMaxTxs = 100'000;  // forget the oldest beyond this (~0.4 KB each)
constexpr auto kMaxAge = std::chrono::minutes(10);

struct Tx {
  std::string id;
  std::uint64_t version = 1;
  std::string remote_host, local_host;  // serialized JSON, "" if absent
  bool has_mail_from = false, has_sender = false;
  std::size_t rcpts = 0;
  std::int64_t length = 0;
  std::optional<std::int64_t> total;
  bool finalized = false;
  bool cancelled = false;
  Clock::time_point created = Clock::now();
  // Long-poll waiters, woken by a change.
  std::vector<std::weak_ptr<asio::steady_timer>> waiters;

  void bump() {
    ++version;
    for (auto& w : waiters) {
      if (auto timer = w.lock()) timer->cancel();
    }
    waiters.clear();
  }
};

struct State {
  std::string base;  // "http://127.0.0.1:PORT"
  std::unordered_map<std::string, std::shared_ptr<Tx>> txs;
  std::deque<std::shared_ptr<Tx>> order;
  std::uint64_t next_id = 0;
  std::uint64_t created = 0, delivered = 0, cancelled = 0, bad = 0;
};

State g;

void evict() {
  const auto now = Clock::now();
  while (!g.order.empty() && (g.order.size() > kMaxTxs || now - g.order.front()->created > kMaxAge)) {
    g.txs.erase(g.order.front()->id);
    g.order.pop_front();
  }
}

std::string read_json(const Tx& t) {
  std::string out = "{";
  auto key = [&](std::string_view k, std::string_view v) {
    if (out.size() > 1) out += ',';
    out += '"';
    out += k;
    out += "\":";
    out += v;
  };
  const std::string ok = R"({"code":250,"message":"ok"})";
  if (!t.remote_host.empty()) key("remote_host", t.remote_host);
  if (!t.local_host.empty()) key("local_host", t.local_host);
  if (t.has_mail_from) {
    key("mail_from", "{}");
    key("mail_response", ok);
  }
  if (t.rcpts) {
    std::string to = "[", resp = "[";
    for (std::size_t i = 0; i < t.rcpts; ++i) {
      to += i ? ",{}" : "{}";
      resp += (i ? "," : "") + ok;
    }
    key("rcpt_to", to + "]");
    key("rcpt_response", resp + "]");
  }
  if (t.finalized && !t.cancelled) key("data_response", ok);
  key("body", R"({"blob_status":{"uri":")" + g.base + "/transactions/" + t.id + "/body\"" +
                  (t.finalized ? R"(,"finalized":true}})" : "}}"));
  if (t.has_sender) key("sender", "{}");
  out += '}';
  return out;
}

http::Response tx_response(int status, const Tx& t) {
  http::Response r = http::Response::json(status, read_json(t));
  r.headers.set("etag", std::to_string(t.version));
  return r;
}

http::Response error(int status, std::string msg) {
  ++g.bad;
  return http::Response::text(status, std::move(msg));
}

std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> parts;
  while (!p.empty()) {
    if (p.front() == '/') {
      p.remove_prefix(1);
      continue;
    }
    auto slash = p.find('/');
    parts.push_back(p.substr(0, slash));
    if (slash == std::string_view::npos) break;
    p.remove_prefix(slash);
  }
  return parts;
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

void mark_finalized(Tx& t) {
  if (t.finalized) return;
  t.finalized = true;
  if (!t.cancelled) ++g.delivered;
}

Task<http::Response> create(http::Request& req) {
  Result<std::string> body = co_await req.read_all(1 << 20);
  if (!body) co_return error(400, body.error().message);
  boost::system::error_code ec;
  json::value v = json::parse(*body, ec);
  if (ec || !v.is_object()) co_return error(400, "invalid tx json");
  const json::object& o = v.as_object();
  auto t = std::make_shared<Tx>();
  t->id = "T" + std::to_string(++g.next_id);
  if (const json::value* rh = o.if_contains("remote_host")) t->remote_host = json::serialize(*rh);
  if (const json::value* lh = o.if_contains("local_host")) t->local_host = json::serialize(*lh);
  t->has_mail_from = o.contains("mail_from");
  t->has_sender = o.contains("sender");
  if (const json::value* r = o.if_contains("rcpt_to"); r && r->is_array()) t->rcpts = r->as_array().size();
  ++g.created;
  evict();
  g.txs.emplace(t->id, t);
  g.order.push_back(t);
  http::Response resp = tx_response(201, *t);
  resp.headers.set("location", g.base + "/transactions/" + t->id);
  co_return resp;
}

Task<http::Response> get(http::Request& req, std::shared_ptr<Tx> t) {
  auto inm = req.headers.get("if-none-match");
  if (inm) {
    std::string_view e = *inm;
    if (e.size() >= 2 && e.front() == '"' && e.back() == '"') e = e.substr(1, e.size() - 2);
    std::chrono::milliseconds wait = 30s;  // If-None-Match alone (§12.6)
    if (auto rt = req.headers.get("request-timeout")) {
      auto secs = to_int(*rt);
      if (!secs) co_return error(400, "invalid request-timeout header");
      wait = std::chrono::seconds(*secs);
    }
    const std::string etag(e);
    const auto deadline = Clock::now() + wait;
    auto token = asio::as_tuple(asio::use_awaitable);
    while (std::to_string(t->version) == etag && Clock::now() < deadline) {
      // Woken by bump() (cancel) or our own deadline.
      auto timer = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor);
      timer->expires_at(deadline);
      t->waiters.push_back(timer);
      co_await timer->async_wait(token);
    }
    if (std::to_string(t->version) == etag) {
      http::Response r = http::Response::empty(304);
      r.headers.set("etag", etag);
      co_return r;
    }
  }
  co_return tx_response(200, *t);
}

Task<http::Response> put_body(http::Request& req, std::shared_ptr<Tx> t) {
  std::int64_t n = 0;
  std::string chunk;
  for (;;) {
    Result<void> r = co_await req.body->read_some(chunk, 1 << 16);
    if (!r) co_return error(400, r.error().message);
    if (chunk.empty()) break;
    n += static_cast<std::int64_t>(chunk.size());
  }
  auto range_header = [&](const Tx& x) {
    std::string total = x.total ? std::to_string(*x.total) : "*";
    return x.length == 0 ? "bytes */" + total : "bytes 0-" + std::to_string(x.length - 1) + "/" + total;
  };
  auto unsatisfiable = [&](const Tx& x) {
    http::Response r = http::Response::text(416, "invalid range");
    r.headers.set("content-range", range_header(x));
    return r;
  };
  if (t->finalized) {
    // A replay of the last piece is fine; anything else is out of range.
    http::Response r = http::Response::json(200, "{}");
    r.headers.set("content-range", range_header(*t));
    co_return r;
  }
  if (auto fin = req.headers.get("x-finalize-blob-length")) {
    auto len = to_int(*fin);
    if (!len) co_return error(400, "invalid x-finalize-blob-length");
    if (n != 0) co_return error(400, "x-finalize-blob-length with non-empty PUT");
    if (*len != t->length) co_return unsatisfiable(*t);
    t->total = *len;
  } else if (auto cr = req.headers.get("content-range")) {
    // bytes a-b/T | bytes a-b/*
    std::string_view s = *cr;
    if (!s.starts_with("bytes ")) co_return error(400, "bad range");
    s.remove_prefix(6);
    auto dash = s.find('-'), slash = s.find('/');
    if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) {
      co_return error(400, "bad range");
    }
    auto a = to_int(s.substr(0, dash)), b = to_int(s.substr(dash + 1, slash - dash - 1));
    std::string_view tot = s.substr(slash + 1);
    std::optional<std::int64_t> total;
    if (tot != "*") {
      total = to_int(tot);
      if (!total) co_return error(400, "bad range");
    }
    if (!a || !b || *b < *a || (total && *b >= *total)) co_return error(400, "bad range");
    if (*b - *a + 1 != n) co_return error(400, "content-range length != body length");
    if (*a != t->length) co_return unsatisfiable(*t);
    t->length = *b + 1;
    if (total) t->total = total;
  } else {
    t->length = n;
    t->total = n;
  }
  if (t->total && *t->total == t->length) mark_finalized(*t);
  t->bump();
  http::Response r = http::Response::json(200, "{}");
  r.headers.set("content-range", range_header(*t));
  co_return r;
}

std::string counters() {
  return "delivered " + std::to_string(g.delivered) + " created " + std::to_string(g.created) +
         " cancelled " + std::to_string(g.cancelled) + " bad_requests " + std::to_string(g.bad) + "\n";
}

void report() {
  std::fputs(counters().c_str(), stdout);
  std::fflush(stdout);
}

Task<http::Response> handle(http::Request& req) {
  std::vector<std::string_view> p = split_path(req.path);
  if (req.method == "GET" && req.path == "/stats") co_return http::Response::text(200, counters());
  if (req.method == "POST" && p.size() == 3 && p[0] == "senders" && p[2] == "transactions") {
    co_return co_await create(req);
  }
  if (p.size() < 2 || p[0] != "transactions") co_return error(404, "no such route");
  auto it = g.txs.find(std::string(p[1]));
  if (it == g.txs.end()) {
    if (req.method == "POST" && p.size() == 3 && p[2] == "cancel") co_return http::Response::empty(200);
    co_return error(404, "unknown tx");
  }
  std::shared_ptr<Tx> t = it->second;
  if (p.size() == 2 && req.method == "GET") co_return co_await get(req, std::move(t));
  if (p.size() == 2 && req.method == "PATCH") {
    Result<std::string> body = co_await req.read_all(1 << 20);
    if (!body) co_return error(400, body.error().message);
    t->bump();
    co_return tx_response(200, *t);
  }
  if (p.size() == 3 && p[2] == "body" && req.method == "PUT") co_return co_await put_body(req, std::move(t));
  if (p.size() == 3 && p[2] == "cancel" && req.method == "POST") {
    if (!t->cancelled) {
      t->cancelled = true;
      ++g.cancelled;
      t->bump();
    }
    co_return http::Response::empty(200);
  }
  co_return error(405, "method not allowed");
}


Task<void> reporter() {
  asio::steady_timer t(co_await asio::this_coro::executor);
  std::uint64_t last = 0;
  auto token = asio::as_tuple(asio::use_awaitable);
  for (;;) {
    t.expires_after(5s);
    auto [ec] = co_await t.async_wait(token);
    if (ec) co_return;
    if (g.delivered != last) report();
    last = g.delivered;
  }
}

}  // namespace

int main(int argc, char** argv) {
  boost::asio::io_context io;
  http::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = argc > 1 ? static_cast<std::uint16_t>(std::atoi(argv[1])) : 0;
  http::Server server(io, o, handle);
  if (auto r = server.listen(); !r.ok()) {
    std::fprintf(stderr, "listen: %s\n", r.error().message.c_str());
    return 1;
  }
  g.base = "http://127.0.0.1:" + std::to_string(server.port());
  std::printf("listening on 127.0.0.1:%u\n", server.port());
  std::fflush(stdout);
  server.start();
  spawn(io.get_executor(), reporter(), "reporter");
  boost::asio::signal_set sigs(io, SIGINT, SIGTERM);
  sigs.async_wait([&](auto, int) {
    report();
    io.stop();
  });
  io.run();
}
