#pragma once
// The transaction model (router.md §2, rest-api.md §4-§5) and its JSON forms.
//
// A TransactionMetadata is a record of optional fields. It is used both as
// the full state of a transaction and as a *delta* (absent = no change).
// Views decide which fields a JSON form may contain; parsing rejects a key
// not valid in the view, nulls, empty arrays and wrong types, naming the key.
//
// Placeholders: on READ the server shows mail_from and sender as {} and each
// recipient as {}; parsing READ JSON yields Mailbox/Sender values with
// placeholder == true. A placeholder compares equal to any value of its kind
// in delta/merge, so a client can compare what it sent with what it reads.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "common/base/result.hpp"
#include "common/json/message_builder.hpp"

namespace koukan {

// router.md §2.1 `WhichJson`.
enum class View {
  All,             // every field (in-process, tests, debugging)
  RestRead,        // every response body carrying a transaction
  RestCreate,      // create POST body
  RestUpdate,      // PATCH body
  Db,              // Transactions.json column
  DbAttempt,       // TransactionAttempts.json column
  ExploderCreate,  // exploder -> upstream create (in-process copy)
  ExploderUpdate,
  AddRoute,
};
const char* view_name(View v);  // "rest_read", ...

// ---- value types ------------------------------------------------------------

// {"k": keyword, "p": value}; "p" omitted when absent or empty.
struct EsmtpParam {
  std::string keyword;
  std::optional<std::string> value;
  bool operator==(const EsmtpParam&) const = default;
};

// {"m": mailbox, "e": [EsmtpParam...]}; "e" omitted when empty. The null
// reverse-path is "". placeholder: parsed from READ's {} (content unknown).
struct Mailbox {
  std::string mailbox;
  std::vector<EsmtpParam> esmtp;
  bool placeholder = false;
  // In-process only (never serialised): a `router` filter has handled this
  // recipient (filters.md §2.2.2), so later routers leave it alone.
  bool routed = false;
  bool operator==(const Mailbox&) const = default;  // exact, for tests
};
// Koukan's Mailbox equality: the address only; a placeholder matches anything.
bool same_mailbox(const Mailbox& a, const Mailbox& b);

// {"code": int, "message": str}
struct Response {
  int code = 0;
  std::string message;

  Response() = default;
  // Empty message -> default_message(code).
  explicit Response(int c, std::string m = {});
  bool ok() const { return code >= 200 && code <= 299; }
  bool temp() const { return code >= 400 && code <= 499; }
  bool perm() const { return code >= 500 && code <= 599; }
  bool err() const { return !ok(); }
  int major_code() const { return code / 100; }
  bool operator==(const Response&) const = default;
};
// "ok" / "temporary error" / "permanent error" / "internal error".
const char* default_message(int code);

// JSON two-element array [host, port].
struct HostPort {
  std::string host;
  int port = 0;
  bool operator==(const HostPort&) const = default;
};

// {"name": ..., "tag": ...}; only these keys. READ shows it as {}.
struct Sender {
  std::optional<std::string> name;
  std::optional<std::string> tag;
  bool placeholder = false;
  bool operator==(const Sender&) const = default;
};

// ---- body ---------------------------------------------------------------------

// Request forms (CREATE / UPDATE): {"inline": text}, {"reuse_uri": uri},
// {"message_builder": spec}. `{}` and absent both mean "no body".
struct InlineBody {
  std::string text;
  bool operator==(const InlineBody&) const = default;
};
struct ReuseBody {
  std::string uri;   // as given
  BlobPath path;     // parsed; path.blob_id is nullopt (a body)
  bool operator==(const ReuseBody&) const = default;
};
struct MessageBuilderBody {
  MessageBuilderSpec spec;
  bool operator==(const MessageBuilderBody&) const = default;
};

// READ form: {"uri": ..., "finalized": true}; finalized emitted only if true.
struct BlobStatus {
  std::string uri;
  bool finalized = false;
  bool operator==(const BlobStatus&) const = default;
};
// READ form of body.message_builder: {"uri"?: ..., "blob_status"?: {id: BlobStatus}}
struct MessageBuilderStatus {
  std::optional<std::string> uri;  // receivers: where to POST parsed JSON
  // id -> status, ordered as given / as inserted. Empty = no "blob_status"
  // key (never emitted empty; parsing treats {} as absent).
  std::vector<std::pair<std::string, BlobStatus>> blob_status;
  bool operator==(const MessageBuilderStatus&) const = default;
};
// READ body: {"blob_status": ..., "message_builder": ...}, either or both.
struct BodyStatus {
  std::optional<BlobStatus> blob_status;
  std::optional<MessageBuilderStatus> message_builder;
  bool operator==(const BodyStatus&) const = default;
};

using Body = std::variant<InlineBody, ReuseBody, MessageBuilderBody, BodyStatus>;

// ---- in-process routing (filters.md §1.2) ----------------------------------------

// The upstream sender a RestEndpoint announces ({name, tag}), with the
// remote_host / smtp_meta overrides from that sender's yaml when the router
// config knows it (rest-api.md §9.3).
struct RestUpstreamSender {
  std::string name;
  std::optional<std::string> tag;
  std::optional<std::string> remote_host;        // yaml remote_host
  std::optional<boost::json::object> smtp_meta;  // yaml smtp_meta
  bool operator==(const RestUpstreamSender&) const = default;
};

// Where a `router` filter sent the transaction; read by rest_output.
// Never serialised; a write-once scalar in View::All delta/merge.
struct Routing {
  std::optional<std::string> rest_endpoint;          // create URL
  std::optional<std::vector<HostPort>> resolution;  // hosts to try, in order
  boost::json::object options;                       // send_filter_output, receive_parsing
  std::optional<RestUpstreamSender> upstream_sender;
  bool operator==(const Routing&) const = default;
};

// ---- the transaction ---------------------------------------------------------------

struct TransactionMetadata {
  std::optional<HostPort> remote_host;
  std::optional<HostPort> local_host;
  std::optional<Mailbox> mail_from;
  std::optional<Response> mail_response;
  std::vector<Mailbox> rcpt_to;
  // Delta only: index of rcpt_to[0] in the full list (absent means 0).
  std::optional<std::size_t> rcpt_to_list_offset;
  // Positional with rcpt_to; nullopt = no response yet. Grows only.
  std::vector<std::optional<Response>> rcpt_response;
  std::optional<Response> data_response;
  std::optional<std::int64_t> attempt_count;
  std::optional<Body> body;
  std::optional<boost::json::object> notification;
  std::optional<boost::json::object> retry;
  std::optional<boost::json::object> smtp_meta;
  bool cancelled = false;
  std::optional<std::string> final_attempt_reason;
  std::optional<Sender> sender;
  std::optional<boost::json::object> filter_output;
  // In-process only: set by a router filter on its upstream tx.
  std::optional<Routing> routing;

  bool empty() const;  // no field set (an empty delta)
  bool operator==(const TransactionMetadata&) const = default;
};

// Is `field` (a JSON key such as "mail_from") valid in `view`?
// ("rcpt_to_list_offset" is valid wherever rcpt_to is an update: RestUpdate, All.)
bool field_valid_in_view(std::string_view field, View view);

// ---- JSON ------------------------------------------------------------------------------

// Parses a transaction JSON object in `view` (rest-api.md §5.2). Errors are
// Error{bad_request, msg} with msg naming the key, e.g. "unknown key 'foo'",
// "'retry' not valid in rest_create", "null value for 'rcpt_to'",
// "empty array for 'rcpt_to'", "mail_from: missing m",
// "tx json sender may only contain name,tag".
// RestRead accepts only placeholders for mail_from / rcpt_to / sender and only
// {} for filter_output (dropped); body is parsed in its status form there, in
// its request form in RestCreate/RestUpdate, and either (by shape) elsewhere.
Result<TransactionMetadata> tx_from_json(const boost::json::value& v, View view);
// Same from text; invalid JSON is Error{bad_request, "invalid json: ..."}.
Result<TransactionMetadata> tx_from_json_string(std::string_view text, View view);

// Emits the fields valid in `view` in the rest-api.md §4.1 key order.
// RestRead: placeholders for mail_from / rcpt_to / sender, {} for retry and
// notification, body only in its status form, never smtp_meta or
// filter_output. Never emits null or empty arrays.
boost::json::object tx_to_json(const TransactionMetadata& tx, View view);
std::string tx_to_json_string(const TransactionMetadata& tx, View view);

// Compact serialisation (no spaces; non-ASCII emitted raw).
std::string to_compact_string(const boost::json::value& v);

// Per-type JSON, for storage columns and tests. `what` prefixes error messages.
boost::json::value to_json(const Mailbox& m);
boost::json::value to_json(const Response& r);
boost::json::value to_json(const HostPort& h);
boost::json::value to_json(const Sender& s);
boost::json::value to_json(const Body& b);
Result<Mailbox> mailbox_from_json(const boost::json::value& v, std::string_view what);
// nullopt when "code" is not an integer (rest-api.md §4.4: treated as absent).
Result<std::optional<Response>> response_from_json(const boost::json::value& v,
                                                   std::string_view what);
Result<HostPort> host_port_from_json(const boost::json::value& v, std::string_view what);

// ---- delta / merge (router.md §2.2) -----------------------------------------------------

// What changed from prev to next, considering only fields valid in `view`.
// Removal of a field, a changed scalar, a shrunk or rewritten list, a removed
// filter_output key or a body that is not a successor is
// Error{conflict, "<field> ..."}. rcpt_to in the result is the appended suffix
// with rcpt_to_list_offset = prev.rcpt_to.size(); rcpt_response is next's whole
// list when it changed.
Result<TransactionMetadata> tx_delta(const TransactionMetadata& prev,
                                     const TransactionMetadata& next, View view);

// Applies a delta. Scalars are write-once: a different value for a set
// scalar is Error{bad_request, "<field> already set"}, an equal one is a
// no-op (placeholders match anything; a placeholder is upgraded to a real
// value). rcpt_to: delta.rcpt_to_list_offset (absent = 0) must equal the
// current length, else Error{conflict}. rcpt_response: positional, entries
// only fill in. filter_output: key-wise overlay. body: a BodyStatus may be
// replaced by its successor; other bodies are write-once.
// On error `self` may be partially updated: merge into a copy if that matters.
Result<void> tx_merge_from(TransactionMetadata& self, const TransactionMetadata& delta);

}  // namespace koukan
