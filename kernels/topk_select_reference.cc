// The kept tokens are two ranges (the sink prefix, and the recent suffix that always holds
// the current token), so "is kept" needs no marks; the other tokens are candidates, ranked
// with one nth_element under a total order (score descending, index ascending) — O(n) and
// deterministic even with equal scores. NaN scores rank last.
#include "kernels/topk_select_reference.h"

#include <algorithm>
#include <cmath>

namespace dsinfer {

int64_t TopKSelectReference(const float* scores, int64_t tokens, int64_t k, int sink, int recent,
                            int32_t* scratch, int32_t* selected) {
  if (tokens <= 0) return 0;
  const int64_t budget = std::min(std::max<int64_t>(k, 1), tokens);
  const int64_t sink_end = std::min<int64_t>(sink, tokens);
  // The recent suffix holds at least the current token.
  const int64_t recent_begin = std::max(sink_end, tokens - std::max<int64_t>(recent, 1));
  const int64_t kept = sink_end + (tokens - recent_begin);
  int64_t n = 0;
  if (kept >= budget) {
    // Cut in priority order: current, sink from the first, recent from the newest.
    const int64_t sinks = std::min(sink_end, budget - 1);
    for (int64_t t = 0; t < sinks; ++t) selected[n++] = static_cast<int32_t>(t);
    const int64_t recents = budget - sinks;
    for (int64_t t = tokens - recents; t < tokens; ++t) selected[n++] = static_cast<int32_t>(t);
    return n;
  }
  int64_t candidates = 0;
  for (int64_t t = sink_end; t < recent_begin; ++t) scratch[candidates++] = static_cast<int32_t>(t);
  const int64_t want = budget - kept;
  auto better = [scores](int32_t a, int32_t b) {
    const float sa = std::isnan(scores[a]) ? -INFINITY : scores[a];
    const float sb = std::isnan(scores[b]) ? -INFINITY : scores[b];
    if (sa != sb) return sa > sb;
    return a < b;
  };
  std::nth_element(scratch, scratch + want - 1, scratch + candidates, better);
  std::sort(scratch, scratch + want);
  for (int64_t t = 0; t < sink_end; ++t) selected[n++] = static_cast<int32_t>(t);
  for (int64_t i = 0; i < want; ++i) selected[n++] = scratch[i];
  for (int64_t t = recent_begin; t < tokens; ++t) selected[n++] = static_cast<int32_t>(t);
  return n;
}

}  // namespace dsinfer
