// Where a token's K (or V) row lives in the paged pool (CudaPagedKv), for the attention kernels
// that read it through a sequence's block table.
#ifndef DSINFER_KERNELS_CUDA_PAGED_KV_CUH_
#define DSINFER_KERNELS_CUDA_PAGED_KV_CUH_

#include <cstdint>

#include "kernels/cuda/cuda_kernels.h"

namespace dsinfer {
namespace cuda {

// Element offset of token t's row of KV head kvh (hd elements) in kv.k / kv.v; `table` is the
// sequence's block table.
__device__ __forceinline__ int64_t KvOffset(const CudaPagedKv& kv, const int32_t* table, int t,
                                            int kvh, int hd) {
  const int64_t block = table[t / kv.block_tokens];
  return ((block * kv.block_tokens + t % kv.block_tokens) * kv.kv_heads + kvh) *
         static_cast<int64_t>(hd);
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PAGED_KV_CUH_
