// The warpgroup-MMA prefill attention body behind LaunchPrefillAttention (kWgmma, Hopper
// sm_90 only): internal to kernels/cuda (attention.cu dispatches to it); callers use
// cuda_kernels.h. Built for compute_90a alone (wgmma has no portable form), in its own library.
#ifndef DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_
#define DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/prefill_args.h"
#include "kernels/dtype.h"

namespace dsinfer {

// Whether `device` runs the wgmma kernel: compute capability 9.0 (its code is sm_90a). The
// operands it takes are kMma's (PrefillAttentionMmaSupports); LaunchPrefillAttention falls back
// to kMma otherwise.
inline bool RunsWgmma(const cuda::LaunchInfo& device) {
  return device.cc_major == 9 && device.cc_minor == 0;
}

// Launches the kernel: operands PrefillAttentionMmaSupports takes, on a device RunsWgmma
// accepts; shapes already checked by LaunchPrefillAttention; tiles of kPrefillTileRowsMma rows.
absl::Status LaunchPrefillAttentionWgmma(DType dtype, int head_dim, const cuda::PrefillArgs& args);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_
