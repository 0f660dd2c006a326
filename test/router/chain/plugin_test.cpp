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

}  // namespace
}  // namespace koukan::router::chain

#endif  // HELLO_PLUGIN_PATH
