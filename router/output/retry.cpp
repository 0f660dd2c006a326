#include "router/output/retry.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace koukan::router {

JitterSource default_jitter() {
  return [] {
    thread_local std::mt19937_64 gen{std::random_device{}()};
    return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
  };
}

JitterSource no_jitter() {
  return [] { return 0.5; };
}

namespace {

// [lo, hi] with lo winning when the config has min > max.
double clamp_min_wins(double v, double lo, double hi) {
  if (std::isnan(v)) v = lo;
  v = std::min(v, hi);
  return std::max(v, lo);
}

}  // namespace

double retry_delay(const RetryParams& p, int attempts, double u) {
  const double lo = std::min(std::max(p.min_attempt_time, 0.0), kMaxRetryDelay);
  const double hi = std::min(std::max(p.max_attempt_time, 0.0), kMaxRetryDelay);
  const int n = std::max(attempts, 1);
  // pow may overflow to inf (large factor or many attempts); the clamp fixes
  // that. 0^0 == 1, so factor 0 gives min_attempt_time.
  double base = lo * std::pow(p.backoff_factor, n - 1);
  base = clamp_min_wins(base, lo, hi);
  if (!(u >= 0.0 && u < 1.0)) u = 0.5;
  const double j = kRetryJitterFraction * (2.0 * u - 1.0);  // [-0.1, 0.1)
  return clamp_min_wins(base * (1.0 + j), lo, hi);
}

RetryDecision next_attempt(const RetryParams& p, int attempts, std::int64_t creation,
                           std::int64_t now, const JitterSource& jitter) {
  if (p.max_attempts && attempts >= *p.max_attempts) {
    return RetryDecision::final_with(kFinalMaxAttempts);
  }
  const double u = jitter ? jitter() : 0.5;
  const double d = retry_delay(p, attempts, u);
  // Whole seconds, still within [min, max] after rounding (min wins).
  const double lo = std::ceil(std::min(std::max(p.min_attempt_time, 0.0), kMaxRetryDelay));
  const double hi =
      std::max(lo, std::floor(std::min(std::max(p.max_attempt_time, 0.0), kMaxRetryDelay)));
  const auto delay = static_cast<std::int64_t>(std::clamp(std::round(d), lo, hi));
  const RetryDecision r = RetryDecision::retry_at(now, delay);
  if (p.deadline && static_cast<double>(r.next_attempt_time - creation) > *p.deadline) {
    return RetryDecision::final_with(kFinalDeadline);
  }
  return r;
}

}  // namespace koukan::router
