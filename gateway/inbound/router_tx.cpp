#include "gateway/inbound/router_tx.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fmt/core.h>

#include "common/http/rest_util.hpp"

namespace koukan::gateway {

using http::strip_quotes;

namespace {

std::chrono::milliseconds left_of(Clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
}

void set_request_timeout(http::Headers& h, std::chrono::milliseconds left) {
  const auto secs = left.count() / 1000;
  if (secs >= 2) h.set("request-timeout", std::to_string(secs - 1));
}

Task<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}


// "bytes 0-N/..." -> N+1 stored; "bytes */T" -> 0.
std::optional<std::int64_t> stored_length(std::string_view cr) {
  if (cr.rfind("bytes ", 0) != 0) return std::nullopt;
  cr.remove_prefix(6);
  if (!cr.empty() && cr[0] == '*') return 0;
  auto dash = cr.find('-');
  auto slash = cr.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return std::nullopt;
  if (cr.substr(0, dash) != "0") return std::nullopt;
  std::int64_t end = 0;
  for (char c : cr.substr(dash + 1, slash - dash - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    end = end * 10 + (c - '0');
  }
  return end + 1;
}

}  // namespace

Task<Result<http::ClientResponse>> RouterTx::send(http::ClientRequest req) {
  // Follow 307/308 (a replica redirect), method and body preserved.
  for (int hop = 0; hop < 5; ++hop) {
    http::ClientRequest copy = req;
    auto r = co_await client_.request(std::move(copy));
    if (!r.ok()) co_return r.error();
    if (r->status != 307 && r->status != 308) co_return r;
    auto loc = r->headers.get("location");
    if (!loc) co_return Error(Errc::unavailable, "redirect without location");
    std::string l(*loc);
    if (!l.empty() && l[0] == '/') {
      auto p = req.url.find('/', req.url.find("://") + 3);
      l = req.url.substr(0, p) + l;
    }
    if (req.url == url_ || req.url.rfind(url_ + "/", 0) == 0) {
      // The transaction moved: later requests go there too.
      if (req.url == url_) url_ = l;
    }
    req.url = l;
  }
  co_return Error(Errc::unavailable, "too many redirects");
}

Result<void> RouterTx::take(const http::ClientResponse& r, int expected_status) {
  if (r.status != expected_status)
    return Error(Errc::unavailable, fmt::format("http status {}", r.status));
  auto etag = r.headers.get("etag");
  if (!etag) return Error(Errc::unavailable, "response without etag");
  return take_tx(r.body, *etag);
}

Result<void> RouterTx::take_tx(std::string_view body, std::string_view etag) {
  auto tx = tx_from_json_string(body, View::RestRead);
  if (!tx.ok()) return Error(Errc::unavailable, "bad response json: " + tx.error().message);
  etag_ = strip_quotes(etag);
  // Responses only grow; take the server's view of them.
  if (tx->mail_response) state_.mail_response = tx->mail_response;
  for (std::size_t i = 0; i < tx->rcpt_response.size(); ++i) {
    if (state_.rcpt_response.size() <= i) state_.rcpt_response.resize(i + 1);
    if (tx->rcpt_response[i]) state_.rcpt_response[i] = tx->rcpt_response[i];
  }
  if (tx->data_response) state_.data_response = tx->data_response;
  if (tx->body) {
    if (const auto* bs = std::get_if<BodyStatus>(&*tx->body); bs && bs->blob_status &&
                                                                  body_url_.empty())
      body_url_ = bs->blob_status->uri;
  }
  return {};
}

Task<Result<void>> RouterTx::get_once(Clock::time_point deadline) {
  http::ClientRequest req;
  req.method = "GET";
  req.url = url_;
  if (!etag_.empty()) req.headers.set("if-none-match", etag_);
  auto left = left_of(deadline);
  set_request_timeout(req.headers, left);
  req.timeout = std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(1000));
  auto r = co_await send(std::move(req));
  if (!r.ok()) co_return Error(r.error().code, "GET: " + r.error().message);
  if (r->status == 304) co_return Result<void>();
  co_return take(*r, 200);
}

template <class Pred>
Task<Result<void>> RouterTx::poll(Clock::time_point deadline, Pred pred, const char* what) {
  while (!pred(state_)) {
    auto left = left_of(deadline);
    if (left < std::chrono::milliseconds(200))
      co_return Error(Errc::timeout, fmt::format("router did not answer {} in time", what));
    const auto started = Clock::now();
    const std::string before = etag_;
    auto r = co_await get_once(deadline);
    if (!r.ok()) co_return r.error();
    // Anti-spin: an unchanged answer that came back fast (a server without
    // long-poll) waits out the rest of a second.
    if (etag_ == before && Clock::now() - started < std::chrono::seconds(1) && !pred(state_)) {
      auto pause = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::seconds(1) - (Clock::now() - started));
      pause = std::min(pause, left_of(deadline));
      if (pause.count() > 0) co_await sleep_for(pause);
    }
  }
  co_return Result<void>();
}

Task<Result<Response>> RouterTx::create(const TransactionMetadata& tx, Clock::time_point deadline) {
  http::ClientRequest req;
  req.method = "POST";
  req.url = create_url_;
  req.headers.set("content-type", "application/json");
  auto left = left_of(deadline);
  set_request_timeout(req.headers, left);
  req.timeout = std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(500));
  req.body = tx_to_json_string(tx, View::RestCreate);
  auto r = co_await send(std::move(req));
  if (!r.ok()) co_return Error(r.error().code, "router unreachable: " + r.error().message);
  auto loc = r->headers.get("location");
  if (r->status != 201) {
    std::string detail = r->body.size() > 200 ? r->body.substr(0, 200) : r->body;
    co_return Error(Errc::unavailable, fmt::format("router answered {} {}", r->status, detail));
  }
  if (!loc) co_return Error(Errc::unavailable, "router create without location");
  url_ = std::string(*loc);
  if (auto t = take(*r, 201); !t.ok()) co_return t.error();
  const std::size_t n = tx.rcpt_to.size();
  rcpts_ = n;
  auto pred = [n](const TransactionMetadata& s) {
    if (!s.mail_response) return false;
    if (s.mail_response->err()) return true;
    for (std::size_t i = 0; i < n; ++i)
      if (i >= s.rcpt_response.size() || !s.rcpt_response[i]) return false;
    return true;
  };
  auto p = co_await poll(deadline, pred, n ? "MAIL and RCPT" : "MAIL");
  if (!p.ok()) co_return p.error();
  co_return *state_.mail_response;
}

Task<Result<Response>> RouterTx::add_rcpt(const Mailbox& rcpt, Clock::time_point deadline) {
  const std::size_t index = rcpts_;
  TransactionMetadata d;
  d.rcpt_to.push_back(rcpt);
  d.rcpt_to_list_offset = index;
  const std::string body = tx_to_json_string(d, View::RestUpdate);
  for (int attempt = 0; attempt < 2; ++attempt) {
    http::ClientRequest req;
    req.method = "PATCH";
    req.url = url_;
    req.headers.set("if-match", etag_);
    req.headers.set("content-type", "application/json");
    auto left = left_of(deadline);
    set_request_timeout(req.headers, left);
    req.timeout = std::max<std::chrono::milliseconds>(left, std::chrono::milliseconds(500));
    req.body = body;
    auto r = co_await send(std::move(req));
    if (!r.ok()) co_return Error(r.error().code, "router unreachable: " + r.error().message);
    if (r->status == 412 && attempt == 0) {
      // Our view was stale (the router wrote responses): refresh, retry once.
      etag_.clear();
      auto g = co_await get_once(deadline);
      if (!g.ok()) co_return g.error();
      continue;
    }
    if (auto t = take(*r, 200); !t.ok()) co_return t.error();
    break;
  }
  rcpts_ = index + 1;
  auto pred = [index](const TransactionMetadata& s) {
    return (s.mail_response && s.mail_response->err()) ||
           (s.rcpt_response.size() > index && s.rcpt_response[index].has_value());
  };
  auto p = co_await poll(deadline, pred, "RCPT");
  if (!p.ok()) co_return p.error();
  if (state_.rcpt_response.size() > index && state_.rcpt_response[index])
    co_return *state_.rcpt_response[index];
  co_return Response(state_.mail_response->code, "RCPT failed precondition MAIL");
}

Task<Result<void>> RouterTx::put_body(std::string_view piece, bool last,
                                      std::chrono::milliseconds put_timeout,
                                      std::optional<std::chrono::milliseconds> await_data) {
  if (body_url_.empty()) body_url_ = url_ + "/body";
  std::string_view rest = piece;
  // Resend loop: the router's Content-Range tells what it has.
  for (int round = 0; round < 8; ++round) {
    const std::int64_t off = body_offset_;
    const std::int64_t total = off + static_cast<std::int64_t>(rest.size());
    http::ClientRequest req;
    req.method = "PUT";
    req.url = body_url_;
    req.timeout = put_timeout;
    if (rest.empty() && last) {
      req.headers.set("x-finalize-blob-length", std::to_string(total));
    } else if (rest.empty()) {
      co_return Result<void>();
    } else if (!(off == 0 && last)) {
      req.headers.set("content-range", fmt::format("bytes {}-{}/{}", off, total - 1,
                                                   last ? std::to_string(total) : std::string("*")));
    }
    if (last && await_data) {
      req.headers.set(std::string(http::kWaitDataHeader), std::to_string(await_data->count()));
      req.timeout = std::max(req.timeout, *await_data + put_timeout);
    }
    req.body = std::string(rest);
    auto r = co_await send(std::move(req));
    if (!r.ok()) co_return Error(r.error().code, "body upload: " + r.error().message);
    if (r->status != 200 && r->status != 416)
      co_return Error(Errc::unavailable, fmt::format("body upload: http status {}", r->status));
    std::int64_t stored = total;
    if (auto cr = r->headers.get("content-range")) {
      auto n = stored_length(*cr);
      if (!n || *n > total) co_return Error(Errc::unavailable, "body upload: bad content-range from router");
      stored = *n;
    } else if (r->status == 416) {
      co_return Error(Errc::unavailable, "body upload: 416 without content-range");
    }
    if (stored < off) co_return Error(Errc::unavailable, "body upload: router lost data");
    body_offset_ = stored;
    // Our router names the version the completing PUT produced: poll for the
    // data response from there (no GET that only reports our own upload).
    if (auto v = r->headers.get("x-koukan-tx-etag"); v && last && stored == total && !v->empty())
      etag_ = strip_quotes(*v);
    // Asked for and given: the transaction as of that version (ours).
    if (auto v = r->headers.get(http::kTxJsonHeader); v && last && stored == total && r->status == 200) {
      if (auto t = take_tx(r->body, *v); !t.ok()) co_return Error(t.error().code, "body upload: " + t.error().message);
    }
    if (stored == total) co_return Result<void>();
    rest = rest.substr(static_cast<std::size_t>(stored - off));
  }
  co_return Error(Errc::unavailable, "body upload: no progress");
}

Task<Result<Response>> RouterTx::wait_data(Clock::time_point deadline) {
  auto pred = [](const TransactionMetadata& s) { return s.data_response.has_value(); };
  auto p = co_await poll(deadline, pred, "DATA");
  if (!p.ok()) co_return p.error();
  co_return *state_.data_response;
}

Task<Result<void>> RouterTx::heartbeat(std::chrono::milliseconds timeout) {
  if (url_.empty()) co_return Result<void>();
  http::ClientRequest req;
  req.method = "PATCH";
  req.url = url_;
  req.headers.set("if-match", etag_);
  req.timeout = timeout;
  auto r = co_await send(std::move(req));
  if (!r.ok()) co_return r.error();
  if (r->status == 412) {
    etag_.clear();
    auto g = co_await get_once(Clock::now() + timeout);
    if (!g.ok()) co_return g.error();
    co_return Result<void>();
  }
  co_return take(*r, 200);
}

Task<void> RouterTx::cancel() {
  if (url_.empty() || cancelled_ || state_.data_response) co_return;
  cancelled_ = true;
  http::ClientRequest req;
  req.method = "POST";
  req.url = url_ + "/cancel";
  req.timeout = std::chrono::seconds(5);
  auto r = co_await send(std::move(req));
  if (!r.ok()) lg_.info("cancel {}: {}", url_, r.error().message);
}

}  // namespace koukan::gateway
