#pragma once
// Coroutine helpers shared by both daemons.
//  - Task<T>: the awaitable type used everywhere.
//  - spawn(): the ONE way to start a detached coroutine; logs its exception,
//    never lets it reach the event loop (and tests `if (e)` first: Boost 1.81).
//  - BlockingPool / offload(): run blocking work (SQL, fsync, blocking
//    libraries) on a small thread pool and resume on the caller's executor.
// GCC 12.2: never put a braced temporary or a capturing lambda inside a
// co_await expression; name it first.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "common/base/log.hpp"

namespace koukan {

namespace asio = boost::asio;

template <class T = void>
using Task = asio::awaitable<T>;

// Starts `t` detached on `ex`; an escaping exception is logged with `what`.
template <class Executor>
void spawn(Executor ex, Task<void> t, std::string what) {
  auto done = [what = std::move(what)](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      log::error("coroutine '{}' failed: {}", what, ex.what());
    } catch (...) {
      log::error("coroutine '{}' failed: unknown exception", what);
    }
  };
  asio::co_spawn(ex, std::move(t), std::move(done));
}

// A fixed-size pool for blocking calls.
class BlockingPool {
 public:
  explicit BlockingPool(std::size_t threads) : pool_(threads) {}
  ~BlockingPool() { stop(); }
  asio::thread_pool::executor_type executor() { return pool_.get_executor(); }
  void stop() {
    pool_.stop();
    pool_.join();
  }

 private:
  asio::thread_pool pool_;
};

namespace detail {
template <class F>
Task<std::invoke_result_t<F&>> run_in_pool(F f) {
  co_return f();
}
}  // namespace detail

// Runs f() on `pool`, resumes the awaiting coroutine on its own executor.
// Exceptions from f propagate to the awaiter.
template <class F>
Task<std::invoke_result_t<F&>> offload(BlockingPool& pool, F f) {
  using R = std::invoke_result_t<F&>;
  auto inner = detail::run_in_pool(std::move(f));
  co_return co_await asio::co_spawn(pool.executor(), std::move(inner), asio::use_awaitable);
  static_assert(!std::is_reference_v<R>);
}

}  // namespace koukan
