#include "gateway/config/gateway_config.hpp"

#include <unistd.h>

#include <algorithm>
#include <limits>

#include <fmt/core.h>

#include "common/config/yaml.hpp"

namespace koukan::gateway {

using config::Node;

namespace {

constexpr double kMaxSeconds = 30 * 86400.0;

std::optional<std::string> nonempty(const Node& n) {
  auto v = n.as<std::string>();
  if (v && v->empty()) {
    n.error("must not be empty");
    return std::nullopt;
  }
  return v;
}

bool is_http_url(std::string_view s) {
  return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0;
}

// addr: [host, port]; host "" = all interfaces.
void parse_addr(const Node& addr, std::string& host, std::uint16_t& port) {
  if (addr.is_null()) {
    addr.error("required key missing (expected [host, port])");
    return;
  }
  if (!addr.is_list() || addr.yaml().size() != 2) {
    addr.type_error("a list [host, port]");
    return;
  }
  if (auto h = addr.at(0).as<std::string>()) host = h->empty() ? "0.0.0.0" : *h;
  if (auto p = addr.at(1).as<int>()) {
    if (*p < 0 || *p > 65535) addr.at(1).error("port must be between 0 and 65535");
    else port = static_cast<std::uint16_t>(*p);
  } else if (addr.at(1).is_null()) {
    addr.at(1).type_error("a port number");
  }
}

void parse_cert_key(const Node& n, std::optional<std::string>& cert, std::optional<std::string>& key) {
  cert = nonempty(n["cert"]);
  key = nonempty(n["key"]);
  if (cert.has_value() != key.has_value()) n.error("cert and key must be given together");
}

std::string machine_hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

ExecutorConfig parse_executor(const Node& n) {
  ExecutorConfig c;
  n.expect_keys({"max_inflight", "watchdog_timeout"});
  c.max_inflight = n.get_in_range<int>("max_inflight", c.max_inflight, 1, std::numeric_limits<int>::max());
  c.watchdog_timeout = n.get_in_range<double>("watchdog_timeout", c.watchdog_timeout, 0.001, kMaxSeconds);
  return c;
}

RestListenerConfig parse_rest_listener(const Node& n) {
  RestListenerConfig c;
  if (n.is_null()) {
    n.error("required section missing (needs addr and session_uri)");
    return c;
  }
  if (!n.expect_map()) return c;
  n.expect_keys({"addr", "cert", "key", "session_uri", "rest_id_entropy", "chunk_size",
                 "gc_interval", "gc_tx_ttl", "gc_done_ttl", "max_body_bytes", "max_json_body"},
                {"gc_blob_ttl", "service_uri"});
  parse_addr(n["addr"], c.host, c.port);
  parse_cert_key(n, c.cert, c.key);
  if (auto v = n.get_required<std::string>("session_uri")) {
    if (!is_http_url(*v)) n["session_uri"].error("must be an http:// or https:// URL");
    c.session_uri = *v;
    while (!c.session_uri.empty() && c.session_uri.back() == '/') c.session_uri.pop_back();
  }
  c.rest_id_entropy = n.get_in_range<int>("rest_id_entropy", c.rest_id_entropy, 1, 64);
  c.chunk_size = n.get_in_range<std::uint64_t>("chunk_size", c.chunk_size, 1, 1ull << 30);
  c.gc_interval = n.get_in_range<double>("gc_interval", c.gc_interval, 0.01, kMaxSeconds);
  c.gc_tx_ttl = n.get_in_range<double>("gc_tx_ttl", c.gc_tx_ttl, 0.01, kMaxSeconds);
  c.gc_done_ttl = n.get_in_range<double>("gc_done_ttl", c.gc_done_ttl, 0.0, kMaxSeconds);
  c.max_body_bytes = n.get_in_range<std::uint64_t>("max_body_bytes", c.max_body_bytes, 1, 1ull << 40);
  c.max_json_body = n.get_in_range<std::uint64_t>("max_json_body", c.max_json_body, 1, 1ull << 30);
  return c;
}

SmtpOutputConfig parse_smtp_output(const Node& n) {
  SmtpOutputConfig c;
  if (n.is_null()) return c;
  if (!n.expect_map()) return c;
  n.expect_keys({"use_system_smtplib", "hosts"});
  c.use_system_smtplib = n.get<bool>("use_system_smtplib", false);
  if (c.use_system_smtplib)
    n["use_system_smtplib"].warning("ignored: the gateway always streams (no whole-message mode)");
  Node hosts = n["hosts"];
  if (hosts.is_null() || !hosts.expect_map()) return c;
  for (auto& [tag, h] : hosts.entries()) {
    if (!h.expect_map()) continue;
    h.expect_keys({"ehlo_host", "timeout", "protocol", "enable_bdat", "chunk_size", "starttls",
                   "verify_tls"});
    SmtpHostConfig hc;
    if (auto e = h.get_required<std::string>("ehlo_host")) hc.ehlo_host = *e;
    hc.timeout = h.get_in_range<double>("timeout", hc.timeout, 0.01, kMaxSeconds);
    if (auto p = h["protocol"].as<std::string>()) {
      if (*p == "lmtp") hc.lmtp = true;
      else if (*p != "smtp") h["protocol"].error("must be smtp or lmtp");
    }
    hc.enable_bdat = h.get<bool>("enable_bdat", hc.enable_bdat);
    hc.chunk_size = h.get_in_range<std::uint64_t>("chunk_size", hc.chunk_size, 1, 1ull << 30);
    hc.starttls = h.get<bool>("starttls", hc.starttls);
    hc.verify_tls = h.get<bool>("verify_tls", hc.verify_tls);
    c.hosts.emplace(tag, std::move(hc));
  }
  return c;
}

std::vector<SmtpServiceConfig> parse_services(const Node& listener) {
  std::vector<SmtpServiceConfig> out;
  if (listener.is_null()) return out;
  if (!listener.expect_map()) return out;
  listener.expect_keys({"services"});
  const std::string host = machine_hostname();
  for (const Node& n : listener["services"].list()) {
    if (!n.expect_map()) continue;
    n.expect_keys({"addr", "endpoint", "sender", "tag", "rcpt_timeout", "data_timeout", "cert", "key",
                   "smtps", "auth_secrets", "proxy_protocol_timeout", "enable_bdat", "chunk_size",
                   "hostname", "max_message_size", "max_recipients", "idle_timeout",
                   "mail_timeout"});
    SmtpServiceConfig s;
    s.hostname = host;
    parse_addr(n["addr"], s.host, s.port);
    if (auto v = n.get_required<std::string>("endpoint")) s.endpoint = *v;
    if (auto v = n.get_required<std::string>("sender")) s.sender = *v;
    if (auto v = n.get_required<std::string>("tag")) s.tag = *v;
    s.rcpt_timeout = n.get_in_range<double>("rcpt_timeout", s.rcpt_timeout, 0.01, kMaxSeconds);
    s.data_timeout = n.get_in_range<double>("data_timeout", s.data_timeout, 0.01, kMaxSeconds);
    parse_cert_key(n, s.cert, s.key);
    s.smtps = n.get<bool>("smtps", false);
    if (s.smtps && !s.cert) n["smtps"].error("smtps needs cert and key (the original silently served plain SMTP)");
    s.auth_secrets = nonempty(n["auth_secrets"]);
    if (s.auth_secrets && !s.cert)
      n["auth_secrets"].warning("AUTH is only offered over TLS and this listener has no cert/key");
    if (n["proxy_protocol_timeout"].present()) {
      s.proxy_protocol_timeout = n["proxy_protocol_timeout"].as<double>();
      n["proxy_protocol_timeout"].error("the PROXY protocol is not supported yet");
    }
    s.enable_bdat = n.get<bool>("enable_bdat", s.enable_bdat);
    s.chunk_size = n.get_in_range<std::uint64_t>("chunk_size", s.chunk_size, 1024, 1ull << 30);
    if (auto h = nonempty(n["hostname"])) s.hostname = *h;
    s.max_message_size = n.get_in_range<std::uint64_t>("max_message_size", s.max_message_size, 1, 1ull << 40);
    s.max_recipients = n.get_in_range<int>("max_recipients", s.max_recipients, 1, 100000);
    s.idle_timeout = n.get_in_range<double>("idle_timeout", s.idle_timeout, 1, kMaxSeconds);
    s.mail_timeout = n.get_in_range<double>("mail_timeout", s.mail_timeout, 0.01, kMaxSeconds);
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<RestOutputConfig> parse_rest_outputs(const Node& list) {
  std::vector<RestOutputConfig> out;
  for (const Node& n : list.list()) {
    if (!n.expect_map()) continue;
    n.expect_keys({"name", "endpoint", "verify", "rcpt_timeout", "data_timeout", "chunk_size",
                   "refresh_interval", "data_response_timeout"});
    RestOutputConfig r;
    if (auto v = n.get_required<std::string>("name")) r.name = *v;
    if (auto v = n.get_required<std::string>("endpoint")) {
      if (!is_http_url(*v)) n["endpoint"].error("must be an http:// or https:// URL");
      r.endpoint = *v;
    }
    Node verify = n["verify"];
    if (!verify.is_null()) {
      if (verify.yaml().IsScalar() && (verify.yaml().Scalar() == "true" || verify.yaml().Scalar() == "false")) {
        r.verify = verify.as<bool>().value_or(true);
      } else if (auto path = nonempty(verify)) {
        r.ca_file = *path;
      }
    }
    r.rcpt_timeout = n.get_in_range<double>("rcpt_timeout", r.rcpt_timeout, 0.01, kMaxSeconds);
    r.data_timeout = n.get_in_range<double>("data_timeout", r.data_timeout, 0.01, kMaxSeconds);
    r.chunk_size = n.get_in_range<std::uint64_t>("chunk_size", r.chunk_size, 1024, 1ull << 30);
    r.refresh_interval = n.get_in_range<double>("refresh_interval", r.refresh_interval, 0.01, kMaxSeconds);
    if (n["data_response_timeout"].present())
      r.data_response_timeout = n.get_in_range<double>("data_response_timeout", 300, 0.01, kMaxSeconds);
    out.push_back(std::move(r));
  }
  return out;
}

LoggingConfig parse_logging(const Node& n) {
  LoggingConfig c;
  if (n.is_null() || !n.expect_map()) return c;
  static const std::vector<std::string_view> dict_config = {
      "version", "formatters", "filters", "handlers", "loggers", "root",
      "incremental", "disable_existing_loggers"};
  std::vector<std::string_view> known = {"level", "file"};
  known.insert(known.end(), dict_config.begin(), dict_config.end());
  n.expect_keys(known, {});
  for (auto& [key, v] : n.entries()) {
    if (std::find(dict_config.begin(), dict_config.end(), key) != dict_config.end()) {
      v.warning("Python logging dictConfig keys are ignored; set logging.level (and logging.file)");
      break;
    }
  }
  if (auto name = n["level"].as<std::string>()) {
    if (!log::parse_level(*name, &c.level)) n["level"].error(fmt::format("unknown level '{}'", *name));
  }
  c.file = nonempty(n["file"]);
  return c;
}

Result<GatewayConfig> parse(const YAML::Node& yaml, std::vector<std::string>* warnings) {
  config::ConfigErrors errs;
  Node root = Node::root(yaml, &errs);
  GatewayConfig c;
  if (root.expect_map()) {
    root.expect_keys({"global", "rest_listener", "smtp_output", "smtp_listener", "rest_output",
                      "logging"});
    Node g = root["global"];
    if (!g.is_null() && g.expect_map()) {
      g.expect_keys({"executor"});
      c.executor = parse_executor(g["executor"]);
    }
    c.rest_listener = parse_rest_listener(root["rest_listener"]);
    c.smtp_output = parse_smtp_output(root["smtp_output"]);
    c.services = parse_services(root["smtp_listener"]);
    c.rest_outputs = parse_rest_outputs(root["rest_output"]);
    c.logging = parse_logging(root["logging"]);
    Node list = root["smtp_listener"]["services"];
    for (std::size_t i = 0; i < c.services.size(); ++i) {
      if (!c.services[i].endpoint.empty() && !c.find_rest_output(c.services[i].endpoint))
        list.at(i)["endpoint"].error(fmt::format("no rest_output named '{}'", c.services[i].endpoint));
    }
  }
  if (warnings)
    for (std::string& w : errs.warning_lines()) warnings->push_back(std::move(w));
  if (!errs.ok()) return Error(Errc::bad_request, errs.error_text());
  return c;
}

}  // namespace

const RestOutputConfig* GatewayConfig::find_rest_output(std::string_view name) const {
  for (const auto& r : rest_outputs)
    if (r.name == name) return &r;
  return nullptr;
}

Result<GatewayConfig> load_gateway_config(const std::string& path, std::vector<std::string>* warnings) {
  auto yaml = config::load_yaml_file(path);
  if (!yaml.ok()) return yaml.error();
  return parse(*yaml, warnings);
}

Result<GatewayConfig> load_gateway_config_string(std::string_view text,
                                                 std::vector<std::string>* warnings,
                                                 std::string_view source) {
  auto yaml = config::load_yaml_string(text, source);
  if (!yaml.ok()) return yaml.error();
  return parse(*yaml, warnings);
}

}  // namespace koukan::gateway
