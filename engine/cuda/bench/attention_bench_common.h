// What the parts of dsinfer-attention-bench share: the K/V shape every section runs at, the L2
// flusher and the cold-L2 timing that the dense and the Double Sparsity rows both report, and
// the two records the main loop hands each decode section — the run's streams, rates and
// timing settings, and one (heads, batch, context) configuration's buffers. The flags are read
// in attention_bench_main.cc alone, so that the sections take plain values and --help lists the
// flags under one file.
#ifndef DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_COMMON_H_
#define DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_COMMON_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/device_timer.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/status.h"

namespace dsinfer {

inline constexpr int kBlockTokens = 256;
inline constexpr int kHeadDim = 128;

// Empties the L2 cache of what a timed step left there: a GEMV streaming a bf16 weight matrix
// several times the L2's size (read only, so the lines it leaves are clean and nothing is
// written back while the next step runs).
struct L2Flusher {
  static constexpr int64_t kIn = 8192;
  DevMem w, x, y;
  int64_t out = 0;
  absl::Status Init(const cudaDeviceProp& prop, cudaStream_t stream) {
    const int64_t bytes = std::max<int64_t>(int64_t{256} << 20, int64_t{4} * prop.l2CacheSize);
    out = bytes / (2 * kIn);
    RETURN_IF_ERROR(w.Alloc(out * kIn * 2));
    RETURN_IF_ERROR(x.Alloc(kIn * 2));
    RETURN_IF_ERROR(y.Alloc(out * 2));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kBF16, w.ptr, out * kIn, 31, 1.0f, stream));
    return LaunchFillRandom(DType::kBF16, x.ptr, kIn, 32, 1.0f, stream);
  }
  absl::Status Flush(cudaStream_t stream) const {
    return LaunchGemv(DType::kBF16, DType::kBF16, x.ptr, 1, kIn, w.ptr, out, y.ptr, out, stream);
  }
};

// TimeUs with the L2 emptied before every step (outside the step's events): what the operator
// meets inside a decode step, where the layers before it streamed other data through the L2,
// while TimeUs's back-to-back steps keep their inputs in L2 where they fit. Run 26 (H200,
// batch 8): within 1-3% of the warm loop from 64K, 4% slower at 32K with Llama-3 heads (the
// chain's 33.5 MB of labels fit the L2 there).
template <typename Fn>
absl::StatusOr<double> ColdTimeUs(cudaStream_t stream, int iters, const L2Flusher& flusher, Fn fn) {
  RETURN_IF_ERROR(fn());
  DeviceTimer timer(stream);
  double total_ms = 0;
  for (int i = 0; i < iters; ++i) {
    RETURN_IF_ERROR(flusher.Flush(stream));
    RETURN_IF_ERROR(timer.Start());
    RETURN_IF_ERROR(fn());
    ASSIGN_OR_RETURN(const double ms, timer.StopMs());
    total_ms += ms;
  }
  return 1000.0 * total_ms / iters;
}

// The run-wide state every decode section times with.
struct DecodeBenchEnv {
  cudaStream_t stream = nullptr;
  // The split chain's second stream and its fork and join events (LaunchChainInHalves).
  cudaStream_t side_stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  int sm = 0;          // the GPU's multiprocessors, which the split-count rules size by
  double hbm_bps = 0;  // the D2D copy rate the floors divide by
  int iters = 0;       // --iters
  const L2Flusher* flusher = nullptr;
};

// One decode configuration as the main loop builds it; the buffers stay the loop's, so that
// the dense and the Double Sparsity rows of a configuration read the same query and K/V.
struct DecodeConfig {
  std::string model;  // as --models spells it
  int hq = 0, hkv = 0;
  int64_t batch = 0, ctx = 0;
  int64_t kv_bytes = 0;  // the context's K and V, the dense floor's bytes
  const DevMem* dq = nullptr;
  const DevMem* dout = nullptr;
  CudaPagedKv kv;
  CudaBatchRows rows;
  float scale = 0;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_ATTENTION_BENCH_COMMON_H_
