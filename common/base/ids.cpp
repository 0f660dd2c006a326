#include "common/base/ids.hpp"

#include <openssl/rand.h>

#include <stdexcept>
#include <vector>

namespace koukan {
std::string random_rest_id(std::size_t n) {
  static const char kAlpha[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<unsigned char> b(n == 0 ? 1 : n);
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  std::string out;
  std::size_t i = 0;
  for (; i + 3 <= b.size(); i += 3) {
    unsigned v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2];
    out += kAlpha[(v >> 18) & 63]; out += kAlpha[(v >> 12) & 63];
    out += kAlpha[(v >> 6) & 63];  out += kAlpha[v & 63];
  }
  if (b.size() - i == 1) {
    unsigned v = b[i] << 16;
    out += kAlpha[(v >> 18) & 63]; out += kAlpha[(v >> 12) & 63];
  } else if (b.size() - i == 2) {
    unsigned v = (b[i] << 16) | (b[i + 1] << 8);
    out += kAlpha[(v >> 18) & 63]; out += kAlpha[(v >> 12) & 63]; out += kAlpha[(v >> 6) & 63];
  }
  return out;
}
}  // namespace koukan
