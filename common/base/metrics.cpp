#include "common/base/metrics.hpp"

#include <map>
#include <mutex>
#include <vector>

namespace koukan::metrics {
namespace {
std::mutex& mu() {
  static std::mutex m;
  return m;
}
std::vector<Metric*>& all() {
  static std::vector<Metric*> v;
  return v;
}
}  // namespace

Metric::Metric(std::string_view n, std::string_view h, std::string_view t, std::string_view l)
    : name(n), help(h), type(t), labels(l) {
  std::lock_guard lk(mu());
  all().push_back(this);
}

std::string render() {
  std::lock_guard lk(mu());
  // Group samples by metric name so HELP/TYPE appear once per family.
  std::map<std::string, std::vector<const Metric*>> fam;
  for (const Metric* m : all()) fam[m->name].push_back(m);
  std::string out;
  for (const auto& [name, ms] : fam) {
    out += "# HELP " + name + " " + ms.front()->help + "\n";
    out += "# TYPE " + name + " " + ms.front()->type + "\n";
    for (const Metric* m : ms) {
      out += name;
      if (!m->labels.empty()) out += "{" + m->labels + "}";
      out += " " + std::to_string(m->value()) + "\n";
    }
  }
  return out;
}

}  // namespace koukan::metrics
