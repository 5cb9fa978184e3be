// One host-to-device upload made of several arrays (a step's descriptors: label views, sequence
// descriptors, positions, ...): each part starts 16-byte aligned in a pageable staging vector,
// and the whole is copied with one cudaMemcpyAsync into a stream-ordered device buffer. The
// copy from pageable memory is staged before the call returns, so the staging vector may be
// reused at once (the owners keep one per path, to avoid allocating every step).
#ifndef DSINFER_ENGINE_CUDA_PACKED_UPLOAD_H_
#define DSINFER_ENGINE_CUDA_PACKED_UPLOAD_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/cuda/stream_buffer.h"

namespace dsinfer {

class PackedUpload {
 public:
  // Starts a packing into `staging`, which is cleared.
  explicit PackedUpload(std::vector<char>& staging) : staging_(staging) { staging_.clear(); }

  // Appends `values` as the next part; returns its byte offset in the upload (16-byte aligned).
  template <typename T>
  size_t Add(absl::Span<const T> values) {
    const size_t offset = staging_.size();
    const size_t bytes = values.size() * sizeof(T);
    staging_.resize(offset + (bytes + 15) / 16 * 16, 0);
    if (bytes > 0) std::memcpy(staging_.data() + offset, values.data(), bytes);
    return offset;
  }

  // Copies the parts into `device` (grown on `stream`); returns the device address of offset 0.
  absl::StatusOr<const char*> Upload(StreamBuffer& device, cudaStream_t stream);

 private:
  std::vector<char>& staging_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_PACKED_UPLOAD_H_
