// Load generator for bench/delivery_bench.sh: "REST create -> delivered to a
// receiver". C concurrent clients (our http::Client, keep-alive) deliver N
// messages of about 2 KB in total and report messages/second and latency.
//   delivery_load BASE_URL SENDER N CONCURRENCY MODE
// MODE=router: POST /senders/SENDER/transactions to a router with the body
//   inline, then long-poll GET (if-none-match, request-timeout: 10) the
//   Location until `final_attempt_reason`; success iff it is
//   "upstream response success".
// MODE=direct: the no-router baseline. The steps a router's rest_output does
//   against a receiver: POST create (envelope only), PUT the body to
//   body.blob_status.uri, long-poll GET until `data_response`; success iff
//   every response is 250.
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/async/task.hpp"
#include "common/http/client.hpp"

using namespace koukan;
namespace json = boost::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

constexpr auto kMessageTimeout = 120s;  // per message, create to final answer

struct Stats {
  std::vector<double> lat_ms;
  int failed = 0;
  int remaining = 0;
  std::string first_failure;
};

struct Load {
  http::Client* client;
  std::string base, sender, mode;
  std::string router_create;  // MODE=router: create JSON with the inline body
  std::string direct_create;  // MODE=direct: envelope only
  std::string message;        // MODE=direct: the body bytes
  Stats st;
};

std::string make_message() {
  std::string m =
      "From: alice@example.com\r\nTo: bob@example.com\r\nSubject: delivery bench\r\n"
      "Message-ID: <bench@example.com>\r\n\r\n";
  while (m.size() < 2000) m += "the quick brown fox jumps over the lazy dog 0123456789\r\n";
  return m;
}

// {"code": 250, ...} -> 250; 0 when absent or malformed.
int code_in(const json::value* v) {
  if (!v || !v->is_object()) return 0;
  const json::value* c = v->as_object().if_contains("code");
  return c && c->is_int64() ? static_cast<int>(c->as_int64()) : 0;
}
int code_of(const json::object& o, const char* key) { return code_in(o.if_contains(key)); }

Result<json::object> parse_object(const std::string& s) {
  boost::system::error_code ec;
  json::value v = json::parse(s, ec);
  if (ec || !v.is_object()) return Error(Errc::bad_request, "response is not a JSON object");
  return std::move(v.as_object());
}

std::string status_error(const char* what, const Result<http::ClientResponse>& r) {
  if (!r) return std::string(what) + ": " + r.error().message;
  return std::string(what) + ": status " + std::to_string(r->status) + " " + r->body.substr(0, 200);
}

// Long-polls `url` until its JSON has `key`; `etag` is updated.
Task<Result<json::object>> poll_until(http::Client& client, std::string url, std::string* etag,
                                      const char* key, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    http::ClientRequest g;
    g.url = url;
    if (!etag->empty()) g.headers.set("if-none-match", *etag);
    g.headers.set("request-timeout", "10");
    g.timeout = 15s;
    Result<http::ClientResponse> r = co_await client.request(std::move(g));
    if (!r || (r->status != 200 && r->status != 304)) co_return Error(Errc::unavailable, status_error("GET", r));
    if (r->status == 304) continue;
    if (auto e = r->headers.get("etag")) *etag = std::string(*e);
    Result<json::object> o = parse_object(r->body);
    if (!o) co_return o.error();
    if (o->contains(key)) co_return o;
  }
  co_return Error(Errc::timeout, std::string("no ") + key + " in time");
}

Task<Result<void>> one_router(Load& l, Clock::time_point deadline) {
  http::ClientRequest c;
  c.method = "POST";
  c.url = l.base + "/senders/" + l.sender + "/transactions";
  c.headers.set("content-type", "application/json");
  c.body = l.router_create;
  Result<http::ClientResponse> r = co_await l.client->request(std::move(c));
  if (!r || r->status != 201 || !r->headers.get("location")) co_return Error(Errc::unavailable, status_error("create", r));
  std::string etag(r->headers.get("etag").value_or(""));
  std::string loc(*r->headers.get("location"));
  Result<json::object> fin = co_await poll_until(*l.client, std::move(loc), &etag, "final_attempt_reason", deadline);
  if (!fin) co_return fin.error();
  const json::value& why = fin->at("final_attempt_reason");
  if (!why.is_string() || why.as_string() != "upstream response success") {
    co_return Error(Errc::unavailable, "final_attempt_reason " + json::serialize(*fin));
  }
  co_return Result<void>();
}

Task<Result<void>> one_direct(Load& l, Clock::time_point deadline) {
  http::ClientRequest c;
  c.method = "POST";
  c.url = l.base + "/senders/" + l.sender + "/transactions";
  c.headers.set("content-type", "application/json");
  c.body = l.direct_create;
  Result<http::ClientResponse> r = co_await l.client->request(std::move(c));
  if (!r || r->status != 201 || !r->headers.get("location")) co_return Error(Errc::unavailable, status_error("create", r));
  std::string etag(r->headers.get("etag").value_or(""));
  std::string loc(*r->headers.get("location"));
  Result<json::object> read = parse_object(r->body);
  if (!read) co_return read.error();
  if (!read->contains("mail_response") || !read->contains("rcpt_response")) {
    read = co_await poll_until(*l.client, loc, &etag, "rcpt_response", deadline);
    if (!read) co_return read.error();
  }
  const json::value* rr = read->if_contains("rcpt_response");
  if (code_of(*read, "mail_response") != 250 || !rr || !rr->is_array() || rr->as_array().empty() ||
      code_in(&rr->as_array()[0]) != 250) {
    co_return Error(Errc::unavailable, "envelope refused: " + json::serialize(*read));
  }
  const json::value* uri = nullptr;
  if (const json::value* b = read->if_contains("body"); b && b->is_object()) {
    if (const json::value* bs = b->as_object().if_contains("blob_status"); bs && bs->is_object()) {
      uri = bs->as_object().if_contains("uri");
    }
  }
  if (!uri || !uri->is_string()) co_return Error(Errc::unavailable, "no body.blob_status.uri");
  http::ClientRequest put;
  put.method = "PUT";
  put.url = std::string(uri->as_string());
  put.body = l.message;
  Result<http::ClientResponse> p = co_await l.client->request(std::move(put));
  if (!p || p->status != 200) co_return Error(Errc::unavailable, status_error("PUT", p));
  Result<json::object> fin = co_await poll_until(*l.client, std::move(loc), &etag, "data_response", deadline);
  if (!fin) co_return fin.error();
  if (code_of(*fin, "data_response") != 250) {
    co_return Error(Errc::unavailable, "data_response " + json::serialize(*fin));
  }
  co_return Result<void>();
}

Task<void> worker(Load* l) {
  const bool router = l->mode == "router";
  while (l->st.remaining > 0) {
    --l->st.remaining;
    const auto t0 = Clock::now();
    const auto deadline = t0 + kMessageTimeout;
    Result<void> r;  // GCC 12.2: no `c ? co_await a : co_await b`
    if (router) {
      r = co_await one_router(*l, deadline);
    } else {
      r = co_await one_direct(*l, deadline);
    }
    if (!r) {
      if (l->st.failed++ == 0) {
        l->st.first_failure = r.error().message;
        std::fprintf(stderr, "first failure: %s\n", r.error().message.c_str());
      }
      continue;
    }
    l->st.lat_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6 || (std::string(argv[5]) != "router" && std::string(argv[5]) != "direct")) {
    std::fprintf(stderr, "usage: delivery_load BASE_URL SENDER N CONCURRENCY router|direct\n");
    return 2;
  }
  int n = std::atoi(argv[3]), c = std::atoi(argv[4]);
  boost::asio::io_context io;
  http::ClientOptions opts;
  opts.max_idle_per_host = static_cast<std::size_t>(c);
  http::Client client(io.get_executor(), opts);
  Load l{&client, argv[1], argv[2], argv[5], {}, {}, make_message(), {}};
  l.direct_create = R"({"mail_from":{"m":"alice@example.com"},"rcpt_to":[{"m":"bob@example.com"}]})";
  json::string text(l.message);
  l.router_create = R"({"mail_from":{"m":"alice@example.com"},"rcpt_to":[{"m":"bob@example.com"}],)"
                    R"("body":{"inline":)" + json::serialize(text) + "}}";
  l.st.remaining = n;
  const auto t0 = Clock::now();
  for (int i = 0; i < c; ++i) spawn(io.get_executor(), worker(&l), "delivery_load");
  io.run();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<double>& lat = l.st.lat_ms;
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * lat.size()))];
  };
  std::printf("ok=%zu failed=%d seconds=%.2f msgs/s=%.0f p50_ms=%.2f p99_ms=%.2f\n", lat.size(),
              l.st.failed, secs, lat.size() / secs, pct(0.5), pct(0.99));
  return l.st.failed == 0 ? 0 : 1;
}
