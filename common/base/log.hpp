#pragma once
// Thin logging wrapper: callers pay for <fmt/core.h> only; spdlog lives in
// log.cpp. Every line about a transaction carries its id; use a Logger with
// a context prefix ("tx=Ab3d", "smtp=17") for that.
#include <fmt/core.h>
#include <string>
#include <string_view>
#include <utility>

namespace koukan::log {

enum class Level { trace = 0, debug, info, warn, error, critical, off };

bool enabled(Level l);
void set_level(Level l);
// Parses trace|debug|info|warning|warn|error|critical|off (case-insensitive;
// Python level names are accepted). Returns false on an unknown name.
bool parse_level(std::string_view name, Level* out);
void write(Level l, std::string_view context, std::string_view msg);
// Optional log file in addition to stderr.
void set_file(const std::string& path);

template <class... A>
void at(Level l, std::string_view ctx, fmt::format_string<A...> f, A&&... a) {
  if (enabled(l)) write(l, ctx, fmt::format(f, std::forward<A>(a)...));
}
template <class... A> void debug(fmt::format_string<A...> f, A&&... a) { at(Level::debug, {}, f, std::forward<A>(a)...); }
template <class... A> void info(fmt::format_string<A...> f, A&&... a) { at(Level::info, {}, f, std::forward<A>(a)...); }
template <class... A> void warn(fmt::format_string<A...> f, A&&... a) { at(Level::warn, {}, f, std::forward<A>(a)...); }
template <class... A> void error(fmt::format_string<A...> f, A&&... a) { at(Level::error, {}, f, std::forward<A>(a)...); }
template <class... A> void critical(fmt::format_string<A...> f, A&&... a) { at(Level::critical, {}, f, std::forward<A>(a)...); }

// A logger bound to a context such as "tx=Ab3d" or "smtp=17".
class Logger {
 public:
  Logger() = default;
  explicit Logger(std::string ctx) : ctx_(std::move(ctx)) {}
  const std::string& context() const { return ctx_; }
  template <class... A> void debug(fmt::format_string<A...> f, A&&... a) const { at(Level::debug, ctx_, f, std::forward<A>(a)...); }
  template <class... A> void info(fmt::format_string<A...> f, A&&... a) const { at(Level::info, ctx_, f, std::forward<A>(a)...); }
  template <class... A> void warn(fmt::format_string<A...> f, A&&... a) const { at(Level::warn, ctx_, f, std::forward<A>(a)...); }
  template <class... A> void error(fmt::format_string<A...> f, A&&... a) const { at(Level::error, ctx_, f, std::forward<A>(a)...); }

 private:
  std::string ctx_;
};

}  // namespace koukan::log
