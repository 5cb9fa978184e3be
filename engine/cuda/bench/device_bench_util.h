// What the operator benchmarks share (dsinfer-attention-bench, dsinfer-sampling-bench): a
// device allocation freed on scope exit, the mean time of a launch, and the D2D copy rate their
// floors divide by.
#ifndef DSINFER_ENGINE_CUDA_BENCH_DEVICE_BENCH_UTIL_H_
#define DSINFER_ENGINE_CUDA_BENCH_DEVICE_BENCH_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/cuda/bench/device_timer.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

struct DevMem {
  void* ptr = nullptr;
  DevMem() = default;
  DevMem(const DevMem&) = delete;
  DevMem& operator=(const DevMem&) = delete;
  ~DevMem() { cudaFree(ptr); }
  absl::Status Alloc(size_t bytes) {
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr, std::max<size_t>(bytes, 16)));
    return absl::OkStatus();
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

// Times `fn` (enqueues one step on `stream`) over `iters` steps after one warm-up; µs per step.
template <typename Fn>
absl::StatusOr<double> TimeUs(cudaStream_t stream, int iters, Fn fn) {
  RETURN_IF_ERROR(fn());
  DeviceTimer timer(stream);
  RETURN_IF_ERROR(timer.Start());
  for (int i = 0; i < iters; ++i) RETURN_IF_ERROR(fn());
  ASSIGN_OR_RETURN(const double ms, timer.StopMs());
  return 1000.0 * ms / iters;
}

// The HBM ceiling: bytes read + written per second by a device-to-device copy of `bytes`
// (10 timed copies).
inline absl::StatusOr<double> CopyRateBps(cudaStream_t stream, size_t bytes) {
  DevMem a, b;
  RETURN_IF_ERROR(a.Alloc(bytes));
  RETURN_IF_ERROR(b.Alloc(bytes));
  ASSIGN_OR_RETURN(const double us, TimeUs(stream, 10, [&]() -> absl::Status {
                     CUDA_RETURN_IF_ERROR(
                         cudaMemcpyAsync(b.ptr, a.ptr, bytes, cudaMemcpyDeviceToDevice, stream));
                     return absl::OkStatus();
                   }));
  return 2.0 * static_cast<double>(bytes) / (us * 1e-6);
}

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_DEVICE_BENCH_UTIL_H_
