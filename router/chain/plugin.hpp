#pragma once
// Loading plugins (plugins/koukan_plugin.h) named in router.yaml `modules`:
// each entry is dlopen()ed, its registration function is called with a host
// table, and what it registers is wrapped in C++ objects:
//   sync_filter             -> a FilterRegistry factory under the modules key
//   recipient_router_policy -> PluginPolicyFactory   [not yet consumed]
//   transaction_matcher     -> PluginMatcherFactory  [not yet consumed]
// Every problem is a config error at "modules.<kind>.<key>" naming the file
// (missing file, missing symbol, ABI version mismatch, registration failure,
// nothing of that kind registered, name already taken).
//
// A library stays loaded while any object created from it exists.
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/base/result.hpp"
#include "common/config/yaml.hpp"
#include "common/json/transaction.hpp"
#include "plugins/koukan_plugin.h"
#include "router/chain/registry.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router::chain {

class PluginLibrary;

// filters.md §1.4
enum class MatcherResult { precondition_unmet = 0, match = 1, no_match = 2 };

class PluginMatcher {
 public:
  PluginMatcher(std::shared_ptr<const PluginLibrary> lib, KoukanMatcherOps ops, void* instance)
      : lib_(std::move(lib)), ops_(ops), instance_(instance) {}
  ~PluginMatcher();
  PluginMatcher(const PluginMatcher&) = delete;
  PluginMatcher& operator=(const PluginMatcher&) = delete;
  // rcpt_num: PER_RCPT mode index, nullopt for the whole tx.
  Result<MatcherResult> match(const TransactionMetadata& tx,
                              std::optional<std::size_t> rcpt_num) const;

 private:
  std::shared_ptr<const PluginLibrary> lib_;
  KoukanMatcherOps ops_;
  void* instance_;
};

class PluginMatcherFactory {
 public:
  PluginMatcherFactory(std::shared_ptr<const PluginLibrary> lib, KoukanMatcherOps ops, void* data)
      : lib_(std::move(lib)), ops_(ops), data_(data) {}
  // Reads the matcher's yaml (errors recorded on `yaml`); nullptr on error.
  std::shared_ptr<const PluginMatcher> create(const config::Node& yaml) const;

 private:
  std::shared_ptr<const PluginLibrary> lib_;
  KoukanMatcherOps ops_;
  void* data_;
};

// Result of one PluginPolicy::route call.
struct RouteDecision {
  std::optional<std::string> destination;  // rest_endpoint name
  std::optional<Response> response;        // error for this rcpt
};

class PluginPolicy {
 public:
  PluginPolicy(std::shared_ptr<const PluginLibrary> lib, KoukanPolicyOps ops, void* instance)
      : lib_(std::move(lib)), ops_(ops), instance_(instance) {}
  ~PluginPolicy();
  PluginPolicy(const PluginPolicy&) = delete;
  PluginPolicy& operator=(const PluginPolicy&) = delete;
  Result<RouteDecision> route(const TransactionMetadata& tx, std::size_t rcpt_index) const;

 private:
  std::shared_ptr<const PluginLibrary> lib_;
  KoukanPolicyOps ops_;
  void* instance_;
};

class PluginPolicyFactory {
 public:
  PluginPolicyFactory(std::shared_ptr<const PluginLibrary> lib, KoukanPolicyOps ops, void* data)
      : lib_(std::move(lib)), ops_(ops), data_(data) {}
  std::shared_ptr<const PluginPolicy> create(const config::Node& yaml) const;

 private:
  std::shared_ptr<const PluginLibrary> lib_;
  KoukanPolicyOps ops_;
  void* data_;
};

// What load_plugins() found besides filters.
struct LoadedPlugins {
  std::map<std::string, std::shared_ptr<const PluginPolicyFactory>, std::less<>> policies;
  std::map<std::string, std::shared_ptr<const PluginMatcherFactory>, std::less<>> matchers;
};

// Loads every modules.* entry; sync filters are added to `registry` (call
// register_builtin_filters first so a clash with a built-in is reported).
LoadedPlugins load_plugins(const ModulesConfig& modules, FilterRegistry& registry,
                           config::ConfigErrors& errors);

}  // namespace koukan::router::chain
