// Proves the KV block pool's exact accounting: reserve grows a sequence's block table only by
// the blocks it needs, exhaustion returns RESOURCE_EXHAUSTED and changes nothing, release
// returns every block (and the pool ends at zero in use after a random workload), block
// tables never share a block, BytesPerBlock and the layer layout follow the documented shape,
// memory is freed exactly once, and unknown sequence ids are handled as documented.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"

namespace dsinfer {
namespace {

KvPoolOptions SmallOptions() {
  KvPoolOptions o;
  o.layers = 3;
  o.kv_heads = 2;
  o.head_dim = 8;
  o.block_tokens = 4;
  o.num_blocks = 10;
  o.dtype = DType::kF32;
  return o;
}

// Counts allocations and frees; can be told to fail.
class CountingMemory final : public HostMemory {
 public:
  absl::StatusOr<void*> Allocate(size_t bytes) override {
    if (fail) return absl::ResourceExhaustedError("no memory (test)");
    ++allocations;
    last_bytes = bytes;
    return std::calloc(bytes, 1);
  }
  void Free(void* ptr) override {
    ++frees;
    std::free(ptr);
  }
  bool fail = false;
  int allocations = 0, frees = 0;
  size_t last_bytes = 0;
};

TEST(KvPoolOptionsTest, BytesPerBlock) {
  KvPoolOptions o = SmallOptions();
  // K and V, 3 layers, 4 tokens, 2 heads, 8 dims, 4 bytes.
  EXPECT_EQ(o.BytesPerBlock(), 2 * 3 * 4 * 2 * 8 * 4);
  o.dtype = DType::kBF16;
  EXPECT_EQ(o.BytesPerBlock(), 2 * 3 * 4 * 2 * 8 * 2);
  // Llama-2-7B at 16-token blocks in fp16: 2 * 32 * 16 * 32 * 128 * 2 = 8 MiB.
  KvPoolOptions big;
  big.layers = 32;
  big.kv_heads = 32;
  big.head_dim = 128;
  big.block_tokens = 16;
  big.num_blocks = 1;
  big.dtype = DType::kF16;
  EXPECT_EQ(big.BytesPerBlock(), int64_t{8} << 20);
  // Large shapes do not overflow 32-bit arithmetic.
  big.layers = 80;
  big.kv_heads = 64;
  big.block_tokens = 4096;
  big.dtype = DType::kF32;
  EXPECT_EQ(big.BytesPerBlock(), int64_t{2} * 80 * 4096 * 64 * 128 * 4);
}

TEST(KvPoolOptionsTest, ValidateRefusesBadFields) {
  EXPECT_TRUE(SmallOptions().Validate().ok());
  for (int field = 0; field < 5; ++field) {
    KvPoolOptions o = SmallOptions();
    switch (field) {
      case 0: o.layers = 0; break;
      case 1: o.kv_heads = -1; break;
      case 2: o.head_dim = 0; break;
      case 3: o.block_tokens = 0; break;
      case 4: o.num_blocks = 0; break;
    }
    EXPECT_EQ(o.Validate().code(), absl::StatusCode::kInvalidArgument) << field;
  }
  KvPoolOptions o = SmallOptions();
  o.dtype = DType::kI32;
  EXPECT_FALSE(o.Validate().ok());
  o = SmallOptions();
  o.num_blocks = int64_t{1} << 32;
  EXPECT_FALSE(o.Validate().ok());
}

TEST(KvBlockPoolTest, CreateAllocatesOnceAndFreesOnce) {
  CountingMemory memory;
  {
    auto pool = KvBlockPool::Create(SmallOptions(), memory);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ(memory.allocations, 1);
    EXPECT_EQ(memory.last_bytes, static_cast<size_t>(SmallOptions().BytesPerBlock() * 10));
    EXPECT_EQ((*pool)->free_blocks(), 10);
    EXPECT_EQ((*pool)->blocks_in_use(), 0);
    EXPECT_EQ((*pool)->bytes_in_use(), 0);
  }
  EXPECT_EQ(memory.frees, 1);

  memory.fail = true;
  auto pool = KvBlockPool::Create(SmallOptions(), memory);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), absl::StatusCode::kResourceExhausted);
  KvPoolOptions bad = SmallOptions();
  bad.layers = 0;
  memory.fail = false;
  EXPECT_EQ(KvBlockPool::Create(bad, memory).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvBlockPoolTest, ReserveGrowsByBlocksNeeded) {
  PageableHostMemory memory;
  auto pool_or = KvBlockPool::Create(SmallOptions(), memory);
  ASSERT_TRUE(pool_or.ok());
  KvBlockPool& pool = **pool_or;
  const int64_t bpb = SmallOptions().BytesPerBlock();
  EXPECT_EQ(pool.BlocksFor(0), 0);
  EXPECT_EQ(pool.BlocksFor(1), 1);
  EXPECT_EQ(pool.BlocksFor(4), 1);
  EXPECT_EQ(pool.BlocksFor(5), 2);

  const auto a = pool.AddSequence();
  const auto b = pool.AddSequence();
  EXPECT_NE(a, b);
  EXPECT_TRUE(pool.Contains(a));
  EXPECT_EQ(pool.sequences(), 2);
  EXPECT_TRUE(pool.BlockTable(a).empty());

  ASSERT_TRUE(pool.Reserve(a, 5).ok());
  EXPECT_EQ(pool.BlockTable(a).size(), 2u);
  EXPECT_EQ(pool.blocks_in_use(), 2);
  EXPECT_EQ(pool.SequenceBytes(a), 2 * bpb);
  ASSERT_TRUE(pool.Reserve(a, 8).ok());  // still 2 blocks
  EXPECT_EQ(pool.BlockTable(a).size(), 2u);
  ASSERT_TRUE(pool.Reserve(a, 3).ok());  // shrinking requests are no-ops
  EXPECT_EQ(pool.BlockTable(a).size(), 2u);
  const std::vector<int32_t> before = pool.BlockTable(a);
  ASSERT_TRUE(pool.Reserve(a, 9).ok());
  ASSERT_EQ(pool.BlockTable(a).size(), 3u);
  // Growing keeps the existing blocks in place (their KV rows stay valid).
  EXPECT_EQ(pool.BlockTable(a)[0], before[0]);
  EXPECT_EQ(pool.BlockTable(a)[1], before[1]);

  ASSERT_TRUE(pool.Reserve(b, 12).ok());
  EXPECT_EQ(pool.blocks_in_use(), 6);
  EXPECT_EQ(pool.free_blocks(), 4);
  EXPECT_EQ(pool.bytes_in_use(), 6 * bpb);
  std::set<int32_t> all(pool.BlockTable(a).begin(), pool.BlockTable(a).end());
  all.insert(pool.BlockTable(b).begin(), pool.BlockTable(b).end());
  EXPECT_EQ(all.size(), 6u);  // no block shared
  for (int32_t blk : all) {
    EXPECT_GE(blk, 0);
    EXPECT_LT(blk, 10);
  }

  pool.Release(a);
  EXPECT_FALSE(pool.Contains(a));
  EXPECT_EQ(pool.blocks_in_use(), 3);
  EXPECT_EQ(pool.SequenceBytes(a), 0);
  pool.Release(b);
  EXPECT_EQ(pool.blocks_in_use(), 0);
  EXPECT_EQ(pool.bytes_in_use(), 0);
  EXPECT_EQ(pool.sequences(), 0);
  EXPECT_EQ(pool.free_blocks(), 10);
}

TEST(KvBlockPoolTest, ExhaustionChangesNothing) {
  PageableHostMemory memory;
  auto pool_or = KvBlockPool::Create(SmallOptions(), memory);
  ASSERT_TRUE(pool_or.ok());
  KvBlockPool& pool = **pool_or;
  const auto a = pool.AddSequence();
  const auto b = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(a, 28).ok());  // 7 blocks
  ASSERT_TRUE(pool.Reserve(b, 4).ok());   // 1 block; 2 free
  const std::vector<int32_t> table_b = pool.BlockTable(b);
  absl::Status s = pool.Reserve(b, 4 * 4);  // needs 3 more
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(pool.BlockTable(b), table_b);
  EXPECT_EQ(pool.free_blocks(), 2);
  EXPECT_EQ(pool.blocks_in_use(), 8);
  // A request that exactly fits still succeeds afterwards.
  ASSERT_TRUE(pool.Reserve(b, 12).ok());
  EXPECT_EQ(pool.free_blocks(), 0);
  EXPECT_EQ(pool.Reserve(a, 29).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.BlockTable(a).size(), 7u);
  // More than the whole pool.
  const auto c = pool.AddSequence();
  EXPECT_EQ(pool.Reserve(c, 1000).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(pool.BlockTable(c).empty());
  pool.Release(a);
  pool.Release(b);
  pool.Release(c);
  EXPECT_EQ(pool.blocks_in_use(), 0);
  EXPECT_EQ(pool.free_blocks(), 10);
}

TEST(KvBlockPoolTest, UnknownIds) {
  PageableHostMemory memory;
  auto pool_or = KvBlockPool::Create(SmallOptions(), memory);
  ASSERT_TRUE(pool_or.ok());
  KvBlockPool& pool = **pool_or;
  EXPECT_EQ(pool.Reserve(12345, 4).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(pool.free_blocks(), 10);
  pool.Release(12345);  // ignored
  EXPECT_EQ(pool.free_blocks(), 10);
  EXPECT_FALSE(pool.Contains(12345));
  EXPECT_EQ(pool.SequenceBytes(12345), 0);
  const auto a = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(a, 4).ok());
  pool.Release(a);
  pool.Release(a);  // double release is ignored, blocks not returned twice
  EXPECT_EQ(pool.free_blocks(), 10);
  EXPECT_EQ(pool.Reserve(a, 4).code(), absl::StatusCode::kNotFound);
  // Ids are never reused after release.
  EXPECT_NE(pool.AddSequence(), a);
}

TEST(KvBlockPoolTest, RandomWorkloadKeepsExactAccounting) {
  KvPoolOptions o = SmallOptions();
  o.num_blocks = 64;
  o.block_tokens = 16;
  PageableHostMemory memory;
  auto pool_or = KvBlockPool::Create(o, memory);
  ASSERT_TRUE(pool_or.ok());
  KvBlockPool& pool = **pool_or;
  std::mt19937 rng(2026);
  std::map<KvBlockPool::SequenceId, int64_t> tokens;  // reserved tokens per live sequence
  for (int step = 0; step < 3000; ++step) {
    const int op = std::uniform_int_distribution<int>(0, 9)(rng);
    if (op < 2 || tokens.empty()) {
      tokens[pool.AddSequence()] = 0;
    } else if (op < 8) {
      auto it = std::next(tokens.begin(),
                          std::uniform_int_distribution<size_t>(0, tokens.size() - 1)(rng));
      const int64_t want = it->second + std::uniform_int_distribution<int64_t>(0, 100)(rng);
      const int64_t free_before = pool.free_blocks();
      const std::vector<int32_t> table_before = pool.BlockTable(it->first);
      absl::Status s = pool.Reserve(it->first, want);
      const int64_t need = pool.BlocksFor(want) - static_cast<int64_t>(table_before.size());
      if (need > free_before) {
        ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
        ASSERT_EQ(pool.free_blocks(), free_before);
        ASSERT_EQ(pool.BlockTable(it->first), table_before);
      } else {
        ASSERT_TRUE(s.ok()) << s;
        it->second = want;
        ASSERT_EQ(static_cast<int64_t>(pool.BlockTable(it->first).size()),
                  std::max<int64_t>(pool.BlocksFor(want), table_before.size()));
      }
    } else {
      auto it = std::next(tokens.begin(),
                          std::uniform_int_distribution<size_t>(0, tokens.size() - 1)(rng));
      pool.Release(it->first);
      tokens.erase(it);
    }
    // Invariant: the tables partition the used blocks.
    int64_t used = 0;
    std::set<int32_t> seen;
    for (const auto& [id, t] : tokens) {
      const std::vector<int32_t>& table = pool.BlockTable(id);
      used += static_cast<int64_t>(table.size());
      seen.insert(table.begin(), table.end());
    }
    ASSERT_EQ(static_cast<int64_t>(seen.size()), used) << "a block is in two tables";
    ASSERT_EQ(pool.blocks_in_use(), used);
    ASSERT_EQ(pool.free_blocks() + used, o.num_blocks);
    ASSERT_EQ(pool.sequences(), static_cast<int64_t>(tokens.size()));
  }
  for (const auto& [id, t] : tokens) pool.Release(id);
  EXPECT_EQ(pool.blocks_in_use(), 0);
  EXPECT_EQ(pool.bytes_in_use(), 0);
  EXPECT_EQ(pool.sequences(), 0);
}

TEST(KvBlockPoolTest, LayerRegionsAreDisjointAndSized) {
  PageableHostMemory memory;
  const KvPoolOptions o = SmallOptions();
  auto pool_or = KvBlockPool::Create(o, memory);
  ASSERT_TRUE(pool_or.ok());
  KvBlockPool& pool = **pool_or;
  const int64_t region = o.num_blocks * o.block_tokens * o.kv_heads * o.head_dim * 4;
  const char* base = static_cast<const char*>(pool.KBase(0));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(base) % 256, 0u);
  for (int layer = 0; layer < o.layers; ++layer) {
    const char* k = static_cast<const char*>(pool.KBase(layer));
    const char* v = static_cast<const char*>(pool.VBase(layer));
    EXPECT_EQ(k - base, 2 * layer * region);
    EXPECT_EQ(v - base, (2 * layer + 1) * region);
  }
  // The last region ends exactly at the allocation's end: every byte written stays inside.
  float* last_v = static_cast<float*>(pool.VBase(o.layers - 1));
  const int64_t floats = region / 4;
  for (int64_t i = 0; i < floats; ++i) last_v[i] = static_cast<float>(i);
  EXPECT_EQ(static_cast<const char*>(pool.VBase(o.layers - 1)) + region - base,
            o.BytesPerBlock() * o.num_blocks);
}

// Resident layers: the first layers' regions come from the second memory, in one allocation
// each; a failure of either frees what was taken; the options refuse a count past the layers.
TEST(KvBlockPoolTest, ResidentLayersLiveInTheirOwnMemory) {
  KvPoolOptions o = SmallOptions();
  ASSERT_GE(o.layers, 2);
  o.resident_layers = 1;
  const int64_t region = o.num_blocks * o.block_tokens * o.kv_heads * o.head_dim * 4;
  CountingMemory host, device;
  {
    auto pool = KvBlockPool::Create(o, host, &device);
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ(host.allocations, 1);
    EXPECT_EQ(device.allocations, 1);
    EXPECT_EQ(device.last_bytes, static_cast<size_t>(2 * region));
    EXPECT_EQ(host.last_bytes, static_cast<size_t>(2 * region * (o.layers - 1)));
    const char* d = static_cast<const char*>((*pool)->KBase(0));
    EXPECT_EQ(static_cast<const char*>((*pool)->VBase(0)) - d, region);
    const char* h = static_cast<const char*>((*pool)->KBase(1));
    for (int layer = 1; layer < o.layers; ++layer) {
      EXPECT_EQ(static_cast<const char*>((*pool)->KBase(layer)) - h, 2 * (layer - 1) * region);
      EXPECT_EQ(static_cast<const char*>((*pool)->VBase(layer)) - h,
                (2 * (layer - 1) + 1) * region);
    }
    // Accounting counts every layer, wherever it lives.
    const auto seq = (*pool)->AddSequence();
    ASSERT_TRUE((*pool)->Reserve(seq, 5).ok());
    EXPECT_EQ((*pool)->bytes_in_use(), 2 * o.BytesPerBlock());
  }
  EXPECT_EQ(host.frees, 1);
  EXPECT_EQ(device.frees, 1);
  // The resident memory fails: the host allocation is returned, RESOURCE_EXHAUSTED.
  device.fail = true;
  auto failed = KvBlockPool::Create(o, host, &device);
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(host.frees, host.allocations);
  // Every layer resident: nothing from the main memory.
  device.fail = false;
  o.resident_layers = o.layers;
  const int before = host.allocations;
  EXPECT_TRUE(KvBlockPool::Create(o, host, &device).ok());
  EXPECT_EQ(host.allocations, before);
  // Bad counts, and resident layers without their memory.
  o.resident_layers = o.layers + 1;
  EXPECT_EQ(KvBlockPool::Create(o, host, &device).status().code(),
            absl::StatusCode::kInvalidArgument);
  o.resident_layers = 1;
  EXPECT_EQ(KvBlockPool::Create(o, host).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinfer
