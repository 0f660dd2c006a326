#pragma once
// Test rig for the gateway's outbound side: the RestHandler served by a real
// http::Server on 127.0.0.1:0, an http::Client, and a scripted fake SMTP
// server reached through the injected connector over an in-memory pipe.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "common/http/client.hpp"
#include "common/http/server.hpp"
#include "common/smtp/stream.hpp"
#include "gateway/outbound/rest_handler.hpp"
#include "test/common/http/http_test_util.hpp"

namespace koukan::gateway::outbound::testing {

namespace json = boost::json;
using namespace std::chrono_literals;

// A scripted SMTP server. State is touched on the io thread and read by the
// test thread: guarded by `mu`.
struct FakeSmtp {
  std::mutex mu;
  std::vector<std::string> commands;  // command lines (not DATA/BDAT payload)
  std::string data;                   // message as the server got it (unstuffed)
  std::vector<HostPort> connects;
  bool quit_seen = false;
  bool closed = false;
  // script
  bool refuse = false;
  bool chunking = false;            // offer CHUNKING
  std::atomic<bool> stall_data{false};  // hold the DATA 354 while set
  std::atomic<int> greeting_delay_ms{0};  // a slow destination: 220 after this
  std::atomic<bool> drop_after_rset{false};  // close the session after answering RSET
  std::string mail_reply = "250 2.1.0 sender ok";
  std::string data_reply = "250 2.0.0 accepted";

  std::vector<std::string> cmds() {
    std::lock_guard l(mu);
    return commands;
  }
  std::string got_data() {
    std::lock_guard l(mu);
    return data;
  }
  bool quit() {
    std::lock_guard l(mu);
    return quit_seen;
  }
  std::size_t n_connects() {
    std::lock_guard l(mu);
    return connects.size();
  }
  bool saw(std::string_view prefix) {
    std::lock_guard l(mu);
    for (const auto& c : commands)
      if (c.rfind(prefix, 0) == 0) return true;
    return false;
  }
};

inline Task<bool> fake_send(smtp::ByteStream& s, std::string text) {
  auto r = co_await s.write_all(text);
  co_return r.ok();
}

// Next line (without CRLF) from `in` + the stream; nullopt at EOF/error.
inline Task<std::optional<std::string>> fake_line(smtp::ByteStream& s, std::string& in) {
  std::array<char, 4096> buf;
  for (;;) {
    auto nl = in.find("\r\n");
    if (nl != std::string::npos) {
      std::string l = in.substr(0, nl);
      in.erase(0, nl + 2);
      co_return l;
    }
    std::span<char> b(buf);
    auto r = co_await s.read_some(b);
    if (!r.ok() || *r == 0) co_return std::nullopt;
    in.append(buf.data(), *r);
  }
}

inline Task<std::optional<std::string>> fake_bytes(smtp::ByteStream& s, std::string& in, std::size_t n) {
  std::array<char, 4096> buf;
  while (in.size() < n) {
    std::span<char> b(buf);
    auto r = co_await s.read_some(b);
    if (!r.ok() || *r == 0) co_return std::nullopt;
    in.append(buf.data(), *r);
  }
  std::string out = in.substr(0, n);
  in.erase(0, n);
  co_return out;
}

inline std::string upper4(const std::string& l) {
  std::string u = l.substr(0, 4);
  for (auto& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return u;
}

inline Task<void> fake_session(std::shared_ptr<FakeSmtp> f, std::unique_ptr<smtp::ByteStream> s) {
  std::string in;
  auto ex = co_await asio::this_coro::executor;
  if (const int d = f->greeting_delay_ms.load(); d > 0) {
    asio::steady_timer t(ex, std::chrono::milliseconds(d));
    auto op = t.async_wait(asio::as_tuple(asio::use_awaitable));
    co_await std::move(op);
  }
  co_await fake_send(*s, "220 fake.test ESMTP koukan fake smtpd\r\n");
  for (;;) {
    auto line = co_await fake_line(*s, in);
    if (!line) break;
    {
      std::lock_guard l(f->mu);
      f->commands.push_back(*line);
    }
    const std::string verb = upper4(*line);
    std::string reply;
    if (verb == "EHLO" || verb == "LHLO") {
      reply = "250-fake.test\r\n250-8BITMIME\r\n";
      if (f->chunking) reply += "250-CHUNKING\r\n";
      reply += "250 SMTPUTF8\r\n";
    } else if (verb == "MAIL") {
      reply = f->mail_reply + "\r\n";
    } else if (verb == "RCPT") {
      reply = line->find("rcptperm") != std::string::npos ? "550 5.1.1 rcpt perm\r\n" : "250 2.1.5 rcpt ok\r\n";
    } else if (verb == "DATA") {
      while (f->stall_data) {
        asio::steady_timer t(ex);
        t.expires_after(10ms);
        auto op = t.async_wait(asio::as_tuple(asio::use_awaitable));
        co_await std::move(op);
      }
      co_await fake_send(*s, "354 go ahead\r\n");
      std::string body;
      bool ended = false;
      for (;;) {
        auto dl = co_await fake_line(*s, in);
        if (!dl) break;
        if (*dl == ".") {
          ended = true;
          break;
        }
        if (!dl->empty() && (*dl)[0] == '.') dl->erase(0, 1);
        body += *dl + "\r\n";
      }
      if (!ended) break;
      {
        std::lock_guard l(f->mu);
        f->data = body;
      }
      reply = f->data_reply + "\r\n";
    } else if (verb == "BDAT") {
      std::string rest = line->substr(5);
      const bool last = rest.find(" LAST") != std::string::npos || rest.find(" last") != std::string::npos;
      const std::size_t n = std::stoul(rest);
      auto bytes = co_await fake_bytes(*s, in, n);
      if (!bytes) break;
      {
        std::lock_guard l(f->mu);
        f->data += *bytes;
      }
      reply = last ? f->data_reply + "\r\n" : "250 2.0.0 chunk ok\r\n";
    } else if (verb == "QUIT") {
      {
        std::lock_guard l(f->mu);
        f->quit_seen = true;
      }
      co_await fake_send(*s, "221 2.0.0 bye\r\n");
      break;
    } else if (verb == "RSET" || verb == "NOOP") {
      reply = "250 2.0.0 ok\r\n";
    } else {
      reply = "500 5.5.2 unknown command\r\n";
    }
    if (!co_await fake_send(*s, reply)) break;
    if (verb == "RSET" && f->drop_after_rset) break;  // an idle session the server drops
  }
  s->close();
  std::lock_guard l(f->mu);
  f->closed = true;
}

inline Task<Result<std::unique_ptr<smtp::ByteStream>>> fake_connect(std::shared_ptr<FakeSmtp> f,
                                                                    asio::any_io_executor ex, HostPort to) {
  bool refuse;
  {
    std::lock_guard l(f->mu);
    f->connects.push_back(to);
    refuse = f->refuse;
  }
  if (refuse) co_return Error(Errc::unavailable, "connection refused");
  auto [client, server] = smtp::make_pipe(ex);
  spawn(ex, fake_session(f, std::move(server)), "fake smtp");
  co_return std::move(client);
}

struct Reply {
  int status = 0;
  http::Headers headers;
  std::string body;
  std::string header(std::string_view n) const {
    auto v = headers.get(n);
    return v ? std::string(*v) : std::string();
  }
  json::object obj() const {
    auto v = json::parse(body);
    return v.is_object() ? v.as_object() : json::object();
  }
};

inline int code(const json::object& o, std::string_view field) {
  auto* v = o.if_contains(field);
  if (!v || !v->is_object()) return 0;
  return static_cast<int>(v->as_object().at("code").as_int64());
}
inline std::string message(const json::object& o, std::string_view field) {
  auto* v = o.if_contains(field);
  if (!v || !v->is_object()) return {};
  return std::string(v->as_object().at("message").as_string());
}
inline int rcpt_code(const json::object& o, std::size_t i) {
  auto* v = o.if_contains("rcpt_response");
  if (!v || !v->is_array() || v->as_array().size() <= i) return 0;
  return static_cast<int>(v->as_array()[i].as_object().at("code").as_int64());
}
inline bool finalized(const json::object& o) {
  auto* b = o.if_contains("body");
  if (!b) return false;
  auto* f = b->as_object().at("blob_status").as_object().if_contains("finalized");
  return f && f->is_bool() && f->as_bool();
}


inline const char* kSession = "http://gw.test:8001";

inline OutboundOptions default_options() {
  OutboundOptions o;
  o.listener.session_uri = kSession;
  o.listener.chunk_size = 8;  // PUTs are re-chunked into 8-byte pieces
  o.listener.rest_id_entropy = 8;
  o.listener.gc_interval = 0.05;
  SmtpHostConfig h;
  h.ehlo_host = "gw.example";
  h.timeout = 10;
  h.chunk_size = 4;  // SMTP writes of 4 bytes
  o.output.hosts["outbound"] = h;
  SmtpHostConfig b = h;
  b.enable_bdat = true;
  o.output.hosts["bdat"] = b;
  return o;
}

class OutboundFixture : public ::testing::Test {
 protected:
  void start(OutboundOptions o = default_options()) {
    fake_ = std::make_shared<FakeSmtp>();
    o.connector = [f = fake_](asio::any_io_executor ex, const HostPort& to, smtp::ConnectOptions) {
      return fake_connect(f, std::move(ex), to);
    };
    handler_ = std::make_unique<RestHandler>(io_.io().get_executor(), std::move(o));
    handler_->start();
    http::ServerOptions so;
    RestHandler* h = handler_.get();
    server_ = std::make_unique<http::Server>(io_.io(), so, [h](http::Request& r) { return h->handle(r); });
    auto l = server_->listen();
    ASSERT_TRUE(l.ok()) << l.error().message;
    server_->start();
    base_ = "http://127.0.0.1:" + std::to_string(server_->port());
    client_ = std::make_unique<http::Client>(io_.io().get_executor());
  }

  void TearDown() override {
    if (server_) {
      auto s = server_->shutdown(200ms);
      io_.run(std::move(s));
    }
    if (handler_) {
      auto s = handler_->shutdown(200ms);
      io_.run(std::move(s));
    }
    io_.stop();
    client_.reset();
    server_.reset();
    handler_.reset();
  }

  http::ClientRequest request(std::string method, std::string path, std::string body,
                              std::vector<http::Header> headers) {
    http::ClientRequest r;
    r.method = std::move(method);
    r.url = base_ + path;
    r.body = std::move(body);
    for (auto& h : headers) r.headers.add(h.name, h.value);
    r.timeout = 30s;
    return r;
  }

  static Reply to_reply(const Result<http::ClientResponse>& res) {
    Reply out;
    EXPECT_TRUE(res.ok()) << (res.ok() ? "" : res.error().message);
    if (!res.ok()) return out;
    out.status = res->status;
    out.headers = res->headers;
    out.body = res->body;
    return out;
  }

  Reply call(std::string method, std::string path, std::string body = {},
             std::vector<http::Header> headers = {}) {
    auto t = client_->request(request(std::move(method), std::move(path), std::move(body), std::move(headers)));
    return to_reply(io_.run(std::move(t), 40s));
  }

  std::future<Result<http::ClientResponse>> call_async(std::string method, std::string path, std::string body = {},
                                                       std::vector<http::Header> headers = {}) {
    auto t = client_->request(request(std::move(method), std::move(path), std::move(body), std::move(headers)));
    return io_.start(std::move(t));
  }

  Reply post_json(std::string path, std::string body) {
    return call("POST", std::move(path), std::move(body), {{"content-type", "application/json"}});
  }

  // Creates a transaction (tag outbound by default); returns its id.
  std::string create(std::string extra = R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}])",
                     std::string tag = "outbound", std::string remote = R"(["127.0.0.1", 25])") {
    std::string body = R"({"remote_host": )" + remote + R"(, "sender": {"name": "router", "tag": ")" + tag + "\"}";
    if (!extra.empty()) body += ", " + extra;
    body += "}";
    Reply r = post_json("/senders/router/transactions", body);
    EXPECT_EQ(r.status, 201) << r.body;
    std::string loc = r.header("location");
    auto slash = loc.rfind('/');
    return slash == std::string::npos ? std::string() : loc.substr(slash + 1);
  }

  // Long-polls until `pred(json)` holds (or ~15 s); returns the last reply.
  template <class Pred>
  Reply wait_for(const std::string& id, Pred pred) {
    Reply r = call("GET", "/transactions/" + id);
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (r.status == 200 && !pred(r.obj()) && std::chrono::steady_clock::now() < deadline) {
      Reply n = call("GET", "/transactions/" + id, {}, {{"if-none-match", r.header("etag")}, {"request-timeout", "2"}});
      if (n.status == 304) continue;
      r = n;
    }
    return r;
  }

  std::string tx_path(const std::string& id) const { return "/transactions/" + id; }

  http::testing::IoThread io_;
  std::shared_ptr<FakeSmtp> fake_;
  std::unique_ptr<RestHandler> handler_;
  std::unique_ptr<http::Server> server_;
  std::unique_ptr<http::Client> client_;
  std::string base_;
};

// Polls `cond` on the test thread for up to `limit`.
template <class F>
bool eventually(F cond, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

}  // namespace koukan::gateway::outbound::testing
