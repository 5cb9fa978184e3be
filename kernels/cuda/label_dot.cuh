// The arithmetic of Double Sparsity's label scoring, in the twins' rounding order (shared by
// the scorers in label_scores.cu and the fused scorer and top-k in
// score_select_cluster.cu): label values from fp16 bits or 4-bit codes, the per-channel FMA,
// the 4-bit scale/minimum fold, the GQA aggregation and the query's channel sums.
#ifndef DSINFER_KERNELS_CUDA_LABEL_DOT_CUH_
#define DSINFER_KERNELS_CUDA_LABEL_DOT_CUH_

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"

namespace dsinfer {
namespace cuda {

__device__ __forceinline__ float F16BitsToF32(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}

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

// The low 4-bit code of `shifted` as a float, CodeToFloat's trick in one LOP3 ((x & 0xf) |
// 0x4B000000, lut 0xEA) where ptxas otherwise takes two, each holding one immediate.
__device__ __forceinline__ float LowCodeToFloat(uint32_t shifted) {
  uint32_t bits;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(bits) : "r"(shifted), "r"(0xfu), "r"(0x4B000000u));
  return __fsub_rn(__uint_as_float(bits), 8388608.0f);
}

// One 4-bit row's dot for one query head in the twin's order: scale and minimum folded out,
// fma(scale, qc, minimum · q_sum), qc = Σ q·c (DotStep's FMA chain), q_sum = Σ q.
__device__ __forceinline__ float FoldScaleMinimum(float qc, float scale, float minimum,
                                                  float q_sum) {
  return __fmaf_rn(scale, qc, __fmul_rn(minimum, q_sum));
}

// One channel's step of a query head's dot, in the twin's order: one FMA (fp16 label values,
// or 4-bit codes as floats of Σ q·c). kBits stays for the callers' symmetry.
template <int kBits>
__device__ __forceinline__ float DotStep(float acc, float q, float value) {
  return __fmaf_rn(q, value, acc);
}

// GQA aggregation of one row's per-score-head dots in the twin's order (ScoreAggregation sum
// or max): start from AggregateStart, fold each dot in with AggregateStep.
__device__ __forceinline__ float AggregateStart(bool max_agg) {
  return max_agg ? -INFINITY : 0.0f;
}
__device__ __forceinline__ float AggregateStep(float agg, float dot, bool max_agg) {
  return max_agg ? (agg < dot ? dot : agg) : __fadd_rn(agg, dot);
}

// The query vectors a KV head's scores fold (the twin's ScoreHeads): for max aggregation each
// of the group's query heads, for sum one, the group's label channels summed.
__host__ __device__ __forceinline__ int ScoreHeadsOf(int group, bool max_agg) {
  return max_agg ? group : 1;
}

// Channel c of score head g of KV head h in the twin's order (StageScoreQuery): for max
// aggregation query head h × group + g's, for sum the group's channel c summed (rounded adds
// from 0, query heads ascending; unrolled so that the loads are in flight together).
template <typename T>
__device__ __forceinline__ float ScoreQueryChannel(const T* qrow, int head_dim, int group,
                                                   bool max_agg, int h, int g, int c) {
  const T* q0 = qrow + static_cast<int64_t>(h) * group * head_dim + c;
  if (max_agg) return Num<T>::ToF(q0[static_cast<int64_t>(g) * head_dim]);
  float sum = 0.0f;
#pragma unroll 8
  for (int i = 0; i < group; ++i) {
    sum = __fadd_rn(sum, Num<T>::ToF(q0[static_cast<int64_t>(i) * head_dim]));
  }
  return sum;
}

// The sum of a score head's r staged channels (channel j at first[j × step]) in the twin's
// order: rounded adds, channels ascending, from 0 — what 4-bit scoring folds the minimum with.
// Read from shared memory once the channels are staged: summing from global memory put r
// dependent loads on one thread, which at r 64 cost the scorer more than its rows.
__device__ __forceinline__ float StagedChannelSum(const float* first, int r, int step) {
  float sum = 0.0f;
  for (int j = 0; j < r; ++j) sum = __fadd_rn(sum, first[j * step]);
  return sum;
}

// The 4-bit code at bits 4p .. 4p + 3 of w (p <= 4) as a float without shifting it down: as
// the mantissa bits of a float of exponent 2^(23 - 4p), ((w & 0xf << 4p) | (150 - 4p) << 23)
// is 2^(23 - 4p) + code exactly, and so is the code after subtracting 2^(23 - 4p) — one LOP3
// and one FADD, as LowCodeToFloat's, with the shift saved.
template <int kPos>
__device__ __forceinline__ float PlacedCodeToFloat(uint32_t w) {
  static_assert(kPos >= 0 && kPos <= 4, "the code stays below the exponent's bits");
  constexpr uint32_t kMask = 0xfu << (4 * kPos);
  constexpr uint32_t kExponent = (150u - 4u * kPos) << 23;
  uint32_t bits;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(bits) : "r"(w), "n"(kMask), "n"(kExponent));
  return __fsub_rn(__uint_as_float(bits), static_cast<float>(1u << (23 - 4 * kPos)));
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
// a 4-bit code becomes its float (scale and minimum are folded in per row): kPlaced, most
// codes in place (PlacedCodeToFloat), else each shifted down (LowCodeToFloat) — the same
// values; in place saves a shift a code but holds more constants.
template <int kBits, bool kPlaced = true, typename V, int kChunks>
__device__ __forceinline__ float LabelValue(const V (&row)[kChunks], int j) {
  constexpr int kPerWord = kBits == 16 ? 2 : 8;
  constexpr int kWordsPerChunk = static_cast<int>(sizeof(V) / 4);
  const int wi = j / kPerWord, e = j % kPerWord;
  const uint32_t w = ChunkWord(row[wi / kWordsPerChunk], wi % kWordsPerChunk);
  if constexpr (kBits == 16) {
    return __half2float(__ushort_as_half(static_cast<uint16_t>(w >> (16 * e))));
  } else if constexpr (!kPlaced) {
    // The top code needs no mask (a single LEA.HI does shift and or).
    return e == 7 ? CodeToFloat(w >> 28) : LowCodeToFloat(w >> (4 * e));
  } else {
    // Codes 0-4 in place, 5 and 6 in place after one shift of the word by 12 (shared by both),
    // the top code by CodeToFloat (a single LEA.HI does its shift and or).
    switch (e) {
      case 0: return PlacedCodeToFloat<0>(w);
      case 1: return PlacedCodeToFloat<1>(w);
      case 2: return PlacedCodeToFloat<2>(w);
      case 3: return PlacedCodeToFloat<3>(w);
      case 4: return PlacedCodeToFloat<4>(w);
      case 5: return PlacedCodeToFloat<2>(w >> 12);
      case 6: return PlacedCodeToFloat<3>(w >> 12);
      default: return CodeToFloat(w >> 28);
    }
  }
}

// The query's label channels in shared memory, laid out [j][g][h] (KV head fastest; g < heads,
// the score heads, ScoreHeadsOf): the lanes of a warp span one head or a few consecutive heads,
// so they read one word (a broadcast) or consecutive words (no bank conflicts). A [h][g][j]
// layout put lanes r words apart: an r-way conflict that made scoring scale with r. For 4-bit
// labels, j = r holds each score head's channel sum (StagedChannelSum).
__device__ __forceinline__ float QChannel(const float* qh, int j, int g, int heads, int heads_kv) {
  return qh[(j * heads + g) * heads_kv];
}

// One KV head's query channels for the fixed-row scorers, in QChannel's layout from qs (qs + h,
// heads_kv apart). kG > 0 (the score heads a compile-time constant): in registers while they are
// few (kG × kR up to 16) or of one score head (kOneHeadInRegisters; 4-bit r 32 / r 64 in the
// fixed-row scorer, whose shared-memory load a channel had cost 13-17% / 7-10% of their scoring,
// run 24), else read from shared memory at each use (a warp's lanes on one or a few consecutive
// heads: conflict-free) through a volatile pointer — loop-invariant, they would otherwise be
// hoisted into registers, which at kG × kR up to 512 spills and cuts occupancy. kG 0: the score
// heads at run time (`heads`), read from shared memory at each use. kWithSum (4-bit labels): each
// score head's channel sum too, staged as channel kR.
template <int kG, int kR, bool kWithSum, bool kOneHeadInRegisters = true>
struct HeadQueryChannels {
  static constexpr bool kInRegisters =
      kG > 0 && (kG * kR <= 16 || (kG == 1 && kOneHeadInRegisters));
  static constexpr int kChannels = kR + (kWithSum ? 1 : 0);
  __device__ __forceinline__ HeadQueryChannels(const float* qs, int h, int heads_kv, int heads)
      : smem(qs + h), heads_kv(heads_kv), heads(heads) {
    if constexpr (kInRegisters) {
#pragma unroll
      for (int g = 0; g < kG; ++g) {
#pragma unroll
        for (int j = 0; j < kChannels; ++j) regs[g][j] = QChannel(qs + h, j, g, kG, heads_kv);
      }
    }
  }
  // Channel j of the only score head, for a reader of a run-time count (kG 0) that found one
  // (sum aggregation, or MHA): the layout's head stride is then 1, known here rather than read
  // from `heads`.
  __device__ __forceinline__ float AtSingle(int j) const {
    static_assert(kG == 0, "compile-time counts index through At");
    return QChannel(smem, j, 0, 1, heads_kv);
  }
  // Channel j of score head g; j == kR: the sum of its channels (kWithSum).
  __device__ __forceinline__ float At(int g, int j) const {
    if constexpr (kInRegisters) {
      return regs[g][j];
    } else if constexpr (kG > 0) {
      return static_cast<const volatile float*>(smem)[(j * kG + g) * heads_kv];
    } else {
      return QChannel(smem, j, g, heads, heads_kv);
    }
  }
  float regs[kInRegisters ? kG : 1][kInRegisters ? kChannels : 1];
  const float* smem;
  int heads_kv, heads;
};

// The fixed-row label shapes: rows of 4, 8, 16 or 32 bytes (fp16 r 8 / 16; 4-bit r 8, whose 4-byte
// rows are half of fp16 r 8's bytes for the same channels, 16, 32, 64), each with the score heads
// (`heads`: every sequence's ScoreHeadsOf, 0 where they differ) a compile-time constant where heads
// × r <= 32 (measured on an H200 for fp16 r 8 / 16 and 4-bit r 32 with max aggregation's group:
// 1.7-2.4x faster than at run time there, but slower beyond, where the unrolled dots spill; 4-bit r
// 8 / 16 follow the rule: at 4-bit r 16, 4 heads spill 1 KB) or one at any r (4-bit r 64 too:
// its 65 query channels in registers, no row of values held; 7-10% faster scoring than at run time,
// run 24), else 0 (at run time). FixedLabelKernel returns Make::template Of<kBits, kR, kG>() for
// the shape of `bits`, r and `heads`, or null where none applies; Make names a kernel family (the
// fixed-row scorer, the fused scorer and top-k).
template <typename Make, int kBits, int kR>
__host__ auto FixedLabelKernelOfHeads(int heads) {
  if (heads == 1) return Make::template Of<kBits, kR, 1>();
  if constexpr (2 * kR <= 32) {
    if (heads == 2) return Make::template Of<kBits, kR, 2>();
  }
  if constexpr (4 * kR <= 32) {
    if (heads == 4) return Make::template Of<kBits, kR, 4>();
  }
  return Make::template Of<kBits, kR, 0>();
}
template <typename Make>
__host__ auto FixedLabelKernel(int bits, int r, int heads)
    -> decltype(Make::template Of<16, 8, 0>()) {
  if (bits == 16 && r == 8) return FixedLabelKernelOfHeads<Make, 16, 8>(heads);
  if (bits == 16 && r == 16) return FixedLabelKernelOfHeads<Make, 16, 16>(heads);
  if (bits == 4 && r == 8) return FixedLabelKernelOfHeads<Make, 4, 8>(heads);
  if (bits == 4 && r == 16) return FixedLabelKernelOfHeads<Make, 4, 16>(heads);
  if (bits == 4 && r == 32) return FixedLabelKernelOfHeads<Make, 4, 32>(heads);
  if (bits == 4 && r == 64) return FixedLabelKernelOfHeads<Make, 4, 64>(heads);
  return nullptr;
}

// The score of one fixed-size label row (kR channels of kBits, held as chunks of type V; for
// 4-bit rows scale_min = fp16 scale | fp16 minimum << 16) over a KV head's score heads, in the
// twin's order: per score head channels ascending (DotStep), the 4-bit fold
// (FoldScaleMinimum), the heads folded in order (AggregateStep). qc.At(g, j) is channel j of
// score head g (j = kR: the sum of its channels, 4-bit rows). kG > 0: the score heads a
// compile-time constant, each channel's value used as it is made, so no row of values is held;
// kG 0: `heads` at run time, the row's values made once, then a dot per score head. kPlaced:
// LabelValue's. (ScoreLabelRowScaled: the 4-bit row's scale and minimum as floats.)
template <int kBits, int kR, int kG, bool kPlaced = true, typename V, int kChunks, bool kOneHead>
__device__ __forceinline__ float ScoreLabelRowScaled(
    const V (&raw)[kChunks], [[maybe_unused]] float scale, [[maybe_unused]] float minimum,
    int heads, bool max_agg, const HeadQueryChannels<kG, kR, kBits == 4, kOneHead>& qc) {
  float agg = AggregateStart(max_agg);
  if constexpr (kG > 0) {
    float dot[kG];
#pragma unroll
    for (int g = 0; g < kG; ++g) dot[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < kR; ++j) {
      const float v = LabelValue<kBits, kPlaced>(raw, j);
#pragma unroll
      for (int g = 0; g < kG; ++g) dot[g] = DotStep<kBits>(dot[g], qc.At(g, j), v);
    }
#pragma unroll
    for (int g = 0; g < kG; ++g) {
      if constexpr (kBits == 4) dot[g] = FoldScaleMinimum(dot[g], scale, minimum, qc.At(g, kR));
      agg = AggregateStep(agg, dot[g], max_agg);
    }
  } else {
    float vals[kR];
#pragma unroll
    for (int j = 0; j < kR; ++j) vals[j] = LabelValue<kBits, kPlaced>(raw, j);
    if (heads == 1) {
      // One score head (sum aggregation, MHA): its channels' addresses without `heads` (with
      // the count at run time, 4-bit r 64 at MHA heads ran 3-5% slower at batch 8-32).
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kR; ++j) dot = DotStep<kBits>(dot, qc.AtSingle(j), vals[j]);
      if constexpr (kBits == 4) dot = FoldScaleMinimum(dot, scale, minimum, qc.AtSingle(kR));
      return AggregateStep(agg, dot, max_agg);
    }
    for (int g = 0; g < heads; ++g) {
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kR; ++j) dot = DotStep<kBits>(dot, qc.At(g, j), vals[j]);
      if constexpr (kBits == 4) dot = FoldScaleMinimum(dot, scale, minimum, qc.At(g, kR));
      agg = AggregateStep(agg, dot, max_agg);
    }
  }
  return agg;
}
template <int kBits, int kR, int kG, bool kPlaced = true, typename V, int kChunks, bool kOneHead>
__device__ __forceinline__ float ScoreLabelRow(
    const V (&raw)[kChunks], uint32_t scale_min, int heads, bool max_agg,
    const HeadQueryChannels<kG, kR, kBits == 4, kOneHead>& qc) {
  return ScoreLabelRowScaled<kBits, kR, kG, kPlaced>(raw, F16BitsToF32(scale_min & 0xffffu),
                                                     F16BitsToF32(scale_min >> 16), heads,
                                                     max_agg, qc);
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_LABEL_DOT_CUH_
