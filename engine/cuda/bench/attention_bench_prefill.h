// dsinfer-attention-bench's prefill section: the causal prefill attention bodies timed against a
// cuBLAS GEMM of the same run. It shares nothing with the decode sections but the output, so it
// takes its lists as plain values and appends to the JSON the main program writes.
#ifndef DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_PREFILL_H_
#define DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_PREFILL_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

// Prefill section: causal attention of one prompt of L tokens over its own K/V (paged, 16-token
// blocks as the engine's pool), bf16, head_dim 128, Llama-2-7B (32 q / 32 kv) and Llama-3-8B
// (32 q / 8 kv) heads; the bodies of --prefill_algos (CUDA-core kSimt, tensor-core kMma and
// kWgmma) side by side, each over tiles of its own size.
// FLOPs = 4·L²·d·Hq / 2 (QKᵀ and PV, half the square under the causal mask). The reference
// rate is an 8192³ cuBLAS bf16 GEMM (fp32 accumulate) timed in the same run. Results go to
// out["prefill"] (and out["cublas_bf16_tflops"]).
// `models` and `algo_names` are the values of --models and --prefill_algos.
absl::Status RunPrefillBench(const std::vector<int64_t>& lengths, const std::string& models,
                             const std::string& algo_names, cudaStream_t stream,
                             nlohmann::json& out);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_PREFILL_H_
