#pragma once
// The filter interface of the output chain (spec/router.md §9, filters.md §1).
//
// A filter object is built once per configured chain entry (by a factory in
// the FilterRegistry, from the entry's YAML) and is immutable afterwards: the
// same object serves every transaction, concurrently. Per-transaction state
// lives in a FilterState the filter creates for each ChainInstance
// (new_state()), and in the transaction itself.
//
// Two kinds, as in Koukan:
//
//  * Filter (plain): its downstream and upstream transaction are the same
//    object. on_update() sees the full tx and the delta it has not seen yet;
//    it may only ADD to the tx (set a response for a request it rejects, add
//    filter_output, ...). It returns a FilterResult whose optional
//    downstream_delta the engine merges into the tx AFTER the rest of the
//    chain has returned ("tail call": no filter code runs on the way back).
//
//  * ProxyFilter: owns a separate upstream tx (the next filter's downstream).
//    on_update() copies (and may change) the delta into call.upstream, then
//    may `co_await call.next()` ONCE: that runs the rest of the chain, merges
//    the upstream responses into call.downstream (mapping rcpts, below) and
//    returns the upstream delta for the filter to look at ("return path").
//    If the filter returns without calling next(), the engine calls it right
//    after on_update() returns.
//
// Recipient mapping (router.md §9.2): if a proxy adds no rcpt upstream while
// new rcpts arrived downstream, the engine copies each new downstream rcpt
// that has no response yet and remembers the index mapping; upstream rcpt
// responses are put back into the mapped downstream slots still empty.
//
// Calls are coroutines run on the I/O thread: a filter must never block
// (offload blocking work to the blocking pool, common/async/task.hpp).
// Expected failures are Result errors; they abort the pass and are returned
// by ChainInstance::update().
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/async/task.hpp"
#include "common/base/result.hpp"
#include "common/json/transaction.hpp"
#include "router/chain/env.hpp"

namespace koukan::router::chain {

class ChainInstance;

// Per-transaction state of one filter, owned by the ChainInstance.
class FilterState {
 public:
  virtual ~FilterState() = default;
};

enum class FilterKind { plain, proxy };

// What a plain filter returns (Koukan's FilterResult).
struct FilterResult {
  // Merged into the downstream tx after the rest of the chain returns.
  std::optional<TransactionMetadata> downstream_delta;
};

// Arguments of a plain filter call.
struct FilterCall {
  TransactionMetadata& tx;           // downstream == upstream
  const TransactionMetadata& delta;  // what changed since this filter last ran
  FilterState* state;                // from new_state(); may be null
  const std::string& path;           // "endpoint[i].chain[j]", for log lines
  TxEnv* env = nullptr;              // storage side of this tx; null in pure-filter tests
};

// Arguments of a proxy filter call.
class ProxyCall {
 public:
  TransactionMetadata& downstream;
  const TransactionMetadata& delta;
  TransactionMetadata& upstream;  // persists across passes
  FilterState* state;
  const std::string& path;
  TxEnv* env;  // may be null

  // Runs the rest of the chain, merges its responses into `downstream` and
  // returns the upstream delta of this pass (empty when the chain stopped
  // above). At most once per call; a second call is Errc::internal.
  Task<Result<TransactionMetadata>> next();
  bool next_called() const { return next_called_; }

  ProxyCall(TransactionMetadata& d, const TransactionMetadata& dl, TransactionMetadata& u,
            FilterState* s, const std::string& p, ChainInstance* chain, std::size_t index,
            TxEnv* e = nullptr)
      : downstream(d), delta(dl), upstream(u), state(s), path(p), env(e), chain_(chain),
        index_(index) {}

 private:
  ChainInstance* chain_;
  std::size_t index_;
  bool next_called_ = false;
};

// Common base: what the chain engine stores.
class FilterBase {
 public:
  virtual ~FilterBase() = default;
  virtual FilterKind kind() const = 0;
  // Fresh per-transaction state; the default has none.
  virtual std::unique_ptr<FilterState> new_state() const { return nullptr; }
};

class Filter : public FilterBase {
 public:
  FilterKind kind() const final { return FilterKind::plain; }
  virtual Task<Result<FilterResult>> on_update(FilterCall& call) const = 0;
};

class ProxyFilter : public FilterBase {
 public:
  FilterKind kind() const final { return FilterKind::proxy; }
  virtual Task<Result<void>> on_update(ProxyCall& call) const = 0;
};

}  // namespace koukan::router::chain
