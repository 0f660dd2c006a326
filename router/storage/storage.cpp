// The storage logic, written once over db::Conn (SQLite and PostgreSQL).
//
// Every operation is one database transaction run by SqlStorage::run():
// writers take the row lock first (PostgreSQL SELECT ... FOR UPDATE; SQLite
// BEGIN IMMEDIATE), then check versions and leases in C++, then write.
// Notifications (on_change / on_append) are fired only after COMMIT.
#include "router/storage/storage.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <thread>

#include "common/base/log.hpp"
#include "common/async/group_commit.hpp"
#include "router/storage/db.hpp"
#include "router/storage/schema_sql.hpp"

namespace koukan::router {

namespace json = boost::json;
using db::Param;

// ---- value helpers ------------------------------------------------------------

const BlobRef* TxRecord::find_blob(std::string_view name) const {
  for (const auto& b : blobs) {
    if (b.name == name) return &b;
  }
  return nullptr;
}

bool TxRecord::is_final() const {
  return final_attempt_reason && *final_attempt_reason != kOneshotReason;
}

BlobSpec BlobSpec::create(std::string name) {
  BlobSpec s;
  s.name = std::move(name);
  s.kind = Kind::create;
  return s;
}
BlobSpec BlobSpec::inline_bytes(std::string name, std::string data) {
  BlobSpec s;
  s.name = std::move(name);
  s.kind = Kind::inline_data;
  s.data = std::move(data);
  return s;
}
BlobSpec BlobSpec::reuse_of(std::string name, std::string src_tx, std::string src_name) {
  BlobSpec s;
  s.name = std::move(name);
  s.kind = Kind::reuse;
  s.reuse_tx = std::move(src_tx);
  s.reuse_name = std::move(src_name);
  return s;
}

namespace {

std::optional<std::int64_t> opt_i(const db::Cell& c) {
  if (c.null) return std::nullopt;
  return c.i;
}
std::optional<std::string> opt_s(const db::Cell& c) {
  if (c.null) return std::nullopt;
  return c.s;
}
json::object parse_object(const std::string& text) {
  json::value v = json::parse(text);
  if (!v.is_object()) throw std::runtime_error("stored json is not an object");
  return std::move(v.as_object());
}
bool has_notification(const json::object& o) {
  auto it = o.find("notification");
  return it != o.end() && !it->value().is_null();
}

// Raised inside a DB transaction to return an error value (rolled back).
struct Fail {
  Error error;
};
[[noreturn]] void fail(Errc c, std::string m) { throw Fail{Error(c, std::move(m))}; }

struct Notification {
  std::string rest_id;
  std::int64_t version;
};
struct AppendEvent {
  std::string rest_id;
  std::string blob;
  BlobState state;
};

// Per-DB-transaction context: the connection plus what to announce after commit.
struct Ctx {
  db::Conn& c;
  std::vector<Notification> changes;
  std::vector<AppendEvent> appends;
  bool rollback = false;  // return the value but do not commit
};

// ---- the implementation ---------------------------------------------------------


class SqlStorage final : public Storage {
 public:
  SqlStorage(bool sqlite, db::ConnFactory factory, StorageOptions opts)
      : sqlite_(sqlite), opts_(std::move(opts)), pool_(factory, opts_.max_connections) {
    if (sqlite_ && opts_.max_read_connections > 0)
      read_pool_ = std::make_unique<db::Pool>(std::move(factory), opts_.max_read_connections);
    if (opts_.chunk_size == 0) opts_.chunk_size = 1 << 20;
  }
  ~SqlStorage() override {
    if (opts_.close_session_on_destroy && session_id_.load() != 0 && !session_dead_.load()) {
      auto r = close_session();
      if (!r.ok()) log::warn("storage: close session at exit: {}", r.error().message);
    }
  }

  db::ClockOffset* clock() { return &offset_; }

  Result<void> init_schema() {
    try {
      auto conn = pool_.acquire();
      conn->exec_script(sqlite_ ? schema::kSqlite : schema::kPostgres);
      return {};
    } catch (const std::exception& e) {
      return Error(Errc::unavailable, std::string("storage: creating schema: ") + e.what());
    }
  }

  std::string_view engine() const override { return sqlite_ ? "sqlite" : "postgresql"; }

  void set_clock_offset_for_test(std::chrono::seconds s) override { offset_.store(s.count()); }

  // -- sessions --

  Result<std::int64_t> open_session(const std::string& uri, std::chrono::seconds ttl) override {
    if (session_id_.load() != 0) return Error(Errc::conflict, "storage session already open");
    auto r = run<std::int64_t>(true, [&](Ctx& x) -> std::int64_t {
      // Live sessions with our uri are crashed predecessors of this replica.
      x.c.exec("UPDATE Sessions SET live = FALSE, last_update = {now} WHERE live AND uri = $1",
               {Param::text(uri)});
      reap(x, ttl);
      auto rows = x.c.query(
          "INSERT INTO Sessions (creation, live, last_update, uri) "
          "VALUES ({now}, TRUE, {now}, $1) RETURNING id",
          {Param::text(uri)});
      return rows.at(0).at(0).i;
    });
    if (r.ok()) {
      session_id_.store(*r);
      log::info("storage: session {} opened ({}, {})", *r, engine(), uri);
    }
    return r;
  }

  std::optional<std::int64_t> session_id() const override {
    auto id = session_id_.load();
    if (id == 0) return std::nullopt;
    return id;
  }

  Result<void> refresh_session() override {
    const auto me = session_id_.load();
    if (me == 0) return Error(Errc::unavailable, "no storage session");
    auto r = run<bool>(true, [&](Ctx& x) {
      return x.c.exec("UPDATE Sessions SET last_update = {now} WHERE id = $1 AND live",
                      {Param::int64(me)}) == 1;
    });
    if (!r.ok()) return r.error();
    if (!*r) {
      session_dead_.store(true);
      return Error(Errc::unavailable, "storage session " + std::to_string(me) + " was marked dead");
    }
    return {};
  }

  Result<std::int64_t> reap_sessions(std::chrono::seconds ttl) override {
    return run<std::int64_t>(true, [&](Ctx& x) { return reap(x, ttl); });
  }

  Result<void> close_session() override {
    const auto me = session_id_.load();
    if (me == 0) return {};
    auto r = run<bool>(true, [&](Ctx& x) {
      x.c.exec("UPDATE Sessions SET live = FALSE, last_update = {now} WHERE id = $1 AND live",
               {Param::int64(me)});
      return true;
    });
    if (!r.ok()) return r.error();
    session_dead_.store(true);
    return {};
  }

  // -- transactions --

  Result<TxRecord> create(const CreateSpec& spec) override {
    if (spec.rest_id.empty()) return Error(Errc::bad_request, "empty rest_id");
    std::set<std::string> names;
    for (const auto& b : spec.blobs) {
      if (b.name.empty()) return Error(Errc::bad_request, "empty blob name");
      if (!names.insert(b.name).second) return Error(Errc::bad_request, "duplicate blob " + b.name);
      if (spec.message_builder && b.name == kBodyBlobName) {
        return Error(Errc::bad_request, "message builder blob may not be the transaction body");
      }
      if (!spec.message_builder && b.name != kBodyBlobName) {
        return Error(Errc::bad_request, "blob " + b.name + " without a message builder");
      }
    }
    const auto me = session_id_.load();
    if (spec.leased && !own_live_session()) return Error(Errc::unavailable, "no live storage session");
    const std::string json_text = json::serialize(spec.json);
    std::string mb_text;
    if (spec.message_builder) mb_text = json::serialize(*spec.message_builder);
    const bool notification = has_notification(spec.json);

    return run<TxRecord>(true, [&](Ctx& x) {
      if (spec.leased) check_session_live(x, me);
      const Param mb = spec.message_builder ? Param::text(mb_text) : Param::null();
      const Param reason =
          spec.final_attempt_reason ? Param::text(*spec.final_attempt_reason) : Param::null();
      const Param lease_id = spec.leased ? Param::int64(me) : Param::null();
      const Param lease_live = spec.leased ? Param::boolean(true) : Param::null();
      const Param creator = me ? Param::int64(me) : Param::null();
      db::Rows rows;
      try {
        rows = x.c.query(
            "INSERT INTO Transactions (rest_id, json, input_done, final_attempt_reason, "
            "creation_session_id, inflight_session_id, inflight_session_live, creation, "
            "last_update, version, message_builder, notification, no_final_notification) "
            "VALUES ($1, $2, FALSE, $3, $4, $5, $6, {now}, {now}, 1, $7, $8, FALSE) RETURNING id",
            {Param::text(spec.rest_id), Param::text(json_text), reason, creator, lease_id,
             lease_live, mb, Param::boolean(notification)});
      } catch (const db::DbError& e) {
        if (e.kind == db::DbError::Kind::unique) fail(Errc::conflict, "duplicate transaction id");
        throw;
      }
      const std::int64_t id = rows.at(0).at(0).i;
      bool all_final = !spec.blobs.empty();
      for (const auto& b : spec.blobs) {
        all_final = add_blob(x, id, spec.rest_id, b) && all_final;
      }
      if (all_final) {
        x.c.exec_later("UPDATE Transactions SET input_done = TRUE WHERE id = $1", {Param::int64(id)});
      }
      std::string first_responses;
      if (spec.leased && spec.start_attempt) {
        const bool oneshot = !spec.final_attempt_reason && !spec.json.contains("retry");
        // A new transaction: version 1, no attempt yet.
        claim(x, id, me, /*attempt=*/true, oneshot, Claimed{1, 0});
        if (spec.first_attempt_responses) {
          first_responses = json::serialize(*spec.first_attempt_responses);
          x.c.exec_later(
              "UPDATE TransactionAttempts SET responses = $1 WHERE transaction_id = $2 AND attempt_id = 1",
              {Param::text(first_responses), Param::int64(id)});
        }
      }
      TxRecord rec = load_in(x, spec.rest_id, /*last=*/true).value();
      x.changes.push_back({spec.rest_id, rec.version});
      return rec;
    });
  }

  Result<TxRecord> load(const std::string& rest_id) override {
    return run<TxRecord>(false, [&](Ctx& x) {
      auto r = load_in(x, rest_id);
      if (!r) fail(Errc::not_found, "unknown transaction");
      return std::move(*r);
    }, /*single_statement=*/!sqlite_);
  }

  Result<TxStatus> status(const std::string& rest_id) override {
    const auto me = session_id_.load();
    return run<TxStatus>(false, [&](Ctx& x) {
      auto rows = x.c.query(
          "SELECT t.version, t.inflight_session_id, s.uri, t.final_attempt_reason, t.input_done "
          "FROM Transactions t LEFT JOIN Sessions s ON s.id = t.inflight_session_id AND s.live "
          "WHERE t.rest_id = $1",
          {Param::text(rest_id)});
      if (rows.empty()) fail(Errc::not_found, "unknown transaction");
      const auto& r = rows[0];
      TxStatus st;
      st.version = r[0].i;
      const auto lessee = opt_i(r[1]);
      st.leased_by_me = lessee && me != 0 && *lessee == me;
      if (lessee && !st.leased_by_me && !r[2].null) st.owner_session_uri = r[2].s;
      st.final_attempt_reason = opt_s(r[3]);
      st.input_done = !r[4].null && r[4].i != 0;
      return st;
    }, /*single_statement=*/true);
  }

  Result<WriteResult> write(const std::string& rest_id, std::optional<std::int64_t> expected,
                            const TxWrite& w) override {
    const auto me = session_id_.load();
    std::optional<std::string> new_json_text;
    if (w.json) new_json_text = json::serialize(*w.json);
    std::string responses_text;
    if (w.attempt_responses) responses_text = json::serialize(*w.attempt_responses);

    return run<WriteResult>(true, [&](Ctx& x) {
      // Column 8: the latest attempt, where the write sets its responses.
      auto rows = x.c.query(
          w.attempt_responses
              ? "SELECT id, version, json, final_attempt_reason, inflight_session_id, notification, "
                "no_final_notification, message_builder IS NOT NULL, (SELECT MAX(attempt_id) FROM "
                "TransactionAttempts a WHERE a.transaction_id = Transactions.id) FROM Transactions "
                "WHERE rest_id = $1{for_update}"
              : "SELECT id, version, json, final_attempt_reason, inflight_session_id, notification, "
                "no_final_notification, message_builder IS NOT NULL FROM Transactions "
                "WHERE rest_id = $1{for_update}",
          {Param::text(rest_id)});
      if (rows.empty()) fail(Errc::not_found, "unknown transaction");
      const auto& row = rows[0];
      const std::int64_t id = row[0].i;
      const std::int64_t version = row[1].i;
      const auto reason = opt_s(row[3]);
      const auto lessee = opt_i(row[4]);
      bool notification = row[5].i != 0;
      const bool has_mb = row[7].i != 0;
      const bool real_final = reason && *reason != kOneshotReason;

      // Only the owner writes a leased tx; a pure cancel goes straight to the
      // database from any replica (rest-api.md §7.5).
      const bool pure_cancel = w.cancel && !w.json && !w.json_update && !w.attempt_responses &&
                               !w.final_attempt_reason && !w.clear_oneshot && !w.retry_after &&
                               !w.next_attempt_time && !w.release_lease && !w.notification_done &&
                               !w.create_body_if_absent && !w.require_lease &&
                               !w.reuse_body_of;
      if (lessee && *lessee != me && !pure_cancel) {
        auto s = x.c.query("SELECT uri FROM Sessions WHERE id = $1 AND live", {Param::int64(*lessee)});
        if (!s.empty()) fail(Errc::redirect, s[0][0].s);
      }
      if (expected && *expected != version) fail(Errc::precondition_failed, "update conflict");
      const bool need_lease = w.require_lease || w.attempt_responses || w.release_lease;
      if (need_lease && !(lessee && me != 0 && *lessee == me)) {
        fail(Errc::conflict, "transaction is not leased by this session");
      }
      std::optional<json::object> updated_json;
      std::optional<std::string> updated_text;
      if (w.json_update) {
        auto u = w.json_update(parse_object(row[2].s));
        if (!u.ok()) fail(u.error().code, u.error().message);
        updated_text = json::serialize(*u);
        updated_json = std::move(*u);
      }
      const json::object* new_json = w.json ? &*w.json : updated_json ? &*updated_json : nullptr;
      const std::optional<std::string>& new_text = w.json ? new_json_text : updated_text;

      // Assemble "SET a = $n, ..." with parameters.
      std::vector<Param> params;
      std::string set = "version = version + 1, last_update = {now}";
      auto add = [&](const char* col, Param p) {
        params.push_back(p);
        set += ", ";
        set += col;
        set += " = $" + std::to_string(params.size());
      };
      bool changed = w.ping;

      std::optional<json::object> cancelled_json;
      std::string cancelled_text;
      if (new_text) {
        notification = has_notification(*new_json);
        changed = true;
      }
      std::optional<std::string> new_reason;
      if (w.cancel && !real_final) {
        cancelled_json = new_json ? *new_json : parse_object(row[2].s);
        (*cancelled_json)["cancelled"] = true;
        cancelled_text = json::serialize(*cancelled_json);
        new_reason = std::string(kCancelReason);
      }
      if (cancelled_json) {
        add("json", Param::text(cancelled_text));
        changed = true;
      } else if (new_text) {
        add("json", Param::text(*new_text));
      }
      if (new_text || cancelled_json) add("notification", Param::boolean(notification));

      if (w.final_attempt_reason && !new_reason) {
        const std::string& fr = *w.final_attempt_reason;
        if (reason && *reason == fr) {
          // same reason again: nothing to do
        } else if (real_final) {
          fail(Errc::conflict, "final_attempt_reason already set: " + *reason);
        } else {
          new_reason = fr;
        }
      }
      bool nfn_set = false;
      if (new_reason) {
        add("final_attempt_reason", Param::text(*new_reason));
        if (*new_reason != kOneshotReason) {
          add("no_final_notification", Param::boolean(!notification));
          nfn_set = true;
        }
        changed = true;
      } else if (w.clear_oneshot && reason && *reason == kOneshotReason) {
        add("final_attempt_reason", Param::null());
        changed = true;
      }
      if (w.notification_done && !nfn_set) {
        add("no_final_notification", Param::boolean(false));
        changed = true;
      }
      if (w.retry_after) {
        params.push_back(Param::int64(w.retry_after->count()));
        set += ", next_attempt_time = {now} + CAST($" + std::to_string(params.size()) + " AS BIGINT)";
        changed = true;
      } else if (w.next_attempt_time) {
        add("next_attempt_time", Param::int64(*w.next_attempt_time));
        changed = true;
      }
      if (w.release_lease) {
        set += ", inflight_session_id = NULL, inflight_session_live = NULL";
        changed = true;
      }
      WriteResult out;
      if (w.create_body_if_absent) {
        auto body = x.c.query(
            "SELECT blob_id FROM TransactionBlobRefs WHERE transaction_id = $1 AND rest_id = $2",
            {Param::int64(id), Param::text(kBodyBlobName)});
        if (body.empty()) {
          if (has_mb) fail(Errc::bad_request, "transaction body is a message builder");
          add_blob(x, id, rest_id, BlobSpec::create(std::string(kBodyBlobName)));
          set += ", input_done = FALSE";
          out.body_created = true;
          changed = true;
        }
      }
      if (w.reuse_body_of) {
        auto body = x.c.query(
            "SELECT blob_id FROM TransactionBlobRefs WHERE transaction_id = $1 AND rest_id = $2",
            {Param::int64(id), Param::text(kBodyBlobName)});
        if (body.empty()) {
          if (has_mb) fail(Errc::bad_request, "transaction body is a message builder");
          add_blob(x, id, rest_id,
                   BlobSpec::reuse_of(std::string(kBodyBlobName), *w.reuse_body_of,
                                      std::string(kBodyBlobName)));
          auto open_blobs = x.c.query(
              "SELECT 1 FROM TransactionBlobRefs r JOIN Blob b ON b.id = r.blob_id "
              "WHERE r.transaction_id = $1 AND (b.length IS NULL OR b.length != b.stored_length)",
              {Param::int64(id)});
          set += open_blobs.empty() ? ", input_done = TRUE" : ", input_done = FALSE";
          changed = true;
        }
      }
      if (w.attempt_responses) {
        if (row[8].null) fail(Errc::conflict, "transaction has no attempt");
        x.c.exec_later(
            "UPDATE TransactionAttempts SET responses = $1, last_update = {now} "
            "WHERE transaction_id = $2 AND attempt_id = $3",
            {Param::text(responses_text), Param::int64(id), Param::int64(row[8].i)});
        changed = true;
      }
      if (!changed) {
        out.version = version;
        if (w.return_record) out.record = load_in(x, rest_id, /*last=*/true);
        return out;
      }
      params.push_back(Param::int64(id));
      const std::string sql = "UPDATE Transactions SET " + set + " WHERE id = $" +
                              std::to_string(params.size());
      x.c.exec_later(sql, params);
      // The row is this transaction's (locked by the SELECT above, or by
      // SQLite's write lock): its version goes up by exactly one.
      out.version = version + 1;
      out.changed = true;
      x.changes.push_back({rest_id, out.version});
      if (w.return_record) out.record = load_in(x, rest_id, /*last=*/true);
      return out;
    });
  }

  // -- blobs --

  Result<AppendResult> append_blob(const AppendRequest& req) override {
    if (req.offset < 0) return Error(Errc::bad_request, "negative offset");
    if (req.total && *req.total < 0) return Error(Errc::bad_request, "negative total");
    const auto me = session_id_.load();
    return run<AppendResult>(true, [&](Ctx& x) {
      auto txr = x.c.query(
          "SELECT id, inflight_session_id, message_builder IS NOT NULL, version, input_done "
          "FROM Transactions WHERE rest_id = $1{for_update}",
          {Param::text(req.tx_rest_id)});
      if (txr.empty()) fail(Errc::not_found, "unknown transaction");
      const std::int64_t tx_id = txr[0][0].i;
      const auto lessee = opt_i(txr[0][1]);
      const bool has_mb = txr[0][2].i != 0;
      const std::int64_t tx_version = txr[0][3].i;
      const bool tx_input_done = txr[0][4].i != 0;
      if (lessee && *lessee != me) {
        auto s = x.c.query("SELECT uri FROM Sessions WHERE id = $1 AND live", {Param::int64(*lessee)});
        if (!s.empty()) fail(Errc::redirect, s[0][0].s);
      }
      AppendResult out;
      auto br = x.c.query(
          "SELECT b.id, b.stored_length, b.length FROM TransactionBlobRefs r "
          "JOIN Blob b ON b.id = r.blob_id WHERE r.transaction_id = $1 AND r.rest_id = $2{for_update}",
          {Param::int64(tx_id), Param::text(req.blob_name)});
      std::int64_t blob_id = 0, stored = 0;
      std::optional<std::int64_t> total;
      bool body_created = false;
      if (br.empty()) {
        const bool may_create = req.create_body_if_absent && req.blob_name == kBodyBlobName &&
                                req.offset == 0;
        if (!may_create) fail(Errc::not_found, "unknown blob");
        if (has_mb) fail(Errc::conflict, "transaction body is a message_builder spec: PUT its blobs");
        add_blob(x, tx_id, req.tx_rest_id, BlobSpec::create(std::string(kBodyBlobName)));
        body_created = true;
        br = x.c.query(
            "SELECT b.id, b.stored_length, b.length FROM TransactionBlobRefs r "
            "JOIN Blob b ON b.id = r.blob_id WHERE r.transaction_id = $1 AND r.rest_id = $2",
            {Param::int64(tx_id), Param::text(req.blob_name)});
      }
      blob_id = br.at(0)[0].i;
      stored = br[0][1].i;
      total = opt_i(br[0][2]);
      out.blob = {blob_id, stored, total, total && *total == stored};
      const bool was_final = out.blob.finalized;

      // rest-api.md §8.2
      const auto n = static_cast<std::int64_t>(req.data.size());
      const std::int64_t end = req.offset + n;
      const bool bad =
          req.offset > stored ||                          // gap
          (total && req.total != total) ||                // total fixed once declared
          (req.total && (*req.total < stored || end > *req.total));  // beyond the total
      if (bad) {
        out.ok = false;
        x.rollback = true;  // nothing happened (not even a body creation)
        return out;
      }
      const std::int64_t skip = stored - req.offset;  // overlap, dropped unread
      if (skip < n) {
        std::string_view tail = req.data.substr(static_cast<std::size_t>(skip));
        std::int64_t off = stored;
        while (!tail.empty()) {
          const std::size_t k = std::min(tail.size(), opts_.chunk_size);
          x.c.exec_later("INSERT INTO BlobChunks (blob_id, chunk_offset, data) VALUES ($1, $2, $3)",
                         {Param::int64(blob_id), Param::int64(off), Param::blob(tail.substr(0, k))});
          off += static_cast<std::int64_t>(k);
          tail.remove_prefix(k);
        }
        stored = off;
      }
      if (req.total && !total) total = req.total;
      if (stored != out.blob.stored_length || total != out.blob.total) {
        x.c.exec_later("UPDATE Blob SET stored_length = $1, length = $2, last_update = {now} WHERE id = $3",
                       {Param::int64(stored), total ? Param::int64(*total) : Param::null(),
                        Param::int64(blob_id)});
      }
      out.blob = {blob_id, stored, total, total && *total == stored};
      // The tx changes (one version bump) if its body was created here or
      // this append completed its last blob.
      bool complete = false;
      if (out.blob.finalized && !was_final) {
        auto open = x.c.query(
            "SELECT COUNT(*) FROM TransactionBlobRefs r JOIN Blob b ON b.id = r.blob_id "
            "WHERE r.transaction_id = $1 AND (b.length IS NULL OR b.stored_length <> b.length)",
            {Param::int64(tx_id)});
        complete = open.at(0).at(0).i == 0;
      }
      if (body_created || complete) {
        x.c.exec_later(
            "UPDATE Transactions SET input_done = $2, version = version + 1, "
            "last_update = {now} WHERE id = $1",
            {Param::int64(tx_id), Param::boolean(complete)});
        out.tx_version = tx_version + 1;  // the row is locked: see write()
        out.input_done = complete;
      } else {
        out.input_done = tx_input_done;
      }
      if (out.tx_version) x.changes.push_back({req.tx_rest_id, *out.tx_version});
      x.appends.push_back({req.tx_rest_id, req.blob_name, out.blob});
      return out;
    });
  }

  Result<BlobState> blob_state(std::int64_t blob_id) override {
    return run<BlobState>(false, [&](Ctx& x) {
      auto rows = x.c.query("SELECT stored_length, length FROM Blob WHERE id = $1",
                            {Param::int64(blob_id)});
      if (rows.empty()) fail(Errc::not_found, "unknown blob");
      BlobState st{blob_id, rows[0][0].i, opt_i(rows[0][1]), false};
      st.finalized = st.total && *st.total == st.stored_length;
      return st;
    }, /*single_statement=*/true);
  }

  Result<std::string> read_blob(std::int64_t blob_id, std::int64_t offset,
                                std::size_t max_len) override {
    if (offset < 0) return Error(Errc::bad_request, "negative offset");
    return run<std::string>(false, [&](Ctx& x) {
      auto b = x.c.query("SELECT stored_length FROM Blob WHERE id = $1", {Param::int64(blob_id)});
      if (b.empty()) fail(Errc::not_found, "unknown blob");
      const std::int64_t stored = b[0][0].i;
      std::string out;
      if (offset >= stored || max_len == 0) return out;
      const std::int64_t end = std::min<std::int64_t>(
          stored, offset + static_cast<std::int64_t>(std::min<std::size_t>(max_len, INT64_MAX / 2)));
      auto rows = x.c.query(
          "SELECT chunk_offset, data FROM BlobChunks WHERE blob_id = $1 AND chunk_offset < $3 "
          "AND chunk_offset >= COALESCE((SELECT MAX(chunk_offset) FROM BlobChunks "
          "WHERE blob_id = $1 AND chunk_offset <= $2), 0) ORDER BY chunk_offset",
          {Param::int64(blob_id), Param::int64(offset), Param::int64(end)});
      out.reserve(static_cast<std::size_t>(end - offset));
      for (const auto& r : rows) {
        const std::int64_t co = r[0].i;
        const std::string& data = r[1].s;
        const std::int64_t from = std::max(offset, co);
        const std::int64_t to = std::min(end, co + static_cast<std::int64_t>(data.size()));
        if (from >= to) continue;
        if (from != offset + static_cast<std::int64_t>(out.size())) {
          fail(Errc::internal, "blob " + std::to_string(blob_id) + " has a hole at " +
                                   std::to_string(offset + static_cast<std::int64_t>(out.size())));
        }
        out.append(data, static_cast<std::size_t>(from - co), static_cast<std::size_t>(to - from));
      }
      if (static_cast<std::int64_t>(out.size()) != end - offset) {
        fail(Errc::internal, "blob " + std::to_string(blob_id) + " is shorter than its length");
      }
      return out;
    });
  }

  // -- attempts --

  Result<StartedAttempt> start_attempt(const std::string& rest_id,
                                       std::optional<std::int64_t> expected, bool oneshot) override {
    const auto me = session_id_.load();
    if (!own_live_session()) return Error(Errc::unavailable, "no live storage session");
    return run<StartedAttempt>(true, [&](Ctx& x) {
      check_session_live(x, me);
      auto rows = x.c.query(
          "SELECT id, version, inflight_session_id, final_attempt_reason, (SELECT "
          "MAX(attempt_id) FROM TransactionAttempts a WHERE a.transaction_id = Transactions.id) "
          "FROM Transactions WHERE rest_id = $1{for_update}",
          {Param::text(rest_id)});
      if (rows.empty()) fail(Errc::not_found, "unknown transaction");
      const std::int64_t id = rows[0][0].i;
      if (expected && *expected != rows[0][1].i) fail(Errc::precondition_failed, "update conflict");
      const auto lessee = opt_i(rows[0][2]);
      if (lessee && *lessee != me) {
        auto s = x.c.query("SELECT uri FROM Sessions WHERE id = $1 AND live", {Param::int64(*lessee)});
        if (!s.empty()) fail(Errc::redirect, s[0][0].s);
        fail(Errc::conflict, "transaction is leased by another session");
      }
      const bool set_oneshot = oneshot && rows[0][3].null;
      StartedAttempt out = claim(x, id, me, /*attempt=*/true, set_oneshot,
                                 Claimed{rows[0][1].i, rows[0][4].null ? 0 : rows[0][4].i});
      // The caller goes on with the record: read in the same round trip.
      out.record = load_in(x, rest_id, /*last=*/true);
      x.changes.push_back({rest_id, out.version});
      return out;
    });
  }

  Result<std::vector<Dequeued>> dequeue(std::size_t max) override {
    const auto me = session_id_.load();
    if (!own_live_session()) return Error(Errc::unavailable, "no live storage session");
    if (max == 0) return std::vector<Dequeued>{};
    return run<std::vector<Dequeued>>(true, [&](Ctx& x) {
      check_session_live(x, me);
      std::vector<Dequeued> out;
      // Each row locked (or SQLite's write lock): its version and last
      // attempt are exact for claim().
      auto due = x.c.query(
          "SELECT id, rest_id, version, (SELECT MAX(attempt_id) FROM TransactionAttempts a "
          "WHERE a.transaction_id = Transactions.id) FROM Transactions WHERE inflight_session_id IS NULL "
          "AND final_attempt_reason IS NULL AND (input_done OR creation_session_id = $1) "
          "AND (next_attempt_time IS NULL OR next_attempt_time <= {now}) "
          "ORDER BY next_attempt_time NULLS FIRST LIMIT $2{skip_locked}",
          {Param::int64(me), Param::int64(static_cast<std::int64_t>(max))});
      std::vector<std::pair<db::Row, bool>> rows;
      for (auto& r : due) rows.emplace_back(std::move(r), false);
      if (rows.size() < max) {
        auto late = x.c.query(
            "SELECT id, rest_id, version, NULL FROM Transactions WHERE inflight_session_id IS NULL "
            "AND notification AND no_final_notification ORDER BY id LIMIT $1{skip_locked}",
            {Param::int64(static_cast<std::int64_t>(max - rows.size()))});
        for (auto& r : late) rows.emplace_back(std::move(r), true);
      }
      for (const auto& [r, notif_only] : rows) {
        StartedAttempt a = claim(x, r[0].i, me, !notif_only, false,
                                 Claimed{r[2].i, r[3].null ? 0 : r[3].i});
        Dequeued d;
        d.tx = load_in(x, r[1].s).value();
        d.attempt_id = a.attempt_id;
        d.notification_only = notif_only;
        x.changes.push_back({d.tx.rest_id, d.tx.version});
        out.push_back(std::move(d));
      }
      return out;
    });
  }

  // -- GC --

  Result<GcStats> gc(std::chrono::seconds tx_ttl, std::chrono::seconds session_ttl,
                     std::size_t batch) override {
    if (batch == 0) batch = 1;
    GcStats st;
    const auto lim = Param::int64(static_cast<std::int64_t>(batch));
    auto loop = [&](const char* sql, Param ttl, std::int64_t* count) -> Result<void> {
      for (;;) {
        auto r = run<std::int64_t>(true, [&](Ctx& x) { return x.c.exec(sql, {ttl, lim}); });
        if (!r.ok()) return r.error();
        *count += *r;
        if (*r < static_cast<std::int64_t>(batch)) return {};
      }
    };
    // Unleased, idle for tx_ttl, and finished (incl. oneshot) or never
    // input-complete; a pending late DSN keeps the tx.
    auto r = loop(
        "DELETE FROM Transactions WHERE id IN (SELECT id FROM Transactions "
        "WHERE inflight_session_id IS NULL "
        "AND (final_attempt_reason IS NOT NULL OR NOT input_done) "
        "AND NOT (notification AND no_final_notification) "
        "AND last_update < {now} - CAST($1 AS BIGINT) LIMIT $2)",
        Param::int64(tx_ttl.count()), &st.transactions);
    if (!r.ok()) return r.error();
    // Unreferenced blobs (refcount 0); their chunks go by cascade. A blob is
    // always created together with its first ref, in one DB transaction.
    r = loop(
        "DELETE FROM Blob WHERE id IN (SELECT b.id FROM Blob b WHERE NOT EXISTS "
        "(SELECT 1 FROM TransactionBlobRefs r WHERE r.blob_id = b.id) "
        "AND b.last_update <= {now} - CAST($1 AS BIGINT) LIMIT $2)",
        Param::int64(0), &st.blobs);
    if (!r.ok()) return r.error();
    r = loop(
        "DELETE FROM Sessions WHERE id IN (SELECT id FROM Sessions WHERE NOT live "
        "AND last_update < {now} - CAST($1 AS BIGINT) LIMIT $2)",
        Param::int64(session_ttl.count()), &st.sessions);
    if (!r.ok()) return r.error();
    if (st.transactions || st.blobs || st.sessions) {
      log::info("storage gc: {} transactions, {} blobs, {} sessions deleted", st.transactions,
                st.blobs, st.sessions);
    }
    return st;
  }

 private:
  bool own_live_session() const { return session_id_.load() != 0 && !session_dead_.load(); }

  void check_session_live(Ctx& x, std::int64_t me) {
    auto s = x.c.query("SELECT 1 FROM Sessions WHERE id = $1 AND live", {Param::int64(me)});
    if (s.empty()) {
      session_dead_.store(true);
      fail(Errc::unavailable, "storage session " + std::to_string(me) + " is dead");
    }
  }

  std::int64_t reap(Ctx& x, std::chrono::seconds ttl) {
    return x.c.exec(
        "UPDATE Sessions SET live = FALSE, last_update = {now} "
        "WHERE live AND last_update < {now} - CAST($1 AS BIGINT)",
        {Param::int64(ttl.count())});
  }

  // The claimed row as the caller read it, under its lock.
  struct Claimed {
    std::int64_t version;
    std::int64_t last_attempt;  // 0: none
  };
  // Leases tx `id` to `me`, bumps the version, and (attempt) inserts attempt
  // max+1. It needs no answers (the caller knows the row): its statements
  // travel with the transaction's next one.
  StartedAttempt claim(Ctx& x, std::int64_t id, std::int64_t me, bool attempt, bool set_oneshot,
                       Claimed known) {
    StartedAttempt out;
    if (attempt) {
      out.attempt_id = known.last_attempt + 1;
      x.c.exec_later(
          "INSERT INTO TransactionAttempts (transaction_id, attempt_id, creation, last_update) "
          "VALUES ($1, $2, {now}, {now})",
          {Param::int64(id), Param::int64(out.attempt_id)});
    }
    x.c.exec_later(
        set_oneshot
            ? "UPDATE Transactions SET inflight_session_id = $1, inflight_session_live = TRUE, "
              "version = version + 1, last_update = {now}, final_attempt_reason = 'oneshot' "
              "WHERE id = $2"
            : "UPDATE Transactions SET inflight_session_id = $1, inflight_session_live = TRUE, "
              "version = version + 1, last_update = {now} WHERE id = $2",
        {Param::int64(me), Param::int64(id)});
    out.version = known.version + 1;
    return out;
  }

  // Inserts the blob (unless reused) and the ref. Returns finalized.
  bool add_blob(Ctx& x, std::int64_t tx_id, const std::string& tx_rest_id, const BlobSpec& b) {
    std::int64_t blob_id = 0;
    bool finalized = false;
    switch (b.kind) {
      case BlobSpec::Kind::create: {
        auto r = x.c.query(
            "INSERT INTO Blob (length, stored_length, creation, last_update) "
            "VALUES (NULL, 0, {now}, {now}) RETURNING id",
            {});
        blob_id = r.at(0).at(0).i;
        break;
      }
      case BlobSpec::Kind::inline_data: {
        const auto n = static_cast<std::int64_t>(b.data.size());
        auto r = x.c.query(
            "INSERT INTO Blob (length, stored_length, creation, last_update) "
            "VALUES ($1, $1, {now}, {now}) RETURNING id",
            {Param::int64(n)});
        blob_id = r.at(0).at(0).i;
        std::string_view rest = b.data;
        std::int64_t off = 0;
        while (!rest.empty()) {
          const std::size_t k = std::min(rest.size(), opts_.chunk_size);
          x.c.exec_later("INSERT INTO BlobChunks (blob_id, chunk_offset, data) VALUES ($1, $2, $3)",
                         {Param::int64(blob_id), Param::int64(off), Param::blob(rest.substr(0, k))});
          off += static_cast<std::int64_t>(k);
          rest.remove_prefix(k);
        }
        finalized = true;
        break;
      }
      case BlobSpec::Kind::reuse: {
        auto r = x.c.query(
            "SELECT b.id, b.stored_length, b.length FROM TransactionBlobRefs r "
            "JOIN Blob b ON b.id = r.blob_id WHERE r.tx_rest_id = $1 AND r.rest_id = $2",
            {Param::text(b.reuse_tx), Param::text(b.reuse_name)});
        if (r.empty()) fail(Errc::not_found, "unknown blob to reuse: " + b.reuse_tx + "/" + b.reuse_name);
        if (r[0][2].null || r[0][2].i != r[0][1].i) {
          fail(Errc::conflict, "blob to reuse is not finalized: " + b.reuse_tx + "/" + b.reuse_name);
        }
        blob_id = r[0][0].i;
        finalized = true;
        break;
      }
    }
    x.c.exec_later(
        "INSERT INTO TransactionBlobRefs (transaction_id, tx_rest_id, blob_id, rest_id) "
        "VALUES ($1, $2, $3, $4)",
        {Param::int64(tx_id), Param::text(tx_rest_id), Param::int64(blob_id), Param::text(b.name)});
    return finalized;
  }

  // The row, its latest attempt and the lessee's URI; on PostgreSQL also the
  // blob refs as JSON, so that a load is one statement (its own consistent
  // snapshot: no BEGIN/COMMIT round trips). SQLite reads the refs with a
  // second query in a read transaction (measured a little faster there).
  static constexpr const char* kLoadSqlite =
      "SELECT t.id, t.rest_id, t.version, t.json, t.final_attempt_reason, t.input_done, "
      "t.creation, t.last_update, t.next_attempt_time, t.message_builder, t.notification, "
      "t.no_final_notification, t.creation_session_id, t.inflight_session_id, s.uri, "
      "a.attempt_id, a.responses, {now}, NULL "
      "FROM Transactions t "
      "LEFT JOIN Sessions s ON s.id = t.inflight_session_id AND s.live "
      "LEFT JOIN TransactionAttempts a ON a.transaction_id = t.id AND a.attempt_id = "
      "(SELECT MAX(attempt_id) FROM TransactionAttempts m WHERE m.transaction_id = t.id) "
      "WHERE t.rest_id = $1";
  static constexpr const char* kLoadPostgres =
      "SELECT t.id, t.rest_id, t.version, t.json, t.final_attempt_reason, t.input_done, "
      "t.creation, t.last_update, t.next_attempt_time, t.message_builder, t.notification, "
      "t.no_final_notification, t.creation_session_id, t.inflight_session_id, s.uri, "
      "a.attempt_id, a.responses, {now}, "
      "COALESCE((SELECT json_agg(json_build_array(r.rest_id, r.blob_id, b.stored_length, b.length))::text "
      " FROM TransactionBlobRefs r JOIN Blob b ON b.id = r.blob_id WHERE r.transaction_id = t.id), '[]') "
      "FROM Transactions t "
      "LEFT JOIN Sessions s ON s.id = t.inflight_session_id AND s.live "
      "LEFT JOIN TransactionAttempts a ON a.transaction_id = t.id AND a.attempt_id = "
      "(SELECT MAX(attempt_id) FROM TransactionAttempts m WHERE m.transaction_id = t.id) "
      "WHERE t.rest_id = $1";

  // last: the write's last statement (Conn::query_last; PostgreSQL only, its
  // load is one statement): nothing may fail the transaction after it.
  std::optional<TxRecord> load_in(Ctx& x, const std::string& rest_id, bool last = false) {
    const auto me = session_id_.load();
    auto rows = sqlite_ ? x.c.query(kLoadSqlite, {Param::text(rest_id)})
                        : last ? x.c.query_last(kLoadPostgres, {Param::text(rest_id)})
                               : x.c.query(kLoadPostgres, {Param::text(rest_id)});
    if (rows.empty()) return std::nullopt;
    const auto& r = rows[0];
    TxRecord t;
    t.id = r[0].i;
    t.rest_id = r[1].s;
    t.version = r[2].i;
    t.json = parse_object(r[3].s);
    t.final_attempt_reason = opt_s(r[4]);
    t.input_done = !r[5].null && r[5].i != 0;
    t.creation = r[6].i;
    t.last_update = r[7].i;
    t.next_attempt_time = opt_i(r[8]);
    if (!r[9].null) t.message_builder = parse_object(r[9].s);
    t.notification = r[10].i != 0;
    t.no_final_notification = r[11].i != 0;
    t.creation_session_id = opt_i(r[12]);
    const auto lessee = opt_i(r[13]);
    t.leased = lessee.has_value();
    t.leased_by_me = lessee && me != 0 && *lessee == me;
    if (lessee && !t.leased_by_me && !r[14].null) t.owner_session_uri = r[14].s;
    t.attempt_count = r[15].null ? 0 : r[15].i;
    if (!r[16].null) t.attempt_responses = parse_object(r[16].s);
    t.now = r[17].i;
    if (sqlite_) {
      auto refs = x.c.query(
          "SELECT r.rest_id, r.blob_id, b.stored_length, b.length FROM TransactionBlobRefs r "
          "JOIN Blob b ON b.id = r.blob_id WHERE r.transaction_id = $1 ORDER BY r.rest_id",
          {Param::int64(t.id)});
      for (const auto& b : refs) {
        BlobRef ref;
        ref.name = b[0].s;
        ref.blob_id = b[1].i;
        ref.stored_length = b[2].i;
        ref.total = opt_i(b[3]);
        ref.finalized = ref.total && *ref.total == ref.stored_length;
        t.blobs.push_back(std::move(ref));
      }
    } else {
      // [[name, blob_id, stored_length, length|null], ...]
      json::value refs = json::parse(r[18].s);
      if (!refs.is_array()) throw std::runtime_error("blob refs are not an array");
      for (const auto& e : refs.as_array()) {
        const auto& a = e.as_array();
        BlobRef ref;
        ref.name = std::string(a.at(0).as_string());
        ref.blob_id = a.at(1).to_number<std::int64_t>();
        ref.stored_length = a.at(2).to_number<std::int64_t>();
        if (!a.at(3).is_null()) ref.total = a.at(3).to_number<std::int64_t>();
        ref.finalized = ref.total && *ref.total == ref.stored_length;
        t.blobs.push_back(std::move(ref));
      }
      std::sort(t.blobs.begin(), t.blobs.end(),
                [](const BlobRef& a, const BlobRef& b) { return a.name < b.name; });
    }
    return t;
  }

  // Runs f in one DB transaction, retrying on busy/deadlock/lost connection.
  template <class T, class F>
  // single_statement (reads only): f runs one statement, which is its own
  // consistent snapshot: no BEGIN/COMMIT (two PostgreSQL round trips saved).
  Result<T> run(bool write, F&& f, bool single_statement = false) {
    if (tl_batch_owner == this) return run_in_batch<T>(f);
    const bool in_tx = write || !single_statement;
    constexpr int kTries = 5;
    for (int attempt = 0;; ++attempt) {
      std::optional<db::Pool::Lease> conn;
      try {
        conn.emplace((!write && read_pool_ ? *read_pool_ : pool_).acquire());
        Ctx x{**conn, {}, {}, false};
        if (in_tx) (*conn)->begin(write);
        T value = f(x);
        if (!in_tx) {
          // nothing to commit or roll back
        } else if (x.rollback) {
          (*conn)->rollback();
        } else {
          (*conn)->commit();
          announce(x);
        }
        return value;
      } catch (const Fail& e) {
        if (conn) (*conn)->rollback();
        return e.error;
      } catch (const db::DbError& e) {
        if (conn) {
          (*conn)->rollback();
          if (e.kind == db::DbError::Kind::connection) conn->mark_broken();
        }
        const bool transient =
            e.kind == db::DbError::Kind::busy || e.kind == db::DbError::Kind::connection;
        if (transient && attempt + 1 < kTries) {
          backoff(attempt);
          continue;
        }
        log::error("storage: {}", e.what());
        return Error(transient ? Errc::unavailable : Errc::internal, e.what());
      } catch (const std::exception& e) {
        if (conn) (*conn)->rollback();
        log::error("storage: {}", e.what());
        return Error(Errc::internal, std::string("storage: ") + e.what());
      }
    }
  }

  static void backoff(int attempt) {
    thread_local std::minstd_rand rng{std::random_device{}()};
    const int base = 1 << std::min(attempt + 1, 8);  // ms
    std::uniform_int_distribution<int> d(base, 2 * base);
    std::this_thread::sleep_for(std::chrono::milliseconds(d(rng)));
  }

  // -- group commit (SQLite): BlockingPool's GroupCommit hooks --
  // A batch is one write transaction on the pool's single thread; each call
  // inside it is a SAVEPOINT (a failed call rolls back only itself), its
  // notifications wait for the batch's COMMIT.
  struct Batch {
    std::optional<db::Pool::Lease> lease;
    std::vector<Notification> changes;
    std::vector<AppendEvent> appends;
    bool failed = false;  // a call hit a database error: commit() refuses
    void clear() {
      lease.reset();
      changes.clear();
      appends.clear();
      failed = false;
    }
  };
  // The batch open on this thread, and whose it is.
  static inline thread_local const SqlStorage* tl_batch_owner = nullptr;
  static inline thread_local Batch* tl_batch = nullptr;
  class Group final : public GroupCommit {
   public:
    explicit Group(SqlStorage& s) : s_(s) {}
    void begin() override {
      b_.clear();
      b_.lease.emplace(s_.pool_.acquire());
      (*b_.lease)->begin(true);
      tl_batch_owner = &s_;
      tl_batch = &b_;
    }
    void commit() override {
      tl_batch_owner = nullptr;
      tl_batch = nullptr;
      if (b_.failed) throw std::runtime_error("a call of the batch failed in the database");
      (*b_.lease)->commit();
      b_.lease.reset();
      s_.announce(b_.changes, b_.appends);
      b_.clear();
    }
    void abort() noexcept override {
      tl_batch_owner = nullptr;
      tl_batch = nullptr;
      if (b_.lease) (**b_.lease).rollback();
      b_.clear();
    }

   private:
    SqlStorage& s_;
    Batch b_;
  };
  std::unique_ptr<GroupCommit> group_commit() override {
    if (!sqlite_) return nullptr;
    return std::make_unique<Group>(*this);
  }

  template <class T, class F>
  Result<T> run_in_batch(F& f) {
    Batch& b = *tl_batch;
    db::Conn& c = **b.lease;
    // Prepared once per connection (Conn::exec caches statements).
    auto undo = [&] {
      try {
        c.exec("ROLLBACK TO kb", {});
        c.exec("RELEASE kb", {});
      } catch (...) {
        b.failed = true;
      }
    };
    try {
      c.exec("SAVEPOINT kb", {});
      Ctx x{c, {}, {}, false};
      T value = f(x);
      if (x.rollback) {
        undo();
      } else {
        c.exec("RELEASE kb", {});
        for (auto& n : x.changes) b.changes.push_back(std::move(n));
        for (auto& a : x.appends) b.appends.push_back(std::move(a));
      }
      return value;
    } catch (const Fail& e) {
      undo();
      return e.error;
    } catch (const std::exception& e) {
      // The batch will not commit; the pool runs every call again alone,
      // where the normal retry and error reporting apply.
      undo();
      b.failed = true;
      return Error(Errc::unavailable, std::string("storage: ") + e.what());
    }
  }

  void announce(const Ctx& x) { announce(x.changes, x.appends); }
  void announce(const std::vector<Notification>& changes, const std::vector<AppendEvent>& appends) {
    if (opts_.on_change) {
      for (const auto& n : changes) opts_.on_change(n.rest_id, n.version);
    }
    if (opts_.on_append) {
      for (const auto& a : appends) opts_.on_append(a.rest_id, a.blob, a.state);
    }
  }

  const bool sqlite_;
  StorageOptions opts_;
  db::ClockOffset offset_{0};
  db::Pool pool_;
  std::unique_ptr<db::Pool> read_pool_;  // SQLite: read-only calls
  std::atomic<std::int64_t> session_id_{0};
  std::atomic<bool> session_dead_{false};
};

std::string strip_driver(const std::string& url) {
  const auto colon = url.find(':');
  if (colon == std::string::npos) return url;
  const auto plus = url.find('+');
  if (plus == std::string::npos || plus > colon) return url;
  return url.substr(0, plus) + url.substr(colon);
}

}  // namespace

Result<std::unique_ptr<Storage>> open_storage(const std::string& url_in, StorageOptions opts) {
  const std::string url = strip_driver(url_in);
  auto starts = [&](std::string_view p) { return url.rfind(p, 0) == 0; };
  std::unique_ptr<SqlStorage> s;
  if (starts("sqlite:")) {
    std::string path = url.substr(7);
    if (path.rfind("//", 0) == 0) {
      // sqlite://rel, sqlite:///abs, SQLAlchemy's sqlite:////abs
      path.erase(0, 2);
      while (path.size() > 1 && path[0] == '/' && path[1] == '/') path.erase(0, 1);
    }
    if (path.empty()) return Error(Errc::bad_request, "sqlite storage url without a path: " + url_in);
    // Every connection to ":memory:" is a separate database: use one.
    if (path == ":memory:") {
      opts.max_connections = 1;
      opts.max_read_connections = 0;
    }
    const int busy = static_cast<int>(opts.busy_timeout.count());
    // The offset pointer is bound after construction (it lives in the storage).
    auto holder = std::make_shared<db::ClockOffset*>(nullptr);
    db::ConnFactory f = [path, busy, holder] { return db::open_sqlite(path, busy, *holder); };
    s = std::make_unique<SqlStorage>(true, std::move(f), std::move(opts));
    *holder = s->clock();
  } else if (starts("postgresql://") || starts("postgres://")) {
    auto holder = std::make_shared<db::ClockOffset*>(nullptr);
    db::ConnFactory f = [url, holder] { return db::open_pg(url, *holder); };
    s = std::make_unique<SqlStorage>(false, std::move(f), std::move(opts));
    *holder = s->clock();
  } else {
    return Error(Errc::bad_request, "unsupported storage url (sqlite:PATH or postgresql://...): " + url_in);
  }
  auto r = s->init_schema();
  if (!r.ok()) return r.error();
  return std::unique_ptr<Storage>(std::move(s));
}

}  // namespace koukan::router
