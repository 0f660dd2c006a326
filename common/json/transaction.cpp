#include "common/json/transaction.hpp"

#include <array>
#include <limits>

#include <boost/json.hpp>

namespace koukan {

namespace json = boost::json;

namespace {

Error bad(std::string m) { return Error(Errc::bad_request, std::move(m)); }
Error conflict(std::string m) { return Error(Errc::conflict, std::move(m)); }

std::string quoted(std::string_view s) {
  std::string out = "'";
  out.append(s);
  out += '\'';
  return out;
}

std::optional<std::int64_t> as_integer(const json::value& v) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(
                                              std::numeric_limits<std::int64_t>::max())) {
    return static_cast<std::int64_t>(v.get_uint64());
  }
  return std::nullopt;
}

// ---- the field / view table (router.md §2.1), in emission order -------------------

enum Field {
  kRemoteHost,
  kLocalHost,
  kMailFrom,
  kMailResponse,
  kRcptTo,
  kRcptToListOffset,
  kRcptResponse,
  kDataResponse,
  kAttemptCount,
  kBody,
  kNotification,
  kRetry,
  kSmtpMeta,
  kCancelled,
  kFinalAttemptReason,
  kSender,
  kFilterOutput,
  kFieldCount,
};

constexpr unsigned bit(View v) { return 1u << static_cast<unsigned>(v); }
constexpr unsigned RR = bit(View::RestRead), RC = bit(View::RestCreate),
                   RU = bit(View::RestUpdate), DB = bit(View::Db),
                   DA = bit(View::DbAttempt), EC = bit(View::ExploderCreate),
                   EU = bit(View::ExploderUpdate), AR = bit(View::AddRoute);

struct FieldInfo {
  std::string_view name;
  unsigned views;
};

constexpr std::array<FieldInfo, kFieldCount> kFields = {{
    {"remote_host", RC | RR | DB | EC | AR},
    {"local_host", RC | RR | DB | EC | AR},
    {"mail_from", RC | RU | RR | DB | EC | EU | AR},
    {"mail_response", DA | RR},
    {"rcpt_to", RC | RU | RR | DB | AR},
    {"rcpt_to_list_offset", RU},
    {"rcpt_response", DA | RR},
    {"data_response", DA | RR},
    {"attempt_count", RR},
    {"body", RC | RU | RR | EC | EU | AR},
    {"notification", RR | DB | EC | EU},
    {"retry", RR | DB | EC | EU},
    {"smtp_meta", RC | DB | EC | AR},
    {"cancelled", RR | DB | EC | EU | AR},
    {"final_attempt_reason", RR},
    {"sender", RC | RR | DB},
    {"filter_output", DB | DA | RC | RU | RR | AR},
}};

bool valid(Field f, View v) { return v == View::All || (kFields[f].views & bit(v)) != 0; }

std::optional<Field> find_field(std::string_view name) {
  for (int i = 0; i < kFieldCount; ++i) {
    if (kFields[i].name == name) return static_cast<Field>(i);
  }
  return std::nullopt;
}

// ---- value parsers ---------------------------------------------------------------------

std::string str(std::string_view what, std::string_view rest) {
  std::string out(what);
  out += rest;
  return out;
}

Result<json::object const*> expect_object(const json::value& v, std::string_view what) {
  if (!v.is_object()) return bad(str(what, ": must be an object"));
  return &v.as_object();
}

Result<Mailbox> parse_rest_read_mailbox(const json::value& v, std::string_view what) {
  if (!v.is_object() || !v.as_object().empty()) {
    return bad(str(what, ": expected placeholder {} in rest_read"));
  }
  Mailbox m;
  m.placeholder = true;
  return m;
}

Result<Mailbox> parse_mailbox_in_view(const json::value& v, std::string_view what, View view) {
  if (view == View::RestRead) return parse_rest_read_mailbox(v, what);
  if (view == View::All && v.is_object() && v.as_object().empty()) {
    return parse_rest_read_mailbox(v, what);
  }
  return mailbox_from_json(v, what);
}

Result<Sender> parse_sender(const json::value& v, View view) {
  if (!v.is_object()) return bad("sender: must be an object");
  const auto& o = v.as_object();
  Sender s;
  if (view == View::RestRead) {
    if (!o.empty()) return bad("sender: expected placeholder {} in rest_read");
    s.placeholder = true;
    return s;
  }
  for (const auto& [k, val] : o) {
    if (k != "name" && k != "tag") return bad("tx json sender may only contain name,tag");
    if (!val.is_string()) return bad(str("sender.", k) + " must be a string");
    (k == "name" ? s.name : s.tag) = std::string(val.get_string());
  }
  return s;
}

Result<BlobStatus> parse_blob_status(const json::value& v, std::string_view what) {
  if (!v.is_object()) return bad(str(what, ": must be an object"));
  const auto& o = v.as_object();
  BlobStatus b;
  const auto* uri = o.if_contains("uri");
  if (!uri || !uri->is_string()) return bad(str(what, ": uri must be a string"));
  b.uri = std::string(uri->get_string());
  if (const auto* f = o.if_contains("finalized")) {
    if (!f->is_bool()) return bad(str(what, ": finalized must be a boolean"));
    b.finalized = f->get_bool();
  }
  return b;
}

Result<BodyStatus> parse_body_status(const json::object& o) {
  BodyStatus st;
  for (const auto& [k, val] : o) {
    if (k == "blob_status") {
      auto b = parse_blob_status(val, "body.blob_status");
      if (!b) return b.error();
      st.blob_status = std::move(*b);
    } else if (k == "message_builder") {
      if (!val.is_object()) return bad("body.message_builder: must be an object");
      MessageBuilderStatus mb;
      for (const auto& [mk, mv] : val.as_object()) {
        if (mk == "uri") {
          if (!mv.is_string()) return bad("body.message_builder.uri: must be a string");
          mb.uri = std::string(mv.get_string());
        } else if (mk == "blob_status") {
          if (!mv.is_object()) {
            return bad("body.message_builder.blob_status: must be an object");
          }
          for (const auto& [id, bv] : mv.as_object()) {
            auto b = parse_blob_status(bv, "body.message_builder.blob_status." + std::string(id));
            if (!b) return b.error();
            mb.blob_status.emplace_back(std::string(id), std::move(*b));
          }
        } else {
          return bad("body.message_builder: unknown key " + quoted(mk));
        }
      }
      st.message_builder = std::move(mb);
    } else {
      return bad("body: unknown key " + quoted(k));
    }
  }
  return st;
}

Result<Body> parse_body_request(const json::object& o) {
  if (o.size() != 1) return bad("body: must have exactly one of inline, reuse_uri, message_builder");
  const auto& [k, val] = *o.begin();
  if (k == "inline") {
    if (!val.is_string()) return bad("body.inline: must be a string");
    if (!valid_utf8(val.get_string())) return bad("body.inline: not valid UTF-8");
    return Body(InlineBody{std::string(val.get_string())});
  }
  if (k == "reuse_uri") {
    if (!val.is_string()) return bad("body.reuse_uri: must be a string");
    auto p = parse_blob_path(val.get_string());
    if (!p) return bad("body.reuse_uri: " + p.error().message);
    if (p->blob_id) return bad("body.reuse_uri: must name a transaction body");
    return Body(ReuseBody{std::string(val.get_string()), std::move(*p)});
  }
  if (k == "message_builder") {
    auto spec = parse_message_builder(val);
    if (!spec) return bad("body." + spec.error().message);
    return Body(MessageBuilderBody{std::move(*spec)});
  }
  return bad("body: unknown key " + quoted(k));
}

bool looks_like_status(const json::object& o) {
  if (o.contains("blob_status")) return true;
  if (o.contains("inline") || o.contains("reuse_uri")) return false;
  const auto* mb = o.if_contains("message_builder");
  return mb && mb->is_object() &&
         (mb->as_object().contains("blob_status") || mb->as_object().contains("uri"));
}

// nullopt: `{}`, no body.
Result<std::optional<Body>> parse_body(const json::value& v, View view) {
  if (!v.is_object()) return bad("body: must be an object");
  const auto& o = v.as_object();
  if (o.empty()) return std::optional<Body>();
  // READ: status form only; CREATE/UPDATE: request forms only; the internal
  // views carry whichever the process had.
  const bool request_view = view == View::RestCreate || view == View::RestUpdate;
  bool status = view == View::RestRead || (!request_view && looks_like_status(o));
  if (status) {
    auto st = parse_body_status(o);
    if (!st) return st.error();
    return std::optional<Body>(Body(std::move(*st)));
  }
  auto b = parse_body_request(o);
  if (!b) return b.error();
  return std::optional<Body>(std::move(*b));
}

Result<void> parse_field(Field f, const json::value& v, View view, TransactionMetadata& tx) {
  const std::string_view name = kFields[f].name;
  auto object_field = [&](std::optional<json::object>& out) -> Result<void> {
    auto o = expect_object(v, name);
    if (!o) return o.error();
    out = **o;
    return {};
  };
  switch (f) {
    case kRemoteHost:
    case kLocalHost: {
      auto h = host_port_from_json(v, name);
      if (!h) return h.error();
      (f == kRemoteHost ? tx.remote_host : tx.local_host) = std::move(*h);
      return {};
    }
    case kMailFrom: {
      auto m = parse_mailbox_in_view(v, name, view);
      if (!m) return m.error();
      tx.mail_from = std::move(*m);
      return {};
    }
    case kMailResponse:
    case kDataResponse: {
      auto r = response_from_json(v, name);
      if (!r) return r.error();
      (f == kMailResponse ? tx.mail_response : tx.data_response) = std::move(*r);
      return {};
    }
    case kRcptTo: {
      if (!v.is_array()) return bad("rcpt_to: must be an array");
      std::size_t i = 0;
      for (const auto& e : v.get_array()) {
        auto m = parse_mailbox_in_view(e, "rcpt_to[" + std::to_string(i++) + "]", view);
        if (!m) return m.error();
        tx.rcpt_to.push_back(std::move(*m));
      }
      return {};
    }
    case kRcptToListOffset: {
      auto n = as_integer(v);
      if (!n || *n < 0) return bad("rcpt_to_list_offset: must be a non-negative integer");
      tx.rcpt_to_list_offset = static_cast<std::size_t>(*n);
      return {};
    }
    case kRcptResponse: {
      if (!v.is_array()) return bad("rcpt_response: must be an array");
      std::size_t i = 0;
      for (const auto& e : v.get_array()) {
        auto r = response_from_json(e, "rcpt_response[" + std::to_string(i++) + "]");
        if (!r) return r.error();
        tx.rcpt_response.push_back(std::move(*r));
      }
      return {};
    }
    case kAttemptCount: {
      auto n = as_integer(v);
      if (!n) return bad("attempt_count: must be an integer");
      tx.attempt_count = *n;
      return {};
    }
    case kBody: {
      auto b = parse_body(v, view);
      if (!b) return b.error();
      tx.body = std::move(*b);
      return {};
    }
    case kNotification:
      return object_field(tx.notification);
    case kRetry:
      return object_field(tx.retry);
    case kSmtpMeta:
      return object_field(tx.smtp_meta);
    case kCancelled:
      if (!v.is_bool()) return bad("cancelled: must be a boolean");
      tx.cancelled = v.get_bool();
      return {};
    case kFinalAttemptReason:
      if (!v.is_string()) return bad("final_attempt_reason: must be a string");
      tx.final_attempt_reason = std::string(v.get_string());
      return {};
    case kSender: {
      auto s = parse_sender(v, view);
      if (!s) return s.error();
      tx.sender = std::move(*s);
      return {};
    }
    case kFilterOutput: {
      auto o = expect_object(v, name);
      if (!o) return o.error();
      if (view == View::RestRead) {
        // [COMPAT] the Python client accepts only {} here; it carries nothing.
        if (!(*o)->empty()) return bad("filter_output: only {} is accepted in rest_read");
        return {};
      }
      tx.filter_output = **o;
      return {};
    }
    case kFieldCount:
      break;
  }
  return Error(Errc::internal, "bad field");
}

// ---- emitters -----------------------------------------------------------------------------

json::object blob_status_json(const BlobStatus& b) {
  json::object o;
  o["uri"] = b.uri;
  if (b.finalized) o["finalized"] = true;
  return o;
}

bool is_request_body(const Body& b) { return !std::holds_alternative<BodyStatus>(b); }

}  // namespace

// ---- public: small types -------------------------------------------------------------------

const char* view_name(View v) {
  switch (v) {
    case View::All: return "all";
    case View::RestRead: return "rest_read";
    case View::RestCreate: return "rest_create";
    case View::RestUpdate: return "rest_update";
    case View::Db: return "db";
    case View::DbAttempt: return "db_attempt";
    case View::ExploderCreate: return "exploder_create";
    case View::ExploderUpdate: return "exploder_update";
    case View::AddRoute: return "add_route";
  }
  return "?";
}

bool same_mailbox(const Mailbox& a, const Mailbox& b) {
  return a.placeholder || b.placeholder || a.mailbox == b.mailbox;
}

const char* default_message(int code) {
  if (code >= 200 && code <= 299) return "ok";
  if (code >= 400 && code <= 499) return "temporary error";
  if (code >= 500 && code <= 599) return "permanent error";
  return "internal error";
}

Response::Response(int c, std::string m)
    : code(c), message(m.empty() ? std::string(default_message(c)) : std::move(m)) {}

bool TransactionMetadata::empty() const {
  return *this == TransactionMetadata{};
}

bool field_valid_in_view(std::string_view field, View view) {
  auto f = find_field(field);
  return f && valid(*f, view);
}

json::value to_json(const Mailbox& m) {
  json::object o;
  if (m.placeholder) return o;
  o["m"] = m.mailbox;
  if (!m.esmtp.empty()) {
    json::array e;
    for (const auto& p : m.esmtp) {
      json::object po;
      po["k"] = p.keyword;
      if (p.value && !p.value->empty()) po["p"] = *p.value;
      e.push_back(std::move(po));
    }
    o["e"] = std::move(e);
  }
  return o;
}

json::value to_json(const Response& r) {
  json::object o;
  o["code"] = r.code;
  o["message"] = r.message.empty() ? std::string(default_message(r.code)) : r.message;
  return o;
}

json::value to_json(const HostPort& h) { return json::array{json::value(h.host), h.port}; }

json::value to_json(const Sender& s) {
  json::object o;
  if (s.placeholder) return o;
  if (s.name) o["name"] = *s.name;
  if (s.tag) o["tag"] = *s.tag;
  return o;
}

json::value to_json(const Body& b) {
  json::object o;
  if (const auto* i = std::get_if<InlineBody>(&b)) {
    o["inline"] = i->text;
  } else if (const auto* r = std::get_if<ReuseBody>(&b)) {
    o["reuse_uri"] = r->uri;
  } else if (const auto* mb = std::get_if<MessageBuilderBody>(&b)) {
    o["message_builder"] = mb->spec.to_request_json();
  } else {
    const auto& st = std::get<BodyStatus>(b);
    if (st.blob_status) o["blob_status"] = blob_status_json(*st.blob_status);
    if (st.message_builder) {
      json::object m;
      if (st.message_builder->uri) m["uri"] = *st.message_builder->uri;
      if (!st.message_builder->blob_status.empty()) {
        json::object bs;
        for (const auto& [id, s] : st.message_builder->blob_status) {
          bs[id] = blob_status_json(s);
        }
        m["blob_status"] = std::move(bs);
      }
      o["message_builder"] = std::move(m);
    }
  }
  return o;
}

Result<Mailbox> mailbox_from_json(const json::value& v, std::string_view what) {
  if (!v.is_object()) return bad(str(what, ": must be an object"));
  const auto& o = v.as_object();
  const auto* m = o.if_contains("m");
  if (!m) return bad(str(what, ": missing m"));
  if (!m->is_string()) return bad(str(what, ": m must be a string"));
  Mailbox mb;
  mb.mailbox = std::string(m->get_string());
  if (const auto* e = o.if_contains("e")) {
    if (!e->is_array()) return bad(str(what, ": e must be an array"));
    std::size_t i = 0;
    for (const auto& pv : e->get_array()) {
      std::string where = str(what, ".e[") + std::to_string(i++) + "]";
      if (!pv.is_object()) return bad(where + ": must be an object");
      const auto* k = pv.as_object().if_contains("k");
      if (!k) return bad(where + ": missing k");
      if (!k->is_string()) return bad(where + ": k must be a string");
      EsmtpParam p;
      p.keyword = std::string(k->get_string());
      if (const auto* pp = pv.as_object().if_contains("p"); pp && !pp->is_null()) {
        if (!pp->is_string()) return bad(where + ": p must be a string");
        if (!pp->get_string().empty()) p.value = std::string(pp->get_string());
      }
      mb.esmtp.push_back(std::move(p));
    }
  }
  return mb;
}

Result<std::optional<Response>> response_from_json(const json::value& v, std::string_view what) {
  if (!v.is_object()) return bad(str(what, ": must be an object"));
  const auto& o = v.as_object();
  const auto* c = o.if_contains("code");
  std::optional<std::int64_t> code = c ? as_integer(*c) : std::nullopt;
  // rest-api.md §4.4: a non-integer code means "no response".
  if (!code || *code < std::numeric_limits<int>::min() ||
      *code > std::numeric_limits<int>::max()) {
    return std::optional<Response>();
  }
  std::string message;
  if (const auto* m = o.if_contains("message"); m && !m->is_null()) {
    if (!m->is_string()) return bad(str(what, ": message must be a string"));
    message = std::string(m->get_string());
  }
  return std::optional<Response>(Response(static_cast<int>(*code), std::move(message)));
}

Result<HostPort> host_port_from_json(const json::value& v, std::string_view what) {
  if (!v.is_array() || v.get_array().size() != 2 || !v.get_array()[0].is_string()) {
    return bad(str(what, ": must be [host, port]"));
  }
  auto port = as_integer(v.get_array()[1]);
  if (!port || *port < 0 || *port > 65535) return bad(str(what, ": must be [host, port]"));
  return HostPort{std::string(v.get_array()[0].get_string()), static_cast<int>(*port)};
}

// ---- public: transaction JSON ---------------------------------------------------------------

Result<TransactionMetadata> tx_from_json(const json::value& v, View view) {
  if (!v.is_object()) return bad("tx json is not an object");
  TransactionMetadata tx;
  for (const auto& [key, val] : v.get_object()) {
    auto f = find_field(key);
    if (view == View::RestUpdate && key.ends_with("_list_offset") &&
        (!f || *f != kRcptToListOffset)) {
      continue;  // §5.2: skipped by the key check; only rcpt_to's is used
    }
    if (!f) return bad("unknown key " + quoted(key));
    if (!valid(*f, view)) return bad(quoted(key) + " not valid in " + view_name(view));
    if (val.is_null()) return bad("null value for " + quoted(key));
    if (val.is_array() && val.get_array().empty()) return bad("empty array for " + quoted(key));
    if (auto r = parse_field(*f, val, view, tx); !r) return r.error();
  }
  if (tx.rcpt_to.empty()) tx.rcpt_to_list_offset.reset();
  return tx;
}

Result<TransactionMetadata> tx_from_json_string(std::string_view text, View view) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) return bad("invalid json: " + ec.message());
  return tx_from_json(v, view);
}

json::object tx_to_json(const TransactionMetadata& tx, View view) {
  const bool read = view == View::RestRead;
  json::object o;
  auto on = [&](Field f) { return valid(f, view); };
  auto put = [&](Field f, json::value v) { o[kFields[f].name] = std::move(v); };

  if (on(kRemoteHost) && tx.remote_host) put(kRemoteHost, to_json(*tx.remote_host));
  if (on(kLocalHost) && tx.local_host) put(kLocalHost, to_json(*tx.local_host));
  if (on(kMailFrom) && tx.mail_from) {
    put(kMailFrom, read ? json::object() : to_json(*tx.mail_from));
  }
  if (on(kMailResponse) && tx.mail_response) put(kMailResponse, to_json(*tx.mail_response));
  if (on(kRcptTo) && !tx.rcpt_to.empty()) {
    json::array a;
    for (const auto& m : tx.rcpt_to) a.push_back(read ? json::object() : to_json(m));
    put(kRcptTo, std::move(a));
    if (on(kRcptToListOffset) && tx.rcpt_to_list_offset.value_or(0) > 0) {
      put(kRcptToListOffset, *tx.rcpt_to_list_offset);
    }
  }
  if (on(kRcptResponse)) {
    // Trailing "no response yet" entries are dropped; inner ones become {}
    // (which parses back as "no response"), so positions stay aligned.
    std::size_t n = tx.rcpt_response.size();
    while (n > 0 && !tx.rcpt_response[n - 1]) --n;
    if (n > 0) {
      json::array a;
      for (std::size_t i = 0; i < n; ++i) {
        const auto& r = tx.rcpt_response[i];
        a.push_back(r ? to_json(*r) : json::object());
      }
      put(kRcptResponse, std::move(a));
    }
  }
  if (on(kDataResponse) && tx.data_response) put(kDataResponse, to_json(*tx.data_response));
  if (on(kAttemptCount) && tx.attempt_count) put(kAttemptCount, *tx.attempt_count);
  if (on(kBody) && tx.body) {
    const bool request = is_request_body(*tx.body);
    const bool request_view = view == View::RestCreate || view == View::RestUpdate;
    // READ shows only the status form; CREATE/UPDATE only the request forms.
    if (!(read && request) && !(request_view && !request)) {
      json::value b = to_json(*tx.body);
      if (!b.as_object().empty()) put(kBody, std::move(b));
    }
  }
  if (on(kNotification) && tx.notification) {
    put(kNotification, read ? json::object() : *tx.notification);
  }
  if (on(kRetry) && tx.retry) put(kRetry, read ? json::object() : *tx.retry);
  if (on(kSmtpMeta) && tx.smtp_meta && !read) put(kSmtpMeta, *tx.smtp_meta);
  if (on(kCancelled) && tx.cancelled) put(kCancelled, true);
  if (on(kFinalAttemptReason) && tx.final_attempt_reason) {
    put(kFinalAttemptReason, json::string(*tx.final_attempt_reason));
  }
  if (on(kSender) && tx.sender) put(kSender, read ? json::object() : to_json(*tx.sender));
  if (on(kFilterOutput) && tx.filter_output && !read) put(kFilterOutput, *tx.filter_output);
  return o;
}

std::string tx_to_json_string(const TransactionMetadata& tx, View view) {
  return json::serialize(tx_to_json(tx, view));
}

std::string to_compact_string(const json::value& v) { return json::serialize(v); }

// ---- delta / merge ---------------------------------------------------------------------------

namespace {

// The path of a URI (scheme and authority dropped): a blob's uri may move to
// another host but not to another path (rest-api.md §5.5 rule 5).
std::string_view uri_path(std::string_view uri) {
  if (auto s = uri.find("://"); s != std::string_view::npos) {
    auto slash = uri.find('/', s + 3);
    return slash == std::string_view::npos ? std::string_view() : uri.substr(slash);
  }
  return uri;
}

Result<void> blob_successor(const BlobStatus& prev, const BlobStatus& next,
                            const std::string& what) {
  if (uri_path(prev.uri) != uri_path(next.uri)) return conflict(what + ".uri changed");
  if (prev.finalized && !next.finalized) return conflict(what + ".finalized went back");
  return {};
}

// Is `next` a valid successor of `prev`?
Result<void> body_status_successor(const BodyStatus& prev, const BodyStatus& next) {
  if (prev.blob_status) {
    if (!next.blob_status) return conflict("body.blob_status removed");
    if (auto r = blob_successor(*prev.blob_status, *next.blob_status, "body.blob_status"); !r) {
      return r;
    }
  }
  if (prev.message_builder) {
    if (!next.message_builder) return conflict("body.message_builder removed");
    const auto& p = *prev.message_builder;
    const auto& n = *next.message_builder;
    if (p.uri && n.uri && *p.uri != *n.uri) return conflict("body.message_builder.uri changed");
    if (!p.blob_status.empty()) {
      if (p.blob_status.size() != n.blob_status.size()) {
        return conflict("body.message_builder.blob_status ids changed");
      }
      for (const auto& [id, ps] : p.blob_status) {
        const BlobStatus* ns = nullptr;
        for (const auto& [nid, s] : n.blob_status) {
          if (nid == id) ns = &s;
        }
        if (!ns) return conflict("body.message_builder.blob_status ids changed");
        if (auto r = blob_successor(ps, *ns, "body.message_builder.blob_status." + id); !r) {
          return r;
        }
      }
    }
  }
  return {};
}

template <class T, class Eq>
Result<void> delta_scalar(std::string_view name, const std::optional<T>& prev,
                          const std::optional<T>& next, std::optional<T>& out, Eq eq) {
  if (!next) {
    if (prev) return conflict(std::string(name) + " removed");
    return {};
  }
  if (!prev) {
    out = next;
    return {};
  }
  if (!eq(*prev, *next)) return conflict(std::string(name) + " changed");
  return {};
}

bool same_sender(const Sender& a, const Sender& b) {
  return a.placeholder || b.placeholder || (a.name == b.name && a.tag == b.tag);
}

constexpr auto kEq = [](const auto& a, const auto& b) { return a == b; };

}  // namespace

Result<TransactionMetadata> tx_delta(const TransactionMetadata& prev,
                                     const TransactionMetadata& next, View view) {
  TransactionMetadata d;
  auto on = [&](Field f) { return valid(f, view); };
#define KOUKAN_DELTA(F, member, eq)                                                     \
  if (on(F)) {                                                                          \
    if (auto r = delta_scalar(kFields[F].name, prev.member, next.member, d.member, eq); \
        !r) {                                                                           \
      return r.error();                                                                 \
    }                                                                                   \
  }
  KOUKAN_DELTA(kRemoteHost, remote_host, kEq)
  KOUKAN_DELTA(kLocalHost, local_host, kEq)
  KOUKAN_DELTA(kMailFrom, mail_from, same_mailbox)
  KOUKAN_DELTA(kMailResponse, mail_response, kEq)
  KOUKAN_DELTA(kDataResponse, data_response, kEq)
  KOUKAN_DELTA(kAttemptCount, attempt_count, kEq)
  KOUKAN_DELTA(kNotification, notification, kEq)
  KOUKAN_DELTA(kRetry, retry, kEq)
  KOUKAN_DELTA(kSmtpMeta, smtp_meta, kEq)
  KOUKAN_DELTA(kFinalAttemptReason, final_attempt_reason, kEq)
  KOUKAN_DELTA(kSender, sender, same_sender)
#undef KOUKAN_DELTA
  if (view == View::All) {
    if (auto r = delta_scalar("routing", prev.routing, next.routing, d.routing, kEq); !r) {
      return r.error();
    }
  }

  if (on(kRcptTo)) {
    if (next.rcpt_to.size() < prev.rcpt_to.size()) return conflict("rcpt_to shrank");
    for (std::size_t i = 0; i < prev.rcpt_to.size(); ++i) {
      if (!same_mailbox(prev.rcpt_to[i], next.rcpt_to[i])) {
        return conflict("rcpt_to[" + std::to_string(i) + "] changed");
      }
    }
    if (next.rcpt_to.size() > prev.rcpt_to.size()) {
      d.rcpt_to.assign(next.rcpt_to.begin() + static_cast<std::ptrdiff_t>(prev.rcpt_to.size()),
                       next.rcpt_to.end());
      d.rcpt_to_list_offset = prev.rcpt_to.size();
    }
  }

  if (on(kRcptResponse)) {
    bool changed = next.rcpt_response.size() > prev.rcpt_response.size();
    for (std::size_t i = 0; i < prev.rcpt_response.size(); ++i) {
      const auto& p = prev.rcpt_response[i];
      const std::optional<Response>* n =
          i < next.rcpt_response.size() ? &next.rcpt_response[i] : nullptr;
      if (p && (!n || !*n)) {
        return conflict("rcpt_response[" + std::to_string(i) + "] removed");
      }
      if (p && **n != *p) return conflict("rcpt_response[" + std::to_string(i) + "] changed");
      if (!p && n && *n) changed = true;
    }
    if (changed) d.rcpt_response = next.rcpt_response;
  }

  if (on(kCancelled)) {
    if (prev.cancelled && !next.cancelled) return conflict("cancelled removed");
    d.cancelled = next.cancelled && !prev.cancelled;
  }

  // READ never carries filter_output (placeholder at most): nothing to compare.
  if (on(kFilterOutput) && view != View::RestRead) {
    if (prev.filter_output) {
      if (!next.filter_output) return conflict("filter_output removed");
      json::object out;
      for (const auto& [k, v] : *prev.filter_output) {
        if (!next.filter_output->contains(k)) {
          return conflict("filter_output key " + quoted(k) + " removed");
        }
      }
      for (const auto& [k, v] : *next.filter_output) {
        const auto* old = prev.filter_output->if_contains(k);
        if (!old || *old != v) out[k] = v;
      }
      if (!out.empty()) d.filter_output = std::move(out);
    } else if (next.filter_output) {
      d.filter_output = next.filter_output;
    }
  }

  if (on(kBody)) {
    if (prev.body && !next.body) return conflict("body removed");
    if (!prev.body && next.body) {
      d.body = next.body;
    } else if (prev.body && next.body) {
      if (prev.body->index() != next.body->index()) return conflict("body is not a successor");
      if (const auto* ps = std::get_if<BodyStatus>(&*prev.body)) {
        const auto& ns = std::get<BodyStatus>(*next.body);
        if (auto r = body_status_successor(*ps, ns); !r) return r.error();
        if (!(*ps == ns)) d.body = next.body;
      } else if (!(*prev.body == *next.body)) {
        return conflict("body changed");
      }
    }
  }
  return d;
}

namespace {

template <class T, class Eq>
Result<void> merge_scalar(std::string_view name, std::optional<T>& self,
                          const std::optional<T>& d, Eq eq) {
  if (!d) return {};
  if (!self) {
    self = d;
    return {};
  }
  if (!eq(*self, *d)) return bad(std::string(name) + " already set");
  return {};
}

}  // namespace

Result<void> tx_merge_from(TransactionMetadata& self, const TransactionMetadata& d) {
#define KOUKAN_MERGE(F, member, eq)                                                       \
  if (auto r = merge_scalar(kFields[F].name, self.member, d.member, eq); !r) return r;
  KOUKAN_MERGE(kRemoteHost, remote_host, kEq)
  KOUKAN_MERGE(kLocalHost, local_host, kEq)
  KOUKAN_MERGE(kMailFrom, mail_from, same_mailbox)
  KOUKAN_MERGE(kMailResponse, mail_response, kEq)
  KOUKAN_MERGE(kDataResponse, data_response, kEq)
  KOUKAN_MERGE(kAttemptCount, attempt_count, kEq)
  KOUKAN_MERGE(kNotification, notification, kEq)
  KOUKAN_MERGE(kRetry, retry, kEq)
  KOUKAN_MERGE(kSmtpMeta, smtp_meta, kEq)
  KOUKAN_MERGE(kFinalAttemptReason, final_attempt_reason, kEq)
  KOUKAN_MERGE(kSender, sender, same_sender)
#undef KOUKAN_MERGE
  if (auto r = merge_scalar("routing", self.routing, d.routing, kEq); !r) return r;
  // A placeholder learns its content.
  if (self.mail_from && self.mail_from->placeholder && d.mail_from && !d.mail_from->placeholder) {
    self.mail_from = d.mail_from;
  }
  if (self.sender && self.sender->placeholder && d.sender && !d.sender->placeholder) {
    self.sender = d.sender;
  }

  if (!d.rcpt_to.empty()) {
    std::size_t offset = d.rcpt_to_list_offset.value_or(0);
    if (offset != self.rcpt_to.size()) {
      return conflict("rcpt_to_list_offset " + std::to_string(offset) + " does not match " +
                      std::to_string(self.rcpt_to.size()) + " recipients");
    }
    self.rcpt_to.insert(self.rcpt_to.end(), d.rcpt_to.begin(), d.rcpt_to.end());
  }

  for (std::size_t i = 0; i < d.rcpt_response.size(); ++i) {
    const auto& r = d.rcpt_response[i];
    if (i >= self.rcpt_response.size()) {
      self.rcpt_response.push_back(r);
    } else if (!self.rcpt_response[i]) {
      self.rcpt_response[i] = r;
    } else if (r && *r != *self.rcpt_response[i]) {
      return bad("rcpt_response[" + std::to_string(i) + "] already set");
    }
  }

  self.cancelled = self.cancelled || d.cancelled;

  if (d.filter_output) {
    if (!self.filter_output) self.filter_output.emplace();
    for (const auto& [k, v] : *d.filter_output) (*self.filter_output)[k] = v;
  }

  if (d.body) {
    if (!self.body) {
      self.body = d.body;
    } else if (auto* ss = std::get_if<BodyStatus>(&*self.body);
               ss && std::holds_alternative<BodyStatus>(*d.body)) {
      const auto& ds = std::get<BodyStatus>(*d.body);
      if (auto r = body_status_successor(*ss, ds); !r) return r;
      *ss = ds;
    } else if (!(*self.body == *d.body)) {
      return bad("body already set");
    }
  }
  return {};
}

}  // namespace koukan
