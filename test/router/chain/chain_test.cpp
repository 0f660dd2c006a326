// The chain engine: building from config, one pass (router.md §9.2).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "router/chain/chain.hpp"
#include "router/chain/registry.hpp"
#include "test/router/chain/chain_test_util.hpp"

namespace koukan::router::chain {
namespace {

using testing::endpoint;
using testing::mbox;
using testing::run;

// What the test filters saw, in call order.
struct Recorder {
  std::vector<std::string> calls;                // "name"
  std::vector<TransactionMetadata> deltas;       // per call, downstream delta
  std::vector<TransactionMetadata> up_deltas;    // proxies: what next() returned
};

// Plain: adds filter_output[name] = pass number; its FilterResult adds
// filter_output[name + "_after"] (merged after the rest of the chain).
class MarkFilter final : public Filter {
 public:
  MarkFilter(std::string name, std::shared_ptr<Recorder> rec)
      : name_(std::move(name)), rec_(std::move(rec)) {}
  Task<Result<FilterResult>> on_update(FilterCall& call) const override {
    rec_->calls.push_back(name_);
    rec_->deltas.push_back(call.delta);
    if (!call.delta.empty() && !(call.tx.filter_output && call.tx.filter_output->contains(name_))) {
      if (!call.tx.filter_output) call.tx.filter_output.emplace();
      (*call.tx.filter_output)[name_] = "before";
      TransactionMetadata after;
      after.filter_output.emplace();
      (*after.filter_output)[name_ + "_after"] = "after";
      FilterResult r;
      r.downstream_delta = std::move(after);
      co_return r;
    }
    co_return FilterResult{};
  }

 private:
  std::string name_;
  std::shared_ptr<Recorder> rec_;
};

// Proxy: forwards mail_from, rcpts and body unchanged (unless told to drop
// something), then awaits the upstream and records its delta.
struct ProxyOptions {
  bool reject_first_rcpt = false;  // 550 downstream, forward no rcpts
  bool drop_body = false;
};
class ForwardProxy final : public ProxyFilter {
 public:
  ForwardProxy(ProxyOptions opt, std::shared_ptr<Recorder> rec) : opt_(opt), rec_(std::move(rec)) {}
  Task<Result<void>> on_update(ProxyCall& call) const override {
    rec_->calls.push_back("proxy");
    rec_->deltas.push_back(call.delta);
    const TransactionMetadata& d = call.delta;
    if (d.mail_from) call.upstream.mail_from = d.mail_from;
    if (opt_.reject_first_rcpt) {
      if (!d.rcpt_to.empty() && d.rcpt_to_list_offset.value_or(0) == 0) {
        if (call.downstream.rcpt_response.empty()) call.downstream.rcpt_response.resize(1);
        call.downstream.rcpt_response[0] = Response(550, "first rcpt rejected");
      }
    } else {
      for (const auto& r : d.rcpt_to) call.upstream.rcpt_to.push_back(r);
    }
    if (d.body && !opt_.drop_body) call.upstream.body = d.body;
    Result<TransactionMetadata> up = co_await call.next();
    if (!up) co_return up.error();
    rec_->up_deltas.push_back(*up);
    co_return Result<void>();
  }

 private:
  ProxyOptions opt_;
  std::shared_ptr<Recorder> rec_;
};

class ChainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    register_builtin_filters(registry);
    registry.add("mark", [rec = rec](const ChainEntry& e, config::ConfigErrors& errs) {
      expect_entry_keys(e, errs, {"name"});
      auto name = entry_node(e, errs).get<std::string>("name", "mark");
      return std::make_shared<const MarkFilter>(name, rec);
    });
    registry.add("proxy", [rec = rec](const ChainEntry& e, config::ConfigErrors& errs) {
      expect_entry_keys(e, errs, {"reject_first_rcpt", "drop_body"});
      auto n = entry_node(e, errs);
      ProxyOptions o;
      o.reject_first_rcpt = n.get<bool>("reject_first_rcpt", false);
      o.drop_body = n.get<bool>("drop_body", false);
      return std::make_shared<const ForwardProxy>(o, rec);
    });
    registry.add("disabled", [](const ChainEntry&, config::ConfigErrors&) {
      return std::shared_ptr<const FilterBase>();
    });
  }

  std::shared_ptr<const ChainTemplate> build(const EndpointConfig& ep) {
    auto t = build_chain(ep, registry, errors);
    EXPECT_TRUE(errors.ok()) << errors.error_text();
    return t;
  }

  static constexpr const char* kResponder =
      "{filter: test_responder, mail_response: {code: 250}, rcpt_response: {code: 202, "
      "message: accepted}, data_response: {code: 250, message: queued}}";

  std::shared_ptr<Recorder> rec = std::make_shared<Recorder>();
  FilterRegistry registry;
  config::ConfigErrors errors;
};

TEST_F(ChainTest, ValidChainBuilds) {
  auto t = build(endpoint("out", {"{filter: mark, name: a}", "{filter: proxy}", kResponder}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->name(), "out");
  ASSERT_EQ(t->links().size(), 3u);
  EXPECT_EQ(t->links()[1].filter, "proxy");
  EXPECT_EQ(t->links()[1].path, "endpoint[0].chain[1]");
  EXPECT_EQ(t->links()[1].impl->kind(), FilterKind::proxy);
  EXPECT_TRUE(registry.names().count("test_responder"));
}

TEST_F(ChainTest, UnknownKeyIsRejectedNamingThePath) {
  auto t = build_chain(endpoint("out", {"{filter: mark}",
                                        "{filter: test_responder, mail_respons: {code: 250}}"}),
                       registry, errors);
  EXPECT_FALSE(t);
  ASSERT_EQ(errors.errors().size(), 1u) << errors.error_text();
  EXPECT_EQ(errors.errors()[0].path, "endpoint[0].chain[1].mail_respons");
  EXPECT_NE(errors.error_text().find("unknown key; did you mean 'mail_response'?"),
            std::string::npos)
      << errors.error_text();
}

TEST_F(ChainTest, EveryFactoryErrorIsCollected) {
  auto t = build_chain(endpoint("out", {"{filter: test_responder, rcpt_response: {code: 99}}",
                                        "{filter: nosuch}",
                                        "{filter: test_responder, data_response: {message: x}}"}),
                       registry, errors);
  EXPECT_FALSE(t);
  std::string text = errors.error_text();
  EXPECT_NE(text.find("endpoint[0].chain[0].rcpt_response.code: must be between 200 and 599"),
            std::string::npos) << text;
  EXPECT_NE(text.find("endpoint[0].chain[1].filter: unknown filter 'nosuch'"), std::string::npos)
      << text;
  EXPECT_NE(text.find("endpoint[0].chain[2].data_response.code: required key missing"),
            std::string::npos) << text;
}

TEST_F(ChainTest, DisabledFilterIsLeftOutWithAWarning) {
  auto t = build(endpoint("out", {"{filter: disabled}", kResponder}));
  ASSERT_TRUE(t);
  EXPECT_EQ(t->links().size(), 1u);
  ASSERT_EQ(errors.warnings().size(), 1u);
  EXPECT_EQ(errors.warnings()[0].path, "endpoint[0].chain[0]");
}

TEST_F(ChainTest, PassThroughPlainAndProxyMergesDeltas) {
  auto t = build(endpoint("out", {"{filter: mark, name: a}", "{filter: proxy}",
                                  "{filter: mark, name: b}", kResponder}));
  ChainInstance chain(t);

  // Pass 1: MAIL + one RCPT.
  TransactionMetadata d1;
  d1.mail_from = mbox("alice@example.com");
  d1.rcpt_to.push_back(mbox("bob@example.com"));
  Result<TransactionMetadata> up1 = run(chain.update(d1));
  ASSERT_TRUE(up1) << up1.error().message;
  ASSERT_TRUE(up1->mail_response);
  EXPECT_EQ(up1->mail_response->code, 250);
  ASSERT_EQ(up1->rcpt_response.size(), 1u);
  EXPECT_EQ(up1->rcpt_response[0], Response(202, "accepted"));
  EXPECT_FALSE(up1->data_response);
  // a's output (added in the call) and its tail-call result come back; b's
  // output stays upstream of the proxy.
  ASSERT_TRUE(up1->filter_output);
  EXPECT_EQ(up1->filter_output->at("a").as_string(), "before");
  EXPECT_EQ(up1->filter_output->at("a_after").as_string(), "after");
  EXPECT_FALSE(up1->filter_output->contains("b"));
  EXPECT_EQ(rec->calls, (std::vector<std::string>{"a", "proxy", "b"}));
  // b (past the proxy) got the downstream delta.
  EXPECT_EQ(rec->deltas[2].mail_from->mailbox, "alice@example.com");
  ASSERT_EQ(rec->deltas[2].rcpt_to.size(), 1u);
  // The proxy saw the upstream responses on the return path.
  ASSERT_EQ(rec->up_deltas.size(), 1u);
  EXPECT_EQ(rec->up_deltas[0].mail_response->code, 250);
  // The head tx holds everything.
  EXPECT_EQ(chain.tx().rcpt_response.size(), 1u);

  // Pass 2: a second RCPT; every filter sees only what is new.
  rec->calls.clear();
  rec->deltas.clear();
  TransactionMetadata d2;
  d2.rcpt_to.push_back(mbox("carol@example.com"));
  d2.rcpt_to_list_offset = 1;
  Result<TransactionMetadata> up2 = run(chain.update(d2));
  ASSERT_TRUE(up2) << up2.error().message;
  ASSERT_EQ(up2->rcpt_response.size(), 2u);
  EXPECT_EQ(up2->rcpt_response[1], Response(202, "accepted"));
  EXPECT_FALSE(up2->mail_response);
  EXPECT_EQ(rec->calls, (std::vector<std::string>{"a", "proxy", "b"}));
  for (const auto& d : rec->deltas) {
    EXPECT_FALSE(d.mail_from);
    ASSERT_EQ(d.rcpt_to.size(), 1u);
    EXPECT_EQ(d.rcpt_to[0].mailbox, "carol@example.com");
    EXPECT_EQ(d.rcpt_to_list_offset.value_or(0), 1u);
  }

  // Pass 3: body -> data response.
  TransactionMetadata d3;
  d3.body = InlineBody{"Subject: hi\r\n\r\nhello\r\n"};
  Result<TransactionMetadata> up3 = run(chain.update(d3));
  ASSERT_TRUE(up3) << up3.error().message;
  ASSERT_TRUE(up3->data_response);
  EXPECT_EQ(up3->data_response->message, "queued");

  // Pass 4: heartbeat (nothing new): every filter is called, with an empty delta.
  rec->calls.clear();
  rec->deltas.clear();
  Result<TransactionMetadata> up4 = run(chain.update(TransactionMetadata{}));
  ASSERT_TRUE(up4) << up4.error().message;
  EXPECT_TRUE(up4->empty());
  EXPECT_EQ(rec->calls.size(), 1u);  // DATA answered: no progress past the first filter
}

TEST_F(ChainTest, HeartbeatCallsEveryFilterWithAnEmptyDelta) {
  auto t = build(endpoint("out", {"{filter: mark, name: a}", "{filter: proxy}",
                                  "{filter: mark, name: b}", "{filter: test_responder}"}));
  ChainInstance chain(t);
  TransactionMetadata d1;
  d1.mail_from = mbox("alice@example.com");
  ASSERT_TRUE(run(chain.update(d1)));
  rec->calls.clear();
  rec->deltas.clear();
  auto up = run(chain.update(TransactionMetadata{}));
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(rec->calls, (std::vector<std::string>{"a", "proxy", "b"}));
  for (std::size_t i = 0; i < rec->deltas.size(); ++i) {
    EXPECT_TRUE(rec->deltas[i].empty()) << rec->calls[i] << ": " << tx_to_json_string(rec->deltas[i], View::All);
  }
}

TEST_F(ChainTest, EmptyUpstreamDeltaStopsThePass) {
  // The proxy drops the body: nothing new upstream, so b and the responder
  // are not called and no data response comes back.
  auto t = build(endpoint("out", {"{filter: proxy, drop_body: true}", "{filter: mark, name: b}",
                                  kResponder}));
  ChainInstance chain(t);
  TransactionMetadata d1;
  d1.mail_from = mbox("alice@example.com");
  d1.rcpt_to.push_back(mbox("bob@example.com"));
  ASSERT_TRUE(run(chain.update(d1)));
  rec->calls.clear();
  TransactionMetadata d2;
  d2.body = InlineBody{"x"};
  auto up = run(chain.update(d2));
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(rec->calls, (std::vector<std::string>{"proxy"}));
  EXPECT_FALSE(up->data_response);
}

TEST_F(ChainTest, ProxyDroppingRcptsGetsMappedResponses) {
  // router.md §9.2 RejectFirstRcpt: [550, 202].
  auto t = build(endpoint("out", {"{filter: proxy, reject_first_rcpt: true}", kResponder}));
  ChainInstance chain(t);
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  d.rcpt_to.push_back(mbox("bad@example.com"));
  d.rcpt_to.push_back(mbox("good@example.com"));
  auto up = run(chain.update(d));
  ASSERT_TRUE(up) << up.error().message;
  ASSERT_EQ(up->rcpt_response.size(), 2u);
  EXPECT_EQ(up->rcpt_response[0]->code, 550);
  EXPECT_EQ(up->rcpt_response[1]->code, 202);
}

TEST_F(ChainTest, RejectedMailStopsThePass) {
  auto t = build(endpoint("out", {"{filter: test_responder, mail_response: {code: 550}}",
                                  "{filter: mark, name: b}"}));
  ChainInstance chain(t);
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  auto up = run(chain.update(d));
  ASSERT_TRUE(up) << up.error().message;
  EXPECT_EQ(up->mail_response->code, 550);
  EXPECT_TRUE(rec->calls.empty());
}

TEST_F(ChainTest, UpdateDeltaWithResponsesIsRejected) {
  auto t = build(endpoint("out", {kResponder}));
  ChainInstance chain(t);
  TransactionMetadata d;
  d.mail_response = Response(250);
  auto up = run(chain.update(d));
  ASSERT_FALSE(up);
  EXPECT_EQ(up.error().code, Errc::bad_request);
}

TEST_F(ChainTest, FilterErrorNamesTheEntry) {
  // A tail-call result that conflicts with what the chain set is an error
  // naming the filter's path.
  registry.add("conflict", [](const ChainEntry&, config::ConfigErrors&) {
    class Conflict final : public Filter {
      Task<Result<FilterResult>> on_update(FilterCall& call) const override {
        TransactionMetadata d;
        d.mail_response = Response(451, "conflicting");
        FilterResult r;
        r.downstream_delta = std::move(d);
        co_return r;
      }
    };
    return std::make_shared<const Conflict>();
  });
  auto t = build(endpoint("out", {"{filter: conflict}", kResponder}));
  ChainInstance chain(t);
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  auto up = run(chain.update(d));
  ASSERT_FALSE(up);
  EXPECT_NE(up.error().message.find("endpoint[0].chain[0] (conflict)"), std::string::npos)
      << up.error().message;
}

TEST_F(ChainTest, InstancesAreIndependent) {
  auto t = build(endpoint("out", {kResponder}));
  ChainInstance a(t), b(t);
  TransactionMetadata d;
  d.mail_from = mbox("alice@example.com");
  ASSERT_TRUE(run(a.update(d)));
  EXPECT_TRUE(a.tx().mail_response);
  EXPECT_FALSE(b.tx().mail_response);
}

}  // namespace
}  // namespace koukan::router::chain
