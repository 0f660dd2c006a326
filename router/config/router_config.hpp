#pragma once
// router.yaml -> RouterConfig: parsed and validated once at start-up, then
// shared read-only (std::shared_ptr<const RouterConfig>) by everything.
//
// Schema: spec/router.md §14 (keys of the original), §10 (senders and tags),
// plus the port's additions marked "[ours]" below. A load reports every
// problem at once, each as "yaml.path: message"; unknown keys are errors,
// known-obsolete keys of the original (global.gc_interval,
// global.tx_idle_timeout, endpoint[].msa) are warnings.
//
// Filter-specific keys of chain entries are NOT checked here: each entry's
// YAML is kept for the chain engine's filter factory, which reports its
// errors under ChainEntry::path. Here we only check that `filter:` names a
// known filter and that `router` destinations name a rest_endpoint.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/log.hpp"
#include "common/base/result.hpp"

namespace koukan::router {

// Names a chain entry's `filter:` may use. The caller passes the filter
// registry's names; plugin names from modules.sync_filter are added by the
// loader.
using FilterNames = std::set<std::string, std::less<>>;

// The original's built-in filter names (spec/filters.md §0), minus the
// internal `exploder_upstream`. Lives here until the chain engine owns the
// filter registry.
const FilterNames& builtin_filter_names();

struct ExecutorConfig {
  int max_inflight = 10;
  double watchdog_timeout = 30;  // seconds
};

struct GlobalConfig {
  bool dequeue = true;
  ExecutorConfig rest;
  ExecutorConfig output;
  std::optional<std::string> mailer_daemon_mailbox;
  int rest_id_entropy = 16;  // bytes of randomness in REST ids
};

struct RestListenerConfig {
  std::string host;                     // addr[0]
  std::uint16_t port = 0;               // addr[1]; 0 = ephemeral
  std::optional<std::string> cert;      // both or neither
  std::optional<std::string> key;
  std::string session_uri;              // this replica's base URL
  std::string service_uri;              // default: session_uri
  std::uint64_t chunk_size = 1 << 20;   // server PUT buffering
  // [ours] limits (common/http ServerOptions and the create handler)
  std::uint64_t max_header_bytes = 16 * 1024;
  std::uint64_t max_body_bytes = 1ull << 30;
  std::uint64_t max_json_body = 16ull << 20;
  // [ours] create/PATCH of a transaction this replica delivers wait up to
  // this long for the output's next answer (0: answer at once, as the
  // original). docs/compat.md "REST API".
  std::uint64_t first_answer_wait_ms = 25;
};

enum class StorageKind { sqlite, postgres };

struct StorageConfig {
  std::string url;             // as written
  StorageKind kind = StorageKind::sqlite;
  // sqlite: the file path after "sqlite://" ("sqlite:///var/db/r.db" ->
  // "/var/db/r.db", "sqlite://r.db" -> "r.db" relative to the working
  // directory, "sqlite://:memory:"). postgres: a libpq URL (an SQLAlchemy
  // "postgresql+driver://" prefix is reduced to "postgresql://").
  std::string location;
  int session_refresh_interval = 30;  // seconds
  int session_ttl = 300;              // [ours] default 10 x refresh interval
  std::optional<int> gc_interval;     // unset: no GC
  int gc_ttl = 86400;
  int blob_tx_refresh_interval = 10;
  int cache_ttl = 5;
  // [ours] SQLite: threads for read-only storage calls. 0 (default): reads
  // run on the I/O thread (WAL readers never wait for the writer; a read of
  // a hot database is tens of microseconds, less than two thread hand-offs).
  // N > 0 keeps them off the I/O thread (a database much larger than the
  // page cache). PostgreSQL: ignored (its calls use the thread pool).
  int read_threads = 0;
};

// The keys a sender and a tag may both set. nullopt = key absent.
struct SenderFields {
  std::optional<std::string> output_chain;
  // retry / notification: `output_chain` -> true, explicit null -> false.
  std::optional<bool> retry;
  std::optional<bool> notification;
  std::optional<std::string> upstream_sender;
  std::optional<std::string> upstream_tag;
  std::optional<std::string> remote_host;
  std::optional<YAML::Node> smtp_meta;  // a map (private copy)
};

struct TagConfig {
  std::string name;
  SenderFields fields;
};

struct SenderConfig {
  std::string name;
  SenderFields fields;
  std::vector<TagConfig> tags;
  const TagConfig* find_tag(std::string_view tag) const;
};

// A sender with its tag applied (spec/router.md §10).
struct EffectiveSender {
  std::string name;
  std::optional<std::string> tag;  // as requested (kept even if the sender has no tags)
  std::string output_chain;        // "" = no chain
  // retry/notification: requested (`output_chain`) AND the chain has an
  // output_handler section.
  bool retry = false;
  bool notification = false;
  std::string upstream_sender;              // default: name
  std::optional<std::string> upstream_tag;  // default: tag
  std::optional<std::string> remote_host;
  std::optional<YAML::Node> smtp_meta;
};

struct RestEndpointConfig {
  std::string name;
  std::optional<std::string> endpoint;  // base URL
  std::string sender;
  std::optional<std::string> tag;
  YAML::Node options;  // a map, possibly empty (private copy; copy again before merging)
};

struct RetryParams {
  std::optional<int> max_attempts = 30;  // nullopt: unlimited
  double min_attempt_time = 60;
  double max_attempt_time = 3600;
  double backoff_factor = 1.5;
  std::optional<double> deadline = 86400;  // nullopt: none
  double bug_retry = 3600;
};

struct NotificationConfig {
  std::string sender;
  std::optional<std::string> tag;
};

struct OutputHandlerConfig {
  int downstream_timeout = 60;
  int upstream_refresh = 30;
  std::optional<RetryParams> retry_params;  // absent: no retry scheduling
  std::optional<NotificationConfig> notification;
};

struct ChainEntry {
  std::string filter;
  YAML::Node yaml;   // the whole entry (private copy), for the filter factory
  std::string path;  // "endpoint[i].chain[j]", prefix for the factory's errors
};

struct EndpointConfig {
  std::string name;
  std::optional<OutputHandlerConfig> output_handler;
  std::vector<ChainEntry> chain;  // never empty
};

// REST-side mode (rest-api.md §7.1): incremental iff the last filter is
// `exploder`.
bool is_incremental(const EndpointConfig& endpoint);

// A plugin reference "path[:symbol]" (modules.*). The symbol is split at the
// last ':' when what follows is an identifier; empty = the default symbol.
struct ModuleRef {
  std::string spec;  // as written
  std::string path;
  std::string symbol;
};

struct ModulesConfig {
  std::map<std::string, ModuleRef> sync_filter;
  std::map<std::string, ModuleRef> recipient_router_policy;
  std::map<std::string, ModuleRef> transaction_matcher;
};

// [ours] The original takes a Python logging dictConfig; the port reads
// `level` and `file` and ignores (with a warning) the dictConfig keys.
struct LoggingConfig {
  log::Level level = log::Level::info;
  std::optional<std::string> file;
};

class RouterConfig {
 public:
  GlobalConfig global;
  RestListenerConfig rest_listener;
  StorageConfig storage;
  std::vector<SenderConfig> senders;
  std::vector<RestEndpointConfig> rest_endpoints;
  std::vector<EndpointConfig> endpoints;
  ModulesConfig modules;
  LoggingConfig logging;

  const SenderConfig* find_sender(std::string_view name) const;
  const EndpointConfig* find_endpoint(std::string_view name) const;
  const RestEndpointConfig* find_rest_endpoint(std::string_view name) const;

  // Sender + optional tag -> effective sender. Unknown sender: Errc::not_found;
  // a tag the sender does not define (when it defines any): Errc::bad_request.
  Result<EffectiveSender> resolve(std::string_view sender,
                                  std::optional<std::string_view> tag) const;
  // True iff the sender's output chain exists and ends in `exploder`.
  bool is_incremental(const EffectiveSender& sender) const;
};

// Loads and validates. On failure the Error (Errc::bad_request) message is
// every error, one per line, each "yaml.path: message" (YAML syntax errors:
// "file:line:column: message"). Warnings (obsolete keys, ignored logging
// keys, ...) are appended to *warnings when it is not null, even on failure.
Result<RouterConfig> load_router_config(const std::string& path, const FilterNames& filters,
                                        std::vector<std::string>* warnings);
Result<RouterConfig> load_router_config_string(std::string_view text,
                                               const FilterNames& filters,
                                               std::vector<std::string>* warnings,
                                               std::string_view source_name = "<string>");
Result<RouterConfig> parse_router_config(const YAML::Node& root, const FilterNames& filters,
                                         std::vector<std::string>* warnings);

// The effective config (every default filled in) as YAML, for
// --print-config. Loading the output gives the same config.
std::string print_effective(const RouterConfig& config);

}  // namespace koukan::router
