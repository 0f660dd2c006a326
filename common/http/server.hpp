#pragma once
// HTTP/1.1 server on Beast (implementation in server.cpp): keep-alive,
// optional TLS from cert/key files, a deadline on every read and write,
// header and body limits, graceful shutdown. One coroutine per connection on
// the io_context it is given.
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/http/types.hpp"

namespace koukan::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;          // 0 = ephemeral; see Server::port()
  std::optional<std::string> cert_file, key_file;  // both or neither -> TLS
  std::size_t header_limit = 16 * 1024;
  std::uint64_t body_limit = 1ull << 30;   // hard cap on any request body
  std::chrono::milliseconds read_header_timeout{30'000};
  std::chrono::milliseconds idle_timeout{60'000};     // keep-alive idle
  std::chrono::milliseconds body_read_timeout{60'000}; // per read_some
  std::chrono::milliseconds write_timeout{60'000};
  std::size_t max_connections = 10'000;
};

// The handler is called on the server's io_context. It must consume the body
// it needs; the server drains (or closes on) whatever is left.
using Handler = std::function<Task<Response>(Request&)>;

class Server {
 public:
  Server(boost::asio::io_context& io, ServerOptions opts, Handler handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; errors name the address. Does not accept yet.
  Result<void> listen();
  std::uint16_t port() const;  // the bound port (after listen)
  // Starts accepting (spawns the accept loop).
  void start();
  // Stops accepting, lets in-flight requests finish for `grace`, then closes
  // every connection.
  Task<void> shutdown(std::chrono::milliseconds grace);

 struct Impl;  // public so server.cpp's free functions can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace koukan::http
