// Router REST handlers (spec/rest-api.md §5-§8, §10). Blocking storage calls
// run on the BlockingPool; everything else runs on the I/O thread.
#include "router/rest/rest_handler.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <chrono>

#include "common/base/ids.hpp"
#include "common/base/log.hpp"
#include "common/base/metrics.hpp"
#include "common/http/error.hpp"
#include "common/json/transaction.hpp"
#include "router/config/router_config.hpp"
#include "common/http/rest_util.hpp"
#include "router/storage/storage.hpp"
#include "router/storage/version_cache.hpp"

namespace koukan::router {

using http::Request;
using http::Response;
using http::ContentRange;
using http::format_content_range;
using http::parse_content_range;
using http::parse_decimal;
using http::split_path;
using http::strip_quotes;
namespace json = boost::json;

namespace {



Response with_etag(Response r, std::int64_t version) {
  r.headers.set("etag", std::to_string(version));
  return r;
}

// Prometheus metrics (GET /metrics).
metrics::Metric m_req_create("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="create")");
metrics::Metric m_req_get("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="get")");
metrics::Metric m_req_patch("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="patch")");
metrics::Metric m_req_put("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="put")");
metrics::Metric m_req_cancel("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="cancel")");
metrics::Metric m_req_other("koukan_rest_requests_total", "REST requests by route", "counter", R"(route="other")");
metrics::Metric m_resp_2xx("koukan_rest_responses_total", "REST responses by status class", "counter", R"(class="2xx")");
metrics::Metric m_resp_3xx("koukan_rest_responses_total", "REST responses by status class", "counter", R"(class="3xx")");
metrics::Metric m_resp_4xx("koukan_rest_responses_total", "REST responses by status class", "counter", R"(class="4xx")");
metrics::Metric m_resp_5xx("koukan_rest_responses_total", "REST responses by status class", "counter", R"(class="5xx")");
metrics::Metric m_created("koukan_transactions_created_total", "transactions created over REST", "counter");
metrics::Metric m_blob_bytes("koukan_blob_bytes_appended_total", "blob bytes committed by PUTs", "counter");
metrics::Metric m_long_polls("koukan_long_polls_waiting", "GETs currently waiting for a change", "gauge");

void count_response(int status) {
  if (status < 300) m_resp_2xx.inc();
  else if (status < 400) m_resp_3xx.inc();
  else if (status < 500) m_resp_4xx.inc();
  else m_resp_5xx.inc();
}

// Decrements a gauge on scope exit (also when a coroutine is destroyed).
struct GaugeGuard {
  metrics::Metric& m;
  explicit GaugeGuard(metrics::Metric& g) : m(g) { m.inc(); }
  ~GaugeGuard() { m.dec(); }
};

}  // namespace

struct RestHandler::Impl {
  const RouterConfig& config;
  Storage& storage;
  BlockingPool& pool;
  VersionCache& cache;
  RestOptions o;

  std::string tx_path(std::string_view id) const { return "/transactions/" + std::string(id); }

  // ---- READ JSON -----------------------------------------------------------
  // The stored transaction as a client sees it (placeholders, body status).
  Result<TransactionMetadata> read_view(const TxRecord& rec) const {
    auto tx = tx_from_json(rec.json, View::Db);
    if (!tx.ok()) return Error(Errc::internal, "stored tx json: " + tx.error().message);
    if (rec.attempt_responses) {
      auto att = tx_from_json(*rec.attempt_responses, View::DbAttempt);
      if (!att.ok()) return Error(Errc::internal, "stored attempt json: " + att.error().message);
      tx->mail_response = att->mail_response;
      tx->rcpt_response = att->rcpt_response;
      tx->data_response = att->data_response;
    }
    if (rec.attempt_count > 0) tx->attempt_count = rec.attempt_count;
    if (rec.final_attempt_reason && *rec.final_attempt_reason != "oneshot")
      tx->final_attempt_reason = rec.final_attempt_reason;
    tx->body = body_status(rec);
    return tx;
  }

  BlobStatus blob_status(const TxRecord& rec, const BlobRef& b, const std::string& suffix) const {
    BlobStatus s;
    s.finalized = b.finalized;
    s.uri = (b.finalized ? o.service_uri : o.session_uri) + tx_path(rec.rest_id) + suffix;
    return s;
  }

  BodyStatus body_status(const TxRecord& rec) const {
    BodyStatus bs;
    if (rec.message_builder) {
      MessageBuilderStatus mb;
      auto spec = parse_message_builder(*rec.message_builder);
      auto add = [&](const std::string& id) {
        for (const auto& b : rec.blobs)
          if (b.name == id) mb.blob_status.emplace_back(id, blob_status(rec, b, "/blob/" + id));
      };
      if (spec.ok())
        for (const auto& b : spec->blobs) add(b.id);
      else
        for (const auto& b : rec.blobs) add(b.name);
      bs.message_builder = std::move(mb);
      return bs;
    }
    if (const BlobRef* b = rec.body()) {
      bs.blob_status = blob_status(rec, *b, "/body");
      return bs;
    }
    bs.blob_status = BlobStatus{o.service_uri + tx_path(rec.rest_id) + "/body", false};
    return bs;
  }

  Response tx_response(int status, const TxRecord& rec) const {
    auto tx = read_view(rec);
    if (!tx.ok()) return http::error_response(tx.error());
    return with_etag(Response::json(status, tx_to_json_string(*tx, View::RestRead)), rec.version);
  }

  // 308 to the owner if another live replica holds the lease.
  std::optional<Response> redirect_if_remote(const TxRecord& rec, const Request& req) const {
    if (rec.owner_session_uri && *rec.owner_session_uri != o.session_uri) {
      Response r = Response::empty(308);
      r.headers.set("location", *rec.owner_session_uri + req.path);
      return r;
    }
    return std::nullopt;
  }

  // Waits up to o.first_answer_wait for the next version of a transaction
  // this process delivers (the output's first answer); nullopt if none came
  // (or reading it failed: the caller answers with what it has).
  Task<std::optional<TxRecord>> first_answer(std::string id, std::int64_t version) {
    if (o.first_answer_wait.count() <= 0) co_return std::nullopt;
    const bool changed = co_await cache.wait_for_change(id, version, o.first_answer_wait);
    if (!changed) co_return std::nullopt;
    auto now = co_await load(id);
    if (!now.ok() || now->version <= version) co_return std::nullopt;
    co_return std::move(*now);
  }

  // Does the record answer MAIL and every recipient?
  bool answered(const TxRecord& rec) const {
    auto v = read_view(rec);
    if (!v.ok() || (v->mail_from && !v->mail_response)) return false;
    if (v->rcpt_response.size() < v->rcpt_to.size()) return false;
    for (const auto& r : v->rcpt_response)
      if (!r) return false;
    return true;
  }

  Task<Result<TxRecord>> load(std::string id) {
    auto f = [this, id]() { return storage.load(id); };
    co_return co_await offload_read(pool, std::move(f));
  }

  // ---- POST /senders/<sender>/transactions ---------------------------------
  Task<Response> create(Request& req, std::string sender_name) {
    auto body = co_await req.read_all(o.max_json_body);
    if (!body.ok()) co_return http::error_response(body.error());
    auto parsed = tx_from_json_string(*body, View::RestCreate);
    if (!parsed.ok()) co_return http::error_response(parsed.error());
    TransactionMetadata tx = std::move(*parsed);

    std::optional<std::string> tag;
    if (tx.sender) tag = tx.sender->tag;
    std::optional<std::string_view> tag_view;
    if (tag) tag_view = *tag;
    auto sender = config.resolve(sender_name, tag_view);
    if (!sender.ok()) co_return http::error_response(sender.error());
    const bool incremental = config.is_incremental(*sender);
    if (!incremental && (!tx.mail_from || tx.rcpt_to.size() != 1))
      co_return http::error_response(Errc::bad_request,
          "transaction creation to non-incremental endpoint must contain mail_from and exactly 1 rcpt_to");

    CreateSpec spec;
    spec.rest_id = random_rest_id(o.rest_id_entropy);
    const std::string body_name(kBodyBlobName);
    if (tx.body) {
      if (auto* in = std::get_if<InlineBody>(&*tx.body)) {
        spec.blobs.push_back(BlobSpec::inline_bytes(body_name, std::move(in->text)));
      } else if (auto* re = std::get_if<ReuseBody>(&*tx.body)) {
        if (re->path.blob_id)
          co_return http::error_response(Errc::bad_request, "body.reuse_uri must name a transaction body");
        spec.blobs.push_back(BlobSpec::reuse_of(body_name, re->path.tx_rest_id, body_name));
      } else if (auto* mb = std::get_if<MessageBuilderBody>(&*tx.body)) {
        spec.message_builder = mb->spec.json;
        for (const auto& b : mb->spec.blobs) {
          if (b.kind == MessageBuilderBlob::Kind::inline_data)
            spec.blobs.push_back(BlobSpec::inline_bytes(b.id, b.inline_data));
          else if (b.kind == MessageBuilderBlob::Kind::reuse)
            spec.blobs.push_back(BlobSpec::reuse_of(b.id, b.reuse->tx_rest_id, *b.reuse->blob_id));
          else
            spec.blobs.push_back(BlobSpec::create(b.id));
        }
      } else {
        co_return http::error_response(Errc::bad_request, "body: status form not allowed in a create");
      }
      tx.body.reset();
    } else if (!incremental) {
      spec.blobs.push_back(BlobSpec::create(body_name));
    }
    Sender stored_sender;
    stored_sender.name = sender_name;
    stored_sender.tag = tag;
    tx.sender = stored_sender;
    if (sender->retry) tx.retry = json::object();
    if (sender->notification) tx.notification = json::object();
    spec.json = tx_to_json(tx, View::Db);

    const bool hooks = static_cast<bool>(o.output.reserve);
    const bool reserved = hooks && o.output.reserve();
    spec.leased = reserved || !hooks;
    spec.start_attempt = reserved;  // the output side runs it at once
    if (reserved && o.output.immediate_responses)
      spec.first_attempt_responses = o.output.immediate_responses(sender->output_chain, tx);
    auto f = [this, spec = std::move(spec)]() { return storage.create(spec); };
    auto rec = co_await offload(pool, std::move(f));
    if (!rec.ok()) {
      if (reserved) o.output.unreserve();
      co_return http::error_response(rec.error());
    }
    m_created.inc();
    if (reserved) o.output.start(*rec);
    else if (hooks) o.output.queued();
    log::Logger lg("tx=" + rec->rest_id);
    lg.info("created sender={} tag={} incremental={}", sender_name, tag.value_or(""), incremental);
    // Delivered from here: the first chain pass usually answers MAIL within
    // milliseconds; then the 201 carries it and the client needs no GET.
    // (Not when the create already holds every answer it asked for.)
    if (reserved && !answered(*rec)) {
      if (auto later = co_await first_answer(rec->rest_id, rec->version)) rec = std::move(*later);
    }
    Response r = tx_response(201, *rec);
    r.headers.set("location", o.session_uri + tx_path(rec->rest_id));
    co_return r;
  }

  // ---- GET /transactions/<id> ------------------------------------------------
  Task<Response> get(Request& req, std::string id) {
    std::optional<std::string> inm_raw;
    if (auto h = req.headers.get("if-none-match")) inm_raw = std::string(*h);
    std::chrono::milliseconds budget = o.max_long_poll;
    // Without If-None-Match this is a point read and request-timeout is
    // ignored (rest-api.md §6.2).
    if (auto rt = req.headers.get("request-timeout"); rt && inm_raw) {
      auto secs = parse_decimal(*rt);
      if (!secs) co_return http::error_response(Errc::bad_request, "invalid request-timeout header");
      budget = std::min<std::chrono::milliseconds>(budget, std::chrono::seconds(*secs));
    }
    // If-None-Match naming the version this process last wrote (VersionCache):
    // nothing to read yet, wait at once. A tx leased by another replica is
    // only written here by a cancel; the once-a-second status check below
    // then finds its next version and redirects.
    std::int64_t known = 0;
    const auto cached = inm_raw ? cache.version(id) : std::nullopt;
    if (cached && strip_quotes(*inm_raw) == std::to_string(*cached)) {
      known = *cached;
    } else {
      auto rec = co_await load(id);
      if (!rec.ok()) co_return http::error_response(rec.error());
      if (auto redir = redirect_if_remote(*rec, req)) co_return *redir;
      if (!inm_raw || strip_quotes(*inm_raw) != std::to_string(rec->version))
        co_return tx_response(200, *rec);
      known = rec->version;
    }

    // Long-poll: wake on an in-process change (VersionCache) and re-check the
    // database once a second for writes by other replicas.
    const auto deadline = std::chrono::steady_clock::now() + budget;
    GaugeGuard waiting(m_long_polls);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto slice = std::min<std::chrono::milliseconds>(left, std::chrono::milliseconds(1000));
      // Woken by an in-process write: load at once. A slice ended: a cheap
      // status read first (another replica may have written).
      const bool woken = co_await cache.wait_for_change(id, known, slice);
      if (!woken) {
        auto sf = [this, id]() { return storage.status(id); };
        auto st = co_await offload_read(pool, std::move(sf));
        if (!st.ok()) co_return http::error_response(st.error());
        if (st->version == known) continue;
      }
      auto now = co_await load(id);
      if (!now.ok()) co_return http::error_response(now.error());
      if (now->version != known) {
        if (auto redir = redirect_if_remote(*now, req)) co_return *redir;
        co_return tx_response(200, *now);
      }
    }
    Response r = Response::empty(304);
    r.headers.set("etag", *inm_raw);
    co_return r;
  }

  // ---- PATCH /transactions/<id> ----------------------------------------------
  Task<Response> patch(Request& req, std::string id) {
    std::optional<TransactionMetadata> delta;
    auto body = co_await req.read_all(o.max_json_body);
    if (!body.ok()) co_return http::error_response(body.error());
    if (http::is_json_content_type(req.headers)) {
      auto d = tx_from_json_string(*body, View::RestUpdate);
      if (!d.ok()) co_return http::error_response(d.error());
      if (d->body) co_return http::error_response(Errc::bad_request, "body may not be set in an update; PUT it");
      delta = std::move(*d);
    } else if (!body->empty()) {
      co_return http::error_response(Errc::bad_request, "PATCH body must be application/json (or empty for a heartbeat)");
    }
    auto im = req.headers.get("if-match");
    if (!im) co_return http::error_response(Errc::bad_request, "etags required for update");
    const std::string if_match = strip_quotes(*im);

    // No read first: the write checks the transaction (404), its owner (308),
    // the version (412) and merges the delta into the stored json under the
    // row lock.
    TxWrite w;
    if (delta) {
      const RouterConfig* cfg = &config;
      w.json_update = [cfg, d = std::move(*delta)](const json::object& stored_json) -> Result<json::object> {
        auto stored = tx_from_json(stored_json, View::Db);
        if (!stored.ok()) return Error(Errc::internal, stored.error().message);
        std::optional<std::string> tag;
        std::string sname;
        if (stored->sender) {
          tag = stored->sender->tag;
          sname = stored->sender->name.value_or("");
        }
        std::optional<std::string_view> tag_view;
        if (tag) tag_view = *tag;
        auto sender = cfg->resolve(sname, tag_view);
        if (!sender.ok() || !cfg->is_incremental(*sender))
          return Error(Errc::bad_request, "endpoint does not accept incremental updates");
        auto merged = *stored;
        auto m = tx_merge_from(merged, d);
        if (!m.ok()) return m.error();
        return tx_to_json(merged, View::Db);
      };
    } else {
      w.ping = true;
    }
    const auto expected = parse_decimal(if_match);
    Result<WriteResult> wr = Error(Errc::precondition_failed, "update conflict");
    if (expected) {
      w.return_record = true;
      const auto ev = static_cast<std::int64_t>(*expected);
      auto f = [this, id, ev, w = std::move(w)]() { return storage.write(id, ev, w); };
      wr = co_await offload(pool, std::move(f));
    }
    if (!wr.ok()) {
      if (wr.error().code == Errc::redirect) {
        Response red = Response::empty(308);
        red.headers.set("location", wr.error().message + req.path);
        co_return red;
      }
      if (wr.error().code == Errc::precondition_failed) {
        auto cur = co_await load(id);
        if (!cur.ok()) co_return http::error_response(cur.error());
        if (auto redir = redirect_if_remote(*cur, req)) co_return *redir;
        co_return with_etag(http::error_response(Errc::precondition_failed, "update conflict"), cur->version);
      }
      co_return http::error_response(wr.error());
    }
    if (!wr->record) co_return http::error_response(Errc::not_found, "unknown transaction");
    // A new request (RCPT) to a transaction this process is delivering: wait
    // briefly for its answer, as in create.
    if (delta && wr->record->leased_by_me && o.output.start) {
      if (auto later = co_await first_answer(id, wr->record->version)) co_return tx_response(200, *later);
    }
    co_return tx_response(200, *wr->record);
  }

  // ---- PUT /transactions/<id>/body, /transactions/<id>/blob/<blob> -------------
  Task<Response> put(Request& req, std::string id, std::optional<std::string> blob) {
    std::optional<ContentRange> range;
    std::optional<std::uint64_t> finalize_len;
    if (auto cr = req.headers.get("content-range")) {
      auto r = parse_content_range(*cr);
      if (!r.ok()) co_return http::error_response(r.error());
      range = *r;
      if (req.content_length && *req.content_length != range->length())
        co_return http::error_response(Errc::bad_request, "content-range length differs from content-length");
    }
    std::optional<std::chrono::milliseconds> wait_data;
    if (auto wd = req.headers.get(http::kWaitDataHeader)) {
      auto v = parse_decimal(*wd);
      if (!v) co_return http::error_response(Errc::bad_request, "invalid " + std::string(http::kWaitDataHeader));
      wait_data = std::chrono::milliseconds(std::min<std::uint64_t>(*v, 24u * 3600 * 1000));
    }
    if (auto fl = req.headers.get("x-finalize-blob-length")) {
      if (range) co_return http::error_response(Errc::bad_request, "x-finalize-blob-length with content-range");
      finalize_len = parse_decimal(*fl);
      if (!finalize_len) co_return http::error_response(Errc::bad_request, "invalid x-finalize-blob-length");
      if (req.content_length.value_or(0) != 0 || req.chunked)
        co_return http::error_response(Errc::bad_request, "x-finalize-blob-length with non-empty PUT");
    }
    // No read first: the append checks, in its own DB transaction, that the
    // transaction exists (404), who holds it (308 to the owner), the blob
    // (404 unknown blob; the body is created by the first PUT at 0) and a
    // message-builder body (409).
    const std::string name = blob ? *blob : std::string(kBodyBlobName);
    const bool create_body = !blob;

    // One piece = one DB transaction; a failed piece answers for the request
    // after the earlier pieces were committed (rest-api.md §8.2).
    std::optional<AppendResult> last;
    std::optional<Response> failure;
    auto send = [&](std::int64_t offset, std::string data, std::optional<std::int64_t> total) -> Task<void> {
      AppendRequest a;
      a.tx_rest_id = id;
      a.blob_name = name;
      a.offset = offset;
      a.total = total;
      a.create_body_if_absent = create_body && offset == 0;
      const auto nbytes = static_cast<std::int64_t>(data.size());
      auto f = [this, a, data = std::move(data)]() mutable {
        a.data = data;
        return storage.append_blob(a);
      };
      auto r = co_await offload(pool, std::move(f));
      if (!r.ok()) {
        if (r.error().code == Errc::redirect) {
          Response red = Response::empty(308);
          red.headers.set("location", r.error().message + req.path);
          failure = std::move(red);
        } else {
          failure = http::error_response(r.error());
        }
        co_return;
      }
      if (!r->ok) {
        Response resp = http::error_response(Errc::range_not_satisfiable, "invalid range");
        resp.headers.set("content-range", content_range(r->blob));
        failure = std::move(resp);
        co_return;
      }
      last = *r;
      m_blob_bytes.inc(nbytes);
    };

    if (finalize_len) {
      auto fl = static_cast<std::int64_t>(*finalize_len);
      co_await send(fl, std::string(), fl);
    } else {
      std::int64_t offset = range ? static_cast<std::int64_t>(range->first) : 0;
      const std::int64_t end = range ? static_cast<std::int64_t>(range->last) + 1 : -1;
      std::optional<std::int64_t> total;
      if (range && range->total) total = static_cast<std::int64_t>(*range->total);
      std::string buf, piece;
      for (;;) {
        auto rd = co_await req.body->read_some(piece, o.chunk_size);
        if (!rd.ok()) co_return http::error_response(rd.error());
        if (range && offset + static_cast<std::int64_t>(buf.size() + piece.size()) > end)
          co_return http::error_response(Errc::bad_request, "request body longer than its content-range");
        if (piece.empty()) break;
        buf += piece;
        while (buf.size() >= o.chunk_size) {
          std::string data = buf.substr(0, o.chunk_size);
          buf.erase(0, o.chunk_size);
          const auto n = static_cast<std::int64_t>(data.size());
          co_await send(offset, std::move(data), total);
          if (failure) co_return std::move(*failure);
          offset += n;
        }
      }
      if (range && offset + static_cast<std::int64_t>(buf.size()) != end)
        co_return http::error_response(Errc::bad_request, "request body shorter than its content-range");
      // The remainder. A whole PUT declares its total with its last piece.
      if (!range) total = offset + static_cast<std::int64_t>(buf.size());
      if (!buf.empty() || !last || !range) {
        const auto n = static_cast<std::int64_t>(buf.size());
        co_await send(offset, std::move(buf), total);
        offset += n;
      }
    }
    if (failure) co_return std::move(*failure);
    Response ok = Response::json(200, "{}");
    ok.headers.set("content-range", content_range(last->blob));
    // Ours: the transaction version this PUT produced (it completed the
    // input), so the client can long-poll from it instead of first being
    // told about its own change (docs/compat.md). Not an ETag: that would
    // name the blob.
    if (last->tx_version) ok.headers.set("x-koukan-tx-etag", std::to_string(*last->tx_version));
    if (last->tx_version && wait_data) {
      // Asked to (ours): hold the answer until the data response, and answer
      // with the transaction as a GET would (saves the client that GET).
      auto rec = co_await wait_for_data(id, *last->tx_version, *wait_data);
      if (rec) {
        Response tx = tx_response(200, *rec);
        if (tx.status == 200) {
          tx.headers.set("content-range", content_range(last->blob));
          tx.headers.set("x-koukan-tx-etag", std::to_string(rec->version));
          tx.headers.set(std::string(http::kTxJsonHeader), std::to_string(rec->version));
          co_return tx;
        }
      }
    }
    co_return ok;
  }

  // The transaction once it has a data response, or as it is when `wait`
  // ran out (nullopt: reading it failed; the client polls).
  Task<std::optional<TxRecord>> wait_for_data(std::string id, std::int64_t version,
                                              std::chrono::milliseconds wait) {
    const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(wait, o.max_long_poll);
    std::optional<TxRecord> rec;
    std::int64_t known = version;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() > 0) (void)co_await cache.wait_for_change(id, known, left);
      auto now = co_await load(id);
      if (!now.ok()) co_return rec;
      known = now->version;
      rec = std::move(*now);
      if (std::chrono::steady_clock::now() >= deadline) co_return rec;
      auto view = read_view(*rec);
      if (!view.ok() || view->data_response || view->cancelled) co_return rec;
    }
  }

  static std::string content_range(const BlobState& b) {
    std::optional<std::uint64_t> total;
    if (b.total) total = static_cast<std::uint64_t>(*b.total);
    return format_content_range(static_cast<std::uint64_t>(b.stored_length), total);
  }

  // ---- POST /transactions/<id>/cancel ----------------------------------------------
  Task<Response> cancel(Request& req, std::string id) {
    TxWrite w;
    w.cancel = true;
    auto f = [this, id, w]() { return storage.write(id, std::nullopt, w); };
    auto r = co_await offload(pool, std::move(f));
    if (!r.ok()) co_return http::error_response(r.error());
    co_return Response::empty(200);
  }
};

RestHandler::RestHandler(const RouterConfig& config, Storage& storage, BlockingPool& pool, VersionCache& cache,
                         RestOptions opts)
    : impl_(new Impl{config, storage, pool, cache, std::move(opts)}) {}

RestHandler::~RestHandler() = default;

Task<Response> RestHandler::handle(Request& req) {
  Response r = co_await dispatch(req);
  count_response(r.status);
  co_return r;
}

Task<Response> RestHandler::dispatch(Request& req) {
  auto seg = split_path(req.path);
  const std::string& m = req.method;
  auto method_not_allowed = [] {
    Response r = http::error_response(Errc::bad_request, "method not allowed");
    r.status = 405;
    return r;
  };
  if (seg.size() == 1 && seg[0] == "healthz") {
    m_req_other.inc();
    co_return Response::json(200, "{\"status\":\"ok\"}");
  }
  if (seg.size() == 1 && seg[0] == "metrics") {
    m_req_other.inc();
    Response r = Response::empty(200);
    r.headers.set("content-type", "text/plain; version=0.0.4");
    r.body = metrics::render();
    co_return r;
  }
  if (seg.size() == 3 && seg[0] == "senders" && seg[2] == "transactions") {
    m_req_create.inc();
    if (m != "POST") co_return method_not_allowed();
    co_return co_await impl_->create(req, std::string(seg[1]));
  }
  if (seg.size() >= 2 && seg[0] == "transactions") {
    std::string id(seg[1]);
    if (seg.size() == 2) {
      if (m == "GET") { m_req_get.inc(); co_return co_await impl_->get(req, id); }
      if (m == "PATCH") { m_req_patch.inc(); co_return co_await impl_->patch(req, id); }
    } else if (seg.size() == 3 && seg[2] == "body") {
      if (m == "PUT") { m_req_put.inc(); co_return co_await impl_->put(req, id, std::nullopt); }
    } else if (seg.size() == 4 && seg[2] == "blob") {
      if (m == "PUT") { m_req_put.inc(); co_return co_await impl_->put(req, id, std::string(seg[3])); }
    } else if (seg.size() == 3 && seg[2] == "cancel") {
      if (m == "POST") { m_req_cancel.inc(); co_return co_await impl_->cancel(req, id); }
    } else {
      m_req_other.inc();
      co_return http::error_response(Errc::not_found, "no such route");
    }
    m_req_other.inc();
    co_return method_not_allowed();
  }
  m_req_other.inc();
  co_return http::error_response(Errc::not_found, "no such route");
}

}  // namespace koukan::router
