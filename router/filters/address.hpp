#pragma once
// Lenient RFC 5322 addr-spec parsing as Koukan does it (spec/filters.md §1.6)
// and the address_list matching shared by the `address_list` routing policy
// and matcher (§2.2.4).
//
// The original uses Python's email._header_value_parser.get_addr_spec: it
// parses the LEADING addr-spec of a string (CFWS allowed around the parts,
// obsolete local-part forms tolerated, anything after the domain ignored)
// and returns the domain exactly as written. This is a small hand-rolled
// equivalent; test/router/filters/address_test.cpp holds the observed vectors.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace koukan::config {
class Node;
}

namespace koukan::router::filters {

struct AddrSpec {
  // The parsed local part: quotes and comments removed, quoted-pairs
  // unescaped, whitespace around dots dropped ("a b"@x -> a b).
  std::string local_part;
  // The domain as written minus comments and whitespace; a domain literal
  // keeps its brackets ("[1.2.3.4]").
  std::string domain;
};

// The leading addr-spec of `text`, or nullopt when there is none: no local
// part, no '@', no (or a dotted-out) domain, "a@b@c", "<a@b>", "".
std::optional<AddrSpec> parse_addr_spec(std::string_view text);

// filters.md §1.6 `address.domain_from_address`: the domain, case kept.
std::optional<std::string> domain_from_address(std::string_view address);

// ASCII lowercase (the original uses str.lower(); non-ASCII letters are
// compared as written, see docs/filters.md).
std::string ascii_lower(std::string_view s);

// §2.2.4 `_match`: domains ([] = any), prefixes ([] = any local part),
// delimiter (unset = exact local part only).
struct AddressList {
  std::vector<std::string> domains;   // lowercase
  std::vector<std::string> prefixes;  // lowercase
  std::optional<std::string> delimiter;

  bool match(std::string_view address) const;
};

// Reads `domains`, `prefixes` and `delimiter` of a yaml map (the caller
// checks the map's keys). Entries are lowercased. Errors are recorded on
// `node`'s collector.
AddressList parse_address_list(const config::Node& node);

}  // namespace koukan::router::filters
