// kMultiBlock top-k (topk_multi_block.cu): kStriped's two reads spread over many blocks per
// (sequence, KV head), three kernels meeting in a workspace (TopKSelectWorkspaceBytes).
// LaunchTopKSelect runs it where the caller names TopKAlgo::kMultiBlock.
#ifndef DSINFER_KERNELS_CUDA_TOPK_MULTI_BLOCK_H_
#define DSINFER_KERNELS_CUDA_TOPK_MULTI_BLOCK_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// LaunchTopKSelect's contract (double_sparsity.cuh), with its `workspace` non-null (the
// contract of TopKSelectWorkspaceBytes there) and the device's SM count, which sizes the
// slices.
absl::Status LaunchTopKMultiBlock(const uint16_t* scores, int64_t score_stride,
                                  const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                  int32_t* selected, int64_t sel_stride, int32_t* counts,
                                  cudaStream_t stream, void* workspace, int sms);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_MULTI_BLOCK_H_
