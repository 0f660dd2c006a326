#pragma once
// Minimal Prometheus metrics: counters and gauges registered once at start-up
// (static storage duration, lock-free updates), rendered in the text
// exposition format by render(). Labels are fixed at registration.
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace koukan::metrics {

class Metric {
 public:
  // name: prometheus metric name; labels: e.g. R"(route="create",code="201")"
  // (may be empty); type: "counter" or "gauge".
  Metric(std::string_view name, std::string_view help, std::string_view type,
         std::string_view labels = {});
  Metric(const Metric&) = delete;
  Metric& operator=(const Metric&) = delete;
  void inc(std::int64_t n = 1) { v_.fetch_add(n, std::memory_order_relaxed); }
  void dec(std::int64_t n = 1) { v_.fetch_sub(n, std::memory_order_relaxed); }
  void set(std::int64_t n) { v_.store(n, std::memory_order_relaxed); }
  std::int64_t value() const { return v_.load(std::memory_order_relaxed); }

  const std::string name, help, type, labels;

 private:
  std::atomic<std::int64_t> v_{0};
};

// All registered metrics in the text exposition format (version 0.0.4).
std::string render();

}  // namespace koukan::metrics
