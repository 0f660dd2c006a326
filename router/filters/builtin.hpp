#pragma once
// The built-in output-chain filters (spec/filters.md) and what their
// factories need from the process. Called once at start-up, after
// register_builtin_filters() (test_responder) and before load_plugins():
//
//   chain::FilterRegistry reg;
//   chain::register_builtin_filters(reg);
//   filters::FilterDeps deps{&config, io.get_executor(), &plugins};
//   filters::register_filters(reg, deps);
//
// Each family registers its own names:
//   router_filter.cpp  "router"       RecipientRouterFilter + address_list /
//                                     dest_domain / plugin policies (§2.2)
//   rest_output.cpp    "rest_output"  RestEndpoint (rest-api.md §9.3, §8.4)
// The Exploder and add_route live with the output handler (router/output),
// which they need to start upstream transactions.
#include <boost/asio/any_io_executor.hpp>

#include "router/chain/plugin.hpp"
#include "router/chain/registry.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router::filters {

struct FilterDeps {
  const RouterConfig* config = nullptr;          // rest_endpoint[], sender[] lookups
  boost::asio::any_io_executor executor;         // for HTTP clients (rest_output)
  const chain::LoadedPlugins* plugins = nullptr; // recipient_router_policy plugins; may be null
};

void register_router_filter(chain::FilterRegistry& registry, const FilterDeps& deps);
void register_rest_output(chain::FilterRegistry& registry, const FilterDeps& deps);

// Both of the above.
void register_filters(chain::FilterRegistry& registry, const FilterDeps& deps);

}  // namespace koukan::router::filters
