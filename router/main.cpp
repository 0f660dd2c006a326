// koukan-router: arguments, config, run. Everything else is in service.cpp.
//   koukan-router CONFIG              run
//   koukan-router --check-config CONFIG   validate and exit (0 = valid)
//   koukan-router --print-config CONFIG   print the effective config
//   koukan-router --init-db CONFIG        create the schema and exit
#include <cstdio>
#include <cstring>
#include <string>

#include "common/base/malloc_tune.hpp"
#include "router/service.hpp"

int main(int argc, char** argv) {
  koukan::tune_malloc();
  koukan::router::Mode mode = koukan::router::Mode::run;
  const char* path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--check-config")) mode = koukan::router::Mode::check_config;
    else if (!std::strcmp(argv[i], "--print-config")) mode = koukan::router::Mode::print_config;
    else if (!std::strcmp(argv[i], "--init-db")) mode = koukan::router::Mode::init_db;
    else if (argv[i][0] == '-' ) {
      std::fprintf(stderr, "koukan-router: unknown option %s\n", argv[i]);
      path = nullptr;
      break;
    } else if (!path) path = argv[i];
    else { path = nullptr; break; }
  }
  if (!path) {
    std::fprintf(stderr,
                 "usage: koukan-router [--check-config|--print-config|--init-db] CONFIG.yaml\n");
    return 2;
  }
  return koukan::router::run_router(path, mode);
}
