#pragma once
// ByteStream over TCP with optional TLS (OpenSSL through asio::ssl), for
// both roles: the gateway's SMTP listeners (server: STARTTLS or implicit TLS
// on accept) and its outbound SMTP client (client: opportunistic STARTTLS).
#include <boost/asio/ip/tcp.hpp>

#include <memory>
#include <optional>
#include <string>

#include "common/base/result.hpp"
#include "common/smtp/stream.hpp"

namespace koukan::smtp {

// An OpenSSL context (pimpl; shared by every connection using it).
class TlsContext {
 public:
  // Server identity from PEM files (chain + key); errors name the file.
  static Result<std::shared_ptr<TlsContext>> server(const std::string& cert_file,
                                                    const std::string& key_file);
  // Client: TLS >= 1.2; verify=false accepts any certificate (opportunistic
  // STARTTLS, as the original); verify=true checks against the system CAs.
  static std::shared_ptr<TlsContext> client(bool verify);
  ~TlsContext();
  struct Impl;
  std::unique_ptr<Impl> impl;
};

// Wraps an accepted (server) or connected (client) socket. `tls` may be null
// (no TLS for this stream). server: true = TLS server role. With
// implicit_tls the handshake runs before the first read or write (port 465:
// the greeting is written first); its failure is that operation's error
// (and every later one's). is_tls() is true from the start.
std::unique_ptr<ByteStream> make_tcp_stream(boost::asio::ip::tcp::socket socket,
                                            std::shared_ptr<TlsContext> tls, bool server,
                                            bool implicit_tls = false);

// Client role over a connected socket. `server_name`: the peer's name (or
// IP literal) for SNI (names only) and, with a verifying context, for the
// certificate check (host name or IP SAN). connect_tcp() uses this.
std::unique_ptr<ByteStream> make_tcp_client_stream(boost::asio::ip::tcp::socket socket,
                                                   std::shared_ptr<TlsContext> tls,
                                                   std::string server_name);

}  // namespace koukan::smtp
