// RMSNorm (Llama): y = x / sqrt(mean(x^2) + eps) * weight, fp32. The fused form adds the
// residual first, as every transformer block does, so the CUDA twin can do both in one pass.
#ifndef DSINFER_KERNELS_RMS_NORM_REFERENCE_H_
#define DSINFER_KERNELS_RMS_NORM_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// x, out: [rows, dim]; weight: [dim]. out may alias x.
void RmsNormReference(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                      float* out);

// residual += delta, then out = RmsNorm(residual). residual, delta, out: [rows, dim].
void AddRmsNormReference(float* residual, const float* delta, const float* weight, int64_t rows,
                         int64_t dim, float eps, float* out);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_RMS_NORM_REFERENCE_H_
