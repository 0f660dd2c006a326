// The gateway's outbound side end to end inside one process: REST requests
// over 127.0.0.1 to the RestHandler, SMTP to a scripted fake server over an
// in-memory pipe (spec/gateway.md §4.2-§4.6, §5).
#include "test/gateway/outbound/outbound_test_util.hpp"

namespace koukan::gateway::outbound::testing {
namespace {

Task<std::uint64_t> body_len_of(RestHandler* h, std::string id) {
  auto t = h->table().find(id);
  co_return t ? t->body_len : 0;
}

Task<std::size_t> table_size(RestHandler* h) { co_return h->table().size(); }

bool envelope_done(const json::object& o) { return code(o, "mail_response") != 0 && rcpt_code(o, 0) != 0; }
bool has_data_response(const json::object& o) { return code(o, "data_response") != 0; }

using OutboundTest = OutboundFixture;

// ---- create, GET, long-poll ----------------------------------------------------

TEST_F(OutboundTest, CreateAnswersReadViewAndRunsMailRcpt) {
  start();
  Reply r = post_json("/senders/router/transactions",
                      R"({"remote_host": ["127.0.0.1", 2525], "local_host": ["192.0.2.10", 25],
                          "mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}],
                          "smtp_meta": {"ehlo_host": "client.example.org"},
                          "sender": {"name": "router", "tag": "outbound"}})");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string loc = r.header("location");
  ASSERT_EQ(loc.rfind(std::string(kSession) + "/transactions/", 0), 0u) << loc;
  const std::string id = loc.substr(loc.rfind('/') + 1);
  EXPECT_EQ(id.size(), 11u);  // 8 bytes of entropy, URL-safe base64
  auto o = r.obj();
  EXPECT_EQ(json::serialize(o.at("remote_host")), R"(["127.0.0.1",2525])");
  EXPECT_EQ(json::serialize(o.at("local_host")), R"(["192.0.2.10",25])");
  EXPECT_EQ(json::serialize(o.at("mail_from")), "{}");
  EXPECT_EQ(json::serialize(o.at("rcpt_to")), "[{}]");
  EXPECT_EQ(json::serialize(o.at("sender")), "{}");
  EXPECT_FALSE(o.contains("smtp_meta"));
  EXPECT_FALSE(o.contains("cancelled"));
  EXPECT_EQ(json::serialize(o.at("body")),
            R"({"blob_status":{"uri":")" + std::string(kSession) + "/transactions/" + id + R"(/body"}})");
  // The fake destination answers at once: the 201 already carries MAIL and
  // RCPT (the create waits a few ms for them), at the version a GET shows.
  EXPECT_EQ(code(o, "mail_response"), 250);
  EXPECT_EQ(rcpt_code(o, 0), 250);

  Reply done = wait_for(id, envelope_done);
  EXPECT_EQ(done.header("etag"), r.header("etag"));
  auto d = done.obj();
  EXPECT_EQ(code(d, "mail_response"), 250);
  EXPECT_EQ(message(d, "mail_response"), "2.1.0 sender ok");
  EXPECT_EQ(rcpt_code(d, 0), 250);
  EXPECT_FALSE(d.contains("data_response"));
  auto cmds = fake_->cmds();
  ASSERT_GE(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], "EHLO gw.example");  // from config, never from smtp_meta
  EXPECT_TRUE(fake_->saw("MAIL FROM:<alice@example.org>") || fake_->saw("mail from:<alice@example.org>"));
  EXPECT_TRUE(fake_->saw("RCPT TO:<bob@example.com>") || fake_->saw("rcpt to:<bob@example.com>"));
  ASSERT_EQ(fake_->n_connects(), 1u);
  std::lock_guard l(fake_->mu);
  EXPECT_EQ(fake_->connects[0], (HostPort{"127.0.0.1", 2525}));
}

TEST_F(OutboundTest, CreateToASlowDestinationAnswersAtOnceWithoutResponses) {
  start();
  fake_->greeting_delay_ms = 400;
  const auto t0 = std::chrono::steady_clock::now();
  Reply r = post_json("/senders/router/transactions",
                      R"({"remote_host": ["127.0.0.1", 2525], "mail_from": {"m": "alice@example.org"},
                          "rcpt_to": [{"m": "bob@example.com"}], "sender": {"name": "router", "tag": "outbound"}})");
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_LT(took, std::chrono::milliseconds(300));
  auto o = r.obj();
  EXPECT_FALSE(o.contains("mail_response"));
  EXPECT_FALSE(o.contains("rcpt_response"));
  const std::string loc = r.header("location");
  Reply done = wait_for(loc.substr(loc.rfind('/') + 1), envelope_done);
  EXPECT_EQ(code(done.obj(), "mail_response"), 250);
  EXPECT_EQ(rcpt_code(done.obj(), 0), 250);
}

TEST_F(OutboundTest, LongPollTimesOutWith304AndSameEtag) {
  start();
  const std::string id = create();
  Reply r = wait_for(id, envelope_done);
  const std::string etag = r.header("etag");
  const auto t0 = std::chrono::steady_clock::now();
  Reply p = call("GET", tx_path(id), {}, {{"if-none-match", etag}, {"request-timeout", "1"}});
  EXPECT_EQ(p.status, 304);  // the original answered 500 here
  EXPECT_EQ(p.header("etag"), etag);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 900ms);
  // Quoted and stale ETags: immediate 200.
  Reply q = call("GET", tx_path(id), {}, {{"if-none-match", "\"1\""}});
  EXPECT_EQ(q.status, 200);
  Reply bad = call("GET", tx_path(id), {}, {{"if-none-match", etag}, {"request-timeout", "soon"}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.find("invalid request-timeout header"), std::string::npos);
}

TEST_F(OutboundTest, LongPollWakesOnChange) {
  start();
  const std::string id = create(R"("mail_from": {"m": "alice@example.org"})");
  Reply r = wait_for(id, [](const json::object& o) { return code(o, "mail_response") != 0; });
  auto waiting = call_async("GET", tx_path(id), {}, {{"if-none-match", r.header("etag")}, {"request-timeout", "10"}});
  std::this_thread::sleep_for(100ms);
  Reply p = call("PATCH", tx_path(id), R"({"rcpt_to": [{"m": "carol@example.com"}], "rcpt_to_list_offset": 0})",
                 {{"content-type", "application/json"}, {"if-match", r.header("etag")}});
  EXPECT_EQ(p.status, 200) << p.body;
  ASSERT_EQ(waiting.wait_for(5s), std::future_status::ready);
  Reply w = to_reply(waiting.get());
  EXPECT_EQ(w.status, 200);
  EXPECT_NE(w.header("etag"), r.header("etag"));
}

TEST_F(OutboundTest, UnknownIdsAre404) {
  start();
  Reply g = call("GET", tx_path("nope"));
  EXPECT_EQ(g.status, 404);  // the original: 500
  EXPECT_EQ(g.header("content-type"), "application/json");
  EXPECT_NE(g.body.find("\"error\""), std::string::npos);
  EXPECT_EQ(call("PATCH", tx_path("nope"), {}, {{"if-match", "1"}}).status, 404);
  EXPECT_EQ(call("PUT", tx_path("nope") + "/body", "x").status, 404);
  EXPECT_EQ(call("POST", tx_path("nope") + "/cancel").status, 404);
  EXPECT_EQ(call("PUT", tx_path("nope") + "/blob/b1", "x").status, 404);
  const std::string id = create();
  Reply b = call("PUT", tx_path(id) + "/blob/b1", "x");
  EXPECT_EQ(b.status, 400);
  EXPECT_NE(b.body.find("not supported"), std::string::npos);
  EXPECT_EQ(call("GET", "/healthz").status, 200);
}

// ---- create validation ------------------------------------------------------------

TEST_F(OutboundTest, UnknownOrMissingTagIs400NamingIt) {
  start();
  Reply r = post_json("/senders/router/transactions",
                      R"({"remote_host": ["127.0.0.1", 25], "sender": {"name": "router", "tag": "nosuch"},
                          "mail_from": {"m": "a@b"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("nosuch"), std::string::npos) << r.body;
  Reply m = post_json("/senders/router/transactions", R"({"remote_host": ["127.0.0.1", 25], "mail_from": {"m": "a@b"}})");
  EXPECT_EQ(m.status, 400);
  EXPECT_NE(m.body.find("sender.tag"), std::string::npos) << m.body;
  Reply bad = post_json("/senders/router/transactions", R"({"sender": {"name": "r", "tag": "outbound", "x": 1}})");
  EXPECT_EQ(bad.status, 400);
  Reply junk = post_json("/senders/router/transactions", "{not json");
  EXPECT_EQ(junk.status, 400);
  EXPECT_EQ(fake_->n_connects(), 0u);
}

TEST_F(OutboundTest, RemoteHostMustBeAnIpLiteral) {
  start();
  const std::string id = create(R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}])",
                                "outbound", R"(["mx.example.com", 25])");
  Reply r = wait_for(id, envelope_done);
  auto o = r.obj();
  EXPECT_EQ(code(o, "mail_response"), 400);
  EXPECT_EQ(message(o, "mail_response"), "SmtpEndpoint: bad request: remote_host.host is not a valid IP address");
  // MAIL failed temporarily (400): the recipient fails in the same class.
  EXPECT_EQ(rcpt_code(o, 0), 451);
  EXPECT_EQ(fake_->n_connects(), 0u);

  Reply c = post_json("/senders/router/transactions",
                      R"({"sender": {"name": "router", "tag": "outbound"}, "mail_from": {"m": "a@example.org"}})");
  ASSERT_EQ(c.status, 201);
  const std::string loc = c.header("location");
  Reply n = wait_for(loc.substr(loc.rfind('/') + 1), [](const json::object& o) { return code(o, "mail_response"); });
  EXPECT_EQ(code(n.obj(), "mail_response"), 400);
  EXPECT_EQ(message(n.obj(), "mail_response"), "SmtpEndpoint: bad request: no remote_host");
}

TEST_F(OutboundTest, ConnectFailureIsMailResponse400) {
  start();
  fake_->refuse = true;
  const std::string id = create();
  Reply r = wait_for(id, envelope_done);
  EXPECT_EQ(code(r.obj(), "mail_response"), 400);
  EXPECT_EQ(message(r.obj(), "mail_response"), "connect error connection refused");
  EXPECT_EQ(rcpt_code(r.obj(), 0), 451);  // temporary: the router retries
}

TEST_F(OutboundTest, MailRefusedIsRelayedAndQuits) {
  start();
  fake_->mail_reply = "550 5.7.1 go away";
  const std::string id = create();
  Reply r = wait_for(id, envelope_done);
  EXPECT_EQ(code(r.obj(), "mail_response"), 550);
  EXPECT_EQ(message(r.obj(), "mail_response"), "5.7.1 go away");
  EXPECT_EQ(rcpt_code(r.obj(), 0), 503);
  EXPECT_TRUE(eventually([&] { return fake_->quit(); }));
}

// ---- PATCH -------------------------------------------------------------------------

TEST_F(OutboundTest, PatchPreconditionsDeltaAndHeartbeat) {
  start();
  const std::string id = create(R"("mail_from": {"m": "alice@example.org"})");
  Reply r = wait_for(id, [](const json::object& o) { return code(o, "mail_response") != 0; });
  const std::string etag = r.header("etag");
  const std::string delta = R"({"rcpt_to": [{"m": "bob@example.com"}], "rcpt_to_list_offset": 0, "filter_output": {"x": 1}})";
  const http::Header ct{"content-type", "application/json"};
  Reply no_match = call("PATCH", tx_path(id), delta, {ct});
  EXPECT_EQ(no_match.status, 400);
  EXPECT_NE(no_match.body.find("etags required for update"), std::string::npos);
  Reply wrong = call("PATCH", tx_path(id), delta, {ct, {"if-match", "999"}});
  EXPECT_EQ(wrong.status, 412);
  EXPECT_EQ(wrong.header("etag"), etag);
  Reply ok = call("PATCH", tx_path(id), delta, {ct, {"if-match", "\"" + etag + "\""}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.header("etag"), std::to_string(std::stoll(etag) + 1));
  EXPECT_EQ(json::serialize(ok.obj().at("rcpt_to")), "[{}]");
  EXPECT_FALSE(ok.obj().contains("filter_output"));
  Reply got = wait_for(id, envelope_done);
  EXPECT_EQ(rcpt_code(got.obj(), 0), 250);

  // Heartbeat: empty body, no JSON content type -> version + 1.
  const std::string e2 = got.header("etag");
  Reply hb = call("PATCH", tx_path(id), {}, {{"if-match", e2}});
  EXPECT_EQ(hb.status, 200);
  EXPECT_EQ(hb.header("etag"), std::to_string(std::stoll(e2) + 1));
  Reply text = call("PATCH", tx_path(id), "hello", {{"if-match", hb.header("etag")}});
  EXPECT_EQ(text.status, 400);
  // A stale list offset is refused, not merged.
  Reply off = call("PATCH", tx_path(id), R"({"rcpt_to": [{"m": "x@example.com"}], "rcpt_to_list_offset": 0})",
                   {ct, {"if-match", hb.header("etag")}});
  EXPECT_GE(off.status, 400);
  EXPECT_LT(off.status, 500);
  // mail_from is write-once.
  Reply mf = call("PATCH", tx_path(id), R"({"mail_from": {"m": "mallory@example.org"}})",
                  {ct, {"if-match", hb.header("etag")}});
  EXPECT_EQ(mf.status, 400);
}

// ---- body --------------------------------------------------------------------------

TEST_F(OutboundTest, BodyInTwoPutsDataResponseOnlyAfterTheLast) {
  start();
  const std::string id = create();
  ASSERT_EQ(rcpt_code(wait_for(id, envelope_done).obj(), 0), 250);
  Reply p1 = call("PUT", tx_path(id) + "/body", "hello, ", {{"content-range", "bytes 0-6/*"}});
  ASSERT_EQ(p1.status, 200) << p1.body;
  EXPECT_EQ(p1.body, "{}");
  EXPECT_EQ(p1.header("content-range"), "bytes 0-6/*");
  Reply g = call("GET", tx_path(id));
  EXPECT_FALSE(has_data_response(g.obj()));
  EXPECT_FALSE(finalized(g.obj()));
  // Nothing more happens until the rest arrives.
  Reply lp = call("GET", tx_path(id), {}, {{"if-none-match", g.header("etag")}, {"request-timeout", "1"}});
  EXPECT_EQ(lp.status, 304);
  EXPECT_EQ(fake_->got_data(), "");

  Reply p2 = call("PUT", tx_path(id) + "/body", "world!", {{"content-range", "bytes 7-12/13"}});
  ASSERT_EQ(p2.status, 200) << p2.body;
  EXPECT_EQ(p2.header("content-range"), "bytes 0-12/13");
  // The very next GET reports the body finalized (rest-api.md §9.3.3).
  EXPECT_TRUE(finalized(call("GET", tx_path(id)).obj()));
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(message(d.obj(), "data_response"), "2.0.0 accepted");
  EXPECT_TRUE(finalized(d.obj()));
  EXPECT_EQ(fake_->got_data(), "hello, world!\r\n");  // CRLF added before the final dot
  // The finished session is parked for reuse (RSET), not closed.
  EXPECT_TRUE(eventually([&] { return fake_->saw("RSET"); }));
  EXPECT_FALSE(fake_->quit());
}

TEST_F(OutboundTest, WholePutIsDotStuffedAndExact) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  const std::string msg = "Subject: hi\r\n\r\n.leading dot\r\nline 2\r\n..two\r\n";
  Reply p = call("PUT", tx_path(id) + "/body", msg);
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_EQ(p.header("content-range"), "bytes 0-" + std::to_string(msg.size() - 1) + "/" + std::to_string(msg.size()));
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), msg);
}

TEST_F(OutboundTest, FinalizeHeaderEndsTheBody) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  ASSERT_EQ(call("PUT", tx_path(id) + "/body", "abc\r\n", {{"content-range", "bytes 0-4/*"}}).status, 200);
  Reply bad = call("PUT", tx_path(id) + "/body", "x", {{"x-finalize-blob-length", "6"}});
  EXPECT_EQ(bad.status, 400);  // finalize must come with an empty body
  Reply wrong = call("PUT", tx_path(id) + "/body", {}, {{"x-finalize-blob-length", "4"}});
  EXPECT_EQ(wrong.status, 416);
  EXPECT_EQ(wrong.header("content-range"), "bytes 0-4/*");
  Reply f = call("PUT", tx_path(id) + "/body", {}, {{"x-finalize-blob-length", "5"}});
  ASSERT_EQ(f.status, 200) << f.body;
  EXPECT_EQ(f.header("content-range"), "bytes 0-4/5");
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), "abc\r\n");
  // Finalizing again at the same length is harmless.
  EXPECT_EQ(call("PUT", tx_path(id) + "/body", {}, {{"x-finalize-blob-length", "5"}}).status, 200);
}

TEST_F(OutboundTest, RangedPutsAndOffsetMismatch416) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  const std::string b = tx_path(id) + "/body";
  Reply early = call("PUT", b, "def", {{"content-range", "bytes 3-5/*"}});
  EXPECT_EQ(early.status, 404);  // the body starts at offset 0
  ASSERT_EQ(call("PUT", b, "abcd", {{"content-range", "bytes 0-3/*"}}).status, 200);
  for (const auto& [range, data] : std::vector<std::pair<std::string, std::string>>{
           {"bytes 2-5/*", "cdef"}, {"bytes 6-7/*", "gh"}, {"bytes 0-3/*", "abcd"}}) {
    Reply r = call("PUT", b, data, {{"content-range", range}});
    EXPECT_EQ(r.status, 416) << range;
    EXPECT_EQ(r.header("content-range"), "bytes 0-3/*") << range;
  }
  EXPECT_EQ(call("PUT", b, "whole").status, 416);  // a whole PUT starts at 0
  Reply mismatch = call("PUT", b, "efg", {{"content-range", "bytes 4-7/*"}});
  EXPECT_EQ(mismatch.status, 400);  // content-range length != content-length
  Reply junk = call("PUT", b, "efg", {{"content-range", "bytes 4-/*"}});
  EXPECT_EQ(junk.status, 400);
  ASSERT_EQ(call("PUT", b, "efgh", {{"content-range", "bytes 4-7/10"}}).status, 200);
  Reply other_total = call("PUT", b, "ij", {{"content-range", "bytes 8-9/11"}});
  EXPECT_EQ(other_total.status, 416);
  EXPECT_EQ(other_total.header("content-range"), "bytes 0-7/10");
  Reply last = call("PUT", b, "ij", {{"content-range", "bytes 8-9/10"}});
  ASSERT_EQ(last.status, 200);
  EXPECT_EQ(last.header("content-range"), "bytes 0-9/10");
  EXPECT_EQ(call("PUT", b, "k", {{"content-range", "bytes 10-10/*"}}).status, 416);
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), "abcdefghij\r\n");
}

TEST_F(OutboundTest, NoValidRecipientNoData) {
  start();
  const std::string id = create(R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "rcptperm@example.com"}])");
  Reply r = wait_for(id, envelope_done);
  EXPECT_EQ(rcpt_code(r.obj(), 0), 550);
  ASSERT_EQ(call("PUT", tx_path(id) + "/body", "hello\r\n").status, 200);
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 554);
  EXPECT_EQ(message(d.obj(), "data_response"), "5.5.1 no valid recipients (SmtpEndpoint)");
  EXPECT_FALSE(fake_->saw("DATA"));
  EXPECT_TRUE(eventually([&] { return fake_->saw("RSET"); }));
}

TEST_F(OutboundTest, NextTransactionToTheSameDestinationReusesTheSession) {
  start();
  for (int i = 0; i < 3; ++i) {
    const std::string id = create(R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}])");
    Reply r = wait_for(id, envelope_done);
    EXPECT_EQ(rcpt_code(r.obj(), 0), 250) << i;
    ASSERT_EQ(call("PUT", tx_path(id) + "/body", "hello " + std::to_string(i) + "\r\n").status, 200);
    Reply d = wait_for(id, has_data_response);
    EXPECT_EQ(code(d.obj(), "data_response"), 250) << i;
    EXPECT_TRUE(eventually([&] {
      auto c = fake_->cmds();
      return std::count(c.begin(), c.end(), std::string("RSET")) == i + 1;
    })) << i;
  }
  // One connection, one EHLO, three transactions.
  EXPECT_EQ(fake_->n_connects(), 1u);
  auto c = fake_->cmds();
  EXPECT_EQ(std::count(c.begin(), c.end(), std::string("EHLO gw.example")), 1);
  EXPECT_EQ(std::count_if(c.begin(), c.end(), [](const std::string& x) { return x.rfind("MAIL FROM:", 0) == 0; }), 3);
  EXPECT_EQ(fake_->got_data(), "hello 2\r\n");
}

TEST_F(OutboundTest, AParkedSessionTheServerDroppedIsReplacedByAFreshConnection) {
  start();
  fake_->drop_after_rset = true;
  for (int i = 0; i < 2; ++i) {
    const std::string id = create(R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}])");
    Reply r = wait_for(id, envelope_done);
    EXPECT_EQ(code(r.obj(), "mail_response"), 250) << i << r.body;
    EXPECT_EQ(rcpt_code(r.obj(), 0), 250) << i;
    ASSERT_EQ(call("PUT", tx_path(id) + "/body", "hi\r\n").status, 200);
    Reply d = wait_for(id, has_data_response);
    EXPECT_EQ(code(d.obj(), "data_response"), 250) << i;
    EXPECT_TRUE(eventually([&] {
      std::lock_guard l(fake_->mu);
      return fake_->closed;
    })) << i;
    if (i == 0) {
      std::lock_guard l(fake_->mu);
      fake_->closed = false;
    }
  }
  EXPECT_EQ(fake_->n_connects(), 2u);  // the second MAIL found the session gone
}

TEST_F(OutboundTest, BdatWhenEnabledAndOffered) {
  start();
  fake_->chunking = true;
  const std::string id = create(R"("mail_from": {"m": "alice@example.org"}, "rcpt_to": [{"m": "bob@example.com"}])",
                                "bdat");
  wait_for(id, envelope_done);
  ASSERT_EQ(call("PUT", tx_path(id) + "/body", "hello, ", {{"content-range", "bytes 0-6/*"}}).status, 200);
  ASSERT_EQ(call("PUT", tx_path(id) + "/body", "world!", {{"content-range", "bytes 7-12/13"}}).status, 200);
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), "hello, world!");  // BDAT: bytes as they are
  EXPECT_FALSE(fake_->saw("DATA"));
  EXPECT_TRUE(fake_->saw("BDAT 4"));  // smtp_output chunk_size 4
  EXPECT_TRUE(fake_->saw("BDAT 2 LAST"));
}

TEST_F(OutboundTest, StalledServerBackpressuresThePutButGetAnswers) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  fake_->stall_data = true;  // DATA gets no 354 yet
  const std::string msg(64, 'x');
  auto put = call_async("PUT", tx_path(id) + "/body", msg);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(put.wait_for(0ms), std::future_status::timeout);
  // The PUT read one 8-byte piece for the stalled driver and staged one more:
  // nothing else of the request is buffered.
  auto len = io_.run(body_len_of(handler_.get(), id));
  EXPECT_EQ(len, 16u);
  const auto t0 = std::chrono::steady_clock::now();
  Reply g = call("GET", tx_path(id));
  EXPECT_EQ(g.status, 200);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_FALSE(finalized(g.obj()));
  fake_->stall_data = false;
  ASSERT_EQ(put.wait_for(10s), std::future_status::ready);
  Reply p = to_reply(put.get());
  EXPECT_EQ(p.status, 200);
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), msg + "\r\n");
}

// Ours (docs/compat.md): the last PUT may ask to be answered with the
// transaction once the destination answered the data.
TEST_F(OutboundTest, LastPutAskedToWaitAnswersWithTheDataResponse) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  // Not the last piece: the header changes nothing.
  Reply p1 = call("PUT", tx_path(id) + "/body", "hello, ", {{"content-range", "bytes 0-6/*"}, {"x-koukan-wait-data-ms", "5000"}});
  ASSERT_EQ(p1.status, 200) << p1.body;
  EXPECT_EQ(p1.body, "{}");
  EXPECT_EQ(p1.header("x-koukan-tx-json"), "");
  EXPECT_EQ(call("PUT", tx_path(id) + "/body", "world!", {{"content-range", "bytes 7-12/13"}, {"x-koukan-wait-data-ms", "-1"}}).status, 400);
  Reply p2 = call("PUT", tx_path(id) + "/body", "world!", {{"content-range", "bytes 7-12/13"}, {"x-koukan-wait-data-ms", "5000"}});
  ASSERT_EQ(p2.status, 200) << p2.body;
  EXPECT_EQ(p2.header("content-range"), "bytes 0-12/13");
  EXPECT_EQ(code(p2.obj(), "data_response"), 250);
  EXPECT_EQ(message(p2.obj(), "data_response"), "2.0.0 accepted");
  EXPECT_TRUE(finalized(p2.obj()));
  EXPECT_EQ(fake_->got_data(), "hello, world!\r\n");
  // The JSON is what a GET returns, at the version it names.
  Reply g = call("GET", tx_path(id));
  EXPECT_EQ(p2.header("x-koukan-tx-json"), g.header("etag"));
  EXPECT_EQ(p2.body, g.body);
}

TEST_F(OutboundTest, LastPutWaitRunsOutWithTheTransactionSoFar) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  fake_->stall_data = true;  // no data response while set
  const auto t0 = std::chrono::steady_clock::now();
  Reply p = call("PUT", tx_path(id) + "/body", "hi\r\n", {{"x-koukan-wait-data-ms", "300"}});
  ASSERT_EQ(p.status, 200) << p.body;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 290ms);
  EXPECT_FALSE(has_data_response(p.obj()));
  EXPECT_NE(p.header("x-koukan-tx-json"), "");
  fake_->stall_data = false;
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_EQ(fake_->got_data(), "hi\r\n");
}

// ---- cancel ------------------------------------------------------------------------

TEST_F(OutboundTest, CancelQuitsAndShowsCancelled) {
  start();
  const std::string id = create();
  wait_for(id, envelope_done);
  Reply c = call("POST", tx_path(id) + "/cancel");
  EXPECT_EQ(c.status, 200);
  EXPECT_TRUE(c.body.empty());
  Reply g = call("GET", tx_path(id));
  ASSERT_EQ(g.status, 200);
  EXPECT_TRUE(g.obj().at("cancelled").as_bool());
  EXPECT_TRUE(eventually([&] { return fake_->quit(); }));
  EXPECT_EQ(call("PUT", tx_path(id) + "/body", "x").status, 409);
  EXPECT_EQ(call("POST", tx_path(id) + "/cancel").status, 200);  // again: harmless
}

// ---- GC ----------------------------------------------------------------------------

OutboundOptions short_ttls() {
  OutboundOptions o = default_options();
  o.listener.gc_interval = 0.05;
  o.listener.gc_tx_ttl = 0.6;
  o.listener.gc_done_ttl = 0.3;
  return o;
}

TEST_F(OutboundTest, GcCancelsAndForgetsIdleTx) {
  start(short_ttls());
  const std::string id = create();
  wait_for(id, envelope_done);
  EXPECT_TRUE(eventually([&] { return call("GET", tx_path(id)).status == 404; }, 5s));
  EXPECT_TRUE(eventually([&] { return fake_->quit(); }));
  EXPECT_EQ(io_.run(table_size(handler_.get())), 0u);
}

TEST_F(OutboundTest, GcForgetsDoneTxAfterDoneTtl) {
  OutboundOptions o = short_ttls();
  o.listener.gc_tx_ttl = 600;
  start(o);
  const std::string id = create();
  wait_for(id, envelope_done);
  ASSERT_EQ(call("PUT", tx_path(id) + "/body", "hi\r\n").status, 200);
  Reply d = wait_for(id, has_data_response);
  ASSERT_EQ(code(d.obj(), "data_response"), 250);
  EXPECT_TRUE(eventually([&] { return call("GET", tx_path(id)).status == 404; }, 5s));
}

TEST_F(OutboundTest, HeartbeatsKeepATxAlive) {
  start(short_ttls());
  const std::string id = create();
  Reply r = wait_for(id, envelope_done);
  std::string etag = r.header("etag");
  for (int i = 0; i < 8; ++i) {  // 1.6 s > gc_tx_ttl
    std::this_thread::sleep_for(200ms);
    Reply hb = call("PATCH", tx_path(id), {}, {{"if-match", etag}});
    ASSERT_EQ(hb.status, 200) << "heartbeat " << i;
    etag = hb.header("etag");
  }
  EXPECT_FALSE(fake_->quit());
  EXPECT_TRUE(eventually([&] { return call("GET", tx_path(id)).status == 404; }, 5s));
}

TEST_F(OutboundTest, GcNeverReapsARunningStep) {
  start(short_ttls());
  const std::string id = create();
  wait_for(id, envelope_done);
  fake_->stall_data = true;
  auto put = call_async("PUT", tx_path(id) + "/body", "hello\r\n");
  std::this_thread::sleep_for(1200ms);  // two TTLs
  EXPECT_EQ(call("GET", tx_path(id)).status, 200);
  fake_->stall_data = false;
  ASSERT_EQ(put.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(to_reply(put.get()).status, 200);
  Reply d = wait_for(id, has_data_response);
  EXPECT_EQ(code(d.obj(), "data_response"), 250);
}

}  // namespace
}  // namespace koukan::gateway::outbound::testing
