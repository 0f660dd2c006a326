/* Test fixture: a plugin built against a future ABI version (999). */
#include "plugins/koukan_plugin.h"

int koukan_plugin_register(KoukanPluginHost* host) {
  host->plugin_abi_version = 999;
  return host->abi_version == 999 ? KOUKAN_PLUGIN_OK : KOUKAN_PLUGIN_ABI_MISMATCH;
}
