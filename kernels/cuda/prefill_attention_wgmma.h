// The warpgroup-MMA prefill attention body behind LaunchPrefillAttention (kWgmma, Hopper
// sm_90 only): internal to kernels/cuda (attention.cu dispatches to it); callers use
// cuda_kernels.h. Built for compute_90a alone (wgmma has no portable form), in its own library.
#ifndef DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_
#define DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"

namespace dsinfer {

// Whether the current device runs the wgmma kernel: a compute capability 9.0 GPU (its code is
// sm_90a). The operands it takes are kMma's (PrefillAttentionMmaSupports); the launcher falls
// back to kMma otherwise.
bool DeviceRunsWgmma();

// Launches the kernel: operands PrefillAttentionMmaSupports takes, on a device DeviceRunsWgmma
// accepts; shapes already checked by LaunchPrefillAttention; tiles of kPrefillTileRowsMma rows.
absl::Status LaunchPrefillAttentionWgmma(DType dtype, const void* q, int64_t q_stride,
                                         const CudaBatchRows& rows, const int32_t* tiles,
                                         int64_t num_tiles, int heads_q, int heads_kv, int head_dim,
                                         float scale, const CudaPagedKv& kv, void* out,
                                         int64_t out_stride, cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_WGMMA_H_
