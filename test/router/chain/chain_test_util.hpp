#pragma once
// Helpers for the chain tests: run a coroutine to completion, build entries.
#include <yaml-cpp/yaml.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <string>
#include <utility>

#include "common/async/task.hpp"
#include "router/config/router_config.hpp"

namespace koukan::router::chain::testing {

template <class T>
T run(Task<T> t) {
  asio::io_context io;
  auto f = asio::co_spawn(io, std::move(t), asio::use_future);
  io.run();
  return f.get();
}

inline ChainEntry entry(const std::string& yaml, std::size_t endpoint = 0, std::size_t index = 0) {
  ChainEntry e;
  e.yaml = YAML::Load(yaml);
  e.filter = e.yaml["filter"].as<std::string>();
  e.path = "endpoint[" + std::to_string(endpoint) + "].chain[" + std::to_string(index) + "]";
  return e;
}

inline EndpointConfig endpoint(std::string name, std::initializer_list<std::string> yamls) {
  EndpointConfig ep;
  ep.name = std::move(name);
  std::size_t i = 0;
  for (const auto& y : yamls) ep.chain.push_back(entry(y, 0, i++));
  return ep;
}

inline Mailbox mbox(std::string m) {
  Mailbox b;
  b.mailbox = std::move(m);
  return b;
}

}  // namespace koukan::router::chain::testing
