#include "router/storage/version_cache.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <optional>
#include <thread>

namespace koukan::router {
namespace {

using namespace std::chrono_literals;

struct Outcome {
  std::optional<bool> changed;
  std::chrono::steady_clock::duration took{};
};

Task<void> waiter(VersionCache& cache, std::string id, std::int64_t known,
                  std::chrono::milliseconds timeout, Outcome* out) {
  const auto t0 = std::chrono::steady_clock::now();
  out->changed = co_await cache.wait_for_change(std::move(id), known, timeout);
  out->took = std::chrono::steady_clock::now() - t0;
}

TEST(VersionCache, NotifyFromAnotherThreadWakesWaiter) {
  asio::io_context io;
  VersionCache cache(io.get_executor());
  Outcome out;
  spawn(io.get_executor(), waiter(cache, "tx", 3, 10s, &out), "waiter");
  std::thread writer([&] {
    std::this_thread::sleep_for(50ms);
    cache.notify("tx", 3);  // not newer: no wake-up
    cache.notify("other", 9);
    cache.notify("tx", 4);
  });
  io.run();
  writer.join();
  ASSERT_TRUE(out.changed);
  EXPECT_TRUE(*out.changed);
  EXPECT_LT(out.took, 5s);
  EXPECT_EQ(cache.version("tx"), 4);
  EXPECT_EQ(cache.version("other"), 9);
}

TEST(VersionCache, TimesOutWithoutChange) {
  asio::io_context io;
  VersionCache cache(io.get_executor());
  Outcome out;
  cache.notify("tx", 2);
  spawn(io.get_executor(), waiter(cache, "tx", 2, 100ms, &out), "waiter");
  io.run();
  ASSERT_TRUE(out.changed);
  EXPECT_FALSE(*out.changed);
  EXPECT_GE(out.took, 100ms);
}

TEST(VersionCache, ReturnsAtOnceIfAlreadyNewer) {
  asio::io_context io;
  VersionCache cache(io.get_executor());
  cache.notify("tx", 5);
  Outcome out;
  spawn(io.get_executor(), waiter(cache, "tx", 4, 10s, &out), "waiter");
  io.run();
  ASSERT_TRUE(out.changed);
  EXPECT_TRUE(*out.changed);
  EXPECT_LT(out.took, 1s);
}

TEST(VersionCache, WakesAllWaitersOfOneTransactionOnly) {
  asio::io_context io;
  VersionCache cache(io.get_executor());
  Outcome a, b, c;
  spawn(io.get_executor(), waiter(cache, "tx", 1, 10s, &a), "a");
  spawn(io.get_executor(), waiter(cache, "tx", 1, 10s, &b), "b");
  spawn(io.get_executor(), waiter(cache, "other", 1, 200ms, &c), "c");
  asio::steady_timer t(io, 20ms);
  t.async_wait([&](boost::system::error_code) { cache.notify("tx", 2); });
  io.run();
  EXPECT_TRUE(a.changed.value_or(false));
  EXPECT_TRUE(b.changed.value_or(false));
  ASSERT_TRUE(c.changed);
  EXPECT_FALSE(*c.changed);
}

TEST(VersionCache, EntriesWithoutWaitersExpire) {
  asio::io_context io;
  VersionCache cache(io.get_executor(), 50ms);
  cache.notify("a", 1);
  io.run();
  io.restart();
  EXPECT_EQ(cache.size(), 1u);
  std::this_thread::sleep_for(80ms);
  cache.notify("b", 1);  // any activity sweeps
  io.run();
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_FALSE(cache.version("a"));
  EXPECT_EQ(cache.version("b"), 1);
}

}  // namespace
}  // namespace koukan::router
