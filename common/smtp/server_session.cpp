// SMTP server session engine (server_session.hpp). The protocol text and
// every reply are documented in docs/smtp_server.md; the pure helpers
// (parsing, reply formatting, DATA decoding, base64) are in
// server_protocol.cpp, AuthSecrets in server_auth.cpp.
#include "common/smtp/server_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>
#include <variant>
#include <vector>

#include "common/base/log.hpp"
#include "common/smtp/server_protocol.hpp"

namespace koukan::smtp {

const char* reset_reason_name(ResetReason r) {
  switch (r) {
    case ResetReason::rset: return "rset";
    case ResetReason::ehlo: return "ehlo";
    case ResetReason::new_mail: return "new_mail";
    case ResetReason::quit: return "quit";
    case ResetReason::disconnect: return "disconnect";
    case ResetReason::error: return "error";
    case ResetReason::timeout: return "timeout";
  }
  return "error";
}

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
constexpr auto kTok = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadSize = 64 * 1024;
// RFC 3461 §4/§5: ENVID/RET and NOTIFY/ORCPT lengthen MAIL/RCPT lines.
constexpr std::size_t kDsnExtra = 512;

std::atomic<unsigned long> g_session_ids{0};

bool valid_reply_code(int c) { return (c >= 200 && c <= 299) || (c >= 400 && c <= 599); }

// Heartbeats while the engine waits for the client with a transaction open
// (one per read; the read itself is never cancelled).
struct Heartbeat {
  explicit Heartbeat(const asio::any_io_executor& ex) : timer(ex), done(ex) {}
  asio::steady_timer timer;
  asio::steady_timer done;  // cancelled when the loop has ended
  Clock::time_point last;   // last handler call
  bool stop = false;
  bool running = true;
};

Task<void> heartbeat_loop(std::shared_ptr<Heartbeat> hb, ServerHandler* handler, milliseconds interval,
                          std::string ctx) {
  while (!hb->stop) {
    hb->timer.expires_at(hb->last + interval);
    co_await hb->timer.async_wait(kTok);
    if (hb->stop) break;
    if (Clock::now() < hb->last + interval) continue;
    try {
      co_await handler->on_heartbeat();
    } catch (const std::exception& e) {
      log::at(log::Level::warn, ctx, "on_heartbeat failed: {}", e.what());
    }
    hb->last = Clock::now();
  }
  hb->running = false;
  hb->done.cancel();
}

enum class Greeted { none, helo, ehlo };
enum class End { none, eof, io_error, timeout, quit, too_many_unknown, tls_failed };
enum class LineStatus { ok, too_long, end };

// Why a DATA / BDAT body is rejected by the engine itself.
enum class BodyFail { none, too_big, bare_lf_cr, long_line };

class Session {
 public:
  Session(ByteStream& s, ServerHandler& h, const ServerOptions& o)
      : stream_(s),
        handler_(h),
        opts_(o),
        chunk_(std::max<std::size_t>(o.chunk_size, 1)),
        lg_("smtp=" + std::to_string(++g_session_ids)) {}
  ~Session() {
    if (hb_) {
      hb_->stop = true;
      hb_->timer.cancel();
    }
  }
  Task<void> run();
  Task<void> abort_after_exception();

 private:
  // ---- output
  void reply(int code, std::string_view text) { out_ += server::format_reply(code, text); }
  void reply_response(const Response& r, const char* what);
  Task<bool> flush();
  // ---- input
  std::size_t available() const { return in_.size() - pos_; }
  Task<bool> read_more();
  Task<void> stop_heartbeat();
  Task<LineStatus> read_line(std::string& line, bool command);
  // ---- handler calls (an exception becomes 451 4.3.0)
  Task<Response> call_mail(const Mailbox& m, const std::vector<Mailbox>& next_rcpts);
  Task<Response> call_rcpt(const Mailbox& m);
  Task<std::optional<Response>> call_data(bool last);  // sends piece_
  Task<void> reset_tx(ResetReason why);
  void end_tx();
  // ---- commands
  Task<void> dispatch(const std::string& line);
  Task<void> cmd_hello(std::string_view arg, bool esmtp);
  std::optional<Response> path_error(const server::PathArg& p, const char* syntax_reply) const;
  bool path_ok(const server::PathArg& p, const char* syntax_reply);
  std::variant<Mailbox, Response> check_rcpt(std::string_view arg) const;
  std::vector<Mailbox> pipelined_rcpts() const;
  Task<void> cmd_mail(std::string_view arg);
  Task<void> cmd_rcpt(std::string_view arg);
  Task<void> cmd_data(std::string_view arg);
  Task<void> receive_data();
  Task<void> cmd_bdat(std::string_view arg);
  Task<bool> consume_raw(std::uint64_t n, bool feed, std::optional<Response>* early);
  Task<void> cmd_auth(std::string_view arg);
  Task<std::optional<std::string>> auth_read(std::string_view challenge);
  Task<void> cmd_starttls(std::string_view arg);
  Task<void> finish();
  std::string ehlo_text() const;
  std::string help_text() const;

  ByteStream& stream_;
  ServerHandler& handler_;
  const ServerOptions& opts_;
  std::size_t chunk_;
  log::Logger lg_;

  SessionInfo info_;
  Greeted greeted_ = Greeted::none;
  End end_ = End::none;
  std::size_t unknown_commands_ = 0;

  // The transaction: open once a MAIL got 2xx.
  bool tx_open_ = false;
  std::size_t rcpts_ = 0;        // accepted recipients
  bool bdat_ = false;            // BDAT chunks received in this transaction
  std::uint64_t bdat_size_ = 0;  // octets so far
  std::string piece_;            // body bytes not yet given to on_data

  std::string in_;
  std::unique_ptr<char[]> rbuf_;  // kReadSize, uninitialized
  std::size_t pos_ = 0;
  std::string out_;
  Clock::time_point last_call_ = Clock::now();
  std::shared_ptr<Heartbeat> hb_;
};

// ---- output ---------------------------------------------------------------------

void Session::reply_response(const Response& r, const char* what) {
  if (!valid_reply_code(r.code)) {
    lg_.warn("invalid {} response code {} from the handler", what, r.code);
    reply(451, "4.3.0 Internal error: invalid upstream response");
    return;
  }
  reply(r.code, r.message);
}

Task<bool> Session::flush() {
  if (out_.empty()) co_return true;
  stream_.set_timeout(opts_.idle_timeout);
  Result<void> r = co_await stream_.write_all(out_);
  out_.clear();
  if (!r) {
    lg_.info("write failed: {}", r.error().message);
    end_ = End::io_error;
    co_return false;
  }
  co_return true;
}

// ---- input ----------------------------------------------------------------------

// Flushes pending replies (RFC 2920: when the input runs dry), then reads
// once with the idle timeout. False: EOF, error or timeout (end_ set).
Task<bool> Session::read_more() {
  if (!co_await flush()) co_return false;
  if (pos_ == in_.size()) {
    in_.clear();
    pos_ = 0;
  } else if (pos_ > 0) {
    in_.erase(0, pos_);
    pos_ = 0;
  }
  if (tx_open_ && opts_.heartbeat_interval.count() > 0) {
    auto ex = co_await asio::this_coro::executor;
    hb_ = std::make_shared<Heartbeat>(ex);
    hb_->last = last_call_;
    Task<void> loop = heartbeat_loop(hb_, &handler_, opts_.heartbeat_interval, lg_.context());
    koukan::spawn(ex, std::move(loop), "smtp heartbeat");
  }
  // Read into a buffer of its own (allocated once, never zero-filled: a
  // resize of in_ by kReadSize would memset 64 KiB per command).
  if (!rbuf_) rbuf_.reset(new char[kReadSize]);
  std::span<char> buf(rbuf_.get(), kReadSize);
  stream_.set_timeout(opts_.idle_timeout);
  Result<std::size_t> r = co_await stream_.read_some(buf);
  if (hb_) co_await stop_heartbeat();
  if (!r) {
    if (r.error().code == Errc::timeout) {
      lg_.info("idle timeout");
      end_ = End::timeout;
    } else {
      lg_.info("read failed: {}", r.error().message);
      end_ = End::io_error;
    }
    co_return false;
  }
  in_.append(rbuf_.get(), *r);
  if (*r == 0) {
    end_ = End::eof;
    co_return false;
  }
  co_return true;
}

Task<void> Session::stop_heartbeat() {
  std::shared_ptr<Heartbeat> hb = hb_;
  hb->stop = true;
  hb->timer.cancel();
  while (hb->running) {
    hb->done.expires_after(std::chrono::hours(24));
    co_await hb->done.async_wait(kTok);
  }
  last_call_ = hb->last;
  hb_.reset();
}

// One line (LF-terminated; a CR before the LF is removed). Longer than the
// limit (incl. CRLF): the rest of the line is read and discarded.
Task<LineStatus> Session::read_line(std::string& line, bool command) {
  std::size_t scanned = 0;  // relative to pos_
  while (true) {
    std::size_t nl = in_.find('\n', pos_ + scanned);
    std::size_t limit = opts_.max_command_line;
    if (command) {
      std::string_view head(in_.data() + pos_, std::min<std::size_t>(available(), 5));
      if (server::istarts_with(head, "MAIL ") || server::istarts_with(head, "RCPT ")) limit += kDsnExtra;
    }
    if (nl != std::string::npos) {
      std::size_t len = nl + 1 - pos_;
      std::string_view v(in_.data() + pos_, nl - pos_);
      if (!v.empty() && v.back() == '\r') v.remove_suffix(1);
      if (len > limit) {
        pos_ = nl + 1;
        co_return LineStatus::too_long;
      }
      line.assign(v);
      pos_ = nl + 1;
      co_return LineStatus::ok;
    }
    if (available() > limit) {
      while (true) {
        pos_ = in_.size();
        if (!co_await read_more()) co_return LineStatus::end;
        std::size_t nl2 = in_.find('\n', pos_);
        if (nl2 != std::string::npos) {
          pos_ = nl2 + 1;
          co_return LineStatus::too_long;
        }
      }
    }
    scanned = available();
    if (!co_await read_more()) co_return LineStatus::end;
  }
}

// ---- handler calls ---------------------------------------------------------------

Task<Response> Session::call_mail(const Mailbox& m, const std::vector<Mailbox>& next_rcpts) {
  try {
    Response r;
    if (next_rcpts.empty()) r = co_await handler_.on_mail(info_, m);
    else r = co_await handler_.on_mail_pipelined(info_, m, next_rcpts);
    last_call_ = Clock::now();
    co_return r;
  } catch (const std::exception& e) {
    lg_.error("on_mail failed: {}", e.what());
  }
  last_call_ = Clock::now();
  co_return Response(451, "4.3.0 Internal error");
}

Task<Response> Session::call_rcpt(const Mailbox& m) {
  try {
    Response r = co_await handler_.on_rcpt(info_, m);
    last_call_ = Clock::now();
    co_return r;
  } catch (const std::exception& e) {
    lg_.error("on_rcpt failed: {}", e.what());
  }
  last_call_ = Clock::now();
  co_return Response(451, "4.3.0 Internal error");
}

Task<std::optional<Response>> Session::call_data(bool last) {
  std::string_view piece(piece_);
  std::optional<Response> r;
  try {
    r = co_await handler_.on_data(piece, last);
  } catch (const std::exception& e) {
    lg_.error("on_data failed: {}", e.what());
    r = Response(451, "4.3.0 Internal error");
  }
  piece_.clear();
  last_call_ = Clock::now();
  co_return r;
}

Task<void> Session::reset_tx(ResetReason why) {
  if (!tx_open_) co_return;
  end_tx();
  lg_.debug("transaction reset: {}", reset_reason_name(why));
  try {
    co_await handler_.on_reset(why);
  } catch (const std::exception& e) {
    lg_.error("on_reset failed: {}", e.what());
  }
  last_call_ = Clock::now();
}

void Session::end_tx() {
  tx_open_ = false;
  rcpts_ = 0;
  bdat_ = false;
  bdat_size_ = 0;
  piece_.clear();
}

// ---- the session -----------------------------------------------------------------

Task<void> Session::run() {
  info_.remote = stream_.remote_endpoint();
  info_.local = stream_.local_endpoint();
  info_.tls = stream_.is_tls();
  if (info_.remote)
    lg_.info("connection from {}:{}{}", info_.remote->host, info_.remote->port, info_.tls ? " (TLS)" : "");
  reply(220, opts_.hostname + " ESMTP koukan");
  while (end_ == End::none) {
    std::string line;
    LineStatus st = co_await read_line(line, true);
    if (st == LineStatus::end) break;
    if (st == LineStatus::too_long) {
      reply(500, "5.5.2 Line too long");
      continue;
    }
    co_await dispatch(line);
  }
  co_await finish();
}

Task<void> Session::finish() {
  ResetReason why = ResetReason::disconnect;
  switch (end_) {
    case End::timeout:
      why = ResetReason::timeout;
      reply(421, "4.4.2 " + opts_.hostname + " Error: timeout exceeded");
      break;
    case End::quit: why = ResetReason::quit; break;
    case End::too_many_unknown:
    case End::tls_failed: why = ResetReason::error; break;
    case End::none:
    case End::eof:
    case End::io_error: why = ResetReason::disconnect; break;
  }
  if (!out_.empty() && end_ != End::io_error) {
    // Best effort (after a read timeout the stream may refuse).
    stream_.set_timeout(std::min(opts_.idle_timeout, milliseconds(10'000)));
    Result<void> w = co_await stream_.write_all(out_);
    out_.clear();
    if (!w) lg_.debug("final write failed: {}", w.error().message);
  }
  co_await reset_tx(why);
  stream_.close();
  lg_.info("session end ({})", reset_reason_name(why));
}

// After an unexpected exception (a bug, or the coroutine was cancelled).
Task<void> Session::abort_after_exception() {
  try {
    co_await reset_tx(ResetReason::error);
  } catch (const std::exception&) {
  }
  stream_.close();
}

Task<void> Session::dispatch(const std::string& line) {
  if (line.empty()) {
    reply(500, "5.5.2 Error: bad syntax");
    co_return;
  }
  server::CommandLine c = server::split_command(line);
  const std::string& v = c.verb;
  if (log::enabled(log::Level::debug))
    lg_.debug("C: {}", v == "AUTH" ? std::string("AUTH ...") : server::sanitize(line, 200));
  if (v == "EHLO" || v == "HELO") {
    co_await cmd_hello(c.arg, v == "EHLO");
  } else if (v == "MAIL") {
    co_await cmd_mail(c.arg);
  } else if (v == "RCPT") {
    co_await cmd_rcpt(c.arg);
  } else if (v == "DATA") {
    co_await cmd_data(c.arg);
  } else if (v == "BDAT" && opts_.enable_bdat) {
    co_await cmd_bdat(c.arg);
  } else if (v == "RSET") {
    if (!c.arg.empty()) {
      reply(501, "5.5.4 Syntax: RSET");
    } else {
      co_await reset_tx(ResetReason::rset);
      reply(250, "2.0.0 OK");
    }
  } else if (v == "NOOP") {
    reply(250, "2.0.0 OK");
  } else if (v == "QUIT") {
    if (!c.arg.empty()) {
      reply(501, "5.5.4 Syntax: QUIT");
    } else {
      reply(221, "2.0.0 Bye");
      end_ = End::quit;
    }
  } else if (v == "VRFY") {
    if (c.arg.empty()) reply(501, "5.5.4 Syntax: VRFY <address>");
    else reply(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery");
  } else if (v == "EXPN") {
    reply(502, "5.5.1 EXPN not implemented");
  } else if (v == "HELP") {
    reply(214, help_text());
  } else if (v == "STARTTLS") {
    co_await cmd_starttls(c.arg);
  } else if (v == "AUTH") {
    co_await cmd_auth(c.arg);
  } else {
    ++unknown_commands_;
    if (opts_.max_unknown_commands > 0 && unknown_commands_ >= opts_.max_unknown_commands) {
      reply(502, "5.5.1 Too many unrecognized commands, goodbye.");
      end_ = End::too_many_unknown;
    } else {
      reply(500, "5.5.1 Error: command \"" + server::sanitize(v, 32) + "\" not recognized");
    }
  }
}

std::string Session::ehlo_text() const {
  std::string t = opts_.hostname;
  t += "\nPIPELINING";
  t += "\nSIZE " + std::to_string(opts_.max_message_size);
  t += "\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES\nDSN";
  if (opts_.enable_bdat) t += "\nCHUNKING";
  if (stream_.tls_available() && !info_.tls) t += "\nSTARTTLS";
  if (info_.tls && opts_.auth_enabled) t += "\nAUTH LOGIN PLAIN";
  t += "\nHELP";
  return t;
}

std::string Session::help_text() const {
  std::string t = "2.0.0 Supported commands:";
  if (opts_.auth_enabled) t += " AUTH";
  if (opts_.enable_bdat) t += " BDAT";
  t += " DATA EHLO EXPN HELO HELP MAIL NOOP QUIT RCPT RSET";
  if (stream_.tls_available()) t += " STARTTLS";
  t += " VRFY";
  return t;
}

Task<void> Session::cmd_hello(std::string_view arg, bool esmtp) {
  if (arg.empty()) {
    reply(501, esmtp ? "5.5.4 Syntax: EHLO hostname" : "5.5.4 Syntax: HELO hostname");
    co_return;
  }
  co_await reset_tx(ResetReason::ehlo);
  greeted_ = esmtp ? Greeted::ehlo : Greeted::helo;
  info_.ehlo_host = std::string(arg);
  info_.esmtp = esmtp;
  if (esmtp) reply(250, ehlo_text());
  else reply(250, opts_.hostname);
}

namespace {

// SIZE=<digits>; nullopt = syntax error; values above 2^63 saturate.
std::optional<std::uint64_t> parse_number(std::string_view v) {
  if (v.empty() || v.size() > 40) return std::nullopt;
  std::uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return std::nullopt;
    if (n > (std::uint64_t{1} << 59)) n = std::uint64_t{1} << 63;
    else n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return n;
}

bool has_duplicates(const std::vector<EsmtpParam>& ps) {
  for (std::size_t i = 0; i < ps.size(); ++i)
    for (std::size_t j = i + 1; j < ps.size(); ++j)
      if (ps[i].keyword == ps[j].keyword) return true;
  return false;
}

bool valid_notify(std::string_view v) {
  std::string u = server::to_upper(v);
  if (u == "NEVER") return true;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = u.find(',', start);
    std::string_view part = std::string_view(u).substr(start, comma == std::string::npos ? u.npos : comma - start);
    if (part != "SUCCESS" && part != "FAILURE" && part != "DELAY") return false;
    if (comma == std::string::npos) return true;
    start = comma + 1;
  }
}

}  // namespace

// The checks MAIL and RCPT share; replies and returns false on a problem.
std::optional<Response> Session::path_error(const server::PathArg& p, const char* syntax_reply) const {
  // After HELO (not EHLO) parameters are a syntax error.
  bool params_given = p.status == server::PathStatus::bad_params || !p.params.empty();
  if (p.status == server::PathStatus::syntax || (!info_.esmtp && params_given))
    return Response(501, syntax_reply);
  if (p.status == server::PathStatus::bad_address) return Response(553, "5.1.3 Error: malformed address");
  if (p.status == server::PathStatus::bad_params || has_duplicates(p.params))
    return Response(501, "5.5.4 Syntax error in parameters");
  return std::nullopt;
}

bool Session::path_ok(const server::PathArg& p, const char* syntax_reply) {
  if (auto e = path_error(p, syntax_reply)) {
    reply(e->code, e->message);
    return false;
  }
  return true;
}

// RCPT TO's own checks (syntax, parameters): the recipient, or the reply.
std::variant<Mailbox, Response> Session::check_rcpt(std::string_view arg) const {
  server::PathArg p = server::parse_path_arg(arg, "TO:", false);
  if (auto e = path_error(p, "5.5.4 Syntax: RCPT TO:<address>")) return *e;
  for (const EsmtpParam& e : p.params) {
    if (e.keyword == "NOTIFY") {
      if (!e.value || !valid_notify(*e.value))
        return Response(501, "5.5.4 Error: NOTIFY can only be NEVER or a list of SUCCESS, FAILURE, DELAY");
    } else if (e.keyword == "ORCPT") {
      if (!e.value || e.value->find(';') == std::string::npos || e.value->front() == ';')
        return Response(501, "5.5.4 Syntax error in parameters");
    } else {
      return Response(555, "5.5.4 RCPT TO parameters not recognized or not implemented");
    }
  }
  Mailbox to;
  to.mailbox = std::move(p.address);
  to.esmtp = std::move(p.params);
  return to;
}

// The RCPT commands the client pipelined right behind a MAIL (complete lines
// already read), up to the first line that is anything else or that
// cmd_rcpt would refuse before asking the handler. Each of them reaches
// on_rcpt next, in order, if the MAIL opens the transaction.
std::vector<Mailbox> Session::pipelined_rcpts() const {
  std::vector<Mailbox> out;
  std::size_t at = pos_;
  const std::size_t limit = opts_.max_command_line + kDsnExtra;
  while (out.size() < opts_.max_recipients) {
    const std::size_t nl = in_.find('\n', at);
    if (nl == std::string::npos || nl + 1 - at > limit) break;
    std::string_view line(in_.data() + at, nl - at);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!server::istarts_with(line, "RCPT ")) break;
    server::CommandLine c = server::split_command(line);  // arg views `line` (in_)
    if (c.verb != "RCPT") break;
    auto r = check_rcpt(c.arg);
    auto* m = std::get_if<Mailbox>(&r);
    if (!m) break;
    out.push_back(std::move(*m));
    at = nl + 1;
  }
  return out;
}

Task<void> Session::cmd_mail(std::string_view arg) {
  if (greeted_ == Greeted::none) {
    reply(503, "5.5.1 Error: send HELO/EHLO first");
    co_return;
  }
  server::PathArg p = server::parse_path_arg(arg, "FROM:", true);
  if (!path_ok(p, "5.5.4 Syntax: MAIL FROM:<address>")) co_return;
  for (const EsmtpParam& e : p.params) {
    const std::string& k = e.keyword;
    if (k == "SIZE") {
      auto n = e.value ? parse_number(*e.value) : std::nullopt;
      if (!n) {
        reply(501, "5.5.4 Syntax: SIZE=<number>");
        co_return;
      }
      if (*n > opts_.max_message_size) {
        reply(552, "5.3.4 Message size exceeds fixed maximum message size");
        co_return;
      }
    } else if (k == "BODY") {
      if (!e.value || !(server::iequals(*e.value, "7BIT") || server::iequals(*e.value, "8BITMIME"))) {
        reply(501, "5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME");
        co_return;
      }
    } else if (k == "SMTPUTF8") {
      if (e.value) {
        reply(501, "5.5.4 Syntax error in parameters");
        co_return;
      }
    } else if (k == "RET") {
      if (!e.value || !(server::iequals(*e.value, "FULL") || server::iequals(*e.value, "HDRS"))) {
        reply(501, "5.5.4 Error: RET can only be one of FULL, HDRS");
        co_return;
      }
    } else if (k == "ENVID" || k == "AUTH") {
      if (!e.value) {
        reply(501, "5.5.4 Syntax error in parameters");
        co_return;
      }
    } else {
      reply(555, "5.5.4 MAIL FROM parameters not recognized or not implemented");
      co_return;
    }
  }
  // RFC 5321 3.3: MAIL starts a new transaction, abandoning an open one.
  co_await reset_tx(ResetReason::new_mail);
  Mailbox from;
  from.mailbox = std::move(p.address);
  from.esmtp = std::move(p.params);
  std::vector<Mailbox> next_rcpts;
  if (info_.esmtp) next_rcpts = pipelined_rcpts();
  Response r = co_await call_mail(from, next_rcpts);
  reply_response(r, "MAIL");
  if (valid_reply_code(r.code) && r.ok()) {
    tx_open_ = true;
    rcpts_ = 0;
  }
}

Task<void> Session::cmd_rcpt(std::string_view arg) {
  if (greeted_ == Greeted::none) {
    reply(503, "5.5.1 Error: send HELO/EHLO first");
    co_return;
  }
  if (!tx_open_) {
    reply(503, "5.5.1 Error: need MAIL command");
    co_return;
  }
  if (bdat_) {
    reply(503, "5.5.1 Error: RCPT not allowed after BDAT");
    co_return;
  }
  auto checked = check_rcpt(arg);
  if (auto* e = std::get_if<Response>(&checked)) {
    reply(e->code, e->message);
    co_return;
  }
  if (rcpts_ >= opts_.max_recipients) {
    reply(452, "4.5.3 Too many recipients");
    co_return;
  }
  Mailbox to = std::move(std::get<Mailbox>(checked));
  Response r = co_await call_rcpt(to);
  reply_response(r, "RCPT");
  if (valid_reply_code(r.code) && r.ok()) ++rcpts_;
}

Task<void> Session::cmd_data(std::string_view arg) {
  if (greeted_ == Greeted::none) {
    reply(503, "5.5.1 Error: send HELO/EHLO first");
  } else if (!tx_open_) {
    reply(503, "5.5.1 Error: need MAIL command");
  } else if (bdat_) {
    reply(503, "5.5.1 Error: BDAT and DATA cannot be mixed in one transaction");
  } else if (rcpts_ == 0) {
    reply(503, "5.5.1 Error: need RCPT command");
  } else if (!arg.empty()) {
    reply(501, "5.5.4 Syntax: DATA");
  } else {
    reply(354, "End data with <CR><LF>.<CR><LF>");
    co_await receive_data();
  }
}

const char* body_fail_text(BodyFail f) {
  switch (f) {
    case BodyFail::too_big: return "5.3.4 Message size exceeds fixed maximum message size";
    case BodyFail::bare_lf_cr: return "5.6.0 Bare LF or CR in message data not allowed (CRLF line endings required)";
    case BodyFail::long_line: return "5.5.2 Line too long (see RFC 5321 4.5.3.1.6)";
    case BodyFail::none: break;
  }
  return "";
}
int body_fail_code(BodyFail f) {
  switch (f) {
    case BodyFail::too_big: return 552;
    case BodyFail::bare_lf_cr: return 550;
    case BodyFail::long_line: return 500;
    case BodyFail::none: break;
  }
  return 451;
}

// DATA body: decode to the end marker; stream pieces to the handler.
Task<void> Session::receive_data() {
  server::DotDecoder dec(opts_.max_text_line);
  std::optional<Response> early;
  BodyFail fail = BodyFail::none;
  piece_.clear();
  while (!dec.done()) {
    if (available() == 0 && !co_await read_more()) co_return;  // finish() resets
    bool feeding = !early && fail == BodyFail::none;
    std::string_view in(in_.data() + pos_, available());
    pos_ += dec.feed(in, feeding ? &piece_ : nullptr, chunk_);
    if (!feeding) continue;
    if (dec.size() > opts_.max_message_size) fail = BodyFail::too_big;
    else if (dec.bare_lf_or_cr()) fail = BodyFail::bare_lf_cr;
    else if (dec.line_too_long()) fail = BodyFail::long_line;
    if (fail != BodyFail::none) {
      lg_.info("DATA rejected: {}", body_fail_text(fail));
      piece_.clear();
      continue;
    }
    if (!dec.done() && piece_.size() >= chunk_) {
      early = co_await call_data(false);
      if (early) lg_.info("early data response {}", early->code);
    }
  }
  if (early) {
    end_tx();
    reply_response(*early, "DATA");
  } else if (fail != BodyFail::none) {
    co_await reset_tx(ResetReason::error);
    reply(body_fail_code(fail), body_fail_text(fail));
  } else {
    std::optional<Response> r = co_await call_data(true);
    end_tx();
    if (r) reply_response(*r, "DATA");
    else reply(451, "4.3.0 Internal error: no data response");
  }
}

// Reads n raw octets; with `feed` they go to the handler in pieces (an early
// response is stored in *early and the rest discarded). False: connection
// ended (end_ set).
Task<bool> Session::consume_raw(std::uint64_t n, bool feed, std::optional<Response>* early) {
  while (n > 0) {
    if (available() == 0 && !co_await read_more()) co_return false;
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, available()));
    bool feeding = feed && !*early;
    if (feeding) {
      k = std::min(k, chunk_ - piece_.size());
      piece_.append(in_.data() + pos_, k);
    }
    pos_ += k;
    n -= k;
    if (feeding && piece_.size() >= chunk_) {
      *early = co_await call_data(false);
      if (*early) lg_.info("early data response {}", (*early)->code);
    }
  }
  co_return true;
}

Task<void> Session::cmd_bdat(std::string_view arg) {
  // BDAT SP chunk-size [SP end-marker]
  std::optional<std::uint64_t> n;
  bool last = false;
  bool syntax_ok = false;
  {
    std::size_t sp = arg.find(' ');
    n = parse_number(arg.substr(0, sp));
    if (n) {
      std::string_view rest = sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      if (rest.empty()) syntax_ok = true;
      else if (server::iequals(rest, "LAST")) syntax_ok = last = true;
    }
  }
  if (!n) {
    // Unknown length: nothing can be skipped.
    reply(501, "5.5.4 Syntax: BDAT chunk-size [LAST]");
    co_return;
  }
  const char* pre = nullptr;
  int pre_code = 503;
  if (!syntax_ok) {
    pre = "5.5.4 Syntax: BDAT chunk-size [LAST]";
    pre_code = 501;
  } else if (greeted_ != Greeted::ehlo) {
    pre = "5.5.1 Error: send EHLO first";
  } else if (!tx_open_) {
    pre = "5.5.1 Error: need MAIL command";
  } else if (rcpts_ == 0) {
    pre = "5.5.1 Error: need RCPT command";
  }
  if (pre) {
    // Consume the chunk so that its octets are not taken for commands.
    std::optional<Response> none;
    if (!co_await consume_raw(*n, false, &none)) co_return;
    reply(pre_code, pre);
    co_return;
  }
  bdat_ = true;
  if (*n > opts_.max_message_size || bdat_size_ + *n > opts_.max_message_size) {
    std::optional<Response> none;
    if (!co_await consume_raw(*n, false, &none)) co_return;
    lg_.info("BDAT rejected: message too big");
    co_await reset_tx(ResetReason::error);
    reply(552, body_fail_text(BodyFail::too_big));
    co_return;
  }
  bdat_size_ += *n;
  std::optional<Response> early;
  if (!co_await consume_raw(*n, true, &early)) co_return;
  if (early) {
    end_tx();
    reply_response(*early, "BDAT");
    co_return;
  }
  if (!last) {
    reply(250, "2.0.0 " + std::to_string(*n) + " octets received");
    co_return;
  }
  std::optional<Response> r = co_await call_data(true);
  end_tx();
  if (r) reply_response(*r, "BDAT");
  else reply(451, "4.3.0 Internal error: no data response");
}

// ---- STARTTLS / AUTH ------------------------------------------------------------------

Task<void> Session::cmd_starttls(std::string_view arg) {
  if (!arg.empty()) {
    reply(501, "5.5.4 Syntax: STARTTLS");
    co_return;
  }
  if (info_.tls) {
    reply(503, "5.5.1 Error: TLS already active");
    co_return;
  }
  if (!stream_.tls_available()) {
    reply(454, "4.7.0 TLS not available");
    co_return;
  }
  if (tx_open_) {
    reply(503, "5.5.1 Error: MAIL transaction in progress");
    co_return;
  }
  reply(220, "2.0.0 Ready to start TLS");
  if (!co_await flush()) co_return;
  // Anything pipelined after STARTTLS was sent in clear text: drop it
  // (command injection, CVE-2011-0411).
  if (available() > 0) lg_.info("discarding {} octets received before the TLS handshake", available());
  in_.clear();
  pos_ = 0;
  stream_.set_timeout(opts_.idle_timeout);
  Result<void> r = co_await stream_.start_tls();
  if (!r) {
    lg_.info("TLS handshake failed: {}", r.error().message);
    end_ = End::tls_failed;
    co_return;
  }
  // RFC 3207 4.2: back to the initial state; the client must EHLO again.
  greeted_ = Greeted::none;
  info_.ehlo_host.clear();
  info_.esmtp = false;
  info_.tls = true;
  info_.auth_user.reset();
}

// One AUTH continuation: sends the challenge, reads the client's line.
// nullopt: the connection ended or the line was too long (reply queued).
Task<std::optional<std::string>> Session::auth_read(std::string_view challenge) {
  out_ += "334 ";
  out_ += challenge;
  out_ += "\r\n";
  std::string line;
  LineStatus st = co_await read_line(line, false);
  if (st == LineStatus::too_long) reply(500, "5.5.2 Line too long");
  if (st != LineStatus::ok) co_return std::nullopt;
  co_return line;
}

Task<void> Session::cmd_auth(std::string_view arg) {
  if (!opts_.auth_enabled) {
    reply(502, "5.5.1 Error: AUTH not supported");
    co_return;
  }
  if (greeted_ != Greeted::ehlo) {
    reply(503, "5.5.1 Error: send EHLO first");
    co_return;
  }
  if (!info_.tls) {
    reply(538, "5.7.11 Encryption required for requested authentication mechanism");
    co_return;
  }
  if (info_.auth_user) {
    reply(503, "5.5.1 Already authenticated");
    co_return;
  }
  if (tx_open_) {
    reply(503, "5.5.1 Error: MAIL transaction in progress");
    co_return;
  }
  std::size_t sp = arg.find(' ');
  std::string mech = server::to_upper(arg.substr(0, sp));
  std::optional<std::string> initial;
  if (sp != std::string_view::npos) {
    std::string_view rest = arg.substr(sp + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.find(' ') != std::string_view::npos) mech.clear();  // too many values
    initial = std::string(rest);
  }
  if (mech.empty()) {
    reply(501, "5.5.4 Syntax: AUTH mechanism [initial-response]");
    co_return;
  }
  if (mech != "PLAIN" && mech != "LOGIN") {
    reply(504, "5.5.4 Unrecognized authentication type");
    co_return;
  }
  auto decode = [](const std::string& s) -> std::optional<std::string> {
    if (s == "=") return std::string();
    return server::base64_decode(s);
  };
  std::string user, password;
  if (mech == "PLAIN") {
    std::optional<std::string> resp = initial;
    if (!resp) {
      resp = co_await auth_read("");
      if (!resp) co_return;
    }
    if (*resp == "*") {
      reply(501, "5.7.0 Auth aborted");
      co_return;
    }
    std::optional<std::string> d = decode(*resp);
    if (!d) {
      reply(501, "5.5.2 Can't decode base64");
      co_return;
    }
    std::size_t a = d->find('\0');
    std::size_t b = a == std::string::npos ? a : d->find('\0', a + 1);
    if (b == std::string::npos || d->find('\0', b + 1) != std::string::npos) {
      reply(501, "5.5.2 Can't split auth value");
      co_return;
    }
    user = d->substr(a + 1, b - a - 1);
    password = d->substr(b + 1);
  } else {
    std::optional<std::string> u = initial;
    if (!u) {
      u = co_await auth_read("VXNlciBOYW1lAA==");  // "User Name\0"
      if (!u) co_return;
    }
    if (*u == "*") {
      reply(501, "5.7.0 Auth aborted");
      co_return;
    }
    std::optional<std::string> du = decode(*u);
    if (!du) {
      reply(501, "5.5.2 Can't decode base64");
      co_return;
    }
    std::optional<std::string> pw = co_await auth_read("UGFzc3dvcmQA");  // "Password\0"
    if (!pw) co_return;
    if (*pw == "*") {
      reply(501, "5.7.0 Auth aborted");
      co_return;
    }
    std::optional<std::string> dp = decode(*pw);
    if (!dp) {
      reply(501, "5.5.2 Can't decode base64");
      co_return;
    }
    user = std::move(*du);
    password = std::move(*dp);
  }
  bool ok = false;
  try {
    ok = handler_.authenticate(user, password);
  } catch (const std::exception& e) {
    lg_.error("authenticate failed: {}", e.what());
  }
  if (ok) {
    lg_.info("authenticated as {}", server::sanitize(user));
    info_.auth_user = user;
    reply(235, "2.7.0 Authentication successful");
  } else {
    lg_.info("authentication failed for {}", server::sanitize(user));
    reply(535, "5.7.8 Authentication credentials invalid");
  }
}

}  // namespace

Task<void> run_server_session(ByteStream& stream, ServerHandler& handler, const ServerOptions& options) {
  Session s(stream, handler, options);
  bool failed = false;
  try {
    co_await s.run();
  } catch (const std::exception& e) {
    log::error("smtp session failed: {}", e.what());
    failed = true;
  }
  if (failed) co_await s.abort_after_exception();
}

}  // namespace koukan::smtp
