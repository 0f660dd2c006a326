#pragma once
// ByteStream: the transport under an SMTP session, server or client side.
// A plain TCP connection that can switch to TLS in place (STARTTLS), or
// TLS from the start (implicit TLS, port 465). The SMTP engines
// (server_session.hpp, client.hpp) only see this interface, so tests drive
// them over an in-memory pipe (make_pipe) and production over TCP
// (tcp_stream.hpp).
//
// One coroutine uses a stream at a time (reads and writes are not
// concurrent). Every operation has a deadline: set_timeout() before it;
// an expired deadline is Errc::timeout. After a read timeout one more write
// may be tried (a 421 reply), then the stream must be closed; after any other
// timeout the stream is closed already.
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "common/async/task.hpp"
#include "common/base/result.hpp"
#include "common/json/transaction.hpp"  // HostPort

namespace koukan::smtp {

class ByteStream {
 public:
  virtual ~ByteStream() = default;

  // Reads 1..buf.size() bytes. 0 = the peer closed the connection (EOF).
  // Errors: timeout, unavailable (reset), internal (TLS failure).
  virtual Task<Result<std::size_t>> read_some(std::span<char> buf) = 0;
  // Writes all of `data`.
  virtual Task<Result<void>> write_all(std::string_view data) = 0;

  // Upgrades to TLS in place: as a server (STARTTLS on a listener with a
  // certificate) or as a client (outbound STARTTLS). Errc::unavailable when
  // this stream has no TLS context for its role; a handshake failure is an
  // error and the stream must be closed.
  virtual Task<Result<void>> start_tls() = 0;
  virtual bool tls_available() const = 0;  // start_tls() can work
  virtual bool is_tls() const = 0;         // TLS is on (implicit or STARTTLS)

  // Deadline for each following read/write/handshake (0 = none).
  virtual void set_timeout(std::chrono::milliseconds t) = 0;
  // Closes now (best effort, idempotent); pending operations fail.
  virtual void close() = 0;

  virtual std::optional<HostPort> remote_endpoint() const = 0;
  virtual std::optional<HostPort> local_endpoint() const = 0;
};

// In-memory connected pair for tests: what one side writes the other reads.
// start_tls() just flips is_tls() on both ends when `tls_available`.
// Closing one side makes the other read EOF. Runs on `ex`.
std::pair<std::unique_ptr<ByteStream>, std::unique_ptr<ByteStream>> make_pipe(
    asio::any_io_executor ex, bool tls_available = false);

}  // namespace koukan::smtp
