// The two-read top-k bodies' shared pieces, used by kTwoRead, kStriped and its two-block
// clusters (topk_select.cu) and kMultiBlock (topk_multi_block.cu): read 1 takes a 13-bit
// histogram of the keys and SplitAtFirstDigit finds its boundary bucket; read 2 (each body's
// own) puts the winners above the bucket at their rank in the output and the bucket's
// candidates in shared memory (TwoReadSmem), where FinishSplitInShared resolves the remaining
// digits and moves the chosen candidates into place; a bucket past shared memory is finished
// by FinishByRadixPasses over the scores in memory.
#ifndef DSINFER_KERNELS_CUDA_TOPK_TWO_READ_CUH_
#define DSINFER_KERNELS_CUDA_TOPK_TWO_READ_CUH_

#include <cstdint>

#include "kernels/cuda/score_format.cuh"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda/topk_in_memory.cuh"

namespace dsinfer {
namespace cuda {

constexpr int kTopKItems = 8;  // candidates per thread per compaction tile

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

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_TOPK_TWO_READ_CUH_
