// Message-builder spec (rest-api.md §4.11) and blob paths (§8.6).
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "common/json/message_builder.hpp"
#include "common/json/transaction.hpp"

namespace koukan {
namespace {

namespace json = boost::json;

Result<MessageBuilderSpec> parse(std::string_view text) {
  return parse_message_builder(json::parse(text));
}

std::string err(std::string_view text) {
  auto r = parse(text);
  EXPECT_FALSE(r.ok()) << text;
  if (r.ok()) return "";
  EXPECT_EQ(r.error().code, Errc::bad_request);
  return r.error().message;
}

constexpr std::string_view kSpec411 = R"({"headers": [["from", [{"display_name": "alice a", "address": "alice@example.com"}]],
             ["to", [{"address": "bob@example.com"}]],
             ["subject", "hello"],
             ["date", {"unix_secs": 1709750551, "tz_offset": -28800}],
             ["message-id", ["abc@xyz"]],
             ["references", ["abd@xyz", "abe@xyz"]]],
 "text_body": [{"content_type": "text/html", "content": {"create_id": "my_html"}},
               {"content_type": "text/plain", "content": {"inline": "hello"}}],
 "related_attachments": [{"content_type": "image/png", "content_id": "xyz123",
                          "content": {"reuse_uri": "/transactions/Old/blob/img"}}],
 "file_attachments": [{"content_type": "application/pdf", "filename": "a.pdf",
                       "content": {"create_id": "pdf"}}]})";

TEST(MessageBuilder, SpecExample411) {
  auto r = parse(kSpec411);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& s = *r;
  ASSERT_EQ(s.blobs.size(), 4u);
  EXPECT_EQ(s.blobs[0].id, "my_html");
  EXPECT_EQ(s.blobs[0].kind, MessageBuilderBlob::Kind::create);
  EXPECT_EQ(s.blobs[1].id, "inline1");  // second text_body part
  EXPECT_EQ(s.blobs[1].kind, MessageBuilderBlob::Kind::inline_data);
  EXPECT_EQ(s.blobs[1].inline_data, "hello");
  EXPECT_EQ(s.blobs[2].id, "img");  // a reused blob keeps its id
  EXPECT_EQ(s.blobs[2].kind, MessageBuilderBlob::Kind::reuse);
  EXPECT_EQ(s.blobs[2].reuse_uri, "/transactions/Old/blob/img");
  EXPECT_EQ(s.blobs[2].reuse, (BlobPath{"Old", "img"}));
  EXPECT_EQ(s.blobs[3].id, "pdf");
  EXPECT_EQ(s.find_blob("inline1"), &s.blobs[1]);
  EXPECT_EQ(s.find_blob("nope"), nullptr);

  EXPECT_EQ(to_compact_string(s.json),
            R"({"headers":[["from",[{"display_name":"alice a","address":"alice@example.com"}]],)"
            R"(["to",[{"address":"bob@example.com"}]],["subject","hello"],)"
            R"(["date",{"unix_secs":1709750551,"tz_offset":-28800}],["message-id",["abc@xyz"]],)"
            R"(["references",["abd@xyz","abe@xyz"]]],)"
            R"("text_body":[{"content_type":"text/html","content":{"create_id":"my_html"}},)"
            R"({"content_type":"text/plain","content":{"create_id":"inline1"}}],)"
            R"("related_attachments":[{"content_type":"image/png","content_id":"xyz123","content":{"create_id":"img"}}],)"
            R"("file_attachments":[{"content_type":"application/pdf","filename":"a.pdf","content":{"create_id":"pdf"}}]})");

  // The client form is recovered exactly.
  EXPECT_EQ(to_compact_string(s.to_request_json()), to_compact_string(json::parse(kSpec411)));
  auto again = parse_message_builder(s.to_request_json());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, s);
}

TEST(MessageBuilder, InlineIndexCountsAllParts) {
  auto r = parse(R"({"text_body":[{"content":{"inline":"a"}},{"content":{"inline":"b"}}],)"
                 R"("related_attachments":[{"content":{"create_id":"r"}}],)"
                 R"("file_attachments":[{"content":{"inline":"c"}}]})");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->blobs.size(), 4u);
  EXPECT_EQ(r->blobs[0].id, "inline0");
  EXPECT_EQ(r->blobs[1].id, "inline1");
  EXPECT_EQ(r->blobs[2].id, "r");
  EXPECT_EQ(r->blobs[3].id, "inline3");
  // Only file_attachments: index still starts at 0.
  auto f = parse(R"({"file_attachments":[{"content":{"inline":"c"}}]})");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->blobs[0].id, "inline0");
}

TEST(MessageBuilder, DuplicateIdsRejected) {
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":"x"}}],"file_attachments":[{"content":{"create_id":"x"}}]})"),
            "message_builder: duplicate blob id 'x'");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"inline":"a"}}],"file_attachments":[{"content":{"create_id":"inline0"}}]})"),
            "message_builder: duplicate blob id 'inline0'");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":"img"}}],)"
                R"("related_attachments":[{"content":{"reuse_uri":"http://r/transactions/T/blob/img"}}]})"),
            "message_builder: duplicate blob id 'img'");
}

TEST(MessageBuilder, BadIdsAndUris) {
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":"a/b"}}]})"),
            "message_builder: text_body[0].content.create_id: blob id may not contain '/': 'a/b'");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":"__internal_tx_body"}}]})"),
            "message_builder: text_body[0].content.create_id: reserved blob id '__internal_tx_body'");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":""}}]})"),
            "message_builder: text_body[0].content.create_id: empty blob id");
  EXPECT_EQ(err(R"({"related_attachments":[{"content":{"reuse_uri":"/transactions/T/body"}}]})"),
            "message_builder: related_attachments[0].content.reuse_uri: must name a blob, not a body: "
            "'/transactions/T/body'");
  EXPECT_EQ(err(R"({"related_attachments":[{"content":{"reuse_uri":"/transactions/T/blob/__internal_x"}}]})"),
            "message_builder: related_attachments[0].content.reuse_uri: reserved blob id '__internal_x'");
  EXPECT_EQ(err(R"({"file_attachments":[{"content":{"reuse_uri":"img"}}]})"),
            "message_builder: file_attachments[0].content.reuse_uri: not a blob uri: 'img'");
}

TEST(MessageBuilder, WrongShapes) {
  EXPECT_EQ(err(R"([])"), "message_builder: not an object");
  EXPECT_EQ(err(R"({"headers":{}})"), "message_builder: headers must be an array");
  EXPECT_EQ(err(R"({"text_body":{}})"), "message_builder: text_body must be an array");
  EXPECT_EQ(err(R"({"text_body":["x"]})"), "message_builder: text_body[0] must be an object");
  EXPECT_EQ(err(R"({"text_body":[{"content_type":"text/plain"}]})"),
            "message_builder: text_body[0]: missing content");
  EXPECT_EQ(err(R"({"text_body":[{"content":"hello"}]})"),
            "message_builder: text_body[0].content must be an object");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"inline":"a","create_id":"b"}}]})"),
            "message_builder: text_body[0].content must have exactly one of inline, create_id, reuse_uri");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"data":"a"}}]})"),
            "message_builder: text_body[0].content: unknown key 'data'");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"inline":1}}]})"),
            "message_builder: text_body[0].content.inline must be a string");
  EXPECT_EQ(err(R"({"text_body":[{"content":{"create_id":null}}]})"),
            "message_builder: text_body[0].content.create_id must be a string");
}

TEST(MessageBuilder, NonUtf8InlineRejected) {
  json::object part;
  part["content"] = json::object{{"inline", json::string("caf\xe9")}};  // Latin-1 e-acute
  json::object spec;
  spec["text_body"] = json::array{part};
  auto r = parse_message_builder(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "message_builder: text_body[0].content.inline is not valid UTF-8");

  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(valid_utf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(valid_utf8("\x80"));
}

TEST(MessageBuilder, HeadersOfWrongLengthSkipped) {
  auto r = parse(R"({"headers":[["subject","hi"],["x"],["a","b","c"],"junk",[1,"v"],["y",["z"]]]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(to_compact_string(r->json), R"({"headers":[["subject","hi"],["y",["z"]]]})");
  EXPECT_TRUE(r->blobs.empty());
}

TEST(MessageBuilder, UnknownTopLevelKeysKeptVerbatim) {
  auto r = parse(R"({"x-extension":{"a":1},"text_body":[{"content":{"inline":"a"}}]})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(to_compact_string(r->json),
            R"({"x-extension":{"a":1},"text_body":[{"content":{"create_id":"inline0"}}]})");
}

// ---- blob paths -----------------------------------------------------------------------

TEST(BlobPath, Accepts) {
  EXPECT_EQ(*parse_blob_path("http://router.example:8000/transactions/hT2cQx/body"),
            (BlobPath{"hT2cQx", std::nullopt}));
  EXPECT_EQ(*parse_blob_path("/transactions/hT2cQx/body"), (BlobPath{"hT2cQx", std::nullopt}));
  EXPECT_EQ(*parse_blob_path("https://h/transactions/T/blob/my_html"), (BlobPath{"T", "my_html"}));
  EXPECT_EQ(*parse_blob_path("/transactions/T/blob/inline1"), (BlobPath{"T", "inline1"}));
  EXPECT_EQ(*parse_blob_path("http://h:1/transactions/T/body?x=1#f"), (BlobPath{"T", std::nullopt}));
  EXPECT_EQ(blob_path(BlobPath{"T", "b"}), "/transactions/T/blob/b");
  EXPECT_EQ(blob_path(BlobPath{"T", std::nullopt}), "/transactions/T/body");
}

TEST(BlobPath, Rejects) {
  for (std::string_view bad : {
           "", "/", "transactions/T/body", "/transactions/T", "/transactions/T/", "/transactions//body",
           "/transactions/T/body/", "/transactions/T/blob", "/transactions/T/blob/", "/transactions/T/blob/a/b",
           "/transactions/T/bodyx", "/senders/T/body", "http://host", "http://host/x/transactions/T/body",
           "://h/transactions/T/body", "/transactions/T/message_builder"}) {
    auto r = parse_blob_path(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::bad_request);
    }
  }
  EXPECT_EQ(parse_blob_path("/x").error().message, "not a blob uri: '/x'");
}

TEST(BlobPath, CheckBlobId) {
  EXPECT_TRUE(check_blob_id("my_html").ok());
  EXPECT_TRUE(check_blob_id("0").ok());
  EXPECT_FALSE(check_blob_id("").ok());
  EXPECT_FALSE(check_blob_id("a/b").ok());
  EXPECT_FALSE(check_blob_id("__internal_tx_body").ok());
}

}  // namespace
}  // namespace koukan
