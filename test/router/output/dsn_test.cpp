// router/output/dsn: the produced bytes, parsed structurally as MIME.
#include "router/output/dsn.hpp"

#include <map>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace koukan::router {
namespace {

// --- a small strict MIME reader for the tests --------------------------------

struct Entity {
  std::vector<std::pair<std::string, std::string>> headers;  // name lowercased, unfolded
  std::string body;

  std::vector<std::string> all(std::string_view name) const {
    std::vector<std::string> v;
    for (const auto& [n, val] : headers)
      if (n == name) v.push_back(val);
    return v;
  }
  std::string get(std::string_view name) const {
    auto v = all(name);
    return v.size() == 1 ? v[0] : "<" + std::to_string(v.size()) + " values>";
  }
};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Header fields up to the first CRLF CRLF (CRLF only), then the body.
Entity parse_entity(std::string_view s) {
  Entity e;
  const auto end = s.find("\r\n\r\n");
  EXPECT_NE(end, std::string_view::npos) << "no header/body separator";
  if (end == std::string_view::npos) return e;
  std::string_view h = s.substr(0, end + 2);
  e.body = std::string(s.substr(end + 4));
  while (!h.empty()) {
    const auto eol = h.find("\r\n");
    std::string_view line = h.substr(0, eol);
    h.remove_prefix(eol + 2);
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      EXPECT_FALSE(e.headers.empty()) << "continuation without a field";
      if (!e.headers.empty()) e.headers.back().second += std::string(line);
      continue;
    }
    const auto colon = line.find(':');
    EXPECT_NE(colon, std::string_view::npos) << "not a header field: " << line;
    if (colon == std::string_view::npos) continue;
    std::string value(line.substr(colon + 1));
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    e.headers.emplace_back(lower(std::string(line.substr(0, colon))), value);
  }
  return e;
}

std::string boundary_of(const std::string& content_type) {
  std::smatch m;
  static const std::regex re(R"re(;\s*boundary="([^"]+)")re");
  return std::regex_search(content_type, m, re) ? m[1].str() : std::string();
}

// RFC 2046 §5.1.1: parts between "CRLF--b CRLF" delimiters, closed by "--b--".
std::vector<Entity> split_multipart(const std::string& body, const std::string& b) {
  std::vector<Entity> parts;
  const std::string open = "--" + b + "\r\n";
  const std::string delim = "\r\n--" + b;
  auto pos = body.find(open);
  EXPECT_NE(pos, std::string::npos) << "no opening delimiter";
  if (pos == std::string::npos) return parts;
  EXPECT_TRUE(pos == 0 || body.compare(pos - 2, 2, "\r\n") == 0);
  pos += open.size();
  for (;;) {
    const auto next = body.find(delim, pos);
    EXPECT_NE(next, std::string::npos) << "unterminated part";
    if (next == std::string::npos) return parts;
    parts.push_back(parse_entity(std::string_view(body).substr(pos, next - pos)));
    pos = next + delim.size();
    if (body.compare(pos, 2, "--") == 0) {
      EXPECT_EQ(body.substr(pos), "--\r\n");
      return parts;
    }
    EXPECT_EQ(body.compare(pos, 2, "\r\n"), 0);
    pos += 2;
  }
}

// message/delivery-status body: groups of fields separated by blank lines.
std::vector<Entity> status_groups(const std::string& body) {
  std::vector<Entity> groups;
  std::string_view s = body;
  while (!s.empty()) {
    auto end = s.find("\r\n\r\n");
    std::string_view g = end == std::string_view::npos ? s : s.substr(0, end + 2);
    groups.push_back(parse_entity(std::string(g) + "\r\n"));
    if (end == std::string_view::npos) break;
    s.remove_prefix(end + 4);
  }
  return groups;
}

bool only_crlf(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) return false;
    if (s[i] == '\r' && (i + 1 == s.size() || s[i + 1] != '\n')) return false;
  }
  return true;
}

struct Parsed {
  Entity top;
  std::vector<Entity> parts;
  std::vector<Entity> groups;  // parts[1] fields
};

Parsed parse_dsn(const std::string& bytes) {
  Parsed p;
  EXPECT_TRUE(only_crlf(bytes)) << "bare CR or LF";
  p.top = parse_entity(bytes);
  const std::string b = boundary_of(p.top.get("content-type"));
  EXPECT_FALSE(b.empty());
  p.parts = split_multipart(p.top.body, b);
  if (p.parts.size() >= 2) p.groups = status_groups(p.parts[1].body);
  return p;
}

// --- fixtures ----------------------------------------------------------------

constexpr std::int64_t kArrival = 1'700'000'000;  // Tue, 14 Nov 2023 22:13:20 +0000

DsnEnv fixed_env(std::string id = "Abc_123-xyz") {
  DsnEnv e;
  e.now = [] { return kArrival + 7200; };
  e.unique_id = [id] { return id; };
  return e;
}

DsnInput three_recipients() {
  DsnInput in;
  in.mailer_daemon_mailbox = "mailer-daemon@mx.example.org";
  in.mail_from = "alice@example.com";
  in.recipients = {
      {"bob@example.net", Response(550, "5.1.1 user unknown"), DsnAction::failed},
      {"carol@example.net", Response(550, "mailbox unavailable"), DsnAction::failed},
      {"dave@example.net", Response(451, "4.4.1 connection timed out"), DsnAction::delayed},
  };
  in.arrival_time = kArrival;
  in.last_attempt_time = kArrival + 3600;
  in.will_retry_until = kArrival + 86400;
  in.original_headers =
      "From: alice@example.com\nTo: bob@example.net\nSubject: hi\n"
      "Message-ID: <orig@example.com>\n\nbody must not be copied\n";
  in.original_message_id = "<orig@example.com>";
  return in;
}

// --- tests ---------------------------------------------------------------------

TEST(Dsn, Rfc5322Date) {
  EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(kArrival), "Tue, 14 Nov 2023 22:13:20 +0000");
  EXPECT_EQ(rfc5322_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
}

TEST(Dsn, StatusFromEnhancedCodeOrClass) {
  EXPECT_EQ(dsn_status(Response(550, "5.1.1 user unknown"), DsnAction::failed), "5.1.1");
  EXPECT_EQ(dsn_status(Response(550, "5.7.26"), DsnAction::failed), "5.7.26");
  EXPECT_EQ(dsn_status(Response(550, "mailbox unavailable"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(451, "4.4.1 later"), DsnAction::delayed), "4.4.1");
  EXPECT_EQ(dsn_status(Response(451, "try later"), DsnAction::failed), "4.0.0");
  // Class must match the reply code, and the token must be well formed.
  EXPECT_EQ(dsn_status(Response(550, "4.2.2 full"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(550, "5.1.1234 x"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(550, "5.1.1.1 x"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(550, "5.1.1user"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(550, "5..1 x"), DsnAction::failed), "5.0.0");
  // No SMTP class (e.g. an internal code): from the action.
  EXPECT_EQ(dsn_status(Response(0, "x"), DsnAction::failed), "5.0.0");
  EXPECT_EQ(dsn_status(Response(0, "x"), DsnAction::delayed), "4.0.0");
}

TEST(Dsn, TopLevelHeaders) {
  auto r = build_dsn(three_recipients(), fixed_env());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto p = parse_dsn(*r);
  EXPECT_EQ(p.top.get("from"), "Mail Delivery Subsystem <mailer-daemon@mx.example.org>");
  EXPECT_EQ(p.top.get("to"), "<alice@example.com>");
  EXPECT_EQ(p.top.get("subject"), "Delivery Status Notification (failure)");
  EXPECT_EQ(p.top.get("date"), "Wed, 15 Nov 2023 00:13:20 +0000");
  EXPECT_EQ(p.top.get("message-id"), "<Abc_123-xyz@mx.example.org>");
  EXPECT_TRUE(std::regex_match(p.top.get("message-id"), std::regex("<[^<>@ ]+@[^<>@ ]+>")));
  EXPECT_EQ(p.top.get("in-reply-to"), "<orig@example.com>");
  EXPECT_EQ(p.top.get("references"), "<orig@example.com>");
  EXPECT_EQ(p.top.get("auto-submitted"), "auto-replied");
  EXPECT_EQ(p.top.get("mime-version"), "1.0");
  const std::string ct = p.top.get("content-type");
  EXPECT_TRUE(ct.starts_with("multipart/report;")) << ct;
  EXPECT_NE(ct.find("; report-type=delivery-status;"), std::string::npos) << ct;
  EXPECT_EQ(ct.find("report_type"), std::string::npos);
  EXPECT_EQ(r->find("\r\n\r\n"), r->find("This is a MIME") - 4);  // preamble after headers
}

TEST(Dsn, PartsAndPerRecipientFields) {
  auto r = build_dsn(three_recipients(), fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_TRUE(p.parts[0].get("content-type").starts_with("text/plain"));
  EXPECT_NE(p.parts[0].body.find("bob@example.net>: 550 5.1.1 user unknown"), std::string::npos);
  EXPECT_NE(p.parts[0].body.find("delayed"), std::string::npos);
  EXPECT_EQ(p.parts[1].get("content-type"), "message/delivery-status");
  EXPECT_EQ(p.parts[2].get("content-type"), "text/rfc822-headers");

  ASSERT_EQ(p.groups.size(), 4u);
  EXPECT_EQ(p.groups[0].get("reporting-mta"), "dns; mx.example.org");
  EXPECT_EQ(p.groups[0].get("arrival-date"), "Tue, 14 Nov 2023 22:13:20 +0000");

  const auto& bob = p.groups[1];
  EXPECT_EQ(bob.get("final-recipient"), "rfc822; bob@example.net");
  EXPECT_EQ(bob.get("action"), "failed");
  EXPECT_EQ(bob.get("status"), "5.1.1");
  EXPECT_EQ(bob.get("diagnostic-code"), "smtp; 550 5.1.1 user unknown");
  EXPECT_EQ(bob.get("last-attempt-date"), "Tue, 14 Nov 2023 23:13:20 +0000");
  EXPECT_TRUE(bob.all("will-retry-until").empty());

  const auto& carol = p.groups[2];
  EXPECT_EQ(carol.get("final-recipient"), "rfc822; carol@example.net");
  EXPECT_EQ(carol.get("action"), "failed");
  EXPECT_EQ(carol.get("status"), "5.0.0");
  EXPECT_EQ(carol.get("diagnostic-code"), "smtp; 550 mailbox unavailable");

  const auto& dave = p.groups[3];
  EXPECT_EQ(dave.get("final-recipient"), "rfc822; dave@example.net");
  EXPECT_EQ(dave.get("action"), "delayed");
  EXPECT_EQ(dave.get("status"), "4.4.1");
  EXPECT_EQ(dave.get("diagnostic-code"), "smtp; 451 4.4.1 connection timed out");
  EXPECT_EQ(dave.get("will-retry-until"), "Wed, 15 Nov 2023 22:13:20 +0000");
}

TEST(Dsn, OriginalHeadersCopiedWithCrlfAndWithoutBody) {
  auto r = build_dsn(three_recipients(), fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body,
            "From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hi\r\n"
            "Message-ID: <orig@example.com>\r\n");
  EXPECT_EQ(r->find("body must not be copied"), std::string::npos);
}

TEST(Dsn, TruncatedHeadersStillEndWithCrlf) {
  auto in = three_recipients();
  in.original_headers = "From: alice@example.com\r\nSubject: a very long sub";
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body, "From: alice@example.com\r\nSubject: a very long sub\r\n");
}

TEST(Dsn, NoOriginalHeadersNoPart3) {
  auto in = three_recipients();
  in.original_headers.clear();
  in.original_message_id.reset();
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  ASSERT_EQ(p.parts.size(), 2u);
  EXPECT_EQ(r->find("rfc822-headers"), std::string::npos);
  EXPECT_TRUE(p.top.all("in-reply-to").empty());
  EXPECT_TRUE(p.top.all("references").empty());
}

TEST(Dsn, OnlyDelayedSaysDelay) {
  auto in = three_recipients();
  in.recipients.erase(in.recipients.begin(), in.recipients.begin() + 2);
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  EXPECT_EQ(p.top.get("subject"), "Delivery Status Notification (delay)");
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[1].get("action"), "delayed");
  EXPECT_EQ(p.parts[0].body.find("could not be delivered"), std::string::npos);
}

TEST(Dsn, CrlfInjectionNeutralised) {
  DsnInput in;
  in.mailer_daemon_mailbox = "mailer-daemon@mx.example.org\r\nX-Evil: 1";
  in.mail_from = "alice@example.com>\r\nBcc: victim@example.org\r\n\r\nhello";
  in.recipients = {
      {"bob@example.net\r\nAction: delivered\nStatus: 2.0.0", Response(550, "5.1.1 no\r\n\r\n--x\r\nContent-Type: text/html"),
       DsnAction::failed},
  };
  in.arrival_time = kArrival;
  in.last_attempt_time = kArrival;
  in.original_headers = "Subject: x\r\n";
  in.original_message_id = "<id@x>\r\nBcc: victim2@example.org";
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  for (const char* name : {"bcc", "x-evil", "x"}) {
    EXPECT_TRUE(p.top.all(name).empty()) << name;
  }
  EXPECT_EQ(p.top.all("to").size(), 1u);
  EXPECT_EQ(p.top.all("in-reply-to").size(), 1u);
  // The injected text stays inside one header value.
  EXPECT_NE(p.top.get("to").find("Bcc: victim@example.org"), std::string::npos);
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[1].get("content-type"), "message/delivery-status");
  ASSERT_EQ(p.groups.size(), 2u);
  EXPECT_EQ(p.groups[1].all("action").size(), 1u);
  EXPECT_EQ(p.groups[1].get("action"), "failed");
  EXPECT_EQ(p.groups[1].all("status").size(), 1u);
  EXPECT_EQ(p.groups[1].get("status"), "5.1.1");
  EXPECT_EQ(p.groups[1].get("final-recipient"),
            "rfc822; bob@example.net  Action: delivered Status: 2.0.0");
  EXPECT_TRUE(p.groups[1].get("diagnostic-code").starts_with("smtp; 550 5.1.1 no"));
  // No header line other than the ones we wrote.
  for (const auto& [n, v] : p.groups[1].headers) {
    EXPECT_TRUE(n == "final-recipient" || n == "action" || n == "status" ||
                n == "diagnostic-code" || n == "last-attempt-date")
        << n;
  }
}

TEST(Dsn, BoundaryAvoidsContent) {
  auto in = three_recipients();
  // The fixed id source always returns "abc": its boundary is in the headers.
  in.original_headers = "Subject: --=_koukan_abc\r\nX: =_koukan_abc_0\r\n";
  auto r = build_dsn(in, fixed_env("abc"));
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  const std::string b = boundary_of(p.top.get("content-type"));
  EXPECT_EQ(in.original_headers.find(b), std::string::npos) << b;
  ASSERT_EQ(p.parts.size(), 3u);
  EXPECT_EQ(p.parts[2].body, in.original_headers);
}

TEST(Dsn, LongDiagnosticTruncated) {
  auto in = three_recipients();
  in.recipients[0].response = Response(550, "5.1.1 " + std::string(5000, 'x'));
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  std::string_view s = *r;
  std::size_t longest = 0;
  for (std::size_t pos = 0; pos < s.size();) {
    const auto eol = s.find("\r\n", pos);
    longest = std::max(longest, eol - pos);
    pos = eol + 2;
  }
  EXPECT_LE(longest, 998u);
}

TEST(Dsn, NonAsciiRecipientUsesUtf8Type) {
  auto in = three_recipients();
  in.recipients.resize(1);
  in.recipients[0].address = "j\xc3\xb6rg@example.net";
  auto r = build_dsn(in, fixed_env());
  ASSERT_TRUE(r.ok());
  const auto p = parse_dsn(*r);
  EXPECT_EQ(p.groups[1].get("final-recipient"), "utf-8; j\xc3\xb6rg@example.net");
  EXPECT_NE(p.parts[0].get("content-type").find("charset=utf-8"), std::string::npos);
}

TEST(Dsn, RefusesBadInput) {
  auto in = three_recipients();
  in.mail_from = "";
  EXPECT_FALSE(build_dsn(in, fixed_env()).ok());  // never bounce a bounce
  in = three_recipients();
  in.mailer_daemon_mailbox = "\r\n";
  EXPECT_FALSE(build_dsn(in, fixed_env()).ok());
  in = three_recipients();
  in.recipients.clear();
  EXPECT_FALSE(build_dsn(in, fixed_env()).ok());
}

TEST(Dsn, DefaultEnvGivesUniqueIds) {
  auto a = build_dsn(three_recipients());
  auto b = build_dsn(three_recipients());
  ASSERT_TRUE(a.ok() && b.ok());
  const auto pa = parse_dsn(*a), pb = parse_dsn(*b);
  EXPECT_NE(pa.top.get("message-id"), pb.top.get("message-id"));
  EXPECT_TRUE(std::regex_match(pa.top.get("message-id"),
                               std::regex("<[A-Za-z0-9_-]+@mx\\.example\\.org>")));
  EXPECT_EQ(pa.parts.size(), 3u);
}

}  // namespace
}  // namespace koukan::router
