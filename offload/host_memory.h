// Where the KV tier's host memory comes from. The CPU backend uses ordinary pageable memory;
// the CUDA offload tier supplies pinned, device-mapped memory through the same interface, so
// the pool logic is one piece of code tested in CI.
#ifndef DSINFER_OFFLOAD_HOST_MEMORY_H_
#define DSINFER_OFFLOAD_HOST_MEMORY_H_

#include <cstddef>

#include "absl/status/statusor.h"

namespace dsinfer {

class HostMemory {
 public:
  virtual ~HostMemory() = default;
  // `bytes` of memory aligned to at least 256 bytes; RESOURCE_EXHAUSTED when unavailable.
  virtual absl::StatusOr<void*> Allocate(size_t bytes) = 0;
  virtual void Free(void* ptr) = 0;
};

// Ordinary (pageable) memory, zero-filled on allocation.
class PageableHostMemory final : public HostMemory {
 public:
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* ptr) override;
};

}  // namespace dsinfer

#endif  // DSINFER_OFFLOAD_HOST_MEMORY_H_
