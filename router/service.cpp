// Router service wiring: config -> storage -> REST handler -> HTTP server,
// plus the housekeeping loops (session refresh, GC) and graceful shutdown.
#include "router/service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "common/async/task.hpp"
#include "common/base/log.hpp"
#include "common/http/server.hpp"
#include "router/chain/chain.hpp"
#include "router/chain/plugin.hpp"
#include "router/chain/registry.hpp"
#include "router/config/router_config.hpp"
#include "router/filters/builtin.hpp"
#include "router/output/exploder.hpp"
#include "router/output/output_service.hpp"
#include "router/rest/rest_handler.hpp"
#include "router/storage/storage.hpp"
#include "router/storage/version_cache.hpp"

namespace koukan::router {

namespace {

Task<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

// A free function, not a capturing lambda: a lambda coroutine's captures die
// with the lambda object.
Task<void> drain_and_stop(http::Server& server, asio::io_context& io) {
  co_await server.shutdown(std::chrono::seconds(10));
  io.stop();
}

struct Service {
  const RouterConfig& cfg;
  asio::io_context& io;
  Storage& storage;
  BlockingPool& pool;
  bool stopping = false;

  // Liveness refresh of this process's session, and reaping of sessions
  // whose refresh stopped (their leases are released). If refreshing fails
  // for longer than the session TTL this process stops serving (fencing).
  Task<void> session_loop() {
    const auto interval = std::chrono::seconds(cfg.storage.session_refresh_interval);
    auto last_ok = std::chrono::steady_clock::now();
    while (!stopping) {
      co_await sleep_for(interval);
      if (stopping) break;
      auto f = [this]() { return storage.refresh_session(); };
      auto r = co_await offload(pool, std::move(f));
      if (r.ok()) {
        last_ok = std::chrono::steady_clock::now();
      } else {
        log::error("session refresh failed: {}", r.error().message);
        if (std::chrono::steady_clock::now() - last_ok > std::chrono::seconds(cfg.storage.session_ttl)) {
          log::critical("session refresh failing for longer than the session TTL: stopping");
          io.stop();
          co_return;
        }
      }
      auto g = [this]() { return storage.reap_sessions(std::chrono::seconds(cfg.storage.session_ttl)); };
      auto reaped = co_await offload(pool, std::move(g));
      if (reaped.ok() && *reaped > 0) log::info("reaped {} dead sessions", *reaped);
    }
  }

  Task<void> gc_loop() {
    if (!cfg.storage.gc_interval) co_return;
    const auto interval = std::chrono::seconds(*cfg.storage.gc_interval);
    while (!stopping) {
      co_await sleep_for(interval);
      if (stopping) break;
      auto f = [this]() {
        return storage.gc(std::chrono::seconds(cfg.storage.gc_ttl), std::chrono::seconds(cfg.storage.gc_ttl));
      };
      auto r = co_await offload(pool, std::move(f));
      if (!r.ok())
        log::error("gc failed: {}", r.error().message);
      else if (r->transactions || r->blobs || r->sessions)
        log::info("gc: deleted {} transactions, {} blobs, {} sessions", r->transactions, r->blobs, r->sessions);
    }
  }
};

}  // namespace

int run_router(const std::string& config_path, Mode mode) {
  std::vector<std::string> warnings;
  auto cfg = load_router_config(config_path, builtin_filter_names(), &warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "%s: warning: %s\n", config_path.c_str(), w.c_str());
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s: invalid config:\n%s\n", config_path.c_str(), cfg.error().message.c_str());
    return 2;
  }
  if (mode == Mode::print_config) {
    std::cout << print_effective(*cfg) << std::endl;
    return 0;
  }
  const auto& rl = cfg->rest_listener;
  asio::io_context io(1);
  VersionCache cache(io.get_executor(), std::chrono::seconds(cfg->storage.cache_ttl));

  // Filters and chains, built once (router.md §11); every error at once.
  chain::FilterRegistry registry;
  chain::register_builtin_filters(registry);
  config::ConfigErrors chain_errors;
  chain::LoadedPlugins plugins = chain::load_plugins(cfg->modules, registry, chain_errors);
  filters::FilterDeps fdeps;
  fdeps.config = &*cfg;
  fdeps.executor = io.get_executor();
  fdeps.plugins = &plugins;
  filters::register_filters(registry, fdeps);
  OutputDeps odeps;
  odeps.config = &*cfg;
  odeps.cache = &cache;
  odeps.executor = io.get_executor();
  chain::ChainMap chains;
  odeps.chains = &chains;
  OutputService output(odeps);
  register_exploder_filters(registry, output, *cfg);
  chains = chain::build_chains(*cfg, registry, chain_errors);
  for (const auto& w : chain_errors.warning_lines())
    std::fprintf(stderr, "%s: warning: %s\n", config_path.c_str(), w.c_str());
  if (!chain_errors.ok()) {
    std::fprintf(stderr, "%s: invalid config:\n%s\n", config_path.c_str(),
                 chain_errors.error_text().c_str());
    return 2;
  }

  if (mode == Mode::check_config) {
    std::printf("%s: ok\n", config_path.c_str());
    return 0;
  }
  log::set_level(cfg->logging.level);
  if (cfg->logging.file) log::set_file(*cfg->logging.file);

  constexpr std::size_t kDbThreads = 4;
  StorageOptions sopts;
  // SQLite has one writer at a time: with several connections, concurrent
  // writers spin in busy_timeout sleeps (p99 300 ms at 16 clients in
  // bench/router_bench.sh). One connection turns that into a FIFO queue.
  sopts.max_connections = cfg->storage.kind == StorageKind::sqlite ? 1 : kDbThreads + 1;
  // SQLite reads run beside the writer on their own WAL connections (on the
  // I/O thread, or storage.read_threads threads).
  sopts.max_read_connections = std::max<std::size_t>(1, static_cast<std::size_t>(cfg->storage.read_threads));
  sopts.chunk_size = rl.chunk_size;
  sopts.on_change = [&cache](const std::string& id, std::int64_t v) { cache.notify(id, v); };
  auto st = open_storage(cfg->storage.url, sopts);
  if (!st.ok()) {
    log::error("storage {}: {}", cfg->storage.url, st.error().message);
    return 1;
  }
  Storage& storage = **st;
  if (mode == Mode::init_db) {
    std::printf("schema ready in %s\n", cfg->storage.url.c_str());
    return 0;
  }
  // Startup recovery: our crashed predecessors (same session_uri) are
  // declared dead at once, other stale sessions after session_ttl.
  if (auto r = storage.open_session(rl.session_uri, std::chrono::seconds(cfg->storage.session_ttl)); !r.ok()) {
    log::error("storage session: {}", r.error().message);
    return 1;
  }
  // SQLite: one DB thread committing calls in batches (group commit: one
  // fsync for every call queued meanwhile); PostgreSQL: kDbThreads threads.
  auto group = storage.group_commit();
  const auto readers = static_cast<std::size_t>(cfg->storage.read_threads);
  auto pool_ptr = group ? std::make_unique<BlockingPool>(*group, readers)
                        : std::make_unique<BlockingPool>(kDbThreads);
  BlockingPool& pool = *pool_ptr;
  output.attach(&storage, &pool);

  RestOptions ro;
  ro.session_uri = rl.session_uri;
  ro.service_uri = rl.service_uri;
  ro.chunk_size = rl.chunk_size;
  ro.max_json_body = rl.max_json_body;
  ro.first_answer_wait = std::chrono::milliseconds(rl.first_answer_wait_ms);
  ro.rest_id_entropy = cfg->global.rest_id_entropy;
  const bool delivering = cfg->global.output.max_inflight > 0;
  if (delivering) {
    ro.output.reserve = [&output]() { return output.try_reserve(); };
    ro.output.unreserve = [&output]() { output.unreserve(); };
    ro.output.start = [&output](const TxRecord& rec) { output.start_new(rec); };
    ro.output.queued = [&output]() { output.wake(); };
    ro.output.immediate_responses = [&output](const std::string& chain, const TransactionMetadata& tx) {
      return output.immediate_responses(chain, tx);
    };
  }
  RestHandler rest(*cfg, storage, pool, cache, ro);

  http::ServerOptions so;
  so.host = rl.host;
  so.port = rl.port;
  so.header_limit = rl.max_header_bytes;
  so.body_limit = rl.max_body_bytes;
  so.cert_file = rl.cert;
  so.key_file = rl.key;
  http::Server server(io, so, [&rest](http::Request& req) { return rest.handle(req); });
  if (auto r = server.listen(); !r.ok()) {
    log::error("{}", r.error().message);
    return 1;
  }
  server.start();
  log::info("koukan-router listening on {}:{} session_uri={} storage={}", so.host, server.port(),
            rl.session_uri, cfg->storage.url);

  Service svc{*cfg, io, storage, pool};
  spawn(io.get_executor(), svc.session_loop(), "session refresh");
  spawn(io.get_executor(), svc.gc_loop(), "gc");
  if (delivering) spawn(io.get_executor(), output.dequeue_loop(), "dequeue");

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log::info("signal {}: draining", sig);
    svc.stopping = true;
    output.stop();
    spawn(io.get_executor(), drain_and_stop(server, io), "shutdown");
  });
  io.run();
  pool.stop();
  if (pool.grouped()) log::info("storage: {} calls in {} group commits", pool.jobs(), pool.batches());
  if (auto r = storage.close_session(); !r.ok()) log::warn("close session: {}", r.error().message);
  log::info("koukan-router stopped");
  return 0;
}

}  // namespace koukan::router
