// REST load generator for the benchmarks: C concurrent clients, each doing
// create (POST, inline body) then a point GET of the returned Location, N
// times in total. Prints requests/second and latency percentiles.
//   rest_load BASE_URL SENDER N CONCURRENCY
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/async/task.hpp"
#include "common/http/client.hpp"

using namespace koukan;
using Clock = std::chrono::steady_clock;

namespace {
struct Stats {
  std::vector<double> lat_ms;
  int failed = 0;
  int remaining = 0;
};

Task<void> worker(http::Client* client, std::string base, std::string sender, Stats* st) {
  const std::string body =
      "{\"mail_from\":{\"m\":\"alice@example.com\"},\"rcpt_to\":[{\"m\":\"bob@example.com\"}],"
      "\"body\":{\"inline\":\"Subject: bench\\r\\n\\r\\nhello\\r\\n\"}}";
  while (st->remaining > 0) {
    --st->remaining;
    auto t0 = Clock::now();
    http::ClientRequest c;
    c.method = "POST";
    c.url = base + "/senders/" + sender + "/transactions";
    c.headers.set("content-type", "application/json");
    c.body = body;
    auto r = co_await client->request(std::move(c));
    if (!r.ok() || r->status != 201 || !r->headers.get("location")) {
      if (st->failed++ == 0)
        std::fprintf(stderr, "first failure (create): %s\n",
                     r.ok() ? ("status " + std::to_string(r->status)).c_str() : r.error().message.c_str());
      continue;
    }
    http::ClientRequest g;
    g.url = std::string(*r->headers.get("location"));
    auto r2 = co_await client->request(std::move(g));
    if (!r2.ok() || r2->status != 200) {
      if (st->failed++ == 0)
        std::fprintf(stderr, "first failure (get): %s\n",
                     r2.ok() ? ("status " + std::to_string(r2->status)).c_str() : r2.error().message.c_str());
      continue;
    }
    st->lat_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: rest_load BASE_URL SENDER N CONCURRENCY\n");
    return 2;
  }
  std::string base = argv[1], sender = argv[2];
  int n = std::atoi(argv[3]), c = std::atoi(argv[4]);
  boost::asio::io_context io;
  http::ClientOptions opts;
  opts.max_idle_per_host = static_cast<std::size_t>(c);
  http::Client client(io.get_executor(), opts);
  Stats st;
  st.remaining = n;
  auto t0 = Clock::now();
  for (int i = 0; i < c; ++i) spawn(io.get_executor(), worker(&client, base, sender, &st), "load");
  io.run();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::sort(st.lat_ms.begin(), st.lat_ms.end());
  auto pct = [&](double p) {
    return st.lat_ms.empty() ? 0.0 : st.lat_ms[std::min(st.lat_ms.size() - 1, static_cast<std::size_t>(p * st.lat_ms.size()))];
  };
  std::printf("ok=%zu failed=%d seconds=%.2f create+get/s=%.0f p50_ms=%.2f p99_ms=%.2f\n",
              st.lat_ms.size(), st.failed, secs, st.lat_ms.size() / secs, pct(0.5), pct(0.99));
  return st.failed == 0 ? 0 : 1;
}
