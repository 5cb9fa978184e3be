// Top-k pieces shared by the top-k kernels (topk_select.cu), the cluster select
// (cluster_select.cuh) and the fused scorer and top-k (score_select_cluster.cu): the scores'
// order-preserving keys, the boundary search over a radix histogram, a (sequence, KV head)
// segment's plan and kept tokens, warp and cross-warp prefix sums, and one tile of the ordered
// compaction.
#ifndef DSINFER_KERNELS_CUDA_TOPK_COMMON_CUH_
#define DSINFER_KERNELS_CUDA_TOPK_COMMON_CUH_

#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/score_format.cuh"

namespace dsinfer {
namespace cuda {

// The order-preserving key of fp32 bits b that are neither NaN nor -0: negatives flipped
// whole, positives' sign bit set (a shift and a LOP3).
__device__ __forceinline__ uint32_t SignFlipKey(uint32_t b) {
  return b ^ (static_cast<uint32_t>(static_cast<int32_t>(b) >> 31) | 0x80000000u);
}

// Larger score -> larger key; NaN gets -inf's key (the twin ranks NaN as -inf, ties by index),
// and -0 gets +0's.
__device__ __forceinline__ uint32_t OrderKey(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;  // -0 and +0 compare equal in the twin: one key
  return SignFlipKey(__float_as_uint(x));
}

// The order-preserving 16-bit key of fp16 score bits: larger key, larger score; NaN is -inf and
// -0 is +0, as OrderKey makes them (so keys tie exactly where OrderKey's keys tie).
__device__ __forceinline__ uint32_t OrderKey16(uint32_t bits) {
  if ((bits & 0x7fffu) > 0x7c00u) bits = 0xfc00u;  // NaN
  if (bits == 0x8000u) bits = 0;                    // -0
  return (bits & 0x8000u) ? (~bits & 0xffffu) : (bits | 0x8000u);
}

// Every key the top-k kernels rank is OrderKey of a stored fp16 score (score_format.cuh): its
// kScoreKeyLowBits low bits are all zeros (a positive score) or all ones (a negative one), so
// a radix digit wholly below them never splits a bucket and the passes skip it — the boundary
// bucket is then one key value, whose first ties by index the compaction takes as it takes
// ties anyway (the same selection, one pass fewer).
constexpr int kScoreKeyLowBits = 13;
// Whether the digit of `bits` bits from bit `shift` can split keys of stored scores.
__host__ __device__ constexpr bool DigitSplitsScores(int shift, int bits) {
  return shift + bits > kScoreKeyLowBits;
}

// OrderKey of the four scores of `bits` (LoadScoreBits4's): NaN and -0 become -inf and +0 two
// at a time in fp16 (a paired max and a paired add), so that each fp32 key is SignFlipKey.
__device__ __forceinline__ uint4 OrderKeys4(uint2 bits) {
  const __half2 neg_inf = __half2half2(__ushort_as_half(0xfc00));
  const __half2 zero = __half2half2(__ushort_as_half(0));
  const auto keys = [&](uint32_t w) {
    const __half2 h = __hadd2(__hmax2(*reinterpret_cast<const __half2*>(&w), neg_inf), zero);
    const float2 f = __half22float2(h);
    return make_uint2(SignFlipKey(__float_as_uint(f.x)), SignFlipKey(__float_as_uint(f.y)));
  };
  const uint2 lo = keys(bits.x), hi = keys(bits.y);
  return make_uint4(lo.x, lo.y, hi.x, hi.y);
}

// Run by one warp: the bucket (of `bins`, higher bucket = larger keys) holding the
// remaining-th largest key, and how many keys lie in buckets above it.
__device__ __forceinline__ void FindBoundaryBucket(const int* hist, int bins, int remaining,
                                                   int* bucket, int* greater_out) {
  const int lane = threadIdx.x % 32;
  const int per = bins / 32;
  const int lo = lane * per;
  int local = 0;
  for (int b = lo; b < lo + per; ++b) local += hist[b];
  // Suffix sums over lanes: keys in bins of lanes above this one.
  int incl = local;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_down_sync(0xffffffffu, incl, o);
    if (lane + o < 32) incl += v;
  }
  const int greater = incl - local;
  if (greater < remaining && remaining <= incl) {
    int acc = greater;
    for (int b = lo + per - 1; b >= lo; --b) {
      if (acc + hist[b] >= remaining) {
        *bucket = b;
        *greater_out = acc;
        break;
      }
      acc += hist[b];
    }
  }
}

template <int kThreads>
using TopKScan = cub::BlockScan<int, kThreads>;

// Run by the whole block of kThreads: as FindBoundaryBucket over bins (a power of two, up to
// 8192) counters, with a block scan instead of one warp's sequential sums (8192 bins would take
// a lane 256 loads). Thread 0 holds the highest chunk of bins, so an exclusive prefix over the
// threads counts the keys in higher chunks. scan_tmp is free on entry and busy on return.
template <int kThreads>
__device__ __forceinline__ void FindBoundaryBucketInBlock(
    const int* hist, int bins, int remaining,
    typename TopKScan<kThreads>::TempStorage& scan_tmp, int* bucket, int* greater_out) {
  const int per = bins > kThreads ? bins / kThreads : 1;
  const int chunk = bins / per - 1 - static_cast<int>(threadIdx.x);
  // A thread's per consecutive counters: from 16 a thread (8192 bins, 512 threads) read rotated
  // by the lane, so that a warp's loads fall in distinct banks (in order they were a 16-way
  // conflict a load; H200, run 32: the two-block top-k's boundary 0.8 us faster at 64 pairs of
  // 256K; at 8 a thread, the resident top-k's, the rotation measured 0.2 us slower).
  const int lane = static_cast<int>(threadIdx.x) % 32;
  const int rot = per < 16 ? 0 : (per >= 32 ? lane : lane / (32 / per)) & (per - 1);
  int local = 0;
  if (chunk >= 0) {
    for (int i = 0; i < per; ++i) local += hist[chunk * per + ((i + rot) & (per - 1))];
  }
  int greater = 0;
  TopKScan<kThreads>(scan_tmp).ExclusiveSum(local, greater);
  if (chunk >= 0 && greater < remaining && remaining <= greater + local) {
    int acc = greater;
    for (int b = (chunk + 1) * per - 1; b >= chunk * per; --b) {
      if (acc + hist[b] >= remaining) {
        *bucket = b;
        *greater_out = acc;
        break;
      }
      acc += hist[b];
    }
  }
}

// One radix pass's step once its histogram of `bins` counters (the digit at `shift`) is
// complete and the block synced: narrows (*prefix, *mask) to the bucket holding the
// *remaining-th largest key and takes the keys above it off *remaining. Returns whether that
// bucket is then taken whole. Run by the whole block, the same results everywhere; it returns
// synced, hist and scan_tmp free for the next pass.
template <int kThreads>
__device__ __forceinline__ bool NarrowToBoundaryBucket(
    const int* hist, int bins, int shift, typename TopKScan<kThreads>::TempStorage& scan_tmp,
    int* sh_bucket, int* sh_greater, int* remaining, uint32_t* prefix, uint32_t* mask) {
  FindBoundaryBucketInBlock<kThreads>(hist, bins, *remaining, scan_tmp, sh_bucket, sh_greater);
  __syncthreads();
  const int bucket = *sh_bucket;
  *remaining -= *sh_greater;
  *prefix |= static_cast<uint32_t>(bucket) << shift;
  *mask |= static_cast<uint32_t>(bins - 1) << shift;
  const bool whole = hist[bucket] == *remaining;
  __syncthreads();
  return whole;
}

// Where a (sequence, KV head) segment's selection goes, once the kept tokens are written.
struct TopKSegment {
  const uint16_t* sc;  // the segment's scores (fp16 bits, score_format.cuh)
  int lo, hi;       // the candidates: tokens [lo, hi) (after the sinks, before the recent window)
  int want;         // how many of them to select; 0: the selection is complete already
  int32_t* mid;     // where the selected candidates go, ascending
};

// What a (sequence, KV head) segment of seq selects: tokens 0 .. sink_end and recent_begin .. n
// kept, `want` of the candidates [sink_end, recent_begin) chosen by score. selecting: a top-k
// remains to run (else the kept tokens, or all candidates, fill the budget).
struct SegmentPlan {
  int n, budget, sink_end, recent_begin, kept, want, cand;
  bool selecting;
};
__device__ __forceinline__ SegmentPlan PlanSegment(const CudaDsSequence& seq) {
  SegmentPlan p;
  p.n = seq.tokens;
  p.budget = min(max(seq.budget, 1), p.n);
  p.sink_end = min(seq.sink, p.n);
  p.recent_begin = max(p.sink_end, p.n - max(seq.recent, 1));
  p.kept = p.sink_end + (p.n - p.recent_begin);
  p.want = p.budget - p.kept;
  p.cand = p.recent_begin - p.sink_end;
  p.selecting = p.n > 0 && p.kept < p.budget && p.want != p.cand;
  return p;
}

// The start every top-k kernel shares for sequence s, KV head h (LaunchTopKSelect's layout),
// run by `threads` threads numbered `tid`: writes the segment's count (by the leader) and its
// kept sink and recent tokens, or the whole selection where those or all candidates fill the
// budget.
__device__ __forceinline__ TopKSegment StartTopKSegment(const uint16_t* scores,
                                                        int64_t score_stride,
                                                        const CudaDsSequence* seqs, int heads_kv,
                                                        int32_t* selected, int64_t sel_stride,
                                                        int32_t* counts, int s, int h, int tid,
                                                        int threads, bool leader) {
  WaitForPrior();  // a top-k launched dependent (LaunchChained) reads the scores after it
  const int64_t pair = static_cast<int64_t>(s) * heads_kv + h;
  const uint16_t* sc = scores + pair * score_stride;
  int32_t* out = selected + pair * sel_stride;
  int32_t* count = counts + pair;
  const SegmentPlan p = PlanSegment(seqs[s]);
  const int n = p.n, budget = p.budget, sink_end = p.sink_end, recent_begin = p.recent_begin;
  if (n <= 0) {
    if (leader) *count = 0;
    return {sc, 0, 0, 0, out};
  }
  if (leader) *count = budget;
  if (p.kept >= budget) {
    const int sinks = min(sink_end, budget - 1);
    const int recents = budget - sinks;
    for (int i = tid; i < budget; i += threads) out[i] = i < sinks ? i : n - recents + (i - sinks);
    return {sc, 0, 0, 0, out};
  }
  const int want = p.want, cand = p.cand;
  for (int i = tid; i < sink_end; i += threads) out[i] = i;
  for (int i = tid; i < n - recent_begin; i += threads) out[sink_end + want + i] = recent_begin + i;
  int32_t* mid = out + sink_end;
  if (want == cand) {
    for (int i = tid; i < cand; i += threads) mid[i] = sink_end + i;
    return {sc, 0, 0, 0, out};
  }
  return {sc, sink_end, recent_begin, want, mid};
}

// A tile's order among a block's kWarps warps, once each warp's total is in totals[warp] and the
// block synced: the totals of the warps before `warp` (.x) and of all of them (.y), the same on
// every lane of the warp.
template <int kWarps>
__device__ __forceinline__ int2 WarpTotalsBefore(const int* totals, int warp, int lane) {
  const int own = lane < kWarps ? totals[lane] : 0;
  const int incl = WarpInclusiveSum<kWarps>(own, lane);
  return make_int2(__shfl_sync(0xffffffffu, incl - own, warp),
                   __shfl_sync(0xffffffffu, incl, kWarps - 1));
}

// One tile of an ordered compaction, after its kItems flags per thread are made (1: the key
// lies above the boundary prefix; 1 << 16: a boundary tie; 0: neither), this thread's items
// numbered index0 ... index0 + kItems - 1 (blocked arrangement): one block scan orders them,
// the keys above and the first `remaining` ties by index (counting *ties_seen before the
// tile) go to mid from *written, and both counters advance past the tile.
template <int kThreads, int kItems>
__device__ __forceinline__ void CompactTile(const int (&flags)[kItems], int index0, int remaining,
                                            int32_t* mid, int* written, int* ties_seen,
                                            typename TopKScan<kThreads>::TempStorage& scan_tmp) {
  int packed = 0;
#pragma unroll
  for (int u = 0; u < kItems; ++u) packed += flags[u];
  int ex = 0, total = 0;
  TopKScan<kThreads>(scan_tmp).ExclusiveSum(packed, ex, total);
  const int tie_quota = max(remaining - *ties_seen, 0);
  int above_before = ex & 0xffff, ties_before = ex >> 16;
#pragma unroll
  for (int u = 0; u < kItems; ++u) {
    const bool above = flags[u] == 1, tie = flags[u] == (1 << 16);
    if (above || (tie && ties_before < tie_quota)) {
      mid[*written + above_before + min(ties_before, tie_quota)] = index0 + u;
    }
    above_before += above;
    ties_before += tie;
  }
  const int tile_above = total & 0xffff, tile_ties = total >> 16;
  *written += tile_above + min(tile_ties, tie_quota);
  *ties_seen += tile_ties;
  __syncthreads();  // scan_tmp is reused by the next tile
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_COMMON_CUH_
