// make_pipe(): an in-memory ByteStream pair for tests (stream.hpp).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cstring>
#include <deque>

#include "common/smtp/stream.hpp"

namespace koukan::smtp {

namespace {

struct Channel {
  std::string data;
  bool closed = false;
  std::unique_ptr<asio::steady_timer> waiter;  // a reader waiting for data
  void wake() {
    if (waiter) waiter->cancel();
  }
};

struct Shared {
  explicit Shared(asio::any_io_executor e, bool tls) : ex(std::move(e)), tls_available(tls) {}
  asio::any_io_executor ex;
  Channel ch[2];  // ch[i]: bytes written by side 1-i, read by side i
  bool tls_available;
  bool tls = false;
};

class PipeEnd final : public ByteStream {
 public:
  PipeEnd(std::shared_ptr<Shared> s, int side) : s_(std::move(s)), side_(side) {}
  ~PipeEnd() override { close(); }

  Task<Result<std::size_t>> read_some(std::span<char> buf) override {
    Channel& in = s_->ch[side_];
    auto deadline = timeout_.count() > 0 ? std::optional(std::chrono::steady_clock::now() + timeout_)
                                         : std::nullopt;
    while (in.data.empty() && !in.closed && !closed_) {
      in.waiter = std::make_unique<asio::steady_timer>(s_->ex);
      if (deadline) in.waiter->expires_at(*deadline);
      else in.waiter->expires_after(std::chrono::hours(24));
      auto [ec] = co_await in.waiter->async_wait(asio::as_tuple(asio::use_awaitable));
      in.waiter.reset();
      if (!ec && deadline && std::chrono::steady_clock::now() >= *deadline)
        co_return Error(Errc::timeout, "pipe read timed out");
    }
    if (closed_) co_return Error(Errc::unavailable, "pipe closed");
    if (in.data.empty()) co_return std::size_t{0};
    std::size_t n = std::min(buf.size(), in.data.size());
    std::memcpy(buf.data(), in.data.data(), n);
    in.data.erase(0, n);
    co_return n;
  }

  Task<Result<void>> write_all(std::string_view data) override {
    Channel& out = s_->ch[1 - side_];
    if (closed_ || out.closed) co_return Error(Errc::unavailable, "pipe closed");
    out.data.append(data);
    out.wake();
    co_return Result<void>();
  }

  Task<Result<void>> start_tls() override {
    if (!s_->tls_available) co_return Error(Errc::unavailable, "no TLS on this pipe");
    s_->tls = true;
    co_return Result<void>();
  }
  bool tls_available() const override { return s_->tls_available; }
  bool is_tls() const override { return s_->tls; }
  void set_timeout(std::chrono::milliseconds t) override { timeout_ = t; }
  void close() override {
    if (closed_) return;
    closed_ = true;
    s_->ch[1 - side_].closed = true;
    s_->ch[1 - side_].wake();
    s_->ch[side_].closed = true;
    s_->ch[side_].wake();
  }
  std::optional<HostPort> remote_endpoint() const override {
    return HostPort{"127.0.0.1", side_ == 0 ? 40001 : 25};
  }
  std::optional<HostPort> local_endpoint() const override {
    return HostPort{"127.0.0.1", side_ == 0 ? 25 : 40001};
  }

 private:
  std::shared_ptr<Shared> s_;
  int side_;
  bool closed_ = false;
  std::chrono::milliseconds timeout_{0};
};

}  // namespace

std::pair<std::unique_ptr<ByteStream>, std::unique_ptr<ByteStream>> make_pipe(
    asio::any_io_executor ex, bool tls_available) {
  auto s = std::make_shared<Shared>(std::move(ex), tls_available);
  return {std::make_unique<PipeEnd>(s, 0), std::make_unique<PipeEnd>(s, 1)};
}

}  // namespace koukan::smtp
