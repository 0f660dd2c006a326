// print_effective: the effective RouterConfig as YAML (--print-config).
#include "router/config/router_config.hpp"

namespace koukan::router {

namespace {

void level_name(YAML::Emitter& out, log::Level l) {
  switch (l) {
    case log::Level::trace: out << "trace"; return;
    case log::Level::debug: out << "debug"; return;
    case log::Level::info: out << "info"; return;
    case log::Level::warn: out << "warning"; return;
    case log::Level::error: out << "error"; return;
    case log::Level::critical: out << "critical"; return;
    case log::Level::off: out << "off"; return;
  }
  out << "info";
}

template <class T>
void kv(YAML::Emitter& out, const char* key, const T& value) {
  out << YAML::Key << key << YAML::Value << value;
}

template <class T>
void kv_opt(YAML::Emitter& out, const char* key, const std::optional<T>& value) {
  out << YAML::Key << key << YAML::Value;
  if (value) out << *value;
  else out << YAML::Null;
}

void executor(YAML::Emitter& out, const char* key, const ExecutorConfig& e) {
  out << YAML::Key << key << YAML::Value << YAML::BeginMap;
  kv(out, "max_inflight", e.max_inflight);
  kv(out, "watchdog_timeout", e.watchdog_timeout);
  out << YAML::EndMap;
}

void chain_option(YAML::Emitter& out, const char* key, const std::optional<bool>& v) {
  if (!v) return;
  out << YAML::Key << key << YAML::Value;
  if (*v) out << "output_chain";
  else out << YAML::Null;
}

void sender_fields(YAML::Emitter& out, const SenderFields& f) {
  if (f.output_chain) kv(out, "output_chain", *f.output_chain);
  chain_option(out, "retry", f.retry);
  chain_option(out, "notification", f.notification);
  if (f.upstream_sender) kv(out, "upstream_sender", *f.upstream_sender);
  if (f.upstream_tag) kv(out, "upstream_tag", *f.upstream_tag);
  if (f.remote_host) kv(out, "remote_host", *f.remote_host);
  if (f.smtp_meta) kv(out, "smtp_meta", *f.smtp_meta);
}

// Empty maps print as "{}" on the key's line, however they were built.
YAML::Node flow_if_empty(const YAML::Node& n) {
  YAML::Node c = YAML::Clone(n);
  if (c.size() == 0) c.SetStyle(YAML::EmitterStyle::Flow);
  return c;
}

void modules(YAML::Emitter& out, const char* key, const std::map<std::string, ModuleRef>& m) {
  out << YAML::Key << key << YAML::Value;
  if (m.empty()) out << YAML::Flow;
  out << YAML::BeginMap;
  for (const auto& [name, ref] : m) kv(out, name.c_str(), ref.spec);
  out << YAML::EndMap;
}

}  // namespace

std::string print_effective(const RouterConfig& c) {
  YAML::Emitter out;
  out << YAML::BeginMap;

  out << YAML::Key << "global" << YAML::Value << YAML::BeginMap;
  kv(out, "dequeue", c.global.dequeue);
  out << YAML::Key << "executor" << YAML::Value << YAML::BeginMap;
  executor(out, "rest", c.global.rest);
  executor(out, "output", c.global.output);
  out << YAML::EndMap;
  kv_opt(out, "mailer_daemon_mailbox", c.global.mailer_daemon_mailbox);
  kv(out, "rest_id_entropy", c.global.rest_id_entropy);
  out << YAML::EndMap;

  const RestListenerConfig& rl = c.rest_listener;
  out << YAML::Key << "rest_listener" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "addr" << YAML::Value << YAML::Flow << YAML::BeginSeq << rl.host
      << static_cast<int>(rl.port) << YAML::EndSeq;
  kv_opt(out, "cert", rl.cert);
  kv_opt(out, "key", rl.key);
  kv(out, "session_uri", rl.session_uri);
  kv(out, "service_uri", rl.service_uri);
  kv(out, "chunk_size", rl.chunk_size);
  kv(out, "max_header_bytes", rl.max_header_bytes);
  kv(out, "max_body_bytes", rl.max_body_bytes);
  kv(out, "max_json_body", rl.max_json_body);
  kv(out, "first_answer_wait_ms", rl.first_answer_wait_ms);
  out << YAML::EndMap;

  const StorageConfig& st = c.storage;
  out << YAML::Key << "storage" << YAML::Value << YAML::BeginMap;
  kv(out, "url", st.url);
  kv(out, "session_refresh_interval", st.session_refresh_interval);
  kv(out, "session_ttl", st.session_ttl);
  kv_opt(out, "gc_interval", st.gc_interval);
  kv(out, "gc_ttl", st.gc_ttl);
  kv(out, "blob_tx_refresh_interval", st.blob_tx_refresh_interval);
  kv(out, "cache_ttl", st.cache_ttl);
  kv(out, "read_threads", st.read_threads);
  out << YAML::EndMap;

  out << YAML::Key << "sender" << YAML::Value << YAML::BeginSeq;
  for (const SenderConfig& s : c.senders) {
    out << YAML::BeginMap;
    kv(out, "name", s.name);
    sender_fields(out, s.fields);
    if (!s.tags.empty()) {
      out << YAML::Key << "tag" << YAML::Value << YAML::BeginSeq;
      for (const TagConfig& t : s.tags) {
        out << YAML::BeginMap;
        kv(out, "name", t.name);
        sender_fields(out, t.fields);
        out << YAML::EndMap;
      }
      out << YAML::EndSeq;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "rest_endpoint" << YAML::Value << YAML::BeginSeq;
  for (const RestEndpointConfig& r : c.rest_endpoints) {
    out << YAML::BeginMap;
    kv(out, "name", r.name);
    kv_opt(out, "endpoint", r.endpoint);
    kv(out, "sender", r.sender);
    kv_opt(out, "tag", r.tag);
    kv(out, "options", flow_if_empty(r.options));
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "endpoint" << YAML::Value << YAML::BeginSeq;
  for (const EndpointConfig& e : c.endpoints) {
    out << YAML::BeginMap;
    kv(out, "name", e.name);
    if (e.output_handler) {
      const OutputHandlerConfig& oh = *e.output_handler;
      out << YAML::Key << "output_handler" << YAML::Value << YAML::BeginMap;
      kv(out, "downstream_timeout", oh.downstream_timeout);
      kv(out, "upstream_refresh", oh.upstream_refresh);
      if (oh.retry_params) {
        const RetryParams& p = *oh.retry_params;
        out << YAML::Key << "retry_params" << YAML::Value << YAML::BeginMap;
        kv_opt(out, "max_attempts", p.max_attempts);
        kv(out, "min_attempt_time", p.min_attempt_time);
        kv(out, "max_attempt_time", p.max_attempt_time);
        kv(out, "backoff_factor", p.backoff_factor);
        kv_opt(out, "deadline", p.deadline);
        kv(out, "bug_retry", p.bug_retry);
        out << YAML::EndMap;
      }
      if (oh.notification) {
        out << YAML::Key << "notification" << YAML::Value << YAML::BeginMap;
        kv(out, "sender", oh.notification->sender);
        kv_opt(out, "tag", oh.notification->tag);
        out << YAML::EndMap;
      }
      out << YAML::EndMap;
    }
    out << YAML::Key << "chain" << YAML::Value << YAML::BeginSeq;
    for (const ChainEntry& ce : e.chain) out << ce.yaml;
    out << YAML::EndSeq;
    out << YAML::EndMap;
  }
  out << YAML::EndSeq;

  out << YAML::Key << "modules" << YAML::Value << YAML::BeginMap;
  modules(out, "sync_filter", c.modules.sync_filter);
  modules(out, "recipient_router_policy", c.modules.recipient_router_policy);
  modules(out, "transaction_matcher", c.modules.transaction_matcher);
  out << YAML::EndMap;

  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "level" << YAML::Value;
  level_name(out, c.logging.level);
  kv_opt(out, "file", c.logging.file);
  out << YAML::EndMap;

  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace koukan::router
