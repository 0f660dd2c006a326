// SmtpClient against a scripted fake SMTP server on the other end of an
// in-memory pipe (and once over real TCP/TLS). The fake records every byte
// and command it receives; the tests assert on the exact wire bytes and on
// the responses the gateway would publish.
#include <gtest/gtest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <deque>

#include "common/smtp/client.hpp"
#include "common/smtp/tcp_stream.hpp"
#include "test/common/smtp/tcp_test_util.hpp"

namespace koukan::smtp {
namespace {

using namespace std::chrono_literals;
using testing::run_io;

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Scripted server: `script` holds the raw bytes to answer each command with,
// in order (several replies in one entry for LMTP). Specials: "<close>"
// closes instead of answering, "<stall>" never answers, "<close-in-data>"
// (as the answer to the end of DATA) closes as soon as body bytes arrive.
// QUIT is always answered "221 bye" and closes.
struct FakeServer {
  std::string greeting = "220 fake ESMTP\r\n";
  std::deque<std::string> script;
  std::string received;                    // every byte
  std::vector<std::string> commands;       // command lines
  std::vector<std::size_t> pending_after;  // bytes already buffered after each command
  std::vector<std::string> bodies;         // DATA bodies (wire form, w/o ".\r\n"), BDAT chunks
  bool tls = false;
  bool saw_eof = false;
  bool finished = false;

  std::unique_ptr<ByteStream> s;
  std::string buf;
  std::array<char, 4096> rb{};

  Task<bool> fill() {
    std::span<char> sp(rb);
    auto r = co_await s->read_some(sp);
    if (!r.ok() || *r == 0) {
      saw_eof = true;
      co_return false;
    }
    buf.append(rb.data(), *r);
    received.append(rb.data(), *r);
    co_return true;
  }

  Task<std::optional<std::string>> line() {
    for (;;) {
      auto p = buf.find("\r\n");
      if (p != std::string::npos) {
        std::string l = buf.substr(0, p);
        buf.erase(0, p + 2);
        co_return l;
      }
      if (!co_await fill()) co_return std::nullopt;
    }
  }

  std::string next() {
    if (script.empty()) return "500 unscripted\r\n";
    std::string r = script.front();
    script.pop_front();
    return r;
  }

  Task<bool> answer(std::string r) {
    if (r == "<close>") {
      s->close();
      co_return false;
    }
    if (r == "<stall>") {
      while (co_await fill()) {
      }
      co_return false;
    }
    auto w = co_await s->write_all(r);
    co_return w.ok();
  }

  Task<void> run(std::unique_ptr<ByteStream> st) {
    s = std::move(st);
    co_await serve();
    s.reset();  // before the io_context goes away
    finished = true;
  }

  Task<void> serve() {
    if (!co_await answer(greeting)) co_return;
    for (;;) {
      auto l = co_await line();
      if (!l) co_return;
      commands.push_back(*l);
      pending_after.push_back(buf.size());
      std::string u = upper(*l);
      if (u == "QUIT") {
        std::string bye = "221 bye\r\n";
        auto w = co_await s->write_all(bye);
        (void)w;
        s->close();
        co_return;
      }
      if (u.rfind("BDAT ", 0) == 0) {
        std::size_t n = std::stoul(u.substr(5));
        while (buf.size() < n)
          if (!co_await fill()) co_return;
        bodies.push_back(buf.substr(0, n));
        buf.erase(0, n);
      }
      std::string r = next();
      bool data = u == "DATA" && r.rfind("354", 0) == 0;
      bool starttls = u == "STARTTLS" && r.rfind("220", 0) == 0;
      if (!co_await answer(r)) co_return;
      if (starttls) {
        auto t = co_await s->start_tls();
        if (!t.ok()) {
          s->close();
          co_return;
        }
        tls = true;
      }
      if (data) {
        for (;;) {
          if (!script.empty() && script.front() == "<close-in-data>" && !buf.empty()) {
            s->close();
            co_return;
          }
          std::size_t end = std::string::npos, skip = 0;
          if (buf.rfind(".\r\n", 0) == 0) end = 0, skip = 3;
          else if (auto p = buf.find("\r\n.\r\n"); p != std::string::npos) end = p + 2, skip = 3;
          if (end != std::string::npos) {
            bodies.push_back(buf.substr(0, end));
            buf.erase(0, end + skip);
            break;
          }
          if (!co_await fill()) co_return;
        }
        std::string r2 = next();
        if (!co_await answer(r2)) co_return;
      }
    }
  }

  std::string joined_commands() const {
    std::string r;
    for (const auto& c : commands) r += c + "|";
    return r;
  }
};

Mailbox mb(std::string addr, std::vector<EsmtpParam> params = {}) {
  Mailbox m;
  m.mailbox = std::move(addr);
  m.esmtp = std::move(params);
  return m;
}
EsmtpParam param(std::string k, std::optional<std::string> v = std::nullopt) {
  EsmtpParam p;
  p.keyword = std::move(k);
  p.value = std::move(v);
  return p;
}

struct Flow {
  Mailbox from = mb("alice@example.com");
  std::vector<Mailbox> to = {mb("bob@example.com")};
  std::vector<std::string> pieces = {"Subject: hi\r\n\r\nhello\r\n"};
  bool pipelined = false;     // mail_rcpt()
  bool finish_data = true;    // false: all pieces with last=false, then quit
};

struct Outcome {
  Response mail;
  std::vector<Response> rcpt;
  std::optional<std::vector<Response>> data;
  std::size_t data_calls = 0;
  bool tls = false;
  bool offers_chunking = false;
  bool done = false;
};

Task<void> drive(std::unique_ptr<ByteStream> c, ClientOptions o, Flow f, Outcome* out) {
  SmtpClient cl(std::move(c), o);
  if (f.pipelined) {
    MailRcptResult r = co_await cl.mail_rcpt(f.from, f.to);
    out->mail = r.mail;
    out->rcpt = r.rcpt;
  } else {
    out->mail = co_await cl.mail(f.from);
    if (out->mail.ok()) {
      for (const Mailbox& t : f.to) {
        Response r = co_await cl.rcpt(t);
        out->rcpt.push_back(r);
      }
    }
  }
  for (std::size_t i = 0; i < f.pieces.size(); ++i) {
    bool last = f.finish_data && i + 1 == f.pieces.size();
    std::string_view piece = f.pieces[i];
    auto d = co_await cl.data(piece, last);
    ++out->data_calls;
    if (d) {
      out->data = std::move(d);
      break;
    }
  }
  out->tls = cl.tls();
  out->offers_chunking = cl.server_offers("chunking");
  co_await cl.quit();
  co_await cl.quit();  // twice is fine
  out->done = true;
}

ClientOptions opts(bool lmtp = false) {
  ClientOptions o;
  o.ehlo_host = "gw.example";
  o.lmtp = lmtp;
  o.timeout = 5s;
  return o;
}

Outcome run(FakeServer& fs, Flow f, ClientOptions o = opts(), bool pipe_tls = false) {
  asio::io_context ioc;
  auto [c, s] = make_pipe(ioc.get_executor(), pipe_tls);
  Outcome out;
  spawn(ioc.get_executor(), fs.run(std::move(s)), "fake server");
  spawn(ioc.get_executor(), drive(std::move(c), o, std::move(f), &out), "client");
  run_io(ioc);
  EXPECT_TRUE(out.done);
  EXPECT_TRUE(fs.finished);
  return out;
}

const char* kEhlo = "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 1000\r\n";

// ---- happy path ---------------------------------------------------------------

TEST(SmtpClient, HappyPathExactBytes) {
  FakeServer fs;
  fs.script = {kEhlo, "250 2.1.0 ok\r\n", "250 2.1.5 ok\r\n", "354 go\r\n",
               "250-2.0.0 queued\r\n250 as 123\r\n"};
  Flow f;
  f.from = mb("alice@example.com", {param("BODY", "8BITMIME"), param("SIZE", "100")});
  Outcome o = run(fs, f);
  EXPECT_EQ(fs.received,
            "EHLO gw.example\r\n"
            "MAIL FROM:<alice@example.com> BODY=8BITMIME SIZE=100\r\n"
            "RCPT TO:<bob@example.com>\r\n"
            "DATA\r\n"
            "Subject: hi\r\n\r\nhello\r\n.\r\n"
            "QUIT\r\n");
  EXPECT_EQ(o.mail, Response(250, "2.1.0 ok"));
  ASSERT_EQ(o.rcpt.size(), 1u);
  EXPECT_EQ(o.rcpt[0], Response(250, "2.1.5 ok"));
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 1u);
  EXPECT_EQ((*o.data)[0], Response(250, "2.0.0 queued\nas 123"));  // codes stripped, "\n"
  EXPECT_FALSE(o.tls);
}

TEST(SmtpClient, NullReversePathAndBareCodeReply) {
  FakeServer fs;
  fs.script = {"250 fake\r\n", "250\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
  Flow f;
  f.from = mb("");
  Outcome o = run(fs, f);
  ASSERT_GE(fs.commands.size(), 2u);
  EXPECT_EQ(fs.commands[1], "MAIL FROM:<>");
  EXPECT_EQ(o.mail.code, 250);  // a reply of just "250"
}

// ---- greeting / EHLO ----------------------------------------------------------

TEST(SmtpClient, GreetingRefused) {
  FakeServer fs;
  fs.greeting = "554 5.3.2 go away\r\n";
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(554, "5.3.2 go away"));
  EXPECT_EQ(fs.joined_commands(), "QUIT|");
  ASSERT_TRUE(o.data);  // data() after a failed MAIL: the precondition
  EXPECT_EQ((*o.data)[0].code, 503);
}

TEST(SmtpClient, HeloFallbackWhenEhloRefused) {
  FakeServer fs;
  fs.script = {"502 5.5.2 what\r\n", "250 hi\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
               "250 ok\r\n"};
  Outcome o = run(fs, Flow());
  EXPECT_EQ(fs.joined_commands(),
            "EHLO gw.example|HELO gw.example|MAIL FROM:<alice@example.com>|RCPT "
            "TO:<bob@example.com>|DATA|QUIT|");
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 250);
}

TEST(SmtpClient, HeloFallbackAlsoRefused) {
  FakeServer fs;
  fs.script = {"500 no\r\n", "501 5.5.4 nope\r\n"};
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(501, "5.5.4 nope"));
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|HELO gw.example|QUIT|");
}

TEST(SmtpClient, EhloTempFailureNoFallback) {
  FakeServer fs;
  fs.script = {"421 4.3.2 busy\r\n"};
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(421, "4.3.2 busy"));
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|QUIT|");
}

TEST(SmtpClient, HeloSessionRefusesEsmtpParams) {
  FakeServer fs;
  fs.script = {"500 no\r\n", "250 hi\r\n"};
  Flow f;
  f.from = mb("a@b", {param("BODY", "8BITMIME")});
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 504);
  EXPECT_NE(o.mail.message.find("5.5.4"), std::string::npos);
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|HELO gw.example|QUIT|");
}

TEST(SmtpClient, LmtpUsesLhloWithoutHeloFallback) {
  FakeServer fs;
  fs.script = {"500 5.5.1 no\r\n"};
  Outcome o = run(fs, Flow(), opts(/*lmtp=*/true));
  EXPECT_EQ(o.mail.code, 500);
  EXPECT_EQ(fs.joined_commands(), "LHLO gw.example|QUIT|");
}

// ---- STARTTLS -------------------------------------------------------------------

TEST(SmtpClient, StartTlsWhenOffered) {
  FakeServer fs;
  fs.script = {"250-fake\r\n250 STARTTLS\r\n", "220 go\r\n", "250-fake\r\n250 8BITMIME\r\n",
               "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
  Outcome o = run(fs, Flow(), opts(), /*pipe_tls=*/true);
  EXPECT_EQ(fs.joined_commands(),
            "EHLO gw.example|STARTTLS|EHLO gw.example|MAIL FROM:<alice@example.com>|RCPT "
            "TO:<bob@example.com>|DATA|QUIT|");
  EXPECT_TRUE(fs.tls);
  EXPECT_TRUE(o.tls);
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 250);
}

TEST(SmtpClient, StartTlsRefusedIsTheMailResponse) {
  FakeServer fs;
  fs.script = {"250-fake\r\n250 STARTTLS\r\n", "454 4.7.0 TLS not available\r\n"};
  Outcome o = run(fs, Flow(), opts(), true);
  EXPECT_EQ(o.mail, Response(454, "4.7.0 TLS not available"));
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|STARTTLS|QUIT|");  // no plaintext fallback
}

TEST(SmtpClient, StartTlsNotUsedWhenDisabledOrUnavailable) {
  for (int disabled = 0; disabled < 2; ++disabled) {
    FakeServer fs;
    fs.script = {"250-fake\r\n250 STARTTLS\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
                 "250 ok\r\n"};
    ClientOptions co = opts();
    co.starttls = !disabled;
    // enabled but the stream can't do TLS / disabled on a TLS-capable stream
    Outcome o = run(fs, Flow(), co, /*pipe_tls=*/disabled);
    EXPECT_EQ(fs.commands.at(1), "MAIL FROM:<alice@example.com>");
    EXPECT_FALSE(o.tls);
  }
}

TEST(SmtpClient, StartTlsReplyInjectionRejected) {
  FakeServer fs;
  // Bytes after the 220 in the same read would be processed as if they came
  // over TLS (CVE-2011-0411 style); the client refuses.
  fs.script = {"250-fake\r\n250 STARTTLS\r\n", "220 go\r\n250-injected\r\n250 PIPELINING\r\n"};
  Outcome o = run(fs, Flow(), opts(), true);
  EXPECT_EQ(o.mail.code, 451);
  EXPECT_NE(o.mail.message.find("4.5.0"), std::string::npos) << o.mail.message;
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|STARTTLS|");  // no EHLO, no QUIT
}

// ---- MAIL / RCPT / DATA errors -------------------------------------------------

TEST(SmtpClient, MailRefused) {
  FakeServer fs;
  fs.script = {kEhlo, "550 5.7.1 not you\r\n"};
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(550, "5.7.1 not you"));
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|MAIL FROM:<alice@example.com>|QUIT|");
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 503);
}

TEST(SmtpClient, RcptAfterFailedMailIsPreconditionFailure) {
  FakeServer fs;
  fs.script = {kEhlo, "451 4.3.0 later\r\n"};
  asio::io_context ioc;
  auto [c, s] = make_pipe(ioc.get_executor());
  Response r;
  auto client = [](std::unique_ptr<ByteStream> c, Response* r) -> Task<void> {
    SmtpClient cl(std::move(c), opts());
    Mailbox from = mb("a@b");
    Mailbox to = mb("c@d");
    Response m = co_await cl.mail(from);
    EXPECT_EQ(m.code, 451);
    *r = co_await cl.rcpt(to);
    Response again = co_await cl.mail(from);
    EXPECT_EQ(again.code, 503);
    co_await cl.quit();
  };
  spawn(ioc.get_executor(), fs.run(std::move(s)), "server");
  spawn(ioc.get_executor(), client(std::move(c), &r), "client");
  run_io(ioc);
  EXPECT_EQ(r.code, 503);
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|MAIL FROM:<a@b>|QUIT|");
}

TEST(SmtpClient, SomeRecipientsRefused) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "550 5.1.1 no such user\r\n", "250 ok\r\n", "354 go\r\n",
               "250 ok\r\n"};
  Flow f;
  f.to = {mb("x@example.com"), mb("bob@example.com")};
  Outcome o = run(fs, f);
  ASSERT_EQ(o.rcpt.size(), 2u);
  EXPECT_EQ(o.rcpt[0], Response(550, "5.1.1 no such user"));
  EXPECT_EQ(o.rcpt[1].code, 250);
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 250);
}

TEST(SmtpClient, NoValidRecipients) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "550 5.1.1 no\r\n"};
  Outcome o = run(fs, Flow());
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 1u);
  EXPECT_EQ((*o.data)[0].code, 554);
  EXPECT_EQ(o.data_calls, 1u);
  EXPECT_EQ(fs.received.find("DATA"), std::string::npos);
}

TEST(SmtpClient, DataCommandRefused) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "451 4.3.0 not now\r\n"};
  Flow f;
  f.pieces = {"a\r\n", "b\r\n"};
  Outcome o = run(fs, f);
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(451, "4.3.0 not now"));
  EXPECT_EQ(o.data_calls, 1u);  // the first piece already got the answer
  EXPECT_EQ(fs.joined_commands(),
            "EHLO gw.example|MAIL FROM:<alice@example.com>|RCPT TO:<bob@example.com>|DATA|QUIT|");
}

TEST(SmtpClient, DataFinalReplyRefused) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "552 5.3.4 too big\r\n"};
  Outcome o = run(fs, Flow());
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(552, "5.3.4 too big"));
}

// ---- connection trouble --------------------------------------------------------

TEST(SmtpClient, ConnectionClosedBeforeGreeting) {
  FakeServer fs;
  fs.greeting = "<close>";
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(451, "4.4.2 connection lost (SmtpClient)"));
  ASSERT_TRUE(o.data);
  EXPECT_TRUE((*o.data)[0].temp() || (*o.data)[0].code == 503);
}

TEST(SmtpClient, ConnectionDroppedMidData) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "<close-in-data>"};
  Flow f;
  f.pieces = {"part one\r\n", "part two\r\n", "part three\r\n"};
  Outcome o = run(fs, f);
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 1u);
  EXPECT_EQ((*o.data)[0], Response(451, "4.4.2 connection lost (SmtpClient)"));
  EXPECT_EQ(fs.received.find("QUIT"), std::string::npos);
}

TEST(SmtpClient, SlowServerTimesOut) {
  FakeServer fs;
  fs.script = {kEhlo, "<stall>"};
  ClientOptions co = opts();
  co.timeout = 200ms;
  auto t0 = std::chrono::steady_clock::now();
  Outcome o = run(fs, Flow(), co);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(o.mail, Response(451, "4.4.2 timeout waiting for the server (SmtpClient)"));
  EXPECT_GE(took, 190ms);
  EXPECT_LT(took, 5s);
  EXPECT_TRUE(fs.saw_eof);  // the client closed
  EXPECT_EQ(fs.received.find("QUIT"), std::string::npos);
}

TEST(SmtpClient, MalformedAndOversizedReplies) {
  const char* bad[] = {"hello there\r\n", "25 short\r\n", "250x no separator\r\n",
                       "650 bad class\r\n"};
  for (const char* b : bad) {
    FakeServer fs;
    fs.script = {kEhlo, b};
    Outcome o = run(fs, Flow());
    EXPECT_EQ(o.mail.code, 451) << b;
    EXPECT_NE(o.mail.message.find("4.5.0"), std::string::npos) << o.mail.message;
  }
  {
    FakeServer fs;
    fs.script = {kEhlo, "250 " + std::string(600, 'x') + "\r\n"};
    Outcome o = run(fs, Flow());
    EXPECT_EQ(o.mail.code, 451);
    EXPECT_NE(o.mail.message.find("512"), std::string::npos) << o.mail.message;
  }
  {
    std::string many;
    for (int i = 0; i < 101; ++i) many += "250-line\r\n";
    many += "250 end\r\n";
    FakeServer fs;
    fs.script = {many};
    Outcome o = run(fs, Flow());
    EXPECT_EQ(o.mail.code, 451);
    EXPECT_NE(o.mail.message.find("100"), std::string::npos) << o.mail.message;
  }
  {
    // 512 bytes of text is still fine; LF-only line ends are tolerated.
    FakeServer fs;
    fs.script = {kEhlo, "250 " + std::string(508, 'y') + "\n"};
    Outcome o = run(fs, Flow());
    EXPECT_EQ(o.mail.code, 250);
    EXPECT_EQ(o.mail.message, std::string(508, 'y'));
  }
}

TEST(SmtpClient, InvalidUtf8InRepliesIsReplaced) {
  FakeServer fs;
  fs.script = {kEhlo, "550 caf\xc3\xa9 \xff\xfe bad\r\n"};
  Outcome o = run(fs, Flow());
  EXPECT_EQ(o.mail, Response(550, "caf\xc3\xa9 \xEF\xBF\xBD\xEF\xBF\xBD bad"));
}

TEST(SmtpClient, QuitMidDataJustCloses) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n"};
  Flow f;
  f.pieces = {"half a message\r\n"};
  f.finish_data = false;
  Outcome o = run(fs, f);
  EXPECT_FALSE(o.data);
  EXPECT_TRUE(fs.saw_eof);
  EXPECT_EQ(fs.received.find("QUIT"), std::string::npos);
}

// ---- parameters ------------------------------------------------------------------

TEST(SmtpClient, UnadvertisedParamRefusedWithoutSending) {
  FakeServer fs;
  fs.script = {kEhlo};
  Flow f;
  f.from = mb("a@b", {param("SMTPUTF8")});
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 504);
  EXPECT_NE(o.mail.message.find("5.5.4"), std::string::npos);
  EXPECT_NE(o.mail.message.find("SMTPUTF8"), std::string::npos);
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|QUIT|");
}

TEST(SmtpClient, ParamsDroppedOrKept) {
  FakeServer fs;
  // No DSN, no SIZE, no 8BITMIME, SMTPUTF8 offered.
  fs.script = {"250-fake\r\n250 SMTPUTF8\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
               "250 ok\r\n"};
  Flow f;
  f.from = mb("a@b", {param("SIZE", "5"), param("BODY", "7BIT"), param("RET", "HDRS"),
                      param("ENVID", "x1"), param("SMTPUTF8")});
  f.to = {mb("c@d", {param("NOTIFY", "NEVER"), param("ORCPT", "rfc822;c@d")})};
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 250);
  ASSERT_GE(fs.commands.size(), 3u);
  EXPECT_EQ(fs.commands[1], "MAIL FROM:<a@b> SMTPUTF8");
  EXPECT_EQ(fs.commands[2], "RCPT TO:<c@d>");
}

TEST(SmtpClient, RcptParamCheckSaysRcpt) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n"};
  Flow f;
  f.to = {mb("c@d", {param("XFOO", "1")})};
  Outcome o = run(fs, f);
  ASSERT_EQ(o.rcpt.size(), 1u);
  EXPECT_EQ(o.rcpt[0].code, 504);
  EXPECT_NE(o.rcpt[0].message.find("RCPT parameter XFOO=1"), std::string::npos) << o.rcpt[0].message;
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 554);
}

TEST(SmtpClient, AddressWithLineBreakNeverSent) {
  FakeServer fs;
  fs.script = {kEhlo};
  Flow f;
  f.from = mb("a@b>\r\nRSET");
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 501);
  EXPECT_EQ(fs.joined_commands(), "EHLO gw.example|QUIT|");
}

TEST(SmtpClient, SizeOverServerLimit) {
  FakeServer fs;
  fs.script = {kEhlo};  // SIZE 1000
  Flow f;
  f.from = mb("a@b", {param("SIZE", "1001")});
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 552);
  EXPECT_NE(o.mail.message.find("5.3.4"), std::string::npos);
}

// ---- PIPELINING ----------------------------------------------------------------------

TEST(SmtpClient, MailRcptPipelinedWhenOffered) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok 1\r\n", "550 no 2\r\n", "354 go\r\n", "250 ok\r\n"};
  Flow f;
  f.pipelined = true;
  f.to = {mb("one@x"), mb("two@x")};
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 250);
  ASSERT_EQ(o.rcpt.size(), 2u);
  EXPECT_EQ(o.rcpt[0], Response(250, "ok 1"));
  EXPECT_EQ(o.rcpt[1], Response(550, "no 2"));
  // When the server parsed MAIL, both RCPTs were already there.
  ASSERT_GE(fs.pending_after.size(), 2u);
  EXPECT_EQ(fs.pending_after[1], std::string("RCPT TO:<one@x>\r\nRCPT TO:<two@x>\r\n").size());
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 250);
}

TEST(SmtpClient, MailRcptPipelinedMailFailure) {
  FakeServer fs;
  fs.script = {kEhlo, "550 no\r\n", "503 need mail\r\n"};
  Flow f;
  f.pipelined = true;
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 550);
  ASSERT_EQ(o.rcpt.size(), 1u);
  EXPECT_EQ(o.rcpt[0], Response(503, "5.5.1 failed precondition: MAIL (SmtpClient)"));
  EXPECT_EQ(fs.commands.back(), "QUIT");
}

TEST(SmtpClient, MailRcptSequentialWithoutPipelining) {
  FakeServer fs;
  fs.script = {"250 fake\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
  Flow f;
  f.pipelined = true;
  Outcome o = run(fs, f);
  EXPECT_EQ(o.mail.code, 250);
  ASSERT_GE(fs.pending_after.size(), 2u);
  EXPECT_EQ(fs.pending_after[1], 0u);  // waited for the MAIL reply
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0].code, 250);
}

// ---- BDAT ------------------------------------------------------------------------------

const char* kEhloChunking = "250-fake\r\n250-CHUNKING\r\n250 8BITMIME\r\n";

ClientOptions bdat_opts() {
  ClientOptions o = opts();
  o.enable_bdat = true;
  return o;
}

TEST(SmtpClient, BdatChunksAndLast) {
  FakeServer fs;
  fs.script = {kEhloChunking, "250 ok\r\n", "250 ok\r\n", "250 2.0.0 chunk 1\r\n",
               "250 2.0.0 done\r\n"};
  Flow f;
  f.pieces = {".abc\r\n", "", "de"};  // no stuffing with BDAT; empty pieces skipped
  Outcome o = run(fs, f, bdat_opts());
  EXPECT_TRUE(o.offers_chunking);
  EXPECT_EQ(fs.received,
            "EHLO gw.example\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
            "BDAT 6\r\n.abc\r\nBDAT 2 LAST\r\ndeQUIT\r\n");
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(250, "2.0.0 done"));
}

TEST(SmtpClient, BdatEmptyLastChunk) {
  FakeServer fs;
  fs.script = {kEhloChunking, "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "250 done\r\n"};
  Flow f;
  f.pieces = {"abc", ""};
  Outcome o = run(fs, f, bdat_opts());
  EXPECT_EQ(fs.joined_commands(),
            "EHLO gw.example|MAIL FROM:<alice@example.com>|RCPT TO:<bob@example.com>|BDAT "
            "3|BDAT 0 LAST|QUIT|");
  ASSERT_EQ(fs.bodies.size(), 2u);
  EXPECT_EQ(fs.bodies[0], "abc");
  EXPECT_EQ(fs.bodies[1], "");
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(250, "done"));
}

TEST(SmtpClient, BdatChunkRefusedEndsTheBody) {
  FakeServer fs;
  fs.script = {kEhloChunking, "250 ok\r\n", "250 ok\r\n", "552 5.3.4 too much\r\n"};
  Flow f;
  f.pieces = {"abc", "def", "ghi"};
  Outcome o = run(fs, f, bdat_opts());
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(552, "5.3.4 too much"));
  EXPECT_EQ(o.data_calls, 1u);
  EXPECT_EQ(fs.commands.back(), "QUIT");  // between chunks QUIT is a command
}

TEST(SmtpClient, BdatNotOfferedUsesData) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
  Outcome o = run(fs, Flow(), bdat_opts());
  EXPECT_NE(fs.joined_commands().find("|DATA|"), std::string::npos);
}

// ---- dot-stuffing over the wire ----------------------------------------------------

TEST(SmtpClient, DotStuffingAcrossPieces) {
  struct Case {
    std::vector<std::string> pieces;
    std::string wire;  // body as sent, without the final ".\r\n"
  };
  std::vector<Case> cases = {
      {{".a\r\n"}, "..a\r\n"},
      {{"a\r\n", ".b\r\n"}, "a\r\n..b\r\n"},
      {{"a\r", "\n.b\r\n"}, "a\r\n..b\r\n"},
      {{"a\r\n.", "b\r\n"}, "a\r\n..b\r\n"},
      {{"abc", ".def\r\n"}, "abc.def\r\n"},  // '.' mid-line: untouched
      {{"a\n", "\r\n"}, "a\n\r\n"},          // the LF CRLF boundary keeps every byte
      {{"a\r\n", ".\r\n", "b"}, "a\r\n..\r\nb\r\n"},
      {{"no final crlf"}, "no final crlf\r\n"},
      {{"x\r\n", "", ".."}, "x\r\n...\r\n"},
      {{"bare\n.lf\r\n"}, "bare\n..lf\r\n"},
  };
  for (const Case& c : cases) {
    FakeServer fs;
    fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
    Flow f;
    f.pieces = c.pieces;
    Outcome o = run(fs, f);
    ASSERT_EQ(fs.bodies.size(), 1u);
    EXPECT_EQ(fs.bodies[0], c.wire) << ::testing::PrintToString(c.pieces);
    ASSERT_TRUE(o.data);
    EXPECT_EQ((*o.data)[0].code, 250);
  }
}

TEST(SmtpClient, EmptyBodyAndEmptyLastPiece) {
  FakeServer fs;
  fs.script = {kEhlo, "250 ok\r\n", "250 ok\r\n", "354 go\r\n", "250 ok\r\n"};
  Flow f;
  f.pieces = {"a\r\n", ""};
  Outcome o = run(fs, f);
  EXPECT_NE(fs.received.find("DATA\r\na\r\n.\r\nQUIT"), std::string::npos) << fs.received;
}

// ---- LMTP -------------------------------------------------------------------------------

TEST(SmtpClient, LmtpOneDataResponsePerAcceptedRecipient) {
  FakeServer fs;
  fs.script = {"250-lmtp\r\n250 PIPELINING\r\n", "250 ok\r\n", "250 ok a\r\n",
               "550 5.1.1 no b\r\n", "250 ok c\r\n", "354 go\r\n",
               "250 2.0.0 a delivered\r\n452 4.2.2 c over quota\r\n"};
  Flow f;
  f.to = {mb("a@x"), mb("b@x"), mb("c@x")};
  Outcome o = run(fs, f, opts(true));
  EXPECT_EQ(fs.commands.at(0), "LHLO gw.example");
  ASSERT_EQ(o.rcpt.size(), 3u);
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 2u);
  EXPECT_EQ((*o.data)[0], Response(250, "2.0.0 a delivered"));
  EXPECT_EQ((*o.data)[1], Response(452, "4.2.2 c over quota"));
}

TEST(SmtpClient, LmtpConnectionLostDuringDataResponses) {
  FakeServer fs;
  fs.script = {"250 lmtp\r\n", "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
               "250 ok a\r\n"};  // then QUIT never comes: the fake waits, client times out
  ClientOptions co = opts(true);
  co.timeout = 200ms;
  Flow f;
  f.to = {mb("a@x"), mb("b@x")};
  Outcome o = run(fs, f, co);
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 2u);
  EXPECT_EQ((*o.data)[0].code, 250);
  EXPECT_EQ((*o.data)[1].code, 451);
}

TEST(SmtpClient, LmtpDataRefusedAnswersEveryRecipient) {
  FakeServer fs;
  fs.script = {"250 lmtp\r\n", "250 ok\r\n", "250 ok\r\n", "250 ok\r\n", "554 no\r\n"};
  Flow f;
  f.to = {mb("a@x"), mb("b@x")};
  Outcome o = run(fs, f, opts(true));
  ASSERT_TRUE(o.data);
  ASSERT_EQ(o.data->size(), 2u);
  EXPECT_EQ((*o.data)[1], Response(554, "no"));
}

// ---- over TCP ------------------------------------------------------------------------------

Task<void> tcp_fake(boost::asio::ip::tcp::acceptor& acc, std::shared_ptr<TlsContext> ctx,
                    FakeServer* fs) {
  auto [ec, sock] = co_await acc.async_accept(asio::as_tuple(asio::use_awaitable));
  if (ec) co_return;
  auto s = make_tcp_stream(std::move(sock), ctx, true);
  s->set_timeout(5s);
  co_await fs->run(std::move(s));
}

Task<void> tcp_client(HostPort to, Flow f, Outcome* out) {
  auto ex = co_await asio::this_coro::executor;
  auto c = co_await connect_tcp(ex, to);
  if (!c.ok()) {
    out->mail = Response(400, "connect error " + c.error().message);
    co_return;
  }
  ClientOptions o = opts();
  std::unique_ptr<ByteStream> stream = std::move(*c);
  co_await drive(std::move(stream), o, std::move(f), out);
}

Outcome run_tcp(FakeServer& fs, std::shared_ptr<TlsContext> ctx) {
  asio::io_context ioc;
  boost::asio::ip::tcp::acceptor acc(
      ioc, boost::asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  HostPort to{"127.0.0.1", acc.local_endpoint().port()};
  Outcome out;
  spawn(ioc.get_executor(), tcp_fake(acc, ctx, &fs), "server");
  spawn(ioc.get_executor(), tcp_client(to, Flow(), &out), "client");
  run_io(ioc);
  fs.s.reset();
  return out;
}

TEST(SmtpClientTcp, StartTlsAndDeliveryOverLoopback) {
  const auto& cert = testing::test_cert();
  ASSERT_TRUE(cert.ok);
  auto ctx = TlsContext::server(cert.cert, cert.key);
  ASSERT_TRUE(ctx.ok());
  FakeServer fs;
  fs.script = {"250-fake\r\n250-PIPELINING\r\n250 STARTTLS\r\n", "220 go\r\n",
               "250-fake\r\n250 PIPELINING\r\n", "250 ok\r\n", "250 ok\r\n", "354 go\r\n",
               "250 2.0.0 queued\r\n"};
  Outcome o = run_tcp(fs, *ctx);
  ASSERT_TRUE(o.done);
  EXPECT_TRUE(o.tls);
  EXPECT_TRUE(fs.tls);
  ASSERT_TRUE(o.data);
  EXPECT_EQ((*o.data)[0], Response(250, "2.0.0 queued"));
  ASSERT_EQ(fs.bodies.size(), 1u);
  EXPECT_EQ(fs.bodies[0], "Subject: hi\r\n\r\nhello\r\n");
  EXPECT_EQ(fs.commands.back(), "QUIT");
}

TEST(SmtpClientTcp, TlsHandshakeFailureIsTemporary) {
  // The server says 220 to STARTTLS but has no TLS: the handshake fails.
  FakeServer fs;
  fs.script = {"250-fake\r\n250 STARTTLS\r\n", "220 go\r\n"};
  Outcome o = run_tcp(fs, nullptr);
  ASSERT_TRUE(o.done);
  EXPECT_EQ(o.mail, Response(451, "4.7.5 TLS handshake failed (SmtpClient)"));
  EXPECT_FALSE(fs.tls);
}

TEST(SmtpClientTcp, ConnectRefused) {
  asio::io_context ioc;
  int port;
  {
    boost::asio::ip::tcp::acceptor acc(
        ioc, boost::asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = acc.local_endpoint().port();
  }
  Outcome out;
  HostPort to{"127.0.0.1", port};
  spawn(ioc.get_executor(), tcp_client(to, Flow(), &out), "client");
  run_io(ioc);
  EXPECT_EQ(out.mail.code, 400);
  EXPECT_NE(out.mail.message.find("connect error connect to 127.0.0.1:"), std::string::npos)
      << out.mail.message;
}

}  // namespace
}  // namespace koukan::smtp
