// Zero-copy gather of fetch plans and the current-row writer (see offload_gather.cuh).
#include <algorithm>
#include <initializer_list>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/offload_gather.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

constexpr int kThreads = 256;
// Independent 16-byte loads each thread keeps in flight before storing: PCIe latency is
// ~1–2 µs, so bandwidth needs many outstanding reads per SM.
constexpr int kUnroll = 4;

struct Piece {
  const uint4* src;
  uint4* dst;
  uint4* slab;  // non-null: also store here (a host read that fills a reuse slot)
  bool first;   // the row's first piece (stores its token, counts a hit)
  bool hit;     // read from the previous rows (previous-step reuse)
};

__device__ __forceinline__ Piece Locate(const CudaFetchJob& job, int64_t item, int chunks) {
  const int64_t e = item / (2 * chunks);
  const int rem = static_cast<int>(item - e * 2 * chunks);
  const int part = rem / chunks;  // 0 = K, 1 = V
  const int c = rem - part * chunks;
  CudaFetchRow r;
  if (job.rows != nullptr) {
    const int4 raw = *reinterpret_cast<const int4*>(job.rows + e);
    r.token = raw.x;
    r.from_slot = raw.y;
    r.to_slot = raw.z;
    r.dst = raw.w;
  } else if (job.selected != nullptr) {
    // Entry e = i * kv_heads + h: entry i of every head before entry i + 1, so the rows in
    // flight lie in one band of the pool (see FlattenFetchPlan).
    r.token = job.selected[(e % job.kv_heads) * job.sel_stride + e / job.kv_heads];
    // Every lane of the row searches the same entries: one broadcast load per step.
    r.from_slot = job.prev_tokens != nullptr ? FindPreviousRow(job, e % job.kv_heads, r.token)
                                             : -1;
    r.to_slot = -1;
    r.dst = static_cast<int32_t>(e);
  } else {
    r.token = static_cast<int32_t>(e / job.kv_heads);
    r.from_slot = -1;
    r.to_slot = -1;
    r.dst = static_cast<int32_t>(e);
  }
  const int64_t h = r.dst % job.kv_heads;
  const int64_t rb = job.row_bytes;
  const char* pool = static_cast<const char*>(part == 0 ? job.pool_k : job.pool_v);
  char* slab = static_cast<char*>(part == 0 ? job.slab_k : job.slab_v);
  char* out = static_cast<char*>(part == 0 ? job.out_k : job.out_v);
  Piece p;
  p.dst = reinterpret_cast<uint4*>(out + static_cast<int64_t>(r.dst) * rb) + c;
  p.slab = nullptr;
  p.first = rem == 0;
  p.hit = job.prev_tokens != nullptr && r.from_slot >= 0;
  if (p.first && job.out_tokens != nullptr) job.out_tokens[r.dst] = r.token;
  if (r.from_slot >= 0) {
    p.src = reinterpret_cast<const uint4*>(
                slab + (static_cast<int64_t>(r.from_slot) * job.kv_heads + h) * rb) + c;
  } else {
    const int64_t block = job.block_table[r.token / job.block_tokens];
    const int64_t slot = block * job.block_tokens + r.token % job.block_tokens;
    p.src = reinterpret_cast<const uint4*>(pool + (slot * job.kv_heads + h) * rb) + c;
    if (r.to_slot >= 0) {
      p.slab = reinterpret_cast<uint4*>(
                   slab + (static_cast<int64_t>(r.to_slot) * job.kv_heads + h) * rb) + c;
    }
  }
  return p;
}

// The jobs of one launch: job j owns items [first[j], first[j + 1]) of the grid's items (16-byte
// pieces). Passed by value as a __grid_constant__ parameter, read where it lies.
struct FetchJobs {
  CudaFetchJob job[kFetchRowsMaxJobs];
  int64_t first[kFetchRowsMaxJobs + 1];
  int count;
};

__global__ void __launch_bounds__(kThreads)
    FetchRowsKernel(const __grid_constant__ FetchJobs jobs) {
  const int64_t items = jobs.first[jobs.count];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  unsigned hits = 0;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; base < items;
       base += stride * kUnroll) {
    Piece p[kUnroll];
    uint4 v[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t item = base + u * stride;
      if (item < items) {
        int j = 0;
        while (item >= jobs.first[j + 1]) ++j;
        const CudaFetchJob& job = jobs.job[j];
        p[u] = Locate(job, item - jobs.first[j], job.row_bytes / 16);
        v[u] = *p[u].src;  // mapped host memory (PCIe) or the reuse slab (HBM)
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * stride < items) {
        *p[u].dst = v[u];
        if (p[u].slab != nullptr) *p[u].slab = v[u];
        hits += p[u].first && p[u].hit ? 1u : 0u;
      }
    }
  }
  if (jobs.job[0].hits != nullptr) {  // a launch with hits has one job (LaunchFetchRowsMany)
    // One atomic per warp: the warp's sum, added by its first lane.
    for (int off = 16; off > 0; off /= 2) hits += __shfl_down_sync(0xffffffffu, hits, off);
    if ((threadIdx.x & 31) == 0 && hits > 0) {
      atomicAdd(jobs.job[0].hits, static_cast<unsigned long long>(hits));
    }
  }
}

__global__ void WriteCurrentKvKernel(CudaCurrentKv job) {
  const int h = blockIdx.x;
  const int chunks = job.row_bytes / 16;
  const int64_t dst = static_cast<int64_t>(job.rows[h]) * job.kv_heads + h;
  for (int i = threadIdx.x; i < 2 * chunks; i += blockDim.x) {
    const int part = i / chunks, c = i % chunks;
    const char* src = static_cast<const char*>(part == 0 ? job.k : job.v) +
                      static_cast<int64_t>(h) * job.row_bytes;
    char* out = static_cast<char*>(part == 0 ? job.out_k : job.out_v) + dst * job.row_bytes;
    reinterpret_cast<uint4*>(out)[c] = reinterpret_cast<const uint4*>(src)[c];
  }
}

// The entries `job` asks for (rows of every head), or an error naming what is wrong with it.
absl::StatusOr<int64_t> CheckedEntries(const CudaFetchJob& job) {
  const int64_t entries = job.rows != nullptr ? job.num_rows
                          : job.selected != nullptr
                              ? static_cast<int64_t>(job.per_head) * job.kv_heads
                              : static_cast<int64_t>(job.dense_tokens) * job.kv_heads;
  if (entries <= 0) return int64_t{0};  // an empty plan (a sequence's first token)
  if (job.kv_heads <= 0 || job.row_bytes <= 0 || job.row_bytes % 16 != 0 ||
      job.block_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchFetchRows: bad shape (kv_heads ", job.kv_heads, ", row_bytes ",
                     job.row_bytes, ", block_tokens ", job.block_tokens, ")"));
  }
  for (const void* p : {job.pool_k, job.pool_v, static_cast<const void*>(job.out_k),
                        static_cast<const void*>(job.out_v)}) {
    if (p == nullptr || !cuda::IsAligned(p, 16)) {
      return absl::InvalidArgumentError("LaunchFetchRows: null or unaligned pool/buffer");
    }
  }
  if (job.block_table == nullptr) {
    return absl::InvalidArgumentError("LaunchFetchRows: no block table");
  }
  if (job.selected != nullptr && (job.rows != nullptr || job.sel_stride < job.per_head)) {
    return absl::InvalidArgumentError("LaunchFetchRows: selection with rows, or stride < per_head");
  }
  if (job.prev_tokens != nullptr &&
      (job.selected == nullptr || job.slab_k == nullptr || job.slab_v == nullptr ||
       job.prev_per_head < 0)) {
    return absl::InvalidArgumentError(
        "LaunchFetchRows: previous rows need a selection, their slab and a count >= 0");
  }
  if ((job.slab_k != nullptr && !cuda::IsAligned(job.slab_k, 16)) ||
      (job.slab_v != nullptr && !cuda::IsAligned(job.slab_v, 16))) {
    return absl::InvalidArgumentError("LaunchFetchRows: unaligned slab");
  }
  return entries;
}

}  // namespace

absl::Status LaunchFetchRowsMany(const CudaFetchJob* jobs, int count, cudaStream_t stream,
                                 int max_blocks) {
  if (count < 0 || (count > 0 && jobs == nullptr)) {
    return absl::InvalidArgumentError("LaunchFetchRowsMany: bad job list");
  }
  if (count > 1 && std::any_of(jobs, jobs + count,
                               [](const CudaFetchJob& j) { return j.hits != nullptr; })) {
    return absl::InvalidArgumentError("LaunchFetchRowsMany: hits are counted for one job alone");
  }
  // Every job is checked before any launch; then launches of up to kFetchRowsMaxJobs jobs.
  std::vector<int64_t> items(count);
  for (int i = 0; i < count; ++i) {
    ASSIGN_OR_RETURN(const int64_t entries, CheckedEntries(jobs[i]));
    items[i] = entries * 2 * (jobs[i].row_bytes / 16);
  }
  FetchJobs batch;
  batch.count = 0;
  batch.first[0] = 0;
  auto launch = [&]() -> absl::Status {
    if (batch.count == 0) return absl::OkStatus();
    const int64_t total = batch.first[batch.count];
    const int64_t want = (total + kThreads * kUnroll - 1) / (kThreads * kUnroll);
    const unsigned grid = static_cast<unsigned>(
        std::max<int64_t>(1, std::min<int64_t>(want, std::max(max_blocks, 1))));
    FetchRowsKernel<<<grid, kThreads, 0, stream>>>(batch);
    CUDA_RETURN_IF_LAUNCH_ERROR();
    batch.count = 0;
    return absl::OkStatus();
  };
  for (int i = 0; i < count; ++i) {
    if (items[i] == 0) continue;
    batch.job[batch.count] = jobs[i];
    batch.first[batch.count + 1] = batch.first[batch.count] + items[i];
    if (++batch.count == kFetchRowsMaxJobs) RETURN_IF_ERROR(launch());
  }
  return launch();
}

absl::Status LaunchFetchRows(const CudaFetchJob& job, cudaStream_t stream, int max_blocks) {
  return LaunchFetchRowsMany(&job, 1, stream, max_blocks);
}

absl::Status LaunchWriteCurrentKv(const CudaCurrentKv& job, cudaStream_t stream) {
  if (job.kv_heads <= 0 || job.row_bytes <= 0 || job.row_bytes % 16 != 0 ||
      job.rows == nullptr) {
    return absl::InvalidArgumentError("LaunchWriteCurrentKv: bad shape");
  }
  for (const void* p : {job.k, job.v, static_cast<const void*>(job.out_k),
                        static_cast<const void*>(job.out_v)}) {
    if (p == nullptr || !cuda::IsAligned(p, 16)) {
      return absl::InvalidArgumentError("LaunchWriteCurrentKv: null or unaligned row");
    }
  }
  const int threads = std::min(256, (2 * job.row_bytes / 16 + 31) / 32 * 32);
  WriteCurrentKvKernel<<<static_cast<unsigned>(job.kv_heads), threads, 0, stream>>>(job);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace dsinfer
