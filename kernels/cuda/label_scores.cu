// Double Sparsity label scoring (LaunchLabelScores, declared in double_sparsity.cuh).
//
// Scoring (LabelScoreAlgo), every body bit-exact to the twin (the dots as __fmaf_rn chains,
// the sums __fadd_rn, in the twin's order, which makes the selection comparable exactly).
// 4-bit rows fold scale s and minimum m out of the dot, as the twin does: per query head
// qc = Σ q·c (an FMA chain over the codes as floats), dot = fma(s, qc, m · qs) with
// qs = Σ q staged once per block next to the query channels (as their channel r); per channel
// that is a nibble, its float, and one FMA per query head.
// Every body has consecutive threads on consecutive tokens of one KV head, whose rows the
// paged label layout (LabelRow) keeps contiguous, so a warp reads contiguous spans.
//  - kRowPerThread (the first body): one thread per (token, KV head) label row, in 16-byte
//    loads whenever the row size allows (fp16 r % 8 == 0, 4-bit r % 32 == 0). The query's
//    label channels of every score head (and for 4-bit rows their sums) are staged once per
//    block in shared memory, [heads_kv][score heads][r + 1].
//  - kCoalesced / kStrided (the default): kScoreItemsPerThread rows per thread, the query's
//    label channels staged with the KV head fastest (no bank conflicts across a warp's heads);
//    one block per tile (kCoalesced) or one wave of resident blocks looping over the tiles
//    (kStrided: kScoreWaves). Rows of 4, 8, 16 or 32 bytes run a kernel compiled for their
//    shape (LabelScoresFixedKernel: registers sized to the shape, a warp's items one KV head's
//    run of a label page, its scores stored straight to the head's row; the score heads a
//    compile-time constant where heads × r <= 32); other shapes the general kernel, whose
//    scores leave through shared memory as per-head token runs.
// Score heads (ScoreHeadsOf, the twin's ScoreHeads): the query vectors a KV head's scores fold.
// Sum aggregation (the default) stages one, the GQA group's label channels summed, so a row
// costs r FMAs whatever the group; max aggregation stages each query head's channels.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/label_dot.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/score_format.cuh"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::CachedLaunchInfo;
using cuda::LaunchInfo;
using cuda::AggregateStart;
using cuda::AggregateStep;
using cuda::CodeToFloat;
using cuda::DotStep;
using cuda::F16BitsToF32;
using cuda::FoldScaleMinimum;
using cuda::HeadQueryChannels;
using cuda::IsAligned;
using cuda::QChannel;
using cuda::ScoreHeadsOf;
using cuda::ScoreLabelRow;
using cuda::ScoreLabelRowScaled;
using cuda::ScoreQueryChannel;
using cuda::StagedChannelSum;
using cuda::VecOf;

constexpr int kMaxGroup = 16;  // query heads per KV head (so score heads) the scorer handles
constexpr int kScoreThreads = 256;
constexpr int kScoreItemsPerThread = 4;
// Waves of resident blocks the strided scorers run on: each block stages the query's channels
// once, then loops over its tiles. One, against two (H200): the fixed-shape kernels' scoring
// 10% and 18-26% faster at Llama-3 heads batch 8, 64K (1/16 fp16 r 8 and 4-bit r 8), 2-5% at
// 256K, faster at every batch-1 shape timed, from 5% faster to 2% slower at batch 32 and with
// Llama-2 heads (run 40: a sequence's blocks stage its query once, not twice, before their
// first labels load); the general kernel's 1-10% faster at batch 1 and 8, 64K, 0.5-0.8% slower
// at Llama-2 heads batch 8, 256K and batch 32 (run 41).
constexpr int kScoreWaves = 1;
// Resident blocks per SM the fixed-shape scorers are compiled for (64 registers a thread):
// half the SM's threads, each with kScoreItemsPerThread rows in flight. The runtime-group ones
// hold a row as floats (fp16 values or 4-bit codes, up to 64) and get 128 registers (2 blocks),
// except on 8-byte rows (4-bit r 16: 16 floats), which fit 64 without spilling.
constexpr int kScoreFixedBlocksPerSm = 4;

// The dots of `heads` score heads folded in order.
__device__ __forceinline__ float Aggregate(const float* dot, int heads, bool max_agg) {
  float agg = AggregateStart(max_agg);
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= heads) break;
    agg = AggregateStep(agg, dot[g], max_agg);
  }
  return agg;
}

// Dots of one label row with the score heads' query channels, in the twins' order: per score
// head, channels ascending (DotStep), 4-bit dots folded once at the end (FoldScaleMinimum).
// q_at(j, g) is channel j of score head g, and q_at(r, g) the sum of its r channels (staged
// for 4-bit rows); both scorers' layouts of the query channels below plug in here. Rows are
// read in kBytes pieces.
template <int kBits, int kBytes, typename QAt>
__device__ __forceinline__ void DotRowWith(const uint8_t* row, int r, float scale, float minimum,
                                           int heads, QAt q_at, float* dot) {
  using V = typename VecOf<kBytes>::T;
  const int row_bytes = kBits == 16 ? 2 * r : (r + 1) / 2;
  for (int c = 0; c < row_bytes / kBytes; ++c) {
    union {
      V v;
      uint8_t b[kBytes];
    } u;
    u.v = reinterpret_cast<const V*>(row)[c];
    constexpr int kPer = kBits == 16 ? kBytes / 2 : kBytes * 2;
    float vals[kPer];
    if (kBits == 16) {
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        vals[e] = F16BitsToF32(static_cast<uint16_t>(u.b[2 * e] | (u.b[2 * e + 1] << 8)));
      }
    } else {
#pragma unroll
      for (int e = 0; e < kPer; ++e) vals[e] = CodeToFloat((u.b[e / 2] >> ((e % 2) * 4)) & 0xfu);
    }
    const int j0 = c * kPer;
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= heads) break;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        if (j0 + e < r) dot[g] = DotStep<kBits>(dot[g], q_at(j0 + e, g), vals[e]);
      }
    }
  }
  if constexpr (kBits == 4) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= heads) break;
      dot[g] = FoldScaleMinimum(dot[g], scale, minimum, q_at(r, g));
    }
  }
}

// kRowPerThread (the GPU-verified scorer, as it ran on the H100/H200): a KV head's score heads'
// query channels as qs: [heads][r + 1] in shared memory, channel r their sum (4-bit rows).
template <int kBits, int kBytes>
__device__ __forceinline__ void DotRowHeadMajor(const uint8_t* row, int r, float scale,
                                                float minimum, const float* qs, int heads,
                                                float* dot) {
  DotRowWith<kBits, kBytes>(
      row, r, scale, minimum, heads, [qs, r](int j, int g) { return qs[g * (r + 1) + j]; }, dot);
}

template <typename T>
__global__ void LabelScoresRowPerThreadKernel(const T* q, int64_t q_stride,
                                              const CudaDsSequence* seqs,
                                              const CudaLabelSeq* labels, int heads_q,
                                              int heads_kv, int head_dim, uint16_t* scores,
                                              int64_t score_stride) {
  extern __shared__ float qs[];  // [heads_kv][score heads][r + 1], channel r the sum (4-bit)
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.y;
  const CudaDsSequence seq = seqs[s];
  const CudaLabelSeq lab = labels[s];
  const int r = lab.r;
  const int64_t items = static_cast<int64_t>(seq.tokens) * heads_kv;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kScoreThreads * kScoreItemsPerThread;
  if (first >= items) return;
  const int group = heads_q / heads_kv;
  const bool max_agg = seq.aggregation == 1;
  const int heads = ScoreHeadsOf(group, max_agg);
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < heads_kv * heads * r; i += blockDim.x) {
    const int hs = i / r, j = i % r;  // score head hs = h × heads + g
    const int h = hs / heads;
    qs[hs * (r + 1) + j] = ScoreQueryChannel(qrow, head_dim, group, max_agg, h, hs % heads,
                                             lab.channels[h * r + j]);
  }
  if (lab.bits == 4) {
    __syncthreads();  // the channels are staged
    for (int hs = threadIdx.x; hs < heads_kv * heads; hs += blockDim.x) {
      qs[hs * (r + 1) + r] = StagedChannelSum(qs + hs * (r + 1), r, 1);
    }
  }
  __syncthreads();
  const int row_bytes = lab.bits == 16 ? 2 * r : (r + 1) / 2;
  for (int it = 0; it < kScoreItemsPerThread; ++it) {
    const int64_t i = first + it * kScoreThreads + threadIdx.x;
    if (i >= items) break;
    // Items head by head, so consecutive threads take consecutive tokens of one head.
    const int64_t t = i % seq.tokens;
    const int h = static_cast<int>(i / seq.tokens);
    const int64_t slot = LabelRow(t, h, heads_kv);
    const uint8_t* row = static_cast<const uint8_t*>(lab.data) + slot * row_bytes;
    float scale = 0.0f, minimum = 0.0f;
    if (lab.bits == 4) {
      scale = F16BitsToF32(lab.scales[slot]);
      minimum = F16BitsToF32(lab.minimums[slot]);
    }
    float dot[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) dot[g] = 0.0f;
    const float* qh = qs + h * heads * (r + 1);
    const bool aligned16 = IsAligned(lab.data, 16), aligned8 = IsAligned(lab.data, 8);
    if (lab.bits == 16) {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRowHeadMajor<16, 16>(row, r, 0.0f, 0.0f, qh, heads, dot);
      } else {
        DotRowHeadMajor<16, 2>(row, r, 0.0f, 0.0f, qh, heads, dot);
      }
    } else {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRowHeadMajor<4, 16>(row, r, scale, minimum, qh, heads, dot);
      } else if (row_bytes % 8 == 0 && aligned8) {
        DotRowHeadMajor<4, 8>(row, r, scale, minimum, qh, heads, dot);
      } else {
        DotRowHeadMajor<4, 1>(row, r, scale, minimum, qh, heads, dot);
      }
    }
    scores[(static_cast<int64_t>(s) * heads_kv + h) * score_stride + t] =
        cuda::ScoreBits(Aggregate(dot, heads, max_agg));
  }
}

// kCoalesced: the score heads' query channels in the [j][g][h] layout (qh = qs + h). The
// general path (any r).
template <int kBits, int kBytes>
__device__ __forceinline__ void DotRow(const uint8_t* row, int r, float scale, float minimum,
                                       const float* qh, int heads, int heads_kv, float* dot) {
  DotRowWith<kBits, kBytes>(
      row, r, scale, minimum, heads,
      [qh, heads, heads_kv](int j, int g) { return QChannel(qh, j, g, heads, heads_kv); }, dot);
}

// What one scoring block works on: tokens [t0, t0 + tokens) of one sequence (a tile of tpb
// token slots, items numbered head by head: item = head × tpb + token - t0), its label storage
// and the staged query channels.
struct ScoreTile {
  const uint8_t* data;
  const uint16_t* scales;
  const uint16_t* minimums;
  const float* qs;
  int t0, tokens, tpb, heads, heads_kv, r;  // heads: the sequence's score heads
  bool max_agg;
};

// Item it of this thread (kScoreItemsPerThread per thread, blockDim apart: consecutive threads
// on consecutive tokens of one head, which LabelRow keeps contiguous).
__device__ __forceinline__ int ScoreItem(int it) {
  return it * kScoreThreads + static_cast<int>(threadIdx.x);
}

// Any r and alignment: one row at a time, the widest loads the row size allows.
__device__ __forceinline__ void ScoreItemsGeneral(const ScoreTile& t, int bits, float* out) {
  const int row_bytes = bits == 16 ? 2 * t.r : (t.r + 1) / 2;
  const bool aligned16 = IsAligned(t.data, 16), aligned8 = IsAligned(t.data, 8);
  for (int it = 0; it < kScoreItemsPerThread; ++it) {
    const int li = ScoreItem(it);
    const int h = li / t.tpb, tl = li % t.tpb;
    if (h >= t.heads_kv || tl >= t.tokens) continue;
    const int64_t i = LabelRow(t.t0 + tl, h, t.heads_kv);
    const uint8_t* row = t.data + i * row_bytes;
    const float* qh = t.qs + h;
    float dot[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) dot[g] = 0.0f;
    if (bits == 16) {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRow<16, 16>(row, t.r, 0.0f, 0.0f, qh, t.heads, t.heads_kv, dot);
      } else {
        DotRow<16, 2>(row, t.r, 0.0f, 0.0f, qh, t.heads, t.heads_kv, dot);
      }
    } else {
      const float scale = F16BitsToF32(t.scales[i]);
      const float minimum = F16BitsToF32(t.minimums[i]);
      if (row_bytes % 16 == 0 && aligned16) {
        DotRow<4, 16>(row, t.r, scale, minimum, qh, t.heads, t.heads_kv, dot);
      } else if (row_bytes % 8 == 0 && aligned8) {
        DotRow<4, 8>(row, t.r, scale, minimum, qh, t.heads, t.heads_kv, dot);
      } else {
        DotRow<4, 1>(row, t.r, scale, minimum, qh, t.heads, t.heads_kv, dot);
      }
    }
    out[it] = Aggregate(dot, t.heads, t.max_agg);
  }
}

// Tokens per scoring block: whole tokens, at most kScoreThreads × kScoreItemsPerThread items.
__host__ __device__ __forceinline__ int ScoreTokensPerBlock(int heads_kv) {
  return heads_kv >= kScoreThreads * kScoreItemsPerThread
             ? 1
             : kScoreThreads * kScoreItemsPerThread / heads_kv;
}

// Tiles of the fixed-row scorers for a sequence of `tokens` tokens: a tile is kScoreRunsPerTile
// consecutive (page, KV head) runs of the paged label layout — run = page × heads_kv + head
// holds the head's rows of that page, rows [run × P, run × P + P) — so a tile is one contiguous
// span of rows, and each warp takes one run (one head, a page of tokens).
constexpr int kScoreRunsPerTile = kScoreThreads / 32;
static_assert(32 * kScoreItemsPerThread == kLabelPageTokens, "a warp's items are one page run");
__host__ __device__ __forceinline__ int64_t ScoreRuns(int64_t tokens, int heads_kv) {
  return LabelCapacity(tokens) / kLabelPageTokens * heads_kv;
}
__host__ __device__ __forceinline__ int64_t ScoreRunTiles(int64_t tokens, int heads_kv) {
  return (ScoreRuns(tokens, heads_kv) + kScoreRunsPerTile - 1) / kScoreRunsPerTile;
}

// Stages the query's label channels of sequence `seq` in shared memory as [r][heads][heads_kv]
// (QChannel's layout; `heads` the sequence's score heads, ScoreHeadsOf), for 4-bit labels
// followed by their sums as channel r, then a barrier. kBits: the labels' bits where the
// kernel is compiled for them (so an fp16 kernel carries no sum code), 0 where they are known
// at run time only.
template <int kBits, typename T>
__device__ __forceinline__ void StageQueryChannels(const T* q, int64_t q_stride,
                                                   const CudaDsSequence& seq,
                                                   const CudaLabelSeq& lab, int heads_q,
                                                   int heads_kv, int head_dim, int heads,
                                                   float* qs) {
  const int group = heads_q / heads_kv;
  const bool max_agg = seq.aggregation == 1;
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  const int per_channel = heads * heads_kv;
  for (int i = threadIdx.x; i < per_channel * lab.r; i += blockDim.x) {
    const int h = i % heads_kv, g = (i / heads_kv) % heads, j = i / per_channel;
    qs[i] = ScoreQueryChannel(qrow, head_dim, group, max_agg, h, g, lab.channels[h * lab.r + j]);
  }
  if (kBits == 4 || (kBits == 0 && lab.bits == 4)) {
    __syncthreads();  // the channels are staged
    // Score head g of KV head h (i = g × heads_kv + h) at (r × heads + g) × heads_kv + h.
    for (int i = threadIdx.x; i < per_channel; i += blockDim.x) {
      qs[lab.r * per_channel + i] = StagedChannelSum(qs + i, lab.r, per_channel);
    }
  }
  __syncthreads();
}

// What one scoring block works on: its sequence (blockIdx.y), that sequence's labels and score
// heads (ScoreHeadsOf), and the sequence's token tiles of tpb tokens; inactive past the last
// tile.
struct ScoreBlock {
  CudaDsSequence seq;
  CudaLabelSeq lab;
  int heads, tpb, tiles;
  bool active;
};

// This block's ScoreBlock, and for an active block the query's label channels staged in `qs`
// (StageQueryChannels<kBits>, ending with a barrier). Every thread of a block gets the same
// answer, so an inactive block may return at once.
template <int kBits, bool kRunTiles, typename T>
__device__ __forceinline__ ScoreBlock BeginScoreBlock(const T* q, int64_t q_stride,
                                                      const CudaDsSequence* seqs,
                                                      const CudaLabelSeq* labels, int heads_q,
                                                      int heads_kv, int head_dim, float* qs) {
  cuda::WaitForPrior();  // (LaunchChained)
  ScoreBlock b{seqs[blockIdx.y], labels[blockIdx.y], 0, ScoreTokensPerBlock(heads_kv), 0, false};
  b.heads = ScoreHeadsOf(heads_q / heads_kv, b.seq.aggregation == 1);
  b.tiles = kRunTiles ? static_cast<int>(ScoreRunTiles(b.seq.tokens, heads_kv))
                      : (b.seq.tokens + b.tpb - 1) / b.tpb;
  b.active = static_cast<int>(blockIdx.x) < b.tiles;
  if (b.active) {
    StageQueryChannels<kBits>(q, q_stride, b.seq, b.lab, heads_q, heads_kv, head_dim, b.heads,
                              qs);
  }
  return b;
}

// Writes a tile's staged scores (staged[token * (heads_kv + 1) + head], the pad keeping both
// the staging and these reads conflict-free) to the sequence's score rows (row h at srow +
// h * score_stride) as per-head token runs, a warp per head: written straight from the item
// layout, a warp's 32 stores would land in up to 32 score rows (one sector each). Barriers
// before (the staging is complete) and after (`staged` may be reused at once).
__device__ __forceinline__ void WriteStagedScores(const float* staged, int heads_kv, int t0,
                                                  int tokens_here, uint16_t* srow,
                                                  int64_t score_stride) {
  __syncthreads();
  const int pitch = heads_kv + 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int h = warp; h < heads_kv; h += kScoreThreads / 32) {
    uint16_t* row = srow + static_cast<int64_t>(h) * score_stride + t0;
    for (int tl = lane; tl < tokens_here; tl += 32) {
      row[tl] = cuda::ScoreBits(staged[tl * pitch + h]);
    }
  }
  __syncthreads();
}

// One run's rows as LabelScoresFixedKernel holds them: its KV head, first token, how many of its
// tokens from this lane's the sequence holds, and this lane's rows (kScoreItemsPerThread of
// kChunks chunks; 4-bit rows with their fp16 scale (low half) and minimum (high half),
// converted only at the fold: one register per item where two floats spilled more at 4-bit
// r 32).
template <int kBits, typename Chunk, int kChunks>
struct ScoreRunRows {
  int head, t0, here;
  Chunk raw[kScoreItemsPerThread][kChunks];
  uint32_t scale_min[kScoreItemsPerThread] = {};
};

// Where the fixed-row scorer's items of a run are consecutive rows (4-bit r 8 and r 16: 4- and
// 8-byte rows): a lane's items are the rows of 16-byte chunks — 4-byte rows 4 l .. 4 l + 3 of
// the run for lane l, one chunk, 8-byte rows 2 l, 2 l + 1 and 64 + 2 l, 64 + 2 l + 1, two —
// rather than l, l + 32, l + 64, l + 96; a chunk's rows' scales and minimums come in one load
// each and their scores leave in one store, two conversions packing two scores each. A warp's
// loads and stores stay contiguous spans, with a third (a half at 8-byte rows) of the loads, a
// quarter (a half) of the stores and half the conversions. Used on a warp's full pages where
// the rows, scales, minimums and the head's score row are aligned (the engine pads score rows:
// ScoreRowStride).
template <int kRowBytes>
constexpr bool kConsecutiveRows = kRowBytes == 4 || kRowBytes == 8;

// One run's consecutive rows (kConsecutiveRows): this lane's rows (kPerChunk to a 16-byte
// chunk), their fp16 scales and minimums as loaded, two a word (items 2 w and 2 w + 1 in word
// w, the lower item's in the low half).
template <int kRowBytes>
struct ConsecutiveRunRows {
  static constexpr int kPerChunk = 16 / kRowBytes;
  static constexpr int kChunks = kScoreItemsPerThread / kPerChunk;
  typename VecOf<kRowBytes>::T raw[kScoreItemsPerThread][1];
  uint32_t scales[2], minimums[2];
  static constexpr int kChunkRows = 32 * kPerChunk;  // rows from a lane's chunk to its next
  __device__ __forceinline__ float Scale(int it) const {
    return cuda::F16BitsToF32(static_cast<uint16_t>(scales[it / 2] >> (16 * (it % 2))));
  }
  __device__ __forceinline__ float Minimum(int it) const {
    return cuda::F16BitsToF32(static_cast<uint16_t>(minimums[it / 2] >> (16 * (it % 2))));
  }
};

// Whether the fixed-row scorer takes a shape's 4-bit codes in place (LabelValue's kPlaced):
// run 23 call 10 (H200, batch 8, 64K-256K), scoring 4-bit r 8 / 16 / 32 2.7-3.8% / 5.0-8.6% /
// 3.5-4.4% faster in place, r 64 (its values held for run-time score heads) 14-17% slower;
// r 64 at one score head (no values held: kG 1) 5.1-6.3% faster in place (run 24 call 8).
template <int kR, int kG>
constexpr bool kPlacedCodes = kR <= 32 || kG == 1;

// Resident blocks per SM a fixed-row scorer is compiled for: kScoreFixedBlocksPerSm (64
// registers), 2 (128) where the row's values are held for run-time score heads past 64 bits of
// codes, 3 (85) at 4-bit r 32 and 2 at r 64 with one score head, whose 33 / 65 query channels
// live in registers (HeadQueryChannels: from shared memory they cost a load a channel).
template <int kBits, int kR, int kG>
constexpr int kScoreFixedMinBlocks = kG == 1 && kR == 64       ? 2
                                     : kG == 1 && kR == 32     ? 3
                                     : kG > 0 || kBits * kR <= 64 ? kScoreFixedBlocksPerSm
                                                                  : 2;

// Whether the fixed-row scorer of a shape loads a warp's next run while it scores the current:
// 4-bit r 8 (4-byte rows), where one run's loads were too few bytes in flight to cover memory's
// latency, at one score head or a run-time count (kG 0), where the second set of registers
// spills nothing (at 4-bit r 16, and at two or four score heads, it spilled).
template <int kBits, int kR, int kG>
constexpr bool kScorePrefetch = kBits == 4 && kR == 8 && kG <= 1;

// Label scoring of the common shapes: rows of exactly 4, 8, 16 or 32 bytes (fp16 r 8 / 16,
// 4-bit r 8 / 16 / 32 / 64), kG score heads, and heads_kv dividing kScoreThreads (the launcher
// checks); r and the score heads are compile-time constants (the row and the heads' dots live
// in registers; each shape is its own kernel, so the largest does not set every shape's
// register count). kG 0: the score heads at run time, the row's values (fp16 labels or 4-bit
// codes as floats)
// held. Tiles of kScoreRunsPerTile runs (ScoreRunTiles): warp w takes run w of the tile, one KV
// head's rows of one page, lane l its tokens l, l + 32, l + 64, l + 96 — every load of a warp
// one contiguous span, and every store of its scores one contiguous run of the head's score
// row. Every row of a run is loaded before any is used; values come from LabelValue. The
// arithmetic order is the twin's (DotStep per channel, FoldScaleMinimum per 4-bit row and
// score head): bit-exact. Grid: blocks × sequences; block x scores tiles x, x + gridDim.x, ...
// of its sequence, so warp w of it runs x × kScoreRunsPerTile + w and every gridDim.x ×
// kScoreRunsPerTile runs on: with that step a multiple of heads_kv (FixedScoreBlocks) each warp
// keeps one KV head. Addresses are a run's base and immediate offsets: per tile, index
// arithmetic and the query channels' reloads had cost as many instructions as a 4-bit r 8
// row's dot (ncu, run 21: 355 a warp a tile, issue-bound at 71% of the issue slots). 4- and
// 8-byte rows (4-bit r 8 / 16) take a warp's full pages with consecutive items first
// (kConsecutiveRows; run 23's ncu: per-run index arithmetic, bounds and the head's check had
// cost ~100 of the 260 instructions a warp a run at 4-bit r 8; run 24: scoring 13-16% faster
// at 4-bit r 8, 7-10% at r 16). The other shapes keep this loop: the consecutive loop's form
// with strided items (bounds only on a last page) ran 4-bit r 64 30% slower and spilled at
// several shapes (run 24 calls 1 and 2).
template <typename T, int kBits, int kR, int kG>
__global__ void __launch_bounds__(kScoreThreads, kScoreFixedMinBlocks<kBits, kR, kG>)
    LabelScoresFixedKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs,
                           const CudaLabelSeq* labels, int heads_q, int heads_kv, int head_dim,
                           uint16_t* scores, int64_t score_stride) {
  constexpr int kRowBytes = kBits == 16 ? 2 * kR : kR / 2;
  // Rows are loaded in 16-byte chunks, an 8-byte row (4-bit r 16) as one 8-byte chunk.
  constexpr int kChunkBytes = kRowBytes >= 16 ? 16 : kRowBytes >= 8 ? 8 : 4;
  using Chunk = typename VecOf<kChunkBytes>::T;
  static_assert(kRowBytes % kChunkBytes == 0 && kR % 2 == 0, "4-, 8- or 16-byte rows, r even");
  extern __shared__ float qs[];  // [r + 1][score heads][heads_kv], channel r the sums (4-bit)
  const ScoreBlock b =
      BeginScoreBlock<kBits, true>(q, q_stride, seqs, labels, heads_q, heads_kv, head_dim, qs);
  if (!b.active) return;
  const CudaDsSequence& seq = b.seq;
  const CudaLabelSeq& lab = b.lab;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t runs = ScoreRuns(seq.tokens, heads_kv);
  const bool max_agg = seq.aggregation == 1;
  // heads_kv divides kScoreThreads (the launcher checks): a power of two, so a run's head and
  // page are a mask and a shift (a 64-bit division cost a fifth of the loop's instructions).
  const int head_bits = __ffs(heads_kv) - 1;
  // This warp's runs: blockIdx.x × kScoreRunsPerTile + warp, then every gridDim.x tiles on. The
  // launcher makes that step a multiple of heads_kv, so the head (and the query channels held
  // for it) stays the warp's; they are fetched again only where it changes.
  const int64_t run_step = static_cast<int64_t>(gridDim.x) * kScoreRunsPerTile;
  int64_t run = static_cast<int64_t>(blockIdx.x) * kScoreRunsPerTile + warp;
  if (run >= runs) return;
  int h = static_cast<int>(run & (heads_kv - 1));
  HeadQueryChannels<kG, kR, kBits == 4> qc(qs, h, heads_kv, b.heads);
  const uint8_t* data = static_cast<const uint8_t*>(lab.data);
  uint16_t* const srow = scores + static_cast<int64_t>(blockIdx.y) * heads_kv * score_stride;
  // Run `r`'s rows into `to` (every row loaded before any is used).
  const auto load = [&](int64_t r, ScoreRunRows<kBits, Chunk, kRowBytes / kChunkBytes>& to) {
    to.head = static_cast<int>(r & (heads_kv - 1));
    const int t0 = static_cast<int>(r >> head_bits) * kLabelPageTokens;  // its first token
    const int64_t row0 = r * kLabelPageTokens;                            // and first row
    // How many of the run's tokens from this lane's the sequence holds: item it is row it × 32
    // (immediate offsets from one address).
    to.here = min(seq.tokens - t0, kLabelPageTokens) - lane;
    to.t0 = t0;
    const Chunk* rows = reinterpret_cast<const Chunk*>(data + (row0 + lane) * kRowBytes);
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      if (it * 32 < to.here) {
#pragma unroll
        for (int c = 0; c < kRowBytes / kChunkBytes; ++c) {
          to.raw[it][c] = rows[it * 32 * (kRowBytes / kChunkBytes) + c];
        }
        if (kBits == 4) {
          const int64_t item = row0 + lane + it * 32;
          to.scale_min[it] = lab.scales[item] | static_cast<uint32_t>(lab.minimums[item]) << 16;
        }
      }
    }
  };
  // The scores of the rows in `from`, written to the head's score row.
  const auto score = [&](const ScoreRunRows<kBits, Chunk, kRowBytes / kChunkBytes>& from) {
    if (from.head != h) {
      h = from.head;
      qc = HeadQueryChannels<kG, kR, kBits == 4>(qs, h, heads_kv, b.heads);
    }
    uint16_t* const out = srow + h * score_stride + from.t0 + lane;
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      if (it * 32 >= from.here) break;
      out[it * 32] = cuda::ScoreBits(
          ScoreLabelRow<kBits, kR, kG, kPlacedCodes<kR, kG>>(from.raw[it], from.scale_min[it],
                                                         b.heads, max_agg, qc));
    }
  };
  if constexpr (kConsecutiveRows<kRowBytes>) {
    // The warp's runs on its full pages from `run` on with consecutive items (kConsecutiveRows,
    // where the rows, scales, minimums and the head's score row are aligned; else none): no
    // per-item bounds, no head check (the warp's runs keep its head: a page step apart), the next
    // run's rows a step from the last's (32-bit rows: FixedScoreKernel), the next run's loads in
    // flight while this run's are scored where kScorePrefetch, and at one score head the
    // sequence's aggregation a compile-time constant (at run time ptxas issued both folds of
    // every row, predicated).
    // Returns the first of the warp's runs it left (past its full pages).
    const auto consecutive_runs = [&](int64_t first_run) -> int64_t {
      static_assert(kBits == 4, "4- and 8-byte rows are 4-bit labels");
      using Rows = ConsecutiveRunRows<kRowBytes>;
      constexpr int kPer = Rows::kPerChunk;
      uint16_t* const head_scores = srow + h * score_stride;
      if (!IsAligned(data, 16) || !IsAligned(lab.scales, 2 * kPer) ||
          !IsAligned(lab.minimums, 2 * kPer) || !IsAligned(head_scores, 2 * kPer)) {
        return first_run;
      }
      int page = static_cast<int>(first_run >> head_bits);
      const int page_step = static_cast<int>(run_step >> head_bits);
      const int full_pages = seq.tokens / kLabelPageTokens;
      if (page >= full_pages) return first_run;
      const int first = kPer * lane;  // the lane's first row of a run
      int row = (page * heads_kv + h) * kLabelPageTokens + first;  // of the next run to load
      const int row_step = static_cast<int>(run_step) * kLabelPageTokens;
      uint16_t* out = head_scores + static_cast<int64_t>(page) * kLabelPageTokens + first;
      const auto load = [&](Rows& to) {
#pragma unroll
        for (int c = 0; c < Rows::kChunks; ++c) {
          const int chunk_row = row + c * Rows::kChunkRows;
          const uint4 w =
              *reinterpret_cast<const uint4*>(data + static_cast<int64_t>(chunk_row) * kRowBytes);
          if constexpr (kPer == 4) {
            to.raw[0][0] = w.x, to.raw[1][0] = w.y, to.raw[2][0] = w.z, to.raw[3][0] = w.w;
            const uint2 sc = *reinterpret_cast<const uint2*>(lab.scales + chunk_row);
            const uint2 mi = *reinterpret_cast<const uint2*>(lab.minimums + chunk_row);
            to.scales[0] = sc.x, to.scales[1] = sc.y, to.minimums[0] = mi.x, to.minimums[1] = mi.y;
          } else {
            to.raw[2 * c][0] = make_uint2(w.x, w.y), to.raw[2 * c + 1][0] = make_uint2(w.z, w.w);
            to.scales[c] = *reinterpret_cast<const uint32_t*>(lab.scales + chunk_row);
            to.minimums[c] = *reinterpret_cast<const uint32_t*>(lab.minimums + chunk_row);
          }
        }
        row += row_step;
      };
      const auto pages_with = [&](auto max_agg_c) {
        constexpr bool kMax = decltype(max_agg_c)::value;
        const auto row_score = [&](const Rows& from, int it) {
          return ScoreLabelRowScaled<kBits, kR, kG, kPlacedCodes<kR, kG>>(
              from.raw[it], from.Scale(it), from.Minimum(it), b.heads, kG == 1 ? kMax : max_agg,
              qc);
        };
        const auto score = [&](const Rows& from) {
          const uint32_t lo = cuda::ScoreBitsPair(row_score(from, 0), row_score(from, 1));
          const uint32_t hi = cuda::ScoreBitsPair(row_score(from, 2), row_score(from, 3));
          if constexpr (kPer == 4) {
            *reinterpret_cast<uint2*>(out) = make_uint2(lo, hi);
          } else {
            *reinterpret_cast<uint32_t*>(out) = lo;
            *reinterpret_cast<uint32_t*>(out + Rows::kChunkRows) = hi;
          }
          out += static_cast<int64_t>(page_step) * kLabelPageTokens;
          page += page_step;
        };
        if constexpr (kScorePrefetch<kBits, kR, kG>) {
          Rows cur, next;
          load(cur);
          for (;;) {
            const bool more = page + page_step < full_pages;
            if (more) load(next);
            score(cur);
            if (!more) break;
            const bool more2 = page + page_step < full_pages;
            if (more2) load(cur);
            score(next);
            if (!more2) break;
          }
        } else {
          while (page < full_pages) {
            Rows here;
            load(here);
            score(here);
          }
        }
      };
      if (kG == 1 && max_agg) {
        pages_with(std::true_type{});
      } else {
        pages_with(std::false_type{});
      }
      return static_cast<int64_t>(page) * heads_kv + h;
    };
    run = consecutive_runs(run);
    if (run >= runs) return;
  }
  if constexpr (kScorePrefetch<kBits, kR, kG>) {
    // The next run's rows load while this run's are scored: a 4-bit r 8 row is 8 bytes with its
    // scale and minimum, and one run's in flight left the scorer waiting on memory (ncu, run 21).
    ScoreRunRows<kBits, Chunk, kRowBytes / kChunkBytes> cur, next;
    load(run, cur);
    for (;;) {
      const bool more = run + run_step < runs;
      if (more) load(run + run_step, next);
      score(cur);
      if (!more) break;
      run += run_step;
      const bool more2 = run + run_step < runs;
      if (more2) load(run + run_step, cur);
      score(next);
      if (!more2) break;
      run += run_step;
    }
  } else {
    for (; run < runs; run += run_step) {
      ScoreRunRows<kBits, Chunk, kRowBytes / kChunkBytes> rows;
      load(run, rows);
      score(rows);
    }
  }
}

// Label scoring of any shape (r, bits, alignment, group, heads_kv <= 1024): rows one at a time,
// the widest loads the row size allows. Grid as LabelScoresFixedKernel's.
template <typename T>
__global__ void __launch_bounds__(kScoreThreads)
    LabelScoresGeneralKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs,
                             const CudaLabelSeq* labels, int heads_q, int heads_kv, int head_dim,
                             uint16_t* scores, int64_t score_stride) {
  extern __shared__ float qs[];  // [r + 1][score heads][heads_kv], channel r the sums (4-bit)
  __shared__ float staged[2 * kScoreThreads * kScoreItemsPerThread];
  const ScoreBlock b =
      BeginScoreBlock<0, false>(q, q_stride, seqs, labels, heads_q, heads_kv, head_dim, qs);
  if (!b.active) return;
  ScoreTile t;
  t.data = static_cast<const uint8_t*>(b.lab.data);
  t.scales = b.lab.scales;
  t.minimums = b.lab.minimums;
  t.qs = qs;
  t.tpb = b.tpb;
  t.heads = b.heads;
  t.heads_kv = heads_kv;
  t.r = b.lab.r;
  t.max_agg = b.seq.aggregation == 1;
  const int pitch = heads_kv + 1;
  uint16_t* srow = scores + static_cast<int64_t>(blockIdx.y) * heads_kv * score_stride;
  for (int tile = blockIdx.x; tile < b.tiles; tile += gridDim.x) {
    const int t0 = tile * b.tpb;
    const int tokens_here = min(b.tpb, b.seq.tokens - t0);
    t.t0 = t0;
    t.tokens = tokens_here;
    float out[kScoreItemsPerThread];
    ScoreItemsGeneral(t, b.lab.bits, out);
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      const int li = ScoreItem(it);
      const int h = li / b.tpb, tl = li % b.tpb;
      if (h < heads_kv && tl < tokens_here) staged[tl * pitch + h] = out[it];
    }
    WriteStagedScores(staged, heads_kv, t0, tokens_here, srow, score_stride);
  }
}

template <typename T>
using ScoreKernel = void (*)(const T*, int64_t, const CudaDsSequence*, const CudaLabelSeq*, int,
                             int, int, uint16_t*, int64_t);

// LabelScoresFixedKernel as a kernel family of FixedLabelKernel.
template <typename T>
struct FixedScorers {
  template <int kBits, int kR, int kG>
  static ScoreKernel<T> Of() {
    return LabelScoresFixedKernel<T, kBits, kR, kG>;
  }
};

// Blocks a sequence for the fixed-row kernel near `blocks`: a multiple of the blocks whose
// warps span heads_kv runs, so that each warp's runs keep one KV head (LabelScoresFixedKernel).
// One block per tile (kCoalesced) is one already: a tile's runs are whole pages of heads.
inline int64_t FixedScoreBlocks(int64_t blocks, int heads_kv) {
  const int64_t span = std::max(1, heads_kv / kScoreRunsPerTile);
  return std::max(span, blocks / span * span);
}

// The fixed-row kernel for labels of `bits` bits and r channels (every sequence's) at `heads`
// score heads (FixedLabelKernel's shapes and rule; 0: at run time), or null where none applies,
// heads_kv does not divide the block, or a sequence's label rows (and a run step past them)
// could pass the kernel's 32-bit row indices.
template <typename T>
ScoreKernel<T> FixedScoreKernel(int bits, int r, int heads, int heads_kv, int64_t max_tokens) {
  if (heads_kv > kScoreThreads || kScoreThreads % heads_kv != 0) return nullptr;
  const int64_t rows = LabelCapacity(max_tokens) * heads_kv;
  if (2 * (rows + kScoreRunsPerTile * kLabelPageTokens) > INT32_MAX) return nullptr;
  return cuda::FixedLabelKernel<FixedScorers<T>>(bits, r, heads);
}

// Launches the scoring body `algo` (every kernel takes the same arguments): kRowPerThread, or
// the fixed-shape kernel where label_bits names one (else the general one) on one block per
// token tile (kCoalesced) or on waves of resident blocks (kStrided), compiled for
// score_heads score heads where every sequence has them (else 0). Dynamic shared memory
// past the 48 KiB default, counting the kernel's static shared memory (the score staging),
// needs an opt-in.
template <typename T>
absl::Status LabelScoresT(LabelScoreAlgo algo, int label_bits, int score_heads, int max_r,
                          int num_seqs, int64_t max_tokens, const T* q, int64_t q_stride,
                          const CudaDsSequence* seqs, const CudaLabelSeq* labels, int heads_q,
                          int heads_kv, int head_dim, uint16_t* scores, int64_t score_stride,
                          cudaStream_t stream) {
  // The query's label channels and, for 4-bit labels, their sums: heads_q × (r + 1) floats.
  const size_t smem = static_cast<size_t>(heads_q) * (max_r + 1) * sizeof(float);
  ScoreKernel<T> kernel = LabelScoresRowPerThreadKernel<T>;
  size_t static_smem = 0;
  int64_t blocks = 0;
  if (algo == LabelScoreAlgo::kRowPerThread) {
    const int64_t per_block = kScoreThreads * kScoreItemsPerThread;
    blocks = (max_tokens * heads_kv + per_block - 1) / per_block;
  } else {
    kernel = FixedScoreKernel<T>(label_bits, max_r, score_heads, heads_kv, max_tokens);
    if (kernel != nullptr) {
      blocks = ScoreRunTiles(max_tokens, heads_kv);
    } else {
      kernel = LabelScoresGeneralKernel<T>;
      static_smem = 2 * kScoreThreads * kScoreItemsPerThread * sizeof(float);  // the staging
      const int tpb = ScoreTokensPerBlock(heads_kv);
      blocks = (max_tokens + tpb - 1) / tpb;
    }
  }
  if (smem + static_smem > 48 * 1024) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem)));
  }
  if (algo == LabelScoreAlgo::kStrided) {
    ASSIGN_OR_RETURN(const LaunchInfo info,
                     CachedLaunchInfo(reinterpret_cast<const void*>(kernel), kScoreThreads, smem));
    // Waves of resident blocks shared by the sequences, rounded down (no partial wave trailing
    // the last full one), at least one block per sequence.
    const int64_t resident = static_cast<int64_t>(std::max(1, info.blocks_per_sm)) * info.sms;
    blocks = std::clamp<int64_t>(kScoreWaves * resident / num_seqs, 1, blocks);
    if (kernel != LabelScoresGeneralKernel<T>) blocks = FixedScoreBlocks(blocks, heads_kv);
  }
  const dim3 grid(static_cast<unsigned>(blocks), num_seqs);
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(kernel, grid, dim3(kScoreThreads), smem, stream, q,
                                             q_stride, seqs, labels, heads_q, heads_kv, head_dim,
                                             scores, score_stride));
  return absl::OkStatus();
}

}  // namespace

int UniformLabelBits(const CudaLabelSeq* labels, int n, int max_r) {
  if (n <= 0) return 0;
  for (int i = 0; i < n; ++i) {
    if (labels[i].r != max_r || labels[i].bits != labels[0].bits ||
        !IsAligned(labels[i].data, 16)) {
      return 0;
    }
  }
  return labels[0].bits;
}

int UniformScoreHeads(const CudaDsSequence* seqs, int n, int heads_q, int heads_kv) {
  if (n <= 0 || heads_kv <= 0) return 0;
  for (int i = 1; i < n; ++i) {
    if (seqs[i].aggregation != seqs[0].aggregation) return heads_q == heads_kv ? 1 : 0;
  }
  return ScoreHeadsOf(heads_q / heads_kv, seqs[0].aggregation == 1);
}

absl::Status LaunchLabelScores(DType dtype, const void* q, int64_t q_stride,
                               const CudaDsSequence* seqs, int num_seqs, const CudaLabelSeq* labels,
                               int heads_q, int heads_kv, int head_dim, int max_r, int label_bits,
                               int score_heads, int64_t max_tokens, uint16_t* scores,
                               int64_t score_stride, cudaStream_t stream, LabelScoreAlgo algo) {
  if (num_seqs == 0 || max_tokens == 0) return absl::OkStatus();
  if (heads_kv <= 0 || heads_q % heads_kv != 0 || heads_q / heads_kv > kMaxGroup) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchLabelScores: GQA ", heads_q, "/", heads_kv, " unsupported"));
  }
  if (max_r <= 0 || max_r > head_dim || max_r > 256) {
    return absl::InvalidArgumentError(absl::StrCat("LaunchLabelScores: bad r ", max_r));
  }
  if (score_heads != 0 && score_heads != 1 && score_heads != heads_q / heads_kv) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchLabelScores: bad score heads ", score_heads));
  }
  if (algo != LabelScoreAlgo::kRowPerThread &&
      (heads_kv > kScoreThreads * kScoreItemsPerThread || max_tokens * heads_kv > INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LaunchLabelScores: ", max_tokens, " tokens × ", heads_kv, " KV heads too many"));
  }
  switch (dtype) {
    case DType::kBF16:
      return LabelScoresT(algo, label_bits, score_heads, max_r, num_seqs, max_tokens,
                          static_cast<const __nv_bfloat16*>(q), q_stride, seqs, labels, heads_q,
                          heads_kv, head_dim, scores, score_stride, stream);
    case DType::kF16:
      return LabelScoresT(algo, label_bits, score_heads, max_r, num_seqs, max_tokens,
                          static_cast<const __half*>(q), q_stride, seqs, labels, heads_q, heads_kv,
                          head_dim, scores, score_stride, stream);
    default:
      return UnsupportedDType("LaunchLabelScores", dtype);
  }
}

}  // namespace dsinfer
