// Transaction JSON: views, placeholders, parsing rules (rest-api.md §4, §5, §7).
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "common/json/transaction.hpp"

namespace koukan {
namespace {

namespace json = boost::json;

TransactionMetadata parse_ok(std::string_view text, View view) {
  auto r = tx_from_json_string(text, view);
  EXPECT_TRUE(r.ok()) << text << " -> " << (r.ok() ? "" : r.error().message);
  return r.ok() ? std::move(r).value() : TransactionMetadata{};
}

std::string parse_err(std::string_view text, View view) {
  auto r = tx_from_json_string(text, view);
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, Errc::bad_request) << text;
  return r.error().message;
}

// ---- READ emission: the §7 examples, byte for byte ----------------------------------

TEST(TxReadJson, CreateExample71) {
  // What the router stored for the §7.1 create; READ shows placeholders only.
  TransactionMetadata tx;
  tx.mail_from = Mailbox{"alice@example.com", {}};
  tx.rcpt_to = {Mailbox{"bob@example.com", {}}};
  tx.body = BodyStatus{BlobStatus{"http://r0.example:8000/transactions/hT2cQx/body", false}, {}};
  tx.retry = json::object{{"max_attempts", 30}};
  tx.sender = Sender{"submission", "smtp-msa"};
  tx.smtp_meta = json::object{{"ehlo_host", "x"}};
  tx.filter_output = json::object{{"f", json::object{{"status", 3}}}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"mail_from":{},"rcpt_to":[{}],"body":{"blob_status":{"uri":)"
            R"("http://r0.example:8000/transactions/hT2cQx/body"}},"retry":{},"sender":{}})");
}

TEST(TxReadJson, InlineAndMessageBuilderCreateResponses71) {
  TransactionMetadata tx;
  tx.mail_from = Mailbox{"alice@example.com", {}};
  tx.rcpt_to = {Mailbox{"bob@example.com", {}}};
  tx.body = BodyStatus{BlobStatus{"http://router.example:8000/transactions/Zk3a/body", true}, {}};
  tx.retry = json::object{};
  tx.sender = Sender{};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"mail_from":{},"rcpt_to":[{}],"body":{"blob_status":{"uri":"http://router.example:8000/transactions/Zk3a/body","finalized":true}},"retry":{},"sender":{}})");

  MessageBuilderStatus mb;
  mb.blob_status = {{"my_html", {"http://r0.example:8000/transactions/Pq9/blob/my_html", false}},
                    {"inline1", {"http://router.example:8000/transactions/Pq9/blob/inline1", true}}};
  tx.body = BodyStatus{std::nullopt, mb};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"mail_from":{},"rcpt_to":[{}],"body":{"message_builder":{"blob_status":{)"
            R"("my_html":{"uri":"http://r0.example:8000/transactions/Pq9/blob/my_html"},)"
            R"("inline1":{"uri":"http://router.example:8000/transactions/Pq9/blob/inline1","finalized":true}}}},)"
            R"("retry":{},"sender":{}})");
}

constexpr std::string_view kGet72 =
    R"({"mail_from":{},"mail_response":{"code":250,"message":"ok"},)"
    R"("rcpt_to":[{}],"rcpt_response":[{"code":250,"message":"ok"}],)"
    R"("data_response":{"code":250,"message":"2.0.0 queued"},"attempt_count":1,)"
    R"("body":{"blob_status":{"uri":"http://router.example:8000/transactions/hT2cQx/body","finalized":true}},)"
    R"("retry":{},"final_attempt_reason":"upstream response success","sender":{}})";

constexpr std::string_view kPatch73 =
    R"({"remote_host":["203.0.113.5",41234],"local_host":["192.0.2.10",25],"mail_from":{},)"
    R"j("mail_response":{"code":250,"message":"MAIL ok (exploder noop)"},)j"
    R"("rcpt_to":[{},{}],"rcpt_response":[{"code":250,"message":"ok"}],"attempt_count":1,)"
    R"("body":{"blob_status":{"uri":"http://router.example:8000/transactions/K7/body"}},"sender":{}})";

TEST(TxReadJson, GetExample72KeyOrder) {
  // Built field by field in a different order than emitted.
  TransactionMetadata tx;
  tx.sender = Sender{"submission", std::nullopt};
  tx.final_attempt_reason = "upstream response success";
  tx.retry = json::object{};
  tx.body = BodyStatus{BlobStatus{"http://router.example:8000/transactions/hT2cQx/body", true}, {}};
  tx.attempt_count = 1;
  tx.data_response = Response(250, "2.0.0 queued");
  tx.rcpt_response = {Response(250)};
  tx.rcpt_to = {Mailbox{"bob@example.com", {}}};
  tx.mail_response = Response(250);
  tx.mail_from = Mailbox{"alice@example.com", {}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead), kGet72);
}

TEST(TxReadJson, PatchExample73KeyOrder) {
  TransactionMetadata tx;
  tx.remote_host = HostPort{"203.0.113.5", 41234};
  tx.local_host = HostPort{"192.0.2.10", 25};
  tx.mail_from = Mailbox{"alice@example.org", {{"SIZE", "2048"}}};
  tx.mail_response = Response(250, "MAIL ok (exploder noop)");
  tx.rcpt_to = {Mailbox{"bob@example.com", {}}, Mailbox{"carol@example.com", {}}};
  tx.rcpt_response = {Response(250), std::nullopt};  // trailing "no response" dropped
  tx.attempt_count = 1;
  tx.body = BodyStatus{BlobStatus{"http://router.example:8000/transactions/K7/body", false}, {}};
  tx.sender = Sender{"ingress", "smtp-mx"};
  tx.smtp_meta = json::object{{"ehlo_host", "mx.example.org"}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead), kPatch73);
}

TEST(TxReadJson, ExamplesRoundTripThroughClientParse) {
  for (auto text : {kGet72, kPatch73}) {
    auto tx = parse_ok(text, View::RestRead);
    EXPECT_EQ(tx_to_json_string(tx, View::RestRead), text);
  }
  auto tx = parse_ok(kPatch73, View::RestRead);
  ASSERT_EQ(tx.rcpt_to.size(), 2u);
  EXPECT_TRUE(tx.rcpt_to[0].placeholder);
  EXPECT_TRUE(tx.mail_from->placeholder);
  EXPECT_TRUE(tx.sender->placeholder);
  EXPECT_EQ(tx.remote_host, (HostPort{"203.0.113.5", 41234}));
  EXPECT_EQ(tx.mail_response->message, "MAIL ok (exploder noop)");
  ASSERT_EQ(tx.rcpt_response.size(), 1u);
  EXPECT_TRUE(tx.rcpt_response[0]->ok());
}

TEST(TxReadJson, NeverNullsOrEmptyArrays) {
  TransactionMetadata tx;
  tx.rcpt_response = {std::nullopt, std::nullopt};
  tx.mail_from = Mailbox{"a@b", {}};
  tx.cancelled = false;
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead), R"({"mail_from":{}})");
  tx.cancelled = true;
  tx.notification = json::object{{"x", 1}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"mail_from":{},"notification":{},"cancelled":true})");
}

TEST(TxReadJson, RcptResponseGapsStayAligned) {
  TransactionMetadata tx;
  tx.rcpt_to = {Mailbox{"a@x", {}}, Mailbox{"b@x", {}}, Mailbox{"c@x", {}}};
  tx.rcpt_response = {std::nullopt, Response(550, "no"), std::nullopt};
  std::string s = tx_to_json_string(tx, View::RestRead);
  EXPECT_EQ(s, R"({"rcpt_to":[{},{},{}],"rcpt_response":[{},{"code":550,"message":"no"}]})");
  auto back = parse_ok(s, View::RestRead);
  ASSERT_EQ(back.rcpt_response.size(), 2u);
  EXPECT_FALSE(back.rcpt_response[0]);
  EXPECT_TRUE(back.rcpt_response[1]->perm());
}

TEST(TxReadJson, RequestBodyFormsAreNotShownOnRead) {
  TransactionMetadata tx;
  tx.body = InlineBody{"Subject: x\r\n\r\nhi\r\n"};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead), "{}");
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate), R"({"body":{"inline":"Subject: x\r\n\r\nhi\r\n"}})");
}

TEST(TxReadJson, ReceiverCombinedBodyShapesRoundTrip) {
  for (std::string_view text : {
           std::string_view(R"({"body":{"blob_status":{"uri":"http://recv/transactions/T1/body"},)"
                            R"("message_builder":{"uri":"http://recv/transactions/T1/message_builder"}}})"),
           std::string_view(R"({"body":{"blob_status":{"uri":"http://recv/transactions/T1/body","finalized":true},)"
                            R"("message_builder":{"blob_status":{"0":{"uri":"http://recv/transactions/T1/blob/0","finalized":true}}}}})"),
       }) {
    auto tx = parse_ok(text, View::RestRead);
    ASSERT_TRUE(tx.body);
    ASSERT_TRUE(std::holds_alternative<BodyStatus>(*tx.body));
    EXPECT_EQ(tx_to_json_string(tx, View::RestRead), text);
  }
  auto tx = parse_ok(R"({"body":{"blob_status":{"uri":"u"},"message_builder":{"uri":"m"}}})",
                     View::RestRead);
  const auto& st = std::get<BodyStatus>(*tx.body);
  EXPECT_EQ(st.message_builder->uri, "m");
  EXPECT_TRUE(st.message_builder->blob_status.empty());
}

TEST(TxReadJson, MessageBuilderBlobStatusKeepsGivenOrder) {
  auto tx = parse_ok(R"({"body":{"message_builder":{"blob_status":{"z":{"uri":"u1"},"a":{"uri":"u2","finalized":false}}}}})",
                     View::RestRead);
  const auto& bs = std::get<BodyStatus>(*tx.body).message_builder->blob_status;
  ASSERT_EQ(bs.size(), 2u);
  EXPECT_EQ(bs[0].first, "z");
  EXPECT_EQ(bs[1].first, "a");
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"body":{"message_builder":{"blob_status":{"z":{"uri":"u1"},"a":{"uri":"u2"}}}}})");
}

// ---- READ parsing as a client (§5.5 rule 1) -------------------------------------------

TEST(TxReadParse, PlaceholdersOnly) {
  auto tx = parse_ok(R"({"mail_from":{},"rcpt_to":[{},{},{}],"sender":{},"filter_output":{}})",
                     View::RestRead);
  EXPECT_TRUE(tx.mail_from->placeholder);
  EXPECT_EQ(tx.rcpt_to.size(), 3u);
  EXPECT_TRUE(tx.sender->placeholder);
  EXPECT_FALSE(tx.filter_output);  // {} carries nothing

  EXPECT_EQ(parse_err(R"({"mail_from":{"m":"a@b"}})", View::RestRead),
            "mail_from: expected placeholder {} in rest_read");
  EXPECT_EQ(parse_err(R"({"rcpt_to":[{},{"m":"a@b"}]})", View::RestRead),
            "rcpt_to[1]: expected placeholder {} in rest_read");
  EXPECT_EQ(parse_err(R"({"sender":{"tag":"x"}})", View::RestRead),
            "sender: expected placeholder {} in rest_read");
  EXPECT_EQ(parse_err(R"({"filter_output":{"a":{}}})", View::RestRead),
            "filter_output: only {} is accepted in rest_read");
  EXPECT_EQ(parse_err(R"({"smtp_meta":{}})", View::RestRead), "'smtp_meta' not valid in rest_read");
  EXPECT_EQ(parse_err(R"({"rcpt_to":[]})", View::RestRead), "empty array for 'rcpt_to'");
  EXPECT_EQ(parse_err(R"({"retry":null})", View::RestRead), "null value for 'retry'");
  EXPECT_EQ(parse_err(R"({"body":{"inline":"x"}})", View::RestRead), "body: unknown key 'inline'");
}

TEST(TxReadParse, ResponseRules) {
  auto tx = parse_ok(R"({"mail_response":{"code":450},"data_response":{"code":"250"},)"
                     R"("rcpt_response":[{"code":250,"message":null},{"code":550},{"code":600},{}]})",
                     View::RestRead);
  EXPECT_EQ(tx.mail_response, Response(450, "temporary error"));
  EXPECT_FALSE(tx.data_response);  // non-integer code: treated as absent
  ASSERT_EQ(tx.rcpt_response.size(), 4u);
  EXPECT_EQ(tx.rcpt_response[0]->message, "ok");
  EXPECT_EQ(tx.rcpt_response[1]->message, "permanent error");
  EXPECT_EQ(tx.rcpt_response[2]->message, "internal error");
  EXPECT_FALSE(tx.rcpt_response[3]);
  EXPECT_EQ(parse_err(R"({"mail_response":[1]})", View::RestRead), "mail_response: must be an object");
  EXPECT_EQ(parse_err(R"({"mail_response":{"code":250,"message":5}})", View::RestRead),
            "mail_response: message must be a string");
  EXPECT_EQ(parse_err(R"({"attempt_count":"1"})", View::RestRead), "attempt_count: must be an integer");
  EXPECT_EQ(parse_err(R"({"cancelled":1})", View::RestRead), "cancelled: must be a boolean");
  EXPECT_EQ(parse_err(R"({"final_attempt_reason":1})", View::RestRead),
            "final_attempt_reason: must be a string");
}

TEST(Response, Classes) {
  Response ok(250), temp(451), perm(550), internal(600);
  EXPECT_TRUE(ok.ok());
  EXPECT_FALSE(ok.err());
  EXPECT_TRUE(temp.temp() && temp.err() && !temp.perm());
  EXPECT_TRUE(perm.perm() && perm.err() && !perm.temp());
  EXPECT_TRUE(internal.err() && !internal.temp() && !internal.perm());
  EXPECT_EQ(perm.major_code(), 5);
  EXPECT_EQ(ok.message, "ok");
  EXPECT_EQ(internal.message, "internal error");
  EXPECT_EQ(Response(250, "2.0.0 queued").message, "2.0.0 queued");
  EXPECT_EQ(to_compact_string(to_json(Response(451))), R"({"code":451,"message":"temporary error"})");
}

// ---- CREATE parsing (server side, §5.2) --------------------------------------------------

constexpr std::string_view kGatewayCreate71 =
    R"({"remote_host":["198.51.100.7",25],"local_host":["192.0.2.10",25],)"
    R"("mail_from":{"m":"alice@example.org"},"rcpt_to":[{"m":"bob@example.com"}],)"
    R"("smtp_meta":{"ehlo_host":"client.example.org","esmtp":true,"tls":false,"auth":false},)"
    R"("sender":{"name":"router","tag":"outbound"}})";

constexpr std::string_view kIngressCreate92 =
    R"({"remote_host":["203.0.113.5",41234],"local_host":["192.0.2.10",25],)"
    R"("mail_from":{"m":"alice@example.org","e":[{"k":"SIZE","p":"2048"}]},)"
    R"("smtp_meta":{"ehlo_host":"mx.example.org","esmtp":true,"tls":false,"auth":false},)"
    R"("sender":{"name":"ingress","tag":"smtp-mx"}})";

TEST(TxCreateParse, GatewayExample92) {
  auto tx = parse_ok(kIngressCreate92, View::RestCreate);
  EXPECT_EQ(tx.remote_host, (HostPort{"203.0.113.5", 41234}));
  EXPECT_EQ(tx.local_host, (HostPort{"192.0.2.10", 25}));
  ASSERT_TRUE(tx.mail_from);
  EXPECT_EQ(tx.mail_from->mailbox, "alice@example.org");
  ASSERT_EQ(tx.mail_from->esmtp.size(), 1u);
  EXPECT_EQ(tx.mail_from->esmtp[0], (EsmtpParam{"SIZE", "2048"}));
  EXPECT_FALSE(tx.mail_from->placeholder);
  EXPECT_TRUE(tx.rcpt_to.empty());
  EXPECT_FALSE(tx.body);
  EXPECT_EQ(tx.smtp_meta->at("ehlo_host"), "mx.example.org");
  EXPECT_EQ(tx.sender, (Sender{"ingress", "smtp-mx"}));
  // The client side emits exactly what it was given.
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate), kIngressCreate92);
  // and the READ answer of §9.2 (after the router added its body placeholder)
  tx.body = BodyStatus{BlobStatus{"http://router.example:8000/transactions/K7/body", false}, {}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"remote_host":["203.0.113.5",41234],"local_host":["192.0.2.10",25],"mail_from":{},)"
            R"("body":{"blob_status":{"uri":"http://router.example:8000/transactions/K7/body"}},"sender":{}})");
}

TEST(TxCreateParse, RouterToGatewayExample71) {
  auto tx = parse_ok(kGatewayCreate71, View::RestCreate);
  ASSERT_EQ(tx.rcpt_to.size(), 1u);
  EXPECT_EQ(tx.rcpt_to[0].mailbox, "bob@example.com");
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate), kGatewayCreate71);
  tx.body = BodyStatus{BlobStatus{"http://gw.example:8001/transactions/Nn8e/body", false}, {}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestRead),
            R"({"remote_host":["198.51.100.7",25],"local_host":["192.0.2.10",25],"mail_from":{},"rcpt_to":[{}],)"
            R"("body":{"blob_status":{"uri":"http://gw.example:8001/transactions/Nn8e/body"}},"sender":{}})");
}

TEST(TxCreateParse, SubmissionBodies) {
  auto tx = parse_ok(R"({"mail_from":{"m":"alice@example.com"},"rcpt_to":[{"m":"bob@example.com"}],)"
                     R"("body":{"inline":"Subject: hi\r\n\r\nhello\r\n"}})",
                     View::RestCreate);
  EXPECT_EQ(std::get<InlineBody>(*tx.body).text, "Subject: hi\r\n\r\nhello\r\n");

  tx = parse_ok(R"({"body":{"reuse_uri":"http://router.example:8000/transactions/hT2cQx/body"}})",
                View::RestCreate);
  const auto& reuse = std::get<ReuseBody>(*tx.body);
  EXPECT_EQ(reuse.path.tx_rest_id, "hT2cQx");
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate),
            R"({"body":{"reuse_uri":"http://router.example:8000/transactions/hT2cQx/body"}})");
  tx = parse_ok(R"({"body":{"reuse_uri":"/transactions/hT2cQx/body"}})", View::RestCreate);
  EXPECT_EQ(std::get<ReuseBody>(*tx.body).path.tx_rest_id, "hT2cQx");

  tx = parse_ok(R"({"body":{}})", View::RestCreate);
  EXPECT_FALSE(tx.body);

  tx = parse_ok(R"({"body":{"message_builder":{"headers":[["subject","hello"]],)"
                R"("text_body":[{"content_type":"text/html","content":{"create_id":"my_html"}},)"
                R"({"content_type":"text/plain","content":{"inline":"hello"}}]}}})",
                View::RestCreate);
  const auto& spec = std::get<MessageBuilderBody>(*tx.body).spec;
  ASSERT_EQ(spec.blobs.size(), 2u);
  EXPECT_EQ(spec.blobs[1].id, "inline1");
  // Re-emitted in the client's form.
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate),
            R"({"body":{"message_builder":{"headers":[["subject","hello"]],)"
            R"("text_body":[{"content_type":"text/html","content":{"create_id":"my_html"}},)"
            R"({"content_type":"text/plain","content":{"inline":"hello"}}]}}})");

  EXPECT_EQ(parse_err(R"({"body":{"reuse_uri":"/transactions/x/blob/y"}})", View::RestCreate),
            "body.reuse_uri: must name a transaction body");
  EXPECT_EQ(parse_err(R"({"body":{"reuse_uri":"/tx/x/body"}})", View::RestCreate),
            "body.reuse_uri: not a blob uri: '/tx/x/body'");
  EXPECT_EQ(parse_err(R"({"body":{"inline":"a","reuse_uri":"b"}})", View::RestCreate),
            "body: must have exactly one of inline, reuse_uri, message_builder");
  EXPECT_EQ(parse_err(R"({"body":{"blob_status":{"uri":"x"}}})", View::RestCreate),
            "body: unknown key 'blob_status'");
  EXPECT_EQ(parse_err(R"({"body":{"inline":5}})", View::RestCreate), "body.inline: must be a string");
  EXPECT_EQ(parse_err(R"({"body":"x"})", View::RestCreate), "body: must be an object");
  EXPECT_EQ(parse_err(R"({"body":{"message_builder":{"text_body":[{"content":{}}]}}})", View::RestCreate),
            "body.message_builder: text_body[0].content must have exactly one of inline, create_id, reuse_uri");
}

TEST(TxCreateParse, Rejections) {
  const View c = View::RestCreate;
  EXPECT_EQ(parse_err(R"({"foo":1})", c), "unknown key 'foo'");
  EXPECT_EQ(parse_err(R"({"rcpt_to":null})", c), "null value for 'rcpt_to'");
  EXPECT_EQ(parse_err(R"({"mail_from":null})", c), "null value for 'mail_from'");
  EXPECT_EQ(parse_err(R"({"body":null})", c), "null value for 'body'");
  EXPECT_EQ(parse_err(R"({"rcpt_to":[]})", c), "empty array for 'rcpt_to'");
  EXPECT_EQ(parse_err(R"({"retry":{}})", c), "'retry' not valid in rest_create");
  EXPECT_EQ(parse_err(R"({"notification":{}})", c), "'notification' not valid in rest_create");
  EXPECT_EQ(parse_err(R"({"mail_response":{"code":250}})", c), "'mail_response' not valid in rest_create");
  EXPECT_EQ(parse_err(R"({"rcpt_to_list_offset":1})", c), "'rcpt_to_list_offset' not valid in rest_create");
  EXPECT_EQ(parse_err(R"({"cancelled":true})", c), "'cancelled' not valid in rest_create");
  EXPECT_EQ(parse_err(R"([1,2])", c), "tx json is not an object");
  EXPECT_EQ(parse_err(R"("x")", c), "tx json is not an object");
  EXPECT_EQ(parse_err(R"({"a":)", c).rfind("invalid json", 0), 0u);
  // Mailbox
  EXPECT_EQ(parse_err(R"({"mail_from":{}})", c), "mail_from: missing m");
  EXPECT_EQ(parse_err(R"({"mail_from":{"e":[]}})", c), "mail_from: missing m");
  EXPECT_EQ(parse_err(R"({"mail_from":"a@b"})", c), "mail_from: must be an object");
  EXPECT_EQ(parse_err(R"({"mail_from":{"m":1}})", c), "mail_from: m must be a string");
  EXPECT_EQ(parse_err(R"({"mail_from":{"m":"a","e":{}}})", c), "mail_from: e must be an array");
  EXPECT_EQ(parse_err(R"({"mail_from":{"m":"a","e":[{"p":"1"}]}})", c), "mail_from.e[0]: missing k");
  EXPECT_EQ(parse_err(R"({"mail_from":{"m":"a","e":[{"k":"X","p":1}]}})", c),
            "mail_from.e[0]: p must be a string");
  EXPECT_EQ(parse_err(R"({"rcpt_to":{"m":"a"}})", c), "rcpt_to: must be an array");
  EXPECT_EQ(parse_err(R"({"rcpt_to":[{"m":"a"},{}]})", c), "rcpt_to[1]: missing m");
  // HostPort
  EXPECT_EQ(parse_err(R"({"remote_host":{"host":"h","port":25}})", c), "remote_host: must be [host, port]");
  EXPECT_EQ(parse_err(R"({"remote_host":["h"]})", c), "remote_host: must be [host, port]");
  EXPECT_EQ(parse_err(R"({"remote_host":["h",25,1]})", c), "remote_host: must be [host, port]");
  EXPECT_EQ(parse_err(R"({"local_host":["h","25"]})", c), "local_host: must be [host, port]");
  EXPECT_EQ(parse_err(R"({"local_host":[25,"h"]})", c), "local_host: must be [host, port]");
  EXPECT_EQ(parse_err(R"({"local_host":["h",70000]})", c), "local_host: must be [host, port]");
  // Sender
  EXPECT_EQ(parse_err(R"({"sender":{"name":"a","tag":"b","x":1}})", c),
            "tx json sender may only contain name,tag");
  EXPECT_EQ(parse_err(R"({"sender":{"tag":1}})", c), "sender.tag must be a string");
  EXPECT_EQ(parse_err(R"({"sender":"x"})", c), "sender: must be an object");
  // free-form objects
  EXPECT_EQ(parse_err(R"({"smtp_meta":[1]})", c), "smtp_meta: must be an object");
  EXPECT_EQ(parse_err(R"({"filter_output":"x"})", c), "filter_output: must be an object");
}

TEST(TxCreateParse, EmptySenderAndEsmtpDetails) {
  auto tx = parse_ok(R"({"sender":{},"mail_from":{"m":"","e":[{"k":"SMTPUTF8"},{"k":"BODY","p":""},{"k":"RET","p":null}]}})",
                     View::RestCreate);
  EXPECT_EQ(tx.sender, Sender{});
  EXPECT_EQ(tx.mail_from->mailbox, "");  // null reverse-path
  ASSERT_EQ(tx.mail_from->esmtp.size(), 3u);
  EXPECT_FALSE(tx.mail_from->esmtp[1].value);
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate),
            R"({"mail_from":{"m":"","e":[{"k":"SMTPUTF8"},{"k":"BODY"},{"k":"RET"}]},"sender":{}})");
  Mailbox m{"x@y", {{"K", std::string()}}};
  EXPECT_EQ(to_compact_string(to_json(m)), R"({"m":"x@y","e":[{"k":"K"}]})");
}

// ---- UPDATE parsing --------------------------------------------------------------------

TEST(TxUpdateParse, ListOffsets) {
  auto tx = parse_ok(R"({"rcpt_to":[{"m":"carol@example.com"}],"rcpt_to_list_offset":1})",
                     View::RestUpdate);
  ASSERT_EQ(tx.rcpt_to.size(), 1u);
  EXPECT_EQ(tx.rcpt_to_list_offset, 1u);
  EXPECT_EQ(tx_to_json_string(tx, View::RestUpdate),
            R"({"rcpt_to":[{"m":"carol@example.com"}],"rcpt_to_list_offset":1})");

  // Other *_list_offset keys skip the key check and are ignored.
  tx = parse_ok(R"({"rcpt_response_list_offset":3,"foo_list_offset":null,"mail_from":{"m":"a"}})",
                View::RestUpdate);
  EXPECT_TRUE(tx.mail_from);
  // The offset without rcpt_to has no effect.
  tx = parse_ok(R"({"rcpt_to_list_offset":2})", View::RestUpdate);
  EXPECT_FALSE(tx.rcpt_to_list_offset);
  EXPECT_TRUE(tx.empty());
  // Offset 0 is omitted when emitting, as the Python client does.
  tx = parse_ok(R"({"rcpt_to":[{"m":"b"}],"rcpt_to_list_offset":0})", View::RestUpdate);
  EXPECT_EQ(tx_to_json_string(tx, View::RestUpdate), R"({"rcpt_to":[{"m":"b"}]})");

  EXPECT_EQ(parse_err(R"({"rcpt_to":[{"m":"b"}],"rcpt_to_list_offset":-1})", View::RestUpdate),
            "rcpt_to_list_offset: must be a non-negative integer");
  EXPECT_EQ(parse_err(R"({"rcpt_to":[{"m":"b"}],"rcpt_to_list_offset":"1"})", View::RestUpdate),
            "rcpt_to_list_offset: must be a non-negative integer");
  EXPECT_EQ(parse_err(R"({"remote_host":["h",1]})", View::RestUpdate),
            "'remote_host' not valid in rest_update");
  EXPECT_EQ(parse_err(R"({"sender":{}})", View::RestUpdate), "'sender' not valid in rest_update");
  EXPECT_EQ(parse_err(R"({"smtp_meta":{}})", View::RestUpdate), "'smtp_meta' not valid in rest_update");
  EXPECT_EQ(parse_err(R"({"foo":1})", View::RestUpdate), "unknown key 'foo'");
  EXPECT_EQ(parse_err(R"({"rcpt_to":null})", View::RestUpdate), "null value for 'rcpt_to'");
  auto fo = parse_ok(R"({"filter_output":{"a.B":{"status":1}}})", View::RestUpdate);
  EXPECT_EQ(fo.filter_output->at("a.B").at("status"), 1);
}

// ---- views -----------------------------------------------------------------------------

TransactionMetadata full_tx() {
  TransactionMetadata tx;
  tx.remote_host = HostPort{"1.2.3.4", 1000};
  tx.local_host = HostPort{"5.6.7.8", 25};
  tx.mail_from = Mailbox{"a@x", {{"SIZE", "1"}}};
  tx.mail_response = Response(250);
  tx.rcpt_to = {Mailbox{"b@y", {}}};
  tx.rcpt_response = {Response(451)};
  tx.data_response = Response(250, "queued");
  tx.attempt_count = 2;
  tx.body = BodyStatus{BlobStatus{"http://h/transactions/T/body", true}, {}};
  tx.notification = json::object{{"n", 1}};
  tx.retry = json::object{{"r", 1}};
  tx.smtp_meta = json::object{{"tls", true}};
  tx.cancelled = true;
  tx.final_attempt_reason = "downstream cancelled";
  tx.sender = Sender{"s", "t"};
  tx.filter_output = json::object{{"F", json::object{{"status", 0}}}};
  return tx;
}

TEST(TxViews, FieldTable) {
  auto tx = full_tx();
  EXPECT_EQ(tx_to_json_string(tx, View::Db),
            R"({"remote_host":["1.2.3.4",1000],"local_host":["5.6.7.8",25],)"
            R"("mail_from":{"m":"a@x","e":[{"k":"SIZE","p":"1"}]},"rcpt_to":[{"m":"b@y"}],)"
            R"("notification":{"n":1},"retry":{"r":1},"smtp_meta":{"tls":true},"cancelled":true,)"
            R"("sender":{"name":"s","tag":"t"},"filter_output":{"F":{"status":0}}})");
  EXPECT_EQ(tx_to_json_string(tx, View::DbAttempt),
            R"({"mail_response":{"code":250,"message":"ok"},"rcpt_response":[{"code":451,"message":"temporary error"}],)"
            R"("data_response":{"code":250,"message":"queued"},"filter_output":{"F":{"status":0}}})");
  EXPECT_EQ(tx_to_json_string(tx, View::ExploderUpdate),
            R"({"mail_from":{"m":"a@x","e":[{"k":"SIZE","p":"1"}]},)"
            R"("body":{"blob_status":{"uri":"http://h/transactions/T/body","finalized":true}},)"
            R"("notification":{"n":1},"retry":{"r":1},"cancelled":true})");
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate),
            R"({"remote_host":["1.2.3.4",1000],"local_host":["5.6.7.8",25],)"
            R"("mail_from":{"m":"a@x","e":[{"k":"SIZE","p":"1"}]},"rcpt_to":[{"m":"b@y"}],)"
            R"("smtp_meta":{"tls":true},"sender":{"name":"s","tag":"t"},"filter_output":{"F":{"status":0}}})");
  EXPECT_TRUE(field_valid_in_view("rcpt_to", View::AddRoute));
  EXPECT_FALSE(field_valid_in_view("rcpt_to", View::ExploderCreate));
  EXPECT_FALSE(field_valid_in_view("body", View::Db));
  EXPECT_TRUE(field_valid_in_view("attempt_count", View::RestRead));
  EXPECT_TRUE(field_valid_in_view("anything_goes", View::All) == false);
  EXPECT_TRUE(field_valid_in_view("final_attempt_reason", View::All));
}

TEST(TxViews, AllRoundTrips) {
  auto tx = full_tx();
  auto s = tx_to_json_string(tx, View::All);
  auto back = parse_ok(s, View::All);
  EXPECT_EQ(back, tx);
  for (View v : {View::Db, View::DbAttempt, View::ExploderCreate, View::AddRoute}) {
    auto parsed = parse_ok(tx_to_json_string(tx, v), v);
    EXPECT_EQ(tx_to_json_string(parsed, v), tx_to_json_string(tx, v)) << view_name(v);
  }
}

TEST(TxViews, NonAsciiIsRaw) {
  TransactionMetadata tx;
  tx.mail_from = Mailbox{"j\xc3\xbcrgen@example.de", {}};
  EXPECT_EQ(tx_to_json_string(tx, View::RestCreate), "{\"mail_from\":{\"m\":\"j\xc3\xbcrgen@example.de\"}}");
}

}  // namespace
}  // namespace koukan
