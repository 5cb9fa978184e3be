// Top-k select over keys held in the shared memory of a thread-block cluster, one cluster per
// (sequence, KV head) segment, each block holding a slice of the segment's candidate keys: used
// by the cluster top-k (topk_select.cu) and by the fused scorer and top-k
// (score_select_cluster.cu). It selects exactly what the one-block kernel selects: `want`
// candidates ascending into mid, boundary ties lowest index first.
//
// A stored score is fp16 (score_format.cuh), so its key needs 16 bits (OrderKey16): two radix
// passes of 8 bits, and the compaction runs over one contiguous run of keys a thread, ordered
// by one block scan (run 28: half the shared memory of fp32 keys and one pass fewer; the fused
// kernel 5-13% faster from 4K rows).
#ifndef DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_
#define DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_

#include <cooperative_groups.h>

#include <cstdint>
#include <cub/block/block_scan.cuh>

#include "absl/status/status.h"
#include "kernels/cuda/cluster_launch.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/topk_common.cuh"

namespace dsinfer {
namespace cuda {

// A block's slice of a segment's candidates in a cluster of nb blocks: candidates [lo, lo +
// len) (token indices), a multiple of 4 long except the last (so the cluster top-k's slices
// start 8-byte aligned in a score row past the segment's start).
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

constexpr int kClusterSelectBins = 256;  // one 8-bit digit of a 16-bit key

// Shared memory of ClusterSelect, one per block.
template <int kThreads>
struct ClusterSelectShared {
  typename cub::BlockScan<long long, kThreads>::TempStorage scan_tmp;
  // [0]: the keys' high bytes (counted by the caller as it makes the keys); [1]: the low bytes
  // of the keys in the boundary's high-byte bucket.
  int hist[2][kClusterSelectBins];
  int merged[kClusterSelectBins];
  long long totals;  // this block's keys above the boundary (low 32 bits) and its ties (high)
  int bucket, greater;
};

// Both histograms cleared, then a block barrier: before the caller counts the high bytes.
template <int kThreads>
__device__ __forceinline__ void ClearClusterHistograms(ClusterSelectShared<kThreads>& sh) {
  for (int b = threadIdx.x; b < 2 * kClusterSelectBins; b += kThreads) (&sh.hist[0][0])[b] = 0;
  __syncthreads();
}

// Counts key k's high byte into sh.hist[0], for a caller making its keys: the high bytes take
// few values over a row's scores, so a warp's lanes mostly share bins — one atomic per distinct
// bin per warp (match_any), where one per lane serialized on the shared-memory bank.
template <int kThreads>
__device__ __forceinline__ void CountFirstDigit(ClusterSelectShared<kThreads>& sh, uint32_t k) {
  const uint32_t bin = k >> 8;
  const unsigned peers = __match_any_sync(__activemask(), bin);
  if (static_cast<int>(threadIdx.x % 32) == __ffs(peers) - 1) {
    atomicAdd(&sh.hist[0][bin], __popc(peers));
  }
}

// Shared-memory bytes of a slice of `keys` keys: whole 16-byte vectors (ClusterSelect reads
// them so).
__host__ __device__ __forceinline__ int64_t ClusterSliceBytes(int64_t keys) {
  return (keys * 2 + 15) / 16 * 16;
}

// Key e (0..7) of a 16-byte vector of 16-bit keys, two a word, the lower half first.
__device__ __forceinline__ uint32_t Key16At(const uint4& w, int e) {
  const uint32_t word = e < 2 ? w.x : (e < 4 ? w.y : (e < 6 ? w.z : w.w));
  return (word >> (16 * (e % 2))) & 0xffffu;
}

// The selection of a cluster whose blocks each hold len keys (OrderKey16, two a word; keys4 is
// whole 16-byte vectors, those past len unread) of candidates lo .. lo + len - 1 and have
// counted their keys' high bytes into sh.hist[0] (no barrier needed: the select's first
// cluster barrier, which every thread of the block reaches, completes both). Every block of the
// cluster must call it (it has cluster barriers); want >= 1 and at most the cluster's keys.
template <int kThreads>
__device__ __forceinline__ void ClusterSelect(const cooperative_groups::cluster_group& cluster,
                                              const uint4* keys4, int len, int lo, int want,
                                              int32_t* mid, ClusterSelectShared<kThreads>& sh) {
  const int nb = static_cast<int>(cluster.num_blocks());
  const int rank = static_cast<int>(cluster.block_rank());
  const int nvec = (len + 7) / 8;
  // Two passes: the boundary key's high byte over every key, then its low byte over the keys
  // of that high byte, each block's counts summed over the cluster (distributed shared memory).
  int remaining = want;
  uint32_t boundary = 0;
  for (int pass = 0; pass < 2; ++pass) {
    int* local = sh.hist[pass];
    if (pass == 1) {
      const uint32_t high = boundary;
      for (int v = threadIdx.x; v < nvec; v += kThreads) {
        const uint4 w = keys4[v];
#pragma unroll
        for (int e = 0; e < 8; ++e) {
          const uint32_t k = Key16At(w, e);
          if (8 * v + e < len && (k >> 8) == high) atomicAdd(&local[k & 0xffu], 1);
        }
      }
      __syncthreads();  // local is complete
    }
    cluster.sync();  // every block's histogram of this pass is complete
    for (int b = threadIdx.x; b < kClusterSelectBins; b += kThreads) {
      int sum = 0;
      for (int q = 0; q < nb; ++q) sum += cluster.map_shared_rank(local, q)[b];
      sh.merged[b] = sum;
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      FindBoundaryBucket(sh.merged, kClusterSelectBins, remaining, &sh.bucket, &sh.greater);
    }
    __syncthreads();
    remaining -= sh.greater;
    boundary = boundary << 8 | static_cast<uint32_t>(sh.bucket);
    __syncthreads();  // merged and the bucket are rewritten by the next pass
  }
  // boundary: the remaining-th largest key's value; take the keys above it and the first
  // `remaining` keys equal to it (by index, over the cluster).
  // Each thread a contiguous run of per_vec vectors, an odd count: a quarter warp's 16-byte
  // loads then fall in different banks. Read twice: counted, then (after the scan) written.
  const int per_vec = ((nvec + kThreads - 1) / kThreads) | 1;
  const int v0 = min(static_cast<int>(threadIdx.x) * per_vec, nvec);
  const int v1 = min(v0 + per_vec, nvec);
  // The above / tie flags of vector v's 8 keys (bit e: key 8v + e), past len clear.
  const auto flags = [&](int v, uint32_t* gt, uint32_t* eq) {
    const uint4 w = keys4[v];
    uint32_t g8 = 0, e8 = 0;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      const uint32_t k = Key16At(w, e);
      g8 |= static_cast<uint32_t>(k > boundary) << e;
      e8 |= static_cast<uint32_t>(k == boundary) << e;
    }
    const int valid = len - 8 * v;
    const uint32_t m = valid >= 8 ? 0xffu : (1u << valid) - 1;
    *gt = g8 & m;
    *eq = e8 & m;
  };
  int above = 0, ties = 0;
  for (int v = v0; v < v1; ++v) {
    uint32_t gt, eq;
    flags(v, &gt, &eq);
    above += __popc(gt);
    ties += __popc(eq);
  }
  long long before = 0, total = 0;
  cub::BlockScan<long long, kThreads>(sh.scan_tmp)
      .ExclusiveSum(static_cast<long long>(above) | static_cast<long long>(ties) << 32, before,
                    total);
  if (threadIdx.x == 0) sh.totals = total;
  cluster.sync();  // every block's totals are complete
  for (int q = 0; q < rank; ++q) before += *cluster.map_shared_rank(&sh.totals, q);
  int a = static_cast<int>(before & 0xffffffffll);  // keys above, before this thread's first
  int t = static_cast<int>(before >> 32);           // ties before it
  for (int v = v0; v < v1; ++v) {
    uint32_t gt, eq;
    flags(v, &gt, &eq);
    uint32_t m = gt | eq;
    while (m != 0) {
      const int b = __ffs(m) - 1;
      m &= m - 1;
      const int index = lo + 8 * v + b;
      if ((gt >> b) & 1u) {
        mid[a + min(t, remaining)] = index;
        ++a;
      } else {
        if (t < remaining) mid[a + t] = index;
        ++t;
      }
    }
  }
  cluster.sync();  // no block leaves while another may still read its totals
}

// Launches `kernel` on (nb, heads_kv, num_seqs) blocks of `threads`, one cluster of nb blocks
// per (sequence, KV head) along x, with `smem` bytes of dynamic shared memory (opted in here);
// dependent with no early start where the Double Sparsity chain is (LaunchChained: the kernels
// wait first, in StartTopKSegment).
template <typename... Params, typename... Args>
absl::Status LaunchSegmentClusters(void (*kernel)(Params...), int nb, int heads_kv, int num_seqs,
                                   int threads, int64_t smem, cudaStream_t stream,
                                   Args... args) {
  return LaunchClusters(kernel, dim3(static_cast<unsigned>(nb), heads_kv, num_seqs), nb, threads,
                        smem, DependentSparseChain() && DependentLaunch(), stream, args...);
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_CLUSTER_SELECT_CUH_
