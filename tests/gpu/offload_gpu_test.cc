// The offload tier on CUDA (docs/offload.md).
//
// Without a GPU (always runs): the flattened plan executed by the byte-level twin
// (FetchRowsReference) equals the tier's own ExecuteFetchPlanReference, buffers and reuse
// slabs alike, over random plans with reuse off, tiny (constant eviction) and large — so the
// twin the kernel is held to is the tier's data movement.
//
// With a GPU (skipped otherwise): the zero-copy gather kernel and the current-row writer
// equal their twins byte for byte (kv heads 1/8, head_dim 64/128, bf16/fp16, cache hits,
// misses with and without a slot to fill, dense ranges; fresh random inputs, poisoned
// outputs); the engine: CUDA offload with exact selection equals CUDA gpu-mode Double
// Sparsity and CUDA dense-offload equals CUDA gpu-mode dense (logits within the bf16 bound,
// greedy tokens equal but at near-ties); the pool is pinned mapped host memory and the
// tier's buffers device memory; fetch counters are the exact arithmetic of the budget;
// release returns pool and tier to idle; layer-major prefill (one shot, and a layer per call
// with another sequence decoding between) equals chunked prefill and itself; an unpinnable
// pool is RESOURCE_EXHAUSTED naming the bytes and the flag.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/offload_fetch_plan.h"
#include "engine/cuda/pinned_host_memory.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "kernels/cuda/offload_gather.cuh"
#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/layer_major_check.h"
#include "tests/offload_test_pool.h"

namespace dsinfer {
namespace {

// Random ascending distinct tokens of [0, context), `n` of them.
std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int32_t context, int n) {
  std::vector<int32_t> all(context);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(std::min<int>(n, context));
  std::sort(all.begin(), all.end());
  return all;
}

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

// ---------------------------------------------------------------------------------------
// CPU: flatten + byte twin == the tier's reference data movement.

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

// ---------------------------------------------------------------------------------------
// GPU: kernels vs twins.

// A device allocation, freed on destruction; the vector constructor uploads `host` into it.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) { EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess); }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    EXPECT_EQ(cudaMemcpy(ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DeviceBuffer() { cudaFree(ptr); }
};

// The first `n` elements of `buffer`, copied back to the host.
template <typename T>
std::vector<T> Download(const DeviceBuffer& buffer, size_t n) {
  std::vector<T> host(n);
  EXPECT_EQ(cudaMemcpy(host.data(), buffer.ptr, n * sizeof(T), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return host;
}

void Fill16(std::mt19937_64& rng, DType dtype, uint16_t* p, size_t n) {
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (size_t i = 0; i < n; ++i) p[i] = To16(dtype, u(rng));
}

TEST(OffloadGatherGpu, FetchRowsKernelMatchesTwin) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng = MakeSeededRng("FetchRowsKernelMatchesTwin");
  PinnedHostMemory pinned;
  int sm = 0;
  ASSERT_CUDA(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, 0));
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (int kv_heads : {1, 8}) {
      for (int head_dim : {64, 128}) {
        // 0 mixed plan, 1 plan without cache, 2 dense range, 3 a device selection (top-k's
        // layout: per head ascending tokens at a row stride, the last entries unused), 4 the
        // same with previous rows (previous-step reuse: the slab holds them, about half of
        // the selection is among them) and the placed tokens stored
        for (int variant = 0; variant < 5; ++variant) {
          SCOPED_TRACE(testing::Message() << DTypeName(dtype) << " kv_heads " << kv_heads
                                          << " head_dim " << head_dim << " variant " << variant);
          // The widest shape's pool (72 MiB per K and V) takes PinnedHostMemory's registered
          // huge-page path (>= 64 MiB); the others its cudaHostAlloc path.
          const bool big = kv_heads == 8 && head_dim == 128;
          const int block_tokens = 16, blocks = big ? 2200 : 300, context = 3000, slots = 700;
          const int per_head = variant == 2 ? 2500 : 400 + static_cast<int>(rng() % 200);
          const int32_t row_bytes = head_dim * 2;
          const size_t row_elems = static_cast<size_t>(head_dim);
          const size_t pool_rows = static_cast<size_t>(blocks) * block_tokens * kv_heads;
          // Pool in pinned mapped memory, blocks handed out in a random order.
          const size_t registered = pinned.bytes_registered();
          auto pk = pinned.Allocate(pool_rows * row_bytes);
          auto pv = pinned.Allocate(pool_rows * row_bytes);
          ASSERT_TRUE(pk.ok() && pv.ok());
          EXPECT_EQ(pinned.bytes_registered() > registered, big)
              << "registered huge-page mappings: " << pinned.bytes_registered();
          Fill16(rng, dtype, static_cast<uint16_t*>(*pk), pool_rows * row_elems);
          Fill16(rng, dtype, static_cast<uint16_t*>(*pv), pool_rows * row_elems);
          std::vector<int32_t> table(blocks);
          std::iota(table.begin(), table.end(), 0);
          std::shuffle(table.begin(), table.end(), rng);
          // Slab (device) and its host twin, random; output buffer poisoned.
          const size_t slab_bytes = static_cast<size_t>(slots) * kv_heads * row_bytes;
          std::vector<uint16_t> slab_k(slab_bytes / 2), slab_v(slab_bytes / 2);
          Fill16(rng, dtype, slab_k.data(), slab_k.size());
          Fill16(rng, dtype, slab_v.data(), slab_v.size());
          const int out_rows = (per_head + 1) * kv_heads;
          std::vector<uint16_t> out_k(static_cast<size_t>(out_rows) * row_elems, 0x7fc1);
          std::vector<uint16_t> out_v(out_k.size(), 0x7fc2);
          // The plan: per head ascending tokens; a third hits the cache, a third misses and
          // fills a slot, the rest misses without one; slots distinct within the plan.
          std::vector<CudaFetchRow> rows;
          const int64_t sel_stride = per_head + 5;
          std::vector<int32_t> selected(static_cast<size_t>(kv_heads) * sel_stride, -7);
          const bool on_device = variant >= 3;
          // Previous rows: prev_per_head ascending tokens of every head, [row, head].
          const int prev_per_head = slots - 1 - static_cast<int>(rng() % 50);
          std::vector<int32_t> prev_tokens(static_cast<size_t>(slots) * kv_heads, -3);
          if (on_device) {
            for (int h = 0; h < kv_heads; ++h) {
              const std::vector<int32_t> tokens = RandomTokens(rng, context, per_head);
              std::copy(tokens.begin(), tokens.end(), selected.begin() + h * sel_stride);
              std::vector<int32_t> prev;
              for (int32_t t : tokens) {
                if (rng() % 2 == 0 && static_cast<int>(prev.size()) < prev_per_head / 2) {
                  prev.push_back(t);
                }
              }
              for (int32_t t : RandomTokens(rng, context, prev_per_head)) {
                if (prev.size() == static_cast<size_t>(prev_per_head)) break;
                if (std::find(prev.begin(), prev.end(), t) == prev.end()) prev.push_back(t);
              }
              std::sort(prev.begin(), prev.end());
              ASSERT_EQ(prev.size(), static_cast<size_t>(prev_per_head));
              for (int j = 0; j < prev_per_head; ++j) prev_tokens[j * kv_heads + h] = prev[j];
            }
          } else if (variant != 2) {
            std::vector<int32_t> slot_order(slots);
            std::iota(slot_order.begin(), slot_order.end(), 0);
            for (int h = 0; h < kv_heads; ++h) {
              std::shuffle(slot_order.begin(), slot_order.end(), rng);
              const std::vector<int32_t> tokens = RandomTokens(rng, context, per_head);
              size_t next_slot = 0;
              for (size_t i = 0; i < tokens.size(); ++i) {
                CudaFetchRow r;
                r.token = tokens[i];
                r.dst = static_cast<int32_t>(i) * kv_heads + h;
                const int kind = variant == 1 ? 2 : static_cast<int>(rng() % 3);
                if (kind == 0) r.from_slot = slot_order[next_slot++ % slots];
                if (kind == 1) r.to_slot = slot_order[next_slot++ % slots];
                rows.push_back(r);
              }
            }
          }
          DeviceBuffer d_selected(selected), d_prev_tokens(prev_tokens);
          std::vector<int32_t> out_tokens(static_cast<size_t>(out_rows), -5);
          std::vector<unsigned long long> hits(1, 0);
          DeviceBuffer d_out_tokens(out_tokens), d_hits(hits);
          DeviceBuffer d_table(table), d_rows(std::max<size_t>(rows.size(), 1) * 16),
              d_slab_k(slab_k), d_slab_v(slab_v), d_out_k(out_k), d_out_v(out_v);
          if (!rows.empty()) {
            ASSERT_CUDA(cudaMemcpy(d_rows.ptr, rows.data(), rows.size() * 16, cudaMemcpyHostToDevice));
          }

          CudaFetchJob job;
          job.block_tokens = block_tokens;
          job.kv_heads = kv_heads;
          job.row_bytes = row_bytes;
          job.num_rows = static_cast<int64_t>(rows.size());
          job.dense_tokens = variant == 2 ? per_head : 0;
          if (on_device) {
            job.sel_stride = sel_stride;
            job.per_head = per_head;
          }
          if (variant == 4) job.prev_per_head = prev_per_head;
          CudaFetchJob host = job;
          job.pool_k = pinned.DevicePointer(*pk);
          job.pool_v = pinned.DevicePointer(*pv);
          job.block_table = static_cast<const int32_t*>(d_table.ptr);
          job.slab_k = d_slab_k.ptr;
          job.slab_v = d_slab_v.ptr;
          job.out_k = d_out_k.ptr;
          job.out_v = d_out_v.ptr;
          job.rows = variant >= 2 ? nullptr : static_cast<const CudaFetchRow*>(d_rows.ptr);
          job.selected = on_device ? static_cast<const int32_t*>(d_selected.ptr) : nullptr;
          if (variant == 4) {
            job.prev_tokens = static_cast<const int32_t*>(d_prev_tokens.ptr);
            job.out_tokens = static_cast<int32_t*>(d_out_tokens.ptr);
            job.hits = static_cast<unsigned long long*>(d_hits.ptr);
          }
          ASSERT_OK(LaunchFetchRows(job, nullptr, sm));
          ASSERT_CUDA(cudaDeviceSynchronize());

          host.pool_k = *pk;
          host.pool_v = *pv;
          host.block_table = table.data();
          host.slab_k = slab_k.data();
          host.slab_v = slab_v.data();
          host.out_k = out_k.data();
          host.out_v = out_v.data();
          host.rows = variant >= 2 ? nullptr : rows.data();
          host.selected = on_device ? selected.data() : nullptr;
          if (variant == 4) {
            host.prev_tokens = prev_tokens.data();
            host.out_tokens = out_tokens.data();
            host.hits = hits.data();
          }
          FetchRowsReference(host);
          if (variant == 4) {
            EXPECT_GT(hits[0], 0u);
            EXPECT_LT(hits[0], static_cast<unsigned long long>(per_head) * kv_heads);
            EXPECT_EQ(Download<unsigned long long>(d_hits, 1), hits);
            EXPECT_EQ(Download<int32_t>(d_out_tokens, out_tokens.size()), out_tokens);
          }

          EXPECT_EQ(Download<uint16_t>(d_out_k, out_k.size()), out_k);
          EXPECT_EQ(Download<uint16_t>(d_out_v, out_v.size()), out_v);
          EXPECT_EQ(Download<uint16_t>(d_slab_k, slab_k.size()), slab_k);
          EXPECT_EQ(Download<uint16_t>(d_slab_v, slab_v.size()), slab_v);
          pinned.Free(*pk);
          pinned.Free(*pv);
        }
      }
    }
  }
  EXPECT_EQ(pinned.bytes_pinned(), 0u);
}

// LaunchFetchRowsMany: one grid for several sequences' jobs. 11 jobs (two launches of up to
// kFetchRowsMaxJobs) over one pinned pool, each its own block table and output segment, of
// every form: a device selection (top-k's layout, some with a per-head count of 0), a
// flattened plan with reuse slots, a dense range; a small grid so that every thread walks
// several jobs. Each job's output equals its own FetchRowsReference; a job list with hits
// counted for more than one job, or a bad job anywhere, is refused before anything runs.
TEST(OffloadGatherGpu, FetchRowsManyMatchesTwinPerJob) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng = MakeSeededRng("FetchRowsManyMatchesTwinPerJob");
  PinnedHostMemory pinned;
  const DType dtype = DType::kBF16;
  const int kv_heads = 8, head_dim = 128, block_tokens = 16, blocks = 400, context = 4000;
  const int slots = 300, jobs_n = 11;
  const int32_t row_bytes = head_dim * 2;
  const size_t pool_rows = static_cast<size_t>(blocks) * block_tokens * kv_heads;
  auto pk = pinned.Allocate(pool_rows * row_bytes);
  auto pv = pinned.Allocate(pool_rows * row_bytes);
  ASSERT_TRUE(pk.ok() && pv.ok());
  Fill16(rng, dtype, static_cast<uint16_t*>(*pk), pool_rows * head_dim);
  Fill16(rng, dtype, static_cast<uint16_t*>(*pv), pool_rows * head_dim);
  std::vector<uint16_t> slab_k(static_cast<size_t>(slots) * kv_heads * head_dim);
  std::vector<uint16_t> slab_v(slab_k.size());
  Fill16(rng, dtype, slab_k.data(), slab_k.size());
  Fill16(rng, dtype, slab_v.data(), slab_v.size());
  DeviceBuffer d_slab_k(slab_k), d_slab_v(slab_v);
  struct One {
    std::vector<int32_t> table, selected;
    std::vector<CudaFetchRow> rows;
    std::vector<uint16_t> out_k, out_v;
    std::unique_ptr<DeviceBuffer> d_table, d_selected, d_rows, d_out_k, d_out_v;
    CudaFetchJob host, dev;
  };
  std::vector<One> all(jobs_n);
  std::vector<CudaFetchJob> jobs;
  std::vector<int32_t> slot_order(slots);
  std::iota(slot_order.begin(), slot_order.end(), 0);
  std::shuffle(slot_order.begin(), slot_order.end(), rng);
  size_t next_slot = 0;  // slots distinct across the launch: no two jobs store to one
  for (int j = 0; j < jobs_n; ++j) {
    One& o = all[j];
    const int form = j % 3;  // 0 selection, 1 flattened plan, 2 dense range
    const int per_head = j == 3 ? 0 : 50 + static_cast<int>(rng() % 400);
    o.table.resize(blocks);
    std::iota(o.table.begin(), o.table.end(), 0);
    std::shuffle(o.table.begin(), o.table.end(), rng);
    const int64_t sel_stride = per_head + 3;
    o.selected.assign(static_cast<size_t>(kv_heads) * sel_stride, -7);
    for (int h = 0; h < kv_heads; ++h) {
      const std::vector<int32_t> tokens = RandomTokens(rng, context, per_head);
      if (form == 0) std::copy(tokens.begin(), tokens.end(), o.selected.begin() + h * sel_stride);
      if (form != 1) continue;
      for (size_t i = 0; i < tokens.size(); ++i) {
        CudaFetchRow r;
        r.token = tokens[i];
        r.dst = static_cast<int32_t>(i) * kv_heads + h;
        const int kind = static_cast<int>(rng() % 3);
        if (kind < 2 && next_slot < slot_order.size()) {
          (kind == 0 ? r.from_slot : r.to_slot) = slot_order[next_slot++];
        }
        o.rows.push_back(r);
      }
    }
    o.out_k.assign(static_cast<size_t>(per_head + 1) * kv_heads * head_dim, 0x7fc1);
    o.out_v.assign(o.out_k.size(), 0x7fc2);
    o.d_table = std::make_unique<DeviceBuffer>(o.table);
    o.d_selected = std::make_unique<DeviceBuffer>(o.selected);
    o.d_rows = std::make_unique<DeviceBuffer>(std::max<size_t>(o.rows.size(), 1) * 16);
    if (!o.rows.empty()) {
      ASSERT_CUDA(cudaMemcpy(o.d_rows->ptr, o.rows.data(), o.rows.size() * 16,
                             cudaMemcpyHostToDevice));
    }
    o.d_out_k = std::make_unique<DeviceBuffer>(o.out_k);
    o.d_out_v = std::make_unique<DeviceBuffer>(o.out_v);
    CudaFetchJob job;
    job.block_tokens = block_tokens;
    job.kv_heads = kv_heads;
    job.row_bytes = row_bytes;
    if (form == 0) {
      job.sel_stride = sel_stride;
      job.per_head = per_head;
    }
    if (form == 1) job.num_rows = static_cast<int64_t>(o.rows.size());
    if (form == 2) job.dense_tokens = per_head;
    o.host = o.dev = job;
    o.dev.pool_k = pinned.DevicePointer(*pk);
    o.dev.pool_v = pinned.DevicePointer(*pv);
    o.dev.block_table = static_cast<const int32_t*>(o.d_table->ptr);
    o.dev.slab_k = d_slab_k.ptr;
    o.dev.slab_v = d_slab_v.ptr;
    o.dev.out_k = o.d_out_k->ptr;
    o.dev.out_v = o.d_out_v->ptr;
    o.dev.rows = form == 1 ? static_cast<const CudaFetchRow*>(o.d_rows->ptr) : nullptr;
    o.dev.selected = form == 0 ? static_cast<const int32_t*>(o.d_selected->ptr) : nullptr;
    o.host.pool_k = *pk;
    o.host.pool_v = *pv;
    o.host.block_table = o.table.data();
    o.host.slab_k = slab_k.data();
    o.host.slab_v = slab_v.data();
    o.host.out_k = o.out_k.data();
    o.host.out_v = o.out_v.data();
    o.host.rows = form == 1 ? o.rows.data() : nullptr;
    o.host.selected = form == 0 ? o.selected.data() : nullptr;
    jobs.push_back(o.dev);
  }
  // Refused before anything runs: hits for several jobs; one bad job among good ones.
  std::vector<CudaFetchJob> bad = jobs;
  unsigned long long* some_counter = reinterpret_cast<unsigned long long*>(d_slab_k.ptr);
  bad[1].hits = some_counter;
  EXPECT_EQ(LaunchFetchRowsMany(bad.data(), jobs_n, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  bad = jobs;
  bad[jobs_n - 1].row_bytes = 24;
  EXPECT_EQ(LaunchFetchRowsMany(bad.data(), jobs_n, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  for (const One& o : all) {
    EXPECT_EQ(Download<uint16_t>(*o.d_out_k, o.out_k.size()), o.out_k) << "written by a refusal";
  }
  ASSERT_OK(LaunchFetchRowsMany(jobs.data(), jobs_n, nullptr, /*max_blocks=*/7));
  ASSERT_CUDA(cudaDeviceSynchronize());
  for (int j = 0; j < jobs_n; ++j) {
    SCOPED_TRACE(testing::Message() << "job " << j);
    FetchRowsReference(all[j].host);
    EXPECT_EQ(Download<uint16_t>(*all[j].d_out_k, all[j].out_k.size()), all[j].out_k);
    EXPECT_EQ(Download<uint16_t>(*all[j].d_out_v, all[j].out_v.size()), all[j].out_v);
  }
  EXPECT_EQ(Download<uint16_t>(d_slab_k, slab_k.size()), slab_k);
  EXPECT_EQ(Download<uint16_t>(d_slab_v, slab_v.size()), slab_v);
  all.clear();
  pinned.Free(*pk);
  pinned.Free(*pv);
  EXPECT_EQ(pinned.bytes_pinned(), 0u);
}

TEST(OffloadGatherGpu, WriteCurrentKvMatchesTwin) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng = MakeSeededRng("WriteCurrentKvMatchesTwin");
  for (int kv_heads : {1, 8}) {
    for (int head_dim : {64, 128}) {
      const int32_t row_bytes = head_dim * 2;
      const int rows_cap = 50;
      std::vector<uint16_t> k(static_cast<size_t>(kv_heads) * head_dim),
          v(k.size());
      Fill16(rng, DType::kBF16, k.data(), k.size());
      Fill16(rng, DType::kBF16, v.data(), v.size());
      std::vector<int32_t> counts(kv_heads);
      for (int32_t& c : counts) c = static_cast<int32_t>(rng() % rows_cap);
      std::vector<uint16_t> out_k(static_cast<size_t>(rows_cap) * kv_heads * head_dim, 0x7fc3),
          out_v(out_k.size(), 0x7fc4);
      DeviceBuffer dk(k), dv(v), dc(counts), dok(out_k), dov(out_v);
      CudaCurrentKv job{dk.ptr, dv.ptr, dok.ptr, dov.ptr, static_cast<const int32_t*>(dc.ptr),
                        kv_heads, row_bytes};
      ASSERT_OK(LaunchWriteCurrentKv(job, nullptr));
      ASSERT_CUDA(cudaDeviceSynchronize());
      CudaCurrentKv host{k.data(), v.data(), out_k.data(), out_v.data(), counts.data(), kv_heads,
                         row_bytes};
      WriteCurrentKvReference(host);
      EXPECT_EQ(Download<uint16_t>(dok, out_k.size()), out_k);
      EXPECT_EQ(Download<uint16_t>(dov, out_v.size()), out_v);
    }
  }
}

// ---------------------------------------------------------------------------------------
// GPU: the engine.

constexpr double kTolerance = 2e-2;  // of max|logit|, as the CUDA golden tests

std::unique_ptr<Model> LoadCuda(const std::string& dir, CudaBackend& backend, KvMode mode,
                                const OffloadOptions& offload = {}) {
  ModelOptions options;
  options.kv_mode = mode;
  options.offload = offload;
  options.kv_pool_tokens = 1024;
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

// A gpu-mode engine and an engine of the same model in `mode` (an offload mode), each on its
// own backend. Backends are declared first so that they outlive their models.
struct GpuAndOffload {
  std::unique_ptr<CudaBackend> gpu_backend, off_backend;
  std::unique_ptr<Model> gpu, off;
};

// Models left null on failure (reported through EXPECT).
GpuAndOffload LoadGpuAndOffload(const std::string& dir, KvMode mode,
                                const OffloadOptions& offload = {}) {
  GpuAndOffload e;
  auto gb = CudaBackend::Create(CudaBackendOptions{});
  auto ob = CudaBackend::Create(CudaBackendOptions{});
  EXPECT_TRUE(gb.ok() && ob.ok());
  if (!gb.ok() || !ob.ok()) return e;
  e.gpu_backend = std::move(*gb);
  e.off_backend = std::move(*ob);
  e.gpu = LoadCuda(dir, *e.gpu_backend, KvMode::kGpu);
  e.off = LoadCuda(dir, *e.off_backend, mode, offload);
  return e;
}

// Positions [first, last) of sequence `s`'s decode rows in RunGreedy: sequence 0 prefills its
// prompt in one chunk; sequence 1's fed prompt is decode rows too.
std::pair<int64_t, int64_t> DecodePositions(int s, size_t prompt0, size_t prompt1, int generate) {
  const int64_t first = s == 0 ? static_cast<int64_t>(prompt0) : 1;
  const int64_t last = static_cast<int64_t>(s == 0 ? prompt0 : prompt1) + generate - 1;
  return {first, last};
}

AttentionOptions SparseOptions(int channels) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = channels;
  o.label_bits = 16;
  o.token_budget_ratio = 0.25;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 1;
  return o;
}

struct GreedyRun {
  std::vector<std::vector<float>> logits;  // per step, all sequences' logits
  std::vector<std::vector<int32_t>> greedy;  // per sequence, generated tokens
  std::vector<KvBlockPool::SequenceId> seqs;
};

int32_t Argmax(const float* x, int64_t n) {
  return static_cast<int32_t>(std::max_element(x, x + n) - x);
}

// Two sequences together: sequence 0 prefills `prompt0` in one chunk, sequence 1 feeds
// `prompt1` one token per step; then both generate `generate` tokens greedily. Sequence 1 runs
// with `o1` where given, else both with `o`. Sequences stay in the pool.
GreedyRun RunGreedy(Model& model, const std::vector<int32_t>& prompt0,
                    const std::vector<int32_t>& prompt1, int generate, const AttentionOptions& o,
                    const AttentionOptions* o1 = nullptr) {
  GreedyRun run;
  KvBlockPool& pool = model.kv_pool();
  const int64_t vocab = model.config().vocab_size;
  const std::vector<std::vector<int32_t>> prompts = {prompt0, prompt1};
  std::vector<std::vector<int32_t>> ids = prompts;
  std::vector<int64_t> done(2, 0);
  for (int s = 0; s < 2; ++s) {
    run.seqs.push_back(pool.AddSequence());
    EXPECT_TRUE(pool.Reserve(run.seqs[s], static_cast<int64_t>(ids[s].size()) + generate).ok());
  }
  run.greedy.assign(2, {});
  std::vector<float> logits;
  for (int step = 0; step < 200; ++step) {
    ForwardBatch batch;
    std::vector<int> members;
    for (int s = 0; s < 2; ++s) {
      if (static_cast<int>(run.greedy[s].size()) >= generate) continue;
      const int64_t have = static_cast<int64_t>(ids[s].size());
      const int64_t count = s == 0 && done[s] == 0 ? have : 1;
      batch.Add(run.seqs[s], ids[s].data() + done[s], count, done[s], false);
      batch.sequences.back().attention = s == 1 && o1 != nullptr ? o1 : &o;
      members.push_back(s);
    }
    if (members.empty()) break;
    const absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    run.logits.push_back(logits);
    for (size_t i = 0; i < members.size(); ++i) {
      const int s = members[i];
      done[s] += batch.sequences[i].num_rows;
      if (done[s] < static_cast<int64_t>(prompts[s].size())) continue;  // still feeding
      const int32_t next = Argmax(logits.data() + i * vocab, vocab);
      run.greedy[s].push_back(next);
      ids[s].push_back(next);
    }
  }
  return run;
}

// Logits of every step within kTolerance × max|logit| until the greedy paths part; where they
// part, the reference's top-2 margin must be a near-tie.
void ExpectSameRun(const GreedyRun& want, const GreedyRun& got, int64_t vocab, const std::string& what) {
  ASSERT_EQ(want.greedy.size(), got.greedy.size());
  double max_err = 0, max_abs = 0;
  const size_t steps = std::min(want.logits.size(), got.logits.size());
  for (size_t t = 0; t < steps; ++t) {
    if (want.logits[t].size() != got.logits[t].size()) break;
    for (size_t i = 0; i < want.logits[t].size(); ++i) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(want.logits[t][i])));
    }
  }
  bool parted = false;
  for (size_t t = 0; t < steps && !parted; ++t) {
    const std::vector<float>& a = want.logits[t];
    const std::vector<float>& b = got.logits[t];
    ASSERT_EQ(a.size(), b.size()) << what << " step " << t;
    for (size_t i = 0; i < a.size(); ++i) {
      max_err = std::max(max_err, std::abs(static_cast<double>(a[i]) - b[i]));
    }
    for (size_t r = 0; r < a.size() / vocab; ++r) {
      const float* x = a.data() + r * vocab;
      const float* y = b.data() + r * vocab;
      if (Argmax(x, vocab) == Argmax(y, vocab)) continue;
      std::vector<float> sorted(x, x + vocab);
      std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
      EXPECT_LT(sorted[0] - sorted[1], kTolerance * max_abs)
          << what << ": greedy tokens part at step " << t << " without a near-tie";
      std::printf("%s: greedy paths part at step %zu (near-tie margin %.4g)\n", what.c_str(), t,
                  sorted[0] - sorted[1]);
      parted = true;
    }
  }
  std::printf("%s: max|dlogit| %.4g (%.3g of max|logit|) over %zu steps\n", what.c_str(), max_err,
              max_err / std::max(max_abs, 1e-30), steps);
  EXPECT_LE(max_err, kTolerance * max_abs) << what;
  if (!parted) {
    EXPECT_EQ(want.greedy, got.greedy) << what;
  }
}

TEST(OffloadEngineGpu, ExactSelectionEqualsGpuModeAndCountsAreExact) {
  SKIP_WITHOUT_GPU();
  for (const char* dir : kGoldenModels)
  for (int resident : {0, 1}) {
    // reuse -1: previous-step reuse (the device path: hits decided by the gather).
    for (int64_t reuse : {int64_t{0}, int64_t{4096}, int64_t{5}, int64_t{-1}}) {
      const std::string what = std::string(dir) + " reuse " + std::to_string(reuse) +
                               " resident layers " + std::to_string(resident);
      SCOPED_TRACE(what);
      OffloadOptions oo;
      oo.predict = false;
      oo.reuse_rows = std::max<int64_t>(reuse, 0);
      oo.reuse_previous = reuse < 0;
      oo.resident_layers = resident;
      GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
      ASSERT_NE(e.gpu, nullptr);
      ASSERT_NE(e.off, nullptr);
      Model& gpu = *e.gpu;
      Model& off = *e.off;
      const ModelConfig& c = gpu.config();
      const ChannelConfig channels = RandomChannelConfig(c, 21);
      ASSERT_TRUE(gpu.double_sparsity().SetChannelConfig(channels).ok());
      ASSERT_TRUE(off.double_sparsity().SetChannelConfig(channels).ok());
      // Every layer sparse: both engines then run the same kernels on the same rows in the
      // same order (only the rows' addresses differ), so selections cannot part on noise.
      AttentionOptions o = SparseOptions(c.head_dim / 4);
      o.dense_layers = 0;
      const int vocab = static_cast<int>(c.vocab_size);
      const std::vector<int32_t> p0 = RandomIds(40, vocab, 5), p1 = RandomIds(12, vocab, 6);
      const int generate = 24;
      const GreedyRun want = RunGreedy(gpu, p0, p1, generate, o);
      const GreedyRun got = RunGreedy(off, p0, p1, generate, o);
      ExpectSameRun(want, got, c.vocab_size, what);

      // The pool is pinned mapped host memory but for its resident layers (device memory);
      // the tier's buffers are device memory.
      cudaPointerAttributes attr{};
      ASSERT_CUDA(cudaPointerGetAttributes(&attr, off.kv_pool().KBase(0)));
      EXPECT_EQ(attr.type, resident > 0 ? cudaMemoryTypeDevice : cudaMemoryTypeHost);
      EXPECT_NE(attr.devicePointer, nullptr);
      EXPECT_TRUE(e.off_backend->pinned_memory().Contains(off.kv_pool().VBase(c.num_layers - 1)));
      ASSERT_CUDA(cudaPointerGetAttributes(&attr, off.offload_tier()->BufferView(0).k));
      EXPECT_EQ(attr.type, cudaMemoryTypeDevice);

      // Exact accounting: every decode row fetches, per (layer, KV head), its selection minus
      // the current token — min(k, T) - 1 rows (T = position + 1). Prefill in one chunk reads
      // nothing from earlier chunks.
      for (int s = 0; s < 2; ++s) {
        const auto [first, last] = DecodePositions(s, p0.size(), p1.size(), generate);
        int64_t rows = 0;
        for (int64_t p = first; p < last; ++p) {  // positions of decode rows
          const int64_t t = p + 1;
          const int64_t k = std::min(std::max<int64_t>(o.BudgetFor(t), 1), t);
          rows += static_cast<int64_t>(c.num_layers) * c.num_heads_kv * (k - 1);
        }
        const SequenceAttentionStats* st = off.double_sparsity().Stats(got.seqs[s]);
        ASSERT_NE(st, nullptr);
        EXPECT_EQ(st->fetch.rows_requested, rows) << "sequence " << s;
        // Both CUDA paths count their sparse rows on the host (CountDeviceRow), alike.
        const SequenceAttentionStats* gst = gpu.double_sparsity().Stats(want.seqs[s]);
        ASSERT_NE(gst, nullptr);
        EXPECT_GT(st->sparse_rows, 0);
        EXPECT_EQ(st->sparse_rows, gst->sparse_rows);
        EXPECT_EQ(st->tokens_attended, gst->tokens_attended);
        EXPECT_LT(st->tokens_attended, st->tokens_context);
        EXPECT_EQ(st->fetch.rows_from_host + st->fetch.rows_reused + st->fetch.rows_resident,
                  st->fetch.rows_requested);
        // Rows of the resident layer are gathered from device memory, not read from the host.
        EXPECT_EQ(st->fetch.rows_resident > 0, resident > 0);
        EXPECT_EQ(st->fetch.bytes_from_host, st->fetch.rows_from_host * 2 * c.head_dim * 2);
        if (reuse == 0) {
          EXPECT_EQ(st->fetch.rows_reused, 0);
        }
        if (reuse == 4096 || reuse < 0) {
          EXPECT_GT(st->fetch.rows_reused, 0);
        }
        if (reuse < 0) {
          // Resident layers gather from device memory anyway: they keep nothing.
          EXPECT_EQ(st->fetch.rows_looked_up, st->fetch.rows_requested - st->fetch.rows_resident);
          std::printf("%s: previous-step reuse hit rate %.3f\n", what.c_str(),
                      static_cast<double>(st->fetch.rows_reused) / st->fetch.rows_looked_up);
        }
      }
      // Release returns pool, tier and (at the next step) device labels to idle.
      for (auto seq : got.seqs) off.ReleaseSequence(seq);
      EXPECT_EQ(off.kv_pool().blocks_in_use(), 0);
      EXPECT_EQ(off.offload_tier()->reuse_slots_in_use(), 0);
      EXPECT_EQ(off.offload_tier()->Counters(got.seqs[0]), nullptr);
    }
  }
}

TEST(OffloadEngineGpu, MixedLabelShapesEqualGpuMode) {
  SKIP_WITHOUT_GPU();
  // Sequence 0 with fp16 labels, sequence 1 with 4-bit labels: the batched selection
  // (SelectAndFetchMany) orders its rows by label shape — sequence 1's first — and each row's
  // selection must still reach its own gather, as in gpu mode.
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    OffloadOptions oo;
    oo.predict = false;
    oo.reuse_rows = 0;  // the selection on the device: SelectAndFetchMany
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    const ModelConfig& c = e.gpu->config();
    const ChannelConfig channels = RandomChannelConfig(c, 23);
    ASSERT_TRUE(e.gpu->double_sparsity().SetChannelConfig(channels).ok());
    ASSERT_TRUE(e.off->double_sparsity().SetChannelConfig(channels).ok());
    AttentionOptions fp16 = SparseOptions(c.head_dim / 4);
    fp16.dense_layers = 0;
    AttentionOptions four_bit = fp16;
    four_bit.label_bits = 4;
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> p0 = RandomIds(40, vocab, 7), p1 = RandomIds(12, vocab, 8);
    const GreedyRun want = RunGreedy(*e.gpu, p0, p1, 24, fp16, &four_bit);
    const GreedyRun got = RunGreedy(*e.off, p0, p1, 24, fp16, &four_bit);
    ExpectSameRun(want, got, c.vocab_size, std::string(dir) + " mixed label shapes");
    for (int s = 0; s < 2; ++s) {
      const SequenceAttentionStats* st = e.off->double_sparsity().Stats(got.seqs[s]);
      ASSERT_NE(st, nullptr);
      EXPECT_GT(st->sparse_rows, 0) << "sequence " << s;
      EXPECT_GT(st->fetch.rows_from_host, 0) << "sequence " << s;
    }
  }
}

TEST(OffloadEngineGpu, PredictedPathWithFullBudgetEqualsGpuMode) {
  SKIP_WITHOUT_GPU();
  // reuse 16: host lists (SelectTokens + the tier's cache plan); reuse 0: the selection stays
  // on the device (SelectAndFetch); reuse -1: that with previous-step reuse.
  for (int64_t reuse : {int64_t{16}, int64_t{0}, int64_t{-1}})
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(testing::Message() << dir << " reuse " << reuse);
    OffloadOptions oo;
    oo.own_query_layers = 1;
    oo.reuse_rows = std::max<int64_t>(reuse, 0);
    oo.reuse_previous = reuse < 0;
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kOffload, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& gpu = *e.gpu;
    Model& off = *e.off;
    const ModelConfig& c = gpu.config();
    // Budget over the whole context: any selection is every token, so the predicted path
    // (fetched a layer ahead into the other buffer) must reproduce gpu mode.
    AttentionOptions o = SparseOptions(c.head_dim);
    o.token_budget = 1000;
    o.dense_layers = 0;
    const int vocab = static_cast<int>(c.vocab_size);
    const GreedyRun want = RunGreedy(gpu, RandomIds(30, vocab, 7), RandomIds(9, vocab, 8), 16, o);
    const GreedyRun got = RunGreedy(off, RandomIds(30, vocab, 7), RandomIds(9, vocab, 8), 16, o);
    ExpectSameRun(want, got, c.vocab_size,
                  std::string(dir) + " predicted, reuse " + std::to_string(reuse));
    for (auto seq : got.seqs) {
      const SequenceAttentionStats* st = off.double_sparsity().Stats(seq);
      ASSERT_NE(st, nullptr);
      EXPECT_GT(st->predicted_rows, 0);
      // The whole context every step: all but the newest rows are found again.
      if (reuse < 0) {
        EXPECT_GT(st->fetch.rows_reused, st->fetch.rows_requested / 2);
      }
    }
    if (reuse < 0) {
      EXPECT_LE(off.offload_tier()->kept_buffers(), c.num_layers + 1);
    }
  }
}

TEST(OffloadEngineGpu, DenseOffloadEqualsGpuModeDense) {
  SKIP_WITHOUT_GPU();
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    GpuAndOffload e = LoadGpuAndOffload(dir, KvMode::kDenseOffload);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& gpu = *e.gpu;
    Model& off = *e.off;
    const ModelConfig& c = gpu.config();
    AttentionOptions o;
    o.mode = AttentionMode::kDense;
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> p0 = RandomIds(33, vocab, 9), p1 = RandomIds(7, vocab, 10);
    const int generate = 20;
    const GreedyRun want = RunGreedy(gpu, p0, p1, generate, o);
    const GreedyRun got = RunGreedy(off, p0, p1, generate, o);
    ExpectSameRun(want, got, c.vocab_size, std::string(dir) + " dense-offload");
    // Dense streaming: Σ over decode positions p of p rows per (layer, KV head).
    for (int s = 0; s < 2; ++s) {
      const auto [first, last] = DecodePositions(s, p0.size(), p1.size(), generate);
      int64_t rows = 0;
      for (int64_t p = first; p < last; ++p) rows += p * c.num_layers * c.num_heads_kv;
      const SequenceAttentionStats* st = off.double_sparsity().Stats(got.seqs[s]);
      ASSERT_NE(st, nullptr);
      EXPECT_EQ(st->fetch.rows_requested, rows);
      EXPECT_EQ(st->fetch.rows_from_host, rows);
      EXPECT_EQ(st->fetch.bytes_from_host, rows * 2 * c.head_dim * 2);
    }
  }
}

// Model::PrefillLayerMajor on CUDA (staging pool in HBM, layers copied into the pool with
// CopyKvBlocks): the last prompt position's logits and the decode steps after it equal chunked
// prefill through Forward in gpu mode, in every kv mode.
TEST(OffloadEngineGpu, LayerMajorPrefillEqualsChunkedPrefill) {
  SKIP_WITHOUT_GPU();
  for (KvMode mode : {KvMode::kGpu, KvMode::kOffload, KvMode::kDenseOffload})
  for (int resident : {0, 1})
  for (const char* dir : kGoldenModels) {
    if (mode == KvMode::kGpu && resident > 0) continue;
    SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode)
                                    << " resident layers " << resident);
    OffloadOptions oo;
    oo.resident_layers = resident;
    GpuAndOffload e = LoadGpuAndOffload(dir, mode, oo);
    ASSERT_NE(e.gpu, nullptr);
    ASSERT_NE(e.off, nullptr);
    Model& want_model = *e.gpu;
    Model& got_model = *e.off;
    const ModelConfig& c = want_model.config();
    const int vocab = static_cast<int>(c.vocab_size);
    const std::vector<int32_t> ids = RandomIds(150, vocab, 11);
    const int64_t chunk = 64;  // 150 = 2 × 64 + 22
    const auto sw = want_model.kv_pool().AddSequence();
    const auto sg = got_model.kv_pool().AddSequence();
    ASSERT_TRUE(want_model.kv_pool().Reserve(sw, 160).ok());
    ASSERT_TRUE(got_model.kv_pool().Reserve(sg, 160).ok());
    std::vector<float> want, logits;
    for (int64_t r0 = 0; r0 < 150; r0 += chunk) {
      ForwardBatch batch;
      batch.Add(sw, ids.data() + r0, std::min<int64_t>(chunk, 150 - r0), r0, false);
      ASSERT_TRUE(want_model.Forward(batch, want).ok());
    }
    auto got = got_model.PrefillLayerMajor(sg, ids, chunk);
    ASSERT_TRUE(got.ok()) << got.status();
    double max_abs = 0, max_err = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      max_abs = std::max(max_abs, std::abs(static_cast<double>(want[i])));
      max_err = std::max(max_err, std::abs(static_cast<double>(want[i]) - (*got)[i]));
    }
    std::printf("%s layer-major prefill: max|dlogit| %.3g of max|logit|\n", dir,
                max_err / std::max(max_abs, 1e-30));
    EXPECT_LE(max_err, kTolerance * max_abs);
    // Decode 8 greedy steps from the same token on both.
    int32_t token = static_cast<int32_t>(std::max_element(want.begin(), want.end()) - want.begin());
    for (int step = 0; step < 8; ++step) {
      ForwardBatch a, b;
      a.Add(sw, &token, 1, 150 + step, false);
      b.Add(sg, &token, 1, 150 + step, false);
      std::vector<float> la, lb;
      ASSERT_TRUE(want_model.Forward(a, la).ok());
      ASSERT_TRUE(got_model.Forward(b, lb).ok());
      double abs_a = 0, err = 0;
      for (size_t i = 0; i < la.size(); ++i) {
        abs_a = std::max(abs_a, std::abs(static_cast<double>(la[i])));
        err = std::max(err, std::abs(static_cast<double>(la[i]) - lb[i]));
      }
      EXPECT_LE(err, kTolerance * abs_a) << "decode step " << step;
      token = static_cast<int32_t>(std::max_element(la.begin(), la.end()) - la.begin());
    }
  }
}

// Model::StartLayerMajor + ContinueLayerMajor on CUDA, a layer per call, with another sequence
// decoding a token (Double Sparsity; dense in dense-offload) between the layers, as the server
// runs it with --layer-major-layers-per-step 1: ExpectInterleavedLayerMajorEqualsOneShot
// (tests/layer_major_check.h) in the offload modes, with and without a resident layer.
TEST(OffloadEngineGpu, LayerMajorPrefillInterleavedEqualsOneShot) {
  SKIP_WITHOUT_GPU();
  for (KvMode mode : {KvMode::kOffload, KvMode::kDenseOffload})
  for (int resident : {0, 1})
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(testing::Message() << dir << " mode " << static_cast<int>(mode)
                                    << " resident layers " << resident);
    OffloadOptions oo;
    oo.resident_layers = resident;
    auto ba = CudaBackend::Create(CudaBackendOptions{});
    auto bb = CudaBackend::Create(CudaBackendOptions{});
    ASSERT_TRUE(ba.ok() && bb.ok());
    std::unique_ptr<Model> a = LoadCuda(dir, **ba, mode, oo), b = LoadCuda(dir, **bb, mode, oo);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    const ChannelConfig channels = RandomChannelConfig(a->config(), 31);
    ASSERT_TRUE(a->double_sparsity().SetChannelConfig(channels).ok());
    ASSERT_TRUE(b->double_sparsity().SetChannelConfig(channels).ok());
    AttentionOptions o = SparseOptions(a->config().head_dim / 4);
    if (mode == KvMode::kDenseOffload) o.mode = AttentionMode::kDense;
    ExpectInterleavedLayerMajorEqualsOneShot(*a, *b, o, /*prompt=*/150, /*chunk=*/64,
                                             /*decode=*/6, /*tolerance=*/1e-3);
  }
}

// A pool beyond the address space fails at the virtual-address reservation, before any page
// is touched (a merely too-large request could push a shared host into its OOM killer).
TEST(OffloadEngineGpu, UnpinnablePoolIsResourceExhausted) {
  SKIP_WITHOUT_GPU();
  PinnedHostMemory pinned;
  auto ok = pinned.Allocate(1000);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(pinned.Contains(static_cast<char*>(*ok) + 999));
  EXPECT_NE(pinned.DevicePointer(static_cast<char*>(*ok) + 10), nullptr);
  EXPECT_EQ(pinned.bytes_pinned(), 1024u);
  pinned.Free(*ok);
  EXPECT_EQ(pinned.bytes_pinned(), 0u);
  auto huge = pinned.Allocate(size_t{1} << 52);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);

  auto b = CudaBackend::Create(CudaBackendOptions{});
  ASSERT_TRUE(b.ok());
  ModelOptions options;
  options.kv_mode = KvMode::kOffload;
  options.offload.resident_layers = 0;  // the whole pool pinned
  options.kv_block_tokens = 4096;
  options.kv_pool_tokens = int64_t{1} << 42;  // 2^30 blocks of >= 1 MiB: petabytes
  auto model = Model::Load(kGoldenModels[0], **b, options);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kResourceExhausted) << model.status();
  EXPECT_NE(model.status().message().find("kv_pool_tokens"), std::string::npos) << model.status();
  EXPECT_NE(model.status().message().find("bytes"), std::string::npos) << model.status();
  // The device is still usable afterwards.
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace dsinfer
