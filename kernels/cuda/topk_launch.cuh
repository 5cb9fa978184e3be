// The launch the one-block-per-pair top-k kernels share (topk_select.cu, topk_multi_block.cu):
// a grid of (KV head, sequence), launched chained (LaunchChained, dependent_launch.cuh).
#ifndef DSINFER_KERNELS_CUDA_TOPK_LAUNCH_CUH_
#define DSINFER_KERNELS_CUDA_TOPK_LAUNCH_CUH_

#include <cuda_runtime.h>

#include "absl/status/status.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace cuda {

// kernel with one block of `threads` per (KV head, sequence) and `smem` bytes of dynamic shared
// memory (opted in at each launch).
template <typename... Params, typename... Args>
absl::Status LaunchPerPair(void (*kernel)(Params...), int threads, size_t smem, int heads_kv,
                           int num_seqs, cudaStream_t stream, Args... args) {
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  CUDA_RETURN_IF_ERROR(
      LaunchChained(kernel, dim3(heads_kv, num_seqs), dim3(threads), smem, stream, args...));
  return absl::OkStatus();
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_LAUNCH_CUH_
