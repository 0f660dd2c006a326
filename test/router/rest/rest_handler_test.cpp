// RestHandler driven with Request values (no sockets) over a real SQLite
// storage in a temp directory.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json.hpp>

#include <filesystem>
#include <random>

#include "common/async/task.hpp"
#include "router/config/router_config.hpp"
#include "router/rest/rest_handler.hpp"
#include "router/storage/storage.hpp"
#include "router/storage/version_cache.hpp"

namespace koukan::router {
namespace {

namespace json = boost::json;

const char* kYaml = R"(
rest_listener:
  addr: ["127.0.0.1", 0]
  session_uri: http://r0.example:8000
  service_uri: http://router.example:8000
  chunk_size: 8
storage:
  url: sqlite://unused.db
sender:
- name: submission
  output_chain: submission
  retry: output_chain
- name: ingress
  output_chain: ingress
  tag:
  - name: smtp-mx
    output_chain: ingress_exploder
    upstream_tag: smtp-mx-upstream
  - name: smtp-mx-upstream
rest_endpoint:
- name: gw
  endpoint: http://127.0.0.1:1/senders/router/transactions
  sender: router
endpoint:
- name: submission
  output_handler:
    retry_params: {}
  chain:
  - filter: rest_output
- name: ingress
  chain:
  - filter: rest_output
- name: ingress_exploder
  chain:
  - filter: exploder
    msa: false
)";

struct Reply {
  int status = 0;
  http::Headers headers;
  std::string body;
  std::string header(std::string_view n) const {
    auto v = headers.get(n);
    return v ? std::string(*v) : std::string();
  }
  json::value json() const { return json::parse(body); }
};

Task<void> call(RestHandler* h, http::Request req, std::string body, Reply* out) {
  http::StringBodyReader reader(std::move(body));
  req.body = &reader;
  http::Response r = co_await h->handle(req);
  out->status = r.status;
  out->headers = r.headers;
  out->body = r.body;
}

class RestHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = std::filesystem::temp_directory_path() / ("koukan-rest-test-" + std::to_string(rd()));
    std::filesystem::create_directories(dir_);
    auto cfg = load_router_config_string(kYaml, builtin_filter_names(), nullptr);
    ASSERT_TRUE(cfg.ok()) << cfg.error().message;
    cfg_ = std::make_unique<RouterConfig>(std::move(*cfg));
    cache_ = std::make_unique<VersionCache>(io_.get_executor());
    StorageOptions so;
    so.on_change = [c = cache_.get()](const std::string& id, std::int64_t v) { c->notify(id, v); };
    auto st = open_storage("sqlite://" + (dir_ / "router.db").string(), so);
    ASSERT_TRUE(st.ok()) << st.error().message;
    storage_ = std::move(*st);
    ASSERT_TRUE(storage_->open_session("http://r0.example:8000", std::chrono::seconds(30)).ok());
    RestOptions ro;
    ro.session_uri = "http://r0.example:8000";
    ro.service_uri = "http://router.example:8000";
    ro.chunk_size = 8;  // small pieces: every PUT below spans several appends
    ro.rest_id_entropy = 6;
    handler_ = std::make_unique<RestHandler>(*cfg_, *storage_, pool_, *cache_, ro);
  }
  void TearDown() override {
    handler_.reset();
    pool_.stop();
    storage_.reset();
    std::filesystem::remove_all(dir_);
  }

  Reply run(std::string method, std::string path, std::string body = {},
            std::vector<http::Header> headers = {}) {
    http::Request req;
    req.method = std::move(method);
    req.target = path;
    req.path = path;
    for (auto& h : headers) req.headers.add(h.name, h.value);
    if (!body.empty()) req.content_length = body.size();
    Reply out;
    spawn(io_.get_executor(), call(handler_.get(), std::move(req), std::move(body), &out), "test");
    io_.restart();
    io_.run();
    return out;
  }

  Reply create(const std::string& body, const std::string& sender = "submission") {
    return run("POST", "/senders/" + sender + "/transactions", body, {{"content-type", "application/json"}});
  }

  std::filesystem::path dir_;
  asio::io_context io_;
  BlockingPool pool_{2};
  std::unique_ptr<RouterConfig> cfg_;
  std::unique_ptr<VersionCache> cache_;
  std::unique_ptr<Storage> storage_;
  std::unique_ptr<RestHandler> handler_;
};

TEST_F(RestHandlerTest, CreateAnswersReadViewWithAbsoluteUris) {
  Reply r = create(R"({"mail_from":{"m":"alice@example.com"},"rcpt_to":[{"m":"bob@example.com"}]})");
  ASSERT_EQ(r.status, 201) << r.body;
  std::string loc = r.header("location");
  ASSERT_EQ(loc.rfind("http://r0.example:8000/transactions/", 0), 0u) << loc;
  std::string id = loc.substr(loc.rfind('/') + 1);
  EXPECT_EQ(r.header("etag"), "1");
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, R"({"mail_from":{},"rcpt_to":[{}],"body":{"blob_status":{"uri":"http://r0.example:8000/transactions/)" +
                        id + R"(/body"}},"retry":{},"sender":{}})");
}

TEST_F(RestHandlerTest, WholePutInSmallPiecesFinalizes) {
  Reply r = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  std::string path = "/transactions/" + r.header("location").substr(r.header("location").rfind('/') + 1);
  std::string data = "Subject: pieces\r\n\r\nmore than eight bytes per piece\r\n";
  Reply put = run("PUT", path + "/body", data);
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(put.header("content-range"), "bytes 0-" + std::to_string(data.size() - 1) + "/" + std::to_string(data.size()));
  Reply get = run("GET", path);
  EXPECT_EQ(get.json().at("body").at("blob_status").at("finalized"), true);
  EXPECT_EQ(json::value_to<std::string>(get.json().at("body").at("blob_status").at("uri")), "http://router.example:8000" + path + "/body");
}

TEST_F(RestHandlerTest, RangeBeyondStoredIs416WithStoredRange) {
  Reply r = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  std::string path = "/transactions/" + r.header("location").substr(r.header("location").rfind('/') + 1);
  ASSERT_EQ(run("PUT", path + "/body", "0123456789", {{"content-range", "bytes 0-9/*"}}).status, 200);
  Reply bad = run("PUT", path + "/body", "zz", {{"content-range", "bytes 12-13/*"}});
  EXPECT_EQ(bad.status, 416);
  EXPECT_EQ(bad.header("content-range"), "bytes 0-9/*");
}

TEST_F(RestHandlerTest, PatchNeedsIfMatchAndAppendsWithOffset) {
  Reply r = create(R"({"mail_from":{"m":"a@example.org"},"sender":{"tag":"smtp-mx"}})", "ingress");
  ASSERT_EQ(r.status, 201) << r.body;
  std::string path = "/transactions/" + r.header("location").substr(r.header("location").rfind('/') + 1);
  Reply no_etag = run("PATCH", path, R"({"rcpt_to":[{"m":"b@example.com"}]})", {{"content-type", "application/json"}});
  EXPECT_EQ(no_etag.status, 400);
  Reply p1 = run("PATCH", path, R"({"rcpt_to":[{"m":"b@example.com"}]})",
                 {{"content-type", "application/json"}, {"if-match", r.header("etag")}});
  ASSERT_EQ(p1.status, 200) << p1.body;
  EXPECT_EQ(json::serialize(p1.json().at("rcpt_to")), "[{}]");
  Reply stale = run("PATCH", path, R"({"rcpt_to":[{"m":"c@example.com"}],"rcpt_to_list_offset":1})",
                    {{"content-type", "application/json"}, {"if-match", r.header("etag")}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.header("etag"), p1.header("etag"));
  Reply wrong = run("PATCH", path, R"({"rcpt_to":[{"m":"c@example.com"}],"rcpt_to_list_offset":3})",
                    {{"content-type", "application/json"}, {"if-match", p1.header("etag")}});
  EXPECT_EQ(wrong.status, 409);
  Reply p2 = run("PATCH", path, R"({"rcpt_to":[{"m":"c@example.com"}],"rcpt_to_list_offset":1})",
                 {{"content-type", "application/json"}, {"if-match", p1.header("etag")}});
  ASSERT_EQ(p2.status, 200) << p2.body;
  EXPECT_EQ(json::serialize(p2.json().at("rcpt_to")), "[{},{}]");
}

TEST_F(RestHandlerTest, BadInputIs4xxJson) {
  struct Case { const char* body; int status; };
  for (const Case& c : {Case{"{nope", 400}, Case{"[]", 400}, Case{R"({"mail_from":null})", 400},
                        Case{R"({"mail_from":{"m":"a@b"},"rcpt_to":[]})", 400},
                        Case{R"({"mail_from":{"m":"a@b"},"rcpt_to":[{"m":"x@y"}],"bogus":1})", 400}}) {
    Reply r = create(c.body);
    EXPECT_EQ(r.status, c.status) << c.body << " -> " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/json") << c.body;
    EXPECT_TRUE(r.json().as_object().contains("error")) << c.body;
  }
  // A tag the sender does not define (ingress defines tags; submission has
  // none, so any tag is accepted there as a label, like the original).
  EXPECT_EQ(create(R"({"mail_from":{"m":"a@b"},"sender":{"tag":"nope"}})", "ingress").status, 400);
  EXPECT_EQ(create(R"({"mail_from":{"m":"a@b"},"rcpt_to":[{"m":"x@y"}],"sender":{"tag":"label"}})").status, 201);
  EXPECT_EQ(run("POST", "/senders/nobody/transactions", R"({"mail_from":{"m":"a@b"},"rcpt_to":[{"m":"x@y"}]})").status, 404);
  EXPECT_EQ(run("GET", "/transactions/unknown").status, 404);
  EXPECT_EQ(run("POST", "/transactions/unknown/cancel").status, 404);
  EXPECT_EQ(run("GET", "/nowhere").status, 404);
  EXPECT_EQ(run("DELETE", "/transactions/x").status, 405);
}

TEST_F(RestHandlerTest, LongPollTimesOutWith304EchoingTheEtag) {
  Reply r = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  std::string path = "/transactions/" + r.header("location").substr(r.header("location").rfind('/') + 1);
  auto t0 = std::chrono::steady_clock::now();
  Reply g = run("GET", path, {}, {{"if-none-match", "\"1\""}, {"request-timeout", "1"}});
  EXPECT_EQ(g.status, 304);
  EXPECT_EQ(g.header("etag"), "\"1\"");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
  EXPECT_EQ(run("GET", path, {}, {{"if-none-match", "1"}, {"request-timeout", "x"}}).status, 400);
  // a point read ignores request-timeout
  EXPECT_EQ(run("GET", path, {}, {{"request-timeout", "x"}}).status, 200);
}

// Ours (docs/compat.md): the last body PUT may ask to be answered with the
// transaction once it has its data response.
TEST_F(RestHandlerTest, LastPutAskedToWaitAnswersWithTheDataResponse) {
  Reply r = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string id = r.header("location").substr(r.header("location").rfind('/') + 1);
  const std::string path = "/transactions/" + id;
  ASSERT_TRUE(storage_->start_attempt(id, std::nullopt, /*oneshot=*/true).ok());
  // The output's stand-in answers the data 150 ms after the PUT began.
  asio::steady_timer answer(io_, std::chrono::milliseconds(150));
  answer.async_wait([this, id](boost::system::error_code) {
    TxWrite w;
    w.attempt_responses = json::parse(R"({"mail_response":{"code":250,"message":"ok"},)"
                                      R"("rcpt_response":[{"code":250,"message":"ok"}],)"
                                      R"("data_response":{"code":250,"message":"delivered"}})").as_object();
    ASSERT_TRUE(storage_->write(id, std::nullopt, w).ok());
  });
  const std::string data = "Subject: wait\r\n\r\nhello\r\n";
  const auto t0 = std::chrono::steady_clock::now();
  Reply put = run("PUT", path + "/body", data, {{"x-koukan-wait-data-ms", "5000"}});
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_GE(took, std::chrono::milliseconds(140));
  EXPECT_LT(took, std::chrono::seconds(4));
  EXPECT_EQ(put.header("content-range"), "bytes 0-" + std::to_string(data.size() - 1) + "/" + std::to_string(data.size()));
  // The transaction as a GET returns it, and its version named.
  Reply get = run("GET", path);
  EXPECT_EQ(put.body, get.body);
  EXPECT_EQ(put.header("x-koukan-tx-json"), get.header("etag"));
  EXPECT_EQ(put.header("x-koukan-tx-etag"), get.header("etag"));
  EXPECT_EQ(put.json().at("data_response").at("code").as_int64(), 250);
  EXPECT_EQ(json::value_to<std::string>(put.json().at("data_response").at("message")), "delivered");
}

TEST_F(RestHandlerTest, LastPutWaitRunsOutWithTheTransactionSoFar) {
  Reply r = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  const std::string path = "/transactions/" + r.header("location").substr(r.header("location").rfind('/') + 1);
  // Not the last piece: the header is ignored, the answer is the usual {}.
  Reply first = run("PUT", path + "/body", "0123", {{"content-range", "bytes 0-3/*"}, {"x-koukan-wait-data-ms", "5000"}});
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.body, "{}");
  EXPECT_EQ(first.header("x-koukan-tx-json"), "");
  EXPECT_EQ(run("PUT", path + "/body", "", {{"x-finalize-blob-length", "4"}, {"x-koukan-wait-data-ms", "soon"}}).status, 400);
  // No data response comes: after the wait, the transaction without one.
  const auto t0 = std::chrono::steady_clock::now();
  Reply last = run("PUT", path + "/body", "", {{"x-finalize-blob-length", "4"}, {"x-koukan-wait-data-ms", "200"}});
  ASSERT_EQ(last.status, 200) << last.body;
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(190));
  EXPECT_FALSE(last.json().as_object().contains("data_response")) << last.body;
  EXPECT_EQ(last.json().at("body").at("blob_status").at("finalized"), true);
  EXPECT_EQ(last.header("x-koukan-tx-json"), run("GET", path).header("etag"));
  // Without the header: {} at once, as before.
  Reply r2 = create(R"({"mail_from":{"m":"a@example.com"},"rcpt_to":[{"m":"b@example.com"}]})");
  const std::string path2 = "/transactions/" + r2.header("location").substr(r2.header("location").rfind('/') + 1);
  Reply plain = run("PUT", path2 + "/body", "abc");
  EXPECT_EQ(plain.body, "{}");
  EXPECT_EQ(plain.header("x-koukan-tx-json"), "");
  EXPECT_NE(plain.header("x-koukan-tx-etag"), "");
}

}  // namespace
}  // namespace koukan::router
