#pragma once
// RouterTx: the gateway's REST client for ONE router transaction, speaking
// the incremental ("private") dialect of spec/rest-api.md §9.2 /
// gateway.md §3.6: create on MAIL, one PATCH per RCPT, the body PUT to the
// router in pieces as it arrives (ranges with '*' until the last), long-poll
// GETs for the responses, empty PATCH heartbeats, cancel.
//
// Every failure is returned as an Error whose message is suitable for a
// reply text; the caller (InboundHandler) turns it into an SMTP 4xx.
// All calls are sequential (one SMTP session drives one RouterTx).
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/async/task.hpp"
#include "common/base/log.hpp"
#include "common/base/result.hpp"
#include "common/http/client.hpp"
#include "common/json/transaction.hpp"

namespace koukan::gateway {

using Clock = std::chrono::steady_clock;

class RouterTx {
 public:
  RouterTx(http::Client& client, std::string create_url, log::Logger lg)
      : client_(client), create_url_(std::move(create_url)), lg_(std::move(lg)) {}

  // POST create with mail_from (+ remote_host, local_host, smtp_meta,
  // sender, and the recipients the client pipelined behind MAIL, if any),
  // then poll until mail_response and each of those recipients' responses
  // (or a failed MAIL), or the deadline.
  Task<Result<Response>> create(const TransactionMetadata& tx, Clock::time_point deadline);
  // The response to recipient i (after create() with recipients).
  std::optional<Response> rcpt_response(std::size_t i) const {
    if (i < state_.rcpt_response.size()) return state_.rcpt_response[i];
    return std::nullopt;
  }
  // PATCH one more recipient, poll until its response.
  Task<Result<Response>> add_rcpt(const Mailbox& rcpt, Clock::time_point deadline);
  // PUT one piece of the body at the current offset; last = this ends it.
  // With `await_data` the last PUT asks the router to answer once the data
  // response is there (at most that long): wait_data() then needs no GET.
  Task<Result<void>> put_body(std::string_view piece, bool last,
                              std::chrono::milliseconds put_timeout,
                              std::optional<std::chrono::milliseconds> await_data = std::nullopt);
  // After the last piece: poll until data_response.
  Task<Result<Response>> wait_data(Clock::time_point deadline);
  // Empty PATCH (keeps the router's transaction alive).
  Task<Result<void>> heartbeat(std::chrono::milliseconds timeout);
  // POST cancel (errors ignored); no-op if never created or already answered.
  Task<void> cancel();

  bool created() const { return !url_.empty(); }
  bool has_data_response() const { return state_.data_response.has_value(); }
  const std::string& url() const { return url_; }
  std::int64_t body_offset() const { return body_offset_; }

 private:
  // GET (long-poll) until pred(state_) or deadline.
  template <class Pred>
  Task<Result<void>> poll(Clock::time_point deadline, Pred pred, const char* what);
  Task<Result<void>> get_once(Clock::time_point deadline);
  Result<void> take(const http::ClientResponse& r, int expected_status);
  Result<void> take_tx(std::string_view body, std::string_view etag);
  Task<Result<http::ClientResponse>> send(http::ClientRequest req);

  http::Client& client_;
  std::string create_url_;
  log::Logger lg_;
  std::string url_;       // the router's transaction
  std::string body_url_;  // body.blob_status.uri
  std::string etag_;
  TransactionMetadata state_;  // READ view, merged
  std::size_t rcpts_ = 0;
  std::int64_t body_offset_ = 0;
  bool cancelled_ = false;
};

}  // namespace koukan::gateway
