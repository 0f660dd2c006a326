#include "router/output/output_service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <deque>
#include <atomic>
#include <exception>

#include <fmt/core.h>

#include "common/async/notifier.hpp"
#include "common/base/ids.hpp"
#include "common/base/log.hpp"
#include "common/base/metrics.hpp"
#include "router/output/dsn.hpp"
#include "router/output/exploder.hpp"
#include "router/storage/version_cache.hpp"

namespace koukan::router {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

metrics::Metric m_attempts("koukan_output_attempts_total", "delivery attempts started", "counter");
metrics::Metric m_inflight("koukan_output_inflight", "delivery attempts running", "gauge");
metrics::Metric m_dsns("koukan_dsn_injected_total", "delivery status notifications created", "counter");
metrics::Metric m_final_success("koukan_output_final_total", "attempts ending with a final reason",
                                "counter", R"(result="success")");
metrics::Metric m_final_fail("koukan_output_final_total", "attempts ending with a final reason",
                             "counter", R"(result="failure")");
metrics::Metric m_upstreams("koukan_exploder_upstreams", "Exploder upstreams run in memory (alive)", "gauge");
metrics::Metric m_retries("koukan_output_retries_scheduled_total", "attempts ending with a retry",
                          "counter");

const Response kUnpopulated(450, "internal error: OutputHandler failed to populate response");

Task<void> sleep_for(Clock::duration d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

bool has_body(const TransactionMetadata& tx) { return tx.body.has_value(); }

bool body_finalized(const TransactionMetadata& tx) {
  if (!tx.body) return false;
  const auto* bs = std::get_if<BodyStatus>(&*tx.body);
  if (!bs) return true;  // in-process bodies are complete
  if (bs->blob_status) return bs->blob_status->finalized;
  if (bs->message_builder) {
    for (const auto& [id, s] : bs->message_builder->blob_status)
      if (!s.finalized) return false;
    return true;
  }
  return false;
}

// A request without its response (router.md §8.3 case 1 / §8.2 safety net).
bool fill_unanswered(TransactionMetadata& tx, const Response& r) {
  bool filled = false;
  if (tx.mail_from && !tx.mail_response) {
    tx.mail_response = r;
    filled = true;
  }
  if (tx.rcpt_response.size() < tx.rcpt_to.size()) tx.rcpt_response.resize(tx.rcpt_to.size());
  // After a MAIL error the recipients fail by precondition, in MAIL's class.
  const bool mail_failed = tx.mail_response && tx.mail_response->err();
  const Response rcpt_fill =
      mail_failed ? Response(tx.mail_response->code, "failed precondition: MAIL") : r;
  for (auto& rr : tx.rcpt_response) {
    if (!rr) {
      rr = rcpt_fill;
      filled = true;
    }
  }
  bool any_ok = false;
  for (const auto& rr : tx.rcpt_response) any_ok = any_ok || (rr && rr->ok());
  if (body_finalized(tx) && any_ok && !tx.data_response &&
      !(tx.mail_response && tx.mail_response->err())) {
    tx.data_response = r;
    filled = true;
  }
  return filled;
}

bool unanswered(const TransactionMetadata& tx) {
  TransactionMetadata copy = tx;
  return fill_unanswered(copy, Response(450));
}

std::string header_block(std::string_view bytes) {
  auto p = bytes.find("\r\n\r\n");
  if (p != std::string_view::npos) return std::string(bytes.substr(0, p + 2));
  p = bytes.find("\n\n");
  if (p != std::string_view::npos) return std::string(bytes.substr(0, p + 1));
  return {};
}

std::optional<std::string> find_message_id(const std::string& headers) {
  std::size_t pos = 0;
  while (pos < headers.size()) {
    std::size_t eol = headers.find('\n', pos);
    if (eol == std::string::npos) eol = headers.size();
    std::string_view line(headers.data() + pos, eol - pos);
    if (line.size() > 11) {
      std::string name(line.substr(0, 11));
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      if (name == "message-id:") {
        std::string v(line.substr(11));
        while (!v.empty() && (v.back() == '\r' || v.back() == ' ' || v.back() == '\t')) v.pop_back();
        while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(v.begin());
        if (!v.empty()) return v;
      }
    }
    pos = eol + 1;
  }
  return std::nullopt;
}

}  // namespace

// ---- pure pieces ------------------------------------------------------------------

Result<TransactionMetadata> downstream_view(const TxRecord& rec) {
  auto tx = tx_from_json(rec.json, View::Db);
  if (!tx.ok()) return Error(Errc::internal, "stored tx json: " + tx.error().message);
  tx->notification.reset();
  tx->retry.reset();
  tx->final_attempt_reason.reset();
  tx->attempt_count.reset();
  if (rec.message_builder) {
    BodyStatus bs;
    MessageBuilderStatus mb;
    for (const auto& b : rec.blobs)
      mb.blob_status.emplace_back(b.name, BlobStatus{"blob/" + b.name, b.finalized});
    bs.message_builder = std::move(mb);
    tx->body = std::move(bs);
  } else if (const BlobRef* b = rec.body()) {
    BodyStatus bs;
    bs.blob_status = BlobStatus{"body", b->finalized};
    tx->body = std::move(bs);
  }
  return tx;
}

AttemptOutcome decide_outcome(const TransactionMetadata& tx, bool downstream_timeout) {
  AttemptOutcome o;
  if (!tx.cancelled && !downstream_timeout && unanswered(tx)) {
    // Terminal filters answer every request they get within the pass: an
    // open request afterwards means the chain broke its contract (§8.3 #1).
    o.done = true;
    o.needs_retry_decision = true;
    return o;
  }
  if (tx.cancelled) {
    o.done = true;
    return o;
  }
  if (downstream_timeout) {
    o.done = true;
    o.final_reason = "downstream timeout";
    return o;
  }
  if (tx.mail_response && tx.mail_response->err()) {
    o.done = true;
    if (tx.mail_response->perm()) o.final_reason = "upstream mail_response permfail";
    else o.needs_retry_decision = true;
    return o;
  }
  bool any_ok = false;
  bool all_answered = tx.rcpt_response.size() >= tx.rcpt_to.size();
  for (const auto& r : tx.rcpt_response) any_ok = any_ok || (r && r->ok());
  if (!tx.rcpt_to.empty() && all_answered && !any_ok && has_body(tx)) {
    o.done = true;
    if (tx.rcpt_to.size() == 1) {
      if (tx.rcpt_response[0]->perm()) o.final_reason = "upstream rcpt_response permfail";
      else o.needs_retry_decision = true;
    } else {
      o.final_reason = "exploder/oneshot all rcpts failed";
    }
    return o;
  }
  if (tx.data_response) {
    o.done = true;
    if (tx.data_response->ok()) o.final_reason = "upstream response success";
    else if (tx.data_response->perm()) o.final_reason = "upstream response permfail";
    else o.needs_retry_decision = true;
    return o;
  }
  return o;
}

// ---- the service ----------------------------------------------------------------

struct OutputService::Impl : std::enable_shared_from_this<OutputService::Impl> {
  OutputDeps d;
  std::size_t max_inflight;
  std::size_t inflight = 0;  // running + reserved (I/O thread)
  bool stopping = false;
  asio::steady_timer wake_timer;
  std::atomic<bool> woken{false};

  explicit Impl(OutputDeps deps)
      : d(std::move(deps)),
        max_inflight(static_cast<std::size_t>(std::max(0, d.config->global.output.max_inflight))),
        wake_timer(d.executor) {}

  Storage& storage() { return *d.storage; }
  BlockingPool& pool() { return *d.pool; }

  void release_slot() {
    if (inflight > 0) --inflight;
    m_inflight.dec();
    wake();
  }
  void wake() {
    woken.store(true);
    auto self = shared_from_this();
    asio::post(d.executor, [self]() { self->wake_timer.cancel(); });
  }
};

OutputService::OutputService(OutputDeps deps) : impl_(std::make_shared<Impl>(std::move(deps))) {}
OutputService::~OutputService() = default;

bool OutputService::try_reserve() {
  if (impl_->stopping || impl_->inflight >= impl_->max_inflight) return false;
  ++impl_->inflight;
  m_inflight.inc();
  return true;
}
void OutputService::attach(Storage* storage, BlockingPool* pool) {
  impl_->d.storage = storage;
  impl_->d.pool = pool;
}
void OutputService::unreserve() { impl_->release_slot(); }
void OutputService::wake() { impl_->wake(); }
std::size_t OutputService::inflight() const { return impl_->inflight; }
std::size_t OutputService::max_inflight() const { return impl_->max_inflight; }
Storage& OutputService::storage() const { return *impl_->d.storage; }
BlockingPool& OutputService::pool() const { return *impl_->d.pool; }
VersionCache& OutputService::cache() const { return *impl_->d.cache; }
const RouterConfig& OutputService::config() const { return *impl_->d.config; }
const chain::ChainMap& OutputService::chains() const { return *impl_->d.chains; }
void OutputService::stop() {
  impl_->stopping = true;
  impl_->wake();
}

// ---- one attempt ------------------------------------------------------------------

namespace {

struct Attempt {
  std::shared_ptr<OutputService::Impl> s;
  TxRecord rec;
  Clock::time_point rec_read = Clock::now();
  std::int64_t attempt_id = 0;
  log::Logger lg;
  const OutputHandlerConfig* oh = nullptr;  // the chain's output_handler (may be null)
  std::shared_ptr<const chain::ChainTemplate> tmpl;
  chain::TxEnv env;
  std::unique_ptr<chain::ChainInstance> chain;
  std::optional<json::object> written_responses;
  bool pending_reload = false;  // a write met a downstream change: reload before the next round

  const RouterConfig& cfg() const { return *s->d.config; }
  Storage& storage() { return s->storage(); }

  // The DB clock now (the last read's DB time plus local elapsed time).
  std::int64_t db_now() const {
    return rec.now + std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - rec_read).count();
  }

  void refresh_env() {
    env.rest_id = rec.rest_id;
    env.body.reset();
    env.parts.clear();
    for (const auto& b : rec.blobs) {
      chain::BlobInfo bi{b.name, b.blob_id, b.stored_length, b.total, b.finalized};
      if (b.name == kBodyBlobName) env.body = bi;
      else env.parts.push_back(bi);
    }
  }

  Task<Result<TxRecord>> load() {
    auto id = rec.rest_id;
    auto* st = &storage();
    auto f = [st, id]() { return st->load(id); };
    co_return co_await offload_read(s->pool(), std::move(f));
  }

  Task<Result<WriteResult>> write(std::optional<std::int64_t> expected, TxWrite w) {
    auto id = rec.rest_id;
    auto* st = &storage();
    auto f = [st, id, expected, w = std::move(w)]() { return st->write(id, expected, w); };
    co_return co_await offload(s->pool(), std::move(f));
  }

  // Resolves sender -> chain. Error: config no longer knows them.
  Result<void> resolve_chain() {
    auto tx = tx_from_json(rec.json, View::Db);
    if (!tx.ok()) return Error(Errc::internal, "stored tx json: " + tx.error().message);
    if (!tx->sender || !tx->sender->name) return Error(Errc::internal, "stored tx has no sender");
    std::optional<std::string_view> tag;
    if (tx->sender->tag) tag = *tx->sender->tag;
    auto es = cfg().resolve(*tx->sender->name, tag);
    if (!es.ok()) return Error(Errc::unavailable, "sender: " + es.error().message);
    const EndpointConfig* ep = cfg().find_endpoint(es->output_chain);
    auto it = s->d.chains->find(es->output_chain);
    if (!ep || it == s->d.chains->end())
      return Error(Errc::unavailable, fmt::format("sender {}: no output chain '{}'",
                                                  *tx->sender->name, es->output_chain));
    oh = ep->output_handler ? &*ep->output_handler : nullptr;
    tmpl = it->second;
    return {};
  }

  // Writes the head tx's responses if they changed; on a version conflict
  // (downstream wrote meanwhile) reloads and retries: the downstream change
  // is picked up next round.
  Task<Result<void>> write_responses(const TransactionMetadata& head, TxWrite extra,
                                     bool final_write) {
    json::object resp = tx_to_json(head, View::DbAttempt);
    if (!final_write && written_responses && *written_responses == resp) co_return Result<void>();
    extra.attempt_responses = resp;
    for (int i = 0; i < 6; ++i) {
      auto r = co_await write(rec.version, extra);
      if (r.ok()) {
        written_responses = resp;
        rec.version = r->version;
        co_return Result<void>();
      }
      if (r.error().code != Errc::precondition_failed) co_return r.error();
      auto fresh = co_await load();
      if (!fresh.ok()) co_return fresh.error();
      // The round loop reloads before its next pass and sees the change.
      rec.version = fresh->version;
      pending_reload = true;
      if (extra.final_attempt_reason && fresh->is_final() &&
          fresh->final_attempt_reason != extra.final_attempt_reason) {
        // Cancelled meanwhile: its final reason stands.
        extra.final_attempt_reason.reset();
        extra.retry_after.reset();
        extra.next_attempt_time.reset();
      }
    }
    co_return Error(Errc::unavailable, "too many version conflicts writing responses");
  }

  // §8.7: should a DSN go out? Returns the recipients to report (empty: none).
  std::vector<DsnRecipient> dsn_recipients(const TransactionMetadata& tx, bool final) const {
    std::vector<DsnRecipient> out;
    if (!final) return out;
    if (!tx.mail_from || tx.mail_from->mailbox.empty()) return out;  // never bounce a bounce
    auto add = [&](std::size_t i, const Response& r) {
      if (i < tx.rcpt_to.size()) out.push_back(DsnRecipient{tx.rcpt_to[i].mailbox, r, DsnAction::failed});
    };
    if (tx.mail_response && tx.mail_response->err()) {
      for (std::size_t i = 0; i < tx.rcpt_to.size(); ++i) add(i, *tx.mail_response);
      return out;
    }
    for (std::size_t i = 0; i < tx.rcpt_to.size(); ++i) {
      const auto* r = i < tx.rcpt_response.size() && tx.rcpt_response[i] ? &*tx.rcpt_response[i] : nullptr;
      if (r && r->err()) add(i, *r);
      else if (r && tx.data_response && tx.data_response->err()) add(i, *tx.data_response);
    }
    return out;
  }

  Task<Result<std::string>> original_headers() {
    if (!env.body || env.body->length == 0) co_return std::string();
    auto* st = &storage();
    auto blob = env.body->blob_id;
    auto f = [st, blob]() { return st->read_blob(blob, 0, 64 * 1024); };
    auto r = co_await offload_read(s->pool(), std::move(f));
    if (!r.ok()) co_return r.error();
    co_return header_block(*r);
  }

  // Builds and injects the DSN. Ok(false): nothing to send.
  Task<Result<bool>> notify(const TransactionMetadata& tx, bool final);
};

Task<Result<bool>> Attempt::notify(const TransactionMetadata& tx, bool final) {
  if (!oh || !oh->notification || !rec.notification) co_return false;
  auto rcpts = dsn_recipients(tx, final);
  if (rcpts.empty()) co_return false;
  if (!cfg().global.mailer_daemon_mailbox) {
    lg.error("DSN needed but global.mailer_daemon_mailbox is not set: no bounce sent");
    co_return false;
  }
  DsnInput in;
  in.mailer_daemon_mailbox = *cfg().global.mailer_daemon_mailbox;
  in.mail_from = tx.mail_from->mailbox;
  in.recipients = std::move(rcpts);
  in.arrival_time = rec.creation;
  in.last_attempt_time = db_now();
  auto hdrs = co_await original_headers();
  if (hdrs.ok()) {
    in.original_headers = *hdrs;
    in.original_message_id = find_message_id(in.original_headers);
  }
  auto dsn = build_dsn(in);
  if (!dsn.ok()) co_return dsn.error();

  OutputService::NewTx n;
  n.sender = oh->notification->sender;
  n.tag = oh->notification->tag;
  Mailbox null_path;
  n.tx.mail_from = null_path;
  Mailbox to;
  to.mailbox = tx.mail_from->mailbox;
  n.tx.rcpt_to.push_back(std::move(to));
  n.blobs.push_back(BlobSpec::inline_bytes(std::string(kBodyBlobName), std::move(*dsn)));
  OutputService svc_view(s);  // non-owning facade over the same Impl
  auto created = co_await svc_view.create(std::move(n));
  if (!created.ok()) co_return created.error();
  m_dsns.inc();
  lg.info("DSN {} queued for {}", created->rec.rest_id, tx.mail_from->mailbox);
  co_return true;
}

Task<void> run_notification_only(Attempt& a) {
  // Late notification (router.md §8.8 pseudo-attempt): the attempt is over;
  // report the stored final result.
  auto tx = tx_from_json(a.rec.json, View::Db);
  TxWrite w;
  w.release_lease = true;
  w.notification_done = true;
  if (tx.ok()) {
    if (a.rec.attempt_responses) {
      auto att = tx_from_json(*a.rec.attempt_responses, View::DbAttempt);
      if (att.ok()) {
        tx->mail_response = att->mail_response;
        tx->rcpt_response = att->rcpt_response;
        tx->data_response = att->data_response;
      }
    }
    a.refresh_env();
    auto r = co_await a.notify(*tx, true);
    if (!r.ok()) {
      a.lg.error("late notification failed: {}; retrying later", r.error().message);
      w.notification_done = false;
    }
  }
  for (int i = 0; i < 5; ++i) {
    auto r = co_await a.write(a.rec.version, w);
    if (r.ok() || r.error().code != Errc::precondition_failed) break;
    auto fresh = co_await a.load();
    if (!fresh.ok()) break;
    a.rec.version = fresh->version;
  }
}

// The end of an attempt (router.md §8.3-§8.8): the final reason or the next
// retry, a DSN for a final failure, the responses written and the lease
// released, then a last `cancelled` pass so the chain's upstream side lets
// go. `failure`: the attempt broke (bug_retry).
Task<void> finalize_attempt(Attempt& a, TransactionMetadata head, AttemptOutcome outcome,
                            std::optional<Error> failure) {
  TxWrite fw;
  fw.release_lease = true;
  const bool has_retry = [&] {
    auto tx = tx_from_json(a.rec.json, View::Db);
    return tx.ok() && tx->retry.has_value();
  }();
  const double bug_retry = a.oh && a.oh->retry_params ? a.oh->retry_params->bug_retry : 3600;
  if (failure) {
    a.lg.error("attempt {} failed: {}", a.attempt_id, failure->message);
    fill_unanswered(head, kUnpopulated);
    fw.retry_after = std::chrono::seconds(static_cast<std::int64_t>(bug_retry));
  } else {
    if (fill_unanswered(head, kUnpopulated))
      a.lg.warn("chain left requests unanswered; filled with 450");
    if (!outcome.final_reason.empty()) {
      fw.final_attempt_reason = outcome.final_reason;
    } else if (outcome.needs_retry_decision || !outcome.done) {
      if (has_retry) {
        RetryParams rp = a.oh && a.oh->retry_params ? *a.oh->retry_params : RetryParams{};
        auto dec = next_attempt(rp, static_cast<int>(a.attempt_id), a.rec.creation, a.db_now(), a.s->d.jitter);
        if (dec.retry) {
          fw.retry_after = std::chrono::seconds(dec.delay);
          m_retries.inc();
          a.lg.info("attempt {} temporary failure; retry in {}s", a.attempt_id, dec.delay);
        } else {
          fw.final_attempt_reason = std::string(dec.final_reason);
        }
      } else if (!a.rec.final_attempt_reason) {
        fw.final_attempt_reason = std::string(kOneshotReason);
      }
    }
    const bool final = fw.final_attempt_reason && *fw.final_attempt_reason != kOneshotReason;
    if (final) {
      (outcome.final_reason == "upstream response success" ? m_final_success : m_final_fail).inc();
      auto n = co_await a.notify(head, true);
      if (n.ok()) {
        fw.notification_done = *n;
      } else {
        a.lg.error("DSN injection failed: {}; attempt retried later", n.error().message);
        fw.final_attempt_reason.reset();
        fw.retry_after = std::chrono::seconds(static_cast<std::int64_t>(bug_retry));
      }
    }
  }
  auto w = co_await a.write_responses(head, fw, true);
  if (!w.ok()) a.lg.error("final write failed: {}", w.error().message);
  else
    a.lg.info("attempt {} done: {}", a.attempt_id,
              fw.final_attempt_reason ? *fw.final_attempt_reason : std::string("retry scheduled"));

  // Let the upstream side (rest_output, exploder) release its resources.
  if (!a.chain->tx().cancelled) {
    TransactionMetadata cancel;
    cancel.cancelled = true;
    auto r = co_await a.chain->update(std::move(cancel));
    if (!r.ok()) a.lg.debug("final cancel pass: {}", r.error().message);
  }
}


Task<void> run_attempt_rounds(Attempt& a) {
  const RouterConfig& cfg = a.cfg();
  auto& cache = *a.s->d.cache;
  // At least 1 s: upstream_refresh 0 would turn heartbeats into a busy loop.
  const auto refresh = std::chrono::seconds(std::max(1, a.oh ? a.oh->upstream_refresh : 30));
  const auto downstream_timeout = std::chrono::seconds(a.oh ? a.oh->downstream_timeout : 60);
  (void)cfg;

  TransactionMetadata prev_down;
  auto last_change = Clock::now();
  auto last_chain = Clock::time_point{};
  auto last_remote_check = Clock::now();
  bool timed_out = false;
  std::optional<Error> failure;  // bug: finalize with bug_retry
  AttemptOutcome outcome;

  for (;;) {
    if (a.pending_reload) {
      a.pending_reload = false;
      auto fresh = co_await a.load();
      if (!fresh.ok()) {
        failure = fresh.error();
        break;
      }
      a.rec = std::move(*fresh);
      a.rec_read = Clock::now();
      last_change = Clock::now();
    }
    auto down = downstream_view(a.rec);
    if (!down.ok()) {
      failure = down.error();
      break;
    }
    auto delta = tx_delta(prev_down, *down, View::All);
    if (!delta.ok()) {
      failure = delta.error();
      break;
    }
    if (delta->empty() && !down->cancelled) {
      auto since = Clock::now() - last_chain;
      if (since < refresh) {
        // Wait for downstream input (or the heartbeat time).
        auto left = refresh - since;
        auto to_timeout = downstream_timeout - (Clock::now() - last_change);
        auto slice = std::min<Clock::duration>({left, std::max<Clock::duration>(to_timeout, Clock::duration::zero()),
                                                std::chrono::duration_cast<Clock::duration>(a.s->d.remote_check_interval)});
        bool changed = false;
        if (slice > Clock::duration::zero())
          changed = co_await cache.wait_for_change(a.rec.rest_id, a.rec.version, slice);
        if (!changed && Clock::now() - last_remote_check >= a.s->d.remote_check_interval) {
          last_remote_check = Clock::now();
          auto id = a.rec.rest_id;
          auto* st = &a.storage();
          auto f = [st, id]() { return st->status(id); };
          auto stt = co_await offload_read(*a.s->d.pool, std::move(f));
          changed = stt.ok() && stt->version != a.rec.version;
        }
        if (changed) {
          auto fresh = co_await a.load();
          if (!fresh.ok()) {
            failure = fresh.error();
            break;
          }
          if (!fresh->leased_by_me) {
            a.lg.warn("lost the lease; abandoning the attempt");
            co_return;
          }
          a.rec = std::move(*fresh);
          a.rec_read = Clock::now();
          last_change = Clock::now();
          continue;
        }
        if (Clock::now() - last_change >= downstream_timeout) {
          timed_out = true;
        } else if (Clock::now() - last_chain < refresh) {
          continue;
        }
      }
      // else: heartbeat pass (empty delta), or input done and idle.
    }

    a.refresh_env();
    auto up = co_await a.chain->update(std::move(*delta));
    last_chain = Clock::now();
    prev_down = std::move(*down);
    if (!up.ok()) {
      failure = up.error();
      break;
    }
    const TransactionMetadata& head = a.chain->tx();
    outcome = decide_outcome(head, timed_out);
    if (outcome.done) break;
    auto w = co_await a.write_responses(head, TxWrite{}, false);
    if (!w.ok()) {
      failure = w.error();
      break;
    }
  }

  co_await finalize_attempt(a, a.chain->tx(), outcome, failure);
}

Task<Result<std::string>> read_blob_task(std::shared_ptr<OutputService::Impl> s, std::int64_t blob,
                                        std::int64_t off, std::size_t max) {
  auto* st = s->d.storage;
  auto f = [st, blob, off, max]() { return st->read_blob(blob, off, max); };
  co_return co_await offload_read(*s->d.pool, std::move(f));
}

Task<void> run_attempt(std::shared_ptr<OutputService::Impl> s, TxRecord rec, std::int64_t attempt_id,
                       bool notification_only) {
  struct SlotGuard {
    std::shared_ptr<OutputService::Impl> s;
    ~SlotGuard() { s->release_slot(); }
  } guard{s};
  m_attempts.inc();
  Attempt a;
  a.s = s;
  a.rec = std::move(rec);
  a.attempt_id = attempt_id;
  a.lg = log::Logger("tx=" + a.rec.rest_id);
  if (notification_only) {
    a.lg.info("late notification");
    auto r = a.resolve_chain();
    if (!r.ok()) a.lg.error("{}", r.error().message);
    co_await run_notification_only(a);
    co_return;
  }
  if (auto r = a.resolve_chain(); !r.ok()) {
    // Config changed under a stored tx: keep it, retry much later.
    a.lg.error("attempt {}: {}; retry in 1h", attempt_id, r.error().message);
    TxWrite w;
    w.release_lease = true;
    w.retry_after = std::chrono::seconds(3600);
    (void)co_await a.write(std::nullopt, std::move(w));
    co_return;
  }
  a.lg.info("attempt {} chain={}", attempt_id, a.tmpl->name());
  // Responses stored with the attempt (at create: the Exploder's MAIL
  // answer) are not written again.
  if (a.rec.attempt_responses) a.written_responses = *a.rec.attempt_responses;
  a.env.read_blob = [s](std::int64_t blob, std::int64_t off, std::size_t max) {
    return read_blob_task(s, blob, off, max);
  };
  a.chain = std::make_unique<chain::ChainInstance>(a.tmpl, &a.env);
  co_await run_attempt_rounds(a);
}

// ---- in-memory Exploder upstreams --------------------------------------------------

class MemUpstream final : public OutputService::Upstream, public std::enable_shared_from_this<MemUpstream> {
 public:
  MemUpstream(std::shared_ptr<OutputService::Impl> s, TransactionMetadata stored, std::string body_of,
              std::shared_ptr<const chain::ChainTemplate> tmpl, const chain::TxEnv& down_env)
      : s_(std::move(s)), stored_(std::move(stored)), body_of_(std::move(body_of)) {
    env_.rest_id = down_env.rest_id;  // for logs, and add_route's body reuse
    env_.read_blob = down_env.read_blob;
    chain_ = std::make_unique<chain::ChainInstance>(std::move(tmpl), &env_);
    lg_ = log::Logger("tx=" + down_env.rest_id + " upstream " + (stored_.rcpt_to.empty() ? std::string("?") : stored_.rcpt_to[0].mailbox));
    m_upstreams.inc();
  }
  ~MemUpstream() override { m_upstreams.dec(); }

  void start() {
    // The stored view's envelope without the fields the output handler keeps
    // to itself (downstream_view()).
    TransactionMetadata first = stored_;
    first.retry.reset();
    first.notification.reset();
    push(std::move(first));
  }

  void push_body(const chain::BlobInfo& body) override {
    env_.body = body;
    TransactionMetadata d;
    BodyStatus bs;
    bs.blob_status = BlobStatus{"body", body.finalized};
    d.body = std::move(bs);
    push(std::move(d));
  }
  void ping() override {
    if (!running_ && queue_.empty() && !rec_) push(TransactionMetadata{});
  }
  void cancel() override {
    if (rec_ || cancel_pushed_) return;
    cancel_pushed_ = true;
    TransactionMetadata d;
    d.cancelled = true;
    push(std::move(d));
  }
  TransactionMetadata view() const override {
    TransactionMetadata v = chain_ ? chain_->tx() : last_view_;
    if (failure_) fill_unanswered(v, kUnpopulated);
    return v;
  }
  std::int64_t version() const override { return version_; }
  Task<void> wait_for_change(std::int64_t known, Clock::duration d) override {
    if (version_ != known) co_return;
    co_await changed_.wait_until(Clock::now() + d);
  }
  bool persisted() const override { return rec_.has_value(); }

  Task<Result<void>> persist() override {
    if (rec_) co_return Result<void>();
    if (persisting_) co_return Error(Errc::conflict, "upstream is being stored");
    persisting_ = true;
    const RouterConfig& cfg = *s_->d.config;
    TransactionMetadata t = stored_;
    t.retry = json::object();
    if (!(t.mail_from && t.mail_from->mailbox.empty())) t.notification = json::object();
    CreateSpec spec;
    spec.rest_id = random_rest_id(static_cast<std::size_t>(cfg.global.rest_id_entropy));
    spec.json = tx_to_json(t, View::Db);
    spec.blobs.push_back(BlobSpec::reuse_of(std::string(kBodyBlobName), body_of_, std::string(kBodyBlobName)));
    spec.leased = true;
    spec.start_attempt = true;
    auto* st = s_->d.storage;
    auto f = [st, spec = std::move(spec)]() { return st->create(spec); };
    auto created = co_await offload(*s_->d.pool, std::move(f));
    persisting_ = false;
    if (!created.ok()) co_return created.error();
    rec_ = std::move(*created);
    m_attempts.inc();
    lg_.info("stored as {} for store&forward: retry and notification on", rec_->rest_id);
    if (!running_) spawn(s_->d.executor, finish(shared_from_this()), "upstream finish");
    co_return Result<void>();
  }

 private:
  void push(TransactionMetadata d) {
    queue_.push_back(std::move(d));
    if (running_) return;
    running_ = true;
    spawn(s_->d.executor, drive(shared_from_this()), "upstream pass");
  }

  // Runs the queued passes in order; a stored upstream's attempt ends after.
  static Task<void> drive(std::shared_ptr<MemUpstream> self) {
    while (!self->queue_.empty() && self->chain_) {
      TransactionMetadata d = std::move(self->queue_.front());
      self->queue_.pop_front();
      Result<TransactionMetadata> r = Error(Errc::internal, "chain pass threw");
      try {
        r = co_await self->chain_->update(std::move(d));
      } catch (const std::exception& e) {
        r = Error(Errc::internal, std::string("chain pass threw: ") + e.what());
      }
      if (!r.ok() && !self->failure_) {
        self->lg_.error("chain pass failed: {}", r.error().message);
        self->failure_ = r.error();
      }
      ++self->version_;
      self->changed_.notify_all();
    }
    self->running_ = false;
    if (self->rec_ && self->chain_) co_await finish(self);
  }

  // The stored upstream's first attempt ends with what the run got.
  static Task<void> finish(std::shared_ptr<MemUpstream> self) {
    if (!self->chain_ || self->running_) co_return;
    Attempt a;
    a.s = self->s_;
    a.rec = *self->rec_;
    a.attempt_id = std::max<std::int64_t>(1, a.rec.attempt_count);
    a.lg = log::Logger("tx=" + a.rec.rest_id);
    if (auto r = a.resolve_chain(); !r.ok()) a.lg.error("{}", r.error().message);
    a.env = self->env_;
    a.env.rest_id = a.rec.rest_id;
    self->last_view_ = self->chain_->tx();
    TransactionMetadata head = self->view();
    a.chain = std::move(self->chain_);  // its env pointer stays self->env_ (alive: self)
    const AttemptOutcome outcome = decide_outcome(head, false);
    co_await finalize_attempt(a, std::move(head), outcome, self->failure_);
  }

  std::shared_ptr<OutputService::Impl> s_;
  TransactionMetadata stored_;  // what a stored copy would hold (sender, envelope)
  std::string body_of_;         // the downstream tx, whose body a stored copy reuses
  chain::TxEnv env_;
  std::unique_ptr<chain::ChainInstance> chain_;
  TransactionMetadata last_view_;  // after the chain moved to the stored attempt
  std::deque<TransactionMetadata> queue_;
  bool running_ = false;
  bool cancel_pushed_ = false;
  bool persisting_ = false;
  std::int64_t version_ = 0;
  std::optional<Error> failure_;
  std::optional<TxRecord> rec_;
  Notifier changed_;
  log::Logger lg_;
};

}  // namespace

// A facade over an existing Impl (for Attempt::notify).
OutputService::OutputService(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

void OutputService::start_new(TxRecord rec) {
  auto s = impl_;
  auto go = [](std::shared_ptr<Impl> s, TxRecord rec) -> Task<void> {
    if (rec.leased_by_me && rec.attempt_count > 0) {
      // Created with its first attempt already started (CreateSpec::start_attempt).
      const std::int64_t attempt = rec.attempt_count;
      co_await run_attempt(s, std::move(rec), attempt, false);
      co_return;
    }
    bool oneshot = true;
    if (auto tx = tx_from_json(rec.json, View::Db); tx.ok()) oneshot = !tx->retry.has_value();
    auto id = rec.rest_id;
    auto* st = s->d.storage;
    auto f = [st, id, oneshot]() { return st->start_attempt(id, std::nullopt, oneshot); };
    auto started = co_await offload(*s->d.pool, std::move(f));
    if (!started.ok()) {
      log::Logger("tx=" + id).error("start attempt: {}", started.error().message);
      s->release_slot();
      co_return;
    }
    if (started->record) {
      co_await run_attempt(s, std::move(*started->record), started->attempt_id, false);
      co_return;
    }
    auto g = [st, id]() { return st->load(id); };
    auto fresh = co_await offload_read(*s->d.pool, std::move(g));
    if (!fresh.ok()) {
      s->release_slot();
      co_return;
    }
    co_await run_attempt(s, std::move(*fresh), started->attempt_id, false);
  };
  spawn(impl_->d.executor, go(s, std::move(rec)), "output attempt");
}

Task<void> OutputService::dequeue_loop() {
  auto s = impl_;
  while (!s->stopping) {
    std::size_t free = s->inflight < s->max_inflight ? s->max_inflight - s->inflight : 0;
    bool more = false;
    if (free > 0 && s->d.config->global.dequeue) {
      s->woken.store(false);
      std::size_t want = std::min<std::size_t>(free, 64);
      auto* st = s->d.storage;
      auto f = [st, want]() { return st->dequeue(want); };
      auto got = co_await offload(*s->d.pool, std::move(f));
      if (!got.ok()) {
        log::error("dequeue: {}", got.error().message);
      } else {
        for (auto& d : *got) {
          ++s->inflight;
          m_inflight.inc();
          spawn(s->d.executor, run_attempt(s, std::move(d.tx), d.attempt_id, d.notification_only),
                "output attempt");
        }
        more = got->size() == want;
      }
    }
    if (s->stopping) break;
    if (more || s->woken.load()) continue;
    s->wake_timer.expires_after(s->d.dequeue_interval);
    co_await s->wake_timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

OutputService::NewTx OutputService::copy_for_rcpt(const TransactionMetadata& tx, std::size_t rcpt,
                                                  std::string sender, std::optional<std::string> tag,
                                                  const std::string* body_of) {
  NewTx n;
  n.sender = std::move(sender);
  n.tag = std::move(tag);
  n.tx.remote_host = tx.remote_host;
  n.tx.local_host = tx.local_host;
  n.tx.mail_from = tx.mail_from;
  n.tx.smtp_meta = tx.smtp_meta;
  Mailbox m = tx.rcpt_to.at(rcpt);
  m.routed = false;
  n.tx.rcpt_to.push_back(std::move(m));
  if (body_of)
    n.blobs.push_back(BlobSpec::reuse_of(std::string(kBodyBlobName), *body_of, std::string(kBodyBlobName)));
  n.start = true;
  return n;
}

Task<Result<OutputService::Created>> OutputService::create(NewTx n) {
  auto s = impl_;
  const RouterConfig& cfg = *s->d.config;
  std::optional<std::string_view> tag;
  if (n.tag) tag = *n.tag;
  auto es = cfg.resolve(n.sender, tag);
  if (!es.ok()) co_return es.error();
  Sender snd;
  snd.name = n.sender;
  snd.tag = n.tag;
  n.tx.sender = snd;
  if (es->retry) n.tx.retry = json::object();
  if (es->notification && !(n.tx.mail_from && n.tx.mail_from->mailbox.empty()))
    n.tx.notification = json::object();
  CreateSpec spec;
  spec.rest_id = random_rest_id(static_cast<std::size_t>(cfg.global.rest_id_entropy));
  spec.json = tx_to_json(n.tx, View::Db);
  spec.blobs = std::move(n.blobs);
  const bool start = n.start && try_reserve();
  spec.leased = start;
  spec.start_attempt = start;
  auto* st = s->d.storage;
  auto f = [st, spec = std::move(spec)]() { return st->create(spec); };
  auto rec = co_await offload(*s->d.pool, std::move(f));
  if (!rec.ok()) {
    if (start) unreserve();
    co_return rec.error();
  }
  Created c{*rec, start};
  if (start) start_new(std::move(*rec));
  else wake();
  co_return c;
}

std::optional<json::object> OutputService::immediate_responses(const std::string& output_chain,
                                                              const TransactionMetadata& tx) const {
  if (!tx.mail_from) return std::nullopt;
  auto it = impl_->d.chains->find(output_chain);
  if (it == impl_->d.chains->end() || it->second->links().empty() ||
      it->second->links().front().filter != "exploder")
    return std::nullopt;
  TransactionMetadata r;
  r.mail_response = Response(250, kExploderMailOk);
  return tx_to_json(r, View::DbAttempt);
}

Result<std::shared_ptr<OutputService::Upstream>> OutputService::start_upstream(NewTx n, const chain::TxEnv& env) {
  const RouterConfig& cfg = *impl_->d.config;
  std::optional<std::string_view> tag;
  if (n.tag) tag = *n.tag;
  auto es = cfg.resolve(n.sender, tag);
  if (!es.ok()) return es.error();
  auto it = impl_->d.chains->find(es->output_chain);
  if (it == impl_->d.chains->end())
    return Error(Errc::unavailable, fmt::format("sender {}: no output chain '{}'", n.sender, es->output_chain));
  Sender snd;
  snd.name = n.sender;
  snd.tag = n.tag;
  n.tx.sender = snd;
  auto up = std::make_shared<MemUpstream>(impl_, std::move(n.tx), env.rest_id, it->second, env);
  up->start();
  return std::shared_ptr<Upstream>(std::move(up));
}

}  // namespace koukan::router
