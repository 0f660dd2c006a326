// Delta and merge (router.md §2.2, rest-api.md §5.3, §5.5).
#include <gtest/gtest.h>

#include "common/json/transaction.hpp"

namespace koukan {
namespace {

namespace json = boost::json;

TransactionMetadata update(std::string_view text) {
  auto r = tx_from_json_string(text, View::RestUpdate);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : TransactionMetadata{};
}

TransactionMetadata read(std::string_view text) {
  auto r = tx_from_json_string(text, View::RestRead);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : TransactionMetadata{};
}

// ---- merge ------------------------------------------------------------------------------

TEST(TxMerge, RcptAppendWithOffset) {
  TransactionMetadata tx;
  tx.mail_from = Mailbox{"alice@example.org", {}};
  ASSERT_TRUE(tx_merge_from(tx, update(R"({"rcpt_to":[{"m":"bob@example.com"}]})")).ok());
  ASSERT_TRUE(
      tx_merge_from(tx, update(R"({"rcpt_to":[{"m":"carol@example.com"}],"rcpt_to_list_offset":1})")).ok());
  ASSERT_EQ(tx.rcpt_to.size(), 2u);
  EXPECT_EQ(tx.rcpt_to[0].mailbox, "bob@example.com");
  EXPECT_EQ(tx.rcpt_to[1].mailbox, "carol@example.com");
  EXPECT_FALSE(tx.rcpt_to_list_offset);
}

TEST(TxMerge, RcptOffsetMismatchIsConflict) {
  TransactionMetadata tx;
  tx.rcpt_to = {Mailbox{"a@x", {}}};
  // Absent offset means 0.
  auto r = tx_merge_from(tx, update(R"({"rcpt_to":[{"m":"b@x"}]})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_EQ(r.error().message, "rcpt_to_list_offset 0 does not match 1 recipients");
  r = tx_merge_from(tx, update(R"({"rcpt_to":[{"m":"b@x"}],"rcpt_to_list_offset":2})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict);
  EXPECT_EQ(tx.rcpt_to.size(), 1u);
}

TEST(TxMerge, ScalarsAreWriteOnce) {
  TransactionMetadata tx;
  ASSERT_TRUE(tx_merge_from(tx, update(R"({"mail_from":{"m":"a@x"}})")).ok());
  // Same address: a no-op (Koukan's Mailbox equality compares the address only).
  ASSERT_TRUE(tx_merge_from(tx, update(R"({"mail_from":{"m":"a@x","e":[{"k":"SIZE","p":"1"}]}})")).ok());
  EXPECT_TRUE(tx.mail_from->esmtp.empty());
  // Different: rejected (the original silently kept the old one).
  auto r = tx_merge_from(tx, update(R"({"mail_from":{"m":"b@x"}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::bad_request);
  EXPECT_EQ(r.error().message, "mail_from already set");
  EXPECT_EQ(tx.mail_from->mailbox, "a@x");

  TransactionMetadata d;
  tx.mail_response = Response(250);
  d.mail_response = Response(250);
  EXPECT_TRUE(tx_merge_from(tx, d).ok());
  d.mail_response = Response(550);
  r = tx_merge_from(tx, d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "mail_response already set");

  TransactionMetadata h;
  h.remote_host = HostPort{"1.2.3.4", 25};
  ASSERT_TRUE(tx_merge_from(tx, h).ok());
  h.remote_host->port = 26;
  EXPECT_EQ(tx_merge_from(tx, h).error().message, "remote_host already set");
}

TEST(TxMerge, PlaceholderMatchesAndLearns) {
  TransactionMetadata tx = read(R"({"mail_from":{},"sender":{}})");
  TransactionMetadata d;
  d.mail_from = Mailbox{"a@x", {}};
  d.sender = Sender{"n", "t"};
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  EXPECT_EQ(tx.mail_from, (Mailbox{"a@x", {}}));
  EXPECT_EQ(tx.sender, (Sender{"n", "t"}));
  // And a placeholder delta never overwrites content.
  ASSERT_TRUE(tx_merge_from(tx, read(R"({"mail_from":{},"sender":{}})")).ok());
  EXPECT_EQ(tx.mail_from->mailbox, "a@x");
}

TEST(TxMerge, RcptResponsesOnlyFillIn) {
  TransactionMetadata tx;
  tx.rcpt_response = {Response(250), std::nullopt};
  TransactionMetadata d;
  d.rcpt_response = {std::nullopt, Response(451), Response(550)};
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  ASSERT_EQ(tx.rcpt_response.size(), 3u);
  EXPECT_EQ(tx.rcpt_response[0], Response(250));
  EXPECT_EQ(tx.rcpt_response[1], Response(451));
  EXPECT_EQ(tx.rcpt_response[2], Response(550));
  d.rcpt_response = {Response(550)};
  auto r = tx_merge_from(tx, d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "rcpt_response[0] already set");
}

TEST(TxMerge, FilterOutputOverlay) {
  TransactionMetadata tx;
  tx.filter_output = json::object{{"A", 1}, {"B", 2}};
  TransactionMetadata d;
  d.filter_output = json::object{{"B", 3}, {"C", 4}};
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  EXPECT_EQ(to_compact_string(*tx.filter_output), R"({"A":1,"B":3,"C":4})");
}

TEST(TxMerge, BodyWriteOnceAndStatusSuccessor) {
  TransactionMetadata tx;
  TransactionMetadata d;
  d.body = InlineBody{"x"};
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  d.body = InlineBody{"y"};
  EXPECT_EQ(tx_merge_from(tx, d).error().message, "body already set");

  TransactionMetadata s;
  s.body = BodyStatus{BlobStatus{"http://a/transactions/T/body", false}, {}};
  d.body = BodyStatus{BlobStatus{"http://b/transactions/T/body", true}, {}};
  ASSERT_TRUE(tx_merge_from(s, d).ok());
  EXPECT_TRUE(std::get<BodyStatus>(*s.body).blob_status->finalized);
  d.body = BodyStatus{BlobStatus{"http://b/transactions/T/body", false}, {}};
  auto r = tx_merge_from(s, d);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::conflict);
}

TEST(TxMerge, CancelledSticks) {
  TransactionMetadata tx;
  TransactionMetadata d;
  d.cancelled = true;
  ASSERT_TRUE(tx_merge_from(tx, d).ok());
  ASSERT_TRUE(tx_merge_from(tx, TransactionMetadata{}).ok());
  EXPECT_TRUE(tx.cancelled);
}

// ---- delta ------------------------------------------------------------------------------

TEST(TxDelta, RcptSuffixWithOffsetAndMergeReproducesNext) {
  TransactionMetadata prev;
  prev.mail_from = Mailbox{"a@x", {}};
  prev.rcpt_to = {Mailbox{"b@x", {}}};
  TransactionMetadata next = prev;
  next.rcpt_to.push_back(Mailbox{"c@x", {}});
  next.rcpt_to.push_back(Mailbox{"d@x", {}});
  next.mail_response = Response(250);
  next.filter_output = json::object{{"F", 1}};

  auto d = tx_delta(prev, next, View::All);
  ASSERT_TRUE(d.ok()) << d.error().message;
  ASSERT_EQ(d->rcpt_to.size(), 2u);
  EXPECT_EQ(d->rcpt_to[0].mailbox, "c@x");
  EXPECT_EQ(d->rcpt_to_list_offset, 1u);
  EXPECT_FALSE(d->mail_from);  // unchanged
  EXPECT_EQ(d->mail_response, Response(250));
  EXPECT_EQ(tx_to_json_string(*d, View::RestUpdate),
            R"({"rcpt_to":[{"m":"c@x"},{"m":"d@x"}],"rcpt_to_list_offset":1,"filter_output":{"F":1}})");

  TransactionMetadata merged = prev;
  ASSERT_TRUE(tx_merge_from(merged, *d).ok());
  EXPECT_EQ(merged, next);

  auto none = tx_delta(next, next, View::All);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST(TxDelta, FirstRecipientHasOffsetZeroOmittedOnWire) {
  TransactionMetadata prev;
  TransactionMetadata next;
  next.rcpt_to = {Mailbox{"b@x", {}}};
  auto d = tx_delta(prev, next, View::RestUpdate);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rcpt_to_list_offset, 0u);
  EXPECT_EQ(tx_to_json_string(*d, View::RestUpdate), R"({"rcpt_to":[{"m":"b@x"}]})");
}

TEST(TxDelta, RemovalAndChangeAreErrors) {
  TransactionMetadata prev;
  prev.mail_from = Mailbox{"a@x", {}};
  prev.rcpt_to = {Mailbox{"b@x", {}}, Mailbox{"c@x", {}}};
  prev.attempt_count = 1;

  TransactionMetadata next = prev;
  next.mail_from.reset();
  auto d = tx_delta(prev, next, View::All);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, Errc::conflict);
  EXPECT_EQ(d.error().message, "mail_from removed");

  next = prev;
  next.mail_from = Mailbox{"z@x", {}};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "mail_from changed");

  next = prev;
  next.rcpt_to.pop_back();
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "rcpt_to shrank");

  next = prev;
  next.rcpt_to[1].mailbox = "q@x";
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "rcpt_to[1] changed");

  next = prev;
  next.attempt_count = 2;  // §5.5 rule 4
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "attempt_count changed");

  // Fields outside the view are not compared.
  next = prev;
  next.attempt_count.reset();
  EXPECT_TRUE(tx_delta(prev, next, View::Db).ok());
}

TEST(TxDelta, ClientComparesSuccessiveReads) {
  auto r1 = read(R"({"remote_host":["h",1],"mail_from":{},"rcpt_to":[{}],"sender":{},)"
                 R"("body":{"blob_status":{"uri":"http://r0/transactions/K7/body"}}})");
  auto r2 = read(R"({"remote_host":["h",1],"mail_from":{},"mail_response":{"code":250},)"
                 R"("rcpt_to":[{},{}],"rcpt_response":[{"code":250}],"sender":{},"filter_output":{},)"
                 R"("body":{"blob_status":{"uri":"http://router/transactions/K7/body","finalized":true}}})");
  auto d = tx_delta(r1, r2, View::RestRead);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(d->mail_response, Response(250));
  EXPECT_EQ(d->rcpt_to.size(), 1u);
  EXPECT_EQ(d->rcpt_response.size(), 1u);
  ASSERT_TRUE(d->body);  // finalized went true; the host may change
  EXPECT_FALSE(d->remote_host);

  // Placeholders match the client's own full values.
  TransactionMetadata sent;
  sent.remote_host = HostPort{"h", 1};
  sent.mail_from = Mailbox{"a@x", {}};
  sent.rcpt_to = {Mailbox{"b@x", {}}};
  sent.sender = Sender{"n", "t"};
  auto d2 = tx_delta(sent, r1, View::RestRead);
  ASSERT_TRUE(d2.ok()) << d2.error().message;
  EXPECT_FALSE(d2->mail_from);
  EXPECT_TRUE(d2->rcpt_to.empty());

  // Rule 2: remote_host must be echoed exactly.
  auto r3 = read(R"({"remote_host":["h",2],"mail_from":{},"rcpt_to":[{}],"sender":{}})");
  EXPECT_EQ(tx_delta(sent, r3, View::RestRead).error().message, "remote_host changed");
  auto r4 = read(R"({"mail_from":{},"rcpt_to":[{}],"sender":{}})");
  EXPECT_EQ(tx_delta(sent, r4, View::RestRead).error().message, "remote_host removed");
}

TEST(TxDelta, RcptResponseOnlyGrows) {
  TransactionMetadata prev;
  prev.rcpt_response = {Response(250), std::nullopt};
  TransactionMetadata next;
  next.rcpt_response = {Response(250), Response(550)};
  auto d = tx_delta(prev, next, View::All);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->rcpt_response, next.rcpt_response);
  next.rcpt_response = {Response(451), Response(550)};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "rcpt_response[0] changed");
  next.rcpt_response = {std::nullopt, Response(550)};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "rcpt_response[0] removed");
  next.rcpt_response = prev.rcpt_response;
  EXPECT_TRUE(tx_delta(prev, next, View::All)->rcpt_response.empty());
}

TEST(TxDelta, FilterOutputKeys) {
  TransactionMetadata prev;
  prev.filter_output = json::object{{"A", 1}, {"B", 2}};
  TransactionMetadata next;
  next.filter_output = json::object{{"A", 1}, {"B", 5}, {"C", 3}};
  auto d = tx_delta(prev, next, View::All);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(to_compact_string(*d->filter_output), R"({"B":5,"C":3})");
  next.filter_output = json::object{{"B", 2}};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "filter_output key 'A' removed");
  // READ never carries it: not compared.
  next.filter_output.reset();
  EXPECT_TRUE(tx_delta(prev, next, View::RestRead).ok());
}

TEST(TxDelta, BodyRules) {
  auto status = [](std::string uri, bool fin) {
    return Body(BodyStatus{BlobStatus{std::move(uri), fin}, {}});
  };
  TransactionMetadata prev;
  TransactionMetadata next;
  prev.body = status("http://a/transactions/T/body", true);
  next.body = status("http://a/transactions/T/body", false);
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "body.blob_status.finalized went back");
  next.body = status("http://a/transactions/U/body", true);
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "body.blob_status.uri changed");
  next.body = InlineBody{"x"};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "body is not a successor");
  next.body.reset();
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "body removed");

  MessageBuilderStatus m1;
  m1.uri = "http://recv/transactions/T1/message_builder";
  m1.blob_status = {{"0", {"http://recv/transactions/T1/blob/0", false}}};
  MessageBuilderStatus m2 = m1;
  m2.uri.reset();  // may vanish
  m2.blob_status[0].second.finalized = true;
  prev.body = BodyStatus{std::nullopt, m1};
  next.body = BodyStatus{std::nullopt, m2};
  auto d = tx_delta(prev, next, View::RestRead);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_TRUE(d->body);
  m2.blob_status.push_back({"1", {"http://recv/transactions/T1/blob/1", false}});
  next.body = BodyStatus{std::nullopt, m2};
  EXPECT_EQ(tx_delta(prev, next, View::RestRead).error().message,
            "body.message_builder.blob_status ids changed");
  // Unchanged status: not in the delta.
  next.body = prev.body;
  EXPECT_FALSE(tx_delta(prev, next, View::RestRead)->body);
  // Request forms must be identical.
  prev.body = InlineBody{"x"};
  next.body = InlineBody{"y"};
  EXPECT_EQ(tx_delta(prev, next, View::All).error().message, "body changed");
}

}  // namespace
}  // namespace koukan
