#include "common/base/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>

namespace koukan::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};

std::shared_ptr<spdlog::logger> make_default() {
  auto l = spdlog::stderr_color_mt("koukan");
  l->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%L%$ %t %v");
  l->set_level(spdlog::level::trace);
  l->flush_on(spdlog::level::warn);
  return l;
}

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> l = make_default();
  return *l;
}
}  // namespace

bool enabled(Level l) { return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed); }
void set_level(Level l) { g_level.store(static_cast<int>(l)); }

bool parse_level(std::string_view name, Level* out) {
  std::string n(name);
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  static const std::pair<const char*, Level> table[] = {
      {"trace", Level::trace}, {"debug", Level::debug}, {"info", Level::info},
      {"warning", Level::warn}, {"warn", Level::warn}, {"error", Level::error},
      {"critical", Level::critical}, {"off", Level::off}};
  for (auto& [k, v] : table) {
    if (n == k) { *out = v; return true; }
  }
  return false;
}

void set_file(const std::string& path) {
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  logger().sinks().push_back(sink);
}

void write(Level l, std::string_view ctx, std::string_view msg) {
  auto lvl = static_cast<spdlog::level::level_enum>(static_cast<int>(l));
  if (ctx.empty())
    logger().log(lvl, "{}", msg);
  else
    logger().log(lvl, "[{}] {}", ctx, msg);
}

}  // namespace koukan::log
