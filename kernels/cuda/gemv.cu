// The weight-streaming GEMM of decode steps: y = x · wᵀ for a few rows (1 to kGemvMaxRows),
// where the step's cost is reading w once from HBM. The weights come in through bulk copies
// (bulk_copy.cuh: the TMA unit; one thread issues a stage) into a ring of kStages
// shared-memory stages. A block owns a contiguous range of groups of kGroupRows
// weight rows; a stage holds one kChunkBytes piece of each row of a group (piece k of the
// row's bytes, the last piece shorter) beside the x columns it meets, so the loop reads
// nothing but shared memory. Thread t takes 16-byte column chunk t of the stage: per x row one
// x chunk, then the group's rows, kGroupRows × 8 FMAs into fp32 registers. After a group's
// last piece the block sums each (row, x row) across its warps and writes it. One thread
// refills a stage once every thread has used it (a block barrier); two stages of 32 KiB of
// weights per block and two blocks per SM.
//
// Measured on an H200 (docs/benchmarks.md, run 13; a scratch benchmark timing the linear
// layers of 32 layers in turn, one row): 3.33 ms against cuBLAS's 3.57 and the earlier
// per-warp GEMV's 3.71 (3.60 without its .L2::256B load qualifier) at Llama-2-7B shapes, 3.50
// against 3.66 / 3.76 (3.65) at Llama-3-8B's. Tried there and dropped: x read through L1 or
// staged once per block before the loop (slower than x in the ring), one ring per warp, 3 to 6
// stages (no faster at 8 rows a group, much slower at 2-4), 2-16 rows a group, 2 or 8 KiB
// pieces, an L2 evict-first hint (no change). The earlier body (runs 9-12) streamed two rows
// per warp with 16-byte loads; dependent launch and L2 prefetches of its first weights were
// slower there.
//
// The fused forms (GemvIo below): LaunchNormGemv, twin NormLinearReference, and LaunchGemvAdd,
// twin LinearAddReference; the plain one's twin is LinearReference. Launched as usual, not
// dependent (dependent_launch.cuh).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/bulk_copy.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/launch_info.h"
#include "kernels/cuda/mma_ptx.cuh"  // OptInSharedMemory
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::Num;
using cuda::Unpack8;
using cuda::WarpSum;

constexpr int kChunkBytes = 4096;           // a stage's piece of each weight row
constexpr int kThreads = kChunkBytes / 16;  // one 16-byte column chunk per thread
constexpr int kWarps = kThreads / 32;
constexpr int kGroupRows = 8;  // weight rows a stage carries
constexpr int kStages = 2;
constexpr int kBlocksPerSm = 2;

// What a GEMV reads as its x rows and where its sums go. Three forms share the kernel:
//  - plain: x is [rows, in] of T, y[m, n] = Σ x·w (T or fp32);
//  - kNorm: x is the fp32 residual and y = RmsNorm(x) · wᵀ with the norm folded in: the dot
//    runs over x ⊙ norm_weight and is scaled by 1/rms(x) at the end. A block's first group
//    meets every column of x, so its threads sum x² on the way: no separate norm pass, no
//    extra read. Block 0 also writes RmsNorm(x) to `normed` if set;
//  - kAdd: y is the fp32 residual and the sums are added into it (one thread owns each output).
// Untyped: the kernel reads x, norm_weight and normed as its T (or fp32 x with kNorm).
struct GemvIo {
  const void* x;
  const void* norm_weight;
  float eps;
  void* normed;
  void* y;
  int64_t y_stride;
};

// A stage: the group's row pieces, then each x row's matching columns (fp32 with kNorm: twice
// the bytes), then with kNorm the norm weight's.
template <int M, bool kNorm>
struct StageLayout {
  static constexpr int kXBytes = kNorm ? 2 * kChunkBytes : kChunkBytes;
  static constexpr int kX = kGroupRows * kChunkBytes;
  static constexpr int kNormWeight = kX + M * kXBytes;
  static constexpr int kBytes = kNormWeight + (kNorm ? kChunkBytes : 0);
};

template <int M, bool kNorm>
constexpr int GemvSmemBytes() {
  return kStages * StageLayout<M, kNorm>::kBytes;
}

// Fills `stage` with piece k of group g's rows (rows past `out` re-read the last row, never
// written) and, with_x, the x / norm weight columns they meet; one thread.
template <typename T, int M, bool kNorm>
__device__ __forceinline__ void LoadStage(uint8_t* stage, uint64_t* bar, const GemvIo& io,
                                          int rows, int64_t in, const T* w, int64_t out,
                                          int64_t g, int k, bool with_x) {
  using L = StageLayout<M, kNorm>;
  const int64_t row_bytes = in * static_cast<int64_t>(sizeof(T));
  const int64_t off = static_cast<int64_t>(k) * kChunkBytes;
  const uint32_t bytes = static_cast<uint32_t>(std::min<int64_t>(kChunkBytes, row_bytes - off));
  const uint32_t x_bytes = kNorm ? 2 * bytes : bytes;
  cuda::ExpectBytes(bar,
                    kGroupRows * bytes + (with_x ? rows * x_bytes + (kNorm ? bytes : 0) : 0));
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(w);
#pragma unroll
  for (int r = 0; r < kGroupRows; ++r) {
    const int64_t row = std::min<int64_t>(g * kGroupRows + r, out - 1);
    cuda::BulkLoad(stage + r * kChunkBytes, wb + row * row_bytes + off, bytes, bar);
  }
  if (!with_x) return;
  const uint8_t* xb = static_cast<const uint8_t*>(io.x);
  for (int m = 0; m < rows; ++m) {
    cuda::BulkLoad(stage + L::kX + m * L::kXBytes,
                   xb + m * (kNorm ? 2 : 1) * row_bytes + (kNorm ? 2 : 1) * off, x_bytes, bar);
  }
  if constexpr (kNorm) {
    cuda::BulkLoad(stage + L::kNormWeight, static_cast<const uint8_t*>(io.norm_weight) + off,
                   bytes, bar);
  }
}

// Thread t's column chunk of a stage: acc[r][m] += w row r · x row m over its 8 columns (kNorm:
// x ⊙ norm_weight, and with `sum_squares` ss[m] += x²).
template <typename T, int M, bool kNorm>
__device__ __forceinline__ void AccumulateStage(const uint8_t* stage, int rows, bool sum_squares,
                                                float (&acc)[kGroupRows][M], float (&ss)[M]) {
  using L = StageLayout<M, kNorm>;
  const int t = threadIdx.x;
  float xf[M][8];
  float g[8];
  if constexpr (kNorm) Unpack8<T>(reinterpret_cast<const uint4*>(stage + L::kNormWeight)[t], g);
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if (m >= rows) break;
    if constexpr (kNorm) {
      const float4* xr = reinterpret_cast<const float4*>(stage + L::kX + m * L::kXBytes) + 2 * t;
      const float4 a = xr[0], b = xr[1];
      const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        if (sum_squares) ss[m] = fmaf(v[i], v[i], ss[m]);
        xf[m][i] = v[i] * g[i];
      }
    } else {
      Unpack8<T>(reinterpret_cast<const uint4*>(stage + L::kX + m * L::kXBytes)[t], xf[m]);
    }
  }
#pragma unroll
  for (int r = 0; r < kGroupRows; ++r) {
    float wf[8];
    Unpack8<T>(reinterpret_cast<const uint4*>(stage + r * kChunkBytes)[t], wf);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (m < rows) {
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][m] = fmaf(wf[i], xf[m][i], acc[r][m]);
      }
    }
  }
}

// Block 0 of a kNorm GEMV: normed[m] = x[m] · inv[m] ⊙ norm_weight, as RmsNormKernel rounds it.
template <typename T, int M>
__device__ __forceinline__ void WriteNormed(const GemvIo& io, int64_t in, int rows,
                                            const float* inv) {
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

// Grid: blocks over the groups of kGroupRows output rows, a contiguous range each; dynamic
// shared memory GemvSmemBytes<M, kNorm>().
template <typename T, typename Y, int M, bool kNorm, bool kAdd>
__global__ void __launch_bounds__(kThreads)
    GemvKernel(GemvIo io, int rows, int64_t in, const T* __restrict__ w, int64_t out) {
  using L = StageLayout<M, kNorm>;
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t full[kStages];
  // Per warp: its sums of each (row, x row), then with kNorm each x row's sum of squares.
  __shared__ float partial[kWarps][kGroupRows * M + M];
  __shared__ float inv_rms[M];
  const int t = threadIdx.x, warp = t / 32, lane = t % 32;
  const int64_t groups = (out + kGroupRows - 1) / kGroupRows;
  const int64_t g0 = groups * blockIdx.x / gridDim.x;
  const int64_t g1 = groups * (blockIdx.x + 1) / gridDim.x;
  const int pieces = static_cast<int>((in * static_cast<int64_t>(sizeof(T)) + kChunkBytes - 1) /
                                      kChunkBytes);
  const int64_t units = (g1 - g0) * pieces;  // unit u: piece u % pieces of group g0 + u / pieces
  if (t == 0) {
    for (int s = 0; s < kStages; ++s) cuda::InitBarrier(&full[s]);
  }
  __syncthreads();
  // Where the pieces of a row divide the stage count, stage s only ever holds pieces ≡ s: its
  // x (and norm weight) columns stay put after its first fill (the 7B/8B models' 4096-wide
  // inputs, 2 pieces). Otherwise they come with every fill.
  const bool refill_x = kStages % pieces != 0;
  if (t == 0) {
    for (int64_t u = 0; u < kStages && u < units; ++u) {
      LoadStage<T, M, kNorm>(smem + u * L::kBytes, &full[u], io, rows, in, w, out, g0 + u / pieces,
                             static_cast<int>(u % pieces), /*with_x=*/true);
    }
  }
  float acc[kGroupRows][M], ss[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    ss[m] = 0.0f;
#pragma unroll
    for (int r = 0; r < kGroupRows; ++r) acc[r][m] = 0.0f;
  }
  float inv = 1.0f;  // 1/rms of x row t % M, for the thread writing (t / M, t % M)
  const int64_t row_bytes = in * static_cast<int64_t>(sizeof(T));
  for (int64_t u = 0; u < units; ++u) {
    const int s = static_cast<int>(u % kStages);
    const int k = static_cast<int>(u % pieces);
    uint8_t* stage = smem + s * L::kBytes;
    cuda::WaitBarrier(&full[s], static_cast<uint32_t>((u / kStages) & 1));
    const int64_t piece_bytes =
        std::min<int64_t>(kChunkBytes, row_bytes - int64_t{k} * kChunkBytes);
    if (t < piece_bytes / 16) AccumulateStage<T, M, kNorm>(stage, rows, u < pieces, acc, ss);
    __syncthreads();  // every thread is done with the stage
    if (t == 0 && u + kStages < units) {
      LoadStage<T, M, kNorm>(stage, &full[s], io, rows, in, w, out, g0 + (u + kStages) / pieces,
                             static_cast<int>((u + kStages) % pieces), refill_x);
    }
    if (k != pieces - 1) continue;
    // The group's last piece: sum each (row, x row) across the block and write it.
    const bool first_group = u < pieces;
#pragma unroll
    for (int r = 0; r < kGroupRows; ++r) {
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float v = WarpSum(acc[r][m]);
        if (lane == 0) partial[warp][r * M + m] = v;
        acc[r][m] = 0.0f;
      }
    }
    if (kNorm && first_group) {
#pragma unroll
      for (int m = 0; m < M; ++m) {
        const float v = WarpSum(ss[m]);
        if (lane == 0) partial[warp][kGroupRows * M + m] = v;
      }
    }
    __syncthreads();
    if (t < kGroupRows * M) {
      const int r = t / M, m = t % M;
      if (kNorm && first_group) {
        float sum_sq = 0.0f;
        for (int i = 0; i < kWarps; ++i) sum_sq += partial[i][kGroupRows * M + m];
        inv = rsqrtf(sum_sq / static_cast<float>(in) + io.eps);
        if (r == 0) inv_rms[m] = inv;
      }
      float sum = 0.0f;
      for (int i = 0; i < kWarps; ++i) sum += partial[i][t];
      const int64_t n = (g0 + u / pieces) * kGroupRows + r;
      if (m < rows && n < out) {
        Y* yp = static_cast<Y*>(io.y) + m * io.y_stride + n;
        if constexpr (kAdd) {
          *yp += sum;
        } else {
          *yp = Num<Y>::FromF(sum * inv);
        }
      }
    }
  }
  if constexpr (kNorm) {
    if (io.normed != nullptr && blockIdx.x == 0) {
      __syncthreads();  // inv_rms is written
      WriteNormed<T, M>(io, in, rows, inv_rms);
    }
  }
}

template <typename T, typename Y, int M, bool kNorm, bool kAdd>
absl::Status LaunchGemvKernel(const GemvIo& io, int rows, int64_t in, const T* w, int64_t out,
                              cudaStream_t stream) {
  auto* kernel = GemvKernel<T, Y, M, kNorm, kAdd>;
  constexpr int kSmem = GemvSmemBytes<M, kNorm>();
  CUDA_RETURN_IF_ERROR(cuda::OptInSharedMemory(kernel, kSmem));
  ASSIGN_OR_RETURN(const cuda::LaunchInfo info,
                   cuda::CachedLaunchInfo(reinterpret_cast<const void*>(kernel), kThreads, kSmem));
  const int64_t groups = (out + kGroupRows - 1) / kGroupRows;
  const int64_t resident =
      static_cast<int64_t>(std::clamp(info.blocks_per_sm, 1, kBlocksPerSm)) * info.sms;
  const dim3 grid(static_cast<unsigned>(std::min(groups, resident)));
  kernel<<<grid, kThreads, kSmem, stream>>>(io, rows, in, w, out);
  CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <typename T, typename Y, bool kNorm, bool kAdd>
absl::Status GemvT(const GemvIo& io, int64_t rows, int64_t in, const void* w, int64_t out,
                   cudaStream_t stream) {
  const T* wt = static_cast<const T*>(w);
  const int n = static_cast<int>(rows);
  if (rows <= 1) return LaunchGemvKernel<T, Y, 1, kNorm, kAdd>(io, n, in, wt, out, stream);
  if (rows <= 2) return LaunchGemvKernel<T, Y, 2, kNorm, kAdd>(io, n, in, wt, out, stream);
  if (rows <= 4) return LaunchGemvKernel<T, Y, 4, kNorm, kAdd>(io, n, in, wt, out, stream);
  return LaunchGemvKernel<T, Y, 8, kNorm, kAdd>(io, n, in, wt, out, stream);
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

}  // namespace

static_assert(kGroupRows * kGemvMaxRows <= kThreads, "one writing thread per (row, x row)");

bool GemvApplies(DType dtype, DType y_dtype, const void* x, int64_t rows, int64_t in,
                 const void* w) {
  const bool types = (dtype == DType::kBF16 || dtype == DType::kF16) &&
                     (y_dtype == dtype || y_dtype == DType::kF32);
  return types && rows >= 1 && rows <= kGemvMaxRows && in >= 8 && in % 8 == 0 &&
         cuda::IsAligned(x, 16) && cuda::IsAligned(w, 16);
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
  return GemvApplies(dtype, dtype, residual, rows, in, w) && cuda::IsAligned(norm_weight, 16) &&
         cuda::IsAligned(normed, 16);
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
