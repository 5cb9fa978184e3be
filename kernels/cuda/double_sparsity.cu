// Double Sparsity decode kernels (declared in double_sparsity.cuh; design summary there): the
// label write here; scoring in label_scores.cu, top-k in topk_select.cu, sparse attention in
// sparse_attention.cu.
//
// Label write: one thread per (row, KV head); r <= 256 channels, two passes over the row
// (min/max, then codes) instead of a local array, so nothing spills.
#include <cstdint>

#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/label_write.cuh"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

using cuda::WriteLabelRow;

// The row's arithmetic: label_write.cuh.

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
                LabelRow(positions[row], h, kv_heads));
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
  WriteLabelRow(static_cast<const T*>(kv.k) + off, lab, h, LabelRow(t, h, kv.kv_heads));
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
      return UnsupportedDType("LaunchWriteLabels", dtype);
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
      return UnsupportedDType("LaunchWriteLabelsPaged", dtype);
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
