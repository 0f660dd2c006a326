// AuthSecrets (server_session.hpp; spec/gateway.md §3.9): the auth_secrets
// file, a JSON object user -> lowercase hex SHA-256 of the secret.
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/smtp/server_session.hpp"

namespace koukan::smtp {

namespace {

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) return {};
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[md[i] >> 4]);
    out.push_back(kHex[md[i] & 15]);
  }
  return out;
}

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

Result<AuthSecrets> AuthSecrets::parse(std::string_view json_text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(json_text, ec);
  if (ec) return Error(Errc::bad_request, "invalid json: " + ec.message());
  if (v.is_array())
    return Error(Errc::bad_request,
                 "expected a JSON object mapping user name to the lowercase hex SHA-256 of its "
                 "secret, got an array (the [user, hash] list form is not supported)");
  if (!v.is_object())
    return Error(Errc::bad_request,
                 "expected a JSON object mapping user name to the lowercase hex SHA-256 of its secret");
  AuthSecrets s;
  for (const auto& kv : v.get_object()) {
    std::string user(kv.key());
    if (!kv.value().is_string())
      return Error(Errc::bad_request, "user '" + user + "': value must be a string (hex SHA-256)");
    std::string hex(kv.value().get_string());
    for (char& c : hex)
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!is_hex64(hex))
      return Error(Errc::bad_request, "user '" + user + "': expected 64 hex digits (SHA-256)");
    s.entries_.emplace_back(std::move(user), std::move(hex));
  }
  return s;
}

Result<AuthSecrets> AuthSecrets::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Error(Errc::bad_request, "auth_secrets " + path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return Error(Errc::bad_request, "auth_secrets " + path + ": read error");
  auto r = parse(ss.str());
  if (!r) return Error(r.error().code, "auth_secrets " + path + ": " + r.error().message);
  return r;
}

bool AuthSecrets::check(std::string_view user, std::string_view password) const {
  // Always hash and compare, so an unknown user costs the same as a wrong
  // secret.
  static const std::string kDummy(64, '0');
  const std::string* stored = &kDummy;
  bool found = false;
  for (const auto& [u, hex] : entries_) {
    if (u == user) {
      stored = &hex;
      found = true;
      break;
    }
  }
  std::string h = sha256_hex(password);
  if (h.size() != stored->size()) return false;
  bool same = CRYPTO_memcmp(h.data(), stored->data(), h.size()) == 0;
  return found && same;
}

std::size_t AuthSecrets::size() const { return entries_.size(); }

}  // namespace koukan::smtp
