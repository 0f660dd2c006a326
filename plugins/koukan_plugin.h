/* Koukan C++ plugin ABI (C, stable across compilers and standard libraries).
 *
 * A plugin is a shared object named in router.yaml:
 *
 *   modules:
 *     sync_filter:             { hello: /usr/lib/koukan/hello_filter.so }
 *     recipient_router_policy: { hello: /usr/lib/koukan/hello_policy.so }
 *     transaction_matcher:     { match_hello: "/usr/lib/koukan/hello.so:my_register" }
 *
 * For each entry the router dlopen()s the file and calls ONE exported
 * function, `koukan_plugin_register` unless the entry names another symbol
 * after a ':':
 *
 *   int koukan_plugin_register(KoukanPluginHost* host);
 *
 * It must first call koukan_plugin_check_abi(host) (below) and return its
 * result if non-zero; then register what it provides with
 * host->register_filter / register_policy / register_matcher. The object is
 * registered under the modules key (`hello` above); only the kind matching
 * the modules section is used, and the entry fails if the plugin registers
 * none of that kind. Return KOUKAN_PLUGIN_OK or an error code (a message can
 * be given with host->set_error). The host pointer is valid only during the
 * call, but the FUNCTIONS in it stay valid for the life of the process: copy
 * the struct (`static KoukanPluginHost api; api = *host;`) to call them from
 * create / on_update later (module_key and host_data then mean nothing).
 * Everything a plugin registers must stay valid while the library is loaded
 * (the router keeps it loaded as long as an object from it exists).
 *
 * Config: a factory (`create`) reads the chain entry / policy / matcher yaml
 * through a KoukanConfig handle and the host's config_* functions; unknown
 * keys and bad values are reported through the host, with the yaml path, and
 * fail the router's start-up. create() returning NULL with no error reported
 * means "disabled by config" (filters only: the chain leaves it out).
 *
 * Transactions cross the ABI as JSON text in the router's in-process form
 * (the REST transaction JSON plus every field, docs/chain.md).
 *
 * Threads: calls happen on the router's I/O thread. A plugin must not block
 * (no network or disk I/O) in on_update / route / match.
 *
 * Strings passed to the plugin are valid for the call only; strings the
 * plugin passes to the host are copied by the host.
 */
#ifndef KOUKAN_PLUGIN_H
#define KOUKAN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of this header. */
#define KOUKAN_PLUGIN_ABI_VERSION 1u
#define KOUKAN_PLUGIN_REGISTER_SYMBOL "koukan_plugin_register"

enum {
  KOUKAN_PLUGIN_OK = 0,
  KOUKAN_PLUGIN_ERROR = 1,        /* see host->set_error / the reported errors */
  KOUKAN_PLUGIN_ABI_MISMATCH = 2, /* from koukan_plugin_check_abi */
};

typedef struct KoukanPluginHost KoukanPluginHost;
typedef struct KoukanConfig KoukanConfig;         /* opaque: yaml being read */
typedef struct KoukanFilterCall KoukanFilterCall; /* opaque: one filter call */
typedef struct KoukanRouteResult KoukanRouteResult; /* opaque: one route call */

/* ---- sync filter (plain filter, router.md §9.1) ------------------------- */
typedef struct KoukanFilterOps {
  uint32_t struct_size; /* sizeof(KoukanFilterOps) */
  /* Builds the immutable filter for one chain entry; `plugin_data` is what
   * was passed to register_filter. NULL: error reported or disabled. */
  void* (*create)(void* plugin_data, const KoukanConfig* config);
  /* One call per chain pass: read host->call_tx_json / call_delta_json;
   * add to the tx with host->call_add_to_tx (visible to the rest of the
   * chain) and/or host->call_set_result (merged after the rest of the chain
   * returns). Return KOUKAN_PLUGIN_OK, or an error (message via
   * host->call_error) which fails the pass. */
  int (*on_update)(const void* filter, KoukanFilterCall* call);
  void (*destroy)(void* filter);
} KoukanFilterOps;

/* ---- recipient router policy [not yet consumed: the `router` filter that
 * uses policies comes later; the router loads and validates them] -------- */
typedef struct KoukanPolicyOps {
  uint32_t struct_size;
  void* (*create)(void* plugin_data, const KoukanConfig* config);
  /* Routes rcpt `rcpt_index` of `tx_json`: report a destination with
   * host->route_set_destination, an error with host->route_set_response,
   * or nothing (not routed). */
  int (*route)(const void* policy, const char* tx_json, size_t rcpt_index,
               KoukanRouteResult* out);
  void (*destroy)(void* policy);
} KoukanPolicyOps;

/* ---- transaction matcher (filters.md §1.4) [consumed by policy_action,
 * which comes later; the router loads them and can call them] ------------ */
enum {
  KOUKAN_MATCH_PRECONDITION_UNMET = 0,
  KOUKAN_MATCH = 1,
  KOUKAN_NO_MATCH = 2,
};
typedef struct KoukanMatcherOps {
  uint32_t struct_size;
  void* (*create)(void* plugin_data, const KoukanConfig* config);
  /* rcpt_num < 0: whole-tx mode. Returns a KOUKAN_MATCH* value. */
  int (*match)(const void* matcher, const char* tx_json, int64_t rcpt_num);
  void (*destroy)(void* matcher);
} KoukanMatcherOps;

/* ---- the host ----------------------------------------------------------- */
struct KoukanPluginHost {
  /* These two fields never move. */
  uint32_t abi_version;        /* the router's KOUKAN_PLUGIN_ABI_VERSION */
  uint32_t plugin_abi_version; /* written by koukan_plugin_check_abi */

  const char* module_kind; /* "sync_filter", "recipient_router_policy", "transaction_matcher" */
  const char* module_key;  /* the name it is registered under */
  void* host_data;         /* the router's; do not touch */

  /* registration (during koukan_plugin_register only) */
  int (*register_filter)(KoukanPluginHost* host, const KoukanFilterOps* ops, void* plugin_data);
  int (*register_policy)(KoukanPluginHost* host, const KoukanPolicyOps* ops, void* plugin_data);
  int (*register_matcher)(KoukanPluginHost* host, const KoukanMatcherOps* ops, void* plugin_data);
  void (*set_error)(KoukanPluginHost* host, const char* message);

  /* config (inside create only). check_keys records an error for every key
   * not in known[0..n) (a chain entry's `filter` key is always accepted) and
   * returns 0 if there was any. get_string: NULL if absent or not a scalar
   * (the latter is recorded as an error). */
  int (*config_check_keys)(const KoukanConfig* config, const char* const* known, size_t n);
  const char* (*config_get_string)(const KoukanConfig* config, const char* key);
  void (*config_error)(const KoukanConfig* config, const char* key, const char* message);

  /* filter calls (inside on_update only) */
  const char* (*call_tx_json)(KoukanFilterCall* call);
  const char* (*call_delta_json)(KoukanFilterCall* call);
  int (*call_add_to_tx)(KoukanFilterCall* call, const char* delta_json);
  int (*call_set_result)(KoukanFilterCall* call, const char* delta_json);
  void (*call_error)(KoukanFilterCall* call, const char* message);

  /* policy results (inside route only) */
  void (*route_set_destination)(KoukanRouteResult* out, const char* rest_endpoint);
  void (*route_set_response)(KoukanRouteResult* out, int code, const char* message);

  /* logging: level 0 debug, 1 info, 2 warning, 3 error */
  void (*log)(int level, const char* message);
};

/* Call first in koukan_plugin_register. */
static inline int koukan_plugin_check_abi(KoukanPluginHost* host) {
  host->plugin_abi_version = KOUKAN_PLUGIN_ABI_VERSION;
  return host->abi_version == KOUKAN_PLUGIN_ABI_VERSION ? KOUKAN_PLUGIN_OK
                                                        : KOUKAN_PLUGIN_ABI_MISMATCH;
}

/* The one function a plugin exports (declared here with default
 * visibility, so plugins may build with -fvisibility=hidden; a plugin using
 * another symbol name marks it KOUKAN_PLUGIN_EXPORT itself). */
#if defined(__GNUC__)
#define KOUKAN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KOUKAN_PLUGIN_EXPORT
#endif
typedef int (*KoukanPluginRegisterFn)(KoukanPluginHost* host);
KOUKAN_PLUGIN_EXPORT int koukan_plugin_register(KoukanPluginHost* host);

#ifdef __cplusplus
}
#endif

#endif /* KOUKAN_PLUGIN_H */
