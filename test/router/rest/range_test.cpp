#include <gtest/gtest.h>

#include "router/rest/range.hpp"

namespace koukan::router {
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

}  // namespace
}  // namespace koukan::router
