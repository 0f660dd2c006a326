#pragma once
// TxEnv: what the output handler provides to the filters of one
// transaction's chain besides the tx itself (body bytes live in storage, not
// in the tx). Filters get it as FilterCall::env / ProxyCall::env; it is null
// when a chain runs without an output handler (unit tests of pure filters).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/async/task.hpp"
#include "common/base/result.hpp"

namespace koukan::router::chain {

// State of one stored blob as of the start of the current chain pass.
struct BlobInfo {
  std::string name;        // ref name: kBodyBlobName for the body, else a message-builder part id
  std::int64_t blob_id = 0;
  std::int64_t length = 0; // bytes stored so far
  std::optional<std::int64_t> total;
  bool finalized = false;
};

struct TxEnv {
  std::string rest_id;  // of the stored (downstream) transaction
  // Refreshed by the output handler before every pass.
  std::optional<BlobInfo> body;   // the raw body blob, if any
  std::vector<BlobInfo> parts;    // message-builder blobs, in spec order
  // Reads up to `max` bytes of a blob from `offset` (fewer only at the
  // current end). Runs the database read off the I/O thread.
  std::function<Task<Result<std::string>>(std::int64_t blob_id, std::int64_t offset,
                                          std::size_t max)>
      read_blob;
};

}  // namespace koukan::router::chain
