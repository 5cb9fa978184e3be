// Helpers shared by the GPU tests that compare CUDA kernels with their C++ twins: GPU
// detection and skipping, status/CUDA assertions, a seeded generator whose seed is printed
// (so a failing draw can be replayed), 16-bit float conversion by dtype, and the relative
// error ‖a − b‖ / ‖b‖ with its per-dtype bound. Header-only, for tests.
#ifndef DSINFER_TESTS_GPU_GPU_TEST_UTIL_H_
#define DSINFER_TESTS_GPU_GPU_TEST_UTIL_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"

namespace dsinfer {

// True when a CUDA device is visible; clears the sticky error cudaGetDeviceCount leaves
// behind when there is none.
inline bool HaveGpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!::dsinfer::HaveGpu()) GTEST_SKIP() << "no CUDA device"
#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr
#define ASSERT_OK(expr)                    \
  do {                                     \
    const absl::Status s_ = (expr);        \
    ASSERT_TRUE(s_.ok()) << s_.ToString(); \
  } while (0)

// A generator seeded from std::random_device, or from DSINFER_TEST_SEED where set (to replay a
// failure); prints "<test_name> seed N" on stdout.
inline std::mt19937_64 MakeSeededRng(const char* test_name) {
  const char* fixed = std::getenv("DSINFER_TEST_SEED");
  const uint64_t seed =
      fixed != nullptr ? std::strtoull(fixed, nullptr, 10) : uint64_t{std::random_device{}()};
  std::printf("%s seed %llu\n", test_name, static_cast<unsigned long long>(seed));
  return std::mt19937_64(seed);
}

inline uint16_t To16(DType t, float f) { return t == DType::kBF16 ? F32ToBf16(f) : F32ToF16(f); }
inline float From16(DType t, uint16_t h) { return t == DType::kBF16 ? Bf16ToF32(h) : F16ToF32(h); }

// ‖a − b‖ / ‖b‖; infinity if any element of a is not finite.
inline double RelErr(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-30));
}

// The RelErr bound of a 16-bit dtype against an fp32 twin.
inline double Tolerance(DType t) { return t == DType::kBF16 ? 1e-2 : 2e-3; }

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GPU_GPU_TEST_UTIL_H_
