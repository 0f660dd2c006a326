#pragma once
// The router's REST transaction API (spec/rest-api.md §3-§8, §10): a pure
// Request -> Response handler over Storage; testable without sockets.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/json/object.hpp>

#include "common/async/task.hpp"
#include "common/http/types.hpp"
#include "common/json/transaction.hpp"

namespace koukan::router {

class RouterConfig;
class Storage;
struct TxRecord;
class VersionCache;

struct RestOptions {
  std::string session_uri;   // this replica, no trailing slash
  std::string service_uri;   // load-balanced alias (defaults to session_uri)
  std::size_t chunk_size = 1 << 20;       // blob append piece
  std::size_t max_json_body = 16u << 20;  // create/PATCH JSON limit
  std::size_t rest_id_entropy = 16;
  std::chrono::seconds max_long_poll{30};
  // Create/PATCH of a transaction this process delivers wait up to this long
  // for the output's next answer and return it (saves the client a GET);
  // 0: answer at once, as the original does (docs/compat.md).
  std::chrono::milliseconds first_answer_wait{25};
  // Hand-off of new transactions to the output side (router/output). Unset
  // (REST-only tests): created txs stay leased by this session.
  //   reserve(): take an attempt slot; false = busy: the tx is created
  //     unleased and queued for the dequeue loop (queued() is called).
  //   start(rec): after a leased create with a slot; unreserve(): create failed.
  struct OutputHooks {
    std::function<bool()> reserve;
    std::function<void()> unreserve;
    std::function<void(const TxRecord&)> start;
    std::function<void()> queued;
    // The responses the output chain `output_chain` gives `tx` at once,
    // before any I/O (the Exploder's MAIL answer): stored with a leased
    // create as attempt 1's responses, so the 201 carries them at once.
    std::function<std::optional<boost::json::object>(const std::string& output_chain,
                                                     const TransactionMetadata& tx)>
        immediate_responses;
  } output;
};

class RestHandler {
 public:
  RestHandler(const RouterConfig& config, Storage& storage, BlockingPool& pool,
              VersionCache& cache, RestOptions opts);
  ~RestHandler();
  // Routes, and counts requests/responses for GET /metrics.
  Task<http::Response> handle(http::Request& req);

 private:
  Task<http::Response> dispatch(http::Request& req);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace koukan::router
