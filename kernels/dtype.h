// Element types of weights, activations and KV, and exact conversions between the 16-bit
// floating formats and fp32. Conversions round to nearest even (as PyTorch does), so that
// the CPU backend computes from the very same rounded values a checkpoint holds.
#ifndef DSINFER_KERNELS_DTYPE_H_
#define DSINFER_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace dsinfer {

enum class DType : uint8_t { kF32, kBF16, kF16, kI32 };

// Bytes per element.
size_t DTypeSize(DType dtype);
// "f32", "bf16", "f16", "i32".
absl::string_view DTypeName(DType dtype);
// "<op>: unsupported dtype <name>": a launcher's error for a dtype it has no kernel for.
absl::Status UnsupportedDType(absl::string_view op, DType dtype);
// Parses the safetensors spelling ("F32", "BF16", "F16", "I32"); other dtypes are errors.
absl::StatusOr<DType> ParseSafetensorsDType(absl::string_view name);

inline float Bf16ToF32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t F32ToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

float F16ToF32(uint16_t h);
uint16_t F32ToF16(float f);
// F16ToF32(F32ToF16(f)) without the fp16 bits (NaN stays a NaN, not necessarily the same):
// how Double Sparsity's stored scores round (kernels/cuda/score_format.cuh).
float RoundF32ToF16Value(float f);

// Converts `count` elements of `dtype` at `src` to fp32 at `dst`. kI32 is an error.
absl::Status ConvertToF32(DType dtype, const void* src, size_t count, float* dst);

}  // namespace dsinfer

#endif  // DSINFER_KERNELS_DTYPE_H_
