#include "common/json/message_builder.hpp"

#include <array>
#include <set>

#include <boost/json.hpp>

namespace koukan {

namespace json = boost::json;

namespace {

constexpr std::string_view kTransactions = "/transactions/";
constexpr std::array<std::string_view, 3> kPartLists = {
    "text_body", "related_attachments", "file_attachments"};

Error bad(std::string m) { return Error(Errc::bad_request, std::move(m)); }

std::string quoted(std::string_view s) {
  std::string out = "'";
  out.append(s);
  out += '\'';
  return out;
}

}  // namespace

// ---- blob paths ---------------------------------------------------------------

Result<BlobPath> parse_blob_path(std::string_view in) {
  std::string_view path = in;
  if (auto scheme = in.find("://"); scheme != std::string_view::npos) {
    auto slash = in.find('/', scheme + 3);
    if (scheme == 0 || slash == std::string_view::npos) {
      return bad("not a blob uri: " + quoted(in));
    }
    path = in.substr(slash);
  }
  if (auto q = path.find_first_of("?#"); q != std::string_view::npos) {
    path = path.substr(0, q);
  }
  if (!path.starts_with(kTransactions)) {
    return bad("not a blob uri: " + quoted(in));
  }
  std::string_view rest = path.substr(kTransactions.size());
  // Split the remainder into '/'-separated segments; none may be empty.
  std::vector<std::string_view> seg;
  while (true) {
    auto slash = rest.find('/');
    seg.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  for (auto s : seg) {
    if (s.empty()) return bad("not a blob uri: " + quoted(in));
  }
  if (seg.size() == 2 && seg[1] == "body") {
    return BlobPath{std::string(seg[0]), std::nullopt};
  }
  if (seg.size() == 3 && seg[1] == "blob") {
    return BlobPath{std::string(seg[0]), std::string(seg[2])};
  }
  return bad("not a blob uri: " + quoted(in));
}

std::string blob_path(const BlobPath& p) {
  std::string out(kTransactions);
  out += p.tx_rest_id;
  if (p.blob_id) {
    out += "/blob/";
    out += *p.blob_id;
  } else {
    out += "/body";
  }
  return out;
}

Result<void> check_blob_id(std::string_view id) {
  if (id.empty()) return bad("empty blob id");
  if (id.find('/') != std::string_view::npos) {
    return bad("blob id may not contain '/': " + quoted(id));
  }
  if (id.starts_with("__internal")) return bad("reserved blob id " + quoted(id));
  return {};
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    unsigned c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n;
    std::uint32_t cp;
    std::uint32_t min;
    if ((c & 0xE0) == 0xC0) {
      n = 1; cp = c & 0x1F; min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2; cp = c & 0x0F; min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3; cp = c & 0x07; min = 0x10000;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

// ---- message builder ----------------------------------------------------------

const MessageBuilderBlob* MessageBuilderSpec::find_blob(std::string_view id) const {
  for (const auto& b : blobs) {
    if (b.id == id) return &b;
  }
  return nullptr;
}

json::object MessageBuilderSpec::to_request_json() const {
  json::object out = json;
  for (auto list_name : kPartLists) {
    auto* list = out.if_contains(list_name);
    if (!list || !list->is_array()) continue;
    for (auto& part : list->as_array()) {
      auto* content = part.is_object() ? part.as_object().if_contains("content") : nullptr;
      if (!content || !content->is_object()) continue;
      auto* id = content->as_object().if_contains("create_id");
      if (!id || !id->is_string()) continue;
      const MessageBuilderBlob* blob = find_blob(id->as_string());
      if (!blob) continue;
      switch (blob->kind) {
        case MessageBuilderBlob::Kind::create:
          break;
        case MessageBuilderBlob::Kind::inline_data:
          *content = json::object{{"inline", blob->inline_data}};
          break;
        case MessageBuilderBlob::Kind::reuse:
          *content = json::object{{"reuse_uri", blob->reuse_uri}};
          break;
      }
    }
  }
  return out;
}

namespace {

// Rewrites one part's content in place and records its blob.
Result<void> parse_part(json::value& part, const std::string& where, std::size_t index,
                        MessageBuilderSpec& spec, std::set<std::string, std::less<>>& ids) {
  if (!part.is_object()) return bad("message_builder: " + where + " must be an object");
  auto* content = part.as_object().if_contains("content");
  if (!content) return bad("message_builder: " + where + ": missing content");
  if (!content->is_object()) {
    return bad("message_builder: " + where + ".content must be an object");
  }
  const json::object& c = content->as_object();
  if (c.size() != 1) {
    return bad("message_builder: " + where +
               ".content must have exactly one of inline, create_id, reuse_uri");
  }
  const auto& [key, val] = *c.begin();
  if (key != "inline" && key != "create_id" && key != "reuse_uri") {
    return bad("message_builder: " + where + ".content: unknown key " + quoted(key));
  }
  if (!val.is_string()) {
    return bad("message_builder: " + where + ".content." + std::string(key) +
               " must be a string");
  }
  std::string_view s = val.as_string();
  MessageBuilderBlob blob;
  if (key == "inline") {
    if (!valid_utf8(s)) {
      return bad("message_builder: " + where + ".content.inline is not valid UTF-8");
    }
    blob.kind = MessageBuilderBlob::Kind::inline_data;
    blob.id = "inline" + std::to_string(index);
    blob.inline_data = std::string(s);
  } else if (key == "create_id") {
    if (auto r = check_blob_id(s); !r) {
      return bad("message_builder: " + where + ".content.create_id: " + r.error().message);
    }
    blob.kind = MessageBuilderBlob::Kind::create;
    blob.id = std::string(s);
  } else {
    auto path = parse_blob_path(s);
    if (!path) {
      return bad("message_builder: " + where + ".content.reuse_uri: " + path.error().message);
    }
    if (!path->blob_id) {
      return bad("message_builder: " + where +
                 ".content.reuse_uri: must name a blob, not a body: " + quoted(s));
    }
    if (auto r = check_blob_id(*path->blob_id); !r) {
      return bad("message_builder: " + where + ".content.reuse_uri: " + r.error().message);
    }
    blob.kind = MessageBuilderBlob::Kind::reuse;
    blob.id = *path->blob_id;
    blob.reuse_uri = std::string(s);
    blob.reuse = std::move(*path);
  }
  if (!ids.insert(blob.id).second) {
    return bad("message_builder: duplicate blob id " + quoted(blob.id));
  }
  *content = json::object{{"create_id", blob.id}};
  spec.blobs.push_back(std::move(blob));
  return {};
}

}  // namespace

Result<MessageBuilderSpec> parse_message_builder(const json::value& in) {
  if (!in.is_object()) return bad("message_builder: not an object");
  MessageBuilderSpec spec;
  spec.json = in.as_object();

  if (auto* headers = spec.json.if_contains("headers")) {
    if (!headers->is_array()) return bad("message_builder: headers must be an array");
    json::array kept;
    for (const auto& h : headers->as_array()) {
      // [name, value] pairs; anything else is skipped, as the original does.
      if (h.is_array() && h.as_array().size() == 2 && h.as_array()[0].is_string()) {
        kept.push_back(h);
      }
    }
    *headers = std::move(kept);
  }

  std::set<std::string, std::less<>> ids;
  std::size_t index = 0;
  for (auto list_name : kPartLists) {
    auto* list = spec.json.if_contains(list_name);
    if (!list) continue;
    if (!list->is_array()) {
      return bad("message_builder: " + std::string(list_name) + " must be an array");
    }
    std::size_t i = 0;
    for (auto& part : list->as_array()) {
      std::string where = std::string(list_name) + "[" + std::to_string(i++) + "]";
      if (auto r = parse_part(part, where, index++, spec, ids); !r) return r.error();
    }
  }
  return spec;
}

}  // namespace koukan
