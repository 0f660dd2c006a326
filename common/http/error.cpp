#include "common/http/error.hpp"

#include <cstdio>

namespace koukan::http {

int http_status(Errc c) {
  switch (c) {
    case Errc::bad_request: return 400;
    case Errc::not_found: return 404;
    case Errc::conflict: return 409;
    case Errc::precondition_failed: return 412;
    case Errc::payload_too_large: return 413;
    case Errc::range_not_satisfiable: return 416;
    case Errc::redirect: return 308;
    case Errc::unavailable: return 503;
    case Errc::timeout: return 504;
    case Errc::internal: return 500;
  }
  return 500;
}

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

Response error_response(const Error& e) {
  if (e.code == Errc::redirect) {
    Response r = Response::empty(308);
    r.headers.set("location", e.message);
    return r;
  }
  return Response::json(http_status(e.code), "{\"error\":" + json_quote(e.message) + "}");
}

Response error_response(Errc c, std::string message) {
  return error_response(Error(c, std::move(message)));
}

}  // namespace koukan::http
