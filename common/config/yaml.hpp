#pragma once
// Typed YAML reading with path-aware error collection.
//
// A config loader walks the YAML tree through `Node`, a small value that
// carries the node, its path (`endpoint[2].chain[5].filter`) and the
// `ConfigErrors` collector of the whole load. Every problem is recorded with
// its path and the walk goes on, so one run reports ALL errors:
//
//   ConfigErrors errs;
//   Node root = Node::root(yaml, &errs);
//   root.expect_keys({"global", "storage"});
//   Node g = root["global"];
//   g.expect_keys({"dequeue"}, /*stale=*/{"gc_interval"});
//   bool dequeue = g.get<bool>("dequeue", true);
//   if (!errs.ok()) ... errs.error_text() ...
//
// Conventions:
//  * absent and null mean "unset": `get` returns the default, `get_optional`
//    nullopt, `get_required` records "required key missing";
//  * a value of the wrong type records "expected <type>, got <what>" at the
//    value's path and behaves as unset;
//  * numbers and booleans must be plain scalars ("8000" quoted is a string);
//    a string accepts any scalar (`name: 42` is the string "42");
//  * messages about present nodes end with " (line N)".
#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/core.h>

#include "common/base/result.hpp"

namespace koukan::config {

struct Issue {
  std::string path;     // "" = the document root
  std::string message;
};

// Collects every error and warning of one config load.
class ConfigErrors {
 public:
  void error(std::string path, std::string message);
  void warning(std::string path, std::string message);

  bool ok() const { return errors_.empty(); }
  const std::vector<Issue>& errors() const { return errors_; }
  const std::vector<Issue>& warnings() const { return warnings_; }

  // "path: message", the root path printed as "<root>".
  static std::string format(const Issue& issue);
  // All errors, one per line, no trailing newline.
  std::string error_text() const;
  std::vector<std::string> warning_lines() const;

 private:
  std::vector<Issue> errors_;
  std::vector<Issue> warnings_;
};

// Parses YAML; syntax errors name the source with line and column
// ("router.yaml:12:3: illegal map value"). Errc::bad_request on failure.
Result<YAML::Node> load_yaml_file(const std::string& path);
Result<YAML::Node> load_yaml_string(std::string_view text,
                                    std::string_view source_name = "<string>");

// Joins paths: child_path("a", "b") == "a.b", child_path("", "b") == "b";
// index_path("a", 2) == "a[2]".
std::string child_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, std::size_t index);

class Node {
 public:
  // `node` may be an undefined YAML::Node (absent key).
  Node(YAML::Node node, std::string path, ConfigErrors* errors);
  static Node root(const YAML::Node& node, ConfigErrors* errors) {
    return Node(node, std::string(), errors);
  }

  const std::string& path() const { return path_; }
  // The underlying YAML (shares storage with the document; YAML::Clone it to
  // keep an independent copy).
  const YAML::Node& yaml() const { return node_; }
  ConfigErrors& errors() const { return *errors_; }

  bool present() const { return node_.IsDefined(); }        // key exists, maybe null
  bool is_null() const { return !node_.IsDefined() || node_.IsNull(); }  // unset
  bool is_map() const { return node_.IsMap(); }
  bool is_list() const { return node_.IsSequence(); }
  bool is_scalar() const { return node_.IsScalar(); }
  // 1-based line of a present node, 0 when unknown.
  int line() const;
  // "a map", "a list", "null", "absent", "the string \"x\"", "the value 12".
  std::string describe() const;

  // Records an error / a warning at this node's path (" (line N)" appended
  // when the node is present).
  void error(std::string_view message) const;
  void warning(std::string_view message) const;
  // Records "expected <what>, got <describe()>".
  void type_error(std::string_view what) const;

  // Children. On a node that is not a map (or not a list) the child is
  // absent; the caller reports the container's type via expect_map/list.
  Node operator[](std::string_view key) const;
  Node at(std::size_t index) const;

  // Container checks: true if this is a map (a list). Unset -> false with no
  // error; any other type -> type error and false.
  bool expect_map() const;
  bool expect_list() const;
  // Elements of a list (empty if unset or not a list; type error if not a
  // list).
  std::vector<Node> list() const;
  // Entries of a map in document order (keys must be scalars).
  std::vector<std::pair<std::string, Node>> entries() const;

  // For a map: records "unknown key" (with a suggestion when one of `known`
  // is close) for every key not in `known`; keys in `stale` (known-obsolete
  // keys that are accepted and ignored) produce a warning instead. Duplicate
  // keys are errors. Unset -> true; not a map -> type error, false.
  bool expect_keys(std::initializer_list<std::string_view> known,
                   std::initializer_list<std::string_view> stale = {}) const;
  bool expect_keys(const std::vector<std::string_view>& known,
                   const std::vector<std::string_view>& stale) const;

  // This node's value as T. Unset -> nullopt (no error); wrong type ->
  // type error, nullopt. T: std::string, bool, int, std::int64_t,
  // std::uint64_t, double (finite).
  template <class T>
  std::optional<T> as() const;

  // A child's value.
  template <class T>
  T get(std::string_view key, T default_value) const {
    auto v = (*this)[key].template as<T>();
    return v ? std::move(*v) : std::move(default_value);
  }
  template <class T>
  std::optional<T> get_optional(std::string_view key) const {
    return (*this)[key].template as<T>();
  }
  // Unset -> "required key missing" at the child's path, nullopt.
  template <class T>
  std::optional<T> get_required(std::string_view key) const {
    Node c = (*this)[key];
    if (c.is_null()) {
      c.error("required key missing");
      return std::nullopt;
    }
    return c.template as<T>();
  }
  // Numeric child within [lo, hi]; out of range -> error, default returned.
  template <class T>
  T get_in_range(std::string_view key, T default_value, T lo, T hi) const;

 private:
  YAML::Node node_;
  std::string path_;
  ConfigErrors* errors_;
};

template <> std::optional<std::string> Node::as<std::string>() const;
template <> std::optional<bool> Node::as<bool>() const;
template <> std::optional<int> Node::as<int>() const;
template <> std::optional<std::int64_t> Node::as<std::int64_t>() const;
template <> std::optional<std::uint64_t> Node::as<std::uint64_t>() const;
template <> std::optional<double> Node::as<double>() const;

template <class T>
T Node::get_in_range(std::string_view key, T default_value, T lo, T hi) const {
  Node c = (*this)[key];
  auto v = c.template as<T>();
  if (!v) return default_value;
  if (*v < lo || *v > hi) {
    if (hi == std::numeric_limits<T>::max()) {
      c.error(fmt::format("must be at least {}", lo));
    } else {
      c.error(fmt::format("must be between {} and {}", lo, hi));
    }
    return default_value;
  }
  return *v;
}

}  // namespace koukan::config
