// The benchmarks' device timer: two CUDA events recorded on one stream around the timed work,
// every CUDA call checked (dsinfer-bench and dsinfer-attention-bench).
#ifndef DSINFER_ENGINE_CUDA_BENCH_DEVICE_TIMER_H_
#define DSINFER_ENGINE_CUDA_BENCH_DEVICE_TIMER_H_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda_check.h"

namespace dsinfer {

class DeviceTimer {
 public:
  explicit DeviceTimer(cudaStream_t stream) : stream_(stream) {}
  ~DeviceTimer() {
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stop_ != nullptr) cudaEventDestroy(stop_);
  }
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  // Records the start on the stream (the events are created at the first call).
  absl::Status Start() {
    if (start_ == nullptr) {
      cudaEvent_t start = nullptr, stop = nullptr;
      CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
      const cudaError_t made = cudaEventCreate(&stop);
      if (made != cudaSuccess) cudaEventDestroy(start);
      CUDA_RETURN_IF_ERROR(made);
      start_ = start;
      stop_ = stop;
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(start_, stream_));
    return absl::OkStatus();
  }

  // Records the stop, waits for it, and returns the milliseconds since the last Start.
  absl::StatusOr<double> StopMs() {
    if (start_ == nullptr) return absl::FailedPreconditionError("DeviceTimer: StopMs before Start");
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop_, stream_));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop_));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start_, stop_));
    return static_cast<double>(ms);
  }

 private:
  cudaStream_t stream_;
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_DEVICE_TIMER_H_
