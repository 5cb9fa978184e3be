// y = x · Wᵀ in fp32 (the nn.Linear convention: W is [out, in]), through OpenBLAS sgemm.
#ifndef DSINFER_KERNELS_LINEAR_REFERENCE_H_
#define DSINFER_KERNELS_LINEAR_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// x: [rows, in] (row stride in), w: [out, in], y: [rows, out] with row stride `y_stride`
// (>= out; lets several projections write side by side into one buffer).
void LinearReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                     float* y, int64_t y_stride);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_LINEAR_REFERENCE_H_
