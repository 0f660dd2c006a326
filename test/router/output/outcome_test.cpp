// The output handler's end-of-attempt decision (router.md §8.3 step 5) and
// the stored-tx -> chain view.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "router/output/output_service.hpp"

namespace koukan::router {
namespace {

Mailbox mb(std::string m) {
  Mailbox b;
  b.mailbox = std::move(m);
  return b;
}

TransactionMetadata tx_with(std::optional<Response> mail, std::vector<std::optional<Response>> rcpt,
                            bool body, bool finalized, std::optional<Response> data = {}) {
  TransactionMetadata t;
  t.mail_from = mb("a@example.com");
  t.mail_response = mail;
  for (std::size_t i = 0; i < rcpt.size(); ++i) t.rcpt_to.push_back(mb("r@example.com"));
  t.rcpt_response = std::move(rcpt);
  if (body) {
    BodyStatus bs;
    bs.blob_status = BlobStatus{"body", finalized};
    t.body = bs;
  }
  t.data_response = data;
  return t;
}

TEST(Outcome, SuccessIsFinal) {
  auto o = decide_outcome(tx_with(Response(250), {Response(250)}, true, true, Response(250)), false);
  EXPECT_TRUE(o.done);
  EXPECT_EQ(o.final_reason, "upstream response success");
}

TEST(Outcome, DataTempAsksTheRetryPolicy) {
  auto o = decide_outcome(tx_with(Response(250), {Response(250)}, true, true, Response(451)), false);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.final_reason.empty());
  EXPECT_TRUE(o.needs_retry_decision);
}

TEST(Outcome, DataPermIsFinal) {
  auto o = decide_outcome(tx_with(Response(250), {Response(250)}, true, true, Response(554)), false);
  EXPECT_EQ(o.final_reason, "upstream response permfail");
}

TEST(Outcome, MailPermAndTemp) {
  EXPECT_EQ(decide_outcome(tx_with(Response(550), {Response(550)}, false, false), false).final_reason,
            "upstream mail_response permfail");
  auto t = decide_outcome(tx_with(Response(421), {Response(421)}, false, false), false);
  EXPECT_TRUE(t.done);
  EXPECT_TRUE(t.needs_retry_decision);
}

TEST(Outcome, AllRcptsFailedNeedsABody) {
  // Incremental tx, no body yet: keep waiting (§8.3 case 5 needs a body).
  EXPECT_FALSE(decide_outcome(tx_with(Response(250), {Response(550)}, false, false), false).done);
  EXPECT_EQ(decide_outcome(tx_with(Response(250), {Response(550)}, true, false), false).final_reason,
            "upstream rcpt_response permfail");
  EXPECT_EQ(decide_outcome(tx_with(Response(250), {Response(550), Response(450)}, true, false), false)
                .final_reason,
            "exploder/oneshot all rcpts failed");
  EXPECT_TRUE(
      decide_outcome(tx_with(Response(250), {Response(450)}, true, false), false).needs_retry_decision);
}

TEST(Outcome, WaitingForTheBodyIsNotDone) {
  EXPECT_FALSE(decide_outcome(tx_with(Response(250), {Response(250)}, true, false), false).done);
  EXPECT_FALSE(decide_outcome(tx_with(Response(250), {Response(250)}, false, false), false).done);
}

TEST(Outcome, UnansweredRequestMeansABrokenChain) {
  auto o = decide_outcome(tx_with(Response(250), {std::nullopt}, false, false), false);
  EXPECT_TRUE(o.done);
  EXPECT_TRUE(o.needs_retry_decision);
  auto d = decide_outcome(tx_with(Response(250), {Response(250)}, true, true), false);
  EXPECT_TRUE(d.done);
  EXPECT_TRUE(d.needs_retry_decision);
}

TEST(Outcome, CancelAndDownstreamTimeout) {
  auto c = tx_with(Response(250), {Response(250)}, true, false);
  c.cancelled = true;
  auto oc = decide_outcome(c, false);
  EXPECT_TRUE(oc.done);
  EXPECT_TRUE(oc.final_reason.empty());
  EXPECT_FALSE(oc.needs_retry_decision);
  auto ot = decide_outcome(tx_with(Response(250), {Response(250)}, true, false), true);
  EXPECT_EQ(ot.final_reason, "downstream timeout");
}

TEST(DownstreamView, HidesOutputHandlerFieldsAndShowsBodyStatus) {
  TxRecord rec;
  rec.rest_id = "abc";
  rec.json = boost::json::parse(
                 R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}],)"
                 R"("retry":{},"notification":{},"sender":{"name":"s"}})")
                 .as_object();
  BlobRef b;
  b.name = std::string(kBodyBlobName);
  b.blob_id = 7;
  b.stored_length = 10;
  b.total = 10;
  b.finalized = true;
  rec.blobs.push_back(b);
  auto v = downstream_view(rec);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_FALSE(v->retry);
  EXPECT_FALSE(v->notification);
  ASSERT_TRUE(v->body);
  const auto& bs = std::get<BodyStatus>(*v->body);
  ASSERT_TRUE(bs.blob_status);
  EXPECT_TRUE(bs.blob_status->finalized);
  ASSERT_EQ(v->rcpt_to.size(), 1u);
  EXPECT_EQ(v->rcpt_to[0].mailbox, "b@example.com");
}

TEST(DownstreamView, BadStoredJsonIsAnError) {
  TxRecord rec;
  rec.json = boost::json::parse(R"({"bogus":1})").as_object();
  EXPECT_FALSE(downstream_view(rec).ok());
}

}  // namespace
}  // namespace koukan::router
