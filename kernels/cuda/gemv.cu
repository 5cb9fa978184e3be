// The weight-streaming GEMM of decode steps: y = x · wᵀ for a few rows (1 to kGemvMaxRows),
// where the step's cost is reading w once from HBM. Each warp owns kRowsPerWarp consecutive
// output rows; its lanes stream 16-byte chunks of those weight rows (lane j takes chunks j,
// j + 32, …: coalesced 512-byte warp loads, kUnroll chunks per row in flight before any math,
// loaded past L1 so that x stays there), read x's matching chunks through the read-only cache
// (every warp of the chip reads the same x: it stays in L1/L2), and accumulate in fp32. One
// butterfly reduction per (row, x row) at the end; no shared memory, no atomics, one pass.
// Launched as usual, not dependent (dependent_launch.cuh). On an H200 (docs/benchmarks.md, run
// 9), CUDA-graph decode steps: a dependent GEMV letting the next kernel start right after its
// wait was 4-6% slower at batch 1 and 25% at batch 8 (the next kernel's blocks, waiting, sat on
// the SMs beside the weight stream), with or without its first weights read before the wait;
// letting it start only after the last weight loads, +1.5% / -0.9% (Llama-2 / Llama-3 shapes)
// at batch 1 and -2.4% at batch 8. A pipelined variant (two rounds of weight loads in flight
// per warp) was 2-5% slower than this one.
// Twin: LinearReference.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::Num;
using cuda::Unpack8;
using cuda::WarpSum;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kRowsPerWarp = 2;
constexpr int kUnroll = 4;

// A 16-byte load that skips L1 (the weights are read once) but asks L2 for the whole 256-byte
// sector group.
__device__ __forceinline__ uint4 LoadStreaming(const uint4* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// acc[r][m] += w chunk of row r · x chunk of row m, for every x row below `rows`.
template <typename T, int M>
__device__ __forceinline__ void Accumulate(const uint4 (&wc)[kRowsPerWarp], const uint4* x,
                                           int64_t x_chunks, int64_t c, int rows,
                                           float (&acc)[kRowsPerWarp][M]) {
  float wf[kRowsPerWarp][8];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) Unpack8<T>(wc[r], wf[r]);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if (m < rows) {
      float xf[8];
      Unpack8<T>(__ldg(x + m * x_chunks + c), xf);
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][m] = fmaf(wf[r][i], xf[i], acc[r][m]);
      }
    }
  }
}

template <typename T, typename Y, int M>
__global__ void __launch_bounds__(kThreads)
    GemvKernel(const T* __restrict__ x, int rows, int64_t in, const T* __restrict__ w,
               int64_t out, Y* __restrict__ y, int64_t y_stride) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * kRowsPerWarp;
  if (n0 >= out) return;
  const int64_t chunks = in / 8;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  const uint4* wv[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    // Rows past `out` re-read the last row (never written), so the loop needs no guard.
    wv[r] = reinterpret_cast<const uint4*>(w + min(n0 + r, out - 1) * in);
  }
  float acc[kRowsPerWarp][M];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;
  }
  int64_t c = lane;
  for (; c + 32 * (kUnroll - 1) < chunks; c += 32 * kUnroll) {
    uint4 wc[kUnroll][kRowsPerWarp];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) wc[u][r] = LoadStreaming(wv[r] + c + 32 * u);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) Accumulate<T, M>(wc[u], xv, chunks, c + 32 * u, rows, acc);
  }
  for (; c < chunks; c += 32) {
    uint4 wc[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) wc[r] = LoadStreaming(wv[r] + c);
    Accumulate<T, M>(wc, xv, chunks, c, rows, acc);
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float sum = WarpSum(acc[r][m]);  // every lane holds the total
      if (lane == r * M + m && m < rows && n0 + r < out) {
        y[m * y_stride + n0 + r] = Num<Y>::FromF(sum);
      }
    }
  }
}

template <typename T, typename Y>
absl::Status GemvT(const void* x, int64_t rows, int64_t in, const void* w, int64_t out, void* y,
                   int64_t y_stride, cudaStream_t stream) {
  const int64_t warps = (out + kRowsPerWarp - 1) / kRowsPerWarp;
  const dim3 grid(static_cast<unsigned>((warps + kWarps - 1) / kWarps));
  const T* xt = static_cast<const T*>(x);
  const T* wt = static_cast<const T*>(w);
  Y* yt = static_cast<Y*>(y);
  const int n = static_cast<int>(rows);
  if (rows <= 1) {
    GemvKernel<T, Y, 1><<<grid, kThreads, 0, stream>>>(xt, n, in, wt, out, yt, y_stride);
  } else if (rows <= 2) {
    GemvKernel<T, Y, 2><<<grid, kThreads, 0, stream>>>(xt, n, in, wt, out, yt, y_stride);
  } else if (rows <= 4) {
    GemvKernel<T, Y, 4><<<grid, kThreads, 0, stream>>>(xt, n, in, wt, out, yt, y_stride);
  } else {
    GemvKernel<T, Y, 8><<<grid, kThreads, 0, stream>>>(xt, n, in, wt, out, yt, y_stride);
  }
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

static_assert(kRowsPerWarp * 8 <= 32, "one writing lane per (row, x row)");

bool GemvApplies(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                 const void* w) {
  const bool types = (dtype == DType::kBF16 || dtype == DType::kF16) &&
                     (y_dtype == dtype || y_dtype == DType::kF32);
  return types && rows >= 1 && rows <= kGemvMaxRows && in >= 8 && in % 8 == 0 &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

absl::Status LaunchGemv(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                        const void* w, int64_t out, void* y, int64_t y_stride,
                        cudaStream_t stream) {
  if (rows == 0 || out == 0) return absl::OkStatus();
  if (!GemvApplies(dtype, y_dtype, x, rows, in, w)) {
    return absl::InvalidArgumentError(
        "Gemv: needs bf16/fp16 operands (output the same or fp32), 1 to 8 rows, in a multiple "
        "of 8 and 16-byte aligned x and w");
  }
  if (y_stride < out) return absl::InvalidArgumentError("Gemv: y_stride < out");
  const bool f32 = y_dtype == DType::kF32;
  if (dtype == DType::kBF16) {
    return f32 ? GemvT<__nv_bfloat16, float>(x, rows, in, w, out, y, y_stride, stream)
               : GemvT<__nv_bfloat16, __nv_bfloat16>(x, rows, in, w, out, y, y_stride, stream);
  }
  return f32 ? GemvT<__half, float>(x, rows, in, w, out, y, y_stride, stream)
             : GemvT<__half, __half>(x, rows, in, w, out, y, y_stride, stream);
}

}  // namespace dsinfer
