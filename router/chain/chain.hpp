#pragma once
// Chain building and execution (router.md §9.2, §11).
//
//   ChainTemplate: built ONCE at start-up from an EndpointConfig (every
//     factory error collected with its path); immutable, shared by every
//     transaction using that chain.
//   ChainInstance: per transaction (cheap: a vector of snapshots and filter
//     states); owns the head tx and runs passes.
//
//   auto tmpl = build_chain(endpoint, registry, errors);   // start-up
//   ChainInstance chain(tmpl);                              // per tx
//   Result<TransactionMetadata> up = co_await chain.update(std::move(delta));
//   // `up`: what the chain added to the head tx (responses, ...) this pass.
//
// One pass, update(delta):
//  1. delta is merged into the head tx (a delta carrying responses is
//     rejected unless it cancels). noop = the head has not changed since the
//     first filter last saw it (heartbeat).
//  2. Downstream, in order: each filter's delta = its previous downstream
//     snapshot -> its downstream tx. Not noop and empty delta: stop (filters
//     further up are not called). Snapshot, call. Stop after a filter whose
//     downstream tx can no longer progress (MAIL rejected, every rcpt
//     rejected, DATA answered), unless cancelled.
//  3. Upstream, in reverse over the filters called: a proxy's upstream
//     responses are merged into its downstream tx (rcpts mapped); a plain
//     filter's FilterResult delta is merged; the downstream tx is
//     snapshotted.
//  4. Returns the head tx's delta since step 1.
// Only responses (mail/rcpt/data) travel back across a proxy; other upstream
// fields stay upstream.
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/task.hpp"
#include "common/base/result.hpp"
#include "common/config/yaml.hpp"
#include "common/json/transaction.hpp"
#include "router/chain/filter.hpp"
#include "router/chain/registry.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router::chain {

struct ChainLink {
  std::string filter;  // registry name
  std::string path;    // "endpoint[i].chain[j]"
  std::shared_ptr<const FilterBase> impl;
};

class ChainTemplate {
 public:
  ChainTemplate(std::string name, std::vector<ChainLink> links)
      : name_(std::move(name)), links_(std::move(links)) {}
  const std::string& name() const { return name_; }
  const std::vector<ChainLink>& links() const { return links_; }

 private:
  std::string name_;
  std::vector<ChainLink> links_;
};

// Builds one endpoint's chain. Unknown filter names and factory errors are
// recorded in `errors` under the entry's path; returns nullptr if any.
std::shared_ptr<const ChainTemplate> build_chain(const EndpointConfig& endpoint,
                                                 const FilterRegistry& registry,
                                                 config::ConfigErrors& errors);

using ChainMap = std::map<std::string, std::shared_ptr<const ChainTemplate>, std::less<>>;
// Every endpoint of the config; on error the map is incomplete and errors
// lists everything.
ChainMap build_chains(const RouterConfig& config, const FilterRegistry& registry,
                      config::ConfigErrors& errors);

// A chain run for one transaction. Not copyable or movable (ProxyCall points
// into it); one pass at a time.
class ChainInstance {
 public:
  // env: handed to every filter call (may be null); must outlive the instance.
  explicit ChainInstance(std::shared_ptr<const ChainTemplate> tmpl, TxEnv* env = nullptr);
  ChainInstance(const ChainInstance&) = delete;
  ChainInstance& operator=(const ChainInstance&) = delete;

  // The head (downstream-most) tx: everything merged so far.
  const TransactionMetadata& tx() const { return txs_.front(); }
  // Runs one pass; see the file comment.
  Task<Result<TransactionMetadata>> update(TransactionMetadata delta);

 private:
  friend class ProxyCall;
  struct Slot {
    std::unique_ptr<FilterState> state;
    std::size_t down = 0;  // index into txs_
    std::size_t up = 0;    // == down for a plain filter
    TransactionMetadata prev_down;
    TransactionMetadata prev_up;
    // proxies: upstream rcpt index -> downstream rcpt index
    std::vector<std::size_t> rcpt_map;
    std::size_t down_rcpts_seen = 0;
  };

  // Runs filter i and everything above it (steps 2 and 3 from i on).
  Task<Result<void>> run_from(std::size_t i);
  Task<Result<void>> run_plain(std::size_t i, const Filter& f, TransactionMetadata delta);
  Task<Result<void>> run_proxy(std::size_t i, const ProxyFilter& f, TransactionMetadata delta);
  // For ProxyCall::next(): the rest of the chain, then the return-path merge.
  Task<Result<TransactionMetadata>> proxy_next(std::size_t i);
  Result<void> map_rcpts_up(Slot& s);
  Result<void> merge_responses_down(Slot& s, const TransactionMetadata& up_delta);

  std::shared_ptr<const ChainTemplate> tmpl_;
  TxEnv* env_ = nullptr;
  std::vector<TransactionMetadata> txs_;  // [0] head, one more per proxy
  std::vector<Slot> slots_;
  bool noop_ = false;
  bool running_ = false;
};

// Can `tx` still make progress (router.md §9.2 check_preconditions)?
bool can_progress(const TransactionMetadata& tx);

}  // namespace koukan::router::chain
