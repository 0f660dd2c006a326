#pragma once
// CHECK: invariant that aborts in every build. ASSERT: debug builds only.
#include <cstdio>
#include <cstdlib>

#define KOUKAN_CHECK(cond)                                                        \
  do {                                                                            \
    if (!(cond)) {                                                                \
      std::fprintf(stderr, "CHECK failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                               \
    }                                                                             \
  } while (0)

#ifndef NDEBUG
#define KOUKAN_ASSERT(cond) KOUKAN_CHECK(cond)
#else
#define KOUKAN_ASSERT(cond) ((void)0)
#endif
