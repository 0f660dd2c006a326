// PostgreSQL backend of db::Conn, on libpq in pipeline mode (libpq >= 14;
// libpqxx 6.4 does not offer it, see docs/dependencies.md).
//
// Round trips are what PostgreSQL costs the router (bench/README.md), so:
// - BEGIN is not sent on its own: it goes out in front of the transaction's
//   first statement, in the same pipeline (one round trip for both);
// - a statement's first use prepares it in the same round trip as its run;
// - a read-only transaction's COMMIT is sent without waiting for its
//   answer, which is read (and any error in it ignored: nothing was
//   written) before the connection's next use.
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
    in_tx_ = true;
    begin_pending_ = true;
    write_ = write;
  }

  void commit() override {
    if (!in_tx_) return;
    in_tx_ = false;
    if (begin_pending_) {  // nothing ran: nothing to commit
      begin_pending_ = false;
      return;
    }
    if (!write_) {
      // Read-only: its COMMIT's answer is read before the next use.
      queue_simple("COMMIT");
      sync();
      ++deferred_syncs_;
      return;
    }
    queue_simple("COMMIT");
    sync();
    collect(1, nullptr);
  }

  void rollback() noexcept override {
    if (!in_tx_) return;
    in_tx_ = false;
    if (begin_pending_) {
      begin_pending_ = false;
      return;
    }
    if (!c_ || PQstatus(c_) != CONNECTION_OK) return;
    try {
      queue_simple("ROLLBACK");
      sync();
      collect(1, nullptr);
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

  // A multi-statement script needs the simple query protocol: outside
  // pipeline mode, in one transaction.
  void exec_script(std::string_view sql) override {
    drain_deferred();
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

  // Reads the answers of `n` queued queries and the sync after them. The
  // last one's result is handed to `last` (if any); the first error is
  // thrown once the pipeline is drained up to its sync, its query's index
  // in `failed_at`.
  void collect(int n, ResultPtr* last, int* failed_at = nullptr) {
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
      if (i == n - 1 && last) *last = std::move(r);
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
  // queued (PQsendPrepare) in front of its first run: `queued` counts it,
  // `prepare_at` is its place in the pipeline.
  const std::string& prepared(std::string_view sql, int& queued, int& prepare_at) {
    const std::int64_t off = offset_ ? offset_->load() : 0;
    if (const std::string* name = by_address_.find(sql, off)) return *name;
    std::string text = translate(sql, /*sqlite=*/false, off);
    auto it = names_.find(text);
    if (it == names_.end()) {
      if (names_.size() >= 512) {  // built SQL with unforeseen variety: start over
        queue_simple("DEALLOCATE ALL");
        ++queued;
        names_.clear();
        by_address_.clear();
      }
      std::string name = "k" + std::to_string(++prepared_count_);
      if (PQsendPrepare(c_, name.c_str(), text.c_str(), 0, nullptr) != 1) fail_conn("send");
      prepare_at = queued++;
      it = names_.emplace(std::move(text), std::move(name)).first;
    }
    by_address_.remember(sql, off, &it->second);
    return it->second;
  }

  Rows run(std::string_view sql, const Param* pb, const Param* pe, std::int64_t* changes) {
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
    int queued = 0, prepare_at = -1;
    // BEGIN first: what runs before it in a pipeline is an implicit
    // transaction of its own (a PREPARE's parse already takes a snapshot).
    if (begin_pending_) {
      queue_simple(write_ ? "BEGIN" : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      ++queued;
      begin_pending_ = false;
    }
    const std::string& name = prepared(sql, queued, prepare_at);
    if (PQsendQueryPrepared(c_, name.c_str(), static_cast<int>(n), values.data(), lengths.data(),
                            formats.data(), 0) != 1)
      fail_conn("send");
    sync();
    ResultPtr res;
    int failed_at = -1;
    try {
      collect(queued + 1, &res, &failed_at);
    } catch (...) {
      // The PREPARE itself failed (or never ran): prepare afresh next time.
      if (prepare_at >= 0 && (failed_at < 0 || failed_at <= prepare_at)) forget(name);
      throw;
    }
    if (changes) {
      const char* t = PQcmdTuples(res.get());
      *changes = (t && *t) ? std::strtoll(t, nullptr, 10) : 0;
    }
    const int nrows = PQntuples(res.get()), ncols = PQnfields(res.get());
    std::vector<Oid> types(static_cast<std::size_t>(ncols));
    for (int c = 0; c < ncols; ++c) types[static_cast<std::size_t>(c)] = PQftype(res.get(), c);
    Rows rows;
    rows.reserve(static_cast<std::size_t>(nrows));
    for (int r = 0; r < nrows; ++r) {
      Row row(static_cast<std::size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res.get(), r, c)) continue;
        Cell& cell = row[static_cast<std::size_t>(c)];
        cell.null = false;
        const char* v = PQgetvalue(res.get(), r, c);
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
          default: cell.s.assign(v, static_cast<std::size_t>(PQgetlength(res.get(), r, c))); break;
        }
      }
      rows.push_back(std::move(row));
    }
    return rows;
  }

  // A statement whose PREPARE may have failed: prepare it afresh next time.
  void forget(const std::string& name) {
    for (auto it = names_.begin(); it != names_.end(); ++it) {
      if (&it->second == &name) {
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
};

}  // namespace

std::unique_ptr<Conn> open_pg(const std::string& url, const ClockOffset* offset) {
  return std::make_unique<PgConn>(url, offset);
}

}  // namespace koukan::router::db
