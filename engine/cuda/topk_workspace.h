// The workspace of one LaunchTopKSelect call, sized only where its kernel uses one.
#ifndef DSINFER_ENGINE_CUDA_TOPK_WORKSPACE_H_
#define DSINFER_ENGINE_CUDA_TOPK_WORKSPACE_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "engine/cuda/stream_buffer.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// The workspace to pass LaunchTopKSelect(algo) for num_seqs × heads_kv rows of score_stride
// on a GPU of `sms` SMs: `buffer` grown to TopKSelectWorkspaceBytes (zeroed when new; the
// kernels leave it zeroed) where `algo` resolves to the multi-block kernels, else null (no
// memory taken for the other kernels: at batch 32 and 32 KV heads the workspace would be
// ~235 MB).
absl::StatusOr<void*> TopKWorkspaceFor(StreamBuffer& buffer, TopKAlgo algo, int num_seqs,
                                       int heads_kv, int64_t score_stride, int sms,
                                       cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_TOPK_WORKSPACE_H_
