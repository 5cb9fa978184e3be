// Double Sparsity decode kernels (declared in double_sparsity.cuh; design summary there).
//
// Label write: one thread per (row, KV head); r <= 256 channels, two passes over the row
// (min/max, then codes) instead of a local array, so nothing spills.
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
//    one block per tile (kCoalesced) or two waves of resident blocks looping over the tiles
//    (kStrided). Rows of 4, 8, 16 or 32 bytes run a kernel compiled for their shape
//    (LabelScoresFixedKernel: registers sized to the shape, a warp's items one KV head's run of
//    a label page, its scores stored straight to the head's row; the score heads a
//    compile-time constant where heads × r <= 32); other shapes the general kernel, whose
//    scores leave through shared memory as per-head token runs.
// Score heads (ScoreHeadsOf, the twin's ScoreHeads): the query vectors a KV head's scores fold.
// Sum aggregation (the default) stages one, the GQA group's label channels summed, so a row
// costs r FMAs whatever the group; max aggregation stages each query head's channels.
// Top-k: topk_select.cu.
// Attention (SparseAttentionAlgo), grid splits × KV heads × sequences, a block taking its
// split's share of the (sequence, KV head)'s selected rows for the whole GQA group:
//  - kPipelined (the default): SparsePipelinedKernel, dense decode's pipelined body
//    (decode_pipeline.cuh) with slot i = token sel[i]: per-warp cp.async rings of 16-row K/V
//    tiles gathered by index, tensor-core scores and P·V with the group's heads as MMA rows;
//    pieces go through dense decode's workspace and DecodeCombineKernel (decode_pieces.cuh),
//    which writes sequence s's row seqs[s].q_row. Split count: dense flash-decoding's rule.
//  - kWarp (the first, the cross-check): each warp takes 32 selected rows at a time, one lane
//    per row for the scores (a lane reads a whole K row in 16-byte loads, so every sector it
//    touches is used; no per-token shuffle reduction), then lanes over channels for V; one
//    online-softmax rescale per 32 rows; SIMT work that grows with the group. Every warp writes
//    its own partial state; SparseCombineKernel merges them.
// Both give 0 for an empty selection (the twin's empty sum), not 0 / 0.
// None starts its successor early (dependent_launch.cuh): each stage of the chain fills the
// GPU, and the next stage's blocks, started early and waiting, sat beside it — the operator
// chain at batch 8, 256K was ~1.25x slower with them (H200, docs/benchmarks.md run 9). They
// are launched dependent with no early start (LaunchChained, DependentSparseChain, on by
// default: run 16), so each waits for its predecessor's memory first (WaitForPrior).
#include <algorithm>
#include <cstdint>
#include <cooperative_groups.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_pieces.cuh"
#include "kernels/cuda/decode_pipeline.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/label_dot.cuh"
#include "kernels/cuda/label_write.cuh"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/score_format.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::CachedLaunchInfo;
using cuda::LaunchInfo;
using cuda::AggregateStart;
using cuda::AggregateStep;
using cuda::CodeToFloat;
using cuda::DotStep;
using cuda::F32ToF16Bits;
using cuda::F16BitsToF32;
using cuda::FoldScaleMinimum;
using cuda::HeadQueryChannels;
using cuda::IsAligned;
using cuda::Num;
using cuda::QChannel;
using cuda::ScoreHeadsOf;
using cuda::ScoreLabelRow;
using cuda::ScoreLabelRowScaled;
using cuda::ScoreQueryChannel;
using cuda::StagedChannelSum;
using cuda::VecOf;
using cuda::WarpMax;
using cuda::WriteLabelRow;
using cuda::WarpSum;

constexpr int kMaxGroup = 16;  // query heads per KV head (so score heads) the scorer handles
constexpr int kScoreThreads = 256;
constexpr int kScoreItemsPerThread = 4;
// Resident blocks per SM the fixed-shape scorers are compiled for (64 registers a thread):
// half the SM's threads, each with kScoreItemsPerThread rows in flight. The runtime-group ones
// hold a row as floats (fp16 values or 4-bit codes, up to 64) and get 128 registers (2 blocks),
// except on 8-byte rows (4-bit r 16: 16 floats), which fit 64 without spilling.
constexpr int kScoreFixedBlocksPerSm = 4;
constexpr int kAttnWarps = 4;
constexpr int kAttnVRows = 16;  // V rows a warp has in flight (of its 32)
constexpr int kSparseWarpWaves = 2;  // kWarp's split rule aims at 2 waves of blocks

// ---------------------------------------------------------------------------------------------
// Label write (the row's arithmetic: label_write.cuh).

template <typename T>
__global__ void WriteLabelsKernel(const T* k, int64_t k_stride, int64_t rows,
                                  const int32_t* positions, const int32_t* row_label,
                                  const CudaLabelSeq* labels, int kv_heads, int head_dim) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * kv_heads) return;
  const int64_t row = i / kv_heads;
  const int h = static_cast<int>(i % kv_heads);
  const int li = row_label[row];
  if (li < 0) return;
  const CudaLabelSeq lab = labels[li];
  WriteLabelRow(k + row * k_stride + static_cast<int64_t>(h) * head_dim, lab, h,
                LabelRow(positions[row], h, kv_heads));
}

template <typename T>
__global__ void WriteLabelsPagedKernel(CudaPagedKv kv, const CudaLabelRange* ranges,
                                       const CudaLabelSeq* labels) {
  const CudaLabelRange range = ranges[blockIdx.y];
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= static_cast<int64_t>(range.count) * kv.kv_heads) return;
  const int64_t t = range.first + i / kv.kv_heads;
  const int h = static_cast<int>(i % kv.kv_heads);
  const int32_t* bt = kv.block_tables + static_cast<int64_t>(range.kv_seq) * kv.max_blocks;
  const int64_t off =
      ((static_cast<int64_t>(bt[t / kv.block_tokens]) * kv.block_tokens + t % kv.block_tokens) *
           kv.kv_heads +
       h) *
      kv.head_dim;
  const CudaLabelSeq lab = labels[range.label];
  WriteLabelRow(static_cast<const T*>(kv.k) + off, lab, h, LabelRow(t, h, kv.kv_heads));
}

// ---------------------------------------------------------------------------------------------
// Scoring.

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

// ---------------------------------------------------------------------------------------------
// Sparse attention.

template <typename T, int kD>
__device__ __forceinline__ void LoadRow8(const T* p, float* f) {
  // 8 elements, one 16-byte load.
  union {
    uint4 v;
    typename Num<T>::Vec2 h[4];
  } u;
  u.v = *reinterpret_cast<const uint4*>(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = Num<T>::ToF2(u.h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

template <typename T, int kD, int kG>
__global__ void __launch_bounds__(kAttnWarps * 32)
    SparseAttentionKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs, int heads_kv,
                          float scale, CudaPagedKv kv, const int32_t* selected, int64_t sel_stride,
                          const int32_t* counts, int splits, float* workspace) {
  static_assert(kD == 64 || kD == 128, "head_dim 64 or 128");
  constexpr int kC = kD / 32;  // V channels per lane
  __shared__ float qs[kG][kD];
  __shared__ float ps[kAttnWarps][kG][32];
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.z, h = blockIdx.y, split = blockIdx.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const CudaDsSequence seq = seqs[s];
  const int n = counts[s * heads_kv + h];
  const int32_t* sel = selected + (static_cast<int64_t>(s) * heads_kv + h) * sel_stride;
  const int per = (n + splits - 1) / splits;
  const int begin = split * per;
  const int end = min(n, begin + per);
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < kG * kD; i += blockDim.x) {
    qs[i / kD][i % kD] =
        Num<T>::ToF(qrow[static_cast<int64_t>(h * kG + i / kD) * kD + i % kD]) * scale;
  }
  __syncthreads();
  const T* kbase = static_cast<const T*>(kv.k);
  const T* vbase = static_cast<const T*>(kv.v);
  const int32_t* bt = kv.block_tables + static_cast<int64_t>(seq.kv_seq) * kv.max_blocks;
  float m[kG], l[kG], acc[kG][kC];
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int c = 0; c < kC; ++c) acc[g][c] = 0.0f;
  }
  for (int tile = begin + warp * 32; tile < end; tile += kAttnWarps * 32) {
    const int idx = tile + lane;
    const bool valid = idx < end;
    int64_t off = 0;
    float logit[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) logit[g] = 0.0f;
    if (valid) {
      const int token = sel[idx];
      off = ((static_cast<int64_t>(bt[token / kv.block_tokens]) * kv.block_tokens +
              token % kv.block_tokens) *
                 kv.kv_heads +
             h) *
            kD;
      const T* krow = kbase + off;
      // The whole row's loads in flight at once (ncu, H200: with a few rows' bytes in flight
      // per warp the kernel was latency-bound at ~2.6 TB/s, its grid filling half the SM's
      // warp slots, so registers are cheaper than waiting).
#pragma unroll
      for (int c = 0; c < kD / 8; ++c) {
        float f[8];
        LoadRow8<T, kD>(krow + c * 8, f);
#pragma unroll
        for (int g = 0; g < kG; ++g) {
#pragma unroll
          for (int e = 0; e < 8; ++e) logit[g] += qs[g][c * 8 + e] * f[e];
        }
      }
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      const float x = valid ? logit[g] : -INFINITY;
      const float m_new = fmaxf(m[g], WarpMax(x));
      const float p = valid ? __expf(x - m_new) : 0.0f;
      const float corr = __expf(m[g] - m_new);
      l[g] = l[g] * corr + WarpSum(p);
#pragma unroll
      for (int c = 0; c < kC; ++c) acc[g][c] *= corr;
      m[g] = m_new;
      ps[warp][g][lane] = p;
    }
    __syncwarp();
    // V: lanes over channels, kAttnVRows rows' loads issued before their use (a row at a time
    // would serialize 32 memory latencies per tile). Rows past `end` have p = 0 and load
    // nothing.
    const int rows = min(32, end - tile);
    for (int j0 = 0; j0 < rows; j0 += kAttnVRows) {
      float v[kAttnVRows][kC];
#pragma unroll
      for (int jj = 0; jj < kAttnVRows; ++jj) {
        const int64_t offj = __shfl_sync(0xffffffffu, off, j0 + jj);
        const T* vrow = vbase + offj + lane * kC;
        if (j0 + jj < rows) {
          if constexpr (kC == 4) {
            union {
              uint2 u;
              typename Num<T>::Vec2 h[2];
            } x;
            x.u = *reinterpret_cast<const uint2*>(vrow);
            const float2 a = Num<T>::ToF2(x.h[0]), b = Num<T>::ToF2(x.h[1]);
            v[jj][0] = a.x, v[jj][1] = a.y, v[jj][2] = b.x, v[jj][3] = b.y;
          } else {
            const float2 a = Num<T>::ToF2(*reinterpret_cast<const typename Num<T>::Vec2*>(vrow));
            v[jj][0] = a.x, v[jj][1] = a.y;
          }
        } else {
#pragma unroll
          for (int c = 0; c < kC; ++c) v[jj][c] = 0.0f;
        }
      }
#pragma unroll
      for (int jj = 0; jj < kAttnVRows; ++jj) {
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          const float p = ps[warp][g][j0 + jj];
#pragma unroll
          for (int c = 0; c < kC; ++c) acc[g][c] += p * v[jj][c];
        }
      }
    }
    __syncwarp();
  }
  // Partial state of this warp: [m, l, acc[kD]] per query head.
  const int partials = splits * kAttnWarps;
  const int part = split * kAttnWarps + warp;
  const int heads_q = heads_kv * kG;
#pragma unroll
  for (int g = 0; g < kG; ++g) {
    const int hq = h * kG + g;
    float* w = workspace + ((static_cast<int64_t>(s) * heads_q + hq) * partials + part) * (kD + 2);
    if (lane == 0) {
      w[0] = m[g];
      w[1] = l[g];
    }
#pragma unroll
    for (int c = 0; c < kC; ++c) w[2 + lane * kC + c] = acc[g][c];
  }
}

template <typename T, int kD>
__global__ void SparseCombineKernel(const CudaDsSequence* seqs, int heads_q, int partials,
                                    const float* workspace, T* out, int64_t out_stride) {
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.y, hq = blockIdx.x, c = threadIdx.x;
  const float* w = workspace + (static_cast<int64_t>(s) * heads_q + hq) * partials * (kD + 2);
  float big = -INFINITY;
  for (int p = 0; p < partials; ++p) big = fmaxf(big, w[p * (kD + 2)]);
  float total = 0.0f, acc = 0.0f;
  for (int p = 0; p < partials; ++p) {
    const float* wp = w + p * (kD + 2);
    if (wp[1] == 0.0f) continue;  // an empty slice or warp
    const float f = __expf(wp[0] - big);
    total += wp[1] * f;
    acc += wp[2 + c] * f;
  }
  out[static_cast<int64_t>(seqs[s].q_row) * out_stride + static_cast<int64_t>(hq) * kD + c] =
      Num<T>::FromF(cuda::SoftmaxOutput<true>(acc, total));  // an empty selection: 0
}

// kPipelined: the pipelined decode body (decode_pipeline.cuh) over a (sequence, KV head)'s
// selected rows, its kG query heads the rows of the MMA tile; pieces merge in
// DecodeCombineKernel (decode_pieces.cuh), launch row s landing in q row seqs[s].q_row.

// The body's slot list: the selected rows, slot i = token sel[i] of KV sequence kv_seq.
struct SelectedSlots {
  const int32_t* sel;
  int32_t kv_seq;
  __device__ __forceinline__ const int32_t* Table(const CudaPagedKv& kv) const {
    return kv.block_tables + static_cast<int64_t>(kv_seq) * kv.max_blocks;
  }
  __device__ __forceinline__ int Token(int slot) const { return sel[slot]; }
};

// Output rows of the pieces (the combine's rows policy): launch row s is sequence s, written to
// q row seqs[s].q_row; an empty selection gives 0, as SelectedAttentionReference's empty sum.
struct SelectionRows {
  static constexpr bool kMayBeEmpty = true;
  const CudaDsSequence* seqs;
  __device__ __forceinline__ int64_t OutRow(int64_t s) const { return seqs[s].q_row; }
  __device__ __forceinline__ bool Skips(int64_t) const { return false; }
};

// Grid (splits, KV heads, sequences) as SparseAttentionKernel; the selection [0, n) is cut into
// `splits` pieces of ceil(n / splits) slots (pieces past n are empty).
template <typename T, int kD, int kG>
__global__ void __launch_bounds__(cuda::kPipeThreads, cuda::kPipeMinBlocks)
    SparsePipelinedKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs, int heads_kv,
                          float scale_log2, CudaPagedKv kv, const int32_t* selected,
                          int64_t sel_stride, const int32_t* counts, int splits, float* ws, T* out,
                          int64_t out_stride) {
  static_assert(kG <= cuda::kPipeMaxHeads, "one block takes the whole group");
  extern __shared__ __align__(16) unsigned char pipe_smem[];
  cuda::WaitForPrior();  // (LaunchChained)
  const int s = blockIdx.z, h = blockIdx.y, split = blockIdx.x;
  const int n = counts[s * heads_kv + h];
  const int per = (n + splits - 1) / splits;
  cuda::PipePiece piece;
  piece.q_row = seqs[s].q_row;
  piece.qh0 = h * kG;
  piece.heads = kG;
  piece.kvh = h;
  piece.begin = split * per;
  piece.end = min(n, piece.begin + per);
  const int heads_q = heads_kv * kG;
  const SelectedSlots slots{selected + (static_cast<int64_t>(s) * heads_kv + h) * sel_stride,
                            seqs[s].kv_seq};
  cuda::PipelinedDecodeBody<T, kD>(
      q, q_stride, piece, kv, scale_log2, slots,
      [&](int g, int d, float acc, float m, float l) {
        cuda::WritePiece<T, kD, SelectionRows::kMayBeEmpty>(acc, m, l, s, piece.q_row,
                                                            piece.qh0 + g, d, heads_q, splits,
                                                            split, ws, out, out_stride);
      },
      [] {}, pipe_smem);  // launched as usual: nothing to wait for, nothing loaded early
}

absl::Status BadDType(const char* what, DType dtype) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": unsupported dtype ", static_cast<int>(dtype)));
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
// token tile (kCoalesced) or on two waves of resident blocks (kStrided), compiled for
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
    // Two waves of resident blocks over all sequences, at least one block per sequence.
    const int64_t resident = static_cast<int64_t>(std::max(1, info.blocks_per_sm)) * info.sms;
    blocks = std::clamp<int64_t>((2 * resident + num_seqs - 1) / num_seqs, 1, blocks);
    if (kernel != LabelScoresGeneralKernel<T>) blocks = FixedScoreBlocks(blocks, heads_kv);
  }
  const dim3 grid(static_cast<unsigned>(blocks), num_seqs);
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(kernel, grid, dim3(kScoreThreads), smem, stream, q,
                                             q_stride, seqs, labels, heads_q, heads_kv, head_dim,
                                             scores, score_stride));
  return absl::OkStatus();
}

template <typename T, int kD, int kG>
absl::Status SparseAttentionTyped(const void* q, int64_t q_stride, const CudaDsSequence* seqs,
                                  int num_seqs, int heads_kv, float scale, const CudaPagedKv& kv,
                                  const int32_t* selected, int64_t sel_stride,
                                  const int32_t* counts, int splits, float* workspace, void* out,
                                  int64_t out_stride, SparseAttentionAlgo algo,
                                  cudaStream_t stream) {
  const dim3 grid(splits, heads_kv, num_seqs);
  const int heads_q = heads_kv * kG;
  if (algo == SparseAttentionAlgo::kPipelined) {
    constexpr int kSmem = cuda::PipeSmemBytes<T, kD>();
    constexpr float kLog2e = 1.4426950408889634f;
    CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(SparsePipelinedKernel<T, kD, kG>, kSmem));
    CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
        SparsePipelinedKernel<T, kD, kG>, grid, dim3(cuda::kPipeThreads), kSmem, stream,
        static_cast<const T*>(q), q_stride, seqs, heads_kv, scale * kLog2e, kv, selected,
        sel_stride, counts, splits, workspace, static_cast<T*>(out), out_stride));
    if (splits > 1) {
      CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
          cuda::DecodeCombineKernel<T, kD, SelectionRows>,
          dim3(static_cast<unsigned>(num_seqs * heads_q)), dim3(kD * cuda::kCombineParts), 0,
          stream, static_cast<const float*>(workspace), static_cast<int64_t>(num_seqs), heads_q,
          splits, static_cast<T*>(out), out_stride, SelectionRows{seqs}));
    }
    return absl::OkStatus();
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
      SparseAttentionKernel<T, kD, kG>, grid, dim3(kAttnWarps * 32), 0, stream,
      static_cast<const T*>(q), q_stride, seqs, heads_kv, scale, kv, selected, sel_stride, counts,
      splits, workspace));
  CUDA_RETURN_IF_ERROR(cuda::LaunchChained(
      SparseCombineKernel<T, kD>, dim3(heads_q, num_seqs), dim3(kD), 0, stream, seqs, heads_q,
      splits * kAttnWarps, static_cast<const float*>(workspace), static_cast<T*>(out), out_stride));
  return absl::OkStatus();
}

template <typename T, int kD>
absl::Status SparseAttentionByGroup(int group, const void* q, int64_t q_stride,
                                    const CudaDsSequence* seqs, int num_seqs, int heads_kv,
                                    float scale, const CudaPagedKv& kv, const int32_t* selected,
                                    int64_t sel_stride, const int32_t* counts, int splits,
                                    float* workspace, void* out, int64_t out_stride,
                                    SparseAttentionAlgo algo, cudaStream_t stream) {
#define DSINFER_SPARSE_CASE(G)                                                                  \
  case G:                                                                                       \
    return SparseAttentionTyped<T, kD, G>(q, q_stride, seqs, num_seqs, heads_kv, scale, kv,     \
                                          selected, sel_stride, counts, splits, workspace, out, \
                                          out_stride, algo, stream);
  switch (group) {
    DSINFER_SPARSE_CASE(1)
    DSINFER_SPARSE_CASE(2)
    DSINFER_SPARSE_CASE(4)
    DSINFER_SPARSE_CASE(8)
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("LaunchSparseAttention: unsupported GQA group ", group));
  }
#undef DSINFER_SPARSE_CASE
}

}  // namespace

absl::Status LaunchWriteLabels(DType dtype, const void* k, int64_t k_stride, int64_t rows,
                               const int32_t* positions, const int32_t* row_label,
                               const CudaLabelSeq* labels, int kv_heads, int head_dim,
                               cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  const int64_t items = rows * kv_heads;
  const int grid = static_cast<int>((items + 127) / 128);
  switch (dtype) {
    case DType::kBF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
          WriteLabelsKernel<__nv_bfloat16>, dim3(grid), dim3(128), 0, stream,
          static_cast<const __nv_bfloat16*>(k), k_stride, rows, positions, row_label, labels,
          kv_heads, head_dim));
      break;
    case DType::kF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
          WriteLabelsKernel<__half>, dim3(grid), dim3(128), 0, stream,
          static_cast<const __half*>(k), k_stride, rows, positions, row_label, labels, kv_heads,
          head_dim));
      break;
    default:
      return BadDType("LaunchWriteLabels", dtype);
  }
  return absl::OkStatus();
}

absl::Status LaunchWriteLabelsPaged(DType dtype, const CudaPagedKv& kv,
                                    const CudaLabelRange* ranges, int num_ranges, int64_t max_count,
                                    const CudaLabelSeq* labels, cudaStream_t stream) {
  if (num_ranges == 0 || max_count == 0) return absl::OkStatus();
  const dim3 grid(static_cast<unsigned>((max_count * kv.kv_heads + 127) / 128), num_ranges);
  switch (dtype) {
    case DType::kBF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(WriteLabelsPagedKernel<__nv_bfloat16>, grid,
                                                 dim3(128), 0, stream, kv, ranges, labels));
      break;
    case DType::kF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(WriteLabelsPagedKernel<__half>, grid, dim3(128),
                                                 0, stream, kv, ranges, labels));
      break;
    default:
      return BadDType("LaunchWriteLabelsPaged", dtype);
  }
  return absl::OkStatus();
}

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
      return BadDType("LaunchLabelScores", dtype);
  }
}

int64_t SparseAttentionWorkspaceFloats(int num_seqs, int heads_q, int head_dim, int splits) {
  // kWarp's: a partial state per warp of each piece. kPipelined needs a quarter of it (one per
  // piece, DecodeCombineKernel's layout).
  return static_cast<int64_t>(num_seqs) * heads_q * splits * kAttnWarps * (head_dim + 2);
}

int SparseAttentionSplits(int num_seqs, int heads_kv, int64_t max_budget, int sm_count,
                          SparseAttentionAlgo algo, int waves) {
  if (algo == SparseAttentionAlgo::kPipelined) {
    // Dense flash-decoding's rule: one block per (piece, KV head, sequence), the whole group in
    // it (as dense attention with one head group per KV head).
    return DecodeAttentionSplits(num_seqs, heads_kv, heads_kv, max_budget, sm_count,
                                 waves > 0 ? waves : kSparsePipelinedWaves);
  }
  if (waves <= 0) waves = kSparseWarpWaves;
  const int64_t blocks = static_cast<int64_t>(num_seqs) * heads_kv;
  int64_t splits = (static_cast<int64_t>(waves) * sm_count + blocks - 1) / blocks;
  splits = std::min<int64_t>(splits, (max_budget + 255) / 256);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(splits, 64)));
}

absl::Status LaunchSparseAttention(DType dtype, const void* q, int64_t q_stride,
                                   const CudaDsSequence* seqs, int num_seqs, int heads_q,
                                   int heads_kv, int head_dim, float scale, const CudaPagedKv& kv,
                                   const int32_t* selected, int64_t sel_stride,
                                   const int32_t* counts, int splits, float* workspace, void* out,
                                   int64_t out_stride, cudaStream_t stream,
                                   SparseAttentionAlgo algo) {
  if (num_seqs == 0) return absl::OkStatus();
  if (splits < 1) return absl::InvalidArgumentError("LaunchSparseAttention: splits < 1");
  if (heads_kv <= 0 || heads_q % heads_kv != 0) {
    return absl::InvalidArgumentError("LaunchSparseAttention: heads_q % heads_kv != 0");
  }
  if (algo != SparseAttentionAlgo::kWarp && algo != SparseAttentionAlgo::kPipelined) {
    return absl::InvalidArgumentError("LaunchSparseAttention: unknown algo");
  }
  const int group = heads_q / heads_kv;
  const int key = (dtype == DType::kBF16 ? 0 : dtype == DType::kF16 ? 1 : 9) * 1000 + head_dim;
  switch (key) {
    case 64:
      return SparseAttentionByGroup<__nv_bfloat16, 64>(group, q, q_stride, seqs, num_seqs, heads_kv,
                                                       scale, kv, selected, sel_stride, counts,
                                                       splits, workspace, out, out_stride, algo,
                                                       stream);
    case 128:
      return SparseAttentionByGroup<__nv_bfloat16, 128>(
          group, q, q_stride, seqs, num_seqs, heads_kv, scale, kv, selected, sel_stride, counts,
          splits, workspace, out, out_stride, algo, stream);
    case 1064:
      return SparseAttentionByGroup<__half, 64>(group, q, q_stride, seqs, num_seqs, heads_kv, scale,
                                                kv, selected, sel_stride, counts, splits, workspace,
                                                out, out_stride, algo, stream);
    case 1128:
      return SparseAttentionByGroup<__half, 128>(group, q, q_stride, seqs, num_seqs, heads_kv,
                                                 scale, kv, selected, sel_stride, counts, splits,
                                                 workspace, out, out_stride, algo, stream);
    default:
      return absl::InvalidArgumentError(absl::StrCat("LaunchSparseAttention: unsupported dtype ",
                                                     static_cast<int>(dtype), " / head_dim ",
                                                     head_dim));
  }
}

}  // namespace dsinfer
