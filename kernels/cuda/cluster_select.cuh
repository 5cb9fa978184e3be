// Top-k select over keys held in the shared memory of a thread-block cluster, one cluster per
// (sequence, KV head) segment, each block holding a slice of the segment's candidate keys: used
// by the cluster top-k (topk_select.cu) and by the fused scorer and top-k
// (score_select_cluster.cu). It selects exactly what the one-block kernel selects: `want`
// candidates ascending into mid, boundary ties lowest index first.
#ifndef DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_
#define DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_

#include <cooperative_groups.h>

#include <cstdint>
#include <cub/block/block_reduce.cuh>

#include "absl/status/status.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace cuda {

// A block's slice of a segment's candidates in a cluster of nb blocks: candidates [lo, lo +
// len) (token indices), a multiple of 4 long except the last, so every slice's keys start
// 16-byte aligned in shared memory.
struct ClusterSlice {
  int lo, len;
};
// Keys a block's slice holds, at most, for `candidates` candidates over nb blocks:
// ceil(candidates / nb) rounded up to 4 (the launchers size shared memory by it).
__host__ __device__ __forceinline__ int64_t ClusterSliceKeys(int64_t candidates, int64_t nb) {
  return ((candidates + nb - 1) / nb + 3) / 4 * 4;
}
__device__ __forceinline__ ClusterSlice ClusterSliceOf(const TopKSegment& seg, int rank, int nb) {
  const int cand = seg.hi - seg.lo;
  const int per = static_cast<int>(ClusterSliceKeys(cand, nb));
  const int lo = seg.lo + min(cand, rank * per);
  return {lo, min(cand, (rank + 1) * per) - (lo - seg.lo)};
}

constexpr int kClusterSelectBins = 2048;

// Shared memory of the cluster select, one per block: the radix histograms and their 32-bin
// chunk sums (double-buffered across the cluster barrier), cluster-wide sums, the block's counts,
// the boundary found, and the block scan / reduce storage.
template <int kThreads>
struct ClusterSelectShared {
  typename cub::BlockScan<int, kThreads>::TempStorage scan_tmp;
  typename cub::BlockReduce<int, kThreads>::TempStorage reduce_tmp;
  int hist[2][kClusterSelectBins];
  int chunk_sums[2][kClusterSelectBins / 32];
  int merged[kClusterSelectBins + kClusterSelectBins / 32];
  int totals[2];
  int chunk, chunk_greater, bucket, greater;
};

// Both histogram buffers cleared, then a block barrier: before the first digit is counted.
template <int kThreads>
__device__ __forceinline__ void ClearClusterHistograms(ClusterSelectShared<kThreads>& sh) {
  for (int b = threadIdx.x; b < 2 * kClusterSelectBins; b += kThreads) (&sh.hist[0][0])[b] = 0;
  __syncthreads();
}

// Radix passes of 11/11/10-bit digits over the blocks' keys (keys4: len keys in this block's
// shared memory): per pass each block histograms its keys of the current prefix and sums them
// in 32-bin chunks; after a cluster barrier every block sums all blocks' chunk sums through
// distributed shared memory, finds the chunk holding the boundary, sums that chunk's bins the
// same way and finds the same boundary bucket (the buffers double-buffered, so the next pass's
// clear cannot race a slower block's read). Narrows (*prefix, *mask) to the bucket of the
// *remaining-th largest key and takes the keys above it off *remaining; stops once the bucket
// is taken whole, and before the last digit (bits 9..0, which cannot split stored scores'
// keys: DigitSplitsScores). The first digit (key >> 21) must be counted into sh.hist[0] already
// (sh.hist[1] clear, the block synced). Every block must call it (it has cluster barriers) and
// gets the same results.
template <int kThreads>
__device__ __forceinline__ void ClusterRadixPasses(
    const cooperative_groups::cluster_group& cluster, const uint4* keys4, int len,
    int* remaining, uint32_t* prefix_out, uint32_t* mask_out, ClusterSelectShared<kThreads>& sh) {
  const int nb = static_cast<int>(cluster.num_blocks());
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  int (&hist)[2][kClusterSelectBins] = sh.hist;
  int* merged = sh.merged;  // merged bins of the boundary chunk, then the merged chunk sums
  uint32_t prefix = 0, mask = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0);
    const int bins = pass == 2 ? 1024 : 2048;
    if (!DigitSplitsScores(shift, pass == 2 ? 10 : 11)) break;  // uniform: no barrier skipped
    const uint32_t digit_mask = static_cast<uint32_t>(bins - 1);
    int* local = hist[pass % 2];
    if (pass > 0) {
      // Keys of the current prefix, from shared memory (the histogram buffer was cleared
      // before the previous pass's cluster barrier).
      for (int i = 4 * threadIdx.x; i < len; i += 4 * kThreads) {
        const uint4 k4 = keys4[i / 4];
        const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (i + e < len && (k[e] & mask) == prefix) {
            atomicAdd(&local[(k[e] >> shift) & digit_mask], 1);
          }
        }
      }
    }
    // This block's chunk sums (32 bins a chunk), so that the merge reads a block's chunk sums
    // and one chunk's bins instead of every bin: 96 remote words a block, not 2048.
    const int chunks = bins / 32;
    int* chunk_sums = sh.chunk_sums[pass % 2];
    __syncthreads();  // local is complete
    for (int c = warp; c < chunks; c += kThreads / 32) {
      int v = local[c * 32 + lane];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
      if (lane == 0) chunk_sums[c] = v;
    }
    cluster.sync();  // every block's histogram and chunk sums of this pass are complete
    for (int c = threadIdx.x; c < chunks; c += kThreads) {
      int sum = 0;
      for (int q = 0; q < nb; ++q) sum += cluster.map_shared_rank(chunk_sums, q)[c];
      merged[kClusterSelectBins + c] = sum;
    }
    // The other buffers were last read in the previous pass's merge, which every block
    // finished before the barrier above: clear them for the next pass.
    for (int b = threadIdx.x; b < kClusterSelectBins; b += kThreads) hist[(pass + 1) % 2][b] = 0;
    __syncthreads();
    if (warp == 0) {
      // The chunk holding the boundary, then the merged bins of that chunk.
      FindBoundaryBucket(merged + kClusterSelectBins, chunks, *remaining, &sh.chunk,
                         &sh.chunk_greater);
      __syncwarp();
      const int b = sh.chunk * 32 + lane;
      int sum = 0;
      for (int q = 0; q < nb; ++q) sum += cluster.map_shared_rank(local, q)[b];
      merged[b] = sum;
      __syncwarp();
      FindBoundaryBucket(merged + sh.chunk * 32, 32, *remaining - sh.chunk_greater, &sh.bucket,
                         &sh.greater);
    }
    __syncthreads();
    const int bucket = sh.chunk * 32 + sh.bucket;
    *remaining -= sh.chunk_greater + sh.greater;
    prefix |= static_cast<uint32_t>(bucket) << shift;
    mask |= digit_mask << shift;
    const bool whole = merged[bucket] == *remaining;
    __syncthreads();  // merged and the boundary are rewritten by the next pass
    if (whole) break;
  }
  *prefix_out = prefix;
  *mask_out = mask;
}

// The ordered compaction of a cluster's slices after the radix passes: the keys above the
// boundary prefix (under mask) and the first `remaining` ties by index (over the whole
// cluster) go to mid ascending. The blocks' above and tie counts
// give each block its start (an exclusive prefix over the ranks before it); then blocked tiles
// of kItems keys a thread, one block scan each (CompactTile). Every block must call it.
template <int kThreads, int kItems>
__device__ __forceinline__ void ClusterOrderedCompaction(
    const cooperative_groups::cluster_group& cluster, const uint4* keys4, int len, int lo,
    uint32_t prefix, uint32_t mask, int remaining, int32_t* mid,
    ClusterSelectShared<kThreads>& sh) {
  // 1: above the boundary prefix; 1 << 16: a boundary tie; 0: below.
  const auto classify = [prefix, mask](uint32_t k) {
    const uint32_t kp = k & mask;
    return kp > prefix ? 1 : (kp == prefix ? (1 << 16) : 0);
  };
  using Reduce = cub::BlockReduce<int, kThreads>;
  const uint32_t* keys = reinterpret_cast<const uint32_t*>(keys4);
  const int rank = static_cast<int>(cluster.block_rank());
  {
    int above = 0, ties = 0;
    for (int i = threadIdx.x; i < len; i += kThreads) {
      const int f = classify(keys[i]);
      above += f == 1;
      ties += f == (1 << 16);
    }
    above = Reduce(sh.reduce_tmp).Sum(above);
    __syncthreads();
    ties = Reduce(sh.reduce_tmp).Sum(ties);
    if (threadIdx.x == 0) sh.totals[0] = above, sh.totals[1] = ties;
  }
  cluster.sync();  // every block's totals are complete
  int written = 0, ties_seen = 0;
  for (int q = 0; q < rank; ++q) {
    const int* t = cluster.map_shared_rank(sh.totals, q);
    written += t[0];
    ties_seen += t[1];
  }
  written += min(ties_seen, remaining);
  for (int base = 0; base < len; base += kThreads * kItems) {
    const int first = base + threadIdx.x * kItems;
    int flags[kItems];
#pragma unroll
    for (int u4 = 0; u4 < kItems / 4; ++u4) {
      const uint4 k4 =
          first + 4 * u4 < len ? keys4[(first + 4 * u4) / 4] : make_uint4(0, 0, 0, 0);
      const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int u = 4 * u4 + e;
        flags[u] = first + u < len ? classify(k[e]) : 0;
      }
    }
    CompactTile<kThreads, kItems>(flags, lo + first, remaining, mid, &written, &ties_seen,
                                  sh.scan_tmp);
  }
  cluster.sync();  // no block leaves while another may still read its totals
}

// The select of a cluster whose blocks each hold a slice of a segment's candidate keys (keys4:
// len keys of tokens lo .., in shared memory) and have counted their first digit (key >> 21)
// into sh.hist[0] (sh.hist[1] clear, the block synced): the radix passes over every key, then
// the ordered compaction.
template <int kThreads, int kItems>
__device__ __forceinline__ void ClusterSelect(const cooperative_groups::cluster_group& cluster,
                                              const uint4* keys4, int len, int lo, int want,
                                              int32_t* mid, ClusterSelectShared<kThreads>& sh) {
  int remaining = want;
  uint32_t prefix = 0, mask = 0;
  ClusterRadixPasses(cluster, keys4, len, &remaining, &prefix, &mask, sh);
  ClusterOrderedCompaction<kThreads, kItems>(cluster, keys4, len, lo, prefix, mask, remaining,
                                             mid, sh);
}

// Launches `kernel` on (nb, heads_kv, num_seqs) blocks of `threads`, one cluster of nb blocks
// per (sequence, KV head) along x, with `smem` bytes of dynamic shared memory (opted in here);
// dependent with no early start where the Double Sparsity chain is (LaunchChained: the kernels
// wait first, in StartTopKSegment).
template <typename... Params, typename... Args>
absl::Status LaunchSegmentClusters(void (*kernel)(Params...), int nb, int heads_kv, int num_seqs,
                                   int threads, int64_t smem, cudaStream_t stream,
                                   Args... args) {
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(nb), heads_kv, num_seqs);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = static_cast<size_t>(smem);
  cfg.stream = stream;
  cudaLaunchAttribute attrs[2];
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = static_cast<unsigned>(nb);
  attrs[0].val.clusterDim.y = 1;
  attrs[0].val.clusterDim.z = 1;
  attrs[1] = DependentLaunchAttribute();
  cfg.attrs = attrs;
  cfg.numAttrs = DependentSparseChain() && DependentLaunch() ? 2 : 1;
  CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, args...));
  return absl::OkStatus();
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_
