#include "engine/cuda/packed_upload.h"

#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<const char*> PackedUpload::Upload(StreamBuffer& device, cudaStream_t stream) {
  RETURN_IF_ERROR(device.Grow(staging_.size(), stream));
  if (!staging_.empty()) {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device.ptr, staging_.data(), staging_.size(),
                                         cudaMemcpyHostToDevice, stream));
  }
  return static_cast<const char*>(device.ptr);
}

}  // namespace dsinfer
