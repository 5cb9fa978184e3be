// The row-wise kernels of the forward pass: embedding gather, (fused add +) RMSNorm, SwiGLU,
// RoPE fused with the paged K/V write, argmax, plus fill/convert helpers for tests and the
// benchmark. All are memory-bound; each reads its inputs once and writes its outputs once,
// computing in fp32. One block per row where a row-wide reduction is needed.
//
// The residual stream may be fp32 while weights and activations are 16-bit (the CUDA backend
// keeps it so: rounding the running sum to bf16 after every sub-block is what pushed the bf16
// golden error to the 2e-2 bound). The embedding writes, and (Add)RmsNorm read and update, a
// residual of type R (fp32 or the activation type T) through the same templates.
//
// The forward pass's kernels are launched dependent (dependent_launch.cuh): each lets the next
// kernel start its blocks at once and waits for the previous one before touching memory, so a
// GEMV after a norm streams weights while the norm runs. The fill/convert helpers launch as
// usual.
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/label_write.cuh"
#include "kernels/cuda_check.h"

namespace dsinfer {
namespace {

using cuda::BlockSum;
using cuda::Num;

// Tout is T or fp32 (a 16-bit value is exact in fp32, so the gather stays exact). Each thread
// loads kCopyItems values before it stores them (as RmsNormKernel, below, explains).
constexpr int kCopyItems = 8;
template <typename T, typename Tout>
__global__ void EmbeddingKernel(const T* table, int64_t cols, const int32_t* ids, Tout* out,
                                int64_t out_stride) {
  cuda::StartNextThenWaitForPrior();
  const int64_t row = blockIdx.x;
  const T* src = table + static_cast<int64_t>(ids[row]) * cols;
  Tout* dst = out + row * out_stride;
  for (int64_t base = threadIdx.x; base < cols; base += blockDim.x * kCopyItems) {
    float v[kCopyItems];
#pragma unroll
    for (int u = 0; u < kCopyItems; ++u) {
      const int64_t c = base + u * blockDim.x;
      v[u] = c < cols ? Num<T>::ToF(src[c]) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kCopyItems; ++u) {
      const int64_t c = base + u * blockDim.x;
      if (c < cols) dst[c] = Num<Tout>::FromF(v[u]);
    }
  }
}

// R: the residual's (and x's) type, T or fp32; weight and out are T. One block per row;
// every thread loads its kNormItems values of a pass before it stores any: with one load and
// one store per iteration the compiler could not hoist the next load over a store that might
// alias it, and a decode row (batch 1, 4096 wide: 16 such iterations per thread) took 14.5 µs
// of dependent load latency (ncu, H200) against ~2 µs for its bytes.
constexpr int kNormThreads = 512;
constexpr int kNormItems = 8;
template <typename T, typename R>
__global__ void __launch_bounds__(kNormThreads)
    RmsNormKernel(R* residual, const T* delta, const R* x, const T* weight, int64_t dim,
                  float eps, T* out) {
  cuda::StartNextThenWaitForPrior();
  const int64_t row = blockIdx.x;
  extern __shared__ float vals[];  // [dim] fp32 copy of the (summed) row
  // The first pass's weights, loaded now so that their latency hides behind the row's.
  float w[kNormItems];
#pragma unroll
  for (int u = 0; u < kNormItems; ++u) {
    const int64_t c = threadIdx.x + u * kNormThreads;
    w[u] = c < dim ? Num<T>::ToF(weight[c]) : 0.0f;
  }
  float ss = 0.0f;
  for (int64_t base = threadIdx.x; base < dim; base += kNormThreads * kNormItems) {
    float v[kNormItems];
    if (residual != nullptr) {
      float a[kNormItems], b[kNormItems];
#pragma unroll
      for (int u = 0; u < kNormItems; ++u) {
        const int64_t c = base + u * kNormThreads;
        a[u] = c < dim ? Num<R>::ToF(residual[row * dim + c]) : 0.0f;
        b[u] = c < dim ? Num<T>::ToF(delta[row * dim + c]) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < kNormItems; ++u) {
        const int64_t c = base + u * kNormThreads;
        const R sum = Num<R>::FromF(a[u] + b[u]);
        if (c < dim) residual[row * dim + c] = sum;
        v[u] = Num<R>::ToF(sum);
      }
    } else {
#pragma unroll
      for (int u = 0; u < kNormItems; ++u) {
        const int64_t c = base + u * kNormThreads;
        v[u] = c < dim ? Num<R>::ToF(x[row * dim + c]) : 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < kNormItems; ++u) {
      const int64_t c = base + u * kNormThreads;
      if (c < dim) {
        vals[c] = v[u];
        ss += v[u] * v[u];
      }
    }
  }
  const float inv = rsqrtf(BlockSum(ss) / static_cast<float>(dim) + eps);
  for (int64_t base = threadIdx.x; base < dim; base += kNormThreads * kNormItems) {
    if (base != threadIdx.x) {
#pragma unroll
      for (int u = 0; u < kNormItems; ++u) {
        const int64_t c = base + u * kNormThreads;
        w[u] = c < dim ? Num<T>::ToF(weight[c]) : 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < kNormItems; ++u) {
      const int64_t c = base + u * kNormThreads;
      if (c < dim) out[row * dim + c] = Num<T>::FromF(vals[c] * inv * w[u]);
    }
  }
}

template <typename T>
__global__ void SwiGluKernel(const T* gate_up, int64_t rows, int64_t inter, T* out) {
  cuda::StartNextThenWaitForPrior();
  const int64_t total = rows * inter;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / inter, c = i % inter;
    const float g = Num<T>::ToF(gate_up[r * 2 * inter + c]);
    const float u = Num<T>::ToF(gate_up[r * 2 * inter + inter + c]);
    out[i] = Num<T>::FromF(g / (1.0f + expf(-g)) * u);
  }
}

// Grid (rows, pieces of kRopeThreads items): item i of a row rotates pair i of its q and k
// heads (i < (heads_q + heads_kv) · head_dim / 2) or copies v element i − pairs; rotated k and v
// land in the pool at the row's (sequence, position). One item per thread: a block per row
// looping over them took 12.3 µs per decode row (ncu, H200, Llama-2-7B shape), each iteration's
// loads waiting on the previous iteration's stores. kLabels: the row's sequence's labels
// (labels[row_seq], RopeWritesLabels) get its K heads' label rows too, each written after a
// block barrier by the thread that rotated the head's first pair, from the stored keys (a
// head's pairs lie in one block: kRopeThreads is a multiple of head_dim / 2).
constexpr int kRopeThreads = 256;
template <typename T, bool kLabels>
__global__ void __launch_bounds__(kRopeThreads)
    RopeStoreKvKernel(T* qkv, int64_t qkv_stride, const int32_t* positions,
                      const int32_t* row_seq, int heads_q, int heads_kv, int head_dim,
                      const float* inv_freq, CudaPagedKv kv, const CudaLabelSeq* labels) {
  cuda::StartNextThenWaitForPrior();
  const int64_t row = blockIdx.x;
  const int half = head_dim / 2;
  const int pairs = (heads_q + heads_kv) * half;
  const int i = blockIdx.y * kRopeThreads + threadIdx.x;
  const bool active = i < pairs + heads_kv * head_dim;
  if (!kLabels && !active) return;  // (with labels every thread reaches the barrier)
  const int pos = positions[row];
  const int seq = row_seq[row];
  const int32_t block = kv.block_tables[static_cast<int64_t>(seq) * kv.max_blocks +
                                        pos / kv.block_tokens];
  const int64_t slot_base =
      (static_cast<int64_t>(block) * kv.block_tokens + pos % kv.block_tokens) * kv.kv_heads;
  T* x = qkv + row * qkv_stride;
  const int h = i / half, j = i % half;
  if (active && i >= pairs) {
    const int e = i - pairs;
    static_cast<T*>(kv.v)[slot_base * head_dim + e] =
        x[static_cast<int64_t>(heads_q + heads_kv) * head_dim + e];
  } else if (active) {
    // fp32 angle then precise sincos, as transformers computes cos/sin in fp32.
    const float angle = static_cast<float>(pos) * inv_freq[j];
    float s, c;
    sincosf(angle, &s, &c);
    T* head = x + static_cast<int64_t>(h) * head_dim;
    const float x1 = Num<T>::ToF(head[j]), x2 = Num<T>::ToF(head[j + half]);
    const T y1 = Num<T>::FromF(x1 * c - x2 * s);
    const T y2 = Num<T>::FromF(x2 * c + x1 * s);
    head[j] = y1;
    head[j + half] = y2;
    if (h >= heads_q) {
      T* dst = static_cast<T*>(kv.k) + (slot_base + (h - heads_q)) * head_dim;
      dst[j] = y1;
      dst[j + half] = y2;
    }
  }
  if constexpr (kLabels) {
    __syncthreads();  // the block's k stores, seen by its label writers
    if (active && i < pairs && j == 0 && h >= heads_q && labels[seq].r > 0) {
      const int kh = h - heads_q;
      cuda::WriteLabelRow(static_cast<const T*>(kv.k) + (slot_base + kh) * head_dim,
                          labels[seq], kh, LabelRow(pos, kh, heads_kv));
    }
  }
}

template <typename T>
__global__ void ArgmaxKernel(const T* logits, int64_t vocab, int64_t stride, int32_t* ids) {
  cuda::StartNextThenWaitForPrior();
  const int32_t id = cuda::BlockArgmax(logits + blockIdx.x * stride, vocab);
  if (threadIdx.x == 0) ids[blockIdx.x] = id;
}

// One block per row: the row's maximum (NaN ignored), then Σ exp(x − max) in fp32 (a NaN
// makes it NaN), reduced per warp then per block; lse = max + log(sum).
__global__ void LogSumExpKernel(const float* logits, int64_t vocab, int64_t stride, float* lse) {
  cuda::StartNextThenWaitForPrior();
  const float* row = logits + blockIdx.x * stride;
  __shared__ float part[32];
  __shared__ float row_max;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  // kCopyItems loads in flight per thread per pass, summed in index order as one at a time.
  auto load = [&](int64_t base, float (&v)[kCopyItems], float fill) {
#pragma unroll
    for (int u = 0; u < kCopyItems; ++u) {
      const int64_t i = base + u * blockDim.x;
      v[u] = i < vocab ? row[i] : fill;
    }
  };
  float m = -INFINITY;
  for (int64_t base = threadIdx.x; base < vocab; base += blockDim.x * kCopyItems) {
    float v[kCopyItems];
    load(base, v, -INFINITY);
#pragma unroll
    for (int u = 0; u < kCopyItems; ++u) m = fmaxf(m, v[u]);
  }
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  if (lane == 0) part[warp] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w) m = fmaxf(m, part[w]);
    row_max = m;
  }
  __syncthreads();
  const float mx = row_max;
  float sum = 0.0f;
  for (int64_t base = threadIdx.x; base < vocab; base += blockDim.x * kCopyItems) {
    float v[kCopyItems];
    load(base, v, -INFINITY);
#pragma unroll
    for (int u = 0; u < kCopyItems; ++u) {
      if (base + u * blockDim.x < vocab) sum += expf(v[u] - mx);
    }
  }
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  __syncthreads();  // part[] is reused
  if (lane == 0) part[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w) sum += part[w];
    lse[blockIdx.x] = mx + logf(sum);
  }
}

__device__ __forceinline__ uint64_t Mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

template <typename T>
__global__ void FillRandomKernel(T* data, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t h = Mix(seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    data[i] = Num<T>::FromF((2.0f * u - 1.0f) * scale);
  }
}

template <typename T>
__global__ void ToF32Kernel(const T* src, int64_t count, float* dst) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    dst[i] = Num<T>::ToF(src[i]);
  }
}

template <typename T>
cudaError_t LaunchArgmaxKernel(const void* logits, int64_t rows, int64_t vocab, int64_t stride,
                               int32_t* ids, cudaStream_t stream) {
  return cuda::LaunchDependent(ArgmaxKernel<T>, dim3(static_cast<unsigned>(rows)), dim3(1024), 0,
                               stream, static_cast<const T*>(logits), vocab, stride, ids);
}

int GridFor(int64_t count, int threads) {
  const int64_t blocks = (count + threads - 1) / threads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

template <typename T, typename R>
absl::Status RmsNormT(R* residual, const T* delta, const R* x, const T* weight, int64_t rows,
                      int64_t dim, float eps, T* out, cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  const size_t smem = static_cast<size_t>(dim) * sizeof(float);
  if (smem > 48 * 1024) return absl::InvalidArgumentError("RmsNorm: dim over 12288");
  CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(RmsNormKernel<T, R>, dim3(static_cast<unsigned>(rows)),
                                             dim3(kNormThreads), smem, stream, residual, delta,
                                             x, weight, dim, eps, out));
  return absl::OkStatus();
}

// (Add)RmsNorm with the residual / input either of type T or fp32.
template <typename T>
absl::Status RmsNormDispatch(DType residual_dtype, DType dtype, void* residual, const void* delta,
                             const void* x, const void* weight, int64_t rows, int64_t dim,
                             float eps, void* out, cudaStream_t stream) {
  if (residual_dtype == DType::kF32) {
    return RmsNormT<T, float>(static_cast<float*>(residual), static_cast<const T*>(delta),
                              static_cast<const float*>(x), static_cast<const T*>(weight), rows,
                              dim, eps, static_cast<T*>(out), stream);
  }
  if (residual_dtype == dtype) {
    return RmsNormT<T, T>(static_cast<T*>(residual), static_cast<const T*>(delta),
                          static_cast<const T*>(x), static_cast<const T*>(weight), rows, dim, eps,
                          static_cast<T*>(out), stream);
  }
  return UnsupportedDType("RmsNorm residual", residual_dtype);
}

template <typename T, typename Tout>
cudaError_t LaunchEmbeddingKernel(unsigned grid, const void* table, int64_t cols,
                                  const int32_t* ids, void* out, int64_t out_stride,
                                  cudaStream_t stream) {
  return cuda::LaunchDependent(EmbeddingKernel<T, Tout>, dim3(grid), dim3(256), 0, stream,
                               static_cast<const T*>(table), cols, ids, static_cast<Tout*>(out),
                               out_stride);
}

// The embedding gather of a 16-bit table T into T (or fp32 when `f32`: the residual stream).
template <typename T>
cudaError_t LaunchEmbeddingFrom(bool f32, unsigned grid, const void* table, int64_t cols,
                                const int32_t* ids, void* out, int64_t out_stride,
                                cudaStream_t stream) {
  return f32 ? LaunchEmbeddingKernel<T, float>(grid, table, cols, ids, out, out_stride, stream)
             : LaunchEmbeddingKernel<T, T>(grid, table, cols, ids, out, out_stride, stream);
}

}  // namespace

absl::Status LaunchEmbedding(DType dtype, const void* table, int64_t cols, const int32_t* ids,
                             int64_t n, void* out, int64_t out_stride, cudaStream_t stream) {
  return LaunchEmbeddingEx(dtype, dtype, table, cols, ids, n, out, out_stride, stream);
}

absl::Status LaunchEmbeddingEx(DType dtype, DType out_dtype, const void* table, int64_t cols,
                               const int32_t* ids, int64_t n, void* out, int64_t out_stride,
                               cudaStream_t stream) {
  if (n == 0) return absl::OkStatus();
  if (out_dtype != dtype && out_dtype != DType::kF32 && dtype != DType::kF32) {
    return UnsupportedDType("LaunchEmbeddingEx output", out_dtype);
  }
  const unsigned grid = static_cast<unsigned>(n);
  const bool f32 = out_dtype == DType::kF32;
  cudaError_t launched = cudaSuccess;
  switch (dtype) {
    case DType::kBF16:
      launched = LaunchEmbeddingFrom<__nv_bfloat16>(f32, grid, table, cols, ids, out, out_stride,
                                                    stream);
      break;
    case DType::kF16:
      launched = LaunchEmbeddingFrom<__half>(f32, grid, table, cols, ids, out, out_stride, stream);
      break;
    case DType::kF32:  // gathers of fp32 tensors (logits, residual), kept or rounded
      switch (out_dtype) {
        case DType::kF32:
          launched = LaunchEmbeddingKernel<float, float>(grid, table, cols, ids, out, out_stride,
                                                         stream);
          break;
        case DType::kBF16:
          launched = LaunchEmbeddingKernel<float, __nv_bfloat16>(grid, table, cols, ids, out,
                                                                 out_stride, stream);
          break;
        case DType::kF16:
          launched = LaunchEmbeddingKernel<float, __half>(grid, table, cols, ids, out, out_stride,
                                                          stream);
          break;
        default:
          return UnsupportedDType("LaunchEmbeddingEx output", out_dtype);
      }
      break;
    default:
      return UnsupportedDType("LaunchEmbedding", dtype);
  }
  CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status LaunchRmsNorm(DType dtype, const void* x, const void* weight, int64_t rows,
                           int64_t dim, float eps, void* out, cudaStream_t stream) {
  return LaunchRmsNormEx(dtype, dtype, x, weight, rows, dim, eps, out, stream);
}

absl::Status LaunchRmsNormEx(DType dtype, DType x_dtype, const void* x, const void* weight,
                             int64_t rows, int64_t dim, float eps, void* out,
                             cudaStream_t stream) {
  switch (dtype) {
    case DType::kBF16:
      return RmsNormDispatch<__nv_bfloat16>(x_dtype, dtype, nullptr, nullptr, x, weight, rows,
                                            dim, eps, out, stream);
    case DType::kF16:
      return RmsNormDispatch<__half>(x_dtype, dtype, nullptr, nullptr, x, weight, rows, dim, eps,
                                     out, stream);
    default:
      return UnsupportedDType("LaunchRmsNorm", dtype);
  }
}

absl::Status LaunchAddRmsNorm(DType dtype, void* residual, const void* delta, const void* weight,
                              int64_t rows, int64_t dim, float eps, void* out,
                              cudaStream_t stream) {
  return LaunchAddRmsNormEx(dtype, dtype, residual, delta, weight, rows, dim, eps, out, stream);
}

absl::Status LaunchAddRmsNormEx(DType dtype, DType residual_dtype, void* residual,
                                const void* delta, const void* weight, int64_t rows, int64_t dim,
                                float eps, void* out, cudaStream_t stream) {
  switch (dtype) {
    case DType::kBF16:
      return RmsNormDispatch<__nv_bfloat16>(residual_dtype, dtype, residual, delta, nullptr,
                                            weight, rows, dim, eps, out, stream);
    case DType::kF16:
      return RmsNormDispatch<__half>(residual_dtype, dtype, residual, delta, nullptr, weight,
                                     rows, dim, eps, out, stream);
    default:
      return UnsupportedDType("LaunchAddRmsNorm", dtype);
  }
}

absl::Status LaunchSwiGlu(DType dtype, const void* gate_up, int64_t rows, int64_t inter,
                          void* out, cudaStream_t stream) {
  if (rows * inter == 0) return absl::OkStatus();
  const int grid = GridFor(rows * inter, 256);
  switch (dtype) {
    case DType::kBF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(
          SwiGluKernel<__nv_bfloat16>, dim3(grid), dim3(256), 0, stream,
          static_cast<const __nv_bfloat16*>(gate_up), rows, inter,
          static_cast<__nv_bfloat16*>(out)));
      break;
    case DType::kF16:
      CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(SwiGluKernel<__half>, dim3(grid), dim3(256), 0,
                                                 stream, static_cast<const __half*>(gate_up),
                                                 rows, inter, static_cast<__half*>(out)));
      break;
    default:
      return UnsupportedDType("LaunchSwiGlu", dtype);
  }
  return absl::OkStatus();
}

bool RopeWritesLabels(int head_dim) {
  return head_dim >= 2 && head_dim % 2 == 0 && kRopeThreads % (head_dim / 2) == 0;
}

absl::Status LaunchRopeStoreKv(DType dtype, void* qkv, int64_t qkv_stride,
                               const CudaBatchRows& rows, int heads_q, int heads_kv,
                               int head_dim, const float* inv_freq, const CudaPagedKv& kv,
                               cudaStream_t stream, const CudaLabelSeq* labels) {
  if (rows.rows == 0) return absl::OkStatus();
  if (head_dim % 2 != 0 || kv.head_dim != head_dim || kv.kv_heads != heads_kv) {
    return absl::InvalidArgumentError("LaunchRopeStoreKv: head shape mismatch");
  }
  if (labels != nullptr && !RopeWritesLabels(head_dim)) {
    return absl::InvalidArgumentError("LaunchRopeStoreKv: no label write at this head_dim");
  }
  const int64_t items = static_cast<int64_t>(heads_q + heads_kv) * (head_dim / 2) +
                        static_cast<int64_t>(heads_kv) * head_dim;
  const dim3 grid(static_cast<unsigned>(rows.rows),
                  static_cast<unsigned>((items + kRopeThreads - 1) / kRopeThreads));
  auto launch = [&](auto* t) -> absl::Status {
    using T = std::remove_pointer_t<decltype(t)>;
    auto kernel = labels != nullptr ? RopeStoreKvKernel<T, true> : RopeStoreKvKernel<T, false>;
    CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(kernel, grid, dim3(kRopeThreads), 0, stream,
                                               static_cast<T*>(qkv), qkv_stride, rows.positions,
                                               rows.row_seq, heads_q, heads_kv, head_dim,
                                               inv_freq, kv, labels));
    return absl::OkStatus();
  };
  switch (dtype) {
    case DType::kBF16:
      return launch(static_cast<__nv_bfloat16*>(nullptr));
    case DType::kF16:
      return launch(static_cast<__half*>(nullptr));
    default:
      return UnsupportedDType("LaunchRopeStoreKv", dtype);
  }
}

absl::Status LaunchLogSumExp(const float* logits, int64_t rows, int64_t vocab, int64_t stride,
                            float* lse, cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  if (vocab <= 0 || stride < vocab || logits == nullptr || lse == nullptr) {
    return absl::InvalidArgumentError("LaunchLogSumExp: bad shape or null pointer");
  }
  CUDA_RETURN_IF_ERROR(cuda::LaunchDependent(LogSumExpKernel, dim3(static_cast<unsigned>(rows)),
                                             dim3(1024), 0, stream, logits, vocab, stride, lse));
  return absl::OkStatus();
}

absl::Status LaunchArgmax(DType dtype, const void* logits, int64_t rows, int64_t vocab,
                          int64_t stride, int32_t* ids, cudaStream_t stream) {
  if (rows == 0) return absl::OkStatus();
  switch (dtype) {
    case DType::kBF16:
      CUDA_RETURN_IF_ERROR(LaunchArgmaxKernel<__nv_bfloat16>(logits, rows, vocab, stride, ids,
                                                             stream));
      break;
    case DType::kF16:
      CUDA_RETURN_IF_ERROR(LaunchArgmaxKernel<__half>(logits, rows, vocab, stride, ids, stream));
      break;
    case DType::kF32:
      CUDA_RETURN_IF_ERROR(LaunchArgmaxKernel<float>(logits, rows, vocab, stride, ids, stream));
      break;
    default:
      return UnsupportedDType("LaunchArgmax", dtype);
  }
  return absl::OkStatus();
}

absl::Status LaunchFillRandom(DType dtype, void* data, int64_t count, uint64_t seed, float scale,
                              cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  const int grid = GridFor(count, 256);
  switch (dtype) {
    case DType::kBF16:
      FillRandomKernel<<<grid, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(data), count, seed,
                                                 scale);
      break;
    case DType::kF16:
      FillRandomKernel<<<grid, 256, 0, stream>>>(static_cast<__half*>(data), count, seed, scale);
      break;
    default:
      return UnsupportedDType("LaunchFillRandom", dtype);
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status LaunchToF32(DType dtype, const void* src, int64_t count, float* dst,
                         cudaStream_t stream) {
  if (count == 0) return absl::OkStatus();
  const int grid = GridFor(count, 256);
  switch (dtype) {
    case DType::kBF16:
      ToF32Kernel<<<grid, 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(src), count, dst);
      break;
    case DType::kF16:
      ToF32Kernel<<<grid, 256, 0, stream>>>(static_cast<const __half*>(src), count, dst);
      break;
    case DType::kF32:
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst, src, static_cast<size_t>(count) * sizeof(float),
                                           cudaMemcpyDeviceToDevice, stream));
      break;
    default:
      return UnsupportedDType("LaunchToF32", dtype);
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace dsinfer
