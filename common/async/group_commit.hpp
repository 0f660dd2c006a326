#pragma once
// GroupCommit: the hooks a group-commit BlockingPool (common/async/task.hpp)
// calls; kept apart so the storage can implement it without Asio headers.

namespace koukan {

// Hooks of a group-commit pool (implemented by the storage): every job of a
// batch runs between begin() and commit() on the pool's single thread, so a
// batch of writers shares one durable commit (one fsync). commit() throws if
// the batch cannot be committed; then the pool calls abort() and re-runs each
// job of the batch on its own (no batch open: each makes its own commit).
class GroupCommit {
 public:
  virtual ~GroupCommit() = default;
  virtual void begin() = 0;            // throws: the batch runs job by job
  virtual void commit() = 0;           // throws: abort(), then job by job
  virtual void abort() noexcept = 0;
};

}  // namespace koukan
