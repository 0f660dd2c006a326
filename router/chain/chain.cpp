#include "router/chain/chain.hpp"

#include <exception>
#include <utility>

#include <fmt/core.h>

namespace koukan::router::chain {

namespace {

Error at(const ChainLink& link, const Error& e) {
  return Error(e.code, fmt::format("{} ({}): {}", link.path, link.filter, e.message));
}

bool has_responses(const TransactionMetadata& tx) {
  if (tx.mail_response || tx.data_response) return true;
  for (const auto& r : tx.rcpt_response) {
    if (r) return true;
  }
  return false;
}

void fill_rcpt_response(TransactionMetadata& tx, std::size_t j, const Response& r) {
  if (tx.rcpt_response.size() <= j) tx.rcpt_response.resize(j + 1);
  if (!tx.rcpt_response[j]) tx.rcpt_response[j] = r;
}

}  // namespace

bool can_progress(const TransactionMetadata& tx) {
  if (tx.mail_response && tx.mail_response->err()) return false;
  if (tx.data_response) return false;
  if (!tx.rcpt_to.empty() && tx.rcpt_response.size() >= tx.rcpt_to.size()) {
    bool all_failed = true;
    for (std::size_t j = 0; j < tx.rcpt_to.size(); ++j) {
      if (!tx.rcpt_response[j] || tx.rcpt_response[j]->ok()) all_failed = false;
    }
    if (all_failed) return false;
  }
  return true;
}

// ---- building ------------------------------------------------------------------

std::shared_ptr<const ChainTemplate> build_chain(const EndpointConfig& endpoint,
                                                 const FilterRegistry& registry,
                                                 config::ConfigErrors& errors) {
  std::size_t before = errors.errors().size();
  std::vector<ChainLink> links;
  for (const ChainEntry& entry : endpoint.chain) {
    const FilterFactory* factory = registry.find(entry.filter);
    if (!factory) {
      errors.error(config::child_path(entry.path, "filter"),
                   fmt::format("unknown filter '{}'", entry.filter));
      continue;
    }
    std::size_t entry_before = errors.errors().size();
    std::shared_ptr<const FilterBase> impl;
    try {
      impl = (*factory)(entry, errors);
    } catch (const std::exception& e) {
      errors.error(entry.path, fmt::format("filter '{}' factory failed: {}", entry.filter, e.what()));
      continue;
    }
    if (errors.errors().size() != entry_before) continue;
    if (!impl) {
      errors.warning(entry.path, fmt::format("filter '{}' disabled by its config, left out",
                                             entry.filter));
      continue;
    }
    links.push_back(ChainLink{entry.filter, entry.path, std::move(impl)});
  }
  if (errors.errors().size() != before) return nullptr;
  return std::make_shared<const ChainTemplate>(endpoint.name, std::move(links));
}

ChainMap build_chains(const RouterConfig& config, const FilterRegistry& registry,
                      config::ConfigErrors& errors) {
  ChainMap out;
  for (const EndpointConfig& ep : config.endpoints) {
    if (auto t = build_chain(ep, registry, errors)) out.emplace(ep.name, std::move(t));
  }
  return out;
}

// ---- running -------------------------------------------------------------------------

ChainInstance::ChainInstance(std::shared_ptr<const ChainTemplate> tmpl, TxEnv* env)
    : tmpl_(std::move(tmpl)), env_(env) {
  txs_.emplace_back();
  slots_.reserve(tmpl_->links().size());
  for (const ChainLink& link : tmpl_->links()) {
    Slot s;
    s.state = link.impl->new_state();
    s.down = txs_.size() - 1;
    if (link.impl->kind() == FilterKind::proxy) txs_.emplace_back();
    s.up = txs_.size() - 1;
    slots_.push_back(std::move(s));
  }
}

Task<Result<TransactionMetadata>> ChainInstance::update(TransactionMetadata delta) {
  if (running_) co_return Error(Errc::internal, "chain pass already running");
  if (has_responses(delta) && !delta.cancelled) {
    co_return Error(Errc::bad_request, "a chain update delta must not carry responses");
  }
  TransactionMetadata head = txs_.front();
  if (auto m = tx_merge_from(head, delta); !m) co_return m.error();
  txs_.front() = head;

  if (slots_.empty()) {
    noop_ = true;
  } else {
    auto d = tx_delta(slots_.front().prev_down, head, View::All);
    if (!d) co_return d.error();
    noop_ = d->empty();
  }

  running_ = true;
  Result<void> r;
  try {
    r = co_await run_from(0);
  } catch (const std::exception& e) {
    r = Error(Errc::internal, fmt::format("chain '{}': {}", tmpl_->name(), e.what()));
  }
  running_ = false;
  if (!r) co_return r.error();
  co_return tx_delta(head, txs_.front(), View::All);
}

Task<Result<void>> ChainInstance::run_from(std::size_t i) {
  if (i >= slots_.size()) co_return Result<void>();
  const ChainLink& link = tmpl_->links()[i];
  Slot& s = slots_[i];
  auto d = tx_delta(s.prev_down, txs_[s.down], View::All);
  if (!d) co_return at(link, d.error());
  if (!noop_ && d->empty()) co_return Result<void>();
  s.prev_down = txs_[s.down];
  Result<void> r;
  if (link.impl->kind() == FilterKind::plain) {
    const auto& f = static_cast<const Filter&>(*link.impl);
    r = co_await run_plain(i, f, std::move(*d));
  } else {
    const auto& f = static_cast<const ProxyFilter&>(*link.impl);
    r = co_await run_proxy(i, f, std::move(*d));
  }
  co_return r;
}

Task<Result<void>> ChainInstance::run_plain(std::size_t i, const Filter& f,
                                            TransactionMetadata delta) {
  const ChainLink& link = tmpl_->links()[i];
  Slot& s = slots_[i];
  TransactionMetadata& tx = txs_[s.down];
  FilterCall call{tx, delta, s.state.get(), link.path, env_};
  Result<FilterResult> r = co_await f.on_update(call);
  if (!r) co_return at(link, r.error());
  if (can_progress(tx) || tx.cancelled) {
    Result<void> rest = co_await run_from(i + 1);
    if (!rest) co_return rest;
  }
  if (r->downstream_delta) {
    if (auto m = tx_merge_from(tx, *r->downstream_delta); !m) co_return at(link, m.error());
    // The result goes downstream: the filters above this one that share the
    // tx (up to and including the next proxy) must not see it as new.
    for (std::size_t j = i + 1; j < slots_.size() && slots_[j].down == s.down; ++j) {
      TransactionMetadata snap = slots_[j].prev_down;
      if (tx_merge_from(snap, *r->downstream_delta)) slots_[j].prev_down = std::move(snap);
    }
  }
  s.prev_down = tx;
  s.prev_up = tx;
  co_return Result<void>();
}

Task<Result<void>> ChainInstance::run_proxy(std::size_t i, const ProxyFilter& f,
                                            TransactionMetadata delta) {
  const ChainLink& link = tmpl_->links()[i];
  Slot& s = slots_[i];
  ProxyCall call(txs_[s.down], delta, txs_[s.up], s.state.get(), link.path, this, i, env_);
  Result<void> r = co_await f.on_update(call);
  if (!r) co_return at(link, r.error());
  if (!call.next_called()) {
    Result<TransactionMetadata> n = co_await proxy_next(i);
    if (!n) co_return n.error();
  }
  s.prev_down = txs_[s.down];
  co_return Result<void>();
}

Task<Result<TransactionMetadata>> ProxyCall::next() {
  if (next_called_) co_return Error(Errc::internal, path + ": ProxyCall::next() called twice");
  next_called_ = true;
  co_return co_await chain_->proxy_next(index_);
}

Task<Result<TransactionMetadata>> ChainInstance::proxy_next(std::size_t i) {
  const ChainLink& link = tmpl_->links()[i];
  Slot& s = slots_[i];
  if (auto m = map_rcpts_up(s); !m) co_return at(link, m.error());
  s.prev_up = txs_[s.up];
  const TransactionMetadata& down = txs_[s.down];
  if (can_progress(down) || down.cancelled) {
    Result<void> rest = co_await run_from(i + 1);
    if (!rest) co_return rest.error();
  }
  auto up_delta = tx_delta(s.prev_up, txs_[s.up], View::All);
  if (!up_delta) co_return at(link, up_delta.error());
  if (auto m = merge_responses_down(s, *up_delta); !m) co_return at(link, m.error());
  co_return std::move(*up_delta);
}

Result<void> ChainInstance::map_rcpts_up(Slot& s) {
  TransactionMetadata& down = txs_[s.down];
  TransactionMetadata& up = txs_[s.up];
  if (up.rcpt_to.size() < s.rcpt_map.size()) {
    return Error(Errc::internal, "proxy removed upstream rcpts");
  }
  std::size_t new_down = down.rcpt_to.size() - s.down_rcpts_seen;
  std::size_t new_up = up.rcpt_to.size() - s.rcpt_map.size();
  if (new_up == new_down) {
    for (std::size_t k = 0; k < new_up; ++k) s.rcpt_map.push_back(s.down_rcpts_seen + k);
  } else if (new_up == 0) {
    // The proxy forwarded none of the new rcpts: forward those not answered.
    for (std::size_t j = s.down_rcpts_seen; j < down.rcpt_to.size(); ++j) {
      if (j < down.rcpt_response.size() && down.rcpt_response[j]) continue;
      up.rcpt_to.push_back(down.rcpt_to[j]);
      s.rcpt_map.push_back(j);
    }
  } else {
    return Error(Errc::internal,
                 fmt::format("proxy forwarded {} of {} new rcpts (all, or none for the engine "
                             "to forward)", new_up, new_down));
  }
  s.down_rcpts_seen = down.rcpt_to.size();
  return {};
}

Result<void> ChainInstance::merge_responses_down(Slot& s, const TransactionMetadata& up_delta) {
  TransactionMetadata& down = txs_[s.down];
  if (up_delta.mail_response && !down.mail_response) down.mail_response = up_delta.mail_response;
  for (std::size_t k = 0; k < up_delta.rcpt_response.size(); ++k) {
    if (!up_delta.rcpt_response[k]) continue;
    if (k >= s.rcpt_map.size()) {
      return Error(Errc::internal, fmt::format("upstream response for unknown rcpt {}", k));
    }
    fill_rcpt_response(down, s.rcpt_map[k], *up_delta.rcpt_response[k]);
  }
  if (up_delta.data_response && !down.data_response) down.data_response = up_delta.data_response;
  return {};
}

}  // namespace koukan::router::chain
