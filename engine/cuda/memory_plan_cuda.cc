// PlanCudaMemory: measures the device (cudaMemGetInfo, after selecting it, so the CUDA
// context's own memory is already taken) and the host (MemAvailable), then runs the pure
// arithmetic of memory_plan.cc. The host is measured only when the plan pins a pool there.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/memory_plan.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<CudaMemoryPlan> PlanCudaMemory(const ModelConfig& config,
                                              const MemoryPlanRequest& request, int device) {
  if (!CudaDeviceAvailable()) return absl::UnavailableError("no CUDA device is available");
  MemoryAvailable available;
  size_t free_b = 0, total_b = 0;
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  CUDA_RETURN_IF_ERROR(cudaMemGetInfo(&free_b, &total_b));
  available.device_free_bytes = static_cast<int64_t>(free_b);
  available.device_total_bytes = static_cast<int64_t>(total_b);
  if (request.kv_mode != KvMode::kGpu) {
    ASSIGN_OR_RETURN(available.host_available_bytes, HostAvailableBytes());
  }
  return PlanMemory(config, request, available, absl::StrCat("GPU ", device));
}

}  // namespace dsinfer
