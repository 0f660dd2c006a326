// Gateway REST handlers (spec/gateway.md §4.2 with the §10 fixes). All state
// is in memory and lives on the I/O thread; SMTP work happens in each
// transaction's driver (smtp_driver.cpp), never in a request.
#include "gateway/outbound/rest_handler.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "common/base/metrics.hpp"
#include "common/http/error.hpp"
#include "common/json/transaction.hpp"
#include "common/http/rest_util.hpp"

namespace koukan::gateway::outbound {

using http::Request;
using http::ContentRange;
using http::format_content_range;
using http::parse_content_range;
using http::parse_decimal;
using http::split_path;
using http::strip_quotes;
namespace H = koukan::http;

namespace {

// How long a create waits for the destination's MAIL/RCPT answers.
constexpr std::chrono::milliseconds kFirstAnswerWait{25};

bool envelope_answered(const TransactionMetadata& tx) {
  if (!tx.mail_from) return true;
  if (!tx.mail_response) return false;
  if (tx.mail_response->err()) return true;
  if (tx.rcpt_response.size() < tx.rcpt_to.size()) return false;
  for (std::size_t i = 0; i < tx.rcpt_to.size(); ++i)
    if (!tx.rcpt_response[i]) return false;
  return true;
}

// Requests from the router, by route (the router's own REST side counts the
// same way: koukan_rest_requests_total).
metrics::Metric m_create("koukan_gateway_rest_requests_total", "REST requests from the router by route", "counter", R"(route="create")");
metrics::Metric m_get("koukan_gateway_rest_requests_total", "REST requests from the router by route", "counter", R"(route="get")");
metrics::Metric m_patch("koukan_gateway_rest_requests_total", "REST requests from the router by route", "counter", R"(route="patch")");
metrics::Metric m_put("koukan_gateway_rest_requests_total", "REST requests from the router by route", "counter", R"(route="put")");
metrics::Metric m_cancel("koukan_gateway_rest_requests_total", "REST requests from the router by route", "counter", R"(route="cancel")");


H::Response method_not_allowed() {
  H::Response r = H::error_response(Errc::bad_request, "method not allowed");
  r.status = 405;
  return r;
}

// Clears put_active when the PUT ends (also if its coroutine is destroyed).
struct PutGuard {
  std::shared_ptr<OutboundTx> t;
  ~PutGuard() { t->put_active = false; }
};

}  // namespace

struct RestHandler::Impl {
  std::shared_ptr<TxTable> table;

  const OutboundOptions& o() const { return table->options(); }

  H::Response tx_response(int status, const OutboundTx& t) const {
    auto view = read_view(t, o().listener.session_uri);
    H::Response r = H::Response::json(status, tx_to_json_string(view, View::RestRead));
    r.headers.set("etag", std::to_string(t.version));
    return r;
  }

  // ---- POST /senders/<any>/transactions --------------------------------------------
  Task<H::Response> create(Request& req, std::string path_sender) {
    auto body = co_await req.read_all(o().listener.max_json_body);
    if (!body.ok()) co_return H::error_response(body.error());
    auto parsed = tx_from_json_string(*body, View::RestCreate);
    if (!parsed.ok()) co_return H::error_response(Errc::bad_request, "invalid tx json: " + parsed.error().message);
    TransactionMetadata tx = std::move(*parsed);
    if (!tx.sender || !tx.sender->tag)
      co_return H::error_response(Errc::bad_request, "missing sender.tag (selects smtp_output.hosts)");
    const std::string tag = *tx.sender->tag;
    auto host = o().output.hosts.find(tag);
    if (host == o().output.hosts.end())
      co_return H::error_response(Errc::bad_request, "unknown sender tag '" + tag + "' (no smtp_output.hosts." + tag + ")");
    if (tx.body)
      co_return H::error_response(Errc::bad_request, "body may not be given in a create; PUT it to body.blob_status.uri");
    // Accepted and ignored (the original did the same): smtp_meta of the
    // original session, filter_output.
    tx.smtp_meta.reset();
    tx.filter_output.reset();
    Sender s;
    s.name = path_sender;
    s.tag = tag;
    tx.sender = std::move(s);

    auto t = table->create(std::move(tx), host->second);
    t->log.info("created sender={} tag={} remote_host={}:{}", path_sender, tag,
                t->tx.remote_host ? t->tx.remote_host->host : std::string("-"),
                t->tx.remote_host ? t->tx.remote_host->port : 0);
    // The SMTP session starts at once: if MAIL (and RCPT) are answered within
    // a few milliseconds (a near destination), the 201 carries the answers
    // and saves the router a GET (spec: a create "may include mail_response /
    // rcpt_response immediately"; docs/compat.md).
    const auto until = Clock::now() + kFirstAnswerWait;
    while (!envelope_answered(t->tx) && !t->done() && Clock::now() < until)
      co_await t->published.wait_until(until);
    H::Response r = tx_response(201, *t);
    r.headers.set("location", o().listener.session_uri + "/transactions/" + t->id);
    co_return r;
  }

  // ---- GET /transactions/<id> --------------------------------------------------------
  Task<H::Response> get(Request& req, std::string id) {
    std::optional<std::string> inm;
    if (auto h = req.headers.get("if-none-match")) inm = std::string(*h);
    std::chrono::milliseconds budget = o().max_long_poll;
    if (auto rt = req.headers.get("request-timeout"); rt && inm) {
      auto secs = parse_decimal(*rt);
      if (!secs) co_return H::error_response(Errc::bad_request, "invalid request-timeout header");
      budget = std::min<std::chrono::milliseconds>(budget, std::chrono::seconds(*secs));
    }
    auto t = table->find(id);
    if (!t) co_return H::error_response(Errc::not_found, "unknown transaction");
    if (!inm || strip_quotes(*inm) != std::to_string(t->version)) co_return tx_response(200, *t);

    const std::int64_t known = t->version;
    const auto deadline = Clock::now() + budget;
    while (t->version == known && Clock::now() < deadline) co_await t->published.wait_until(deadline);
    if (t->version != known) co_return tx_response(200, *t);
    // Fix: the original answered 500 here (gateway.md §4.2).
    H::Response r = H::Response::empty(304);
    r.headers.set("etag", *inm);
    co_return r;
  }

  // ---- PATCH /transactions/<id> ------------------------------------------------------
  Task<H::Response> patch(Request& req, std::string id) {
    auto t = table->find(id);
    if (!t) co_return H::error_response(Errc::not_found, "transaction not found");
    auto body = co_await req.read_all(o().listener.max_json_body);
    if (!body.ok()) co_return H::error_response(body.error());
    std::optional<TransactionMetadata> delta;
    if (http::is_json_content_type(req.headers)) {
      auto d = tx_from_json_string(*body, View::RestUpdate);
      if (!d.ok()) co_return H::error_response(Errc::bad_request, "invalid request: " + d.error().message);
      delta = std::move(*d);
    } else if (!body->empty()) {
      co_return H::error_response(Errc::bad_request,
                                  "PATCH body must be application/json (or empty for a heartbeat)");
    }
    auto im = req.headers.get("if-match");
    if (!im) co_return H::error_response(Errc::bad_request, "etags required for update");
    if (strip_quotes(*im) != std::to_string(t->version)) {
      H::Response r = H::error_response(Errc::precondition_failed, "update conflict");
      r.headers.set("etag", std::to_string(t->version));  // as the router port does
      co_return r;
    }

    if (delta) {
      if (delta->body)
        co_return H::error_response(Errc::bad_request, "body may not be set in an update; PUT it");
      if (!delta->rcpt_to.empty() && t->body_created)
        co_return H::error_response(Errc::bad_request, "rcpt_to may not grow after the body upload started");
      delta->filter_output.reset();  // accepted, ignored
      TransactionMetadata merged = t->tx;
      auto m = tx_merge_from(merged, *delta);
      if (!m.ok()) co_return H::error_response(m.error());
      t->tx = std::move(merged);
      t->input.notify_all();
      t->log.debug("patch: {} recipient(s) total, mail_from {}", t->tx.rcpt_to.size(),
                   t->tx.mail_from ? "set" : "unset");
    }
    // A heartbeat bumps the version and, unlike the original, also resets
    // the idle clock (docs/gateway_outbound.md).
    t->publish();
    co_return tx_response(200, *t);
  }

  // ---- PUT /transactions/<id>/body ---------------------------------------------------
  static H::Response range_error(const OutboundTx& t) {
    H::Response r = H::error_response(Errc::range_not_satisfiable, "invalid range");
    r.headers.set("content-range", format_content_range(t.body_len, t.body_total));
    return r;
  }

  // Hands one piece to the SMTP driver, then waits until the driver took it:
  // the request is not read further meanwhile (backpressure), so a
  // transaction holds at most ~2 pieces (one being read or staged, one
  // being written to SMTP).
  Task<Result<void>> stage(std::shared_ptr<OutboundTx> t, std::string data, bool last) {
    while (t->staged && !t->done()) co_await t->taken.wait();
    if (t->tx.cancelled) co_return Error(Errc::conflict, "transaction cancelled");
    t->body_len += data.size();
    if (last) {
      t->body_final = true;
      t->body_total = t->body_len;
    }
    if (!t->done() && t->driver_running) {
      t->staged = StagedPiece{std::move(data), last};
      t->input.notify_all();
    }  // else: the data response is known already; the bytes are dropped
    t->publish();
    while (t->staged && !t->done()) co_await t->taken.wait();
    if (t->tx.cancelled) co_return Error(Errc::conflict, "transaction cancelled");
    co_return Result<void>();
  }

  Task<H::Response> put_body(Request& req, std::string id) {
    std::optional<ContentRange> range;
    std::optional<std::uint64_t> finalize_len;
    if (auto cr = req.headers.get("content-range")) {
      auto r = parse_content_range(*cr);
      if (!r.ok()) co_return H::error_response(r.error());
      range = *r;
      if (req.content_length && *req.content_length != range->length())
        co_return H::error_response(Errc::bad_request, "content-range length differs from content-length");
    }
    if (auto fl = req.headers.get("x-finalize-blob-length")) {
      if (range) co_return H::error_response(Errc::bad_request, "x-finalize-blob-length with content-range");
      finalize_len = parse_decimal(*fl);
      if (!finalize_len) co_return H::error_response(Errc::bad_request, "invalid x-finalize-blob-length");
      if (req.content_length.value_or(0) != 0 || req.chunked)
        co_return H::error_response(Errc::bad_request, "x-finalize-blob-length with non-empty PUT");
    }
    std::optional<std::chrono::milliseconds> wait_data;
    if (auto wd = req.headers.get(H::kWaitDataHeader)) {
      auto v = parse_decimal(*wd);
      if (!v) co_return H::error_response(Errc::bad_request, "invalid " + std::string(H::kWaitDataHeader));
      wait_data = std::min<std::chrono::milliseconds>(o().max_long_poll, std::chrono::milliseconds(*v));
    }
    auto t = table->find(id);
    if (!t) co_return H::error_response(Errc::not_found, "unknown transaction");
    if (t->tx.cancelled) co_return H::error_response(Errc::conflict, "transaction cancelled");
    if (t->put_active) co_return H::error_response(Errc::conflict, "another body PUT is in progress");

    const std::uint64_t start = range ? range->first : finalize_len ? *finalize_len : 0;
    // Only a PUT at offset 0 creates the body.
    if (!t->body_created && start != 0) co_return H::error_response(Errc::not_found, "unknown blob");
    if (finalize_len) {
      // Idempotent re-finalize; anything else must extend the body exactly.
      if (t->body_final && *finalize_len == t->body_len) {
        H::Response ok = H::Response::json(200, "{}");
        ok.headers.set("content-range", format_content_range(t->body_len, t->body_total));
        co_return ok;
      }
      if (t->body_final || *finalize_len != t->body_len ||
          (t->body_total && *t->body_total != *finalize_len))
        co_return range_error(*t);
    } else if (range) {
      if (t->body_final || range->first != t->body_len) co_return range_error(*t);
      if (t->body_total && range->total != t->body_total) co_return range_error(*t);
    } else if (t->body_len != 0 || t->body_final) {
      co_return range_error(*t);
    }

    t->put_active = true;
    PutGuard guard{t};
    if (!t->body_created) {
      t->body_created = true;
      t->log.debug("body upload started");
    }
    if (range && range->total) t->body_total = range->total;

    if (finalize_len) {
      auto st = co_await stage(t, std::string(), true);
      if (!st.ok()) co_return H::error_response(st.error());
    } else {
      const std::size_t chunk = std::max<std::uint64_t>(1, o().listener.chunk_size);
      const std::uint64_t end = range ? range->end() : std::numeric_limits<std::uint64_t>::max();
      std::uint64_t offset = start;  // of buf[0]
      std::string buf, piece;
      for (;;) {
        auto rd = co_await req.body->read_some(piece, chunk - buf.size());
        if (!rd.ok()) co_return H::error_response(rd.error());
        if (piece.empty()) break;
        if (offset + buf.size() + piece.size() > end)
          co_return H::error_response(Errc::bad_request, "request body longer than its content-range");
        buf += piece;
        if (buf.size() >= chunk) {
          const std::uint64_t n = buf.size();
          auto st = co_await stage(t, std::move(buf), false);
          if (!st.ok()) co_return H::error_response(st.error());
          buf = std::string();
          offset += n;
        }
      }
      if (range && offset + buf.size() != end)
        co_return H::error_response(Errc::bad_request, "request body shorter than its content-range");
      const bool last = !range || (range->total && *range->total == end);
      if (!buf.empty() || last) {
        auto st = co_await stage(t, std::move(buf), last);
        if (!st.ok()) co_return H::error_response(st.error());
      }
    }
    if (wait_data && t->body_final) {
      // Asked to (ours): answer once the destination answered the data (at
      // most wait_data), with the transaction as a GET would: the router
      // needs no GET for it.
      const auto until = Clock::now() + *wait_data;
      while (!t->tx.data_response && !t->done() && Clock::now() < until)
        co_await t->published.wait_until(until);
      H::Response r = tx_response(200, *t);
      r.headers.set("content-range", format_content_range(t->body_len, t->body_total));
      r.headers.set(std::string(H::kTxJsonHeader), std::to_string(t->version));
      co_return r;
    }
    H::Response ok = H::Response::json(200, "{}");
    ok.headers.set("content-range", format_content_range(t->body_len, t->body_total));
    co_return ok;
  }

  // ---- POST /transactions/<id>/cancel ------------------------------------------------
  H::Response cancel(std::string id) {
    auto t = table->find(id);
    if (!t) return H::error_response(Errc::not_found, "transaction not found");
    if (!t->tx.cancelled) t->log.info("cancel requested");
    t->cancel();
    return H::Response::empty(200);
  }
};

RestHandler::RestHandler(asio::any_io_executor ex, OutboundOptions opts)
    : impl_(new Impl{std::make_shared<TxTable>(std::move(ex), std::move(opts))}) {}

RestHandler::~RestHandler() = default;

TxTable& RestHandler::table() { return *impl_->table; }

void RestHandler::start() { impl_->table->start_gc(); }

Task<void> RestHandler::shutdown(std::chrono::milliseconds grace) {
  auto table = impl_->table;
  co_await table->shutdown(grace);
}

Task<H::Response> RestHandler::handle(Request& req) {
  auto seg = split_path(req.path);
  const std::string& m = req.method;
  if (seg.size() == 1 && seg[0] == "healthz") co_return H::Response::json(200, "{\"status\":\"ok\"}");
  if (seg.size() == 3 && seg[0] == "senders" && seg[2] == "transactions") {
    if (m != "POST") co_return method_not_allowed();
    m_create.inc();
    co_return co_await impl_->create(req, std::string(seg[1]));
  }
  if (seg.size() >= 2 && seg[0] == "transactions") {
    std::string id(seg[1]);
    if (seg.size() == 2) {
      if (m == "GET") {
        m_get.inc();
        co_return co_await impl_->get(req, id);
      }
      if (m == "PATCH") {
        m_patch.inc();
        co_return co_await impl_->patch(req, id);
      }
    } else if (seg.size() == 3 && seg[2] == "body") {
      if (m == "PUT") {
        m_put.inc();
        co_return co_await impl_->put_body(req, id);
      }
    } else if (seg.size() == 3 && seg[2] == "cancel") {
      if (m == "POST") {
        m_cancel.inc();
        co_return impl_->cancel(id);
      }
    } else if (seg.size() == 4 && seg[2] == "blob") {
      if (m == "PUT") {
        if (!impl_->table->find(id)) co_return H::error_response(Errc::not_found, "unknown transaction");
        co_return H::error_response(Errc::bad_request, "blob upload not supported by the gateway; PUT the body");
      }
    } else {
      co_return H::error_response(Errc::not_found, "no such route");
    }
    co_return method_not_allowed();
  }
  co_return H::error_response(Errc::not_found, "no such route");
}

}  // namespace koukan::gateway::outbound
