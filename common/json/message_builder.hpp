#pragma once
// Message-builder spec (rest-api.md §4.11) and blob URI paths (§8.6).
//
// parse_message_builder() validates a client's spec once and returns the
// server form: every part's content rewritten to {"create_id": id}, plus the
// list of blobs the transaction needs, in part order.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "common/base/result.hpp"

namespace koukan {

// ---- blob paths -----------------------------------------------------------

// /transactions/<tx>/body           -> {tx, nullopt}
// /transactions/<tx>/blob/<blob>    -> {tx, blob}
struct BlobPath {
  std::string tx_rest_id;
  std::optional<std::string> blob_id;  // nullopt: the transaction body
  bool operator==(const BlobPath&) const = default;
};

// Accepts an absolute URL (scheme and authority ignored; query and fragment
// dropped) or a bare absolute path. No percent-decoding. Anything else is
// Error{bad_request}.
Result<BlobPath> parse_blob_path(std::string_view url_or_path);

// "/transactions/<tx>/body" or "/transactions/<tx>/blob/<blob>".
std::string blob_path(const BlobPath& p);

// A client-chosen blob id: non-empty, no '/', not starting with "__internal".
Result<void> check_blob_id(std::string_view id);

// ---- message-builder spec -------------------------------------------------

struct MessageBuilderBlob {
  enum class Kind { create, inline_data, reuse };
  std::string id;
  Kind kind = Kind::create;
  std::string inline_data;          // kind == inline_data: the UTF-8 text
  std::string reuse_uri;            // kind == reuse: the uri as given
  std::optional<BlobPath> reuse;    // kind == reuse: parsed (blob_id == id)
  bool operator==(const MessageBuilderBlob&) const = default;
};

struct MessageBuilderSpec {
  // The spec with every part's content replaced by {"create_id": id} and
  // malformed header entries dropped. Other keys are kept verbatim.
  boost::json::object json;
  // One entry per part, in order text_body, related_attachments,
  // file_attachments. Ids are unique.
  std::vector<MessageBuilderBlob> blobs;

  const MessageBuilderBlob* find_blob(std::string_view id) const;
  // The spec as a client sends it (inline / reuse_uri / create_id content),
  // rebuilt from json + blobs. Round-trips parse_message_builder().
  boost::json::object to_request_json() const;
  bool operator==(const MessageBuilderSpec&) const = default;
};

// Validates and rewrites a spec (§4.11). Inline parts get id "inline<N>",
// N = index of the part over all three part lists. Errors are
// Error{bad_request, "message_builder: ..."}.
Result<MessageBuilderSpec> parse_message_builder(const boost::json::value& spec);

// True if `s` is well-formed UTF-8 (no overlongs, no surrogates).
bool valid_utf8(std::string_view s);

}  // namespace koukan
