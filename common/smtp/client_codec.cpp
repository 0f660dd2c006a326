// Pure pieces of the SMTP client: see client_codec.hpp.
#include "common/smtp/client_codec.hpp"

#include <cstring>

namespace koukan::smtp::client_detail {

namespace {
std::string upper(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return r;
}

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

bool bad_param_char(std::string_view s) {
  for (unsigned char c : s)
    if (c <= ' ' || c == 0x7f || c == '=') return true;
  return false;
}
}  // namespace

bool DotStuffer::stuff(std::string_view in, std::string& out) {
  if (in.empty()) return false;
  // Fast path: nothing to stuff.
  bool need = line_start_ && in[0] == '.';
  for (std::size_t i = 0; !need;) {
    const void* p = std::memchr(in.data() + i, '\n', in.size() - i);
    if (!p) break;
    std::size_t at = static_cast<std::size_t>(static_cast<const char*>(p) - in.data());
    if (at + 1 < in.size() && in[at + 1] == '.') need = true;
    i = at + 1;
  }
  bytes_ += in.size();
  before_last_ = in.size() >= 2 ? in[in.size() - 2] : last_;
  last_ = in.back();
  if (!need) {
    line_start_ = in.back() == '\n';
    return false;
  }
  out.clear();
  out.reserve(in.size() + in.size() / 64 + 8);
  for (char c : in) {
    if (line_start_ && c == '.') out.push_back('.');
    out.push_back(c);
    line_start_ = c == '\n';
  }
  return true;
}

std::string_view DotStuffer::terminator() const {
  if (bytes_ == 0 || (before_last_ == '\r' && last_ == '\n')) return ".\r\n";
  return "\r\n.\r\n";
}

std::optional<ReplyLine> parse_reply_line(std::string_view line) {
  if (line.size() < 3) return std::nullopt;
  if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '9' || line[2] < '0' ||
      line[2] > '9')
    return std::nullopt;
  ReplyLine r;
  r.code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (line.size() == 3) {
    r.last = true;
    return r;
  }
  if (line[3] == ' ') r.last = true;
  else if (line[3] == '-') r.last = false;
  else return std::nullopt;
  r.text = line.substr(4);
  return r;
}

std::string sanitize_utf8(std::string_view s) {
  static constexpr const char kRepl[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  std::size_t i = 0;
  auto u = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  while (i < s.size()) {
    unsigned char c = u(i);
    if (c >= 0x01 && c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    std::size_t n = 0;
    std::uint32_t cp = 0, min = 0;
    if (c >= 0xC2 && c <= 0xDF) n = 1, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) n = 2, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) n = 3, cp = c & 0x07, min = 0x10000;
    bool ok = n > 0;
    if (ok) {
      for (std::size_t k = 1; k <= n; ++k) {
        if (i + k >= s.size() || (u(i + k) & 0xC0) != 0x80) {
          ok = false;
          break;
        }
        cp = (cp << 6) | (u(i + k) & 0x3F);
      }
    }
    if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
    if (ok) {
      out.append(s.substr(i, n + 1));
      i += n + 1;
    } else {
      out.append(kRepl);
      ++i;
    }
  }
  return out;
}

Extensions Extensions::parse(const std::vector<std::string>& lines) {
  Extensions e;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    std::string_view l = lines[i];
    while (!l.empty() && l.front() == ' ') l.remove_prefix(1);
    auto sp = l.find(' ');
    std::string kw = upper(l.substr(0, sp));
    if (kw.empty()) continue;
    std::string_view rest = sp == std::string_view::npos ? std::string_view() : l.substr(sp + 1);
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
    e.kw_.emplace(std::move(kw), std::string(rest));
  }
  return e;
}

bool Extensions::has(std::string_view keyword) const { return kw_.count(upper(keyword)) > 0; }

const std::string* Extensions::param(std::string_view keyword) const {
  auto it = kw_.find(upper(keyword));
  return it == kw_.end() ? nullptr : &it->second;
}

std::optional<std::uint64_t> Extensions::size_limit() const {
  const std::string* p = param("SIZE");
  if (!p) return std::nullopt;
  auto n = parse_u64(*p);
  if (!n || *n == 0) return std::nullopt;
  return n;
}

ParamCheck check_params(const std::vector<EsmtpParam>& params, const Extensions& ext, bool bdat,
                        std::string_view verb) {
  ParamCheck r;
  auto fail = [&](int code, std::string text) {
    r.error = Response(code, std::move(text));
    r.params.clear();
    return r;
  };
  auto not_advertised = [&](const std::string& what) {
    return fail(504, "5.5.4 " + std::string(verb) + " parameter " + what +
                         " not advertised by the server (SmtpClient)");
  };
  for (const EsmtpParam& p : params) {
    std::string kw = upper(p.keyword);
    if (kw.empty() || bad_param_char(kw) || (p.value && bad_param_char(*p.value)))
      return fail(501, "5.5.4 invalid " + std::string(verb) + " parameter (SmtpClient)");
    std::string shown = p.value ? kw + "=" + *p.value : kw;
    bool send = true;
    if (kw == "BODY") {
      std::string v = upper(p.value.value_or(""));
      if (v == "7BIT") {
        send = ext.has("8BITMIME");  // BODY= is only defined with 8BITMIME
      } else if (v == "8BITMIME") {
        if (!ext.has("8BITMIME")) return not_advertised(shown);
      } else if (v == "BINARYMIME") {
        if (!ext.has("BINARYMIME") || !bdat)
          return fail(504, "5.5.4 " + std::string(verb) + " parameter " + shown +
                               " needs BINARYMIME and CHUNKING (SmtpClient)");
      } else if (v.empty() || !ext.has(v)) {
        return not_advertised(shown);
      }
    } else if (kw == "SIZE") {
      auto n = parse_u64(p.value.value_or(""));
      if (!n) return fail(501, "5.5.4 invalid SIZE parameter (SmtpClient)");
      if (!ext.has("SIZE")) {
        send = false;  // can't send it; no limit known
      } else if (auto lim = ext.size_limit(); lim && *n > *lim) {
        return fail(552, "5.3.4 message size " + std::to_string(*n) +
                             " exceeds the server's limit " + std::to_string(*lim) +
                             " (SmtpClient)");
      }
    } else if (kw == "RET" || kw == "ENVID" || kw == "NOTIFY" || kw == "ORCPT") {
      send = ext.has("DSN");  // dropped without DSN: the router reports
    } else if (!ext.has(kw)) {
      return not_advertised(shown);
    }
    if (send) r.params += " " + (p.value ? p.keyword + "=" + *p.value : p.keyword);
  }
  return r;
}

std::optional<Response> check_address(const std::string& mailbox) {
  for (unsigned char c : mailbox)
    if (c < 0x20 || c == 0x7f || c == '<' || c == '>')
      return Response(501, "5.1.3 invalid address (SmtpClient)");
  return std::nullopt;
}

}  // namespace koukan::smtp::client_detail
