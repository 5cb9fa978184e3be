// One Double Sparsity label row from its key, as the label twins compute it
// (WriteLabelsF16Reference / WriteLabels4BitReference): shared by the label writers of
// double_sparsity.cu and the RoPE kernel that writes the current token's labels beside its
// K/V (elementwise.cu, LaunchRopeStoreKv with labels).
#ifndef DSINFER_KERNELS_CUDA_LABEL_WRITE_CUH_
#define DSINFER_KERNELS_CUDA_LABEL_WRITE_CUH_

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/label_dot.cuh"

namespace dsinfer {
namespace cuda {

__device__ __forceinline__ uint16_t F32ToF16Bits(float x) {
  return __half_as_ushort(__float2half_rn(x));
}

// One (token, KV head) label row from its key (head_dim values of dtype T); slot = its
// LabelRow.
template <typename T>
__device__ void WriteLabelRow(const T* key, const CudaLabelSeq& lab, int h, int64_t slot) {
  const int32_t* ch = lab.channels + static_cast<int64_t>(h) * lab.r;
  if (lab.bits == 16) {
    uint16_t* out = static_cast<uint16_t*>(lab.data) + slot * lab.r;
    for (int j = 0; j < lab.r; ++j) out[j] = F32ToF16Bits(Num<T>::ToF(key[ch[j]]));
    return;
  }
  float lo = Num<T>::ToF(key[ch[0]]);
  float hi = lo;
  for (int j = 1; j < lab.r; ++j) {
    const float x = Num<T>::ToF(key[ch[j]]);
    lo = fminf(lo, x);
    hi = fmaxf(hi, x);
  }
  const uint16_t min_bits = F32ToF16Bits(lo);
  const uint16_t scale_bits = F32ToF16Bits(__fdiv_rn(__fsub_rn(hi, lo), 15.0f));
  lab.minimums[slot] = min_bits;
  lab.scales[slot] = scale_bits;
  const float min_q = F16BitsToF32(min_bits);
  const float scale_q = F16BitsToF32(scale_bits);
  const int row_bytes = (lab.r + 1) / 2;
  uint8_t* codes = static_cast<uint8_t*>(lab.data) + slot * row_bytes;
  for (int b = 0; b < row_bytes; ++b) {
    uint8_t byte = 0;
    for (int nib = 0; nib < 2; ++nib) {
      const int j = 2 * b + nib;
      if (j >= lab.r) break;
      int code = 0;
      if (scale_q > 0.0f) {
        // std::lround: half away from zero, as roundf.
        code =
            static_cast<int>(roundf(__fdiv_rn(__fsub_rn(Num<T>::ToF(key[ch[j]]), min_q), scale_q)));
        code = min(max(code, 0), 15);
      }
      byte |= static_cast<uint8_t>(code << (nib * 4));
    }
    codes[b] = byte;
  }
}

}  // namespace cuda
}  // namespace dsinfer

#endif  // DSINFER_KERNELS_CUDA_LABEL_WRITE_CUH_
