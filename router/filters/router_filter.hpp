#pragma once
// `router` — RecipientRouterFilter (spec/filters.md §2.2): a proxy filter
// that decides, per recipient, where the transaction goes (Routing on its
// upstream tx: rest_endpoint URL, hosts, options, upstream sender), rejects
// recipients its policy refuses, and lets the others through unrouted for a
// later router. Registered by register_router_filter() (builtin.hpp).
//
//   - filter: router
//     policy: {name: address_list | dest_domain | <plugin>, ...}   # optional
//     destination: {endpoint: <rest_endpoint name>, host_list: [...],
//                   options: {...}}                                 # no policy
//     dry_run: false
//
// Everything in the yaml is resolved once, when the chain is built, into
// immutable values; the filter object is shared by every transaction.
// Operator documentation: docs/filters.md "router".
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/base/result.hpp"
#include "common/json/transaction.hpp"
#include "router/chain/filter.hpp"
#include "router/chain/plugin.hpp"

namespace koukan::router::filters {

// What a routing policy decides for one recipient.
//   response (an error):   reject the rcpt with it;
//   destination:           route the rcpt there;
//   neither:               not mine, leave it to a later router.
struct PolicyDecision {
  std::optional<Routing> destination;
  std::optional<Response> response;
  // Why the policy itself failed (logged by the filter with the tx id).
  std::string failure;

  static PolicyDecision none() { return {}; }
  static PolicyDecision route_to(Routing r) {
    PolicyDecision d;
    d.destination = std::move(r);
    return d;
  }
  static PolicyDecision reject(Response r, std::string failure = {}) {
    PolicyDecision d;
    d.response = std::move(r);
    d.failure = std::move(failure);
    return d;
  }
};

// RoutingPolicy (the original's endpoint_for_rcpt): pure, synchronous,
// immutable after construction.
class RoutingPolicy {
 public:
  virtual ~RoutingPolicy() = default;
  // Decides for tx.rcpt_to[rcpt] (always a valid index).
  virtual PolicyDecision route(const TransactionMetadata& tx, std::size_t rcpt) const = 0;
};

// A policy that names its destinations by rest_endpoint (plugin policies):
// `route` answers with a rest_endpoint name, `destinations` maps every name
// to its resolved Routing. A failing `route` or an unknown name gives the rcpt
// `451 4.3.0 routing policy failed (RecipientRouterFilter)` (and a failure
// text the filter logs).
using NamedRouteFn =
    std::function<Result<chain::RouteDecision>(const TransactionMetadata& tx, std::size_t rcpt)>;
std::shared_ptr<const RoutingPolicy> make_named_policy(
    std::string name, NamedRouteFn route, std::map<std::string, Routing, std::less<>> destinations);

// The filter itself, for tests that bring their own policy. With a policy the
// static destination is not used; with neither every rcpt is rejected
// (550 ... null policy).
class RecipientRouterFilter final : public chain::ProxyFilter {
 public:
  RecipientRouterFilter(std::shared_ptr<const RoutingPolicy> policy,
                        std::optional<Routing> static_destination, bool dry_run)
      : policy_(std::move(policy)),
        static_destination_(std::move(static_destination)),
        dry_run_(dry_run) {}

  std::unique_ptr<chain::FilterState> new_state() const override;
  Task<Result<void>> on_update(chain::ProxyCall& call) const override;

 private:
  PolicyDecision decide(const TransactionMetadata& tx, std::size_t rcpt) const;

  const std::shared_ptr<const RoutingPolicy> policy_;
  const std::optional<Routing> static_destination_;
  const bool dry_run_;
};

}  // namespace koukan::router::filters
