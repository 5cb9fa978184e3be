// A per-layer timeline of one decode step for dsinfer-offload-bench (--timeline): GPU events
// recorded on the backend stream and on the offload copy stream at marked points of the
// step, beside the host's clock when it reached each mark. The GPU time says when the stream
// got there (its earlier work done); the host time says when the work was issued — together
// they show whether the gathers of the copy stream overlap the layers' compute, and whether
// the host is what the GPU waits for. Benchmark-only; every CUDA call is checked.
#ifndef DSINFER_ENGINE_CUDA_BENCH_STEP_TIMELINE_H_
#define DSINFER_ENGINE_CUDA_BENCH_STEP_TIMELINE_H_

#include <cuda_runtime.h>

#include <chrono>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/cuda_check.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

class StepTimeline {
 public:
  StepTimeline() = default;
  StepTimeline(const StepTimeline&) = delete;
  StepTimeline& operator=(const StepTimeline&) = delete;
  ~StepTimeline() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  // Starts a step: the origin of both clocks, recorded on `stream`.
  absl::Status Begin(cudaStream_t stream) {
    marks_.clear();
    used_ = 0;
    host_origin_ = Clock::now();
    return Mark("begin", -1, stream);
  }

  // Records `what` (for `layer`) on `stream` now.
  absl::Status Mark(const char* what, int layer, cudaStream_t stream) {
    if (used_ == events_.size()) {
      cudaEvent_t e;
      CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
      events_.push_back(e);
    }
    CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[used_], stream));
    marks_.push_back(
        {what, layer, used_, std::chrono::duration<double, std::milli>(Clock::now() - host_origin_)
                                 .count()});
    ++used_;
    return absl::OkStatus();
  }

  // After the step's work is done: every mark as {what, layer, gpu_ms, host_ms} from Begin.
  absl::StatusOr<nlohmann::json> Read() const {
    nlohmann::json out = nlohmann::json::array();
    for (const MarkRecord& m : marks_) {
      float ms = 0.0f;
      CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events_[0], events_[m.event]));
      out.push_back({{"what", m.what}, {"layer", m.layer}, {"gpu_ms", ms}, {"host_ms", m.host_ms}});
    }
    return out;
  }

 private:
  using Clock = std::chrono::steady_clock;
  struct MarkRecord {
    std::string what;
    int layer;
    size_t event;
    double host_ms;
  };
  std::vector<cudaEvent_t> events_;
  size_t used_ = 0;
  std::vector<MarkRecord> marks_;
  Clock::time_point host_origin_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_STEP_TIMELINE_H_
