#pragma once
// rest_output: Koukan's RestEndpoint, the HTTP client side of the
// router -> gateway / receiver / router protocol (spec/rest-api.md §8.4,
// §9.3; filters.md §2.13). A terminal plain filter: every request it is given
// (mail, rcpt, data) is answered before on_update() returns, by the upstream
// or by a synthesised timeout / error response.
//
// Registered by register_rest_output() (router/filters/builtin.hpp). The
// operator-facing keys and every deliberate difference from the original are
// in docs/rest_output.md.
//
//   - filter: rest_output
//     static_endpoint: http://gw:8001/senders/router/transactions  # else routing.rest_endpoint
//     rcpt_timeout: 30     # seconds, deadline of each chain update
//     data_timeout: 300    # seconds, per body PUT
//     chunk_size: 1048576  # bytes per PUT; unset = whole available span
//     verify: true         # or a CA file path
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/json/transaction.hpp"

namespace koukan::router::filters {

// The parsed, immutable yaml of one rest_output entry.
struct RestOutputConfig {
  std::optional<std::string> static_endpoint;
  std::chrono::milliseconds rcpt_timeout{30'000};
  std::chrono::milliseconds data_timeout{300'000};
  std::optional<std::uint64_t> chunk_size;  // unset: one PUT per available span
  bool verify = true;
  std::optional<std::string> ca_file;       // verify: <path>
};

// The upstream sender's yaml `remote_host` (rest-api.md §9.3.1): "host" gets
// port 8000 (the original's hard-coded port, kept for compatibility);
// "host:port" and "[v6]:port" name the port. nullopt if unparsable.
std::optional<HostPort> parse_sender_remote_host(std::string_view s);

}  // namespace koukan::router::filters
