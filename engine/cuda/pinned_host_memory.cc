#include "engine/cuda/pinned_host_memory.h"

#include <cuda_runtime.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsinfer {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeFrom = size_t{64} << 20;  // smaller allocations stay cudaHostAlloc

}  // namespace

void PinnedHostMemory::Release(void* base, const Block& block) {
  if (block.mapping != nullptr) {
    cudaHostUnregister(base);
    munmap(block.mapping, block.mapping_bytes);
  } else {
    cudaFreeHost(base);
  }
}

PinnedHostMemory::~PinnedHostMemory() {
  for (auto& [base, block] : blocks_) Release(reinterpret_cast<void*>(base), block);
}

void* PinnedHostMemory::AllocateRegistered(size_t bytes, Block& block) {
  // Over-map by one huge page so that a 2 MiB-aligned start exists inside the mapping.
  const size_t map_bytes = bytes + kHugePage;
  void* map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return nullptr;
  const uintptr_t start = (reinterpret_cast<uintptr_t>(map) + kHugePage - 1) / kHugePage * kHugePage;
  void* host = reinterpret_cast<void*>(start);
  // Advice first, so that the pages registration faults in are huge ones. Anonymous memory
  // is zero-filled by the kernel: no clearing needed.
  if (madvise(host, bytes, MADV_HUGEPAGE) != 0 ||
      cudaHostRegister(host, bytes, cudaHostRegisterMapped | cudaHostRegisterPortable) !=
          cudaSuccess) {
    cudaGetLastError();
    munmap(map, map_bytes);
    return nullptr;
  }
  void* device = nullptr;
  if (cudaHostGetDevicePointer(&device, host, 0) != cudaSuccess) {
    cudaGetLastError();
    cudaHostUnregister(host);
    munmap(map, map_bytes);
    return nullptr;
  }
  block.bytes = bytes;
  block.device = static_cast<char*>(device);
  block.mapping = map;
  block.mapping_bytes = map_bytes;
  return host;
}

absl::StatusOr<void*> PinnedHostMemory::Allocate(size_t bytes) {
  if (pages_ == PinnedPages::kHuge && bytes >= kHugeFrom) {
    const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    Block block;
    if (void* host = AllocateRegistered(rounded, block); host != nullptr) {
      std::lock_guard<std::mutex> lock(mu_);
      blocks_[reinterpret_cast<uintptr_t>(host)] = block;
      bytes_ += rounded;
      registered_ += rounded;
      return host;
    }
    // No huge pages or no registration: the driver's pinned allocation below.
  }
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* host = nullptr;
  const cudaError_t err =
      cudaHostAlloc(&host, rounded, cudaHostAllocMapped | cudaHostAllocPortable);
  if (err != cudaSuccess) {
    cudaGetLastError();  // do not leave the failure for the next launch check
    return absl::ResourceExhaustedError(absl::StrCat(
        "cannot pin ", rounded, " bytes (", rounded >> 20,
        " MiB) of mapped host memory for the offload KV pool: ", cudaGetErrorString(err),
        ". Lower --kv_pool_tokens (or raise the locked-memory limit, ulimit -l)"));
  }
  void* device = nullptr;
  const cudaError_t map_err = cudaHostGetDevicePointer(&device, host, 0);
  if (map_err != cudaSuccess) {
    cudaGetLastError();
    cudaFreeHost(host);
    return absl::InternalError(absl::StrCat("cudaHostGetDevicePointer of a mapped allocation: ",
                                            cudaGetErrorString(map_err)));
  }
  if (zero_fill_) std::memset(host, 0, rounded);
  std::lock_guard<std::mutex> lock(mu_);
  blocks_[reinterpret_cast<uintptr_t>(host)] = Block{rounded, static_cast<char*>(device)};
  bytes_ += rounded;
  return host;
}

void PinnedHostMemory::Free(void* ptr) {
  if (ptr == nullptr) return;
  Block block;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == blocks_.end()) return;  // not ours
    block = it->second;
    bytes_ -= block.bytes;
    if (block.mapping != nullptr) registered_ -= block.bytes;
    blocks_.erase(it);
  }
  Release(ptr, block);
}

const std::pair<const uintptr_t, PinnedHostMemory::Block>* PinnedHostMemory::Find(
    const void* host) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(host);
  auto it = blocks_.upper_bound(a);
  if (it == blocks_.begin()) return nullptr;
  --it;
  if (a >= it->first + it->second.bytes) return nullptr;
  return &*it;
}

void* PinnedHostMemory::DevicePointer(const void* host) const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto* block = Find(host);
  if (block == nullptr) return const_cast<void*>(host);
  return block->second.device + (reinterpret_cast<uintptr_t>(host) - block->first);
}

bool PinnedHostMemory::Contains(const void* host) const {
  std::lock_guard<std::mutex> lock(mu_);
  return Find(host) != nullptr;
}

size_t PinnedHostMemory::bytes_pinned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bytes_;
}

size_t PinnedHostMemory::bytes_registered() const {
  std::lock_guard<std::mutex> lock(mu_);
  return registered_;
}

}  // namespace dsinfer
