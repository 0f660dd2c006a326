// Plugin loading (plugins/koukan_plugin.h) through router.yaml `modules`.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "router/chain/chain.hpp"
#include "router/chain/plugin.hpp"
#include "router/chain/registry.hpp"
#include "test/router/chain/chain_test_util.hpp"

#if defined(HELLO_PLUGIN_PATH)

namespace koukan::router::chain {
namespace {

using testing::mbox;
using testing::run;

constexpr const char* kBase = R"(
rest_listener:
  addr: ["127.0.0.1", 0]
  session_uri: http://127.0.0.1:8000
storage:
  url: sqlite:///tmp/x.db
)";

struct Loaded {
  FilterRegistry registry;
  config::ConfigErrors errors;
  LoadedPlugins plugins;
  ChainMap chains;
  std::string config_error;
};

// The start-up order: built-ins, config, plugins, chains.
std::unique_ptr<Loaded> start(const std::string& yaml) {
  auto l = std::make_unique<Loaded>();
  register_builtin_filters(l->registry);
  auto config = load_router_config_string(std::string(kBase) + yaml, l->registry.names(), nullptr,
                                          "test.yaml");
  if (!config) {
    l->config_error = config.error().message;
    return l;
  }
  l->plugins = load_plugins(config->modules, l->registry, l->errors);
  if (l->errors.ok()) l->chains = build_chains(*config, l->registry, l->errors);
  return l;
}

ModuleRef ref(std::string path, std::string symbol = {}) {
  ModuleRef r;
  r.spec = symbol.empty() ? path : path + ":" + symbol;
  r.path = std::move(path);
  r.symbol = std::move(symbol);
  return r;
}

std::string load_error(const char* kind, const std::string& key, const ModuleRef& r) {
  FilterRegistry registry;
  register_builtin_filters(registry);
  ModulesConfig m;
  std::string_view k(kind);
  (k == "sync_filter" ? m.sync_filter
   : k == "transaction_matcher" ? m.transaction_matcher
                                : m.recipient_router_policy)[key] = r;
  config::ConfigErrors errors;
  load_plugins(m, registry, errors);
  return errors.error_text();
}

TEST(PluginTest, HelloFilterLoadsThroughConfigAndShowsOnTheTx) {
  auto l = start(std::string(R"(
modules:
  sync_filter:
    hello: )") + HELLO_PLUGIN_PATH + R"(
endpoint:
- name: out
  chain:
  - {filter: hello, greeting: bonjour}
  - {filter: test_responder, mail_response: {code: 250}}
)");
  ASSERT_EQ(l->config_error, "");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text();
  ASSERT_TRUE(l->chains.count("out"));
  EXPECT_TRUE(l->registry.contains("hello"));

  ChainInstance chain(l->chains.at("out"));
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  auto up = run(chain.update(d));
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->mail_response->code, 250);
  ASSERT_TRUE(up->filter_output);
  const auto& hello = up->filter_output->at("hello").as_object();
  EXPECT_EQ(hello.at("greeting").as_string(), "bonjour");
  // Heartbeat: the plugin is called with "{}" and adds nothing new.
  auto hb = run(chain.update(TransactionMetadata{}));
  ASSERT_TRUE(hb) << hb.error().message;
  EXPECT_TRUE(hb->empty());
}

TEST(PluginTest, HelloFilterDefaultGreeting) {
  auto l = start(std::string("modules: {sync_filter: {hello: ") + HELLO_PLUGIN_PATH +
                 "}}\nendpoint: [{name: out, chain: [{filter: hello}, {filter: test_responder}]}]\n");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text() << l->config_error;
  ChainInstance chain(l->chains.at("out"));
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  auto up = run(chain.update(d));
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->filter_output->at("hello").at("greeting").as_string(), "hello");
}

TEST(PluginTest, HelloFilterConfigErrorsNameThePath) {
  auto l = start(std::string("modules: {sync_filter: {hello: ") + HELLO_PLUGIN_PATH +
                 "}}\nendpoint: [{name: out, chain: [{filter: test_responder}, "
                 "{filter: hello, greting: x}, {filter: hello, greeting: 'a\"b'}]}]\n");
  ASSERT_EQ(l->config_error, "");
  std::string text = l->errors.error_text();
  EXPECT_NE(text.find("endpoint[0].chain[1].greting: unknown key; did you mean 'greeting'?"),
            std::string::npos) << text;
  EXPECT_NE(text.find("endpoint[0].chain[2].greeting: must not contain quotes"), std::string::npos)
      << text;
  EXPECT_FALSE(l->chains.count("out"));
}

TEST(PluginTest, MissingFileNamesKeyAndPath) {
  std::string text = load_error("sync_filter", "hello", ref("/nonexistent/hello_filter.so"));
  EXPECT_NE(text.find("modules.sync_filter.hello: plugin '/nonexistent/hello_filter.so': cannot load"),
            std::string::npos) << text;
}

TEST(PluginTest, MissingSymbolNamesIt) {
  std::string text = load_error("sync_filter", "x", ref(NO_SYMBOL_PLUGIN_PATH));
  EXPECT_NE(text.find(std::string("modules.sync_filter.x: plugin '") + NO_SYMBOL_PLUGIN_PATH +
                      "': missing symbol 'koukan_plugin_register'"),
            std::string::npos) << text;
  // A symbol named in the config.
  text = load_error("transaction_matcher", "m", ref(HELLO_PLUGIN_PATH, "my_register"));
  EXPECT_NE(text.find("modules.transaction_matcher.m: plugin '"), std::string::npos) << text;
  EXPECT_NE(text.find("missing symbol 'my_register'"), std::string::npos) << text;
}

TEST(PluginTest, AbiVersionMismatchIsReported) {
  std::string text = load_error("sync_filter", "old", ref(BAD_ABI_PLUGIN_PATH));
  EXPECT_NE(text.find(std::string("modules.sync_filter.old: plugin '") + BAD_ABI_PLUGIN_PATH +
                      "': ABI version mismatch: plugin has 999, router expects 1"),
            std::string::npos) << text;
}

TEST(PluginTest, WrongKindIsReported) {
  std::string text = load_error("transaction_matcher", "match_hello", ref(HELLO_PLUGIN_PATH));
  EXPECT_NE(text.find("modules.transaction_matcher.match_hello: plugin '"), std::string::npos)
      << text;
  EXPECT_NE(text.find("registered no transaction_matcher"), std::string::npos) << text;
}

TEST(PluginTest, NameOfABuiltinIsRejected) {
  std::string text = load_error("sync_filter", "test_responder", ref(HELLO_PLUGIN_PATH));
  EXPECT_NE(text.find("modules.sync_filter.test_responder: "), std::string::npos) << text;
  EXPECT_NE(text.find("already registered"), std::string::npos) << text;
}

#if defined(HELLO_POLICY_PLUGIN_PATH) && defined(HELLO_MATCHER_PLUGIN_PATH)

// A policy / matcher yaml as a future consumer would hand it over, at `path`.
struct PluginYaml {
  config::ConfigErrors errors;
  YAML::Node yaml;
  config::Node node(const std::string& path) { return config::Node(yaml, path, &errors); }
};

TransactionMetadata tx_with(const std::string& from, std::vector<std::string> rcpts) {
  TransactionMetadata tx;
  tx.mail_from = mbox(from);
  for (auto& r : rcpts) tx.rcpt_to.push_back(mbox(std::move(r)));
  return tx;
}

TEST(PluginTest, HelloPolicyRoutesItsDomainOnly) {
  auto l = start(std::string("modules: {recipient_router_policy: {hello: ") +
                 HELLO_POLICY_PLUGIN_PATH + "}}\n");
  ASSERT_EQ(l->config_error, "");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text();
  ASSERT_TRUE(l->plugins.policies.count("hello"));
  EXPECT_FALSE(l->registry.contains("hello"));  // not a filter

  PluginYaml y;
  y.yaml = YAML::Load("{endpoint: inbound, domain: Example.ORG}");
  auto policy = l->plugins.policies.at("hello")->create(y.node("policy"));
  ASSERT_TRUE(policy) << y.errors.error_text();
  ASSERT_TRUE(y.errors.ok()) << y.errors.error_text();

  auto tx = tx_with("alice@example.com",
                    {"bob@example.org", "carol@example.com", "dave@sub.example.org",
                     "EVE@EXAMPLE.org"});
  auto r0 = policy->route(tx, 0);
  ASSERT_TRUE(r0) << r0.error().message;
  EXPECT_EQ(r0->destination, std::optional<std::string>("inbound"));
  EXPECT_FALSE(r0->response);
  for (std::size_t i : {1u, 2u}) {  // other domains: not routed
    auto r = policy->route(tx, i);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_FALSE(r->destination) << i;
    EXPECT_FALSE(r->response) << i;
  }
  auto r3 = policy->route(tx, 3);  // domains compare case-insensitively
  ASSERT_TRUE(r3) << r3.error().message;
  EXPECT_EQ(r3->destination, std::optional<std::string>("inbound"));
  // An index past the end is the plugin's error.
  auto bad = policy->route(tx, 4);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("policy returned 1"), std::string::npos)
      << bad.error().message;
}

TEST(PluginTest, HelloPolicyDefaultDomain) {
  auto l = start(std::string("modules: {recipient_router_policy: {hello: ") +
                 HELLO_POLICY_PLUGIN_PATH + "}}\n");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text() << l->config_error;
  PluginYaml y;
  y.yaml = YAML::Load("{endpoint: local}");
  auto policy = l->plugins.policies.at("hello")->create(y.node("policy"));
  ASSERT_TRUE(policy) << y.errors.error_text();
  auto tx = tx_with("", {"x@example.org", "y@example.com"});
  auto a = policy->route(tx, 0);
  ASSERT_TRUE(a) << a.error().message;
  EXPECT_FALSE(a->destination);
  auto b = policy->route(tx, 1);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->destination, std::optional<std::string>("local"));
}

TEST(PluginTest, HelloPolicyConfigErrorsNameThePath) {
  auto l = start(std::string("modules: {recipient_router_policy: {hello: ") +
                 HELLO_POLICY_PLUGIN_PATH + "}}\n");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text() << l->config_error;
  const auto& factory = *l->plugins.policies.at("hello");
  {
    PluginYaml y;
    y.yaml = YAML::Load("{endpoint: inbound, domian: example.org}");
    EXPECT_FALSE(factory.create(y.node("rcpt_policy")));
    std::string text = y.errors.error_text();
    EXPECT_NE(text.find("rcpt_policy.domian: unknown key; did you mean 'domain'?"),
              std::string::npos) << text;
  }
  {
    PluginYaml y;
    y.yaml = YAML::Load("{domain: example.org}");
    EXPECT_FALSE(factory.create(y.node("rcpt_policy")));
    std::string text = y.errors.error_text();
    EXPECT_NE(text.find("rcpt_policy.endpoint: required key missing"), std::string::npos) << text;
  }
  {
    PluginYaml y;
    y.yaml = YAML::Load("{endpoint: x, domain: a@b}");
    EXPECT_FALSE(factory.create(y.node("rcpt_policy")));
    std::string text = y.errors.error_text();
    EXPECT_NE(text.find("rcpt_policy.domain: must be a non-empty domain"), std::string::npos)
        << text;
  }
}

TEST(PluginTest, HelloMatcherMatchesMailFromDomain) {
  auto l = start(std::string("modules: {transaction_matcher: {from_hello: ") +
                 HELLO_MATCHER_PLUGIN_PATH + "}}\n");
  ASSERT_EQ(l->config_error, "");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text();
  ASSERT_TRUE(l->plugins.matchers.count("from_hello"));

  PluginYaml y;
  y.yaml = YAML::Load("{domain: example.net}");
  auto matcher = l->plugins.matchers.at("from_hello")->create(y.node("matcher"));
  ASSERT_TRUE(matcher) << y.errors.error_text();
  ASSERT_TRUE(y.errors.ok()) << y.errors.error_text();

  auto yes = tx_with("alice@EXAMPLE.net", {"bob@example.com"});
  auto r = matcher->match(yes, std::nullopt);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, MatcherResult::match);
  r = matcher->match(yes, 0);  // per-rcpt mode: same answer
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, MatcherResult::match);

  auto no = tx_with("alice@example.com", {"bob@example.net"});
  r = matcher->match(no, std::nullopt);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, MatcherResult::no_match);

  r = matcher->match(tx_with("", {}), std::nullopt);  // null reverse-path
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, MatcherResult::no_match);

  r = matcher->match(TransactionMetadata{}, std::nullopt);  // no mail_from yet
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, MatcherResult::precondition_unmet);
}

TEST(PluginTest, HelloMatcherConfigErrorsNameThePath) {
  auto l = start(std::string("modules: {transaction_matcher: {from_hello: ") +
                 HELLO_MATCHER_PLUGIN_PATH + "}}\n");
  ASSERT_TRUE(l->errors.ok()) << l->errors.error_text() << l->config_error;
  PluginYaml y;
  y.yaml = YAML::Load("{domain: example.net, greeting: hi}");
  EXPECT_FALSE(l->plugins.matchers.at("from_hello")->create(y.node("policy_action[0].match")));
  std::string text = y.errors.error_text();
  EXPECT_NE(text.find("policy_action[0].match.greeting: unknown key"), std::string::npos) << text;
}

TEST(PluginTest, PolicyAndMatcherWrongKindIsReported) {
  std::string text = load_error("transaction_matcher", "m", ref(HELLO_POLICY_PLUGIN_PATH));
  EXPECT_NE(text.find("modules.transaction_matcher.m: plugin '"), std::string::npos) << text;
  EXPECT_NE(text.find("registered no transaction_matcher"), std::string::npos) << text;
  text = load_error("recipient_router_policy", "p", ref(HELLO_MATCHER_PLUGIN_PATH));
  EXPECT_NE(text.find("modules.recipient_router_policy.p: plugin '"), std::string::npos) << text;
  EXPECT_NE(text.find("registered no recipient_router_policy"), std::string::npos) << text;
}

#endif  // HELLO_POLICY_PLUGIN_PATH && HELLO_MATCHER_PLUGIN_PATH

}  // namespace
}  // namespace koukan::router::chain

#endif  // HELLO_PLUGIN_PATH
