#include "common/config/yaml.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

namespace koukan::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

YAML::Node parse(std::string_view text) {
  auto r = load_yaml_string(text, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? *r : YAML::Node();
}

std::vector<std::string> paths(const std::vector<Issue>& v) {
  std::vector<std::string> out;
  for (const Issue& i : v) out.push_back(i.path);
  return out;
}

TEST(ConfigErrors, FormatsPathAndMessageOnePerLine) {
  ConfigErrors errs;
  EXPECT_TRUE(errs.ok());
  errs.error("endpoint[2].chain[5].filter", "unknown filter 'x'");
  errs.error("", "expected a map");
  errs.warning("global.gc_interval", "obsolete key, ignored");
  EXPECT_FALSE(errs.ok());
  EXPECT_EQ(errs.error_text(),
            "endpoint[2].chain[5].filter: unknown filter 'x'\n<root>: expected a map");
  EXPECT_THAT(errs.warning_lines(), ElementsAre("global.gc_interval: obsolete key, ignored"));
}

TEST(Paths, ChildAndIndex) {
  EXPECT_EQ(child_path("", "global"), "global");
  EXPECT_EQ(child_path("global", "executor"), "global.executor");
  EXPECT_EQ(index_path("endpoint", 2), "endpoint[2]");
  ConfigErrors errs;
  Node root = Node::root(parse("endpoint: [{chain: [{filter: a}, {filter: b}]}]"), &errs);
  Node f = root["endpoint"].at(0)["chain"].at(1)["filter"];
  EXPECT_EQ(f.path(), "endpoint[0].chain[1].filter");
  EXPECT_EQ(f.as<std::string>(), "b");
  EXPECT_EQ(f.line(), 1);
}

TEST(Load, SyntaxErrorNamesLineAndColumn) {
  auto r = load_yaml_string("a: 1\nb: [1, 2\nc: 3\n", "router.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::bad_request);
  EXPECT_THAT(r.error().message, ::testing::MatchesRegex("router\\.yaml:[34]:[0-9]+: .+"));

  auto r2 = load_yaml_string("a:\n  b: 1\n c: 2\n", "x.yaml");
  ASSERT_FALSE(r2.ok());
  EXPECT_THAT(r2.error().message, HasSubstr("x.yaml:3:"));
}

TEST(Load, MissingFileNamesThePath) {
  auto r = load_yaml_file("/nonexistent/koukan/router.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "/nonexistent/koukan/router.yaml: cannot open file");
}

TEST(Load, FileRoundTrip) {
  std::string path = ::testing::TempDir() + "koukan_yaml_test.yaml";
  {
    std::ofstream out(path);
    out << "x: 5\n";
  }
  auto r = load_yaml_file(path);
  std::remove(path.c_str());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["x"].as<int>(), 5);
}

TEST(Node, TypedGettersAndDefaults) {
  ConfigErrors errs;
  Node n = Node::root(parse(R"(
s: hello
n: 42
big: 5000000000
neg: -3
b: true
d: 1.5
i_as_d: 7
nul: null
num_as_string: 8000
)"), &errs);
  EXPECT_EQ(n.get<std::string>("s", ""), "hello");
  EXPECT_EQ(n.get<int>("n", 0), 42);
  EXPECT_EQ(n.get<std::int64_t>("big", 0), 5000000000);
  EXPECT_EQ(n.get<std::int64_t>("neg", 0), -3);
  EXPECT_EQ(n.get<bool>("b", false), true);
  EXPECT_DOUBLE_EQ(n.get<double>("d", 0), 1.5);
  EXPECT_DOUBLE_EQ(n.get<double>("i_as_d", 0), 7);
  EXPECT_EQ(n.get<std::string>("num_as_string", ""), "8000");
  // absent and null -> default / nullopt, no error
  EXPECT_EQ(n.get<int>("absent", 9), 9);
  EXPECT_EQ(n.get<int>("nul", 9), 9);
  EXPECT_EQ(n.get_optional<std::string>("nul"), std::nullopt);
  EXPECT_EQ(n.get_optional<std::string>("absent"), std::nullopt);
  EXPECT_TRUE(n["nul"].present());
  EXPECT_FALSE(n["absent"].present());
  EXPECT_TRUE(errs.ok()) << errs.error_text();
}

TEST(Node, WrongTypeNamesPathAndExpectedType) {
  ConfigErrors errs;
  Node n = Node::root(parse(R"(
global:
  port: "8000"
  count: 1.5
  flag: maybe
  name: [a, b]
  ratio: abc
  small: 5000000000
  unsigned: -1
)"), &errs);
  Node g = n["global"];
  EXPECT_EQ(g.get<int>("port", 1), 1);
  EXPECT_EQ(g.get<int>("count", 2), 2);
  EXPECT_EQ(g.get<bool>("flag", false), false);
  EXPECT_EQ(g.get<std::string>("name", "d"), "d");
  EXPECT_EQ(g.get<double>("ratio", 0.5), 0.5);
  EXPECT_EQ(g.get<int>("small", 3), 3);
  EXPECT_EQ(g.get<std::uint64_t>("unsigned", 4u), 4u);
  ASSERT_EQ(errs.errors().size(), 7u) << errs.error_text();
  EXPECT_EQ(errs.errors()[0].path, "global.port");
  EXPECT_EQ(errs.errors()[0].message,
            "expected an integer (32-bit), got the string \"8000\" (line 3)");
  EXPECT_EQ(errs.errors()[1].path, "global.count");
  EXPECT_THAT(errs.errors()[1].message, HasSubstr("expected an integer"));
  EXPECT_EQ(errs.errors()[2].path, "global.flag");
  EXPECT_THAT(errs.errors()[2].message, HasSubstr("expected a boolean"));
  EXPECT_EQ(errs.errors()[3].path, "global.name");
  EXPECT_THAT(errs.errors()[3].message, HasSubstr("expected a string, got a list"));
  EXPECT_EQ(errs.errors()[4].path, "global.ratio");
  EXPECT_THAT(errs.errors()[4].message, HasSubstr("expected a number"));
  EXPECT_EQ(errs.errors()[5].path, "global.small");
  EXPECT_EQ(errs.errors()[6].path, "global.unsigned");
  EXPECT_THAT(errs.errors()[6].message, HasSubstr("non-negative"));
}

TEST(Node, RequiredKeyMissing) {
  ConfigErrors errs;
  Node n = Node::root(parse("storage: {url: ~}\n"), &errs);
  EXPECT_EQ(n["storage"].get_required<std::string>("url"), std::nullopt);
  EXPECT_EQ(n["storage"].get_required<std::string>("other"), std::nullopt);
  EXPECT_THAT(paths(errs.errors()), ElementsAre("storage.url", "storage.other"));
  EXPECT_THAT(errs.errors()[0].message, HasSubstr("required key missing"));
}

TEST(Node, InRange) {
  ConfigErrors errs;
  Node n = Node::root(parse("a: 0\nb: 70000\nc: 5\n"), &errs);
  EXPECT_EQ(n.get_in_range<int>("a", 10, 1, std::numeric_limits<int>::max()), 10);
  EXPECT_EQ(n.get_in_range<int>("b", 1, 0, 65535), 1);
  EXPECT_EQ(n.get_in_range<int>("c", 1, 0, 65535), 5);
  ASSERT_EQ(errs.errors().size(), 2u);
  EXPECT_EQ(ConfigErrors::format(errs.errors()[0]), "a: must be at least 1 (line 1)");
  EXPECT_EQ(ConfigErrors::format(errs.errors()[1]), "b: must be between 0 and 65535 (line 2)");
}

TEST(Node, ExpectKeysUnknownStaleDuplicate) {
  ConfigErrors errs;
  Node n = Node::root(parse(R"(
global:
  dequeue: true
  gc_interval: 30
  deqeue: false
  frobnicate: 1
  dequeue: false
)"), &errs);
  EXPECT_TRUE(n["global"].expect_keys({"dequeue", "executor"}, {"gc_interval"}));
  EXPECT_THAT(paths(errs.errors()),
              ElementsAre("global.deqeue", "global.frobnicate", "global.dequeue"));
  EXPECT_EQ(errs.errors()[0].message, "unknown key; did you mean 'dequeue'? (line 5)");
  EXPECT_EQ(errs.errors()[1].message, "unknown key (line 6)");
  EXPECT_EQ(errs.errors()[2].message, "duplicate key (line 7)");
  ASSERT_EQ(errs.warnings().size(), 1u);
  EXPECT_EQ(errs.warnings()[0].path, "global.gc_interval");
  EXPECT_THAT(errs.warnings()[0].message, HasSubstr("obsolete"));
}

TEST(Node, ExpectKeysOnNonMapIsTypeError) {
  ConfigErrors errs;
  Node n = Node::root(parse("global: [1, 2]\nstorage:\n"), &errs);
  EXPECT_FALSE(n["global"].expect_keys({"dequeue"}));
  EXPECT_TRUE(n["storage"].expect_keys({"url"}));  // null = empty section
  ASSERT_EQ(errs.errors().size(), 1u);
  EXPECT_EQ(ConfigErrors::format(errs.errors()[0]), "global: expected a map, got a list (line 1)");
}

TEST(Node, ListsAndEntries) {
  ConfigErrors errs;
  Node n = Node::root(parse("l: [a, b]\nm: {x: 1, y: 2}\nnot_list: 3\n"), &errs);
  auto l = n["l"].list();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[1].path(), "l[1]");
  EXPECT_EQ(l[1].as<std::string>(), "b");
  auto m = n["m"].entries();
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].first, "x");
  EXPECT_EQ(m[1].second.path(), "m.y");
  EXPECT_TRUE(n["absent"].list().empty());
  EXPECT_TRUE(errs.ok());
  EXPECT_TRUE(n["not_list"].list().empty());
  EXPECT_THAT(errs.error_text(), HasSubstr("not_list: expected a list, got the value 3"));
}

TEST(Node, ChildOfScalarIsAbsentNotACrash) {
  ConfigErrors errs;
  Node n = Node::root(parse("a: 3\n"), &errs);
  EXPECT_FALSE(n["a"]["b"].present());
  EXPECT_FALSE(n["a"].at(0).present());
  EXPECT_EQ(n["a"]["b"].path(), "a.b");
  EXPECT_TRUE(errs.ok());
}

TEST(Node, CollectsAllErrorsNotJustTheFirst) {
  ConfigErrors errs;
  Node n = Node::root(parse("a: x\nb: y\nc: z\n"), &errs);
  n.expect_keys({"d"});
  (void)n.get<int>("a", 0);
  (void)n.get<bool>("b", false);
  EXPECT_EQ(errs.errors().size(), 5u) << errs.error_text();
}

}  // namespace
}  // namespace koukan::config
