#include "common/http/types.hpp"

#include <algorithm>
#include <cctype>

namespace koukan::http {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& h : h_)
    if (iequals(h.name, name)) return std::string_view(h.value);
  return std::nullopt;
}

void Headers::set(std::string name, std::string value) {
  remove(name);
  h_.push_back({std::move(name), std::move(value)});
}

void Headers::add(std::string name, std::string value) { h_.push_back({std::move(name), std::move(value)}); }

void Headers::remove(std::string_view name) {
  h_.erase(std::remove_if(h_.begin(), h_.end(), [&](const Header& h) { return iequals(h.name, name); }),
           h_.end());
}

Task<Result<void>> StringBodyReader::read_some(std::string& out, std::size_t max) {
  std::size_t n = std::min(max, data_.size() - pos_);
  out.assign(data_, pos_, n);
  pos_ += n;
  co_return Result<void>();
}

Task<Result<std::string>> Request::read_all(std::size_t limit) {
  if (content_length && *content_length > limit)
    co_return Error(Errc::payload_too_large, "request body larger than " + std::to_string(limit) + " bytes");
  std::string all, piece;
  for (;;) {
    auto r = co_await body->read_some(piece, 64 * 1024);
    if (!r.ok()) co_return r.error();
    if (piece.empty()) break;
    if (all.size() + piece.size() > limit)
      co_return Error(Errc::payload_too_large, "request body larger than " + std::to_string(limit) + " bytes");
    all += piece;
  }
  co_return all;
}

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.set("content-type", "application/json");
  r.body = std::move(body);
  return r;
}

Response Response::text(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.set("content-type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

std::string_view reason_phrase(int s) {
  switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 202: return "Accepted";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

Result<Url> parse_url(std::string_view s) {
  Url u;
  auto p = s.find("://");
  if (p == std::string_view::npos) return Error(Errc::bad_request, "not an absolute URL: " + std::string(s));
  u.scheme = std::string(s.substr(0, p));
  std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(), [](unsigned char c) { return std::tolower(c); });
  if (u.scheme != "http" && u.scheme != "https") return Error(Errc::bad_request, "unsupported scheme: " + u.scheme);
  s.remove_prefix(p + 3);
  auto slash = s.find_first_of("/?");
  std::string_view hostport = s.substr(0, slash);
  u.target = slash == std::string_view::npos ? "/" : std::string(s.substr(slash));
  if (auto h = u.target.find('#'); h != std::string::npos) u.target.resize(h);
  if (u.target.empty() || u.target[0] == '?') u.target = "/" + u.target;
  if (hostport.empty()) return Error(Errc::bad_request, "URL without host");
  if (hostport.find('@') != std::string_view::npos)
    return Error(Errc::bad_request, "URL with user info is not supported");
  std::string_view host = hostport, port;
  if (hostport.front() == '[') {
    auto close = hostport.find(']');
    if (close == std::string_view::npos) return Error(Errc::bad_request, "bad IPv6 literal in URL");
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return Error(Errc::bad_request, "bad URL authority");
      port = hostport.substr(close + 2);
    }
  } else if (auto c = hostport.rfind(':'); c != std::string_view::npos) {
    host = hostport.substr(0, c);
    port = hostport.substr(c + 1);
  }
  u.host = std::string(host);
  if (u.host.empty()) return Error(Errc::bad_request, "URL without host");
  for (unsigned char c : u.host)
    if (c <= 0x20 || c >= 0x7f) return Error(Errc::bad_request, "bad host in URL");
  if (port.empty()) {
    u.port = u.scheme == "https" ? 443 : 80;
  } else {
    unsigned v = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || v > 65535) return Error(Errc::bad_request, "bad port in URL");
      v = v * 10 + static_cast<unsigned>(c - '0');
    }
    if (v == 0 || v > 65535) return Error(Errc::bad_request, "bad port in URL");
    u.port = static_cast<std::uint16_t>(v);
  }
  return u;
}

}  // namespace koukan::http
