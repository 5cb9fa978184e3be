// Double Sparsity's approximate scores in memory: fp16 bits (uint16_t), rounded to nearest even
// from the scorer's fp32 sum, as the twins round them (RoundF32ToF16Value, kernels/dtype.h). Two
// bytes a (sequence, KV head, token) instead of four halve the scores' round trip between the
// scorer and the top-k; the reference implementation ranks fp16 label scores too. The top-k
// kernels key them as the fp32 values they stand for (exact: OrderKey, OrderKeys4), the cluster
// kernels by their 16 bits (OrderKey16, the same order); the striped split compares the fp16
// bits themselves against thresholds rounded up to fp16.
#ifndef DSINFER_KERNELS_CUDA_SCORE_FORMAT_CUH_
#define DSINFER_KERNELS_CUDA_SCORE_FORMAT_CUH_

#include <cuda_fp16.h>

#include <cstdint>

namespace dsinfer {
namespace cuda {

// The stored bits of score s, and the score that bits stand for.
__device__ __forceinline__ uint16_t ScoreBits(float s) {
  return __half_as_ushort(__float2half_rn(s));
}
// ScoreBits of two scores, lo's in the low half (one conversion packs both).
__device__ __forceinline__ uint32_t ScoreBitsPair(float lo, float hi) {
  const __half2 both = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&both);
}
__device__ __forceinline__ float ScoreValue(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

// The score at p (read-only cache).
__device__ __forceinline__ float LoadScore(const uint16_t* p) { return ScoreValue(__ldg(p)); }

// The bits of four consecutive scores from p, 8-byte aligned (two a word): one 8-byte load.
__device__ __forceinline__ uint2 LoadScoreBits4(const uint16_t* p) {
  return __ldg(reinterpret_cast<const uint2*>(p));
}

// The four scores of LoadScoreBits4's bits.
__device__ __forceinline__ float4 ScoreValues4(uint2 bits) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&bits.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&bits.y));
  return make_float4(a.x, a.y, b.x, b.y);
}

// Four consecutive scores from p, 8-byte aligned.
__device__ __forceinline__ float4 LoadScores4(const uint16_t* p) {
  return ScoreValues4(LoadScoreBits4(p));
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_SCORE_FORMAT_CUH_
