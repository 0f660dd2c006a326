#pragma once
// FilterRegistry: filter name -> factory. Filled explicitly at start-up:
// register_builtin_filters() for the built-ins, load_plugins() (plugin.hpp)
// for modules.sync_filter. No static-initialiser registration.
//
// A factory reads the chain entry's own keys (entry.yaml; `filter` is the
// name) through common/config/yaml.hpp with entry.path as the path, records
// every problem in `errors` (unknown keys included) and returns the
// immutable filter. Returning nullptr without recording an error means "this
// filter is disabled by its config" (router.md §11: e.g. dkim_sign without
// key): the chain leaves it out and a warning is recorded.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/config/yaml.hpp"
#include "router/chain/filter.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router::chain {

using FilterFactory = std::function<std::shared_ptr<const FilterBase>(
    const ChainEntry& entry, config::ConfigErrors& errors)>;

class FilterRegistry {
 public:
  // False (and no change) if `name` is already registered.
  bool add(std::string name, FilterFactory factory);
  const FilterFactory* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // For load_router_config().
  FilterNames names() const;

 private:
  std::map<std::string, FilterFactory, std::less<>> factories_;
};

// Opens a chain entry for a factory: a config::Node at entry.path whose
// expect_keys() always accepts `filter`.
config::Node entry_node(const ChainEntry& entry, config::ConfigErrors& errors);
// entry_node(...).expect_keys(known + "filter").
bool expect_entry_keys(const ChainEntry& entry, config::ConfigErrors& errors,
                       std::initializer_list<std::string_view> known);

// Registers the built-in filters. For now only:
//   test_responder [ours, test-only]: a terminal plain filter answering every
//     request in its delta with fixed responses. Keys (each optional,
//     {code: int, message: str}): mail_response, rcpt_response,
//     data_response. A request whose key is absent gets no response.
// The original's filters (rest_output, router, ...) come with router/filters.
void register_builtin_filters(FilterRegistry& registry);

}  // namespace koukan::router::chain
