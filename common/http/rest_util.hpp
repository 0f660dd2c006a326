#pragma once
// Small pieces of the REST wire protocol shared by the router's and the
// gateway's handlers and clients (spec/rest-api.md §6, §8.1): Content-Range
// of blob PUTs, strict decimals, ETag quoting, path segments, the JSON
// content type. No Beast here.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.hpp"
#include "common/http/types.hpp"

namespace koukan::http {

struct ContentRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;              // inclusive
  std::optional<std::uint64_t> total;  // nullopt for '*'
  std::uint64_t length() const { return last - first + 1; }
  std::uint64_t end() const { return last + 1; }
};

// "bytes <first>-<last>/<total|*>"; anything else (other units, "*/N",
// last < first, a total not past last, garbage) is Errc::bad_request.
Result<ContentRange> parse_content_range(std::string_view v);

// What the server now holds: "bytes 0-<stored-1>/<total|*>", or
// "bytes */<total|*>" when nothing is stored yet.
std::string format_content_range(std::uint64_t stored, std::optional<std::uint64_t> total);

// Strict non-negative decimal (no sign, no spaces, at most 18 digits).
std::optional<std::uint64_t> parse_decimal(std::string_view v);

// An ETag value without its surrounding double quotes, if any.
std::string strip_quotes(std::string_view v);

// "/a/b//c" -> {"a", "b", "c"}.
std::vector<std::string_view> split_path(std::string_view p);

// Ours (docs/compat.md): a client PUTting the last piece of a body may ask
// the server to hold the answer until the transaction has its data response
// (at most this many milliseconds, capped by the server's long-poll budget)
// and to answer with the transaction's JSON, as a GET would. A server that
// did so names the version of that JSON in kTxJsonHeader; without that
// header the body is not the transaction (the original, or input not
// complete) and the client polls with GET as usual.
inline constexpr std::string_view kWaitDataHeader = "x-koukan-wait-data-ms";
inline constexpr std::string_view kTxJsonHeader = "x-koukan-tx-json";

// Content-Type is application/json (parameters such as charset ignored).
bool is_json_content_type(const Headers& h);

}  // namespace koukan::http
