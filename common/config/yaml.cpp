#include "common/config/yaml.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

namespace koukan::config {

// ---- ConfigErrors ---------------------------------------------------------

void ConfigErrors::error(std::string path, std::string message) {
  errors_.push_back({std::move(path), std::move(message)});
}

void ConfigErrors::warning(std::string path, std::string message) {
  warnings_.push_back({std::move(path), std::move(message)});
}

std::string ConfigErrors::format(const Issue& issue) {
  return (issue.path.empty() ? std::string("<root>") : issue.path) + ": " + issue.message;
}

std::string ConfigErrors::error_text() const {
  std::string out;
  for (const Issue& e : errors_) {
    if (!out.empty()) out += '\n';
    out += format(e);
  }
  return out;
}

std::vector<std::string> ConfigErrors::warning_lines() const {
  std::vector<std::string> out;
  out.reserve(warnings_.size());
  for (const Issue& w : warnings_) out.push_back(format(w));
  return out;
}

// ---- loading ----------------------------------------------------------------

namespace {

Error parse_error(std::string_view source, const YAML::Exception& e) {
  std::string where(source);
  if (!e.mark.is_null()) {
    where += fmt::format(":{}:{}", e.mark.line + 1, e.mark.column + 1);
  }
  return Error(Errc::bad_request, where + ": " + e.msg);
}

}  // namespace

Result<YAML::Node> load_yaml_string(std::string_view text, std::string_view source_name) {
  try {
    return YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return parse_error(source_name, e);
  }
}

Result<YAML::Node> load_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(Errc::bad_request, path + ": cannot open file");
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Error(Errc::bad_request, path + ": read error");
  return load_yaml_string(buf.str(), path);
}

// ---- paths --------------------------------------------------------------------

std::string child_path(std::string_view parent, std::string_view key) {
  std::string out(parent);
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

std::string index_path(std::string_view parent, std::size_t index) {
  return fmt::format("{}[{}]", parent, index);
}

// ---- Node -------------------------------------------------------------------

Node::Node(YAML::Node node, std::string path, ConfigErrors* errors)
    : node_(std::move(node)), path_(std::move(path)), errors_(errors) {}

int Node::line() const {
  if (!node_.IsDefined()) return 0;
  YAML::Mark m = node_.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

std::string Node::describe() const {
  if (!node_.IsDefined()) return "absent";
  switch (node_.Type()) {
    case YAML::NodeType::Null: return "null";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: {
      std::string v = node_.Scalar();
      if (v.size() > 40) v = v.substr(0, 37) + "...";
      if (node_.Tag() == "!") return "the string \"" + v + "\"";
      return "the value " + v;
    }
    default: return "an undefined value";
  }
}

void Node::error(std::string_view message) const {
  int l = line();
  errors_->error(path_, l ? fmt::format("{} (line {})", message, l) : std::string(message));
}

void Node::warning(std::string_view message) const {
  int l = line();
  errors_->warning(path_, l ? fmt::format("{} (line {})", message, l) : std::string(message));
}

void Node::type_error(std::string_view what) const {
  error(fmt::format("expected {}, got {}", what, describe()));
}

Node Node::operator[](std::string_view key) const {
  std::string p = child_path(path_, key);
  if (!node_.IsMap()) return Node(YAML::Node(YAML::NodeType::Undefined), std::move(p), errors_);
  // Linear scan rather than YAML::Node::operator[] so that a lookup never
  // throws or mutates, whatever the key types in the document.
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (it->first.IsScalar() && it->first.Scalar() == key) {
      return Node(it->second, std::move(p), errors_);
    }
  }
  return Node(YAML::Node(YAML::NodeType::Undefined), std::move(p), errors_);
}

Node Node::at(std::size_t index) const {
  std::string p = index_path(path_, index);
  if (!node_.IsSequence() || index >= node_.size()) {
    return Node(YAML::Node(YAML::NodeType::Undefined), std::move(p), errors_);
  }
  return Node(node_[index], std::move(p), errors_);
}

bool Node::expect_map() const {
  if (node_.IsMap()) return true;
  if (!is_null()) type_error("a map");
  return false;
}

bool Node::expect_list() const {
  if (node_.IsSequence()) return true;
  if (!is_null()) type_error("a list");
  return false;
}

std::vector<Node> Node::list() const {
  std::vector<Node> out;
  if (!expect_list()) return out;
  out.reserve(node_.size());
  for (std::size_t i = 0; i < node_.size(); ++i) {
    out.emplace_back(node_[i], index_path(path_, i), errors_);
  }
  return out;
}

std::vector<std::pair<std::string, Node>> Node::entries() const {
  std::vector<std::pair<std::string, Node>> out;
  if (!expect_map()) return out;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (!it->first.IsScalar()) {
      Node(it->first, path_, errors_).error("map keys must be strings");
      continue;
    }
    const std::string& k = it->first.Scalar();
    out.emplace_back(k, Node(it->second, child_path(path_, k), errors_));
  }
  return out;
}

namespace {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

template <class Range>
bool contains(const Range& r, std::string_view k) {
  return std::find(std::begin(r), std::end(r), k) != std::end(r);
}

}  // namespace

bool Node::expect_keys(std::initializer_list<std::string_view> known,
                       std::initializer_list<std::string_view> stale) const {
  return expect_keys(std::vector<std::string_view>(known), std::vector<std::string_view>(stale));
}

bool Node::expect_keys(const std::vector<std::string_view>& known,
                       const std::vector<std::string_view>& stale) const {
  if (is_null()) return true;
  if (!expect_map()) return false;
  std::set<std::string, std::less<>> seen;
  for (auto& [key, child] : entries()) {
    if (!seen.insert(key).second) {
      child.error("duplicate key");
      continue;
    }
    if (contains(known, key)) continue;
    if (contains(stale, key)) {
      child.warning("obsolete key, ignored");
      continue;
    }
    std::string msg = "unknown key";
    std::string_view best;
    std::size_t best_d = 3;  // suggest only close matches
    for (std::string_view k : known) {
      std::size_t d = edit_distance(key, k);
      if (d < best_d && d * 3 <= key.size()) {
        best_d = d;
        best = k;
      }
    }
    if (!best.empty()) msg += fmt::format("; did you mean '{}'?", best);
    child.error(msg);
  }
  return true;
}

// ---- typed values -------------------------------------------------------------

namespace {

// Numbers and booleans must be plain (unquoted) scalars.
bool plain_scalar(const YAML::Node& n) { return n.IsScalar() && n.Tag() != "!"; }

}  // namespace

template <>
std::optional<std::string> Node::as<std::string>() const {
  if (is_null()) return std::nullopt;
  if (!node_.IsScalar()) {
    type_error("a string");
    return std::nullopt;
  }
  return node_.Scalar();
}

template <>
std::optional<bool> Node::as<bool>() const {
  if (is_null()) return std::nullopt;
  // true/false, yes/no, on/off in any case; not YAML 1.1's y/n.
  bool v = false;
  if (plain_scalar(node_) && node_.Scalar().size() > 1 &&
      YAML::convert<bool>::decode(node_, v)) {
    return v;
  }
  type_error("a boolean (true or false)");
  return std::nullopt;
}

template <>
std::optional<std::int64_t> Node::as<std::int64_t>() const {
  if (is_null()) return std::nullopt;
  std::int64_t v = 0;
  if (plain_scalar(node_) && YAML::convert<std::int64_t>::decode(node_, v)) return v;
  type_error("an integer");
  return std::nullopt;
}

template <>
std::optional<int> Node::as<int>() const {
  if (is_null()) return std::nullopt;
  std::int64_t v = 0;
  if (plain_scalar(node_) && YAML::convert<std::int64_t>::decode(node_, v) &&
      v >= std::numeric_limits<int>::min() && v <= std::numeric_limits<int>::max()) {
    return static_cast<int>(v);
  }
  type_error("an integer (32-bit)");
  return std::nullopt;
}

template <>
std::optional<std::uint64_t> Node::as<std::uint64_t>() const {
  if (is_null()) return std::nullopt;
  std::uint64_t v = 0;
  if (plain_scalar(node_) && YAML::convert<std::uint64_t>::decode(node_, v)) return v;
  type_error("a non-negative integer");
  return std::nullopt;
}

template <>
std::optional<double> Node::as<double>() const {
  if (is_null()) return std::nullopt;
  double v = 0;
  if (plain_scalar(node_) && YAML::convert<double>::decode(node_, v) && std::isfinite(v)) {
    return v;
  }
  type_error("a number");
  return std::nullopt;
}

}  // namespace koukan::config
