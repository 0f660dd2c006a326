#include "router/filters/router_filter.hpp"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "common/base/log.hpp"
#include "common/config/yaml.hpp"
#include "router/filters/address.hpp"
#include "router/filters/builtin.hpp"

namespace koukan::router::filters {

namespace json = boost::json;

namespace {

// ---- responses (filters.md §8) ----------------------------------------------------------

Response null_policy_response() {
  return Response(550, "5.1.1 mailbox does not exist (RecipientRouterFilter null policy)");
}
Response address_list_reject_response() {
  return Response(550, "5.1.1 mailbox does not exist (AddressListPolicy)");
}
// [ours] instead of the original's assertion failure.
Response different_destination_response() {
  return Response(451, "4.3.0 recipient routes to a different destination (RecipientRouterFilter)");
}
// [ours] a plugin policy failed or named an unknown rest_endpoint.
Response policy_failed_response() {
  return Response(451, "4.3.0 routing policy failed (RecipientRouterFilter)");
}

// ---- YAML -> JSON (options, smtp_meta) ----------------------------------------------------

// YAML 1.1 booleans, as PyYAML reads them.
bool is_yaml11_bool(std::string_view s, bool* out) {
  static constexpr std::string_view kTrue[] = {"true", "True", "TRUE", "yes", "Yes",
                                               "YES",  "on",   "On",   "ON"};
  static constexpr std::string_view kFalse[] = {"false", "False", "FALSE", "no", "No",
                                                "NO",    "off",   "Off",   "OFF"};
  for (auto t : kTrue) {
    if (s == t) {
      *out = true;
      return true;
    }
  }
  for (auto f : kFalse) {
    if (s == f) {
      *out = false;
      return true;
    }
  }
  return false;
}

// Plain scalars are typed as PyYAML (safe_load) would: bool, int, float,
// else string; quoted scalars are strings.
json::value yaml_to_json(const YAML::Node& n) {
  if (!n.IsDefined() || n.IsNull()) return nullptr;
  if (n.IsScalar()) {
    const std::string& s = n.Scalar();
    if (n.Tag() == "!") return json::string(s);
    bool b = false;
    if (is_yaml11_bool(s, &b)) return b;
    std::int64_t i = 0;
    std::string_view digits = s;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), i);
    if (ec == std::errc() && end == digits.data() + digits.size() && !digits.empty()) return i;
    if (s.find_first_of(".eE") != std::string::npos &&
        s.find_first_of("0123456789") != std::string::npos) {
      char* e = nullptr;
      errno = 0;
      double d = std::strtod(s.c_str(), &e);
      if (e == s.c_str() + s.size() && errno == 0) return d;
    }
    return json::string(s);
  }
  if (n.IsSequence()) {
    json::array a;
    for (const auto& e : n) a.push_back(yaml_to_json(e));
    return a;
  }
  json::object o;
  for (auto it = n.begin(); it != n.end(); ++it) {
    o[it->first.Scalar()] = yaml_to_json(it->second);
  }
  return o;
}

// ---- destinations (§2.2.1) -----------------------------------------------------------------

// A rest_endpoint resolved once: its URL, options and upstream sender (with
// the sender's remote_host / smtp_meta when the router config knows it).
Routing endpoint_routing(const RestEndpointConfig& rest, const RouterConfig& config) {
  Routing r;
  r.rest_endpoint = rest.endpoint;
  if (rest.options.IsMap()) {
    // A copy: the shared config is never written ([ACCIDENTAL] fixed).
    for (auto it = rest.options.begin(); it != rest.options.end(); ++it) {
      r.options[it->first.Scalar()] = yaml_to_json(it->second);
    }
  }
  if (!rest.sender.empty()) {
    RestUpstreamSender s;
    s.name = rest.sender;
    s.tag = rest.tag;
    std::optional<std::string_view> tag;
    if (rest.tag) tag = *rest.tag;
    if (auto eff = config.resolve(rest.sender, tag); eff.ok()) {
      s.remote_host = eff->remote_host;
      if (eff->smtp_meta && eff->smtp_meta->IsMap()) {
        s.smtp_meta = yaml_to_json(*eff->smtp_meta).as_object();
      }
    }
    r.upstream_sender = std::move(s);
  }
  return r;
}

// The value of a `destination` key that is present: null or {} is the
// placeholder (every field unset, options {}); otherwise endpoint (required,
// a rest_endpoint name), host_list, options. nullopt after recording an error.
std::optional<Routing> read_destination(const config::Node& d, const FilterDeps& deps) {
  if (d.is_null()) return Routing{};
  if (!d.expect_map()) return std::nullopt;
  if (d.yaml().size() == 0) return Routing{};
  std::size_t before = d.errors().errors().size();
  d.expect_keys({"endpoint", "host_list", "options"});
  Routing r;
  if (auto name = d.get_required<std::string>("endpoint")) {
    const RestEndpointConfig* rest = deps.config ? deps.config->find_rest_endpoint(*name) : nullptr;
    if (rest) {
      r = endpoint_routing(*rest, *deps.config);
    } else {
      d["endpoint"].error(fmt::format("no rest_endpoint named '{}'", *name));
    }
  }
  config::Node hl = d["host_list"];
  if (!hl.is_null() && hl.expect_list()) {
    std::vector<HostPort> hosts;
    for (const config::Node& h : hl.list()) {
      if (h.is_null()) {
        h.type_error("a map {host, port}");
        continue;
      }
      if (!h.expect_map()) continue;
      h.expect_keys({"host", "port"});
      auto host = h.get_required<std::string>("host");
      if (host && host->empty()) {
        h["host"].error("must not be empty");
        host.reset();
      }
      auto port = h.get_required<int>("port");
      if (port && (*port < 1 || *port > 65535)) {
        h["port"].error("must be between 1 and 65535");
        port.reset();
      }
      if (host && port) hosts.push_back(HostPort{*host, *port});
    }
    r.resolution = std::move(hosts);
  }
  config::Node o = d["options"];
  if (!o.is_null() && o.expect_map()) {
    for (const auto& [key, value] : o.entries()) r.options[key] = yaml_to_json(value.yaml());
  }
  if (d.errors().errors().size() != before) return std::nullopt;
  return r;
}

// ---- policies -------------------------------------------------------------------------------

const std::string& rcpt_address(const TransactionMetadata& tx, std::size_t rcpt) {
  return tx.rcpt_to[rcpt].mailbox;
}

// §2.2.4
class AddressListPolicy final : public RoutingPolicy {
 public:
  AddressListPolicy(AddressList list, std::optional<Routing> destination)
      : list_(std::move(list)), destination_(std::move(destination)) {}

  PolicyDecision route(const TransactionMetadata& tx, std::size_t rcpt) const override {
    if (!list_.match(rcpt_address(tx, rcpt))) return PolicyDecision::none();
    if (destination_) return PolicyDecision::route_to(*destination_);
    return PolicyDecision::reject(address_list_reject_response());
  }

 private:
  const AddressList list_;
  const std::optional<Routing> destination_;  // nullopt: reject matches
};

// §2.2.3
class DestDomainPolicy final : public RoutingPolicy {
 public:
  DestDomainPolicy(Routing destination, int port)
      : destination_(std::move(destination)), port_(port) {}

  PolicyDecision route(const TransactionMetadata& tx, std::size_t rcpt) const override {
    auto domain = domain_from_address(rcpt_address(tx, rcpt));
    if (!domain) return PolicyDecision::none();  // falls through to a later router
    Routing r = destination_;
    r.resolution = std::vector<HostPort>{HostPort{std::move(*domain), port_}};
    return PolicyDecision::route_to(std::move(r));
  }

 private:
  const Routing destination_;
  const int port_;
};

class NamedPolicy final : public RoutingPolicy {
 public:
  NamedPolicy(std::string name, NamedRouteFn route,
              std::map<std::string, Routing, std::less<>> destinations)
      : name_(std::move(name)), route_(std::move(route)), destinations_(std::move(destinations)) {}

  PolicyDecision route(const TransactionMetadata& tx, std::size_t rcpt) const override {
    Result<chain::RouteDecision> r = route_(tx, rcpt);
    if (!r) {
      return PolicyDecision::reject(
          policy_failed_response(),
          fmt::format("routing policy '{}': {}", name_, r.error().message));
    }
    if (r->response && r->response->err()) return PolicyDecision::reject(*r->response);
    if (!r->destination) return PolicyDecision::none();
    auto it = destinations_.find(*r->destination);
    if (it == destinations_.end()) {
      return PolicyDecision::reject(
          policy_failed_response(),
          fmt::format("routing policy '{}' named no rest_endpoint '{}'", name_, *r->destination));
    }
    return PolicyDecision::route_to(it->second);
  }

 private:
  const std::string name_;
  const NamedRouteFn route_;
  const std::map<std::string, Routing, std::less<>> destinations_;
};

std::shared_ptr<const RoutingPolicy> make_plugin_policy(const std::string& name,
                                                        const chain::PluginPolicyFactory& factory,
                                                        const config::Node& p,
                                                        const FilterDeps& deps) {
  // The plugin reads its own keys; `name` is ours, so it is left out (a
  // plugin that checks its keys would otherwise reject it).
  YAML::Node own(YAML::NodeType::Map);
  for (auto it = p.yaml().begin(); it != p.yaml().end(); ++it) {
    if (it->first.Scalar() != "name") own.force_insert(it->first, it->second);
  }
  std::shared_ptr<const chain::PluginPolicy> plugin =
      factory.create(config::Node(own, p.path(), &p.errors()));
  if (!plugin) return nullptr;
  std::map<std::string, Routing, std::less<>> destinations;
  if (deps.config) {
    for (const RestEndpointConfig& rest : deps.config->rest_endpoints) {
      destinations.emplace(rest.name, endpoint_routing(rest, *deps.config));
    }
  }
  NamedRouteFn fn = [plugin](const TransactionMetadata& tx, std::size_t rcpt) {
    return plugin->route(tx, rcpt);
  };
  return make_named_policy(name, std::move(fn), std::move(destinations));
}

std::shared_ptr<const RoutingPolicy> make_policy(const config::Node& p, const FilterDeps& deps) {
  auto name = p.get_required<std::string>("name");
  if (!name) return nullptr;
  if (*name == "address_list") {
    p.expect_keys({"name", "domains", "prefixes", "delimiter", "destination"});
    AddressList list = parse_address_list(p);
    std::optional<Routing> dest;
    if (p["destination"].present()) dest = read_destination(p["destination"], deps);
    return std::make_shared<const AddressListPolicy>(std::move(list), std::move(dest));
  }
  if (*name == "dest_domain") {
    p.expect_keys({"name", "destination", "dest_port"});
    int port = p.get_in_range<int>("dest_port", 25, 1, 65535);
    config::Node d = p["destination"];
    if (!d.present()) {
      d.error("required key missing (null for a placeholder)");
      return nullptr;
    }
    auto dest = read_destination(d, deps);
    if (!dest) return nullptr;
    return std::make_shared<const DestDomainPolicy>(std::move(*dest), port);
  }
  if (deps.plugins) {
    auto it = deps.plugins->policies.find(*name);
    if (it != deps.plugins->policies.end() && it->second) {
      return make_plugin_policy(*name, *it->second, p, deps);
    }
  }
  std::string known = "address_list, dest_domain";
  if (deps.plugins) {
    for (const auto& [k, v] : deps.plugins->policies) known += ", " + k;
  }
  p["name"].error(fmt::format("unknown routing policy '{}' (known: {})", *name, known));
  return nullptr;
}

// ---- the filter -------------------------------------------------------------------------------

struct RouterState final : chain::FilterState {
  std::size_t handled = 0;  // downstream rcpts already looked at
};

void set_rcpt_response(TransactionMetadata& tx, std::size_t j, Response r) {
  if (tx.rcpt_response.size() <= j) tx.rcpt_response.resize(j + 1);
  tx.rcpt_response[j] = std::move(r);
}

std::shared_ptr<const chain::FilterBase> make_router_filter(const ChainEntry& entry,
                                                            config::ConfigErrors& errors,
                                                            const FilterDeps& deps) {
  std::size_t before = errors.errors().size();
  chain::expect_entry_keys(entry, errors, {"policy", "destination", "dry_run"});
  config::Node n = chain::entry_node(entry, errors);
  bool dry_run = n.get<bool>("dry_run", false);
  config::Node p = n["policy"];
  bool has_policy = !p.is_null() && p.expect_map() && p.yaml().size() > 0;
  std::shared_ptr<const RoutingPolicy> policy;
  if (has_policy) policy = make_policy(p, deps);
  std::optional<Routing> dest;
  config::Node d = n["destination"];
  if (has_policy) {
    if (d.present()) d.warning("ignored: the policy decides the destination");
  } else if (d.present()) {
    dest = read_destination(d, deps);
  }
  if (errors.errors().size() != before) return nullptr;
  return std::make_shared<const RecipientRouterFilter>(std::move(policy), std::move(dest),
                                                       dry_run);
}

}  // namespace

std::shared_ptr<const RoutingPolicy> make_named_policy(
    std::string name, NamedRouteFn route, std::map<std::string, Routing, std::less<>> destinations) {
  return std::make_shared<const NamedPolicy>(std::move(name), std::move(route),
                                             std::move(destinations));
}

std::unique_ptr<chain::FilterState> RecipientRouterFilter::new_state() const {
  return std::make_unique<RouterState>();
}

PolicyDecision RecipientRouterFilter::decide(const TransactionMetadata& tx,
                                             std::size_t rcpt) const {
  if (policy_) return policy_->route(tx, rcpt);
  if (static_destination_) return PolicyDecision::route_to(*static_destination_);
  return PolicyDecision::reject(null_policy_response());
}

Task<Result<void>> RecipientRouterFilter::on_update(chain::ProxyCall& call) const {
  auto* state = dynamic_cast<RouterState*>(call.state);
  if (!state) co_return Error(Errc::internal, call.path + ": router filter without its state");

  // Everything but the recipients goes upstream as is; the engine forwards
  // the rcpts this filter leaves unanswered (with their `routed` flag).
  TransactionMetadata up = call.delta;
  up.rcpt_to.clear();
  up.rcpt_to_list_offset.reset();
  up.rcpt_response.clear();  // positional with the downstream list, not ours
  if (auto m = tx_merge_from(call.upstream, up); !m) co_return m.error();

  // Log context: the tx id when the output handler runs the chain.
  auto ctx = [&call] {
    return call.env ? fmt::format("tx={} {}", call.env->rest_id, call.path) : call.path;
  };
  TransactionMetadata& down = call.downstream;
  // Only the rcpts new since the last pass ([ACCIDENTAL] fixed: the original
  // re-appended a response slot for every unanswered rcpt on every pass).
  for (std::size_t j = state->handled; j < down.rcpt_to.size(); ++j) {
    if (j < down.rcpt_response.size() && down.rcpt_response[j]) continue;
    Mailbox& rcpt = down.rcpt_to[j];
    if (rcpt.routed) continue;  // an earlier router handled it
    PolicyDecision d = decide(down, j);
    if (!d.failure.empty()) log::at(log::Level::error, ctx(), "rcpt {}: {}", j, d.failure);
    if (d.response && d.response->err()) {
      log::at(log::Level::debug, ctx(), "rcpt {} rejected: {} {}", j, d.response->code,
              d.response->message);
      set_rcpt_response(down, j, std::move(*d.response));
      rcpt.routed = true;
      continue;
    }
    if (!d.destination) continue;  // not ours: a later router decides
    rcpt.routed = true;
    if (dry_run_) continue;
    if (call.upstream.routing && !(*call.upstream.routing == *d.destination)) {
      log::at(log::Level::info, ctx(), "rcpt {} routes to a different destination", j);
      set_rcpt_response(down, j, different_destination_response());
      continue;
    }
    if (!call.upstream.routing) call.upstream.routing = std::move(*d.destination);
  }
  state->handled = down.rcpt_to.size();
  co_return Result<void>();
}

void register_router_filter(chain::FilterRegistry& registry, const FilterDeps& deps) {
  registry.add("router", [deps](const ChainEntry& entry, config::ConfigErrors& errors) {
    return make_router_filter(entry, errors, deps);
  });
}

}  // namespace koukan::router::filters
