#pragma once
// Pure pieces of the SMTP server session (server_session.cpp): no I/O, no
// Asio. Command-line splitting, MAIL/RCPT path and parameter parsing, reply
// formatting, the streaming DATA decoder (dot-unstuffing, end marker, bare
// LF/CR and line-length detection) and base64 for AUTH. Unit-tested in
// test/common/smtp/server_protocol_test.cpp.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json/transaction.hpp"  // EsmtpParam

namespace koukan::smtp::server {

// "verb SP arg": verb upper-cased (ASCII), arg without leading/trailing
// spaces. The verb is everything up to the first space.
struct CommandLine {
  std::string verb;
  std::string_view arg;
};
CommandLine split_command(std::string_view line);

bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view s, std::string_view prefix);
std::string to_upper(std::string_view s);

// MAIL FROM:<path> [params] / RCPT TO:<path> [params].
enum class PathStatus {
  ok,
  syntax,         // no "FROM:"/"TO:", no <...>, junk after '>'
  bad_address,    // <...> present but not a valid path
  bad_params,     // parameter syntax (esmtp-keyword [= esmtp-value])
};
struct PathArg {
  PathStatus status = PathStatus::syntax;
  std::string address;  // without brackets and source route; "" = <>
  std::vector<EsmtpParam> params;  // keyword upper-cased, value as given
};
// `prefix` is "FROM:" or "TO:" (matched case-insensitively; spaces allowed
// after the colon). MAIL allows the null path <>; RCPT allows <postmaster>.
PathArg parse_path_arg(std::string_view arg, std::string_view prefix, bool is_mail);

// RFC 5321 4.1.2 Mailbox (local-part "@" domain / address-literal), UTF-8
// allowed (RFC 6531). Lenient on domain labels ('_' allowed).
bool valid_mailbox(std::string_view m);

// A reply: each '\n'-separated line of `text` becomes one reply line
// ("250-a", "250 b"); CR and other control characters become spaces; lines
// longer than the RFC 5321 reply-line limit are folded. Ends with CRLF.
std::string format_reply(int code, std::string_view text);

// Printable, bounded rendering of client input for replies and logs.
std::string sanitize(std::string_view s, std::size_t max_len = 64);

// Streaming decoder for DATA (RFC 5321 4.5.2): removes the stuffing dot,
// recognises only CRLF "." CRLF as the end (a line start is the start of
// the data or right after CRLF), flags bare LF / lone CR (SMTP smuggling)
// and text lines longer than `max_line` octets incl. CRLF (the stuffing dot
// not counted). Any split of the input across feed() calls gives the same
// result: pending bytes (".", ".\r", "\r") are kept in the state.
class DotDecoder {
 public:
  explicit DotDecoder(std::size_t max_line) : max_line_(max_line) {}
  // Consumes from `in` until the end marker has been consumed, `in` is
  // exhausted, or `out` (when not null) holds `cap` octets. With
  // out == nullptr the decoded bytes are discarded (but still counted).
  // Returns the number of octets consumed.
  std::size_t feed(std::string_view in, std::string* out, std::size_t cap);
  bool done() const { return state_ == State::done; }
  bool bare_lf_or_cr() const { return bare_; }
  bool line_too_long() const { return long_line_; }
  std::uint64_t size() const { return size_; }  // decoded octets so far

 private:
  enum class State { bol, dot, dot_cr, mid, cr, done };
  void emit(std::string* out, char c);
  void mid_char(std::string* out, char c);
  std::size_t max_line_;
  State state_ = State::bol;
  std::size_t line_len_ = 0;
  std::uint64_t size_ = 0;
  bool bare_ = false;
  bool long_line_ = false;
};

// Strict base64 (RFC 4648 alphabet, padding required); nullopt on error.
std::optional<std::string> base64_decode(std::string_view in);
std::string base64_encode(std::string_view in);

}  // namespace koukan::smtp::server
