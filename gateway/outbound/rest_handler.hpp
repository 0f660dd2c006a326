#pragma once
// The gateway's REST listener, router-facing (spec/gateway.md §4.2, §5;
// rest-api.md §6-§8): create / GET (long-poll) / PATCH / body PUT / cancel
// over the in-memory TxTable. A pure Request -> Response handler; serve it
// with http::Server:
//
//   auto h = std::make_shared<RestHandler>(io.get_executor(), opts);
//   h->start();                                        // GC loop
//   http::Server srv(io, so, [h](http::Request& r) { return h->handle(r); });
//   ...
//   co_await srv.shutdown(grace); co_await h->shutdown(grace);
#include <chrono>
#include <memory>

#include "common/async/task.hpp"
#include "common/http/types.hpp"
#include "gateway/outbound/outbound_tx.hpp"

namespace koukan::gateway::outbound {

class RestHandler {
 public:
  RestHandler(asio::any_io_executor ex, OutboundOptions opts);
  ~RestHandler();
  RestHandler(const RestHandler&) = delete;
  RestHandler& operator=(const RestHandler&) = delete;

  // Routes: POST /senders/{any}/transactions, GET|PATCH /transactions/{id},
  // PUT /transactions/{id}/body, POST /transactions/{id}/cancel,
  // PUT /transactions/{id}/blob/{b} (400: not supported), GET /healthz.
  Task<http::Response> handle(http::Request& req);

  void start();  // starts the GC loop
  // Cancels every transaction (QUIT), waits up to `grace` for the SMTP
  // drivers, closes what is left.
  Task<void> shutdown(std::chrono::milliseconds grace);

  TxTable& table();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace koukan::gateway::outbound
