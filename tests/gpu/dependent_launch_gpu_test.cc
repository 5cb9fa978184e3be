// Programmatic dependent launch (kernels/cuda/dependent_launch.cuh) keeps the stream's order:
// a chain of dependent-launched kernels on one stream (fused add + RMSNorm, then a row gather
// of its output through the embedding kernel, back into the next add), each reading what the
// one before it wrote moments earlier, and each letting its successor start at once. Every
// intermediate goes to its own poisoned buffer and is checked against its twin applied to the
// GPU's own inputs of that step: a kernel that read before its producer finished would see
// poison (NaN) or the previous step's values.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/dependent_launch.h"
#include "kernels/dtype.h"
#include "kernels/rms_norm_reference.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

// A device buffer filled with 0xff bytes (NaN in every float format).
class Poisoned {
 public:
  explicit Poisoned(size_t bytes) {
    ok_ = cudaMalloc(&ptr_, bytes) == cudaSuccess && cudaMemset(ptr_, 0xff, bytes) == cudaSuccess;
  }
  ~Poisoned() { cudaFree(ptr_); }
  Poisoned(const Poisoned&) = delete;
  Poisoned& operator=(const Poisoned&) = delete;
  bool ok() const { return ok_; }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  bool ok_ = false;
};

std::vector<uint16_t> Random16(DType t, size_t n, float scale, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = To16(t, u(rng));
  return v;
}

std::vector<float> ToF32(DType t, const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = From16(t, v[i]);
  return f;
}

TEST(DependentLaunchGpu, ChainedKernelsSeeTheirPredecessorsOutput) {
  SKIP_WITHOUT_GPU();
  std::mt19937_64 rng = MakeSeededRng("ChainedKernelsSeeTheirPredecessorsOutput");
  const bool was_on = cuda::DependentLaunch();
  cuda::SetDependentLaunch(true);
  constexpr int kSteps = 24;
  constexpr int64_t kDim = 4096;
  constexpr float kEps = 1e-5f;
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (DType t : {DType::kBF16, DType::kF16}) {
    for (int64_t rows : {1, 3, 8}) {
      SCOPED_TRACE(testing::Message() << DTypeName(t) << " rows " << rows);
      std::vector<int32_t> perm(rows);  // delta[s + 1] row i = normed[s] row perm[i]
      for (int64_t i = 0; i < rows; ++i) perm[i] = static_cast<int32_t>((i * 5 + 2) % rows);
      const std::vector<uint16_t> norm_w = Random16(t, kDim, 1.0f, rng);
      std::vector<float> residual0(rows * kDim);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (float& x : residual0) x = u(rng);
      const std::vector<uint16_t> delta0 = Random16(t, rows * kDim, 1.0f, rng);
      Poisoned dperm(rows * 4), dnorm(norm_w.size() * 2), dres(residual0.size() * 4);
      Poisoned normed(kSteps * rows * kDim * 2), delta((kSteps + 1) * rows * kDim * 2);
      ASSERT_TRUE(dperm.ok() && dnorm.ok() && dres.ok() && normed.ok() && delta.ok());
      ASSERT_CUDA(cudaMemcpy(dperm.get(), perm.data(), rows * 4, cudaMemcpyHostToDevice));
      ASSERT_CUDA(cudaMemcpy(dnorm.get(), norm_w.data(), norm_w.size() * 2,
                             cudaMemcpyHostToDevice));
      ASSERT_CUDA(cudaMemcpy(dres.get(), residual0.data(), residual0.size() * 4,
                             cudaMemcpyHostToDevice));
      ASSERT_CUDA(cudaMemcpy(delta.get(), delta0.data(), delta0.size() * 2,
                             cudaMemcpyHostToDevice));
      const auto at = [&](const Poisoned& b, int step) {
        return static_cast<char*>(b.get()) + step * rows * kDim * 2;
      };
      for (int s = 0; s < kSteps; ++s) {
        // residual += delta[s]; normed[s] = RmsNorm(residual); delta[s + 1] = normed[s][perm].
        ASSERT_OK(LaunchAddRmsNormEx(t, DType::kF32, dres.get(), at(delta, s), dnorm.get(), rows,
                                     kDim, kEps, at(normed, s), stream));
        ASSERT_OK(LaunchEmbedding(t, at(normed, s), kDim, static_cast<const int32_t*>(dperm.get()),
                                  rows, at(delta, s + 1), kDim, stream));
      }
      ASSERT_CUDA(cudaStreamSynchronize(stream));
      std::vector<uint16_t> got_normed(kSteps * rows * kDim), got_delta((kSteps + 1) * rows * kDim);
      ASSERT_CUDA(cudaMemcpy(got_normed.data(), normed.get(), got_normed.size() * 2,
                             cudaMemcpyDeviceToHost));
      ASSERT_CUDA(cudaMemcpy(got_delta.data(), delta.get(), got_delta.size() * 2,
                             cudaMemcpyDeviceToHost));
      const std::vector<float> nf = ToF32(t, norm_w);
      const std::vector<float> all_normed = ToF32(t, got_normed), all_delta = ToF32(t, got_delta);
      std::vector<float> residual = residual0;
      const size_t n = rows * kDim;
      for (int s = 0; s < kSteps; ++s) {
        // The twins, fed what the GPU itself read at step s: its delta[s] and its normed[s].
        const std::vector<float> d(all_delta.begin() + s * n, all_delta.begin() + (s + 1) * n);
        std::vector<float> want_normed(n), want_delta(n);
        AddRmsNormReference(residual.data(), d.data(), nf.data(), rows, kDim, kEps,
                            want_normed.data());
        const std::vector<float> got_n(all_normed.begin() + s * n,
                                       all_normed.begin() + (s + 1) * n);
        EXPECT_LE(RelErr(got_n, want_normed), Tolerance(t)) << "normed, step " << s;
        for (int64_t i = 0; i < rows; ++i) {
          std::copy(got_n.begin() + perm[i] * kDim, got_n.begin() + (perm[i] + 1) * kDim,
                    want_delta.begin() + i * kDim);
        }
        const std::vector<float> got_d(all_delta.begin() + (s + 1) * n,
                                       all_delta.begin() + (s + 2) * n);
        EXPECT_EQ(got_d, want_delta) << "gathered rows, step " << s + 1;
      }
    }
  }
  ASSERT_CUDA(cudaStreamDestroy(stream));
  cuda::SetDependentLaunch(was_on);
}

}  // namespace
}  // namespace dsinfer
