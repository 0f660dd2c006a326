// domain_from_address (spec/filters.md §1.6) and address_list matching (§2.2.4).
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "common/config/yaml.hpp"
#include "router/filters/address.hpp"

namespace koukan::router::filters {
namespace {

using Opt = std::optional<std::string>;

// The §1.6 vector table, row by row (observed from the original).
TEST(DomainFromAddress, VectorTable) {
  struct Row {
    const char* in;
    Opt out;
  };
  const std::vector<Row> rows = {
      {"alice@example.com", "example.com"},
      {"アリス@example.com", "example.com"},
      {"Alice@Example.COM", "Example.COM"},
      {"\"a b\"@example.com", "example.com"},
      // local-part defects are tolerated
      {"a..b@example.com", "example.com"},
      {".a@x.com", "x.com"},
      {"a\\b@c", "c"},
      // domain literals
      {"a@[1.2.3.4]", "[1.2.3.4]"},
      {"a@[IPv6:::1]", "[IPv6:::1]"},
      // the rest after the domain is ignored
      {"a@b junk", "b"},
      {"a@b,c@d", "b"},
      {"ab@c;d", "c"},
      // CFWS
      {"(c)a@b", "b"},
      {"a@b(c)", "b"},
      {" a@b", "b"},
      // domains returned verbatim
      {"a@-example.com", "-example.com"},
      {"a@exa_mple.com", "exa_mple.com"},
      {"a@münchen.de", "münchen.de"},
      // null
      {"alice", std::nullopt},
      {"alice@", std::nullopt},
      {"@example.com", std::nullopt},
      {"@@@", std::nullopt},
      {"a@example.com.", std::nullopt},
      {"<a@b>", std::nullopt},
      {"", std::nullopt},
      // §1.6 prose: "a@", "@x", "a@.com", "a@example..com", "a@b@c"
      {"a@", std::nullopt},
      {"@x", std::nullopt},
      {"a@.com", std::nullopt},
      {"a@example..com", std::nullopt},
      {"a@b@c", std::nullopt},
      {"postmaster", std::nullopt},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(domain_from_address(r.in), r.out) << "input: '" << r.in << "'";
  }
}

// Corners of the lenient grammar beyond the table (Python's get_addr_spec).
TEST(DomainFromAddress, GrammarCorners) {
  EXPECT_EQ(domain_from_address("a@ b . c"), Opt("b.c"));       // obs-domain, CFWS around dots
  EXPECT_EQ(domain_from_address("a@b. c@d"), Opt("b.c"));       // '@' checked only after a dot-atom
  EXPECT_EQ(domain_from_address("a@b.c (x) @d"), std::nullopt);  // "Invalid Domain"
  EXPECT_EQ(domain_from_address("a@[1.2.3.4]@x"), Opt("[1.2.3.4]"));
  EXPECT_EQ(domain_from_address("a@[ 1.2.3.4 ]"), Opt("[1.2.3.4]"));
  EXPECT_EQ(domain_from_address("a@[]"), Opt("[]"));
  EXPECT_EQ(domain_from_address("a@["), std::nullopt);
  EXPECT_EQ(domain_from_address("a@[1.2 .3]"), std::nullopt);
  EXPECT_EQ(domain_from_address("a@\"b\""), std::nullopt);
  EXPECT_EQ(domain_from_address("\"\"@b"), Opt("b"));             // empty quoted local part
  EXPECT_EQ(domain_from_address("\"a@b"), std::nullopt);          // unterminated quote eats all
  EXPECT_EQ(domain_from_address("\"a\\\"b\"@c"), Opt("c"));       // quoted-pair
  EXPECT_EQ(domain_from_address("(a@b"), std::nullopt);           // unterminated comment
  EXPECT_EQ(domain_from_address("(x(y)z)a@b"), Opt("b"));         // nested comment
  EXPECT_EQ(domain_from_address(" @b"), std::nullopt);            // CFWS-only local part
  EXPECT_EQ(domain_from_address("(c)@b"), std::nullopt);
  EXPECT_EQ(domain_from_address(".@b"), Opt("b"));
  EXPECT_EQ(domain_from_address("a b@c"), Opt("c"));              // missing '.' tolerated
  EXPECT_EQ(domain_from_address("a)@b"), std::nullopt);
  EXPECT_EQ(domain_from_address("a@b\tc"), Opt("b"));
}

TEST(ParseAddrSpec, LocalPartIsTheParsedValue) {
  auto s = parse_addr_spec("\"Alice B\"@Example.com");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->local_part, "Alice B");
  EXPECT_EQ(s->domain, "Example.com");
  s = parse_addr_spec("(comment) alice . b (x) @example.com");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->local_part, "alice.b");
  s = parse_addr_spec("a\\b@c");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->local_part, "a\\b");
}

AddressList list(std::vector<std::string> domains, std::optional<std::string> delimiter,
                 std::vector<std::string> prefixes) {
  AddressList l;
  l.domains = std::move(domains);
  l.delimiter = std::move(delimiter);
  l.prefixes = std::move(prefixes);
  return l;
}

// address_list_policy_test: test_smoke, the matching part.
TEST(AddressList, Smoke) {
  AddressList l = list({"example.com"}, "+", {"alice"});
  for (const char* a : {"alice", "alice@", "@example.com", "@@@"}) {
    EXPECT_FALSE(l.match(a)) << a;  // invalid addresses never match
  }
  for (const char* a : {"alice@example.com", "alice+@example.com", "alice+a@example.com"}) {
    EXPECT_TRUE(l.match(a)) << a;
  }
  for (const char* a : {"alice@example.comm", "alice@e.example.com", "alicee@example.com"}) {
    EXPECT_FALSE(l.match(a)) << a;
  }
}

TEST(AddressList, NoDelimiterMeansExactMatchOnly) {
  AddressList l = list({"example.com"}, std::nullopt, {"alice"});
  EXPECT_TRUE(l.match("alice@example.com"));
  EXPECT_FALSE(l.match("alicee@example.com"));
  EXPECT_FALSE(l.match("alice+a@example.com"));
}

TEST(AddressList, EmptyDomainsMatchAnyDomain) {
  AddressList l = list({}, "+", {"mailer-daemon"});
  EXPECT_TRUE(l.match("mailer-daemon@qqq.com"));
  EXPECT_FALSE(l.match("qqq@qqq.com"));
}

TEST(AddressList, EmptyPrefixesMatchAnyLocalPart) {
  AddressList l = list({"example.com"}, std::nullopt, {});
  EXPECT_TRUE(l.match("qqq@example.com"));
  EXPECT_FALSE(l.match("qqq@example.org"));
}

TEST(AddressList, ComparesLowercaseAndUnquoted) {
  AddressList l = list({"example.com"}, "--", {"bob"});
  EXPECT_TRUE(l.match("BOB@EXAMPLE.COM"));
  EXPECT_TRUE(l.match("\"Bob--Lists\"@Example.Com"));  // quotes removed, multi-char delimiter
  EXPECT_FALSE(l.match("bob-lists@example.com"));
  AddressList lit = list({"[1.2.3.4]"}, std::nullopt, {});
  EXPECT_TRUE(lit.match("x@[1.2.3.4]"));
}

TEST(AddressList, EmptyDelimiterIsAPrefixMatch) {
  // The original tests `delimiter is not None`: "" makes every prefix a prefix.
  AddressList l = list({}, "", {"ali"});
  EXPECT_TRUE(l.match("alice@x"));
  EXPECT_FALSE(l.match("bob@x"));
}

TEST(AddressList, ParsedFromYamlLowercased) {
  config::ConfigErrors errors;
  YAML::Node y = YAML::Load("{domains: [Example.COM], prefixes: [Alice], delimiter: '+'}");
  AddressList l = parse_address_list(config::Node(y, "policy", &errors));
  ASSERT_TRUE(errors.ok()) << errors.error_text();
  EXPECT_EQ(l.domains, std::vector<std::string>{"example.com"});
  EXPECT_EQ(l.prefixes, std::vector<std::string>{"alice"});
  EXPECT_EQ(l.delimiter, Opt("+"));
  EXPECT_TRUE(l.match("alice+x@example.com"));

  y = YAML::Load("{domains: example.com, prefixes: [[a]]}");
  parse_address_list(config::Node(y, "policy", &errors));
  EXPECT_NE(errors.error_text().find("policy.domains: expected a list"), std::string::npos)
      << errors.error_text();
  EXPECT_NE(errors.error_text().find("policy.prefixes[0]: expected a string"), std::string::npos)
      << errors.error_text();
}

}  // namespace
}  // namespace koukan::router::filters
