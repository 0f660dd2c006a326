#include "router/output/dsn.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "common/base/ids.hpp"

namespace koukan::router {

const char* dsn_action_name(DsnAction a) {
  return a == DsnAction::delayed ? "delayed" : "failed";
}

DsnEnv DsnEnv::system() {
  DsnEnv e;
  e.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
  e.unique_id = [] { return random_rest_id(16); };  // URL-safe base64: atext and bchars
  return e;
}

std::string rfc5322_date(std::int64_t unix_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday % 7],
                tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string header_safe(std::string_view v, std::size_t max_len) {
  std::string out;
  out.reserve(std::min(v.size(), max_len));
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(u < 0x20 || u == 0x7f ? ' ' : c);
  }
  // Trailing/leading blanks from stripped line breaks are noise.
  const auto b = out.find_first_not_of(' ');
  if (b == std::string::npos) return {};
  out.erase(0, b);
  out.erase(out.find_last_not_of(' ') + 1);
  if (out.size() > max_len) {
    out.resize(max_len > 3 ? max_len - 3 : max_len);
    if (max_len > 3) out += "...";
  }
  return out;
}

namespace {

bool digits(std::string_view s, std::size_t max) {
  return !s.empty() && s.size() <= max &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// "x.y.z" at the start of msg followed by a space or the end (RFC 3463:
// class 2/4/5, subject 1-3 digits, detail 1-3 digits).
std::optional<std::string> leading_enhanced_status(std::string_view msg) {
  const auto end = msg.find(' ');
  const std::string_view tok = msg.substr(0, end);
  const auto d1 = tok.find('.');
  if (d1 == std::string_view::npos) return std::nullopt;
  const auto d2 = tok.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return std::nullopt;
  const auto cls = tok.substr(0, d1);
  if (cls != "2" && cls != "4" && cls != "5") return std::nullopt;
  if (!digits(tok.substr(d1 + 1, d2 - d1 - 1), 3) || !digits(tok.substr(d2 + 1), 3)) {
    return std::nullopt;
  }
  return std::string(tok);
}

std::string domain_of(std::string_view mailbox) {
  const auto at = mailbox.rfind('@');
  if (at == std::string_view::npos || at + 1 == mailbox.size()) return "localhost";
  return std::string(mailbox.substr(at + 1));
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// Any line ending -> CRLF; ends with CRLF unless empty; drops the blank line
// that terminates a header block (and anything after it).
std::string normalise_header_block(std::string_view h) {
  std::string out;
  out.reserve(h.size() + h.size() / 32 + 2);
  for (std::size_t i = 0; i < h.size(); ++i) {
    const char c = h[i];
    if (c == '\r') {
      if (i + 1 < h.size() && h[i + 1] == '\n') ++i;
      out += "\r\n";
    } else if (c == '\n') {
      out += "\r\n";
    } else {
      out.push_back(c);
    }
  }
  if (const auto blank = out.find("\r\n\r\n"); blank != std::string::npos) {
    out.resize(blank + 2);
  }
  while (out.starts_with("\r\n")) out.erase(0, 2);
  if (!out.empty() && !out.ends_with("\r\n")) out += "\r\n";
  return out;
}

std::string angle_id(std::string_view id) {
  std::string s = header_safe(id, 900);
  if (s.starts_with('<')) s.erase(0, 1);
  if (s.ends_with('>')) s.pop_back();
  std::erase_if(s, [](char c) { return c == '<' || c == '>' || c == ' '; });
  return s.empty() ? std::string() : "<" + s + ">";
}

std::string diagnostic(const Response& r) {
  return header_safe(std::to_string(r.code) + " " + r.message);
}

}  // namespace

std::string dsn_status(const Response& r, DsnAction action) {
  const int cls = r.code / 100;
  if (cls == 4 || cls == 5) {
    const std::string msg = header_safe(r.message);
    if (auto s = leading_enhanced_status(msg); s && (*s)[0] == static_cast<char>('0' + cls)) {
      return *s;
    }
    return cls == 4 ? "4.0.0" : "5.0.0";
  }
  return action == DsnAction::delayed ? "4.0.0" : "5.0.0";
}

Result<std::string> build_dsn(const DsnInput& in, const DsnEnv& env) {
  const std::string daemon = header_safe(in.mailer_daemon_mailbox);
  const std::string to = header_safe(in.mail_from);
  if (daemon.empty()) return Error(Errc::bad_request, "dsn: mailer_daemon_mailbox not set");
  if (to.empty()) return Error(Errc::bad_request, "dsn: null reverse-path, no DSN");
  if (in.recipients.empty()) return Error(Errc::bad_request, "dsn: no recipients");
  const std::string domain = domain_of(daemon);
  const std::int64_t now = env.now ? env.now() : static_cast<std::int64_t>(std::time(nullptr));
  auto make_id = [&] { return env.unique_id ? env.unique_id() : random_rest_id(16); };

  const bool any_failed = std::any_of(in.recipients.begin(), in.recipients.end(),
                                      [](const DsnRecipient& r) { return r.action == DsnAction::failed; });

  // Part 1: human-readable.
  std::string text;
  text += "This is the mail system at " + domain + ".\r\n\r\n";
  auto list = [&](DsnAction a, const char* intro) {
    bool first = true;
    for (const auto& r : in.recipients) {
      if (r.action != a) continue;
      if (first) text += intro;
      first = false;
      text += "  <" + header_safe(r.address) + ">: " + diagnostic(r.response) + "\r\n";
    }
    if (!first) text += "\r\n";
  };
  list(DsnAction::failed,
       "Your message could not be delivered to the following recipients.\r\n"
       "The mail system will not try again.\r\n\r\n");
  list(DsnAction::delayed,
       "Delivery of your message to the following recipients has been delayed.\r\n"
       "The mail system will keep trying; you do not need to send it again.\r\n\r\n");
  text += "The delivery status report and the headers of your message are attached.\r\n";

  // Part 2: machine-readable (RFC 3464 §2.2, §2.3).
  std::string status;
  status += "Reporting-MTA: dns; " + domain + "\r\n";
  status += "Arrival-Date: " + rfc5322_date(in.arrival_time) + "\r\n";
  for (const auto& r : in.recipients) {
    const std::string addr = header_safe(r.address);
    status += "\r\n";
    // RFC 6533: a non-ASCII address is of type utf-8.
    status += std::string("Final-Recipient: ") + (is_ascii(addr) ? "rfc822; " : "utf-8; ") + addr + "\r\n";
    status += std::string("Action: ") + dsn_action_name(r.action) + "\r\n";
    status += "Status: " + dsn_status(r.response, r.action) + "\r\n";
    if (r.response.code >= 200 && r.response.code <= 599) {
      status += "Diagnostic-Code: smtp; " + diagnostic(r.response) + "\r\n";
    }
    status += "Last-Attempt-Date: " + rfc5322_date(in.last_attempt_time) + "\r\n";
    if (r.action == DsnAction::delayed && in.will_retry_until) {
      status += "Will-Retry-Until: " + rfc5322_date(*in.will_retry_until) + "\r\n";
    }
  }

  // Part 3: the original headers, as data.
  const std::string headers = normalise_header_block(in.original_headers);

  // A boundary that occurs in no part (the original headers are untrusted).
  std::string boundary = "=_koukan_" + make_id();
  for (int n = 0; text.find(boundary) != std::string::npos ||
                  status.find(boundary) != std::string::npos ||
                  headers.find(boundary) != std::string::npos;
       ++n) {
    boundary = "=_koukan_" + make_id() + "_" + std::to_string(n);
  }

  std::string m;
  m.reserve(text.size() + status.size() + headers.size() + 1024);
  m += "From: Mail Delivery Subsystem <" + daemon + ">\r\n";
  m += "To: <" + to + ">\r\n";
  m += std::string("Subject: Delivery Status Notification (") + (any_failed ? "failure" : "delay") +
       ")\r\n";
  m += "Date: " + rfc5322_date(now) + "\r\n";
  m += "Message-ID: " + angle_id(make_id() + "@" + domain) + "\r\n";
  if (in.original_message_id) {
    if (const std::string orig = angle_id(*in.original_message_id); !orig.empty()) {
      m += "In-Reply-To: " + orig + "\r\n";
      m += "References: " + orig + "\r\n";
    }
  }
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: multipart/report; report-type=delivery-status; boundary=\"" + boundary +
       "\"\r\n";
  m += "\r\n";
  m += "This is a MIME-encapsulated message.\r\n";
  m += "\r\n--" + boundary + "\r\n";
  if (is_ascii(text)) {
    m += "Content-Type: text/plain; charset=us-ascii\r\n";
  } else {
    m += "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n";
  }
  m += "Content-Description: Notification\r\n\r\n";
  m += text;
  m += "\r\n--" + boundary + "\r\n";
  m += "Content-Type: message/delivery-status\r\n";
  m += "Content-Description: Delivery report\r\n\r\n";
  m += status;
  if (!headers.empty()) {
    m += "\r\n--" + boundary + "\r\n";
    m += "Content-Type: text/rfc822-headers\r\n";
    m += "Content-Description: Undelivered message headers\r\n\r\n";
    m += headers;
  }
  m += "\r\n--" + boundary + "--\r\n";
  return m;
}

}  // namespace koukan::router
