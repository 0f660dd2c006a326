// PostgreSQL backend of db::Conn, on libpq in pipeline mode (libpq >= 14;
// libpqxx 6.4 does not offer it, see docs/dependencies.md).
//
// Round trips are what PostgreSQL costs the router (bench/README.md), so:
// - BEGIN is not sent on its own: it goes out in front of the transaction's
//   first statement, in the same pipeline (one round trip for both);
// - a statement's first use prepares it in the same round trip as its run;
// - a read-only transaction's COMMIT is sent without waiting for its
//   answer, which is read (and any error in it ignored: nothing was
//   written) before the connection's next use;
// - write statements whose results the caller does not need
//   (Conn::exec_later) are queued and travel with the next statement or
//   the COMMIT, and a write's last query can carry its COMMIT
//   (Conn::query_last).
// Parameters go as text, bytea ones as binary; the server infers their
// types from context, so SQL casts ambiguous ones (CAST($n AS BIGINT)).
#include <libpq-fe.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "router/storage/db.hpp"

namespace koukan::router::db {
namespace {

// PostgreSQL type oids we decode specially.
constexpr Oid kOidBool = 16, kOidBytea = 17, kOidInt8 = 20, kOidInt2 = 21, kOidInt4 = 23;

struct ClearResult {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ClearResult>;

class PgConn final : public Conn {
 public:
  PgConn(const std::string& url, const ClockOffset* offset) : offset_(offset) {
    c_ = PQconnectdb(url.c_str());
    if (!c_ || PQstatus(c_) != CONNECTION_OK) {
      std::string m = c_ ? PQerrorMessage(c_) : "out of memory";
      if (c_) PQfinish(c_);
      c_ = nullptr;
      throw DbError(DbError::Kind::connection, "postgresql: connect: " + trim(m));
    }
    if (PQenterPipelineMode(c_) != 1) {
      std::string m = PQerrorMessage(c_);
      PQfinish(c_);
      c_ = nullptr;
      throw DbError(DbError::Kind::connection, "postgresql: pipeline mode: " + trim(m));
    }
  }
  ~PgConn() override {
    rollback();
    if (c_) PQfinish(c_);
  }

  void begin(bool write) override {
    drain_deferred();
    pending_.clear();
    in_tx_ = true;
    begin_pending_ = true;
    write_ = write;
  }

  void commit() override {
    if (!in_tx_) return;
    if (begin_pending_) {  // nothing ran: nothing to commit
      begin_pending_ = false;
      in_tx_ = false;
      return;
    }
    if (!write_ && pending_.empty()) {
      // Read-only: its COMMIT's answer is read before the next use.
      in_tx_ = false;
      queue_simple("COMMIT");
      sync();
      ++deferred_syncs_;
      return;
    }
    // With the queued statements, if any. Should one of them fail, COMMIT
    // does not run: in_tx_ stays set, so the caller's rollback() ends the
    // aborted transaction.
    queue_simple("COMMIT");
    pending_.push_back({});
    finish(-1, nullptr);
    in_tx_ = false;
  }

  void rollback() noexcept override {
    if (!in_tx_) return;
    in_tx_ = false;
    if (begin_pending_) {
      begin_pending_ = false;
      return;
    }
    if (!c_ || PQstatus(c_) != CONNECTION_OK) {
      pending_.clear();
      return;
    }
    try {
      // Queued statements first, in a pipeline segment of their own: if one
      // fails, the rest of its segment (a ROLLBACK too) would be skipped.
      if (!pending_.empty()) {
        try {
          finish(-1, nullptr);
        } catch (const DbError& e) {
          if (e.kind == DbError::Kind::connection) return;
        }
      }
      queue_simple("ROLLBACK");
      pending_.push_back({});
      finish(-1, nullptr);
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

  void exec_later(std::string_view sql, std::initializer_list<Param> params) override {
    if (!in_tx_) {
      exec(sql, params);
      return;
    }
    send(sql, params.begin(), params.end());
  }
  void exec_later(std::string_view sql, const std::vector<Param>& params) override {
    if (!in_tx_) {
      query(sql, params);
      return;
    }
    send(sql, params.data(), params.data() + params.size());
  }

  Rows query_last(std::string_view sql, std::initializer_list<Param> params) override {
    if (!in_tx_ || !write_) return query(sql, params);
    send(sql, params.begin(), params.end());
    const int want = static_cast<int>(pending_.size()) - 1;
    queue_simple("COMMIT");
    pending_.push_back({});
    ResultPtr res;
    finish(want, &res);  // on an error in_tx_ stays set: see commit()
    in_tx_ = false;
    return decode(res.get());
  }

  // A multi-statement script needs the simple query protocol: outside
  // pipeline mode, in one transaction.
  void exec_script(std::string_view sql) override {
    drain_deferred();
    if (!pending_.empty()) finish(-1, nullptr);
    if (PQexitPipelineMode(c_) != 1) fail_conn("leaving pipeline mode");
    auto simple = [&](const std::string& text) {
      ResultPtr r(PQexec(c_, text.c_str()));
      const auto st = r.get() ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        auto e = error_of(r.get());
        ResultPtr rb(PQexec(c_, "ROLLBACK"));
        PQenterPipelineMode(c_);
        throw e;
      }
    };
    simple("BEGIN");
    // Serialise concurrent first starts of several replicas.
    simple("SELECT pg_advisory_xact_lock(7315420118)");
    simple(std::string(sql));
    simple("COMMIT");
    if (PQenterPipelineMode(c_) != 1) fail_conn("entering pipeline mode");
  }

 private:
  static std::string trim(std::string m) {
    while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
    return m;
  }

  [[noreturn]] void fail_conn(const char* what) {
    throw DbError(DbError::Kind::connection,
                  std::string("postgresql: ") + what + ": " + trim(PQerrorMessage(c_)));
  }

  DbError error_of(const PGresult* r) const {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    std::string msg = r ? PQresultErrorMessage(r) : "";
    if (msg.empty()) msg = PQerrorMessage(c_);
    msg = "postgresql: " + trim(msg);
    if (PQstatus(c_) != CONNECTION_OK) return DbError(DbError::Kind::connection, msg);
    const std::string s = state ? state : "";
    if (s == "23505") return DbError(DbError::Kind::unique, msg);
    if (s == "40001" || s == "40P01") return DbError(DbError::Kind::busy, msg);
    if (s.rfind("08", 0) == 0 || s.rfind("57P", 0) == 0) return DbError(DbError::Kind::connection, msg);
    return DbError(DbError::Kind::other, msg);
  }

  void queue_simple(const char* text) {
    if (PQsendQueryParams(c_, text, 0, nullptr, nullptr, nullptr, nullptr, 0) != 1)
      fail_conn("send");
  }
  void sync() {
    if (PQpipelineSync(c_) != 1) fail_conn("sync");
  }

  // Reads the answers of `n` queued queries and the sync after them. Query
  // `want`'s result is handed to `out` (if any); the first error is thrown
  // once the pipeline is drained up to its sync, its query's index in
  // `failed_at`.
  void collect(int n, int want, ResultPtr* out, int* failed_at = nullptr) {
    std::optional<DbError> err;
    for (int i = 0; i < n; ++i) {
      ResultPtr r(PQgetResult(c_));
      if (!r.get()) {
        err = DbError(DbError::Kind::connection, "postgresql: " + trim(PQerrorMessage(c_)));
        break;
      }
      const auto st = PQresultStatus(r.get());
      const bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
      if (!ok && !err) {
        if (failed_at) *failed_at = i;
        if (st == PGRES_PIPELINE_ABORTED) {
          err = DbError(DbError::Kind::other, "postgresql: pipeline aborted");
        } else {
          err = error_of(r.get());
        }
      }
      if (i == want && out) *out = std::move(r);
      // The end of this query's results.
      ResultPtr end(PQgetResult(c_));
      if (end.get()) {  // a query that returned more than one result: not ours
        err = DbError(DbError::Kind::other, "postgresql: unexpected extra result");
        break;
      }
    }
    if (!err || err->kind != DbError::Kind::connection) {
      ResultPtr s(PQgetResult(c_));
      if (!s.get() || PQresultStatus(s.get()) != PGRES_PIPELINE_SYNC) {
        throw DbError(DbError::Kind::connection,
                      "postgresql: pipeline out of step: " + trim(PQerrorMessage(c_)));
      }
    }
    if (err) throw *err;
  }

  // Reads the answers of fire-and-forget syncs (read-only COMMITs).
  void drain_deferred() {
    while (deferred_syncs_ > 0) {
      --deferred_syncs_;
      for (;;) {
        ResultPtr r(PQgetResult(c_));
        if (!r.get()) {
          if (PQstatus(c_) != CONNECTION_OK) {
            deferred_syncs_ = 0;
            fail_conn("connection lost");
          }
          continue;  // end of one query's results
        }
        if (PQresultStatus(r.get()) == PGRES_PIPELINE_SYNC) break;
      }
    }
  }

  // The server-side prepared statement for `sql` on this connection (parsed
  // and planned once, not per call): looked up by the literal's address
  // first (no translation), then by the translated text. A new one is
  // queued (PQsendPrepare) in front of its first run, with a slot in
  // pending_.
  const std::string& prepared(std::string_view sql) {
    const std::int64_t off = offset_ ? offset_->load() : 0;
    if (const std::string* name = by_address_.find(sql, off)) return *name;
    std::string text = translate(sql, /*sqlite=*/false, off);
    auto it = names_.find(text);
    if (it == names_.end()) {
      if (names_.size() >= 512) {  // built SQL with unforeseen variety: start over
        queue_simple("DEALLOCATE ALL");
        pending_.push_back({});
        names_.clear();
        by_address_.clear();
      }
      std::string name = "k" + std::to_string(++prepared_count_);
      if (PQsendPrepare(c_, name.c_str(), text.c_str(), 0, nullptr) != 1) fail_conn("send");
      pending_.push_back({name});
      it = names_.emplace(std::move(text), std::move(name)).first;
    }
    by_address_.remember(sql, off, &it->second);
    return it->second;
  }

  // Queues one statement (and BEGIN or its PREPARE in front of it, if due)
  // without waiting: its answer is read by finish().
  void send(std::string_view sql, const Param* pb, const Param* pe) {
    drain_deferred();
    const auto n = static_cast<std::size_t>(pe - pb);
    std::vector<std::string> texts;  // NUL-terminated copies of integer and text parameters
    texts.reserve(n);
    std::vector<const char*> values(n);
    std::vector<int> lengths(n), formats(n);
    for (std::size_t i = 0; i < n; ++i) {
      const Param& p = pb[i];
      switch (p.kind) {
        case Param::Kind::null: values[i] = nullptr; break;
        case Param::Kind::i64: texts.push_back(std::to_string(p.i)); values[i] = texts.back().c_str(); break;
        case Param::Kind::boolean: values[i] = p.i ? "true" : "false"; break;
        case Param::Kind::text:
          // Text parameters go as C strings: copy the view (it need not be
          // NUL-terminated).
          texts.emplace_back(p.s);
          values[i] = texts.back().c_str();
          break;
        case Param::Kind::blob:
          values[i] = p.s.data();
          lengths[i] = static_cast<int>(p.s.size());
          formats[i] = 1;  // binary bytea: no hex doubling
          break;
      }
    }
    // BEGIN first: what runs before it in a pipeline is an implicit
    // transaction of its own (a PREPARE's parse already takes a snapshot).
    if (begin_pending_) {
      queue_simple(write_ ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      pending_.push_back({});
      begin_pending_ = false;
    }
    const std::string& name = prepared(sql);
    // libpq copies the parameters into its output buffer here.
    if (PQsendQueryPrepared(c_, name.c_str(), static_cast<int>(n), values.data(), lengths.data(),
                            formats.data(), 0) != 1)
      fail_conn("send");
    pending_.push_back({});
  }

  // Sends a sync after everything queued and reads all their answers; query
  // `want`'s result goes to `out`.
  void finish(int want, ResultPtr* out) {
    std::vector<Slot> slots;
    slots.swap(pending_);
    sync();
    int failed_at = -1;
    try {
      collect(static_cast<int>(slots.size()), want, out, &failed_at);
    } catch (...) {
      // A PREPARE that failed or never ran: prepare afresh next time.
      for (std::size_t j = 0; j < slots.size(); ++j) {
        if (!slots[j].prepared.empty() && (failed_at < 0 || failed_at <= static_cast<int>(j)))
          forget(slots[j].prepared);
      }
      throw;
    }
  }

  Rows run(std::string_view sql, const Param* pb, const Param* pe, std::int64_t* changes) {
    send(sql, pb, pe);
    ResultPtr res;
    finish(static_cast<int>(pending_.size()) - 1, &res);
    if (changes) {
      const char* t = PQcmdTuples(res.get());
      *changes = (t && *t) ? std::strtoll(t, nullptr, 10) : 0;
    }
    return decode(res.get());
  }

  static Rows decode(const PGresult* res) {
    const int nrows = PQntuples(res), ncols = PQnfields(res);
    std::vector<Oid> types(static_cast<std::size_t>(ncols));
    for (int c = 0; c < ncols; ++c) types[static_cast<std::size_t>(c)] = PQftype(res, c);
    Rows rows;
    rows.reserve(static_cast<std::size_t>(nrows));
    for (int r = 0; r < nrows; ++r) {
      Row row(static_cast<std::size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res, r, c)) continue;
        Cell& cell = row[static_cast<std::size_t>(c)];
        cell.null = false;
        const char* v = PQgetvalue(res, r, c);
        switch (types[static_cast<std::size_t>(c)]) {
          case kOidBool: cell.i = (v[0] == 't') ? 1 : 0; break;
          case kOidInt2:
          case kOidInt4:
          case kOidInt8: cell.i = std::strtoll(v, nullptr, 10); break;
          case kOidBytea: {
            std::size_t len = 0;
            unsigned char* b = PQunescapeBytea(reinterpret_cast<const unsigned char*>(v), &len);
            if (!b) throw DbError(DbError::Kind::other, "postgresql: bad bytea");
            cell.s.assign(reinterpret_cast<const char*>(b), len);
            PQfreemem(b);
            break;
          }
          default: cell.s.assign(v, static_cast<std::size_t>(PQgetlength(res, r, c))); break;
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // A statement whose PREPARE may have failed: prepare it afresh next time.
  void forget(const std::string& name) {
    for (auto it = names_.begin(); it != names_.end(); ++it) {
      if (it->second == name) {
        names_.erase(it);
        break;
      }
    }
    by_address_.clear();
  }

  PGconn* c_ = nullptr;
  const ClockOffset* offset_;
  std::unordered_map<std::string, std::string> names_;  // translated text -> statement name
  std::uint64_t prepared_count_ = 0;
  StatementsByAddress<const std::string> by_address_;  // names in names_ (node-based: stable)
  bool in_tx_ = false;
  bool begin_pending_ = false;  // BEGIN not sent yet: it goes with the first statement
  bool write_ = false;
  int deferred_syncs_ = 0;  // syncs sent whose answers are still to be read
  // What was queued since the last sync, one slot per answer to read: the
  // statement name of a PREPARE, empty for anything else.
  struct Slot {
    std::string prepared;
  };
  std::vector<Slot> pending_;
};

}  // namespace

std::unique_ptr<Conn> open_pg(const std::string& url, const ClockOffset* offset) {
  return std::make_unique<PgConn>(url, offset);
}

}  // namespace koukan::router::db
