// The harness shared by the files of kernels_gpu_test, which hold each CUDA kernel family
// against its plain C++ reference twin. Kept in one place so that the whole binary draws from one
// seeded generator (its seed printed once, so a failure replays with DSINFER_TEST_SEED), every
// file rounds its inputs and poisons its outputs the same way, and the RoPE, decode and prefill
// attention tests run over the same paged pool and shape sweep.
#ifndef DSINFER_TESTS_GPU_KERNEL_TWIN_HARNESS_H_
#define DSINFER_TESTS_GPU_KERNEL_TWIN_HARNESS_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/paged_kv.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {

// The binary's generator (MakeSeededRng("kernels_gpu_test")).
std::mt19937_64& Rng();

// Random values rounded to `t`: `f32` holds the rounded values, `raw` their 16-bit codes.
struct HostArray {
  std::vector<float> f32;
  std::vector<uint16_t> raw;
};
HostArray Random(DType t, size_t n, float scale = 1.0f);

// A device buffer, poisoned (all bits set: NaN in bf16, fp16 and fp32) on creation.
struct DevBuf {
  void* ptr = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t b) : bytes(std::max<size_t>(b, 4)) {
    EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess);
    EXPECT_EQ(cudaMemset(ptr, 0xff, bytes), cudaSuccess);
  }
  template <typename T>
  DevBuf(const std::vector<T>& v) : DevBuf(v.size() * sizeof(T)) {
    EXPECT_EQ(cudaMemcpy(ptr, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice),
              cudaSuccess);
  }
  ~DevBuf() { cudaFree(ptr); }
  DevBuf(const DevBuf&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
  std::vector<float> Read16(DType t, size_t n) const {
    std::vector<uint16_t> raw(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(raw.data(), ptr, n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = From16(t, raw[i]);
    return out;
  }
};

// The 16-bit dtypes every sweep runs in.
inline constexpr DType kDTypes[] = {DType::kBF16, DType::kF16};

// The first `n` floats of an fp32 buffer, once the work queued before is done.
std::vector<float> ReadF32(const DevBuf& b, size_t n);

// A paged pool on the device with random block placement, and its host fp32 mirror.
struct TestPool {
  int block_tokens = 16, kv_heads = 0, head_dim = 0;
  int64_t num_blocks = 0;
  int max_blocks = 0;
  std::vector<int32_t> tables;  // [seqs, max_blocks]
  HostArray k, v;
  int64_t Elems() const { return num_blocks * block_tokens * kv_heads * head_dim; }
  PagedKvView<const float> HostView(int seq) const {
    PagedKvView<const float> view;
    view.k = k.f32.data();
    view.v = v.f32.data();
    view.block_table = tables.data() + static_cast<int64_t>(seq) * max_blocks;
    view.block_tokens = block_tokens;
    view.kv_heads = kv_heads;
    view.head_dim = head_dim;
    return view;
  }
};

TestPool MakePool(DType t, const std::vector<int>& lens, int kv_heads, int head_dim,
                  int block_tokens = 16);

struct AttnCase {
  DType dtype;
  int head_dim, heads_kv, group;
  std::vector<int> lens;
};

// wide: also GQA ratios 3 (a group that fills no power of two) and 16 (more than one block's
// 8 heads), and a batch of lengths that are whole multiples of the decode tiles (16 and 64
// tokens: no partial tile) — for decode, whose blocks split a group; prefill's CPU reference is
// too slow for it.
std::vector<AttnCase> AttnCases(bool wide);

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GPU_KERNEL_TWIN_HARNESS_H_
