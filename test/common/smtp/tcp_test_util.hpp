#pragma once
// Helpers for the TCP/TLS tests: a self-signed certificate made once per
// test process with the `openssl` CLI (EC P-256, CN=localhost, SANs
// localhost and 127.0.0.1) in a temp dir removed at exit; an io_context
// runner.
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace koukan::smtp::testing {

struct TestCert {
  std::string dir, cert, key;
  bool ok = false;
  TestCert() {
    char tmpl[] = "/tmp/koukan-smtp-test-XXXXXX";
    if (!mkdtemp(tmpl)) return;
    dir = tmpl;
    cert = dir + "/cert.pem";
    key = dir + "/key.pem";
    std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " + key +
        " -out " + cert +
        " -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
        ">/dev/null 2>&1";
    ok = std::system(cmd.c_str()) == 0;
  }
  ~TestCert() {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
  }
};

inline const TestCert& test_cert() {
  static TestCert c;
  return c;
}

// Runs until every coroutine finished or `limit` passed.
inline void run_io(boost::asio::io_context& ioc,
                   std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  ioc.run_for(limit);
}

}  // namespace koukan::smtp::testing
