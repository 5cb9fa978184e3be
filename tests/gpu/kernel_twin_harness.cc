// The bodies of kernel_twin_harness.h. The generator lives here, in one translation unit, so
// that every file of kernels_gpu_test draws from the same sequence and its seed prints once.
#include "tests/gpu/kernel_twin_harness.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {

std::mt19937_64& Rng() {
  static std::mt19937_64 rng = MakeSeededRng("kernels_gpu_test");
  return rng;
}

HostArray Random(DType t, size_t n, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  HostArray a;
  a.f32.resize(n);
  a.raw.resize(n);
  for (size_t i = 0; i < n; ++i) {
    a.raw[i] = To16(t, u(Rng()));
    a.f32[i] = From16(t, a.raw[i]);
  }
  return a;
}

std::vector<float> ReadF32(const DevBuf& b, size_t n) {
  std::vector<float> out(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(out.data(), b.ptr, n * sizeof(float), cudaMemcpyDeviceToHost),
            cudaSuccess);
  return out;
}

TestPool MakePool(DType t, const std::vector<int>& lens, int kv_heads, int head_dim,
                  int block_tokens) {
  TestPool p;
  p.block_tokens = block_tokens;
  p.kv_heads = kv_heads;
  p.head_dim = head_dim;
  for (int len : lens) {
    p.max_blocks = std::max(p.max_blocks, (len + p.block_tokens - 1) / p.block_tokens);
  }
  p.num_blocks = static_cast<int64_t>(lens.size()) * p.max_blocks + 3;
  std::vector<int32_t> perm(p.num_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), Rng());
  p.tables.assign(lens.size() * p.max_blocks, 0);
  for (size_t i = 0; i < p.tables.size(); ++i) p.tables[i] = perm[i];
  p.k = Random(t, p.Elems());
  p.v = Random(t, p.Elems());
  return p;
}

std::vector<AttnCase> AttnCases(bool wide) {
  std::vector<AttnCase> cases;
  const std::vector<int> groups =
      wide ? std::vector<int>{1, 3, 4, 8, 16} : std::vector<int>{1, 4, 8};
  for (DType t : kDTypes) {
    for (int hd : {64, 128}) {
      for (int group : groups) {
        cases.push_back({t, hd, 2, group, {1}});
        cases.push_back({t, hd, 2, group, {7}});
        cases.push_back({t, hd, 2, group, {97}});
        cases.push_back({t, hd, 2, group, {4099}});
        cases.push_back({t, hd, 2, group, {97, 1, 4099}});  // batch > 1
        if (wide) cases.push_back({t, hd, 2, group, {2048, 64, 16}});
      }
    }
  }
  return cases;
}

}  // namespace dsinfer
