// BlockingPool in group-commit mode, against a scripted GroupCommit: calls
// are batched, awaiters resume only after the batch's commit, a failed commit
// re-runs each call of the batch alone.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "common/async/task.hpp"

namespace koukan {
namespace {

struct ScriptedGroup final : GroupCommit {
  std::mutex mu;
  std::vector<std::string> events;
  int fail_commits = 0;  // the next N commits throw
  bool open = false;
  void log(std::string e) {
    std::lock_guard lk(mu);
    events.push_back(std::move(e));
  }
  void begin() override {
    open = true;
    log("begin");
  }
  void commit() override {
    open = false;
    if (fail_commits > 0) {
      --fail_commits;
      log("commit-failed");
      throw std::runtime_error("disk full");
    }
    log("commit");
  }
  void abort() noexcept override {
    open = false;
    log("abort");
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lk(mu);
    return events;
  }
};

Task<void> call(BlockingPool& pool, ScriptedGroup& g, int i, std::vector<std::string>* seen) {
  auto f = [&g, i] {
    g.log((g.open ? "run-in-batch " : "run-alone ") + std::to_string(i));
    return i * 10;
  };
  int v = co_await offload(pool, std::move(f));
  // Resumed on the io thread: the batch that ran this call is committed.
  auto ev = g.snapshot();
  seen->push_back(std::to_string(v) + " after " + ev.back());
}

Task<void> blocker(BlockingPool& pool, std::shared_future<void> gate) {
  auto f = [gate] { gate.wait(); };
  co_await offload(pool, std::move(f));
}

TEST(BlockingPoolGroup, CallsQueuedMeanwhileShareOneCommitAndResumeAfterIt) {
  ScriptedGroup g;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> seen;
  {
    BlockingPool pool(g, 1);
    std::promise<void> p;
    std::shared_future<void> gate = p.get_future().share();
    spawn(io.get_executor(), blocker(pool, gate), "blocker");
    // Let the blocker reach the pool thread, then queue five calls behind it.
    while (g.snapshot().empty()) io.run_for(std::chrono::milliseconds(1));
    for (int i = 1; i <= 5; ++i) spawn(io.get_executor(), call(pool, g, i, &seen), "call");
    io.run_for(std::chrono::milliseconds(50));  // posts the five calls
    EXPECT_TRUE(seen.empty());
    p.set_value();
    io.restart();
    while (seen.size() < 5 && io.run_one_for(std::chrono::seconds(5))) {
    }
    // The five joined the running batch (queued while it ran): one commit.
    EXPECT_EQ(pool.batches(), 1u);
    EXPECT_EQ(pool.jobs(), 6u);
  }
  ASSERT_EQ(seen.size(), 5u);
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(seen[i - 1], std::to_string(i * 10) + " after commit");
  auto ev = g.snapshot();
  const std::vector<std::string> want_tail = {"begin", "run-in-batch 1", "run-in-batch 2", "run-in-batch 3",
                                              "run-in-batch 4", "run-in-batch 5", "commit"};
  ASSERT_GE(ev.size(), want_tail.size());
  EXPECT_EQ(std::vector<std::string>(ev.end() - static_cast<long>(want_tail.size()), ev.end()), want_tail);
}

TEST(BlockingPoolGroup, AFailedCommitRunsEachCallAgainAlone) {
  ScriptedGroup g;
  g.fail_commits = 1;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> seen;
  {
    BlockingPool pool(g, 1);
    std::promise<void> p;
    std::shared_future<void> gate = p.get_future().share();
    spawn(io.get_executor(), blocker(pool, gate), "blocker");
    while (g.snapshot().empty()) io.run_for(std::chrono::milliseconds(1));
    for (int i = 1; i <= 2; ++i) spawn(io.get_executor(), call(pool, g, i, &seen), "call");
    io.run_for(std::chrono::milliseconds(50));
    p.set_value();
    io.restart();
    while (seen.size() < 2 && io.run_one_for(std::chrono::seconds(5))) {
    }
  }
  // 1 and 2 joined the blocker's batch, whose commit failed: all three ran
  // again alone, and only then were their awaiters resumed.
  auto ev = g.snapshot();
  const std::vector<std::string> want = {"begin", "run-in-batch 1", "run-in-batch 2", "commit-failed",
                                         "abort", "run-alone 1", "run-alone 2"};
  EXPECT_EQ(ev, want);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], "10 after run-alone 2");
  EXPECT_EQ(seen[1], "20 after run-alone 2");
}

TEST(BlockingPoolGroup, FailedBatchCallsResultsComeFromTheirSecondRun) {
  ScriptedGroup g;
  g.fail_commits = 1;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> seen;
  {
    BlockingPool pool(g, 1);
    spawn(io.get_executor(), call(pool, g, 7, &seen), "call");
    while (seen.empty() && io.run_one_for(std::chrono::seconds(5))) {
    }
  }
  const std::vector<std::string> want = {"begin", "run-in-batch 7", "commit-failed", "abort", "run-alone 7"};
  EXPECT_EQ(g.snapshot(), want);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "70 after run-alone 7");
}

Task<void> read_call(BlockingPool& pool, std::thread::id* where) {
  auto f = [] { return std::this_thread::get_id(); };
  *where = co_await offload_read(pool, std::move(f));
}

TEST(BlockingPoolGroup, ReadsRunBesideABlockedBatch) {
  ScriptedGroup g;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread::id where{};
  BlockingPool pool(g, 1);
  std::promise<void> p;
  std::shared_future<void> gate = p.get_future().share();
  spawn(io.get_executor(), blocker(pool, gate), "blocker");
  spawn(io.get_executor(), read_call(pool, &where), "read");
  while (where == std::thread::id{} && io.run_one_for(std::chrono::seconds(5))) {
  }
  EXPECT_NE(where, std::thread::id{});  // done while the batch thread is still blocked
  EXPECT_NE(where, std::this_thread::get_id());
  p.set_value();
  io.run_for(std::chrono::milliseconds(100));
}

TEST(BlockingPoolGroup, WithoutReaderThreadsReadsRunOnTheCallersThread) {
  ScriptedGroup g;
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::thread::id where{};
  BlockingPool pool(g, 0);
  EXPECT_TRUE(pool.inline_reads());
  std::promise<void> p;
  std::shared_future<void> gate = p.get_future().share();
  spawn(io.get_executor(), blocker(pool, gate), "blocker");
  spawn(io.get_executor(), read_call(pool, &where), "read");
  while (where == std::thread::id{} && io.run_one_for(std::chrono::seconds(5))) {
  }
  EXPECT_EQ(where, std::this_thread::get_id());  // the io thread, batch still blocked
  p.set_value();
  io.run_for(std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace koukan
