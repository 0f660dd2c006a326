#pragma once
// gateway.yaml -> GatewayConfig (spec/gateway.md §2), parsed and validated
// once at start-up (every problem at once, each with its YAML path; unknown
// keys are errors). Keys and defaults are the original's; "[ours]" marks
// additions.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/base/log.hpp"
#include "common/base/result.hpp"

namespace koukan::gateway {

struct ExecutorConfig {
  int max_inflight = 10;        // accepted; the gateway runs on coroutines
  double watchdog_timeout = 3600;
};

// REST listener the router talks to (outbound transactions), §2.2.
struct RestListenerConfig {
  std::string host;
  std::uint16_t port = 0;
  std::optional<std::string> cert, key;
  std::string session_uri;          // base URL of this replica (required)
  int rest_id_entropy = 16;
  std::uint64_t chunk_size = 1 << 20;  // body PUT re-chunking
  double gc_interval = 5;
  double gc_tx_ttl = 600;
  double gc_done_ttl = 10;
  // [ours] HTTP limits
  std::uint64_t max_body_bytes = 1ull << 30;
  std::uint64_t max_json_body = 16ull << 20;
};

// smtp_output.hosts.<tag>, §2.3
struct SmtpHostConfig {
  std::string ehlo_host;
  double timeout = 3300;
  bool lmtp = false;             // protocol: lmtp
  bool enable_bdat = false;
  std::uint64_t chunk_size = 65536;
  bool starttls = true;          // [ours] opportunistic STARTTLS (default on, as the original)
  bool verify_tls = false;       // [ours] verify the server certificate
};

struct SmtpOutputConfig {
  bool use_system_smtplib = false;  // accepted, ignored (always streaming)
  std::map<std::string, SmtpHostConfig> hosts;
};

// smtp_listener.services[], §2.4
struct SmtpServiceConfig {
  std::string host;
  std::uint16_t port = 0;
  std::string endpoint;  // rest_output name
  std::string sender;
  std::string tag;
  double rcpt_timeout = 40;
  double data_timeout = 310;
  std::optional<std::string> cert, key;
  bool smtps = false;
  std::optional<std::string> auth_secrets;
  std::optional<double> proxy_protocol_timeout;  // accepted; PROXY protocol not implemented (warning)
  bool enable_bdat = true;       // default on here (the original needed a fork)
  std::uint64_t chunk_size = 1 << 20;
  // [ours]
  std::string hostname;          // greeting/EHLO name; default: the machine's hostname
  std::uint64_t max_message_size = 32u << 20;
  int max_recipients = 100;
  double idle_timeout = 300;
  double mail_timeout = 10;      // the original's hard-coded MAIL wait
};

// rest_output[], §2.5
struct RestOutputConfig {
  std::string name;
  std::string endpoint;          // router create URL
  bool verify = true;
  std::optional<std::string> ca_file;  // verify given as a path
  double rcpt_timeout = 30;      // envelope steps (MAIL, RCPT)
  double data_timeout = 60;      // per body PUT
  std::uint64_t chunk_size = 65536;  // body PUT piece
  double refresh_interval = 30;  // heartbeat / flush period
  std::optional<double> data_response_timeout;  // [ours] wait for the data response; default max(rcpt_timeout, 300)
};

struct LoggingConfig {
  log::Level level = log::Level::info;
  std::optional<std::string> file;
};

struct GatewayConfig {
  ExecutorConfig executor;
  RestListenerConfig rest_listener;
  SmtpOutputConfig smtp_output;
  std::vector<SmtpServiceConfig> services;
  std::vector<RestOutputConfig> rest_outputs;
  LoggingConfig logging;

  const RestOutputConfig* find_rest_output(std::string_view name) const;
};

Result<GatewayConfig> load_gateway_config(const std::string& path,
                                          std::vector<std::string>* warnings);
Result<GatewayConfig> load_gateway_config_string(std::string_view text,
                                                 std::vector<std::string>* warnings,
                                                 std::string_view source = "<string>");

}  // namespace koukan::gateway
