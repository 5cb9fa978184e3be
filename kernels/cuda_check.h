// The one CUDA-call macro: turns a failing cudaError_t (or cublasStatus_t) into an
// absl::Status that names the expression and file:line, and returns it from the enclosing
// function. Header-only so that both nvcc- and g++-compiled files can use it; it needs only the
// CUDA runtime headers, never a kernel.
#ifndef DSINFER_KERNELS_CUDA_CHECK_H_
#define DSINFER_KERNELS_CUDA_CHECK_H_

#include <cuda_runtime.h>

#include <string>

#include "absl/status/status.h"

namespace dsinfer {

inline absl::Status CudaErrorToStatus(cudaError_t error, const char* expr, const char* file,
                                      int line) {
  if (error == cudaSuccess) return absl::OkStatus();
  const std::string msg = std::string(expr) + " failed at " + file + ":" + std::to_string(line) +
                          ": " + cudaGetErrorName(error) + " (" + cudaGetErrorString(error) + ")";
  if (error == cudaErrorMemoryAllocation) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

}  // namespace dsinfer

// Evaluates a cudaError_t expression; returns a Status from the enclosing function on failure.
#define CUDA_RETURN_IF_ERROR(expr)                                                          \
  do {                                                                                      \
    const cudaError_t dsinfer_cuda_err_ = (expr);                                           \
    if (dsinfer_cuda_err_ != cudaSuccess) {                                                 \
      return ::dsinfer::CudaErrorToStatus(dsinfer_cuda_err_, #expr, __FILE__, __LINE__);    \
    }                                                                                       \
  } while (0)

// After a kernel launch: the launch's own error (bad configuration, missing image).
#define CUDA_RETURN_IF_LAUNCH_ERROR() CUDA_RETURN_IF_ERROR(cudaGetLastError())

#endif  // DSINFER_KERNELS_CUDA_CHECK_H_
