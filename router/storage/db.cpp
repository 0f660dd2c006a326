// The common SQL dialect of db.hpp, translated per engine.
#include "router/storage/db.hpp"

#include <cctype>

namespace koukan::router::db {

std::string translate(std::string_view sql, bool sqlite, std::int64_t clock_offset) {
  std::string out;
  out.reserve(sql.size() + 64);
  const std::string off = clock_offset == 0 ? std::string() : " + " + std::to_string(clock_offset);
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '$' && sqlite) {
      out += '?';
      continue;
    }
    if (c == '{') {
      const std::size_t end = sql.find('}', i);
      if (end != std::string_view::npos) {
        const std::string_view tok = sql.substr(i + 1, end - i - 1);
        if (tok == "now") {
          out += sqlite ? "(unixepoch()" : "(CAST(FLOOR(EXTRACT(EPOCH FROM now())) AS BIGINT)";
          out += off;
          out += ')';
          i = end;
          continue;
        }
        if (tok == "for_update") {
          if (!sqlite) out += " FOR UPDATE";
          i = end;
          continue;
        }
        if (tok == "skip_locked") {
          if (!sqlite) out += " FOR UPDATE SKIP LOCKED";
          i = end;
          continue;
        }
      }
    }
    out += c;
  }
  return out;
}

}  // namespace koukan::router::db
