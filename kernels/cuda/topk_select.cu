// Top-k of Double Sparsity (LaunchTopKSelect, declared in double_sparsity.cuh; its twin
// TopKSelectReference). The kernels (TopKAlgo): radix select over order-preserving uint32 keys
// (NaN maps onto -inf's key, as the twin ranks NaN as -inf), early exit once the boundary
// bucket is taken whole, then an ordered compaction (cub::BlockScan) writing ascending
// indices, boundary ties lowest index first.
//  - kOneBlock: one 1024-thread block per (sequence, KV head) streaming
//    the scores per pass (digits 11/11/10) — selection must see the whole segment, and
//    batch × KV heads blocks fill the GPU at batch >= 8.
//  - kTwoRead: the same grid with 512-thread blocks reading the scores twice: a 13-bit
//    histogram, then an ordered split (keys above the boundary bucket to the output, the
//    bucket's to shared memory, where the remaining 10- and 9-bit digits are resolved).
//  - kStriped: kTwoRead's reads and finish with striped 8-byte loads for the histogram, the
//    split with each thread owning 16 or 32 consecutive keys of a tile (OwnedSplit),
//    classified by paired fp16 comparisons and ordered by a warp scan and one exchange a tile
//    (its comment below); where the pairs number at most half the SMs, a cluster of two blocks
//    per pair, each taking half the row (TopKSelectStripedPartsKernel).
//  - kMultiBlock: kStriped's reads and finish over many blocks per (sequence, KV head), three
//    kernels meeting in a workspace, its split with striped loads (StripedSplit; its comment
//    below).
//  - kCluster (score_stride > 8192 only): a thread-block cluster
//    per (sequence, KV head) that loads the scores once into shared memory and merges its
//    blocks' histograms through distributed shared memory.
//  - kResident (topk_resident.cu): one 1024-thread block per (sequence, KV head) holding the
//    row's keys in shared memory, for rows that fit it.
//  - kAuto (the default): double_sparsity.cuh gives its rule and the measured reasons.
#include <algorithm>
#include <utility>
#include <cooperative_groups.h>
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "absl/status/statusor.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/cluster_select.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda/topk_in_memory.cuh"
#include "kernels/cuda/topk_resident.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::CachedLaunchInfo;
using cuda::ClearClusterHistograms;
using cuda::ClusterSelect;
using cuda::ClusterSelectShared;
using cuda::ClusterSlice;
using cuda::ClusterSliceKeys;
using cuda::ClusterSliceOf;
using cuda::DigitSplitsScores;
using cuda::FindBoundaryBucketInBlock;
using cuda::LaunchInfo;
using cuda::LoadScore;
using cuda::LoadScoreBits4;
using cuda::LoadScores4;
using cuda::NarrowToBoundaryBucket;
using cuda::OrderedCompaction;
using cuda::OrderKey;
using cuda::OrderKey16;
using cuda::OrderKeys4;
using cuda::RadixHistogram;
using cuda::RadixPassesInMemory;
using cuda::PlanSegment;
using cuda::ScoreValues4;
using cuda::SelectInMemory;
using cuda::SelectInMemoryShared;
using cuda::SegmentPlan;
using cuda::StartTopKSegment;
using cuda::TopKScan;
using cuda::TopKSegment;
using cuda::WarpInclusiveSum;
using cuda::WarpTotalsBefore;

constexpr int kTopKThreads = 1024;
// The one-block top-k is compiled for two resident blocks per SM (32 registers a thread): on
// an H200 it was issue- and latency-bound at one (ncu), and two are 10-17% faster with half
// the loads and compaction keys per thread.
constexpr int kTopKBlocksPerSm = 2;
constexpr int kTopKUnroll = 8;  // histogram loads in flight per thread
constexpr int kTopKItems = 8;   // candidates per thread per compaction tile
// Top-k of segments longer than this (score_stride, which bounds every segment) runs on a
// cluster of blocks holding the keys in shared memory; shorter ones on one block, whose fixed
// cost is a few microseconds.
constexpr int64_t kTopKShortSegment = 8192;
// Blocks a cluster: up to 16 (non-portable past 8, where the hardware takes it:
// MaxClusterBlocks), a block holding about kTopKKeysPerBlock keys (TopKClusterBlocks may give
// a block more). Run 15 (H200, 8 pairs, fp32 keys): 16K keys a block took 20-21 us at 64K and
// 128K, 32K keys a block (a cluster of 8 at 256K) 30.
constexpr int kTopKClusterMax = 16;
constexpr int kTopKClusterPortable = 8;
constexpr int64_t kTopKKeysPerBlock = 16384;
// TopKRowBound rounds the longest row up to a multiple of 1/kTopKRowBoundSteps of the stride.
constexpr int64_t kTopKRowBoundSteps = 16;
constexpr int kTopKClusterThreads = 512;

// ---------------------------------------------------------------------------------------------
// Top-k.

// kOneBlock: radix passes of 11/11/10-bit digits over the scores in memory, then the ordered
// compaction — up to four reads of the scores.
__global__ void __launch_bounds__(kTopKThreads, kTopKBlocksPerSm)
    TopKSelectKernel(const uint16_t* scores, int64_t score_stride, const CudaDsSequence* seqs,
                     int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts) {
  __shared__ TopKScan<kTopKThreads>::TempStorage scan_tmp;
  __shared__ int hist[2048];
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kTopKThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  SelectInMemory<kTopKThreads, kTopKUnroll, kTopKItems>(seg, hist, scan_tmp);
}

// kTwoRead: the scores are read twice. Read 1 takes a 13-bit histogram (the boundary bucket
// then holds ~0.5-1.5% of a 1/16 segment's candidates). Read 2 is an ordered split: keys above
// the boundary bucket (winners) go straight to their rank among winners in mid, the boundary
// bucket's keys (candidates) to shared memory with their index and the count of winners before
// them. The boundary among the candidates is found in shared memory (10- and 9-bit digits),
// then the winners move right by the chosen candidates before them (back to front, so none is
// overwritten before it is read) and the chosen candidates fill the gaps. A boundary bucket
// larger than kTwoReadCandidates (scores with few distinct values near the boundary) continues
// as kOneBlock does, from its second pass. 512 threads with 64 registers (two blocks per SM,
// as the shared memory allows): at 1024 threads and 32 registers the split spilled.
constexpr int kTwoReadThreads = 512;
constexpr int kTwoReadUnroll = 8;  // histogram loads per batch (two batches in flight)
constexpr int kTwoReadBits0 = 13, kTwoReadBits1 = 10, kTwoReadBits2 = 9;
constexpr int kTwoReadFirstBins = 1 << kTwoReadBits0;
constexpr int kTwoReadCandidates = 6144;
constexpr uint32_t kChosenBit = 0x80000000u;
// Dynamic shared memory: the histogram, then each candidate's key, index and winners before.
constexpr size_t kTwoReadSmem = (kTwoReadFirstBins + 3 * kTwoReadCandidates) * sizeof(int);

// The eight scores t = first .. first + 7, with 8-byte loads where the row allows (vec: the
// row is 8-byte aligned and first a multiple of 4); loads at or past hi are skipped.
__device__ __forceinline__ void LoadEightScores(const uint16_t* sc, int first, int hi, bool vec,
                                                float (&x)[8]) {
  if (vec && first + 8 <= hi) {
    const float4 a = LoadScores4(sc + first);
    const float4 b = LoadScores4(sc + first + 4);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z,
    x[7] = b.w;
    return;
  }
#pragma unroll
  for (int u = 0; u < 8; ++u) x[u] = first + u < hi ? LoadScore(sc + first + u) : 0.0f;
}
static_assert(kTopKItems == 8, "LoadEightScores");

// The end of the two-read bodies, once the split has put the greater winners (keys above the
// boundary bucket of (prefix, mask)) at their rank among winners in mid and the bucket's cands
// keys, indices and winners before them in shared memory, in index order: the boundary among
// the candidates (the remaining digits, over shared memory, choosing take of them), then the
// winners move right by the chosen candidates before them (back to front, so none is
// overwritten before it is read) and the chosen candidates fill the gaps. hist (kHistBins
// counters, at least 1 << kTwoReadBits1) and scan_tmp are free on entry. first_pass 0: the
// candidates span several first-digit buckets (a sampled band; prefix and mask 0), so the
// digits are resolved from the first (hist then holds at least kTwoReadFirstBins counters).
// kMoveItems: winners a thread moves a pass (as many as hist holds counters for, at most).
template <int kThreads, int kHistBins = kTwoReadFirstBins, int kMoveItems = 8>
__device__ __forceinline__ void FinishSplitInShared(
    int cands, int take, uint32_t prefix, uint32_t mask, int greater, int* hist, uint32_t* cand_key,
    const int32_t* cand_idx, const int32_t* cand_wb, int32_t* mid,
    typename TopKScan<kThreads>::TempStorage& scan_tmp, int first_pass = 1) {
  using Scan = TopKScan<kThreads>;
  __shared__ int sh_bucket, sh_greater;
  constexpr int kShift = 32 - kTwoReadBits0;
  const int chosen_total = take;
  // The boundary among the candidates: the remaining digits over shared memory.
  bool whole = cands == take;
  int shift = first_pass == 0 ? 32 : kShift;
  for (int pass = first_pass; pass < 3 && !whole; ++pass) {
    const int bits = pass == 0 ? kTwoReadBits0 : (pass == 1 ? kTwoReadBits1 : kTwoReadBits2);
    shift -= bits;
    if (!DigitSplitsScores(shift, bits)) break;
    const int bins = 1 << bits;
    const uint32_t digit_mask = static_cast<uint32_t>(bins - 1);
    for (int b = threadIdx.x; b < bins; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int c = threadIdx.x; c < cands; c += kThreads) {
      const uint32_t key = cand_key[c];
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & digit_mask], 1);
    }
    __syncthreads();
    whole = NarrowToBoundaryBucket<kThreads>(hist, bins, shift, scan_tmp, &sh_bucket, &sh_greater,
                                             &take, &prefix, &mask);
  }

  // Which candidates are chosen (above the boundary, or its first `take` ties by index), and
  // how many chosen ones precede each: stored over the key as count | kChosenBit.
  int chosen_seen = 0, ties_seen = 0;
  for (int base = 0; base < cands; base += kThreads * kTopKItems) {
    const int first = base + threadIdx.x * kTopKItems;
    int packed = 0;
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      if (first + u < cands) {
        const uint32_t kp = cand_key[first + u] & mask;
        packed += kp > prefix ? 1 : (kp == prefix ? (1 << 16) : 0);
      }
    }
    int ex = 0, total = 0;
    Scan(scan_tmp).ExclusiveSum(packed, ex, total);
    const int tie_quota = max(take - ties_seen, 0);
    int above_before = ex & 0xffff, ties_before = ex >> 16;
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      if (first + u >= cands) break;
      const uint32_t kp = cand_key[first + u] & mask;
      const bool above = kp > prefix, tie = kp == prefix;
      const bool chosen = above || (tie && ties_before < tie_quota);
      cand_key[first + u] =
          static_cast<uint32_t>(chosen_seen + above_before + min(ties_before, tie_quota)) |
          (chosen ? kChosenBit : 0u);
      above_before += above;
      ties_before += tie;
    }
    chosen_seen += (total & 0xffff) + min(total >> 16, tie_quota);
    ties_seen += total >> 16;
    __syncthreads();  // scan_tmp is reused by the next tile; cand_key complete after the last
  }
  // Winner r moves right by moved(r), the chosen candidates with at most r winners before them.
  // A pass takes kFixTile winners, thread t those r = r0 + u × kThreads + t (a warp's loads and
  // stores contiguous); passes run back to front so that no winner is overwritten before it is
  // read. moved(r) over a pass is a difference array in hist (each chosen candidate adds 1 at
  // its winners-before, warp scans sum them) above the chosen before the pass: O(winners +
  // candidates) where a binary search per winner over the candidates was ~23% of the striped
  // kernel's instructions at 256K (ncu, run 21). Run 32 (H200, phase traces of the two-block
  // kernel at 64 pairs × 256K, 16K winners): 7.4 us in 4 passes of 8 winners a thread, 6.6 in
  // 2 of 16 with the next pass's loads in flight; a warp walking the candidates instead (one
  // barrier a round, no difference array) took 9.3-12 (move-lanes-experiment.patch).
  constexpr int kFixItems = kHistBins / kThreads < kMoveItems ? kHistBins / kThreads : kMoveItems;
  constexpr int kFixTile = kThreads * kFixItems;
  static_assert(kFixItems >= 1, "a pass's difference array fits hist");
  __shared__ int sh_range[2];  // the pass's candidates: wb in [r0, r0 + kFixTile) <=> c in range
  __shared__ int sh_warp_total[kThreads / 32];  // a pass's counters summed by each warp
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  // The first candidate with at least `r` winners before it (cand_wb ascends).
  const auto first_at_least = [&](int r) {
    int lo = 0, hi = cands;
    while (lo < hi) {
      const int m = (lo + hi) / 2;
      if (cand_wb[m] < r) lo = m + 1; else hi = m;
    }
    return lo;
  };
  // The pass's winners, loaded during the pass before (a pass writes only at or above its
  // first rank, so the next pass's ranks are final once this one's are read) where a block has
  // an SM's registers (more than 8 winners a thread; at two blocks an SM the second set spilled).
  constexpr bool kPrefetch = kFixItems > 8;
  const auto load_pass = [&](int p0, int (&idx)[kFixItems]) {
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) {
      const int r = p0 + static_cast<int>(threadIdx.x) + u * kThreads;
      idx[u] = r >= 0 ? mid[r] : 0;
    }
  };
  int next[kFixItems];
  if (kPrefetch && greater > 0) load_pass(greater - kFixTile, next);
  for (int top = greater; top > 0; top -= kFixTile) {
    const int p0 = top - kFixTile;  // the pass's first rank (negative ranks: none)
    const int r0 = p0 + static_cast<int>(threadIdx.x);
    int idx[kFixItems];
    if (kPrefetch) {
#pragma unroll
      for (int u = 0; u < kFixItems; ++u) idx[u] = next[u];
      if (p0 > 0) load_pass(p0 - kFixTile, next);
    } else {
      load_pass(p0, idx);
    }
    if (threadIdx.x < 2) sh_range[threadIdx.x] = first_at_least(p0 + threadIdx.x * kFixTile);
    for (int j = threadIdx.x; j < kFixTile; j += kThreads) hist[j] = 0;
    __syncthreads();
    const int c_lo = sh_range[0], c_hi = sh_range[1];
    for (int c = c_lo + static_cast<int>(threadIdx.x); c < c_hi; c += kThreads) {
      if (cand_key[c] & kChosenBit) atomicAdd(&hist[cand_wb[c] - p0], 1);
    }
    __syncthreads();
    // hist[j] := the chosen candidates with at most p0 + j winners before them: warp w sums its
    // kFixItems × 32 counters from w × kFixItems × 32, lane l every 32nd from l (conflict-free,
    // where a thread's kFixItems consecutive counters were a kFixItems-way bank conflict a
    // load), by warp scans and the warps' totals before it.
    const int before = c_lo < cands ? static_cast<int>(cand_key[c_lo] & ~kChosenBit) : chosen_total;
    int* const seg_hist = hist + warp * 32 * kFixItems + lane;
    int run[kFixItems], carry = 0;
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) {
      const int incl = WarpInclusiveSum(seg_hist[32 * u], lane);
      run[u] = carry + incl;
      carry += __shfl_sync(0xffffffffu, incl, 31);
    }
    if (lane == 0) sh_warp_total[warp] = carry;
    __syncthreads();
    const int warp_before =
        WarpTotalsBefore<kThreads / 32>(sh_warp_total, warp, lane).x + before;
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) seg_hist[32 * u] = warp_before + run[u];
    __syncthreads();
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) {
      const int r = r0 + u * kThreads;
      const int moved = hist[r - p0];
      if (r >= 0 && moved > 0) mid[r + moved] = idx[u];
    }
    __syncthreads();  // hist, sh_range and scan_tmp are reused by the next pass
  }
  for (int c = threadIdx.x; c < cands; c += kThreads) {
    const uint32_t v = cand_key[c];
    if (v & kChosenBit) mid[cand_wb[c] + static_cast<int>(v & ~kChosenBit)] = cand_idx[c];
  }
}

// The two-read bodies' step between their reads. After read 1 (hist holds the first digit's
// counts, the block synced): the boundary bucket, the winners above it, the candidates in it
// and the radix state that selects `take` of them; the block synced again, so hist may be
// rewritten. The whole block calls it and gets the same values.
struct FirstDigitSplit {
  int bucket, greater, cands, take;
  uint32_t prefix, mask;
};
template <int kThreads>
__device__ __forceinline__ FirstDigitSplit SplitAtFirstDigit(
    const int* hist, int want, typename TopKScan<kThreads>::TempStorage& scan_tmp,
    int* sh_bucket, int* sh_greater) {
  constexpr int kShift = 32 - kTwoReadBits0;
  FindBoundaryBucketInBlock<kThreads>(hist, kTwoReadFirstBins, want, scan_tmp, sh_bucket,
                                      sh_greater);
  __syncthreads();
  FirstDigitSplit f;
  f.bucket = *sh_bucket;
  f.greater = *sh_greater;  // winners
  f.cands = hist[f.bucket];
  f.take = want - f.greater;  // candidates to choose, 1 .. cands
  f.prefix = static_cast<uint32_t>(f.bucket) << kShift;
  f.mask = static_cast<uint32_t>(kTwoReadFirstBins - 1) << kShift;
  __syncthreads();  // hist is rewritten after
  return f;
}

// The two-read bodies' way out when the boundary bucket does not fit shared memory: the
// remaining digits by radix passes over the scores, then the ordered compaction (kOneBlock's
// passes from its second digit on).
template <int kThreads>
__device__ __forceinline__ void FinishByRadixPasses(
    const TopKSegment& seg, int* hist, typename TopKScan<kThreads>::TempStorage& scan_tmp,
    FirstDigitSplit f) {
  RadixPassesInMemory<kThreads, kTwoReadUnroll, kTwoReadBits0, kTwoReadBits1, kTwoReadBits2>(
      seg.sc, seg.lo, seg.hi, 1, hist, scan_tmp, &f.prefix, &f.mask, &f.take,
      f.cands == f.take);
  OrderedCompaction<kThreads, kTopKItems>(seg.sc, seg.lo, seg.hi, f.prefix, f.mask, f.take,
                                          seg.mid, scan_tmp);
}

// The dynamic shared memory of the two-read bodies (kTwoReadSmem bytes): the first digit's
// histogram, then the boundary bucket's candidates — keys, indices and earlier-winner counts.
struct TwoReadSmem {
  int* hist;
  uint32_t* cand_key;
  int32_t* cand_idx;
  int32_t* cand_wb;
};
// (The multi-block finish carves the same layout with fewer counters and more candidates.)
__device__ __forceinline__ TwoReadSmem CarveTwoReadSmem(int* base, int bins = kTwoReadFirstBins,
                                                        int capacity = kTwoReadCandidates) {
  TwoReadSmem m;
  m.hist = base;
  m.cand_key = reinterpret_cast<uint32_t*>(base + bins);
  m.cand_idx = reinterpret_cast<int32_t*>(m.cand_key + capacity);
  m.cand_wb = m.cand_idx + capacity;
  return m;
}

__global__ void __launch_bounds__(kTwoReadThreads, 2)
    TopKSelectTwoReadKernel(const uint16_t* scores, int64_t score_stride,
                            const CudaDsSequence* seqs, int heads_kv, int32_t* selected,
                            int64_t sel_stride, int32_t* counts) {
  constexpr int kThreads = kTwoReadThreads;
  using Scan = TopKScan<kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ int sh_bucket, sh_greater;
  extern __shared__ int two_read_smem[];
  const TwoReadSmem smem = CarveTwoReadSmem(two_read_smem);
  int* const hist = smem.hist;
  uint32_t* const cand_key = smem.cand_key;
  int32_t* const cand_idx = smem.cand_idx;
  int32_t* const cand_wb = smem.cand_wb;
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  const uint16_t* sc = seg.sc;
  int32_t* mid = seg.mid;

  // Read 1: the first digit's histogram and its boundary bucket.
  constexpr int kShift = 32 - kTwoReadBits0;
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  RadixHistogram<kThreads, kTwoReadUnroll, true>(sc, seg.lo, seg.hi, 0, 0, kShift,
                                                 kTwoReadFirstBins - 1, hist);
  __syncthreads();
  const FirstDigitSplit split =
      SplitAtFirstDigit<kThreads>(hist, seg.want, scan_tmp, &sh_bucket, &sh_greater);
  if (split.cands > kTwoReadCandidates) {
    FinishByRadixPasses<kThreads>(seg, hist, scan_tmp, split);
    return;
  }
  const int greater = split.greater, cands = split.cands, take = split.take;
  const uint32_t prefix = split.prefix, mask = split.mask;

  // Read 2: winners to mid at their rank among winners, candidates to shared memory.
  // Each thread's next tile is loaded before this tile's scan and writes.
  const bool vec = (reinterpret_cast<uintptr_t>(sc) & 7) == 0;
  const int start = vec ? seg.lo & ~3 : seg.lo;
  constexpr int kTile = kThreads * kTopKItems;
  int winners = 0, held = 0;
  float x[kTopKItems];
  LoadEightScores(sc, start + threadIdx.x * kTopKItems, seg.hi, vec, x);
  for (int base = start; base < seg.hi; base += kTile) {
    const int first = base + threadIdx.x * kTopKItems;
    uint32_t kinds = 0;  // 2 bits per item: 1 winner, 2 candidate
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      const int t = first + u;
      const uint32_t kp = OrderKey(x[u]) & mask;
      if (t >= seg.lo && t < seg.hi) {
        kinds |= (kp > prefix ? 1u : (kp == prefix ? 2u : 0u)) << (2 * u);
      }
    }
    if (base + kTile < seg.hi) LoadEightScores(sc, first + kTile, seg.hi, vec, x);
    int packed = 0;
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      const uint32_t kind = (kinds >> (2 * u)) & 3u;
      packed += kind == 1u ? 1 : (kind == 2u ? (1 << 16) : 0);
    }
    int ex = 0, total = 0;
    Scan(scan_tmp).ExclusiveSum(packed, ex, total);
    int wb = winners + (ex & 0xffff), cb = held + (ex >> 16);
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      const uint32_t kind = (kinds >> (2 * u)) & 3u;
      if (kind == 1u) {
        mid[wb++] = first + u;
      } else if (kind == 2u) {  // ~1% of the items: the key is read again (L1) rather than kept
        cand_key[cb] = OrderKey(LoadScore(sc + first + u));
        cand_idx[cb] = first + u;
        cand_wb[cb] = wb;
        ++cb;
      }
    }
    winners += total & 0xffff;
    held += total >> 16;
    __syncthreads();  // scan_tmp is reused by the next tile
  }

  FinishSplitInShared<kThreads>(cands, take, prefix, mask, greater, hist, cand_key, cand_idx,
                                 cand_wb, mid, scan_tmp);
}

// kStriped: kTwoRead's two reads and shared-memory finish (FinishSplitInShared), with the
// instruction count per score cut (ncu of kTwoRead: ~83 per score, latency-bound, 57% of its
// global sectors excess). Loads are striped: consecutive lanes take consecutive 16-byte
// chunks of the row (chunks of the 16-byte-aligned address at or before it, so any row stride
// gets them; the chunks that hold a token outside the candidates are loaded by element, in
// the tiles that hold them). Read 1 adds every key's 13-bit digit to the histogram, with
// kStripedHistChunks chunks in flight per thread. Read 2 is OwnedSplit (below), the split
// kStriped ran until run 21 StripedSplit, which kMultiBlock's split kernel still runs (its
// slices start at a count of earlier winners and candidates, into the workspace): it
// classifies by two float comparisons
// (against the least scores of the boundary bucket and of the bucket above it, which order
// exactly as the keys do) into one bit per score of two masks; a tile gives each warp
// kStripedRounds × 32 consecutive chunks (round u: chunks u × 32 + lane), so the order among
// a warp's winners and candidates is a warp scan of per-round counts packed one per byte
// (four rounds of both kinds in two words), and the order among warps one exchange of 16
// counts per tile (one __syncthreads, double-buffered). Winners are staged per warp in shared
// memory (over the histogram, free by then) and leave as contiguous runs; a candidate's key is
// read again (L1), the first one per lane before the next tile's loads reuse the registers.
// The next tile's loads are issued before this tile's scan, exchange and writes.
constexpr int kStripedThreads = 512;
constexpr int kStripedWarps = kStripedThreads / 32;
constexpr int kStripedHistChunks = 8;  // 8-byte chunks a thread has in flight in read 1
constexpr int kStripedRounds = 4;      // 8-byte chunks a lane classifies per tile in read 2
constexpr int kStripedWarpChunks = kStripedRounds * 32;
constexpr int kStripedTileChunks = kStripedWarps * kStripedWarpChunks;
static_assert(kStripedRounds * 8 <= 32, "a lane's classification of a tile fits a word");
static_assert(kStripedTileChunks * 4 <= kTwoReadFirstBins, "the winners' staging fits hist");
static_assert(kStripedWarps <= 32, "one warp exchanges the warps' counts");

// The candidates [lo, hi) of a score row as 8-byte chunks of four scores: chunk c holds tokens
// 4c - a .. 4c - a + 3 (a: the row's offset in scores from the 8-byte boundary at or before it).
struct StripedRow {
  const uint16_t* sc;
  const uint16_t* p4;  // the 8-byte boundary at or before sc: chunk c at p4 + 4c
  int a, lo, hi;
  int c_begin, c_end;        // chunks holding a candidate
  int full_begin, full_end;  // chunks holding only candidates
};

__device__ __forceinline__ StripedRow MakeStripedRow(const uint16_t* sc, int lo, int hi) {
  StripedRow r;
  r.sc = sc;
  r.p4 = reinterpret_cast<const uint16_t*>(reinterpret_cast<uintptr_t>(sc) & ~uintptr_t{7});
  r.a = static_cast<int>((reinterpret_cast<uintptr_t>(sc) >> 1) & 3);
  r.lo = lo;
  r.hi = hi;
  r.c_begin = (lo + r.a) >> 2;
  r.c_end = (hi + r.a + 3) >> 2;
  r.full_begin = (lo + r.a + 3) >> 2;
  r.full_end = (hi + r.a) >> 2;
  return r;
}

// Whether token t is a candidate of the row.
__device__ __forceinline__ bool StripedValid(const StripedRow& r, int t) {
  return static_cast<unsigned>(t - r.lo) < static_cast<unsigned>(r.hi - r.lo);
}

// Whether the tile of `chunks` chunks from tb holds a chunk that is not all candidates.
__device__ __forceinline__ bool StripedTileChecked(const StripedRow& r, int tb, int chunks) {
  return tb < r.full_begin || tb + chunks > r.full_end;
}

// Chunk c of the row as its fp16 bits (one 8-byte load), and as scores.
__device__ __forceinline__ uint2 LoadChunkBits(const StripedRow& r, int c) {
  return LoadScoreBits4(r.p4 + 4 * c);
}
__device__ __forceinline__ float4 LoadChunk(const StripedRow& r, int c) {
  return ScoreValues4(LoadChunkBits(r, c));
}

// Chunk c of the row's bits with its non-candidates' as 0 (and no load outside the candidates).
__device__ __forceinline__ uint2 LoadChunkBitsChecked(const StripedRow& r, int c) {
  if (c >= r.full_begin && c < r.full_end) return LoadChunkBits(r, c);
  uint16_t e[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const int t = 4 * c - r.a + k;
    e[k] = StripedValid(r, t) ? __ldg(r.sc + t) : uint16_t{0};
  }
  return make_uint2(e[0] | static_cast<uint32_t>(e[1]) << 16,
                    e[2] | static_cast<uint32_t>(e[3]) << 16);
}

// Chunk c of the row with its non-candidates as 0 (and no load outside the candidates).
__device__ __forceinline__ float4 LoadChunkChecked(const StripedRow& r, int c) {
  return ScoreValues4(LoadChunkBitsChecked(r, c));
}

// Read 1 over one tile: chunks tb + u × kStripedThreads + thread, all loaded before any is
// counted. kCheck: the tile holds chunks that are not all candidates.
template <bool kCheck>
__device__ __forceinline__ void StripedHistogramTile(const StripedRow& r, int tb, int* hist) {
  constexpr int kShift = 32 - kTwoReadBits0;
  const int c0 = tb + static_cast<int>(threadIdx.x);
  uint2 x[kStripedHistChunks];
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const int c = c0 + u * kStripedThreads;
    if (kCheck) {
      x[u] = c < r.c_end ? LoadChunkBitsChecked(r, c) : make_uint2(0u, 0u);
    } else {
      x[u] = LoadChunkBits(r, c);
    }
  }
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const uint4 k4 = OrderKeys4(x[u]);
    const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
    const int t = 4 * (c0 + u * kStripedThreads) - r.a;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!kCheck || StripedValid(r, t + e)) atomicAdd(&hist[k[e] >> kShift], 1);
    }
  }
}

// Read 2's loads for one tile: round u of this lane is chunk c0 + u × 32.
template <bool kCheck>
__device__ __forceinline__ void LoadSplitTile(const StripedRow& r, int c0,
                                              float4 (&x)[kStripedRounds]) {
#pragma unroll
  for (int u = 0; u < kStripedRounds; ++u) {
    const int c = c0 + u * 32;
    if (kCheck) {
      x[u] = c < r.c_end ? LoadChunkChecked(r, c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
      x[u] = LoadChunk(r, c);
    }
  }
}

// All ones where x >= y (NaN: never), else 0: one FSET, so that a flag costs a LOP3 more.
__device__ __forceinline__ uint32_t AtLeastBits(float x, float y) {
  uint32_t r;
  asm("set.ge.u32.f32 %0, %1, %2;" : "=r"(r) : "f"(x), "f"(y));
  return r;
}

// StripedSplit's classification of a lane's rounds of a tile (t0: the token of round 0's first
// element, round u 128 tokens on): bit 8u + e of *win is set where element e of round u is at
// least thr (a winner), of *ge where it is at least flo (a winner or a candidate); tokens
// outside the candidates (kCheck) set neither.
template <bool kCheck>
__device__ __forceinline__ void ClassifySplitTile(const StripedRow& r,
                                                  const float4 (&x)[kStripedRounds], int t0,
                                                  float thr, float flo, uint32_t* win,
                                                  uint32_t* ge) {
  uint32_t w = 0, g = 0;
#pragma unroll
  for (int u = 0; u < kStripedRounds; ++u) {
    const float f[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      uint32_t bit = 1u << (8 * u + e);
      if (kCheck && !StripedValid(r, t0 + 128 * u + e)) bit = 0;
      w |= AtLeastBits(f[e], thr) & bit;
      g |= AtLeastBits(f[e], flo) & bit;
    }
  }
  *win = w;
  *ge = g;
}

// LoadSplitTile / ClassifySplitTile for the tile of kStripedTileChunks chunks from tb, checked
// only where the tile holds chunks that are not all candidates.
__device__ __forceinline__ void LoadSplitTileAt(const StripedRow& r, int tb, int lane_chunk,
                                                float4 (&x)[kStripedRounds]) {
  if (StripedTileChecked(r, tb, kStripedTileChunks)) {
    LoadSplitTile<true>(r, tb + lane_chunk, x);
  } else {
    LoadSplitTile<false>(r, tb + lane_chunk, x);
  }
}
__device__ __forceinline__ void ClassifySplitTileAt(const StripedRow& r, int tb,
                                                    const float4 (&x)[kStripedRounds], int t0,
                                                    float thr, float flo, uint32_t* win,
                                                    uint32_t* ge) {
  if (StripedTileChecked(r, tb, kStripedTileChunks)) {
    ClassifySplitTile<true>(r, x, t0, thr, flo, win, ge);
  } else {
    ClassifySplitTile<false>(r, x, t0, thr, flo, win, ge);
  }
}

// The token offset from a lane's t0 of bit 8u + e of its classification: round u's chunk is
// 32 chunks (128 tokens) after round u - 1's.
__device__ __forceinline__ int SplitBitToken(int bit) { return ((bit >> 3) << 7) + (bit & 7); }

// The sum of bytes 0 .. u - 1 (u < 4) of per-round counts packed one per byte, and of all four.
__device__ __forceinline__ int RoundsBefore(uint32_t rounds, int u) {
  return static_cast<int>(__dp4a(rounds, 0x01010101u & ((1u << (8 * u)) - 1u), 0u));
}
__device__ __forceinline__ int RoundsTotal(uint32_t rounds) {
  return static_cast<int>(__dp4a(rounds, 0x01010101u, 0u));
}

// The least score whose OrderKey is at least k (OrderKey's inverse on the keys it makes).
__device__ __forceinline__ float FloorOfKey(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// FloorOfKey for a key that may lie past +inf's: NaN there (no score is at least it).
__device__ __forceinline__ float KeyFloor(uint64_t key) {
  if (key > 0xff800000ull) return __uint_as_float(0x7fffffffu);
  return FloorOfKey(static_cast<uint32_t>(key));
}

// The least score whose OrderKey is at least bucket << 19 (13-bit buckets above -inf's, 15;
// bucket 8192 or one past +inf's: NaN, which no score compares at least).
__device__ __forceinline__ float BucketFloor(int bucket) {
  if (bucket >= kTwoReadFirstBins) return __uint_as_float(0x7fffffffu);
  return FloorOfKey(static_cast<uint32_t>(bucket) << (32 - kTwoReadBits0));
}

// Read 1 of the row r: every candidate's 13-bit digit added to hist.
__device__ __forceinline__ void StripedHistogram(const StripedRow& r, int* hist) {
  constexpr int kHistTile = kStripedHistChunks * kStripedThreads;
  for (int tb = r.c_begin; tb < r.c_end; tb += kHistTile) {
    if (StripedTileChecked(r, tb, kHistTile)) {
      StripedHistogramTile<true>(r, tb, hist);
    } else {
      StripedHistogramTile<false>(r, tb, hist);
    }
  }
}

// The shared memory read 2 works in: per warp its winners of a tile (kStripedWarpChunks × 4
// slots), and the warps' counts of a tile, double-buffered.
struct StripedSplitSmem {
  int* stage;                       // kStripedTileChunks × 4 ints
  int (*exchange)[kStripedWarps];  // [2][kStripedWarps]
};

// Where read 2 sends a row's keys: winners to mid at their rank among winners (winners of
// earlier rows or slices already counted in `winners`), the boundary bucket's candidates to
// cand_key / cand_idx / cand_wb at their rank (`held` before them), with the winners before
// each. thr / flo: the least scores of the bucket above the boundary's and of the boundary's.
// Winners at rank win_limit or later and candidates at cand_cap or later are counted but not
// written (a sampled band, below, may hold more than there is room for).
struct StripedSplitOut {
  int32_t* mid;
  uint32_t* cand_key;
  int32_t* cand_idx;
  int32_t* cand_wb;
  int winners, held;
  int win_limit, cand_cap;
};

// Read 2 over the row r (the whole block); returns the winners and candidates counted, those
// of dst included (the same for every thread).
__device__ __forceinline__ int2 StripedSplit(const StripedRow& r, float thr, float flo,
                                             StripedSplitOut dst, StripedSplitSmem sm) {
  int32_t* const mid = dst.mid;
  uint32_t* const cand_key = dst.cand_key;
  int32_t* const cand_idx = dst.cand_idx;
  int32_t* const cand_wb = dst.cand_wb;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  int* stage = sm.stage + warp * kStripedWarpChunks * 4;  // this warp's winners of a tile
  const int lane_chunk = warp * kStripedWarpChunks + lane;
  float4 x[kStripedRounds];
  LoadSplitTileAt(r, r.c_begin, lane_chunk, x);
  int winners = dst.winners, held = dst.held, parity = 0;
  for (int tb = r.c_begin; tb < r.c_end; tb += kStripedTileChunks) {
    const int t0 = 4 * (tb + lane_chunk) - r.a;
    uint32_t win, ge;
    ClassifySplitTileAt(r, tb, x, t0, thr, flo, &win, &ge);
    const uint32_t cand = ge & ~win;
    float first_cand = 0.0f;  // the lane's first candidate, read before x is reloaded
    if (cand != 0u) first_cand = LoadScore(r.sc + t0 + SplitBitToken(__ffs(cand) - 1));
    const int next = tb + kStripedTileChunks;
    if (next < r.c_end) LoadSplitTileAt(r, next, lane_chunk, x);
    // Per-round counts, one per byte (winners in the low nibbles, candidates in the high ones
    // before the split), and their exclusive prefix over the warp's lanes.
    uint32_t v = win | (cand << 4);
    v = v - ((v >> 1) & 0x55555555u);
    v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    const uint32_t win_n = v & 0x0f0f0f0fu, cand_n = (v >> 4) & 0x0f0f0f0fu;
    uint32_t win_in = win_n, cand_in = cand_n;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const uint32_t w = __shfl_up_sync(0xffffffffu, win_in, d);
      const uint32_t c = __shfl_up_sync(0xffffffffu, cand_in, d);
      if (lane >= d) {
        win_in += w;
        cand_in += c;
      }
    }
    const uint32_t win_ex = win_in - win_n, cand_ex = cand_in - cand_n;
    const uint32_t win_rounds = __shfl_sync(0xffffffffu, win_in, 31);
    const uint32_t cand_rounds = __shfl_sync(0xffffffffu, cand_in, 31);
#pragma unroll
    for (int u = 0; u < kStripedRounds; ++u) {
      int* sp = stage + RoundsBefore(win_rounds, u) + static_cast<int>((win_ex >> (8 * u)) & 0xffu);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (win & (1u << (8 * u + e))) *sp++ = t0 + 128 * u + e;
      }
    }
    const int warp_wins = RoundsTotal(win_rounds);
    if (lane == 0) sm.exchange[parity][warp] = warp_wins | (RoundsTotal(cand_rounds) << 16);
    __syncthreads();  // every warp's counts (and this warp's staged winners) are complete
    const int2 order = WarpTotalsBefore<kStripedWarps>(sm.exchange[parity], warp, lane);
    const int before = order.x, total = order.y;
    const int win_base = winners + (before & 0xffff), cand_base = held + (before >> 16);
    for (int i = lane; i < warp_wins && win_base + i < dst.win_limit; i += 32) {
      mid[win_base + i] = stage[i];
    }
    uint32_t left = cand;
    for (bool first = true; left != 0u; first = false) {
      const int bit = __ffs(left) - 1;
      const int u = bit >> 3;
      const uint32_t below = ((1u << bit) - 1u) & ~((1u << (8 * u)) - 1u);  // this round's
      const int t = t0 + SplitBitToken(bit);
      const int c = cand_base + RoundsBefore(cand_rounds, u) +
                    static_cast<int>((cand_ex >> (8 * u)) & 0xffu) + __popc(cand & below);
      if (c < dst.cand_cap) {
        cand_key[c] = OrderKey(first ? first_cand : LoadScore(r.sc + t));
        cand_idx[c] = t;
        cand_wb[c] = win_base + RoundsBefore(win_rounds, u) +
                     static_cast<int>((win_ex >> (8 * u)) & 0xffu) + __popc(win & below);
      }
      left &= left - 1u;
    }
    winners += total & 0xffff;
    held += total >> 16;
    parity ^= 1;
    __syncwarp();  // this warp's stage is rewritten by the next tile
  }
  return make_int2(winners, held);
}

// Read 2 with each thread owning consecutive keys (OwnedSplit, kStriped's): StripedSplit's
// outputs from a fraction of its instructions. In StripedSplit a lane's keys of a tile are 128
// tokens apart (striped loads), so ordering them takes byte-packed per-round counts, two warp
// scans, an exchange and winners staged through shared memory (ncu, run 21: ~25 instructions a
// key at 256 pairs × 64K, 45% of the kernel). Here thread T owns chunks kChunks T .. kChunks T
// + kChunks - 1 of a tile (16 or 32 consecutive keys: a warp's 8-byte loads cover 1 or 2 KB,
// the repeated sectors hit L1), so its winners and candidates are contiguous in the output
// order: a warp scan of their counts and one exchange of the warps' totals a tile place them,
// and a loop over set bits writes them (as the resident top-k's compaction). The next tile's
// chunks load into registers of their own before this tile's scan and writes, so the
// candidates' scores are taken from registers (run 23: re-reading all but a thread's first
// candidate stalled on L1 at 32 keys a thread). The keys stay fp16 bits: two scores are
// classified by one paired fp16 comparison against each threshold (rounded up to fp16, which
// gives the fp32 comparisons' answers), half the instructions of converting each to fp32 and
// comparing it twice.
// kChunks (the 8-byte chunks, four scores each, a thread owns in a tile): 4 or 8. Each tile
// costs a chain of dependent steps (the scan, the barrier, the exchange) that does not grow
// with its keys: where the blocks number at most the SMs (one a SM: each block's latency is
// the kernel's) 8 chunks halve the tiles, compiled for one block a SM (80 registers). Run 23
// call 4 (H200, 1/16 of 256K rows): 64 pairs 73.0 -> 63.0 us, 128 pairs 77.2 -> 64.4; at 256
// pairs (two blocks a SM) 4 chunks, which were even with 8 there or 1-2% ahead (call 2).
constexpr int kOwnedChunksFew = 8, kOwnedChunksMany = 4;
// Winners a thread moves a pass in the finish (FinishSplitInShared's kMoveItems): 16 where a
// block has an SM's registers to itself (kOwnedChunksFew), 8 at two blocks an SM.
template <int kChunks>
constexpr int kOwnedMoveItems = kChunks == kOwnedChunksFew ? 16 : 8;
template <int kChunks>
constexpr int OwnedTileChunks() {
  static_assert(kChunks % 4 == 0 && 4 * kChunks <= 32, "a thread's keys fold to one word");
  static_assert(kStripedThreads * kChunks * 4 < 65536, "a tile's counts fit 16 bits");
  return kStripedThreads * kChunks;
}

// This thread's chunks of the tile from tb as the stored fp16 bits (two scores a word), all
// loaded before any is used. Chunks past the row are not loaded; where a chunk is not all
// candidates its loads are element loads (the bits of non-candidates are masked later).
template <bool kCheck, int kChunks>
__device__ __forceinline__ void LoadOwnedTile(const StripedRow& r, int tb, uint2 (&x)[kChunks]) {
  const int c0 = tb + kChunks * static_cast<int>(threadIdx.x);
#pragma unroll
  for (int g = 0; g < kChunks; ++g) {
    x[g] = kCheck ? LoadChunkBitsChecked(r, c0 + g) : LoadChunkBits(r, c0 + g);
  }
}
template <int kChunks>
__device__ __forceinline__ void LoadOwnedTileAt(const StripedRow& r, int tb, uint2 (&x)[kChunks]) {
  if (StripedTileChecked(r, tb, OwnedTileChunks<kChunks>())) {
    LoadOwnedTile<true>(r, tb, x);
  } else {
    LoadOwnedTile<false>(r, tb, x);
  }
}

// The bits of a thread's 4 kChunks scores (bit 4g + e: element e of chunk g) that are at
// least thr2 (both halves the threshold, as fp16 rounded up, OwnedThreshold): one paired fp16
// comparison for two scores, its 0xffff halves masked to bit b (low half) and bit 16 + b + 1
// (high half) of one word per four chunks, which folds to their 16 bits at the end.
template <int kChunks>
__device__ __forceinline__ uint32_t OwnedAtLeast(const uint2 (&x)[kChunks], __half2 thr2) {
  uint32_t bits = 0;
#pragma unroll
  for (int q = 0; q < kChunks / 4; ++q) {
    uint32_t acc = 0;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
#pragma unroll
      for (int w = 0; w < 2; ++w) {
        const uint32_t word = w == 0 ? x[4 * q + g].x : x[4 * q + g].y;
        const int b = 4 * g + 2 * w;
        acc |= __hge2_mask(*reinterpret_cast<const __half2*>(&word), thr2) &
               ((1u << b) | (1u << (17 + b)));
      }
    }
    bits |= ((acc | (acc >> 16)) & 0xffffu) << (16 * q);
  }
  return bits;
}

// The fp16 threshold equivalent to fp32 threshold t over fp16 scores (x >= t exactly where
// x >= the result): the least fp16 value at least t (+inf past fp16's range, NaN for NaN).
__device__ __forceinline__ __half2 OwnedThreshold(float t) {
  return __half2half2(__float2half_ru(t));
}

// Score `bit` (4g + e: element e of chunk g) of a thread's tile, by selects over the registers.
template <int kChunks>
__device__ __forceinline__ float OwnedScore(const uint2 (&x)[kChunks], int bit) {
  uint32_t v = 0;
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    v = bit >> 1 == 2 * c ? x[c].x : v;
    v = bit >> 1 == 2 * c + 1 ? x[c].y : v;
  }
  return cuda::ScoreValue(static_cast<uint16_t>(bit & 1 ? v >> 16 : v));
}

// Bits of a thread's kKeys tokens from t0 that are candidates of the row.
template <int kKeys>
__device__ __forceinline__ uint32_t OwnedValidBits(const StripedRow& r, int t0) {
  const int lo = min(max(r.lo - t0, 0), kKeys), hi = min(max(r.hi - t0, 0), kKeys);
  const uint64_t below_hi = (uint64_t{1} << hi) - 1u, below_lo = (uint64_t{1} << lo) - 1u;
  return static_cast<uint32_t>(below_hi & ~below_lo);
}

// Read 2 over the row r (the whole block), StripedSplit's for the two-read layout in shared
// memory (CarveTwoReadSmem: `cands` the candidates' keys, then their indices, then the winners
// before each, kTwoReadCandidates of each; one base pointer, as the registers are tight):
// winners to mid at their rank (below win_limit), the boundary band's candidates to `cands` at
// theirs (below kTwoReadCandidates). Returns the winners and candidates counted (the same for
// every thread). The tile's counts are ordered by a warp scan and one exchange of the warps'
// totals (double-buffered: one barrier a tile). start: the winners and candidates of the row
// before r (another block's part of it), whose ranks r's follow.
template <int kChunks>
__device__ __forceinline__ int2 OwnedSplit(const StripedRow& r, float thr, float flo,
                                           int32_t* mid, int win_limit, uint32_t* cands,
                                           int (*exchange)[kStripedWarps],
                                           int2 start = make_int2(0, 0)) {
  constexpr int kCap = kTwoReadCandidates;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const __half2 thr2 = OwnedThreshold(thr), flo2 = OwnedThreshold(flo);
  constexpr int kTileChunks = OwnedTileChunks<kChunks>();
  uint2 x[kChunks];
  LoadOwnedTileAt(r, r.c_begin, x);
  int winners = start.x, held = start.y, parity = 0;
  for (int tb = r.c_begin; tb < r.c_end; tb += kTileChunks) {
    const int t0 = 4 * (tb + kChunks * static_cast<int>(threadIdx.x)) - r.a;
    uint32_t win = OwnedAtLeast(x, thr2), ge = OwnedAtLeast(x, flo2);
    if (StripedTileChecked(r, tb, kTileChunks)) {
      const uint32_t valid = OwnedValidBits<4 * kChunks>(r, t0);
      win &= valid;
      ge &= valid;
    }
    const uint32_t cand = ge & ~win;
    // The next tile's loads, in flight through the scan and the writes (into registers of
    // their own, so that the candidates' scores are still at hand).
    const int next = tb + kTileChunks;
    uint2 nx[kChunks] = {};
    if (next < r.c_end) LoadOwnedTileAt(r, next, nx);
    // Winners | candidates << 16: this lane's, then their prefix over the warp and the block.
    const int own = __popc(win) | (__popc(cand) << 16);
    const int incl = WarpInclusiveSum(own, lane);
    if (lane == 31) exchange[parity][warp] = incl;
    __syncthreads();  // every warp's total of this tile is in exchange[parity]
    const int2 order = WarpTotalsBefore<kStripedWarps>(exchange[parity], warp, lane);
    const int ex = order.x + incl - own, total = order.y;
    const int win_base = winners + (ex & 0xffff);
    int at = win_base;
    for (uint32_t m = win; m != 0u; m &= m - 1u, ++at) {
      if (at < win_limit) __stcg(mid + at, t0 + __ffs(m) - 1);
    }
    int c = held + (ex >> 16);
    for (uint32_t m = cand; m != 0u; m &= m - 1u, ++c) {
      const int bit = __ffs(m) - 1;
      if (c < kCap) {
        cands[c] = OrderKey(OwnedScore(x, bit));
        cands[kCap + c] = static_cast<uint32_t>(t0 + bit);
        cands[2 * kCap + c] = static_cast<uint32_t>(win_base + __popc(win & ((1u << bit) - 1u)));
      }
    }
    winners += total & 0xffff;
    held += total >> 16;
    parity ^= 1;
#pragma unroll
    for (int g = 0; g < kChunks; ++g) x[g] = nx[g];
  }
  return make_int2(winners, held);
}

// kStriped's sampled band, for segments of at least kSampleMinCandidates candidates: read 1
// (the full histogram, ~40% of the kernel's time) is replaced by a sample of the row — runs
// of kSampleRunChunks chunks, one run in `period` — whose 13-bit histogram, refined by 10 more
// bits in the two buckets that matter, gives the scores of sample ranks k_s -+ delta (k_s the
// budget's rank scaled to the sample, delta kSampleZ binomial standard deviations): winners
// are the scores at least thr (above the upper one), candidates those in [flo, thr). Read 2
// then counts them exactly; the band holds the boundary when winners < want <= winners +
// candidates and the candidates fit shared memory (else the block runs the exact reads). The
// result is the exact reads' (the same total order, finished over the candidates' keys).
// period: the longest of 16, 8, 4 runs whose expected band, 2 z sqrt(p (1 - p) N period)
// candidates, stays under kSampleBandLimit. Measured on an H200 (docs/benchmarks.md run 11):
// at 256K the top-k took 10-22% less time (Llama-2 heads, batch 8: 240 -> 205 us at 1/8, 207
// -> 161 us at 1/16); at 64K the sampling's chain of dependent steps cost a lone block ~7 us
// more than read 1 saved (batch 1). At 128K (call 10) it saved 5-12% with 256 pairs (two
// blocks per SM: throughput-bound) and cost 8-19% with 8-64 (each block's latency is the
// kernel's), hence kSampleMinCandidates, and kSampleMinCandidatesFullGrid from
// kSampleFullGridPairs (sequence, KV head) pairs.
constexpr int kSampleRunChunks = 128;
constexpr int kSampleMinCandidates = 160000;
constexpr int kSampleMinCandidatesFullGrid = 100000;
constexpr int kSampleFullGridPairs = 256;
constexpr float kSampleZ = 4.5f;
constexpr int kSampleBandLimit = kTwoReadCandidates * 3 / 4;
constexpr int kSampleSubBins = 1 << kTwoReadBits1;  // the refinement's counters per bucket

struct SampledBand {
  float thr, flo;
  bool ok;
};

// Sample chunk i of row r at `period`: its chunk, or -1 past the row (-2 past the last run).
__device__ __forceinline__ int SampleChunk(const StripedRow& r, int i, int period) {
  const int run_start = r.c_begin + (i / kSampleRunChunks) * kSampleRunChunks * period;
  if (run_start >= r.c_end) return -2;
  const int c = run_start + i % kSampleRunChunks;
  return c < r.c_end ? c : -1;
}

// Adds the sample's keys (in buckets b_hi / b_lo only, by their next 10 bits, when refine) to
// hist and returns this thread's count of sampled candidates.
__device__ __forceinline__ int SampleHistogram(const StripedRow& r, int period, int* hist,
                                               bool refine, int b_hi, int b_lo) {
  constexpr int kBatch = 4;
  int n = 0;
  for (int i0 = threadIdx.x;; i0 += kBatch * kStripedThreads) {
    uint2 x[kBatch];
    int c[kBatch];
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      c[u] = SampleChunk(r, i0 + u * kStripedThreads, period);
      x[u] = c[u] >= 0 ? LoadChunkBitsChecked(r, c[u]) : make_uint2(0u, 0u);
    }
#pragma unroll
    for (int u = 0; u < kBatch; ++u) {
      if (c[u] < 0) continue;
      const uint4 k4 = OrderKeys4(x[u]);
      const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
      const int t = 4 * c[u] - r.a;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (!StripedValid(r, t + e)) continue;
        ++n;
        const uint32_t key = k[e];
        const int b = static_cast<int>(key >> (32 - kTwoReadBits0));
        const int sub = static_cast<int>((key >> (32 - kTwoReadBits0 - kTwoReadBits1)) &
                                         (kSampleSubBins - 1));
        if (!refine) {
          atomicAdd(&hist[b], 1);
        } else if (b == b_hi) {
          atomicAdd(&hist[sub], 1);
        } else if (b == b_lo) {
          atomicAdd(&hist[kSampleSubBins + sub], 1);
        }
      }
    }
    if (SampleChunk(r, i0 + (kBatch - 1) * kStripedThreads, period) == -2) break;
  }
  return n;
}

// The block's sampled band for the row r and `want` of its candidates (whole block; hist
// (kTwoReadFirstBins counters) and scan_tmp free on entry and on return).
template <int kThreads>
__device__ __forceinline__ SampledBand SampleBand(
    const StripedRow& r, int want, int* hist, typename TopKScan<kThreads>::TempStorage& scan_tmp,
    int* sh_bucket, int* sh_greater) {
  __shared__ int sh_count;
  SampledBand band{0.0f, 0.0f, false};
  const int total = r.hi - r.lo;
  const bool full_grid = static_cast<int>(gridDim.x * gridDim.y) >= kSampleFullGridPairs;
  if (total < (full_grid ? kSampleMinCandidatesFullGrid : kSampleMinCandidates)) return band;
  const float p = static_cast<float>(want) / static_cast<float>(total);
  int period = 0;
  for (int candidate : {16, 8, 4}) {
    const float expect = 2.0f * kSampleZ * sqrtf(p * (1.0f - p) * total * candidate);
    if (expect <= kSampleBandLimit) {
      period = candidate;
      break;
    }
  }
  if (period == 0) return band;

  // The sample's 13-bit histogram and size.
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  if (threadIdx.x == 0) sh_count = 0;
  __syncthreads();
  const int n = __reduce_add_sync(0xffffffffu, SampleHistogram(r, period, hist, false, 0, 0));
  if (threadIdx.x % 32 == 0) atomicAdd(&sh_count, n);
  __syncthreads();
  const int n_s = sh_count;
  const float k_s = p * static_cast<float>(n_s);
  const float delta = ceilf(kSampleZ * sqrtf(k_s * (1.0f - p))) + 2.0f;
  const int m_hi = static_cast<int>(floorf(k_s - delta));  // ranks from 1 (the largest)
  const int m_lo = static_cast<int>(ceilf(k_s + delta));
  if (m_lo > n_s) {
    __syncthreads();
    return band;
  }
  // The buckets of sample ranks m_hi and m_lo, then their sub-buckets.
  int b_hi = -1, g_hi = 0;
  if (m_hi >= 1) {
    FindBoundaryBucketInBlock<kThreads>(hist, kTwoReadFirstBins, m_hi, scan_tmp, sh_bucket,
                                        sh_greater);
    __syncthreads();
    b_hi = *sh_bucket;
    g_hi = *sh_greater;
    __syncthreads();
  }
  FindBoundaryBucketInBlock<kThreads>(hist, kTwoReadFirstBins, m_lo, scan_tmp, sh_bucket,
                                      sh_greater);
  __syncthreads();
  const int b_lo = *sh_bucket, g_lo = *sh_greater;
  __syncthreads();
  if (b_lo < 16) return band;  // -inf / NaN bucket: no float bound orders as the keys do
  for (int b = threadIdx.x; b < 2 * kSampleSubBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  SampleHistogram(r, period, hist, true, b_hi, b_lo);
  __syncthreads();
  constexpr int kSubShift = 32 - kTwoReadBits0 - kTwoReadBits1;
  uint64_t thr_key = ~0ull;  // no winner
  if (m_hi >= 1) {
    FindBoundaryBucketInBlock<kThreads>(hist, kSampleSubBins, m_hi - g_hi, scan_tmp, sh_bucket,
                                        sh_greater);
    __syncthreads();
    thr_key = ((static_cast<uint64_t>(b_hi) << kTwoReadBits1) + *sh_bucket + 1) << kSubShift;
    __syncthreads();
  }
  FindBoundaryBucketInBlock<kThreads>(hist + kSampleSubBins, kSampleSubBins, m_lo - g_lo,
                                      scan_tmp, sh_bucket, sh_greater);
  __syncthreads();
  const uint64_t flo_key =
      ((static_cast<uint64_t>(b_lo) << kTwoReadBits1) + *sh_bucket) << kSubShift;
  __syncthreads();
  band.thr = KeyFloor(thr_key);
  band.flo = KeyFloor(flo_key);
  band.ok = true;
  return band;
}

template <int kChunks>
__global__ void __launch_bounds__(kStripedThreads, kChunks == kOwnedChunksFew ? 1 : 2)
    TopKSelectStripedKernel(const uint16_t* scores, int64_t score_stride,
                            const CudaDsSequence* seqs,
                            int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts) {
  constexpr int kThreads = kStripedThreads;
  using Scan = TopKScan<kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ int sh_bucket, sh_greater;
  __shared__ int exchange[2][kStripedWarps];  // per warp: winners | candidates << 16 of a tile
  extern __shared__ int striped_smem[];
  const TwoReadSmem smem = CarveTwoReadSmem(striped_smem);
  int* const hist = smem.hist;
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  const StripedRow r = MakeStripedRow(seg.sc, seg.lo, seg.hi);

  // A sampled band in place of read 1, where the segment is long enough and the band holds.
  const SampledBand band =
      SampleBand<kThreads>(r, seg.want, hist, scan_tmp, &sh_bucket, &sh_greater);
  if (band.ok) {
    const int2 got =
        OwnedSplit<kChunks>(r, band.thr, band.flo, seg.mid, seg.want, smem.cand_key, exchange);
    __syncthreads();  // the candidates are complete; hist is free
    if (got.x < seg.want && got.x + got.y >= seg.want && got.y <= kTwoReadCandidates) {
      FinishSplitInShared<kThreads, kTwoReadFirstBins, kOwnedMoveItems<kChunks>>(
          got.y, seg.want - got.x, 0u, 0u, got.x, hist, smem.cand_key, smem.cand_idx,
          smem.cand_wb, seg.mid, scan_tmp, 0);
      return;
    }
  }

  // Read 1: the first digit's histogram and its boundary bucket.
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  StripedHistogram(r, hist);
  __syncthreads();
  const FirstDigitSplit split =
      SplitAtFirstDigit<kThreads>(hist, seg.want, scan_tmp, &sh_bucket, &sh_greater);
  // Buckets below 16 hold -inf and NaN only (bucket 15), which BucketFloor cannot bound.
  if (split.cands > kTwoReadCandidates || split.bucket < 16) {
    FinishByRadixPasses<kThreads>(seg, hist, scan_tmp, split);
    return;
  }

  // Read 2: winners to mid at their rank among winners, candidates to shared memory.
  OwnedSplit<kChunks>(r, BucketFloor(split.bucket + 1), BucketFloor(split.bucket), seg.mid,
                      seg.want, smem.cand_key, exchange);
  __syncthreads();  // the candidates are complete; hist is free
  FinishSplitInShared<kThreads, kTwoReadFirstBins, kOwnedMoveItems<kChunks>>(
      split.cands, split.take, split.prefix, split.mask, split.greater, hist, smem.cand_key,
      smem.cand_idx, smem.cand_wb, seg.mid, scan_tmp);
}

// kMultiBlock: kStriped's two reads spread over many blocks per (s, h), through a workspace
// (TopKSelectWorkspaceBytes) that every launch leaves as it found it, zeroed. Three kernels:
//  1. TopKHistogramKernel, grid (slices, heads_kv, seqs): each block adds its slice's 13-bit
//     digits to a histogram in shared memory, then its nonzero bins to the pair's histogram in
//     the workspace; the pair's last block to arrive (a counter) finds the boundary bucket
//     (SplitAtFirstDigit, stored per pair) and zeroes the histogram and the counter.
//  2. TopKSplitKernel, one block per (pair, slice) taken in the order the blocks start (a
//     ticket): it classifies its slice (read 2's comparisons) and publishes its winner and
//     candidate counts, adds up those of the pair's earlier slices (each published as soon as
//     its block has counted; a block waits only on blocks that started before it), then runs
//     read 2 over the slice again (in L2 by then): winners to mid at their rank, candidates to
//     the pair's arrays in the workspace with the winners before each.
//  3. TopKFinishKernel, one block per pair: the candidates into shared memory and
//     FinishSplitInShared; a pair whose boundary bucket is larger than kMultiCandidates (or
//     holds -inf / NaN only) is finished instead by the one-block radix passes over its scores.
//     It zeroes what the launch left in the workspace: the pair's published counts, split and
//     candidates, and (block (0, 0)) the ticket — so every launch leaves the whole workspace
//     zeroed, whatever the shapes of the launches before it.
// The result is kStriped's (the same digits, comparisons and finish).
constexpr int kMultiHistTile = kStripedHistChunks * kStripedThreads;  // chunks per read-1 tile
constexpr int kMultiMaxTiles = 4;  // tiles per block at most (a slice's counts fit 16 bits)
constexpr uint32_t kPublished = 0x80000000u;
// Boundary-bucket candidates a pair may have (the finish holds them in shared memory): ~2.5x
// kTwoReadCandidates, as a 13-bit bucket at 1/16 of 256K Gaussian-like scores holds 1-2.5%
// of the candidates (2.6K-6.5K), and one pair past the limit costs the whole launch its
// one-block radix passes (~100 us at 256K).
constexpr int kMultiCandidates = 16384;
constexpr int kMultiFinishBins = 1 << kTwoReadBits1;  // FinishSplitInShared's and the passes'
constexpr size_t kMultiFinishSmem = (kMultiFinishBins + 3 * kMultiCandidates) * sizeof(int);
// Slices hold up to 1.5x kMultiMaxTiles tiles (the count rounded to the nearest).
static_assert(kMultiMaxTiles * kStripedTileChunks * 4 * 3 / 2 < 65536,
              "a slice's winners fit 16 bits");
static_assert(kMultiCandidates < 32768, "a slice's candidates fit 15 bits");

// The workspace, carved by the host (CarveTopKMultiWorkspace) for the launch's shape.
struct TopKMultiWorkspace {
  int* ticket;            // split blocks started
  int* hist;              // [pairs][kTwoReadFirstBins]
  int* arrived;           // [pairs] histogram blocks done
  uint32_t* published;    // [pairs][split_slices] kPublished | winners | candidates << 16
  FirstDigitSplit* split;  // [pairs]
  uint32_t* cand_key;     // [pairs][kMultiCandidates]
  int32_t* cand_idx;      // [pairs][kMultiCandidates]
  int32_t* cand_wb;       // [pairs][kMultiCandidates]
  int split_slices;       // slices per pair in TopKSplitKernel
  int split_chunks;       // 16-byte chunks per split slice
  int hist_chunks;        // 16-byte chunks per histogram slice
};

// Chunks [c0, c0 + chunks) of row as a row of its own (its candidates only; c0 on the row's
// chunk grid, so no chunk is shared with another slice but the row's first).
__device__ __forceinline__ StripedRow SliceOfRow(const StripedRow& row, int c0, int chunks) {
  const int lo = max(row.lo, 4 * c0 - row.a);
  const int hi = min(row.hi, 4 * (c0 + chunks) - row.a);
  return MakeStripedRow(row.sc, lo, max(lo, hi));
}

// The candidates' row of pair (s, h) and its plan.
__device__ __forceinline__ StripedRow PairRow(const uint16_t* scores, int64_t score_stride,
                                              int64_t pair, const SegmentPlan& p) {
  return MakeStripedRow(scores + pair * score_stride, p.sink_end, p.recent_begin);
}

__global__ void __launch_bounds__(kStripedThreads, 2)
    TopKHistogramKernel(const uint16_t* scores, int64_t score_stride, const CudaDsSequence* seqs,
                        int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts,
                        TopKMultiWorkspace ws) {
  constexpr int kThreads = kStripedThreads;
  __shared__ typename TopKScan<kThreads>::TempStorage scan_tmp;
  __shared__ int hist[kTwoReadFirstBins];
  __shared__ int sh_bucket, sh_greater, sh_last;
  const int s = blockIdx.z, h = blockIdx.y;
  const int64_t pair = static_cast<int64_t>(s) * heads_kv + h;
  if (blockIdx.x == 0) {  // the count and the kept tokens (or the whole selection)
    StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts, s, h,
                     threadIdx.x, kThreads, threadIdx.x == 0);
  }
  const SegmentPlan p = PlanSegment(seqs[s]);
  if (!p.selecting) return;  // no block of the pair arrives; the later kernels skip it too
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  const StripedRow row = PairRow(scores, score_stride, pair, p);
  const int c0 = row.c_begin + static_cast<int>(blockIdx.x) * ws.hist_chunks;
  if (c0 < row.c_end) StripedHistogram(SliceOfRow(row, c0, ws.hist_chunks), hist);
  __syncthreads();
  int* pair_hist = ws.hist + pair * kTwoReadFirstBins;
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) {
    if (hist[b] != 0) atomicAdd(pair_hist + b, hist[b]);
  }
  __threadfence();  // this block's bins are visible before its arrival is
  __syncthreads();
  if (threadIdx.x == 0) {
    sh_last = atomicAdd(ws.arrived + pair, 1) == static_cast<int>(gridDim.x) - 1;
  }
  __syncthreads();
  if (!sh_last) return;
  __threadfence();  // every block's bins, before they are read
  constexpr int kPerThread = kTwoReadFirstBins / kThreads;
  int bins[kPerThread];
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) bins[i] = __ldcg(pair_hist + i * kThreads + threadIdx.x);
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    hist[i * kThreads + threadIdx.x] = bins[i];
    pair_hist[i * kThreads + threadIdx.x] = 0;
  }
  __syncthreads();
  const FirstDigitSplit split =
      SplitAtFirstDigit<kThreads>(hist, p.want, scan_tmp, &sh_bucket, &sh_greater);
  if (threadIdx.x == 0) {
    ws.split[pair] = split;
    ws.arrived[pair] = 0;
  }
}

// Whether TopKSplitKernel leaves the pair to TopKFinishKernel's radix passes.
__device__ __forceinline__ bool SplitByPasses(const FirstDigitSplit& f) {
  return f.cands > kMultiCandidates || f.bucket < 16;
}

__global__ void __launch_bounds__(kStripedThreads, 2)
    TopKSplitKernel(const uint16_t* scores, int64_t score_stride, const CudaDsSequence* seqs,
                    int heads_kv, int32_t* selected, int64_t sel_stride, TopKMultiWorkspace ws) {
  __shared__ int stage[kStripedTileChunks * 4];
  __shared__ int exchange[2][kStripedWarps];
  __shared__ int warp_counts[2][kStripedWarps];
  __shared__ int sh_ticket, sh_winners, sh_held;
  if (threadIdx.x == 0) sh_ticket = atomicAdd(ws.ticket, 1);
  __syncthreads();
  const int64_t pair = sh_ticket / ws.split_slices;
  const int slice = sh_ticket % ws.split_slices;
  const int s = static_cast<int>(pair / heads_kv);
  const SegmentPlan p = PlanSegment(seqs[s]);
  if (!p.selecting) return;
  const FirstDigitSplit f = ws.split[pair];
  if (SplitByPasses(f)) return;
  const StripedRow row = PairRow(scores, score_stride, pair, p);
  const int c0 = row.c_begin + slice * ws.split_chunks;
  if (c0 >= row.c_end) return;  // past the pair's candidates: no later slice looks back here
  const StripedRow r = SliceOfRow(row, c0, ws.split_chunks);
  const float thr = BucketFloor(f.bucket + 1), flo = BucketFloor(f.bucket);

  // Count: the slice's winners and candidates, by read 2's classification.
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int lane_chunk = warp * kStripedWarpChunks + lane;
  int wins = 0, cands = 0;
  float4 x[kStripedRounds];
  LoadSplitTileAt(r, r.c_begin, lane_chunk, x);
  for (int tb = r.c_begin; tb < r.c_end; tb += kStripedTileChunks) {
    float4 next[kStripedRounds];  // the next tile's loads, in flight while this one is counted
    if (tb + kStripedTileChunks < r.c_end) {
      LoadSplitTileAt(r, tb + kStripedTileChunks, lane_chunk, next);
    }
    const int t0 = 4 * (tb + lane_chunk) - r.a;
    uint32_t win, ge;
    ClassifySplitTileAt(r, tb, x, t0, thr, flo, &win, &ge);
    wins += __popc(win);
    cands += __popc(ge & ~win);
#pragma unroll
    for (int u = 0; u < kStripedRounds; ++u) x[u] = next[u];
  }
  wins = __reduce_add_sync(0xffffffffu, wins);
  cands = __reduce_add_sync(0xffffffffu, cands);
  if (lane == 0) {
    warp_counts[0][warp] = wins;
    warp_counts[1][warp] = cands;
  }
  __syncthreads();
  uint32_t* published = ws.published + pair * ws.split_slices;
  if (warp == 0) {
    const int w = __reduce_add_sync(0xffffffffu, lane < kStripedWarps ? warp_counts[0][lane] : 0);
    const int c = __reduce_add_sync(0xffffffffu, lane < kStripedWarps ? warp_counts[1][lane] : 0);
    if (lane == 0) {
      atomicExch(published + slice,
                 kPublished | static_cast<uint32_t>(w) | (static_cast<uint32_t>(c) << 16));
    }
    // The earlier slices' counts (their blocks started before this one).
    int w_before = 0, c_before = 0;
    for (int j = lane; j < slice; j += 32) {
      uint32_t v;
      while (((v = atomicAdd(published + j, 0u)) & kPublished) == 0u) __nanosleep(64);
      w_before += static_cast<int>(v & 0xffffu);
      c_before += static_cast<int>((v >> 16) & 0x7fffu);
    }
    w_before = __reduce_add_sync(0xffffffffu, w_before);
    c_before = __reduce_add_sync(0xffffffffu, c_before);
    if (lane == 0) {
      sh_winners = w_before;
      sh_held = c_before;
    }
  }
  __syncthreads();

  // Read 2 again (L2): winners to mid, candidates to the workspace.
  const size_t cand0 = static_cast<size_t>(pair) * kMultiCandidates;
  int32_t* mid = selected + pair * sel_stride + p.sink_end;
  StripedSplit(r, thr, flo,
               {mid, ws.cand_key + cand0, ws.cand_idx + cand0, ws.cand_wb + cand0, sh_winners,
                sh_held, p.want, kMultiCandidates},
               {stage, exchange});
}

__global__ void __launch_bounds__(kStripedThreads, 2)
    TopKFinishKernel(const uint16_t* scores, int64_t score_stride, const CudaDsSequence* seqs,
                     int heads_kv, int32_t* selected, int64_t sel_stride, TopKMultiWorkspace ws) {
  constexpr int kThreads = kStripedThreads;
  __shared__ typename TopKScan<kThreads>::TempStorage scan_tmp;
  extern __shared__ int finish_smem[];  // kMultiFinishSmem: [bins | keys | indices | wb]
  const TwoReadSmem smem = CarveTwoReadSmem(finish_smem, kMultiFinishBins, kMultiCandidates);
  const int s = blockIdx.y, h = blockIdx.x;
  const int64_t pair = static_cast<int64_t>(s) * heads_kv + h;
  if (pair == 0 && threadIdx.x == 0) *ws.ticket = 0;  // TopKSplitKernel has finished
  uint32_t* published = ws.published + pair * ws.split_slices;
  for (int j = threadIdx.x; j < ws.split_slices; j += kThreads) published[j] = 0u;
  const SegmentPlan p = PlanSegment(seqs[s]);
  if (!p.selecting) return;
  const FirstDigitSplit f = ws.split[pair];
  const uint16_t* sc = scores + pair * score_stride;
  int32_t* mid = selected + pair * sel_stride + p.sink_end;
  if (SplitByPasses(f)) {
    FinishByRadixPasses<kThreads>({sc, p.sink_end, p.recent_begin, p.want, mid}, smem.hist,
                                  scan_tmp, f);
    __syncthreads();  // every thread has read the split
    if (threadIdx.x == 0) ws.split[pair] = FirstDigitSplit{};
    return;
  }
  // The candidates to shared memory (kLoadBatch loads in flight per thread), then their
  // entries (and the split) zeroed behind them.
  const size_t cand0 = static_cast<size_t>(pair) * kMultiCandidates;
  constexpr int kLoadBatch = 4;
  for (int c0 = threadIdx.x; c0 < f.cands; c0 += kLoadBatch * kThreads) {
    uint32_t key[kLoadBatch];
    int32_t idx[kLoadBatch], wb[kLoadBatch];
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int c = c0 + u * kThreads;
      if (c < f.cands) {
        key[u] = __ldcg(ws.cand_key + cand0 + c);
        idx[u] = __ldcg(ws.cand_idx + cand0 + c);
        wb[u] = __ldcg(ws.cand_wb + cand0 + c);
      }
    }
#pragma unroll
    for (int u = 0; u < kLoadBatch; ++u) {
      const int c = c0 + u * kThreads;
      if (c < f.cands) {
        smem.cand_key[c] = key[u];
        smem.cand_idx[c] = idx[u];
        smem.cand_wb[c] = wb[u];
      }
    }
  }
  __syncthreads();
  for (int c = threadIdx.x; c < f.cands; c += kThreads) {
    ws.cand_key[cand0 + c] = 0u;
    ws.cand_idx[cand0 + c] = 0;
    ws.cand_wb[cand0 + c] = 0;
  }
  if (threadIdx.x == 0) ws.split[pair] = FirstDigitSplit{};
  FinishSplitInShared<kThreads, kMultiFinishBins>(f.cands, f.take, f.prefix, f.mask, f.greater,
                                                  smem.hist, smem.cand_key, smem.cand_idx,
                                                  smem.cand_wb, mid, scan_tmp);
}

// StartTopKSegment for the cluster top-k kernels (blockIdx (rank, h, s), kThreads a block),
// run by all the cluster's threads. Uniform over the cluster (it depends on the sequence only)
// and touching no other block's shared memory, so its blocks may return on it without a
// barrier.
template <int kThreads>
__device__ __forceinline__ TopKSegment StartClusterSegment(
    const cooperative_groups::cluster_group& cluster, const uint16_t* scores,
    int64_t score_stride, const CudaDsSequence* seqs, int heads_kv, int32_t* selected,
    int64_t sel_stride, int32_t* counts) {
  const int gtid =
      static_cast<int>(cluster.block_rank()) * kThreads + static_cast<int>(threadIdx.x);
  return StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                          blockIdx.z, blockIdx.y, gtid,
                          static_cast<int>(cluster.num_blocks()) * kThreads, gtid == 0);
}

// kStriped on a cluster of kBlocks blocks per (sequence, KV head), where a block per pair
// would leave most SMs idle (and each block's latency is the kernel's): block b takes part b
// of the row's chunks through kStriped's exact reads. Read 1: each block's 13-bit histogram of
// its part, then every block sums them all (the others' read through distributed shared
// memory) and finds the same boundary bucket; each block publishes its part's winners (keys
// above the bucket) and candidates (keys in it), and starts its ranks after those of the
// parts before it. Read 2: OwnedSplit over each part, every block writing its candidates
// straight into block 0's shared memory after the earlier parts', so block 0 finishes over
// all of them (FinishSplitInShared) in index order, as kStriped's. A boundary bucket past
// shared memory is finished by block 0 alone (kStriped's radix passes over the whole row).
// The result is kStriped's. Run 23 call 7 (H200, Llama-3 heads, 1/16 of 64K-256K rows): two
// blocks a pair (32 keys a thread, one block a SM) at 32-64 pairs 19.4-19.8 / 27.8-28.0 /
// 43.7-44.4 us at 64K / 128K / 256K, against 26.4-38.0 / 34.5-48.5 / 52.6-70.7 with four
// (16 keys a thread, two blocks a SM; 32 keys: slower still) and 22.4-35.5 / 36.4-56.7 /
// 59.5-112.9 for kCluster; at 128 pairs two blocks (16 keys, two a SM) 27.3 / 41.8 / 78.1
// against the one-block kernel's 22.5 / 35.6 / 64.3; at 16 pairs kCluster 16.2 / 22.7 / 38.6
// against two blocks' 19.1 / 27.3 / 43.2 (four: 18.6 / 24.2 / 34.9).
template <int kBlocks>
__global__ void __launch_bounds__(kStripedThreads, 1)
    TopKSelectStripedPartsKernel(const uint16_t* scores, int64_t score_stride,
                                 const CudaDsSequence* seqs, int heads_kv, int32_t* selected,
                                 int64_t sel_stride, int32_t* counts) {
  namespace cg = cooperative_groups;
  constexpr int kThreads = kStripedThreads;
  __shared__ typename TopKScan<kThreads>::TempStorage scan_tmp;
  __shared__ int sh_bucket, sh_greater;
  __shared__ int2 sh_part;  // this part's winners and candidates
  __shared__ int exchange[2][kStripedWarps];
  constexpr int kChunks = kOwnedChunksFew;
  extern __shared__ int striped_smem[];
  const TwoReadSmem smem = CarveTwoReadSmem(striped_smem);
  int* const hist = smem.hist;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const TopKSegment seg = StartClusterSegment<kThreads>(cluster, scores, score_stride, seqs,
                                                        heads_kv, selected, sel_stride, counts);
  if (seg.want == 0) return;
  const StripedRow row = MakeStripedRow(seg.sc, seg.lo, seg.hi);
  const int part_chunks = (row.c_end - row.c_begin + kBlocks - 1) / kBlocks;
  const StripedRow r = SliceOfRow(row, row.c_begin + rank * part_chunks, part_chunks);

  // Read 1 over this part; the pair's histogram (every part) in this block's candidate space.
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  if (threadIdx.x == 0) sh_part = make_int2(0, 0);
  __syncthreads();
  StripedHistogram(r, hist);
  cluster.sync();  // every part's histogram is complete
  // The pair's histogram, every part's counters loaded (16 bytes at a time) before any is
  // summed: one round trip through distributed shared memory, where a counter at a time cost
  // 2.0 us at 64 pairs × 256K (H200, run 32).
  int* const pair_hist = reinterpret_cast<int*>(smem.cand_key);  // free until read 2
  constexpr int kMergeVecs = kTwoReadFirstBins / 4 / kThreads;
  static_assert(kMergeVecs * 4 * kThreads == kTwoReadFirstBins, "whole vectors a thread");
  int4 part_counts[kBlocks][kMergeVecs];
#pragma unroll
  for (int j = 0; j < kBlocks; ++j) {
    const int4* src = reinterpret_cast<const int4*>(cluster.map_shared_rank(hist, j));
#pragma unroll
    for (int v = 0; v < kMergeVecs; ++v) part_counts[j][v] = src[threadIdx.x + v * kThreads];
  }
#pragma unroll
  for (int v = 0; v < kMergeVecs; ++v) {
    int4 sum = part_counts[0][v];
#pragma unroll
    for (int j = 1; j < kBlocks; ++j) {
      sum.x += part_counts[j][v].x, sum.y += part_counts[j][v].y;
      sum.z += part_counts[j][v].z, sum.w += part_counts[j][v].w;
    }
    reinterpret_cast<int4*>(pair_hist)[threadIdx.x + v * kThreads] = sum;
  }
  __syncthreads();
  const FirstDigitSplit split =
      SplitAtFirstDigit<kThreads>(pair_hist, seg.want, scan_tmp, &sh_bucket, &sh_greater);
  int own = 0;  // this part's winners
  for (int b = split.bucket + 1 + static_cast<int>(threadIdx.x); b < kTwoReadFirstBins;
       b += kThreads) {
    own += hist[b];
  }
  own = __reduce_add_sync(0xffffffffu, own);
  if (threadIdx.x % 32 == 0 && own != 0) atomicAdd(&sh_part.x, own);
  if (threadIdx.x == 0) sh_part.y = hist[split.bucket];
  // Every read of another block's histogram, and of block 0's pair histogram (where the
  // candidates go next), is done; every part's counts are published.
  cluster.sync();
  if (split.cands > kTwoReadCandidates || split.bucket < 16) {
    if (rank == 0) FinishByRadixPasses<kThreads>(seg, hist, scan_tmp, split);
    return;
  }
  int2 start = make_int2(0, 0);
  for (int j = 0; j < rank; ++j) {
    const int2 part = *cluster.map_shared_rank(&sh_part, j);
    start.x += part.x;
    start.y += part.y;
  }
  uint32_t* const cands = cluster.map_shared_rank(smem.cand_key, 0);

  // Read 2: winners to mid at their rank, candidates to block 0's shared memory.
  OwnedSplit<kChunks>(r, BucketFloor(split.bucket + 1), BucketFloor(split.bucket), seg.mid,
                      seg.want, cands, exchange, start);
  cluster.sync();  // block 0 holds every candidate; the other parts are done
  if (rank != 0) return;
  FinishSplitInShared<kThreads, kTwoReadFirstBins, kOwnedMoveItems<kChunks>>(
      split.cands, split.take, split.prefix, split.mask, split.greater, hist, smem.cand_key,
      smem.cand_idx, smem.cand_wb, seg.mid, scan_tmp);
}

// A cluster top-k's row longer than the launch's row bound (a graph step replayed past the
// rows it was planned for: its slices would overflow shared memory): block 0 selects it alone
// from the scores in memory, as kOneBlock does, in the block's dynamic shared memory (at least
// SelectInMemoryShared's bytes). Inlined: called (__noinline__, 64 registers against 62) the
// kernel ran 0.4-1.2 us slower at 8-24 pairs of 128K-256K rows (run 30, H200).
template <int kThreads>
__device__ __forceinline__ void ClusterRowPastBound(const TopKSegment& seg, uint4* smem) {
  auto& sh = *reinterpret_cast<SelectInMemoryShared<kThreads>*>(smem);
  SelectInMemory<kThreads, kTopKUnroll, kTopKItems>(seg, sh.hist, sh.scan_tmp);
}

// Long segments: a cluster of kTopKClusterMax or fewer blocks per (sequence, KV head), each
// holding a contiguous slice of the candidates' keys in shared memory (16-bit: OrderKey16), so
// the scores are read from memory once (8-byte loads, the keys' high bytes counted during the
// load, one shared-memory atomic a key) and the rest of the select (ClusterSelect: the low
// bytes of the boundary's bucket, then the ordered compaction across the blocks) reads shared
// memory; the result is the one-block kernel's. Run 28 (H200, against fp32 keys and 11-bit
// digits): Llama-3 heads batch 1, 64K 12.4-12.9 against 15.9-16.0 us, 256K 19.5-20.5 against
// 23.9-24.1; batch 2, 256K 30.6-31.7 against 38.5-38.9 (a match_any-aggregated count, as the
// fused kernel's, ran 22.6-63.9: slower than either). slice_keys: the keys a block's dynamic
// shared memory holds, for rows up to the launch's row bound (ClusterRowPastBound past it).
template <int kThreads>
__global__ void __launch_bounds__(kThreads)
    TopKSelectClusterKernel(const uint16_t* scores, int64_t score_stride,
                            const CudaDsSequence* seqs, int heads_kv, int32_t* selected,
                            int64_t sel_stride, int32_t* counts, int slice_keys) {
  namespace cg = cooperative_groups;
  extern __shared__ uint4 keys4[];  // this block's candidates' keys (OrderKey16), slice order
  uint16_t* keys = reinterpret_cast<uint16_t*>(keys4);
  __shared__ ClusterSelectShared<kThreads> sh;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int nb = static_cast<int>(cluster.num_blocks());
  const TopKSegment seg = StartClusterSegment<kThreads>(cluster, scores, score_stride, seqs,
                                                        heads_kv, selected, sel_stride, counts);
  if (seg.want == 0) return;
  if (ClusterSliceKeys(seg.hi - seg.lo, nb) > slice_keys) {
    if (rank == 0) ClusterRowPastBound<kThreads>(seg, keys4);
    return;  // every block of the cluster decides alike: no cluster barrier is left waiting
  }
  const uint16_t* sc = seg.sc;
  const ClusterSlice slice = ClusterSliceOf(seg, rank, nb);
  const int lo = slice.lo, len = slice.len;
  ClearClusterHistograms(sh);
  // Load + first histogram (the keys' high bytes). Scalar loads up to 8-byte alignment, then
  // four scores a load.
  const auto put = [&](int i, uint32_t bits) {
    const uint32_t k = OrderKey16(bits);
    keys[i] = static_cast<uint16_t>(k);
    atomicAdd(&sh.hist[0][k >> 8], 1);
  };
  {
    const uint16_t* p = sc + lo;
    const int head =
        min(len, static_cast<int>(((8 - (reinterpret_cast<uintptr_t>(p) & 7)) & 7) / 2));
    for (int i = threadIdx.x; i < head; i += kThreads) put(i, __ldg(p + i));
    const int vecs = (len - head) / 4;
    const uint16_t* p4 = p + head;
    constexpr int kUnroll = 4;
    for (int base = 0; base < vecs; base += kThreads * kUnroll) {
      uint2 x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = base + u * kThreads + threadIdx.x;
        if (v < vecs) x[u] = LoadScoreBits4(p4 + 4 * v);
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = base + u * kThreads + threadIdx.x;
        if (v < vecs) {
          put(head + 4 * v, x[u].x & 0xffffu);
          put(head + 4 * v + 1, x[u].x >> 16);
          put(head + 4 * v + 2, x[u].y & 0xffffu);
          put(head + 4 * v + 3, x[u].y >> 16);
        }
      }
    }
    for (int i = head + 4 * vecs + threadIdx.x; i < len; i += kThreads) put(i, __ldg(p + i));
  }
  // No barrier here: the select's first cluster barrier completes the keys and the first digit.
  ClusterSelect<kThreads>(cluster, keys4, len, lo, seg.want, seg.mid, sh);
}

// The rows a launch plans for: its row bound (ResolveTopKAlgo's longest_row) within the
// stride, or the stride where none is given.
int64_t BoundRows(int64_t score_stride, int64_t longest_row) {
  return longest_row > 0 ? std::min(longest_row, score_stride) : score_stride;
}

// The cluster top-k's blocks at kTopKKeysPerBlock keys a block (2 to kTopKClusterMax).
int64_t ClusterBlocksAtKeysPerBlock(int64_t score_stride) {
  return std::clamp<int64_t>((score_stride + kTopKKeysPerBlock - 1) / kTopKKeysPerBlock, 2,
                             kTopKClusterMax);
}

}  // namespace

int64_t TopKClusterBlocks(int64_t score_stride, int64_t pairs, int sms) {
  const int64_t full = ClusterBlocksAtKeysPerBlock(score_stride);
  if (pairs * full <= sms) return full;
  const int64_t capped = std::min<int64_t>(full, kTopKClusterPortable);
  if (2 * pairs * capped <= 3 * static_cast<int64_t>(sms)) return capped;
  if (full <= 4 && 2 * pairs <= sms) return 2;
  return 0;
}

TopKAlgo ResolveTopKAlgo(TopKAlgo algo, int64_t score_stride, int64_t pairs, int sms,
                         int64_t longest_row) {
  if (algo == TopKAlgo::kOneBlock || algo == TopKAlgo::kTwoRead || algo == TopKAlgo::kStriped ||
      algo == TopKAlgo::kMultiBlock) {
    return algo;
  }
  const int64_t longest = BoundRows(score_stride, longest_row);
  if (algo == TopKAlgo::kResident) {
    return TopKResidentFits(longest) ? TopKAlgo::kResident : TopKAlgo::kStriped;
  }
  const TopKAlgo one_block = algo == TopKAlgo::kAuto ? TopKAlgo::kStriped : TopKAlgo::kOneBlock;
  if (score_stride <= kTopKShortSegment) return one_block;
  if (algo == TopKAlgo::kCluster) return TopKAlgo::kCluster;
  if (longest <= kTopKShortSegment) return one_block;  // rows bound short in a longer stride
  // The resident kernel wherever the rows fit its shared memory (run 20: faster than the
  // striped and cluster kernels at 8-256 pairs of 16K and 32K rows).
  if (TopKResidentFits(longest)) return TopKAlgo::kResident;
  // The cluster kernel where TopKClusterBlocks finds it faster (a block per pair would leave
  // SMs idle). Before run 29 (fp32 keys) it paid only up to an eighth of the SMs in pairs: run
  // 14, 8 pairs at 16K 12.7 us against kStriped's 14.5; run 23, 16 pairs at 64K / 128K / 256K
  // 16.2 / 22.7 / 38.6 against kStriped's two-block clusters' 19.1 / 27.3 / 43.2, 32 pairs
  // 22.4 / 36.4 / 59.5 against their 19.4 / 27.8 / 43.7.
  if (TopKClusterBlocks(longest, pairs, sms) > 0) return TopKAlgo::kCluster;
  return one_block;
}

int64_t TopKRowBound(int64_t score_stride, int64_t longest_row) {
  // Rows the resident kernel holds whole at any length up to the stride: no bound needed.
  if (longest_row <= 0 || longest_row >= score_stride || TopKResidentFits(score_stride)) {
    return score_stride;
  }
  const int64_t step = (score_stride / kTopKRowBoundSteps + 7) / 8 * 8;
  return std::min(score_stride, (longest_row + step - 1) / step * step);
}

namespace {

// kernel with one block of `threads` per (KV head, sequence) and `smem` bytes of dynamic shared
// memory (opted in at each launch).
template <typename... Params, typename... Args>
absl::Status LaunchPerPair(void (*kernel)(Params...), int threads, size_t smem, int heads_kv,
                           int num_seqs, cudaStream_t stream, Args... args) {
  CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem)));
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(kernel, dim3(heads_kv, num_seqs), dim3(threads), smem,
                                           stream, args...));
  return absl::OkStatus();
}

// The workspace's layout for `pairs` (sequence, KV head) pairs over score rows of
// score_stride: [ticket | histograms | arrivals | published counts | splits | candidate keys |
// indices | winners before]. Its size with base null.
struct TopKMultiLayout {
  TopKMultiWorkspace ws;
  int64_t bytes;
};
int64_t RowChunksBound(int64_t score_stride) { return (score_stride + 3) / 4 + 1; }
TopKMultiLayout CarveTopKMultiWorkspace(void* base, int64_t pairs, int64_t score_stride) {
  const int64_t max_slices =
      (RowChunksBound(score_stride) + kStripedTileChunks - 1) / kStripedTileChunks;
  char* p = static_cast<char*>(base);
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    char* q = p == nullptr ? nullptr : p + at;
    at += (bytes + 255) / 256 * 256;
    return q;
  };
  TopKMultiLayout l{};
  l.ws.ticket = reinterpret_cast<int*>(take(sizeof(int)));
  l.ws.hist = reinterpret_cast<int*>(take(pairs * kTwoReadFirstBins * sizeof(int)));
  l.ws.arrived = reinterpret_cast<int*>(take(pairs * sizeof(int)));
  l.ws.published = reinterpret_cast<uint32_t*>(take(pairs * max_slices * sizeof(uint32_t)));
  l.ws.split = reinterpret_cast<FirstDigitSplit*>(take(pairs * sizeof(FirstDigitSplit)));
  const int64_t cand_bytes = pairs * kMultiCandidates * sizeof(int32_t);
  l.ws.cand_key = reinterpret_cast<uint32_t*>(take(cand_bytes));
  l.ws.cand_idx = reinterpret_cast<int32_t*>(take(cand_bytes));
  l.ws.cand_wb = reinterpret_cast<int32_t*>(take(cand_bytes));
  l.bytes = at;
  return l;
}

// How a row of row_chunks chunks is cut into slices for `pairs` rows on `sms` SMs: about
// `tiles` tiles of tile_chunks per block (enough blocks for ~4 per SM, at most kMultiMaxTiles
// tiles), the slice count rounded to the nearest. {slices, chunks per slice}.
std::pair<int, int> SliceRows(int64_t pairs, int64_t row_chunks, int64_t tile_chunks, int sms) {
  const int64_t tiles = (row_chunks + tile_chunks - 1) / tile_chunks;
  const int64_t per_block =
      tile_chunks *
      std::clamp<int64_t>(pairs * tiles / (4 * static_cast<int64_t>(sms)), 1, kMultiMaxTiles);
  const int64_t slices = std::max<int64_t>(1, (row_chunks + per_block / 2) / per_block);
  return {static_cast<int>(slices), static_cast<int>((row_chunks + slices - 1) / slices)};
}

absl::Status LaunchTopKMultiBlock(const uint16_t* scores, int64_t score_stride,
                                  const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                  int32_t* selected, int64_t sel_stride, int32_t* counts,
                                  cudaStream_t stream, void* workspace, int sms) {
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  TopKMultiWorkspace ws = CarveTopKMultiWorkspace(workspace, pairs, score_stride).ws;
  const int64_t row_chunks = RowChunksBound(score_stride);
  const auto [hist_slices, hist_chunks] = SliceRows(pairs, row_chunks, kMultiHistTile, sms);
  const auto [split_slices, split_chunks] =
      SliceRows(pairs, row_chunks, kStripedTileChunks, sms);
  ws.hist_chunks = hist_chunks;
  ws.split_chunks = split_chunks;
  ws.split_slices = split_slices;
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
      TopKHistogramKernel, dim3(hist_slices, heads_kv, num_seqs), dim3(kStripedThreads), 0,
      stream, scores, score_stride, seqs, heads_kv, selected, sel_stride, counts, ws));
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
      TopKSplitKernel, dim3(static_cast<unsigned>(pairs * ws.split_slices)),
      dim3(kStripedThreads), 0, stream, scores, score_stride, seqs, heads_kv, selected,
      sel_stride, ws));
  return LaunchPerPair(TopKFinishKernel, kStripedThreads, kMultiFinishSmem, heads_kv, num_seqs,
                       stream, scores, score_stride, seqs, heads_kv, selected, sel_stride, ws);
}

}  // namespace

int64_t TopKSelectWorkspaceBytes(int num_seqs, int heads_kv, int64_t score_stride) {
  return CarveTopKMultiWorkspace(nullptr, static_cast<int64_t>(num_seqs) * heads_kv,
                                 score_stride)
      .bytes;
}

absl::Status LaunchTopKSelect(const uint16_t* scores, int64_t score_stride,
                              const CudaDsSequence* seqs,
                              int num_seqs, int heads_kv, int32_t* selected, int64_t sel_stride,
                              int32_t* counts, cudaStream_t stream, TopKAlgo algo,
                              void* workspace, int64_t longest_row) {
  if (num_seqs == 0) return absl::OkStatus();
  // score_stride bounds every sequence's tokens, hence its candidates.
  // The SM count: kAuto's rule, the multi-block slicing and the striped kernel's shape.
  ASSIGN_OR_RETURN(const LaunchInfo device, CachedLaunchInfo(nullptr, 0, 0));
  const int sms = device.sms;
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  TopKAlgo resolved = ResolveTopKAlgo(algo, score_stride, pairs, sms, longest_row);
  if (resolved == TopKAlgo::kMultiBlock) {
    if (workspace == nullptr) {
      return absl::InvalidArgumentError("LaunchTopKSelect: kMultiBlock needs a workspace");
    }
    return LaunchTopKMultiBlock(scores, score_stride, seqs, num_seqs, heads_kv, selected,
                                sel_stride, counts, stream, workspace, sms);
  }
  if (resolved == TopKAlgo::kResident) {
    return LaunchTopKResident(scores, score_stride, seqs, num_seqs, heads_kv, selected,
                              sel_stride, counts, stream);
  }
  if (resolved == TopKAlgo::kCluster) {
    auto* kernel = TopKSelectClusterKernel<kTopKClusterThreads>;
    // Slices for rows up to the row bound (longer ones: ClusterRowPastBound). kAuto's blocks;
    // a named kCluster where kAuto would not take it: 16K keys a block.
    const int64_t rows = BoundRows(score_stride, longest_row);
    int64_t nb = TopKClusterBlocks(rows, pairs, sms);
    if (nb == 0) nb = ClusterBlocksAtKeysPerBlock(rows);
    auto slice_bytes = [&](int64_t blocks) {
      return std::max<int64_t>(cuda::ClusterSliceBytes(cuda::ClusterSliceKeys(rows, blocks)),
                               sizeof(SelectInMemoryShared<kTopKClusterThreads>));
    };
    if (nb > kTopKClusterPortable) {
      ASSIGN_OR_RETURN(const int fits,
                       cuda::MaxClusterBlocks(reinterpret_cast<const void*>(kernel),
                                              kTopKClusterThreads,
                                              static_cast<size_t>(slice_bytes(nb)),
                                              static_cast<int>(nb)));
      nb = std::max<int64_t>(fits, kTopKClusterPortable);
    }
    ASSIGN_OR_RETURN(const LaunchInfo info,
                     CachedLaunchInfo(reinterpret_cast<const void*>(kernel), 0, 0));
    const int64_t smem = slice_bytes(nb);
    if (smem + static_cast<int64_t>(info.static_smem) <= info.smem_optin) {
      const int slice_keys = static_cast<int>(smem / 2);
      RETURN_IF_ERROR(cuda::LaunchSegmentClusters(kernel, static_cast<int>(nb), heads_kv,
                                                  num_seqs, kTopKClusterThreads, smem, stream,
                                                  scores, score_stride, seqs, heads_kv, selected,
                                                  sel_stride, counts, slice_keys));
      return absl::OkStatus();
    }
    // Longer than the cluster's shared memory holds: a one-block kernel.
    resolved = algo == TopKAlgo::kAuto ? TopKAlgo::kStriped : TopKAlgo::kOneBlock;
  }
  if (resolved == TopKAlgo::kStriped) {
    if (2 * pairs <= sms && score_stride > kTopKShortSegment) {
      return cuda::LaunchSegmentClusters(TopKSelectStripedPartsKernel<2>, 2, heads_kv, num_seqs,
                                         kStripedThreads, kTwoReadSmem, stream, scores,
                                         score_stride, seqs, heads_kv, selected, sel_stride,
                                         counts);
    }
    auto* kernel = pairs <= sms ? TopKSelectStripedKernel<kOwnedChunksFew>
                                : TopKSelectStripedKernel<kOwnedChunksMany>;
    return LaunchPerPair(kernel, kStripedThreads, kTwoReadSmem, heads_kv, num_seqs, stream,
                         scores, score_stride, seqs, heads_kv, selected, sel_stride, counts);
  }
  if (resolved == TopKAlgo::kTwoRead) {
    return LaunchPerPair(TopKSelectTwoReadKernel, kTwoReadThreads, kTwoReadSmem, heads_kv,
                         num_seqs, stream, scores, score_stride, seqs, heads_kv, selected,
                         sel_stride, counts);
  }
  return LaunchPerPair(TopKSelectKernel, kTopKThreads, 0, heads_kv, num_seqs, stream, scores,
                       score_stride, seqs, heads_kv, selected, sel_stride, counts);  // kOneBlock
}

}  // namespace dsinfer
