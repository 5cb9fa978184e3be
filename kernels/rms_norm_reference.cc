// Sum of squares in double: the reference must be more exact than the kernels it judges.
#include "kernels/rms_norm_reference.h"

#include <cmath>

namespace dsinfer {

void RmsNormReference(const float* x, const float* weight, int64_t rows, int64_t dim, float eps,
                      float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const float inv = static_cast<float>(1.0 / std::sqrt(sum_sq / dim + eps));
    float* o = out + r * dim;
    for (int64_t i = 0; i < dim; ++i) o[i] = xr[i] * inv * weight[i];
  }
}

void AddRmsNormReference(float* residual, const float* delta, const float* weight, int64_t rows,
                         int64_t dim, float eps, float* out) {
  for (int64_t i = 0; i < rows * dim; ++i) residual[i] += delta[i];
  RmsNormReference(residual, weight, rows, dim, eps, out);
}

}  // namespace dsinfer
