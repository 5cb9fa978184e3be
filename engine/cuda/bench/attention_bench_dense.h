// dsinfer-attention-bench's dense decode row: flash-decoding (LaunchDecodeAttention) over one
// configuration's whole K/V, the baseline every Double Sparsity row's speedup divides by. Kept
// apart from the main loop so that the loop reads as the list of sections it runs.
#ifndef DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DENSE_H_
#define DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DENSE_H_

#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "kernels/cuda/cuda_kernels.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

// Times every body of `dense_algos` at the engine's split count, the first also with the L2
// emptied before each step and at every count of `dense_waves` (waves of the SM count); prints
// the row and appends it to out["results"]. Returns the first body's time, the dense time.
// `dws` receives the split workspace; it is the caller's so that it lives through the
// configuration's Double Sparsity rows, which thus allocate beside it as they always have.
absl::StatusOr<double> RunDenseDecode(const DecodeBenchEnv& env, const DecodeConfig& config,
                                      const std::vector<DecodeAttentionAlgo>& dense_algos,
                                      const std::vector<int>& dense_waves, DevMem& dws,
                                      nlohmann::json& out);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_DENSE_H_
