// The linear-layer kernels of kernels_gpu_test against LinearReference and its fused twins:
// the cuBLAS GEMM (16-bit and fp32 outputs, accumulating into fp32), the few-row GEMV of
// decode steps, its fused forms (add into the fp32 residual, RMSNorm before the product), and
// kAuto's rule between the two. Every output has a row stride past `out`, so a kernel writing
// beyond its columns shows as a lost NaN poison or a changed residual value.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/dtype.h"
#include "kernels/linear_reference.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/kernel_twin_harness.h"

namespace dsinfer {
namespace {

TEST(KernelsGpu, GemmMatchesLinearReference) {
  SKIP_WITHOUT_GPU();
  cublasHandle_t handle;
  ASSERT_EQ(cublasCreate(&handle), CUBLAS_STATUS_SUCCESS);
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 7, 97}) {
      for (auto [in, out] : {std::pair<int64_t, int64_t>{64, 97}, {4099, 129}, {128, 4099}}) {
        const int64_t y_stride = out + 3;
        HostArray x = Random(t, rows * in), w = Random(t, out * in);
        DevBuf dx(x.raw), dw(w.raw), dy(rows * y_stride * 2);
        ASSERT_OK(Gemm(handle, t, dx.ptr, rows, in, dw.ptr, out, dy.ptr, y_stride));
        std::vector<float> ref(rows * y_stride, 0.0f);
        LinearReference(x.f32.data(), rows, in, w.f32.data(), out, ref.data(), y_stride);
        std::vector<float> got = dy.Read16(t, rows * y_stride), g2, r2;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < out; ++c) {
            g2.push_back(got[r * y_stride + c]);
            r2.push_back(ref[r * y_stride + c]);
          }
          for (int64_t c = out; c < y_stride; ++c) {
            EXPECT_TRUE(std::isnan(got[r * y_stride + c])) << "wrote past out";
          }
        }
        EXPECT_LE(RelErr(g2, r2), Tolerance(t)) << rows << " " << in << " " << out;
        // fp32 output (logits): the accumulator unrounded, so a much tighter bound.
        DevBuf dy32(rows * y_stride * 4);
        ASSERT_OK(GemmEx(handle, t, DType::kF32, dx.ptr, rows, in, dw.ptr, out, dy32.ptr,
                         y_stride));
        const std::vector<float> got32 = ReadF32(dy32, rows * y_stride);
        std::vector<float> g3;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < out; ++c) g3.push_back(got32[r * y_stride + c]);
          for (int64_t c = out; c < y_stride; ++c) {
            EXPECT_TRUE(std::isnan(got32[r * y_stride + c])) << "fp32 wrote past out";
          }
        }
        EXPECT_LE(RelErr(g3, r2), 1e-4) << "fp32 out " << rows << " " << in << " " << out;
        // Accumulating into fp32 (the residual stream's add): y += x · wᵀ, past `out` untouched.
        std::vector<float> init(rows * y_stride);
        for (float& v : init) v = std::uniform_real_distribution<float>(-4.0f, 4.0f)(Rng());
        DevBuf dacc(init);
        ASSERT_OK(GemmEx(handle, t, DType::kF32, dx.ptr, rows, in, dw.ptr, out, dacc.ptr,
                         y_stride, /*accumulate=*/true));
        const std::vector<float> acc = ReadF32(dacc, rows * y_stride);
        std::vector<float> g4;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < out; ++c) {
            g4.push_back(acc[r * y_stride + c] - init[r * y_stride + c]);
          }
          for (int64_t c = out; c < y_stride; ++c) {
            EXPECT_EQ(acc[r * y_stride + c], init[r * y_stride + c]) << "added past out";
          }
        }
        EXPECT_LE(RelErr(g4, r2), 1e-4) << "accumulate " << rows << " " << in << " " << out;
      }
    }
  }
  cublasDestroy(handle);
}

// ‖got − ref‖ of an fp32 product y = x · wᵀ ([rows, out], row stride `stride`) over
// Σ max(ref², Σ_k (x w)²) per output: an output the random inputs cancel to near 0 is not held
// to a relative bound of its accidental size. Infinite if any output is not finite.
double ProductErr(const std::vector<float>& got, const std::vector<float>& ref,
                  const std::vector<float>& x, const std::vector<float>& w, int64_t rows,
                  int64_t in, int64_t out, int64_t stride) {
  double err = 0, den = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t c = 0; c < out; ++c) {
      double scale2 = 0;
      for (int64_t k = 0; k < in; ++k) {
        const double xw = double(x[i * in + k]) * w[c * in + k];
        scale2 += xw * xw;
      }
      const float g = got[i * stride + c], r = ref[i * stride + c];
      const double d = double(g) - r;
      err += std::isfinite(g) ? d * d : INFINITY;
      den += std::max(double(r) * r, scale2);
    }
  }
  return std::sqrt(err / den);
}

// The few-row GEMV body of decode steps against the same twin: 1 to 8 rows (every template
// width, and row counts that leave some of it idle), `in` short, long and not a multiple of
// 256, odd `out`, a y stride past `out`, 16-bit and fp32 outputs.
TEST(KernelsGpu, GemvMatchesLinearReference) {
  SKIP_WITHOUT_GPU();
  EXPECT_FALSE(GemvApplies(DType::kBF16, DType::kBF16, nullptr, 9, 64, nullptr));
  EXPECT_FALSE(GemvApplies(DType::kBF16, DType::kBF16, nullptr, 1, 4099, nullptr));
  EXPECT_FALSE(GemvApplies(DType::kF32, DType::kF32, nullptr, 1, 64, nullptr));
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 2, 3, 5, 8}) {
      for (auto [in, out] : {std::pair<int64_t, int64_t>{8, 7}, {64, 97}, {4104, 129},
                             {136, 4099}, {4096, 1}}) {
        const int64_t y_stride = out + 3;
        HostArray x = Random(t, rows * in), w = Random(t, out * in);
        DevBuf dx(x.raw), dw(w.raw), dy(rows * y_stride * 2), dy32(rows * y_stride * 4);
        ASSERT_TRUE(GemvApplies(t, t, dx.ptr, rows, in, dw.ptr));
        ASSERT_OK(LaunchGemv(t, t, dx.ptr, rows, in, dw.ptr, out, dy.ptr, y_stride, nullptr));
        ASSERT_OK(LaunchGemv(t, DType::kF32, dx.ptr, rows, in, dw.ptr, out, dy32.ptr, y_stride,
                             nullptr));
        std::vector<float> ref(rows * y_stride, 0.0f);
        LinearReference(x.f32.data(), rows, in, w.f32.data(), out, ref.data(), y_stride);
        const std::vector<float> got = dy.Read16(t, rows * y_stride);
        const std::vector<float> got32 = ReadF32(dy32, rows * y_stride);
        std::vector<float> g16, r;
        for (int64_t i = 0; i < rows; ++i) {
          for (int64_t c = 0; c < out; ++c) {
            g16.push_back(got[i * y_stride + c]);
            r.push_back(ref[i * y_stride + c]);
          }
          for (int64_t c = out; c < y_stride; ++c) {
            EXPECT_TRUE(std::isnan(got[i * y_stride + c])) << "wrote past out";
            EXPECT_TRUE(std::isnan(got32[i * y_stride + c])) << "fp32 wrote past out";
          }
        }
        EXPECT_LE(RelErr(g16, r), Tolerance(t)) << rows << " " << in << " " << out;
        EXPECT_LE(ProductErr(got32, ref, x.f32, w.f32, rows, in, out, y_stride), 2e-5)
            << "fp32 out " << rows << " " << in << " " << out;
      }
    }
  }
}

// The GEMV's fused forms against their twins over the same shapes: LaunchGemvAdd into an fp32
// residual whose columns past `out` must keep their values (LinearAddReference), and
// LaunchNormGemv with and without the normed rows written (NormLinearReference: the norm in
// fp32, unrounded, then the product).
TEST(KernelsGpu, FusedGemvMatchesTwins) {
  SKIP_WITHOUT_GPU();
  std::uniform_real_distribution<float> u(-4.0f, 4.0f);
  for (DType t : kDTypes) {
    for (int64_t rows : {1, 2, 3, 5, 8}) {
      for (auto [in, out] : {std::pair<int64_t, int64_t>{8, 7}, {64, 97}, {4104, 129},
                             {136, 4099}, {4096, 1}}) {
        const int64_t stride = out + 3;
        HostArray x = Random(t, rows * in), w = Random(t, out * in), g = Random(t, in);
        std::vector<float> res0(rows * stride), r(rows * in);
        for (float& v : res0) v = u(Rng());
        for (float& v : r) v = u(Rng());
        DevBuf dx(x.raw), dw(w.raw), dg(g.raw), dres(res0), dr(r);

        ASSERT_OK(LaunchGemvAdd(t, dx.ptr, rows, in, dw.ptr, out, dres.as<float>(), stride,
                                nullptr));
        std::vector<float> ref = res0, delta(rows * out);
        LinearAddReference(x.f32.data(), rows, in, w.f32.data(), out, delta.data(), ref.data(),
                           stride);
        const std::vector<float> got = ReadF32(dres, rows * stride);
        std::vector<float> got_sum(rows * stride), ref_sum(rows * stride);
        for (int64_t i = 0; i < rows * stride; ++i) {
          got_sum[i] = got[i] - res0[i];
          ref_sum[i] = ref[i] - res0[i];
          if (i % stride >= out) {
            EXPECT_EQ(got[i], res0[i]) << "added past out";
          }
        }
        EXPECT_LE(ProductErr(got_sum, ref_sum, x.f32, w.f32, rows, in, out, stride), 2e-5)
            << "add " << rows << " " << in << " " << out;

        DevBuf dy(rows * stride * 2), dy2(rows * stride * 2), dn(rows * in * 2);
        ASSERT_TRUE(NormGemvApplies(t, dr.as<float>(), rows, in, dg.ptr, dw.ptr, dn.ptr));
        ASSERT_OK(LaunchNormGemv(t, dr.as<float>(), rows, in, dg.ptr, 1e-5f, dw.ptr, out, dy.ptr,
                                 stride, dn.ptr, nullptr));
        ASSERT_OK(LaunchNormGemv(t, dr.as<float>(), rows, in, dg.ptr, 1e-5f, dw.ptr, out,
                                 dy2.ptr, stride, nullptr, nullptr));
        std::vector<float> normed(rows * in), yref(rows * stride, 0.0f);
        NormLinearReference(r.data(), rows, in, g.f32.data(), 1e-5f, w.f32.data(), out,
                            normed.data(), yref.data(), stride);
        const std::vector<float> y = dy.Read16(t, rows * stride),
                                 y2 = dy2.Read16(t, rows * stride);
        std::vector<float> gy, ry;
        for (int64_t i = 0; i < rows * stride; ++i) {
          if (i % stride >= out) {
            EXPECT_TRUE(std::isnan(y[i])) << "norm wrote past out";
            continue;
          }
          gy.push_back(y[i]);
          ry.push_back(yref[i]);
          EXPECT_EQ(y2[i], y[i]) << "the normed output changed y";
        }
        EXPECT_LE(RelErr(gy, ry), Tolerance(t)) << "norm " << rows << " " << in << " " << out;
        EXPECT_LE(RelErr(dn.Read16(t, rows * in), normed), Tolerance(t))
            << "normed " << rows << " " << in << " " << out;
      }
    }
  }
  DevBuf a(4096 * 4);
  const float* res = a.as<float>();
  EXPECT_FALSE(NormGemvApplies(DType::kBF16, res, 1, 64, a.as<char>() + 2, a.ptr, a.ptr));
  EXPECT_FALSE(NormGemvApplies(DType::kBF16, res, 1, 64, a.ptr, a.ptr, a.as<char>() + 8));
  EXPECT_FALSE(NormGemvApplies(DType::kBF16, res, 9, 64, a.ptr, a.ptr, nullptr));
  EXPECT_TRUE(NormGemvApplies(DType::kBF16, res, 1, 64, a.ptr, a.ptr, nullptr));
}

// kAuto's linear-layer rule at the 7B/8B shapes: the GEMV at one and two rows on every matrix
// (o_proj, q|k|v, gate|up, down, the LM head), cuBLAS from three rows.
TEST(KernelsGpu, AutoLinearRule) {
  for (int64_t rows : {1, 2}) {
    EXPECT_TRUE(AutoPicksGemv(rows, 4096, 4096));
    EXPECT_TRUE(AutoPicksGemv(rows, 6144, 4096));
    EXPECT_TRUE(AutoPicksGemv(rows, 12288, 4096));
    EXPECT_TRUE(AutoPicksGemv(rows, 22016, 4096));
    EXPECT_TRUE(AutoPicksGemv(rows, 4096, 11008));
    EXPECT_TRUE(AutoPicksGemv(rows, 128256, 4096));
  }
  EXPECT_FALSE(AutoPicksGemv(3, 4096, 4096));
  EXPECT_FALSE(AutoPicksGemv(8, 22016, 4096));
}

}  // namespace
}  // namespace dsinfer
