// The harness of the Double Sparsity kernel tests against their CPU twins
// (double_sparsity_gpu_test and double_sparsity_topk_gpu_test, one binary): device buffers
// poisoned on creation, the paged label layout read back in the twins' order, the bodies every
// case runs, and RunCase — one chain (labels, scores, top-k, sparse attention) of a Case on the
// GPU, every stage against its twin. One seeded generator for the binary (its seed printed).
#ifndef DSINFER_TESTS_GPU_DS_TWIN_CASE_H_
#define DSINFER_TESTS_GPU_DS_TWIN_CASE_H_

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "gtest/gtest.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/dtype.h"
#include "kernels/label_layout.h"

namespace dsinfer {

// The binary's generator (MakeSeededRng: its seed printed, DSINFER_TEST_SEED replays it).
std::mt19937_64& Rng();

// A device (or mapped pinned host) buffer, poisoned with all-ones bits on creation.
struct Buf {
  void* ptr = nullptr;   // what kernels get
  void* host = nullptr;  // mapped host allocation, if any
  size_t bytes = 0;
  explicit Buf(size_t b, bool mapped = false) : bytes(std::max<size_t>(b, 16)) {
    if (mapped) {
      EXPECT_EQ(cudaHostAlloc(&host, bytes, cudaHostAllocMapped), cudaSuccess);
      EXPECT_EQ(cudaHostGetDevicePointer(&ptr, host, 0), cudaSuccess);
      std::memset(host, 0xff, bytes);
    } else {
      EXPECT_EQ(cudaMalloc(&ptr, bytes), cudaSuccess);
      EXPECT_EQ(cudaMemset(ptr, 0xff, bytes), cudaSuccess);
    }
  }
  ~Buf() { host != nullptr ? cudaFreeHost(host) : cudaFree(ptr); }
  Buf(const Buf&) = delete;
  void Put(const void* src, size_t n) {
    EXPECT_EQ(cudaMemcpy(ptr, src, n, cudaMemcpyDefault), cudaSuccess);
  }
  template <typename T>
  std::vector<T> Get(size_t n) const {
    std::vector<T> v(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr, n * sizeof(T), cudaMemcpyDefault), cudaSuccess);
    return v;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr);
  }
};

// A label buffer's first `tokens` tokens (kv_heads rows each of `elems` values of T) in the
// twins' token-major order: the buffer holds them in the paged layout (LabelRow).
template <typename T>
std::vector<T> TokenMajor(const Buf& b, int64_t tokens, int kv_heads, int elems) {
  const size_t row_bytes = static_cast<size_t>(elems) * sizeof(T);
  const std::vector<uint8_t> stored =
      b.Get<uint8_t>(static_cast<size_t>(LabelCapacity(tokens)) * kv_heads * row_bytes);
  std::vector<T> out(static_cast<size_t>(tokens) * kv_heads * elems);
  LabelRowsToTokenMajor(stored.data(), tokens, kv_heads, row_bytes, out.data());
  return out;
}

// Every body of scoring and top-k runs against the twins (the defaults and the bodies kept for
// comparison benchmarks).
constexpr LabelScoreAlgo kLabelScoreAlgos[] = {
    LabelScoreAlgo::kRowPerThread, LabelScoreAlgo::kCoalesced, LabelScoreAlgo::kStrided};
constexpr TopKAlgo kTopKAlgos[] = {TopKAlgo::kOneBlock, TopKAlgo::kTwoRead,    TopKAlgo::kStriped,
                                   TopKAlgo::kCluster,  TopKAlgo::kMultiBlock, TopKAlgo::kAuto,
                                   TopKAlgo::kResident};
constexpr SparseAttentionAlgo kSparseAttentionAlgos[] = {SparseAttentionAlgo::kPipelined,
                                                         SparseAttentionAlgo::kWarp};
// A sparse attention launch of a case: the body and its split count.
struct AttentionRun {
  SparseAttentionAlgo algo;
  int splits;
  std::string Name() const { return absl::StrCat(AlgoName(algo), " at ", splits, " splits"); }
};

struct SeqSpec {
  int tokens, budget, sink, recent, aggregation;
};
struct Case {
  DType dtype;
  int heads_q, heads_kv, head_dim, r, bits;
  std::vector<SeqSpec> seqs;
  bool mapped_kv = false;
  std::string Name() const {
    std::string s =
        absl::StrCat(dtype == DType::kBF16 ? "bf16" : "fp16", " hq", heads_q, " hkv", heads_kv,
                     " d", head_dim, " r", r, " bits", bits, mapped_kv ? " mapped" : "");
    for (const SeqSpec& q : seqs) {
      absl::StrAppend(&s, " [L", q.tokens, " k", q.budget, " sink", q.sink, " rec", q.recent,
                      q.aggregation ? " max" : " sum", "]");
    }
    return s;
  }
};

constexpr int kBlockTokens = 16;

// Runs one case: the whole chain on the GPU, every stage against its twin.
void RunCase(const Case& c);

// Budget choices cycle through: 1, sink+recent (kept only), ~L/16, ~L/8, L/2, >= L.
int BudgetFor(int L, int i);

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GPU_DS_TWIN_CASE_H_
