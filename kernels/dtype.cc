// fp16 conversion is written out bit by bit (no compiler intrinsics), so it behaves the same
// on every host compiler; bf16 is a truncation of fp32 with round-to-nearest-even.
#include "kernels/dtype.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace dsinfer {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kBF16:
    case DType::kF16:
      return 2;
  }
  return 0;
}

absl::string_view DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "f32";
    case DType::kBF16:
      return "bf16";
    case DType::kF16:
      return "f16";
    case DType::kI32:
      return "i32";
  }
  return "?";
}

absl::Status UnsupportedDType(absl::string_view op, DType dtype) {
  return absl::InvalidArgumentError(absl::StrCat(op, ": unsupported dtype ", DTypeName(dtype)));
}

absl::StatusOr<DType> ParseSafetensorsDType(absl::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "BF16") return DType::kBF16;
  if (name == "F16") return DType::kF16;
  if (name == "I32") return DType::kI32;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported tensor dtype '", name, "' (supported: F32, BF16, F16, I32)"));
}

float F16ToF32(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1u;
  const uint32_t exponent = (h >> 10) & 0x1fu;
  const uint32_t mantissa = h & 0x3ffu;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);
  } else if (exponent == 31) {
    magnitude = mantissa == 0 ? INFINITY : NAN;
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

uint16_t F32ToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00u;  // rounds to or beyond infinity
  if (abs_bits < 0x38800000u) {                        // subnormal or zero in fp16
    // value = abs * 2^24 rounded to nearest even integer count of 2^-24 units.
    float abs_value;
    std::memcpy(&abs_value, &abs_bits, 4);
    const float scaled = abs_value * 16777216.0f;  // exact (power of two)
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Normal: re-bias the exponent and round the 23-bit mantissa to 10 bits (nearest even).
  uint32_t rounded = abs_bits + 0xfffu + ((abs_bits >> 13) & 1u);
  return sign | static_cast<uint16_t>((rounded - 0x38000000u) >> 13);
}

float RoundF32ToF16Value(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint32_t sign = bits & 0x80000000u;
  const uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u) return f;                                   // NaN
  if (abs_bits >= 0x477ff000u) return sign ? -INFINITY : INFINITY;        // past fp16's max
  if (abs_bits < 0x38800000u) {  // fp16 subnormal or zero: a multiple of 2^-24
    return std::copysign(std::nearbyint(std::fabs(f) * 16777216.0f) * (1.0f / 16777216.0f), f);
  }
  // Normal: the 23-bit mantissa rounded to 10 bits (nearest even); a carry bumps the exponent.
  const uint32_t rounded = sign | ((abs_bits + 0xfffu + ((abs_bits >> 13) & 1u)) & ~0x1fffu);
  float out;
  std::memcpy(&out, &rounded, 4);
  return out;
}

absl::Status ConvertToF32(DType dtype, const void* src, size_t count, float* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return absl::OkStatus();
    case DType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = Bf16ToF32(p[i]);
      return absl::OkStatus();
    }
    case DType::kF16: {
      const uint16_t* p = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < count; ++i) dst[i] = F16ToF32(p[i]);
      return absl::OkStatus();
    }
    case DType::kI32:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("cannot convert dtype ", DTypeName(dtype), " to f32"));
}

}  // namespace dsinfer
