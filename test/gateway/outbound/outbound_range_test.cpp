// Content-Range parsing/formatting for the gateway's body PUTs.
#include <gtest/gtest.h>

#include "gateway/outbound/body_range.hpp"

namespace koukan::gateway::outbound {
namespace {

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
}  // namespace koukan::gateway::outbound
