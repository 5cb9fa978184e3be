#include "kernels/linear_reference.h"

#include <cblas.h>

#include "kernels/rms_norm_reference.h"

namespace dsinfer {

void LinearReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                     float* y, int64_t y_stride) {
  if (rows == 0 || out == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(out), static_cast<int>(in), 1.0f, x, static_cast<int>(in), w,
              static_cast<int>(in), 0.0f, y, static_cast<int>(y_stride));
}

void LinearAddReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                        float* delta, float* residual, int64_t residual_stride) {
  LinearReference(x, rows, in, w, out, delta, out);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < out; ++c) residual[r * residual_stride + c] += delta[r * out + c];
  }
}

void NormLinearReference(const float* residual, int64_t rows, int64_t in,
                         const float* norm_weight, float eps, const float* w, int64_t out,
                         float* normed, float* y, int64_t y_stride) {
  RmsNormReference(residual, norm_weight, rows, in, eps, normed);
  LinearReference(normed, rows, in, w, out, y, y_stride);
}

}  // namespace dsinfer
