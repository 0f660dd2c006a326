// Pure SMTP server helpers (server_protocol.hpp).
#include "common/smtp/server_protocol.hpp"

#include <cstring>

namespace koukan::smtp::server {

namespace {

char upper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }
bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }

// RFC 5322 atext plus UTF-8 octets (RFC 6531).
bool is_atext(unsigned char c) {
  if (is_alnum(c) || c >= 0x80) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != 0;
}

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

bool valid_dot_string(std::string_view s) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  char prev = 0;
  for (char c : s) {
    if (c == '.') {
      if (prev == '.') return false;
    } else if (!is_atext(static_cast<unsigned char>(c))) {
      return false;
    }
    prev = c;
  }
  return true;
}

// Quoted-string (RFC 5321 4.1.2) including the quotes.
bool valid_quoted_string(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return false;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      if (i + 2 >= s.size()) return false;  // escapes the closing quote
      auto n = static_cast<unsigned char>(s[++i]);
      if (n < 32 || n == 127) return false;
    } else if (c == '"' || c < 32 || c == 127) {
      return false;
    }
  }
  return true;
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 255) return false;
  if (d.front() == '[') {
    if (d.size() < 3 || d.back() != ']') return false;
    for (std::size_t i = 1; i + 1 < d.size(); ++i) {
      auto c = static_cast<unsigned char>(d[i]);
      if (c < 33 || c > 126 || c == '[' || c == ']' || c == '\\') return false;
    }
    return true;
  }
  std::size_t label = 0;
  for (char ch : d) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (is_alnum(c) || c == '-' || c == '_' || c >= 0x80) {
      ++label;
    } else {
      return false;
    }
  }
  return label > 0;
}

// A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain
bool valid_source_route(std::string_view r) {
  std::size_t start = 0;
  while (true) {
    std::size_t comma = r.find(',', start);
    std::string_view part = r.substr(start, comma == std::string_view::npos ? r.npos : comma - start);
    if (part.size() < 2 || part[0] != '@' || !valid_domain(part.substr(1))) return false;
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

bool valid_keyword(std::string_view k) {
  if (k.empty() || !is_alnum(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k)
    if (!is_alnum(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

// esmtp-value = 1*(%d33-60 / %d62-126), plus UTF-8 (RFC 6531).
bool valid_value(std::string_view v) {
  if (v.empty()) return false;
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) continue;
    if (c < 33 || c > 126 || c == '=') return false;
  }
  return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (upper(a[i]) != upper(b[i])) return false;
  return true;
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string to_upper(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = upper(c);
  return r;
}

CommandLine split_command(std::string_view line) {
  CommandLine c;
  std::size_t sp = line.find(' ');
  c.verb = to_upper(line.substr(0, sp));
  c.arg = sp == std::string_view::npos ? std::string_view() : trim_spaces(line.substr(sp + 1));
  return c;
}

bool valid_mailbox(std::string_view m) {
  std::size_t at;
  if (!m.empty() && m.front() == '"') {
    // Closing quote: skip quoted pairs.
    std::size_t i = 1;
    for (; i < m.size(); ++i) {
      if (m[i] == '\\') {
        ++i;
      } else if (m[i] == '"') {
        break;
      }
    }
    if (i >= m.size()) return false;
    at = i + 1;
    if (at >= m.size() || m[at] != '@') return false;
    if (!valid_quoted_string(m.substr(0, at))) return false;
  } else {
    at = m.rfind('@');
    if (at == std::string_view::npos) return false;
    if (!valid_dot_string(m.substr(0, at))) return false;
  }
  return valid_domain(m.substr(at + 1));
}

PathArg parse_path_arg(std::string_view arg, std::string_view prefix, bool is_mail) {
  PathArg p;
  if (!istarts_with(arg, prefix)) return p;  // syntax
  std::string_view rest = arg.substr(prefix.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  if (rest.empty() || rest.front() != '<') return p;
  std::size_t i = 1;
  bool quoted = false;
  for (; i < rest.size(); ++i) {
    char c = rest[i];
    if (quoted) {
      if (c == '\\') ++i;
      else if (c == '"') quoted = false;
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      break;
    }
  }
  if (i >= rest.size()) return p;  // no closing '>'
  std::string_view inner = rest.substr(1, i - 1);
  std::string_view after = rest.substr(i + 1);
  if (!after.empty() && after.front() != ' ') return p;

  p.status = PathStatus::bad_address;
  if (!inner.empty() && inner.front() == '@') {
    // Source route (RFC 5321 4.1.2 A-d-l): accepted and ignored.
    std::size_t colon = inner.find(':');
    if (colon == std::string_view::npos || !valid_source_route(inner.substr(0, colon))) return p;
    inner = inner.substr(colon + 1);
    if (inner.empty()) return p;
  }
  if (inner.empty()) {
    if (!is_mail) return p;
  } else if (!(!is_mail && iequals(inner, "postmaster")) && !valid_mailbox(inner)) {
    return p;
  }
  p.address = std::string(inner);

  p.status = PathStatus::bad_params;
  while (!after.empty()) {
    while (!after.empty() && after.front() == ' ') after.remove_prefix(1);
    if (after.empty()) break;
    std::size_t sp = after.find(' ');
    std::string_view tok = after.substr(0, sp);
    after = sp == std::string_view::npos ? std::string_view() : after.substr(sp);
    std::size_t eq = tok.find('=');
    EsmtpParam e;
    std::string_view k = tok.substr(0, eq);
    if (!valid_keyword(k)) return p;
    e.keyword = to_upper(k);
    if (eq != std::string_view::npos) {
      std::string_view v = tok.substr(eq + 1);
      if (!valid_value(v)) return p;
      e.value = std::string(v);
    }
    p.params.push_back(std::move(e));
  }
  p.status = PathStatus::ok;
  return p;
}

std::string sanitize(std::string_view s, std::size_t max_len) {
  std::string r;
  for (char c : s) {
    if (r.size() >= max_len) {
      r += "...";
      break;
    }
    auto u = static_cast<unsigned char>(c);
    r += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  return r;
}

std::string format_reply(int code, std::string_view text) {
  // Reply line = 3 digits + sep + text + CRLF <= 512 octets.
  constexpr std::size_t kMaxText = 512 - 6;
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (true) {
    std::size_t nl = text.find('\n', start);
    std::string_view part = text.substr(start, nl == std::string_view::npos ? text.npos : nl - start);
    if (!part.empty() && part.back() == '\r') part.remove_suffix(1);
    std::string line;
    for (char c : part) {
      auto u = static_cast<unsigned char>(c);
      line += (u < 0x20 && c != '\t') || u == 0x7f ? ' ' : c;
    }
    // Fold, not splitting a UTF-8 sequence.
    std::string_view lv(line);
    while (lv.size() > kMaxText) {
      std::size_t cut = kMaxText;
      while (cut > kMaxText - 3 && (static_cast<unsigned char>(lv[cut]) & 0xC0) == 0x80) --cut;
      lines.emplace_back(lv.substr(0, cut));
      lv.remove_prefix(cut);
    }
    lines.emplace_back(lv);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  // A trailing newline does not make an empty last line.
  if (lines.size() > 1 && lines.back().empty()) lines.pop_back();
  std::string out;
  std::string c = std::to_string(code);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    out += c;
    bool last = i + 1 == lines.size();
    if (!last) {
      out += '-';
    } else if (!lines[i].empty()) {
      out += ' ';
    }
    out += lines[i];
    out += "\r\n";
  }
  return out;
}

// ---- DotDecoder ---------------------------------------------------------------
// A CR inside a line is always message text (the CRLF before the final "."
// belongs to the message), so it is emitted at once; only a line-initial
// "." and ".\r" are held back. Each step emits at most one octet.

void DotDecoder::emit(std::string* out, char c) {
  ++size_;
  if (++line_len_ > max_line_) long_line_ = true;
  if (out) out->push_back(c);
}

void DotDecoder::mid_char(std::string* out, char c) {
  if (c == '\n') bare_ = true;  // LF without CR
  emit(out, c);
  state_ = c == '\r' ? State::cr : State::mid;
}

std::size_t DotDecoder::feed(std::string_view in, std::string* out, std::size_t cap) {
  std::size_t i = 0;
  while (i < in.size() && state_ != State::done) {
    if (out && out->size() >= cap) break;
    char c = in[i];
    switch (state_) {
      case State::mid: {
        // Fast path: a run of ordinary octets.
        std::size_t end = out ? std::min(in.size(), i + (cap - out->size())) : in.size();
        std::size_t j = i;
        while (j < end && in[j] != '\r' && in[j] != '\n') ++j;
        if (j > i) {
          std::size_t n = j - i;
          size_ += n;
          line_len_ += n;
          if (line_len_ > max_line_) long_line_ = true;
          if (out) out->append(in.data() + i, n);
          i = j;
          continue;
        }
        mid_char(out, c);
        break;
      }
      case State::bol:
        line_len_ = 0;
        if (c == '.') state_ = State::dot;
        else mid_char(out, c);
        break;
      case State::dot:
        // "." followed by more: the stuffing dot is removed.
        if (c == '\r') state_ = State::dot_cr;
        else mid_char(out, c);
        break;
      case State::dot_cr:
        if (c == '\n') {
          state_ = State::done;
          break;
        }
        // ".\r" + other: the CR was text; look at `c` again after it.
        emit(out, '\r');
        state_ = State::cr;
        continue;
      case State::cr:
        if (c == '\n') {
          emit(out, '\n');
          state_ = State::bol;
        } else {
          bare_ = true;  // the CR before was not followed by LF
          mid_char(out, c);
        }
        break;
      case State::done:
        break;
    }
    ++i;
  }
  return i;
}

// ---- base64 -------------------------------------------------------------------

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::optional<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = in[i + k];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after '='
      v[k] = b64_value(c);
      if (v[k] < 0) return std::nullopt;
    }
    std::uint32_t n = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                      (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out.push_back(static_cast<char>((n >> 16) & 0xFF));
    if (pad < 2) out.push_back(static_cast<char>((n >> 8) & 0xFF));
    if (pad < 1) out.push_back(static_cast<char>(n & 0xFF));
  }
  return out;
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    std::uint32_t n = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) n |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out.push_back(kB64[(n >> 18) & 63]);
    out.push_back(kB64[(n >> 12) & 63]);
    out.push_back(i + 1 < in.size() ? kB64[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < in.size() ? kB64[n & 63] : '=');
  }
  return out;
}

}  // namespace koukan::smtp::server
