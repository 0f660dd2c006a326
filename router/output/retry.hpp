#pragma once
// Retry scheduling after a failed delivery attempt (spec/router.md §8.4),
// pure: no clock, no storage; the caller passes the times and a jitter source.
//
// Semantics (the DOCUMENTED ones, docs/compat.md "Retries"): exponential
// backoff measured from the end of the attempt just finished,
//   delay = min_attempt_time * backoff_factor^(attempts - 1)
// clamped to [min_attempt_time, max_attempt_time] (min wins if min > max),
// then multiplied by (1 + j) with j uniform in [-10%, +10%), and clamped again
// so jitter never leaves [min, max]. The delay is rounded to whole seconds
// (all stored times are integer unix seconds from one clock).
//
// The original computes the interval from the transaction's AGE instead
// ((now - creation) * backoff_factor, then max, then min), so each retry
// lands at ~2.5x the previous age with factor 1.5, and min/max are not "time
// since the previous attempt" as its docs say; it also has no jitter and mixes
// the DB clock (creation) with the local clock (now). We implement what the
// docs describe, add jitter, and take every time from the caller's one clock.
#include <cstdint>
#include <functional>
#include <string_view>

#include "router/config/router_config.hpp"

namespace koukan::router {

inline constexpr std::string_view kFinalMaxAttempts = "retry policy max attempts";
inline constexpr std::string_view kFinalDeadline = "retry policy deadline";

// Maximum relative jitter: the delay is scaled by a factor in [0.9, 1.1).
inline constexpr double kRetryJitterFraction = 0.1;
// Upper bound on any computed delay (seconds, ~31,700 years): keeps huge
// max_attempt_time / backoff_factor values from overflowing integer times.
inline constexpr double kMaxRetryDelay = 1e12;

// Returns a value uniform in [0, 1). Values outside [0, 1) (or NaN) are
// treated as 0.5, i.e. no jitter.
using JitterSource = std::function<double()>;

// A thread-safe source backed by a per-thread PRNG seeded from the OS.
JitterSource default_jitter();
// Always 0.5: no jitter (tests, or deterministic schedules).
JitterSource no_jitter();

struct RetryDecision {
  bool retry = false;
  std::int64_t next_attempt_time = 0;  // unix seconds; meaningful iff retry
  std::int64_t delay = 0;              // next_attempt_time - now; iff retry
  std::string_view final_reason;       // kFinalMaxAttempts / kFinalDeadline iff !retry

  static RetryDecision retry_at(std::int64_t now, std::int64_t delay) {
    return RetryDecision{true, now + delay, delay, {}};
  }
  static RetryDecision final_with(std::string_view reason) {
    return RetryDecision{false, 0, 0, reason};
  }
};

// The backoff delay in seconds before attempt `attempts + 1`, given `u` in
// [0, 1) for the jitter. Not rounded. `attempts` < 1 is treated as 1.
double retry_delay(const RetryParams& p, int attempts, double u);

// Decide what happens after attempt number `attempts` (1-based: the id of the
// attempt that just finished) ended at `now`, for a transaction created at
// `creation` (both unix seconds, same clock):
//   * max_attempts set and attempts >= max_attempts -> final kFinalMaxAttempts;
//   * next = now + round(delay); deadline set and next - creation > deadline
//     -> final kFinalDeadline;
//   * otherwise retry at next.
// The caller handles "no retry_params" / "tx has no retry" (no decision at
// all, §8.4) before calling this.
RetryDecision next_attempt(const RetryParams& p, int attempts, std::int64_t creation,
                           std::int64_t now, const JitterSource& jitter);

}  // namespace koukan::router
