// LaunchInfo: what the CUDA launchers size their grids by, cached per process.
#ifndef DSINFER_KERNELS_CUDA_LAUNCH_INFO_H_
#define DSINFER_KERNELS_CUDA_LAUNCH_INFO_H_

#include <cstddef>

#include "absl/status/statusor.h"

namespace dsinfer {
namespace cuda {

// What the launchers size their grids by, for the current device and one kernel: queried once
// per (device, kernel, threads, dynamic shared memory) and cached for the process, as these
// driver queries took microseconds on every launch (every layer of every decode step). A null
// kernel gives the device's attributes only; threads 0 skips the occupancy query.
struct LaunchInfo {
  int sms = 0;             // multiprocessors
  int smem_optin = 0;      // shared memory a block may opt in to (bytes)
  int cc_major = 0;        // compute capability
  int cc_minor = 0;
  size_t static_smem = 0;  // the kernel's static shared memory (bytes)
  int blocks_per_sm = 0;   // resident blocks of the kernel at (threads, dynamic shared memory)
};

absl::StatusOr<LaunchInfo> CachedLaunchInfo(const void* kernel, int threads, size_t dynamic_smem);

// The largest thread-block cluster `kernel` may launch with, at `threads` threads and
// dynamic_smem bytes of dynamic shared memory a block, up to `most` (sizes over 8 are
// non-portable: the kernel is opted in to them here, with its dynamic shared memory limit
// raised to dynamic_smem). Cached per (device, kernel, threads, dynamic_smem, most).
absl::StatusOr<int> MaxClusterBlocks(const void* kernel, int threads, size_t dynamic_smem,
                                     int most);

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_LAUNCH_INFO_H_
