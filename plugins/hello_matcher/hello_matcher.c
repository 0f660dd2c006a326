/* hello_matcher: an example transaction_matcher plugin
 * (plugins/koukan_plugin.h).
 *
 *   modules: { transaction_matcher: { from_hello: /path/to/hello_matcher.so } }
 *   matcher yaml: { domain: example.com }
 *
 * KOUKAN_MATCH when the domain of mail_from equals `domain` (ASCII
 * case-insensitive, default "example.com"), KOUKAN_NO_MATCH otherwise
 * (including the null reverse-path), KOUKAN_MATCH_PRECONDITION_UNMET while
 * the transaction has no mail_from yet. It looks at the envelope sender
 * only, so the answer is the same in whole-tx and per-recipient mode.
 * Written in C on purpose: it uses nothing but the ABI header (and the
 * examples' small JSON reader).
 */
#include <stdlib.h>
#include <string.h>

#include "plugins/example_json.h"
#include "plugins/koukan_plugin.h"

static KoukanPluginHost api; /* host functions, copied at registration */

typedef struct HelloMatcher {
  char* domain;
} HelloMatcher;

static void matcher_destroy(void* matcher) {
  HelloMatcher* m = matcher;
  if (!m) return;
  free(m->domain);
  free(m);
}

static void* matcher_create(void* plugin_data, const KoukanConfig* config) {
  static const char* const known[] = {"domain"};
  (void)plugin_data;
  if (!api.config_check_keys(config, known, 1)) return NULL;
  const char* domain = api.config_get_string(config, "domain");
  if (!domain) domain = "example.com";
  if (!*domain || strchr(domain, '@')) {
    api.config_error(config, "domain", "must be a non-empty domain without '@'");
    return NULL;
  }
  HelloMatcher* m = calloc(1, sizeof(HelloMatcher));
  if (!m) return NULL;
  size_t n = strlen(domain) + 1;
  m->domain = malloc(n);
  if (!m->domain) {
    free(m);
    return NULL;
  }
  memcpy(m->domain, domain, n);
  return m;
}

static int matcher_match(const void* matcher, const char* tx_json, int64_t rcpt_num) {
  const HelloMatcher* m = matcher;
  (void)rcpt_num;
  const char* from = ex_json_member(tx_json, "mail_from");
  if (!from || strncmp(from, "null", 4) == 0) return KOUKAN_MATCH_PRECONDITION_UNMET;
  char address[1024];
  if (!ex_json_get_string(ex_json_member(from, "m"), address, sizeof address)) {
    return KOUKAN_NO_MATCH;
  }
  const char* domain = ex_address_domain(address);
  return domain && ex_domain_equal(domain, m->domain) ? KOUKAN_MATCH : KOUKAN_NO_MATCH;
}

static const KoukanMatcherOps hello_matcher_ops = {
    sizeof(KoukanMatcherOps), matcher_create, matcher_match, matcher_destroy,
};

int koukan_plugin_register(KoukanPluginHost* host) {
  int rc = koukan_plugin_check_abi(host);
  if (rc != KOUKAN_PLUGIN_OK) return rc;
  api = *host;
  return host->register_matcher(host, &hello_matcher_ops, NULL);
}
