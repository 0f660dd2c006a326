#include "router/output/exploder.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/core.h>

#include "common/base/log.hpp"
#include "router/output/output_service.hpp"
#include "router/storage/storage.hpp"

namespace koukan::router {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

namespace {

const char* kTimeoutMsg = "upstream timeout (AsyncFilterWrapper)";
const char* kStoreFailedMsg = "4.3.0 store&forward failed: could not store the upstream (exploder)";

struct ExploderParams {
  bool msa = false;
  std::chrono::seconds rcpt_timeout{30};
  std::chrono::seconds data_timeout{300};
};

// One downstream recipient and its upstream transaction (Recipient +
// AsyncFilterWrapper, router.md §12.2, §12.4).
struct Recipient {
  // The upstream, run in memory (OutputService::Upstream); null if it could
  // not be started.
  std::shared_ptr<OutputService::Upstream> upstream;
  std::int64_t version = 0;
  TransactionMetadata up;  // last seen upstream responses
  bool body_sent = false;  // finalized body handed upstream
  bool durable_sent = false;  // retry + notification written upstream
  bool cancel_sent = false;
  // Sticky timeout responses (never changed once reported).
  std::optional<Response> t_mail, t_rcpt, t_data;
  // Post-processed view: what the Exploder reports.
  std::optional<Response> mail, rcpt, data;
  bool upgraded = false;  // a store&forward 250 was given
  bool store_failed = false;  // storing it for store&forward failed: no 250
  bool rcpt_reported = false;
};

struct ExploderState : chain::FilterState {
  std::vector<Recipient> rcpts;
};

bool body_finalized(const TransactionMetadata& tx) {
  if (!tx.body) return false;
  const auto* bs = std::get_if<BodyStatus>(&*tx.body);
  return bs && bs->blob_status && bs->blob_status->finalized;
}

class Exploder final : public chain::Filter {
 public:
  Exploder(ExploderParams p, OutputService& out) : p_(p), out_(out) {}

  std::unique_ptr<chain::FilterState> new_state() const override {
    return std::make_unique<ExploderState>();
  }

  Task<Result<chain::FilterResult>> on_update(chain::FilterCall& call) const override;

 private:
  // AsyncFilterWrapper post-processing of one recipient's upstream view.
  void post_process(Recipient& r, bool body_done) const {
    r.mail = r.up.mail_response;
    r.rcpt = r.up.rcpt_response.empty() ? std::nullopt : r.up.rcpt_response[0];
    r.data = r.up.data_response;
    if (!r.mail && r.t_mail) r.mail = r.t_mail;
    if (!r.rcpt && r.t_rcpt) r.rcpt = r.t_rcpt;
    if (!r.data && r.t_data) r.data = r.t_data;
    if (r.mail && r.mail->err() && !r.rcpt)
      r.rcpt = Response(r.mail->code, "RCPT failed precondition MAIL (AsyncFilterWrapper)");
    if (r.body_sent && r.rcpt && r.rcpt->err() && !r.data)
      r.data = Response(r.rcpt->temp() ? 450 : 550, "DATA failed precondition RCPT (AsyncFilterWrapper)");
    if (r.t_mail) r.mail = r.t_mail;
    if (r.t_rcpt) r.rcpt = r.t_rcpt;
    if (r.t_data) r.data = r.t_data;
    if (p_.msa) {
      if (r.mail && r.mail->temp()) {
        r.mail = Response(250, "MAIL ok (AsyncFilterWrapper store&forward)");
        r.upgraded = true;
      }
      if (r.rcpt && r.rcpt->temp()) {
        r.rcpt = Response(250, "RCPT ok (AsyncFilterWrapper store&forward)");
        r.upgraded = true;
      }
      if (!body_done && r.data && r.data->temp()) r.data.reset();
      if (r.store_failed) {
        // Not stored: a store&forward 250 would promise a delivery nobody
        // retries. The client tries again later.
        if (body_done && r.body_sent && !(r.data && r.data->ok())) r.data = Response(451, kStoreFailedMsg);
      } else if (body_done && r.body_sent && (r.upgraded || (r.data && r.data->temp()))) {
        if (!(r.data && r.data->ok())) {
          r.data = Response(250, "DATA ok (AsyncFilterWrapper store&forward)");
          r.upgraded = true;
        }
      }
    }
  }

  // Does this recipient still wait for an upstream answer?
  static bool pending(const Recipient& r) {
    if (!r.upstream) return false;
    if (!r.mail || !r.rcpt) return true;
    if (r.mail->err() || r.rcpt->err()) return false;
    return r.body_sent && !r.data;
  }

  static void refresh(Recipient& r) {
    const TransactionMetadata v = r.upstream->view();
    r.version = r.upstream->version();
    r.up.mail_response = v.mail_response;
    r.up.rcpt_response = v.rcpt_response;
    r.up.data_response = v.data_response;
  }

  // Turns the upstream durable: stored with retry + notification
  // (store&forward); returns after the commit.
  Task<void> make_durable(Recipient& r, const log::Logger& lg) const {
    if (r.durable_sent || !r.upstream) co_return;
    auto p = co_await r.upstream->persist();
    if (p.ok()) {
      r.durable_sent = true;
    } else {
      r.store_failed = true;
      lg.error("exploder: storing an upstream for store&forward failed: {}", p.error().message);
    }
  }

  ExploderParams p_;
  OutputService& out_;
};

Task<Result<chain::FilterResult>> Exploder::on_update(chain::FilterCall& call) const {
  auto& st = *static_cast<ExploderState*>(call.state);
  TransactionMetadata& tx = call.tx;
  const TransactionMetadata& d = call.delta;
  log::Logger lg(call.env ? "tx=" + call.env->rest_id : std::string("exploder"));

  // 1. cancel
  if (d.cancelled) {
    for (auto& r : st.rcpts) {
      if (!r.upstream || r.data || r.cancel_sent) continue;
      r.upstream->cancel();
      r.cancel_sent = true;
    }
    co_return chain::FilterResult{};
  }

  // 2. MAIL is accepted at once.
  if (d.mail_from && !tx.mail_response) tx.mail_response = Response(250, kExploderMailOk);

  const bool body_done = body_finalized(tx);
  const bool noop = d.empty();

  // 3. new recipients, then forward changes to existing ones.
  for (std::size_t i = st.rcpts.size(); i < tx.rcpt_to.size(); ++i) {
    Recipient r;
    if (!tx.sender || !tx.sender->name) co_return Error(Errc::internal, "exploder: tx has no sender");
    std::optional<std::string_view> tag;
    if (tx.sender->tag) tag = *tx.sender->tag;
    auto es = out_.config().resolve(*tx.sender->name, tag);
    if (!es.ok()) co_return Error(Errc::internal, "exploder: sender: " + es.error().message);
    if (!call.env) co_return Error(Errc::internal, "exploder: no transaction environment");
    OutputService::NewTx n = OutputService::copy_for_rcpt(tx, i, es->upstream_sender, es->upstream_tag);
    auto started = out_.start_upstream(std::move(n), *call.env);
    if (!started.ok()) {
      lg.error("exploder: upstream for rcpt {} failed: {}", i, started.error().message);
      r.t_mail = Response(250, "ok (exploder no-op, rcpt will fail)");
      r.t_rcpt = Response(451, "4.5.3 too many recipients / upstream unavailable (exploder)");
      r.body_sent = true;
    } else {
      r.upstream = std::move(*started);
      lg.info("exploder rcpt {} -> upstream (in memory)", i);
    }
    st.rcpts.push_back(std::move(r));
  }
  for (auto& r : st.rcpts) {
    if (!r.upstream) continue;
    if (body_done && !r.body_sent && call.env && call.env->body) {
      r.upstream->push_body(*call.env->body);
      r.body_sent = true;
    } else if (noop && !r.data) {
      r.upstream->ping();  // pass the downstream heartbeat on
    }
  }

  // 4. wait for the upstream answers.
  const auto deadline = Clock::now() + (body_done ? p_.data_timeout : p_.rcpt_timeout);
  for (auto& r : st.rcpts) post_process(r, body_done);
  for (auto& r : st.rcpts) {
    if (r.upstream && pending(r)) {
      refresh(r);
      post_process(r, body_done);
    }
    while (pending(r)) {
      auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) break;
      auto slice = std::min<Clock::duration>(left, std::chrono::seconds(1));
      co_await r.upstream->wait_for_change(r.version, slice);
      refresh(r);
      post_process(r, body_done);
    }
    if (pending(r)) {
      const Response t(450, kTimeoutMsg);
      if (!r.mail) r.t_mail = t;
      if (!r.rcpt) r.t_rcpt = t;
      if (r.body_sent && !r.data) r.t_data = t;
      post_process(r, body_done);
    }
  }

  // 5. rcpt responses, in order.
  if (tx.rcpt_response.size() < tx.rcpt_to.size()) tx.rcpt_response.resize(tx.rcpt_to.size());
  for (std::size_t i = 0; i < st.rcpts.size() && i < tx.rcpt_to.size(); ++i) {
    if (!tx.rcpt_response[i] && st.rcpts[i].rcpt) tx.rcpt_response[i] = st.rcpts[i].rcpt;
  }
  if (p_.msa && body_done) {
    for (auto& r : st.rcpts)
      if (r.upgraded && !(r.up.data_response && r.up.data_response->ok())) co_await make_durable(r, lg);
    for (auto& r : st.rcpts)
      if (r.store_failed) post_process(r, body_done);
  }

  // 6.-9. DATA
  if (!tx.body || tx.data_response || !body_done) {
    if (tx.body && st.rcpts.size() == 1 && !tx.data_response && st.rcpts[0].data && body_done)
      tx.data_response = st.rcpts[0].data;
    co_return chain::FilterResult{};
  }
  if (st.rcpts.size() == 1) {
    if (st.rcpts[0].data) tx.data_response = st.rcpts[0].data;
    else if (st.rcpts[0].rcpt && st.rcpts[0].rcpt->err()) tx.data_response = Response(st.rcpts[0].rcpt->temp() ? 450 : 550, "DATA failed precondition RCPT (AsyncFilterWrapper)");
    co_return chain::FilterResult{};
  }
  const Recipient* agree = nullptr;
  bool agreement = true;
  for (const auto& r : st.rcpts) {
    if (!r.rcpt || !r.rcpt->ok()) continue;
    if (!r.data) {
      agreement = false;
      break;
    }
    if (!agree) agree = &r;
    else if (agree->data->major_code() != r.data->major_code()) agreement = false;
  }
  if (agreement && !agree && !st.rcpts.empty()) {
    // Every RCPT failed: the last recipient's view decides.
    const Recipient& last = st.rcpts.back();
    tx.data_response = last.data ? *last.data : Response(550, "DATA failed precondition RCPT (AsyncFilterWrapper)");
    co_return chain::FilterResult{};
  }
  if (agreement && agree) {
    tx.data_response = Response(agree->data->code, agree->data->message + " (Exploder same response)");
    co_return chain::FilterResult{};
  }
  // 9. store&forward
  bool stored = true;
  for (auto& r : st.rcpts) {
    if (r.rcpt && r.rcpt->ok() && !(r.data && r.data->ok()) && !(r.up.data_response && r.up.data_response->ok())) {
      co_await make_durable(r, lg);
      stored = stored && !r.store_failed;
    }
  }
  tx.data_response = stored ? Response(250, "DATA ok (Exploder store&forward)") : Response(451, kStoreFailedMsg);
  co_return chain::FilterResult{};
}

}  // namespace

void register_exploder_filters(chain::FilterRegistry& registry, OutputService& output,
                               const RouterConfig& config) {
  (void)config;
  register_add_route(registry, output);
  OutputService* out = &output;
  registry.add("exploder", [out](const ChainEntry& entry, config::ConfigErrors& errors)
                               -> std::shared_ptr<const chain::FilterBase> {
    chain::expect_entry_keys(entry, errors, {"msa", "rcpt_timeout", "data_timeout"});
    config::Node n = chain::entry_node(entry, errors);
    ExploderParams p;
    p.msa = n.get<bool>("msa", false);
    p.rcpt_timeout = std::chrono::seconds(n.get<int>("rcpt_timeout", p.msa ? 5 : 30));
    p.data_timeout = std::chrono::seconds(n.get<int>("data_timeout", p.msa ? 30 : 300));
    if (p.rcpt_timeout.count() < 0) n["rcpt_timeout"].error("must be >= 0");
    if (p.data_timeout.count() < 0) n["data_timeout"].error("must be >= 0");
    return std::make_shared<const Exploder>(p, *out);
  });
}

}  // namespace koukan::router
