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
#include "kernels/cuda/topk_multi_block.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/topk_launch.cuh"
#include "kernels/cuda/topk_striped.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::BucketFloor;
using cuda::CarveTwoReadSmem;
using cuda::ClassifySplitTileAt;
using cuda::FinishByRadixPasses;
using cuda::FinishSplitInShared;
using cuda::FirstDigitSplit;
using cuda::LaunchPerPair;
using cuda::LoadSplitTileAt;
using cuda::MakeStripedRow;
using cuda::PlanSegment;
using cuda::SegmentPlan;
using cuda::SliceOfRow;
using cuda::SplitAtFirstDigit;
using cuda::StartTopKSegment;
using cuda::StripedHistogram;
using cuda::StripedRow;
using cuda::StripedSplit;
using cuda::TopKScan;
using cuda::TwoReadSmem;
using cuda::kStripedHistChunks;
using cuda::kStripedRounds;
using cuda::kStripedThreads;
using cuda::kStripedTileChunks;
using cuda::kStripedWarpChunks;
using cuda::kStripedWarps;
using cuda::kTwoReadBits1;
using cuda::kTwoReadFirstBins;

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

}  // namespace

int64_t TopKSelectWorkspaceBytes(int num_seqs, int heads_kv, int64_t score_stride) {
  return CarveTopKMultiWorkspace(nullptr, static_cast<int64_t>(num_seqs) * heads_kv,
                                 score_stride)
      .bytes;
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

}  // namespace dsinfer
