#include "gateway/outbound/outbound_tx.hpp"

#include <boost/asio/as_tuple.hpp>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "common/base/ids.hpp"

namespace koukan::gateway::outbound {

namespace {

Task<Result<std::unique_ptr<smtp::ByteStream>>> tcp_connect(asio::any_io_executor ex, HostPort to,
                                                            smtp::ConnectOptions o) {
  co_return co_await smtp::connect_tcp(std::move(ex), to, o);
}

}  // namespace

Connector tcp_connector() {
  return [](asio::any_io_executor ex, const HostPort& to, smtp::ConnectOptions o) {
    return tcp_connect(std::move(ex), to, o);
  };
}

Clock::duration seconds_to_duration(double s) {
  if (s < 0) s = 0;
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// ---- OutboundTx ----------------------------------------------------------------

OutboundTx::OutboundTx(std::string id_, SmtpHostConfig host_)
    : id(std::move(id_)), log("tx=" + id), host(std::move(host_)), last_change(Clock::now()) {}

void OutboundTx::publish() {
  ++version;
  last_change = Clock::now();
  published.notify_all();
}

void OutboundTx::cancel() {
  if (tx.cancelled) return;
  tx.cancelled = true;
  input.notify_all();
  taken.notify_all();
  publish();
}

TransactionMetadata read_view(const OutboundTx& t, std::string_view session_uri) {
  TransactionMetadata r;
  r.remote_host = t.tx.remote_host;
  r.local_host = t.tx.local_host;
  r.mail_from = t.tx.mail_from;
  r.mail_response = t.tx.mail_response;
  r.rcpt_to = t.tx.rcpt_to;
  r.rcpt_response = t.tx.rcpt_response;
  r.data_response = t.tx.data_response;
  r.sender = t.tx.sender;
  r.cancelled = t.tx.cancelled;
  BodyStatus bs;
  bs.blob_status = BlobStatus{std::string(session_uri) + "/transactions/" + t.id + "/body", t.body_final};
  r.body = std::move(bs);
  return r;
}

// ---- TxTable -------------------------------------------------------------------

TxTable::TxTable(asio::any_io_executor ex, OutboundOptions opts) : ex_(std::move(ex)), opts_(std::move(opts)) {
  if (!opts_.connector) opts_.connector = tcp_connector();
}

std::string SmtpSessionCache::key(const HostPort& to, const SmtpHostConfig& h) {
  return fmt::format("{}|{}|{}|{}|{}|{}|{}", to.host, to.port, h.ehlo_host, h.lmtp, h.enable_bdat,
                     h.starttls, h.verify_tls);
}

std::optional<SmtpSessionCache::Session> SmtpSessionCache::take(const std::string& key,
                                                                 Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return std::nullopt;
  auto& v = it->second;
  while (!v.empty()) {
    Session s = std::move(v.back());
    v.pop_back();
    if (now - s.idle_since <= idle_limit_ && s.client->reusable()) {
      if (v.empty()) idle_.erase(it);
      return s;
    }
    // too old (the server may be about to drop it): closed by the destructor
  }
  idle_.erase(it);
  return std::nullopt;
}

bool SmtpSessionCache::full(const std::string& key) const {
  auto it = idle_.find(key);
  return it != idle_.end() && it->second.size() >= max_per_key_;
}

bool SmtpSessionCache::put(const std::string& key, Session s) {
  auto& v = idle_[key];
  if (v.size() >= max_per_key_) return false;
  v.push_back(std::move(s));
  return true;
}

std::size_t SmtpSessionCache::expire(Clock::time_point now) {
  std::size_t n = 0;
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& v = it->second;
    const auto before = v.size();
    std::erase_if(v, [&](const Session& s) { return now - s.idle_since > idle_limit_; });
    n += before - v.size();
    it = v.empty() ? idle_.erase(it) : std::next(it);
  }
  return n;
}

std::size_t SmtpSessionCache::size() const {
  std::size_t n = 0;
  for (const auto& [k, v] : idle_) n += v.size();
  return n;
}

TxTable::~TxTable() {
  stopping_ = true;
  if (gc_timer_) gc_timer_->cancel();
}

std::shared_ptr<OutboundTx> TxTable::find(std::string_view id) const {
  auto it = txs_.find(id);
  return it == txs_.end() ? nullptr : it->second;
}

std::shared_ptr<OutboundTx> TxTable::create(TransactionMetadata tx, const SmtpHostConfig& host) {
  std::string id;
  do {
    id = random_rest_id(static_cast<std::size_t>(std::max(1, opts_.listener.rest_id_entropy)));
  } while (txs_.count(id) != 0);
  auto t = std::make_shared<OutboundTx>(id, host);
  t->sessions = sessions_;
  t->tx = std::move(tx);
  t->publish();  // version 2: created
  txs_.emplace(id, t);
  t->driver_running = true;
  spawn(ex_, run_smtp_driver(t, opts_.connector), "smtp driver tx=" + id);
  return t;
}

Task<void> gc_loop(std::shared_ptr<TxTable> self) {
  const auto interval = seconds_to_duration(self->opts_.listener.gc_interval);
  while (!self->stopping_) {
    self->gc_timer_->expires_after(interval);
    auto op = self->gc_timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    co_await std::move(op);
    if (self->stopping_) break;
    self->gc_once(Clock::now());
  }
}

void TxTable::start_gc() {
  if (gc_timer_) return;
  gc_timer_ = std::make_unique<asio::steady_timer>(ex_);
  spawn(ex_, gc_loop(shared_from_this()), "outbound gc");
}

std::size_t TxTable::gc_once(Clock::time_point now) {
  sessions_->expire(now);
  const auto tx_ttl = seconds_to_duration(opts_.listener.gc_tx_ttl);
  const auto done_ttl = seconds_to_duration(opts_.listener.gc_done_ttl);
  std::vector<std::string> forget;
  for (auto& [id, t] : txs_) {
    const bool done = t->done();
    const auto idle = now - t->last_change;
    if (idle <= (done ? done_ttl : tx_ttl)) continue;
    if (t->step_running || t->put_active) {
      // Never reaped while working; SMTP timeouts bound the step.
      if (!t->stuck_logged) {
        t->log.warn("gc: idle {} ms but {} in progress; maybe stuck",
                    std::chrono::duration_cast<std::chrono::milliseconds>(idle).count(),
                    t->step_running ? "an SMTP step" : "a body PUT");
        t->stuck_logged = true;
      }
      continue;
    }
    if (!done) {
      t->log.info("gc: idle for {} ms, cancelling", std::chrono::duration_cast<std::chrono::milliseconds>(idle).count());
      t->cancel();  // the driver QUITs
    } else {
      t->log.debug("gc: done, forgetting");
    }
    forget.push_back(id);
  }
  for (const auto& id : forget) txs_.erase(id);
  return forget.size();
}

Task<void> TxTable::shutdown(std::chrono::milliseconds grace) {
  auto self = shared_from_this();  // keep the table while suspended
  stopping_ = true;
  if (gc_timer_) gc_timer_->cancel();
  std::vector<std::shared_ptr<OutboundTx>> all;
  for (auto& [id, t] : txs_) all.push_back(t);
  for (auto& t : all) t->cancel();
  const auto deadline = Clock::now() + grace;
  asio::steady_timer timer(ex_);
  for (;;) {
    bool running = false;
    for (auto& t : all) running = running || t->driver_running;
    if (!running || Clock::now() >= deadline) break;
    timer.expires_after(std::chrono::milliseconds(20));
    auto op = timer.async_wait(asio::as_tuple(asio::use_awaitable));
    co_await std::move(op);
  }
  for (auto& t : all) {
    if (t->driver_running && t->stream) {
      t->log.warn("shutdown: closing the SMTP connection of a busy driver");
      t->stream->close();
    }
  }
  txs_.clear();
  sessions_->expire(Clock::time_point::max());
}

}  // namespace koukan::gateway::outbound
