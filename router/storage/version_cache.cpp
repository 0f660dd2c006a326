// VersionCache: state on the io executor; notify() posts there.
#include "router/storage/version_cache.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <list>
#include <unordered_map>

namespace koukan::router {

struct VersionCache::State {
  struct Entry {
    std::int64_t version = 0;  // 0 = unknown
    Clock::time_point touched;
    std::list<asio::steady_timer*> waiters;
  };

  asio::any_io_executor io;
  Clock::duration ttl;
  std::unordered_map<std::string, Entry> map;
  Clock::time_point last_sweep = Clock::now();

  State(asio::any_io_executor e, Clock::duration t) : io(std::move(e)), ttl(t) {}

  void apply(const std::string& id, std::int64_t v) {
    const auto now = Clock::now();
    Entry& e = map[id];
    e.touched = now;
    if (v > e.version) {
      e.version = v;
      for (auto* t : e.waiters) t->cancel();
    }
    maybe_sweep(now);
  }

  void maybe_sweep(Clock::time_point now) {
    if (now - last_sweep < ttl) return;
    last_sweep = now;
    for (auto it = map.begin(); it != map.end();) {
      if (it->second.waiters.empty() && now - it->second.touched >= ttl) {
        it = map.erase(it);
      } else {
        ++it;
      }
    }
  }
};

VersionCache::VersionCache(asio::any_io_executor io, Clock::duration ttl)
    : state_(std::make_shared<State>(std::move(io), ttl)) {}

VersionCache::~VersionCache() = default;

void VersionCache::notify(const std::string& rest_id, std::int64_t version) {
  auto st = state_;
  asio::post(st->io, [st, rest_id, version] { st->apply(rest_id, version); });
}

namespace {
// Removes a waiter from its entry however the coroutine ends.
struct WaiterGuard {
  std::shared_ptr<void> keep;
  std::list<asio::steady_timer*>* list;
  std::list<asio::steady_timer*>::iterator it;
  ~WaiterGuard() { list->erase(it); }
};
}  // namespace

Task<bool> VersionCache::wait_for_change(std::string rest_id, std::int64_t known_version,
                                         Clock::duration timeout) {
  std::shared_ptr<State> st = state_;
  const auto now = Clock::now();
  st->maybe_sweep(now);
  State::Entry& e = st->map[rest_id];  // references stay valid: entries with waiters are never erased
  e.touched = now;
  if (e.version > known_version) co_return true;
  asio::steady_timer timer(st->io, timeout);
  WaiterGuard guard{st, &e.waiters, e.waiters.insert(e.waiters.end(), &timer)};
  auto wait = timer.async_wait(asio::as_tuple(asio::use_awaitable));
  co_await std::move(wait);
  e.touched = Clock::now();
  co_return e.version > known_version;
}

std::optional<std::int64_t> VersionCache::version(const std::string& rest_id) const {
  auto it = state_->map.find(rest_id);
  if (it == state_->map.end() || it->second.version == 0) return std::nullopt;
  return it->second.version;
}

std::size_t VersionCache::size() const { return state_->map.size(); }

}  // namespace koukan::router
