// SQLite group commit (Storage::group_commit + a group-mode BlockingPool):
// calls queued together share one COMMIT, a failing call rolls back only
// itself, notifications wait for the commit, reads on their own connections
// see only committed data, and everything acknowledged survives a reopen.
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>

#include <future>
#include <mutex>

#include "common/async/task.hpp"
#include "test/router/storage/storage_test_util.hpp"

namespace koukan::router {
namespace {

namespace json = boost::json;

CreateSpec new_tx(const std::string& id) {
  CreateSpec s;
  s.rest_id = id;
  s.json = json::parse(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})").as_object();
  s.blobs.push_back(BlobSpec::inline_bytes(std::string(kBodyBlobName), "Subject: " + id + "\r\n\r\nhi\r\n"));
  return s;
}

class GroupCommitTest : public test::StorageTest {
 protected:
  // SQLite only: PostgreSQL returns no GroupCommit (checked below).
  void SetUp() override { test::StorageTest::SetUp(); }

  StorageOptions opts() {
    StorageOptions o;
    o.max_connections = 1;
    o.max_read_connections = 2;
    o.on_change = [this](const std::string& id, std::int64_t v) {
      std::lock_guard lk(mu);
      notified.push_back(id + "@" + std::to_string(v));
    };
    return o;
  }
  std::mutex mu;
  std::vector<std::string> notified;
};

Task<void> create_one(BlockingPool& pool, Storage& s, std::string id, std::vector<std::string>* out) {
  auto spec = new_tx(id);
  auto f = [&s, spec] { return s.create(spec); };
  auto r = co_await offload(pool, std::move(f));
  out->push_back(r.ok() ? id + " ok v" + std::to_string(r->version) : id + " " + r.error().message);
}

Task<void> write_stale(BlockingPool& pool, Storage& s, std::string id, std::vector<std::string>* out) {
  TxWrite w;
  w.ping = true;
  auto f = [&s, id, w] { return s.write(id, 99, w); };
  auto r = co_await offload(pool, std::move(f));
  out->push_back(r.ok() ? id + " written" : id + " " + std::string(errc_name(r.error().code)));
}

Task<void> hold(BlockingPool& pool, std::shared_future<void> gate) {
  auto f = [gate] { gate.wait(); };
  co_await offload(pool, std::move(f));
}

Task<void> read_one(BlockingPool& pool, Storage& s, std::string id, std::vector<std::string>* out) {
  auto f = [&s, id] { return s.load(id); };
  auto r = co_await offload_read(pool, std::move(f));
  out->push_back(r.ok() ? id + " found" : id + " " + std::string(errc_name(r.error().code)));
}

TEST_P(GroupCommitTest, QueuedCallsShareACommitAFailureUndoesOnlyItselfAndAllSurviveAReopen) {
  auto s = open_with_session("http://gc-test", opts());
  ASSERT_TRUE(s);
  auto group = s->group_commit();
  if (pg()) {
    EXPECT_EQ(group, nullptr);
    return;
  }
  ASSERT_NE(group, nullptr);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> out;
  {
    BlockingPool pool(*group, 2);
    std::promise<void> p;
    std::shared_future<void> gate = p.get_future().share();
    spawn(io.get_executor(), hold(pool, gate), "hold");
    io.run_for(std::chrono::milliseconds(20));
    // Queued while the held batch runs: they join it.
    for (int i = 0; i < 10; ++i) spawn(io.get_executor(), create_one(pool, *s, "tx" + std::to_string(i), &out), "create");
    spawn(io.get_executor(), write_stale(pool, *s, "tx3", &out), "stale write");
    spawn(io.get_executor(), create_one(pool, *s, "tx3", &out), "duplicate");
    io.run_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(out.empty());
    {
      std::lock_guard lk(mu);
      EXPECT_TRUE(notified.empty()) << "notified before the commit";
    }
    p.set_value();
    while (out.size() < 12 && io.run_one_for(std::chrono::seconds(10))) {
    }
    EXPECT_EQ(pool.batches(), 1u);  // all joined the held batch: one COMMIT
    EXPECT_EQ(pool.jobs(), 13u);
  }
  ASSERT_EQ(out.size(), 12u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(out[i], "tx" + std::to_string(i) + " ok v1");
  EXPECT_EQ(out[10], "tx3 precondition_failed");
  EXPECT_EQ(out[11].rfind("tx3 ", 0), 0u);
  EXPECT_NE(out[11], "tx3 ok v1");  // duplicate rest_id refused, the first tx3 kept
  {
    std::lock_guard lk(mu);
    EXPECT_EQ(notified.size(), 10u);
  }
  s.reset();
  auto again = open();
  ASSERT_TRUE(again);
  for (int i = 0; i < 10; ++i) {
    auto r = again->load("tx" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << i;
    EXPECT_EQ(r->version, 1);
    auto body = again->read_blob(r->body()->blob_id, 0, 1000);
    ASSERT_TRUE(body.ok());
    EXPECT_EQ(*body, "Subject: tx" + std::to_string(i) + "\r\n\r\nhi\r\n");
  }
}

// Group commit is SQLite only: this suite runs on SQLite alone.
class GroupCommitSqliteTest : public GroupCommitTest {};

TEST_P(GroupCommitSqliteTest, ReadsSeeOnlyCommittedData) {
  auto s = open_with_session("http://gc-test", opts());
  ASSERT_TRUE(s);
  auto group = s->group_commit();
  ASSERT_NE(group, nullptr);
  asio::io_context io;
  auto work = asio::make_work_guard(io);
  std::vector<std::string> created, reads;
  BlockingPool pool(*group, 2);
  std::promise<void> p1, p2;
  std::shared_future<void> g1 = p1.get_future().share(), g2 = p2.get_future().share();
  spawn(io.get_executor(), hold(pool, g1), "hold 1");
  io.run_for(std::chrono::milliseconds(20));
  // Next batch: create, then a call that holds the batch open uncommitted.
  spawn(io.get_executor(), create_one(pool, *s, "early", &created), "create");
  spawn(io.get_executor(), hold(pool, g2), "hold 2");
  io.run_for(std::chrono::milliseconds(20));
  p1.set_value();
  io.run_for(std::chrono::milliseconds(50));
  spawn(io.get_executor(), read_one(pool, *s, "early", &reads), "read");
  while (reads.empty() && io.run_one_for(std::chrono::seconds(10))) {
  }
  ASSERT_EQ(reads.size(), 1u);
  EXPECT_EQ(reads[0], "early not_found");  // written in the open batch, not committed
  EXPECT_TRUE(created.empty());
  p2.set_value();
  while (created.empty() && io.run_one_for(std::chrono::seconds(10))) {
  }
  ASSERT_EQ(created.size(), 1u);
  EXPECT_EQ(created[0], "early ok v1");
  spawn(io.get_executor(), read_one(pool, *s, "early", &reads), "read");
  while (reads.size() < 2 && io.run_one_for(std::chrono::seconds(10))) {
  }
  ASSERT_EQ(reads.size(), 2u);
  EXPECT_EQ(reads[1], "early found");
}

KOUKAN_STORAGE_SUITE(GroupCommitTest);
INSTANTIATE_TEST_SUITE_P(Sqlite, GroupCommitSqliteTest, ::testing::Values("sqlite"), test::param_name);

}  // namespace
}  // namespace koukan::router
