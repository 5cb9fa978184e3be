#include "engine/cuda/offload_fetch_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::StatusOr<int32_t> FlattenFetchPlan(const FetchPlan& plan, int kv_heads,
                                         std::vector<CudaFetchRow>& rows) {
  rows.clear();
  if (static_cast<int>(plan.tokens.size()) != kv_heads ||
      static_cast<int>(plan.from_slot.size()) != kv_heads ||
      static_cast<int>(plan.to_slot.size()) != kv_heads) {
    return absl::InternalError("FlattenFetchPlan: plan does not have one list per KV head");
  }
  // A dense range (the common shape of dense streaming) needs no per-row upload.
  bool dense = true;
  const size_t n0 = plan.tokens[0].size();
  for (int h = 0; h < kv_heads && dense; ++h) {
    const auto& t = plan.tokens[h];
    if (t.size() != n0 || plan.from_slot[h].size() != n0 || plan.to_slot[h].size() != n0) {
      dense = false;
      break;
    }
    for (size_t i = 0; i < n0; ++i) {
      if (t[i] != static_cast<int32_t>(i) || plan.from_slot[h][i] >= 0 ||
          plan.to_slot[h][i] >= 0) {
        dense = false;
        break;
      }
    }
  }
  if (dense) return static_cast<int32_t>(n0);
  size_t total = 0, longest = 0;
  for (int h = 0; h < kv_heads; ++h) {
    const size_t n = plan.tokens[h].size();
    if (plan.from_slot[h].size() != n || plan.to_slot[h].size() != n) {
      return absl::InternalError(
          absl::StrCat("FlattenFetchPlan: head ", h, " has lists of different lengths"));
    }
    total += n;
    longest = std::max(longest, n);
  }
  // Round-robin over the heads (entry i of every head, then i + 1): each head's list ascends
  // through the context at a similar pace, so the rows the gather has in flight at once lie
  // in one narrow band of the pool instead of spanning it (mapped host memory read at random
  // over a whole 256K-token layer runs at about half the bandwidth, docs/offload.md).
  rows.resize(total);
  size_t e = 0;
  for (size_t i = 0; i < longest; ++i) {
    for (int h = 0; h < kv_heads; ++h) {
      if (i >= plan.tokens[h].size()) continue;
      CudaFetchRow& r = rows[e++];
      r.token = plan.tokens[h][i];
      r.from_slot = plan.from_slot[h][i];
      r.to_slot = plan.to_slot[h][i];
      r.dst = static_cast<int32_t>(i) * kv_heads + h;
    }
  }
  return -1;
}

}  // namespace dsinfer
