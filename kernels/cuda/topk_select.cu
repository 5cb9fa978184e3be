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
// The kernels here take their pieces from topk_two_read.cuh (the two-read bodies' reads and
// finish) and topk_striped.cuh (kStriped's loads and splits); kMultiBlock's kernels are in
// topk_multi_block.cu.
#include <algorithm>
#include <cooperative_groups.h>
#include <cstdint>

#include "absl/status/statusor.h"
#include "kernels/cuda/cluster_select.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/topk_common.cuh"
#include "kernels/cuda/topk_in_memory.cuh"
#include "kernels/cuda/topk_launch.cuh"
#include "kernels/cuda/topk_multi_block.h"
#include "kernels/cuda/topk_resident.h"
#include "kernels/cuda/topk_striped.cuh"
#include "kernels/cuda/topk_two_read.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::BucketFloor;
using cuda::CachedLaunchInfo;
using cuda::CarveTwoReadSmem;
using cuda::ClearClusterHistograms;
using cuda::ClusterSelect;
using cuda::ClusterSelectShared;
using cuda::ClusterSlice;
using cuda::ClusterSliceKeys;
using cuda::ClusterSliceOf;
using cuda::FinishByRadixPasses;
using cuda::FinishSplitInShared;
using cuda::FirstDigitSplit;
using cuda::LaunchInfo;
using cuda::LaunchPerPair;
using cuda::LoadEightScores;
using cuda::LoadScore;
using cuda::LoadScoreBits4;
using cuda::MakeStripedRow;
using cuda::OrderKey;
using cuda::OrderKey16;
using cuda::OwnedSplit;
using cuda::RadixHistogram;
using cuda::SampleBand;
using cuda::SampledBand;
using cuda::SelectInMemory;
using cuda::SelectInMemoryShared;
using cuda::SliceOfRow;
using cuda::SplitAtFirstDigit;
using cuda::StartTopKSegment;
using cuda::StripedHistogram;
using cuda::StripedRow;
using cuda::TopKScan;
using cuda::TopKSegment;
using cuda::TwoReadSmem;
using cuda::kOwnedChunksFew;
using cuda::kOwnedChunksMany;
using cuda::kOwnedMoveItems;
using cuda::kStripedThreads;
using cuda::kStripedWarps;
using cuda::kTopKItems;
using cuda::kTwoReadBits0;
using cuda::kTwoReadCandidates;
using cuda::kTwoReadFirstBins;
using cuda::kTwoReadSmem;
using cuda::kTwoReadThreads;
using cuda::kTwoReadUnroll;

constexpr int kTopKThreads = 1024;
// The one-block top-k is compiled for two resident blocks per SM (32 registers a thread): on
// an H200 it was issue- and latency-bound at one (ncu), and two are 10-17% faster with half
// the loads and compaction keys per thread.
constexpr int kTopKBlocksPerSm = 2;
constexpr int kTopKUnroll = 8;  // histogram loads in flight per thread
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

// kTwoRead (its reads and finish: topk_two_read.cuh): read 1 a 13-bit histogram, read 2 the
// ordered split into the output and shared memory, 8 scores a thread a tile.
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

// kStriped (topk_striped.cuh): a sampled band in place of read 1 where it holds, else read 1's
// histogram; read 2 OwnedSplit of kChunks chunks a thread a tile; FinishSplitInShared.
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
