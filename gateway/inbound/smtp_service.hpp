#pragma once
// The gateway's SMTP listeners (spec/gateway.md §3): one acceptor per
// smtp_listener.services[] entry, one coroutine per connection running the
// SMTP engine (common/smtp/server_session.hpp) with an InboundHandler that
// relays MAIL / RCPT / the body to the router through RouterTx.
#include <boost/asio/io_context.hpp>

#include <memory>
#include <vector>

#include "common/async/task.hpp"
#include "common/base/result.hpp"
#include "gateway/config/gateway_config.hpp"

namespace koukan::gateway {

class SmtpService {
 public:
  SmtpService(asio::io_context& io, const GatewayConfig& config);
  ~SmtpService();
  // Loads certificates / secrets and binds every listener (bind=false:
  // only the files, for --check-config next to a running gateway); every
  // problem is returned (as one message, a line per listener).
  Result<void> listen(bool bind = true);
  // Ports actually bound (tests use port 0), in services[] order.
  std::vector<std::uint16_t> ports() const;
  void start();
  // Stops accepting; open sessions are closed.
  void stop();
  std::size_t sessions() const;

  struct Impl;  // public only for the session coroutines in the .cpp

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace koukan::gateway
