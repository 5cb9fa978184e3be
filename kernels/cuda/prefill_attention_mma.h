// The tensor-core prefill attention body behind LaunchPrefillAttention (kMma): internal to
// kernels/cuda (attention.cu dispatches to it); callers use cuda_kernels.h.
#ifndef DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_MMA_H_
#define DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_MMA_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/prefill_args.h"
#include "kernels/dtype.h"

namespace dsinfer {

// Whether the tensor-core kernel can take these operands: bf16/fp16, head_dim 64 or 128,
// 16-byte aligned q rows, K/V rows and 4-byte aligned output pairs (q by 16-byte cp.async, K/V
// rows by bulk copies, which read device or mapped host memory alike; 2-element stores), and a
// positive finite scale (it takes each row's maximum before scaling). The launcher falls back
// to the CUDA-core kernel otherwise.
bool PrefillAttentionMmaSupports(DType dtype, const void* q, int64_t q_stride, int head_dim,
                                 float scale, const CudaPagedKv& kv, const void* out,
                                 int64_t out_stride);

// Launches the kernel on operands it supports (shapes already checked by
// LaunchPrefillAttention; tiles of kPrefillTileRowsMma rows).
absl::Status LaunchPrefillAttentionMma(DType dtype, int head_dim, const cuda::PrefillArgs& args);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PREFILL_ATTENTION_MMA_H_
