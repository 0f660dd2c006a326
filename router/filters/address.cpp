#include "router/filters/address.hpp"

#include <algorithm>
#include <utility>

#include "common/config/yaml.hpp"

namespace koukan::router::filters {

namespace {

// Python's email._header_value_parser character classes.
//   SPECIALS    = ()<>@,:;.\"[]
//   ATOM_ENDS   = SPECIALS + space + tab   (atext is everything else, non-ASCII included)
//   PHRASE_ENDS = SPECIALS - '."('         (where a local part stops; '\' excepted)
bool is_wsp(char c) { return c == ' ' || c == '\t'; }
bool is_special(char c) {
  return std::string_view("()<>@,:;.\\\"[]").find(c) != std::string_view::npos;
}
bool is_atom_end(char c) { return is_wsp(c) || is_special(c); }
bool ends_local_part(char c) {
  return std::string_view(")<>@,:;[]").find(c) != std::string_view::npos;
}
// What Python's str.split() treats as whitespace, ASCII part.
bool is_py_space(char c) {
  auto u = static_cast<unsigned char>(c);
  return u == ' ' || (u >= '\t' && u <= '\r') || (u >= 0x1c && u <= 0x1f);
}

std::string without_spaces(std::string s) {
  s.erase(std::remove_if(s.begin(), s.end(), is_py_space), s.end());
  return s;
}

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  std::optional<AddrSpec> addr_spec() {
    auto local = local_part();
    if (!local) return std::nullopt;
    if (at_end() || peek() != '@') return std::nullopt;  // "local part with no domain"
    ++i_;
    auto dom = domain();
    if (!dom) return std::nullopt;
    return AddrSpec{std::move(*local), std::move(*dom)};
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  char peek() const { return s_[i_]; }

  // FWS, entered at a space or tab: like get_fws, eats every whitespace char.
  void skip_fws() {
    while (!at_end() && is_py_space(peek())) ++i_;
  }

  // A comment at '(': nested, quoted-pairs honoured; an unterminated one runs
  // to the end (a nested defect in Python, not an error).
  void skip_comment() {
    int depth = 0;
    while (!at_end()) {
      char c = peek();
      if (c == '\\') {
        i_ += (i_ + 1 < s_.size() && !is_wsp(s_[i_ + 1])) ? 2 : 1;
        continue;
      }
      ++i_;
      if (c == '(') {
        ++depth;
      } else if (c == ')' && --depth == 0) {
        return;
      }
    }
  }

  // CFWS; true if anything was skipped.
  bool skip_cfws() {
    std::size_t start = i_;
    while (!at_end()) {
      if (is_wsp(peek())) {
        skip_fws();
      } else if (peek() == '(') {
        skip_comment();
      } else {
        break;
      }
    }
    return i_ != start;
  }

  std::string_view atext() {
    std::size_t start = i_;
    while (!at_end() && !is_atom_end(peek())) ++i_;
    return s_.substr(start, i_ - start);
  }

  // A quoted string at '"': its content with quoted-pairs unescaped and
  // whitespace kept; an unterminated one runs to the end.
  std::string quoted_string() {
    ++i_;
    std::string out;
    while (!at_end() && peek() != '"') {
      char c = peek();
      if (c == '\\') {
        if (i_ + 1 < s_.size() && !is_wsp(s_[i_ + 1])) out += s_[i_ + 1];
        i_ += (i_ + 1 < s_.size() && !is_wsp(s_[i_ + 1])) ? 2 : 1;
        continue;
      }
      out += c;
      ++i_;
    }
    if (!at_end()) ++i_;
    return out;
  }

  // dot-atom | quoted-string | obs-local-part (words, dots, stray '\', CFWS in
  // any order: Python records those as defects nested in the local part and
  // does not reject them). Stops at ) < > @ , : ; [ ].
  std::optional<std::string> local_part() {
    enum class Kind { word, dot };
    std::vector<std::pair<Kind, std::string>> toks;
    std::vector<bool> space_before;  // CFWS between toks[k-1] and toks[k]
    bool pending_space = false;
    while (!at_end()) {
      char c = peek();
      if (is_wsp(c) || c == '(') {
        skip_cfws();
        pending_space = true;
        continue;
      }
      if (ends_local_part(c)) break;
      std::pair<Kind, std::string> t;
      if (c == '.') {
        ++i_;
        t = {Kind::dot, "."};
      } else if (c == '\\') {  // misplaced special: kept, next char parsed normally
        ++i_;
        t = {Kind::word, "\\"};
      } else if (c == '"') {
        t = {Kind::word, quoted_string()};
      } else {
        t = {Kind::word, std::string(atext())};
      }
      toks.push_back(std::move(t));
      space_before.push_back(pending_space);
      pending_space = false;
    }
    // Only CFWS (or nothing): Python raises or crashes (IndexError) here.
    if (toks.empty()) return std::nullopt;
    // LocalPart.local_part: CFWS dropped at the ends and next to dots; between
    // two words it reads as one space.
    std::string out;
    for (std::size_t k = 0; k < toks.size(); ++k) {
      if (k > 0 && space_before[k] && toks[k].first == Kind::word &&
          toks[k - 1].first == Kind::word) {
        out += ' ';
      }
      out += toks[k].second;
    }
    return out;
  }

  // [CFWS] (dot-atom | atom *("." atom) | domain-literal) [CFWS]
  std::optional<std::string> domain() {
    skip_cfws();
    if (at_end()) return std::nullopt;
    if (peek() == '[') return domain_literal();
    std::string_view first = atext();
    if (first.empty()) return std::nullopt;
    std::string out(first);
    // dot-atom-text: atext *("." atext), not ending in a dot; else just the atom.
    std::size_t after_first = i_;
    std::string dotted = out;
    bool dot_atom = true;
    while (!at_end() && peek() == '.') {
      if (i_ + 1 < s_.size() && !is_atom_end(s_[i_ + 1])) {
        ++i_;
        dotted += '.';
        dotted += atext();
      } else {
        dot_atom = false;
        break;
      }
    }
    if (dot_atom) {
      out = std::move(dotted);
    } else {
      i_ = after_first;
    }
    skip_cfws();
    if (!at_end() && peek() == '@') return std::nullopt;  // "Invalid Domain"
    // obs-domain: further "." atom, CFWS allowed around the dots.
    while (!at_end() && peek() == '.') {
      ++i_;
      skip_cfws();
      std::string_view a = atext();
      if (a.empty()) return std::nullopt;
      out += '.';
      out += a;
      skip_cfws();
    }
    return without_spaces(std::move(out));
  }

  // "[" [FWS] dtext [FWS] "]" [CFWS]; dtext stops at whitespace, '[' or ']'
  // (quoted-pairs unescaped).
  std::optional<std::string> domain_literal() {
    ++i_;
    if (!at_end() && is_wsp(peek())) skip_fws();
    if (at_end()) return std::nullopt;  // Python: UnboundLocalError
    std::string text;
    while (!at_end() && !is_wsp(peek()) && peek() != '[' && peek() != ']') {
      if (peek() == '\\') {
        if (i_ + 1 < s_.size() && !is_wsp(s_[i_ + 1])) text += s_[i_ + 1];
        i_ += (i_ + 1 < s_.size() && !is_wsp(s_[i_ + 1])) ? 2 : 1;
        continue;
      }
      text += peek();
      ++i_;
    }
    if (!at_end() && is_wsp(peek())) skip_fws();
    if (at_end() || peek() != ']') return std::nullopt;
    ++i_;
    skip_cfws();
    return without_spaces("[" + text + "]");
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

std::optional<AddrSpec> parse_addr_spec(std::string_view text) {
  return Parser(text).addr_spec();
}

std::optional<std::string> domain_from_address(std::string_view address) {
  auto spec = parse_addr_spec(address);
  if (!spec) return std::nullopt;
  return std::move(spec->domain);
}

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

bool AddressList::match(std::string_view address) const {
  auto spec = parse_addr_spec(address);
  if (!spec) return false;
  std::string domain = ascii_lower(spec->domain);
  std::string local = ascii_lower(spec->local_part);
  if (!domains.empty() && std::find(domains.begin(), domains.end(), domain) == domains.end()) {
    return false;
  }
  if (prefixes.empty()) return true;  // catch-all
  for (const std::string& p : prefixes) {
    if (local == p) return true;
    if (delimiter && local.size() >= p.size() + delimiter->size() &&
        local.compare(0, p.size(), p) == 0 &&
        local.compare(p.size(), delimiter->size(), *delimiter) == 0) {
      return true;
    }
  }
  return false;
}

AddressList parse_address_list(const config::Node& node) {
  AddressList out;
  auto strings = [](const config::Node& list, std::vector<std::string>& into) {
    for (const config::Node& e : list.list()) {
      auto v = e.as<std::string>();
      if (!v) {
        if (e.is_null()) e.type_error("a string");
        continue;
      }
      into.push_back(ascii_lower(*v));
    }
  };
  strings(node["domains"], out.domains);
  strings(node["prefixes"], out.prefixes);
  out.delimiter = node.get_optional<std::string>("delimiter");
  if (out.delimiter) *out.delimiter = ascii_lower(*out.delimiter);
  return out;
}

}  // namespace koukan::router::filters
