// Double Sparsity decode kernels (declared in double_sparsity.cuh; design summary there).
//
// Label write: one thread per (row, KV head); r <= 256 channels, two passes over the row
// (min/max, then codes) instead of a local array, so nothing spills.
// Scoring (LabelScoreAlgo), every body bit-exact to the twin (__fmul_rn / __fadd_rn, and the
// 4-bit FMA chain as __fmaf_rn, in the twin's order, which makes the selection comparable
// exactly). 4-bit rows fold scale s and minimum m out of the dot, as the twin does: per query
// head qc = Σ q·c (an FMA chain over the codes as floats), dot = fma(s, qc, m · qs) with
// qs = Σ q staged once per block next to the query channels (as their channel r); per channel
// that is a nibble, its float, and one FMA per query head.
//  - kRowPerThread (the first body): one thread per (token, KV head) label row; consecutive
//    threads take consecutive heads of a token, so a warp reads one contiguous span of the
//    label cache, in 16-byte loads whenever the row size allows (fp16 r % 8 == 0, 4-bit
//    r % 32 == 0). The query's label channels of all query heads (and for 4-bit rows their
//    sums) are staged once per block in shared memory, [heads_q][r + 1].
//  - kCoalesced / kStrided (the default): kScoreItemsPerThread rows per thread, the query's
//    label channels staged with the KV head fastest (no bank conflicts across a warp's heads),
//    scores leaving through shared memory as per-head token runs; one block per token tile
//    (kCoalesced) or two waves of resident blocks looping over the tiles (kStrided). Rows of
//    4, 8, 16 or 32 bytes run a kernel compiled for their shape (LabelScoresFixedKernel: registers
//    sized to the shape, a thread's items all of one KV head, the GQA group a compile-time
//    constant where group × r <= 32); other shapes the general kernel.
// Top-k, four kernels (TopKAlgo): radix select over order-preserving uint32 keys (NaN maps
// onto -inf's key, as the twin ranks NaN as -inf), early exit once the boundary bucket is taken
// whole, then an ordered compaction (cub::BlockScan) writing ascending indices, boundary ties
// lowest index first.
//  - kOneBlock: one 1024-thread block per (sequence, KV head) streaming
//    the scores per pass (digits 11/11/10) — selection must see the whole segment, and
//    batch × KV heads blocks fill the GPU at batch >= 8.
//  - kTwoRead: the same grid with 512-thread blocks reading the scores twice: a 13-bit
//    histogram, then an ordered split (keys above the boundary bucket to the output, the
//    bucket's to shared memory, where the remaining 10- and 9-bit digits are resolved).
//  - kStriped: kTwoRead's reads and finish with striped 16-byte loads, the split classified by
//    two float comparisons and ordered by warp scans of per-round counts packed in bytes,
//    winners leaving through shared memory as contiguous runs (its comment below).
//  - kCluster (score_stride > 8192 only): a thread-block cluster
//    per (sequence, KV head) that loads the scores once into shared memory and merges its
//    blocks' histograms through distributed shared memory.
//  - kAuto (the default): kCluster where the (sequence, KV head) pairs number at most a quarter
//    of the SMs, else kStriped (double_sparsity.cuh gives the measured reasons).
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
// None is launched dependent (dependent_launch.cuh): each stage of the chain fills the GPU,
// and the next stage's blocks, started early and waiting, sat beside it — the operator chain
// at batch 8, 256K was ~1.25x slower with them (H200, docs/benchmarks.md run 9).
#include <algorithm>
#include <cstdint>
#include <cooperative_groups.h>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/decode_pieces.cuh"
#include "kernels/cuda/decode_pipeline.cuh"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::Num;
using cuda::WarpMax;
using cuda::WarpSum;

constexpr int kMaxGroup = 16;  // query heads per KV head the scorer handles
constexpr int kScoreThreads = 256;
constexpr int kScoreItemsPerThread = 4;
// Resident blocks per SM the fixed-shape scorers are compiled for (64 registers a thread):
// half the SM's threads, each with kScoreItemsPerThread rows in flight. The runtime-group ones
// hold a row as floats (fp16 values or 4-bit codes, up to 64) and get 128 registers (2 blocks),
// except on 8-byte rows (4-bit r 16: 16 floats), which fit 64 without spilling.
constexpr int kScoreFixedBlocksPerSm = 4;
constexpr int kTopKThreads = 1024;
// The one-block top-k is compiled for two resident blocks per SM (32 registers a thread): on
// an H200 it was issue- and latency-bound at one (ncu), and two are 10-17% faster with half
// the loads and compaction keys per thread.
constexpr int kTopKBlocksPerSm = 2;
constexpr int kTopKUnroll = 8;  // histogram loads in flight per thread
constexpr int kTopKItems = 8;   // candidates per thread per compaction tile
constexpr int kAttnWarps = 4;
constexpr int kAttnVRows = 16;  // V rows a warp has in flight (of its 32)
constexpr int kSparseWarpWaves = 2;  // kWarp's split rule aims at 2 waves of blocks
// Top-k of segments longer than this (score_stride, which bounds every segment) runs on a
// cluster of blocks holding the keys in shared memory; shorter ones on one block, whose fixed
// cost is a few microseconds.
constexpr int64_t kTopKShortSegment = 8192;
constexpr int kTopKClusterMax = 8;  // portable cluster size
constexpr int64_t kTopKKeysPerBlock = 16384;
constexpr int kTopKClusterThreads = 512;
constexpr int kTopKClusterItems = 8;  // keys per thread per compaction tile

__device__ __forceinline__ uint16_t F32ToF16Bits(float x) {
  return __half_as_ushort(__float2half_rn(x));
}
__device__ __forceinline__ float F16BitsToF32(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

// ---------------------------------------------------------------------------------------------
// Label write.

// One (token, KV head) label row from its key (head_dim values of dtype T); slot = token ×
// kv_heads + head.
template <typename T>
__device__ void WriteLabelRow(const T* key, const CudaLabelSeq& lab, int h, int64_t slot) {
  const int32_t* ch = lab.channels + static_cast<int64_t>(h) * lab.r;
  if (lab.bits == 16) {
    uint16_t* out = static_cast<uint16_t*>(lab.data) + slot * lab.r;
    for (int j = 0; j < lab.r; ++j) out[j] = F32ToF16Bits(Num<T>::ToF(key[ch[j]]));
    return;
  }
  float lo = Num<T>::ToF(key[ch[0]]);
  float hi = lo;
  for (int j = 1; j < lab.r; ++j) {
    const float x = Num<T>::ToF(key[ch[j]]);
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  const uint16_t min_bits = F32ToF16Bits(lo);
  const uint16_t scale_bits = F32ToF16Bits(__fdiv_rn(__fsub_rn(hi, lo), 15.0f));
  lab.minimums[slot] = min_bits;
  lab.scales[slot] = scale_bits;
  const float min_q = F16BitsToF32(min_bits);
  const float scale_q = F16BitsToF32(scale_bits);
  const int row_bytes = (lab.r + 1) / 2;
  uint8_t* codes = static_cast<uint8_t*>(lab.data) + slot * row_bytes;
  for (int b = 0; b < row_bytes; ++b) {
    uint8_t byte = 0;
    for (int nib = 0; nib < 2; ++nib) {
      const int j = 2 * b + nib;
      if (j >= lab.r) break;
      int code = 0;
      if (scale_q > 0.0f) {
        // std::lround: half away from zero, as roundf.
        code =
            static_cast<int>(roundf(__fdiv_rn(__fsub_rn(Num<T>::ToF(key[ch[j]]), min_q), scale_q)));
        code = min(max(code, 0), 15);
      }
      byte |= static_cast<uint8_t>(code << (nib * 4));
    }
    codes[b] = byte;
  }
}

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
                static_cast<int64_t>(positions[row]) * kv_heads + h);
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
  WriteLabelRow(static_cast<const T*>(kv.k) + off, lab, h, t * kv.kv_heads + h);
}

// ---------------------------------------------------------------------------------------------
// Scoring.

template <int kBytes>
struct VecOf;
template <>
struct VecOf<16> {
  using T = uint4;
};
template <>
struct VecOf<8> {
  using T = uint2;
};
template <>
struct VecOf<4> {
  using T = uint32_t;
};
template <>
struct VecOf<2> {
  using T = uint16_t;
};
template <>
struct VecOf<1> {
  using T = uint8_t;
};

// A 4-bit code (0..15) as a float, through the exponent trick: 2^23 + code is exact, and so is
// subtracting 2^23 (I2F is quarter rate).
__device__ __forceinline__ float CodeToFloat(uint32_t code) {
  return __fsub_rn(__uint_as_float(0x4B000000u | code), 8388608.0f);
}

// One 4-bit row's dot for one query head in the twin's order: scale and minimum folded out,
// fma(scale, qc, minimum · q_sum), qc = Σ q·c (DotStep's FMA chain), q_sum = Σ q.
__device__ __forceinline__ float FoldScaleMinimum(float qc, float scale, float minimum,
                                                  float q_sum) {
  return __fmaf_rn(scale, qc, __fmul_rn(minimum, q_sum));
}

// One channel's step of a query head's dot, in the twin's order: fp16 labels a rounded
// multiply then a rounded add (no contraction); 4-bit codes (as floats) one FMA of Σ q·c.
template <int kBits>
__device__ __forceinline__ float DotStep(float acc, float q, float value) {
  if constexpr (kBits == 16) {
    return __fadd_rn(acc, __fmul_rn(q, value));
  } else {
    return __fmaf_rn(q, value, acc);
  }
}

// GQA aggregation of one row's per-query-head dots in the twin's order (ScoreAggregation sum
// or max): start from AggregateStart, fold each dot in with AggregateStep.
__device__ __forceinline__ float AggregateStart(bool max_agg) {
  return max_agg ? -INFINITY : 0.0f;
}
__device__ __forceinline__ float AggregateStep(float agg, float dot, bool max_agg) {
  return max_agg ? (agg < dot ? dot : agg) : __fadd_rn(agg, dot);
}
// The dots of `group` query heads folded in order.
__device__ __forceinline__ float Aggregate(const float* dot, int group, bool max_agg) {
  float agg = AggregateStart(max_agg);
#pragma unroll
  for (int g = 0; g < kMaxGroup; ++g) {
    if (g >= group) break;
    agg = AggregateStep(agg, dot[g], max_agg);
  }
  return agg;
}

// Dots of one label row with the group's query channels, in the twins' order: per query head,
// channels ascending (DotStep), 4-bit dots folded once at the end (FoldScaleMinimum).
// q_at(j, g) is channel j of group head g, and q_at(r, g) the sum of its r channels (staged
// for 4-bit rows); both scorers' layouts of the query channels below plug in here. Rows are
// read in kBytes pieces.
template <int kBits, int kBytes, typename QAt>
__device__ __forceinline__ void DotRowWith(const uint8_t* row, int r, float scale, float minimum,
                                           int group, QAt q_at, float* dot) {
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
      if (g >= group) break;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        if (j0 + e < r) dot[g] = DotStep<kBits>(dot[g], q_at(j0 + e, g), vals[e]);
      }
    }
  }
  if constexpr (kBits == 4) {
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) {
      if (g >= group) break;
      dot[g] = FoldScaleMinimum(dot[g], scale, minimum, q_at(r, g));
    }
  }
}

// kRowPerThread (the GPU-verified scorer, as it ran on the H100/H200): the group's query
// channels as qs: [group][r + 1] in shared memory, channel r their sum (4-bit rows).
template <int kBits, int kBytes>
__device__ __forceinline__ void DotRowHeadMajor(const uint8_t* row, int r, float scale,
                                                float minimum, const float* qs, int group,
                                                float* dot) {
  DotRowWith<kBits, kBytes>(
      row, r, scale, minimum, group, [qs, r](int j, int g) { return qs[g * (r + 1) + j]; }, dot);
}

// The sum of query head hq's r label channels (ch: its KV head's channel indices) in the
// twin's order: rounded adds, channels ascending, from 0 — what 4-bit scoring folds the
// minimum with.
template <typename T>
__device__ __forceinline__ float QueryChannelSum(const T* qrow, int hq, int head_dim,
                                                 const int32_t* ch, int r) {
  const T* qh = qrow + static_cast<int64_t>(hq) * head_dim;
  float sum = 0.0f;
  for (int j = 0; j < r; ++j) sum = __fadd_rn(sum, Num<T>::ToF(qh[ch[j]]));
  return sum;
}

template <typename T>
__global__ void LabelScoresRowPerThreadKernel(const T* q, int64_t q_stride,
                                              const CudaDsSequence* seqs,
                                              const CudaLabelSeq* labels, int heads_q,
                                              int heads_kv, int head_dim, float* scores,
                                              int64_t score_stride) {
  extern __shared__ float qs[];  // [heads_q][r + 1], channel r the sum (4-bit)
  const int s = blockIdx.y;
  const CudaDsSequence seq = seqs[s];
  const CudaLabelSeq lab = labels[s];
  const int r = lab.r;
  const int64_t items = static_cast<int64_t>(seq.tokens) * heads_kv;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kScoreThreads * kScoreItemsPerThread;
  if (first >= items) return;
  const int group = heads_q / heads_kv;
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < heads_q * r; i += blockDim.x) {
    const int hq = i / r, j = i % r;
    const int c = lab.channels[(hq / group) * r + j];
    qs[hq * (r + 1) + j] = Num<T>::ToF(qrow[static_cast<int64_t>(hq) * head_dim + c]);
  }
  if (lab.bits == 4) {
    for (int hq = threadIdx.x; hq < heads_q; hq += blockDim.x) {
      qs[hq * (r + 1) + r] =
          QueryChannelSum(qrow, hq, head_dim, lab.channels + (hq / group) * r, r);
    }
  }
  __syncthreads();
  const bool max_agg = seq.aggregation == 1;
  const int row_bytes = lab.bits == 16 ? 2 * r : (r + 1) / 2;
  for (int it = 0; it < kScoreItemsPerThread; ++it) {
    const int64_t i = first + it * kScoreThreads + threadIdx.x;
    if (i >= items) break;
    const int64_t t = i / heads_kv;
    const int h = static_cast<int>(i % heads_kv);
    const uint8_t* row = static_cast<const uint8_t*>(lab.data) + i * row_bytes;
    float scale = 0.0f, minimum = 0.0f;
    if (lab.bits == 4) {
      scale = F16BitsToF32(lab.scales[i]);
      minimum = F16BitsToF32(lab.minimums[i]);
    }
    float dot[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) dot[g] = 0.0f;
    const float* qh = qs + h * group * (r + 1);
    const bool aligned16 = (reinterpret_cast<uintptr_t>(lab.data) & 15) == 0;
    const bool aligned8 = (reinterpret_cast<uintptr_t>(lab.data) & 7) == 0;
    if (lab.bits == 16) {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRowHeadMajor<16, 16>(row, r, 0.0f, 0.0f, qh, group, dot);
      } else {
        DotRowHeadMajor<16, 2>(row, r, 0.0f, 0.0f, qh, group, dot);
      }
    } else {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRowHeadMajor<4, 16>(row, r, scale, minimum, qh, group, dot);
      } else if (row_bytes % 8 == 0 && aligned8) {
        DotRowHeadMajor<4, 8>(row, r, scale, minimum, qh, group, dot);
      } else {
        DotRowHeadMajor<4, 1>(row, r, scale, minimum, qh, group, dot);
      }
    }
    scores[(static_cast<int64_t>(s) * heads_kv + h) * score_stride + t] =
        Aggregate(dot, group, max_agg);
  }
}

// The query's label channels in shared memory, laid out [j][g][h] (KV head fastest): the lanes
// of a warp take consecutive (token, KV head) items, i.e. consecutive heads, so they read
// consecutive words (no bank conflicts; lanes of one head share a broadcast). A [h][g][j]
// layout put lanes r words apart: an r-way conflict that made scoring scale with r. For 4-bit
// labels, j = r holds each query head's channel sum (QueryChannelSum).
__device__ __forceinline__ float QChannel(const float* qh, int j, int g, int group, int heads_kv) {
  return qh[(j * group + g) * heads_kv];
}

// kCoalesced: the group's query channels in the [j][g][h] layout (qh = qs + h). The general
// path (any r).
template <int kBits, int kBytes>
__device__ __forceinline__ void DotRow(const uint8_t* row, int r, float scale, float minimum,
                                       const float* qh, int group, int heads_kv, float* dot) {
  DotRowWith<kBits, kBytes>(
      row, r, scale, minimum, group,
      [qh, group, heads_kv](int j, int g) { return QChannel(qh, j, g, group, heads_kv); }, dot);
}

// What one scoring block works on: items [first, end) of one sequence (item = token × kv_heads
// + head; the block covers whole tokens), its label storage and the staged query channels.
struct ScoreTile {
  const uint8_t* data;
  const uint16_t* scales;
  const uint16_t* minimums;
  const float* qs;
  int first, end, group, heads_kv, r;
  bool max_agg;
};

// Item it of this thread (kScoreItemsPerThread per thread, blockDim apart: coalesced).
__device__ __forceinline__ int ScoreItem(const ScoreTile& t, int it) {
  return t.first + it * kScoreThreads + static_cast<int>(threadIdx.x);
}

// Any r and alignment: one row at a time, the widest loads the row size allows.
__device__ __forceinline__ void ScoreItemsGeneral(const ScoreTile& t, int bits, float* out) {
  const int row_bytes = bits == 16 ? 2 * t.r : (t.r + 1) / 2;
  const bool aligned16 = (reinterpret_cast<uintptr_t>(t.data) & 15) == 0;
  const bool aligned8 = (reinterpret_cast<uintptr_t>(t.data) & 7) == 0;
  for (int it = 0; it < kScoreItemsPerThread; ++it) {
    const int i = ScoreItem(t, it);
    if (i >= t.end) break;
    const uint8_t* row = t.data + static_cast<int64_t>(i) * row_bytes;
    const float* qh = t.qs + i % t.heads_kv;
    float dot[kMaxGroup];
#pragma unroll
    for (int g = 0; g < kMaxGroup; ++g) dot[g] = 0.0f;
    if (bits == 16) {
      if (row_bytes % 16 == 0 && aligned16) {
        DotRow<16, 16>(row, t.r, 0.0f, 0.0f, qh, t.group, t.heads_kv, dot);
      } else {
        DotRow<16, 2>(row, t.r, 0.0f, 0.0f, qh, t.group, t.heads_kv, dot);
      }
    } else {
      const float scale = F16BitsToF32(t.scales[i]);
      const float minimum = F16BitsToF32(t.minimums[i]);
      if (row_bytes % 16 == 0 && aligned16) {
        DotRow<4, 16>(row, t.r, scale, minimum, qh, t.group, t.heads_kv, dot);
      } else if (row_bytes % 8 == 0 && aligned8) {
        DotRow<4, 8>(row, t.r, scale, minimum, qh, t.group, t.heads_kv, dot);
      } else {
        DotRow<4, 1>(row, t.r, scale, minimum, qh, t.group, t.heads_kv, dot);
      }
    }
    out[it] = Aggregate(dot, t.group, t.max_agg);
  }
}

// Tokens per scoring block: whole tokens, at most kScoreThreads × kScoreItemsPerThread items.
__host__ __device__ __forceinline__ int ScoreTokensPerBlock(int heads_kv) {
  return heads_kv >= kScoreThreads * kScoreItemsPerThread
             ? 1
             : kScoreThreads * kScoreItemsPerThread / heads_kv;
}

// Stages the query's label channels of sequence `seq` in shared memory as [r][group][heads_kv]
// (QChannel's layout), for 4-bit labels followed by their sums as channel r, then a barrier.
// kBits: the labels' bits where the kernel is compiled for them (so an fp16 kernel carries no
// sum code), 0 where they are known at run time only.
template <int kBits, typename T>
__device__ __forceinline__ void StageQueryChannels(const T* q, int64_t q_stride,
                                                   const CudaDsSequence& seq,
                                                   const CudaLabelSeq& lab, int heads_q,
                                                   int heads_kv, int head_dim, float* qs) {
  const int group = heads_q / heads_kv;
  const T* qrow = q + static_cast<int64_t>(seq.q_row) * q_stride;
  for (int i = threadIdx.x; i < heads_q * lab.r; i += blockDim.x) {
    const int h = i % heads_kv, g = (i / heads_kv) % group, j = i / heads_q;
    const int c = lab.channels[h * lab.r + j];
    qs[i] = Num<T>::ToF(qrow[static_cast<int64_t>(h * group + g) * head_dim + c]);
  }
  if (kBits == 4 || (kBits == 0 && lab.bits == 4)) {
    // Query head i = h * group + g at (r × group + g) × heads_kv + h.
    for (int i = threadIdx.x; i < heads_q; i += blockDim.x) {
      const int h = i / group, g = i % group;
      qs[(lab.r * group + g) * heads_kv + h] =
          QueryChannelSum(qrow, i, head_dim, lab.channels + h * lab.r, lab.r);
    }
  }
  __syncthreads();
}

// What one scoring block works on: its sequence (blockIdx.y) and that sequence's labels, and
// the sequence's token tiles of tpb tokens; inactive past the last tile.
struct ScoreBlock {
  CudaDsSequence seq;
  CudaLabelSeq lab;
  int tpb, tiles;
  bool active;
};

// This block's ScoreBlock, and for an active block the query's label channels staged in `qs`
// (StageQueryChannels<kBits>, ending with a barrier). Every thread of a block gets the same
// answer, so an inactive block may return at once.
template <int kBits, typename T>
__device__ __forceinline__ ScoreBlock BeginScoreBlock(const T* q, int64_t q_stride,
                                                      const CudaDsSequence* seqs,
                                                      const CudaLabelSeq* labels, int heads_q,
                                                      int heads_kv, int head_dim, float* qs) {
  ScoreBlock b{seqs[blockIdx.y], labels[blockIdx.y], ScoreTokensPerBlock(heads_kv), 0, false};
  b.tiles = (b.seq.tokens + b.tpb - 1) / b.tpb;
  b.active = static_cast<int>(blockIdx.x) < b.tiles;
  if (b.active) {
    StageQueryChannels<kBits>(q, q_stride, b.seq, b.lab, heads_q, heads_kv, head_dim, qs);
  }
  return b;
}

// Writes a tile's staged scores (staged[token * (heads_kv + 1) + head], the pad keeping both
// the staging and these reads conflict-free) to the sequence's score rows (row h at srow +
// h * score_stride) as per-head token runs, a warp per head: written straight from the item
// layout, a warp's 32 stores would land in up to 32 score rows (one sector each). Barriers
// before (the staging is complete) and after (`staged` may be reused at once).
__device__ __forceinline__ void WriteStagedScores(const float* staged, int heads_kv, int t0,
                                                  int tokens_here, float* srow,
                                                  int64_t score_stride) {
  __syncthreads();
  const int pitch = heads_kv + 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int h = warp; h < heads_kv; h += kScoreThreads / 32) {
    float* row = srow + static_cast<int64_t>(h) * score_stride + t0;
    for (int tl = lane; tl < tokens_here; tl += 32) row[tl] = staged[tl * pitch + h];
  }
  __syncthreads();
}

// Word w of a 16-, 8- or 4-byte chunk of a label row, taken by member.
__device__ __forceinline__ uint32_t ChunkWord(const uint4& c, int w) {
  return w == 0 ? c.x : w == 1 ? c.y : w == 2 ? c.z : c.w;
}
__device__ __forceinline__ uint32_t ChunkWord(const uint2& c, int w) { return w == 0 ? c.x : c.y; }
__device__ __forceinline__ uint32_t ChunkWord(const uint32_t& c, int) { return c; }

// Channel j of a fixed-size label row held as chunks of type V (uint4, or uint2 for 8-byte
// rows; j a compile-time constant once unrolled): words are taken by member, never through a
// pointer into the registers (which would put the row in local memory). fp16 converts exactly;
// a 4-bit code becomes its float (CodeToFloat; scale and minimum are folded in per row).
template <int kBits, typename V, int kChunks>
__device__ __forceinline__ float LabelValue(const V (&row)[kChunks], int j) {
  constexpr int kPerWord = kBits == 16 ? 2 : 8;
  constexpr int kWordsPerChunk = static_cast<int>(sizeof(V) / 4);
  const int wi = j / kPerWord, e = j % kPerWord;
  const uint32_t w = ChunkWord(row[wi / kWordsPerChunk], wi % kWordsPerChunk);
  if constexpr (kBits == 16) {
    return __half2float(__ushort_as_half(static_cast<uint16_t>(w >> (16 * e))));
  } else {
    return CodeToFloat((w >> (4 * e)) & 0xfu);
  }
}

// One KV head's query channels for LabelScoresFixedKernel: in registers while they are few,
// else read from shared memory at each use (consecutive lanes on consecutive heads:
// conflict-free) through a volatile pointer — loop-invariant, they would otherwise be hoisted
// into registers, which at kG × kR up to 512 spills and cuts occupancy. kWithSum (4-bit
// labels): each head's channel sum too, staged as channel kR.
template <int kG, int kR, bool kWithSum>
struct HeadQueryChannels {
  static constexpr bool kInRegisters = kG * kR <= 16;
  static constexpr int kChannels = kR + (kWithSum ? 1 : 0);
  __device__ __forceinline__ HeadQueryChannels(const float* qs, int h, int heads_kv)
      : smem(qs + h), heads_kv(heads_kv) {
    if constexpr (kInRegisters) {
#pragma unroll
      for (int g = 0; g < kG; ++g) {
#pragma unroll
        for (int j = 0; j < kChannels; ++j) regs[g][j] = QChannel(qs + h, j, g, kG, heads_kv);
      }
    }
  }
  // Channel j of group head g; j == kR: the sum of its channels (kWithSum).
  __device__ __forceinline__ float At(int g, int j) const {
    if constexpr (kInRegisters) {
      return regs[g][j];
    } else {
      return smem[(j * kG + g) * heads_kv];  // QChannel's layout
    }
  }
  float regs[kInRegisters ? kG : 1][kInRegisters ? kChannels : 1];
  const volatile float* smem;
  int heads_kv;
};

// Label scoring of the common shapes: rows of exactly 4, 8, 16 or 32 bytes (fp16 r 8 / 16,
// 4-bit r 8 / 16 / 32 / 64), a GQA group of kG, and heads_kv dividing kScoreThreads (the launcher
// checks), so a thread's items are one KV head's (no division per item) and r and the group
// are compile-time constants (the row and the group's dots live in registers; each shape is
// its own kernel, so the largest does not set every shape's register count). kG 0: the group
// at run time, the row's values (fp16 labels or 4-bit codes as floats) held. Every row of a
// tile is loaded before any is used; values come from LabelValue. The arithmetic order is the
// twin's (DotStep per channel, FoldScaleMinimum per 4-bit row and query head): bit-exact.
// Grid: blocks × sequences; block x scores token tiles x, x + gridDim.x, ... of its sequence.
template <typename T, int kBits, int kR, int kG>
__global__ void __launch_bounds__(kScoreThreads,
                                  kG > 0 || kBits * kR <= 64 ? kScoreFixedBlocksPerSm : 2)
    LabelScoresFixedKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs,
                           const CudaLabelSeq* labels, int heads_q, int heads_kv, int head_dim,
                           float* scores, int64_t score_stride) {
  constexpr int kRowBytes = kBits == 16 ? 2 * kR : kR / 2;
  // Rows are loaded in 16-byte chunks, an 8-byte row (4-bit r 16) as one 8-byte chunk.
  constexpr int kChunkBytes = kRowBytes >= 16 ? 16 : kRowBytes >= 8 ? 8 : 4;
  using Chunk = typename VecOf<kChunkBytes>::T;
  static_assert(kRowBytes % kChunkBytes == 0 && kR % 2 == 0, "4-, 8- or 16-byte rows, r even");
  extern __shared__ float qs[];  // [r + 1][group][heads_kv], channel r the sums (4-bit)
  __shared__ float staged[2 * kScoreThreads * kScoreItemsPerThread];
  const ScoreBlock b =
      BeginScoreBlock<kBits>(q, q_stride, seqs, labels, heads_q, heads_kv, head_dim, qs);
  if (!b.active) return;
  const CudaDsSequence& seq = b.seq;
  const CudaLabelSeq& lab = b.lab;
  const int s = blockIdx.y, tpb = b.tpb, tiles = b.tiles;
  // This thread's KV head and first token of a tile; item `it` is token it * tok_step + tok.
  const int h = static_cast<int>(threadIdx.x) % heads_kv;
  const int tok = static_cast<int>(threadIdx.x) / heads_kv;
  const int tok_step = kScoreThreads / heads_kv;
  const int pitch = heads_kv + 1;
  const bool max_agg = seq.aggregation == 1;
  const uint8_t* data = static_cast<const uint8_t*>(lab.data);
  float* srow = scores + static_cast<int64_t>(s) * heads_kv * score_stride;
  [[maybe_unused]] const int group = heads_q / heads_kv;  // the runtime group (kG 0)
  const HeadQueryChannels<(kG > 0 ? kG : 1), kR, kBits == 4> qc(qs, h, heads_kv);
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int t0 = tile * tpb;
    const int tokens_here = min(tpb, seq.tokens - t0);
    Chunk raw[kScoreItemsPerThread][kRowBytes / kChunkBytes];
    // 4-bit rows: fp16 scale (low half) and minimum (high half), converted only at the fold
    // (one register per item where two floats spilled more at 4-bit r 32).
    uint32_t scale_min[kScoreItemsPerThread];
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      const int tl = it * tok_step + tok;
      if (tl < tokens_here) {
        const int64_t item = static_cast<int64_t>(t0 + tl) * heads_kv + h;
        const Chunk* row = reinterpret_cast<const Chunk*>(data + item * kRowBytes);
#pragma unroll
        for (int c = 0; c < kRowBytes / kChunkBytes; ++c) raw[it][c] = row[c];
        if (kBits == 4) {
          scale_min[it] = lab.scales[item] | static_cast<uint32_t>(lab.minimums[item]) << 16;
        }
      }
    }
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      const int tl = it * tok_step + tok;
      if (tl >= tokens_here) break;
      float agg = AggregateStart(max_agg);
      if constexpr (kG > 0) {
        // Each channel's value is used as it is made (per query head, channels ascending:
        // the twin's order), so no row of values is held.
        float dot[kG];
#pragma unroll
        for (int g = 0; g < kG; ++g) dot[g] = 0.0f;
#pragma unroll
        for (int j = 0; j < kR; ++j) {
          const float v = LabelValue<kBits>(raw[it], j);
#pragma unroll
          for (int g = 0; g < kG; ++g) dot[g] = DotStep<kBits>(dot[g], qc.At(g, j), v);
        }
#pragma unroll
        for (int g = 0; g < kG; ++g) {
          if constexpr (kBits == 4) {
            dot[g] = FoldScaleMinimum(dot[g], F16BitsToF32(scale_min[it] & 0xffffu),
                                      F16BitsToF32(scale_min[it] >> 16), qc.At(g, kR));
          }
          agg = AggregateStep(agg, dot[g], max_agg);
        }
      } else {
        // A runtime group: the row's values made once, then a dot per query head with its
        // channels read from shared memory.
        float vals[kR];
#pragma unroll
        for (int j = 0; j < kR; ++j) vals[j] = LabelValue<kBits>(raw[it], j);
        const float* qh = qs + h;
        for (int g = 0; g < group; ++g) {
          float dot = 0.0f;
#pragma unroll
          for (int j = 0; j < kR; ++j) {
            dot = DotStep<kBits>(dot, QChannel(qh, j, g, group, heads_kv), vals[j]);
          }
          if constexpr (kBits == 4) {
            dot = FoldScaleMinimum(dot, F16BitsToF32(scale_min[it] & 0xffffu),
                                   F16BitsToF32(scale_min[it] >> 16),
                                   QChannel(qh, kR, g, group, heads_kv));
          }
          agg = AggregateStep(agg, dot, max_agg);
        }
      }
      staged[tl * pitch + h] = agg;
    }
    WriteStagedScores(staged, heads_kv, t0, tokens_here, srow, score_stride);
  }
}

// Label scoring of any shape (r, bits, alignment, group, heads_kv <= 1024): rows one at a time,
// the widest loads the row size allows. Grid as LabelScoresFixedKernel's.
template <typename T>
__global__ void __launch_bounds__(kScoreThreads)
    LabelScoresGeneralKernel(const T* q, int64_t q_stride, const CudaDsSequence* seqs,
                             const CudaLabelSeq* labels, int heads_q, int heads_kv, int head_dim,
                             float* scores, int64_t score_stride) {
  extern __shared__ float qs[];  // [r + 1][group][heads_kv], channel r the sums (4-bit)
  __shared__ float staged[2 * kScoreThreads * kScoreItemsPerThread];
  const ScoreBlock b =
      BeginScoreBlock<0>(q, q_stride, seqs, labels, heads_q, heads_kv, head_dim, qs);
  if (!b.active) return;
  ScoreTile t;
  t.data = static_cast<const uint8_t*>(b.lab.data);
  t.scales = b.lab.scales;
  t.minimums = b.lab.minimums;
  t.qs = qs;
  t.group = heads_q / heads_kv;
  t.heads_kv = heads_kv;
  t.r = b.lab.r;
  t.max_agg = b.seq.aggregation == 1;
  const int pitch = heads_kv + 1;
  float* srow = scores + static_cast<int64_t>(blockIdx.y) * heads_kv * score_stride;
  for (int tile = blockIdx.x; tile < b.tiles; tile += gridDim.x) {
    const int t0 = tile * b.tpb;
    const int tokens_here = min(b.tpb, b.seq.tokens - t0);
    t.first = t0 * heads_kv;
    t.end = (t0 + tokens_here) * heads_kv;
    float out[kScoreItemsPerThread];
    ScoreItemsGeneral(t, b.lab.bits, out);
#pragma unroll
    for (int it = 0; it < kScoreItemsPerThread; ++it) {
      const int li = it * kScoreThreads + static_cast<int>(threadIdx.x);
      if (t.first + li < t.end) staged[(li / heads_kv) * pitch + li % heads_kv] = out[it];
    }
    WriteStagedScores(staged, heads_kv, t0, tokens_here, srow, score_stride);
  }
}

// ---------------------------------------------------------------------------------------------
// Top-k.

// Larger score -> larger key; NaN gets -inf's key (the twin ranks NaN as -inf, ties by index),
// and -0 gets +0's.
__device__ __forceinline__ uint32_t OrderKey(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;  // -0 and +0 compare equal in the twin: one key
  const uint32_t b = __float_as_uint(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
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
  int local = 0;
  if (chunk >= 0) {
    for (int b = chunk * per; b < (chunk + 1) * per; ++b) local += hist[b];
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


// Where a (sequence, KV head) segment's selection goes, once the kept tokens are written.
struct TopKSegment {
  const float* sc;  // the segment's scores
  int lo, hi;       // the candidates: tokens [lo, hi) (after the sinks, before the recent window)
  int want;         // how many of them to select; 0: the selection is complete already
  int32_t* mid;     // where the selected candidates go, ascending
};

// The start every top-k kernel shares for sequence s, KV head h (LaunchTopKSelect's layout),
// run by `threads` threads numbered `tid`: writes the segment's count (by the leader) and its
// kept sink and recent tokens, or the whole selection where those or all candidates fill the
// budget.
__device__ __forceinline__ TopKSegment StartTopKSegment(const float* scores, int64_t score_stride,
                                                        const CudaDsSequence* seqs, int heads_kv,
                                                        int32_t* selected, int64_t sel_stride,
                                                        int32_t* counts, int s, int h, int tid,
                                                        int threads, bool leader) {
  const int64_t pair = static_cast<int64_t>(s) * heads_kv + h;
  const float* sc = scores + pair * score_stride;
  int32_t* out = selected + pair * sel_stride;
  int32_t* count = counts + pair;
  const CudaDsSequence seq = seqs[s];
  const int n = seq.tokens;
  if (n <= 0) {
    if (leader) *count = 0;
    return {sc, 0, 0, 0, out};
  }
  const int budget = min(max(seq.budget, 1), n);
  const int sink_end = min(seq.sink, n);
  const int recent_begin = max(sink_end, n - max(seq.recent, 1));
  const int kept = sink_end + (n - recent_begin);
  if (leader) *count = budget;
  if (kept >= budget) {
    const int sinks = min(sink_end, budget - 1);
    const int recents = budget - sinks;
    for (int i = tid; i < budget; i += threads) out[i] = i < sinks ? i : n - recents + (i - sinks);
    return {sc, 0, 0, 0, out};
  }
  const int want = budget - kept;
  const int cand = recent_begin - sink_end;
  for (int i = tid; i < sink_end; i += threads) out[i] = i;
  for (int i = tid; i < n - recent_begin; i += threads) out[sink_end + want + i] = recent_begin + i;
  int32_t* mid = out + sink_end;
  if (want == cand) {
    for (int i = tid; i < cand; i += threads) mid[i] = sink_end + i;
    return {sc, 0, 0, 0, out};
  }
  return {sc, sink_end, recent_begin, want, mid};
}

// Adds to hist the digit (key >> shift) & digit_mask of every score in [lo, hi) whose key
// matches prefix under mask, kThreads threads with kUnroll independent loads in flight each:
// one load at a time would leave a single block latency-bound far below its share of
// bandwidth. kPrefetch: the next kUnroll loads are issued before this batch's atomics (twice
// the registers), so a block's loads never wait for its own histogram updates.
template <int kThreads, int kUnroll, bool kPrefetch = false>
__device__ __forceinline__ void RadixHistogram(const float* sc, int lo, int hi, uint32_t prefix,
                                               uint32_t mask, int shift, uint32_t digit_mask,
                                               int* hist) {
  constexpr int kStep = kThreads * kUnroll;
  auto load = [&](int base, float (&x)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int t = base + u * kThreads + threadIdx.x;
      x[u] = t < hi ? sc[t] : 0.0f;
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
// if *whole already). hist holds 1 << max(kBits0, kBits1, kBits2) counters.
template <int kThreads, int kUnroll, int kBits0, int kBits1, int kBits2>
__device__ __forceinline__ void RadixPassesInMemory(
    const float* sc, int lo, int hi, int first, int* hist,
    typename TopKScan<kThreads>::TempStorage& scan_tmp, uint32_t* prefix, uint32_t* mask,
    int* remaining, bool whole) {
  static_assert(kBits0 + kBits1 + kBits2 == 32, "three digits cover the key");
  __shared__ int sh_bucket, sh_greater;
  int shift = 32;
  for (int pass = 0; pass < 3; ++pass) {
    const int bits = pass == 0 ? kBits0 : (pass == 1 ? kBits1 : kBits2);
    shift -= bits;
    if (pass < first || whole) continue;
    const int bins = 1 << bits;
    const uint32_t digit_mask = static_cast<uint32_t>(bins - 1);
    for (int b = threadIdx.x; b < bins; b += kThreads) hist[b] = 0;
    __syncthreads();
    RadixHistogram<kThreads, kUnroll>(sc, lo, hi, *prefix, *mask, shift, digit_mask, hist);
    __syncthreads();
    FindBoundaryBucketInBlock<kThreads>(hist, bins, *remaining, scan_tmp, &sh_bucket,
                                        &sh_greater);
    __syncthreads();
    const int bucket = sh_bucket;
    *remaining -= sh_greater;
    *prefix |= static_cast<uint32_t>(bucket) << shift;
    *mask |= digit_mask << shift;
    whole = hist[bucket] == *remaining;
    __syncthreads();  // hist is cleared by the next pass
  }
}

// Ordered compaction: the scores in [lo, hi) whose keys lie above the boundary prefix, and the
// first `remaining` boundary keys by index, to mid ascending. Each thread owns kTopKItems
// consecutive candidates of a tile (blocked arrangement: one block scan per
// kThreads × kTopKItems candidates).
template <int kThreads>
__device__ __forceinline__ void OrderedCompaction(
    const float* sc, int lo, int hi, uint32_t prefix, uint32_t mask, int remaining, int32_t* mid,
    typename TopKScan<kThreads>::TempStorage& scan_tmp) {
  int written = 0, ties_seen = 0;
  for (int base = lo; base < hi; base += kThreads * kTopKItems) {
    const int first = base + threadIdx.x * kTopKItems;
    int flags[kTopKItems];
    int packed = 0;
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      const int t = first + u;
      flags[u] = 0;
      if (t < hi) {
        const uint32_t kp = OrderKey(sc[t]) & mask;
        flags[u] = kp > prefix ? 1 : (kp == prefix ? (1 << 16) : 0);
      }
      packed += flags[u];
    }
    int ex = 0, total = 0;
    TopKScan<kThreads>(scan_tmp).ExclusiveSum(packed, ex, total);
    const int tie_quota = max(remaining - ties_seen, 0);
    int above_before = ex & 0xffff, ties_before = ex >> 16;
#pragma unroll
    for (int u = 0; u < kTopKItems; ++u) {
      const bool above = flags[u] == 1, tie = flags[u] == (1 << 16);
      if (above || (tie && ties_before < tie_quota)) {
        mid[written + above_before + min(ties_before, tie_quota)] = first + u;
      }
      above_before += above;
      ties_before += tie;
    }
    const int tile_above = total & 0xffff, tile_ties = total >> 16;
    written += tile_above + min(tile_ties, tie_quota);
    ties_seen += tile_ties;
    __syncthreads();  // scan_tmp is reused by the next tile
  }
}

// kOneBlock: radix passes of 11/11/10-bit digits over the scores in memory, then the ordered
// compaction — up to four reads of the scores.
__global__ void __launch_bounds__(kTopKThreads, kTopKBlocksPerSm)
    TopKSelectKernel(const float* scores, int64_t score_stride, const CudaDsSequence* seqs,
                     int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts) {
  __shared__ TopKScan<kTopKThreads>::TempStorage scan_tmp;
  __shared__ int hist[2048];
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kTopKThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  const float* sc = seg.sc;
  uint32_t prefix = 0, mask = 0;
  int remaining = seg.want;
  RadixPassesInMemory<kTopKThreads, kTopKUnroll, 11, 11, 10>(sc, seg.lo, seg.hi, 0, hist, scan_tmp,
                                                             &prefix, &mask, &remaining, false);
  OrderedCompaction<kTopKThreads>(sc, seg.lo, seg.hi, prefix, mask, remaining, seg.mid, scan_tmp);
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

// The eight scores t = first .. first + 7, with 16-byte loads where the row allows (vec: the
// row is 16-byte aligned and first a multiple of 4); loads at or past hi are skipped.
__device__ __forceinline__ void LoadEightScores(const float* sc, int first, int hi, bool vec,
                                                float (&x)[8]) {
  if (vec && first + 8 <= hi) {
    const float4 a = *reinterpret_cast<const float4*>(sc + first);
    const float4 b = *reinterpret_cast<const float4*>(sc + first + 4);
    x[0] = a.x, x[1] = a.y, x[2] = a.z, x[3] = a.w, x[4] = b.x, x[5] = b.y, x[6] = b.z,
    x[7] = b.w;
    return;
  }
#pragma unroll
  for (int u = 0; u < 8; ++u) x[u] = first + u < hi ? sc[first + u] : 0.0f;
}
static_assert(kTopKItems == 8, "LoadEightScores");

// The end of the two-read bodies, once the split has put the greater winners (keys above the
// boundary bucket of (prefix, mask)) at their rank among winners in mid and the bucket's cands
// keys, indices and winners before them in shared memory, in index order: the boundary among
// the candidates (the remaining digits, over shared memory, choosing take of them), then the
// winners move right by the chosen candidates before them (back to front, so none is
// overwritten before it is read) and the chosen candidates fill the gaps. hist (at least
// 1 << kTwoReadBits1 counters) and scan_tmp are free on entry.
template <int kThreads>
__device__ __forceinline__ void FinishSplitInShared(
    int cands, int take, uint32_t prefix, uint32_t mask, int greater, int* hist, uint32_t* cand_key,
    const int32_t* cand_idx, const int32_t* cand_wb, int32_t* mid,
    typename TopKScan<kThreads>::TempStorage& scan_tmp) {
  using Scan = TopKScan<kThreads>;
  __shared__ int sh_bucket, sh_greater;
  constexpr int kShift = 32 - kTwoReadBits0;
  const int chosen_total = take;
  // The boundary among the candidates: the remaining digits over shared memory.
  bool whole = cands == take;
  int shift = kShift;
  for (int pass = 1; pass < 3 && !whole; ++pass) {
    const int bits = pass == 1 ? kTwoReadBits1 : kTwoReadBits2;
    shift -= bits;
    const int bins = 1 << bits;
    const uint32_t digit_mask = static_cast<uint32_t>(bins - 1);
    for (int b = threadIdx.x; b < bins; b += kThreads) hist[b] = 0;
    __syncthreads();
    for (int c = threadIdx.x; c < cands; c += kThreads) {
      const uint32_t key = cand_key[c];
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & digit_mask], 1);
    }
    __syncthreads();
    FindBoundaryBucketInBlock<kThreads>(hist, bins, take, scan_tmp, &sh_bucket, &sh_greater);
    __syncthreads();
    take -= sh_greater;
    prefix |= static_cast<uint32_t>(sh_bucket) << shift;
    mask |= digit_mask << shift;
    whole = hist[sh_bucket] == take;
    __syncthreads();  // hist is cleared by the next pass
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
  // Winner r moves right by the chosen candidates before it: those with at most r winners
  // before them (cand_wb ascends, so binary searches). A thread takes kFixItems consecutive
  // winners per pass; passes run back to front so that no winner is overwritten before it is
  // read.
  constexpr int kFixItems = 8;
  constexpr int kFixTile = kThreads * kFixItems;
  for (int top = greater; top > 0; top -= kFixTile) {
    const int r0 = top - kFixTile + static_cast<int>(threadIdx.x) * kFixItems;
    int idx[kFixItems], moved[kFixItems];
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) idx[u] = r0 + u >= 0 ? mid[r0 + u] : 0;
    int a = 0;  // candidates with at most r0 + u winners before them (ascending in u)
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) {
      int b = cands;
      while (a < b) {
        const int m = (a + b) / 2;
        if (cand_wb[m] <= r0 + u) {
          a = m + 1;
        } else {
          b = m;
        }
      }
      moved[u] = a < cands ? static_cast<int>(cand_key[a] & ~kChosenBit) : chosen_total;
    }
    __syncthreads();  // every winner of this pass is read before any is written
#pragma unroll
    for (int u = 0; u < kFixItems; ++u) {
      if (r0 + u >= 0 && moved[u] > 0) mid[r0 + u + moved[u]] = idx[u];
    }
    __syncthreads();
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
  OrderedCompaction<kThreads>(seg.sc, seg.lo, seg.hi, f.prefix, f.mask, f.take, seg.mid,
                              scan_tmp);
}

// The dynamic shared memory of the two-read bodies (kTwoReadSmem bytes): the first digit's
// histogram, then the boundary bucket's candidates — keys, indices and earlier-winner counts.
struct TwoReadSmem {
  int* hist;
  uint32_t* cand_key;
  int32_t* cand_idx;
  int32_t* cand_wb;
};
__device__ __forceinline__ TwoReadSmem CarveTwoReadSmem(int* base) {
  TwoReadSmem m;
  m.hist = base;
  m.cand_key = reinterpret_cast<uint32_t*>(base + kTwoReadFirstBins);
  m.cand_idx = reinterpret_cast<int32_t*>(m.cand_key + kTwoReadCandidates);
  m.cand_wb = m.cand_idx + kTwoReadCandidates;
  return m;
}

__global__ void __launch_bounds__(kTwoReadThreads, 2)
    TopKSelectTwoReadKernel(const float* scores, int64_t score_stride,
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
  const float* sc = seg.sc;
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
  const bool vec = (reinterpret_cast<uintptr_t>(sc) & 15) == 0;
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
        cand_key[cb] = OrderKey(sc[first + u]);
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
// kStripedHistChunks chunks in flight per thread. Read 2 classifies by two float comparisons
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
constexpr int kStripedHistChunks = 8;  // 16-byte chunks a thread has in flight in read 1
constexpr int kStripedRounds = 4;      // 16-byte chunks a lane classifies per tile in read 2
constexpr int kStripedWarpChunks = kStripedRounds * 32;
constexpr int kStripedTileChunks = kStripedWarps * kStripedWarpChunks;
static_assert(kStripedRounds * 8 <= 32, "a lane's classification of a tile fits a word");
static_assert(kStripedTileChunks * 4 <= kTwoReadFirstBins, "the winners' staging fits hist");
static_assert(kStripedWarps <= 32, "one warp exchanges the warps' counts");

// The candidates [lo, hi) of a score row as 16-byte chunks: chunk c holds tokens 4c - a ..
// 4c - a + 3 (a: the row's offset in floats from the 16-byte boundary at or before it).
struct StripedRow {
  const float* sc;
  const float4* p4;
  int a, lo, hi;
  int c_begin, c_end;        // chunks holding a candidate
  int full_begin, full_end;  // chunks holding only candidates
};

__device__ __forceinline__ StripedRow MakeStripedRow(const float* sc, int lo, int hi) {
  StripedRow r;
  r.sc = sc;
  r.p4 = reinterpret_cast<const float4*>(reinterpret_cast<uintptr_t>(sc) & ~uintptr_t{15});
  r.a = static_cast<int>((reinterpret_cast<uintptr_t>(sc) >> 2) & 3);
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

// Chunk c of the row with its non-candidates as 0 (and no load outside the candidates).
__device__ __forceinline__ float4 LoadChunkChecked(const StripedRow& r, int c) {
  if (c >= r.full_begin && c < r.full_end) return __ldg(r.p4 + c);
  const int t = 4 * c - r.a;
  float4 v;
  v.x = StripedValid(r, t) ? __ldg(r.sc + t) : 0.0f;
  v.y = StripedValid(r, t + 1) ? __ldg(r.sc + t + 1) : 0.0f;
  v.z = StripedValid(r, t + 2) ? __ldg(r.sc + t + 2) : 0.0f;
  v.w = StripedValid(r, t + 3) ? __ldg(r.sc + t + 3) : 0.0f;
  return v;
}

// Read 1 over one tile: chunks tb + u × kStripedThreads + thread, all loaded before any is
// counted. kCheck: the tile holds chunks that are not all candidates.
template <bool kCheck>
__device__ __forceinline__ void StripedHistogramTile(const StripedRow& r, int tb, int* hist) {
  constexpr int kShift = 32 - kTwoReadBits0;
  const int c0 = tb + static_cast<int>(threadIdx.x);
  float4 x[kStripedHistChunks];
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const int c = c0 + u * kStripedThreads;
    if (kCheck) {
      x[u] = c < r.c_end ? LoadChunkChecked(r, c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    } else {
      x[u] = __ldg(r.p4 + c);
    }
  }
#pragma unroll
  for (int u = 0; u < kStripedHistChunks; ++u) {
    const float f[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
    const int t = 4 * (c0 + u * kStripedThreads) - r.a;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!kCheck || StripedValid(r, t + e)) atomicAdd(&hist[OrderKey(f[e]) >> kShift], 1);
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
      x[u] = __ldg(r.p4 + c);
    }
  }
}

// All ones where x >= y (NaN: never), else 0: one FSET, so that a flag costs a LOP3 more.
__device__ __forceinline__ uint32_t AtLeastBits(float x, float y) {
  uint32_t r;
  asm("set.ge.u32.f32 %0, %1, %2;" : "=r"(r) : "f"(x), "f"(y));
  return r;
}

// Read 2's classification of a lane's tile (t0: the token of round 0's first element): bit
// 8u + e of *win is set where element e of round u is at least thr (a winner), of *ge where it
// is at least flo (a winner or a candidate).
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

// The least score whose OrderKey is at least bucket << 19 (13-bit buckets above -inf's, 15;
// bucket 8192 or one past +inf's: NaN, which no score compares at least).
__device__ __forceinline__ float BucketFloor(int bucket) {
  if (bucket >= kTwoReadFirstBins) return __uint_as_float(0x7fffffffu);
  const uint32_t k = static_cast<uint32_t>(bucket) << (32 - kTwoReadBits0);
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__global__ void __launch_bounds__(kStripedThreads, 2)
    TopKSelectStripedKernel(const float* scores, int64_t score_stride, const CudaDsSequence* seqs,
                            int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts) {
  constexpr int kThreads = kStripedThreads;
  using Scan = TopKScan<kThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ int sh_bucket, sh_greater;
  __shared__ int exchange[2][kStripedWarps];  // per warp: winners | candidates << 16 of a tile
  extern __shared__ int striped_smem[];
  const TwoReadSmem smem = CarveTwoReadSmem(striped_smem);
  int* const hist = smem.hist;
  uint32_t* const cand_key = smem.cand_key;
  int32_t* const cand_idx = smem.cand_idx;
  int32_t* const cand_wb = smem.cand_wb;
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.y, blockIdx.x, threadIdx.x, kThreads, threadIdx.x == 0);
  if (seg.want == 0) return;
  const StripedRow r = MakeStripedRow(seg.sc, seg.lo, seg.hi);
  int32_t* mid = seg.mid;

  // Read 1: the first digit's histogram and its boundary bucket.
  for (int b = threadIdx.x; b < kTwoReadFirstBins; b += kThreads) hist[b] = 0;
  __syncthreads();
  constexpr int kHistTile = kStripedHistChunks * kThreads;
  for (int tb = r.c_begin; tb < r.c_end; tb += kHistTile) {
    if (StripedTileChecked(r, tb, kHistTile)) {
      StripedHistogramTile<true>(r, tb, hist);
    } else {
      StripedHistogramTile<false>(r, tb, hist);
    }
  }
  __syncthreads();
  const FirstDigitSplit split =
      SplitAtFirstDigit<kThreads>(hist, seg.want, scan_tmp, &sh_bucket, &sh_greater);
  // Buckets below 16 hold -inf and NaN only (bucket 15), which BucketFloor cannot bound.
  if (split.cands > kTwoReadCandidates || split.bucket < 16) {
    FinishByRadixPasses<kThreads>(seg, hist, scan_tmp, split);
    return;
  }
  const int bucket = split.bucket, greater = split.greater, cands = split.cands;
  const int take = split.take;
  const uint32_t prefix = split.prefix, mask = split.mask;

  // Read 2: winners to mid at their rank among winners, candidates to shared memory.
  const float thr = BucketFloor(bucket + 1), flo = BucketFloor(bucket);
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  int* stage = hist + warp * kStripedWarpChunks * 4;  // this warp's winners of a tile
  const int lane_chunk = warp * kStripedWarpChunks + lane;
  float4 x[kStripedRounds];
  if (StripedTileChecked(r, r.c_begin, kStripedTileChunks)) {
    LoadSplitTile<true>(r, r.c_begin + lane_chunk, x);
  } else {
    LoadSplitTile<false>(r, r.c_begin + lane_chunk, x);
  }
  int winners = 0, held = 0, parity = 0;
  for (int tb = r.c_begin; tb < r.c_end; tb += kStripedTileChunks) {
    const int t0 = 4 * (tb + lane_chunk) - r.a;
    uint32_t win, ge;
    if (StripedTileChecked(r, tb, kStripedTileChunks)) {
      ClassifySplitTile<true>(r, x, t0, thr, flo, &win, &ge);
    } else {
      ClassifySplitTile<false>(r, x, t0, thr, flo, &win, &ge);
    }
    const uint32_t cand = ge & ~win;
    float first_cand = 0.0f;  // the lane's first candidate, read before x is reloaded
    if (cand != 0u) first_cand = __ldg(r.sc + t0 + SplitBitToken(__ffs(cand) - 1));
    const int next = tb + kStripedTileChunks;
    if (next < r.c_end) {
      if (StripedTileChecked(r, next, kStripedTileChunks)) {
        LoadSplitTile<true>(r, next + lane_chunk, x);
      } else {
        LoadSplitTile<false>(r, next + lane_chunk, x);
      }
    }
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
    if (lane == 0) exchange[parity][warp] = warp_wins | (RoundsTotal(cand_rounds) << 16);
    __syncthreads();  // every warp's counts (and this warp's staged winners) are complete
    const int own = lane < kStripedWarps ? exchange[parity][lane] : 0;
    int incl = own;
#pragma unroll
    for (int d = 1; d < kStripedWarps; d <<= 1) {
      const int o = __shfl_up_sync(0xffffffffu, incl, d);
      if (lane >= d) incl += o;
    }
    const int before = __shfl_sync(0xffffffffu, incl - own, warp);
    const int total = __shfl_sync(0xffffffffu, incl, kStripedWarps - 1);
    const int win_base = winners + (before & 0xffff), cand_base = held + (before >> 16);
    for (int i = lane; i < warp_wins; i += 32) mid[win_base + i] = stage[i];
    uint32_t left = cand;
    for (bool first = true; left != 0u; first = false) {
      const int bit = __ffs(left) - 1;
      const int u = bit >> 3;
      const uint32_t below = ((1u << bit) - 1u) & ~((1u << (8 * u)) - 1u);  // this round's
      const int t = t0 + SplitBitToken(bit);
      const int c = cand_base + RoundsBefore(cand_rounds, u) +
                    static_cast<int>((cand_ex >> (8 * u)) & 0xffu) + __popc(cand & below);
      cand_key[c] = OrderKey(first ? first_cand : __ldg(r.sc + t));
      cand_idx[c] = t;
      cand_wb[c] = win_base + RoundsBefore(win_rounds, u) +
                   static_cast<int>((win_ex >> (8 * u)) & 0xffu) + __popc(win & below);
      left &= left - 1u;
    }
    winners += total & 0xffff;
    held += total >> 16;
    parity ^= 1;
    __syncwarp();  // this warp's stage is rewritten by the next tile
  }
  __syncthreads();  // the candidates are complete; hist is free
  FinishSplitInShared<kThreads>(cands, take, prefix, mask, greater, hist, cand_key, cand_idx,
                                cand_wb, mid, scan_tmp);
}

// Long segments: a cluster of kTopKClusterMax or fewer blocks per (sequence, KV head), each
// holding a contiguous slice of the candidates' keys in shared memory, so the scores are read
// from memory once (16-byte loads, the first radix histogram taken during the load) and every
// later pass and the compaction read shared memory. Per pass each block histograms its slice;
// after a cluster barrier every block sums all blocks' histograms through distributed shared
// memory (double-buffered, so the next pass's clear cannot race a slower block's read) and
// finds the same boundary bucket. The compaction is ordered across blocks by an exclusive
// prefix of the blocks' above-boundary and tie counts, so the result is the one-block kernel's.
template <int kThreads, int kItems>
__global__ void __launch_bounds__(kThreads)
    TopKSelectClusterKernel(const float* scores, int64_t score_stride, const CudaDsSequence* seqs,
                            int heads_kv, int32_t* selected, int64_t sel_stride, int32_t* counts) {
  namespace cg = cooperative_groups;
  using Scan = cub::BlockScan<int, kThreads>;
  using Reduce = cub::BlockReduce<int, kThreads>;
  extern __shared__ uint4 keys4[];  // this block's candidate keys, slice order
  uint32_t* keys = reinterpret_cast<uint32_t*>(keys4);
  __shared__ typename Scan::TempStorage scan_tmp;
  __shared__ typename Reduce::TempStorage reduce_tmp;
  __shared__ int hist[2][2048];
  __shared__ int merged[2048];
  __shared__ int totals[2];  // this block's above-boundary and boundary-tie counts
  __shared__ int sh_bucket, sh_greater;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = static_cast<int>(cluster.block_rank());
  const int nb = static_cast<int>(cluster.num_blocks());
  const int gtid = rank * kThreads + static_cast<int>(threadIdx.x);
  // Uniform over the cluster (it depends on the sequence only), and touching no other block's
  // shared memory, so blocks may return here without a barrier.
  const TopKSegment seg =
      StartTopKSegment(scores, score_stride, seqs, heads_kv, selected, sel_stride, counts,
                       blockIdx.z, blockIdx.y, gtid, nb * kThreads, gtid == 0);
  if (seg.want == 0) return;
  const float* sc = seg.sc;
  const int sink_end = seg.lo, want = seg.want, cand = seg.hi - seg.lo;
  int32_t* mid = seg.mid;
  // This block's slice: candidates [lo, lo + len), a multiple of 4 long except the last.
  const int per = ((cand + nb - 1) / nb + 3) / 4 * 4;
  const int lo = sink_end + min(cand, rank * per);
  const int len = min(cand, (rank + 1) * per) - (lo - sink_end);
  for (int b = threadIdx.x; b < 2 * 2048; b += kThreads) (&hist[0][0])[b] = 0;
  __syncthreads();
  // Load + first histogram (digit 31..21). Scalar loads up to 16-byte alignment, then float4.
  {
    const float* p = sc + lo;
    const int head =
        min(len, static_cast<int>(((16 - (reinterpret_cast<uintptr_t>(p) & 15)) & 15) / 4));
    for (int i = threadIdx.x; i < head; i += kThreads) {
      const uint32_t k = OrderKey(p[i]);
      keys[i] = k;
      atomicAdd(&hist[0][k >> 21], 1);
    }
    const int vecs = (len - head) / 4;
    const float4* p4 = reinterpret_cast<const float4*>(p + head);
    constexpr int kUnroll = 4;
    for (int base = 0; base < vecs; base += kThreads * kUnroll) {
      float4 x[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = base + u * kThreads + threadIdx.x;
        if (v < vecs) x[u] = p4[v];
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = base + u * kThreads + threadIdx.x;
        if (v < vecs) {
          const float f[4] = {x[u].x, x[u].y, x[u].z, x[u].w};
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const uint32_t k = OrderKey(f[e]);
            keys[head + 4 * v + e] = k;
            atomicAdd(&hist[0][k >> 21], 1);
          }
        }
      }
    }
    for (int i = head + 4 * vecs + threadIdx.x; i < len; i += kThreads) {
      const uint32_t k = OrderKey(p[i]);
      keys[i] = k;
      atomicAdd(&hist[0][k >> 21], 1);
    }
  }
  uint32_t prefix = 0, mask = 0;
  int remaining = want;
  for (int pass = 0; pass < 3; ++pass) {
    const int shift = pass == 0 ? 21 : (pass == 1 ? 10 : 0);
    const int bins = pass == 2 ? 1024 : 2048;
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
    cluster.sync();  // every block's histogram of this pass is complete
    for (int b = threadIdx.x; b < bins; b += kThreads) {
      int sum = 0;
      for (int q = 0; q < nb; ++q) sum += cluster.map_shared_rank(local, q)[b];
      merged[b] = sum;
    }
    // The other buffer was last read in the previous pass's merge, which every block finished
    // before the barrier above: clear it for the next pass.
    for (int b = threadIdx.x; b < 2048; b += kThreads) hist[(pass + 1) % 2][b] = 0;
    __syncthreads();
    if (threadIdx.x < 32) FindBoundaryBucket(merged, bins, remaining, &sh_bucket, &sh_greater);
    __syncthreads();
    const int bucket = sh_bucket;
    remaining -= sh_greater;
    prefix |= static_cast<uint32_t>(bucket) << shift;
    mask |= digit_mask << shift;
    const bool whole = merged[bucket] == remaining;
    __syncthreads();  // merged is rewritten by the next pass
    if (whole) break;
  }
  // This block's counts of keys above the boundary prefix and of boundary ties.
  {
    int above = 0, ties = 0;
    for (int i = threadIdx.x; i < len; i += kThreads) {
      const uint32_t kp = keys[i] & mask;
      above += kp > prefix;
      ties += kp == prefix;
    }
    above = Reduce(reduce_tmp).Sum(above);
    __syncthreads();
    ties = Reduce(reduce_tmp).Sum(ties);
    if (threadIdx.x == 0) totals[0] = above, totals[1] = ties;
  }
  cluster.sync();  // every block's totals are complete
  int written = 0, ties_seen = 0;
  for (int q = 0; q < rank; ++q) {
    const int* t = cluster.map_shared_rank(totals, q);
    written += t[0];
    ties_seen += t[1];
  }
  written += min(ties_seen, remaining);
  // Ordered compaction of the slice, as the one-block kernel's (blocked tiles, one block scan
  // each), starting from the blocks before this one.
  for (int base = 0; base < len; base += kThreads * kItems) {
    const int first = base + threadIdx.x * kItems;
    int flags[kItems];
    int packed = 0;
#pragma unroll
    for (int u4 = 0; u4 < kItems / 4; ++u4) {
      const uint4 k4 =
          first + 4 * u4 < len ? keys4[(first + 4 * u4) / 4] : make_uint4(0, 0, 0, 0);
      const uint32_t k[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int u = 4 * u4 + e;
        flags[u] = 0;
        if (first + u < len) {
          const uint32_t kp = k[e] & mask;
          flags[u] = kp > prefix ? 1 : (kp == prefix ? (1 << 16) : 0);
        }
        packed += flags[u];
      }
    }
    int ex = 0, total = 0;
    Scan(scan_tmp).ExclusiveSum(packed, ex, total);
    const int tie_quota = max(remaining - ties_seen, 0);
    int above_before = ex & 0xffff, ties_before = ex >> 16;
#pragma unroll
    for (int u = 0; u < kItems; ++u) {
      const bool above = flags[u] == 1, tie = flags[u] == (1 << 16);
      if (above || (tie && ties_before < tie_quota)) {
        mid[written + above_before + min(ties_before, tie_quota)] = lo + first + u;
      }
      above_before += above;
      ties_before += tie;
    }
    const int tile_above = total & 0xffff, tile_ties = total >> 16;
    written += tile_above + min(tile_ties, tie_quota);
    ties_seen += tile_ties;
    __syncthreads();  // scan_tmp is reused by the next tile
  }
  cluster.sync();  // no block leaves while another may still read its totals
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
      pipe_smem);
}

absl::Status BadDType(const char* what, DType dtype) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": unsupported dtype ", static_cast<int>(dtype)));
}

// What the launchers size their grids by, for the current device and one kernel: queried once
// per (device, kernel, threads, dynamic shared memory) and cached for the process, as these
// driver queries took microseconds on every launch (every layer of every decode step). A null
// kernel gives the device's attributes only; threads 0 skips the occupancy query.
struct LaunchInfo {
  int sms = 0;             // multiprocessors
  int smem_optin = 0;      // shared memory a block may opt in to (bytes)
  size_t static_smem = 0;  // the kernel's static shared memory (bytes)
  int blocks_per_sm = 0;   // resident blocks of the kernel at (threads, dynamic shared memory)
};

absl::StatusOr<LaunchInfo> CachedLaunchInfo(const void* kernel, int threads, size_t dynamic_smem) {
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  using Key = std::tuple<int, const void*, int, size_t>;
  // Never destroyed: launches may run during static destruction.
  static std::mutex* const mu = new std::mutex;
  static std::map<Key, LaunchInfo>* const cache = new std::map<Key, LaunchInfo>;
  const Key key{device, kernel, threads, dynamic_smem};
  {
    std::lock_guard<std::mutex> lock(*mu);
    const auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  // Queried outside the lock (two threads may both query a new key: the same answer).
  LaunchInfo info;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&info.sms, cudaDevAttrMultiProcessorCount, device));
  CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&info.smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (kernel != nullptr) {
    cudaFuncAttributes attr;
    CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&attr, kernel));
    info.static_smem = attr.sharedSizeBytes;
    if (threads > 0) {
      CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &info.blocks_per_sm, kernel, threads, dynamic_smem));
    }
  }
  std::lock_guard<std::mutex> lock(*mu);
  cache->emplace(key, info);
  return info;
}

template <typename T>
using ScoreKernel = void (*)(const T*, int64_t, const CudaDsSequence*, const CudaLabelSeq*, int,
                             int, int, float*, int64_t);

// LabelScoresFixedKernel for rows of kBits bits and kR channels at GQA group `group`: the group
// a compile-time constant where group × r <= 32 (measured on an H200 for fp16 r 8 / 16 and
// 4-bit r 32: 1.7-2.4x faster than the runtime group there, but slower beyond, where the
// unrolled dots spill; 4-bit r 8 / 16 follow the rule: at 4-bit r 16, group 4 spills 1 KB),
// else the runtime-group kernel of that row.
template <typename T, int kBits, int kR>
ScoreKernel<T> FixedScoreKernelFor(int group) {
  if constexpr (kR <= 32) {
    if (group == 1) return LabelScoresFixedKernel<T, kBits, kR, 1>;
  }
  if constexpr (2 * kR <= 32) {
    if (group == 2) return LabelScoresFixedKernel<T, kBits, kR, 2>;
  }
  if constexpr (4 * kR <= 32) {
    if (group == 4) return LabelScoresFixedKernel<T, kBits, kR, 4>;
  }
  return LabelScoresFixedKernel<T, kBits, kR, 0>;
}

// The fixed-row kernel for labels of `bits` bits and r channels (every sequence's) at GQA group
// `group`, or null where none applies: rows of 4, 8, 16 or 32 bytes (fp16 r 8 / 16; 4-bit r 8,
// whose 4-byte rows are half of fp16 r 8's bytes for the same channels, 16, 32, 64).
template <typename T>
ScoreKernel<T> FixedScoreKernel(int bits, int r, int group, int heads_kv) {
  if (heads_kv > kScoreThreads || kScoreThreads % heads_kv != 0) return nullptr;
  if (bits == 16 && r == 8) return FixedScoreKernelFor<T, 16, 8>(group);
  if (bits == 16 && r == 16) return FixedScoreKernelFor<T, 16, 16>(group);
  if (bits == 4 && r == 8) return FixedScoreKernelFor<T, 4, 8>(group);
  if (bits == 4 && r == 16) return FixedScoreKernelFor<T, 4, 16>(group);
  if (bits == 4 && r == 32) return FixedScoreKernelFor<T, 4, 32>(group);
  if (bits == 4 && r == 64) return FixedScoreKernelFor<T, 4, 64>(group);
  return nullptr;
}

// Launches the scoring body `algo` (every kernel takes the same arguments): kRowPerThread, or
// the fixed-shape kernel where label_bits names one (else the general one) on one block per
// token tile (kCoalesced) or on two waves of resident blocks (kStrided). Dynamic shared memory
// past the 48 KiB default, counting the kernel's static shared memory (the score staging),
// needs an opt-in.
template <typename T>
absl::Status LabelScoresT(LabelScoreAlgo algo, int label_bits, int max_r, int num_seqs,
                          int64_t max_tokens, const T* q, int64_t q_stride,
                          const CudaDsSequence* seqs, const CudaLabelSeq* labels, int heads_q,
                          int heads_kv, int head_dim, float* scores, int64_t score_stride,
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
    kernel = FixedScoreKernel<T>(label_bits, max_r, heads_q / heads_kv, heads_kv);
    if (kernel == nullptr) kernel = LabelScoresGeneralKernel<T>;
    static_smem = 2 * kScoreThreads * kScoreItemsPerThread * sizeof(float);
    const int tpb = ScoreTokensPerBlock(heads_kv);
    blocks = (max_tokens + tpb - 1) / tpb;
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
  }
  const dim3 grid(static_cast<unsigned>(blocks), num_seqs);
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(kernel, grid, dim3(kScoreThreads), smem, stream, q,
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
    CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
        SparsePipelinedKernel<T, kD, kG>, grid, dim3(cuda::kPipeThreads), kSmem, stream,
        static_cast<const T*>(q), q_stride, seqs, heads_kv, scale * kLog2e, kv, selected,
        sel_stride, counts, splits, workspace, static_cast<T*>(out), out_stride));
    if (splits > 1) {
      CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
          cuda::DecodeCombineKernel<T, kD, SelectionRows>,
          dim3(static_cast<unsigned>(num_seqs * heads_q)), dim3(kD * cuda::kCombineParts), 0,
          stream, static_cast<const float*>(workspace), static_cast<int64_t>(num_seqs), heads_q,
          splits, static_cast<T*>(out), out_stride, SelectionRows{seqs}));
    }
    return absl::OkStatus();
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
      SparseAttentionKernel<T, kD, kG>, grid, dim3(kAttnWarps * 32), 0, stream,
      static_cast<const T*>(q), q_stride, seqs, heads_kv, scale, kv, selected, sel_stride, counts,
      splits, workspace));
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
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
        (reinterpret_cast<uintptr_t>(labels[i].data) & 15) != 0) {
      return 0;
    }
  }
  return labels[0].bits;
}

absl::Status LaunchLabelScores(DType dtype, const void* q, int64_t q_stride,
                               const CudaDsSequence* seqs, int num_seqs, const CudaLabelSeq* labels,
                               int heads_q, int heads_kv, int head_dim, int max_r, int label_bits,
                               int64_t max_tokens, float* scores, int64_t score_stride,
                               cudaStream_t stream, LabelScoreAlgo algo) {
  if (num_seqs == 0 || max_tokens == 0) return absl::OkStatus();
  if (heads_kv <= 0 || heads_q % heads_kv != 0 || heads_q / heads_kv > kMaxGroup) {
    return absl::InvalidArgumentError(
        absl::StrCat("LaunchLabelScores: GQA ", heads_q, "/", heads_kv, " unsupported"));
  }
  if (max_r <= 0 || max_r > head_dim || max_r > 256) {
    return absl::InvalidArgumentError(absl::StrCat("LaunchLabelScores: bad r ", max_r));
  }
  if (algo != LabelScoreAlgo::kRowPerThread &&
      (heads_kv > kScoreThreads * kScoreItemsPerThread || max_tokens * heads_kv > INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "LaunchLabelScores: ", max_tokens, " tokens × ", heads_kv, " KV heads too many"));
  }
  switch (dtype) {
    case DType::kBF16:
      return LabelScoresT(algo, label_bits, max_r, num_seqs, max_tokens,
                          static_cast<const __nv_bfloat16*>(q), q_stride, seqs, labels, heads_q,
                          heads_kv, head_dim, scores, score_stride, stream);
    case DType::kF16:
      return LabelScoresT(algo, label_bits, max_r, num_seqs, max_tokens,
                          static_cast<const __half*>(q), q_stride, seqs, labels, heads_q, heads_kv,
                          head_dim, scores, score_stride, stream);
    default:
      return BadDType("LaunchLabelScores", dtype);
  }
}

TopKAlgo ResolveTopKAlgo(TopKAlgo algo, int64_t score_stride, int64_t pairs, int sms) {
  if (algo == TopKAlgo::kOneBlock || algo == TopKAlgo::kTwoRead || algo == TopKAlgo::kStriped) {
    return algo;
  }
  const TopKAlgo one_block = algo == TopKAlgo::kAuto ? TopKAlgo::kStriped : TopKAlgo::kOneBlock;
  if (score_stride <= kTopKShortSegment) return one_block;
  if (algo == TopKAlgo::kCluster) return TopKAlgo::kCluster;
  return 4 * pairs <= sms ? TopKAlgo::kCluster : one_block;
}

absl::Status LaunchTopKSelect(const float* scores, int64_t score_stride, const CudaDsSequence* seqs,
                              int num_seqs, int heads_kv, int32_t* selected, int64_t sel_stride,
                              int32_t* counts, cudaStream_t stream, TopKAlgo algo) {
  if (num_seqs == 0) return absl::OkStatus();
  // score_stride bounds every sequence's tokens, hence its candidates.
  int sms = 0;  // only kAuto looks at the SM count
  if (algo == TopKAlgo::kAuto) {
    ASSIGN_OR_RETURN(const LaunchInfo info, CachedLaunchInfo(nullptr, 0, 0));
    sms = info.sms;
  }
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  TopKAlgo resolved = ResolveTopKAlgo(algo, score_stride, pairs, sms);
  if (resolved == TopKAlgo::kCluster) {
    const int64_t nb = std::clamp<int64_t>(
        (score_stride + kTopKKeysPerBlock - 1) / kTopKKeysPerBlock, 2, kTopKClusterMax);
    // As the kernel's slice: ceil(candidates / nb) rounded up to 4 keys.
    const int64_t cap = ((score_stride + nb - 1) / nb + 3) / 4 * 4;
    auto* kernel = TopKSelectClusterKernel<kTopKClusterThreads, kTopKClusterItems>;
    ASSIGN_OR_RETURN(const LaunchInfo info,
                     CachedLaunchInfo(reinterpret_cast<const void*>(kernel), 0, 0));
    const int64_t smem = cap * 4;
    if (smem + static_cast<int64_t>(info.static_smem) <= info.smem_optin) {
      CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
          kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
      cudaLaunchConfig_t cfg = {};
      cfg.gridDim = dim3(static_cast<unsigned>(nb), heads_kv, num_seqs);
      cfg.blockDim = dim3(kTopKClusterThreads);
      cfg.dynamicSmemBytes = static_cast<size_t>(smem);
      cfg.stream = stream;
      cudaLaunchAttribute cluster;
      cluster.id = cudaLaunchAttributeClusterDimension;
      cluster.val.clusterDim.x = static_cast<unsigned>(nb);
      cluster.val.clusterDim.y = 1;
      cluster.val.clusterDim.z = 1;
      cfg.attrs = &cluster;
      cfg.numAttrs = 1;
      CUDA_RETURN_IF_ERROR(cudaLaunchKernelEx(&cfg, kernel, scores, score_stride, seqs, heads_kv,
                                              selected, sel_stride, counts));
      return absl::OkStatus();
    }
    // Longer than the cluster's shared memory holds: a one-block kernel.
    resolved = algo == TopKAlgo::kAuto ? TopKAlgo::kStriped : TopKAlgo::kOneBlock;
  }
  if (resolved == TopKAlgo::kTwoRead) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(TopKSelectTwoReadKernel,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(kTwoReadSmem)));
    CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
        TopKSelectTwoReadKernel, dim3(heads_kv, num_seqs), dim3(kTwoReadThreads), kTwoReadSmem,
        stream, scores, score_stride, seqs, heads_kv, selected, sel_stride, counts));
    return absl::OkStatus();
  }
  if (resolved == TopKAlgo::kStriped) {
    CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(TopKSelectStripedKernel,
                                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(kTwoReadSmem)));
    CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(
        TopKSelectStripedKernel, dim3(heads_kv, num_seqs), dim3(kStripedThreads), kTwoReadSmem,
        stream, scores, score_stride, seqs, heads_kv, selected, sel_stride, counts));
    return absl::OkStatus();
  }
  // kOneBlock.
  CUDA_RETURN_IF_ERROR(cuda::LaunchOrdered(TopKSelectKernel, dim3(heads_kv, num_seqs),
                                             dim3(kTopKThreads), 0, stream, scores, score_stride,
                                             seqs, heads_kv, selected, sel_stride, counts));
  return absl::OkStatus();
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
                                 waves > 0 ? waves : kDecodeAttentionWaves);
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
