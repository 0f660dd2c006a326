#pragma once
// The gateway's outbound transactions (spec/gateway.md §4.2-§4.6, §5): one
// in-memory record per transaction the router created here, the table that
// holds them, and its GC loop.
//
// Concurrency: everything runs on the one I/O thread (no locks). A record is
// shared (shared_ptr) by the table, the REST requests working on it and its
// SMTP driver, so forgetting it in the table never pulls memory from under a
// suspended coroutine. Coroutines meet through Notifiers: a waiter re-checks
// its condition after every wake-up, so spurious wake-ups are harmless.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/task.hpp"
#include "common/base/log.hpp"
#include "common/base/result.hpp"
#include "common/json/transaction.hpp"
#include "common/smtp/client.hpp"
#include "common/async/notifier.hpp"
#include "common/smtp/stream.hpp"
#include "gateway/config/gateway_config.hpp"

namespace koukan::gateway::outbound {

using Clock = std::chrono::steady_clock;

// Opens the SMTP connection for a transaction. Production: smtp::connect_tcp;
// tests: an in-memory pipe to a scripted fake server.
using Connector = std::function<Task<Result<std::unique_ptr<smtp::ByteStream>>>(
    asio::any_io_executor, const HostPort&, smtp::ConnectOptions)>;
Connector tcp_connector();

using koukan::Notifier;  // common/async/notifier.hpp

// A piece of the body handed from a PUT to the SMTP driver.
struct StagedPiece {
  std::string data;
  bool last = false;
};

// Idle SMTP sessions to destinations, kept after a finished transaction
// (RSET answered 250) for the next transaction to the same destination with
// the same client settings: no connect, greeting, EHLO or STARTTLS per
// message (Postfix's connection cache does the same). One I/O thread: no
// locking. Sessions idle longer than the limit are closed.
class SmtpSessionCache {
 public:
  struct Session {
    std::unique_ptr<smtp::SmtpClient> client;
    smtp::ByteStream* stream = nullptr;  // owned by client
    Clock::time_point idle_since;
  };
  explicit SmtpSessionCache(std::chrono::milliseconds idle_limit = std::chrono::seconds(2),
                            std::size_t max_per_key = 64)
      : idle_limit_(idle_limit), max_per_key_(max_per_key) {}
  static std::string key(const HostPort& to, const SmtpHostConfig& host);
  // The most recently parked live session for `key`, if any.
  std::optional<Session> take(const std::string& key, Clock::time_point now);
  bool full(const std::string& key) const;
  // Parks a session (false: the key is full; the session is closed).
  bool put(const std::string& key, Session s);
  // Closes sessions idle past the limit (all with `now` = max); returns how many.
  std::size_t expire(Clock::time_point now);
  std::size_t size() const;

 private:
  std::chrono::milliseconds idle_limit_;
  std::size_t max_per_key_;
  std::map<std::string, std::vector<Session>, std::less<>> idle_;
};

struct OutboundTx {
  OutboundTx(std::string id_, SmtpHostConfig host_);

  const std::string id;
  const log::Logger log;        // "tx=<id>"
  const SmtpHostConfig host;    // smtp_output.hosts.<tag>

  // Envelope as received (remote_host, local_host, mail_from, rcpt_to,
  // sender) and the SMTP side's answers (mail/rcpt/data responses),
  // cancelled. The READ view is built from this (read_view()).
  TransactionMetadata tx;
  std::int64_t version = 1;
  Clock::time_point last_change;  // idle clock for GC

  // Body upload (PUT /transactions/<id>/body).
  bool body_created = false;
  std::uint64_t body_len = 0;                // bytes accepted so far
  std::optional<std::uint64_t> body_total;   // declared final length
  bool body_final = false;                   // every byte accepted
  bool put_active = false;                   // a body PUT is running
  std::optional<StagedPiece> staged;         // handed over, not yet taken

  // SMTP driver.
  bool driver_running = false;  // the driver coroutine exists
  bool step_running = false;    // an SMTP exchange is in flight
  bool stuck_logged = false;
  std::unique_ptr<smtp::SmtpClient> client;
  smtp::ByteStream* stream = nullptr;  // owned by `client`; for a hard close
  std::shared_ptr<SmtpSessionCache> sessions;  // the table's (null: no reuse)
  std::string session_key;                     // of `client` (SmtpSessionCache::key)

  Notifier input;      // new REST input for the driver (envelope, body, cancel)
  Notifier taken;      // the driver took `staged` (or gave up)
  Notifier published;  // version changed (long-poll GETs)

  // Every accepted change: version + 1, idle clock reset, GETs woken.
  void publish();
  // Done = cancelled or has a data response (spec §5.2).
  bool done() const { return tx.cancelled || tx.data_response.has_value(); }
  // Marks cancelled (idempotent) and wakes the driver and a waiting PUT.
  void cancel();
};

// The READ view (spec §4.2): envelope placeholders, responses, cancelled,
// body.blob_status {uri, finalized}.
TransactionMetadata read_view(const OutboundTx& t, std::string_view session_uri);

struct OutboundOptions {
  RestListenerConfig listener;
  SmtpOutputConfig output;
  Connector connector;  // empty: tcp_connector()
  std::chrono::milliseconds max_long_poll{30'000};  // GET wait cap (the original's MAX_TIMEOUT)
};

class TxTable : public std::enable_shared_from_this<TxTable> {
 public:
  TxTable(asio::any_io_executor ex, OutboundOptions opts);
  ~TxTable();

  const OutboundOptions& options() const { return opts_; }
  asio::any_io_executor executor() const { return ex_; }

  std::shared_ptr<OutboundTx> find(std::string_view id) const;
  // Stores a new transaction (fresh random id) at version 2 (created) and
  // starts its SMTP driver.
  std::shared_ptr<OutboundTx> create(TransactionMetadata tx, const SmtpHostConfig& host);
  std::size_t size() const { return txs_.size(); }
  SmtpSessionCache& sessions() { return *sessions_; }

  // GC (spec §5.2): every gc_interval, forget idle transactions.
  void start_gc();
  // One GC pass at `now`; returns how many were forgotten.
  std::size_t gc_once(Clock::time_point now);
  // Stops GC, cancels every transaction (their drivers QUIT), waits up to
  // `grace` for the drivers, then closes the connections still open.
  Task<void> shutdown(std::chrono::milliseconds grace);

 private:
  friend Task<void> gc_loop(std::shared_ptr<TxTable> self);
  asio::any_io_executor ex_;
  OutboundOptions opts_;
  std::map<std::string, std::shared_ptr<OutboundTx>, std::less<>> txs_;
  std::shared_ptr<SmtpSessionCache> sessions_ = std::make_shared<SmtpSessionCache>();
  std::unique_ptr<asio::steady_timer> gc_timer_;
  bool stopping_ = false;
};

// The per-transaction SMTP worker (smtp_driver.cpp): the only coroutine that
// talks SMTP for `t`, so steps never overlap. Runs until the transaction is
// done (data response or cancelled), then QUITs.
Task<void> run_smtp_driver(std::shared_ptr<OutboundTx> t, Connector connector);

// Seconds (config) -> clock duration.
Clock::duration seconds_to_duration(double s);

}  // namespace koukan::gateway::outbound
