// The SMTP client's pure pieces: streaming dot-stuffer (every split of many
// bodies against a one-shot reference and a round trip through
// un-stuffing), reply-line parsing, UTF-8 sanitising, EHLO parsing and the
// ESMTP parameter check.
#include <gtest/gtest.h>

#include <random>

#include "common/smtp/client_codec.hpp"

namespace koukan::smtp::client_detail {
namespace {

std::string reference_stuff(std::string_view body) {
  std::string out;
  bool ls = true;
  for (char c : body) {
    if (ls && c == '.') out.push_back('.');
    out.push_back(c);
    ls = c == '\n';
  }
  return out;
}

// What a server does: drop the first '.' of a line starting with '.'.
std::string unstuff(std::string_view wire) {
  std::string out;
  bool ls = true;
  for (char c : wire) {
    if (ls && c == '.') {
      ls = false;
      continue;
    }
    out.push_back(c);
    ls = c == '\n';
  }
  return out;
}

std::string stuff_pieces(const std::vector<std::string_view>& pieces, DotStuffer& d) {
  std::string wire, scratch;
  for (auto p : pieces) {
    if (d.stuff(p, scratch)) wire += scratch;
    else wire.append(p);
  }
  return wire;
}

TEST(DotStuffer, EverySplitMatchesTheReference) {
  std::mt19937 rng(42);
  const char alphabet[] = {'.', '\r', '\n', 'a'};
  for (int iter = 0; iter < 400; ++iter) {
    std::string body;
    int len = static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) body.push_back(alphabet[rng() % 4]);
    std::string ref = reference_stuff(body);
    for (std::size_t i = 0; i <= body.size(); ++i) {
      for (std::size_t j = i; j <= body.size(); ++j) {
        std::string_view b(body);
        std::vector<std::string_view> pieces = {b.substr(0, i), b.substr(i, j - i), b.substr(j)};
        DotStuffer d;
        std::string wire = stuff_pieces(pieces, d);
        ASSERT_EQ(wire, ref) << "body=" << ::testing::PrintToString(body) << " i=" << i << " j=" << j;
        ASSERT_EQ(unstuff(wire), body);
        ASSERT_EQ(d.bytes_in(), body.size());
        bool crlf = body.size() >= 2 && body.substr(body.size() - 2) == "\r\n";
        ASSERT_EQ(d.terminator(), body.empty() || crlf ? ".\r\n" : "\r\n.\r\n") << body;
      }
    }
  }
}

TEST(DotStuffer, NoCopyWhenNothingToStuff) {
  DotStuffer d;
  std::string out = "untouched";
  EXPECT_FALSE(d.stuff("abc\r\ndef.\r\n", out));
  EXPECT_EQ(out, "untouched");
  EXPECT_TRUE(d.stuff(".x", out));
  EXPECT_EQ(out, "..x");
  EXPECT_FALSE(d.stuff(".y", out));  // mid-line now
  EXPECT_EQ(d.terminator(), "\r\n.\r\n");
}

TEST(ReplyLine, Parse) {
  auto a = parse_reply_line("250-first");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->code, 250);
  EXPECT_FALSE(a->last);
  EXPECT_EQ(a->text, "first");
  auto b = parse_reply_line("554 5.7.1 no");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->last);
  EXPECT_EQ(b->text, "5.7.1 no");
  auto c = parse_reply_line("220");
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->last);
  EXPECT_EQ(c->text, "");
  for (const char* bad : {"", "25", "2500", "abc def", "199 x", "600 x", "2x0 y", "250_x"})
    EXPECT_FALSE(parse_reply_line(bad)) << bad;
}

TEST(Utf8, Sanitize) {
  EXPECT_EQ(sanitize_utf8("plain"), "plain");
  EXPECT_EQ(sanitize_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(sanitize_utf8("a\xff"), "a" + r);
  EXPECT_EQ(sanitize_utf8("\xc3"), r);                  // truncated
  EXPECT_EQ(sanitize_utf8("\xc0\xaf"), r + r);          // overlong
  EXPECT_EQ(sanitize_utf8("\xed\xa0\x80"), r + r + r);  // surrogate
  EXPECT_EQ(sanitize_utf8(std::string_view("a\0b", 3)), "a" + r + "b");
}

TEST(Extensions, ParseAndSize) {
  auto e = Extensions::parse({"mx.example greets you", "size 1000", "8bitmime", "AUTH PLAIN LOGIN",
                              " PIPELINING "});
  EXPECT_TRUE(e.has("SIZE"));
  EXPECT_TRUE(e.has("8BITMIME"));
  EXPECT_TRUE(e.has("pipelining"));
  EXPECT_FALSE(e.has("MX.EXAMPLE"));
  ASSERT_TRUE(e.param("auth"));
  EXPECT_EQ(*e.param("auth"), "PLAIN LOGIN");
  EXPECT_EQ(e.size_limit(), 1000u);
  EXPECT_EQ(Extensions::parse({"x", "SIZE 0"}).size_limit(), std::nullopt);
  EXPECT_EQ(Extensions::parse({"x", "SIZE"}).size_limit(), std::nullopt);
  EXPECT_EQ(Extensions::parse({"x", "SIZE lots"}).size_limit(), std::nullopt);
  EXPECT_EQ(Extensions::parse({"x"}).size_limit(), std::nullopt);
}

EsmtpParam P(std::string k, std::optional<std::string> v = std::nullopt) {
  EsmtpParam p;
  p.keyword = std::move(k);
  p.value = std::move(v);
  return p;
}

std::string check(std::vector<EsmtpParam> ps, std::vector<std::string> ehlo, bool bdat = false) {
  ehlo.insert(ehlo.begin(), "server");
  auto e = Extensions::parse(ehlo);
  auto r = check_params(ps, e, bdat, "MAIL");
  if (r.error) return std::to_string(r.error->code) + " " + r.error->message;
  return "ok:" + r.params;
}

TEST(ParamCheck, Body) {
  EXPECT_EQ(check({P("BODY", "7BIT")}, {}), "ok:");                         // dropped, never refused
  EXPECT_EQ(check({P("BODY", "7BIT")}, {"8BITMIME"}), "ok: BODY=7BIT");
  EXPECT_EQ(check({P("BODY", "8BITMIME")}, {"8BITMIME"}), "ok: BODY=8BITMIME");
  EXPECT_EQ(check({P("BODY", "8BITMIME")}, {}),
            "504 5.5.4 MAIL parameter BODY=8BITMIME not advertised by the server (SmtpClient)");
  EXPECT_EQ(check({P("BODY", "BINARYMIME")}, {"BINARYMIME", "CHUNKING"}, true), "ok: BODY=BINARYMIME");
  EXPECT_EQ(check({P("BODY", "BINARYMIME")}, {"BINARYMIME"}, false).substr(0, 3), "504");
  EXPECT_EQ(check({P("BODY", "WEIRD")}, {}).substr(0, 3), "504");
}

TEST(ParamCheck, Size) {
  EXPECT_EQ(check({P("SIZE", "5000"), P("BODY", "8BITMIME")}, {"8BITMIME"}),
            "ok: BODY=8BITMIME");  // dropped without SIZE; the next one is kept
  EXPECT_EQ(check({P("SIZE", "99999999999")}, {"SIZE 0"}), "ok: SIZE=99999999999");
  EXPECT_EQ(check({P("SIZE", "10")}, {"SIZE"}), "ok: SIZE=10");
  EXPECT_EQ(check({P("SIZE", "10")}, {"SIZE 10"}), "ok: SIZE=10");
  EXPECT_EQ(check({P("SIZE", "11")}, {"SIZE 10"}),
            "552 5.3.4 message size 11 exceeds the server's limit 10 (SmtpClient)");
  EXPECT_EQ(check({P("SIZE", "x")}, {"SIZE 10"}).substr(0, 3), "501");
  EXPECT_EQ(check({P("SIZE")}, {"SIZE 10"}).substr(0, 3), "501");
}

TEST(ParamCheck, DsnDroppedWithoutDsn) {
  EXPECT_EQ(check({P("RET", "HDRS"), P("ENVID", "abc")}, {}), "ok:");
  EXPECT_EQ(check({P("RET", "HDRS"), P("ENVID", "abc")}, {"DSN"}), "ok: RET=HDRS ENVID=abc");
  EXPECT_EQ(check({P("NOTIFY", "NEVER"), P("ORCPT", "rfc822;a@b")}, {"DSN"}),
            "ok: NOTIFY=NEVER ORCPT=rfc822;a@b");
}

TEST(ParamCheck, OthersMustBeAdvertised) {
  EXPECT_EQ(check({P("SMTPUTF8")}, {"SMTPUTF8"}), "ok: SMTPUTF8");
  EXPECT_EQ(check({P("SMTPUTF8")}, {}),
            "504 5.5.4 MAIL parameter SMTPUTF8 not advertised by the server (SmtpClient)");
  EXPECT_EQ(check({P("AUTH", "<>")}, {"AUTH PLAIN"}), "ok: AUTH=<>");
  EXPECT_EQ(check({P("MT-PRIORITY", "3")}, {}).substr(0, 3), "504");
  // First failure wins; nothing half-built leaks out.
  auto e = Extensions::parse({"s", "8BITMIME"});
  auto r = check_params({P("BODY", "8BITMIME"), P("XFOO")}, e, false, "RCPT");
  ASSERT_TRUE(r.error);
  EXPECT_NE(r.error->message.find("RCPT parameter XFOO"), std::string::npos);
  EXPECT_EQ(r.params, "");
}

TEST(ParamCheck, UnsafeBytesRefused) {
  EXPECT_EQ(check({P("XFOO", "a b")}, {"XFOO"}).substr(0, 3), "501");
  EXPECT_EQ(check({P("XFOO", "a\r\nRSET")}, {"XFOO"}).substr(0, 3), "501");
  EXPECT_EQ(check({P("")}, {}).substr(0, 3), "501");
  EXPECT_TRUE(check_address("a\r\n@b"));
  EXPECT_TRUE(check_address("a>b"));
  EXPECT_FALSE(check_address("\"john doe\"@example.com"));
  EXPECT_FALSE(check_address("j\xc3\xb6rg@example.com"));
  EXPECT_FALSE(check_address(""));
}

}  // namespace
}  // namespace koukan::smtp::client_detail
