#pragma once
// The one place an Error becomes an HTTP status and a JSON body.
#include <string>
#include <string_view>

#include "common/base/result.hpp"
#include "common/http/types.hpp"

namespace koukan::http {

int http_status(Errc c);
// {"error": "<message>"} with Content-Type application/json. For
// Errc::redirect the message is the Location and the status 308 (empty body).
Response error_response(const Error& e);
Response error_response(Errc c, std::string message);
// JSON string literal (with quotes) for `s`; UTF-8 passed through raw.
std::string json_quote(std::string_view s);

}  // namespace koukan::http
