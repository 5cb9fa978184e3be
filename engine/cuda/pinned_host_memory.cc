#include "engine/cuda/pinned_host_memory.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace dsinfer {

PinnedHostMemory::~PinnedHostMemory() {
  for (auto& [base, block] : blocks_) cudaFreeHost(reinterpret_cast<void*>(base));
}

absl::StatusOr<void*> PinnedHostMemory::Allocate(size_t bytes) {
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.find(reinterpret_cast<uintptr_t>(ptr));
    if (it == blocks_.end()) return;  // not ours
    bytes_ -= it->second.bytes;
    blocks_.erase(it);
  }
  cudaFreeHost(ptr);
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

}  // namespace dsinfer
