// `router` — RecipientRouterFilter and its policies (spec/filters.md §2.2).
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include "router/chain/chain.hpp"
#include "router/chain/plugin.hpp"
#include "router/chain/registry.hpp"
#include "router/filters/builtin.hpp"
#include "router/filters/router_filter.hpp"
#include "test/router/chain/chain_test_util.hpp"

namespace koukan::router::filters {
namespace {

using chain::testing::entry;
using chain::testing::mbox;
using chain::testing::run;
namespace json = boost::json;

constexpr const char* kNullPolicy =
    "5.1.1 mailbox does not exist (RecipientRouterFilter null policy)";
constexpr const char* kAddressList = "5.1.1 mailbox does not exist (AddressListPolicy)";
constexpr const char* kDifferent =
    "4.3.0 recipient routes to a different destination (RecipientRouterFilter)";
constexpr const char* kPolicyFailed = "4.3.0 routing policy failed (RecipientRouterFilter)";

constexpr const char* kConfig = R"(
rest_listener: {addr: ["127.0.0.1", 0], session_uri: "http://127.0.0.1:8000"}
storage: {url: "sqlite:///tmp/router-filter-test.db"}
sender:
- name: inbound-gw
  remote_host: mx.example.net
  smtp_meta: {ehlo_host: gw.example.net, tls: true, auth: false, n: 3}
rest_endpoint:
- name: receiver
  endpoint: http://127.0.0.1:8001/receiver
  sender: inbound-gw
  tag: mx
  options: {receive_parsing: {}, send_filter_output: true}
- name: gateway
  endpoint: http://127.0.0.1:8002/gateway
  sender: router
)";

// A router config, a registry with `router` (and a `recorder` to look at
// what reaches the end of a chain), and plugins when a test loads some.
struct Env {
  RouterConfig config;
  chain::LoadedPlugins plugins;
  chain::FilterRegistry registry;
  config::ConfigErrors errors;
  // What the recorder saw last, and whether it answers rcpts / data.
  struct Seen {
    TransactionMetadata tx;
    int calls = 0;
  };
  std::shared_ptr<Seen> seen = std::make_shared<Seen>();

  FilterDeps deps() { return FilterDeps{&config, {}, &plugins}; }
};

// Terminal plain filter: records its tx; answers MAIL, every new rcpt and
// the body with 250 when `respond` is set.
class Recorder final : public chain::Filter {
 public:
  Recorder(std::shared_ptr<Env::Seen> seen, bool respond)
      : seen_(std::move(seen)), respond_(respond) {}
  Task<Result<chain::FilterResult>> on_update(chain::FilterCall& call) const override {
    seen_->tx = call.tx;
    ++seen_->calls;
    if (respond_) {
      if (call.delta.mail_from) call.tx.mail_response = Response(250);
      std::size_t first = call.delta.rcpt_to_list_offset.value_or(0);
      for (std::size_t j = first; j < first + call.delta.rcpt_to.size(); ++j) {
        if (call.tx.rcpt_response.size() <= j) call.tx.rcpt_response.resize(j + 1);
        call.tx.rcpt_response[j] = Response(250);
      }
      if (call.delta.body) call.tx.data_response = Response(250);
    }
    co_return chain::FilterResult{};
  }

 private:
  std::shared_ptr<Env::Seen> seen_;
  bool respond_;
};

std::unique_ptr<Env> make_env(const std::string& extra = {}) {
  auto env = std::make_unique<Env>();
  auto c = load_router_config_string(std::string(kConfig) + extra, {"router"}, nullptr, "t.yaml");
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  if (c.ok()) env->config = std::move(*c);
  chain::register_builtin_filters(env->registry);
  register_router_filter(env->registry, env->deps());
  auto seen = env->seen;
  env->registry.add("recorder", [seen](const ChainEntry& e, config::ConfigErrors&) {
    bool respond = e.yaml["respond"].IsDefined() && e.yaml["respond"].as<bool>();
    return std::make_shared<const Recorder>(seen, respond);
  });
  return env;
}

// Builds one router from its yaml (at endpoint[0].chain[0]).
std::shared_ptr<const chain::ProxyFilter> build(Env& env, const std::string& yaml) {
  const chain::FilterFactory* f = env.registry.find("router");
  EXPECT_NE(f, nullptr);
  auto base = (*f)(entry(yaml), env.errors);
  return std::dynamic_pointer_cast<const chain::ProxyFilter>(base);
}

// Errors of building `yaml`, which must fail.
std::string build_error(const std::string& yaml, const std::string& extra = {}) {
  auto env = make_env(extra);
  auto f = build(*env, yaml);
  EXPECT_FALSE(f) << yaml;
  EXPECT_FALSE(env->errors.ok()) << yaml;
  return env->errors.error_text();
}

// Drives one router directly, as the engine would (without the rest of the
// chain): merge the delta into the downstream tx, then on_update.
struct Direct {
  std::shared_ptr<const chain::ProxyFilter> filter;
  std::unique_ptr<chain::FilterState> state;
  TransactionMetadata down;
  TransactionMetadata up;
  std::string path = "endpoint[0].chain[0]";

  explicit Direct(std::shared_ptr<const chain::ProxyFilter> f)
      : filter(std::move(f)), state(filter ? filter->new_state() : nullptr) {}

  Result<void> pass(TransactionMetadata delta) {
    if (!delta.rcpt_to.empty() && !down.rcpt_to.empty()) {
      delta.rcpt_to_list_offset = down.rcpt_to.size();
    }
    if (auto m = tx_merge_from(down, delta); !m) return m.error();
    chain::ProxyCall call(down, delta, up, state.get(), path, nullptr, 0);
    return run(filter->on_update(call));
  }
  Result<void> rcpts(std::vector<std::string> addrs, bool with_mail = true) {
    TransactionMetadata d;
    if (with_mail && !down.mail_from) d.mail_from = mbox("sender@example.org");
    for (auto& a : addrs) d.rcpt_to.push_back(mbox(std::move(a)));
    return pass(std::move(d));
  }
};

// A policy from a table: address -> decision; counts its calls.
class TablePolicy final : public RoutingPolicy {
 public:
  std::map<std::string, PolicyDecision> table;
  std::shared_ptr<int> calls = std::make_shared<int>(0);
  PolicyDecision route(const TransactionMetadata& tx, std::size_t rcpt) const override {
    ++*calls;
    auto it = table.find(tx.rcpt_to.at(rcpt).mailbox);
    return it == table.end() ? PolicyDecision::none() : it->second;
  }
};

Routing routing_to(std::string url, std::vector<HostPort> hosts = {}) {
  Routing r;
  r.rest_endpoint = std::move(url);
  if (!hosts.empty()) r.resolution = std::move(hosts);
  r.upstream_sender = RestUpstreamSender{"gateway", std::string("tag1"), {}, {}};
  return r;
}

std::optional<Response> resp(const TransactionMetadata& tx, std::size_t j) {
  return j < tx.rcpt_response.size() ? tx.rcpt_response[j] : std::nullopt;
}

// ---- recipient_router_filter_test pins ----------------------------------------------------------

TEST(RouterFilter, SuccessSetsRoutingAndDoesNotCopyRcptItself) {
  auto policy = std::make_shared<TablePolicy>();
  policy->table["good"] =
      PolicyDecision::route_to(routing_to("http://localhost:8001", {{"example.com", 1234}}));
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  ASSERT_TRUE(d.rcpts({"good"}));
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(d.up.routing->rest_endpoint, std::optional<std::string>("http://localhost:8001"));
  ASSERT_TRUE(d.up.routing->upstream_sender);
  EXPECT_EQ(d.up.routing->upstream_sender->tag, std::optional<std::string>("tag1"));
  ASSERT_TRUE(d.up.routing->resolution);
  EXPECT_EQ(*d.up.routing->resolution, (std::vector<HostPort>{{"example.com", 1234}}));
  EXPECT_TRUE(d.up.rcpt_to.empty());  // the engine forwards it, not the filter
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_TRUE(d.down.rcpt_response.empty());
  EXPECT_TRUE(d.up.mail_from);  // the rest of the delta went upstream
}

TEST(RouterFilter, PolicyErrorBecomesTheRcptResponse) {
  auto policy = std::make_shared<TablePolicy>();
  policy->table["bad"] = PolicyDecision::reject(Response(500, "not found"));
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  ASSERT_TRUE(d.rcpts({"bad"}));
  EXPECT_EQ(resp(d.down, 0), Response(500, "not found"));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_FALSE(d.up.routing);
}

TEST(RouterFilter, MixedBadRejectedGoodUnanswered) {
  auto policy = std::make_shared<TablePolicy>();
  policy->table["good"] =
      PolicyDecision::route_to(routing_to("http://localhost:8001", {{"example.com", 1234}}));
  policy->table["bad"] = PolicyDecision::reject(Response(500, "not found"));
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  ASSERT_TRUE(d.rcpts({"good", "bad"}));
  EXPECT_EQ(resp(d.down, 0), std::nullopt);
  EXPECT_EQ(resp(d.down, 1), Response(500, "not found"));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_TRUE(d.up.routing);
}

TEST(RouterFilter, NoPolicyNoDestinationRejects) {
  auto env = make_env();
  Direct d(build(*env, "{filter: router}"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"a@example.com"}));
  EXPECT_EQ(resp(d.down, 0), Response(550, kNullPolicy));
  for (const char* y : {"{filter: router, policy: null}", "{filter: router, policy: {}}"}) {
    Direct e(build(*env, y));
    ASSERT_TRUE(e.filter) << env->errors.error_text();
    ASSERT_TRUE(e.rcpts({"a@example.com"}));
    EXPECT_EQ(resp(e.down, 0), Response(550, kNullPolicy)) << y;
  }
}

TEST(RouterFilter, NotRoutedLeavesTheRcptAlone) {
  auto policy = std::make_shared<TablePolicy>();  // decides nothing
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  ASSERT_TRUE(d.rcpts({"x@example.com"}));
  EXPECT_FALSE(d.down.rcpt_to[0].routed);
  EXPECT_TRUE(d.down.rcpt_response.empty());
  EXPECT_FALSE(d.up.routing);
}

TEST(RouterFilter, AlreadyRoutedAndAnsweredRcptsAreLeftAlone) {
  auto policy = std::make_shared<TablePolicy>();
  policy->table["a"] = PolicyDecision::reject(Response(550, "no"));
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  TransactionMetadata delta;
  delta.rcpt_to = {mbox("a"), mbox("a")};
  delta.rcpt_to[0].routed = true;  // an earlier router handled it
  ASSERT_TRUE(d.pass(delta));
  EXPECT_EQ(*policy->calls, 1);
  EXPECT_EQ(resp(d.down, 0), std::nullopt);
  EXPECT_EQ(resp(d.down, 1), Response(550, "no"));
}

// [ACCIDENTAL] fixed: a later delta (the body) must not append response slots
// for rcpts still waiting for upstream, nor consult the policy again.
TEST(RouterFilter, SecondPassDoesNotGrowRcptResponse) {
  auto policy = std::make_shared<TablePolicy>();
  policy->table["good"] = PolicyDecision::route_to(routing_to("http://localhost:8001"));
  policy->table["bad"] = PolicyDecision::reject(Response(550, "no"));
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  // "other": not routed here, left for a later router.
  ASSERT_TRUE(d.rcpts({"bad", "good", "other"}));
  EXPECT_EQ(d.down.rcpt_response.size(), 1u);
  EXPECT_EQ(*policy->calls, 3);
  TransactionMetadata body;
  body.body = InlineBody{"hello\r\n"};
  ASSERT_TRUE(d.pass(body));
  EXPECT_EQ(d.down.rcpt_response.size(), 1u);
  ASSERT_TRUE(d.pass(TransactionMetadata{}));  // a noop pass
  EXPECT_EQ(d.down.rcpt_response.size(), 1u);
  EXPECT_EQ(*policy->calls, 3);
  EXPECT_TRUE(d.up.body);
  // A rcpt added later is handled (index 3); the old ones are not revisited.
  ASSERT_TRUE(d.rcpts({"bad"}));
  EXPECT_EQ(*policy->calls, 4);
  EXPECT_EQ(d.down.rcpt_response.size(), 4u);
  EXPECT_EQ(resp(d.down, 1), std::nullopt);
  EXPECT_EQ(resp(d.down, 2), std::nullopt);
  EXPECT_EQ(resp(d.down, 3), Response(550, "no"));
}

// [ours] The original asserted (crashed) here.
TEST(RouterFilter, DifferentDestinationGets451) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: dest_domain,
                           destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"a@x.example", "b@x.example", "c@y.example"}));
  EXPECT_EQ(resp(d.down, 0), std::nullopt);
  EXPECT_EQ(resp(d.down, 1), std::nullopt);  // same routing: fine
  EXPECT_EQ(resp(d.down, 2), Response(451, kDifferent));
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(*d.up.routing->resolution, (std::vector<HostPort>{{"x.example", 25}}));
  // Also across passes.
  ASSERT_TRUE(d.rcpts({"d@z.example"}));
  EXPECT_EQ(resp(d.down, 3), Response(451, kDifferent));
}

TEST(RouterFilter, DryRunMarksRoutedOnly) {
  auto env = make_env();
  for (const char* y :
       {"{filter: router, dry_run: true, destination: {endpoint: gateway}}",
        "{filter: router, dry_run: true, destination: null}",
        "{filter: router, dry_run: true, destination: {}}",
        "{filter: router, dry_run: true, policy: {name: dest_domain, destination: null}}"}) {
    Direct d(build(*env, y));
    ASSERT_TRUE(d.filter) << y << env->errors.error_text();
    ASSERT_TRUE(d.rcpts({"a@x.example", "b@y.example"}));
    EXPECT_TRUE(d.down.rcpt_to[0].routed) << y;
    EXPECT_TRUE(d.down.rcpt_to[1].routed) << y;
    EXPECT_TRUE(d.down.rcpt_response.empty()) << y;  // no 451 either: nothing is set
    EXPECT_FALSE(d.up.routing) << y;
  }
  // dry_run still rejects.
  Direct r(build(*env, R"({filter: router, dry_run: true,
                         policy: {name: address_list, domains: [x.example]}})"));
  ASSERT_TRUE(r.rcpts({"a@x.example", "b@y.example"}));
  EXPECT_EQ(resp(r.down, 0), Response(550, kAddressList));
  EXPECT_FALSE(r.down.rcpt_to[1].routed);
}

TEST(RouterFilter, PlaceholderDestinationWithoutDryRunSetsAnEmptyRouting) {
  auto env = make_env();
  Direct d(build(*env, "{filter: router, destination: null}"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"a@x.example"}));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_EQ(d.up.routing, Routing{});
}

// ---- destinations ----------------------------------------------------------------------------

TEST(RouterFilter, StaticDestinationResolvesTheRestEndpoint) {
  auto env = make_env();
  Direct d(build(*env, R"(
filter: router
destination:
  endpoint: receiver
  host_list: [{host: smtp1.example, port: 2525}, {host: "10.1.1.1", port: 25}]
  options: {send_filter_output: false, extra: [1, "two", 3.5, null, yes]}
)"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"a@x.example"}));
  ASSERT_TRUE(d.up.routing);
  const Routing& r = *d.up.routing;
  EXPECT_EQ(r.rest_endpoint, std::optional<std::string>("http://127.0.0.1:8001/receiver"));
  EXPECT_EQ(*r.resolution,
            (std::vector<HostPort>{{"smtp1.example", 2525}, {"10.1.1.1", 25}}));
  EXPECT_EQ(json::value(r.options),
            boost::json::parse(R"({"receive_parsing": {}, "send_filter_output": false,
                                   "extra": [1, "two", 3.5, null, true]})"));
  ASSERT_TRUE(r.upstream_sender);
  EXPECT_EQ(r.upstream_sender->name, "inbound-gw");
  EXPECT_EQ(r.upstream_sender->tag, std::optional<std::string>("mx"));
  EXPECT_EQ(r.upstream_sender->remote_host, std::optional<std::string>("mx.example.net"));
  ASSERT_TRUE(r.upstream_sender->smtp_meta);
  EXPECT_EQ(json::value(*r.upstream_sender->smtp_meta),
            boost::json::parse(R"({"ehlo_host": "gw.example.net", "tls": true, "auth": false,
                                   "n": 3})"));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
}

TEST(RouterFilter, UnknownSenderKeepsTheBareName) {
  auto env = make_env();
  Direct d(build(*env, "{filter: router, destination: {endpoint: gateway}}"));
  ASSERT_TRUE(d.rcpts({"a@x.example"}));
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(d.up.routing->upstream_sender,
            (RestUpstreamSender{"router", std::nullopt, std::nullopt, std::nullopt}));
  EXPECT_EQ(d.up.routing->resolution, std::nullopt);
  EXPECT_TRUE(d.up.routing->options.empty());
}

// [ACCIDENTAL] fixed: the destination's options overlay a copy.
TEST(RouterFilter, OptionsOverlayNeverLeaksIntoTheSharedConfig) {
  auto env = make_env();
  auto first = build(*env, R"({filter: router,
      destination: {endpoint: receiver, options: {receive_parsing: null, leak: true}}})");
  ASSERT_TRUE(first) << env->errors.error_text();
  const YAML::Node& opts = env->config.find_rest_endpoint("receiver")->options;
  EXPECT_FALSE(opts["leak"].IsDefined());
  EXPECT_TRUE(opts["receive_parsing"].IsMap());
  Direct second(build(*env, "{filter: router, destination: {endpoint: receiver}}"));
  ASSERT_TRUE(second.rcpts({"a@x.example"}));
  EXPECT_EQ(json::value(second.up.routing->options),
            boost::json::parse(R"({"receive_parsing": {}, "send_filter_output": true})"));
  Direct one(first);
  ASSERT_TRUE(one.rcpts({"a@x.example"}));
  EXPECT_EQ(json::value(one.up.routing->options),
            boost::json::parse(R"({"receive_parsing": null, "send_filter_output": true,
                                   "leak": true})"));
}

// ---- dest_domain (§2.2.3) ----------------------------------------------------------------------

TEST(DestDomainPolicy, RoutesToTheRcptDomain) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: dest_domain,
                           destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"Alice@Example.COM"}));
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(*d.up.routing->resolution, (std::vector<HostPort>{{"Example.COM", 25}}));
  EXPECT_EQ(d.up.routing->rest_endpoint, std::optional<std::string>("http://127.0.0.1:8002/gateway"));

  Direct p(build(*env, R"({filter: router, policy: {name: dest_domain, dest_port: 2525,
                           destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(p.rcpts({"bob@[1.2.3.4]"}));
  EXPECT_EQ(*p.up.routing->resolution, (std::vector<HostPort>{{"[1.2.3.4]", 2525}}));
}

TEST(DestDomainPolicy, UnparsableFallsThrough) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: dest_domain,
                           destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(d.rcpts({"alice", "alice@", "@example.com", "@@@"}));
  for (std::size_t j = 0; j < 4; ++j) {
    EXPECT_FALSE(d.down.rcpt_to[j].routed) << j;
    EXPECT_EQ(resp(d.down, j), std::nullopt) << j;
  }
  EXPECT_FALSE(d.up.routing);
}

// ---- address_list (§2.2.4, address_list_policy_test) ------------------------------------------

TEST(AddressListPolicy, RoutesMatchesFallsThroughOthers) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: address_list, domains: [example.com],
                           delimiter: "+", prefixes: [alice], destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"alice@example.com", "alice+@example.com", "alice+a@example.com",
                       "alice@example.comm", "alice@e.example.com", "alicee@example.com",
                       "alice", "@@@"}));
  for (std::size_t j = 0; j < 3; ++j) EXPECT_TRUE(d.down.rcpt_to[j].routed) << j;
  for (std::size_t j = 3; j < 8; ++j) EXPECT_FALSE(d.down.rcpt_to[j].routed) << j;
  EXPECT_TRUE(d.down.rcpt_response.empty());
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(d.up.routing->rest_endpoint, std::optional<std::string>("http://127.0.0.1:8002/gateway"));
}

TEST(AddressListPolicy, MatchWithoutDestinationIs550) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: address_list, domains: [example.com]}})"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"qqq@example.com", "qqq@example.org"}));
  EXPECT_EQ(resp(d.down, 0), Response(550, kAddressList));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_EQ(resp(d.down, 1), std::nullopt);
  EXPECT_FALSE(d.down.rcpt_to[1].routed);
}

TEST(AddressListPolicy, YamlEntriesCompareCaseInsensitively) {
  auto env = make_env();
  Direct d(build(*env, R"({filter: router, policy: {name: address_list, domains: [Example.COM],
                           prefixes: [Postmaster], destination: {endpoint: gateway}}})"));
  ASSERT_TRUE(d.rcpts({"POSTMASTER@example.com"}));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
}

// ---- plugin policies -------------------------------------------------------------------------

TEST(NamedPolicy, MapsRestEndpointNamesAndFailures) {
  std::map<std::string, Routing, std::less<>> dests;
  dests["gw"] = routing_to("http://gw");
  NamedRouteFn fn = [](const TransactionMetadata& tx,
                       std::size_t i) -> Result<chain::RouteDecision> {
    const std::string& a = tx.rcpt_to[i].mailbox;
    chain::RouteDecision d;
    if (a == "to-gw") d.destination = "gw";
    if (a == "to-nowhere") d.destination = "nowhere";
    if (a == "reject") d.response = Response(550, "5.1.1 nope");
    if (a == "ok-response") d.response = Response(250, "fine");  // not an error: ignored
    if (a == "fail") return Error(Errc::internal, "policy returned 1");
    return d;
  };
  auto policy = make_named_policy("fake", fn, dests);
  Direct d(std::make_shared<const RecipientRouterFilter>(policy, std::nullopt, false));
  ASSERT_TRUE(d.rcpts({"to-gw", "to-nowhere", "reject", "fail", "other", "ok-response"}));
  EXPECT_EQ(resp(d.down, 0), std::nullopt);
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_EQ(d.up.routing, routing_to("http://gw"));
  EXPECT_EQ(resp(d.down, 1), Response(451, kPolicyFailed));
  EXPECT_EQ(resp(d.down, 2), Response(550, "5.1.1 nope"));
  EXPECT_EQ(resp(d.down, 3), Response(451, kPolicyFailed));
  EXPECT_EQ(resp(d.down, 4), std::nullopt);
  EXPECT_FALSE(d.down.rcpt_to[4].routed);
  EXPECT_EQ(resp(d.down, 5), std::nullopt);
  EXPECT_FALSE(d.down.rcpt_to[5].routed);
}

#if defined(HELLO_POLICY_PLUGIN_PATH)
std::unique_ptr<Env> env_with_hello() {
  auto env = make_env();
  ModulesConfig m;
  ModuleRef r;
  r.spec = r.path = HELLO_POLICY_PLUGIN_PATH;
  m.recipient_router_policy["hello"] = r;
  env->plugins = chain::load_plugins(m, env->registry, env->errors);
  EXPECT_TRUE(env->errors.ok()) << env->errors.error_text();
  return env;
}

TEST(PluginPolicy, HelloPolicyRoutesThroughTheRouter) {
  auto env = env_with_hello();
  Direct d(build(*env, "{filter: router, policy: {name: hello, endpoint: gateway, domain: example.org}}"));
  ASSERT_TRUE(d.filter) << env->errors.error_text();
  ASSERT_TRUE(d.rcpts({"bob@example.org", "carol@example.com"}));
  EXPECT_TRUE(d.down.rcpt_to[0].routed);
  EXPECT_FALSE(d.down.rcpt_to[1].routed);
  ASSERT_TRUE(d.up.routing);
  EXPECT_EQ(d.up.routing->rest_endpoint, std::optional<std::string>("http://127.0.0.1:8002/gateway"));
}

TEST(PluginPolicy, HelloPolicyConfigErrorsNameThePath) {
  auto env = env_with_hello();
  EXPECT_FALSE(build(*env, "{filter: router, policy: {name: hello, endpoint: gw, domian: x}}"));
  EXPECT_NE(env->errors.error_text().find(
                "endpoint[0].chain[0].policy.domian: unknown key; did you mean 'domain'?"),
            std::string::npos)
      << env->errors.error_text();
}
#endif

// ---- through the chain engine ------------------------------------------------------------------

std::shared_ptr<const chain::ChainTemplate> chain_of(Env& env,
                                                     std::initializer_list<std::string> yamls) {
  auto tmpl = chain::build_chain(chain::testing::endpoint("out", yamls), env.registry, env.errors);
  EXPECT_TRUE(tmpl) << env.errors.error_text();
  return tmpl;
}

TEST(RouterChain, RoutedRcptsGoUpstreamWithTheFlagRejectedOnesDoNot) {
  auto env = make_env();
  auto tmpl = chain_of(*env, {R"({filter: router, policy: {name: address_list,
                                   domains: [example.com], prefixes: [bad]}})",
                              R"({filter: router, destination: {endpoint: gateway}})",
                              "{filter: recorder, respond: true}"});
  ASSERT_TRUE(tmpl);
  chain::ChainInstance c(tmpl);
  TransactionMetadata d;
  d.mail_from = mbox("s@example.org");
  d.rcpt_to = {mbox("bad@example.com"), mbox("good@example.com")};
  auto r = run(c.update(d));
  ASSERT_TRUE(r) << r.error().message;
  const TransactionMetadata& head = c.tx();
  ASSERT_EQ(head.rcpt_response.size(), 2u);
  EXPECT_EQ(head.rcpt_response[0], Response(550, kAddressList));
  EXPECT_EQ(head.rcpt_response[1], Response(250));
  // The recorder saw only the good rcpt, routed by the second router.
  ASSERT_EQ(env->seen->tx.rcpt_to.size(), 1u);
  EXPECT_EQ(env->seen->tx.rcpt_to[0].mailbox, "good@example.com");
  EXPECT_TRUE(env->seen->tx.rcpt_to[0].routed);
  ASSERT_TRUE(env->seen->tx.routing);
  EXPECT_EQ(env->seen->tx.routing->rest_endpoint,
            std::optional<std::string>("http://127.0.0.1:8002/gateway"));
}

TEST(RouterChain, FirstRouterWinsLaterRouterLeavesRoutedRcptsAlone) {
  auto env = make_env();
  auto tmpl = chain_of(*env, {R"({filter: router, destination: {endpoint: receiver}})",
                              R"({filter: router, destination: {endpoint: gateway}})",
                              "{filter: recorder, respond: true}"});
  ASSERT_TRUE(tmpl);
  chain::ChainInstance c(tmpl);
  TransactionMetadata d;
  d.mail_from = mbox("s@example.org");
  d.rcpt_to = {mbox("a@example.com")};
  auto r = run(c.update(d));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(c.tx().rcpt_response, (std::vector<std::optional<Response>>{Response(250)}));
  ASSERT_TRUE(env->seen->tx.routing);
  EXPECT_EQ(env->seen->tx.routing->rest_endpoint,
            std::optional<std::string>("http://127.0.0.1:8001/receiver"));
}

TEST(RouterChain, BodyAfterRcptKeepsResponsesPositional) {
  auto env = make_env();
  auto tmpl = chain_of(*env, {R"({filter: router, destination: {endpoint: gateway}})",
                              "{filter: recorder}"});  // never answers
  ASSERT_TRUE(tmpl);
  chain::ChainInstance c(tmpl);
  TransactionMetadata d;
  d.mail_from = mbox("s@example.org");
  d.rcpt_to = {mbox("a@example.com")};
  auto r = run(c.update(d));
  ASSERT_TRUE(r) << r.error().message;
  TransactionMetadata body;
  body.body = InlineBody{"hi\r\n"};
  r = run(c.update(body));
  ASSERT_TRUE(r) << r.error().message;
  r = run(c.update(TransactionMetadata{}));  // heartbeat
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_LE(c.tx().rcpt_response.size(), c.tx().rcpt_to.size());
  EXPECT_EQ(env->seen->tx.rcpt_to.size(), 1u);
  EXPECT_TRUE(env->seen->tx.body);
  EXPECT_EQ(env->seen->calls, 3);
}

// ---- config -------------------------------------------------------------------------------------

TEST(RouterFilterConfig, ValidConfigsBuild) {
  auto env = make_env();
  for (const char* y : {
           "{filter: router}",
           "{filter: router, dry_run: false, destination: {endpoint: gateway}}",
           "{filter: router, policy: {name: address_list}}",
           "{filter: router, policy: {name: address_list, domains: [], prefixes: [], delimiter: null,"
           " destination: null}}",
           "{filter: router, policy: {name: dest_domain, destination: {endpoint: receiver,"
           " options: {receive_parsing: {}}}, dest_port: 587}}",
       }) {
    EXPECT_TRUE(build(*env, y)) << y << "\n" << env->errors.error_text();
  }
  EXPECT_TRUE(env->errors.ok()) << env->errors.error_text();
}

TEST(RouterFilterConfig, DestinationBesideAPolicyIsAWarning) {
  auto env = make_env();
  EXPECT_TRUE(build(*env, R"({filter: router, policy: {name: dest_domain, destination: null},
                              destination: {endpoint: gateway}})"));
  ASSERT_EQ(env->errors.warnings().size(), 1u);
  EXPECT_EQ(env->errors.warnings()[0].path, "endpoint[0].chain[0].destination");
}

TEST(RouterFilterConfig, ForbiddenConfigsAreRejectedNamingTheKey) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"{filter: router, destinaton: {endpoint: gateway}}",
       "endpoint[0].chain[0].destinaton: unknown key; did you mean 'destination'?"},
      {"{filter: router, policy: {name: nope}}",
       "endpoint[0].chain[0].policy.name: unknown routing policy 'nope' (known: address_list, "
       "dest_domain)"},
      {"{filter: router, policy: {domains: [x]}}",
       "endpoint[0].chain[0].policy.name: required key missing"},
      {"{filter: router, policy: 3}", "endpoint[0].chain[0].policy: expected a map"},
      {"{filter: router, destination: {endpoint: nowhere}}",
       "endpoint[0].chain[0].destination.endpoint: no rest_endpoint named 'nowhere'"},
      {"{filter: router, destination: {host_list: []}}",
       "endpoint[0].chain[0].destination.endpoint: required key missing"},
      {"{filter: router, destination: {endpoint: gateway, hosts: []}}",
       "endpoint[0].chain[0].destination.hosts: unknown key"},
      {"{filter: router, destination: {endpoint: gateway, host_list: [{host: a, port: 0}]}}",
       "endpoint[0].chain[0].destination.host_list[0].port: must be between 1 and 65535"},
      {"{filter: router, destination: {endpoint: gateway, host_list: [{host: a}]}}",
       "endpoint[0].chain[0].destination.host_list[0].port: required key missing"},
      {"{filter: router, destination: {endpoint: gateway, options: [1]}}",
       "endpoint[0].chain[0].destination.options: expected a map"},
      {"{filter: router, dry_run: maybe}", "endpoint[0].chain[0].dry_run: expected a boolean"},
      {"{filter: router, policy: {name: address_list, domain: [x]}}",
       "endpoint[0].chain[0].policy.domain: unknown key; did you mean 'domains'?"},
      {"{filter: router, policy: {name: address_list, destination: {endpoint: nowhere}}}",
       "endpoint[0].chain[0].policy.destination.endpoint: no rest_endpoint named 'nowhere'"},
      {"{filter: router, policy: {name: dest_domain}}",
       "endpoint[0].chain[0].policy.destination: required key missing"},
      {"{filter: router, policy: {name: dest_domain, destination: null, dest_port: 70000}}",
       "endpoint[0].chain[0].policy.dest_port: must be between 1 and 65535"},
      {"{filter: router, policy: {name: dest_domain, destination: null, port: 25}}",
       "endpoint[0].chain[0].policy.port: unknown key"},
  };
  for (const Case& c : cases) {
    std::string text = build_error(c.yaml);
    EXPECT_NE(text.find(c.error), std::string::npos) << c.yaml << "\n got: " << text;
  }
}

}  // namespace
}  // namespace koukan::router::filters
