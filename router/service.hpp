#pragma once
#include <string>

namespace koukan::router {
enum class Mode { run, check_config, print_config, init_db };
// Loads the config, opens storage, serves until SIGTERM/SIGINT. Returns the
// process exit code (config errors: 2, start-up failure: 1).
int run_router(const std::string& config_path, Mode mode);
}  // namespace koukan::router
