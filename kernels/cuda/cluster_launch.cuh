// Launching thread-block-cluster kernels (sm_90): one place for the launch configuration the
// cluster kernels share (the Double Sparsity top-k and fused scorer, the GPU sampler).
#ifndef DSINFER_KERNELS_CUDA_CLUSTER_LAUNCH_CUH_
#define DSINFER_KERNELS_CUDA_CLUSTER_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace cuda {

// Launches `kernel` on `grid` blocks of `threads`, in clusters of nb blocks along x, with `smem`
// bytes of dynamic shared memory: the kernel's limit is raised to it at every launch (a launch
// of the same kernel with more bytes may have raised it, or a query lowered it, since).
// dependent: with the programmatic-serialization attribute (dependent_launch.cuh's contract).
template <typename... Params, typename... Args>
absl::Status LaunchClusters(void (*kernel)(Params...), dim3 grid, int nb, int threads, int64_t smem,
                            bool dependent, cudaStream_t stream, Args... args) {
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = static_cast<unsigned>(nb);
  attrs[0].val.clusterDim.y = 1;
  attrs[0].val.clusterDim.z = 1;
  attrs[1] = DependentLaunchAttribute();
  cfg.attrs = attrs;
  cfg.numAttrs = dependent ? 2 : 1;
  CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, args...));
  return absl::OkStatus();
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_CLUSTER_LAUNCH_CUH_
