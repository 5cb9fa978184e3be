// The ceilings behind dsinfer-bench's floors (bench_floors.h).
#include "engine/cuda/bench/bench_floors.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/bench/bench_forward.h"
#include "engine/cuda/bench/device_timer.h"
#include "engine/cuda/cuda_backend.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<double> MeasureHbmBandwidth(CudaBackend& b, DeviceTimer& timer) {
  const size_t bytes = 2ull << 30;
  void *src = nullptr, *dst = nullptr;
  CUDA_RETURN_IF_ERROR(cudaMalloc(&src, bytes));
  CUDA_RETURN_IF_ERROR(cudaMalloc(&dst, bytes));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(src, 1, bytes, b.stream()));
  std::vector<double> ms;
  for (int i = 0; i < 12; ++i) {
    RETURN_IF_ERROR(timer.Start());
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, b.stream()));
    ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
    ms.push_back(timed_ms);
  }
  ms.erase(ms.begin(), ms.begin() + 2);
  const double hbm_bps = 2.0 * bytes / (Median(ms) * 1e-3);
  cudaFree(src);
  cudaFree(dst);
  return hbm_bps;
}

absl::StatusOr<double> MeasureMatmulRate(CudaBackend& b, DeviceTimer& timer) {
  const int64_t n = 8192;
  ASSIGN_OR_RETURN(DeviceTensor x, b.Allocate(n, n));
  ASSIGN_OR_RETURN(DeviceTensor w, b.Allocate(n, n));
  ASSIGN_OR_RETURN(DeviceTensor y, b.Allocate(n, n));
  RETURN_IF_ERROR(b.FillRandom(x, 7, 1.0f));
  RETURN_IF_ERROR(b.FillRandom(w, 8, 1.0f));
  std::vector<double> ms;
  for (int i = 0; i < 12; ++i) {
    RETURN_IF_ERROR(timer.Start());
    RETURN_IF_ERROR(b.Linear(x, w, y));
    ASSIGN_OR_RETURN(const double timed_ms, timer.StopMs());
    ms.push_back(timed_ms);
  }
  ms.erase(ms.begin(), ms.begin() + 2);
  const double mm_flops = 2.0 * n * n * n / (Median(ms) * 1e-3);
  b.Free(x);
  b.Free(w);
  b.Free(y);
  return mm_flops;
}

}  // namespace dsinfer
