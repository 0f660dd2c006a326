#pragma once
// Delivery status notifications (spec/router.md §8.8, RFC 3464), pure: the
// caller supplies every input, including the clock and the id generator.
//
// build_dsn() returns the complete message as bytes with CRLF line endings:
//   multipart/report; report-type=delivery-status
//     1. text/plain              human-readable explanation
//     2. message/delivery-status  per-message + one block per recipient
//     3. text/rfc822-headers     the original header block (omitted if empty)
// with From: the mailer-daemon mailbox, To: the original MAIL FROM, Subject,
// Date (RFC 5322), Message-ID <random@mailer-daemon-domain>, Auto-Submitted:
// auto-replied, MIME-Version: 1.0, and In-Reply-To/References when the
// original Message-ID is known.
//
// The DSN itself MUST be sent with a null reverse-path (MAIL FROM:<>, i.e.
// mail_from "") so that it can never bounce back in a loop; building the
// envelope is the caller's job (the injected transaction, §8.8).
//
// Every value taken from the transaction (addresses, response text, the
// original Message-ID) is made header-safe: CR, LF and other control
// characters become spaces and over-long values are truncated, so nothing
// can inject header lines or MIME boundaries. The original header block is
// copied as data: its line endings are normalised to CRLF and the boundary is
// chosen so that it does not occur in any part.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/result.hpp"
#include "common/json/transaction.hpp"

namespace koukan::router {

enum class DsnAction { failed, delayed };
const char* dsn_action_name(DsnAction a);  // "failed" / "delayed"

struct DsnRecipient {
  std::string address;  // the recipient as given in RCPT TO (no <>)
  Response response;    // its last response (code + message)
  DsnAction action = DsnAction::failed;
};

struct DsnInput {
  std::string mailer_daemon_mailbox;  // global.mailer_daemon_mailbox, no <>
  std::string mail_from;              // original reverse-path: the DSN's To:
  std::vector<DsnRecipient> recipients;
  std::int64_t arrival_time = 0;       // unix seconds: tx creation
  std::int64_t last_attempt_time = 0;  // unix seconds: end of the last attempt
  // For delayed recipients: when the router will give up (Will-Retry-Until).
  std::optional<std::int64_t> will_retry_until;
  // The original header block (possibly truncated, any line endings), empty
  // if unknown: part 3 is then omitted.
  std::string original_headers;
  // The original Message-ID as written (with or without <>), if any.
  std::optional<std::string> original_message_id;
};

// Injectable clock and id source (defaults: system clock, random ids).
struct DsnEnv {
  std::function<std::int64_t()> now;         // unix seconds, for Date:
  std::function<std::string()> unique_id;   // [A-Za-z0-9_-]+, for Message-ID and boundary
  static DsnEnv system();
};

// Errors (Errc::bad_request): empty mailer-daemon mailbox, empty mail_from
// (never bounce a bounce), no recipients.
Result<std::string> build_dsn(const DsnInput& in, const DsnEnv& env = DsnEnv::system());

// Helpers, exposed for tests.
// RFC 5322 date-time in UTC: "Sat, 23 Nov 2024 08:12:00 +0000".
std::string rfc5322_date(std::int64_t unix_seconds);
// The RFC 3463 status for a response: a leading "x.y.z " in the message when
// its class matches the reply code's class, else "4.0.0" / "5.0.0" from the
// code (or from the action when the code is neither 4xx nor 5xx).
std::string dsn_status(const Response& r, DsnAction action);
// CR/LF/controls -> space, truncated to max_len bytes.
std::string header_safe(std::string_view v, std::size_t max_len = 900);

}  // namespace koukan::router
