// CachedLaunchInfo (launch_info.h): device and kernel attributes, queried once per key.
#include "kernels/cuda/launch_info.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace cuda {

absl::StatusOr<LaunchInfo> CachedLaunchInfo(const void* kernel, int threads, size_t dynamic_smem) {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  using Key = std::tuple<int, const void*, int, size_t>;
  // Never destroyed: launches may run during static destruction.
  static std::mutex* const mu = new std::mutex;
  static std::map<Key, LaunchInfo>* const cache = new std::map<Key, LaunchInfo>;
  const Key key{device, kernel, threads, dynamic_smem};
  {
    std::lock_guard<std::mutex> lock(*mu);
    const auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  // Queried outside the lock (two threads may both query a new key: the same answer).
  LaunchInfo info;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, device));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&info.cc_major, cudaDevAttrComputeCapabilityMajor, device));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&info.cc_minor, cudaDevAttrComputeCapabilityMinor, device));
  if (kernel != nullptr) {
    cudaFuncAttributes attr;
    CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&attr, kernel));
    info.static_smem = attr.sharedSizeBytes;
    if (threads > 0) {
      CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &info.blocks_per_sm, kernel, threads, dynamic_smem));
    }
  }
  std::lock_guard<std::mutex> lock(*mu);
  cache->emplace(key, info);
  return info;
}

absl::StatusOr<int> MaxClusterBlocks(const void* kernel, int threads, size_t dynamic_smem,
                                     int most) {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  using Key = std::tuple<int, const void*, int, size_t, int>;
  static std::mutex* const mu = new std::mutex;
  static std::map<Key, int>* const cache = new std::map<Key, int>;
  const Key key{device, kernel, threads, dynamic_smem, most};
  std::lock_guard<std::mutex> lock(*mu);
  if (const auto it = cache->find(key); it != cache->end()) return it->second;
  CUDA_RETURN_IF_ERROR(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(dynamic_smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(most), 1, 1);
  cfg.blockDim = dim3(static_cast<unsigned>(threads));
  cfg.dynamicSmemBytes = dynamic_smem;
  int fits = 0;
  CUDA_RETURN_IF_ERROR(cudaOccupancyMaxPotentialClusterSize(&fits, kernel, &cfg));
  fits = std::clamp(fits, 1, most);
  cache->emplace(key, fits);
  return fits;
}

}  // namespace cuda
}  // namespace dsinfer
