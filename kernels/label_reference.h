// Label rows of Double Sparsity (DESIGN §1): for every cached token and KV head, the r most
// important channels of its post-RoPE key, kept either as fp16 or as 4-bit codes with a
// scale and a minimum per (token, KV head) row — the reference's asymmetric min-max
// quantization, at the granularity of one label row so that one outlier head cannot flatten
// the others' resolution. These are the CPU twins of the label-writing kernels: pure
// functions over pointers, shapes and strides; they allocate nothing.
//
// Storage per (token, KV head) row:
//   fp16:  r × uint16 (IEEE half bits).
//   4-bit: ceil(r / 2) bytes, channel 2j in the low nibble and 2j+1 in the high nibble, plus
//          scale and minimum as fp16 (value = code × scale + minimum).
#ifndef DSINFER_KERNELS_LABEL_REFERENCE_H_
#define DSINFER_KERNELS_LABEL_REFERENCE_H_

#include <cstdint>

namespace dsinfer {

// Bytes of packed 4-bit codes of one row of r channels.
inline int64_t Label4BitRowBytes(int r) { return (r + 1) / 2; }

// Gathers the label channels of n tokens' keys and rounds them to fp16.
// k: [n, kv_heads, head_dim] with token stride k_stride elements (head stride head_dim);
// channels: [kv_heads, r] channel indices (< head_dim) per KV head;
// labels: [n, kv_heads, r] fp16 bits with token stride label_stride elements.
void WriteLabelsF16Reference(const float* k, int64_t k_stride, int64_t n, int kv_heads,
                             int head_dim, const int32_t* channels, int r, uint16_t* labels,
                             int64_t label_stride);

// Quantizes one row of r values: scale = (max - min) / 15, code = round((x - min) / scale)
// clamped to [0, 15]. Scale and minimum are rounded to fp16 before the codes are computed,
// so dequantization with the stored values is what the error bound holds for:
// |x - (code × scale + min)| <= scale / 2 + fp16 rounding of min. A constant row gets
// scale 0 and codes 0.
// codes: [ceil(r / 2)] bytes; scale, minimum: fp16 bits.
void QuantizeLabelRow4Reference(const float* row, int r, uint8_t* codes, uint16_t* scale,
                                uint16_t* minimum);

// Gathers the label channels of n tokens' keys (as WriteLabelsF16Reference) and quantizes
// each (token, KV head) row to 4 bits. codes: [n, kv_heads, ceil(r/2)] with token stride
// code_stride bytes; scales, minimums: [n, kv_heads] fp16 bits with token stride kv_heads.
void WriteLabels4BitReference(const float* k, int64_t k_stride, int64_t n, int kv_heads,
                              int head_dim, const int32_t* channels, int r, uint8_t* codes,
                              int64_t code_stride, uint16_t* scales, uint16_t* minimums);

// Dequantizes one 4-bit row back to r fp32 values.
void DequantizeLabelRow4Reference(const uint8_t* codes, uint16_t scale, uint16_t minimum, int r,
                                  float* out);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_LABEL_REFERENCE_H_
