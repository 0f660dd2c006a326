// Storage behaviour, run on SQLite and PostgreSQL (storage_test_util.hpp).
#include "router/storage/storage.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "test/router/storage/storage_test_util.hpp"

namespace koukan::router {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using test::pattern_bytes;
using test::StorageTest;

namespace json = boost::json;

json::object obj(const char* text) { return json::parse(text).as_object(); }

CreateSpec spec(const std::string& rest_id, std::vector<BlobSpec> blobs = {},
                bool leased = false) {
  CreateSpec s;
  s.rest_id = rest_id;
  s.json = obj(R"({"mail_from":{"m":"alice@example.com"},"rcpt_to":[{"m":"bob@example.com"}]})");
  s.blobs = std::move(blobs);
  s.leased = leased;
  return s;
}

AppendRequest piece(const std::string& tx, std::int64_t off, std::string_view data,
                    std::optional<std::int64_t> total, std::string blob = std::string(kBodyBlobName)) {
  AppendRequest r;
  r.tx_rest_id = tx;
  r.blob_name = std::move(blob);
  r.offset = off;
  r.data = data;
  r.total = total;
  return r;
}

std::string read_all(Storage& s, std::int64_t blob_id) {
  auto r = s.read_blob(blob_id, 0, std::size_t(1) << 30);
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : std::string();
}

using Schema = StorageTest;

TEST_P(Schema, AutoCreateIsIdempotentAndSharedByTwoOpens) {
  auto a = open();
  ASSERT_TRUE(a);
  auto b = open();  // schema already there: CREATE ... IF NOT EXISTS again
  ASSERT_TRUE(b);
  EXPECT_EQ(a->engine(), GetParam());
  ASSERT_TRUE(a->create(spec("t1")).ok());
  auto l = b->load("t1");
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->version, 1);
  a.reset();
  b.reset();
  auto c = open();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->load("t1").ok());
}

KOUKAN_STORAGE_SUITE(Schema);

using Transactions = StorageTest;

TEST_P(Transactions, CreateLoadRoundTripSurvivesReopen) {
  const std::string body = "Subject: hi\r\n\r\nhello\r\n";
  {
    auto s = open_with_session("http://r0:8000");
    ASSERT_TRUE(s);
    auto c = s->create(spec("rt", {BlobSpec::inline_bytes(std::string(kBodyBlobName), body)}, true));
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->version, 1);
    EXPECT_TRUE(c->leased_by_me);
    EXPECT_TRUE(c->input_done);
  }
  auto s = open();
  ASSERT_TRUE(s);
  auto l = s->load("rt");
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->rest_id, "rt");
  EXPECT_EQ(l->version, 1);
  EXPECT_EQ(json::serialize(l->json["mail_from"]), R"({"m":"alice@example.com"})");
  EXPECT_EQ(l->json["rcpt_to"].as_array().size(), 1u);
  EXPECT_TRUE(l->input_done);
  EXPECT_FALSE(l->leased);  // the first storage closed its session on exit
  EXPECT_FALSE(l->final_attempt_reason);
  EXPECT_EQ(l->attempt_count, 0);
  EXPECT_GT(l->creation, 1600000000);
  EXPECT_GE(l->now, l->creation);
  ASSERT_NE(l->body(), nullptr);
  EXPECT_TRUE(l->body()->finalized);
  EXPECT_EQ(l->body()->stored_length, static_cast<std::int64_t>(body.size()));
  EXPECT_EQ(read_all(*s, l->body()->blob_id), body);
  EXPECT_EQ(s->load("nope").error().code, Errc::not_found);
}

TEST_P(Transactions, DuplicateRestIdIsConflict) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("dup")).ok());
  auto r = s->create(spec("dup"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict);
  // The failed statement left its connection usable (PostgreSQL: the
  // pipeline and the aborted transaction were cleaned up).
  for (int i = 0; i < 3; ++i) {
    auto c = s->create(spec("after" + std::to_string(i)));
    ASSERT_TRUE(c.ok()) << c.error().message;
    auto l = s->load("dup");
    ASSERT_TRUE(l.ok()) << l.error().message;
    EXPECT_EQ(l->version, 1);
  }
}

TEST_P(Transactions, VersionIncrementsAndStaleWriteFails) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("v")).ok());
  TxWrite w;
  w.json = obj(R"({"mail_from":{"m":"a@x"},"rcpt_to":[{"m":"b@x"},{"m":"c@x"}]})");
  auto r = s->write("v", 1, w);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->changed);
  EXPECT_EQ(r->version, 2);
  auto stale = s->write("v", 1, w);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, Errc::precondition_failed);
  EXPECT_EQ(s->write("missing", 1, w).error().code, Errc::not_found);
  // Nothing to do: no DB write, no version bump.
  auto noop = s->write("v", 2, TxWrite{});
  ASSERT_TRUE(noop.ok());
  EXPECT_FALSE(noop->changed);
  EXPECT_EQ(noop->version, 2);
  TxWrite ping;
  ping.ping = true;
  EXPECT_EQ(s->write("v", 2, ping)->version, 3);
  auto l = s->load("v");
  EXPECT_EQ(l->version, 3);
  EXPECT_EQ(l->json["rcpt_to"].as_array().size(), 2u);
  EXPECT_EQ(s->status("v")->version, 3);
}

TEST_P(Transactions, JsonUpdateMergesInsideTheWriteAfterTheVersionCheck) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("u")).ok());
  int calls = 0;
  TxWrite w;
  w.json_update = [&calls](const json::object& stored) -> Result<json::object> {
    ++calls;
    json::object j = stored;
    j["rcpt_to"].as_array().push_back(json::object{{"m", "carol@example.com"}});
    return j;
  };
  // A stale version is refused before the update runs.
  EXPECT_EQ(s->write("u", 7, w).error().code, Errc::precondition_failed);
  EXPECT_EQ(calls, 0);
  w.return_record = true;
  auto r = s->write("u", 1, w);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(r->version, 2);
  ASSERT_TRUE(r->record);
  EXPECT_EQ(r->record->json.at("rcpt_to").as_array().size(), 2u);
  // An error from the update fails the write with it; nothing changes.
  TxWrite bad;
  bad.json_update = [](const json::object&) -> Result<json::object> {
    return Error(Errc::conflict, "rcpt_to_list_offset mismatch");
  };
  auto e = s->write("u", 2, bad);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, Errc::conflict);
  EXPECT_EQ(e.error().message, "rcpt_to_list_offset mismatch");
  auto l = s->load("u");
  EXPECT_EQ(l->version, 2);
  EXPECT_EQ(l->json.at("rcpt_to").as_array().size(), 2u);
}

TEST_P(Transactions, ChangeCallbackSeesEveryVersion) {
  std::mutex mu;
  std::vector<std::pair<std::string, std::int64_t>> seen;
  StorageOptions o;
  o.on_change = [&](const std::string& id, std::int64_t v) {
    std::lock_guard lk(mu);
    seen.emplace_back(id, v);
  };
  auto s = open(o);
  ASSERT_TRUE(s->create(spec("cb", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  TxWrite ping;
  ping.ping = true;
  ASSERT_TRUE(s->write("cb", 1, ping).ok());
  ASSERT_TRUE(s->write("cb", 1, ping).error().code == Errc::precondition_failed);
  auto a = s->append_blob(piece("cb", 0, "abc", 3));  // completes input: version 3
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->tx_version, 3);
  std::vector<std::pair<std::string, std::int64_t>> want{{"cb", 1}, {"cb", 2}, {"cb", 3}};
  EXPECT_EQ(seen, want);
}

TEST_P(Transactions, CancelSemantics) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("c1")).ok());
  TxWrite cancel;
  cancel.cancel = true;
  auto r = s->write("c1", std::nullopt, cancel);  // no precondition
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->changed);
  EXPECT_EQ(r->version, 2);
  auto l = s->load("c1");
  EXPECT_EQ(l->final_attempt_reason, std::string(kCancelReason));
  EXPECT_TRUE(l->json["cancelled"].as_bool());
  EXPECT_EQ(json::serialize(l->json["mail_from"]), R"({"m":"alice@example.com"})");
  // Already final: no-op.
  auto again = s->write("c1", std::nullopt, cancel);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->changed);
  EXPECT_EQ(again->version, 2);

  // A real final reason is not replaced by cancel, nor by another reason.
  ASSERT_TRUE(s->create(spec("c2")).ok());
  TxWrite fin;
  fin.final_attempt_reason = "upstream response success";
  ASSERT_TRUE(s->write("c2", 1, fin).ok());
  auto c2 = s->write("c2", std::nullopt, cancel);
  ASSERT_TRUE(c2.ok());
  EXPECT_FALSE(c2->changed);
  EXPECT_EQ(s->load("c2")->final_attempt_reason, "upstream response success");
  EXPECT_FALSE(s->load("c2")->json.contains("cancelled"));
  TxWrite other;
  other.final_attempt_reason = "upstream response permfail";
  EXPECT_EQ(s->write("c2", 2, other).error().code, Errc::conflict);
  EXPECT_FALSE(s->write("c2", 2, fin)->changed);  // same reason again: no-op

  // oneshot is not final: cancel wins.
  auto c3 = spec("c3");
  c3.final_attempt_reason = std::string(kOneshotReason);
  ASSERT_TRUE(s->create(c3).ok());
  EXPECT_TRUE(s->write("c3", std::nullopt, cancel)->changed);
  EXPECT_EQ(s->load("c3")->final_attempt_reason, std::string(kCancelReason));
  EXPECT_EQ(s->write("nope", std::nullopt, cancel).error().code, Errc::not_found);
}

TEST_P(Transactions, FinalReasonSetsNoFinalNotification) {
  auto s = open();
  auto sp = spec("n1");
  sp.json["notification"] = json::object();
  sp.json["retry"] = json::object();
  ASSERT_TRUE(s->create(sp).ok());
  ASSERT_TRUE(s->create(spec("n2")).ok());
  TxWrite fin;
  fin.final_attempt_reason = "upstream response permfail";
  ASSERT_TRUE(s->write("n1", 1, fin).ok());
  ASSERT_TRUE(s->write("n2", 1, fin).ok());
  auto n1 = s->load("n1");
  EXPECT_TRUE(n1->notification);
  EXPECT_FALSE(n1->no_final_notification);
  auto n2 = s->load("n2");
  EXPECT_FALSE(n2->notification);
  EXPECT_TRUE(n2->no_final_notification);
  TxWrite done;
  done.notification_done = true;
  ASSERT_TRUE(s->write("n2", 2, done).ok());
  EXPECT_FALSE(s->load("n2")->no_final_notification);
}

TEST_P(Transactions, IncrementalBodyCreatedByFirstBodyPut) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("inc")).ok());
  auto l = s->load("inc");
  EXPECT_EQ(l->body(), nullptr);
  EXPECT_FALSE(l->input_done);
  // A range above 0 before the body exists -> unknown blob.
  auto p = piece("inc", 5, "xyz", std::nullopt);
  p.create_body_if_absent = true;
  EXPECT_EQ(s->append_blob(p).error().code, Errc::not_found);
  // Without the flag too.
  EXPECT_EQ(s->append_blob(piece("inc", 0, "a", std::nullopt)).error().code, Errc::not_found);

  TxWrite w;
  w.create_body_if_absent = true;
  auto r = s->write("inc", 1, w);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->body_created);
  EXPECT_EQ(r->version, 2);
  auto again = s->write("inc", 2, w);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->body_created);
  EXPECT_FALSE(again->changed);
  EXPECT_NE(s->load("inc")->body(), nullptr);

  // Via append at offset 0, in the same DB transaction as the data.
  ASSERT_TRUE(s->create(spec("inc2")).ok());
  auto q = piece("inc2", 0, "hello", 5);
  q.create_body_if_absent = true;
  auto a = s->append_blob(q);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->ok);
  EXPECT_TRUE(a->blob.finalized);
  EXPECT_TRUE(a->input_done);
  auto l2 = s->load("inc2");
  EXPECT_EQ(l2->version, 2);  // body created + input done: one write
  EXPECT_TRUE(l2->input_done);
  EXPECT_EQ(read_all(*s, l2->body()->blob_id), "hello");

  // A message-builder tx has no body to create.
  auto mb = spec("inc3", {BlobSpec::create("part")});
  mb.message_builder = obj(R"({"text_body":[{"content_type":"text/plain","content":{"create_id":"part"}}]})");
  ASSERT_TRUE(s->create(mb).ok());
  EXPECT_EQ(s->write("inc3", 1, w).error().code, Errc::bad_request);
}

KOUKAN_STORAGE_SUITE(Transactions);

// PostgreSQL only: the server may drop a connection (restart, failover,
// pg_terminate_backend); the next call retries on a fresh one.
using PgConnections = StorageTest;

TEST_P(PgConnections, ConnectionsDroppedByTheServerAreReplaced) {
  StorageOptions o;
  o.max_connections = 2;
  auto s = open_with_session("http://r0:8000", o);
  ASSERT_TRUE(s);
  ASSERT_TRUE(s->create(spec("k1")).ok());
  // Warm both pool connections (a read-only transaction leaves its COMMIT's
  // answer unread until the connection's next use).
  ASSERT_TRUE(s->load("k1").ok());
  auto killed = [&]() {
    return sql_int("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()");
  };
  ASSERT_GE(killed(), 1);
  TxWrite t;
  t.json = obj(R"({"mail_from":{"m":"a@x"},"rcpt_to":[{"m":"b@x"}]})");
  auto w = s->write("k1", 1, t);
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_EQ(w->version, 2);
  ASSERT_GE(killed(), 1);
  auto l = s->load("k1");
  ASSERT_TRUE(l.ok()) << l.error().message;
  EXPECT_EQ(l->version, 2);
  ASSERT_GE(killed(), 1);
  ASSERT_TRUE(s->create(spec("k2")).ok());
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM Transactions"), 2);
}

INSTANTIATE_TEST_SUITE_P(Engines, PgConnections, ::testing::Values("postgresql"),
                         ::koukan::router::test::param_name);

using Blobs = StorageTest;

TEST_P(Blobs, AppendRules) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("ap", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  // In order, total unknown.
  auto r = s->append_blob(piece("ap", 0, "hello ", std::nullopt));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 6);
  EXPECT_FALSE(r->blob.total);
  EXPECT_FALSE(r->blob.finalized);
  EXPECT_FALSE(r->input_done);
  EXPECT_FALSE(r->tx_version);
  // Overlapping resend: the overlapping prefix is dropped unread.
  r = s->append_blob(piece("ap", 3, "XXXwor", std::nullopt));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 9);
  // Entirely already stored: accepted, nothing changes.
  r = s->append_blob(piece("ap", 0, "hello", std::nullopt));
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 9);
  // Beyond the stored length -> 416 with the stored state.
  r = s->append_blob(piece("ap", 10, "d", std::nullopt));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 9);
  EXPECT_FALSE(r->blob.total);
  // Declare the total with the next piece.
  r = s->append_blob(piece("ap", 9, "ld", 13));
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 11);
  EXPECT_EQ(r->blob.total, 13);
  EXPECT_FALSE(r->blob.finalized);
  // Once declared, '*' or another total -> 416, nothing stored.
  r = s->append_blob(piece("ap", 11, "!\n", std::nullopt));
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 11);
  EXPECT_EQ(r->blob.total, 13);
  r = s->append_blob(piece("ap", 11, "!\n", 14));
  EXPECT_FALSE(r->ok);
  // Data past the total -> 416.
  r = s->append_blob(piece("ap", 11, "!!!", 13));
  EXPECT_FALSE(r->ok);
  EXPECT_EQ(r->blob.stored_length, 11);
  // Completing: finalized, tx input_done, version bump.
  r = s->append_blob(piece("ap", 11, "!\n", 13));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_TRUE(r->blob.finalized);
  EXPECT_TRUE(r->input_done);
  EXPECT_EQ(r->tx_version, 2);
  // A resend of the last piece after finalization is harmless.
  r = s->append_blob(piece("ap", 11, "!\n", 13));
  EXPECT_TRUE(r->ok);
  EXPECT_FALSE(r->tx_version);
  auto l = s->load("ap");
  EXPECT_EQ(l->version, 2);
  EXPECT_TRUE(l->input_done);
  EXPECT_EQ(read_all(*s, l->body()->blob_id), "hello world!\n");
  auto part = s->read_blob(l->body()->blob_id, 3, 5);
  EXPECT_EQ(*part, "lo wo");
  EXPECT_EQ(*s->read_blob(l->body()->blob_id, 13, 5), "");
  auto st = s->blob_state(l->body()->blob_id);
  EXPECT_EQ(st->stored_length, 13);
  EXPECT_TRUE(st->finalized);
  EXPECT_EQ(s->blob_state(999999).error().code, Errc::not_found);
  // Unknown tx / blob.
  EXPECT_EQ(s->append_blob(piece("none", 0, "x", 1)).error().code, Errc::not_found);
  EXPECT_EQ(s->append_blob(piece("ap", 0, "x", 1, "other")).error().code, Errc::not_found);
}

TEST_P(Blobs, FinalizeOnlyAndDeclaredTotalUpFront) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("fo", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  ASSERT_TRUE(s->append_blob(piece("fo", 0, "abcd", std::nullopt))->ok);
  // x-finalize-blob-length: 5 while 4 are stored -> 416.
  EXPECT_FALSE(s->append_blob(piece("fo", 5, "", 5))->ok);
  // Less than stored -> 416.
  EXPECT_FALSE(s->append_blob(piece("fo", 3, "", 3))->ok);
  auto r = s->append_blob(piece("fo", 4, "", 4));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->ok);
  EXPECT_TRUE(r->blob.finalized);
  EXPECT_TRUE(r->input_done);

  ASSERT_TRUE(s->create(spec("up", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  r = s->append_blob(piece("up", 0, "ab", 4));  // total known with the first piece
  EXPECT_TRUE(r->ok);
  EXPECT_FALSE(r->blob.finalized);
  EXPECT_FALSE(s->append_blob(piece("up", 2, "cd", std::nullopt))->ok);
  EXPECT_TRUE(s->append_blob(piece("up", 2, "cd", 4))->blob.finalized);
}

TEST_P(Blobs, ZeroLengthBlob) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("z", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  auto r = s->append_blob(piece("z", 0, "", 0));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok);
  EXPECT_TRUE(r->blob.finalized);
  EXPECT_EQ(r->blob.stored_length, 0);
  EXPECT_TRUE(r->input_done);
  EXPECT_EQ(read_all(*s, r->blob.blob_id), "");
  auto inl = s->create(spec("z2", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "")}));
  ASSERT_TRUE(inl.ok());
  EXPECT_TRUE(inl->body()->finalized);
  EXPECT_TRUE(inl->input_done);
}

TEST_P(Blobs, TwentyMegabytesInOneMegabyteChunks) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("big", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  const std::size_t mib = 1 << 20, n = 20;
  const std::string data = pattern_bytes(n * mib, 7);
  for (std::size_t i = 0; i < n; ++i) {
    std::optional<std::int64_t> total;
    if (i + 1 == n) total = static_cast<std::int64_t>(data.size());
    auto r = s->append_blob(piece("big", static_cast<std::int64_t>(i * mib),
                                  std::string_view(data).substr(i * mib, mib), total));
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_TRUE(r->ok) << "chunk " << i;
  }
  auto l = s->load("big");
  ASSERT_TRUE(l->input_done);
  const auto id = l->body()->blob_id;
  // One row per appended piece: nothing was rewritten.
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM BlobChunks WHERE blob_id = " + std::to_string(id)),
            static_cast<std::int64_t>(n));
  EXPECT_EQ(sql_int("SELECT MAX(LENGTH(data)) FROM BlobChunks"), static_cast<std::int64_t>(mib));
  const std::string back = read_all(*s, id);
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data);
  // A range crossing chunk boundaries.
  auto mid = s->read_blob(id, static_cast<std::int64_t>(3 * mib - 10), mib + 20);
  ASSERT_TRUE(mid.ok());
  EXPECT_TRUE(*mid == data.substr(3 * mib - 10, mib + 20));
}

TEST_P(Blobs, ConcurrentResendsOfTheSameUploadStoreItOnce) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("cc", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  const std::size_t piece_len = 1000, pieces = 40;
  const std::string data = pattern_bytes(piece_len * pieces, 5);
  auto upload = [&] {
    // Every piece states the total (once declared, a '*' piece is a 416).
    const std::optional<std::int64_t> total = static_cast<std::int64_t>(data.size());
    for (std::size_t i = 0; i < pieces; ++i) {
      auto r = s->append_blob(piece("cc", static_cast<std::int64_t>(i * piece_len),
                                    std::string_view(data).substr(i * piece_len, piece_len), total));
      ASSERT_TRUE(r.ok()) << r.error().message;
      ASSERT_TRUE(r->ok);
    }
  };
  std::thread t1(upload), t2(upload);
  t1.join();
  t2.join();
  auto l = s->load("cc");
  ASSERT_TRUE(l->input_done);
  EXPECT_EQ(l->version, 2);  // completed exactly once
  EXPECT_EQ(read_all(*s, l->body()->blob_id), data);
  EXPECT_LE(sql_int("SELECT COUNT(*) FROM BlobChunks"), static_cast<std::int64_t>(pieces));
}

TEST_P(Blobs, InlineDataIsChunked) {
  StorageOptions o;
  o.chunk_size = 1000;
  auto s = open(o);
  const std::string data = pattern_bytes(4500, 3);
  auto c = s->create(spec("ic", {BlobSpec::inline_bytes(std::string(kBodyBlobName), data)}));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM BlobChunks"), 5);
  EXPECT_EQ(read_all(*s, c->body()->blob_id), data);
  EXPECT_EQ(*s->read_blob(c->body()->blob_id, 999, 3), data.substr(999, 3));
}

TEST_P(Blobs, MessageBuilderBlobs) {
  auto s = open();
  ASSERT_TRUE(s->create(spec("src", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "shared")})).ok());
  auto mb = spec("mb", {BlobSpec::create("my_html"), BlobSpec::inline_bytes("inline1", "hello"),
                        BlobSpec::reuse_of("att", "src", std::string(kBodyBlobName))});
  mb.message_builder = obj(R"({"headers":[["subject","hello"]]})");
  auto c = s->create(mb);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_FALSE(c->input_done);
  ASSERT_TRUE(c->message_builder);
  EXPECT_EQ(json::serialize((*c->message_builder)["headers"]), R"([["subject","hello"]])");
  ASSERT_EQ(c->blobs.size(), 3u);
  EXPECT_EQ(c->body(), nullptr);
  EXPECT_FALSE(c->find_blob("my_html")->finalized);
  EXPECT_TRUE(c->find_blob("inline1")->finalized);
  EXPECT_TRUE(c->find_blob("att")->finalized);
  EXPECT_EQ(c->find_blob("att")->blob_id, s->load("src")->body()->blob_id);
  auto r = s->append_blob(piece("mb", 0, "<p>hi</p>", 9, "my_html"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->input_done);
  EXPECT_TRUE(s->load("mb")->input_done);

  auto bad = spec("mb2", {BlobSpec::create(std::string(kBodyBlobName))});
  bad.message_builder = json::object();
  EXPECT_EQ(s->create(bad).error().code, Errc::bad_request);
  auto nomb = spec("mb3", {BlobSpec::create("x")});
  EXPECT_EQ(s->create(nomb).error().code, Errc::bad_request);
  EXPECT_EQ(s->load("mb2").error().code, Errc::not_found);
}

TEST_P(Blobs, ReuseCountsRefsAndGcDeletesOnlyUnreferenced) {
  auto s = open_with_session("http://r0");
  const std::string data = "Subject: shared\r\n\r\nbody\r\n";
  ASSERT_TRUE(s->create(spec("a", {BlobSpec::inline_bytes(std::string(kBodyBlobName), data)})).ok());
  ASSERT_TRUE(s->create(spec("open", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  // Reuse: unknown -> not_found, unfinalized -> conflict.
  EXPECT_EQ(s->create(spec("x1", {BlobSpec::reuse_of(std::string(kBodyBlobName), "zz",
                                                     std::string(kBodyBlobName))}))
                .error().code,
            Errc::not_found);
  EXPECT_EQ(s->create(spec("x2", {BlobSpec::reuse_of(std::string(kBodyBlobName), "open",
                                                     std::string(kBodyBlobName))}))
                .error().code,
            Errc::conflict);
  auto b = s->create(spec("b", {BlobSpec::reuse_of(std::string(kBodyBlobName), "a",
                                                  std::string(kBodyBlobName))}));
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(b->input_done);
  const auto blob = b->body()->blob_id;
  EXPECT_EQ(blob, s->load("a")->body()->blob_id);
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM TransactionBlobRefs WHERE blob_id = " + std::to_string(blob)), 2);

  // A waits for a retry (input done, no final reason): never collected.
  // B is final. "open" never got its input: abandoned. "leased" is leased.
  TxWrite fin;
  fin.final_attempt_reason = "upstream response success";
  ASSERT_TRUE(s->write("b", 1, fin).ok());
  ASSERT_TRUE(s->create(spec("leased", {}, true)).ok());
  TxWrite fin2 = fin;
  ASSERT_TRUE(s->write("leased", 1, fin2).ok());

  // Young: nothing goes.
  auto g = s->gc(3600s, 3600s);
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->transactions, 0);
  EXPECT_EQ(g->blobs, 0);

  s->set_clock_offset_for_test(7200s);
  g = s->gc(3600s, 3600s, 1);  // batch of 1: loops
  ASSERT_TRUE(g.ok()) << g.error().message;
  EXPECT_EQ(g->transactions, 2);  // b and open
  EXPECT_EQ(g->blobs, 1);         // open's body; a's blob is still referenced by a
  EXPECT_TRUE(s->load("a").ok());
  EXPECT_TRUE(s->load("leased").ok());
  EXPECT_EQ(s->load("b").error().code, Errc::not_found);
  EXPECT_EQ(s->load("open").error().code, Errc::not_found);
  EXPECT_EQ(read_all(*s, blob), data);

  s->set_clock_offset_for_test(0s);
  ASSERT_TRUE(s->write("a", 1, fin).ok());
  s->set_clock_offset_for_test(7200s);
  g = s->gc(3600s, 3600s);
  EXPECT_EQ(g->transactions, 1);
  EXPECT_EQ(g->blobs, 1);
  EXPECT_EQ(s->blob_state(blob).error().code, Errc::not_found);
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM BlobChunks WHERE blob_id = " + std::to_string(blob)), 0);
  EXPECT_EQ(sql_int("SELECT COUNT(*) FROM TransactionAttempts"), 0);
}

KOUKAN_STORAGE_SUITE(Blobs);

using Sessions = StorageTest;

TEST_P(Sessions, LeaseOwnedByARedirectsBUntilAIsReaped) {
  StorageOptions crash;
  crash.close_session_on_destroy = false;
  auto a = open_with_session("http://a:8000", crash);
  auto b = open_with_session("http://b:8000");
  ASSERT_TRUE(a && b);
  ASSERT_NE(*a->session_id(), *b->session_id());
  ASSERT_TRUE(a->create(spec("t", {BlobSpec::create(std::string(kBodyBlobName))}, true)).ok());
  auto sa = a->start_attempt("t", 1, false);
  ASSERT_TRUE(sa.ok()) << sa.error().message;
  EXPECT_EQ(sa->attempt_id, 1);

  auto lb = b->load("t");
  ASSERT_TRUE(lb.ok());
  EXPECT_TRUE(lb->leased);
  EXPECT_FALSE(lb->leased_by_me);
  EXPECT_EQ(lb->owner_session_uri, "http://a:8000");
  EXPECT_EQ(b->status("t")->owner_session_uri, "http://a:8000");
  auto la = a->load("t");
  EXPECT_TRUE(la->leased_by_me);
  EXPECT_FALSE(la->owner_session_uri);

  auto ap = b->append_blob(piece("t", 0, "x", std::nullopt));
  ASSERT_FALSE(ap.ok());
  EXPECT_EQ(ap.error().code, Errc::redirect);
  EXPECT_EQ(ap.error().message, "http://a:8000");
  EXPECT_TRUE(a->append_blob(piece("t", 0, "x", std::nullopt)).ok());
  auto st = b->start_attempt("t", std::nullopt, false);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::redirect);
  TxWrite rel;
  rel.release_lease = true;
  auto wr = b->write("t", std::nullopt, rel);
  ASSERT_FALSE(wr.ok());
  EXPECT_EQ(wr.error().code, Errc::redirect);
  EXPECT_EQ(wr.error().message, "http://a:8000");

  // A crashes (no clean close). Its session is still live, so nothing moves
  // until its last refresh is older than the TTL.
  a.reset();
  EXPECT_EQ(*b->reap_sessions(60s), 0);
  EXPECT_TRUE(b->load("t")->leased);
  b->set_clock_offset_for_test(120s);
  ASSERT_TRUE(b->refresh_session().ok());
  EXPECT_EQ(*b->reap_sessions(60s), 1);
  auto after = b->load("t");
  EXPECT_FALSE(after->leased);
  EXPECT_FALSE(after->owner_session_uri);
  auto sb = b->start_attempt("t", after->version, false);
  ASSERT_TRUE(sb.ok()) << sb.error().message;
  EXPECT_EQ(sb->attempt_id, 2);  // the interrupted attempt stays, a new one starts
  EXPECT_TRUE(b->load("t")->leased_by_me);
  EXPECT_TRUE(b->append_blob(piece("t", 1, "y", std::nullopt)).ok());
}

TEST_P(Sessions, AnyReplicaMayCancelButOnlyTheOwnerWrites) {
  auto a = open_with_session("http://a");
  auto b = open_with_session("http://b");
  ASSERT_TRUE(a->create(spec("t", {}, true)).ok());
  TxWrite ping;
  ping.ping = true;
  EXPECT_EQ(b->write("t", 1, ping).error().code, Errc::redirect);
  TxWrite cancel;
  cancel.cancel = true;
  auto c = b->write("t", std::nullopt, cancel);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->changed);
  auto l = a->load("t");
  EXPECT_EQ(l->final_attempt_reason, std::string(kCancelReason));
  EXPECT_TRUE(l->leased_by_me);  // the owner notices and finishes the attempt
  EXPECT_TRUE(a->write("t", l->version, ping).ok());
}

TEST_P(Sessions, ReapedSessionCannotRefreshOrLease) {
  auto a = open_with_session("http://a");
  auto b = open_with_session("http://b");
  ASSERT_TRUE(a->create(spec("t", {}, true)).ok());
  b->set_clock_offset_for_test(1000s);
  EXPECT_EQ(*b->reap_sessions(60s), 2);  // a, and b itself (it did not refresh in b's future)
  auto r = a->refresh_session();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable);
  EXPECT_EQ(a->start_attempt("t", std::nullopt, false).error().code, Errc::unavailable);
  EXPECT_EQ(a->create(spec("t2", {}, true)).error().code, Errc::unavailable);
  EXPECT_FALSE(a->load("t")->leased);
}

TEST_P(Sessions, RestartWithSameUriFreesPredecessorLeasesAtOnce) {
  StorageOptions crash;
  crash.close_session_on_destroy = false;
  {
    auto a = open_with_session("http://a", crash);
    ASSERT_TRUE(a->create(spec("t", {}, true)).ok());
  }
  auto a2 = open_with_session("http://a");
  auto l = a2->load("t");
  EXPECT_FALSE(l->leased);
  EXPECT_TRUE(a2->start_attempt("t", std::nullopt, false).ok());
}

TEST_P(Sessions, CloseSessionReleasesLeases) {
  auto a = open_with_session("http://a");
  auto b = open_with_session("http://b");
  ASSERT_TRUE(a->create(spec("t", {}, true)).ok());
  EXPECT_TRUE(b->load("t")->owner_session_uri);
  ASSERT_TRUE(a->close_session().ok());
  EXPECT_FALSE(b->load("t")->leased);
  // GC removes dead sessions once old enough.
  b->set_clock_offset_for_test(7200s);
  ASSERT_TRUE(b->refresh_session().ok());
  auto g = b->gc(86400s, 3600s);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->sessions, 1);
}

KOUKAN_STORAGE_SUITE(Sessions);

using Attempts = StorageTest;

TEST_P(Attempts, StartWriteResponsesAndRelease) {
  auto s = open_with_session("http://r0");
  ASSERT_TRUE(s->create(spec("t", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")}, true)).ok());
  auto a = s->start_attempt("t", 1, /*oneshot=*/false);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->attempt_id, 1);
  EXPECT_EQ(a->version, 2);
  // The record after the claim comes with it.
  ASSERT_TRUE(a->record);
  EXPECT_EQ(a->record->version, 2);
  EXPECT_TRUE(a->record->leased_by_me);
  EXPECT_EQ(a->record->attempt_count, 1);
  EXPECT_EQ(s->start_attempt("t", 1, false).error().code, Errc::precondition_failed);
  TxWrite w;
  w.attempt_responses = obj(R"({"mail_response":{"code":250,"message":"ok"}})");
  w.release_lease = true;
  w.retry_after = 600s;
  auto r = s->write("t", 2, w);
  ASSERT_TRUE(r.ok()) << r.error().message;
  auto l = s->load("t");
  EXPECT_EQ(l->attempt_count, 1);
  ASSERT_TRUE(l->attempt_responses);
  EXPECT_EQ((*l->attempt_responses)["mail_response"].as_object()["code"].as_int64(), 250);
  EXPECT_FALSE(l->leased);
  ASSERT_TRUE(l->next_attempt_time);
  EXPECT_GE(*l->next_attempt_time, l->now + 599);
  EXPECT_LE(*l->next_attempt_time, l->now + 601);
  // Attempt data needs the lease.
  TxWrite w2;
  w2.attempt_responses = json::object();
  EXPECT_EQ(s->write("t", l->version, w2).error().code, Errc::conflict);
  auto a2 = s->start_attempt("t", l->version, false);
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->attempt_id, 2);
  ASSERT_TRUE(a2->record);
  EXPECT_EQ(a2->record->attempt_count, 2);
  EXPECT_FALSE(a2->record->attempt_responses);
  EXPECT_EQ(a2->record->version, a2->version);
  auto l2 = s->load("t");
  EXPECT_EQ(l2->attempt_count, 2);
  EXPECT_FALSE(l2->attempt_responses);  // the new attempt has none yet
}

TEST_P(Attempts, OneshotMarkerAndClear) {
  auto s = open_with_session("http://r0");
  ASSERT_TRUE(s->create(spec("t", {}, true)).ok());
  auto a = s->start_attempt("t", 1, /*oneshot=*/true);
  ASSERT_TRUE(a.ok());
  auto l = s->load("t");
  EXPECT_EQ(l->final_attempt_reason, std::string(kOneshotReason));
  EXPECT_FALSE(l->is_final());
  TxWrite clear;
  clear.clear_oneshot = true;
  ASSERT_TRUE(s->write("t", l->version, clear)->changed);
  EXPECT_FALSE(s->load("t")->final_attempt_reason);
}

TEST_P(Attempts, CreateCanStartTheFirstAttempt) {
  auto s = open_with_session("http://r0");
  CreateSpec one = spec("one", {}, true);
  one.start_attempt = true;
  auto r = s->create(one);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->attempt_count, 1);
  EXPECT_TRUE(r->leased_by_me);
  // No "retry" in the json: oneshot, as start_attempt(oneshot=true) does.
  EXPECT_EQ(r->final_attempt_reason, std::string(kOneshotReason));
  CreateSpec durable = spec("durable", {}, true);
  durable.json["retry"] = boost::json::object();
  durable.start_attempt = true;
  auto d = s->create(durable);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->attempt_count, 1);
  EXPECT_FALSE(d->final_attempt_reason);
  // The attempt row exists: responses can be written under the lease.
  TxWrite w;
  w.attempt_responses = obj(R"({"mail_response":{"code":250,"message":"ok"}})");
  EXPECT_TRUE(s->write("durable", d->version, w).ok());
  // Not leased: no attempt is started.
  CreateSpec unleased = spec("unleased");
  unleased.start_attempt = true;
  EXPECT_EQ(s->create(unleased)->attempt_count, 0);
}

TEST_P(Attempts, DequeueClaimsDueTransactionsExactlyOnce) {
  auto a = open_with_session("http://a");
  auto b = open_with_session("http://b");
  const int n = 30;
  for (int i = 0; i < n; ++i) {
    auto c = a->create(spec("due" + std::to_string(i),
                            {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")}));
    ASSERT_TRUE(c.ok()) << c.error().message;
  }
  // Not due: in the future; final; input not done (creator b only); leased.
  ASSERT_TRUE(a->create(spec("future", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")})).ok());
  TxWrite later;
  later.retry_after = 3600s;
  ASSERT_TRUE(a->write("future", 1, later).ok());
  ASSERT_TRUE(a->create(spec("final", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")})).ok());
  TxWrite fin;
  fin.final_attempt_reason = "upstream response success";
  ASSERT_TRUE(a->write("final", 1, fin).ok());
  ASSERT_TRUE(b->create(spec("nobody", {BlobSpec::create(std::string(kBodyBlobName))})).ok());
  ASSERT_TRUE(a->create(spec("leased", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")}, true)).ok());

  std::mutex mu;
  std::map<std::string, int> claims;
  std::set<std::string> by_b;
  auto worker = [&](Storage* s, bool is_b) {
    for (;;) {
      auto d = s->dequeue(3);
      ASSERT_TRUE(d.ok()) << d.error().message;
      if (d->empty()) return;
      std::lock_guard lk(mu);
      for (const auto& x : *d) {
        EXPECT_TRUE(x.tx.leased_by_me);
        EXPECT_EQ(x.attempt_id, 1);
        EXPECT_FALSE(x.notification_only);
        ++claims[x.tx.rest_id];
        if (is_b) by_b.insert(x.tx.rest_id);
      }
    }
  };
  std::thread t1(worker, a.get(), false), t2(worker, b.get(), true);
  t1.join();
  t2.join();
  // "nobody" has no complete input but b created it: b may retry it.
  EXPECT_EQ(claims.size(), static_cast<std::size_t>(n + 1));
  for (const auto& [id, count] : claims) EXPECT_EQ(count, 1) << id;
  EXPECT_EQ(claims.count("nobody"), 1u);
  EXPECT_EQ(by_b.count("nobody"), 1u);
  EXPECT_EQ(claims.count("future"), 0u);
  EXPECT_EQ(claims.count("final"), 0u);
  EXPECT_EQ(claims.count("leased"), 0u);
  EXPECT_EQ(b->load("due0")->owner_session_uri.has_value(), !by_b.count("due0"));

  // The future one becomes due.
  a->set_clock_offset_for_test(3601s);
  auto d = a->dequeue(10);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->size(), 1u);
  EXPECT_EQ((*d)[0].tx.rest_id, "future");
}

TEST_P(Attempts, DequeueLateNotification) {
  auto s = open_with_session("http://a");
  ASSERT_TRUE(s->create(spec("t", {BlobSpec::inline_bytes(std::string(kBodyBlobName), "x")})).ok());
  TxWrite fin;
  fin.final_attempt_reason = "upstream response permfail";  // notification off: nfn = true
  ASSERT_TRUE(s->write("t", 1, fin).ok());
  EXPECT_TRUE(s->dequeue(5)->empty());
  TxWrite notif;  // the client asks for a notification after the fact
  auto j = s->load("t")->json;
  j["notification"] = json::object();
  notif.json = j;
  ASSERT_TRUE(s->write("t", 2, notif).ok());
  auto d = s->dequeue(5);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->size(), 1u);
  EXPECT_TRUE((*d)[0].notification_only);
  EXPECT_EQ((*d)[0].attempt_id, 0);
  EXPECT_EQ((*d)[0].tx.attempt_count, 0);
  TxWrite done;
  done.notification_done = true;
  done.release_lease = true;
  ASSERT_TRUE(s->write("t", (*d)[0].tx.version, done).ok());
  EXPECT_TRUE(s->dequeue(5)->empty());
}

KOUKAN_STORAGE_SUITE(Attempts);

TEST(OpenStorage, UrlForms) {
  const auto dir = std::filesystem::temp_directory_path() / ("koukan_url_" + test::random_suffix());
  std::filesystem::create_directories(dir);
  const std::string p = (dir / "a.db").string();
  for (const std::string& url : {"sqlite://" + p, "sqlite:" + p, "sqlite+pysqlite://" + p,
                                 "sqlite:///" + p}) {
    auto s = open_storage(url);
    ASSERT_TRUE(s.ok()) << url << ": " << s.error().message;
    EXPECT_EQ((*s)->engine(), "sqlite");
  }
  EXPECT_EQ(open_storage("mysql://x").error().code, Errc::bad_request);
  EXPECT_EQ(open_storage("sqlite://").error().code, Errc::bad_request);
  auto bad = open_storage("sqlite://" + (dir / "no/such/dir/x.db").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, Errc::unavailable);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace koukan::router
