#pragma once
// Expected failures are values. Error carries a kind that maps, in one place
// each, to an HTTP status (common/http) and to an SMTP reply (common/smtp).
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace koukan {

enum class Errc {
  bad_request,        // malformed input: 400
  not_found,          // unknown id: 404
  conflict,           // state does not allow it: 409
  precondition_failed,// version mismatch: 412
  payload_too_large,  // 413
  range_not_satisfiable, // 416
  redirect,           // owned by another replica: 308 (message = location)
  unavailable,        // overloaded / shutting down: 503
  timeout,            // 504 / 4xx SMTP
  internal,           // bug or backend failure: 500
};

struct Error {
  Errc code = Errc::internal;
  std::string message;
  Error() = default;
  Error(Errc c, std::string m) : code(c), message(std::move(m)) {}
};

inline const char* errc_name(Errc c) {
  switch (c) {
    case Errc::bad_request: return "bad_request";
    case Errc::not_found: return "not_found";
    case Errc::conflict: return "conflict";
    case Errc::precondition_failed: return "precondition_failed";
    case Errc::payload_too_large: return "payload_too_large";
    case Errc::range_not_satisfiable: return "range_not_satisfiable";
    case Errc::redirect: return "redirect";
    case Errc::unavailable: return "unavailable";
    case Errc::timeout: return "timeout";
    case Errc::internal: return "internal";
  }
  return "internal";
}

// Minimal expected<T, Error>. Result<void> is supported.
template <class T>
class [[nodiscard]] Result {
 public:
  // Default: an internal error (Asio's co_spawn needs default-constructible
  // results).
  Result() : v_(std::in_place_index<1>, Errc::internal, "uninitialized result") {}
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT implicit
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT implicit
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  T&& value() && { check(); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }
  Error& error() { return std::get<1>(v_); }

 private:
  void check() const {
    if (v_.index() != 0) std::abort();
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : err_(std::move(e)), ok_(false) {}  // NOLINT implicit
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

inline Error make_error(Errc c, std::string m) { return Error(c, std::move(m)); }

}  // namespace koukan
