// A FetchPlan (offload/offload_tier.h: per-KV-head lists) flattened into the one array the
// gather kernel reads (kernels/cuda/offload_gather_reference.h). Plain C++: the CPU side of
// the CUDA offload path, tested against ExecuteFetchPlanReference without a GPU.
#ifndef DSINFER_ENGINE_CUDA_OFFLOAD_FETCH_PLAN_H_
#define DSINFER_ENGINE_CUDA_OFFLOAD_FETCH_PLAN_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/cuda/offload_gather_reference.h"
#include "offload/offload_tier.h"

namespace dsinfer {

// Writes plan's rows into `rows` (cleared first), entry i of every head before entry i + 1. Returns the dense-range
// length when the plan is one (every head fetches tokens 0..n-1 from the host with no cache
// slot: nothing needs uploading then, and `rows` stays empty), else -1. INTERNAL when the
// plan's arrays disagree with each other or with kv_heads.
absl::StatusOr<int32_t> FlattenFetchPlan(const FetchPlan& plan, int kv_heads,
                                         std::vector<CudaFetchRow>& rows);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_OFFLOAD_FETCH_PLAN_H_
