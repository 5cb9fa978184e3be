// The operands of one LaunchPrefillAttention call as its tensor-core bodies take them
// (prefill_attention_mma.h, prefill_attention_wgmma.h; launched by prefill_launch.cuh).
#ifndef DSINFER_KERNELS_CUDA_PREFILL_ARGS_H_
#define DSINFER_KERNELS_CUDA_PREFILL_ARGS_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/cuda_kernels.h"

namespace dsinfer {
namespace cuda {

struct PrefillArgs {
  const void* q;
  int64_t q_stride;
  CudaBatchRows rows;
  const int32_t* tiles;
  int64_t num_tiles;
  int heads_q, heads_kv;
  float scale;
  CudaPagedKv kv;
  void* out;
  int64_t out_stride;
  cudaStream_t stream;
};

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PREFILL_ARGS_H_
