// The launch the tensor-core prefill attention bodies share (prefill_attention_mma.cu,
// prefill_attention_wgmma.cu): their kernels take the same parameters, one block per (query
// tile, query head), and are compiled for bf16 / fp16 and head_dim 64 / 128.
#ifndef DSINFER_KERNELS_CUDA_PREFILL_LAUNCH_CUH_
#define DSINFER_KERNELS_CUDA_PREFILL_LAUNCH_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/mma_ptx.cuh"  // OptInSharedMemory
#include "kernels/cuda/prefill_args.h"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"

namespace dsinfer {
namespace cuda {

// A tensor-core prefill kernel: q, q_stride, positions, row_seq, tiles, num_tiles, heads_q,
// heads_kv, scale·log2(e), kv, out, out_stride.
template <typename T>
using PrefillKernel = void (*)(const T*, int64_t, const int32_t*, const int32_t*, const int32_t*,
                               int, int, int, float, CudaPagedKv, T*, int64_t);

// Launches `kernel` over grid (num_tiles, heads_q) with `threads` threads and `smem` bytes of
// dynamic shared memory (opted in first). `who` names the launcher in errors.
template <typename T>
absl::Status LaunchPrefillKernel(PrefillKernel<T> kernel, int threads, int smem,
                                 const PrefillArgs& a, const char* who) {
  if (a.num_tiles > 0x7fffffff || a.heads_q > 65535) {
    return absl::InvalidArgumentError(std::string(who) + ": grid too large");
  }
  CUDA_RETURN_IF_ERROR(OptInSharedMemory(kernel, smem));
  const dim3 grid(static_cast<unsigned>(a.num_tiles), static_cast<unsigned>(a.heads_q));
  constexpr float kLog2e = 1.4426950408889634f;
  kernel<<<grid, threads, smem, a.stream>>>(
      static_cast<const T*>(a.q), a.q_stride, a.rows.positions, a.rows.row_seq, a.tiles,
      static_cast<int>(a.num_tiles), a.heads_q, a.heads_kv, a.scale * kLog2e, a.kv,
      static_cast<T*>(a.out), a.out_stride);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

// Calls launch(T{}, std::integral_constant<int, HD>{}) for the element type of `dtype` (bf16,
// else fp16) and head_dim 64 (else 128): the instantiations the bodies compile.
template <typename Launch>
absl::Status DispatchPrefillShape(DType dtype, int head_dim, Launch&& launch) {
  const bool bf16 = dtype == DType::kBF16;
  if (head_dim == 64) {
    return bf16 ? launch(__nv_bfloat16{}, std::integral_constant<int, 64>{})
                : launch(__half{}, std::integral_constant<int, 64>{});
  }
  return bf16 ? launch(__nv_bfloat16{}, std::integral_constant<int, 128>{})
              : launch(__half{}, std::integral_constant<int, 128>{});
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_PREFILL_LAUNCH_CUH_
