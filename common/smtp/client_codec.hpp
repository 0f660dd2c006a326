#pragma once
// Pure pieces of the SMTP client (client.cpp), unit-tested without I/O:
// the streaming DATA dot-stuffer, the reply-line parser, EHLO extension
// parsing and the MAIL/RCPT ESMTP parameter check.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json/transaction.hpp"

namespace koukan::smtp::client_detail {

// RFC 5321 4.5.2 transparency, streaming: a '.' at the start of a line is
// doubled. A line starts at the beginning of the body and after every LF
// (CRLF, and also a bare LF, since some servers end lines there and an
// unstuffed "<LF>.<CRLF>" could end the data early: SMTP smuggling). The
// state survives piece boundaries; no other byte is ever changed.
class DotStuffer {
 public:
  // Returns false if `in` needs no stuffing (send it as is); else `out`
  // (cleared first) holds the stuffed bytes.
  bool stuff(std::string_view in, std::string& out);
  // What ends the data after the last piece: ".\r\n" if the body is empty
  // or ends with CRLF, else "\r\n.\r\n".
  std::string_view terminator() const;
  std::uint64_t bytes_in() const { return bytes_; }

 private:
  bool line_start_ = true;
  char last_ = 0, before_last_ = 0;
  std::uint64_t bytes_ = 0;
};

// One reply line without its line ending: "250-text", "250 text", "250".
struct ReplyLine {
  int code = 0;
  bool last = false;
  std::string_view text;
};
std::optional<ReplyLine> parse_reply_line(std::string_view line);

// Invalid UTF-8 sequences (and NUL) replaced by U+FFFD, so replies are safe
// to put in JSON.
std::string sanitize_utf8(std::string_view s);

// EHLO keywords (upper case) -> parameters (may be empty).
class Extensions {
 public:
  // `lines`: the EHLO reply texts; the first (the server's name) is skipped.
  static Extensions parse(const std::vector<std::string>& lines);
  bool has(std::string_view keyword) const;
  const std::string* param(std::string_view keyword) const;
  // SIZE limit: nullopt when not advertised, or advertised as 0 / without
  // a (valid) number, meaning "no limit" (RFC 1870).
  std::optional<std::uint64_t> size_limit() const;

 private:
  std::map<std::string, std::string, std::less<>> kw_;
};

struct ParamCheck {
  std::optional<Response> error;  // set: don't send the command
  std::string params;             // " K=V K2 ..." to append to the command
};
// gateway.md §4.3 step 6 with its fixes; `verb` is "MAIL" or "RCPT" for
// messages. `bdat`: the body will go with BDAT (needed for BINARYMIME).
ParamCheck check_params(const std::vector<EsmtpParam>& params, const Extensions& ext, bool bdat,
                        std::string_view verb);

// An address or parameter that can't be put on a command line (CR, LF,
// other controls, '<', '>' in the address) -> the 501 reply; else nullopt.
std::optional<Response> check_address(const std::string& mailbox);

}  // namespace koukan::smtp::client_detail
