// y = x · Wᵀ in fp32 (the nn.Linear convention: W is [out, in]), through OpenBLAS sgemm, and
// the two compositions a transformer block makes of it (the CUDA GEMV kernels fuse them).
#ifndef DSINFER_KERNELS_LINEAR_REFERENCE_H_
#define DSINFER_KERNELS_LINEAR_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// x: [rows, in] (row stride in), w: [out, in], y: [rows, out] with row stride `y_stride`
// (>= out; lets several projections write side by side into one buffer).
void LinearReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                     float* y, int64_t y_stride);

// residual[:, :out] += x · Wᵀ (row stride residual_stride): a sub-block's output projection
// added into the residual stream. delta: [rows, out] scratch.
void LinearAddReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                        float* delta, float* residual, int64_t residual_stride);

// y = RmsNorm(residual) · Wᵀ, with RmsNorm(residual) (RmsNormReference) left in normed
// ([rows, in]).
void NormLinearReference(const float* residual, int64_t rows, int64_t in,
                         const float* norm_weight, float eps, const float* w, int64_t out,
                         float* normed, float* y, int64_t y_stride);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_LINEAR_REFERENCE_H_
