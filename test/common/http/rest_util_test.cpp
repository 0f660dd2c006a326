// Content-Range, decimals, ETags, paths (common/http/rest_util.hpp), used
// by the router's and the gateway's REST handlers and clients.
#include <gtest/gtest.h>

#include "common/http/rest_util.hpp"

namespace koukan::http {
namespace {

TEST(ContentRange, ParsesRangeWithUnknownTotal) {
  auto r = parse_content_range("bytes 0-1048575/*");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 1048575u);
  EXPECT_FALSE(r->total.has_value());
  EXPECT_EQ(r->length(), 1048576u);
}

TEST(ContentRange, ParsesRangeWithTotal) {
  auto r = parse_content_range("bytes 1048576-1500000/1500001");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 1048576u);
  EXPECT_EQ(*r->total, 1500001u);
}

TEST(ContentRange, RejectsMalformed) {
  for (const char* bad : {"bytes */20", "bits 0-1/2", "bytes 3-1/*", "bytes x-y/*", "bytes 0-1",
                          "bytes 0-9/5", "bytes -1-2/*", "", "bytes 0-1/*x", "bytes 0-99999999999999999999/*"}) {
    auto r = parse_content_range(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, Errc::bad_request);
    }
  }
}

TEST(ContentRange, Formats) {
  EXPECT_EQ(format_content_range(10, std::nullopt), "bytes 0-9/*");
  EXPECT_EQ(format_content_range(20, 20), "bytes 0-19/20");
  EXPECT_EQ(format_content_range(0, 0), "bytes */0");
  EXPECT_EQ(format_content_range(0, std::nullopt), "bytes */*");
}

TEST(Decimal, Strict) {
  EXPECT_EQ(parse_decimal("18"), 18u);
  EXPECT_FALSE(parse_decimal("-1"));
  EXPECT_FALSE(parse_decimal(" 1"));
  EXPECT_FALSE(parse_decimal(""));
  EXPECT_FALSE(parse_decimal("many"));
}

// (The gateway's body PUT cases.)

TEST(OutboundRange, Parses) {
  auto r = parse_content_range("bytes 0-6/*");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 6u);
  EXPECT_FALSE(r->total);
  EXPECT_EQ(r->length(), 7u);
  auto t = parse_content_range("bytes 7-12/13");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t->total, 13u);
  EXPECT_EQ(t->end(), 13u);
}

TEST(OutboundRange, RejectsGarbage) {
  for (const char* bad : {"", "bytes", "bytes */5", "bytes 5-4/*", "bytes 0-4/4", "items 0-1/*", "bytes -1-2/*",
                          "bytes 0-1/x", "bytes 0-/5"}) {
    auto r = parse_content_range(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::bad_request);
  }
}

TEST(OutboundRange, Formats) {
  EXPECT_EQ(format_content_range(0, std::nullopt), "bytes */*");
  EXPECT_EQ(format_content_range(7, std::nullopt), "bytes 0-6/*");
  EXPECT_EQ(format_content_range(13, 13), "bytes 0-12/13");
}

}  // namespace
}  // namespace koukan::http

namespace koukan::http {
namespace {

TEST(RestUtil, QuotesPathsAndJsonContentType) {
  EXPECT_EQ(strip_quotes("\"12\""), "12");
  EXPECT_EQ(strip_quotes("12"), "12");
  EXPECT_EQ(split_path("/transactions//abc/body"),
            (std::vector<std::string_view>{"transactions", "abc", "body"}));
  Headers h;
  EXPECT_FALSE(is_json_content_type(h));
  h.set("content-type", "Application/JSON; charset=utf-8");
  EXPECT_TRUE(is_json_content_type(h));
  h.set("content-type", "text/plain");
  EXPECT_FALSE(is_json_content_type(h));
}

}  // namespace
}  // namespace koukan::http
