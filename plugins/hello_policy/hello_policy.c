/* hello_policy: an example recipient_router_policy plugin
 * (plugins/koukan_plugin.h).
 *
 *   modules: { recipient_router_policy: { hello: /path/to/hello_policy.so } }
 *   policy yaml: { endpoint: inbound, domain: example.com }
 *
 * Routes a recipient whose domain equals `domain` (ASCII case-insensitive,
 * default "example.com") to the rest endpoint `endpoint` (required), and
 * reports nothing ("not routed") for any other recipient. A recipient index
 * past the end of rcpt_to is an error (KOUKAN_PLUGIN_ERROR).
 * Written in C on purpose: it uses nothing but the ABI header (and the
 * examples' small JSON reader).
 */
#include <stdlib.h>
#include <string.h>

#include "plugins/example_json.h"
#include "plugins/koukan_plugin.h"

static KoukanPluginHost api; /* host functions, copied at registration */

typedef struct HelloPolicy {
  char* domain;
  char* endpoint;
} HelloPolicy;

static char* dup_string(const char* s) {
  size_t n = strlen(s) + 1;
  char* d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

static void policy_destroy(void* policy) {
  HelloPolicy* p = policy;
  if (!p) return;
  free(p->domain);
  free(p->endpoint);
  free(p);
}

static void* policy_create(void* plugin_data, const KoukanConfig* config) {
  static const char* const known[] = {"domain", "endpoint"};
  (void)plugin_data;
  if (!api.config_check_keys(config, known, 2)) return NULL;
  const char* domain = api.config_get_string(config, "domain");
  if (!domain) domain = "example.com";
  if (!*domain || strchr(domain, '@')) {
    api.config_error(config, "domain", "must be a non-empty domain without '@'");
    return NULL;
  }
  const char* endpoint = api.config_get_string(config, "endpoint");
  if (!endpoint || !*endpoint) {
    api.config_error(config, "endpoint", "required key missing");
    return NULL;
  }
  HelloPolicy* p = calloc(1, sizeof(HelloPolicy));
  if (!p) return NULL;
  p->domain = dup_string(domain);
  p->endpoint = dup_string(endpoint);
  if (!p->domain || !p->endpoint) {
    policy_destroy(p);
    return NULL;
  }
  return p;
}

static int policy_route(const void* policy, const char* tx_json, size_t rcpt_index,
                        KoukanRouteResult* out) {
  const HelloPolicy* p = policy;
  const char* rcpts = ex_json_member(tx_json, "rcpt_to");
  const char* rcpt = rcpts ? ex_json_element(rcpts, rcpt_index) : NULL;
  if (!rcpt) {
    api.log(3, "hello_policy: recipient index out of range");
    return KOUKAN_PLUGIN_ERROR;
  }
  char address[1024];
  if (!ex_json_get_string(ex_json_member(rcpt, "m"), address, sizeof address)) {
    return KOUKAN_PLUGIN_OK; /* unreadable address: not routed */
  }
  const char* domain = ex_address_domain(address);
  if (domain && ex_domain_equal(domain, p->domain)) {
    api.route_set_destination(out, p->endpoint);
  }
  return KOUKAN_PLUGIN_OK;
}

static const KoukanPolicyOps hello_policy_ops = {
    sizeof(KoukanPolicyOps), policy_create, policy_route, policy_destroy,
};

int koukan_plugin_register(KoukanPluginHost* host) {
  int rc = koukan_plugin_check_abi(host);
  if (rc != KOUKAN_PLUGIN_OK) return rc;
  api = *host;
  return host->register_policy(host, &hello_policy_ops, NULL);
}
