#pragma once
#include <cstddef>
#include <string>

namespace koukan {
// URL-safe base64 (no padding) of `entropy_bytes` random bytes from the OS
// CSPRNG, like Python's secrets.token_urlsafe(n): 16 bytes -> 22 chars.
std::string random_rest_id(std::size_t entropy_bytes);
}  // namespace koukan
