#include "kernels/linear_reference.h"

#include <cblas.h>

namespace dsinfer {

void LinearReference(const float* x, int64_t rows, int64_t in, const float* w, int64_t out,
                     float* y, int64_t y_stride) {
  if (rows == 0 || out == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(out), static_cast<int>(in), 1.0f, x, static_cast<int>(in), w,
              static_cast<int>(in), 0.0f, y, static_cast<int>(y_stride));
}

}  // namespace dsinfer
