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

// Holds the pool's batch thread inside a call until release().
struct HeldBatch {
  std::promise<void> p;
  std::shared_future<void> gate = p.get_future().share();
  void release() { p.set_value(); }
};
// Starts the holding call and waits until its batch has begun.
void hold(asio::io_context& io, BlockingPool& pool, ScriptedGroup& g, HeldBatch& h) {
  spawn(io.get_executor(), blocker(pool, h.gate), "blocker");
  while (g.snapshot().empty()) io.run_for(std::chrono::milliseconds(1));
}
template <class Pred>
void run_until(asio::io_context& io, Pred done) {
  while (!done() && io.run_one_for(std::chrono::seconds(5))) {
  }
}

// Each test's scripted group, io thread (kept running by a work guard) and
// what its calls saw on resuming.
class BlockingPoolGroup : public ::testing::Test {
 protected:
  ScriptedGroup g;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(io);
  std::vector<std::string> seen;
};

TEST_F(BlockingPoolGroup, CallsQueuedMeanwhileShareOneCommitAndResumeAfterIt) {
  {
    BlockingPool pool(g, 1);
    HeldBatch h;
    hold(io, pool, g, h);  // then queue five calls while the batch runs
    for (int i = 1; i <= 5; ++i) spawn(io.get_executor(), call(pool, g, i, &seen), "call");
    io.run_for(std::chrono::milliseconds(50));  // posts the five calls
    EXPECT_TRUE(seen.empty());
    h.release();
    run_until(io, [&] { return seen.size() == 5; });
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

TEST_F(BlockingPoolGroup, AFailedCommitRunsEachCallAgainAlone) {
  g.fail_commits = 1;
  {
    BlockingPool pool(g, 1);
    HeldBatch h;
    hold(io, pool, g, h);
    for (int i = 1; i <= 2; ++i) spawn(io.get_executor(), call(pool, g, i, &seen), "call");
    io.run_for(std::chrono::milliseconds(50));
    h.release();
    run_until(io, [&] { return seen.size() == 2; });
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

TEST_F(BlockingPoolGroup, FailedBatchCallsResultsComeFromTheirSecondRun) {
  g.fail_commits = 1;
  {
    BlockingPool pool(g, 1);
    spawn(io.get_executor(), call(pool, g, 7, &seen), "call");
    run_until(io, [&] { return !seen.empty(); });
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

TEST_F(BlockingPoolGroup, ReadsRunBesideABlockedBatch) {
  std::thread::id where{};
  BlockingPool pool(g, 1);
  HeldBatch h;
  hold(io, pool, g, h);
  spawn(io.get_executor(), read_call(pool, &where), "read");
  run_until(io, [&] { return where != std::thread::id{}; });
  EXPECT_NE(where, std::thread::id{});  // done while the batch thread is still blocked
  EXPECT_NE(where, std::this_thread::get_id());
  h.release();
  io.run_for(std::chrono::milliseconds(100));
}

TEST_F(BlockingPoolGroup, WithoutReaderThreadsReadsRunOnTheCallersThread) {
  std::thread::id where{};
  BlockingPool pool(g, 0);
  EXPECT_TRUE(pool.inline_reads());
  HeldBatch h;
  hold(io, pool, g, h);
  spawn(io.get_executor(), read_call(pool, &where), "read");
  run_until(io, [&] { return where != std::thread::id{}; });
  EXPECT_EQ(where, std::this_thread::get_id());  // the io thread, batch still blocked
  h.release();
  io.run_for(std::chrono::milliseconds(100));
}

}  // namespace
}  // namespace koukan
