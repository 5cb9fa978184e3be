#include "offload/host_memory.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::StatusOr<void*> PageableHostMemory::Allocate(size_t bytes) {
  const size_t rounded = (bytes + 255) / 256 * 256;
  void* ptr = std::aligned_alloc(256, rounded == 0 ? 256 : rounded);
  if (ptr == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes of host memory"));
  }
  std::memset(ptr, 0, rounded);
  return ptr;
}

void PageableHostMemory::Free(void* ptr) { std::free(ptr); }

}  // namespace dsinfer
