#pragma once
// Internal: the small SQL surface the storage logic needs, implemented once
// for SQLite (sqlite_db.cpp) and once for PostgreSQL (pg_db.cpp). Not part of
// the public API.
//
// SQL dialect accepted by Conn::query/exec (translated per engine):
//   $1..$N        positional parameters (SQLite: ?N)
//   {now}         DB clock, integer unix seconds (+ the test clock offset)
//   {for_update}  " FOR UPDATE" (PostgreSQL) / "" (SQLite: the write lock is
//                 taken by BEGIN IMMEDIATE)
//   {skip_locked} " FOR UPDATE SKIP LOCKED" / ""
// Everything else must be SQL both engines accept (TRUE/FALSE, RETURNING,
// CAST(x AS BIGINT), COALESCE, ...).
//
// Errors are thrown (DbError); storage.cpp turns them into Result values at
// the API boundary.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace koukan::router::db {

struct DbError : std::runtime_error {
  enum class Kind { other, busy, unique, connection };
  Kind kind;
  DbError(Kind k, const std::string& m) : std::runtime_error(m), kind(k) {}
};

struct Param {
  enum class Kind { null, i64, boolean, text, blob };
  Kind kind = Kind::null;
  std::int64_t i = 0;
  std::string_view s;  // text / blob; must outlive the call

  static Param null() { return {}; }
  static Param int64(std::int64_t v) { Param p; p.kind = Kind::i64; p.i = v; return p; }
  static Param boolean(bool v) { Param p; p.kind = Kind::boolean; p.i = v; return p; }
  static Param text(std::string_view v) { Param p; p.kind = Kind::text; p.s = v; return p; }
  static Param blob(std::string_view v) { Param p; p.kind = Kind::blob; p.s = v; return p; }
};

// One result cell: integers and booleans in i, text and bytes in s.
struct Cell {
  bool null = true;
  std::int64_t i = 0;
  std::string s;
};
using Row = std::vector<Cell>;
using Rows = std::vector<Row>;

class Conn {
 public:
  virtual ~Conn() = default;
  // write: the transaction will write (SQLite: BEGIN IMMEDIATE).
  virtual void begin(bool write) = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  virtual Rows query(std::string_view sql, std::initializer_list<Param> params) = 0;
  virtual Rows query(std::string_view sql, const std::vector<Param>& params) = 0;
  // Returns the number of rows changed.
  virtual std::int64_t exec(std::string_view sql, std::initializer_list<Param> params) = 0;
  // Runs a multi-statement script (schema), outside any transaction.
  virtual void exec_script(std::string_view sql) = 0;

  // Round trips (PostgreSQL; SQLite runs these like exec/query):
  // exec_later: a write statement of the open transaction whose result the
  // caller does not need. It runs in order, before the transaction's next
  // statement or its COMMIT, and travels with them; if it fails, that next
  // call (or commit()) throws its error and the transaction is rolled back.
  virtual void exec_later(std::string_view sql, std::initializer_list<Param> params) {
    exec(sql, params);
  }
  virtual void exec_later(std::string_view sql, const std::vector<Param>& params) {
    query(sql, params);
  }
  // query_last: the transaction's last statement; an engine that can sends
  // the COMMIT with it (commit() then has nothing left to do). The caller
  // must neither fail nor roll back the transaction after it.
  virtual Rows query_last(std::string_view sql, std::initializer_list<Param> params) {
    return query(sql, params);
  }
};

// The seconds added to {now} (tests), shared by all connections of a Storage.
using ClockOffset = std::atomic<std::int64_t>;

using ConnFactory = std::function<std::unique_ptr<Conn>()>;

std::unique_ptr<Conn> open_sqlite(const std::string& path, int busy_timeout_ms,
                                  const ClockOffset* offset);
std::unique_ptr<Conn> open_pg(const std::string& url, const ClockOffset* offset);

// A bounded pool: acquire() reuses an idle connection or opens a new one
// (up to max), else waits. Broken connections are dropped, not returned.
class Pool {
 public:
  Pool(ConnFactory f, std::size_t max) : factory_(std::move(f)), max_(max ? max : 1) {}

  class Lease {
   public:
    Lease(Pool* p, std::unique_ptr<Conn> c) : pool_(p), conn_(std::move(c)) {}
    Lease(Lease&& o) noexcept = default;
    ~Lease() { if (conn_) pool_->put(std::move(conn_), !broken_); }
    Conn& operator*() { return *conn_; }
    Conn* operator->() { return conn_.get(); }
    void mark_broken() { broken_ = true; }

   private:
    Pool* pool_;
    std::unique_ptr<Conn> conn_;
    bool broken_ = false;
  };

  Lease acquire() {
    std::unique_lock lk(mu_);
    for (;;) {
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return Lease(this, std::move(c));
      }
      if (open_ < max_) {
        ++open_;
        lk.unlock();
        try {
          return Lease(this, factory_());
        } catch (...) {
          lk.lock();
          --open_;
          cv_.notify_one();
          throw;
        }
      }
      cv_.wait(lk);
    }
  }

 private:
  void put(std::unique_ptr<Conn> c, bool reuse) {
    std::lock_guard lk(mu_);
    if (reuse) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  ConnFactory factory_;
  std::size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::size_t open_ = 0;
};

// Per connection: the prepared statement (T) last used for a SQL text at
// this address (a literal, usually), so the hot path needs neither
// translate() nor hashing the text. The source text and the clock offset are
// checked: addresses get reused by built strings.
template <class T>
class StatementsByAddress {
 public:
  T* find(std::string_view sql, std::int64_t offset) const {
    auto f = map_.find(sql.data());
    if (f == map_.end() || f->second.offset != offset || f->second.source != sql) return nullptr;
    return f->second.value;
  }
  void remember(std::string_view sql, std::int64_t offset, T* value) {
    if (map_.size() > 512) map_.clear();
    map_[sql.data()] = Entry{std::string(sql), offset, value};
  }
  void clear() { map_.clear(); }

 private:
  struct Entry {
    std::string source;
    std::int64_t offset;
    T* value;
  };
  std::unordered_map<const char*, Entry> map_;
};

// Translates the common dialect (above) for one engine.
std::string translate(std::string_view sql, bool sqlite, std::int64_t clock_offset);

}  // namespace koukan::router::db
