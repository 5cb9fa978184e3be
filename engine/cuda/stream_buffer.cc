// StreamBuffer (stream_buffer.h): grow-only, stream-ordered device scratch.
#include "engine/cuda/stream_buffer.h"

#include <algorithm>

#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status StreamBuffer::Grow(size_t need, cudaStream_t stream) {
  if (need <= bytes && ptr != nullptr) return absl::OkStatus();
  const size_t grown = std::max<size_t>({need, bytes * 2, 256});
  if (ptr != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(ptr, stream));
  ptr = nullptr;
  bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(&ptr, grown, stream));
  bytes = grown;
  return absl::OkStatus();
}

absl::Status StreamBuffer::GrowZeroed(size_t need, cudaStream_t stream) {
  const void* before = ptr;
  RETURN_IF_ERROR(Grow(need, stream));
  if (ptr != before) CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ptr, 0, bytes, stream));
  return absl::OkStatus();
}

}  // namespace dsinfer
