// The one-block top-k's passes over scores in memory (kOneBlock in topk_select.cu, and the
// resident and cluster kernels' way out for rows longer than their shared memory): radix
// histograms of the scores' keys, the boundary narrowed pass by pass, then the ordered
// compaction.
#ifndef DSINFER_KERNELS_CUDA_TOPK_IN_MEMORY_CUH_
#define DSINFER_KERNELS_CUDA_TOPK_IN_MEMORY_CUH_

#include <cstdint>

#include "kernels/cuda/topk_common.cuh"

namespace dsinfer {
namespace cuda {

// Adds to hist the digit (key >> shift) & digit_mask of every score in [lo, hi) whose key
// matches prefix under mask, kThreads threads with kUnroll independent loads in flight each:
// one load at a time would leave a single block latency-bound far below its share of
// bandwidth. kPrefetch: the next kUnroll loads are issued before this batch's atomics (twice
// the registers), so a block's loads never wait for its own histogram updates.
template <int kThreads, int kUnroll, bool kPrefetch = false>
__device__ __forceinline__ void RadixHistogram(const uint16_t* sc, int lo, int hi, uint32_t prefix,
                                               uint32_t mask, int shift, uint32_t digit_mask,
                                               int* hist) {
  constexpr int kStep = kThreads * kUnroll;
  auto load = [&](int base, float (&x)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kThreads + threadIdx.x;
      x[u] = t < hi ? LoadScore(sc + t) : 0.0f;
    }
  };
  auto count = [&](int base, const float (&x)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kThreads + threadIdx.x;
      const uint32_t key = OrderKey(x[u]);
      if (t < hi && (key & mask) == prefix) atomicAdd(&hist[(key >> shift) & digit_mask], 1);
    }
  };
  if constexpr (kPrefetch) {
    float x[kUnroll];
    if (lo < hi) load(lo, x);
    for (int base = lo; base < hi; base += kStep) {
      float next[kUnroll];
      if (base + kStep < hi) load(base + kStep, next);
      count(base, x);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) x[u] = next[u];
    }
  } else {
    for (int base = lo; base < hi; base += kStep) {
      float x[kUnroll];
      load(base, x);
      count(base, x);
    }
  }
}

// Radix passes over the scores in memory, from pass `first` of the digits kBits0/1/2 (from the
// key's top bit down): each narrows (*prefix, *mask) to the boundary bucket and takes the
// keys above it off *remaining; they stop once the boundary bucket is taken whole (or at once
// if *whole already), or where the next digit cannot split stored scores (DigitSplitsScores).
// hist holds 1 << max(kBits0, kBits1, kBits2) counters.
template <int kThreads, int kUnroll, int kBits0, int kBits1, int kBits2>
__device__ __forceinline__ void RadixPassesInMemory(
    const uint16_t* sc, int lo, int hi, int first, int* hist,
    typename TopKScan<kThreads>::TempStorage& scan_tmp, uint32_t* prefix, uint32_t* mask,
    int* remaining, bool whole) {
  static_assert(kBits0 + kBits1 + kBits2 == 32, "three digits cover the key");
  __shared__ int sh_bucket, sh_greater;
  int shift = 32;
  for (int pass = 0; pass < 3; ++pass) {
    const int bits = pass == 0 ? kBits0 : (pass == 1 ? kBits1 : kBits2);
    shift -= bits;
    if (pass < first || whole) continue;
    if (!DigitSplitsScores(shift, bits)) break;
    const int bins = 1 << bits;
    const uint32_t digit_mask = static_cast<uint32_t>(bins - 1);
    for (int b = threadIdx.x; b < bins; b += kThreads) hist[b] = 0;
    __syncthreads();
    RadixHistogram<kThreads, kUnroll>(sc, lo, hi, *prefix, *mask, shift, digit_mask, hist);
    __syncthreads();
    whole = NarrowToBoundaryBucket<kThreads>(hist, bins, shift, scan_tmp, &sh_bucket,
                                             &sh_greater, remaining, prefix, mask);
  }
}

// Ordered compaction: the scores in [lo, hi) whose keys lie above the boundary prefix, and the
// first `remaining` boundary keys by index, to mid ascending. Each thread owns kItems
// consecutive candidates of a tile (blocked arrangement: one block scan per kThreads × kItems
// candidates).
template <int kThreads, int kItems>
__device__ __forceinline__ void OrderedCompaction(
    const uint16_t* sc, int lo, int hi, uint32_t prefix, uint32_t mask, int remaining, int32_t* mid,
    typename TopKScan<kThreads>::TempStorage& scan_tmp) {
  int written = 0, ties_seen = 0;
  for (int base = lo; base < hi; base += kThreads * kItems) {
    const int first = base + threadIdx.x * kItems;
    int flags[kItems];
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const int t = first + u;
      flags[u] = 0;
      if (t < hi) {
        const uint32_t kp = OrderKey(LoadScore(sc + t)) & mask;
        flags[u] = kp > prefix ? 1 : (kp == prefix ? (1 << 16) : 0);
      }
    }
    CompactTile<kThreads, kItems>(flags, first, remaining, mid, &written, &ties_seen,
                                      scan_tmp);
  }
}

// The whole one-block select of seg from the scores in memory: the radix passes (11/11/10-bit
// digits; hist holds 2048 counters), then the ordered compaction.
template <int kThreads, int kUnroll, int kItems>
__device__ __forceinline__ void SelectInMemory(const TopKSegment& seg, int* hist,
                                               typename TopKScan<kThreads>::TempStorage& scan_tmp) {
  uint32_t prefix = 0, mask = 0;
  int remaining = seg.want;
  RadixPassesInMemory<kThreads, kUnroll, 11, 11, 10>(seg.sc, seg.lo, seg.hi, 0, hist, scan_tmp,
                                                     &prefix, &mask, &remaining, false);
  OrderedCompaction<kThreads, kItems>(seg.sc, seg.lo, seg.hi, prefix, mask, remaining, seg.mid,
                                      scan_tmp);
}

// Shared memory of SelectInMemory, for kernels that carve it from their dynamic shared memory.
template <int kThreads>
struct SelectInMemoryShared {
  int hist[2048];
  typename TopKScan<kThreads>::TempStorage scan_tmp;
};

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_IN_MEMORY_CUH_
