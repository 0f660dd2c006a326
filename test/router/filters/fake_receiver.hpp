#pragma once
// An in-process receiver speaking the router -> receiver protocol
// (spec/rest-api.md §9.4), on 127.0.0.1:0, with scripted behaviour, for the
// rest_output tests. Everything runs on the test's io_context; tests read the
// recorded requests and transactions after a chain pass returns.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/core.h>

#include "common/http/server.hpp"
#include "common/http/types.hpp"

namespace koukan::router::filters::testing {

namespace json = boost::json;

// Responses for one upstream transaction (nullopt: never answered).
struct Script {
  std::optional<int> mail = 250;
  std::optional<int> rcpt = 250;
  std::optional<int> data = 250;
  int delay_gets = 0;          // mail/rcpt responses appear after this many GETs
  int create_status = 201;     // anything else: refuse the create with it
};

struct Logged {
  std::string method, path, body;
  http::Headers headers;
};

struct FakeTx {
  std::string id;
  json::object create;
  int version = 1;
  Script script;
  int gets = 0;
  std::size_t rcpts = 0;
  std::optional<int> mail;
  std::vector<std::optional<int>> rcpt;
  std::optional<int> data;
  std::string body;
  std::optional<std::int64_t> total;
  bool cancelled = false;
  std::vector<json::object> filter_output_patches;

  bool finalized() const { return total && static_cast<std::int64_t>(body.size()) == *total; }
};

class FakeReceiver {
 public:
  explicit FakeReceiver(boost::asio::io_context& io)
      : server_(io, http::ServerOptions{}, [this](http::Request& r) { return handle(r); }) {
    auto l = server_.listen();
    if (!l) throw std::runtime_error(l.error().message);
    server_.start();
    base = fmt::format("http://127.0.0.1:{}", server_.port());
  }

  std::string endpoint(const std::string& prefix = "") const {
    return base + prefix + "/senders/router/transactions";
  }
  http::Server& server() { return server_; }

  // ---- knobs ----
  std::string base;
  std::function<Script(const json::object& create)> script_for = [](const json::object&) {
    return Script{};
  };
  std::string body_prefix;        // e.g. "/r": advertise body URIs that get a 308
  int shrink_before_put = -1;     // before the PUT with this 1-based index ...
  std::size_t shrink_to = 0;      // ... the stored body is cut to this length
  std::chrono::milliseconds long_poll{50};

  // ---- observations ----
  std::vector<Logged> log;
  std::map<std::string, FakeTx> txs;
  std::vector<std::string> order;
  int puts = 0;

  FakeTx& tx(std::size_t i) { return txs.at(order.at(i)); }
  std::vector<const Logged*> requests(const std::string& method) const {
    std::vector<const Logged*> out;
    for (const auto& l : log) {
      if (l.method == method) out.push_back(&l);
    }
    return out;
  }

 private:
  static http::Response with_etag(http::Response r, int version) {
    r.headers.set("etag", std::to_string(version));
    return r;
  }

  static json::object resp(int code, const std::string& what) {
    json::object o;
    o["code"] = code;
    o["message"] = fmt::format("{} {}", what, code);
    return o;
  }

  json::object read_json(const FakeTx& t) const {
    json::object out;
    for (const char* k : {"remote_host", "local_host"}) {
      if (const auto* v = t.create.if_contains(k)) out[k] = *v;
    }
    if (t.create.contains("mail_from")) out["mail_from"] = json::object();
    if (t.mail) out["mail_response"] = resp(*t.mail, "mail");
    if (t.rcpts) {
      json::array a;
      for (std::size_t i = 0; i < t.rcpts; ++i) a.push_back(json::object());
      out["rcpt_to"] = std::move(a);
    }
    std::size_t n = t.rcpt.size();
    while (n > 0 && !t.rcpt[n - 1]) --n;
    if (n) {
      json::array a;
      for (std::size_t i = 0; i < n; ++i) {
        a.push_back(t.rcpt[i] ? json::value(resp(*t.rcpt[i], "rcpt")) : json::value(json::object()));
      }
      out["rcpt_response"] = std::move(a);
    }
    if (t.data) out["data_response"] = resp(*t.data, "data");
    json::object bs;
    bs["uri"] = base + body_prefix + "/transactions/" + t.id + "/body";
    if (t.finalized()) bs["finalized"] = true;
    json::object body;
    body["blob_status"] = std::move(bs);
    out["body"] = std::move(body);
    if (t.create.contains("sender")) out["sender"] = json::object();
    return out;
  }

  http::Response tx_response(int status, const FakeTx& t) const {
    return with_etag(http::Response::json(status, json::serialize(read_json(t))), t.version);
  }

  void answer_envelope(FakeTx& t, std::size_t first_rcpt) {
    if (t.script.delay_gets > t.gets) return;
    if (t.script.mail && !t.mail) t.mail = t.script.mail;
    if (t.rcpt.size() < t.rcpts) t.rcpt.resize(t.rcpts);
    for (std::size_t i = first_rcpt; i < t.rcpts; ++i) {
      if (!t.rcpt[i] && t.script.rcpt) t.rcpt[i] = t.script.rcpt;
    }
  }

  static Task<void> pause(std::chrono::milliseconds d) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    timer.expires_after(d);
    auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
    co_await timer.async_wait(token);
  }

  static std::vector<std::string> split(const std::string& path) {
    std::vector<std::string> out;
    std::size_t i = 1;
    while (i <= path.size()) {
      std::size_t j = path.find('/', i);
      if (j == std::string::npos) j = path.size();
      out.push_back(path.substr(i, j - i));
      i = j + 1;
    }
    return out;
  }

  Task<http::Response> handle(http::Request& req) {
    Result<std::string> body = co_await req.read_all(64 << 20);
    if (!body) co_return http::Response::text(400, "body");
    log.push_back(Logged{req.method, req.path, *body, req.headers});
    if (req.path.starts_with("/r/")) {
      http::Response r = http::Response::empty(308);
      r.headers.set("location", base + req.path.substr(2));
      co_return r;
    }
    std::vector<std::string> parts = split(req.path);
    if (req.method == "POST" && parts.size() == 3 && parts[0] == "senders") {
      auto v = json::parse(*body);
      FakeTx t;
      t.create = v.as_object();
      t.script = script_for(t.create);
      if (t.script.create_status != 201) co_return http::Response::text(t.script.create_status, "no");
      t.id = "T" + std::to_string(order.size() + 1);
      if (const auto* r = t.create.if_contains("rcpt_to")) t.rcpts = r->as_array().size();
      answer_envelope(t, 0);
      order.push_back(t.id);
      FakeTx& stored = txs[t.id] = std::move(t);
      http::Response r = tx_response(201, stored);
      r.headers.set("location", base + "/transactions/" + stored.id);
      co_return r;
    }
    if (parts.size() < 2 || parts[0] != "transactions" || !txs.contains(parts[1])) {
      co_return http::Response::text(404, "not found");
    }
    FakeTx& t = txs[parts[1]];
    if (req.method == "POST" && parts.size() == 3 && parts[2] == "cancel") {
      t.cancelled = true;
      ++t.version;
      co_return http::Response::empty(200);
    }
    if (req.method == "GET" && parts.size() == 2) {
      ++t.gets;
      const auto answered = [&t] {
        std::size_t n = t.mail ? 1 : 0;
        for (const auto& r : t.rcpt) n += r ? 1 : 0;
        return n;
      };
      const std::size_t before = answered();
      answer_envelope(t, 0);
      if (answered() != before) ++t.version;
      auto inm = req.headers.get("if-none-match");
      if (inm && *inm == std::to_string(t.version)) {
        co_await pause(long_poll);
        http::Response r = http::Response::empty(304);
        r.headers.set("etag", std::string(*inm));
        co_return r;
      }
      co_return tx_response(200, t);
    }
    if (req.method == "PATCH" && parts.size() == 2) {
      auto im = req.headers.get("if-match");
      if (!im || *im != std::to_string(t.version)) co_return http::Response::text(412, "version");
      auto ct = req.headers.get("content-type");
      std::size_t first = t.rcpts;
      if (ct && *ct == "application/json") {
        auto v = json::parse(*body).as_object();
        if (const auto* r = v.if_contains("rcpt_to")) {
          std::size_t off = 0;
          if (const auto* o = v.if_contains("rcpt_to_list_offset")) off = o->to_number<std::size_t>();
          if (off != t.rcpts) co_return http::Response::text(400, "offset");
          t.rcpts += r->as_array().size();
        }
        if (const auto* fo = v.if_contains("filter_output")) {
          t.filter_output_patches.push_back(fo->as_object());
        }
      } else if (!body->empty()) {
        co_return http::Response::text(400, "body without json");
      }
      answer_envelope(t, first);
      ++t.version;
      co_return tx_response(200, t);
    }
    if (req.method == "PUT" && parts.size() == 3 && parts[2] == "body") {
      ++puts;
      if (puts == shrink_before_put && t.body.size() > shrink_to) t.body.resize(shrink_to);
      auto cr = req.headers.get("content-range");
      auto fin = req.headers.get("x-finalize-blob-length");
      int status = 200;
      if (fin) {
        t.total = std::stoll(std::string(*fin));
      } else if (cr) {
        long long first = 0, last = 0;
        char total[32] = {0};
        std::string s(*cr);
        if (std::sscanf(s.c_str(), "bytes %lld-%lld/%31s", &first, &last, total) != 3) {
          co_return http::Response::text(400, "bad range");
        }
        if (first > static_cast<long long>(t.body.size())) {
          status = 416;
        } else {
          t.body.resize(static_cast<std::size_t>(first));
          t.body += *body;
          if (std::string(total) != "*") t.total = std::stoll(total);
        }
      } else {
        t.body = *body;
        t.total = static_cast<std::int64_t>(t.body.size());
      }
      if (t.finalized() && !t.data && t.script.data) t.data = t.script.data;
      ++t.version;
      http::Response r = http::Response::json(status, "{}");
      std::string total = t.total ? std::to_string(*t.total) : "*";
      r.headers.set("content-range", t.body.empty()
                                         ? "bytes */" + total
                                         : fmt::format("bytes 0-{}/{}", t.body.size() - 1, total));
      co_return r;
    }
    co_return http::Response::text(405, "method");
  }

  http::Server server_;
};

}  // namespace koukan::router::filters::testing
