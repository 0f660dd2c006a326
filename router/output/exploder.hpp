#pragma once
// The Exploder (spec/router.md §12): a terminal filter for incremental
// (SMTP-style) senders that fans a multi-recipient transaction out into one
// upstream per recipient (sender/tag = the downstream sender's
// upstream_sender/upstream_tag), run in memory by OutputService::Upstream,
// and reports their responses back with cut-through semantics: it waits up
// to rcpt_timeout (data_timeout once the body is complete) for the upstream
// answers, applies the AsyncFilterWrapper rules (sticky timeout responses,
// preconditions, msa store&forward upgrades) and the §12.5 response table,
// and stores (retry + notification on) the upstreams that have not
// succeeded when it answers the client with a store&forward 250.
//
// yaml: msa (bool, default false), rcpt_timeout / data_timeout (seconds;
// defaults msa 5 / 30, otherwise 30 / 300).
//
// Differences from the original (docs/compat.md "Exploder"): upstreams are
// stored only for store&forward; downstream heartbeats are passed on to the
// upstreams; an upstream that cannot be started answers that recipient with
// a temporary error instead of tripping an assertion later.
#include "common/config/yaml.hpp"
#include "router/chain/registry.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router {

class OutputService;

// The Exploder's answer to MAIL: given at once, always (router.md §12.3).
inline constexpr const char* kExploderMailOk = "MAIL ok (exploder noop)";

// Registers `exploder` and `add_route` (add_route.cpp); both keep `output`
// for creating stored upstream transactions and finding chains.
void register_add_route(chain::FilterRegistry& registry, OutputService& output);
void register_exploder_filters(chain::FilterRegistry& registry, OutputService& output,
                               const RouterConfig& config);

}  // namespace koukan::router
