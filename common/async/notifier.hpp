#pragma once
// Notifier: wakes every coroutine waiting on it (a condition variable for
// coroutines of one executor; not thread-safe: use it on one thread).
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <list>

#include "common/async/task.hpp"

namespace koukan {

class Notifier {
 public:
  using Clock = std::chrono::steady_clock;
  Notifier() = default;
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;
  // Returns on notify_all() or at `deadline`, whichever comes first.
  Task<void> wait_until(Clock::time_point deadline);
  Task<void> wait();  // no deadline
  void notify_all();

 private:
  std::list<asio::steady_timer*> waiters_;
};

}  // namespace koukan
