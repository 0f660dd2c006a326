#pragma once
// Fixture shared by the storage tests: every test runs once on SQLite (a temp
// file) and once on PostgreSQL (a fresh database per test on the server named
// by KOUKAN_TEST_PG_URL; "skip" skips the PostgreSQL runs).
#include <gtest/gtest.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <pqxx/connection>
#include <pqxx/nontransaction>
#include <pqxx/result>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "router/storage/storage.hpp"

namespace koukan::router::test {

inline std::string random_suffix() {
  static std::atomic<unsigned> counter{0};
  std::random_device rd;
  return std::to_string(rd() % 1000000000u) + "_" + std::to_string(counter++);
}

// Replaces the database name (path) of a libpq URL.
inline std::string with_database(const std::string& url, const std::string& db) {
  const auto scheme = url.find("://");
  const auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const auto query = url.find('?');
  std::string base = slash == std::string::npos ? url.substr(0, query) : url.substr(0, slash);
  std::string tail = query == std::string::npos ? "" : url.substr(query);
  return base + "/" + db + tail;
}

class StorageTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* env = std::getenv("KOUKAN_TEST_PG_URL");
      if (!env || !*env) {
        FAIL() << "KOUKAN_TEST_PG_URL is not set. Start a server with "
                  "`scripts/pg-test-server.sh start` and export the URL it prints, "
                  "or set KOUKAN_TEST_PG_URL=skip to skip the PostgreSQL runs.";
      }
      if (std::string(env) == "skip") GTEST_SKIP() << "KOUKAN_TEST_PG_URL=skip";
      admin_url_ = env;
      db_name_ = "koukan_test_" + random_suffix();
      pqxx::connection c(admin_url_);
      pqxx::nontransaction n(c);
      n.exec("CREATE DATABASE " + db_name_);
      url_ = with_database(admin_url_, db_name_);
    } else {
      dir_ = std::filesystem::temp_directory_path() / ("koukan_storage_" + random_suffix());
      std::filesystem::create_directories(dir_);
      url_ = "sqlite://" + (dir_ / "router.db").string();
    }
  }

  void TearDown() override {
    if (!db_name_.empty()) {
      try {
        pqxx::connection c(admin_url_);
        pqxx::nontransaction n(c);
        n.exec("DROP DATABASE IF EXISTS " + db_name_ + " WITH (FORCE)");
      } catch (const std::exception& e) {
        ADD_FAILURE() << "dropping " << db_name_ << ": " << e.what();
      }
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  bool pg() const { return GetParam() == "postgresql"; }

  std::unique_ptr<Storage> open(StorageOptions o = {}) {
    auto r = open_storage(url_, std::move(o));
    if (!r.ok()) {
      ADD_FAILURE() << "open_storage(" << url_ << "): " << r.error().message;
      return nullptr;
    }
    return std::move(*r);
  }

  // open() + open_session(uri).
  std::unique_ptr<Storage> open_with_session(const std::string& uri, StorageOptions o = {}) {
    auto s = open(std::move(o));
    if (!s) return s;
    auto id = s->open_session(uri, std::chrono::seconds(300));
    EXPECT_TRUE(id.ok()) << id.error().message;
    return s;
  }

  // A single integer from SQL run directly against the test database.
  std::int64_t sql_int(const std::string& sql) {
    if (pg()) {
      pqxx::connection c(url_);
      pqxx::nontransaction n(c);
      auto r = n.exec(sql);
      return r.at(0).at(0).as<std::int64_t>();
    }
    SQLite::Database d((dir_ / "router.db").string(), SQLite::OPEN_READONLY);
    SQLite::Statement st(d, sql);
    st.executeStep();
    return st.getColumn(0).getInt64();
  }

  std::string url_;
  std::string admin_url_;
  std::string db_name_;
  std::filesystem::path dir_;
};

inline std::string param_name(const ::testing::TestParamInfo<std::string>& i) { return i.param; }

#define KOUKAN_STORAGE_SUITE(Suite)                                                    \
  INSTANTIATE_TEST_SUITE_P(Engines, Suite, ::testing::Values("sqlite", "postgresql"), \
                           ::koukan::router::test::param_name)

inline std::string pattern_bytes(std::size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  std::minstd_rand r(seed);
  for (auto& c : s) c = static_cast<char>(r() & 0xff);
  return s;
}

}  // namespace koukan::router::test
