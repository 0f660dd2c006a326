#pragma once
// Our own small HTTP request/response types. Beast never appears in a header:
// it lives only in common/http/*.cpp.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/async/task.hpp"
#include "common/base/result.hpp"

namespace koukan::http {

struct Header {
  std::string name;
  std::string value;
};

// Ordered header list; lookups are case-insensitive.
class Headers {
 public:
  std::optional<std::string_view> get(std::string_view name) const;
  bool has(std::string_view name) const { return get(name).has_value(); }
  void set(std::string name, std::string value);  // replaces all of `name`
  void add(std::string name, std::string value);
  void remove(std::string_view name);
  const std::vector<Header>& all() const { return h_; }

 private:
  std::vector<Header> h_;
};

bool iequals(std::string_view a, std::string_view b);

// Source of a request body, read incrementally (never all at once unless the
// handler asks for it with a limit).
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Reads up to `max` bytes into `out` (replacing its contents). Empty `out`
  // with an ok result means end of body. Errors: Errc::bad_request (framing),
  // Errc::payload_too_large, Errc::timeout, Errc::internal (connection lost).
  virtual Task<Result<void>> read_some(std::string& out, std::size_t max) = 0;
};

// A body held in memory; used by tests and for small bodies.
class StringBodyReader : public BodyReader {
 public:
  explicit StringBodyReader(std::string data) : data_(std::move(data)) {}
  Task<Result<void>> read_some(std::string& out, std::size_t max) override;

 private:
  std::string data_;
  std::size_t pos_ = 0;
};

struct Request {
  std::string method;   // "GET", "POST", ...
  std::string target;   // as received: path + optional ?query
  std::string path;     // target without the query, not percent-decoded
  std::string query;    // after '?', may be empty
  Headers headers;
  // Content-Length if the client sent one; nullopt for chunked / none.
  std::optional<std::uint64_t> content_length;
  bool chunked = false;
  std::string remote_addr;  // "ip:port" of the peer ("" in unit tests)
  BodyReader* body = nullptr;  // never null when handed to a handler

  // Reads the whole body, failing with payload_too_large past `limit`.
  Task<Result<std::string>> read_all(std::size_t limit);
};

struct Response {
  int status = 200;
  Headers headers;
  std::string body;

  // Content-Type exactly "application/json" (no charset: [COMPAT]).
  static Response json(int status, std::string body);
  static Response text(int status, std::string body);
  static Response empty(int status);
};

// Standard reason phrase ("OK", "Permanent Redirect", ...).
std::string_view reason_phrase(int status);

// Splits "http://host:port/path?q" into parts. Only http and https.
struct Url {
  std::string scheme;  // "http" | "https"
  std::string host;
  std::uint16_t port = 0;
  std::string target;  // "/path?q" (at least "/")
};
Result<Url> parse_url(std::string_view url);

}  // namespace koukan::http
