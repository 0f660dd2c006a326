// rest_output (RestEndpoint) against an in-process fake receiver
// (spec/rest-api.md §8.4, §9.3; filters.md §2.13).
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "router/chain/chain.hpp"
#include "router/chain/registry.hpp"
#include "router/filters/builtin.hpp"
#include "router/filters/rest_output.hpp"
#include "test/router/chain/chain_test_util.hpp"
#include "test/router/filters/fake_receiver.hpp"

namespace koukan::router::filters {
namespace {

using chain::testing::entry;
using chain::testing::mbox;
using testing::FakeReceiver;
using testing::Script;
using namespace std::chrono_literals;
namespace json = boost::json;

Task<Result<std::string>> read_store(std::shared_ptr<std::string> store, std::int64_t off,
                                     std::size_t max) {
  co_return store->substr(static_cast<std::size_t>(off), max);
}

std::optional<std::string> header(const testing::Logged* l, std::string_view name) {
  auto v = l->headers.get(name);
  if (!v) return std::nullopt;
  return std::string(*v);
}

class RestOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake = std::make_unique<FakeReceiver>(io);
    deps.executor = io.get_executor();
    register_rest_output(reg, deps);
    env.rest_id = "D1";
    auto s = store;
    env.read_blob = [s](std::int64_t, std::int64_t off, std::size_t max) {
      return read_store(s, off, max);
    };
  }
  void TearDown() override {
    chain_.reset();
    run_io(fake->server().shutdown(100ms));
  }

  template <class T>
  T run_io(Task<T> t) {
    auto f = asio::co_spawn(io, std::move(t), asio::use_future);
    while (f.wait_for(0s) != std::future_status::ready) io.run_one();
    return f.get();
  }

  std::shared_ptr<const chain::FilterBase> build(const std::string& yaml,
                                                 config::ConfigErrors& errs) {
    return (*reg.find("rest_output"))(entry(yaml), errs);
  }

  void make_chain(const std::string& yaml = "filter: rest_output") {
    config::ConfigErrors errs;
    auto f = build(yaml, errs);
    ASSERT_TRUE(errs.ok()) << errs.error_text();
    ASSERT_TRUE(f);
    std::vector<chain::ChainLink> links{chain::ChainLink{"rest_output", "endpoint[0].chain[0]", f}};
    auto tmpl = std::make_shared<const chain::ChainTemplate>("t", std::move(links));
    chain_ = std::make_unique<chain::ChainInstance>(tmpl, &env);
  }

  void update(TransactionMetadata d) {
    Result<TransactionMetadata> r = run_io(chain_->update(std::move(d)));
    ASSERT_TRUE(r.ok()) << r.error().message;
  }
  const TransactionMetadata& tx() const { return chain_->tx(); }

  void set_body(std::string bytes, bool finalized) {
    *store = std::move(bytes);
    chain::BlobInfo b;
    b.name = "body";
    b.blob_id = 7;
    b.length = static_cast<std::int64_t>(store->size());
    if (finalized) b.total = b.length;
    b.finalized = finalized;
    env.body = b;
  }

  static Body body_status() {
    BodyStatus bs;
    bs.blob_status = BlobStatus{"http://down.example/transactions/D1/body", false};
    return bs;
  }

  TransactionMetadata envelope() {
    TransactionMetadata d;
    d.remote_host = HostPort{"203.0.113.5", 41234};
    d.local_host = HostPort{"192.0.2.10", 25};
    d.mail_from = mbox("alice@example.org");
    d.rcpt_to.push_back(mbox("bob@example.com"));
    d.smtp_meta.emplace();
    (*d.smtp_meta)["ehlo_host"] = "client.example.org";
    Routing r;
    r.rest_endpoint = fake->endpoint();
    r.upstream_sender = RestUpstreamSender{"router", std::string("out"), std::nullopt, std::nullopt};
    d.routing = std::move(r);
    return d;
  }

  std::vector<std::string> content_ranges() const {
    std::vector<std::string> out;
    for (const auto* l : fake->requests("PUT")) {
      auto cr = header(l, "content-range");
      auto fin = header(l, "x-finalize-blob-length");
      out.push_back(cr ? *cr : fin ? "finalize " + *fin : "whole");
    }
    return out;
  }

  asio::io_context io;
  std::unique_ptr<FakeReceiver> fake;
  chain::FilterRegistry reg;
  FilterDeps deps;
  chain::TxEnv env;
  std::shared_ptr<std::string> store = std::make_shared<std::string>();
  std::unique_ptr<chain::ChainInstance> chain_;
};

// ---- config -------------------------------------------------------------------------------

TEST_F(RestOutputTest, ValidConfigBuilds) {
  config::ConfigErrors errs;
  auto f = build(
      "filter: rest_output\nstatic_endpoint: http://gw.example:8001/senders/router/transactions\n"
      "rcpt_timeout: 10\ndata_timeout: 60\nchunk_size: 1048576\nverify: false\n",
      errs);
  EXPECT_TRUE(errs.ok()) << errs.error_text();
  EXPECT_TRUE(f);
}

TEST_F(RestOutputTest, ForbiddenConfigIsRejectedNamingTheKey) {
  config::ConfigErrors errs;
  auto f = build("filter: rest_output\nendpoint: http://x/\n", errs);
  EXPECT_FALSE(f);
  EXPECT_NE(errs.error_text().find("endpoint[0].chain[0].endpoint"), std::string::npos)
      << errs.error_text();

  config::ConfigErrors errs2;
  build("filter: rest_output\nverify: /nonexistent/ca.pem\nchunk_size: 0\nrcpt_timeout: -1\n",
        errs2);
  EXPECT_NE(errs2.error_text().find("endpoint[0].chain[0].verify"), std::string::npos);
  EXPECT_NE(errs2.error_text().find("endpoint[0].chain[0].chunk_size"), std::string::npos);
  EXPECT_NE(errs2.error_text().find("endpoint[0].chain[0].rcpt_timeout"), std::string::npos);

  config::ConfigErrors errs3;
  EXPECT_TRUE(build("filter: rest_output\nstatic_remote_host: mx.example\n", errs3));
  EXPECT_TRUE(errs3.ok());
  ASSERT_EQ(errs3.warnings().size(), 1u);
  EXPECT_EQ(errs3.warnings()[0].path, "endpoint[0].chain[0].static_remote_host");
}

TEST(RestOutputParse, SenderRemoteHost) {
  EXPECT_EQ(parse_sender_remote_host("mx.example"), (HostPort{"mx.example", 8000}));
  EXPECT_EQ(parse_sender_remote_host("mx.example:25"), (HostPort{"mx.example", 25}));
  EXPECT_EQ(parse_sender_remote_host("[::1]:2525"), (HostPort{"::1", 2525}));
  EXPECT_EQ(parse_sender_remote_host("::1"), (HostPort{"::1", 8000}));
  EXPECT_FALSE(parse_sender_remote_host("mx:0"));
  EXPECT_FALSE(parse_sender_remote_host("mx:x"));
  EXPECT_FALSE(parse_sender_remote_host(""));
}

// ---- delivery -------------------------------------------------------------------------------

TEST_F(RestOutputTest, DeliversExactBytesInOnePut) {
  make_chain();
  const std::string msg = "Subject: hi\r\n\r\nhello \xc3\xa9\r\n";
  set_body(msg, true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  d.filter_output.emplace();
  (*d.filter_output)["koukan.x.X"] = json::object{{"status", 1}};
  update(std::move(d));

  ASSERT_TRUE(tx().mail_response);
  EXPECT_EQ(tx().mail_response->code, 250);
  ASSERT_EQ(tx().rcpt_response.size(), 1u);
  EXPECT_EQ(tx().rcpt_response[0]->code, 250);
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);

  ASSERT_EQ(fake->order.size(), 1u);
  const auto& t = fake->tx(0);
  EXPECT_EQ(t.body, msg);
  EXPECT_EQ(content_ranges(), std::vector<std::string>{"whole"});
  // CREATE: sender {name, tag}, forwarded smtp_meta, no body, no filter_output.
  EXPECT_EQ(json::serialize(t.create.at("sender")), R"({"name":"router","tag":"out"})");
  EXPECT_EQ(json::serialize(t.create.at("remote_host")), R"(["203.0.113.5",41234])");
  EXPECT_TRUE(t.create.contains("smtp_meta"));
  EXPECT_FALSE(t.create.contains("body"));
  EXPECT_FALSE(t.create.contains("filter_output"));
  auto posts = fake->requests("POST");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(header(posts[0], "content-type"), "application/json");
}

TEST_F(RestOutputTest, DeliversInChunkSizePieces) {
  make_chain("filter: rest_output\nchunk_size: 4");
  set_body("0123456789", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);
  EXPECT_EQ(fake->tx(0).body, "0123456789");
  EXPECT_EQ(content_ranges(),
            (std::vector<std::string>{"bytes 0-3/*", "bytes 4-7/*", "bytes 8-9/10"}));
}

TEST_F(RestOutputTest, BodyArrivingOverSeveralPasses) {
  make_chain();
  set_body("hello", false);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  EXPECT_FALSE(tx().data_response);
  set_body("hello worl", false);
  update(TransactionMetadata{});
  set_body("hello world!", false);
  update(TransactionMetadata{});
  EXPECT_FALSE(tx().data_response);
  set_body("hello world!", true);  // finalized, no new bytes
  update(TransactionMetadata{});
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);
  EXPECT_EQ(fake->tx(0).body, "hello world!");
  EXPECT_EQ(content_ranges(), (std::vector<std::string>{"bytes 0-4/*", "bytes 5-9/*",
                                                        "bytes 10-11/*", "finalize 12"}));
  // Each empty pass was also a heartbeat. The fake bumps its version on
  // every PUT (as the gateway does), so each heartbeat's If-Match is stale:
  // 412, one point GET to re-read the version, and the retried PATCH.
  auto patches = fake->requests("PATCH");
  ASSERT_EQ(patches.size(), 6u);
  for (const auto* p : patches) EXPECT_TRUE(p->body.empty());
  EXPECT_EQ(fake->tx(0).version, 1 + 4 /* PUTs */ + 3 /* heartbeats */);
}

TEST_F(RestOutputTest, Resyncs416) {
  make_chain("filter: rest_output\nchunk_size: 4");
  fake->shrink_before_put = 2;  // the receiver "lost" bytes 2-3 before the second PUT
  fake->shrink_to = 2;
  set_body("0123456789", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);
  EXPECT_EQ(fake->tx(0).body, "0123456789");
  EXPECT_EQ(content_ranges(), (std::vector<std::string>{"bytes 0-3/*", "bytes 4-7/*",
                                                        "bytes 2-5/*", "bytes 6-9/10"}));
}

TEST_F(RestOutputTest, RcptRejectedMeansNoUpload) {
  make_chain();
  fake->script_for = [](const json::object&) {
    Script s;
    s.rcpt = 550;
    return s;
  };
  set_body("data", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  EXPECT_EQ(tx().mail_response->code, 250);
  EXPECT_EQ(tx().rcpt_response[0]->code, 550);
  EXPECT_FALSE(tx().data_response);
  EXPECT_TRUE(fake->requests("PUT").empty());
}

// ---- fail-over ------------------------------------------------------------------------------

TEST_F(RestOutputTest, FailsOverOnTempMailAndCancelsTheAbandonedTx) {
  make_chain();
  fake->script_for = [](const json::object& c) {
    Script s;
    if (c.at("remote_host").as_array()[0].as_string() == "10.0.0.1") s.mail = 450;
    return s;
  };
  set_body("x", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  d.routing->resolution = std::vector<HostPort>{{"10.0.0.1", 25}, {"10.0.0.2", 25}};
  update(std::move(d));
  ASSERT_EQ(fake->order.size(), 2u);
  EXPECT_TRUE(fake->tx(0).cancelled);
  EXPECT_FALSE(fake->tx(1).cancelled);
  EXPECT_EQ(json::serialize(fake->tx(1).create.at("remote_host")), R"(["10.0.0.2",25])");
  EXPECT_EQ(tx().mail_response->code, 250);
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);
  EXPECT_EQ(fake->tx(1).body, "x");
  EXPECT_TRUE(fake->tx(0).body.empty());
}

TEST_F(RestOutputTest, AllHostsFailGives450) {
  make_chain();
  fake->script_for = [](const json::object&) {
    Script s;
    s.create_status = 503;
    return s;
  };
  set_body("x", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  d.routing->resolution = std::vector<HostPort>{{"10.0.0.1", 25}, {"10.0.0.2", 25}};
  update(std::move(d));
  EXPECT_EQ(fake->requests("POST").size(), 2u);
  ASSERT_TRUE(tx().mail_response);
  EXPECT_EQ(tx().mail_response->code, 450);
  EXPECT_TRUE(tx().mail_response->message.starts_with("RestEndpoint._start_upstream_tx"))
      << tx().mail_response->message;
  EXPECT_EQ(tx().rcpt_response[0]->code, 450);
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 450);
}

TEST_F(RestOutputTest, LastHostTempMailIsAccepted) {
  make_chain();
  fake->script_for = [](const json::object&) {
    Script s;
    s.mail = 451;
    return s;
  };
  TransactionMetadata d = envelope();
  d.routing->resolution = std::vector<HostPort>{{"10.0.0.1", 25}, {"10.0.0.2", 25}};
  update(std::move(d));
  ASSERT_EQ(fake->order.size(), 2u);
  EXPECT_TRUE(fake->tx(0).cancelled);
  EXPECT_EQ(tx().mail_response->code, 451);
  EXPECT_EQ(tx().mail_response->message, "mail 451");
}

TEST_F(RestOutputTest, SenderRemoteHostOverride) {
  make_chain();
  TransactionMetadata d = envelope();
  d.routing->upstream_sender->remote_host = "127.0.0.1:9000";
  update(std::move(d));
  ASSERT_EQ(fake->order.size(), 1u);
  EXPECT_EQ(json::serialize(fake->tx(0).create.at("remote_host")), R"(["127.0.0.1",9000])");
}

// ---- timeouts ---------------------------------------------------------------------------------

TEST_F(RestOutputTest, ReceiverDataTimeoutGives450UpstreamTimeout) {
  make_chain("filter: rest_output\nrcpt_timeout: 2");
  fake->script_for = [](const json::object&) {
    Script s;
    s.data.reset();
    return s;
  };
  set_body("x", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  const auto start = std::chrono::steady_clock::now();
  update(std::move(d));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(*tx().data_response, Response(450, "RestEndpoint upstream timeout"));
  EXPECT_GE(fake->requests("GET").size(), 1u);
}

TEST_F(RestOutputTest, ReceiverRcptTimeoutAfterDelayedMail) {
  make_chain("filter: rest_output\nrcpt_timeout: 3");
  fake->script_for = [](const json::object&) {
    Script s;
    s.delay_gets = 1;  // mail (and rcpt) only show up on the first GET ...
    s.rcpt.reset();    // ... and the rcpt never does
    return s;
  };
  update(envelope());
  EXPECT_EQ(tx().mail_response->code, 250);
  ASSERT_EQ(tx().rcpt_response.size(), 1u);
  EXPECT_EQ(*tx().rcpt_response[0], Response(450, "RestEndpoint upstream timeout"));
  // Long-polls carry the etag and a request-timeout.
  auto gets = fake->requests("GET");
  ASSERT_GE(gets.size(), 2u);
  EXPECT_TRUE(header(gets[0], "if-none-match"));
  EXPECT_TRUE(header(gets[0], "request-timeout"));
}

// ---- later updates ------------------------------------------------------------------------------

TEST_F(RestOutputTest, HeartbeatPatchOnNoopPass) {
  make_chain();
  update(envelope());
  EXPECT_TRUE(fake->requests("PATCH").empty());
  update(TransactionMetadata{});
  auto patches = fake->requests("PATCH");
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_TRUE(patches[0]->body.empty());
  EXPECT_FALSE(header(patches[0], "content-type"));
  EXPECT_EQ(header(patches[0], "if-match"), "1");
}

TEST_F(RestOutputTest, NewRcptIsPatchedWithOffset) {
  make_chain();
  update(envelope());
  TransactionMetadata d;
  d.rcpt_to.push_back(mbox("carol@example.com"));
  d.rcpt_to_list_offset = 1;
  update(std::move(d));
  auto patches = fake->requests("PATCH");
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(patches[0]->body, R"({"rcpt_to":[{"m":"carol@example.com"}],"rcpt_to_list_offset":1})");
  ASSERT_EQ(tx().rcpt_response.size(), 2u);
  EXPECT_EQ(tx().rcpt_response[1]->code, 250);
}

TEST_F(RestOutputTest, CancelPostsCancel) {
  make_chain();
  set_body("partial", false);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  TransactionMetadata c;
  c.cancelled = true;
  update(std::move(c));
  ASSERT_EQ(fake->order.size(), 1u);
  EXPECT_TRUE(fake->tx(0).cancelled);
  auto posts = fake->requests("POST");
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_EQ(posts[1]->path, "/transactions/T1/cancel");
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(*tx().data_response, Response(550, "cancelled"));
}

TEST_F(RestOutputTest, FilterOutputStrippedUnlessSendFilterOutput) {
  make_chain();
  TransactionMetadata d = envelope();
  d.filter_output.emplace();
  (*d.filter_output)["a"] = 1;
  update(std::move(d));
  EXPECT_FALSE(fake->tx(0).create.contains("filter_output"));
  TransactionMetadata fo;
  fo.filter_output.emplace();
  (*fo.filter_output)["b"] = 2;
  update(std::move(fo));
  EXPECT_TRUE(fake->requests("PATCH").empty());  // nothing wire-visible: no PATCH
}

TEST_F(RestOutputTest, FilterOutputForwardedWithSendFilterOutput) {
  make_chain();
  TransactionMetadata d = envelope();
  d.routing->options["send_filter_output"] = true;
  d.filter_output.emplace();
  (*d.filter_output)["a"] = 1;
  update(std::move(d));
  EXPECT_EQ(json::serialize(fake->tx(0).create.at("filter_output")), R"({"a":1})");
  TransactionMetadata fo;
  fo.filter_output.emplace();
  (*fo.filter_output)["b"] = 2;
  update(std::move(fo));
  auto patches = fake->requests("PATCH");
  ASSERT_EQ(patches.size(), 1u);
  EXPECT_EQ(header(patches[0], "content-type"), "application/json");
  ASSERT_EQ(fake->tx(0).filter_output_patches.size(), 1u);
  EXPECT_EQ(json::serialize(fake->tx(0).filter_output_patches[0]), R"({"b":2})");
}

// ---- synthesised answers ------------------------------------------------------------------------

TEST_F(RestOutputTest, NoEndpointGives550) {
  make_chain();
  TransactionMetadata d = envelope();
  d.routing->rest_endpoint.reset();
  update(std::move(d));
  EXPECT_EQ(*tx().mail_response, Response(550, "RestEndpoint no endpoint!"));
  EXPECT_EQ(*tx().rcpt_response[0], Response(550, "RestEndpoint no endpoint!"));
  EXPECT_TRUE(fake->log.empty());
}

TEST_F(RestOutputTest, MessageBuilderBodyGives550) {
  make_chain();
  TransactionMetadata d = envelope();
  BodyStatus bs;
  bs.message_builder.emplace();
  bs.message_builder->blob_status.emplace_back("part", BlobStatus{"http://down/x", true});
  d.body = bs;
  update(std::move(d));
  EXPECT_EQ(tx().mail_response->code, 250);
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(*tx().data_response,
            Response(550, "5.6.0 message_builder body needs the message_builder filter "
                          "(RestEndpoint)"));
  EXPECT_TRUE(fake->requests("PUT").empty());
}

TEST_F(RestOutputTest, Follows308Redirects) {
  make_chain("filter: rest_output\nstatic_endpoint: " + fake->endpoint("/r"));
  fake->body_prefix = "/r";
  set_body("redirected", true);
  TransactionMetadata d = envelope();
  d.body = body_status();
  update(std::move(d));
  ASSERT_TRUE(tx().data_response);
  EXPECT_EQ(tx().data_response->code, 250);
  EXPECT_EQ(fake->tx(0).body, "redirected");
  auto posts = fake->requests("POST");
  ASSERT_EQ(posts.size(), 2u);
  EXPECT_EQ(posts[0]->path, "/r/senders/router/transactions");
  EXPECT_EQ(posts[1]->path, "/senders/router/transactions");
  EXPECT_EQ(posts[1]->body, posts[0]->body);
  auto puts = fake->requests("PUT");
  ASSERT_EQ(puts.size(), 2u);
  EXPECT_EQ(puts[0]->path, "/r/transactions/T1/body");
  EXPECT_EQ(puts[1]->path, "/transactions/T1/body");
  EXPECT_EQ(puts[1]->body, "redirected");
}

}  // namespace
}  // namespace koukan::router::filters
