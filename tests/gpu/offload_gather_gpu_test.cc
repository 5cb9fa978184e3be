// The offload tier's CUDA kernels against their CPU twins (docs/offload.md; the twins are held
// to the tier in offload_gather_twin_test.cc); skipped without a GPU. The zero-copy gather
// kernel, one job per launch and many, and the current-row writer equal their twins byte for
// byte (kv heads 1/8, head_dim 64/128, bf16/fp16, cache hits, misses with and without a slot to
// fill, dense ranges, device selections with and without previous-step rows; fresh random
// inputs, poisoned outputs), the pool in pinned mapped host memory through both of
// PinnedHostMemory's paths (cudaHostAlloc, registered huge pages).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/pinned_host_memory.h"
#include "gtest/gtest.h"
#include "kernels/cuda/offload_gather.cuh"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/offload_gpu_harness.h"

namespace dsinfer {
namespace {

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
            ASSERT_CUDA(
                cudaMemcpy(d_rows.ptr, rows.data(), rows.size() * 16, cudaMemcpyHostToDevice));
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
      ASSERT_CUDA(
          cudaMemcpy(o.d_rows->ptr, o.rows.data(), o.rows.size() * 16, cudaMemcpyHostToDevice));
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
      std::vector<uint16_t> k(static_cast<size_t>(kv_heads) * head_dim), v(k.size());
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

}  // namespace
}  // namespace dsinfer
