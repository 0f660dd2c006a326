#pragma once
// glibc malloc settings for the daemons (call first thing in main()). When
// the daemons are linked with tcmalloc (cmake/Toolchain.cmake, the default
// where it is installed) this is a no-op.

namespace koukan {

// By default glibc gives memory back after every large free: a thread
// arena's heap is shrunk with madvise(), which flushes the TLB of every core
// (in a profile of the router under load: ~5% of its CPU), and 1 MiB body
// buffers are mmap()ed and munmap()ed each time. This keeps up to 64 MiB of
// freed memory for reuse and serves blocks under 4 MiB from the heap. Peak
// memory is unchanged (bodies stream in chunk_size pieces); idle RSS can stay
// at the high-water mark. KOUKAN_MALLOC_DEFAULTS=1 leaves glibc's defaults.
void tune_malloc();

}  // namespace koukan
