// koukan-gateway: SMTP <-> REST bridge (spec/gateway.md).
//   koukan-gateway CONFIG                  run
//   koukan-gateway --check-config CONFIG   validate (config, certificates, secrets) and exit
// SIGTERM/SIGINT: stop accepting SMTP and HTTP, cancel outbound
// transactions, drain (10 s), exit 0.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <cstring>
#include <string>

#include "common/base/malloc_tune.hpp"
#include "common/async/task.hpp"
#include "common/base/log.hpp"
#include "common/base/metrics.hpp"
#include "common/http/server.hpp"
#include "gateway/config/gateway_config.hpp"
#include "gateway/inbound/smtp_service.hpp"
#include "gateway/outbound/rest_handler.hpp"

using namespace koukan;
using namespace koukan::gateway;

namespace {

// A free function, not a capturing lambda coroutine.
Task<void> drain_and_stop(http::Server& server, outbound::RestHandler& rest, SmtpService& smtp,
                          asio::io_context& io) {
  smtp.stop();
  co_await rest.shutdown(std::chrono::seconds(5));
  co_await server.shutdown(std::chrono::seconds(5));
  io.stop();
}

Task<http::Response> route(outbound::RestHandler& rest, http::Request& req) {
  if (req.method == "GET" && req.path == "/metrics") {
    http::Response r = http::Response::empty(200);
    r.headers.set("content-type", "text/plain; version=0.0.4");
    r.body = metrics::render();
    co_return r;
  }
  co_return co_await rest.handle(req);
}

}  // namespace

int main(int argc, char** argv) {
  koukan::tune_malloc();
  bool check = false;
  const char* path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--check-config")) check = true;
    else if (argv[i][0] == '-' || path) {
      path = nullptr;
      break;
    } else path = argv[i];
  }
  if (!path) {
    std::fprintf(stderr, "usage: koukan-gateway [--check-config] CONFIG.yaml\n");
    return 2;
  }
  std::vector<std::string> warnings;
  auto cfg = load_gateway_config(path, &warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "%s: warning: %s\n", path, w.c_str());
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s: invalid config:\n%s\n", path, cfg.error().message.c_str());
    return 2;
  }
  log::set_level(cfg->logging.level);
  if (cfg->logging.file) log::set_file(*cfg->logging.file);

  asio::io_context io(1);
  SmtpService smtp(io, *cfg);
  // Loads certificates and secrets (--check-config checks those files too)
  // and binds the SMTP ports (not in --check-config: the gateway may be
  // running).
  if (auto r = smtp.listen(!check); !r.ok()) {
    std::fprintf(stderr, "%s: %s\n", path, r.error().message.c_str());
    return check ? 2 : 1;
  }
  if (check) {
    std::printf("%s: ok\n", path);
    return 0;
  }

  outbound::OutboundOptions oo;
  oo.listener = cfg->rest_listener;
  oo.output = cfg->smtp_output;
  outbound::RestHandler rest(io.get_executor(), oo);
  rest.start();
  http::ServerOptions so;
  so.host = cfg->rest_listener.host;
  so.port = cfg->rest_listener.port;
  so.body_limit = cfg->rest_listener.max_body_bytes;
  so.cert_file = cfg->rest_listener.cert;
  so.key_file = cfg->rest_listener.key;
  http::Server server(io, so, [&rest](http::Request& req) { return route(rest, req); });
  if (auto r = server.listen(); !r.ok()) {
    log::error("{}", r.error().message);
    return 1;
  }
  server.start();
  smtp.start();
  log::info("koukan-gateway: REST on {}:{} (session_uri {}), {} SMTP listener(s)", so.host,
            server.port(), cfg->rest_listener.session_uri, cfg->services.size());

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    log::info("signal {}: draining", sig);
    spawn(io.get_executor(), drain_and_stop(server, rest, smtp, io), "shutdown");
  });
  io.run();
  log::info("koukan-gateway stopped");
  return 0;
}
