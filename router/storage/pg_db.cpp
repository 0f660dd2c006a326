// PostgreSQL backend of db::Conn (libpqxx 6.4). Parameters are sent as text
// (bytea as hex); the server infers their types from context, so SQL casts
// ambiguous ones (CAST($n AS BIGINT)).
#include <pqxx/binarystring>
#include <pqxx/connection>
#include <pqxx/except>
#include <pqxx/nontransaction>
#include <pqxx/prepared_statement>

#include <unordered_map>
#include <pqxx/result>
#include <pqxx/transaction>

#include "router/storage/db.hpp"

namespace koukan::router::db {
namespace {

// PostgreSQL type oids we decode specially.
constexpr unsigned kOidBool = 16, kOidBytea = 17, kOidInt8 = 20, kOidInt2 = 21, kOidInt4 = 23;

[[noreturn]] void rethrow_pg() {
  try {
    throw;
  } catch (const pqxx::broken_connection& e) {
    throw DbError(DbError::Kind::connection, std::string("postgresql: ") + e.what());
  } catch (const pqxx::unique_violation& e) {
    throw DbError(DbError::Kind::unique, std::string("postgresql: ") + e.what());
  } catch (const pqxx::transaction_rollback& e) {  // deadlock, serialization failure
    throw DbError(DbError::Kind::busy, std::string("postgresql: ") + e.what());
  } catch (const pqxx::in_doubt_error& e) {
    throw DbError(DbError::Kind::connection, std::string("postgresql: ") + e.what());
  } catch (const std::exception& e) {
    throw DbError(DbError::Kind::other, std::string("postgresql: ") + e.what());
  }
}

std::string hex_bytea(std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  out.reserve(2 + s.size() * 2);
  out += "\\x";
  for (unsigned char c : s) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

class PgConn final : public Conn {
 public:
  PgConn(const std::string& url, const ClockOffset* offset) : conn_(url), offset_(offset) {}
  ~PgConn() override { rollback(); }

  void begin(bool write) override {
    try {
      // Writers: READ COMMITTED + row locks. Readers: one consistent snapshot
      // across the (two) queries of a load.
      if (write) {
        tx_ = std::make_unique<pqxx::work>(conn_);
      } else {
        tx_ = std::make_unique<pqxx::transaction<pqxx::repeatable_read, pqxx::read_only>>(conn_);
      }
    } catch (...) {
      rethrow_pg();
    }
  }
  void commit() override {
    try {
      auto tx = std::move(tx_);
      if (tx) tx->commit();
    } catch (...) {
      rethrow_pg();
    }
  }
  void rollback() noexcept override {
    try {
      auto tx = std::move(tx_);
      if (tx) tx->abort();
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
      pqxx::work w(conn_);
      // Serialise concurrent first starts of several replicas.
      w.exec("SELECT pg_advisory_xact_lock(7315420118)");
      w.exec(std::string(sql));
      w.commit();
    } catch (...) {
      rethrow_pg();
    }
  }

 private:
  // The server-side prepared statement for `sql` on this connection (parsed
  // and planned once, not per call): looked up by the literal's address
  // first (no translation), then by the translated text.
  const std::string& prepared(std::string_view sql) {
    const std::int64_t off = offset_ ? offset_->load() : 0;
    if (const std::string* name = by_address_.find(sql, off)) return *name;
    std::string text = translate(sql, /*sqlite=*/false, off);
    auto it = names_.find(text);
    if (it == names_.end()) {
      if (names_.size() >= 512) {  // built SQL with unforeseen variety: start over
        for (const auto& [t, n] : names_) conn_.unprepare(n);
        names_.clear();
        by_address_.clear();
      }
      std::string name = "k" + std::to_string(++prepared_count_);
      conn_.prepare(name, text);
      it = names_.emplace(std::move(text), std::move(name)).first;
    }
    by_address_.remember(sql, off, &it->second);
    return it->second;
  }

  Rows run(std::string_view sql, const Param* pb, const Param* pe, std::int64_t* changes) {
    std::vector<std::string> values;
    values.reserve(static_cast<std::size_t>(pe - pb));
    for (const Param* p = pb; p != pe; ++p) {
      switch (p->kind) {
        case Param::Kind::null: values.emplace_back(); break;
        case Param::Kind::i64: values.push_back(std::to_string(p->i)); break;
        case Param::Kind::boolean: values.emplace_back(p->i ? "true" : "false"); break;
        case Param::Kind::text: values.emplace_back(p->s); break;
        case Param::Kind::blob: values.push_back(hex_bytea(p->s)); break;
      }
    }
    std::vector<const char*> ptrs;
    ptrs.reserve(values.size());
    for (std::size_t i = 0; i < values.size(); ++i) {
      ptrs.push_back(pb[i].kind == Param::Kind::null ? nullptr : values[i].c_str());
    }
    try {
      const std::string& name = prepared(sql);
      pqxx::result r;
      if (tx_) {
        r = tx_->exec_prepared(name, pqxx::prepare::make_dynamic_params(ptrs));
      } else {
        pqxx::nontransaction n(conn_);
        r = n.exec_prepared(name, pqxx::prepare::make_dynamic_params(ptrs));
      }
      if (changes) *changes = static_cast<std::int64_t>(r.affected_rows());
      Rows rows;
      rows.reserve(r.size());
      const auto ncols = static_cast<std::size_t>(r.columns());
      std::vector<unsigned> types(ncols);
      for (std::size_t c = 0; c < ncols; ++c) {
        types[c] = static_cast<unsigned>(r.column_type(static_cast<pqxx::row::size_type>(c)));
      }
      for (const auto& prow : r) {
        Row row(ncols);
        for (std::size_t c = 0; c < ncols; ++c) {
          const pqxx::field f = prow[static_cast<pqxx::row::size_type>(c)];
          Cell& cell = row[c];
          if (f.is_null()) continue;
          cell.null = false;
          switch (types[c]) {
            case kOidBool: cell.i = (f.c_str()[0] == 't') ? 1 : 0; break;
            case kOidInt2:
            case kOidInt4:
            case kOidInt8: cell.i = std::stoll(f.c_str()); break;
            case kOidBytea: {
              pqxx::binarystring b(f);
              cell.s = b.str();
              break;
            }
            default: cell.s.assign(f.c_str(), f.size()); break;
          }
        }
        rows.push_back(std::move(row));
      }
      return rows;
    } catch (...) {
      rethrow_pg();
    }
  }

  pqxx::connection conn_;
  const ClockOffset* offset_;
  std::unordered_map<std::string, std::string> names_;  // translated text -> statement name
  std::uint64_t prepared_count_ = 0;
  StatementsByAddress<const std::string> by_address_;  // names in names_ (node-based: stable)
  std::unique_ptr<pqxx::transaction_base> tx_;
};

}  // namespace

std::unique_ptr<Conn> open_pg(const std::string& url, const ClockOffset* offset) {
  try {
    return std::make_unique<PgConn>(url, offset);
  } catch (const DbError&) {
    throw;
  } catch (...) {
    rethrow_pg();
  }
}

}  // namespace koukan::router::db
