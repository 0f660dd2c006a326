#include <gtest/gtest.h>

#include <set>

#include "common/base/ids.hpp"
#include "common/base/result.hpp"

namespace koukan {
namespace {

TEST(RestId, LengthMatchesTokenUrlsafe) {
  EXPECT_EQ(random_rest_id(16).size(), 22u);
  EXPECT_EQ(random_rest_id(4).size(), 6u);
  EXPECT_EQ(random_rest_id(3).size(), 4u);
}

TEST(RestId, UrlSafeAlphabetAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = random_rest_id(16);
    for (char c : id) EXPECT_TRUE(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Result, ValueAndError) {
  Result<int> a = 5;
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, 5);
  Result<int> b = Error(Errc::not_found, "nope");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, Errc::not_found);
  EXPECT_EQ(b.error().message, "nope");
  Result<void> c;
  EXPECT_TRUE(c.ok());
}

}  // namespace
}  // namespace koukan
