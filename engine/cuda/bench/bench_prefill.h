// dsinfer-bench's prefill section: batch 1 prompts through the whole model against the floor of
// their FLOPs at the measured cuBLAS bf16 matmul rate. Long prompts run a few layers and scale,
// so that a 32K prefill does not need the memory or the time of the full depth.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_PREFILL_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_PREFILL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/cuda/bench/bench_model.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

// Times a prefill of every length of `contexts`, prints the table (header included) and
// appends a row each to jm["prefill"]. Prompts over 8K tokens run the first
// `long_prefill_layers` layers (--long_prefill_layers), their time scaled to the full depth.
absl::Status TimePrefill(CudaBackend& b, RandomWeightModel& m, const std::vector<int64_t>& contexts,
                         int long_prefill_layers, double mm_flops, DeviceTimer& timer,
                         nlohmann::json& jm);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_PREFILL_H_
