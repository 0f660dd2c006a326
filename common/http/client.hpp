#pragma once
// HTTP/1.1 client on Beast (implementation in client.cpp): keep-alive
// connection reuse per (scheme, host, port), TLS with verification (system
// CAs, or a CA file, or off), a total deadline per request, streaming
// request bodies. Used by rest_output (router) and the gateway.
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/http/types.hpp"

namespace koukan::http {

struct ClientOptions {
  bool verify = true;                   // verify server certificates
  std::optional<std::string> ca_file;   // CA bundle instead of system CAs
  std::size_t max_idle_per_host = 8;
  std::size_t response_body_limit = 16 * 1024 * 1024;
  // A pooled connection idle longer than this is closed, not reused.
  std::chrono::milliseconds idle_timeout{30'000};
};

struct ClientRequest {
  std::string method = "GET";
  std::string url;  // absolute http(s) URL
  Headers headers;
  std::string body;  // sent with Content-Length (also when empty for POST/PUT/PATCH)
  std::chrono::milliseconds timeout{30'000};  // whole exchange
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
};

class Client {
 public:
  Client(boost::asio::any_io_executor ex, ClientOptions opts = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Errors: Errc::timeout, Errc::unavailable (connect refused / reset),
  // Errc::bad_request (bad URL), Errc::internal (protocol error).
  // Redirects are NOT followed (callers decide).
  Task<Result<ClientResponse>> request(ClientRequest req);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace koukan::http
