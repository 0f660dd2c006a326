// SMTP / LMTP client (client.hpp; spec/gateway.md §4.3, §4.5 with the
// fixes of §10; operator notes in docs/smtp_client.md).
//
// Error model: the connection is either usable or `dead_`, a 4xx response
// that every later step returns. Nothing throws; I/O errors, timeouts and
// unparseable replies all end up as responses.
#include "common/smtp/client.hpp"

#include <algorithm>
#include <array>
#include <atomic>

#include "common/smtp/client_codec.hpp"

namespace koukan::smtp {

using namespace client_detail;

namespace {
constexpr std::size_t kMaxReplyLine = 512;   // text of one reply line, without CRLF
constexpr std::size_t kMaxReplyLines = 100;  // lines of one reply
constexpr std::chrono::milliseconds kQuitTimeout{10'000};
// A last DATA piece up to this size is sent together with the final dot.
constexpr std::size_t kJoinTerminatorMax = 64 * 1024;
std::atomic<std::uint64_t> g_client_ids{0};

std::string join(const std::vector<std::string>& lines) {
  std::string r;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (i) r += '\n';
    r += lines[i];
  }
  return r;
}
}  // namespace

struct SmtpClient::Impl {
  Impl(std::unique_ptr<ByteStream> st, ClientOptions op)
      : s(std::move(st)),
        o(std::move(op)),
        log("smtpc=" + std::to_string(++g_client_ids)) {
    if (s) s->set_timeout(o.timeout);
    else dead = Response(451, "4.4.2 no connection (SmtpClient)");
  }

  std::unique_ptr<ByteStream> s;
  ClientOptions o;
  log::Logger log;

  std::string in;                  // received, not yet parsed
  std::array<char, 4096> rbuf{};
  std::vector<std::string> lines;  // texts of the last reply
  std::optional<Response> dead;    // connection unusable: this is the answer

  bool started = false;
  std::optional<Response> setup_failure;
  Extensions ext;
  bool mail_sent = false, mail_ok = false;
  std::size_t accepted = 0;  // recipients with a 2xx
  bool data_started = false, bdat = false;
  std::optional<std::vector<Response>> data_result;
  DotStuffer stuffer;
  std::string scratch;
  bool quit_done = false;

  bool will_bdat() const { return o.enable_bdat && ext.has("CHUNKING"); }

  // ---- connection state ----------------------------------------------------

  void lost(const Error& e, bool eof = false) {
    if (dead) return;
    if (e.code == Errc::timeout) dead = Response(451, "4.4.2 timeout waiting for the server (SmtpClient)");
    else dead = Response(451, "4.4.2 connection lost (SmtpClient)");
    log.info("connection failed: {}", eof ? "closed by the server" : e.message);
    s->close();
  }
  void protocol_error(const std::string& why) {
    if (dead) return;
    dead = Response(451, "4.5.0 invalid reply from the server (SmtpClient): " + why);
    log.info("protocol error: {}", why);
    s->close();
  }

  Task<bool> send(std::string_view d) {
    if (dead) co_return false;
    auto r = co_await s->write_all(d);
    if (!r.ok()) {
      lost(r.error());
      co_return false;
    }
    co_return true;
  }

  Task<bool> send_cmd(const std::string& cmd) {
    log.debug(">> {}", std::string_view(cmd).substr(0, cmd.size() - 2));
    co_return co_await send(cmd);
  }

  // One line without its ending (CRLF or LF); nullopt: `dead` is set.
  Task<std::optional<std::string>> read_line() {
    for (;;) {
      auto nl = in.find('\n');
      if (nl != std::string::npos) {
        std::size_t len = nl > 0 && in[nl - 1] == '\r' ? nl - 1 : nl;
        if (len > kMaxReplyLine) break;
        std::string l = in.substr(0, len);
        in.erase(0, nl + 1);
        co_return l;
      }
      if (in.size() > kMaxReplyLine + 1) break;
      std::span<char> b(rbuf);
      auto r = co_await s->read_some(b);
      if (!r.ok()) {
        lost(r.error());
        co_return std::nullopt;
      }
      if (*r == 0) {
        Error eof(Errc::unavailable, "EOF");
        lost(eof, true);
        co_return std::nullopt;
      }
      in.append(rbuf.data(), *r);
    }
    protocol_error("reply line longer than 512 bytes");
    co_return std::nullopt;
  }

  // A whole (multi-line) reply: codes stripped, texts joined with "\n".
  Task<Response> reply() {
    lines.clear();
    if (dead) co_return *dead;
    int code = 0;
    for (;;) {
      auto line = co_await read_line();
      if (!line) co_return *dead;
      auto p = parse_reply_line(*line);
      if (!p) {
        protocol_error("malformed reply line");
        co_return *dead;
      }
      if (lines.size() >= kMaxReplyLines) {
        protocol_error("reply of more than 100 lines");
        co_return *dead;
      }
      code = p->code;  // RFC 5321 4.2.1: all lines carry the same code
      lines.push_back(sanitize_utf8(p->text));
      if (p->last) break;
    }
    std::string msg = join(lines);
    log.debug("<< {} {}", code, lines.empty() ? std::string() : lines.front());
    co_return Response(code, std::move(msg));
  }

  // ---- session setup ---------------------------------------------------------

  Task<Response> ehlo() {
    ext = Extensions();
    std::string cmd = (o.lmtp ? "LHLO " : "EHLO ") + o.ehlo_host + "\r\n";
    if (!co_await send_cmd(cmd)) co_return *dead;
    Response r = co_await reply();
    if (dead) co_return *dead;
    if (r.ok()) {
      ext = Extensions::parse(lines);
      co_return r;
    }
    if (o.lmtp || !r.perm()) co_return r;
    // RFC 5321 3.2: a server that refuses EHLO may still speak HELO.
    std::string helo = "HELO " + o.ehlo_host + "\r\n";
    if (!co_await send_cmd(helo)) co_return *dead;
    Response h = co_await reply();
    co_return h;
  }

  // Greeting, EHLO (HELO), STARTTLS + EHLO. nullopt: ready for MAIL.
  Task<std::optional<Response>> setup() {
    Response g = co_await reply();
    if (dead) co_return *dead;
    if (!g.ok()) co_return g;
    Response e = co_await ehlo();
    if (!e.ok()) co_return e;
    if (o.starttls && ext.has("STARTTLS") && !s->is_tls() && s->tls_available()) {
      std::string cmd = "STARTTLS\r\n";
      if (!co_await send_cmd(cmd)) co_return *dead;
      Response t = co_await reply();
      if (dead) co_return *dead;
      if (t.code != 220) co_return t;
      if (!in.empty()) {  // RFC 3207 5: nothing may follow before TLS
        protocol_error("data after the STARTTLS reply");
        co_return *dead;
      }
      auto h = co_await s->start_tls();
      if (!h.ok()) {
        dead = h.error().code == Errc::timeout
                   ? Response(451, "4.4.2 timeout in TLS handshake (SmtpClient)")
                   : Response(451, "4.7.5 TLS handshake failed (SmtpClient)");
        log.info("TLS handshake failed: {}", h.error().message);
        s->close();
        co_return *dead;
      }
      Response e2 = co_await ehlo();
      if (!e2.ok()) co_return e2;
    }
    co_return std::nullopt;
  }

  Task<std::optional<Response>> ensure_setup() {
    if (!started) {
      started = true;
      setup_failure = co_await setup();
    }
    co_return setup_failure;
  }

  // ---- envelope ----------------------------------------------------------------

  // The command for MAIL/RCPT, or the response that replaces sending it.
  struct Prepared {
    std::optional<Response> error;
    std::string cmd;
  };
  Prepared prepare(const Mailbox& m, bool is_mail) {
    Prepared p;
    if (auto bad = check_address(m.mailbox)) {
      p.error = *bad;
      return p;
    }
    ParamCheck pc = check_params(m.esmtp, ext, will_bdat(), is_mail ? "MAIL" : "RCPT");
    if (pc.error) {
      p.error = *pc.error;
      return p;
    }
    p.cmd = (is_mail ? "MAIL FROM:<" : "RCPT TO:<") + m.mailbox + ">" + pc.params + "\r\n";
    return p;
  }

  std::optional<Response> mail_precheck() {
    if (mail_sent) return Response(503, "5.5.1 MAIL already sent on this connection (SmtpClient)");
    return std::nullopt;
  }
  std::optional<Response> rcpt_precheck() {
    if (!mail_ok) return Response(503, "5.5.1 failed precondition: MAIL (SmtpClient)");
    if (dead) return *dead;
    if (data_started) return Response(503, "5.5.1 RCPT after DATA (SmtpClient)");
    return std::nullopt;
  }

  Task<Response> mail(const Mailbox& from) {
    if (auto e = mail_precheck()) co_return *e;
    mail_sent = true;
    if (auto f = co_await ensure_setup()) co_return *f;
    Prepared p = prepare(from, true);
    if (p.error) co_return *p.error;
    if (!co_await send_cmd(p.cmd)) co_return *dead;
    Response r = co_await reply();
    mail_ok = r.ok();
    co_return r;
  }

  Task<Response> rcpt(const Mailbox& to) {
    if (auto e = rcpt_precheck()) co_return *e;
    Prepared p = prepare(to, false);
    if (p.error) co_return *p.error;
    if (!co_await send_cmd(p.cmd)) co_return *dead;
    Response r = co_await reply();
    if (r.ok()) ++accepted;
    co_return r;
  }

  Task<MailRcptResult> mail_rcpt(const Mailbox& from, const std::vector<Mailbox>& to) {
    MailRcptResult res;
    if (auto e = mail_precheck()) {
      res.mail = *e;
      res.rcpt.assign(to.size(), *e);
      co_return res;
    }
    auto f = co_await ensure_setup();
    if (f || !ext.has("PIPELINING")) {
      res.mail = co_await mail(from);
      for (const Mailbox& m : to) {
        Response r = co_await rcpt(m);
        res.rcpt.push_back(std::move(r));
      }
      co_return res;
    }
    // RFC 2920: MAIL and every RCPT in one write, then the replies in order.
    mail_sent = true;
    Prepared pm = prepare(from, true);
    if (pm.error) {
      res.mail = *pm.error;
      res.rcpt.assign(to.size(), Response(503, "5.5.1 failed precondition: MAIL (SmtpClient)"));
      co_return res;
    }
    std::string batch = pm.cmd;
    std::vector<Prepared> pr;
    for (const Mailbox& m : to) {
      pr.push_back(prepare(m, false));
      if (!pr.back().error) batch += pr.back().cmd;
    }
    log.debug(">> MAIL + {} RCPT (pipelined)", to.size());
    if (!co_await send(batch)) {
      res.mail = *dead;
      res.rcpt.assign(to.size(), *dead);
      co_return res;
    }
    res.mail = co_await reply();
    mail_ok = res.mail.ok();
    for (Prepared& p : pr) {
      if (p.error) {
        res.rcpt.push_back(*p.error);
        continue;
      }
      Response r = co_await reply();
      if (!mail_ok && !dead) r = Response(503, "5.5.1 failed precondition: MAIL (SmtpClient)");
      if (mail_ok && r.ok()) ++accepted;
      res.rcpt.push_back(std::move(r));
    }
    co_return res;
  }

  // ---- body --------------------------------------------------------------------

  std::vector<Response> finish(const Response& r) {
    std::size_t n = o.lmtp ? std::max<std::size_t>(accepted, 1) : 1;
    data_result = std::vector<Response>(n, r);
    return *data_result;
  }

  // The final reply (SMTP) or one per accepted recipient (LMTP, RFC 2033 4.2).
  Task<std::vector<Response>> final_replies() {
    std::size_t n = o.lmtp ? accepted : 1;
    std::vector<Response> out;
    for (std::size_t i = 0; i < n; ++i) {
      Response r = co_await reply();
      out.push_back(std::move(r));
    }
    data_result = out;
    co_return out;
  }

  Task<std::optional<std::vector<Response>>> data(std::string_view piece, bool last) {
    if (data_result) co_return data_result;
    if (!mail_ok) co_return finish(Response(503, "5.5.1 failed precondition: MAIL (SmtpClient)"));
    if (dead) co_return finish(*dead);
    if (accepted == 0) co_return finish(Response(554, "5.5.1 no valid recipients (SmtpClient)"));
    if (!data_started) {
      data_started = true;
      bdat = will_bdat();
      if (!bdat) {
        std::string cmd = "DATA\r\n";
        if (!co_await send_cmd(cmd)) co_return finish(*dead);
        Response r = co_await reply();
        if (dead) co_return finish(*dead);
        if (r.code != 354) co_return finish(r);
      }
    }
    if (bdat) {
      if (piece.empty() && !last) co_return std::nullopt;
      std::string cmd = "BDAT " + std::to_string(piece.size()) + (last ? " LAST" : "") + "\r\n";
      if (!co_await send_cmd(cmd)) co_return finish(*dead);
      if (!piece.empty()) {
        if (!co_await send(piece)) co_return finish(*dead);
      }
      if (!last) {
        Response r = co_await reply();
        if (!r.ok()) co_return finish(r);
        co_return std::nullopt;
      }
      std::vector<Response> f = co_await final_replies();
      co_return f;
    }
    bool end_sent = false;
    if (!piece.empty()) {
      bool changed = stuffer.stuff(piece, scratch);
      std::string_view out = changed ? std::string_view(scratch) : piece;
      if (last && out.size() <= kJoinTerminatorMax) {
        // A small last piece goes out with the terminator in one write.
        if (!changed) scratch.assign(out);
        scratch += stuffer.terminator();
        end_sent = true;
        if (!co_await send(scratch)) co_return finish(*dead);
      } else if (!co_await send(out)) {
        co_return finish(*dead);
      }
    }
    if (!last) co_return std::nullopt;
    if (!end_sent) {
      std::string_view end = stuffer.terminator();
      if (!co_await send(end)) co_return finish(*dead);
    }
    log.debug(">> <{} body bytes> .", stuffer.bytes_in());
    std::string().swap(scratch);
    std::vector<Response> f = co_await final_replies();
    co_return f;
  }

  bool reusable() const {
    return s && !dead && started && !setup_failure && !quit_done && (!data_started || data_result);
  }

  // RSET after a finished transaction; on 250 the session is ready for the
  // next MAIL (greeting, EHLO and STARTTLS are not repeated).
  Task<bool> reset() {
    if (!reusable()) co_return false;
    std::string cmd = "RSET\r\n";
    if (!co_await send_cmd(cmd)) co_return false;
    Response r = co_await reply();
    if (dead || !r.ok()) co_return false;
    mail_sent = false;
    mail_ok = false;
    accepted = 0;
    data_started = false;
    bdat = false;
    data_result.reset();
    stuffer = DotStuffer();
    scratch.clear();
    co_return true;
  }

  Task<void> quit() {
    if (quit_done) co_return;
    quit_done = true;
    // QUIT only between commands: in the middle of DATA it would be body
    // text, so just drop the connection (the server aborts the message).
    bool in_data = data_started && !bdat && !data_result;
    if (s && !dead && started && !in_data) {
      s->set_timeout(std::min(o.timeout, kQuitTimeout));
      std::string cmd = "QUIT\r\n";
      if (co_await send_cmd(cmd)) {
        Response r = co_await reply();
        (void)r;
      }
    }
    if (s) s->close();
    if (!dead) dead = Response(451, "4.4.2 connection closed by the client (SmtpClient)");
  }
};

SmtpClient::SmtpClient(std::unique_ptr<ByteStream> stream, ClientOptions opts)
    : impl_(std::make_unique<Impl>(std::move(stream), std::move(opts))) {}

SmtpClient::~SmtpClient() {
  if (impl_ && impl_->s) impl_->s->close();
}

Task<Response> SmtpClient::mail(const Mailbox& from) { return impl_->mail(from); }
Task<Response> SmtpClient::rcpt(const Mailbox& to) { return impl_->rcpt(to); }
Task<MailRcptResult> SmtpClient::mail_rcpt(const Mailbox& from, const std::vector<Mailbox>& to) {
  return impl_->mail_rcpt(from, to);
}
Task<std::optional<std::vector<Response>>> SmtpClient::data(std::string_view piece, bool last) {
  return impl_->data(piece, last);
}
Task<void> SmtpClient::quit() { return impl_->quit(); }
Task<bool> SmtpClient::reset() { return impl_->reset(); }
bool SmtpClient::reusable() const { return impl_->reusable(); }
bool SmtpClient::connection_lost() const { return impl_->dead.has_value() && !impl_->quit_done; }

bool SmtpClient::server_offers(std::string_view extension) const { return impl_->ext.has(extension); }
bool SmtpClient::tls() const { return impl_->s && impl_->s->is_tls(); }

}  // namespace koukan::smtp
