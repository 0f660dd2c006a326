// Pure SMTP server helpers: path/param parsing, reply formatting, the DATA
// decoder at every split point, base64, AuthSecrets.
#include "common/smtp/server_protocol.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <algorithm>
#include <random>

#include "common/smtp/server_session.hpp"

namespace koukan::smtp::server {
namespace {

TEST(ServerProtocol, SplitCommand) {
  auto c = split_command("mail FROM:<a@b>  ");
  EXPECT_EQ(c.verb, "MAIL");
  EXPECT_EQ(c.arg, "FROM:<a@b>");
  c = split_command("QUIT");
  EXPECT_EQ(c.verb, "QUIT");
  EXPECT_EQ(c.arg, "");
}

TEST(ServerProtocol, PathArg) {
  auto p = parse_path_arg("FROM:<a@b.c>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::ok);
  EXPECT_EQ(p.address, "a@b.c");
  p = parse_path_arg("from: <>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::ok);
  EXPECT_EQ(p.address, "");
  p = parse_path_arg("TO:<>", "TO:", false);
  EXPECT_EQ(p.status, PathStatus::bad_address);
  p = parse_path_arg("TO:<Postmaster>", "TO:", false);
  EXPECT_EQ(p.status, PathStatus::ok);
  p = parse_path_arg("FROM:<postmaster>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::bad_address);
  p = parse_path_arg("FROM:<@r1.example,@r2.example:u@d.example>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::ok);
  EXPECT_EQ(p.address, "u@d.example");
  p = parse_path_arg("FROM:<\"a >b\"@d.example> SIZE=10 smtputf8 body=8BITMIME", "FROM:", true);
  ASSERT_EQ(p.status, PathStatus::ok);
  EXPECT_EQ(p.address, "\"a >b\"@d.example");
  ASSERT_EQ(p.params.size(), 3u);
  EXPECT_EQ(p.params[0], (EsmtpParam{"SIZE", "10"}));
  EXPECT_EQ(p.params[1], (EsmtpParam{"SMTPUTF8", std::nullopt}));
  EXPECT_EQ(p.params[2], (EsmtpParam{"BODY", "8BITMIME"}));
  p = parse_path_arg("FROM:<δοκιμή@παράδειγμα.δοκιμή>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::ok);
  p = parse_path_arg("FROM:<a@[192.0.2.1]>", "FROM:", true);
  EXPECT_EQ(p.status, PathStatus::ok);

  EXPECT_EQ(parse_path_arg("FROM:a@b", "FROM:", true).status, PathStatus::syntax);
  EXPECT_EQ(parse_path_arg("FROM:<a@b", "FROM:", true).status, PathStatus::syntax);
  EXPECT_EQ(parse_path_arg("FROM:<a@b>x", "FROM:", true).status, PathStatus::syntax);
  EXPECT_EQ(parse_path_arg("TO:<a@b>", "FROM:", true).status, PathStatus::syntax);
  EXPECT_EQ(parse_path_arg("FROM", "FROM:", true).status, PathStatus::syntax);
  EXPECT_EQ(parse_path_arg("FROM:<\"a@b>", "FROM:", true).status, PathStatus::syntax);  // '>' quoted
  for (const char* bad : {"FROM:<a>", "FROM:<a@>", "FROM:<@b>", "FROM:<a..b@c>", "FROM:<.a@c>",
                          "FROM:<a b@c>", "FROM:<a@b..c>", "FROM:<a@b c>", "FROM:<a@[]>",
                          "FROM:<@x:>", "FROM:<a@b@c>", "FROM:<a(b@c>"})
    EXPECT_EQ(parse_path_arg(bad, "FROM:", true).status, PathStatus::bad_address) << bad;
  for (const char* bad : {"FROM:<a@b> =x", "FROM:<a@b> K=", "FROM:<a@b> -K", "FROM:<a@b> K=a=b",
                          "FROM:<a@b> K\x01"})
    EXPECT_EQ(parse_path_arg(bad, "FROM:", true).status, PathStatus::bad_params) << bad;
}

TEST(ServerProtocol, FormatReply) {
  EXPECT_EQ(format_reply(250, "2.0.0 OK"), "250 2.0.0 OK\r\n");
  EXPECT_EQ(format_reply(250, ""), "250\r\n");
  EXPECT_EQ(format_reply(550, "5.7.1 one\ntwo\r\nthree\n"), "550-5.7.1 one\r\n550-two\r\n550 three\r\n");
  EXPECT_EQ(format_reply(451, "a\x01" "b\rc"), "451 a b c\r\n");
  std::string longtext(1200, 'x');
  std::string r = format_reply(250, longtext);
  EXPECT_EQ(r, "250-" + std::string(506, 'x') + "\r\n250-" + std::string(506, 'x') + "\r\n250 " +
                   std::string(188, 'x') + "\r\n");
}

TEST(ServerProtocol, Sanitize) {
  EXPECT_EQ(sanitize("AB\x01\xff"), "AB??");
  EXPECT_EQ(sanitize(std::string(100, 'a'), 4), "aaaa...");
}

struct Decoded {
  std::string out;
  std::size_t consumed = 0;
  bool done = false, bare = false, long_line = false;
};

// Feeds `in` split at the given cut points (and with a small output cap).
Decoded decode(std::string_view in, std::vector<std::size_t> cuts, std::size_t cap = 1 << 20,
               std::size_t max_line = 1000) {
  DotDecoder d(max_line);
  Decoded r;
  std::size_t start = 0;
  cuts.push_back(in.size());
  for (std::size_t c : cuts) {
    std::string_view part = in.substr(start, c - start);
    while (!part.empty() && !d.done()) {
      std::string piece;
      std::size_t n = d.feed(part, &piece, cap);
      EXPECT_LE(piece.size(), cap);
      r.out += piece;
      part.remove_prefix(n);
      r.consumed += n;
    }
    start = c;
  }
  r.done = d.done();
  r.bare = d.bare_lf_or_cr();
  r.long_line = d.line_too_long();
  EXPECT_EQ(d.size(), r.out.size());
  return r;
}

TEST(ServerProtocol, DotDecoderBasics) {
  auto r = decode(".\r\n", {});
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out, "");
  r = decode("a\r\n..b\r\n...\r\n.\r\nNEXT", {});
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out, "a\r\n.b\r\n..\r\n");
  EXPECT_EQ(r.consumed, 16u);  // stops after the end marker
  EXPECT_FALSE(r.bare);
  r = decode("a\n.\nb\r.\rc\r\n.\r\n", {});
  EXPECT_TRUE(r.done);
  EXPECT_TRUE(r.bare);
  EXPECT_EQ(r.out, "a\n.\nb\r.\rc\r\n");
  r = decode("x\r\n.\rz\r\n.\r\n", {});
  EXPECT_TRUE(r.bare);
  EXPECT_TRUE(r.done);
  r = decode("no end\r\n.", {});
  EXPECT_FALSE(r.done);
  r = decode("\r\n.\r\n", {});
  EXPECT_TRUE(r.done);
  EXPECT_EQ(r.out, "\r\n");
}

TEST(ServerProtocol, DotDecoderLineLength) {
  // 8 octets incl. CRLF is the limit; the stuffing dot does not count.
  EXPECT_FALSE(decode("123456\r\n..23456\r\n.\r\n", {}, 1 << 20, 8).long_line);
  EXPECT_TRUE(decode("1234567\r\n.\r\n", {}, 1 << 20, 8).long_line);
}

TEST(ServerProtocol, DotDecoderEverySplit) {
  const std::string in = "Subject: x\r\n\r\n..dot\r\n.\r.\r\nx\r\n..\r\n\r\n.\r\nTAIL";
  Decoded whole = decode(in, {});
  ASSERT_TRUE(whole.done);
  for (std::size_t i = 0; i <= in.size(); ++i) {
    for (std::size_t j = i; j <= in.size(); j += 3) {
      for (std::size_t cap : {1u, 2u, 5u, 1000u}) {
        Decoded r = decode(in, {i, j}, cap);
        ASSERT_EQ(r.out, whole.out) << i << " " << j << " cap " << cap;
        ASSERT_EQ(r.consumed, whole.consumed);
        ASSERT_EQ(r.bare, whole.bare);
        ASSERT_TRUE(r.done);
      }
    }
  }
}

TEST(ServerProtocol, DotDecoderRandomSplitsMatchReference) {
  std::mt19937 rng(7);
  const char alphabet[] = {'a', '.', '\r', '\n'};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string in;
    std::size_t len = rng() % 40;
    for (std::size_t i = 0; i < len; ++i) in += alphabet[rng() % 4];
    in += "\r\n.\r\n";
    // Reference: the first CRLF.CRLF (or .CRLF at the start) ends the data.
    std::string framed = "\r\n" + in;
    std::size_t end = framed.find("\r\n.\r\n");
    std::string body = framed.substr(2, end);  // keeps the CRLF before the '.'
    std::string ref;
    bool bol = true;
    for (std::size_t i = 0; i < body.size(); ++i) {
      if (bol && body[i] == '.') {
        bol = false;
        continue;
      }
      ref += body[i];
      bol = i > 0 && body[i] == '\n' && body[i - 1] == '\r';
    }
    std::vector<std::size_t> cuts;
    for (std::size_t k = 0; k < 3; ++k) cuts.push_back(rng() % (in.size() + 1));
    std::sort(cuts.begin(), cuts.end());
    Decoded r = decode(in, cuts, 1 + rng() % 5);
    ASSERT_TRUE(r.done) << in;
    ASSERT_EQ(r.out, ref) << testing::PrintToString(in);
  }
}

TEST(ServerProtocol, Base64) {
  EXPECT_EQ(base64_encode(std::string("\0user\0pass", 10)), "AHVzZXIAcGFzcw==");
  EXPECT_EQ(*base64_decode("AHVzZXIAcGFzcw=="), std::string("\0user\0pass", 10));
  EXPECT_EQ(*base64_decode(""), "");
  EXPECT_EQ(*base64_decode("Zm9vYg=="), "foob");
  EXPECT_EQ(*base64_decode("Zm9vYmE="), "fooba");
  EXPECT_EQ(*base64_decode("Zm9vYmFy"), "foobar");
  for (const char* bad : {"Zm9", "Zm9v!mFy", "Z===", "Zm=v", "Zm9vYg==Zm9v", "=", "Zm9v YmFy"})
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  std::mt19937 rng(3);
  for (int i = 0; i < 200; ++i) {
    std::string s;
    for (std::size_t k = rng() % 20; k > 0; --k) s += static_cast<char>(rng());
    EXPECT_EQ(*base64_decode(base64_encode(s)), s);
  }
}

// sha256("secret")
constexpr const char* kSecretHash = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

TEST(AuthSecrets, ParseAndCheck) {
  auto s = AuthSecrets::parse(std::string("{\"app\": \"") + kSecretHash + "\", \"Other\": \"" +
                              std::string(64, 'A') + "\"}");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->size(), 2u);
  EXPECT_TRUE(s->check("app", "secret"));
  EXPECT_FALSE(s->check("app", "Secret"));
  EXPECT_FALSE(s->check("app", ""));
  EXPECT_FALSE(s->check("nobody", "secret"));
  EXPECT_FALSE(s->check("APP", "secret"));
}

TEST(AuthSecrets, Errors) {
  auto l = AuthSecrets::parse(std::string("[[\"app\", \"") + kSecretHash + "\"]]");
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("got an array"), std::string::npos) << l.error().message;
  auto v = AuthSecrets::parse("{\"app\": 5}");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("user 'app'"), std::string::npos);
  auto h = AuthSecrets::parse("{\"app\": \"abc\"}");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("64 hex digits"), std::string::npos);
  auto j = AuthSecrets::parse("{nope");
  ASSERT_FALSE(j.ok());
  EXPECT_NE(j.error().message.find("invalid json"), std::string::npos);
  EXPECT_FALSE(AuthSecrets::parse("\"x\"").ok());
}

TEST(AuthSecrets, LoadNamesTheFile) {
  auto missing = AuthSecrets::load("/nonexistent/secrets.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/secrets.json"), std::string::npos);
  std::string path = testing::TempDir() + "/koukan_auth_secrets_test.json";
  {
    std::ofstream f(path);
    f << "[]";
  }
  auto bad = AuthSecrets::load(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find(path), std::string::npos);
  {
    std::ofstream f(path);
    f << "{\"app\": \"" << kSecretHash << "\"}";
  }
  auto good = AuthSecrets::load(path);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE(good->check("app", "secret"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace koukan::smtp::server
