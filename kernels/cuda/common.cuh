// Device helpers shared by the .cu files: fp32 <-> bf16/fp16 conversion traits (round to
// nearest even, as the CPU side's F32ToBf16 does; an identity trait for fp32 so one template
// serves 16-bit and fp32 tensors), warp/block reductions, a block argmax and 16-byte chunk
// unpacking.
#ifndef DSINFER_KERNELS_CUDA_COMMON_CUH_
#define DSINFER_KERNELS_CUDA_COMMON_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>
#include <cstdint>

namespace dsinfer {
namespace cuda {

// Whether p is aligned to `bytes` (a power of two).
__host__ __device__ __forceinline__ bool IsAligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

template <typename T>
struct Num;
template <>
struct Num<__nv_bfloat16> {
  static __device__ __forceinline__ float ToF(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 FromF(float x) { return __float2bfloat16_rn(x); }
  static __device__ __forceinline__ float2 ToF2(__nv_bfloat162 x) { return __bfloat1622float2(x); }
  using Vec2 = __nv_bfloat162;
};
template <>
struct Num<__half> {
  static __device__ __forceinline__ float ToF(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half FromF(float x) { return __float2half_rn(x); }
  static __device__ __forceinline__ float2 ToF2(__half2 x) { return __half22float2(x); }
  using Vec2 = __half2;
};
// fp32 tensors (the residual stream, logits) go through the same templates.
template <>
struct Num<float> {
  static __device__ __forceinline__ float ToF(float x) { return x; }
  static __device__ __forceinline__ float FromF(float x) { return x; }
};

// The sum of v over the lanes of a warp (float, or the sampler's 64-bit fixed-point masses).
template <typename V>
__device__ __forceinline__ V WarpSum(V v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The inclusive prefix sum of v over the lanes of a warp, in shuffle steps up to kLanes (a
// caller that needs lanes 0 .. kLanes - 1 only takes no more steps than those need).
template <int kLanes = 32, typename V>
__device__ __forceinline__ V WarpInclusiveSum(V v, int lane) {
#pragma unroll
  for (int d = 1; d < kLanes; d <<= 1) {
    const V o = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += o;
  }
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
__device__ __forceinline__ float BlockSum(float v) {
  __shared__ float partial[32];
  __shared__ float total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpSum(v);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float s = lane < static_cast<int>(blockDim.x >> 5) ? partial[lane] : 0.0f;
    s = WarpSum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  const float r = total;
  __syncthreads();
  return r;
}

// 8 16-bit values (one 16-byte chunk) to fp32.
template <typename T>
__device__ __forceinline__ void Unpack8(const uint4& raw, float* f) {
  using Vec2 = typename Num<T>::Vec2;
  const Vec2* v = reinterpret_cast<const Vec2*>(&raw);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = Num<T>::ToF2(v[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

// Loads in flight per thread in BlockArgmax's scan (one at a time, a 128K-entry row took 51 µs
// on an H200).
constexpr int kArgmaxItems = 8;

// The block's argmax of x[0, vocab) (LaunchArgmax's rows, LaunchSample's greedy rows): the
// largest value, lowest index on ties, NaN never wins; 0 when every value is NaN
// (ArgmaxReference). Every thread gets the result.
template <typename T>
__device__ __forceinline__ int32_t BlockArgmax(const T* x, int64_t vocab) {
  float best = -INFINITY;
  int64_t best_i = INT64_MAX;
  for (int64_t base = threadIdx.x; base < vocab; base += blockDim.x * kArgmaxItems) {
    float v[kArgmaxItems];
#pragma unroll
    for (int u = 0; u < kArgmaxItems; ++u) {
      const int64_t i = base + u * blockDim.x;
      v[u] = i < vocab ? Num<T>::ToF(x[i]) : NAN;
    }
#pragma unroll
    for (int u = 0; u < kArgmaxItems; ++u) {  // ascending index: ties keep the first
      if (!(v[u] != v[u]) && (best_i == INT64_MAX || v[u] > best)) {
        best = v[u];
        best_i = base + u * blockDim.x;
      }
    }
  }
  // Warp then block reduction over (value, index): larger value, then lower index. A thread
  // that saw only NaN carries (-inf, INT64_MAX), so it loses to any index.
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int64_t oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ov > best || (ov == best && oi < best_i)) {
      best = ov;
      best_i = oi;
    }
  }
  __shared__ float warp_best[32];
  __shared__ int64_t warp_index[32];
  __shared__ int32_t result;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_index[warp] = best_i;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) {
      if (warp_best[w] > best || (warp_best[w] == best && warp_index[w] < best_i)) {
        best = warp_best[w];
        best_i = warp_index[w];
      }
    }
    result = best_i == INT64_MAX ? 0 : static_cast<int32_t>(best_i);
  }
  __syncthreads();
  return result;
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_COMMON_CUH_
