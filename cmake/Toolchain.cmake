# Build-speed and diagnostics settings (see docs/architecture.md, "Build").
find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
  set(CMAKE_C_COMPILER_LAUNCHER "${CCACHE_PROGRAM}")
endif()

find_program(MOLD_PROGRAM mold)
if(MOLD_PROGRAM)
  add_link_options("-fuse-ld=mold")
endif()

# One link job at a time: linking is memory- and IO-heavy, compiling is the
# scarce resource on 2 cores.
set_property(GLOBAL APPEND PROPERTY JOB_POOLS link_pool=1)
set(CMAKE_JOB_POOL_LINK link_pool)

add_compile_options(-Wall -Wextra -Wno-unused-parameter -fdiagnostics-color=always)

option(KOUKAN_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
if(KOUKAN_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# The daemons allocate per request (HTTP, JSON, coroutine frames): gperftools'
# tcmalloc (Debian libtcmalloc-minimal4) makes the whole SMTP path ~15% faster
# than glibc malloc (bench/README.md). Not with the sanitizers (ASan has its
# own allocator). docs/dependencies.md says why it is here.
option(KOUKAN_TCMALLOC "Link koukan-router and koukan-gateway with tcmalloc when found" ON)
set(KOUKAN_MALLOC_LIB "")
if(KOUKAN_TCMALLOC AND NOT KOUKAN_SANITIZE)
  find_library(KOUKAN_TCMALLOC_LIB NAMES tcmalloc_minimal libtcmalloc_minimal.so.4)
  if(KOUKAN_TCMALLOC_LIB)
    set(KOUKAN_MALLOC_LIB ${KOUKAN_TCMALLOC_LIB})
  else()
    message(STATUS "tcmalloc not found: the daemons use glibc malloc")
  endif()
endif()
