// BlockingPool: thread mode (asio::thread_pool) and group-commit mode (one
// thread running queued calls in batches between GroupCommit hooks).
#include "common/async/task.hpp"
#include "common/base/metrics.hpp"

namespace koukan {
namespace {
metrics::Metric m_batches("koukan_storage_group_commits_total",
                          "batches of storage calls committed together (SQLite group commit)", "counter");
metrics::Metric m_calls("koukan_storage_group_commit_calls_total",
                        "storage calls run inside group-commit batches", "counter");
}  // namespace

BlockingPool::BlockingPool(GroupCommit& group, std::size_t readers, std::size_t max_batch)
    : group_(&group), max_batch_(max_batch ? max_batch : 1) {
  if (readers > 0) pool_.emplace(readers);
  thread_ = std::thread([this] { group_loop(); });
}

void BlockingPool::stop() {
  if (pool_) {
    pool_->stop();
    pool_->join();
  }
  if (!group_) return;
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BlockingPool::enqueue(std::unique_ptr<Job> j) {
  {
    std::lock_guard lk(mu_);
    queue_.push_back(std::move(j));
  }
  cv_.notify_one();
}

void BlockingPool::group_loop() {
  std::vector<std::unique_ptr<Job>> batch;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stop_ || !queue_.empty(); });
      // Queued calls still run at stop: their awaiters may be waiting.
      if (queue_.empty()) return;
      while (!queue_.empty() && batch.size() < max_batch_) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    bool committed = false;
    try {
      group_->begin();
      // Calls queued while the batch runs join it (no waiting): the batch
      // grows with the load, and so does the number of calls per fsync.
      for (std::size_t i = 0; i < batch.size(); ++i) {
        batch[i]->run();
        if (i + 1 == batch.size() && batch.size() < max_batch_) {
          std::lock_guard lk(mu_);
          while (!queue_.empty() && batch.size() < max_batch_) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
        }
      }
      group_->commit();
      committed = true;
    } catch (const std::exception& e) {
      group_->abort();
      log::warn("blocking pool: batch of {} not committed ({}); running them one by one",
                batch.size(), e.what());
    } catch (...) {
      group_->abort();
      log::warn("blocking pool: batch of {} not committed; running them one by one", batch.size());
    }
    if (!committed) {
      for (auto& j : batch) j->run();  // no batch open: each call commits alone
    }
    batches_.fetch_add(1);
    jobs_.fetch_add(batch.size());
    m_batches.inc();
    m_calls.inc(static_cast<std::int64_t>(batch.size()));
    for (auto& j : batch) {
      try {
        j->complete();
      } catch (const std::exception& e) {
        log::error("blocking pool: completion failed: {}", e.what());
      }
    }
    batch.clear();
  }
}

}  // namespace koukan
