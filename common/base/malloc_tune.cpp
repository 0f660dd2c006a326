#include "common/base/malloc_tune.hpp"

#include <malloc.h>

#include <cstdlib>

namespace koukan {

void tune_malloc() {
  if (const char* v = std::getenv("KOUKAN_MALLOC_DEFAULTS"); v && *v && *v != '0') return;
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

}  // namespace koukan
