// Sampling on the GPU: temperature, top-k, top-p and min-p over one row of logits per block,
// without sorting the vocabulary. Every filter of engine/sampler.cc is a prefix cut of the
// tokens in descending probability, so the kept set is {p >= theta} for one threshold: top-k's
// theta is the largest value with at least k tokens at or above it, top-p's the largest whose
// mass (within top-k's set) still reaches top_p of that set's mass, min-p's min_p · p_max. The
// first two are found by bisection over the bit patterns of positive floats (monotonic as
// integers): about 30 passes over the row, each a block-wide count or sum, reading logits from
// L2. The token is then drawn by inverse CDF in id order (as the CPU sampler does) with one
// block-wide prefix sum over contiguous per-thread chunks. Probabilities are unnormalised,
// p = 2^((x - max) · log2e / T), so p_max is exactly 1. Ties at a threshold keep every tied
// token (the CPU sampler keeps the lowest ids); with continuous logits ties do not occur.
//
// Knobs are per row (read by each block from a device array), so one launch serves a batch
// whose requests sample differently; a row with temperature 0 takes the greedy branch, a block
// argmax with LaunchArgmax's semantics. The branch is uniform within a block (one row each),
// so the block-wide reductions behind it stay legal.
#include <cstdint>
#include <cstring>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::BlockSum;
using cuda::Num;

constexpr int kSampleThreads = 1024;
constexpr float kLog2eF = 1.4426950408889634f;

__device__ __forceinline__ float BlockMaxF(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = cuda::WarpMax(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : -INFINITY;
    s = cuda::WarpMax(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();
  return r;
}

template <typename T>
__global__ void __launch_bounds__(kSampleThreads)
    SampleKernel(const T* logits, int64_t vocab, int64_t stride, const SampleKnobs* knobs,
                 const float* uniforms, int32_t* ids, float* chosen_logits,
                 float* thresholds) {
  const T* x = logits + blockIdx.x * stride;
  const int tid = threadIdx.x;
  const SampleKnobs row_knobs = knobs[blockIdx.x];
  if (row_knobs.temperature == 0.0f) {
    const int32_t id = cuda::BlockArgmax(x, vocab);
    if (tid == 0) {
      ids[blockIdx.x] = id;
      if (chosen_logits != nullptr) chosen_logits[blockIdx.x] = Num<T>::ToF(x[id]);
    }
    return;
  }
  const float temperature = row_knobs.temperature, top_p = row_knobs.top_p;
  const float min_p = row_knobs.min_p;
  const int top_k = row_knobs.top_k;
  float mx = -INFINITY;
  for (int64_t i = tid; i < vocab; i += blockDim.x) mx = fmaxf(mx, Num<T>::ToF(x[i]));
  mx = BlockMaxF(mx);
  const float c = kLog2eF / temperature;
  auto prob = [&](int64_t i) { return exp2f((Num<T>::ToF(x[i]) - mx) * c); };
  // Count and mass of {p >= theta, p >= floor}.
  auto count_at = [&](float theta) {
    float n = 0.0f;
    for (int64_t i = tid; i < vocab; i += blockDim.x) n += prob(i) >= theta ? 1.0f : 0.0f;
    return BlockSum(n);
  };
  auto mass_at = [&](float theta) {
    float m = 0.0f;
    for (int64_t i = tid; i < vocab; i += blockDim.x) {
      const float p = prob(i);
      m += p >= theta ? p : 0.0f;
    }
    return BlockSum(m);
  };
  constexpr uint32_t kOneBits = 0x3f800000u;  // 1.0f = p_max
  float theta = 0.0f;
  if (top_k > 0 && top_k < vocab) {
    uint32_t lo = 0, hi = kOneBits + 1;  // invariant: count(lo) >= k, count(hi) < k
    while (hi - lo > 1) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (count_at(__uint_as_float(mid)) >= static_cast<float>(top_k)) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    theta = __uint_as_float(lo);
  }
  if (top_p < 1.0f) {
    const float target = top_p * mass_at(theta);
    uint32_t lo = __float_as_uint(theta), hi = kOneBits + 1;  // mass(lo) >= target
    while (hi - lo > 1) {
      const uint32_t mid = lo + (hi - lo) / 2;
      if (mass_at(__uint_as_float(mid)) >= target) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
    theta = __uint_as_float(lo);
  }
  if (min_p > 0.0f) theta = fmaxf(theta, min_p);  // min_p · p_max, p_max = 1
  if (thresholds != nullptr && tid == 0) thresholds[blockIdx.x] = theta;
  // Inverse CDF in id order: thread t owns ids [t·chunk, (t+1)·chunk).
  const int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t first = tid * chunk, last = min(vocab, first + chunk);
  float mine = 0.0f;
  int64_t last_kept = -1;
  for (int64_t i = first; i < last; ++i) {
    const float p = prob(i);
    if (p >= theta) {
      mine += p;
      last_kept = i;
    }
  }
  __shared__ float prefix[kSampleThreads];
  __shared__ int32_t chosen;
  prefix[tid] = mine;
  if (tid == 0) chosen = -1;
  __syncthreads();
  // Inclusive scan (Hillis–Steele; 10 steps for 1024 threads).
  for (int off = 1; off < static_cast<int>(blockDim.x); off *= 2) {
    const float add = tid >= off ? prefix[tid - off] : 0.0f;
    __syncthreads();
    prefix[tid] += add;
    __syncthreads();
  }
  const float total = prefix[blockDim.x - 1];
  const float target = uniforms[blockIdx.x] * total;
  // The previous thread's inclusive prefix, not prefix[tid] - mine: that difference rounds,
  // leaving gaps between the threads' intervals where a target matched no thread and the draw
  // fell back to the row's last kept token (1 draw in 864 of kernels_gpu_test, H200 run 8).
  const float before = tid > 0 ? prefix[tid - 1] : 0.0f;
  if (mine > 0.0f && target >= before && target < prefix[tid]) {
    float cum = before;
    for (int64_t i = first; i < last; ++i) {
      const float p = prob(i);
      if (p < theta) continue;
      cum += p;
      if (target < cum) {
        chosen = static_cast<int32_t>(i);
        break;
      }
    }
    if (chosen < 0) chosen = static_cast<int32_t>(last_kept);  // rounding at the chunk's end
  }
  __syncthreads();
  // Rounding past the total: the last kept token, as the CPU sampler falls back to.
  const float last_id = BlockMaxF(static_cast<float>(last_kept));
  if (tid == 0) {
    const int32_t id = chosen >= 0 ? chosen : static_cast<int32_t>(last_id);
    ids[blockIdx.x] = id;
    if (chosen_logits != nullptr) chosen_logits[blockIdx.x] = Num<T>::ToF(x[id]);
  }
}

}  // namespace

absl::Status LaunchSample(DType dtype, const void* logits, int64_t rows, int64_t vocab,
                          int64_t stride, const SampleKnobs* knobs, const float* uniforms,
                          int32_t* ids, float* chosen_logits, cudaStream_t stream,
                          float* thresholds) {
  if (rows == 0) return absl::OkStatus();
  if (rows < 0 || vocab <= 0 || stride < vocab) {
    return absl::InvalidArgumentError("LaunchSample: bad shape");
  }
  if (logits == nullptr || knobs == nullptr || uniforms == nullptr || ids == nullptr) {
    return absl::InvalidArgumentError("LaunchSample: null pointer");
  }
  // Token ids pass through float (the block max of the last kept id).
  if (vocab > (1 << 24)) return absl::InvalidArgumentError("LaunchSample: vocab over 2^24");
  const unsigned grid = static_cast<unsigned>(rows);
  switch (dtype) {
    case DType::kF32:
      SampleKernel<<<grid, kSampleThreads, 0, stream>>>(static_cast<const float*>(logits), vocab,
                                                        stride, knobs, uniforms, ids,
                                                        chosen_logits, thresholds);
      break;
    case DType::kBF16:
      SampleKernel<<<grid, kSampleThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(logits), vocab, stride, knobs, uniforms, ids,
          chosen_logits, thresholds);
      break;
    case DType::kF16:
      SampleKernel<<<grid, kSampleThreads, 0, stream>>>(static_cast<const __half*>(logits),
                                                        vocab, stride, knobs, uniforms, ids,
                                                        chosen_logits, thresholds);
      break;
    default:
      return absl::InvalidArgumentError("LaunchSample: unsupported dtype " +
                                        std::string(DTypeName(dtype)));
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace dsinfer
