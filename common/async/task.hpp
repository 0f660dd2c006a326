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
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <string>
#include <type_traits>
#include <utility>

#include "common/async/group_commit.hpp"
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

// A pool for blocking calls: either `threads` threads (each call runs on its
// own), or one thread that runs calls in batches inside a GroupCommit (the
// awaiters resume only after the batch's commit).
class BlockingPool {
 public:
  explicit BlockingPool(std::size_t threads) { pool_.emplace(threads); }
  // Group mode: one thread runs offload() calls, at most max_batch per batch;
  // `readers` threads run offload_read() calls (no commit to wait for);
  // readers == 0: offload_read() calls run on the caller's thread.
  BlockingPool(GroupCommit& group, std::size_t readers, std::size_t max_batch = 128);
  ~BlockingPool() { stop(); }
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;
  // The threads of offload_read() (thread mode: of every call); not with
  // inline_reads().
  asio::thread_pool::executor_type executor() { return pool_->get_executor(); }
  void stop();
  bool grouped() const { return group_ != nullptr; }
  bool inline_reads() const { return !pool_; }

  // Group mode: one queued call (type-erased; the completion handler is
  // posted to its own executor after the batch commits).
  struct Job {
    virtual ~Job() = default;
    virtual void run() noexcept = 0;
    virtual void complete() = 0;
  };
  template <class Token>
  auto group_call(std::function<void()>* fn, Token&& token) {
    return asio::async_initiate<Token, void()>(
        [this, fn](auto handler) {
          using H = decltype(handler);
          struct Impl final : Job {
            Impl(std::function<void()>* f, H&& h) : fn(f), h(std::move(h)) {}
            void run() noexcept override { (*fn)(); }
            void complete() override {
              auto ex = asio::get_associated_executor(h);
              asio::post(ex, std::move(h));
            }
            std::function<void()>* fn;
            H h;
          };
          enqueue(std::make_unique<Impl>(fn, std::move(handler)));
        },
        token);
  }
  // Batches committed and jobs run, for /metrics and tests.
  std::uint64_t batches() const { return batches_.load(); }
  std::uint64_t jobs() const { return jobs_.load(); }

 private:
  void enqueue(std::unique_ptr<Job> j);
  void group_loop();

  std::optional<asio::thread_pool> pool_;
  GroupCommit* group_ = nullptr;
  std::size_t max_batch_ = 128;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Job>> queue_;
  bool stop_ = false;
  std::thread thread_;
  std::atomic<std::uint64_t> batches_{0}, jobs_{0};
};

namespace detail {
template <class F>
Task<std::invoke_result_t<F&>> run_in_pool(F f) {
  co_return f();
}
template <class R>
struct GroupSlot {
  std::optional<R> value;
  std::exception_ptr error;
  template <class F>
  void fill(F& f) noexcept {
    value.reset();
    error = nullptr;
    try {
      value.emplace(f());
    } catch (...) {
      error = std::current_exception();
    }
  }
  R take() {
    if (error) std::rethrow_exception(error);
    return std::move(*value);
  }
};
template <>
struct GroupSlot<void> {
  std::exception_ptr error;
  template <class F>
  void fill(F& f) noexcept {
    error = nullptr;
    try {
      f();
    } catch (...) {
      error = std::current_exception();
    }
  }
  void take() {
    if (error) std::rethrow_exception(error);
  }
};
}  // namespace detail

// A read-only call (it must not write: in group mode it runs beside the
// batches, on its own connection, and sees only committed data).
template <class F>
Task<std::invoke_result_t<F&>> offload_read(BlockingPool& pool, F f) {
  if (pool.inline_reads()) co_return f();
  auto inner = detail::run_in_pool(std::move(f));
  co_return co_await asio::co_spawn(pool.executor(), std::move(inner), asio::use_awaitable);
}

// Runs f() on `pool`, resumes the awaiting coroutine on its own executor.
// Exceptions from f propagate to the awaiter. In group mode f may run twice
// (batch, then alone if the batch's commit failed): it must be a unit of
// work that is safe to repeat once rolled back (a storage call is).
template <class F>
Task<std::invoke_result_t<F&>> offload(BlockingPool& pool, F f) {
  using R = std::invoke_result_t<F&>;
  static_assert(!std::is_reference_v<R>);
  if (pool.grouped()) {
    detail::GroupSlot<R> slot;
    std::function<void()> fn = [&slot, &f] { slot.fill(f); };
    co_await pool.group_call(&fn, asio::use_awaitable);
    co_return slot.take();
  }
  auto inner = detail::run_in_pool(std::move(f));
  co_return co_await asio::co_spawn(pool.executor(), std::move(inner), asio::use_awaitable);
}

}  // namespace koukan
