#include "common/async/notifier.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace koukan {

Task<void> Notifier::wait_until(Clock::time_point deadline) {
  auto ex = co_await asio::this_coro::executor;
  asio::steady_timer timer(ex);
  timer.expires_at(deadline);
  auto it = waiters_.insert(waiters_.end(), &timer);
  // Unlinks also when the coroutine is destroyed while suspended.
  struct Unlink {
    std::list<asio::steady_timer*>& list;
    std::list<asio::steady_timer*>::iterator it;
    ~Unlink() { list.erase(it); }
  };
  Unlink unlink{waiters_, it};
  auto op = timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_await std::move(op);
}

Task<void> Notifier::wait() {
  // ~1 year: "forever" without time_point overflow inside Asio.
  auto deadline = Clock::now() + std::chrono::hours(24 * 365);
  co_await wait_until(deadline);
}

void Notifier::notify_all() {
  for (auto* t : waiters_) t->cancel();
}

}  // namespace koukan
