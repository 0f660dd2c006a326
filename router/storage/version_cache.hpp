#pragma once
// In-process map rest_id -> latest known version, with waiters (router.md §6.3,
// simplified): a long-poll GET on a transaction this process holds waits here
// instead of polling the database.
//
// Threading: the state lives on ONE executor (the I/O thread's io_context).
// notify() may be called from any thread (storage threads): it posts to that
// executor. wait_for_change() must be awaited by a coroutine running on that
// executor.
//
// Entries without waiters expire `ttl` after their last notify.
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/any_io_executor.hpp>

#include "common/async/task.hpp"

namespace koukan::router {

class VersionCache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit VersionCache(asio::any_io_executor io,
                        Clock::duration ttl = std::chrono::seconds(5));
  ~VersionCache();
  VersionCache(const VersionCache&) = delete;
  VersionCache& operator=(const VersionCache&) = delete;

  // Any thread, never blocks. Records `version` if it is higher than the
  // known one and wakes the waiters of rest_id.
  void notify(const std::string& rest_id, std::int64_t version);

  // On the io executor. Returns true as soon as the known version of rest_id
  // is > known_version (at once if it already is), false after `timeout`.
  Task<bool> wait_for_change(std::string rest_id, std::int64_t known_version,
                             Clock::duration timeout);

  // On the io executor: the known version, if any.
  std::optional<std::int64_t> version(const std::string& rest_id) const;
  // On the io executor: number of entries (tests).
  std::size_t size() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace koukan::router
