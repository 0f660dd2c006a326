#pragma once
// Durable storage of transactions, blobs, attempts and sessions
// (spec/router.md §3-§6, spec/rest-api.md §8.2, §10).
//
// Synchronous and thread-safe: every call blocks on the database, so callers
// run it on the BlockingPool (`co_await offload(pool, [&]{ return s.load(id); })`),
// never on the I/O thread. One implementation of the logic runs over two
// engines: SQLite (default) and PostgreSQL.
//
// The storage does not know the transaction model: a transaction's state is
// an opaque JSON object (the DB view, router.md §2.1). The only keys it reads
// are "notification" (mirrored into a column for the dequeue predicate) and,
// on cancel, it sets "cancelled": true.
//
// Time: every timestamp is integer unix seconds from the DATABASE clock
// (SQLite unixepoch(), PostgreSQL now()), so replicas with skewed clocks agree.
// Relative times (retry_after, TTLs) are applied to the DB clock.
//
// Errors (Result<T>): not_found (unknown tx / blob), precondition_failed
// (version mismatch), conflict (state forbids it), range_not_satisfiable
// (blob append, see AppendResult), redirect (message = owner session uri),
// bad_request, unavailable (session dead, database busy/unreachable),
// internal (bug or unexpected backend failure).
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "common/async/group_commit.hpp"
#include "common/base/result.hpp"

namespace koukan::router {

// Unix seconds, database clock.
using DbTime = std::int64_t;

// Name of the ref that holds the message body (router.md §3.7).
inline constexpr std::string_view kBodyBlobName = "__internal_tx_body";
// final_attempt_reason written by cancel (router.md §5.3).
inline constexpr std::string_view kCancelReason = "downstream cancelled";
// Internal marker "may be attempted only once" (router.md §5.2).
inline constexpr std::string_view kOneshotReason = "oneshot";

// ---- values -----------------------------------------------------------------

struct BlobRef {
  std::string name;                    // ref name within the tx (kBodyBlobName for the body)
  std::int64_t blob_id = 0;
  std::int64_t stored_length = 0;      // bytes stored so far
  std::optional<std::int64_t> total;   // declared final length, once known
  bool finalized = false;              // total && stored_length == *total
  bool operator==(const BlobRef&) const = default;
};

// Everything about one transaction, read in two queries.
struct TxRecord {
  std::int64_t id = 0;                 // internal db id
  std::string rest_id;
  std::int64_t version = 0;            // ETag
  boost::json::object json;            // DB view
  std::optional<std::string> final_attempt_reason;  // may be "oneshot"
  bool input_done = false;             // every referenced blob is finalized
  DbTime creation = 0;
  DbTime last_update = 0;
  DbTime now = 0;                      // DB clock when this record was read
  std::optional<DbTime> next_attempt_time;  // nullopt = as soon as possible
  std::optional<boost::json::object> message_builder;
  bool notification = false;           // json has "notification"
  bool no_final_notification = false;  // a late DSN is pending (router.md §3.2)
  std::optional<std::int64_t> creation_session_id;
  bool leased = false;                 // by some live session
  bool leased_by_me = false;           // by this Storage's session
  // Set iff leased by ANOTHER live session: the redirect target.
  std::optional<std::string> owner_session_uri;
  std::int64_t attempt_count = 0;      // latest attempt id, 0 = none
  std::optional<boost::json::object> attempt_responses;  // of the latest attempt
  std::vector<BlobRef> blobs;          // sorted by name

  const BlobRef* find_blob(std::string_view name) const;
  const BlobRef* body() const { return find_blob(kBodyBlobName); }
  // A real final reason (not "oneshot") is set.
  bool is_final() const;
};

// Cheap read for long-poll decisions (one query, no blobs, no json).
struct TxStatus {
  std::int64_t version = 0;
  bool leased_by_me = false;
  std::optional<std::string> owner_session_uri;  // leased by another live session
  std::optional<std::string> final_attempt_reason;
  bool input_done = false;
};

// How a blob referenced by a new transaction (or a new body) comes to be.
struct BlobSpec {
  enum class Kind { create, inline_data, reuse };
  std::string name;          // ref name in the new tx (kBodyBlobName for the body)
  Kind kind = Kind::create;
  std::string data;          // inline_data: the bytes (stored finalized, in bounded chunks)
  std::string reuse_tx;      // reuse: source tx rest_id
  std::string reuse_name;    // reuse: source ref name (must be finalized)

  static BlobSpec create(std::string name);
  static BlobSpec inline_bytes(std::string name, std::string data);
  static BlobSpec reuse_of(std::string name, std::string src_tx, std::string src_name);
};

struct CreateSpec {
  std::string rest_id;
  boost::json::object json;
  bool leased = false;       // insert already leased by this session (cut-through)
  // Body options (router.md §6.5):
  //  none                 -> blobs empty, no message_builder
  //  empty body blob      -> {BlobSpec::create(kBodyBlobName)}
  //  inline body          -> {BlobSpec::inline_bytes(kBodyBlobName, bytes)}
  //  reuse another body   -> {BlobSpec::reuse_of(kBodyBlobName, tx, kBodyBlobName)}
  //  message builder      -> message_builder = spec, blobs = one per part (any kind;
  //                          kBodyBlobName is rejected there: bad_request)
  // Reuse of an unknown tx/blob -> not_found; not finalized -> conflict.
  std::vector<BlobSpec> blobs;
  std::optional<boost::json::object> message_builder;
  std::optional<std::string> final_attempt_reason;  // e.g. "oneshot"
  // With `leased`: also start attempt 1 in the same database transaction
  // (what start_attempt() does, incl. the "oneshot" marker when the json has
  // no "retry"); the returned record has attempt_count 1. Saves a commit per
  // cut-through transaction.
  bool start_attempt = false;
  // With start_attempt: the responses of attempt 1 known at once (the
  // Exploder's MAIL answer), stored in the same commit.
  std::optional<boost::json::object> first_attempt_responses;
};

// An optimistic write (router.md §6.2). Fields left unset are unchanged.
struct TxWrite {
  std::optional<boost::json::object> json;               // full replacement of the tx json
  // Or: the new tx json computed from the stored one inside the write (under
  // the row lock, after the version check); an error fails the write with
  // it. May run twice (group commit re-runs a batch): must be pure.
  std::function<Result<boost::json::object>(const boost::json::object& stored)> json_update;
  std::optional<boost::json::object> attempt_responses;  // latest attempt's responses (needs my lease)
  // A final reason. NULL or "oneshot" may be replaced; the same reason again is
  // a no-op; a different real reason -> conflict. Writing one also sets
  // no_final_notification = !notification.
  std::optional<std::string> final_attempt_reason;
  bool clear_oneshot = false;         // "oneshot" -> NULL (tx became durable)
  std::optional<std::chrono::seconds> retry_after;  // next_attempt_time = DB now + this
  std::optional<DbTime> next_attempt_time;          // absolute (DB clock); retry_after wins
  bool release_lease = false;         // end of attempt (needs my lease)
  bool notification_done = false;     // no_final_notification = false
  // Cancel: final reason kCancelReason and json "cancelled": true, unless a
  // real final reason is already set (then a no-op: changed == false).
  // May be done without an expected version.
  bool cancel = false;
  bool ping = false;                  // only bump version / last_update
  // Create the (empty) body blob if the tx has none (incremental dialect:
  // the first body PUT creates the body). Bad request on a message-builder tx.
  bool create_body_if_absent = false;
  // Give the tx the (finalized) body of another tx, by reference (refcount,
  // no copy), if it has no body yet; the Exploder's upstreams. Unknown
  // source -> not_found; source body not finalized -> conflict.
  std::optional<std::string> reuse_body_of;
  // Fence: fail with conflict unless this session holds the lease.
  bool require_lease = false;
  // Return the record as it is after the write (same DB transaction: saves
  // the caller a load()).
  bool return_record = false;
};

struct WriteResult {
  std::int64_t version = 0;
  bool changed = false;        // false: nothing to do, version not bumped
  bool body_created = false;
  std::optional<TxRecord> record;  // TxWrite::return_record
};

// One appended piece (rest-api.md §8.2). A finalize-only PUT
// (x-finalize-blob-length: N) is {offset = N, data = {}, total = N}.
struct AppendRequest {
  std::string tx_rest_id;
  std::string blob_name{kBodyBlobName};
  std::int64_t offset = 0;
  std::string_view data;                 // caller keeps it alive for the call
  std::optional<std::int64_t> total;     // declared total on this piece; nullopt = '*'
  // Body only, offset must be 0: create the body blob if the tx has none
  // (same as TxWrite::create_body_if_absent, in the same DB transaction).
  bool create_body_if_absent = false;
};

// State of the blob after the append (or at the time of a 416).
struct BlobState {
  std::int64_t blob_id = 0;
  std::int64_t stored_length = 0;
  std::optional<std::int64_t> total;
  bool finalized = false;
};

struct AppendResult {
  // On range_not_satisfiable, `blob` reports the stored state for the
  // Content-Range of the 416 and `ok` is false; the append did not happen.
  bool ok = true;
  BlobState blob;
  bool input_done = false;               // the tx is now input-done
  std::optional<std::int64_t> tx_version;  // set if this append bumped the tx version
};

struct StartedAttempt {
  std::int64_t version = 0;
  std::int64_t attempt_id = 0;     // 0 for a notification-only claim
  std::optional<TxRecord> record;  // start_attempt(): the record after the claim
};

struct Dequeued {
  TxRecord tx;                     // after the claim: leased_by_me, new version
  std::int64_t attempt_id = 0;
  bool notification_only = false;  // claimed for a late DSN (router.md §4.5 B)
};

struct GcStats {
  std::int64_t transactions = 0;
  std::int64_t blobs = 0;
  std::int64_t sessions = 0;
};

struct StorageOptions {
  std::size_t max_connections = 4;          // pool size (threads that call in)
  // SQLite (a file): read-only calls use up to this many connections of their
  // own (WAL readers see committed data and never wait for the writer);
  // 0: reads share the write connection(s).
  std::size_t max_read_connections = 0;
  std::chrono::milliseconds busy_timeout{10000};  // SQLite busy_timeout
  std::size_t chunk_size = 1 << 20;         // max bytes per BlobChunks row
  // Clean exit marks the session dead at once (router.md §4.1). Tests turn
  // this off to simulate a crash.
  bool close_session_on_destroy = true;
  // Called after every successful write by this process that bumped a
  // version (create, write, append completing input, attempts). Any thread;
  // must not block. Typically VersionCache::notify.
  std::function<void(const std::string& rest_id, std::int64_t version)> on_change;
  // Called after every successful append (any thread; must not block), so an
  // in-process reader can stream bytes without a version bump.
  std::function<void(const std::string& rest_id, const std::string& blob_name,
                     const BlobState&)> on_append;
};

// ---- the interface ----------------------------------------------------------

class Storage {
 public:
  virtual ~Storage() = default;

  // "sqlite" or "postgresql".
  virtual std::string_view engine() const = 0;

  // -- sessions (router.md §4) --
  // Opens this process's session (live, uri). Recovery (§4.4, improved):
  // live sessions with the same uri are our crashed predecessors and are
  // marked dead at once (their leases freed); then sessions older than
  // `ttl` are reaped. Must be called once before any lease-taking call.
  virtual Result<std::int64_t> open_session(const std::string& session_uri,
                                            std::chrono::seconds ttl) = 0;
  virtual std::optional<std::int64_t> session_id() const = 0;
  // last_update = now. unavailable if this session was marked dead by
  // someone (the process must stop: its leases are gone).
  virtual Result<void> refresh_session() = 0;
  // Marks dead every live session whose last_update is older than ttl; the
  // database releases their leases (FK ON UPDATE SET NULL). Returns count.
  virtual Result<std::int64_t> reap_sessions(std::chrono::seconds ttl) = 0;
  // Marks this session dead (releases all its leases). Idempotent.
  virtual Result<void> close_session() = 0;

  // -- transactions --
  // Inserts the tx and its blobs/refs; version 1 afterwards. Duplicate
  // rest_id -> conflict.
  virtual Result<TxRecord> create(const CreateSpec& spec) = 0;
  virtual Result<TxRecord> load(const std::string& rest_id) = 0;
  virtual Result<TxStatus> status(const std::string& rest_id) = 0;
  // expected_version nullopt: no precondition (only meaningful for cancel /
  // ping). Checks in order: unknown -> not_found; leased by another live
  // session -> redirect (except a pure cancel, which any replica may write);
  // version mismatch -> precondition_failed; lease needed (attempt_responses,
  // release_lease, require_lease) but not mine -> conflict.
  virtual Result<WriteResult> write(const std::string& rest_id,
                                    std::optional<std::int64_t> expected_version,
                                    const TxWrite& w) = 0;

  // -- blobs (rest-api.md §8.2) --
  // Overlap prefix dropped; offset past stored, a total that differs from the
  // declared one (or '*' once declared), or data past the total -> Result
  // with ok == false (range_not_satisfiable is reported as a value so the
  // caller gets the stored state). Unknown tx -> not_found "unknown
  // transaction"; unknown blob -> not_found "unknown blob"; tx leased by
  // another live session -> redirect (message = its uri).
  virtual Result<AppendResult> append_blob(const AppendRequest& req) = 0;
  virtual Result<BlobState> blob_state(std::int64_t blob_id) = 0;
  // Up to max_len bytes from offset (reads only the chunks needed).
  virtual Result<std::string> read_blob(std::int64_t blob_id, std::int64_t offset,
                                        std::size_t max_len) = 0;

  // -- attempts (router.md §4.2, §4.5) --
  // Takes the lease (unleased or already mine; else conflict, or redirect if
  // held by another live session), inserts attempt max+1, bumps the version.
  // oneshot: also set final reason "oneshot" if none is set.
  virtual Result<StartedAttempt> start_attempt(const std::string& rest_id,
                                               std::optional<std::int64_t> expected_version,
                                               bool oneshot) = 0;
  // Claims up to `max` due transactions atomically (each exactly once across
  // replicas), oldest next_attempt_time first, and starts an attempt on each.
  virtual Result<std::vector<Dequeued>> dequeue(std::size_t max) = 0;

  // -- GC (router.md §6.6, in bounded batches) --
  // Deletes unleased transactions idle longer than tx_ttl that are final
  // (and not waiting for a late DSN) or whose input was never completed;
  // then unreferenced blobs; then dead sessions idle longer than session_ttl.
  virtual Result<GcStats> gc(std::chrono::seconds tx_ttl, std::chrono::seconds session_ttl,
                             std::size_t batch = 500) = 0;

  // Test hook: shifts this instance's view of the DB clock by `s` seconds.
  virtual void set_clock_offset_for_test(std::chrono::seconds s) = 0;

  // Group commit (SQLite): hooks for a one-thread BlockingPool that runs
  // calls in batches sharing one COMMIT (one fsync); a call's awaiter resumes
  // after that commit. nullptr where the engine gains nothing from it
  // (PostgreSQL: concurrent connections, the server groups commits itself).
  virtual std::unique_ptr<GroupCommit> group_commit() { return nullptr; }
};

// url: "sqlite:///abs/path.db", "sqlite://rel/path.db", "sqlite:path.db",
// "postgresql://..." / "postgres://..." (libpq URL); SQLAlchemy forms
// "postgresql+psycopg://..." / "sqlite+pysqlite:///..." have the +driver
// stripped. Creates the schema if missing (idempotent).
Result<std::unique_ptr<Storage>> open_storage(const std::string& url,
                                              StorageOptions opts = {});

}  // namespace koukan::router
