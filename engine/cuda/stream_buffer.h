// A stream-ordered, grow-only device buffer: the scratch of the CUDA backend's Double Sparsity
// and offload paths (step descriptors, scores, selections, workspaces).
//
// Growth frees the old allocation and allocates the new one on the stream that uses the
// buffer (cudaFreeAsync / cudaMallocAsync), so work queued earlier on that stream still reads
// the old memory; the contents are not kept. Sizes at least double and never go below 256
// bytes, so a buffer that tracks a growing context reallocates O(log) times. The owner frees
// `ptr` (cudaFree) when it is done with the stream.
#ifndef DSINFER_ENGINE_CUDA_STREAM_BUFFER_H_
#define DSINFER_ENGINE_CUDA_STREAM_BUFFER_H_

#include <cuda_runtime.h>

#include <cstddef>

#include "absl/status/status.h"

namespace dsinfer {

struct StreamBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;

  // Makes the buffer hold at least `need` bytes, reallocating on `stream` when it is smaller
  // (contents lost). On failure the buffer is empty (ptr null, bytes 0).
  absl::Status Grow(size_t need, cudaStream_t stream);

  // As Grow, and a new allocation is zeroed on `stream` (for workspaces whose users leave them
  // zeroed, as LaunchTopKSelect's).
  absl::Status GrowZeroed(size_t need, cudaStream_t stream);
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_STREAM_BUFFER_H_
