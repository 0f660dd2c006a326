#include "common/http/rest_util.hpp"

namespace koukan::http {

std::optional<std::uint64_t> parse_decimal(std::string_view v) {
  if (v.empty() || v.size() > 18) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  return n;
}

Result<ContentRange> parse_content_range(std::string_view v) {
  const std::string whole(v);
  auto bad = [&] { return Error(Errc::bad_request, "bad content-range: " + whole); };
  constexpr std::string_view kUnit = "bytes ";
  if (v.substr(0, kUnit.size()) != kUnit) return bad();
  v.remove_prefix(kUnit.size());
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) return bad();
  auto first = parse_decimal(v.substr(0, dash));
  auto last = parse_decimal(v.substr(dash + 1, slash - dash - 1));
  if (!first || !last || *last < *first) return bad();
  ContentRange r;
  r.first = *first;
  r.last = *last;
  auto t = v.substr(slash + 1);
  if (t != "*") {
    auto total = parse_decimal(t);
    if (!total || *total <= *last) return bad();
    r.total = *total;
  }
  return r;
}

std::string format_content_range(std::uint64_t stored, std::optional<std::uint64_t> total) {
  std::string t = total ? std::to_string(*total) : "*";
  if (stored == 0) return "bytes */" + t;
  return "bytes 0-" + std::to_string(stored - 1) + "/" + t;
}

std::string strip_quotes(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  return std::string(v);
}

std::vector<std::string_view> split_path(std::string_view p) {
  std::vector<std::string_view> out;
  while (!p.empty()) {
    if (p.front() == '/') {
      p.remove_prefix(1);
      continue;
    }
    auto s = p.find('/');
    out.push_back(p.substr(0, s));
    if (s == std::string_view::npos) break;
    p.remove_prefix(s);
  }
  return out;
}

bool is_json_content_type(const Headers& h) {
  auto ct = h.get("content-type");
  if (!ct) return false;
  std::string_view v = *ct;
  v = v.substr(0, v.find(';'));
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return iequals(v, "application/json");
}

}  // namespace koukan::http
