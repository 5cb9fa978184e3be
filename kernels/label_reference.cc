// fp16 rounding goes through the project's round-to-nearest-even conversion so that the CUDA
// kernels (__float2half_rn) produce the very same bits.
#include "kernels/label_reference.h"

#include <algorithm>
#include <cmath>

#include "kernels/dtype.h"

namespace dsinfer {

void WriteLabelsF16Reference(const float* k, int64_t k_stride, int64_t n, int kv_heads,
                             int head_dim, const int32_t* channels, int r, uint16_t* labels,
                             int64_t label_stride) {
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < kv_heads; ++h) {
      const float* key = k + t * k_stride + static_cast<int64_t>(h) * head_dim;
      const int32_t* ch = channels + static_cast<int64_t>(h) * r;
      uint16_t* out = labels + t * label_stride + static_cast<int64_t>(h) * r;
      for (int j = 0; j < r; ++j) out[j] = F32ToF16(key[ch[j]]);
    }
  }
}

void QuantizeLabelRow4Reference(const float* row, int r, uint8_t* codes, uint16_t* scale,
                                uint16_t* minimum) {
  float lo = row[0];
  float hi = row[0];
  for (int j = 1; j < r; ++j) {
    lo = std::min(lo, row[j]);
    hi = std::max(hi, row[j]);
  }
  *minimum = F32ToF16(lo);
  *scale = F32ToF16((hi - lo) / 15.0f);
  const float min_q = F16ToF32(*minimum);
  const float scale_q = F16ToF32(*scale);
  for (int j = 0; j < (r + 1) / 2; ++j) codes[j] = 0;
  for (int j = 0; j < r; ++j) {
    int code = 0;
    if (scale_q > 0.0f) {
      code = static_cast<int>(std::lround((row[j] - min_q) / scale_q));
      code = std::clamp(code, 0, 15);
    }
    codes[j / 2] |= static_cast<uint8_t>(code << ((j % 2) * 4));
  }
}

void WriteLabels4BitReference(const float* k, int64_t k_stride, int64_t n, int kv_heads,
                              int head_dim, const int32_t* channels, int r, uint8_t* codes,
                              int64_t code_stride, uint16_t* scales, uint16_t* minimums) {
  float row[256];  // r <= head_dim <= 256, checked by the callers' option validation
  const int64_t row_bytes = Label4BitRowBytes(r);
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < kv_heads; ++h) {
      const float* key = k + t * k_stride + static_cast<int64_t>(h) * head_dim;
      const int32_t* ch = channels + static_cast<int64_t>(h) * r;
      for (int j = 0; j < r; ++j) row[j] = key[ch[j]];
      const int64_t slot = t * kv_heads + h;
      QuantizeLabelRow4Reference(row, r, codes + t * code_stride + h * row_bytes, scales + slot,
                                 minimums + slot);
    }
  }
}

void DequantizeLabelRow4Reference(const uint8_t* codes, uint16_t scale, uint16_t minimum, int r,
                                  float* out) {
  const float s = F16ToF32(scale);
  const float m = F16ToF32(minimum);
  for (int j = 0; j < r; ++j) {
    const int code = (codes[j / 2] >> ((j % 2) * 4)) & 0xf;
    out[j] = static_cast<float>(code) * s + m;
  }
}

}  // namespace dsinfer
