#pragma once
// The output side of the router (spec/router.md §7.3, §8, §4.5-§4.6):
//
//  * OutputService owns every delivery attempt of this process. An attempt
//    is a coroutine on the I/O thread (not a thread per transaction); the
//    number running is bounded by global.executor.output.max_inflight.
//  * New transactions are handed over at create (cut-through) when a slot is
//    free; otherwise they are created unleased and the dequeue loop picks
//    them up as slots free (they queue instead of failing).
//  * The dequeue loop claims due transactions (retries, recovered work of
//    dead replicas, late notifications) through storage.dequeue().
//  * One attempt (OutputHandler, §8.2-§8.3): run the sender's chain on each
//    downstream change, write the responses, heartbeat upstream every
//    upstream_refresh, give up after downstream_timeout without input, then
//    finalize: final_attempt_reason or the next retry time, a DSN for a
//    final failure (§8.7-§8.8), release the lease, and a last `cancelled`
//    pass so the chain's upstream side lets go.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "common/async/task.hpp"
#include "common/base/result.hpp"
#include "common/json/transaction.hpp"
#include "router/chain/chain.hpp"
#include "router/config/router_config.hpp"
#include "router/output/retry.hpp"
#include "router/storage/storage.hpp"

namespace koukan::router {

class VersionCache;

struct OutputDeps {
  const RouterConfig* config = nullptr;
  Storage* storage = nullptr;
  BlockingPool* pool = nullptr;
  VersionCache* cache = nullptr;
  // Chains by endpoint name, built once at start-up.
  const chain::ChainMap* chains = nullptr;
  asio::any_io_executor executor;  // the I/O thread
  JitterSource jitter = default_jitter();
  // How often the dequeue loop looks for due work when nothing woke it, and
  // how often a waiting attempt re-checks the DB for a cancel written by
  // another replica.
  std::chrono::milliseconds dequeue_interval{1000};
  std::chrono::milliseconds remote_check_interval{5000};
};

class OutputService {
 public:
  explicit OutputService(OutputDeps deps);
  ~OutputService();
  OutputService(const OutputService&) = delete;
  OutputService& operator=(const OutputService&) = delete;

  // Storage and pool, when they were not known at construction (start-up
  // builds chains, and so this service, before opening the database).
  void attach(Storage* storage, BlockingPool* pool);

  // I/O thread only. Takes a slot for a transaction about to be created
  // leased (cut-through); false when max_inflight attempts are running.
  bool try_reserve();
  void unreserve();
  // I/O thread. `rec` was just created leased by this session with a
  // reserved slot: starts its first attempt.
  void start_new(TxRecord rec);
  // Any thread: look for due work now (a slot freed, a tx was queued).
  void wake();

  // The dequeue loop; returns after stop().
  Task<void> dequeue_loop();
  void stop();

  std::size_t inflight() const;
  std::size_t max_inflight() const;
  // What attempts run on (for filters that store transactions: Exploder).
  Storage& storage() const;
  BlockingPool& pool() const;
  VersionCache& cache() const;
  const RouterConfig& config() const;
  const chain::ChainMap& chains() const;

  // Creates a transaction for `sender`/`tag` outside the REST API (DSNs, the
  // Exploder's upstreams), applying the sender's retry/notification.
  // Leased + started at once when `start` and a slot is free.
  struct NewTx {
    std::string sender;
    std::optional<std::string> tag;
    TransactionMetadata tx;               // envelope (mail_from, rcpt_to, ...)
    std::vector<BlobSpec> blobs;          // body
    bool start = false;
  };
  struct Created {
    TxRecord rec;
    bool started = false;
  };
  Task<Result<Created>> create(NewTx n);
  // A stored copy of `tx` for one recipient (Exploder upstream, add_route
  // copy): remote/local host, mail_from, smtp_meta and rcpt_to[rcpt] (not
  // yet routed); the body of the stored tx `body_of` by reference when given
  // (it must be finalized). Started at once.
  static NewTx copy_for_rcpt(const TransactionMetadata& tx, std::size_t rcpt, std::string sender,
                             std::optional<std::string> tag,
                             const std::string* body_of = nullptr);

  // An Exploder upstream run in memory (ours; docs/compat.md): the chain of
  // the upstream sender/tag for one recipient, fed in order by the Exploder,
  // with no stored transaction of its own. persist() (store&forward) stores
  // it as a leased transaction with retry and notification on; the run then
  // finishes that transaction's first attempt (final reason or retry time,
  // DSN), and later attempts are ordinary stored ones. I/O thread only.
  class Upstream {
   public:
    virtual ~Upstream() = default;
    // The next pass: the finalized body (`body`: the downstream's blob).
    virtual void push_body(const chain::BlobInfo& body) = 0;
    // A heartbeat pass, if nothing is running or queued.
    virtual void ping() = 0;
    // Cancel (not after persist(): a stored upstream finishes on its own).
    virtual void cancel() = 0;
    // Everything sent so far and the responses (requests a failed pass left
    // unanswered show the 450 an attempt would have written).
    virtual TransactionMetadata view() const = 0;
    // +1 after every finished pass.
    virtual std::int64_t version() const = 0;
    // Until version() != known or `d` passed.
    virtual Task<void> wait_for_change(std::int64_t known, std::chrono::steady_clock::duration d) = 0;
    // Stores it (once; later calls: no-op). Returns after the commit.
    virtual Task<Result<void>> persist() = 0;
    virtual bool persisted() const = 0;
  };
  // The responses the chain of `output_chain` gives `tx` at once, before any
  // I/O: the Exploder's MAIL answer when the chain starts with `exploder`
  // (RestOptions::OutputHooks::immediate_responses).
  std::optional<boost::json::object> immediate_responses(const std::string& output_chain,
                                                         const TransactionMetadata& tx) const;
  // Starts the upstream of `n` (sender, tag, envelope; n.blobs ignored) for
  // the downstream transaction of `env` (its id and body blob are used).
  Result<std::shared_ptr<Upstream>> start_upstream(NewTx n, const chain::TxEnv& env);

  // Implementation state, shared with running attempts (public only so the
  // attempt code in output_service.cpp can name it).
  struct Impl;
  explicit OutputService(std::shared_ptr<Impl> impl);

 private:
  std::shared_ptr<Impl> impl_;
};

// The stored transaction as the output chain sees it: the DB view without
// the fields the output handler keeps to itself (retry, notification,
// final_attempt_reason, attempt_count), with the body as a status.
Result<TransactionMetadata> downstream_view(const TxRecord& rec);

// router.md §8.3 step 5: is the attempt over, and with which final reason
// (empty = none, the retry policy decides).
struct AttemptOutcome {
  bool done = false;
  std::string final_reason;
  bool needs_retry_decision = false;  // done, no final reason: ask the retry policy
};
AttemptOutcome decide_outcome(const TransactionMetadata& tx, bool downstream_timeout);

}  // namespace koukan::router
