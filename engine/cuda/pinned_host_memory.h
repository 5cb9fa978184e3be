// Pinned, device-mapped host memory behind the HostMemory interface: where the KV pool lives
// in the CUDA backend's offload modes (docs/offload.md). Each allocation is page-locked
// (cudaHostAlloc, Mapped | Portable), so kernels read it over PCIe without a staging copy
// (zero-copy) and async copies from it run at full DMA speed. Kernels must use the device
// address cudaHostGetDevicePointer returns: with unified addressing it equals the host
// address, but nothing here assumes so — DevicePointer translates any address inside an
// allocation.
//
// Page size: with PinnedPages::kHuge, allocations of 64 MiB and more are instead anonymous
// mappings advised to transparent huge pages (madvise MADV_HUGEPAGE, 2 MiB aligned) and then
// registered (cudaHostRegister, Mapped | Portable): a zero-copy gather scattered over a 256K
// context's layer (1 GiB of K/V) otherwise walks 4 KiB pages (dsinfer-offload-bench measures
// both). Where the kernel gives no huge pages, or registration fails, the allocation falls
// back to cudaHostAlloc.
//
// Thread-safe (a mutex guards the allocation map): the pool is allocated on one thread but a
// test may translate addresses from another.
#ifndef DSINFER_ENGINE_CUDA_PINNED_HOST_MEMORY_H_
#define DSINFER_ENGINE_CUDA_PINNED_HOST_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "absl/status/statusor.h"
#include "offload/host_memory.h"

namespace dsinfer {

enum class PinnedPages { kDriver, kHuge };

class PinnedHostMemory final : public HostMemory {
 public:
  // `zero_fill`: clear each allocation (the pool's contract with PageableHostMemory). A
  // benchmark that overwrites the whole pool may skip it (32 GiB take seconds to clear).
  explicit PinnedHostMemory(bool zero_fill = true, PinnedPages pages = PinnedPages::kHuge)
      : zero_fill_(zero_fill), pages_(pages) {}
  ~PinnedHostMemory() override;
  PinnedHostMemory(const PinnedHostMemory&) = delete;
  PinnedHostMemory& operator=(const PinnedHostMemory&) = delete;

  // RESOURCE_EXHAUSTED naming the bytes when the host cannot pin that much.
  absl::StatusOr<void*> Allocate(size_t bytes) override;
  void Free(void* ptr) override;

  // The device address of host address `host` when it lies inside one of this allocator's
  // blocks; `host` itself otherwise (device memory passes through unchanged).
  void* DevicePointer(const void* host) const;
  // Whether `host` lies inside one of this allocator's blocks.
  bool Contains(const void* host) const;
  // Bytes currently pinned by this allocator; of them, in registered huge-page mappings.
  size_t bytes_pinned() const;
  size_t bytes_registered() const;

 private:
  struct Block {
    size_t bytes = 0;
    char* device = nullptr;
    void* mapping = nullptr;  // registered mmap (kHuge): unregister and unmap these bytes
    size_t mapping_bytes = 0;
  };
  // A 2 MiB-aligned, huge-page-advised, registered mapping of `bytes`, or nullptr (nothing
  // left allocated) when any step fails.
  void* AllocateRegistered(size_t bytes, Block& block);
  static void Release(void* base, const Block& block);
  // The block containing `host`, or nullptr. Caller holds mu_.
  const std::pair<const uintptr_t, Block>* Find(const void* host) const;

  const bool zero_fill_;
  const PinnedPages pages_;
  mutable std::mutex mu_;
  std::map<uintptr_t, Block> blocks_;  // host base → block
  size_t bytes_ = 0;
  size_t registered_ = 0;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_PINNED_HOST_MEMORY_H_
