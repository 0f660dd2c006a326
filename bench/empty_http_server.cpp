// Baseline for bench/router_bench.sh: our HTTP server with a handler that
// answers every request at once with a tiny JSON body, so the router's
// figures can be read against the cost of HTTP alone.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <cstdlib>

#include "common/http/server.hpp"

using namespace koukan;

int main(int argc, char** argv) {
  boost::asio::io_context io;
  http::ServerOptions o;
  o.host = "127.0.0.1";
  o.port = argc > 1 ? static_cast<std::uint16_t>(std::atoi(argv[1])) : 0;
  http::Handler h = [](http::Request& req) -> Task<http::Response> {
    std::string sink;
    for (;;) {
      auto r = co_await req.body->read_some(sink, 1 << 16);
      if (!r.ok() || sink.empty()) break;
    }
    http::Response resp = http::Response::json(req.method == "POST" ? 201 : 200, "{}");
    resp.headers.set("etag", "1");
    auto host = req.headers.get("host");
    resp.headers.set("location", "http://" + std::string(host ? *host : "127.0.0.1") + "/transactions/x");
    co_return resp;
  };
  http::Server server(io, o, h);
  if (auto r = server.listen(); !r.ok()) {
    std::fprintf(stderr, "listen: %s\n", r.error().message.c_str());
    return 1;
  }
  std::printf("listening on 127.0.0.1:%u\n", server.port());
  std::fflush(stdout);
  server.start();
  boost::asio::signal_set sigs(io, SIGINT, SIGTERM);
  sigs.async_wait([&](auto, int) { io.stop(); });
  io.run();
}
