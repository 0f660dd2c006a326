#include "router/chain/plugin.hpp"

#include <dlfcn.h>

#include <deque>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "common/base/log.hpp"

// ---- the opaque C types ---------------------------------------------------------

struct KoukanConfig {
  koukan::config::Node node;
  bool chain_entry = false;
  std::deque<std::string> strings;  // returned c_str()s stay valid for the create call
};

struct KoukanFilterCall {
  koukan::TransactionMetadata* tx;
  std::string tx_json;
  std::string delta_json;
  std::optional<koukan::TransactionMetadata> result;
  std::string error;
};

struct KoukanRouteResult {
  koukan::router::chain::RouteDecision decision;
};

namespace koukan::router::chain {

class PluginLibrary {
 public:
  PluginLibrary(void* handle, std::string path) : handle_(handle), path_(std::move(path)) {}
  ~PluginLibrary() {
    if (handle_) dlclose(handle_);
  }
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;
  void* handle() const { return handle_; }
  const std::string& path() const { return path_; }

 private:
  void* handle_;
  std::string path_;
};

namespace {

// ---- host functions ------------------------------------------------------------------

struct LoadContext {
  std::string error;
  std::optional<std::pair<KoukanFilterOps, void*>> filter;
  std::optional<std::pair<KoukanPolicyOps, void*>> policy;
  std::optional<std::pair<KoukanMatcherOps, void*>> matcher;
};

LoadContext& ctx_of(KoukanPluginHost* host) { return *static_cast<LoadContext*>(host->host_data); }

template <class Ops>
int do_register(KoukanPluginHost* host, const Ops* ops, void* data,
                std::optional<std::pair<Ops, void*>>& slot, const char* what) {
  LoadContext& ctx = ctx_of(host);
  if (!ops || ops->struct_size < sizeof(Ops) || !ops->create || !ops->destroy) {
    ctx.error = fmt::format("register_{}: incomplete ops table", what);
    return KOUKAN_PLUGIN_ERROR;
  }
  if (slot) {
    ctx.error = fmt::format("register_{} called twice", what);
    return KOUKAN_PLUGIN_ERROR;
  }
  slot.emplace(*ops, data);
  return KOUKAN_PLUGIN_OK;
}

int host_register_filter(KoukanPluginHost* host, const KoukanFilterOps* ops, void* data) {
  if (ops && !ops->on_update) {
    ctx_of(host).error = "register_filter: on_update missing";
    return KOUKAN_PLUGIN_ERROR;
  }
  return do_register(host, ops, data, ctx_of(host).filter, "filter");
}
int host_register_policy(KoukanPluginHost* host, const KoukanPolicyOps* ops, void* data) {
  if (ops && !ops->route) {
    ctx_of(host).error = "register_policy: route missing";
    return KOUKAN_PLUGIN_ERROR;
  }
  return do_register(host, ops, data, ctx_of(host).policy, "policy");
}
int host_register_matcher(KoukanPluginHost* host, const KoukanMatcherOps* ops, void* data) {
  if (ops && !ops->match) {
    ctx_of(host).error = "register_matcher: match missing";
    return KOUKAN_PLUGIN_ERROR;
  }
  return do_register(host, ops, data, ctx_of(host).matcher, "matcher");
}
void host_set_error(KoukanPluginHost* host, const char* message) {
  ctx_of(host).error = message ? message : "";
}

int host_config_check_keys(const KoukanConfig* c, const char* const* known, size_t n) {
  std::vector<std::string_view> keys;
  for (size_t i = 0; i < n; ++i) keys.emplace_back(known[i]);
  if (c->chain_entry) keys.emplace_back("filter");
  std::size_t before = c->node.errors().errors().size();
  c->node.expect_keys(keys, {});
  return c->node.errors().errors().size() == before ? 1 : 0;
}
const char* host_config_get_string(const KoukanConfig* c, const char* key) {
  auto v = c->node[key].as<std::string>();
  if (!v) return nullptr;
  auto& strings = const_cast<KoukanConfig*>(c)->strings;
  strings.push_back(std::move(*v));
  return strings.back().c_str();
}
void host_config_error(const KoukanConfig* c, const char* key, const char* message) {
  std::string_view msg = message ? message : "invalid";
  if (key) {
    c->node[key].error(msg);
  } else {
    c->node.error(msg);
  }
}

const char* host_call_tx_json(KoukanFilterCall* call) { return call->tx_json.c_str(); }
const char* host_call_delta_json(KoukanFilterCall* call) { return call->delta_json.c_str(); }
int host_call_add_to_tx(KoukanFilterCall* call, const char* json) {
  auto d = tx_from_json_string(json ? json : "", View::All);
  if (d) {
    auto m = tx_merge_from(*call->tx, *d);
    if (m) return KOUKAN_PLUGIN_OK;
    call->error = "call_add_to_tx: " + m.error().message;
  } else {
    call->error = "call_add_to_tx: " + d.error().message;
  }
  return KOUKAN_PLUGIN_ERROR;
}
int host_call_set_result(KoukanFilterCall* call, const char* json) {
  auto d = tx_from_json_string(json ? json : "", View::All);
  if (!d) {
    call->error = "call_set_result: " + d.error().message;
    return KOUKAN_PLUGIN_ERROR;
  }
  call->result = std::move(*d);
  return KOUKAN_PLUGIN_OK;
}
void host_call_error(KoukanFilterCall* call, const char* message) {
  call->error = message && *message ? message : "error";
}

void host_route_set_destination(KoukanRouteResult* out, const char* dest) {
  if (dest) out->decision.destination = dest;
}
void host_route_set_response(KoukanRouteResult* out, int code, const char* message) {
  out->decision.response = Response(code, message ? message : "");
}

void host_log(int level, const char* message) {
  log::Level l = level <= 0 ? log::Level::debug
                 : level == 1 ? log::Level::info
                 : level == 2 ? log::Level::warn
                              : log::Level::error;
  log::write(l, "plugin", message ? message : "");
}

KoukanPluginHost make_host(const char* kind, const std::string& key, LoadContext* ctx) {
  KoukanPluginHost h{};
  h.abi_version = KOUKAN_PLUGIN_ABI_VERSION;
  h.plugin_abi_version = 0;
  h.module_kind = kind;
  h.module_key = key.c_str();
  h.host_data = ctx;
  h.register_filter = host_register_filter;
  h.register_policy = host_register_policy;
  h.register_matcher = host_register_matcher;
  h.set_error = host_set_error;
  h.config_check_keys = host_config_check_keys;
  h.config_get_string = host_config_get_string;
  h.config_error = host_config_error;
  h.call_tx_json = host_call_tx_json;
  h.call_delta_json = host_call_delta_json;
  h.call_add_to_tx = host_call_add_to_tx;
  h.call_set_result = host_call_set_result;
  h.call_error = host_call_error;
  h.route_set_destination = host_route_set_destination;
  h.route_set_response = host_route_set_response;
  h.log = host_log;
  return h;
}

// ---- the filter wrapper ------------------------------------------------------------------

struct FilterType {
  std::shared_ptr<const PluginLibrary> lib;
  KoukanFilterOps ops;
  void* data;
  std::string name;
};

class PluginFilter final : public Filter {
 public:
  PluginFilter(std::shared_ptr<const FilterType> type, void* instance)
      : type_(std::move(type)), instance_(instance) {}
  ~PluginFilter() override { type_->ops.destroy(instance_); }

  Task<Result<FilterResult>> on_update(FilterCall& call) const override {
    KoukanFilterCall c;
    c.tx = &call.tx;
    c.tx_json = tx_to_json_string(call.tx, View::All);
    c.delta_json = tx_to_json_string(call.delta, View::All);
    int rc = type_->ops.on_update(instance_, &c);
    if (rc != KOUKAN_PLUGIN_OK || !c.error.empty()) {
      co_return Error(Errc::internal,
                      fmt::format("plugin filter '{}' failed: {}", type_->name,
                                  c.error.empty() ? fmt::format("code {}", rc) : c.error));
    }
    FilterResult r;
    r.downstream_delta = std::move(c.result);
    co_return r;
  }

 private:
  std::shared_ptr<const FilterType> type_;
  void* instance_;
};

std::shared_ptr<const FilterBase> make_plugin_filter(const std::shared_ptr<const FilterType>& type,
                                                     const ChainEntry& entry,
                                                     config::ConfigErrors& errors) {
  KoukanConfig cfg{entry_node(entry, errors), true, {}};
  std::size_t before = errors.errors().size();
  void* instance = type->ops.create(type->data, &cfg);
  if (errors.errors().size() != before) {
    if (instance) type->ops.destroy(instance);
    return nullptr;
  }
  if (!instance) return nullptr;  // disabled by its config
  return std::make_shared<const PluginFilter>(type, instance);
}

// ---- loading --------------------------------------------------------------------------------

void load_one(const char* kind, const std::string& key, const ModuleRef& ref,
              FilterRegistry& registry, LoadedPlugins& out, config::ConfigErrors& errors) {
  std::string path = fmt::format("modules.{}.{}", kind, key);
  auto fail = [&](std::string msg) {
    errors.error(path, fmt::format("plugin '{}': {}", ref.path, msg));
  };
  void* handle = dlopen(ref.path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* e = dlerror();
    fail(fmt::format("cannot load: {}", e ? e : "unknown error"));
    return;
  }
  auto lib = std::make_shared<const PluginLibrary>(handle, ref.path);
  std::string symbol = ref.symbol.empty() ? KOUKAN_PLUGIN_REGISTER_SYMBOL : ref.symbol;
  dlerror();
  void* sym = dlsym(handle, symbol.c_str());
  if (!sym) {
    fail(fmt::format("missing symbol '{}'", symbol));
    return;
  }
  auto fn = reinterpret_cast<KoukanPluginRegisterFn>(sym);
  LoadContext ctx;
  KoukanPluginHost host = make_host(kind, key, &ctx);
  int rc = fn(&host);
  if (host.plugin_abi_version == 0) {
    fail(fmt::format("'{}' did not report its ABI version (koukan_plugin_check_abi)", symbol));
    return;
  }
  if (rc == KOUKAN_PLUGIN_ABI_MISMATCH || host.plugin_abi_version != KOUKAN_PLUGIN_ABI_VERSION) {
    fail(fmt::format("ABI version mismatch: plugin has {}, router expects {}",
                     host.plugin_abi_version, KOUKAN_PLUGIN_ABI_VERSION));
    return;
  }
  if (rc != KOUKAN_PLUGIN_OK) {
    fail(fmt::format("'{}' failed ({}){}", symbol, rc, ctx.error.empty() ? "" : ": " + ctx.error));
    return;
  }
  std::string_view k(kind);
  if (k == "sync_filter") {
    if (!ctx.filter) return fail("registered no sync_filter");
    auto type = std::make_shared<const FilterType>(
        FilterType{lib, ctx.filter->first, ctx.filter->second, key});
    FilterFactory factory = [type](const ChainEntry& entry, config::ConfigErrors& errs) {
      return make_plugin_filter(type, entry, errs);
    };
    if (!registry.add(key, std::move(factory))) {
      fail(fmt::format("filter name '{}' is already registered (a built-in?)", key));
    }
  } else if (k == "recipient_router_policy") {
    if (!ctx.policy) return fail("registered no recipient_router_policy");
    out.policies[key] =
        std::make_shared<const PluginPolicyFactory>(lib, ctx.policy->first, ctx.policy->second);
  } else {
    if (!ctx.matcher) return fail("registered no transaction_matcher");
    out.matchers[key] =
        std::make_shared<const PluginMatcherFactory>(lib, ctx.matcher->first, ctx.matcher->second);
  }
}

}  // namespace

LoadedPlugins load_plugins(const ModulesConfig& modules, FilterRegistry& registry,
                           config::ConfigErrors& errors) {
  LoadedPlugins out;
  for (const auto& [key, ref] : modules.sync_filter) {
    load_one("sync_filter", key, ref, registry, out, errors);
  }
  for (const auto& [key, ref] : modules.recipient_router_policy) {
    load_one("recipient_router_policy", key, ref, registry, out, errors);
  }
  for (const auto& [key, ref] : modules.transaction_matcher) {
    load_one("transaction_matcher", key, ref, registry, out, errors);
  }
  return out;
}

// ---- matchers and policies --------------------------------------------------------------------

PluginMatcher::~PluginMatcher() { ops_.destroy(instance_); }

Result<MatcherResult> PluginMatcher::match(const TransactionMetadata& tx,
                                           std::optional<std::size_t> rcpt_num) const {
  std::string json = tx_to_json_string(tx, View::All);
  std::int64_t n = rcpt_num ? static_cast<std::int64_t>(*rcpt_num) : -1;
  int r = ops_.match(instance_, json.c_str(), n);
  if (r < 0 || r > 2) return Error(Errc::internal, fmt::format("matcher returned {}", r));
  return static_cast<MatcherResult>(r);
}

std::shared_ptr<const PluginMatcher> PluginMatcherFactory::create(const config::Node& yaml) const {
  KoukanConfig cfg{yaml, false, {}};
  std::size_t before = yaml.errors().errors().size();
  void* instance = ops_.create(data_, &cfg);
  if (yaml.errors().errors().size() != before || !instance) {
    if (instance) ops_.destroy(instance);
    if (!instance && yaml.errors().errors().size() == before) yaml.error("matcher create failed");
    return nullptr;
  }
  return std::make_shared<const PluginMatcher>(lib_, ops_, instance);
}

PluginPolicy::~PluginPolicy() { ops_.destroy(instance_); }

Result<RouteDecision> PluginPolicy::route(const TransactionMetadata& tx,
                                          std::size_t rcpt_index) const {
  std::string json = tx_to_json_string(tx, View::All);
  KoukanRouteResult out;
  int r = ops_.route(instance_, json.c_str(), rcpt_index, &out);
  if (r != KOUKAN_PLUGIN_OK) return Error(Errc::internal, fmt::format("policy returned {}", r));
  return std::move(out.decision);
}

std::shared_ptr<const PluginPolicy> PluginPolicyFactory::create(const config::Node& yaml) const {
  KoukanConfig cfg{yaml, false, {}};
  std::size_t before = yaml.errors().errors().size();
  void* instance = ops_.create(data_, &cfg);
  if (yaml.errors().errors().size() != before || !instance) {
    if (instance) ops_.destroy(instance);
    if (!instance && yaml.errors().errors().size() == before) yaml.error("policy create failed");
    return nullptr;
  }
  return std::make_shared<const PluginPolicy>(lib_, ops_, instance);
}

}  // namespace koukan::router::chain
