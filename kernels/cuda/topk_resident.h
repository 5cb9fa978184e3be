// kResident top-k (topk_resident.cu): one 1024-thread block per (sequence, KV head) that reads
// the pair's scores once into shared memory and selects there. LaunchTopKSelect runs it where
// ResolveTopKAlgo picks TopKAlgo::kResident: rows that TopKResidentFits.
#ifndef DSINFER_KERNELS_CUDA_TOPK_RESIDENT_H_
#define DSINFER_KERNELS_CUDA_TOPK_RESIDENT_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// Whether a row of `tokens` scores fits one block's shared memory (~47K tokens).
bool TopKResidentFits(int64_t tokens);

// LaunchTopKSelect's contract (double_sparsity.cuh). Shared memory is sized for rows of
// score_stride tokens, up to what fits; a longer row (a graph captured for shorter rows and
// replayed after they grew) runs the one-block passes over the scores in memory instead.
absl::Status LaunchTopKResident(const uint16_t* scores, int64_t score_stride,
                                const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                int32_t* selected, int64_t sel_stride, int32_t* counts,
                                cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_RESIDENT_H_
