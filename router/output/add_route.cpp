// add_route (spec/filters.md §2.3, router.md §12.6): forks the transaction
// to a second sender/tag ("also deliver a copy there").
//
//  * store_and_forward: false — the fork runs that sender's output chain
//    in-process, in step with the main chain (same body, read from the same
//    stored blob); any error of the fork (MAIL, RCPT, DATA once its body is
//    complete) is copied into the main tx's empty response slots with
//    " (AddRouteFilter upstream)", so the main transaction fails with it.
//  * store_and_forward: true — the fork is a stored transaction of its own
//    (created when MAIL and RCPT are known, given the body by reference once
//    complete) delivered and retried by its own attempts; the main
//    transaction does not wait for it. Failing to store it is a temporary
//    error of the main transaction (the original leaves such a fork leased
//    and unhandled).
// Single recipient only (the original asserts): a second recipient gets
// 451 4.5.3. Without `sender` the filter is disabled (left out of the chain).
#include <fmt/core.h>

#include "common/base/log.hpp"
#include "router/chain/chain.hpp"
#include "router/output/exploder.hpp"
#include "router/output/output_service.hpp"
#include "router/storage/storage.hpp"

namespace koukan::router {

namespace {

const char* kSuffix = " (AddRouteFilter upstream)";

struct AddRouteParams {
  std::string sender;
  std::optional<std::string> tag;
  bool store_and_forward = false;
};

struct AddRouteState : chain::FilterState {
  std::unique_ptr<chain::ChainInstance> fork;  // in-process mode
  bool sender_stamped = false;
  std::string stored_id;  // store&forward mode
  bool stored_body = false;
  bool failed = false;
};

TransactionMetadata fork_delta(const TransactionMetadata& d) {
  TransactionMetadata f;
  f.remote_host = d.remote_host;
  f.local_host = d.local_host;
  f.mail_from = d.mail_from;
  f.rcpt_to = d.rcpt_to;
  f.rcpt_to_list_offset = d.rcpt_to_list_offset;
  for (auto& m : f.rcpt_to) m.routed = false;
  f.body = d.body;
  f.smtp_meta = d.smtp_meta;
  f.cancelled = d.cancelled;
  f.filter_output = d.filter_output;
  return f;
}

bool body_finalized(const TransactionMetadata& tx) {
  if (!tx.body) return false;
  const auto* bs = std::get_if<BodyStatus>(&*tx.body);
  return !bs || (bs->blob_status && bs->blob_status->finalized);
}

class AddRoute final : public chain::Filter {
 public:
  AddRoute(AddRouteParams p, OutputService& out) : p_(std::move(p)), out_(out) {}
  std::unique_ptr<chain::FilterState> new_state() const override {
    return std::make_unique<AddRouteState>();
  }
  Task<Result<chain::FilterResult>> on_update(chain::FilterCall& call) const override;

 private:
  Task<Result<chain::FilterResult>> in_process(chain::FilterCall& call, AddRouteState& st) const;
  Task<Result<chain::FilterResult>> stored(chain::FilterCall& call, AddRouteState& st) const;

  AddRouteParams p_;
  OutputService& out_;
};

Task<Result<chain::FilterResult>> AddRoute::on_update(chain::FilterCall& call) const {
  auto& st = *static_cast<AddRouteState*>(call.state);
  if (call.tx.rcpt_to.size() > 1) {
    // Only the first recipient is forked; refuse the others rather than
    // deliver them without their copy.
    for (std::size_t j = 1; j < call.tx.rcpt_to.size(); ++j) {
      if (call.tx.rcpt_response.size() <= j) call.tx.rcpt_response.resize(j + 1);
      if (!call.tx.rcpt_response[j])
        call.tx.rcpt_response[j] = Response(451, "4.5.3 add_route handles one recipient per transaction");
    }
  }
  if (st.failed) co_return chain::FilterResult{};
  if (p_.store_and_forward) co_return co_await stored(call, st);
  co_return co_await in_process(call, st);
}

Task<Result<chain::FilterResult>> AddRoute::in_process(chain::FilterCall& call,
                                                       AddRouteState& st) const {
  if (!st.fork) {
    std::optional<std::string_view> tag;
    if (p_.tag) tag = *p_.tag;
    auto es = out_.config().resolve(p_.sender, tag);
    if (!es.ok()) co_return Error(Errc::internal, "add_route: sender: " + es.error().message);
    auto it = out_.chains().find(es->output_chain);
    if (it == out_.chains().end())
      co_return Error(Errc::internal, "add_route: no chain '" + es->output_chain + "'");
    st.fork = std::make_unique<chain::ChainInstance>(it->second, call.env);
  }
  if (st.fork->tx().data_response && st.fork->tx().cancelled) co_return chain::FilterResult{};
  TransactionMetadata d = fork_delta(call.delta);
  if (call.tx.rcpt_to.size() > 1) {
    // Fork only the first recipient.
    std::size_t off = d.rcpt_to_list_offset.value_or(0);
    std::vector<Mailbox> keep;
    for (std::size_t k = 0; k < d.rcpt_to.size(); ++k)
      if (off + k == 0) keep.push_back(d.rcpt_to[k]);
    d.rcpt_to = std::move(keep);
    if (d.rcpt_to.empty()) d.rcpt_to_list_offset.reset();
  }
  if (!st.sender_stamped) {
    Sender s;
    s.name = p_.sender;
    s.tag = p_.tag;
    d.sender = s;
    st.sender_stamped = true;
  }
  auto r = co_await st.fork->update(std::move(d));
  if (!r.ok()) co_return Error(r.error().code, "add_route fork: " + r.error().message);
  const TransactionMetadata& f = st.fork->tx();
  auto mapped = [](const std::optional<Response>& r) {
    if (!r) return Response(250, "ok (AddRouteFilter noop)");
    return Response(r->code, r->message + kSuffix);
  };
  std::optional<Response> fr = f.rcpt_response.empty() ? std::nullopt : f.rcpt_response[0];
  std::optional<Response> fd = body_finalized(f) ? f.data_response : std::nullopt;
  const bool err = (f.mail_response && f.mail_response->err()) || (fr && fr->err()) ||
                   (fd && fd->err());
  if (!err) co_return chain::FilterResult{};
  TransactionMetadata& tx = call.tx;
  if (tx.mail_from && !tx.mail_response) tx.mail_response = mapped(f.mail_response);
  if (!tx.rcpt_to.empty()) {
    if (tx.rcpt_response.empty()) tx.rcpt_response.resize(1);
    if (!tx.rcpt_response[0]) tx.rcpt_response[0] = mapped(fr);
  }
  if (tx.body && body_finalized(tx) && !tx.data_response) tx.data_response = mapped(fd);
  co_return chain::FilterResult{};
}

Task<Result<chain::FilterResult>> AddRoute::stored(chain::FilterCall& call,
                                                   AddRouteState& st) const {
  TransactionMetadata& tx = call.tx;
  log::Logger lg(call.env ? "tx=" + call.env->rest_id : std::string("add_route"));
  auto fail = [&](const std::string& why) {
    lg.error("add_route store&forward to {}: {}", p_.sender, why);
    const Response r(451, "4.3.0 add_route: could not store the copy (AddRouteFilter upstream)");
    if (tx.mail_from && !tx.mail_response) tx.mail_response = r;
    st.failed = true;
  };
  if (st.stored_id.empty()) {
    if (!tx.mail_from || tx.rcpt_to.empty() || tx.cancelled) co_return chain::FilterResult{};
    const bool with_body = body_finalized(tx) && call.env;
    OutputService::NewTx n = OutputService::copy_for_rcpt(
        tx, 0, p_.sender, p_.tag, with_body ? &call.env->rest_id : nullptr);
    st.stored_body = with_body;
    auto c = co_await out_.create(std::move(n));
    if (!c.ok()) {
      fail(c.error().message);
      co_return chain::FilterResult{};
    }
    st.stored_id = c->rec.rest_id;
    lg.info("add_route copy {} for sender {}", st.stored_id, p_.sender);
  } else if (!st.stored_body && body_finalized(tx) && call.env) {
    TxWrite w;
    w.reuse_body_of = call.env->rest_id;
    auto* storage = &out_.storage();
    auto id = st.stored_id;
    auto f = [storage, id, w = std::move(w)]() { return storage->write(id, std::nullopt, w); };
    auto r = co_await offload(out_.pool(), std::move(f));
    if (!r.ok()) {
      fail(r.error().message);
      if (!tx.data_response) tx.data_response = Response(451, "4.3.0 add_route: could not store the copy (AddRouteFilter upstream)");
      co_return chain::FilterResult{};
    }
    st.stored_body = true;
  }
  co_return chain::FilterResult{};
}

}  // namespace

void register_add_route(chain::FilterRegistry& registry, OutputService& output) {
  OutputService* out = &output;
  registry.add("add_route", [out](const ChainEntry& entry, config::ConfigErrors& errors)
                                -> std::shared_ptr<const chain::FilterBase> {
    chain::expect_entry_keys(entry, errors, {"sender", "tag", "store_and_forward"});
    config::Node n = chain::entry_node(entry, errors);
    AddRouteParams p;
    auto sender = n.get_optional<std::string>("sender");
    p.tag = n.get_optional<std::string>("tag");
    p.store_and_forward = n.get<bool>("store_and_forward", false);
    if (!sender || sender->empty()) return nullptr;  // disabled (router.md §11)
    p.sender = *sender;
    std::optional<std::string_view> tag;
    if (p.tag) tag = *p.tag;
    auto es = out->config().resolve(p.sender, tag);
    if (!es.ok()) {
      n["sender"].error(fmt::format("unknown sender/tag: {}", es.error().message));
      return nullptr;
    }
    if (!out->config().find_endpoint(es->output_chain))
      n["sender"].error(fmt::format("sender '{}' has no output chain", p.sender));
    return std::make_shared<const AddRoute>(std::move(p), *out);
  });
}

}  // namespace koukan::router
