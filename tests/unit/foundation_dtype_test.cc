// Proves the 16-bit float conversions are exact round-to-nearest-even: every fp16 and bf16 bit
// pattern survives a round trip through fp32; random fp32 values (normal, subnormal, near the
// overflow threshold) go to the nearest representable 16-bit value (checked against both
// neighbours, ties to the even one); inf and NaN stay inf and NaN; dtype names parse.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace dsinfer {
namespace {

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float FromBits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

bool IsNanF16(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }
bool IsNanBf16(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0; }

// The value of 16-bit pattern `h`, in double, via an independent formula.
double F16Value(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int e = (h >> 10) & 0x1f;
  const int m = h & 0x3ff;
  if (e == 0) return sign * std::ldexp(m, -24);
  if (e == 31) return m ? std::nan("") : sign * std::numeric_limits<double>::infinity();
  return sign * std::ldexp(1024 + m, e - 25);
}

TEST(DTypeTest, EveryF16PatternRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = F16ToF32(h);
    if (IsNanF16(h)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << i;
      EXPECT_TRUE(IsNanF16(F32ToF16(f))) << std::hex << i;
      EXPECT_EQ(F32ToF16(f) & 0x8000u, h & 0x8000u) << "NaN sign " << std::hex << i;
      continue;
    }
    EXPECT_EQ(static_cast<double>(f), F16Value(h)) << std::hex << i;
    EXPECT_EQ(F32ToF16(f), h) << std::hex << i;
  }
}

// RoundF32ToF16Value (the rounding of Double Sparsity's stored scores) is F32ToF16 then
// F16ToF32: random values over fp16's whole range and beyond, raw patterns, every fp16 value
// and the points halfway between neighbours; NaN stays NaN.
TEST(DTypeTest, RoundToF16ValueIsTheRoundTrip) {
  std::mt19937 rng(4321);
  std::uniform_int_distribution<int> exponent(-30, 17);
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  std::uniform_int_distribution<uint32_t> pattern(0, 0x7fffffffu);
  std::vector<float> values = {0.0f, -0.0f, 65504.0f, 65519.99f, 65520.0f, -65520.0f,
                               std::numeric_limits<float>::infinity(),
                               -std::numeric_limits<float>::infinity(), 1e-30f, -1e-30f,
                               std::numeric_limits<float>::max()};
  for (int i = 0; i < 200000; ++i) {
    const float f = std::ldexp(mantissa(rng), exponent(rng));
    values.push_back((i & 1) ? -f : f);
    values.push_back(FromBits(pattern(rng) | ((i & 1) ? 0x80000000u : 0u)));
  }
  for (uint32_t h = 0; h < 0x7c00u; ++h) {
    const double v = F16Value(static_cast<uint16_t>(h));
    values.push_back(static_cast<float>(v));
    values.push_back(static_cast<float>((v + F16Value(static_cast<uint16_t>(h + 1))) / 2));
    values.push_back(-static_cast<float>(v));
  }
  for (float f : values) {
    const float want = F16ToF32(F32ToF16(f));
    const float got = RoundF32ToF16Value(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(got)) << f;
      continue;
    }
    EXPECT_EQ(Bits(got), Bits(want)) << "value " << f;
  }
  EXPECT_TRUE(std::isnan(RoundF32ToF16Value(std::nanf(""))));
}

TEST(DTypeTest, EveryBf16PatternRoundTrips) {
  for (uint32_t i = 0; i < 65536; ++i) {
    const uint16_t h = static_cast<uint16_t>(i);
    const float f = Bf16ToF32(h);
    EXPECT_EQ(Bits(f), i << 16);
    if (IsNanBf16(h)) {
      EXPECT_TRUE(IsNanBf16(F32ToBf16(f))) << std::hex << i;
    } else {
      EXPECT_EQ(F32ToBf16(f), h) << std::hex << i;
    }
  }
}

// Checks that `h` is the round-to-nearest-even fp16 encoding of finite `f`.
void ExpectNearestF16(float f, uint16_t h) {
  const double x = f;
  if (std::fabs(x) >= 65520.0) {  // halfway between 65504 and 2^16 rounds to infinity
    EXPECT_EQ(h & 0x7fffu, 0x7c00u) << x;
    return;
  }
  ASSERT_NE(h & 0x7c00u, 0x7c00u) << "finite " << x << " gave inf/NaN";
  EXPECT_EQ(h & 0x8000u, std::signbit(f) ? 0x8000u : 0u) << x;
  const double v = F16Value(h);
  const double err = std::fabs(v - x);
  // Neighbours of h in magnitude (same sign).
  const uint16_t mag = h & 0x7fffu;
  for (int step : {-1, 1}) {
    const int neighbour = static_cast<int>(mag) + step;
    if (neighbour < 0 || neighbour >= 0x7c00) continue;
    const double nv = F16Value(static_cast<uint16_t>(neighbour | (h & 0x8000u)));
    const double nerr = std::fabs(nv - x);
    EXPECT_LE(err, nerr) << "value " << x << " encoded " << std::hex << h;
    if (err == nerr) {
      EXPECT_EQ(h & 1u, 0u) << "tie not to even: " << x;
    }
  }
}

TEST(DTypeTest, RandomFloatsRoundToNearestF16) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> exponent(-30, 17);  // subnormal, normal and overflow
  std::uniform_real_distribution<float> mantissa(1.0f, 2.0f);
  for (int i = 0; i < 200000; ++i) {
    float f = std::ldexp(mantissa(rng), exponent(rng));
    if (i & 1) f = -f;
    ExpectNearestF16(f, F32ToF16(f));
  }
  // Random raw bit patterns over the whole fp16 range.
  std::uniform_int_distribution<uint32_t> bits(0, 0x47800000u);
  for (int i = 0; i < 200000; ++i) {
    const float f = FromBits(bits(rng) | ((i & 1) ? 0x80000000u : 0u));
    ExpectNearestF16(f, F32ToF16(f));
  }
}

TEST(DTypeTest, F16ExactTiesGoToEven) {
  // Exactly halfway between consecutive fp16 values, across normal and subnormal ranges.
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> pattern(0, 0x7bfe);
  for (int i = 0; i < 20000; ++i) {
    const uint16_t lo = static_cast<uint16_t>(pattern(rng));
    const double mid = (F16Value(lo) + F16Value(static_cast<uint16_t>(lo + 1))) / 2;
    const float f = static_cast<float>(mid);
    ASSERT_EQ(static_cast<double>(f), mid);  // representable in fp32
    const uint16_t expected = (lo & 1u) ? static_cast<uint16_t>(lo + 1) : lo;
    EXPECT_EQ(F32ToF16(f), expected) << std::hex << lo;
    EXPECT_EQ(F32ToF16(-f), expected | 0x8000u) << std::hex << lo;
  }
}

TEST(DTypeTest, F16SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToF16(inf), 0x7c00u);
  EXPECT_EQ(F32ToF16(-inf), 0xfc00u);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bffu);
  EXPECT_EQ(F32ToF16(65519.99f), 0x7bffu);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00u);
  EXPECT_EQ(F32ToF16(1e10f), 0x7c00u);
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::max()), 0x7c00u);
  EXPECT_EQ(F32ToF16(0.0f), 0x0000u);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000u);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001u);   // smallest subnormal
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000u);   // tie with 0 -> even (0)
  EXPECT_EQ(F32ToF16(std::ldexp(1.5f, -25)), 0x0001u);   // above the tie
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -25)), 0x0002u);   // 1.5 units -> 2 (even)
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -14)), 0x0400u);   // smallest normal
  EXPECT_EQ(F32ToF16(std::ldexp(1023.5f, -24)), 0x0400u);  // rounds up into the normals
  EXPECT_EQ(F32ToF16(std::numeric_limits<float>::denorm_min()), 0x0000u);
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00u);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000u);
  EXPECT_TRUE(IsNanF16(F32ToF16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(IsNanF16(F32ToF16(FromBits(0x7f800001u))));  // signalling NaN, low payload
  EXPECT_TRUE(std::isinf(F16ToF32(0x7c00u)));
  EXPECT_TRUE(std::isnan(F16ToF32(0x7c01u)));
  EXPECT_EQ(F16ToF32(0x0001u), std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::signbit(F16ToF32(0x8000u)));
}

TEST(DTypeTest, RandomFloatsRoundToNearestBf16) {
  std::mt19937 rng(4321);
  std::uniform_int_distribution<uint32_t> bits(0, 0x7f7fffffu);
  for (int i = 0; i < 300000; ++i) {
    const uint32_t b = bits(rng) | ((i & 1) ? 0x80000000u : 0u);
    const float f = FromBits(b);
    const uint16_t h = F32ToBf16(f);
    const uint16_t lo = static_cast<uint16_t>(b >> 16);  // truncation (toward zero)
    const uint32_t rest = b & 0xffffu;
    uint16_t expected = lo;
    if (rest > 0x8000u || (rest == 0x8000u && (lo & 1u))) expected = static_cast<uint16_t>(lo + 1);
    EXPECT_EQ(h, expected) << std::hex << b;
    // And it is the nearest in value (the increment may carry into inf, which is still right).
    if ((expected & 0x7f80u) != 0x7f80u) {
      const double err = std::fabs(static_cast<double>(Bf16ToF32(h)) - f);
      EXPECT_LE(err, std::fabs(static_cast<double>(Bf16ToF32(lo)) - f));
    }
  }
}

TEST(DTypeTest, Bf16SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToBf16(inf), 0x7f80u);
  EXPECT_EQ(F32ToBf16(-inf), 0xff80u);
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::max()), 0x7f80u);  // rounds to inf
  EXPECT_EQ(F32ToBf16(FromBits(0x7f7f7fffu)), 0x7f7fu);              // below the tie
  EXPECT_EQ(F32ToBf16(FromBits(0x3f808000u)), 0x3f80u);              // tie -> even
  EXPECT_EQ(F32ToBf16(FromBits(0x3f818000u)), 0x3f82u);              // tie -> even (up)
  EXPECT_EQ(F32ToBf16(std::numeric_limits<float>::denorm_min()), 0x0000u);
  EXPECT_EQ(F32ToBf16(FromBits(0x00008001u)), 0x0001u);  // subnormal rounds up
  EXPECT_TRUE(IsNanBf16(F32ToBf16(FromBits(0x7f800001u))));  // NaN whose payload is in the low bits
  EXPECT_TRUE(IsNanBf16(F32ToBf16(FromBits(0xffc00000u))));
  EXPECT_TRUE(IsNanBf16(F32ToBf16(FromBits(0x7fffffffu))));  // must not carry into the sign
}

TEST(DTypeTest, NamesAndSizes) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kI32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  EXPECT_EQ(*ParseSafetensorsDType("F32"), DType::kF32);
  EXPECT_EQ(*ParseSafetensorsDType("BF16"), DType::kBF16);
  EXPECT_EQ(*ParseSafetensorsDType("F16"), DType::kF16);
  EXPECT_EQ(*ParseSafetensorsDType("I32"), DType::kI32);
  for (const char* bad : {"F64", "I8", "U8", "F8_E4M3", "bf16", ""}) {
    absl::StatusOr<DType> d = ParseSafetensorsDType(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_NE(std::string(d.status().message()).find(std::string("'") + bad + "'"),
              std::string::npos)
        << d.status();
  }
}

TEST(DTypeTest, ConvertToF32) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<uint16_t> h(257), b(257);
  std::vector<float> src(257), out(257);
  for (size_t i = 0; i < src.size(); ++i) {
    src[i] = normal(rng);
    h[i] = F32ToF16(src[i]);
    b[i] = F32ToBf16(src[i]);
  }
  ASSERT_TRUE(ConvertToF32(DType::kF16, h.data(), h.size(), out.data()).ok());
  for (size_t i = 0; i < h.size(); ++i) EXPECT_EQ(out[i], F16ToF32(h[i]));
  ASSERT_TRUE(ConvertToF32(DType::kBF16, b.data(), b.size(), out.data()).ok());
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(out[i], Bf16ToF32(b[i]));
  ASSERT_TRUE(ConvertToF32(DType::kF32, src.data(), src.size(), out.data()).ok());
  EXPECT_EQ(out, src);
  EXPECT_FALSE(ConvertToF32(DType::kI32, src.data(), src.size(), out.data()).ok());
}

}  // namespace
}  // namespace dsinfer
