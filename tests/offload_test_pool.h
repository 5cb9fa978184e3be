// A small fp32 KV pool in ordinary memory with every layer's K and V filled with fresh random
// values, for the offload tier's CPU tests (tests/unit) and its twin tests (tests/gpu).
#ifndef DSINFER_TESTS_OFFLOAD_TEST_POOL_H_
#define DSINFER_TESTS_OFFLOAD_TEST_POOL_H_

#include <cstdint>
#include <memory>
#include <random>

#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {

// `layers` × `kv_heads` × `head_dim` fp32 rows in blocks of 4 tokens, 64 blocks; nullptr (and
// a gtest failure at the caller's ASSERT) when the pool cannot be made.
template <typename Rng>
std::unique_ptr<KvBlockPool> RandomF32Pool(int layers, int kv_heads, int head_dim,
                                           HostMemory& memory, Rng& rng) {
  KvPoolOptions po;
  po.layers = layers;
  po.kv_heads = kv_heads;
  po.head_dim = head_dim;
  po.block_tokens = 4;
  po.num_blocks = 64;
  auto pool = KvBlockPool::Create(po, memory);
  if (!pool.ok()) return nullptr;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const int64_t floats = po.num_blocks * po.block_tokens * kv_heads * head_dim;
  for (int l = 0; l < layers; ++l) {
    for (void* base : {(*pool)->KBase(l), (*pool)->VBase(l)}) {
      float* f = static_cast<float*>(base);
      for (int64_t i = 0; i < floats; ++i) f[i] = u(rng);
    }
  }
  return std::move(*pool);
}

}  // namespace dsinfer

#endif  // DSINFER_TESTS_OFFLOAD_TEST_POOL_H_
