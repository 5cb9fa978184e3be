// The offload gather's CPU twin against the offload tier (docs/offload.md). No GPU needed, so
// these always run; they live in offload_gpu_test for the CUDA fetch plan's headers. The
// flattened plan executed by the byte-level twin (FetchRowsReference) equals the tier's own
// ExecuteFetchPlanReference, buffers and reuse slabs alike, over random plans with reuse off,
// tiny (constant eviction) and large, and with previous-step reuse — so the twin the kernel is
// held to (offload_gather_gpu_test.cc) is the tier's data movement.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/cuda/offload_fetch_plan.h"
#include "gtest/gtest.h"
#include "kernels/cuda/offload_gather.cuh"
#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/offload_gpu_harness.h"
#include "tests/offload_test_pool.h"

namespace dsinfer {
namespace {

// A fetch job reading layer `layer` of `seq` straight from the host pool (the CPU twins'
// source addresses); the caller adds what to fetch and where it goes.
CudaFetchJob PoolFetchJob(const KvBlockPool& pool, int layer, KvBlockPool::SequenceId seq,
                          int kv_heads, int64_t row_bytes) {
  CudaFetchJob job;
  job.pool_k = pool.KBase(layer);
  job.pool_v = pool.VBase(layer);
  job.block_table = pool.BlockTable(seq).data();
  job.block_tokens = pool.options().block_tokens;
  job.kv_heads = kv_heads;
  job.row_bytes = static_cast<int32_t>(row_bytes);
  return job;
}

TEST(OffloadGatherTwin, FlattenedTwinEqualsTierReference) {
  std::mt19937_64 rng = MakeSeededRng("FlattenedTwinEqualsTierReference");
  for (int64_t reuse : {int64_t{0}, int64_t{7}, int64_t{4096}}) {
    SCOPED_TRACE(testing::Message() << "reuse " << reuse);
    const int layers = 2, kv_heads = 3, head_dim = 8, context = 90;
    PageableHostMemory memory;
    std::unique_ptr<KvBlockPool> pool = RandomF32Pool(layers, kv_heads, head_dim, memory, rng);
    ASSERT_NE(pool, nullptr);
    const auto seq = pool->AddSequence();
    ASSERT_TRUE(pool->Reserve(seq, context).ok());
    OffloadOptions oo;
    oo.reuse_rows = reuse;
    auto a = OffloadTier::Create(layers, kv_heads, head_dim, DType::kF32, oo, memory);
    auto b = OffloadTier::Create(layers, kv_heads, head_dim, DType::kF32, oo, memory);
    ASSERT_TRUE(a.ok() && b.ok());
    const int64_t row_bytes = head_dim * 4;
    for (int step = 0; step < 6; ++step) {
      ASSERT_TRUE((*a)->BeginStep({40, 30}).ok());
      ASSERT_TRUE((*b)->BeginStep({40, 30}).ok());
      for (int l = 0; l < layers; ++l) {
        for (size_t segment = 0; segment < 2; ++segment) {
          std::vector<std::vector<int32_t>> tokens(kv_heads);
          const bool dense = step == 5 && segment == 1;
          for (auto& t : tokens) {
            if (dense) {
              t.resize(29);
              std::iota(t.begin(), t.end(), 0);
            } else {
              t = RandomTokens(rng, context, segment == 0 ? 39 : 20);
            }
          }
          auto pa = (*a)->Plan(l, segment, seq, tokens, /*use_cache=*/!dense);
          auto pb = (*b)->Plan(l, segment, seq, tokens, /*use_cache=*/!dense);
          ASSERT_TRUE(pa.ok() && pb.ok());
          // Poison both buffers' segments the same way, so untouched rows compare too.
          for (auto* tier : {a->get(), b->get()}) {
            PagedKvView<float> buf = tier->BufferView(l);
            for (int64_t i = 0; i < 70 * kv_heads * head_dim; ++i) {
              buf.k[i] = -777.0f;
              buf.v[i] = -888.0f;
            }
          }
          ExecuteFetchPlanReference(*pa, CpuKvView(*pool, l, seq), **a);
          std::vector<CudaFetchRow> rows;
          auto range = FlattenFetchPlan(*pb, kv_heads, rows);
          ASSERT_TRUE(range.ok()) << range.status();
          EXPECT_EQ(*range >= 0, dense);
          CudaFetchJob job = PoolFetchJob(*pool, l, seq, kv_heads, row_bytes);
          if (reuse > 0) {
            job.slab_k = (*b)->CacheView(l).k;
            job.slab_v = (*b)->CacheView(l).v;
          }
          PagedKvView<float> buf = (*b)->BufferView(l);
          job.out_k = reinterpret_cast<char*>(buf.k) + pb->segment_row * kv_heads * row_bytes;
          job.out_v = reinterpret_cast<char*>(buf.v) + pb->segment_row * kv_heads * row_bytes;
          job.rows = *range >= 0 ? nullptr : rows.data();
          job.num_rows = static_cast<int64_t>(rows.size());
          job.dense_tokens = std::max(*range, 0);
          FetchRowsReference(job);
          PagedKvView<float> ba = (*a)->BufferView(l);
          const size_t n = 70 * kv_heads * head_dim * sizeof(float);
          EXPECT_EQ(std::memcmp(ba.k, buf.k, n), 0);
          EXPECT_EQ(std::memcmp(ba.v, buf.v, n), 0);
          if (reuse > 0) {
            const size_t slab = reuse * kv_heads * row_bytes;
            EXPECT_EQ(std::memcmp((*a)->CacheView(l).k, (*b)->CacheView(l).k, slab), 0);
            EXPECT_EQ(std::memcmp((*a)->CacheView(l).v, (*b)->CacheView(l).v, slab), 0);
          }
        }
      }
    }
    if (reuse > 0) {
      EXPECT_GT((*a)->totals().rows_reused, 0);
    }
  }
}

// Previous-step reuse: the device path's data movement (PlanCounted, then the byte twin over
// a selection looking tokens up in the previous rows) equals the host path's (Plan merging
// lists, ExecuteFetchPlanReference), rows, stored tokens and hits alike.
TEST(OffloadGatherTwin, PreviousStepTwinEqualsTierReference) {
  std::mt19937_64 rng = MakeSeededRng("PreviousStepTwinEqualsTierReference");
  const int layers = 3, kv_heads = 2, head_dim = 8, context = 120, n = 30;
  PageableHostMemory memory;
  std::unique_ptr<KvBlockPool> pool = RandomF32Pool(layers, kv_heads, head_dim, memory, rng);
  ASSERT_NE(pool, nullptr);
  const auto seq = pool->AddSequence();
  ASSERT_TRUE(pool->Reserve(seq, context).ok());
  OffloadOptions oo;
  oo.reuse_rows = 0;
  oo.reuse_previous = true;
  auto a = OffloadTier::Create(layers, kv_heads, head_dim, DType::kF32, oo, memory);
  auto b = OffloadTier::Create(layers, kv_heads, head_dim, DType::kF32, oo, memory);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<std::vector<std::vector<int32_t>>> last(layers);
  int64_t hits_a = 0;
  unsigned long long hits_b = 0;
  for (int step = 0; step < 8; ++step) {
    ASSERT_TRUE((*a)->BeginStep({n + 1}).ok());
    ASSERT_TRUE((*b)->BeginStep({n + 1}).ok());
    for (int l = 0; l < layers; ++l) {
      // Per head: some of the layer's last selection, the rest fresh.
      std::vector<std::vector<int32_t>> tokens(kv_heads);
      std::vector<int32_t> selected(static_cast<size_t>(kv_heads) * (n + 3), -9);
      for (int h = 0; h < kv_heads; ++h) {
        std::vector<int32_t>& t = tokens[h];
        if (!last[l].empty()) {
          for (int32_t x : last[l][h]) {
            if (rng() % 3 != 0) t.push_back(x);
          }
        }
        for (int32_t x : RandomTokens(rng, context, n)) {
          if (t.size() == static_cast<size_t>(n)) break;
          if (std::find(t.begin(), t.end(), x) == t.end()) t.push_back(x);
        }
        std::sort(t.begin(), t.end());
        std::copy(t.begin(), t.end(), selected.begin() + h * (n + 3));
      }
      last[l] = tokens;
      auto pa = (*a)->Plan(l, 0, seq, tokens, /*use_cache=*/true);
      auto pb = (*b)->PlanCounted(l, 0, seq, std::vector<int64_t>(kv_heads, n));
      ASSERT_TRUE(pa.ok() && pb.ok());
      ExecuteFetchPlanReference(*pa, CpuKvView(*pool, l, seq), **a);
      hits_a += pa->counts.rows_reused;
      CudaFetchJob job = PoolFetchJob(*pool, l, seq, kv_heads, head_dim * 4);
      job.out_k = pb->destination.k;
      job.out_v = pb->destination.v;
      job.out_tokens = pb->destination.tokens;
      job.selected = selected.data();
      job.sel_stride = n + 3;
      job.per_head = n;
      if (pb->previous.k != nullptr) {
        job.slab_k = pb->previous.k;
        job.slab_v = pb->previous.v;
        job.prev_tokens = pb->previous.tokens;
        job.prev_per_head = static_cast<int32_t>(pb->previous_per_head);
        job.hits = &hits_b;
      }
      FetchRowsReference(job);
      const size_t bytes = static_cast<size_t>(n) * kv_heads * head_dim * 4;
      EXPECT_EQ(std::memcmp(pa->destination.k, pb->destination.k, bytes), 0);
      EXPECT_EQ(std::memcmp(pa->destination.v, pb->destination.v, bytes), 0);
      EXPECT_EQ(std::memcmp(pa->destination.tokens, pb->destination.tokens,
                            static_cast<size_t>(n) * kv_heads * 4),
                0);
      EXPECT_EQ(static_cast<int64_t>(hits_b), hits_a) << "step " << step << " layer " << l;
    }
  }
  EXPECT_GT(hits_a, 0);
}

}  // namespace
}  // namespace dsinfer
