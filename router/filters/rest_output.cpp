// rest_output (RestEndpoint): see rest_output.hpp and docs/rest_output.md.
#include "router/filters/rest_output.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "common/base/log.hpp"
#include "common/http/client.hpp"
#include "common/http/rest_util.hpp"
#include "router/chain/chain.hpp"
#include "router/chain/filter.hpp"
#include "router/chain/registry.hpp"
#include "router/filters/builtin.hpp"

namespace koukan::router::filters {

namespace json = boost::json;
using http::strip_quotes;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::optional<HostPort> parse_sender_remote_host(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::string_view host = s, port;
  if (s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close == 1) return std::nullopt;
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else if (auto colon = s.find(':'); colon != std::string_view::npos) {
    if (s.find(':', colon + 1) != std::string_view::npos) {
      // A bare IPv6 literal: no port.
      host = s;
    } else {
      host = s.substr(0, colon);
      port = s.substr(colon + 1);
      if (host.empty() || port.empty()) return std::nullopt;
    }
  }
  HostPort hp{std::string(host), 8000};
  if (!port.empty()) {
    int p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || ptr != port.data() + port.size() || p <= 0 || p > 65535) {
      return std::nullopt;
    }
    hp.port = p;
  }
  return hp;
}

namespace {

constexpr int kMaxRedirects = 5;
constexpr int kMaxResyncs = 8;  // per pass: PUT answers that did not take the whole piece
constexpr milliseconds kCancelTimeout = 5s;
constexpr milliseconds kPollPace = 1s;

const char kNoEndpoint[] = "RestEndpoint no endpoint!";
const char kUpstreamTimeout[] = "RestEndpoint upstream timeout";
const char kInvalidGet[] = "RestEndpoint upstream invalid resp/delta get";
const char kBlobUploadError[] = "RestEndpoint blob upload error";
const char kPutErr[] = "RestEndpoint._put_blob_chunk PUT err";
const char kBadContentRange[] = "invalid resp content-range";
const char kMessageBuilder[] =
    "5.6.0 message_builder body needs the message_builder filter (RestEndpoint)";
const char kReuseBody[] = "5.6.0 reuse_uri body must be resolved by storage (RestEndpoint)";

// ---- per-transaction state -------------------------------------------------------------

struct RestOutputState final : chain::FilterState {
  bool started = false;           // upstream tx created and accepted
  bool start_failed = false;      // no endpoint / every host failed: nothing more to do
  std::string tx_url;             // Location of the upstream tx
  std::string etag;               // last version seen
  TransactionMetadata sent;       // what the upstream was sent (create + patches)
  std::optional<TransactionMetadata> read;  // last READ parsed from the upstream
  std::vector<std::size_t> rcpt_map;        // upstream rcpt index -> tx rcpt index
  std::size_t rcpts_seen = 0;     // tx rcpts considered (sent or skipped)
  std::string body_url;           // where to PUT the body
  std::int64_t body_off = 0;      // bytes the upstream holds
  bool body_done = false;         // the upstream holds the whole, finalized body
  bool cancel_sent = false;
};

// One on_update() call.
struct Pass {
  const RestOutputConfig& cfg;
  http::Client& client;
  RestOutputState& st;
  TransactionMetadata& tx;
  const TransactionMetadata& delta;
  chain::TxEnv* env;
  log::Logger log;
  Clock::time_point deadline;
  bool send_filter_output = false;
};

// ---- small helpers -----------------------------------------------------------------------

bool truthy(const json::value* v) {
  if (!v || v->is_null()) return false;
  if (v->is_bool()) return v->as_bool();
  if (v->is_int64()) return v->as_int64() != 0;
  if (v->is_uint64()) return v->as_uint64() != 0;
  if (v->is_double()) return v->as_double() != 0;
  if (v->is_string()) return !v->as_string().empty();
  if (v->is_array()) return !v->as_array().empty();
  return !v->as_object().empty();
}

milliseconds left(Clock::time_point deadline) {
  auto l = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  return l < 0ms ? 0ms : l;
}

// request-timeout: floor(left) - 1 s, only if floor(left) >= 2 (§9.3.1).
void add_request_timeout(http::Headers& h, Clock::time_point deadline) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(left(deadline)).count();
  if (secs >= 2) h.set("request-timeout", std::to_string(secs - 1));
}


// Absolute URL for a Location header: absolute URLs as they are, an
// absolute path against the request's origin.
Result<std::string> resolve_location(const std::string& base, std::string_view loc) {
  if (loc.starts_with("http://") || loc.starts_with("https://")) return std::string(loc);
  if (!loc.starts_with("/")) return Error(Errc::bad_request, "relative location '" + std::string(loc) + "'");
  auto u = http::parse_url(base);
  if (!u) return u.error();
  std::string host = u->host.find(':') != std::string::npos ? "[" + u->host + "]" : u->host;
  return fmt::format("{}://{}:{}{}", u->scheme, host, u->port, loc);
}

// One request, following 307/308 (method and body preserved) at most
// kMaxRedirects times within the request's timeout.
Task<Result<http::ClientResponse>> send(http::Client& client, http::ClientRequest req) {
  const auto deadline = Clock::now() + req.timeout;
  for (int hop = 0;; ++hop) {
    http::ClientRequest attempt = req;
    attempt.timeout = std::max(left(deadline), milliseconds(1));
    Result<http::ClientResponse> r = co_await client.request(std::move(attempt));
    if (!r) co_return r;
    if (r->status != 307 && r->status != 308) co_return r;
    if (hop >= kMaxRedirects) co_return Error(Errc::internal, "too many redirects");
    auto loc = r->headers.get("location");
    if (!loc) co_return Error(Errc::internal, fmt::format("{} without location", r->status));
    auto next = resolve_location(req.url, *loc);
    if (!next) co_return next.error();
    req.url = std::move(*next);
  }
}

Task<void> sleep_for(milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  auto token = asio::as_tuple(asio::use_awaitable);
  co_await t.async_wait(token);
}

// A JSON response body, READ view ([COMPAT] content-type exactly
// application/json, non-empty).
Result<TransactionMetadata> parse_read(const http::ClientResponse& r) {
  auto ct = r.headers.get("content-type");
  if (!ct || *ct != "application/json" || r.body.empty()) {
    return Error(Errc::bad_request, "response is not application/json");
  }
  return tx_from_json_string(r.body, View::RestRead);
}

// rest-api.md §5.5: what the server returns must be consistent with what
// was sent and with what it said before.
Result<void> check_read(const RestOutputState& st, const TransactionMetadata& read) {
  if (st.sent.remote_host && read.remote_host != st.sent.remote_host) {
    return Error(Errc::bad_request, "remote_host not echoed");
  }
  if (st.sent.local_host && read.local_host != st.sent.local_host) {
    return Error(Errc::bad_request, "local_host not echoed");
  }
  if (read.rcpt_to.size() < st.sent.rcpt_to.size()) {
    return Error(Errc::bad_request, "rcpt_to has fewer entries than sent");
  }
  if (read.rcpt_response.size() > std::max(read.rcpt_to.size(), st.sent.rcpt_to.size())) {
    return Error(Errc::bad_request, "more rcpt responses than rcpts");
  }
  if (read.body && !std::holds_alternative<BodyStatus>(*read.body)) {
    return Error(Errc::bad_request, "body is not a status");
  }
  if (st.read) {
    auto d = tx_delta(*st.read, read, View::RestRead);
    if (!d) return d.error();
  }
  return {};
}

// Takes a 200/201 transaction response: etag, READ body, consistency.
Result<void> accept_read(RestOutputState& st, const http::ClientResponse& r) {
  auto etag = r.headers.get("etag");
  if (!etag || etag->empty()) return Error(Errc::bad_request, "response without etag");
  auto read = parse_read(r);
  if (!read) return read.error();
  if (auto c = check_read(st, *read); !c) return c;
  st.read = std::move(*read);
  st.etag = strip_quotes(*etag);
  if (st.body_url.empty() && st.read->body) {
    const auto& bs = std::get<BodyStatus>(*st.read->body);
    if (bs.blob_status) st.body_url = bs.blob_status->uri;
  }
  return {};
}

bool any_rcpt_ok(const std::vector<std::optional<Response>>& rs) {
  for (const auto& r : rs) {
    if (r && r->ok()) return true;
  }
  return false;
}

// Is a request sent upstream still without a response (§9.3.3)?
bool outstanding(const RestOutputState& st) {
  static const TransactionMetadata kEmpty;
  const TransactionMetadata& r = st.read ? *st.read : kEmpty;
  if (st.sent.mail_from && !r.mail_response) return true;
  if (r.mail_response && r.mail_response->err()) return false;
  for (std::size_t k = 0; k < st.sent.rcpt_to.size(); ++k) {
    if (k >= r.rcpt_response.size() || !r.rcpt_response[k]) return true;
  }
  bool server_final = false;
  if (r.body) {
    const auto& bs = std::get<BodyStatus>(*r.body);
    server_final = bs.blob_status && bs.blob_status->finalized;
  }
  if (st.body_done || server_final) {
    if (!any_rcpt_ok(r.rcpt_response)) return false;
    return !r.data_response;
  }
  return false;
}

void fill_rcpt(TransactionMetadata& tx, std::size_t j, const Response& r) {
  if (tx.rcpt_response.size() <= j) tx.rcpt_response.resize(j + 1);
  if (!tx.rcpt_response[j]) tx.rcpt_response[j] = r;
}

// Copies the upstream's responses into the tx (slots still empty).
void merge_responses(Pass& p) {
  if (!p.st.read) return;
  const TransactionMetadata& r = *p.st.read;
  if (p.st.sent.mail_from && r.mail_response && !p.tx.mail_response) {
    p.tx.mail_response = r.mail_response;
  }
  for (std::size_t k = 0; k < r.rcpt_response.size() && k < p.st.rcpt_map.size(); ++k) {
    if (r.rcpt_response[k]) fill_rcpt(p.tx, p.st.rcpt_map[k], *r.rcpt_response[k]);
  }
  if (r.data_response && !p.tx.data_response) p.tx.data_response = r.data_response;
}

// The body as a request: present, and complete (so a data response is due).
bool body_complete(const Pass& p) {
  if (!p.tx.body) return false;
  if (std::holds_alternative<InlineBody>(*p.tx.body)) return true;
  if (const auto* bs = std::get_if<BodyStatus>(&*p.tx.body)) {
    if (p.env && p.env->body) return p.env->body->finalized;
    return bs->blob_status && bs->blob_status->finalized;
  }
  return true;  // message_builder / reuse: answered at once
}

// Answers every request of the tx still without a response; data only if
// `with_data` (and there is a body).
void fill_outstanding(TransactionMetadata& tx, const Response& resp, bool with_data) {
  if (tx.mail_from && !tx.mail_response) tx.mail_response = resp;
  for (std::size_t j = 0; j < tx.rcpt_to.size(); ++j) fill_rcpt(tx, j, resp);
  if (with_data && tx.body && !tx.data_response) tx.data_response = resp;
}

// ---- upstream requests ---------------------------------------------------------------------

Task<void> cancel_upstream(Pass& p) {
  if (p.st.tx_url.empty() || p.st.cancel_sent) co_return;
  p.st.cancel_sent = true;
  http::ClientRequest req;
  req.method = "POST";
  req.url = p.st.tx_url + "/cancel";
  req.timeout = kCancelTimeout;
  Result<http::ClientResponse> r = co_await send(p.client, std::move(req));
  if (!r) {
    p.log.info("cancel {}: {}", p.st.tx_url, r.error().message);
  } else {
    p.log.debug("cancel {}: {}", p.st.tx_url, r->status);
  }
}

// GET (long-poll) until nothing is outstanding or less than 1 s is left.
// `at_least_once`: one GET even when the deadline has passed (the final
// data_response poll after a long upload). Errors: Errc::bad_request for an
// invalid or inconsistent response, anything else for HTTP failures.
Task<Result<void>> poll(Pass& p, bool at_least_once) {
  bool first = true;
  while (outstanding(p.st)) {
    milliseconds l = left(p.deadline);
    if (l < kPollPace && !(first && at_least_once)) break;
    first = false;
    http::ClientRequest req;
    req.method = "GET";
    req.url = p.st.tx_url;
    if (!p.st.etag.empty()) req.headers.set("if-none-match", p.st.etag);
    add_request_timeout(req.headers, p.deadline);
    req.timeout = std::max(l, kPollPace);
    const auto start = Clock::now();
    Result<http::ClientResponse> r = co_await send(p.client, std::move(req));
    if (!r) co_return r.error();
    bool changed = false;
    if (r->status == 304) {
      auto etag = r->headers.get("etag");
      if (!etag || strip_quotes(*etag) != p.st.etag) {
        co_return Error(Errc::bad_request, "304 without the same etag");
      }
    } else if (r->status == 200) {
      std::string old = p.st.etag;
      if (auto a = accept_read(p.st, *r); !a) co_return a;
      changed = p.st.etag != old;
    } else {
      co_return Error(Errc::unavailable, fmt::format("GET status {}", r->status));
    }
    if (!changed) {
      auto elapsed = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
      if (elapsed < kPollPace) {
        milliseconds pause = std::min(kPollPace - elapsed, left(p.deadline));
        if (pause > 0ms) co_await sleep_for(pause);
      }
    }
  }
  co_return Result<void>();
}

// A point read (no If-None-Match): the current version and responses.
Task<Result<void>> refresh(Pass& p) {
  http::ClientRequest req;
  req.method = "GET";
  req.url = p.st.tx_url;
  req.timeout = std::max(left(p.deadline), kPollPace);
  Result<http::ClientResponse> r = co_await send(p.client, std::move(req));
  if (!r) co_return r.error();
  if (r->status != 200) co_return Error(Errc::unavailable, fmt::format("GET status {}", r->status));
  co_return accept_read(p.st, *r);
}

// One create attempt (§9.3.2 steps 1-3). On failure st.tx_url is set if the
// upstream tx exists (so the caller can cancel it).
Task<Result<void>> try_host(Pass& p, const std::string& endpoint) {
  milliseconds l = left(p.deadline);
  if (l <= 0ms) co_return Error(Errc::timeout, "timed out");
  http::ClientRequest req;
  req.method = "POST";
  req.url = endpoint;
  req.headers.set("content-type", "application/json");
  add_request_timeout(req.headers, p.deadline);
  req.body = tx_to_json_string(p.st.sent, View::RestCreate);
  req.timeout = l;
  Result<http::ClientResponse> r = co_await send(p.client, std::move(req));
  if (!r) co_return r.error();
  if (r->status != 201) co_return Error(Errc::unavailable, fmt::format("create status {}", r->status));
  auto loc = r->headers.get("location");
  if (!loc || loc->empty()) co_return Error(Errc::bad_request, "create response without location");
  auto url = resolve_location(endpoint, *loc);
  if (!url) co_return url.error();
  p.st.tx_url = std::move(*url);
  if (auto a = accept_read(p.st, *r); !a) co_return a;
  Result<void> polled = co_await poll(p, false);
  if (!polled) co_return polled;
  if (p.st.sent.mail_from && !p.st.read->mail_response) {
    co_return Error(Errc::timeout, "no mail_response");
  }
  co_return Result<void>();
}

// First update: create the upstream tx, failing over across hosts.
Task<void> start_upstream(Pass& p, const std::string& endpoint) {
  const TransactionMetadata& tx = p.tx;
  TransactionMetadata c;
  c.remote_host = tx.remote_host;
  c.local_host = tx.local_host;
  c.mail_from = tx.mail_from;
  c.smtp_meta = tx.smtp_meta;
  std::vector<std::size_t> map;
  for (std::size_t j = 0; j < tx.rcpt_to.size(); ++j) {
    if (j < tx.rcpt_response.size() && tx.rcpt_response[j]) continue;
    c.rcpt_to.push_back(tx.rcpt_to[j]);
    map.push_back(j);
  }
  if (tx.routing && tx.routing->upstream_sender) {
    const RestUpstreamSender& us = *tx.routing->upstream_sender;
    Sender s;
    s.name = us.name;
    s.tag = us.tag;
    c.sender = std::move(s);
    if (us.remote_host) {
      if (auto hp = parse_sender_remote_host(*us.remote_host)) {
        c.remote_host = *hp;
      } else {
        p.log.warn("upstream sender remote_host '{}' unparsable, ignored", *us.remote_host);
      }
    }
    if (us.smtp_meta) c.smtp_meta = us.smtp_meta;
  }
  if (p.send_filter_output && tx.filter_output && !tx.filter_output->empty()) {
    c.filter_output = tx.filter_output;
  }

  std::vector<std::optional<HostPort>> hosts;
  if (tx.routing && tx.routing->resolution && !tx.routing->resolution->empty()) {
    for (const HostPort& h : *tx.routing->resolution) hosts.emplace_back(h);
  } else {
    hosts.emplace_back(std::nullopt);
  }

  std::string reason;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    RestOutputState& st = p.st;
    st.tx_url.clear();
    st.etag.clear();
    st.read.reset();
    st.body_url.clear();
    st.cancel_sent = false;
    st.sent = c;
    if (hosts[i]) st.sent.remote_host = hosts[i];
    st.rcpt_map = map;
    std::string who = hosts[i] ? fmt::format("{}:{}", hosts[i]->host, hosts[i]->port) : endpoint;
    Result<void> r = co_await try_host(p, endpoint);
    if (!r) {
      reason = r.error().message;
      p.log.info("upstream {} failed: {}", who, reason);
      co_await cancel_upstream(p);
      continue;
    }
    const bool last = i + 1 == hosts.size();
    if (!last && st.read->mail_response && st.read->mail_response->temp()) {
      reason = fmt::format("mail_response {}", st.read->mail_response->code);
      p.log.info("upstream {}: temporary mail response {}, next host", who,
                 st.read->mail_response->code);
      co_await cancel_upstream(p);
      continue;
    }
    st.started = true;
    st.rcpts_seen = tx.rcpt_to.size();
    p.log.debug("upstream tx {} via {}", st.tx_url, who);
    merge_responses(p);
    co_return;
  }
  p.st.start_failed = true;
  p.st.tx_url.clear();
  Response err(450, "RestEndpoint._start_upstream_tx " + reason);
  fill_outstanding(p.tx, err, true);
}

// Later updates (§9.3.4 step 2): PATCH new envelope fields, or heartbeat.
Task<Result<void>> update_upstream(Pass& p) {
  TransactionMetadata patch;
  std::vector<std::size_t> new_map;
  if (p.tx.mail_from && !p.st.sent.mail_from) patch.mail_from = p.tx.mail_from;
  for (std::size_t j = p.st.rcpts_seen; j < p.tx.rcpt_to.size(); ++j) {
    if (j < p.tx.rcpt_response.size() && p.tx.rcpt_response[j]) continue;
    patch.rcpt_to.push_back(p.tx.rcpt_to[j]);
    new_map.push_back(j);
  }
  if (!patch.rcpt_to.empty()) patch.rcpt_to_list_offset = p.st.sent.rcpt_to.size();
  if (p.send_filter_output && p.tx.filter_output) {
    json::object fo;
    for (const auto& [k, v] : *p.tx.filter_output) {
      const json::value* old = p.st.sent.filter_output ? p.st.sent.filter_output->if_contains(k)
                                                       : nullptr;
      if (!old || *old != v) fo[k] = v;
    }
    if (!fo.empty()) patch.filter_output = std::move(fo);
  }
  const bool heartbeat = patch.empty();
  if (heartbeat) {
    // Only body progress or a filter_output not forwarded: no PATCH (§9.3.4).
    if (p.delta.body || p.delta.filter_output || !p.delta.rcpt_to.empty()) co_return Result<void>();
  }
  const std::string body = heartbeat ? std::string() : tx_to_json_string(patch, View::RestUpdate);
  Result<http::ClientResponse> r = Error(Errc::internal, "no PATCH sent");
  for (int attempt = 0; attempt < 2; ++attempt) {
    http::ClientRequest req;
    req.method = "PATCH";
    req.url = p.st.tx_url;
    req.headers.set("if-match", p.st.etag);
    add_request_timeout(req.headers, p.deadline);
    if (!heartbeat) req.headers.set("content-type", "application/json");
    req.body = body;
    milliseconds l = left(p.deadline);
    if (l <= 0ms) co_return Error(Errc::timeout, "timed out");
    req.timeout = l;
    r = co_await send(p.client, std::move(req));
    if (!r) co_return r.error();
    if (r->status != 412 || attempt > 0) break;
    // The version moved (body PUTs, server-side pings): re-read it once and
    // retry ([PORT]; the original fails the update).
    Result<void> fresh = co_await refresh(p);
    if (!fresh) co_return fresh;
  }
  if (r->status != 200) co_return Error(Errc::unavailable, fmt::format("PATCH status {}", r->status));
  // What the server now has, for the consistency checks.
  TransactionMetadata sent = p.st.sent;
  if (patch.mail_from) sent.mail_from = patch.mail_from;
  for (auto& m : patch.rcpt_to) sent.rcpt_to.push_back(m);
  if (patch.filter_output) {
    if (!sent.filter_output) sent.filter_output.emplace();
    for (const auto& [k, v] : *patch.filter_output) (*sent.filter_output)[k] = v;
  }
  std::swap(p.st.sent, sent);
  if (auto a = accept_read(p.st, *r); !a) {
    co_return a;
  }
  p.st.rcpts_seen = p.tx.rcpt_to.size();
  for (std::size_t j : new_map) p.st.rcpt_map.push_back(j);
  co_return Result<void>();
}

// ---- body upload (§8.4) ----------------------------------------------------------------------

struct BodySource {
  std::int64_t length = 0;
  std::optional<std::int64_t> total;  // known final length
  chain::TxEnv* env = nullptr;
  std::int64_t blob_id = 0;
  const std::string* text = nullptr;  // InlineBody
};

Task<Result<std::string>> read_source(const BodySource& src, std::int64_t off, std::size_t max) {
  if (src.text) co_return src.text->substr(static_cast<std::size_t>(off), max);
  co_return co_await src.env->read_blob(src.blob_id, off, max);
}

// "bytes 0-X/T" or "bytes */T" -> bytes stored (X+1 or 0).
std::optional<std::int64_t> parse_stored_range(std::string_view cr) {
  if (!cr.starts_with("bytes ")) return std::nullopt;
  cr.remove_prefix(6);
  auto slash = cr.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view range = cr.substr(0, slash);
  if (range == "*") return 0;
  auto dash = range.find('-');
  if (dash == std::string_view::npos || range.substr(0, dash) != "0") return std::nullopt;
  std::string_view last = range.substr(dash + 1);
  std::int64_t x = 0;
  auto [ptr, ec] = std::from_chars(last.data(), last.data() + last.size(), x);
  if (ec != std::errc() || ptr != last.data() + last.size() || x < 0) return std::nullopt;
  return x + 1;
}

// One PUT. Returns the length the server now holds, or the data response to
// fail the transaction with.
struct PutOutcome {
  std::int64_t stored = 0;
  std::optional<Response> error;
};

Task<PutOutcome> put_piece(Pass& p, http::ClientRequest req, std::int64_t piece_end) {
  PutOutcome out;
  Result<http::ClientResponse> r = co_await send(p.client, std::move(req));
  if (!r) {
    p.log.info("body PUT {}: {}", p.st.body_url, r.error().message);
    out.error = Response(450, kBlobUploadError);
    co_return out;
  }
  if (r->status != 200 && r->status != 416) {
    p.log.info("body PUT {}: status {}", p.st.body_url, r->status);
    out.error = Response(450, kPutErr);
    co_return out;
  }
  auto cr = r->headers.get("content-range");
  if (!cr) {
    if (r->status == 200) {
      out.stored = piece_end;
      co_return out;
    }
    out.error = Response(450, kBadContentRange);
    co_return out;
  }
  auto stored = parse_stored_range(*cr);
  if (!stored || *stored > piece_end) {
    p.log.info("body PUT {}: bad content-range '{}'", p.st.body_url, *cr);
    out.error = Response(450, kBadContentRange);
    co_return out;
  }
  out.stored = *stored;
  // Asked for on the last piece and given (our gateway): the upstream tx as
  // a GET would return it, usually with the data response (no GET needed).
  if (r->status == 200 && r->headers.get(http::kTxJsonHeader)) {
    if (auto a = accept_read(p.st, *r); !a)
      p.log.info("body PUT {}: transaction in the answer: {}", p.st.body_url, a.error().message);
  }
  co_return out;
}

// The last PUT asks our gateway to answer once it has the data response
// (ours; an original gateway ignores the header and poll() GETs for it).
void await_data(Pass& p, http::ClientRequest& req) {
  const milliseconds l = left(p.deadline);
  if (l <= 0ms) return;
  req.headers.set(std::string(http::kWaitDataHeader), std::to_string(l.count()));
  req.timeout = std::max(req.timeout, l + kPollPace);
}

// Uploads what is newly available. Returns a data response on failure.
Task<std::optional<Response>> upload(Pass& p, const BodySource& src) {
  RestOutputState& st = p.st;
  int resyncs = 0;
  while (!st.body_done) {
    const std::int64_t off = st.body_off;
    const std::int64_t avail = src.length - off;
    if (avail < 0) co_return Response(450, kBadContentRange);
    http::ClientRequest req;
    req.method = "PUT";
    req.url = st.body_url;
    req.timeout = p.cfg.data_timeout;
    std::int64_t piece_end = off;
    bool last = false;
    if (avail == 0) {
      if (!src.total || *src.total != off) break;  // nothing new
      // Everything sent, the total just became known: finalize shape.
      req.headers.set("x-finalize-blob-length", std::to_string(off));
      last = true;
      await_data(p, req);
    } else {
      std::uint64_t n = static_cast<std::uint64_t>(avail);
      if (p.cfg.chunk_size) n = std::min(n, *p.cfg.chunk_size);
      Result<std::string> data = co_await read_source(src, off, static_cast<std::size_t>(n));
      if (!data || data->empty()) {
        p.log.error("reading body at {}: {}", off, data ? "no data" : data.error().message);
        co_return Response(450, kBlobUploadError);
      }
      const auto len = static_cast<std::int64_t>(data->size());
      piece_end = off + len;
      last = src.total && piece_end == *src.total;
      if (!(off == 0 && last)) {
        std::string total = last ? std::to_string(*src.total) : "*";
        req.headers.set("content-range",
                        fmt::format("bytes {}-{}/{}", off, piece_end - 1, total));
      }
      req.body = std::move(*data);
      if (last) await_data(p, req);
    }
    PutOutcome o = co_await put_piece(p, std::move(req), piece_end);
    if (o.error) co_return o.error;
    st.body_off = o.stored;
    if (last && o.stored == piece_end) {
      st.body_done = true;
      break;
    }
    if (o.stored != piece_end && ++resyncs > kMaxResyncs) {
      p.log.info("body PUT {}: no progress after {} resyncs", st.body_url, kMaxResyncs);
      co_return Response(450, kBlobUploadError);
    }
  }
  co_return std::nullopt;
}

// §9.3.4 steps 4-5 for a raw body.
Task<void> handle_body(Pass& p) {
  TransactionMetadata& tx = p.tx;
  if (tx.data_response || !tx.body) co_return;
  if (std::holds_alternative<MessageBuilderBody>(*tx.body)) {
    tx.data_response = Response(550, kMessageBuilder);
    co_return;
  }
  if (std::holds_alternative<ReuseBody>(*tx.body)) {
    tx.data_response = Response(550, kReuseBody);
    co_return;
  }
  if (const auto* bs = std::get_if<BodyStatus>(&*tx.body); bs && bs->message_builder) {
    tx.data_response = Response(550, kMessageBuilder);
    co_return;
  }
  if (!tx.mail_response || tx.mail_response->err() || !any_rcpt_ok(tx.rcpt_response)) co_return;
  // Only rcpts this filter sent count (one answered by an earlier filter
  // is not the upstream's).
  bool upstream_ok = false;
  for (std::size_t j : p.st.rcpt_map) {
    if (j < tx.rcpt_response.size() && tx.rcpt_response[j] && tx.rcpt_response[j]->ok()) {
      upstream_ok = true;
    }
  }
  if (!upstream_ok) co_return;

  BodySource src;
  if (const auto* ib = std::get_if<InlineBody>(&*tx.body)) {
    src.text = &ib->text;
    src.length = static_cast<std::int64_t>(ib->text.size());
    src.total = src.length;
  } else if (p.env && p.env->body && p.env->read_blob) {
    const chain::BlobInfo& b = *p.env->body;
    src.env = p.env;
    src.blob_id = b.blob_id;
    src.length = b.length;
    if (b.total) src.total = b.total;
    else if (b.finalized) src.total = b.length;
  } else {
    if (body_complete(p)) {
      p.log.error("body finalized but no body bytes available (no TxEnv)");
      tx.data_response = Response(450, kBlobUploadError);
    }
    co_return;
  }
  if (p.st.body_url.empty()) {
    p.log.info("upstream {} gave no body uri", p.st.tx_url);
    tx.data_response = Response(450, kBlobUploadError);
    co_return;
  }
  std::optional<Response> err = co_await upload(p, src);
  if (err) {
    tx.data_response = std::move(*err);
    co_return;
  }
  if (!p.st.body_done) {
    if (body_complete(p)) {
      // Storage says final but its length never reached its total.
      p.log.error("body finalized at {} bytes, {} sent", src.length, p.st.body_off);
      tx.data_response = Response(450, kBlobUploadError);
    }
    co_return;
  }
  Result<void> polled = co_await poll(p, true);
  if (!polled) {
    p.log.info("poll for data_response: {}", polled.error().message);
    if (polled.error().code == Errc::bad_request) tx.data_response = Response(450, kInvalidGet);
  }
  merge_responses(p);
  if (!tx.data_response) tx.data_response = Response(450, kUpstreamTimeout);
}

// ---- the filter -----------------------------------------------------------------------------

class RestOutput final : public chain::Filter {
 public:
  RestOutput(RestOutputConfig cfg, std::shared_ptr<http::Client> client)
      : cfg_(std::move(cfg)), client_(std::move(client)) {}

  std::unique_ptr<chain::FilterState> new_state() const override {
    return std::make_unique<RestOutputState>();
  }

  Task<Result<chain::FilterResult>> on_update(chain::FilterCall& call) const override {
    auto* st = dynamic_cast<RestOutputState*>(call.state);
    if (!st) co_return Error(Errc::internal, "rest_output: no filter state");
    std::string ctx = call.env && !call.env->rest_id.empty() ? "tx=" + call.env->rest_id : call.path;
    Pass p{cfg_, *client_, *st, call.tx, call.delta, call.env, log::Logger(std::move(ctx)),
           Clock::now() + cfg_.rcpt_timeout};
    if (call.tx.routing) p.send_filter_output = truthy(call.tx.routing->options.if_contains("send_filter_output"));
    co_await run(p);
    co_return chain::FilterResult{};
  }

 private:
  Task<void> run(Pass& p) const {
    TransactionMetadata& tx = p.tx;
    RestOutputState& st = p.st;
    if (tx.cancelled) {
      const bool upstream_done = st.read && st.read->data_response;
      if (st.started && !tx.data_response && !upstream_done) co_await cancel_upstream(p);
      fill_outstanding(tx, Response(550, "cancelled"), true);
      co_return;
    }
    if (st.start_failed || !chain::can_progress(tx)) co_return;
    if (!st.started) {
      if (!tx.mail_from && tx.rcpt_to.empty()) co_return;  // nothing to send yet
      std::optional<std::string> endpoint = cfg_.static_endpoint;
      if (!endpoint && tx.routing) endpoint = tx.routing->rest_endpoint;
      if (!endpoint || endpoint->empty()) {
        st.start_failed = true;
        fill_outstanding(tx, Response(550, kNoEndpoint), true);
        co_return;
      }
      co_await start_upstream(p, *endpoint);
      if (!st.started) co_return;
    } else {
      Result<void> u = co_await update_upstream(p);
      if (!u) {
        p.log.info("update {}: {}", st.tx_url, u.error().message);
        Response err(450, "RestEndpoint._maybe_update " + u.error().message);
        fill_outstanding(tx, err, body_complete(p));
        co_return;
      }
      merge_responses(p);
    }
    // Responses to the envelope.
    if (outstanding(st)) {
      Result<void> polled = co_await poll(p, false);
      if (!polled) p.log.info("poll {}: {}", st.tx_url, polled.error().message);
      merge_responses(p);
      if (!polled && polled.error().code == Errc::bad_request) {
        fill_outstanding(tx, Response(450, kInvalidGet), false);
      }
    }
    if (tx.mail_response && tx.mail_response->err()) {
      // Recipients fail by precondition, in MAIL's class (not "timeout").
      fill_outstanding(tx, Response(tx.mail_response->code, "failed precondition: MAIL"), false);
    }
    fill_outstanding(tx, Response(450, kUpstreamTimeout), false);
    if (!chain::can_progress(tx)) co_return;
    co_await handle_body(p);
  }

  RestOutputConfig cfg_;
  std::shared_ptr<http::Client> client_;
};

// ---- factory ----------------------------------------------------------------------------------

// HTTP clients shared per distinct verify value.
struct ClientPool {
  boost::asio::any_io_executor executor;
  std::map<std::string, std::shared_ptr<http::Client>> clients;

  std::shared_ptr<http::Client> get(const RestOutputConfig& cfg) {
    std::string key = !cfg.verify ? "noverify" : cfg.ca_file ? "ca:" + *cfg.ca_file : "verify";
    auto& c = clients[key];
    if (!c) {
      http::ClientOptions o;
      o.verify = cfg.verify;
      o.ca_file = cfg.ca_file;
      // Many attempts talk to the same gateway/receiver at once: keep enough
      // idle connections that concurrency does not mean a connect per request.
      o.max_idle_per_host = 256;
      c = std::make_shared<http::Client>(executor, std::move(o));
    }
    return c;
  }
};

milliseconds parse_seconds(const config::Node& n, std::string_view key, double def) {
  double v = n.get_in_range<double>(key, def, 0.001, 7 * 86400.0);
  return milliseconds(static_cast<std::int64_t>(v * 1000));
}

std::shared_ptr<const chain::FilterBase> make_rest_output(const ChainEntry& entry,
                                                          config::ConfigErrors& errors,
                                                          ClientPool& pool) {
  const std::size_t before = errors.errors().size();
  chain::expect_entry_keys(entry, errors,
                           {"static_endpoint", "rcpt_timeout", "data_timeout", "chunk_size",
                            "verify", "static_remote_host"});
  config::Node n = chain::entry_node(entry, errors);
  RestOutputConfig cfg;
  cfg.static_endpoint = n.get_optional<std::string>("static_endpoint");
  if (cfg.static_endpoint) {
    if (auto u = http::parse_url(*cfg.static_endpoint); !u) {
      n["static_endpoint"].error("not an http(s) URL: " + u.error().message);
    }
  }
  cfg.rcpt_timeout = parse_seconds(n, "rcpt_timeout", 30);
  cfg.data_timeout = parse_seconds(n, "data_timeout", 300);
  if (!n["chunk_size"].is_null()) {
    auto cs = n["chunk_size"].as<std::uint64_t>();
    if (cs && *cs == 0) n["chunk_size"].error("must be at least 1");
    else if (cs) cfg.chunk_size = *cs;
  }
  config::Node verify = n["verify"];
  if (!verify.is_null()) {
    bool b = true;
    if (verify.is_scalar() && YAML::convert<bool>::decode(verify.yaml(), b)) {
      cfg.verify = b;
    } else if (auto path = verify.as<std::string>()) {
      if (path->empty()) {
        verify.error("expected a boolean or a CA file path");
      } else if (!std::ifstream(*path)) {
        verify.error("CA file '" + *path + "' cannot be read");
      } else {
        cfg.ca_file = *path;
      }
    }
  }
  if (n["static_remote_host"].present()) {
    n["static_remote_host"].warning("accepted for compatibility and ignored");
  }
  if (errors.errors().size() != before) return nullptr;
  auto client = pool.get(cfg);
  return std::make_shared<const RestOutput>(std::move(cfg), std::move(client));
}

}  // namespace

void register_rest_output(chain::FilterRegistry& registry, const FilterDeps& deps) {
  auto pool = std::make_shared<ClientPool>();
  pool->executor = deps.executor;
  registry.add("rest_output", [pool](const ChainEntry& entry, config::ConfigErrors& errors) {
    return make_rest_output(entry, errors, *pool);
  });
}

}  // namespace koukan::router::filters
