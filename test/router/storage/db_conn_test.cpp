// db::Conn's round-trip saving calls (exec_later, query_last): on PostgreSQL
// they are queued in libpq's pipeline and travel with the next statement or
// the COMMIT; these tests hold both engines to the same outcomes, above all
// when a queued statement fails (nothing of its transaction is committed,
// the error reaches the caller, the connection stays usable).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "router/storage/db.hpp"
#include "test/router/storage/storage_test_util.hpp"

namespace koukan::router::test {
namespace {

using db::Conn;
using db::DbError;
using db::Param;

class ConnTest : public StorageTest {
 protected:
  void SetUp() override {
    StorageTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    a_ = open();
    b_ = open();
    a_->exec_script("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)");
  }

  std::unique_ptr<Conn> open() {
    if (pg()) return db::open_pg(url_, &offset_);
    return db::open_sqlite(url_.substr(std::string("sqlite://").size()), 2000, &offset_);
  }

  // Commits k = v on a_ in a transaction of its own (plain statements).
  void put(const std::string& k, std::int64_t v) {
    a_->begin(true);
    a_->exec("DELETE FROM kv WHERE k = $1", {Param::text(k)});
    a_->exec("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text(k), Param::int64(v)});
    a_->commit();
  }

  // What another connection sees committed.
  std::string committed(const std::string& k) {
    auto rows = b_->query("SELECT v FROM kv WHERE k = $1", {Param::text(k)});
    return rows.empty() ? "none" : std::to_string(rows[0][0].i);
  }

  db::ClockOffset offset_{0};
  std::unique_ptr<Conn> a_, b_;
};

TEST_P(ConnTest, QueuedWritesRunInOrderAndCommit) {
  a_->begin(true);
  a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("x"), Param::int64(1)});
  a_->exec_later("UPDATE kv SET v = v + 10 WHERE k = $1", {Param::text("x")});
  // A query after them sees them (they ran first, in the same transaction).
  auto r = a_->query("SELECT v FROM kv WHERE k = $1", {Param::text("x")});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0][0].i, 11);
  a_->exec_later("UPDATE kv SET v = v * 2 WHERE k = $1", {Param::text("x")});
  EXPECT_EQ(committed("x"), "none");
  a_->commit();
  EXPECT_EQ(committed("x"), "22");
}

TEST_P(ConnTest, AQueuedWriteThatFailsFailsTheNextQueryAndNothingIsCommitted) {
  put("dup", 1);

  a_->begin(true);
  try {
    // (SQLite runs a queued write at once: its error comes from exec_later.)
    a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("y"), Param::int64(2)});
    a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("dup"), Param::int64(3)});
    a_->query("SELECT v FROM kv WHERE k = $1", {Param::text("y")});
    ADD_FAILURE() << "the duplicate key went unnoticed";
  } catch (const DbError& e) {
    EXPECT_EQ(e.kind, DbError::Kind::unique) << e.what();
  }
  a_->rollback();
  EXPECT_EQ(committed("y"), "none");
  EXPECT_EQ(committed("dup"), "1");

  // The connection is usable: a new transaction commits.
  put("z", 4);
  EXPECT_EQ(committed("z"), "4");
}

TEST_P(ConnTest, AQueuedWriteThatFailsFailsTheCommitAndNothingIsCommitted) {
  put("dup", 1);

  a_->begin(true);
  a_->exec_later("UPDATE kv SET v = 5 WHERE k = $1", {Param::text("dup")});
  bool thrown = false;
  try {
    a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("dup"), Param::int64(3)});
    a_->commit();
  } catch (const DbError& e) {
    thrown = true;
    EXPECT_EQ(e.kind, DbError::Kind::unique) << e.what();
    a_->rollback();
  }
  EXPECT_TRUE(thrown);
  EXPECT_EQ(committed("dup"), "1");

  a_->begin(true);
  a_->exec_later("UPDATE kv SET v = 6 WHERE k = $1", {Param::text("dup")});
  a_->commit();
  EXPECT_EQ(committed("dup"), "6");
}

TEST_P(ConnTest, QueuedWritesAreUndoneByRollback) {
  a_->begin(true);
  a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("r"), Param::int64(1)});
  a_->rollback();
  EXPECT_EQ(committed("r"), "none");
  a_->begin(true);
  a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("r"), Param::int64(2)});
  a_->commit();
  EXPECT_EQ(committed("r"), "2");
}

TEST_P(ConnTest, LastQueryCommitsWithItsAnswer) {
  a_->begin(true);
  a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("q"), Param::int64(7)});
  auto r = a_->query_last("SELECT v FROM kv WHERE k = $1", {Param::text("q")});
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0][0].i, 7);
  a_->commit();  // nothing left to do on PostgreSQL; SQLite commits here
  EXPECT_EQ(committed("q"), "7");

  // A failed statement before the last query: nothing committed.
  a_->begin(true);
  EXPECT_THROW(
      {
        a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("w"), Param::int64(8)});
        a_->exec_later("INSERT INTO kv (k, v) VALUES ($1, $2)", {Param::text("q"), Param::int64(9)});
        a_->query_last("SELECT v FROM kv WHERE k = $1", {Param::text("q")});
      },
      DbError);
  a_->rollback();
  EXPECT_EQ(committed("w"), "none");
  EXPECT_EQ(committed("q"), "7");
  // Usable again.
  put("q", 70);
  EXPECT_EQ(committed("q"), "70");
}

INSTANTIATE_TEST_SUITE_P(Engines, ConnTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace koukan::router::test
