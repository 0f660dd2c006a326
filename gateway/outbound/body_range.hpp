#pragma once
// Content-Range / x-finalize-blob-length values of body PUTs
// (spec/rest-api.md §8.1). Same rules as the router's router/rest/range.*;
// a copy because the gateway does not link router libraries.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/base/result.hpp"

namespace koukan::gateway::outbound {

struct ContentRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;              // inclusive
  std::optional<std::uint64_t> total;  // nullopt for '*'
  std::uint64_t length() const { return last - first + 1; }
  std::uint64_t end() const { return last + 1; }
};

// "bytes <first>-<last>/<total|*>"; anything else is Errc::bad_request.
Result<ContentRange> parse_content_range(std::string_view v);

// What the gateway now holds: "bytes 0-<stored-1>/<total|*>", or
// "bytes */<total|*>" when nothing is stored yet.
std::string format_content_range(std::uint64_t stored, std::optional<std::uint64_t> total);

// Strict non-negative decimal (no sign, no spaces, at most 18 digits).
std::optional<std::uint64_t> parse_decimal(std::string_view v);

}  // namespace koukan::gateway::outbound
