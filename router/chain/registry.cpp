#include "router/chain/registry.hpp"

#include <utility>
#include <vector>

namespace koukan::router::chain {

bool FilterRegistry::add(std::string name, FilterFactory factory) {
  return factories_.emplace(std::move(name), std::move(factory)).second;
}

const FilterFactory* FilterRegistry::find(std::string_view name) const {
  auto it = factories_.find(name);
  return it == factories_.end() ? nullptr : &it->second;
}

FilterNames FilterRegistry::names() const {
  FilterNames out;
  for (const auto& [name, f] : factories_) out.insert(name);
  return out;
}

config::Node entry_node(const ChainEntry& entry, config::ConfigErrors& errors) {
  return config::Node(entry.yaml, entry.path, &errors);
}

bool expect_entry_keys(const ChainEntry& entry, config::ConfigErrors& errors,
                       std::initializer_list<std::string_view> known) {
  std::vector<std::string_view> keys(known);
  keys.push_back("filter");
  return entry_node(entry, errors).expect_keys(keys, {});
}

// ---- test_responder -----------------------------------------------------------------

namespace {

class TestResponder final : public Filter {
 public:
  TestResponder(std::optional<Response> mail, std::optional<Response> rcpt,
                std::optional<Response> data)
      : mail_(std::move(mail)), rcpt_(std::move(rcpt)), data_(std::move(data)) {}

  Task<Result<FilterResult>> on_update(FilterCall& call) const override {
    TransactionMetadata& tx = call.tx;
    const TransactionMetadata& d = call.delta;
    if (d.mail_from && mail_ && !tx.mail_response) tx.mail_response = mail_;
    if (rcpt_ && !d.rcpt_to.empty()) {
      std::size_t first = d.rcpt_to_list_offset.value_or(0);
      for (std::size_t j = first; j < first + d.rcpt_to.size(); ++j) {
        if (tx.rcpt_response.size() <= j) tx.rcpt_response.resize(j + 1);
        if (!tx.rcpt_response[j]) tx.rcpt_response[j] = rcpt_;
      }
    }
    if (d.body && data_ && !tx.data_response) tx.data_response = data_;
    co_return FilterResult{};
  }

 private:
  std::optional<Response> mail_, rcpt_, data_;
};

std::optional<Response> parse_response(const config::Node& n) {
  if (n.is_null() || !n.expect_map()) return std::nullopt;
  n.expect_keys({"code", "message"});
  auto code = n.get_required<int>("code");
  auto msg = n.get<std::string>("message", "");
  if (!code) return std::nullopt;
  if (*code < 200 || *code > 599) {
    n["code"].error("must be between 200 and 599");
    return std::nullopt;
  }
  return Response(*code, msg);
}

std::shared_ptr<const FilterBase> make_test_responder(const ChainEntry& entry,
                                                      config::ConfigErrors& errors) {
  expect_entry_keys(entry, errors, {"mail_response", "rcpt_response", "data_response"});
  config::Node n = entry_node(entry, errors);
  auto mail = parse_response(n["mail_response"]);
  auto rcpt = parse_response(n["rcpt_response"]);
  auto data = parse_response(n["data_response"]);
  return std::make_shared<const TestResponder>(std::move(mail), std::move(rcpt), std::move(data));
}

}  // namespace

void register_builtin_filters(FilterRegistry& registry) {
  registry.add("test_responder", make_test_responder);
}

}  // namespace koukan::router::chain
