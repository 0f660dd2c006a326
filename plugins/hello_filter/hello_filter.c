/* hello_filter: an example sync_filter plugin (plugins/koukan_plugin.h).
 *
 *   modules: { sync_filter: { hello: /path/to/hello_filter.so } }
 *   endpoint: [{ name: submission, chain: [{ filter: hello, greeting: hi }, ...] }]
 *
 * A plain filter that publishes filter_output {"hello": {"greeting": G}}
 * (G = `greeting`, default "hello") on every pass that carries a change.
 * Written in C on purpose: it uses nothing but the ABI header.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/koukan_plugin.h"

static KoukanPluginHost api; /* host functions, copied at registration */

typedef struct Hello {
  char* output_json; /* the delta this filter adds */
} Hello;

static void* hello_create(void* plugin_data, const KoukanConfig* config) {
  static const char* const known[] = {"greeting"};
  (void)plugin_data;
  if (!api.config_check_keys(config, known, 1)) return NULL;
  const char* greeting = api.config_get_string(config, "greeting");
  if (!greeting) greeting = "hello";
  for (const char* p = greeting; *p; ++p) {
    if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) {
      api.config_error(config, "greeting", "must not contain quotes, backslashes or controls");
      return NULL;
    }
  }
  Hello* h = calloc(1, sizeof(Hello));
  if (!h) return NULL;
  size_t n = strlen(greeting) + 64;
  h->output_json = malloc(n);
  if (!h->output_json) {
    free(h);
    return NULL;
  }
  snprintf(h->output_json, n, "{\"filter_output\":{\"hello\":{\"greeting\":\"%s\"}}}", greeting);
  return h;
}

static int hello_on_update(const void* filter, KoukanFilterCall* call) {
  const Hello* h = filter;
  if (strcmp(api.call_delta_json(call), "{}") == 0) return KOUKAN_PLUGIN_OK; /* heartbeat */
  return api.call_add_to_tx(call, h->output_json);
}

static void hello_destroy(void* filter) {
  Hello* h = filter;
  free(h->output_json);
  free(h);
}

static const KoukanFilterOps hello_ops = {
    sizeof(KoukanFilterOps), hello_create, hello_on_update, hello_destroy,
};

int koukan_plugin_register(KoukanPluginHost* host) {
  int rc = koukan_plugin_check_abi(host);
  if (rc != KOUKAN_PLUGIN_OK) return rc;
  api = *host;
  return host->register_filter(host, &hello_ops, NULL);
}
