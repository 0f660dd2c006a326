// router/output/retry: documented backoff semantics (docs/compat.md "Retries").
#include "router/output/retry.hpp"

#include <cmath>
#include <limits>

#include <gtest/gtest.h>

namespace koukan::router {
namespace {

constexpr std::int64_t kCreated = 1'700'000'000;

RetryParams params(double min, double max, double factor) {
  RetryParams p;
  p.min_attempt_time = min;
  p.max_attempt_time = max;
  p.backoff_factor = factor;
  return p;
}

JitterSource fixed(double u) {
  return [u] { return u; };
}

// --- router.md §18 examples that apply to the documented semantics ---------

TEST(Retry, MinAppliesToFirstRetry) {  // "min 7, age 0 -> +7 s"
  auto r = next_attempt(params(7, 3600, 1.5), 1, kCreated, kCreated, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.next_attempt_time, kCreated + 7);
  EXPECT_EQ(r.delay, 7);
  EXPECT_TRUE(r.final_reason.empty());
}

TEST(Retry, MaxCapsLargeFactor) {  // "max 17, factor 100 -> +17 s"
  auto r = next_attempt(params(1, 17, 100), 2, kCreated, kCreated + 1, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.next_attempt_time, kCreated + 1 + 17);
}

TEST(Retry, MaxAttemptsOneIsFinal) {  // "max_attempts 1 -> retry policy max attempts"
  RetryParams p;
  p.max_attempts = 1;
  auto r = next_attempt(p, 1, kCreated, kCreated + 5, no_jitter());
  EXPECT_FALSE(r.retry);
  EXPECT_EQ(r.final_reason, "retry policy max attempts");
}

TEST(Retry, DeadlineZeroIsFinal) {  // "deadline 0 -> retry policy deadline"
  RetryParams p;
  p.deadline = 0;
  auto r = next_attempt(p, 1, kCreated, kCreated, no_jitter());
  EXPECT_FALSE(r.retry);
  EXPECT_EQ(r.final_reason, "retry policy deadline");
}

// The §18 example "min 0, factor 2, age 1 s -> +2 s" pins the original's
// age-based interval; with backoff from min_attempt_time, min 0 means retry
// at once, whatever the age.
TEST(Retry, MinZeroMeansImmediateRetryNotAgeBased) {
  auto r = next_attempt(params(0, 3600, 2), 1, kCreated, kCreated + 1, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.next_attempt_time, kCreated + 1);
}

// --- growth and clamping ---------------------------------------------------

TEST(Retry, FactorGrowsFromPreviousAttemptNotAge) {
  const auto p = params(60, 1e6, 2);
  const std::int64_t expected[] = {60, 120, 240, 480, 960};
  for (int a = 1; a <= 5; ++a) {
    // The age is deliberately large and varied: it must not matter.
    auto r = next_attempt(p, a, kCreated, kCreated + 10'000 * a, no_jitter());
    ASSERT_TRUE(r.retry) << a;
    EXPECT_EQ(r.delay, expected[a - 1]) << "attempt " << a;
    EXPECT_EQ(r.next_attempt_time, kCreated + 10'000 * a + expected[a - 1]);
  }
}

TEST(Retry, DefaultsSchedule) {
  RetryParams p;  // 60 .. 3600, factor 1.5
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 0.5), 60);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, 0.5), 90);
  EXPECT_DOUBLE_EQ(retry_delay(p, 3, 0.5), 135);
  EXPECT_DOUBLE_EQ(retry_delay(p, 20, 0.5), 3600);
}

TEST(Retry, ClampedToMax) {
  const auto p = params(10, 100, 3);
  EXPECT_DOUBLE_EQ(retry_delay(p, 3, 0.5), 90);
  EXPECT_DOUBLE_EQ(retry_delay(p, 4, 0.5), 100);
  EXPECT_DOUBLE_EQ(retry_delay(p, 50, 0.5), 100);
}

TEST(Retry, FactorBelowOneStaysAtMin) {
  EXPECT_DOUBLE_EQ(retry_delay(params(30, 100, 0.5), 5, 0.5), 30);
  EXPECT_DOUBLE_EQ(retry_delay(params(30, 100, 0), 1, 0.5), 30);
  EXPECT_DOUBLE_EQ(retry_delay(params(30, 100, 0), 3, 0.5), 30);
}

TEST(Retry, MinWinsOverMax) {
  const auto p = params(120, 60, 2);
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 0.5), 120);
  EXPECT_DOUBLE_EQ(retry_delay(p, 5, 0.0), 120);
  auto r = next_attempt(p, 3, kCreated, kCreated, fixed(0.99));
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.delay, 120);
}

TEST(Retry, HugeValuesDoNotOverflow) {
  auto p = params(1, std::numeric_limits<double>::max(), 1e300);
  p.max_attempts.reset();
  p.deadline.reset();
  EXPECT_DOUBLE_EQ(retry_delay(p, 1000, 0.5), kMaxRetryDelay);
  auto r = next_attempt(p, 1000, kCreated, kCreated, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.delay, static_cast<std::int64_t>(kMaxRetryDelay));
}

TEST(Retry, FractionalLimitsRoundInside) {
  auto r = next_attempt(params(0.4, 0.6, 1), 1, kCreated, kCreated, fixed(0.0));
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.delay, 1);  // ceil(min) wins over floor(max)
  r = next_attempt(params(10.2, 20.7, 5), 4, kCreated, kCreated, fixed(0.99));
  EXPECT_EQ(r.delay, 20);
}

// --- max_attempts and deadline ---------------------------------------------

TEST(Retry, MaxAttemptsBoundary) {
  RetryParams p;  // max_attempts 30
  p.deadline.reset();
  EXPECT_TRUE(next_attempt(p, 29, kCreated, kCreated, no_jitter()).retry);
  auto r = next_attempt(p, 30, kCreated, kCreated, no_jitter());
  EXPECT_FALSE(r.retry);
  EXPECT_EQ(r.final_reason, kFinalMaxAttempts);
  EXPECT_EQ(next_attempt(p, 31, kCreated, kCreated, no_jitter()).final_reason, kFinalMaxAttempts);
}

TEST(Retry, UnlimitedAttempts) {
  RetryParams p;
  p.max_attempts.reset();
  p.deadline.reset();
  auto r = next_attempt(p, 100'000, kCreated, kCreated + 1'000'000, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.delay, 3600);
}

TEST(Retry, MaxAttemptsCheckedBeforeDeadline) {
  RetryParams p;
  p.max_attempts = 2;
  p.deadline = 0;
  EXPECT_EQ(next_attempt(p, 2, kCreated, kCreated, no_jitter()).final_reason, kFinalMaxAttempts);
  EXPECT_EQ(next_attempt(p, 1, kCreated, kCreated, no_jitter()).final_reason, kFinalDeadline);
}

TEST(Retry, DeadlineIsWhereTheNextAttemptWouldLand) {
  RetryParams p;  // min 60, deadline 86400
  // Next attempt exactly at creation + deadline: still allowed.
  auto r = next_attempt(p, 1, kCreated, kCreated + 86400 - 60, no_jitter());
  ASSERT_TRUE(r.retry);
  EXPECT_EQ(r.next_attempt_time, kCreated + 86400);
  // One second later it would land past the deadline.
  r = next_attempt(p, 1, kCreated, kCreated + 86400 - 59, no_jitter());
  EXPECT_FALSE(r.retry);
  EXPECT_EQ(r.final_reason, kFinalDeadline);
  // Deadline unset: never final for that reason.
  p.deadline.reset();
  EXPECT_TRUE(next_attempt(p, 1, kCreated, kCreated + 10 * 86400, no_jitter()).retry);
}

TEST(Retry, DeadlineCountsJitteredDelay) {
  RetryParams p = params(100, 1000, 1);
  p.deadline = 105;
  EXPECT_TRUE(next_attempt(p, 1, kCreated, kCreated, fixed(0.5)).retry);   // +100
  EXPECT_FALSE(next_attempt(p, 1, kCreated, kCreated, fixed(0.99)).retry); // +110
}

// --- jitter ------------------------------------------------------------------

TEST(Retry, JitterBounds) {
  const auto p = params(10, 1000, 10);  // attempt 2: base 100
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, 0.0), 90);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, 0.5), 100);
  EXPECT_NEAR(retry_delay(p, 2, 0.999999), 110, 1e-3);
  EXPECT_LT(retry_delay(p, 2, 0.999999), 110);
  EXPECT_EQ(next_attempt(p, 2, kCreated, kCreated, fixed(0.0)).delay, 90);
  EXPECT_EQ(next_attempt(p, 2, kCreated, kCreated, fixed(0.75)).delay, 105);
}

TEST(Retry, JitterNeverLeavesMinMax) {
  const auto p = params(60, 600, 3);
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 0.0), 60);     // would be 54
  EXPECT_DOUBLE_EQ(retry_delay(p, 1, 0.99), 65.88);  // upward is fine
  EXPECT_DOUBLE_EQ(retry_delay(p, 9, 0.99), 600);   // would be 659
  EXPECT_DOUBLE_EQ(retry_delay(p, 9, 0.0), 540);    // downward is fine
}

TEST(Retry, BadJitterValuesMeanNoJitter) {
  const auto p = params(10, 1000, 10);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, 1.0), 100);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, -0.1), 100);
  EXPECT_DOUBLE_EQ(retry_delay(p, 2, std::nan("")), 100);
  EXPECT_EQ(next_attempt(p, 2, kCreated, kCreated, JitterSource{}).delay, 100);
}

TEST(Retry, DefaultJitterStaysInRange) {
  auto j = default_jitter();
  const auto p = params(10, 1000, 10);
  bool below = false, above = false;
  for (int i = 0; i < 2000; ++i) {
    const double u = j();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    auto r = next_attempt(p, 2, kCreated, kCreated, j);
    ASSERT_TRUE(r.retry);
    ASSERT_GE(r.delay, 90);
    ASSERT_LE(r.delay, 110);
    below |= r.delay < 100;
    above |= r.delay > 100;
  }
  EXPECT_TRUE(below && above);  // it actually jitters
}

}  // namespace
}  // namespace koukan::router
