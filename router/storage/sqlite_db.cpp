// SQLite backend of db::Conn (SQLiteCpp). One connection per pool slot;
// compiled statements are cached per connection.
#include <sqlite3.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include <mutex>
#include <unordered_map>

#include "router/storage/db.hpp"

namespace koukan::router::db {
namespace {

DbError to_db_error(const SQLite::Exception& e) {
  const int code = e.getErrorCode();
  const int ext = e.getExtendedErrorCode();
  auto kind = DbError::Kind::other;
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
    kind = DbError::Kind::busy;
  } else if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY) {
    kind = DbError::Kind::unique;
  } else if (code == SQLITE_CANTOPEN || code == SQLITE_IOERR || code == SQLITE_FULL) {
    kind = DbError::Kind::connection;
  }
  return DbError(kind, std::string("sqlite: ") + e.what());
}

// Process-wide SQLite setting, before the first connection initialises the
// library: no allocation statistics. They take one global mutex around every
// SQLite malloc, which the DB thread and the read connections (I/O thread)
// then contend on.
void configure_sqlite_once() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

class SqliteConn final : public Conn {
 public:
  SqliteConn(const std::string& path, int busy_ms, const ClockOffset* offset)
      : db_((configure_sqlite_once(), path), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX, busy_ms),
        offset_(offset) {
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA foreign_keys=ON");
    db_.exec("PRAGMA synchronous=FULL");
  }

  void begin(bool write) override {
    exec(write ? std::string_view("BEGIN IMMEDIATE") : std::string_view("BEGIN"), {});
  }
  void commit() override { exec(std::string_view("COMMIT"), {}); }
  void rollback() noexcept override {
    try {
      if (!db_.getHandle() || sqlite3_get_autocommit(db_.getHandle())) return;
      db_.exec("ROLLBACK");
    } catch (...) {
    }
  }

  Rows query(std::string_view sql, std::initializer_list<Param> params) override {
    return run(sql, params.begin(), params.end(), nullptr);
  }
  Rows query(std::string_view sql, const std::vector<Param>& params) override {
    return run(sql, params.data(), params.data() + params.size(), nullptr);
  }
  std::int64_t exec(std::string_view sql, std::initializer_list<Param> params) override {
    std::int64_t changes = 0;
    run(sql, params.begin(), params.end(), &changes);
    return changes;
  }
  void exec_script(std::string_view sql) override {
    try {
      db_.exec(std::string(sql));
    } catch (const SQLite::Exception& e) {
      throw to_db_error(e);
    }
  }

 private:
  SQLite::Statement& statement(std::string_view sql) {
    const std::int64_t off = offset_ ? offset_->load() : 0;
    // Fast path: the same SQL text at the same address (a literal) as last
    // time, so no translation and no hashing of the text.
    if (SQLite::Statement* st = by_address_.find(sql, off)) return *st;
    std::string text = translate(sql, /*sqlite=*/true, off);
    auto it = cache_.find(text);
    if (it == cache_.end()) {
      if (cache_.size() > 256) {
        by_address_.clear();
        cache_.clear();
      }
      auto st = std::make_unique<SQLite::Statement>(db_, text);
      it = cache_.emplace(std::move(text), std::move(st)).first;
    }
    by_address_.remember(sql, off, it->second.get());
    return *it->second;
  }

  Rows run(std::string_view sql, const Param* pb, const Param* pe, std::int64_t* changes) {
    static const char kEmpty[1] = {0};
    SQLite::Statement* stp = nullptr;
    try {
      SQLite::Statement& st = statement(sql);
      stp = &st;
      // tryReset: reset() would throw the error of this statement's last
      // failed run (sqlite3_reset reports it) and fail a later, good call.
      st.tryReset();
      st.clearBindings();
      int idx = 1;
      for (const Param* p = pb; p != pe; ++p, ++idx) {
        switch (p->kind) {
          case Param::Kind::null: st.bind(idx); break;
          case Param::Kind::i64:
          case Param::Kind::boolean: st.bind(idx, static_cast<int64_t>(p->i)); break;
          case Param::Kind::text: st.bind(idx, std::string(p->s)); break;
          case Param::Kind::blob:
            st.bindNoCopy(idx, p->s.empty() ? static_cast<const void*>(kEmpty) : p->s.data(),
                          static_cast<int>(p->s.size()));
            break;
        }
      }
      Rows rows;
      while (st.executeStep()) {
        const int n = st.getColumnCount();
        Row row(static_cast<std::size_t>(n));
        for (int c = 0; c < n; ++c) {
          SQLite::Column col = st.getColumn(c);
          Cell& cell = row[static_cast<std::size_t>(c)];
          if (col.isNull()) continue;
          cell.null = false;
          if (col.isInteger()) {
            cell.i = col.getInt64();
          } else if (col.isFloat()) {
            cell.i = static_cast<std::int64_t>(col.getDouble());
          } else {
            const char* b = static_cast<const char*>(col.getBlob());
            cell.s.assign(b ? b : "", static_cast<std::size_t>(col.getBytes()));
          }
        }
        rows.push_back(std::move(row));
      }
      if (changes) *changes = sqlite3_changes(db_.getHandle());
      st.reset();
      st.clearBindings();  // drop no-copy blob pointers
      return rows;
    } catch (const SQLite::Exception& e) {
      if (stp) {
        stp->tryReset();
        stp->clearBindings();
      }
      throw to_db_error(e);
    }
  }

  SQLite::Database db_;
  const ClockOffset* offset_;
  std::unordered_map<std::string, std::unique_ptr<SQLite::Statement>> cache_;
  StatementsByAddress<SQLite::Statement> by_address_;  // into cache_
};

}  // namespace

std::unique_ptr<Conn> open_sqlite(const std::string& path, int busy_timeout_ms,
                                  const ClockOffset* offset) {
  try {
    return std::make_unique<SqliteConn>(path, busy_timeout_ms, offset);
  } catch (const SQLite::Exception& e) {
    throw DbError(DbError::Kind::connection, std::string("sqlite open ") + path + ": " + e.what());
  }
}

}  // namespace koukan::router::db
