// GEMMs through cuBLAS: y = x · wᵀ with 16-bit operands and fp32 accumulation. Row-major
// [rows, in] × [out, in]ᵀ is, read column-major, yᵀ = w(ᵀ as stored) · xᵀ, so the call is
// one cublasGemmEx with op(A) = T on the weight and no copies.
#include <string>

#include "kernels/cuda/cuda_kernels.h"

namespace dsinfer {

absl::Status Gemm(cublasHandle_t handle, DType dtype, const void* x, int64_t rows, int64_t in,
                  const void* w, int64_t out, void* y, int64_t y_stride) {
  return GemmEx(handle, dtype, dtype, x, rows, in, w, out, y, y_stride);
}

absl::Status GemmEx(cublasHandle_t handle, DType dtype, DType y_dtype, const void* x, int64_t rows,
                    int64_t in, const void* w, int64_t out, void* y, int64_t y_stride,
                    bool accumulate) {
  if (rows == 0 || out == 0) return absl::OkStatus();
  cudaDataType_t type;
  switch (dtype) {
    case DType::kBF16:
      type = CUDA_R_16BF;
      break;
    case DType::kF16:
      type = CUDA_R_16F;
      break;
    default:
      return absl::InvalidArgumentError("Gemm: unsupported dtype " + std::string(DTypeName(dtype)));
  }
  if (y_dtype != dtype && y_dtype != DType::kF32) {
    return absl::InvalidArgumentError("Gemm: unsupported output dtype " +
                                      std::string(DTypeName(y_dtype)));
  }
  const cudaDataType_t y_type = y_dtype == DType::kF32 ? CUDA_R_32F : type;
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasStatus_t st = cublasGemmEx(
      handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out), static_cast<int>(rows),
      static_cast<int>(in), &alpha, w, type, static_cast<int>(in), x, type, static_cast<int>(in),
      &beta, y, y_type, static_cast<int>(y_stride), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError(std::string("cublasGemmEx failed: ") + cublasGetStatusString(st) +
                               " (rows " + std::to_string(rows) + ", in " + std::to_string(in) +
                               ", out " + std::to_string(out) + ")");
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
