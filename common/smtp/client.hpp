#pragma once
// SMTP / LMTP client for the gateway's outbound side (spec/gateway.md §4.3,
// §4.5): one transaction per connection, driven step by step by the
// gateway's REST side as the router's transaction grows.
//
//   auto c = SmtpClient(std::move(stream), opts);
//   Response m = co_await c.mail(from);          // greeting, EHLO/LHLO (HELO
//                                                // fallback), STARTTLS, EHLO,
//                                                // param check, MAIL FROM
//   Response r = co_await c.rcpt(to);            // per recipient, in order
//   auto d = co_await c.data(piece, /*last=*/false);  // nullopt: more wanted
//   auto d = co_await c.data(rest, /*last=*/true);    // the data response(s)
//   co_await c.quit();
//
// The client never QUITs by itself: after a failed step or the data
// response, call quit() (docs/smtp_client.md).
//
// Every I/O or protocol problem becomes a response, never an exception:
// connection trouble is a 4xx ("connect error ...", "connection lost ...")
// so the router tries the next host / retries. Replies of several lines are
// joined with "\n" in Response::message (codes stripped).
//
// Streaming: data() takes pieces of any size; DATA dot-stuffing is done by a
// streaming encoder (a line start may fall at any piece boundary; bytes are
// never altered otherwise; CRLF is added before the final "." if the body
// does not end with one). BDAT when enabled and offered: one BDAT per piece
// (non-empty), "BDAT n LAST" on the last (an empty last piece sends
// "BDAT 0 LAST"). PIPELINING when offered: MAIL and the first RCPT may be
// sent together by the caller using mail_rcpt(). Memory: only the piece.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/async/task.hpp"
#include "common/json/transaction.hpp"
#include "common/smtp/stream.hpp"

namespace koukan::smtp {

struct ClientOptions {
  std::string ehlo_host = "localhost";  // EHLO/LHLO argument (config only)
  bool lmtp = false;                    // LHLO; one data response per accepted rcpt
  bool enable_bdat = false;             // use BDAT if the server offers CHUNKING
  bool starttls = true;                 // opportunistic STARTTLS if offered
  std::chrono::milliseconds timeout{300'000};  // per read/write
};

// mail_rcpt(): the mail response and one response per recipient, in order.
struct MailRcptResult {
  Response mail;
  std::vector<Response> rcpt;
};

class SmtpClient {
 public:
  SmtpClient(std::unique_ptr<ByteStream> stream, ClientOptions opts);
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Session setup (first call only) + MAIL FROM:<addr> params. The
  // null reverse-path is mailbox "". ESMTP params are checked against the
  // server's EHLO (gateway.md §4.3 step 6, with BODY=7BIT and SIZE 0 fixed):
  // an unsupported one gives a 5xx without sending MAIL.
  Task<Response> mail(const Mailbox& from);
  Task<Response> rcpt(const Mailbox& to);
  // mail() and rcpt() for each of `to`, in one round trip when the server
  // offers PIPELINING (RFC 2920), else one after the other. A recipient
  // whose parameter check fails gets that reply and is not sent; if MAIL
  // fails every recipient gets "503 5.5.1 failed precondition: MAIL".
  Task<MailRcptResult> mail_rcpt(const Mailbox& from, const std::vector<Mailbox>& to);
  // One piece of the body. Returns nullopt until `last` (unless the server
  // already failed, e.g. a BDAT chunk rejected: then that response).
  // SMTP: one response. LMTP: one per recipient accepted by rcpt(), in order.
  Task<std::optional<std::vector<Response>>> data(std::string_view piece, bool last);
  // QUIT (errors ignored) and close. Safe to call at any time, twice.
  Task<void> quit();
  // Connection reuse: after a finished transaction (the data response, or
  // before any MAIL), RSET; true (250) = ready for the next mail() on the
  // same session, without greeting/EHLO/STARTTLS again. False: quit() it.
  Task<bool> reset();
  bool reusable() const;
  // The connection failed (I/O error, EOF, timeout), not closed by quit():
  // on a reused session, the caller may retry on a fresh connection.
  bool connection_lost() const;

  // After mail(): what the server offered (tests, logs).
  bool server_offers(std::string_view extension) const;
  bool tls() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Connects to host:port (an IP literal; resolving names is the router's job)
// within `timeout`. Client TLS for STARTTLS: opportunistic, unverified, as
// the original (gateway.md §4.3 step 5) unless verify is set.
struct ConnectOptions {
  std::chrono::milliseconds timeout{30'000};
  bool verify_tls = false;  // with it, the certificate must match the IP (SAN)
};
// Keep it trivially destructible: callers use the `= {}` default inside
// co_await, a braced temporary that GCC 12.2 double-frees otherwise. (For
// SNI / name checks build the stream with make_tcp_client_stream.)
static_assert(std::is_trivially_destructible_v<ConnectOptions>);
Task<Result<std::unique_ptr<ByteStream>>> connect_tcp(asio::any_io_executor ex,
                                                      const HostPort& to,
                                                      ConnectOptions opts = {});

}  // namespace koukan::smtp
