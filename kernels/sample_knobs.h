// The sampling filters of one row of logits, as the GPU sampler (LaunchSample) reads them from
// device memory, one per row, and its C++ twin (SampleReference) from host memory: a plain
// 16-byte POD with no CUDA types, so that the engine can fill an array of them on the host
// and the backend can upload it unchanged. The filters are engine/sampler.h's (repetition
// penalty aside: it needs the request's history, and stays on the host sampler's path).
#ifndef DSINFER_KERNELS_SAMPLE_KNOBS_H_
#define DSINFER_KERNELS_SAMPLE_KNOBS_H_

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"

namespace dsinfer {

struct SampleKnobs {
  float temperature = 1.0f;  // >= 0, finite; 0 = greedy (argmax, lowest id on ties)
  int32_t top_k = 0;         // >= 0; 0 = off
  float top_p = 1.0f;        // (0, 1]; 1 = off
  float min_p = 0.0f;        // [0, 1); 0 = off
};
static_assert(std::is_trivially_copyable_v<SampleKnobs> && sizeof(SampleKnobs) == 16,
              "SampleKnobs is uploaded to the device as raw bytes");

// INVALID_ARGUMENT naming the first knob out of the ranges above. The GPU sampler cannot
// check knobs it reads from device memory: whoever uploads them checks them here first.
absl::Status ValidateSampleKnobs(const SampleKnobs& knobs);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_SAMPLE_KNOBS_H_
