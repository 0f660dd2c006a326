#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "gateway/config/gateway_config.hpp"

namespace koukan::gateway {
namespace {

const char* kGood = R"(
global:
  executor: {max_inflight: 100, watchdog_timeout: 60}
rest_listener:
  addr: ["localhost", 8001]
  session_uri: http://localhost:8001/
  gc_tx_ttl: 300
smtp_output:
  hosts:
    outbound:
      ehlo_host: localhost
      enable_bdat: true
    local:
      ehlo_host: gw.example
      protocol: lmtp
smtp_listener:
  services:
  - addr: ["localhost", 1025]
    endpoint: mx
    sender: ingress
    tag: smtp-mx
  - addr: ["", 1587]
    endpoint: msa
    sender: submission
    tag: smtp-msa
    rcpt_timeout: 15
rest_output:
- name: mx
  endpoint: http://localhost:8000/senders/ingress/transactions
  rcpt_timeout: 300
  data_timeout: 300
  chunk_size: 1048576
  refresh_interval: 5
- name: msa
  endpoint: http://localhost:8000/senders/submission/transactions
  verify: false
logging:
  level: debug
)";

TEST(GatewayConfig, ParsesTheLocalTestShape) {
  std::vector<std::string> warnings;
  auto c = load_gateway_config_string(kGood, &warnings);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->executor.max_inflight, 100);
  EXPECT_EQ(c->rest_listener.port, 8001);
  EXPECT_EQ(c->rest_listener.session_uri, "http://localhost:8001");
  EXPECT_EQ(c->rest_listener.gc_tx_ttl, 300);
  EXPECT_EQ(c->rest_listener.gc_done_ttl, 10);
  ASSERT_EQ(c->smtp_output.hosts.size(), 2u);
  EXPECT_TRUE(c->smtp_output.hosts.at("outbound").enable_bdat);
  EXPECT_TRUE(c->smtp_output.hosts.at("local").lmtp);
  EXPECT_EQ(c->smtp_output.hosts.at("local").chunk_size, 65536u);
  ASSERT_EQ(c->services.size(), 2u);
  EXPECT_EQ(c->services[0].port, 1025);
  EXPECT_EQ(c->services[0].rcpt_timeout, 40);
  EXPECT_EQ(c->services[1].host, "0.0.0.0");
  EXPECT_EQ(c->services[1].rcpt_timeout, 15);
  EXPECT_EQ(c->services[1].tag, "smtp-msa");
  ASSERT_EQ(c->rest_outputs.size(), 2u);
  EXPECT_EQ(c->rest_outputs[0].rcpt_timeout, 300);
  EXPECT_EQ(c->rest_outputs[0].chunk_size, 1048576u);
  EXPECT_FALSE(c->rest_outputs[1].verify);
  EXPECT_EQ(c->find_rest_output("msa"), &c->rest_outputs[1]);
  EXPECT_EQ(c->logging.level, log::Level::debug);
}

TEST(GatewayConfig, ReportsEveryErrorWithItsPath) {
  auto c = load_gateway_config_string(R"(
rest_listener:
  addr: ["localhost", 99999]
  bogus: 1
smtp_output:
  hosts:
    outbound: {timeout: 5}
smtp_listener:
  services:
  - addr: ["", 1465]
    endpoint: nowhere
    sender: s
    tag: t
    smtps: true
rest_output:
- name: mx
  endpoint: ftp://x
)", nullptr);
  ASSERT_FALSE(c.ok());
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("rest_listener.addr[1]"), std::string::npos) << m;
  EXPECT_NE(m.find("rest_listener.bogus"), std::string::npos) << m;
  EXPECT_NE(m.find("rest_listener.session_uri: required key missing"), std::string::npos) << m;
  EXPECT_NE(m.find("smtp_output.hosts.outbound.ehlo_host: required key missing"), std::string::npos) << m;
  EXPECT_NE(m.find("smtp_listener.services[0].smtps"), std::string::npos) << m;
  EXPECT_NE(m.find("smtp_listener.services[0].endpoint: no rest_output named 'nowhere'"),
            std::string::npos) << m;
  EXPECT_NE(m.find("rest_output[0].endpoint"), std::string::npos) << m;
}

TEST(GatewayConfig, VerifyMayBeACaFile) {
  auto c = load_gateway_config_string(R"(
rest_listener: {addr: ["127.0.0.1", 0], session_uri: "http://127.0.0.1:1"}
rest_output:
- {name: a, endpoint: "https://r/senders/x/transactions", verify: /etc/ssl/ca.pem}
)", nullptr);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->rest_outputs[0].verify);
  EXPECT_EQ(c->rest_outputs[0].ca_file, "/etc/ssl/ca.pem");
}

TEST(GatewayConfig, OriginalSampleIsReadAndItsPlainSmtpsRefused) {
  // test/gateway/config/<this file> -> repository root -> ../shared
  const std::filesystem::path root =
      std::filesystem::path(__FILE__).parent_path().parent_path().parent_path().parent_path();
  const std::string path = (root / ".." / "shared" / "koukan-testdata" / "gateway.yaml").string();
  if (!std::ifstream(path)) GTEST_SKIP() << "original sample config not present: " << path;
  std::vector<std::string> warnings;
  auto c = load_gateway_config(path, &warnings);
  // Its port-1465 listener is smtps without cert/key, which the original
  // silently served as plain SMTP: the one error.
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().message.find("\n"), std::string::npos) << c.error().message;
  EXPECT_NE(c.error().message.find("smtp_listener.services[2].smtps"), std::string::npos)
      << c.error().message;
  bool dict_warning = false;
  for (const auto& w : warnings) dict_warning |= w.find("dictConfig") != std::string::npos;
  EXPECT_TRUE(dict_warning);
}

}  // namespace
}  // namespace koukan::gateway
