// Golden transcripts for the SMTP server session engine: the client's bytes
// (pipelined in one write, several writes, or one byte at a time) go over an
// in-memory pipe to run_server_session with a scripted fake handler; the
// test compares the exact bytes the server wrote, and what the handler saw.
#include "common/smtp/server_session.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <deque>
#include <initializer_list>
#include <random>

#include "common/smtp/server_protocol.hpp"

namespace koukan::smtp {
namespace {

using namespace std::chrono_literals;

[[maybe_unused]] const bool kQuietLogs = (log::set_level(log::Level::warn), true);

// ---- fake handler ------------------------------------------------------------------

std::string render(const Mailbox& m) {
  std::string s = m.mailbox;
  for (const auto& e : m.esmtp) s += " " + e.keyword + (e.value ? "=" + *e.value : "");
  return s;
}

class FakeHandler final : public ServerHandler {
 public:
  std::deque<Response> mail_script, rcpt_script;
  std::deque<std::optional<Response>> data_script;  // per on_data call
  bool throw_on_rcpt = false;
  std::vector<std::string> calls;  // "mail a@b SIZE=1", "data 5 last", "reset rset", ...
  std::string body;
  std::vector<std::size_t> pieces;
  std::vector<SessionInfo> infos;  // at each MAIL
  int heartbeats = 0;

  Task<Response> on_mail(const SessionInfo& s, const Mailbox& from) override {
    infos.push_back(s);
    calls.push_back("mail " + render(from));
    Response r = pop(mail_script, Response(250, "2.1.0 Sender OK"));
    co_return r;
  }
  std::vector<std::vector<std::string>> pipelined;  // next_rcpts of each on_mail_pipelined
  Task<Response> on_mail_pipelined(const SessionInfo& s, const Mailbox& from,
                                   const std::vector<Mailbox>& next_rcpts) override {
    std::vector<std::string> v;
    for (const auto& m : next_rcpts) v.push_back(render(m));
    pipelined.push_back(std::move(v));
    co_return co_await on_mail(s, from);
  }
  Task<Response> on_rcpt(const SessionInfo&, const Mailbox& to) override {
    calls.push_back("rcpt " + render(to));
    if (throw_on_rcpt) throw std::runtime_error("boom");
    Response r = pop(rcpt_script, Response(250, "2.1.5 Recipient OK"));
    co_return r;
  }
  Task<std::optional<Response>> on_data(std::string_view piece, bool last) override {
    calls.push_back("data " + std::to_string(piece.size()) + (last ? " last" : " more"));
    body.append(piece);
    pieces.push_back(piece.size());
    std::optional<Response> r;
    if (!data_script.empty()) {
      r = data_script.front();
      data_script.pop_front();
    } else if (last) {
      r = Response(250, "2.0.0 OK queued");
    }
    co_return r;
  }
  Task<void> on_reset(ResetReason why) override {
    calls.push_back(std::string("reset ") + reset_reason_name(why));
    co_return;
  }
  Task<void> on_heartbeat() override {
    ++heartbeats;
    co_return;
  }
  bool authenticate(std::string_view user, std::string_view password) override {
    calls.push_back("auth " + std::string(user) + " " + std::string(password));
    return user == "user" && password == "pass";
  }

 private:
  static Response pop(std::deque<Response>& q, Response def) {
    if (q.empty()) return def;
    Response r = q.front();
    q.pop_front();
    return r;
  }
};

// ---- harness -----------------------------------------------------------------------

// Records each write the server makes (to check reply batching).
class RecordingStream final : public ByteStream {
 public:
  explicit RecordingStream(ByteStream& s) : s_(s) {}
  Task<Result<std::size_t>> read_some(std::span<char> buf) override { return s_.read_some(buf); }
  Task<Result<void>> write_all(std::string_view d) override {
    writes.emplace_back(d);
    return s_.write_all(d);
  }
  Task<Result<void>> start_tls() override { return s_.start_tls(); }
  bool tls_available() const override { return s_.tls_available(); }
  bool is_tls() const override { return s_.is_tls(); }
  void set_timeout(std::chrono::milliseconds t) override { s_.set_timeout(t); }
  void close() override { s_.close(); }
  std::optional<HostPort> remote_endpoint() const override { return s_.remote_endpoint(); }
  std::optional<HostPort> local_endpoint() const override { return s_.local_endpoint(); }
  std::vector<std::string> writes;

 private:
  ByteStream& s_;
};

void rethrow(std::exception_ptr e) {
  if (e) std::rethrow_exception(e);
}

Task<void> serve(ByteStream& s, ServerHandler& h, const ServerOptions& o, bool* done) {
  co_await run_server_session(s, h, o);
  *done = true;
}

Task<void> read_all(ByteStream& s, std::string* out) {
  char buf[4096];
  while (true) {
    std::span<char> b(buf, sizeof buf);
    Result<std::size_t> r = co_await s.read_some(b);
    if (!r || *r == 0) co_return;
    out->append(buf, *r);
  }
}

Task<void> write_str(ByteStream& s, std::string data) {
  Result<void> r = co_await s.write_all(data);
  (void)r;
}

Task<void> do_start_tls(ByteStream& s) {
  Result<void> r = co_await s.start_tls();
  (void)r;
}

struct Harness {
  asio::io_context io;
  FakeHandler h;
  ServerOptions opts;
  bool tls_available = false;
  bool implicit_tls = false;
  std::vector<std::string> server_writes;
  bool done = false;

  Harness() { opts.hostname = "mx.example"; }

  void poll() {
    io.restart();
    io.poll();
  }

  // Writes each element of `writes` separately (letting the server run in
  // between), waits up to `wait` for the session to end by itself, then
  // closes the client side. Returns everything the server wrote.
  std::string run(const std::vector<std::string>& writes, std::chrono::milliseconds wait = 0ms) {
    auto [server_end, client_end] = make_pipe(io.get_executor(), tls_available || implicit_tls);
    if (implicit_tls) {
      asio::co_spawn(io, do_start_tls(*client_end), rethrow);
      poll();
    }
    RecordingStream rec(*server_end);
    std::string out;
    asio::co_spawn(io, serve(rec, h, opts, &done), rethrow);
    asio::co_spawn(io, read_all(*client_end, &out), rethrow);
    poll();
    for (const std::string& w : writes) {
      asio::co_spawn(io, write_str(*client_end, w), rethrow);
      poll();
    }
    auto until = std::chrono::steady_clock::now() + wait;
    while (!done && std::chrono::steady_clock::now() < until) {
      io.restart();
      io.run_one_for(2ms);
    }
    if (!done) client_end->close();
    until = std::chrono::steady_clock::now() + 5s;
    while (!done && std::chrono::steady_clock::now() < until) {
      io.restart();
      io.run_one_for(10ms);
    }
    poll();
    EXPECT_TRUE(done) << "session did not end";
    server_writes = rec.writes;
    return out;
  }
  std::string run(const std::string& input, std::chrono::milliseconds wait = 0ms) {
    return run(std::vector<std::string>{input}, wait);
  }
  // One byte per write.
  std::string run_bytewise(const std::string& input) {
    std::vector<std::string> w;
    for (char c : input) w.emplace_back(1, c);
    return run(w);
  }
};

// Joins reply lines with CRLF.
std::string T(std::initializer_list<std::string_view> lines) {
  std::string s;
  for (auto l : lines) {
    s += l;
    s += "\r\n";
  }
  return s;
}

const std::string kGreeting = "220 mx.example ESMTP koukan\r\n";
const std::string kEhlo = T({"250-mx.example", "250-PIPELINING", "250-SIZE 33554432", "250-8BITMIME",
                             "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250-DSN", "250-CHUNKING",
                             "250 HELP"});
const std::string kBye = "221 2.0.0 Bye\r\n";
const std::string kMailOk = "250 2.1.0 Sender OK\r\n";
const std::string kRcptOk = "250 2.1.5 Recipient OK\r\n";
const std::string k354 = "354 End data with <CR><LF>.<CR><LF>\r\n";
const std::string kQueued = "250 2.0.0 OK queued\r\n";
const std::string kEnvelope = "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n";
const std::string kEnvelopeReplies = kGreeting + kEhlo + kMailOk + kRcptOk;

using Calls = std::vector<std::string>;

// ---- greeting, EHLO, simple commands -------------------------------------------------

TEST(ServerSession, GreetingAndQuit) {
  Harness t;
  EXPECT_EQ(t.run("QUIT\r\n"), kGreeting + kBye);
  EXPECT_TRUE(t.h.calls.empty());
}

TEST(ServerSession, EhloHeloReplies) {
  Harness t;
  EXPECT_EQ(t.run("EHLO c.example\r\nHELO c.example\r\nEHLO\r\nHELO\r\nehlo  x  \r\nQUIT\r\n"),
            kGreeting + kEhlo + "250 mx.example\r\n" + "501 5.5.4 Syntax: EHLO hostname\r\n" +
                "501 5.5.4 Syntax: HELO hostname\r\n" + kEhlo + kBye);
}

TEST(ServerSession, EhloWithoutChunkingAndWithSmallSize) {
  Harness t;
  t.opts.enable_bdat = false;
  t.opts.max_message_size = 1000;
  EXPECT_EQ(t.run("EHLO c\r\nBDAT 1 LAST\r\nQUIT\r\n"),
            kGreeting +
                T({"250-mx.example", "250-PIPELINING", "250-SIZE 1000", "250-8BITMIME", "250-SMTPUTF8",
                   "250-ENHANCEDSTATUSCODES", "250-DSN", "250 HELP"}) +
                "500 5.5.1 Error: command \"BDAT\" not recognized\r\n" + kBye);
}

TEST(ServerSession, EveryCommandBeforeHelo) {
  Harness t;
  std::string in =
      "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nBDAT 3\r\nabcBDAT 2 LAST\r\nxy"
      "RSET\r\nNOOP\r\nVRFY x\r\nVRFY\r\nEXPN x\r\nHELP\r\nSTARTTLS\r\nAUTH PLAIN\r\n\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in),
            kGreeting + T({"503 5.5.1 Error: send HELO/EHLO first", "503 5.5.1 Error: send HELO/EHLO first",
                           "503 5.5.1 Error: send HELO/EHLO first", "503 5.5.1 Error: send EHLO first",
                           "503 5.5.1 Error: send EHLO first", "250 2.0.0 OK", "250 2.0.0 OK",
                           "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
                           "501 5.5.4 Syntax: VRFY <address>", "502 5.5.1 EXPN not implemented",
                           "214 2.0.0 Supported commands: BDAT DATA EHLO EXPN HELO HELP MAIL NOOP QUIT "
                           "RCPT RSET VRFY",
                           "454 4.7.0 TLS not available", "502 5.5.1 Error: AUTH not supported",
                           "500 5.5.2 Error: bad syntax"}) +
                kBye);
  EXPECT_TRUE(t.h.calls.empty());
}

TEST(ServerSession, EveryCommandAfterEhloWithoutMail) {
  Harness t;
  std::string in = "EHLO c\r\nRCPT TO:<c@d.example>\r\nDATA\r\nBDAT 3\r\nabcRSET\r\nNOOP\r\nQUIT x\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo +
                           T({"503 5.5.1 Error: need MAIL command", "503 5.5.1 Error: need MAIL command",
                              "503 5.5.1 Error: need MAIL command", "250 2.0.0 OK", "250 2.0.0 OK",
                              "501 5.5.4 Syntax: QUIT"}) +
                           kBye);
  EXPECT_TRUE(t.h.calls.empty());  // RSET without a transaction: no on_reset
}

TEST(ServerSession, EveryCommandWithMailWithoutRcpt) {
  Harness t;
  t.tls_available = true;
  t.opts.auth_enabled = true;
  std::string in =
      "EHLO c\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nBDAT 3\r\nabcBDAT 0 LAST\r\nSTARTTLS\r\nVRFY a\r\n"
      "EXPN a\r\nHELP\r\nNOOP\r\nRSET\r\nQUIT\r\n";
  std::string ehlo = T({"250-mx.example", "250-PIPELINING", "250-SIZE 33554432", "250-8BITMIME",
                        "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250-DSN", "250-CHUNKING",
                        "250-STARTTLS", "250 HELP"});
  EXPECT_EQ(t.run(in),
            kGreeting + ehlo + kMailOk +
                T({"503 5.5.1 Error: need RCPT command", "503 5.5.1 Error: need RCPT command",
                   "503 5.5.1 Error: need RCPT command", "503 5.5.1 Error: MAIL transaction in progress",
                   "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
                   "502 5.5.1 EXPN not implemented",
                   "214 2.0.0 Supported commands: AUTH BDAT DATA EHLO EXPN HELO HELP MAIL NOOP QUIT RCPT "
                   "RSET STARTTLS VRFY",
                   "250 2.0.0 OK", "250 2.0.0 OK"}) +
                kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "reset rset"}));
}

TEST(ServerSession, UnknownCommandsLimit) {
  Harness t;
  std::string in = kEnvelope + "FOO\r\nbar baz\r\nX\x01\xff\r\nNOOP\r\nWHAT\r\nFIVE\r\nNOOP\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + T({"500 5.5.1 Error: command \"FOO\" not recognized",
                                              "500 5.5.1 Error: command \"BAR\" not recognized",
                                              "500 5.5.1 Error: command \"X??\" not recognized",
                                              "250 2.0.0 OK",
                                              "500 5.5.1 Error: command \"WHAT\" not recognized",
                                              "502 5.5.1 Too many unrecognized commands, goodbye."}));
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset error"}));
}

// ---- pipelining and a whole transaction ------------------------------------------------

TEST(ServerSession, PipelinedTransactionRepliesInOneWrite) {
  Harness t;
  std::string in = "EHLO c.example\r\nMAIL FROM:<a@b.example> SIZE=20 BODY=8BITMIME\r\n"
                   "RCPT TO:<c@d.example>\r\nRCPT TO:<e@f.example> NOTIFY=SUCCESS,FAILURE "
                   "ORCPT=rfc822;e@f.example\r\nDATA\r\n";
  std::string body = "Subject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n";
  std::string out = t.run(std::vector<std::string>{in, body});
  EXPECT_EQ(out, kGreeting + kEhlo + kMailOk + kRcptOk + kRcptOk + k354 + kQueued + kBye);
  ASSERT_EQ(t.server_writes.size(), 3u);
  EXPECT_EQ(t.server_writes[0], kGreeting);
  EXPECT_EQ(t.server_writes[1], kEhlo + kMailOk + kRcptOk + kRcptOk + k354);
  EXPECT_EQ(t.server_writes[2], kQueued + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example SIZE=20 BODY=8BITMIME", "rcpt c@d.example",
                              "rcpt e@f.example NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;e@f.example",
                              "data 21 last"}));
  EXPECT_EQ(t.h.body, "Subject: hi\r\n\r\n.dot\r\n");
  ASSERT_EQ(t.h.infos.size(), 1u);
  EXPECT_EQ(t.h.infos[0].ehlo_host, "c.example");
  EXPECT_TRUE(t.h.infos[0].esmtp);
  EXPECT_FALSE(t.h.infos[0].tls);
  EXPECT_FALSE(t.h.infos[0].auth_user);
  EXPECT_EQ(t.h.infos[0].remote, (HostPort{"127.0.0.1", 40001}));
  EXPECT_EQ(t.h.infos[0].local, (HostPort{"127.0.0.1", 25}));
}

// The RCPTs pipelined right behind MAIL are announced with it (a handler may
// send them upstream together); each still reaches on_rcpt, in order, and
// the replies are those of RCPT by RCPT.
TEST(ServerSession, RcptsPipelinedBehindMailAreAnnouncedWithIt) {
  Harness t;
  t.h.rcpt_script = {Response(550, "5.1.1 no such user"), Response(250, "2.1.5 ok e")};
  std::string in = "EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example> NOTIFY=NEVER\r\n"
                   "rcpt to:<e@f.example>\r\nRCPT TO:<bad\r\nRCPT TO:<g@h.example>\r\nDATA\r\n";
  std::string out = t.run(std::vector<std::string>{in, "x\r\n.\r\nQUIT\r\n"});
  EXPECT_EQ(out, kGreeting + kEhlo + kMailOk + "550 5.1.1 no such user\r\n250 2.1.5 ok e\r\n" +
                     "501 5.5.4 Syntax: RCPT TO:<address>\r\n" + kRcptOk + k354 + kQueued + kBye);
  // Up to the first line cmd_rcpt would refuse itself.
  EXPECT_EQ(t.h.pipelined, (std::vector<std::vector<std::string>>{{"c@d.example NOTIFY=NEVER", "e@f.example"}}));
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example NOTIFY=NEVER", "rcpt e@f.example",
                              "rcpt g@h.example", "data 3 last"}));
}

TEST(ServerSession, PipelinedRcptAnnouncementStopsAtLimitsAndOtherCommands) {
  {  // MAIL alone in its write: nothing to announce.
    Harness t;
    t.run(std::vector<std::string>{"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n", "RCPT TO:<c@d.example>\r\nQUIT\r\n"});
    EXPECT_TRUE(t.h.pipelined.empty());
    EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset quit"}));
  }
  {  // At most max_recipients; an unknown parameter ends the run.
    Harness t;
    t.opts.max_recipients = 2;
    t.run("EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<1@x.example>\r\nRCPT TO:<2@x.example>\r\n"
          "RCPT TO:<3@x.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<4@x.example> FOO=1\r\nQUIT\r\n");
    EXPECT_EQ(t.h.pipelined, (std::vector<std::vector<std::string>>{{"1@x.example", "2@x.example"}}));
  }
  {  // After HELO (no PIPELINING offered): never.
    Harness t;
    t.run("HELO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n");
    EXPECT_TRUE(t.h.pipelined.empty());
    EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset quit"}));
  }
}

TEST(ServerSession, TwoTransactionsOnOneConnection) {
  Harness t;
  std::string in = kEnvelope + "DATA\r\none\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<postmaster>\r\nDATA\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kQueued + kMailOk + kRcptOk + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "data 5 last", "mail ",
                              "rcpt postmaster", "data 0 last"}));
  EXPECT_EQ(t.h.body, "one\r\n");
}

TEST(ServerSession, WholeSessionOneByteAtATime) {
  Harness t;
  t.opts.chunk_size = 8;
  std::string in = kEnvelope +
                   "DATA\r\n.leading\r\n..\r\nline\r\n\r\n.\r.x\r\n.\r\n"
                   "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
                   "..a\r\nb\r\n.\r\nQUIT\r\n";
  // Second message has a lone CR: rejected.
  EXPECT_EQ(t.run_bytewise(in),
            kEnvelopeReplies + k354 +
                "550 5.6.0 Bare LF or CR in message data not allowed (CRLF line endings required)\r\n" +
                kMailOk + kRcptOk + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.body.substr(t.h.body.size() - 7), ".a\r\nb\r\n");
  for (std::size_t p : t.h.pieces) EXPECT_LE(p, 8u);
  // The first message was fed until the lone CR was seen, then reset.
  bool saw_reset = false;
  for (auto& c : t.h.calls) saw_reset |= c == "reset error";
  EXPECT_TRUE(saw_reset);
}

TEST(ServerSession, DotUnstuffingOneByteAtATime) {
  Harness t;
  t.opts.chunk_size = 3;
  std::string msg = ".a\r\n..\r\n...\r\nx.\r\n. \r\n";
  EXPECT_EQ(t.run_bytewise(kEnvelope + "DATA\r\n" + msg + ".\r\nQUIT\r\n"),
            kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.body, "a\r\n.\r\n..\r\nx.\r\n \r\n");
  for (std::size_t p : t.h.pieces) EXPECT_LE(p, 3u);
  EXPECT_EQ(t.h.calls.back(), "data " + std::to_string(t.h.pieces.back()) + " last");
}

TEST(ServerSession, EndMarkerSplitAcrossWrites) {
  Harness t;
  std::string out = t.run(std::vector<std::string>{kEnvelope + "DATA\r\nbody\r", "\n.", "\r", "\nQU", "IT\r\n"});
  EXPECT_EQ(out, kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.body, "body\r\n");
}

TEST(ServerSession, EmptyMessage) {
  Harness t;
  EXPECT_EQ(t.run(kEnvelope + "DATA\r\n.\r\nQUIT\r\n"), kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.calls.back(), "data 0 last");
}

TEST(ServerSession, DataPiecesNeverExceedChunkSize) {
  Harness t;
  t.opts.chunk_size = 1000;
  std::string msg;
  for (int i = 0; i < 500; ++i) msg += "line " + std::to_string(i) + " ..........................\r\n";
  EXPECT_EQ(t.run(kEnvelope + "DATA\r\n" + msg + ".\r\nQUIT\r\n"), kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.body, msg);
  EXPECT_GT(t.h.pieces.size(), 10u);
  for (std::size_t p : t.h.pieces) EXPECT_LE(p, 1000u);
}

// ---- smuggling: bare LF / CR -----------------------------------------------------------

const std::string kBare = "550 5.6.0 Bare LF or CR in message data not allowed (CRLF line endings required)\r\n";

TEST(ServerSession, BareLfRejectedAndNeverEndsData) {
  Harness t;
  // "\n.\n" must not end the data: MAIL/RCPT/DATA below are message text.
  std::string in = kEnvelope + "DATA\r\nhello\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@x.example>\r\n"
                   "DATA\r\n\r\n.\r\nNOOP\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kBare + "250 2.0.0 OK\r\n" + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset error"}));
}

TEST(ServerSession, LoneCrRejectedAndNeverEndsData) {
  Harness t;
  std::string in = kEnvelope + "DATA\r\nhello\r.\rMAIL FROM:<evil@x.example>\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kBare + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset error"}));
}

TEST(ServerSession, DotLfLfIsNotEnd) {
  Harness t;
  std::string in = kEnvelope + "DATA\r\nx\r\n.\nQUIT\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kBare + kBye);
}

// ---- limits ----------------------------------------------------------------------------

TEST(ServerSession, OversizeCommandLine) {
  Harness t;
  std::string in = "EHLO c\r\n" + std::string(600, 'A') + "\r\nNOOP\r\n" + std::string(511, 'B') +
                   "\r\n" + "NOOP " + std::string(504, 'x') + "\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo +
                           T({"500 5.5.2 Line too long", "250 2.0.0 OK", "500 5.5.2 Line too long",
                              "250 2.0.0 OK"}) +
                           kBye);
}

TEST(ServerSession, OversizeCommandLineAcrossManyWritesIsNotBuffered) {
  Harness t;
  std::vector<std::string> w{"EHLO c\r\nNOOP "};
  for (int i = 0; i < 40; ++i) w.push_back(std::string(10000, 'z'));
  w.push_back("\r\nNOOP\r\nQUIT\r\n");
  EXPECT_EQ(t.run(w), kGreeting + kEhlo + T({"500 5.5.2 Line too long", "250 2.0.0 OK"}) + kBye);
}

TEST(ServerSession, MailAndRcptMayBeLongerForDsn) {
  Harness t;
  std::string envid(600, 'e');  // a 640-octet MAIL line is fine
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=" + envid + "\r\nRCPT TO:<c@d.example> ORCPT=rfc822;" +
                   std::string(1100, 'o') + "\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk + "500 5.5.2 Line too long\r\n" + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example RET=HDRS ENVID=" + envid, "reset quit"}));
}

TEST(ServerSession, DataLineTooLong) {
  Harness t;
  t.opts.max_text_line = 10;
  std::string in = kEnvelope + "DATA\r\n12345678\r\n..2345678\r\n.\r\n" + "MAIL FROM:<a@b.example>\r\n"
                   "RCPT TO:<c@d.example>\r\nDATA\r\n123456789\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kQueued + kMailOk + kRcptOk + k354 +
                           "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)\r\n" + kBye);
  EXPECT_EQ(t.h.calls.back(), "reset error");
}

TEST(ServerSession, MessageSizeLimit) {
  Harness t;
  t.opts.max_message_size = 10;
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example> SIZE=11\r\nMAIL FROM:<a@b.example> SIZE=10\r\n"
                   "RCPT TO:<c@d.example>\r\nDATA\r\n12345678\r\n.\r\n"  // exactly 10
                   "MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n123456789\r\n.\r\nQUIT\r\n";
  std::string ehlo = kEhlo;
  ehlo.replace(ehlo.find("SIZE 33554432"), 13, "SIZE 10");
  EXPECT_EQ(t.run(in), kGreeting + ehlo + "552 5.3.4 Message size exceeds fixed maximum message size\r\n" +
                           kMailOk + kRcptOk + k354 + kQueued + kMailOk + kRcptOk + k354 +
                           "552 5.3.4 Message size exceeds fixed maximum message size\r\n" + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example SIZE=10", "rcpt c@d.example", "data 10 last",
                              "mail a@b.example", "rcpt c@d.example", "reset error"}));
}

TEST(ServerSession, TooManyRecipients) {
  Harness t;
  t.opts.max_recipients = 2;
  t.h.rcpt_script = {Response(250, "ok 1"), Response(550, "5.1.1 no such user"), Response(250, "ok 2")};
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<r1@x.example>\r\nRCPT TO:<r2@x.example>\r\n"
                   "RCPT TO:<r3@x.example>\r\nRCPT TO:<r4@x.example>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk +
                           T({"250 ok 1", "550 5.1.1 no such user", "250 ok 2", "452 4.5.3 Too many recipients"}) +
                           kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt r1@x.example", "rcpt r2@x.example",
                              "rcpt r3@x.example", "reset quit"}));
}

// ---- MAIL / RCPT syntax ----------------------------------------------------------------

TEST(ServerSession, MailSyntax) {
  Harness t;
  std::string in =
      "EHLO c\r\nMAIL a@b\r\nMAIL FROM:a@b.example\r\nMAIL FROM:<a@>\r\nMAIL FROM:<a@b.example> FOO=bar\r\n"
      "MAIL FROM:<a@b.example> SIZE=abc\r\nMAIL FROM:<a@b.example> BODY=BINARYMIME\r\n"
      "MAIL FROM:<a@b.example> RET=ALL\r\nMAIL FROM:<a@b.example> SMTPUTF8=x\r\n"
      "MAIL FROM:<a@b.example> SIZE=1 SIZE=2\r\nMAIL FROM:<a@b.example> K=\r\n"
      "MAIL FROM:<a@b.example> ENVID\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo +
                           T({"501 5.5.4 Syntax: MAIL FROM:<address>", "501 5.5.4 Syntax: MAIL FROM:<address>",
                              "553 5.1.3 Error: malformed address",
                              "555 5.5.4 MAIL FROM parameters not recognized or not implemented",
                              "501 5.5.4 Syntax: SIZE=<number>",
                              "501 5.5.4 Error: BODY can only be one of 7BIT, 8BITMIME",
                              "501 5.5.4 Error: RET can only be one of FULL, HDRS",
                              "501 5.5.4 Syntax error in parameters", "501 5.5.4 Syntax error in parameters",
                              "501 5.5.4 Syntax error in parameters", "501 5.5.4 Syntax error in parameters"}) +
                           kBye);
  EXPECT_TRUE(t.h.calls.empty());
}

TEST(ServerSession, MailParamsPassedThrough) {
  Harness t;
  std::string in = "EHLO c\r\nmail from: <> size=100 body=7bit smtputf8 Ret=full envid=QQ+2Bx auth=<>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail  SIZE=100 BODY=7bit SMTPUTF8 RET=full ENVID=QQ+2Bx AUTH=<>", "reset quit"}));
}

TEST(ServerSession, ParamsAfterHeloAreSyntaxErrors) {
  Harness t;
  std::string in = "HELO c\r\nMAIL FROM:<a@b.example> SIZE=1\r\nMAIL FROM:<a@b.example>\r\n"
                   "RCPT TO:<c@d.example> NOTIFY=NEVER\r\nRCPT TO:<c@d.example>\r\nBDAT 1 LAST\r\nxQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + "250 mx.example\r\n" + "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" + kMailOk +
                           "501 5.5.4 Syntax: RCPT TO:<address>\r\n" + kRcptOk +
                           "503 5.5.1 Error: send EHLO first\r\n" + kBye);
  EXPECT_FALSE(t.h.infos.at(0).esmtp);
}

TEST(ServerSession, RcptSyntax) {
  Harness t;
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT c@d\r\nRCPT TO:<>\r\nRCPT TO:<c@d.example> FOO\r\n"
                   "RCPT TO:<c@d.example> NOTIFY=SOMETIMES\r\nRCPT TO:<c@d.example> ORCPT=nosemicolon\r\n"
                   "RCPT TO: <Postmaster> notify=never\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk +
                           T({"501 5.5.4 Syntax: RCPT TO:<address>", "553 5.1.3 Error: malformed address",
                              "555 5.5.4 RCPT TO parameters not recognized or not implemented",
                              "501 5.5.4 Error: NOTIFY can only be NEVER or a list of SUCCESS, FAILURE, DELAY",
                              "501 5.5.4 Syntax error in parameters"}) +
                           kRcptOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt Postmaster NOTIFY=never", "reset quit"}));
}

TEST(ServerSession, DataSyntaxAndSequence) {
  Harness t;
  std::string in = kEnvelope + "DATA x\r\nDATA\r\n.\r\nDATA\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + "501 5.5.4 Syntax: DATA\r\n" + k354 + kQueued +
                           "503 5.5.1 Error: need MAIL command\r\n" + kBye);
}

// ---- handler responses -------------------------------------------------------------------

TEST(ServerSession, HandlerResponsesRelayedVerbatim) {
  Harness t;
  t.h.mail_script = {Response(451, "4.4.1 upstream down"), Response(250, "2.1.0 line one\nline two\n")};
  t.h.rcpt_script = {Response(600, "weird"), Response(354, "go ahead?"), Response(550, "5.1.1 a\r\nb")};
  t.h.data_script = {Response(554, "5.6.0 message rejected message_validation")};
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nMAIL FROM:<a@b.example>\r\n"
                   "RCPT TO:<c@d.example>\r\nRCPT TO:<c@d.example>\r\nRCPT TO:<c@d.example>\r\n"
                   "RCPT TO:<c@d.example>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo +
                           T({"451 4.4.1 upstream down", "503 5.5.1 Error: need MAIL command", "250-2.1.0 line one",
                              "250 line two", "451 4.3.0 Internal error: invalid upstream response",
                              "451 4.3.0 Internal error: invalid upstream response", "550-5.1.1 a", "550 b"}) +
                           kRcptOk + k354 + "554 5.6.0 message rejected message_validation\r\n" + kBye);
}

TEST(ServerSession, NoDataResponseIs451) {
  Harness t;
  t.h.data_script = {std::nullopt};
  EXPECT_EQ(t.run(kEnvelope + "DATA\r\nx\r\n.\r\nQUIT\r\n"),
            kEnvelopeReplies + k354 + "451 4.3.0 Internal error: no data response\r\n" + kBye);
}

TEST(ServerSession, HandlerExceptionIs451) {
  Harness t;
  t.h.throw_on_rcpt = true;
  EXPECT_EQ(t.run("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\nQUIT\r\n"),
            kGreeting + kEhlo + kMailOk + "451 4.3.0 Internal error\r\n" + "503 5.5.1 Error: need RCPT command\r\n" +
                kBye);
}

TEST(ServerSession, EarlyFailureDuringData) {
  Harness t;
  t.opts.chunk_size = 4;
  t.h.data_script = {std::nullopt, Response(550, "5.7.1 spam")};
  std::string in = kEnvelope + "DATA\r\n0123456789abcdef\r\n.\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + "550 5.7.1 spam\r\n" + kMailOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "data 4 more", "data 4 more",
                              "mail a@b.example", "reset quit"}));
  EXPECT_EQ(t.h.body, "01234567");
}

// ---- BDAT ----------------------------------------------------------------------------

TEST(ServerSession, BdatWithAndWithoutLast) {
  Harness t;
  std::string in = kEnvelope + "BDAT 5\r\nhelloBDAT 7 last\r\n wo\nrld" + "MAIL FROM:<a@b.example>\r\n"
                   "RCPT TO:<c@d.example>\r\nBDAT 0 LAST\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + "250 2.0.0 5 octets received\r\n" + kQueued + kMailOk + kRcptOk +
                           kQueued + kBye);
  EXPECT_EQ(t.h.body, "hello wo\nrld");  // raw: bare LF allowed
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "data 12 last", "mail a@b.example",
                              "rcpt c@d.example", "data 0 last"}));
}

TEST(ServerSession, BdatSplitAcrossWritesAndPieces) {
  Harness t;
  t.opts.chunk_size = 4;
  std::string out = t.run(std::vector<std::string>{kEnvelope + "BDAT 10\r\n01234", "567", "89BDAT 3 LAST\r\nab",
                                                   "cQUIT\r\n"});
  EXPECT_EQ(out, kEnvelopeReplies + "250 2.0.0 10 octets received\r\n" + kQueued + kBye);
  EXPECT_EQ(t.h.body, "0123456789abc");
  for (std::size_t p : t.h.pieces) EXPECT_LE(p, 4u);
  EXPECT_EQ(t.h.calls.back(), "data 1 last");
}

TEST(ServerSession, BdatByteAtATime) {
  Harness t;
  t.opts.chunk_size = 3;
  EXPECT_EQ(t.run_bytewise(kEnvelope + "BDAT 4\r\n.\r\n.BDAT 2 LAST\r\n\r\nQUIT\r\n"),
            kEnvelopeReplies + "250 2.0.0 4 octets received\r\n" + kQueued + kBye);
  EXPECT_EQ(t.h.body, ".\r\n.\r\n");
}

TEST(ServerSession, BdatErrors) {
  Harness t;
  t.opts.max_message_size = 10;
  std::string in = "EHLO c\r\nBDAT\r\nBDAT x\r\nBDAT 3 FOO\r\nabcBDAT 2\r\nxyMAIL FROM:<a@b.example>\r\n"
                   "BDAT 2 LAST\r\nxyRCPT TO:<c@d.example>\r\nBDAT 4\r\nabcdDATA\r\nRCPT TO:<e@d.example>\r\n"
                   "BDAT 7\r\n1234567BDAT 1 LAST\r\nzQUIT\r\n";
  std::string ehlo = kEhlo;
  ehlo.replace(ehlo.find("SIZE 33554432"), 13, "SIZE 10");
  EXPECT_EQ(t.run(in), kGreeting + ehlo +
                           T({"501 5.5.4 Syntax: BDAT chunk-size [LAST]", "501 5.5.4 Syntax: BDAT chunk-size [LAST]",
                              "501 5.5.4 Syntax: BDAT chunk-size [LAST]", "503 5.5.1 Error: need MAIL command",
                              "250 2.1.0 Sender OK", "503 5.5.1 Error: need RCPT command",
                              "250 2.1.5 Recipient OK", "250 2.0.0 4 octets received",
                              "503 5.5.1 Error: BDAT and DATA cannot be mixed in one transaction",
                              "503 5.5.1 Error: RCPT not allowed after BDAT",
                              "552 5.3.4 Message size exceeds fixed maximum message size",
                              "503 5.5.1 Error: need MAIL command"}) +
                           kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset error"}));
}

TEST(ServerSession, BdatEarlyFailure) {
  Harness t;
  t.opts.chunk_size = 4;
  t.h.data_script = {Response(554, "5.7.1 no thanks")};
  std::string in = kEnvelope + "BDAT 10\r\n0123456789BDAT 2 LAST\r\nxyQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + "554 5.7.1 no thanks\r\n" + "503 5.5.1 Error: need MAIL command\r\n" + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "data 4 more"}));
}

TEST(ServerSession, DataAfterCompletedDataThenBdat) {
  Harness t;
  std::string in = kEnvelope + "DATA\r\nx\r\n.\r\nBDAT 3 LAST\r\nabcQUIT\r\n";
  EXPECT_EQ(t.run(in), kEnvelopeReplies + k354 + kQueued + "503 5.5.1 Error: need MAIL command\r\n" + kBye);
}

// ---- STARTTLS / implicit TLS / AUTH ----------------------------------------------------------

const std::string kEhloTls = T({"250-mx.example", "250-PIPELINING", "250-SIZE 33554432", "250-8BITMIME",
                                "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250-DSN", "250-CHUNKING",
                                "250-STARTTLS", "250 HELP"});
const std::string kEhloAfterTls = T({"250-mx.example", "250-PIPELINING", "250-SIZE 33554432", "250-8BITMIME",
                                     "250-SMTPUTF8", "250-ENHANCEDSTATUSCODES", "250-DSN", "250-CHUNKING",
                                     "250-AUTH LOGIN PLAIN", "250 HELP"});

TEST(ServerSession, StartTlsResetsAndDropsPipelinedCleartext) {
  Harness t;
  t.tls_available = true;
  t.opts.auth_enabled = true;
  std::string in1 = "EHLO c\r\nSTARTTLS x\r\nAUTH PLAIN\r\nSTARTTLS\r\nMAIL FROM:<injected@x.example>\r\n";
  std::string in2 = "MAIL FROM:<a@b.example>\r\nEHLO c2\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(std::vector<std::string>{in1, in2}),
            kGreeting + kEhloTls +
                T({"501 5.5.4 Syntax: STARTTLS",
                   "538 5.7.11 Encryption required for requested authentication mechanism",
                   "220 2.0.0 Ready to start TLS", "503 5.5.1 Error: send HELO/EHLO first"}) +
                kEhloAfterTls + "503 5.5.1 Error: TLS already active\r\n" + kMailOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "reset quit"}));
  ASSERT_EQ(t.h.infos.size(), 1u);
  EXPECT_TRUE(t.h.infos[0].tls);
  EXPECT_EQ(t.h.infos[0].ehlo_host, "c2");
}

TEST(ServerSession, ImplicitTlsCountsAsTls) {
  Harness t;
  t.implicit_tls = true;
  t.opts.auth_enabled = true;
  std::string plain = server::base64_encode(std::string("\0user\0pass", 10));
  EXPECT_EQ(t.run("EHLO c\r\nSTARTTLS\r\nAUTH PLAIN " + plain + "\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n"),
            kGreeting + kEhloAfterTls + "503 5.5.1 Error: TLS already active\r\n" +
                "235 2.7.0 Authentication successful\r\n" + kMailOk + kBye);
  ASSERT_EQ(t.h.infos.size(), 1u);
  EXPECT_TRUE(t.h.infos[0].tls);
  EXPECT_EQ(t.h.infos[0].auth_user, "user");
}

struct AuthCase {
  const char* name;
  std::string input;
  std::string replies;
};

TEST(ServerSession, AuthTranscripts) {
  auto b = [](std::string_view s) { return server::base64_encode(s); };
  const std::string ok = "235 2.7.0 Authentication successful\r\n";
  const std::string bad = "535 5.7.8 Authentication credentials invalid\r\n";
  std::vector<AuthCase> cases = {
      {"plain initial", "AUTH PLAIN " + b(std::string("\0user\0pass", 10)) + "\r\n", ok},
      {"plain authzid ignored", "AUTH plain " + b(std::string("admin\0user\0pass", 15)) + "\r\n", ok},
      {"plain challenge", "AUTH PLAIN\r\n" + b(std::string("\0user\0pass", 10)) + "\r\n", "334 \r\n" + ok},
      {"plain wrong", "AUTH PLAIN " + b(std::string("\0user\0nope", 10)) + "\r\n", bad},
      {"plain abort", "AUTH PLAIN\r\n*\r\n", "334 \r\n501 5.7.0 Auth aborted\r\n"},
      {"plain bad base64", "AUTH PLAIN !!!!\r\n", "501 5.5.2 Can't decode base64\r\n"},
      {"plain no split", "AUTH PLAIN " + b("userpass") + "\r\n", "501 5.5.2 Can't split auth value\r\n"},
      {"plain empty", "AUTH PLAIN =\r\n", "501 5.5.2 Can't split auth value\r\n"},
      {"login", "AUTH LOGIN\r\n" + b("user") + "\r\n" + b("pass") + "\r\n",
       "334 VXNlciBOYW1lAA==\r\n334 UGFzc3dvcmQA\r\n" + ok},
      {"login initial", "AUTH LOGIN " + b("user") + "\r\n" + b("pass") + "\r\n", "334 UGFzc3dvcmQA\r\n" + ok},
      {"login wrong", "AUTH LOGIN\r\n" + b("user") + "\r\n" + b("x") + "\r\n",
       "334 VXNlciBOYW1lAA==\r\n334 UGFzc3dvcmQA\r\n" + bad},
      {"login abort user", "AUTH LOGIN\r\n*\r\n", "334 VXNlciBOYW1lAA==\r\n501 5.7.0 Auth aborted\r\n"},
      {"login abort password", "AUTH LOGIN\r\n" + b("user") + "\r\n*\r\n",
       "334 VXNlciBOYW1lAA==\r\n334 UGFzc3dvcmQA\r\n501 5.7.0 Auth aborted\r\n"},
      {"login bad base64", "AUTH LOGIN\r\nnot base64\r\n", "334 VXNlciBOYW1lAA==\r\n501 5.5.2 Can't decode base64\r\n"},
      {"login long line", "AUTH LOGIN\r\n" + std::string(600, 'A') + "\r\n",
       "334 VXNlciBOYW1lAA==\r\n500 5.5.2 Line too long\r\n"},
      {"unknown mechanism", "AUTH CRAM-MD5\r\n", "504 5.5.4 Unrecognized authentication type\r\n"},
      {"no mechanism", "AUTH\r\n", "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"},
      {"too many values", "AUTH PLAIN a b\r\n", "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"},
      {"twice", "AUTH PLAIN " + b(std::string("\0user\0pass", 10)) + "\r\nAUTH LOGIN\r\n",
       ok + "503 5.5.1 Already authenticated\r\n"},
      {"failure then success", "AUTH PLAIN " + b(std::string("\0user\0x", 7)) + "\r\nAUTH PLAIN " +
                                   b(std::string("\0user\0pass", 10)) + "\r\n",
       bad + ok},
      {"in transaction", "MAIL FROM:<a@b.example>\r\nAUTH PLAIN =\r\n",
       kMailOk + "503 5.5.1 Error: MAIL transaction in progress\r\n"},
  };
  for (const AuthCase& c : cases) {
    Harness t;
    t.implicit_tls = true;
    t.opts.auth_enabled = true;
    EXPECT_EQ(t.run("EHLO c\r\n" + c.input + "QUIT\r\n"), kGreeting + kEhloAfterTls + c.replies + kBye) << c.name;
  }
}

TEST(ServerSession, AuthNotOfferedWithoutTlsOrWhenDisabled) {
  {
    Harness t;  // no TLS
    t.opts.auth_enabled = true;
    EXPECT_EQ(t.run("HELO c\r\nAUTH PLAIN =\r\nEHLO c\r\nAUTH PLAIN =\r\nQUIT\r\n"),
              kGreeting + "250 mx.example\r\n503 5.5.1 Error: send EHLO first\r\n" + kEhlo +
                  "538 5.7.11 Encryption required for requested authentication mechanism\r\n" + kBye);
  }
  {
    Harness t;  // TLS but AUTH disabled: not advertised
    t.implicit_tls = true;
    std::string ehlo = kEhloAfterTls;
    ehlo.erase(ehlo.find("250-AUTH LOGIN PLAIN\r\n"), 22);
    EXPECT_EQ(t.run("EHLO c\r\nAUTH PLAIN =\r\nQUIT\r\n"),
              kGreeting + ehlo + "502 5.5.1 Error: AUTH not supported\r\n" + kBye);
  }
}

// ---- resets, timeouts, heartbeats --------------------------------------------------------------

TEST(ServerSession, ResetReasons) {
  Harness t;
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nEHLO c\r\n"
                   "MAIL FROM:<a@b.example>\r\nHELO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<x@b.example>\r\n"
                   "RSET x\r\nRSET\r\nRSET\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk + "250 2.0.0 OK\r\n" + kMailOk + kEhlo + kMailOk +
                           "250 mx.example\r\n" + kMailOk + kMailOk + "501 5.5.4 Syntax: RSET\r\n" +
                           "250 2.0.0 OK\r\n250 2.0.0 OK\r\n" + kMailOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "reset rset", "mail a@b.example", "reset ehlo",
                              "mail a@b.example", "reset ehlo", "mail a@b.example", "reset new_mail",
                              "mail x@b.example", "reset rset", "mail a@b.example", "reset quit"}));
}

TEST(ServerSession, FailedMailDoesNotResetOpenTransaction) {
  Harness t;
  std::string in = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<bad>\r\nRCPT TO:<c@d.example>\r\nQUIT\r\n";
  EXPECT_EQ(t.run(in), kGreeting + kEhlo + kMailOk + "553 5.1.3 Error: malformed address\r\n" + kRcptOk + kBye);
  EXPECT_EQ(t.h.calls, (Calls{"mail a@b.example", "rcpt c@d.example", "reset quit"}));
}

TEST(ServerSession, DisconnectResetsTransaction) {
  Harness t;
  EXPECT_EQ(t.run(kEnvelope), kEnvelopeReplies);
  EXPECT_EQ(t.h.calls.back(), "reset disconnect");
}

TEST(ServerSession, DisconnectDuringDataResetsTransaction) {
  Harness t;
  t.opts.chunk_size = 2;
  EXPECT_EQ(t.run(kEnvelope + "DATA\r\nsome text"), kEnvelopeReplies + k354);
  EXPECT_EQ(t.h.calls.back(), "reset disconnect");
  EXPECT_EQ(t.h.calls.at(2), "data 2 more");
  EXPECT_EQ(t.h.body, "some tex");  // the last, partial piece is dropped
}

TEST(ServerSession, DisconnectWithoutTransactionNoReset) {
  Harness t;
  EXPECT_EQ(t.run("EHLO c\r\n"), kGreeting + kEhlo);
  EXPECT_TRUE(t.h.calls.empty());
}

TEST(ServerSession, IdleTimeoutSends421) {
  Harness t;
  t.opts.idle_timeout = 50ms;
  t.opts.heartbeat_interval = 0ms;
  EXPECT_EQ(t.run(kEnvelope, 2s), kEnvelopeReplies + "421 4.4.2 mx.example Error: timeout exceeded\r\n");
  EXPECT_EQ(t.h.calls.back(), "reset timeout");
}

TEST(ServerSession, IdleTimeoutIsPerRead) {
  Harness t;
  t.opts.idle_timeout = 200ms;
  // Slow but steady client: every gap is shorter than the timeout.
  auto [server_end, client_end] = make_pipe(t.io.get_executor());
  std::string out;
  bool done = false;
  asio::co_spawn(t.io, serve(*server_end, t.h, t.opts, &done), rethrow);
  asio::co_spawn(t.io, read_all(*client_end, &out), rethrow);
  std::string input = kEnvelope + "DATA\r\nabc\r\n.\r\nQUIT\r\n";
  auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < input.size(); i += 16) {
    asio::co_spawn(t.io, write_str(*client_end, input.substr(i, 16)), rethrow);
    auto until = std::chrono::steady_clock::now() + 60ms;
    while (std::chrono::steady_clock::now() < until) {
      t.io.restart();
      t.io.run_one_for(5ms);
    }
  }
  while (!done && std::chrono::steady_clock::now() < start + 10s) {
    t.io.restart();
    t.io.run_one_for(5ms);
  }
  EXPECT_TRUE(done);
  EXPECT_GT(std::chrono::steady_clock::now() - start, 300ms);  // longer than one timeout overall
  EXPECT_EQ(out, kEnvelopeReplies + k354 + kQueued + kBye);
}

TEST(ServerSession, HeartbeatsWhileTransactionOpenAndIdle) {
  Harness t;
  t.opts.idle_timeout = 300ms;
  t.opts.heartbeat_interval = 20ms;
  EXPECT_EQ(t.run(kEnvelope, 3s), kEnvelopeReplies + "421 4.4.2 mx.example Error: timeout exceeded\r\n");
  EXPECT_GE(t.h.heartbeats, 5);
  EXPECT_LE(t.h.heartbeats, 16);
  EXPECT_EQ(t.h.calls.back(), "reset timeout");
}

TEST(ServerSession, NoHeartbeatsWithoutTransaction) {
  Harness t;
  t.opts.idle_timeout = 150ms;
  t.opts.heartbeat_interval = 10ms;
  EXPECT_EQ(t.run("EHLO c\r\n", 2s), kGreeting + kEhlo + "421 4.4.2 mx.example Error: timeout exceeded\r\n");
  EXPECT_EQ(t.h.heartbeats, 0);
  EXPECT_TRUE(t.h.calls.empty());
}

TEST(ServerSession, HeartbeatsDuringSlowData) {
  Harness t;
  t.opts.idle_timeout = 2s;
  t.opts.heartbeat_interval = 20ms;
  auto [server_end, client_end] = make_pipe(t.io.get_executor());
  std::string out;
  bool done = false;
  asio::co_spawn(t.io, serve(*server_end, t.h, t.opts, &done), rethrow);
  asio::co_spawn(t.io, read_all(*client_end, &out), rethrow);
  std::vector<std::string> parts = {kEnvelope + "DATA\r\n", "a", "b", "c\r\n.\r\nQUIT\r\n"};
  for (const std::string& p : parts) {
    asio::co_spawn(t.io, write_str(*client_end, p), rethrow);
    auto until = std::chrono::steady_clock::now() + 70ms;
    while (std::chrono::steady_clock::now() < until) {
      t.io.restart();
      t.io.run_one_for(5ms);
    }
  }
  while (!done) {
    t.io.restart();
    if (t.io.run_one_for(1s) == 0) break;
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(out, kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_GE(t.h.heartbeats, 4);  // ~3 per 70 ms gap, 3 gaps inside the transaction
  EXPECT_EQ(t.h.body, "abc\r\n");
}

// ---- robustness ----------------------------------------------------------------------------

TEST(ServerSession, FuzzRandomInputNeverCrashesOrHangs) {
  std::mt19937 rng(12345);
  const std::vector<std::string> words = {"EHLO x\r\n", "HELO x\r\n", "MAIL FROM:<a@b.example>\r\n",
                                          "RCPT TO:<c@d.example>\r\n", "DATA\r\n", "BDAT 5\r\n",
                                          "BDAT 3 LAST\r\n", "BDAT 99999999999999999999\r\n", ".\r\n",
                                          "\r\n.\r\n", "RSET\r\n", "AUTH PLAIN\r\n", "AUTH LOGIN\r\n",
                                          "STARTTLS\r\n", "NOOP\r\n", "\n", "\r", ".", "..",
                                          std::string(700, 'x'), std::string("\0\xff\x80", 3)};
  for (int iter = 0; iter < 150; ++iter) {
    Harness t;
    t.tls_available = iter % 3 == 0;
    t.implicit_tls = iter % 5 == 0;
    t.opts.auth_enabled = iter % 2 == 0;
    t.opts.chunk_size = 1 + rng() % 64;
    t.opts.max_message_size = 50 + rng() % 2000;
    t.opts.max_text_line = 20 + rng() % 100;
    t.opts.max_recipients = 1 + rng() % 3;
    t.opts.max_unknown_commands = 1000;
    std::string in;
    std::size_t n = rng() % 60;
    for (std::size_t i = 0; i < n; ++i) {
      if (rng() % 3 == 0) {
        for (std::size_t k = rng() % 40; k > 0; --k) in += static_cast<char>(rng());
      } else {
        in += words[rng() % words.size()];
      }
    }
    std::vector<std::string> writes;
    for (std::size_t i = 0; i < in.size();) {
      std::size_t k = 1 + rng() % 50;
      writes.push_back(in.substr(i, k));
      i += k;
    }
    std::string out = t.run(writes);
    ASSERT_TRUE(t.done) << iter;
    ASSERT_TRUE(out.starts_with(kGreeting));
    // Every reply line is well formed: 3 digits then ' ' / '-' / CRLF.
    std::size_t pos = 0;
    while (pos < out.size()) {
      std::size_t e = out.find("\r\n", pos);
      ASSERT_NE(e, std::string::npos);
      ASSERT_GE(e - pos, 3u);
      ASSERT_LE(e - pos + 2, 512u);
      pos = e + 2;
    }
    for (std::size_t p : t.h.pieces) ASSERT_LE(p, t.opts.chunk_size);
  }
}

TEST(ServerSession, HugeBinaryGarbageAndHugeLines) {
  std::mt19937 rng(99);
  std::string junk(2 << 20, '\0');
  for (char& c : junk) c = static_cast<char>(rng());
  {
    Harness t;
    t.opts.max_unknown_commands = 0;  // no limit: the whole input is read
    std::vector<std::string> w;
    for (std::size_t i = 0; i < junk.size(); i += 300000) w.push_back(junk.substr(i, 300000));
    w.push_back("\r\nQUIT\r\n");
    std::string out = t.run(w);
    EXPECT_TRUE(out.ends_with(kBye));
  }
  {
    Harness t;  // inside DATA and BDAT
    std::string in = kEnvelope + "DATA\r\n" + junk + "\r\n.\r\n" + "MAIL FROM:<a@b.example>\r\n"
                     "RCPT TO:<c@d.example>\r\nBDAT " + std::to_string(junk.size()) + " LAST\r\n" + junk + "QUIT\r\n";
    std::string out = t.run(in);
    EXPECT_TRUE(out.ends_with(kQueued + kBye)) << out.substr(out.size() > 300 ? out.size() - 300 : 0);
    EXPECT_EQ(t.h.body.substr(t.h.body.size() - junk.size()), junk);
  }
}

TEST(ServerSession, LargeMessageStreamsInPieces) {
  Harness t;
  std::string line(998, 'x');
  std::string msg;
  while (msg.size() < (5u << 20)) msg += line + "\r\n";
  EXPECT_EQ(t.run(std::vector<std::string>{kEnvelope + "DATA\r\n", msg, ".\r\nQUIT\r\n"}),
            kEnvelopeReplies + k354 + kQueued + kBye);
  EXPECT_EQ(t.h.body.size(), msg.size());
  EXPECT_EQ(t.h.pieces.size(), 6u);
  for (std::size_t i = 0; i + 1 < t.h.pieces.size(); ++i) EXPECT_EQ(t.h.pieces[i], 1u << 20);
}

}  // namespace
}  // namespace koukan::smtp
