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
// per warp) was 2-5% slower than this one; one weight row per warp was slower on every matrix
// (run 12). The fused forms (GemvIo below): LaunchNormGemv, twin NormLinearReference, and
// LaunchGemvAdd, twin LinearAddReference; the plain one's twin is LinearReference.
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

// What a GEMV reads as its x rows and where its sums go. Three forms share the kernel:
//  - plain: x is [rows, in] of T, y[m, n] = Σ x·w (T or fp32);
//  - kNorm: x is the fp32 residual and y = RmsNorm(x) · wᵀ with the norm folded in: the dot
//    runs over x ⊙ norm_weight and is scaled by 1/rms(x) at the end. Every warp reads all of x
//    (lane j takes chunks j, j + 32, …), so it sums x² on the way and knows 1/rms itself: no
//    separate norm pass, no extra read. Block 0 also writes RmsNorm(x) to `normed` if set;
//  - kAdd: y is the fp32 residual and the sums are added into it (one lane owns each output).
// Untyped: the kernel reads x, norm_weight and normed as its T (or fp32 x with kNorm).
struct GemvIo {
  const void* x;
  const void* norm_weight;
  float eps;
  void* normed;
  void* y;
  int64_t y_stride;
};

// acc[r][m] += w chunk of row r · x chunk of row m, for every x row below `rows` (kNorm: x ⊙
// norm_weight, and ss[m] += x²).
template <typename T, int M, bool kNorm>
__device__ __forceinline__ void Accumulate(const uint4 (&wc)[kRowsPerWarp], const GemvIo& io,
                                           int64_t in, int64_t c, int rows,
                                           float (&acc)[kRowsPerWarp][M], float (&ss)[M]) {
  float wf[kRowsPerWarp][8];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) Unpack8<T>(wc[r], wf[r]);
  float g[8];
  if constexpr (kNorm) Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(io.norm_weight) + c), g);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if (m < rows) {
      float xf[8];
      if constexpr (kNorm) {
        const float4* xr =
            reinterpret_cast<const float4*>(static_cast<const float*>(io.x) + m * in) + 2 * c;
        const float4 a = __ldg(xr), b = __ldg(xr + 1);
        const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          ss[m] = fmaf(v[i], v[i], ss[m]);
          xf[i] = v[i] * g[i];
        }
      } else {
        Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(io.x) + m * (in / 8) + c), xf);
      }
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][m] = fmaf(wf[r][i], xf[i], acc[r][m]);
      }
    }
  }
}

// Block 0 of a kNorm GEMV: normed[m] = x[m] · inv[m] ⊙ norm_weight, as RmsNormKernel rounds it.
template <typename T, int M>
__device__ __forceinline__ void WriteNormed(const GemvIo& io, int64_t in, int rows,
                                            const float (&inv)[M]) {
  using Vec2 = typename Num<T>::Vec2;
  const int64_t chunks = in / 8;
  for (int64_t c = threadIdx.x; c < chunks; c += kThreads) {
    float g[8];
    Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(io.norm_weight) + c), g);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m < rows) {
        const float* xr = static_cast<const float*>(io.x) + m * in + 8 * c;
        uint4 packed;
        Vec2* out = reinterpret_cast<Vec2*>(&packed);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          out[i].x = Num<T>::FromF(xr[2 * i] * inv[m] * g[2 * i]);
          out[i].y = Num<T>::FromF(xr[2 * i + 1] * inv[m] * g[2 * i + 1]);
        }
        reinterpret_cast<uint4*>(static_cast<T*>(io.normed) + m * in)[c] = packed;
      }
    }
  }
}

template <typename T, typename Y, int M, bool kNorm, bool kAdd>
__global__ void __launch_bounds__(kThreads)
    GemvKernel(GemvIo io, int rows, int64_t in, const T* __restrict__ w, int64_t out) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // Warps past `out` (the last block's) run too, on the last row, storing nothing: block 0's
  // warps all take part in writing `normed`.
  const int64_t n0 = (static_cast<int64_t>(blockIdx.x) * kWarps + warp) * kRowsPerWarp;
  const int64_t chunks = in / 8;
  const uint4* wv[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    // Rows past `out` re-read the last row (never written), so the loop needs no guard.
    wv[r] = reinterpret_cast<const uint4*>(w + min(n0 + r, out - 1) * in);
  }
  float acc[kRowsPerWarp][M], ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    ss[m] = 0.0f;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) acc[r][m] = 0.0f;
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
    for (int u = 0; u < kUnroll; ++u) {
      Accumulate<T, M, kNorm>(wc[u], io, in, c + 32 * u, rows, acc, ss);
    }
  }
  for (; c < chunks; c += 32) {
    uint4 wc[kRowsPerWarp];
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) wc[r] = LoadStreaming(wv[r] + c);
    Accumulate<T, M, kNorm>(wc, io, in, c, rows, acc, ss);
  }
  float inv[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    inv[m] = kNorm ? rsqrtf(WarpSum(ss[m]) / static_cast<float>(in) + io.eps) : 1.0f;
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float sum = WarpSum(acc[r][m]) * inv[m];  // every lane holds the total
      if (lane == r * M + m && m < rows && n0 + r < out) {
        Y* yp = static_cast<Y*>(io.y) + m * io.y_stride + n0 + r;
        if constexpr (kAdd) {
          *yp += sum;
        } else {
          *yp = Num<Y>::FromF(sum);
        }
      }
    }
  }
  if constexpr (kNorm) {
    if (io.normed != nullptr && blockIdx.x == 0) WriteNormed<T, M>(io, in, rows, inv);
  }
}

template <typename T, typename Y, bool kNorm, bool kAdd>
absl::Status GemvT(const GemvIo& io, int64_t rows, int64_t in, const void* w, int64_t out,
                   cudaStream_t stream) {
  const int64_t warps = (out + kRowsPerWarp - 1) / kRowsPerWarp;
  const dim3 grid(static_cast<unsigned>((warps + kWarps - 1) / kWarps));
  const T* wt = static_cast<const T*>(w);
  const int n = static_cast<int>(rows);
  if (rows <= 1) {
    GemvKernel<T, Y, 1, kNorm, kAdd><<<grid, kThreads, 0, stream>>>(io, n, in, wt, out);
  } else if (rows <= 2) {
    GemvKernel<T, Y, 2, kNorm, kAdd><<<grid, kThreads, 0, stream>>>(io, n, in, wt, out);
  } else if (rows <= 4) {
    GemvKernel<T, Y, 4, kNorm, kAdd><<<grid, kThreads, 0, stream>>>(io, n, in, wt, out);
  } else {
    GemvKernel<T, Y, 8, kNorm, kAdd><<<grid, kThreads, 0, stream>>>(io, n, in, wt, out);
  }
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// GemvT for one 16-bit T: the adding form's y is the fp32 residual, the norm-folding form's is
// T, the plain form's T or fp32 (y_f32).
template <typename T, bool kNorm, bool kAdd>
absl::Status GemvForT(bool y_f32, const GemvIo& io, int64_t rows, int64_t in, const void* w,
                      int64_t out, cudaStream_t stream) {
  if constexpr (kAdd) {
    return GemvT<T, float, kNorm, kAdd>(io, rows, in, w, out, stream);
  } else if constexpr (kNorm) {
    return GemvT<T, T, kNorm, kAdd>(io, rows, in, w, out, stream);
  } else {
    return y_f32 ? GemvT<T, float, kNorm, kAdd>(io, rows, in, w, out, stream)
                 : GemvT<T, T, kNorm, kAdd>(io, rows, in, w, out, stream);
  }
}

// GemvForT for dtype's T (GemvApplies has checked it is bf16 or fp16).
template <bool kNorm, bool kAdd>
absl::Status GemvForDType(DType dtype, bool y_f32, const GemvIo& io, int64_t rows, int64_t in,
                          const void* w, int64_t out, cudaStream_t stream) {
  return dtype == DType::kBF16
             ? GemvForT<__nv_bfloat16, kNorm, kAdd>(y_f32, io, rows, in, w, out, stream)
             : GemvForT<__half, kNorm, kAdd>(y_f32, io, rows, in, w, out, stream);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

static_assert(kRowsPerWarp * 8 <= 32, "one writing lane per (row, x row)");

bool GemvApplies(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                 const void* w) {
  const bool types = (dtype == DType::kBF16 || dtype == DType::kF16) &&
                     (y_dtype == dtype || y_dtype == DType::kF32);
  return types && rows >= 1 && rows <= kGemvMaxRows && in >= 8 && in % 8 == 0 && Aligned16(x) &&
         Aligned16(w);
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
  const GemvIo io{x, nullptr, 0.0f, nullptr, y, y_stride};
  return GemvForDType<false, false>(dtype, y_dtype == DType::kF32, io, rows, in, w, out, stream);
}

absl::Status LaunchGemvAdd(DType dtype, const void* x, int64_t rows, int64_t in, const void* w,
                           int64_t out, float* residual, int64_t residual_stride,
                           cudaStream_t stream) {
  if (rows == 0 || out == 0) return absl::OkStatus();
  if (!GemvApplies(dtype, DType::kF32, x, rows, in, w)) {
    return absl::InvalidArgumentError(
        "GemvAdd: needs bf16/fp16 operands, 1 to 8 rows, in a multiple of 8 and 16-byte "
        "aligned x and w");
  }
  if (residual_stride < out) return absl::InvalidArgumentError("GemvAdd: residual_stride < out");
  const GemvIo io{x, nullptr, 0.0f, nullptr, residual, residual_stride};
  return GemvForDType<false, true>(dtype, /*y_f32=*/true, io, rows, in, w, out, stream);
}

bool NormGemvApplies(DType dtype, const float* residual, int64_t rows, int64_t in,
                     const void* norm_weight, const void* w, const void* normed) {
  return GemvApplies(dtype, dtype, residual, rows, in, w) && Aligned16(norm_weight) &&
         Aligned16(normed);
}

absl::Status LaunchNormGemv(DType dtype, const float* residual, int64_t rows, int64_t in,
                            const void* norm_weight, float eps, const void* w, int64_t out,
                            void* y, int64_t y_stride, void* normed, cudaStream_t stream) {
  if (rows == 0 || out == 0) return absl::OkStatus();
  if (!NormGemvApplies(dtype, residual, rows, in, norm_weight, w, normed)) {
    return absl::InvalidArgumentError(
        "NormGemv: needs bf16/fp16 weights, 1 to 8 rows, in a multiple of 8 and 16-byte "
        "aligned residual, norm weight, w and normed");
  }
  if (y_stride < out) return absl::InvalidArgumentError("NormGemv: y_stride < out");
  const GemvIo io{residual, norm_weight, eps, normed, y, y_stride};
  return GemvForDType<true, false>(dtype, /*y_f32=*/false, io, rows, in, w, out, stream);
}

}  // namespace dsinfer
