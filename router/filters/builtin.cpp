#include "router/filters/builtin.hpp"

namespace koukan::router::filters {

void register_filters(chain::FilterRegistry& registry, const FilterDeps& deps) {
  register_router_filter(registry, deps);
  register_rest_output(registry, deps);
}

}  // namespace koukan::router::filters
