#include "router/config/router_config.hpp"

#include <algorithm>
#include <cctype>
#include <limits>

#include "common/config/yaml.hpp"

namespace koukan::router {

using config::ConfigErrors;
using config::Node;

namespace {
constexpr int kIntMax = std::numeric_limits<int>::max();
constexpr double kDoubleMax = std::numeric_limits<double>::max();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();
}  // namespace

const FilterNames& builtin_filter_names() {
  static const FilterNames names = {
      "add_route",        "dkim_check",      "dkim_sign",       "dns_resolution",
      "exploder",         "message_builder", "message_parser",  "message_validation",
      "policy_action",    "received_header", "remote_host",     "rest_output",
      "router",           "spf_check",
  };
  return names;
}

bool is_incremental(const EndpointConfig& endpoint) {
  return !endpoint.chain.empty() && endpoint.chain.back().filter == "exploder";
}

const TagConfig* SenderConfig::find_tag(std::string_view tag) const {
  for (const TagConfig& t : tags) {
    if (t.name == tag) return &t;
  }
  return nullptr;
}

namespace {

template <class T>
const T* find_named(const std::vector<T>& v, std::string_view name) {
  for (const T& x : v) {
    if (x.name == name) return &x;
  }
  return nullptr;
}

}  // namespace

const SenderConfig* RouterConfig::find_sender(std::string_view name) const {
  return find_named(senders, name);
}
const EndpointConfig* RouterConfig::find_endpoint(std::string_view name) const {
  return find_named(endpoints, name);
}
const RestEndpointConfig* RouterConfig::find_rest_endpoint(std::string_view name) const {
  return find_named(rest_endpoints, name);
}

Result<EffectiveSender> RouterConfig::resolve(std::string_view name,
                                              std::optional<std::string_view> tag) const {
  const SenderConfig* s = find_sender(name);
  if (!s) return Error(Errc::not_found, fmt::format("unknown sender '{}'", name));
  const TagConfig* t = nullptr;
  if (tag && !s->tags.empty()) {
    t = s->find_tag(*tag);
    if (!t) {
      return Error(Errc::bad_request, fmt::format("sender '{}' has no tag '{}'", name, *tag));
    }
  }
  // Key-by-key overlay of the tag on the sender.
  SenderFields f = s->fields;
  if (t) {
    const SenderFields& o = t->fields;
    if (o.output_chain && !o.output_chain->empty()) f.output_chain = o.output_chain;
    if (o.retry) f.retry = o.retry;
    if (o.notification) f.notification = o.notification;
    if (o.upstream_sender) f.upstream_sender = o.upstream_sender;
    if (o.upstream_tag) f.upstream_tag = o.upstream_tag;
    if (o.remote_host) f.remote_host = o.remote_host;
    // (Never assign one YAML::Node to another: that writes through to the
    // node it refers to. Re-seat the optional instead.)
    if (o.smtp_meta) f.smtp_meta.emplace(*o.smtp_meta);
  }
  EffectiveSender e;
  e.name = s->name;
  if (tag) e.tag = std::string(*tag);
  e.output_chain = f.output_chain.value_or("");
  const EndpointConfig* ep = e.output_chain.empty() ? nullptr : find_endpoint(e.output_chain);
  bool has_oh = ep && ep->output_handler.has_value();
  e.retry = f.retry.value_or(false) && has_oh;
  e.notification = f.notification.value_or(false) && has_oh;
  e.upstream_sender = f.upstream_sender.value_or(s->name);
  e.upstream_tag = f.upstream_tag ? f.upstream_tag : e.tag;
  e.remote_host = f.remote_host;
  // A private copy: the caller may edit it (e.g. merge into a request).
  if (f.smtp_meta) e.smtp_meta.emplace(YAML::Clone(*f.smtp_meta));
  return e;
}

bool RouterConfig::is_incremental(const EffectiveSender& sender) const {
  const EndpointConfig* ep = find_endpoint(sender.output_chain);
  return ep && router::is_incremental(*ep);
}

// ---- parsing ------------------------------------------------------------------

namespace {

// A non-empty string; errors name the node.
std::optional<std::string> nonempty_string(const Node& n) {
  auto v = n.as<std::string>();
  if (v && v->empty()) {
    n.error("must not be empty");
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> required_name(const Node& parent, std::string_view key = "name") {
  Node n = parent[key];
  if (n.is_null()) {
    n.error("required key missing");
    return std::nullopt;
  }
  return nonempty_string(n);
}

ExecutorConfig parse_executor(const Node& n, int min_inflight = 1) {
  ExecutorConfig c;
  n.expect_keys({"max_inflight", "watchdog_timeout"});
  c.max_inflight = n.get_in_range<int>("max_inflight", c.max_inflight, min_inflight, kIntMax);
  c.watchdog_timeout = n.get_in_range<double>("watchdog_timeout", c.watchdog_timeout, 0.001,
                                              kDoubleMax);
  return c;
}

GlobalConfig parse_global(const Node& n) {
  GlobalConfig g;
  // gc_interval and tx_idle_timeout appear in the original's test config but
  // the original never reads them.
  n.expect_keys({"dequeue", "executor", "mailer_daemon_mailbox", "rest_id_entropy"},
                {"gc_interval", "tx_idle_timeout"});
  g.dequeue = n.get<bool>("dequeue", g.dequeue);
  Node ex = n["executor"];
  ex.expect_keys({"rest", "output"});
  g.rest = parse_executor(ex["rest"]);
  // [ours] output.max_inflight 0: this replica delivers nothing (REST only;
  // new transactions stay leased here and are not attempted).
  g.output = parse_executor(ex["output"], 0);
  g.mailer_daemon_mailbox = nonempty_string(n["mailer_daemon_mailbox"]);
  g.rest_id_entropy = n.get_in_range<int>("rest_id_entropy", g.rest_id_entropy, 1, 64);
  return g;
}

bool is_http_url(std::string_view s) {
  auto rest = [&](std::string_view scheme) {
    return s.size() > scheme.size() && s.substr(0, scheme.size()) == scheme;
  };
  return rest("http://") || rest("https://");
}

RestListenerConfig parse_rest_listener(const Node& n) {
  RestListenerConfig c;
  n.expect_keys({"addr", "cert", "key", "session_uri", "service_uri", "chunk_size",
                 "max_header_bytes", "max_body_bytes", "max_json_body", "first_answer_wait_ms"});
  Node addr = n["addr"];
  if (addr.is_null()) {
    addr.error("required key missing (expected [host, port])");
  } else if (!addr.is_list() || addr.yaml().size() != 2) {
    addr.type_error("a list [host, port]");
  } else {
    if (auto h = nonempty_string(addr.at(0))) c.host = *h;
    if (auto p = addr.at(1).as<int>()) {
      if (*p < 0 || *p > 65535) {
        addr.at(1).error("port must be between 0 and 65535");
      } else {
        c.port = static_cast<std::uint16_t>(*p);
      }
    } else if (addr.at(1).is_null()) {
      addr.at(1).type_error("a port number");
    }
  }
  c.cert = nonempty_string(n["cert"]);
  c.key = nonempty_string(n["key"]);
  if (c.cert.has_value() != c.key.has_value()) {
    (c.cert ? n["key"] : n["cert"]).error("cert and key must be given together");
  }
  Node su = n["session_uri"];
  if (auto v = n.get_required<std::string>("session_uri")) {
    if (!is_http_url(*v)) su.error("must be an http:// or https:// URL");
    c.session_uri = *v;
  }
  Node svc = n["service_uri"];
  if (auto v = svc.as<std::string>()) {
    if (!is_http_url(*v)) svc.error("must be an http:// or https:// URL");
    c.service_uri = *v;
  } else {
    c.service_uri = c.session_uri;
  }
  c.chunk_size = n.get_in_range<std::uint64_t>("chunk_size", c.chunk_size, 1, kU64Max);
  c.max_header_bytes =
      n.get_in_range<std::uint64_t>("max_header_bytes", c.max_header_bytes, 1024, kU64Max);
  c.max_body_bytes = n.get_in_range<std::uint64_t>("max_body_bytes", c.max_body_bytes, 1, kU64Max);
  c.max_json_body = n.get_in_range<std::uint64_t>("max_json_body", c.max_json_body, 1, kU64Max);
  c.first_answer_wait_ms =
      n.get_in_range<std::uint64_t>("first_answer_wait_ms", c.first_answer_wait_ms, 0, 60000);
  return c;
}

void parse_storage_url(const Node& n, StorageConfig* c) {
  const std::string& url = c->url;
  auto starts = [&](std::string_view p) { return url.rfind(p, 0) == 0; };
  if (starts("sqlite://")) {
    c->kind = StorageKind::sqlite;
    std::string path = url.substr(9);
    // SQLAlchemy's absolute form "sqlite:////abs" -> "/abs".
    while (path.size() > 1 && path[0] == '/' && path[1] == '/') path.erase(0, 1);
    if (path.empty()) n.error("sqlite URL without a file path (e.g. sqlite:///var/lib/koukan/router.db)");
    c->location = path;
    return;
  }
  std::size_t colon = url.find("://");
  std::string scheme = colon == std::string::npos ? "" : url.substr(0, colon);
  std::string base = scheme.substr(0, scheme.find('+'));
  if (base == "postgresql" || base == "postgres") {
    c->kind = StorageKind::postgres;
    c->location = "postgresql" + url.substr(colon);
    return;
  }
  n.error("unsupported storage URL (expected sqlite://PATH or postgresql://...)");
}

StorageConfig parse_storage(const Node& n) {
  StorageConfig c;
  n.expect_keys({"url", "session_refresh_interval", "session_ttl", "gc_interval", "gc_ttl",
                 "blob_tx_refresh_interval", "cache_ttl", "read_threads"});
  if (auto url = n.get_required<std::string>("url")) {
    c.url = *url;
    parse_storage_url(n["url"], &c);
  }
  c.session_refresh_interval =
      n.get_in_range<int>("session_refresh_interval", c.session_refresh_interval, 1, kIntMax);
  c.session_ttl = n.get_in_range<int>("session_ttl", 10 * c.session_refresh_interval, 1, kIntMax);
  if (c.session_ttl <= c.session_refresh_interval) {
    n["session_ttl"].error("must be greater than session_refresh_interval");
  }
  if (auto gc = n.get_optional<int>("gc_interval")) {
    if (*gc < 1) n["gc_interval"].error("must be at least 1 (null disables GC)");
    else c.gc_interval = *gc;
  }
  c.gc_ttl = n.get_in_range<int>("gc_ttl", c.gc_ttl, 0, kIntMax);
  c.blob_tx_refresh_interval =
      n.get_in_range<int>("blob_tx_refresh_interval", c.blob_tx_refresh_interval, 1, kIntMax);
  c.cache_ttl = n.get_in_range<int>("cache_ttl", c.cache_ttl, 0, kIntMax);
  c.read_threads = n.get_in_range<int>("read_threads", c.read_threads, 0, 64);
  return c;
}

// `output_chain` -> true, null -> false, absent -> nullopt.
std::optional<bool> parse_chain_option(const Node& n) {
  if (!n.present()) return std::nullopt;
  if (n.is_null()) return false;
  if (n.is_scalar() && n.yaml().Scalar() == "output_chain") return true;
  n.type_error("'output_chain' or null");
  return std::nullopt;
}

SenderFields parse_sender_fields(const Node& n) {
  SenderFields f;
  f.output_chain = n.get_optional<std::string>("output_chain");
  f.retry = parse_chain_option(n["retry"]);
  f.notification = parse_chain_option(n["notification"]);
  f.upstream_sender = nonempty_string(n["upstream_sender"]);
  f.upstream_tag = nonempty_string(n["upstream_tag"]);
  f.remote_host = nonempty_string(n["remote_host"]);
  Node meta = n["smtp_meta"];
  if (meta.expect_map()) f.smtp_meta.emplace(YAML::Clone(meta.yaml()));
  return f;
}

std::vector<SenderConfig> parse_senders(const Node& list) {
  std::vector<SenderConfig> out;
  std::set<std::string, std::less<>> names;
  for (const Node& n : list.list()) {
    // Invalid entries leave a placeholder so indexes keep matching the YAML
    // (the config is discarded anyway: an error was recorded).
    SenderConfig& s = out.emplace_back();
    if (!n.expect_map()) {
      if (n.is_null()) n.type_error("a map");
      continue;
    }
    n.expect_keys({"name", "output_chain", "retry", "notification", "upstream_sender",
                   "upstream_tag", "remote_host", "smtp_meta", "tag"});
    if (auto name = required_name(n)) {
      if (name->find('/') != std::string::npos) n["name"].error("must not contain '/'");
      if (!names.insert(*name).second) n["name"].error("duplicate sender '" + *name + "'");
      s.name = *name;
    }
    s.fields = parse_sender_fields(n);
    std::set<std::string, std::less<>> tags;
    for (const Node& tn : n["tag"].list()) {
      TagConfig& t = s.tags.emplace_back();
      if (!tn.expect_map()) {
        if (tn.is_null()) tn.type_error("a map");
        continue;
      }
      tn.expect_keys({"name", "output_chain", "retry", "notification", "upstream_sender",
                      "upstream_tag", "remote_host", "smtp_meta"});
      if (auto name = required_name(tn)) {
        if (!tags.insert(*name).second) tn["name"].error("duplicate tag '" + *name + "'");
        t.name = *name;
      }
      t.fields = parse_sender_fields(tn);
    }
  }
  return out;
}

std::vector<RestEndpointConfig> parse_rest_endpoints(const Node& list) {
  std::vector<RestEndpointConfig> out;
  std::set<std::string, std::less<>> names;
  for (const Node& n : list.list()) {
    RestEndpointConfig& r = out.emplace_back();
    if (!n.expect_map()) {
      if (n.is_null()) n.type_error("a map");
      continue;
    }
    n.expect_keys({"name", "endpoint", "sender", "tag", "options"});
    if (auto name = required_name(n)) {
      if (!names.insert(*name).second) n["name"].error("duplicate rest_endpoint '" + *name + "'");
      r.name = *name;
    }
    Node ep = n["endpoint"];
    if (auto url = ep.as<std::string>()) {
      if (!is_http_url(*url)) ep.error("must be an http:// or https:// URL");
      r.endpoint = *url;
    }
    if (auto s = required_name(n, "sender")) r.sender = *s;
    r.tag = nonempty_string(n["tag"]);
    Node opts = n["options"];
    r.options = opts.expect_map() ? YAML::Clone(opts.yaml()) : YAML::Node(YAML::NodeType::Map);
    if (r.options.IsMap()) {
      Node o = Node(r.options, opts.path(), &opts.errors());
      (void)o.get_optional<bool>("send_filter_output");
      Node rp = o["receive_parsing"];
      if (rp.present() && !rp.is_null()) rp.expect_map();
    }
  }
  return out;
}

std::optional<RetryParams> parse_retry_params(const Node& n) {
  if (!n.present()) return std::nullopt;
  if (!n.is_null() && !n.expect_map()) return std::nullopt;
  n.expect_keys({"max_attempts", "min_attempt_time", "max_attempt_time", "backoff_factor",
                 "deadline", "bug_retry"});
  RetryParams p;
  Node ma = n["max_attempts"];
  if (ma.present() && ma.is_null()) {
    p.max_attempts.reset();
  } else {
    p.max_attempts = n.get_in_range<int>("max_attempts", *p.max_attempts, 1, kIntMax);
  }
  p.min_attempt_time = n.get_in_range<double>("min_attempt_time", p.min_attempt_time, 0, kDoubleMax);
  p.max_attempt_time = n.get_in_range<double>("max_attempt_time", p.max_attempt_time, 0, kDoubleMax);
  p.backoff_factor = n.get_in_range<double>("backoff_factor", p.backoff_factor, 0, kDoubleMax);
  Node dl = n["deadline"];
  if (dl.present() && dl.is_null()) {
    p.deadline.reset();
  } else {
    p.deadline = n.get_in_range<double>("deadline", *p.deadline, 0, kDoubleMax);
  }
  p.bug_retry = n.get_in_range<double>("bug_retry", p.bug_retry, 0, kDoubleMax);
  return p;
}

std::optional<OutputHandlerConfig> parse_output_handler(const Node& n) {
  // Presence (even empty or null) of the section matters (§10, §14.6).
  if (!n.present()) return std::nullopt;
  OutputHandlerConfig oh;
  if (!n.is_null() && !n.expect_map()) return oh;
  n.expect_keys({"downstream_timeout", "upstream_refresh", "retry_params", "notification"});
  oh.downstream_timeout = n.get_in_range<int>("downstream_timeout", oh.downstream_timeout, 1, kIntMax);
  oh.upstream_refresh = n.get_in_range<int>("upstream_refresh", oh.upstream_refresh, 1, kIntMax);
  oh.retry_params = parse_retry_params(n["retry_params"]);
  Node no = n["notification"];
  if (no.expect_map()) {
    no.expect_keys({"sender", "tag"});
    NotificationConfig nc;
    if (auto s = required_name(no, "sender")) nc.sender = *s;
    nc.tag = nonempty_string(no["tag"]);
    oh.notification = std::move(nc);
  }
  return oh;
}

std::vector<EndpointConfig> parse_endpoints(const Node& list, const FilterNames& filters) {
  std::vector<EndpointConfig> out;
  std::set<std::string, std::less<>> names;
  for (const Node& n : list.list()) {
    EndpointConfig& e = out.emplace_back();
    if (!n.expect_map()) {
      if (n.is_null()) n.type_error("a map");
      continue;
    }
    // `msa` belongs to the exploder filter; the original's docs put it here.
    n.expect_keys({"name", "output_handler", "chain"}, {"msa"});
    if (auto name = required_name(n)) {
      if (!names.insert(*name).second) n["name"].error("duplicate endpoint '" + *name + "'");
      e.name = *name;
    }
    e.output_handler = parse_output_handler(n["output_handler"]);
    Node chain = n["chain"];
    if (chain.is_null()) {
      chain.error("required key missing");
    } else if (chain.expect_list() && chain.yaml().size() == 0) {
      chain.error("an output chain needs at least one filter");
    }
    for (const Node& entry : chain.list()) {
      if (!entry.expect_map()) {
        if (entry.is_null()) entry.type_error("a map with a 'filter' key");
        continue;
      }
      ChainEntry ce;
      ce.path = entry.path();
      ce.yaml = YAML::Clone(entry.yaml());
      Node f = entry["filter"];
      if (auto name = required_name(entry, "filter")) {
        ce.filter = *name;
        if (!filters.count(*name)) f.error(fmt::format("unknown filter '{}'", *name));
      }
      e.chain.push_back(std::move(ce));
    }
  }
  return out;
}

// "path[:symbol]": split at the last ':' if an identifier follows it.
ModuleRef parse_module_ref(const std::string& spec) {
  ModuleRef m{spec, spec, ""};
  std::size_t c = spec.rfind(':');
  if (c == std::string::npos || c + 1 >= spec.size()) return m;
  std::string sym = spec.substr(c + 1);
  bool ident = !std::isdigit(static_cast<unsigned char>(sym[0])) &&
               std::all_of(sym.begin(), sym.end(), [](char ch) {
                 return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
               });
  if (ident) {
    m.path = spec.substr(0, c);
    m.symbol = sym;
  }
  return m;
}

std::map<std::string, ModuleRef> parse_module_map(const Node& n) {
  std::map<std::string, ModuleRef> out;
  std::set<std::string> seen;
  for (auto& [name, v] : n.entries()) {
    if (!seen.insert(name).second) {
      v.error("duplicate key");
      continue;
    }
    if (auto spec = nonempty_string(v)) out.emplace(name, parse_module_ref(*spec));
  }
  return out;
}

ModulesConfig parse_modules(const Node& n, const FilterNames& builtin) {
  ModulesConfig m;
  n.expect_keys({"sync_filter", "recipient_router_policy", "transaction_matcher"});
  m.sync_filter = parse_module_map(n["sync_filter"]);
  m.recipient_router_policy = parse_module_map(n["recipient_router_policy"]);
  m.transaction_matcher = parse_module_map(n["transaction_matcher"]);
  for (const auto& [name, ref] : m.sync_filter) {
    if (builtin.count(name)) {
      n["sync_filter"][name].error(fmt::format("plugin name '{}' is a built-in filter", name));
    }
  }
  return m;
}

LoggingConfig parse_logging(const Node& n) {
  LoggingConfig c;
  if (!n.is_null() && !n.expect_map()) return c;
  static const std::vector<std::string_view> dict_config = {
      "version", "formatters", "filters", "handlers", "loggers", "root",
      "incremental", "disable_existing_loggers"};
  std::vector<std::string_view> known = {"level", "file"};
  known.insert(known.end(), dict_config.begin(), dict_config.end());
  n.expect_keys(known, {});
  bool warned = false;
  for (auto& [key, v] : n.entries()) {
    if (!warned && std::find(dict_config.begin(), dict_config.end(), key) != dict_config.end()) {
      v.warning("Python logging dictConfig keys are ignored; set logging.level (and logging.file)");
      warned = true;
    }
  }
  Node lv = n["level"];
  if (auto name = lv.as<std::string>()) {
    if (!log::parse_level(*name, &c.level)) {
      lv.error(fmt::format("unknown level '{}' (expected trace, debug, info, warning, error, "
                           "critical or off)", *name));
    }
  }
  c.file = nonempty_string(n["file"]);
  return c;
}

// ---- cross-references -------------------------------------------------------

void check_output_chain(const RouterConfig& c, const SenderFields& f, const Node& n) {
  if (f.output_chain && !f.output_chain->empty() && !c.find_endpoint(*f.output_chain)) {
    n["output_chain"].error(fmt::format("no endpoint named '{}'", *f.output_chain));
  }
}

void check_retry_effect(const RouterConfig& c, const EffectiveSender& e, const SenderFields& own,
                        const Node& n) {
  if (!own.retry.value_or(false) && !own.notification.value_or(false)) return;
  const EndpointConfig* ep = c.find_endpoint(e.output_chain);
  if (ep && !ep->output_handler) {
    n.warning(fmt::format("retry/notification: output chain '{}' has no output_handler "
                          "section, so transactions are oneshot", e.output_chain));
  }
}

void check_exploder_upstream(const RouterConfig& c, const EffectiveSender& e, const Node& n) {
  if (!c.is_incremental(e)) return;
  std::optional<std::string_view> up_tag;
  if (e.upstream_tag) up_tag = *e.upstream_tag;
  auto up = c.resolve(e.upstream_sender, up_tag);
  std::string what = e.upstream_tag
                         ? fmt::format("'{}' tag '{}'", e.upstream_sender, *e.upstream_tag)
                         : fmt::format("'{}'", e.upstream_sender);
  if (!up.ok()) {
    n.error(fmt::format("output chain '{}' ends in exploder but its upstream sender {} does "
                        "not resolve: {}", e.output_chain, what, up.error().message));
  } else if (c.is_incremental(*up)) {
    n.error(fmt::format("output chain '{}' ends in exploder and its upstream sender {} would "
                        "explode again (set upstream_tag/upstream_sender to a non-exploder "
                        "chain)", e.output_chain, what));
  } else if (up->output_chain.empty()) {
    n.error(fmt::format("output chain '{}' ends in exploder but its upstream sender {} has no "
                        "output_chain", e.output_chain, what));
  }
}

void check_senders(const RouterConfig& c, const Node& list) {
  for (std::size_t i = 0; i < c.senders.size() && i < list.yaml().size(); ++i) {
    const SenderConfig& s = c.senders[i];
    Node n = list.at(i);
    if (s.name.empty()) continue;
    check_output_chain(c, s.fields, n);
    auto base = c.resolve(s.name, std::nullopt);
    if (base.ok()) {
      if (base->output_chain.empty() && s.tags.empty()) {
        n.warning("sender has no output_chain; creating transactions for it will fail");
      }
      check_retry_effect(c, *base, s.fields, n);
      check_exploder_upstream(c, *base, n);
    }
    for (std::size_t j = 0; j < s.tags.size(); ++j) {
      const TagConfig& t = s.tags[j];
      Node tn = n["tag"].at(j);
      if (t.name.empty()) continue;
      check_output_chain(c, t.fields, tn);
      auto eff = c.resolve(s.name, t.name);
      if (!eff.ok()) continue;
      if (eff->output_chain.empty()) {
        tn.warning("neither the tag nor its sender has an output_chain");
      }
      check_retry_effect(c, *eff, t.fields, tn);
      check_exploder_upstream(c, *eff, tn);
    }
  }
}

// `router` filters: destination.endpoint and policy.destination.endpoint must
// name a rest_endpoint.
void check_router_destinations(const RouterConfig& c, const Node& endpoints) {
  for (std::size_t i = 0; i < c.endpoints.size(); ++i) {
    Node chain = endpoints.at(i)["chain"];
    for (std::size_t j = 0; j < chain.yaml().size(); ++j) {
      Node entry = chain.at(j);
      if (!entry.is_map()) continue;
      Node f = entry["filter"];
      if (!f.is_scalar() || f.yaml().Scalar() != "router") continue;
      for (const Node& dest : {entry["destination"], entry["policy"]["destination"]}) {
        Node ep = dest["endpoint"];
        if (!ep.is_scalar()) continue;
        const std::string& name = ep.yaml().Scalar();
        if (!c.find_rest_endpoint(name)) {
          ep.error(fmt::format("no rest_endpoint named '{}'", name));
        }
      }
    }
  }
}

void check_notifications(const RouterConfig& c, const Node& endpoints) {
  for (std::size_t i = 0; i < c.endpoints.size(); ++i) {
    const auto& oh = c.endpoints[i].output_handler;
    if (!oh || !oh->notification || oh->notification->sender.empty()) continue;
    const NotificationConfig& nc = *oh->notification;
    std::optional<std::string_view> tag;
    if (nc.tag) tag = *nc.tag;
    auto r = c.resolve(nc.sender, tag);
    Node n = endpoints.at(i)["output_handler"]["notification"];
    if (!r.ok()) {
      n.error("notification sender does not resolve: " + r.error().message);
    } else if (r->output_chain.empty() || !c.find_endpoint(r->output_chain)) {
      n.error(fmt::format("notification sender '{}' has no usable output_chain", nc.sender));
    }
  }
}

}  // namespace

Result<RouterConfig> parse_router_config(const YAML::Node& yaml, const FilterNames& filters,
                                         std::vector<std::string>* warnings) {
  ConfigErrors errs;
  Node root = Node::root(yaml, &errs);
  RouterConfig c;
  if (!root.is_map()) {
    root.type_error("a map (the router config)");
  } else {
    root.expect_keys({"global", "rest_listener", "storage", "sender", "rest_endpoint",
                      "endpoint", "modules", "logging"});
    c.modules = parse_modules(root["modules"], filters);
    FilterNames known = filters;
    for (const auto& [name, ref] : c.modules.sync_filter) known.insert(name);

    c.global = parse_global(root["global"]);
    Node rl = root["rest_listener"];
    if (rl.is_null()) {
      rl.error("required section missing (needs addr and session_uri)");
    } else {
      c.rest_listener = parse_rest_listener(rl);
    }
    Node st = root["storage"];
    if (st.is_null()) {
      st.error("required section missing (needs url)");
    } else {
      c.storage = parse_storage(st);
    }
    c.senders = parse_senders(root["sender"]);
    c.rest_endpoints = parse_rest_endpoints(root["rest_endpoint"]);
    c.endpoints = parse_endpoints(root["endpoint"], known);
    c.logging = parse_logging(root["logging"]);

    check_senders(c, root["sender"]);
    check_router_destinations(c, root["endpoint"]);
    check_notifications(c, root["endpoint"]);
  }
  if (warnings) {
    for (std::string& w : errs.warning_lines()) warnings->push_back(std::move(w));
  }
  if (!errs.ok()) return Error(Errc::bad_request, errs.error_text());
  return c;
}

Result<RouterConfig> load_router_config_string(std::string_view text, const FilterNames& filters,
                                               std::vector<std::string>* warnings,
                                               std::string_view source_name) {
  auto yaml = config::load_yaml_string(text, source_name);
  if (!yaml.ok()) return yaml.error();
  return parse_router_config(*yaml, filters, warnings);
}

Result<RouterConfig> load_router_config(const std::string& path, const FilterNames& filters,
                                        std::vector<std::string>* warnings) {
  auto yaml = config::load_yaml_file(path);
  if (!yaml.ok()) return yaml.error();
  return parse_router_config(*yaml, filters, warnings);
}

}  // namespace koukan::router
