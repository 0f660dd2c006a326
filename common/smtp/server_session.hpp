#pragma once
// SMTP server session engine (spec/gateway.md §3.2-§3.5, §3.9; RFC 5321,
// 1870 SIZE, 2920 PIPELINING, 3030 CHUNKING, 3207 STARTTLS, 4954 AUTH,
// 6152 8BITMIME, 6531 SMTPUTF8, 2034 ENHANCEDSTATUSCODES).
//
// One coroutine per connection runs the whole dialogue over a ByteStream;
// everything that needs the outside world (the router) goes through a
// ServerHandler. The engine owns the protocol: command parsing and limits,
// state (greeting -> EHLO -> MAIL -> RCPT -> DATA/BDAT), replies with
// enhanced status codes, STARTTLS / implicit TLS, AUTH PLAIN/LOGIN, DATA
// dot-unstuffing and BDAT, streaming the message to the handler in pieces of
// at most `chunk_size` bytes (never the whole message in memory).
//
//   co_await run_server_session(stream, handler, options);
//
// Pipelining: commands already received are processed in order and their
// replies are flushed together when the input buffer runs dry (RFC 2920).
// Multi-line handler responses (message with '\n') become multi-line
// replies ("250-..." ... "250 ...").
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/async/task.hpp"
#include "common/json/transaction.hpp"
#include "common/smtp/stream.hpp"

namespace koukan::smtp {

struct ServerOptions {
  std::string hostname = "localhost";        // greeting, EHLO reply
  std::size_t max_message_size = 32u << 20;  // SIZE; more data -> 552 5.3.4
  std::size_t max_recipients = 100;          // more -> 452 4.5.3
  std::size_t max_command_line = 512;        // incl. CRLF (RFC 5321 4.5.3.1.4)
  std::size_t max_text_line = 1000;          // DATA line incl. CRLF (4.5.3.1.6)
  std::size_t max_unknown_commands = 5;      // then 502 5.5.1 and close
  std::chrono::milliseconds idle_timeout{300'000};  // waiting for the client
  std::size_t chunk_size = 1u << 20;         // body pieces handed to on_data
  bool enable_bdat = true;                   // advertise CHUNKING, accept BDAT
  bool auth_enabled = false;                 // AUTH offered (only over TLS)
  // Called every heartbeat_interval while a transaction is open and the
  // engine waits for the client (keeps the router's transaction alive).
  std::chrono::milliseconds heartbeat_interval{10'000};
};

// What the handler knows about the connection (-> smtp_meta, remote_host).
struct SessionInfo {
  std::string ehlo_host;  // HELO/EHLO argument as given
  bool esmtp = false;     // EHLO (not HELO)
  bool tls = false;       // STARTTLS done or implicit TLS
  std::optional<std::string> auth_user;  // after AUTH success
  std::optional<HostPort> remote;
  std::optional<HostPort> local;
};

// timeout: the idle timeout expired (the client got 421 4.4.2).
enum class ResetReason { rset, ehlo, new_mail, quit, disconnect, error, timeout };
const char* reset_reason_name(ResetReason r);  // "rset", ... (logs, tests)

class ServerHandler {
 public:
  virtual ~ServerHandler() = default;
  // MAIL FROM (address "" = null reverse-path; params as given, keyword
  // upper-cased). Only a 2xx opens the transaction.
  virtual Task<Response> on_mail(const SessionInfo& s, const Mailbox& from) = 0;
  // MAIL FROM when the client pipelined RCPT TO commands right behind it:
  // `next_rcpts` are those recipients, in order, each already through the
  // engine's own checks, so each reaches on_rcpt next if this MAIL opens the
  // transaction (a handler may ask its upstream for them now, together with
  // MAIL, and answer those on_rcpt calls from that). Default: on_mail.
  virtual Task<Response> on_mail_pipelined(const SessionInfo& s, const Mailbox& from,
                                           const std::vector<Mailbox>& next_rcpts) {
    (void)next_rcpts;
    co_return co_await on_mail(s, from);
  }
  // Each RCPT TO, in order; only 2xx counts as accepted.
  virtual Task<Response> on_rcpt(const SessionInfo& s, const Mailbox& to) = 0;
  // The message, dot-unstuffed (DATA) or raw (BDAT), in pieces of at most
  // chunk_size, `last` on the final one (may be empty). A response returned
  // before `last` is an early failure: the engine reads and discards the
  // rest of the data, then replies with it. On `last` the handler must
  // return the data response (nullopt there is answered 451 4.3.0).
  virtual Task<std::optional<Response>> on_data(std::string_view piece, bool last) = 0;
  // The open transaction (if any) is abandoned: RSET, EHLO/HELO, QUIT,
  // disconnect, timeout, protocol error. Not called when no MAIL was accepted.
  virtual Task<void> on_reset(ResetReason why) = 0;
  // While a transaction is open and the client is idle (heartbeat_interval).
  virtual Task<void> on_heartbeat() = 0;
  // AUTH PLAIN / LOGIN credentials; true = 235.
  virtual bool authenticate(std::string_view user, std::string_view password) = 0;
};

// Runs until QUIT, disconnect, idle timeout or a fatal protocol error; never
// throws for protocol or I/O problems. Sends the 220 greeting first.
Task<void> run_server_session(ByteStream& stream, ServerHandler& handler,
                              const ServerOptions& options);

// auth_secrets file (gateway.md §3.9): JSON object user -> lowercase hex
// SHA-256 of the secret. Compare in constant time.
class AuthSecrets {
 public:
  static Result<AuthSecrets> load(const std::string& path);
  static Result<AuthSecrets> parse(std::string_view json_text);
  bool check(std::string_view user, std::string_view password) const;
  std::size_t size() const;

 private:
  std::vector<std::pair<std::string, std::string>> entries_;  // user, hex
};

}  // namespace koukan::smtp
