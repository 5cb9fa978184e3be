// The CUDA Double Sparsity kernels (kernels/cuda/double_sparsity.cuh) against their CPU twins,
// as one chain per case: labels written by the kernel from random post-RoPE keys (bit-equal to
// WriteLabels*Reference), scores (bit-equal to LabelScores*Reference), the selected sets
// (identical to TopKSelectReference over the twin's scores — the scores are bit-equal, so ties
// are compared too), and attention over the selection (SelectedAttentionReference, dtype
// tolerance); then the same sequences with a budget above the context must equal dense causal
// attention. Sweeps: lengths 1, 7, 97, 4099, 65537, 300001; GQA 1/2/4/8; head_dim 64/128;
// label bits 16 (r 7, 8, 16) and 4 (r 7, 8, 16, 32, 64); budgets from 1 to above the context; sum
// and max aggregation; bf16 and fp16; two sequences of different length and options per
// launch; one case with K/V in mapped pinned host memory. Fresh random inputs (seed printed);
// outputs poisoned with all-ones bits first. Every LabelScoreAlgo and TopKAlgo (including
// kAuto, the default, which dispatches to one of the other two) runs in every chain case, the
// coalesced scorers with and without the fixed-row kernels. Top-k alone over both of its
// kernels (one block, and a cluster of blocks for long segments) with tie-heavy and NaN
// scores. Sparse attention runs with every SparseAttentionAlgo (each at its own split count,
// kPipelined also with empty pieces), and alone on hand-made selections of 0 to 40 rows. Skips
// without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/cpu_backend.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/score_and_select.h"
#include "engine/model.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/dtype.h"
#include "kernels/label_layout.h"
#include "kernels/label_reference.h"
#include "kernels/label_score_reference.h"
#include "kernels/paged_kv.h"
#include "kernels/rope.h"
#include "kernels/topk_select_reference.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/ds_engine_runs.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

std::mt19937_64& Rng() {
  static std::mt19937_64 rng = MakeSeededRng("double_sparsity_gpu_test");
  return rng;
}

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
constexpr TopKAlgo kTopKAlgos[] = {TopKAlgo::kOneBlock,   TopKAlgo::kTwoRead,  TopKAlgo::kStriped,
                                   TopKAlgo::kCluster,    TopKAlgo::kMultiBlock, TopKAlgo::kAuto,
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
void RunCase(const Case& c) {
  SCOPED_TRACE(c.Name());
  const int ns = static_cast<int>(c.seqs.size());
  const int d = c.head_dim, hkv = c.heads_kv, hq = c.heads_q, r = c.r;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  // Paged K/V of all sequences, blocks shuffled so the block tables matter.
  std::vector<int> first_block(ns), blocks_of(ns);
  int total_blocks = 0, max_blocks = 0;
  for (int s = 0; s < ns; ++s) {
    blocks_of[s] = (c.seqs[s].tokens + kBlockTokens - 1) / kBlockTokens;
    first_block[s] = total_blocks;
    total_blocks += blocks_of[s];
    max_blocks = std::max(max_blocks, blocks_of[s]);
  }
  std::vector<int32_t> perm(total_blocks);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), Rng());
  std::vector<int32_t> tables(static_cast<size_t>(ns) * max_blocks, 0);
  for (int s = 0; s < ns; ++s) {
    for (int b = 0; b < blocks_of[s]; ++b) tables[s * max_blocks + b] = perm[first_block[s] + b];
  }
  const size_t pool_elems = static_cast<size_t>(total_blocks) * kBlockTokens * hkv * d;
  std::vector<uint16_t> k_raw(pool_elems), v_raw(pool_elems);
  std::vector<float> k_f(pool_elems), v_f(pool_elems);
  for (size_t i = 0; i < pool_elems; ++i) {
    k_raw[i] = To16(c.dtype, u(Rng()));
    k_f[i] = From16(c.dtype, k_raw[i]);
    v_raw[i] = To16(c.dtype, u(Rng()));
    v_f[i] = From16(c.dtype, v_raw[i]);
  }
  // Queries: one row per sequence, [hq, d]; scaled so that the softmax is not flat.
  std::vector<uint16_t> q_raw(static_cast<size_t>(ns) * hq * d);
  std::vector<float> q_f(q_raw.size());
  for (size_t i = 0; i < q_raw.size(); ++i) {
    q_raw[i] = To16(c.dtype, 3.0f * u(Rng()));
    q_f[i] = From16(c.dtype, q_raw[i]);
  }
  // Channels per KV head: a random r-subset of [0, d), in random order.
  std::vector<int32_t> channels(static_cast<size_t>(hkv) * r);
  for (int h = 0; h < hkv; ++h) {
    std::vector<int32_t> all(d);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), Rng());
    std::copy(all.begin(), all.begin() + r, channels.begin() + h * r);
  }

  Buf dk(pool_elems * 2, c.mapped_kv), dv(pool_elems * 2, c.mapped_kv);
  dk.Put(k_raw.data(), pool_elems * 2);
  dv.Put(v_raw.data(), pool_elems * 2);
  Buf dtables(tables.size() * 4), dq(q_raw.size() * 2), dch(channels.size() * 4);
  dtables.Put(tables.data(), tables.size() * 4);
  dq.Put(q_raw.data(), q_raw.size() * 2);
  dch.Put(channels.data(), channels.size() * 4);
  CudaPagedKv kv;
  kv.k = dk.ptr;
  kv.v = dv.ptr;
  kv.block_tables = dtables.as<int32_t>();
  kv.max_blocks = max_blocks;
  kv.block_tokens = kBlockTokens;
  kv.kv_heads = hkv;
  kv.head_dim = d;

  // Label storage per sequence, written by the kernel from each sequence's K rows (the K
  // rows handed in as "new rows" in shuffled order, so positions and row_label matter).
  const int row_bytes = c.bits == 16 ? 2 * r : static_cast<int>(Label4BitRowBytes(r));
  std::vector<std::unique_ptr<Buf>> lab_data, lab_scale, lab_min;
  std::vector<CudaLabelSeq> labs(ns);
  int max_tokens = 0, max_budget = 0;
  for (int s = 0; s < ns; ++s) {
    const int L = c.seqs[s].tokens;
    max_tokens = std::max(max_tokens, L);
    max_budget = std::max(max_budget, std::min(std::max(c.seqs[s].budget, 1), L));
    const size_t stored_rows = static_cast<size_t>(LabelCapacity(L)) * hkv;  // whole pages
    lab_data.push_back(std::make_unique<Buf>(stored_rows * row_bytes));
    lab_scale.push_back(std::make_unique<Buf>(stored_rows * 2));
    lab_min.push_back(std::make_unique<Buf>(stored_rows * 2));
    labs[s].data = lab_data[s]->ptr;
    labs[s].scales = lab_scale[s]->as<uint16_t>();
    labs[s].minimums = lab_min[s]->as<uint16_t>();
    labs[s].channels = dch.as<int32_t>();
    labs[s].r = r;
    labs[s].bits = c.bits;
  }
  Buf dlabs(labs.size() * sizeof(CudaLabelSeq));
  dlabs.Put(labs.data(), labs.size() * sizeof(CudaLabelSeq));
  // Reference labels, and the kernel's from the same keys.
  std::vector<std::vector<uint16_t>> ref_f16(ns), ref_scale(ns), ref_min(ns);
  std::vector<std::vector<uint8_t>> ref_codes(ns);
  for (int s = 0; s < ns; ++s) {
    const int L = c.seqs[s].tokens;
    // Gather the sequence's K rows contiguous, [L, hkv, d], in a shuffled row order.
    std::vector<int32_t> order(L);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), Rng());
    std::vector<uint16_t> rows_raw(static_cast<size_t>(L) * hkv * d);
    std::vector<float> keys_f(rows_raw.size());  // in token order, for the twin
    for (int t = 0; t < L; ++t) {
      const size_t src =
          ((static_cast<size_t>(tables[s * max_blocks + t / kBlockTokens]) * kBlockTokens +
            t % kBlockTokens) *
           hkv) *
          d;
      std::copy(k_f.begin() + src, k_f.begin() + src + hkv * d, keys_f.begin() + t * hkv * d);
    }
    for (int i = 0; i < L; ++i) {
      for (int j = 0; j < hkv * d; ++j) {
        rows_raw[static_cast<size_t>(i) * hkv * d + j] =
            To16(c.dtype, keys_f[static_cast<size_t>(order[i]) * hkv * d + j]);
      }
    }
    // The rows sit in a wider "qkv" buffer (row stride > hkv d) to exercise the stride.
    const int64_t stride = hkv * d + 24;
    std::vector<uint16_t> wide(static_cast<size_t>(L) * stride, 0x7fff);
    for (int i = 0; i < L; ++i) {
      std::copy(rows_raw.begin() + static_cast<size_t>(i) * hkv * d,
                rows_raw.begin() + static_cast<size_t>(i + 1) * hkv * d,
                wide.begin() + static_cast<size_t>(i) * stride);
    }
    std::vector<int32_t> row_label(L, s);
    Buf dwide(wide.size() * 2), dpos(L * 4), drl(L * 4);
    dwide.Put(wide.data(), wide.size() * 2);
    dpos.Put(order.data(), L * 4);
    drl.Put(row_label.data(), L * 4);
    ASSERT_OK(LaunchWriteLabels(c.dtype, dwide.ptr, stride, L, dpos.as<int32_t>(),
                                drl.as<int32_t>(), dlabs.as<CudaLabelSeq>(), hkv, d, nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    if (c.bits == 16) {
      ref_f16[s].resize(static_cast<size_t>(L) * hkv * r);
      WriteLabelsF16Reference(keys_f.data(), hkv * d, L, hkv, d, channels.data(), r,
                              ref_f16[s].data(), hkv * r);
      EXPECT_EQ(TokenMajor<uint16_t>(*lab_data[s], L, hkv, r), ref_f16[s]) << "fp16 labels";
    } else {
      ref_codes[s].resize(static_cast<size_t>(L) * hkv * row_bytes);
      ref_scale[s].resize(static_cast<size_t>(L) * hkv);
      ref_min[s].resize(static_cast<size_t>(L) * hkv);
      WriteLabels4BitReference(keys_f.data(), hkv * d, L, hkv, d, channels.data(), r,
                               ref_codes[s].data(), hkv * row_bytes, ref_scale[s].data(),
                               ref_min[s].data());
      EXPECT_EQ(TokenMajor<uint8_t>(*lab_data[s], L, hkv, row_bytes), ref_codes[s]) << "codes";
      EXPECT_EQ(TokenMajor<uint16_t>(*lab_scale[s], L, hkv, 1), ref_scale[s]) << "scales";
      EXPECT_EQ(TokenMajor<uint16_t>(*lab_min[s], L, hkv, 1), ref_min[s]) << "minimums";
    }
  }

  // The paged writer (the engine's path) from the pool's K rows, each sequence in two ranges
  // (so `first` matters): the same bits.
  {
    std::vector<std::unique_ptr<Buf>> pdata, pscale, pmin;
    std::vector<CudaLabelSeq> plabs = labs;
    std::vector<CudaLabelRange> ranges;
    int64_t max_count = 0;
    for (int s = 0; s < ns; ++s) {
      const int L = c.seqs[s].tokens;
      const size_t stored_rows = static_cast<size_t>(LabelCapacity(L)) * hkv;
      pdata.push_back(std::make_unique<Buf>(stored_rows * row_bytes));
      pscale.push_back(std::make_unique<Buf>(stored_rows * 2));
      pmin.push_back(std::make_unique<Buf>(stored_rows * 2));
      plabs[s].data = pdata[s]->ptr;
      plabs[s].scales = pscale[s]->as<uint16_t>();
      plabs[s].minimums = pmin[s]->as<uint16_t>();
      const int half = L / 2;
      if (half > 0) ranges.push_back(CudaLabelRange{s, s, 0, half});
      ranges.push_back(CudaLabelRange{s, s, half, L - half});
      max_count = std::max<int64_t>(max_count, L - half);
    }
    Buf dplabs(plabs.size() * sizeof(CudaLabelSeq)),
        dranges(ranges.size() * sizeof(CudaLabelRange));
    dplabs.Put(plabs.data(), plabs.size() * sizeof(CudaLabelSeq));
    dranges.Put(ranges.data(), ranges.size() * sizeof(CudaLabelRange));
    ASSERT_OK(LaunchWriteLabelsPaged(c.dtype, kv, dranges.as<CudaLabelRange>(),
                                     static_cast<int>(ranges.size()), max_count,
                                     dplabs.as<CudaLabelSeq>(), nullptr));
    ASSERT_CUDA(cudaDeviceSynchronize());
    for (int s = 0; s < ns; ++s) {
      const int L = c.seqs[s].tokens;
      if (c.bits == 16) {
        EXPECT_EQ(TokenMajor<uint16_t>(*pdata[s], L, hkv, r), ref_f16[s]) << "paged fp16";
      } else {
        EXPECT_EQ(TokenMajor<uint8_t>(*pdata[s], L, hkv, row_bytes), ref_codes[s])
            << "paged codes";
        EXPECT_EQ(TokenMajor<uint16_t>(*pscale[s], L, hkv, 1), ref_scale[s]) << "paged scales";
        EXPECT_EQ(TokenMajor<uint16_t>(*pmin[s], L, hkv, 1), ref_min[s]) << "paged minimums";
      }
    }
  }

  // Scores, selection and attention, once with the cases' budgets and once with budgets
  // above the context (then Double Sparsity must equal dense attention).
  for (int full = 0; full < 2; ++full) {
    SCOPED_TRACE(full ? "full budget" : "case budget");
    std::vector<CudaDsSequence> seqs(ns);
    int budget_cap = 0;
    for (int s = 0; s < ns; ++s) {
      const SeqSpec& q = c.seqs[s];
      seqs[s].tokens = q.tokens;
      seqs[s].budget = full ? q.tokens + 5 : q.budget;
      seqs[s].sink = q.sink;
      seqs[s].recent = q.recent;
      seqs[s].q_row = s;
      seqs[s].kv_seq = s;
      seqs[s].aggregation = q.aggregation;
      budget_cap = std::max(budget_cap, std::min(std::max(seqs[s].budget, 1), q.tokens));
    }
    Buf dseqs(seqs.size() * sizeof(CudaDsSequence));
    dseqs.Put(seqs.data(), seqs.size() * sizeof(CudaDsSequence));
    const int64_t score_stride = max_tokens + 3;
    const int64_t sel_stride = budget_cap + 1;
    Buf dscores(static_cast<size_t>(ns) * hkv * score_stride * kScoreBytes);
    Buf dsel(static_cast<size_t>(ns) * hkv * sel_stride * 4), dcounts(ns * hkv * 4);
    Buf dtopk_ws(TopKSelectWorkspaceBytes(ns, hkv, score_stride));
    ASSERT_CUDA(cudaMemset(dtopk_ws.ptr, 0, dtopk_ws.bytes));
    // Every scoring body and every top-k kernel (kLabelScoreAlgos × kTopKAlgos): each scorer's
    // scores and each selector's sets are checked against the twins below; attention runs on
    // the last pair's selection.
    std::vector<std::vector<float>> algo_scores;
    std::vector<std::vector<int32_t>> algo_sel, algo_counts;
    std::vector<std::string> algo_names;
    // The coalesced bodies run twice where the labels share a fixed-kernel shape: with
    // label_bits 0 (the general kernel) and with UniformLabelBits (the fixed-shape kernels);
    // where the sequences also share their score heads (UniformScoreHeads), the fixed-shape
    // kernels run a third time with the score heads at run time (score_heads 0).
    const int uniform_bits = UniformLabelBits(labs.data(), ns, r);
    const int uniform_heads = UniformScoreHeads(seqs.data(), ns, hq, hkv);
    std::vector<std::string> score_names;
    // Scoring and top-k fused (LaunchScoreSelectCluster): it takes every fixed-row shape, and
    // must then select what the twins select; other shapes it declines, launching nothing.
    {
      ASSERT_CUDA(cudaMemset(dsel.ptr, 0xff, dsel.bytes));
      ASSERT_CUDA(cudaMemset(dcounts.ptr, 0xff, dcounts.bytes));
      const absl::StatusOr<bool> fused = LaunchScoreSelectCluster(
          c.dtype, dq.ptr, hq * d, dseqs.as<CudaDsSequence>(), ns, dlabs.as<CudaLabelSeq>(), hq,
          hkv, d, r, uniform_bits, uniform_heads, max_tokens, dsel.as<int32_t>(), sel_stride,
          dcounts.as<int32_t>(), nullptr);
      ASSERT_OK(fused.status());
      const bool fixed_shape =
          uniform_bits != 0 && (r == 8 || r == 16 || (c.bits == 4 && (r == 32 || r == 64)));
      EXPECT_EQ(*fused, fixed_shape) << "fused scorer and top-k, r " << r << " bits " << c.bits;
      if (*fused) {
        algo_sel.push_back(dsel.Get<int32_t>(static_cast<size_t>(ns) * hkv * sel_stride));
        algo_counts.push_back(dcounts.Get<int32_t>(ns * hkv));
        algo_names.push_back("fused scorer + cluster top-k");
      }
    }
    for (LabelScoreAlgo sa : kLabelScoreAlgos)
    for (int pass = 0; pass < 3; ++pass) {
      // (kRowPerThread has one kernel whatever label_bits and score_heads say.)
      if (pass > 0 && (uniform_bits == 0 || sa == LabelScoreAlgo::kRowPerThread)) continue;
      if (pass == 2 && uniform_heads == 0) continue;
      const int label_bits = pass == 0 ? 0 : uniform_bits;
      const int score_heads = pass == 1 ? uniform_heads : 0;
      ASSERT_CUDA(cudaMemset(dscores.ptr, 0xff, dscores.bytes));  // poison between bodies
      ASSERT_OK(LaunchLabelScores(c.dtype, dq.ptr, hq * d, dseqs.as<CudaDsSequence>(), ns,
                                  dlabs.as<CudaLabelSeq>(), hq, hkv, d, r, label_bits,
                                  score_heads, max_tokens, dscores.as<uint16_t>(), score_stride,
                                  nullptr, sa));
      // Stored as fp16 bits (the poison reads as NaN, which no twin score is).
      std::vector<float> got;
      for (uint16_t b : dscores.Get<uint16_t>(static_cast<size_t>(ns) * hkv * score_stride)) {
        got.push_back(F16ToF32(b));
      }
      algo_scores.push_back(std::move(got));
      score_names.push_back(absl::StrCat(AlgoName(sa), " label_bits ", label_bits,
                                         " score_heads ", score_heads));
      for (TopKAlgo ta : kTopKAlgos) {
        ASSERT_CUDA(cudaMemset(dsel.ptr, 0xff, dsel.bytes));
        ASSERT_CUDA(cudaMemset(dcounts.ptr, 0xff, dcounts.bytes));
        ASSERT_OK(LaunchTopKSelect(dscores.as<uint16_t>(), score_stride,
                                   dseqs.as<CudaDsSequence>(), ns, hkv, dsel.as<int32_t>(),
                                   sel_stride, dcounts.as<int32_t>(), nullptr, ta,
                                   dtopk_ws.ptr));
        algo_sel.push_back(dsel.Get<int32_t>(static_cast<size_t>(ns) * hkv * sel_stride));
        algo_counts.push_back(dcounts.Get<int32_t>(ns * hkv));
        algo_names.push_back(absl::StrCat(AlgoName(sa), " + ", AlgoName(ta)));
      }
    }
    // Attention with every body at its own split count, and kPipelined also at up to
    // budget_cap + 3 splits (every piece of a short selection at most one row, some empty);
    // the output poisoned before each launch.
    int sm = 0;
    ASSERT_CUDA(cudaDeviceGetAttribute(&sm, cudaDevAttrMultiProcessorCount, 0));
    std::vector<AttentionRun> attn_runs;
    for (SparseAttentionAlgo a : kSparseAttentionAlgos) {
      attn_runs.push_back({a, SparseAttentionSplits(ns, hkv, budget_cap, sm, a)});
    }
    attn_runs.push_back({SparseAttentionAlgo::kPipelined, std::min(budget_cap + 3, 256)});
    int most_splits = 1;
    for (const AttentionRun& run : attn_runs) most_splits = std::max(most_splits, run.splits);
    Buf dws(SparseAttentionWorkspaceFloats(ns, hq, d, most_splits) * 4);
    Buf dout(static_cast<size_t>(ns) * hq * d * 2);
    std::vector<std::vector<uint16_t>> attn_out;
    for (const AttentionRun& run : attn_runs) {
      ASSERT_CUDA(cudaMemset(dout.ptr, 0xff, dout.bytes));
      ASSERT_OK(LaunchSparseAttention(c.dtype, dq.ptr, hq * d, dseqs.as<CudaDsSequence>(), ns, hq,
                                      hkv, d, 1.0f / std::sqrt(float(d)), kv, dsel.as<int32_t>(),
                                      sel_stride, dcounts.as<int32_t>(), run.splits,
                                      dws.as<float>(), dout.ptr, hq * d, nullptr, run.algo));
      ASSERT_CUDA(cudaDeviceSynchronize());
      attn_out.push_back(dout.Get<uint16_t>(static_cast<size_t>(ns) * hq * d));
    }

    for (int s = 0; s < ns; ++s) {
      const int L = c.seqs[s].tokens;
      SCOPED_TRACE(absl::StrCat("sequence ", s));
      LabelScoreShape shape{hq, hkv, d, r,
                            seqs[s].aggregation ? ScoreAggregation::kMax : ScoreAggregation::kSum};
      std::vector<float> ref_scores(static_cast<size_t>(hkv) * L);
      const float* qs = q_f.data() + static_cast<size_t>(s) * hq * d;
      if (c.bits == 16) {
        LabelScoresF16Reference(qs, channels.data(), ref_f16[s].data(), hkv * r, L, shape,
                                ref_scores.data(), L);
      } else {
        LabelScores4BitReference(qs, channels.data(), ref_codes[s].data(), hkv * row_bytes,
                                 ref_scale[s].data(), ref_min[s].data(), L, shape,
                                 ref_scores.data(), L);
      }
      for (size_t a = 0; a < algo_scores.size(); ++a) {
        int64_t score_mismatch = 0;
        for (int h = 0; h < hkv; ++h) {
          for (int t = 0; t < L; ++t) {
            const float g = algo_scores[a][(static_cast<size_t>(s) * hkv + h) * score_stride + t];
            if (g != ref_scores[static_cast<size_t>(h) * L + t]) ++score_mismatch;
          }
        }
        EXPECT_EQ(score_mismatch, 0) << score_names[a] << " scores differ from the twin's";
      }
      // Selection: identical to the twin's over the twin's scores.
      std::vector<std::vector<int32_t>> sel(hkv);
      std::vector<const int32_t*> idx(hkv);
      std::vector<int64_t> counts(hkv);
      std::vector<int32_t> scratch(L);
      for (int h = 0; h < hkv; ++h) {
        sel[h].resize(L);
        const int64_t n =
            TopKSelectReference(ref_scores.data() + static_cast<size_t>(h) * L, L, seqs[s].budget,
                                seqs[s].sink, seqs[s].recent, scratch.data(), sel[h].data());
        sel[h].resize(n);
        idx[h] = sel[h].data();
        counts[h] = n;
        for (size_t a = 0; a < algo_sel.size(); ++a) {
          ASSERT_EQ(algo_counts[a][s * hkv + h], n) << algo_names[a] << ": count, head " << h;
          const int32_t* g = algo_sel[a].data() + (static_cast<size_t>(s) * hkv + h) * sel_stride;
          int64_t diff = 0;
          for (int64_t i = 0; i < n; ++i) diff += g[i] != sel[h][i];
          EXPECT_EQ(diff, 0) << algo_names[a] << ": selected set of head " << h << " (of " << n
                             << ")";
        }
      }
      // Attention over the (twin's) selection.
      PagedKvView<const float> view;
      view.k = k_f.data();
      view.v = v_f.data();
      view.block_table = tables.data() + s * max_blocks;
      view.block_tokens = kBlockTokens;
      view.kv_heads = hkv;
      view.head_dim = d;
      AttentionShape ashape{hq, hkv, d, 1.0f / std::sqrt(float(d))};
      std::vector<float> ref(static_cast<size_t>(hq) * d), got(ref.size());
      if (full) {
        const int32_t pos = L - 1;
        CausalAttentionReference(qs, hq * d, &pos, 1, view, ashape, ref.data(), hq * d);
      } else {
        SelectedAttentionReference(qs, view, ashape, idx.data(), counts.data(), ref.data());
      }
      for (size_t a = 0; a < attn_runs.size(); ++a) {
        for (size_t i = 0; i < got.size(); ++i) {
          got[i] = From16(c.dtype, attn_out[a][static_cast<size_t>(s) * hq * d + i]);
        }
        EXPECT_LE(RelErr(got, ref), Tolerance(c.dtype))
            << attn_runs[a].Name() << (full ? " vs dense" : " vs selected");
      }
    }
  }
}

// Budget choices cycle through: 1, sink+recent (kept only), ~L/16, ~L/8, L/2, >= L.
int BudgetFor(int L, int i) {
  switch (i % 6) {
    case 0:
      return 1;
    case 1:
      return 4 + 8;
    case 2:
      return std::max(1, L / 16);
    case 3:
      return std::max(1, L / 8);
    case 4:
      return std::max(1, L / 2);
    default:
      return L + 3;
  }
}

// Without a GPU (host logic only): the gate of the fixed-row scorers. A launch takes them only
// when every sequence has r == max_r, the same bits and 16-byte-aligned label data.
TEST(DoubleSparsityHost, UniformLabelBitsGatesTheFixedRowScorers) {
  alignas(16) static uint8_t storage[64];
  std::vector<CudaLabelSeq> labs(3);
  for (CudaLabelSeq& l : labs) {
    l.data = storage;
    l.r = 16;
    l.bits = 4;
  }
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 4);
  EXPECT_EQ(UniformLabelBits(labs.data(), 0, 16), 0);
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 32), 0);  // r below max_r
  labs[1].bits = 16;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // mixed bits
  EXPECT_EQ(UniformLabelBits(labs.data(), 1, 16), 4);
  labs[1].bits = 4;
  labs[2].r = 8;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // mixed r
  labs[2].r = 16;
  labs[2].data = storage + 8;
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 0);  // misaligned rows
  for (CudaLabelSeq& l : labs) {
    l.data = storage + 16;
    l.bits = 16;
  }
  EXPECT_EQ(UniformLabelBits(labs.data(), 3, 16), 16);
}

// Without a GPU: the score heads a launch compiles for. Sum aggregation folds one summed query
// per KV head, max one per query head; sequences that differ take them at run time (0), but
// with MHA both are one.
TEST(DoubleSparsityHost, UniformScoreHeadsFollowsTheAggregation) {
  std::vector<CudaDsSequence> seqs(3);
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 8), 1);  // all sum
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 0, 32, 8), 0);
  seqs[1].aggregation = 1;
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 8), 0);  // mixed
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 32, 32), 1);  // mixed, MHA
  EXPECT_EQ(UniformScoreHeads(seqs.data() + 1, 1, 32, 8), 4);  // max: the group
  for (CudaDsSequence& q : seqs) q.aggregation = 1;
  EXPECT_EQ(UniformScoreHeads(seqs.data(), 3, 16, 2), 8);
}

// Without a GPU: which top-k kernel kAuto runs (ResolveTopKAlgo), at the H200's 132 SMs where
// runs 9, 11, 14, 15 and 20 measured the crossovers. Past 8192 tokens: the resident kernel
// where the longest row fits its shared memory (run 20); past that the cluster kernel where
// TopKClusterBlocks finds it faster (run 29: up to 24 (sequence, KV head) pairs at any length
// to 256K, up to 66 at 64K), in as many blocks as run 29 measured best; the striped one-block
// kernel otherwise. Named bodies pass.
TEST(DoubleSparsityHost, AutoTopKRule) {
  constexpr int kSms = 132;
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 8192, 8, kSms), TopKAlgo::kStriped);  // short
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 8192, 8, kSms), TopKAlgo::kOneBlock);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 262144, 256, kSms), TopKAlgo::kCluster);
  for (TopKAlgo named : {TopKAlgo::kOneBlock, TopKAlgo::kTwoRead, TopKAlgo::kStriped,
                         TopKAlgo::kMultiBlock}) {
    EXPECT_EQ(ResolveTopKAlgo(named, 262144, 8, kSms), named);
  }
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 262144, 8, kSms), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 16, kSms), TopKAlgo::kCluster);
  // Rows that fit one block's shared memory (past 8192 tokens): the resident kernel, at any
  // number of pairs — also a graph step's bucket stride whose rows are shorter.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 16384, 8, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 8193, 16, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 32768 + 64, 64, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 32768, 256, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, kSms, 32768 + 64), TopKAlgo::kResident);
  // A row bound of 8K or fewer in a longer stride: the short rows' kernel (a named kCluster
  // still runs the cluster kernel, its slices for the bound).
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, kSms, 8192), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 8, kSms, 8192), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kCluster, 131072, 8, kSms, 4099), TopKAlgo::kCluster);
  // The cluster rule follows the row bound, not the stride: 16 pairs of rows bound at 64K in a
  // 128K stride take four-block clusters as the 64K stride's would; at 66 pairs two-block ones.
  EXPECT_EQ(TopKClusterBlocks(65536, 66, kSms), 2);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 66, kSms, 65536), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 131072, 66, kSms), TopKAlgo::kStriped);
  // The cluster kernel: 16K keys a block while the launch fits a block an SM, clusters of up
  // to 8 blocks while it fits 1.5 blocks an SM, two-block clusters at up to 64K keys and half
  // the SMs in pairs; past that kStriped (its two-block clusters up to half the SMs).
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 16, kSms, 60000), TopKAlgo::kCluster);
  struct Blocks {
    int64_t stride, pairs, blocks;  // blocks 0: kStriped
  };
  const Blocks rule[] = {
      {65536, 16, 4},   {65536, 24, 4},   {65536, 33, 4},   {65536, 48, 4},  {65536, 49, 4},
      {65536, 50, 2},   {65536, 64, 2},   {65536, 66, 2},   {65536, 67, 0},  {65536, 256, 0},
      {98304, 18, 6},   {131072, 16, 8},  {131072, 24, 8},  {131072, 25, 0}, {131072, 32, 0},
      {262144, 8, 16},  {262144, 9, 8},   {262144, 16, 8},  {262144, 24, 8}, {262144, 25, 0},
      {262144, 32, 0},
  };
  for (const Blocks& b : rule) {
    SCOPED_TRACE(absl::StrCat(b.stride, " keys, ", b.pairs, " pairs"));
    EXPECT_EQ(TopKClusterBlocks(b.stride, b.pairs, kSms), b.blocks);
    EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, b.stride, b.pairs, kSms, 1 << 20),
              b.blocks > 0 ? TopKAlgo::kCluster : TopKAlgo::kStriped);
  }
  // Named kResident where the longest row fits one block's shared memory, else the striped
  // kernel.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 32768 + 64, 64, kSms), TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 65536, 64, kSms), TopKAlgo::kStriped);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kResident, 65536, 64, kSms, 4099), TopKAlgo::kResident);
}

// Without a GPU: the row bound a graph step plans its top-k for (TopKRowBound): the longest row
// rounded up to a sixteenth of the bucket's stride (a multiple of 8), the stride itself where
// the resident kernel holds any row up to it, where the row is unknown (0) or not shorter.
TEST(DoubleSparsityHost, TopKRowBoundRoundsTheLongestRow) {
  EXPECT_EQ(TopKRowBound(32768, 20000), 32768);  // the resident kernel's stride
  EXPECT_EQ(TopKRowBound(524288, 262145), 294912);
  EXPECT_EQ(TopKRowBound(524288, 262144), 262144);
  EXPECT_EQ(TopKRowBound(524288, 491521), 524288);
  EXPECT_EQ(TopKRowBound(131072, 65537), 73728);
  EXPECT_EQ(TopKRowBound(131072, 0), 131072);
  EXPECT_EQ(TopKRowBound(131072, 200000), 131072);
  EXPECT_EQ(TopKRowBound(65600, 40000), 41040);  // steps of 4104 (4100 up to a multiple of 8)
  EXPECT_EQ(TopKRowBound(65536, 40000), 40960);
  // A bucket of 64K tokens whose rows are 40000 now: the resident kernel (its rows fit), where
  // the stride alone would take two-block clusters; at 16 pairs of 256K + 1 in a 512K bucket the
  // cluster kernel in 8-block clusters, as at 256K.
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, 132, TopKRowBound(65536, 40000)),
            TopKAlgo::kResident);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 65536, 64, 132), TopKAlgo::kCluster);
  EXPECT_EQ(ResolveTopKAlgo(TopKAlgo::kAuto, 524288, 16, 132, TopKRowBound(524288, 262145)),
            TopKAlgo::kCluster);
  EXPECT_EQ(TopKClusterBlocks(TopKRowBound(524288, 262145), 16, 132), 8);
}

// Without a GPU: the engine's fused-select rule (ScoreSelectClusterPays) — up to 2^18 rows of
// at most 8K tokens.
TEST(DoubleSparsityHost, FusedSelectRule) {
  EXPECT_TRUE(ScoreSelectClusterPays(4096, 32));     // Llama-2 heads, batch 1, 4K
  EXPECT_TRUE(ScoreSelectClusterPays(8192, 8));      // Llama-3 heads, batch 1, 8K
  EXPECT_FALSE(ScoreSelectClusterPays(16384, 8));    // past 8K: the resident top-k (run 20)
  EXPECT_TRUE(ScoreSelectClusterPays(4096, 64));     // Llama-3 heads, batch 8, 4K
  EXPECT_FALSE(ScoreSelectClusterPays(16384, 32));   // Llama-2 heads, batch 1, 16K
  EXPECT_FALSE(ScoreSelectClusterPays(262144, 256));
}

// Without a GPU: a selection's sequences as runs of one label shape (SetJobSequences) and the
// scorer launches they make (ScoreLaunches): a launch per run, with the run's r, label bits and
// score heads, cut to the sequences asked for (a split chain's halves); one launch with the
// job's own arguments where every label has one shape.
TEST(DoubleSparsityHost, ScoreLaunchesFollowTheLabelShapes) {
  auto label = [](int bits, int r) {
    CudaLabelSeq l;
    l.bits = bits;
    l.r = r;
    l.data = reinterpret_cast<void*>(uintptr_t{4096});  // 16-byte aligned, never read
    return l;
  };
  auto fields = [](const LabelShapeRun& l) {
    return std::make_tuple(l.first, l.count, l.r, l.label_bits, l.score_heads);
  };
  std::vector<CudaDsSequence> seqs(5);
  for (CudaDsSequence& s : seqs) s.tokens = 1000;
  seqs[4].aggregation = 1;  // max beside sum: score heads at run time in that run
  const std::vector<CudaLabelSeq> labels = {label(4, 8), label(4, 8), label(16, 16), label(16, 16),
                                            label(16, 16)};
  ScoreSelectJob job;
  job.heads_q = 32;
  job.heads_kv = 8;
  SetJobSequences(labels, seqs, DeviceLabelDescriptors{}, job);
  EXPECT_EQ(job.label_bits, 0);  // no one fixed-row kernel takes them all
  ASSERT_EQ(job.shape_runs.size(), 2u);
  const std::vector<LabelShapeRun> all = ScoreLaunches(job, 0, 5);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fields(all[0]), std::make_tuple(0, 2, 8, 4, 1));
  EXPECT_EQ(fields(all[1]), std::make_tuple(2, 3, 16, 16, 0));
  const std::vector<LabelShapeRun> middle = ScoreLaunches(job, 1, 3);  // sequences 1..3
  ASSERT_EQ(middle.size(), 2u);
  EXPECT_EQ(std::make_pair(middle[0].first, middle[0].count), std::make_pair(1, 1));
  EXPECT_EQ(std::make_pair(middle[1].first, middle[1].count), std::make_pair(2, 2));
  EXPECT_EQ(ScoreLaunches(job, 3, 2).size(), 1u);

  const std::vector<CudaLabelSeq> alike(3, label(16, 8));
  seqs.resize(3);
  SetJobSequences(alike, seqs, DeviceLabelDescriptors{}, job);
  ASSERT_EQ(job.shape_runs.size(), 1u);
  const std::vector<LabelShapeRun> one = ScoreLaunches(job, 0, 3);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(fields(one[0]), std::make_tuple(0, 3, 8, 16, 1));
}

// The RoPE kernel writing each decode row's labels (LaunchRopeStoreKv with labels): sequences
// of `lengths` tokens in a shuffled paged pool, one decode row each at its last position.
// The rotated q and the pool equal the launch without labels bit for bit; each sequence's
// label rows at its position equal the twins' on the stored keys, and no other row is touched
// (the label buffers start poisoned).
// lengths: one decode row per sequence at that context; the last sequence's label view has
// r 0 (a dense sequence beside sparse ones), so its label rows must stay untouched.
void ExpectRopeLabelsMatchTwins(DType dtype, int heads_q, int heads_kv, int d, int r, int bits,
                                const std::vector<int>& lengths) {
  SCOPED_TRACE(absl::StrCat(dtype == DType::kBF16 ? "bf16" : "fp16", " hq", heads_q, " hkv",
                            heads_kv, " d", d, " r", r, " bits", bits));
  ASSERT_TRUE(RopeWritesLabels(d));
  const int ns = static_cast<int>(lengths.size()), hkv = heads_kv;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int max_blocks = 0, total_blocks = 0;
  for (int L : lengths) {
    max_blocks = std::max(max_blocks, (L + kBlockTokens - 1) / kBlockTokens);
    total_blocks += (L + kBlockTokens - 1) / kBlockTokens;
  }
  std::vector<int32_t> perm(total_blocks), tables(static_cast<size_t>(ns) * max_blocks, 0);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), Rng());
  for (int s = 0, next = 0; s < ns; ++s) {
    for (int b = 0; b < (lengths[s] + kBlockTokens - 1) / kBlockTokens; ++b) {
      tables[s * max_blocks + b] = perm[next++];
    }
  }
  const size_t pool_elems = static_cast<size_t>(total_blocks) * kBlockTokens * hkv * d;
  std::vector<uint16_t> pool_raw(pool_elems);
  for (uint16_t& x : pool_raw) x = To16(dtype, u(Rng()));
  const int64_t stride = static_cast<int64_t>(heads_q + 2 * hkv) * d;
  std::vector<uint16_t> qkv_raw(static_cast<size_t>(ns) * stride);
  for (uint16_t& x : qkv_raw) x = To16(dtype, u(Rng()));
  std::vector<int32_t> channels(static_cast<size_t>(hkv) * r), pos(ns), seq(ns);
  for (int h = 0; h < hkv; ++h) {
    std::vector<int32_t> all(d);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), Rng());
    std::copy(all.begin(), all.begin() + r, channels.begin() + h * r);
  }
  for (int s = 0; s < ns; ++s) {
    pos[s] = lengths[s] - 1;
    seq[s] = s;
  }
  RopeParams rope;
  rope.theta = 500000.0;
  const std::vector<float> inv = ComputeRopeInvFreq(rope, d);
  Buf dtables(tables.size() * 4), dch(channels.size() * 4), dpos(ns * 4), dseq(ns * 4),
      dinv(inv.size() * 4);
  dtables.Put(tables.data(), tables.size() * 4);
  dch.Put(channels.data(), channels.size() * 4);
  dpos.Put(pos.data(), ns * 4);
  dseq.Put(seq.data(), ns * 4);
  dinv.Put(inv.data(), inv.size() * 4);
  const CudaBatchRows rows{dpos.as<int32_t>(), dseq.as<int32_t>(), ns};
  // Run 0 without labels, run 1 with them, each on its own copy of the pool and of qkv.
  const int row_bytes = bits == 16 ? 2 * r : static_cast<int>(Label4BitRowBytes(r));
  std::vector<std::unique_ptr<Buf>> lab_data, lab_scale, lab_min;
  std::vector<CudaLabelSeq> labs(ns);
  for (int s = 0; s < ns; ++s) {
    const size_t stored_rows = static_cast<size_t>(LabelCapacity(lengths[s])) * hkv;
    lab_data.push_back(std::make_unique<Buf>(stored_rows * row_bytes));
    lab_scale.push_back(std::make_unique<Buf>(stored_rows * 2));
    lab_min.push_back(std::make_unique<Buf>(stored_rows * 2));
    labs[s] = CudaLabelSeq{lab_data[s]->ptr, lab_scale[s]->as<uint16_t>(),
                           lab_min[s]->as<uint16_t>(), dch.as<int32_t>(), s + 1 < ns ? r : 0,
                           bits};
  }
  Buf dlabs(labs.size() * sizeof(CudaLabelSeq));
  dlabs.Put(labs.data(), labs.size() * sizeof(CudaLabelSeq));
  std::vector<uint16_t> out_qkv[2], out_k[2], out_v[2];
  for (int run = 0; run < 2; ++run) {
    Buf dk(pool_elems * 2), dv(pool_elems * 2), dqkv(qkv_raw.size() * 2);
    dk.Put(pool_raw.data(), pool_elems * 2);
    dv.Put(pool_raw.data(), pool_elems * 2);
    dqkv.Put(qkv_raw.data(), qkv_raw.size() * 2);
    const CudaPagedKv kv{dk.ptr, dv.ptr, dtables.as<int32_t>(), max_blocks, kBlockTokens, hkv, d};
    ASSERT_OK(LaunchRopeStoreKv(dtype, dqkv.ptr, stride, rows, heads_q, hkv, d, dinv.as<float>(),
                                kv, nullptr, run == 1 ? dlabs.as<CudaLabelSeq>() : nullptr));
    out_qkv[run] = dqkv.Get<uint16_t>(qkv_raw.size());
    out_k[run] = dk.Get<uint16_t>(pool_elems);
    out_v[run] = dv.Get<uint16_t>(pool_elems);
  }
  EXPECT_EQ(out_qkv[1], out_qkv[0]) << "rotated qkv";
  EXPECT_EQ(out_k[1], out_k[0]) << "pool k";
  EXPECT_EQ(out_v[1], out_v[0]) << "pool v";
  {
    const std::vector<uint8_t> untouched = lab_data[ns - 1]->Get<uint8_t>(lab_data[ns - 1]->bytes);
    EXPECT_EQ(std::count(untouched.begin(), untouched.end(), uint8_t{0xff}),
              static_cast<std::ptrdiff_t>(untouched.size()))
        << "a sequence whose label view has r 0 got labels";
  }
  for (int s = 0; s + 1 < ns; ++s) {
    const int L = lengths[s];
    // The stored keys of the decode row's position, [hkv, d], and the twins' labels of them.
    const size_t slot =
        (static_cast<size_t>(tables[s * max_blocks + pos[s] / kBlockTokens]) * kBlockTokens +
         pos[s] % kBlockTokens) *
        hkv * d;
    std::vector<float> keys(static_cast<size_t>(hkv) * d);
    for (size_t j = 0; j < keys.size(); ++j) keys[j] = From16(dtype, out_k[1][slot + j]);
    const size_t rows_before = static_cast<size_t>(L - 1) * hkv;
    if (bits == 16) {
      std::vector<uint16_t> want(static_cast<size_t>(hkv) * r);
      WriteLabelsF16Reference(keys.data(), hkv * d, 1, hkv, d, channels.data(), r, want.data(),
                              hkv * r);
      const std::vector<uint16_t> got = TokenMajor<uint16_t>(*lab_data[s], L, hkv, r);
      EXPECT_EQ(std::vector<uint16_t>(got.begin() + rows_before * r, got.end()), want)
          << "fp16 labels, sequence " << s;
      EXPECT_EQ(std::count(got.begin(), got.begin() + rows_before * r, uint16_t{0xffff}),
                static_cast<std::ptrdiff_t>(rows_before * r))
          << "other tokens' rows touched";
    } else {
      std::vector<uint8_t> want_codes(static_cast<size_t>(hkv) * row_bytes);
      std::vector<uint16_t> want_scale(hkv), want_min(hkv);
      WriteLabels4BitReference(keys.data(), hkv * d, 1, hkv, d, channels.data(), r,
                               want_codes.data(), hkv * row_bytes, want_scale.data(),
                               want_min.data());
      const std::vector<uint8_t> codes = TokenMajor<uint8_t>(*lab_data[s], L, hkv, row_bytes);
      const std::vector<uint16_t> scales = TokenMajor<uint16_t>(*lab_scale[s], L, hkv, 1);
      const std::vector<uint16_t> mins = TokenMajor<uint16_t>(*lab_min[s], L, hkv, 1);
      EXPECT_EQ(std::vector<uint8_t>(codes.begin() + rows_before * row_bytes, codes.end()),
                want_codes)
          << "codes, sequence " << s;
      EXPECT_EQ(std::vector<uint16_t>(scales.begin() + rows_before, scales.end()), want_scale)
          << "scales, sequence " << s;
      EXPECT_EQ(std::vector<uint16_t>(mins.begin() + rows_before, mins.end()), want_min)
          << "minimums, sequence " << s;
      EXPECT_EQ(std::count(scales.begin(), scales.begin() + rows_before, uint16_t{0xffff}),
                static_cast<std::ptrdiff_t>(rows_before))
          << "other tokens' rows touched";
    }
  }
}

TEST(DoubleSparsityGpu, RopeWritesTheDecodeRowsLabels) {
  SKIP_WITHOUT_GPU();
  const int gqa[][2] = {{4, 4}, {8, 2}, {32, 8}};  // groups 1, 4, 4 at Llama-3 heads
  int i = 0;
  for (auto& g : gqa) {
    for (int d : {64, 128}) {
      for (int bits : {16, 4}) {
        const DType dtype = i % 2 ? DType::kF16 : DType::kBF16;
        const int r16[] = {7, 8, 16}, r4[] = {7, 16, 32, d};
        const int r = bits == 16 ? r16[i % 3] : r4[i % 4];
        ExpectRopeLabelsMatchTwins(dtype, g[0], g[1], d, r, bits, {1, 130, 17 + i, 40});
        ++i;
      }
    }
  }
}

// One backend's channel sets serve models of other heads in turn (dsinfer-bench times several
// models on one backend): each upload holds its own shape's channels, the device copy grown
// where the set grew (no channel config here: r = head_dim takes every channel in order).
TEST(DoubleSparsityGpu, ChannelSetsFollowTheHeads) {
  SKIP_WITHOUT_GPU();
  constexpr int kHeadDim = 16;
  DeviceChannelSets sets;
  const int heads[][2] = {{32, 8}, {32, 32}, {32, 8}, {8, 8}};  // (query, KV) heads
  for (const auto& hh : heads) {
    SCOPED_TRACE(absl::StrCat("heads ", hh[0], " / ", hh[1]));
    DoubleSparsity ds(/*layers=*/2, hh[0], hh[1], kHeadDim, LabelStorage::kAccountingOnly);
    const absl::StatusOr<const DeviceChannelSet*> set =
        sets.Upload(ds, ChannelStatistic::kQK, /*layer=*/1, hh[0], hh[1], /*r=*/kHeadDim,
                    kHeadDim, nullptr);
    ASSERT_OK(set.status());
    const size_t n = static_cast<size_t>(hh[1]) * kHeadDim;
    ASSERT_EQ((*set)->host.size(), n);
    std::vector<int32_t> got(n, -1);
    ASSERT_CUDA(cudaMemcpy(got.data(), (*set)->dev, n * 4, cudaMemcpyDeviceToHost));
    for (size_t j = 0; j < n; ++j) {
      ASSERT_EQ(got[j], static_cast<int32_t>(j % kHeadDim)) << "channel " << j;
      ASSERT_EQ((*set)->host[j], got[j]);
    }
  }
}

// A sequence's device labels keep their labelled prefix while they grow, and drop it when the
// id meets another shape (a pool of another model numbering its sequences from 0 again, as in
// dsinfer-bench): the block is then allocated for the new shape, nothing counted as written.
TEST(DoubleSparsityGpu, DeviceLabelsFollowTheShape) {
  SKIP_WITHOUT_GPU();
  LabelFormat fp16;
  fp16.bits = 16;
  fp16.r = 8;
  DeviceLabels labels;
  ASSERT_OK(labels.Reserve(fp16, 300, 0, /*layers=*/2, /*kv_heads=*/8, nullptr));
  EXPECT_EQ(labels.kv_heads, 8);
  labels.written = {300, 120};
  void* const first = labels.base;
  ASSERT_OK(labels.Reserve(fp16, 200, 0, 2, 8, nullptr));  // fits: nothing changes
  EXPECT_EQ(labels.base, first);
  EXPECT_EQ(labels.written, (std::vector<int64_t>{300, 120}));
  const int64_t grown_to = labels.capacity + 1;
  ASSERT_OK(labels.Reserve(fp16, grown_to, 0, 2, 8, nullptr));  // grows, prefix kept
  EXPECT_GE(labels.capacity, grown_to);
  EXPECT_EQ(labels.written, (std::vector<int64_t>{300, 120}));
  for (const auto& [layers, kv_heads] : {std::pair{2, 32}, std::pair{3, 32}}) {
    SCOPED_TRACE(absl::StrCat(layers, " layers, ", kv_heads, " KV heads"));
    labels.written.assign(labels.written.size(), 100);
    ASSERT_OK(labels.Reserve(fp16, 100, 0, layers, kv_heads, nullptr));
    EXPECT_EQ(labels.layers, layers);
    EXPECT_EQ(labels.kv_heads, kv_heads);
    EXPECT_EQ(labels.written, std::vector<int64_t>(layers, 0));
    // The whole block of the new shape is writable and reads back.
    const size_t bytes = labels.LayerBytes(kv_heads) * layers;
    std::vector<uint8_t> pattern(bytes), back(bytes, 0);
    for (size_t i = 0; i < bytes; ++i) pattern[i] = static_cast<uint8_t>(i * 131 + 7);
    ASSERT_CUDA(cudaMemcpy(labels.base, pattern.data(), bytes, cudaMemcpyHostToDevice));
    ASSERT_CUDA(cudaMemcpy(back.data(), labels.base, bytes, cudaMemcpyDeviceToHost));
    ASSERT_EQ(back, pattern);
  }
  ASSERT_CUDA(cudaFree(labels.base));
}

TEST(DoubleSparsityGpu, ChainMatchesTwinsSmallSweep) {
  SKIP_WITHOUT_GPU();
  const int gqa[][2] = {{4, 4}, {8, 2}, {16, 2}};  // groups 1, 4, 8
  int i = 0;
  for (int L : {1, 7, 97, 4099}) {
    for (auto& g : gqa) {
      for (int d : {64, 128}) {
        for (int bits : {16, 4}) {
          Case c;
          c.dtype = i % 2 ? DType::kF16 : DType::kBF16;
          c.heads_q = g[0];
          c.heads_kv = g[1];
          c.head_dim = d;
          // r: the general path (7) and every fixed-row fast path (fp16 8 / 16; 4-bit 8 / 16 /
          // 32 / 64, the 4-bit r stepping with each case and each length, i / 12, so that every
          // r meets every GQA group).
          const int r4[] = {7, 8, 16, 32, d == 128 ? 64 : 16};
          c.r = bits == 4 ? r4[(i / 2 + i / 12) % 5] : (i % 3 == 0 ? 7 : (d == 64 ? 8 : 16));
          c.bits = bits;
          // Aggregation: both sequences sum, both max, or one of each (stepping with the case
          // so that every GQA group meets every mode at both label widths): shared modes run
          // the fixed-row kernels at compile-time score heads, mixed ones at run time.
          const int mode = (i / 2 + i / 12 + 2 * (i / 24)) % 3;
          const int agg1 = mode == 2 ? i % 2 : mode, agg2 = mode == 2 ? 1 - i % 2 : mode;
          c.seqs.push_back({L, BudgetFor(L, i), 4, 8, agg1});
          const int L2 = std::max(1, L / 3 + (i % 5));
          c.seqs.push_back({L2, BudgetFor(L2, i + 2), i % 3, 1 + i % 7, agg2});
          c.mapped_kv = (i == 13);
          RunCase(c);
          ++i;
        }
      }
    }
  }
}

TEST(DoubleSparsityGpu, ChainMatchesTwinsLong) {
  SKIP_WITHOUT_GPU();
  // 65537 tokens: GQA 4 / fp16 labels r 16 at 1/16; MHA / 4-bit r 32 at 1/8.
  RunCase(Case{
      DType::kBF16, 8, 2, 128, 16, 16, {{65537, 65537 / 16, 4, 64, 0}, {3001, 200, 4, 64, 1}}});
  RunCase(Case{DType::kF16, 2, 2, 64, 32, 4, {{65537, 65537 / 8, 4, 64, 1}}});
  // GQA 2 / 4-bit r 16 (8-byte code rows) at 1/16.
  RunCase(
      Case{DType::kF16, 4, 2, 64, 16, 4, {{65537, 65537 / 16, 4, 64, 1}, {4099, 300, 4, 64, 0}}});
  // ~300K tokens, GQA 8, fp16 labels r 8, k = L/16.
  RunCase(Case{DType::kBF16, 16, 2, 128, 8, 16, {{300001, 300001 / 16, 4, 64, 0}}});
}

// Many KV heads (16 and 32): the fixed-row scorers' warps keep one KV head across their runs
// only where the strided grid is rounded to whole spans of heads (FixedScoreBlocks; at most 8
// heads every grid is one), and at 65537 tokens each warp scores several runs. 4-bit r 8 and
// r 16 at MHA heads, fp16 r 8 at GQA 2 with one sequence of each aggregation (the score heads
// at run time).
TEST(DoubleSparsityGpu, ChainMatchesTwinsManyKvHeads) {
  SKIP_WITHOUT_GPU();
  RunCase(Case{
      DType::kF16, 32, 32, 64, 8, 4, {{65537, 65537 / 16, 4, 64, 0}, {4099, 300, 4, 64, 0}}});
  RunCase(Case{DType::kF16, 32, 32, 64, 16, 4, {{9001, 9001 / 8, 4, 64, 1}}});
  RunCase(
      Case{DType::kBF16, 32, 16, 64, 8, 16, {{20011, 20011 / 16, 4, 64, 0}, {97, 20, 2, 8, 1}}});
}

// The fused scorer and top-k against the twins on ties, fp16 labels r 8 written straight into
// the paged layout, GQA 4, two sequences (70001 and 9000 tokens, budgets L/16, a cluster of up
// to 16 blocks): continuous labels, labels of {0, 1} (256 distinct scores a head, ~270 ties
// each, ties across the blocks at the boundary) and one constant label (every score tied: the
// first sink-free candidates win). Identical sets, ties lowest index first.
TEST(DoubleSparsityGpu, FusedSelectMatchesTwinsOnTies) {
  SKIP_WITHOUT_GPU();
  constexpr int kHq = 8, kHkv = 2, kD = 64, kR = 8;
  const int lengths[] = {70001, 9000};
  constexpr int kSeqs = 2;
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<int32_t> channels(kHkv * kR);
  for (int h = 0; h < kHkv; ++h) {
    for (int j = 0; j < kR; ++j) channels[h * kR + j] = (7 * j + 3 * h) % kD;
  }
  std::vector<uint16_t> q_raw(kSeqs * kHq * kD);
  std::vector<float> q_f(q_raw.size());
  for (size_t i = 0; i < q_raw.size(); ++i) {
    q_raw[i] = F32ToF16(u(Rng()));
    q_f[i] = F16ToF32(q_raw[i]);
  }
  Buf dq(q_raw.size() * 2), dch(channels.size() * 4);
  dq.Put(q_raw.data(), q_raw.size() * 2);
  dch.Put(channels.data(), channels.size() * 4);
  for (int kind = 0; kind < 3; ++kind) {
    SCOPED_TRACE(kind == 0 ? "continuous labels" : kind == 1 ? "labels of {0, 1}" : "constant");
    std::vector<std::vector<uint16_t>> token_major(kSeqs);
    std::vector<std::unique_ptr<Buf>> data;
    std::vector<CudaLabelSeq> labs(kSeqs);
    std::vector<CudaDsSequence> seqs(kSeqs);
    int max_budget = 0;
    for (int s = 0; s < kSeqs; ++s) {
      const int L = lengths[s];
      token_major[s].resize(static_cast<size_t>(L) * kHkv * kR);
      for (uint16_t& v : token_major[s]) {
        v = F32ToF16(kind == 0 ? u(Rng()) : kind == 1 ? static_cast<float>(Rng()() % 2) : 0.5f);
      }
      std::vector<uint16_t> paged(static_cast<size_t>(LabelCapacity(L)) * kHkv * kR, 0x7fff);
      for (int t = 0; t < L; ++t) {
        for (int h = 0; h < kHkv; ++h) {
          std::copy_n(token_major[s].begin() + (static_cast<size_t>(t) * kHkv + h) * kR, kR,
                      paged.begin() + static_cast<size_t>(LabelRow(t, h, kHkv)) * kR);
        }
      }
      data.push_back(std::make_unique<Buf>(paged.size() * 2));
      data.back()->Put(paged.data(), paged.size() * 2);
      labs[s].data = data.back()->ptr;
      labs[s].channels = dch.as<int32_t>();
      labs[s].r = kR;
      labs[s].bits = 16;
      seqs[s].tokens = L;
      seqs[s].budget = L / 16;
      seqs[s].sink = 4;
      seqs[s].recent = 64;
      seqs[s].q_row = s;
      seqs[s].kv_seq = s;
      max_budget = std::max(max_budget, L / 16);
    }
    Buf dlabs(kSeqs * sizeof(CudaLabelSeq)), dseqs(kSeqs * sizeof(CudaDsSequence));
    dlabs.Put(labs.data(), kSeqs * sizeof(CudaLabelSeq));
    dseqs.Put(seqs.data(), kSeqs * sizeof(CudaDsSequence));
    const int64_t sel_stride = max_budget + 1;
    Buf dsel(static_cast<size_t>(kSeqs) * kHkv * sel_stride * 4), dcounts(kSeqs * kHkv * 4);
    const absl::StatusOr<bool> fused = LaunchScoreSelectCluster(
        DType::kF16, dq.ptr, kHq * kD, dseqs.as<CudaDsSequence>(), kSeqs,
        dlabs.as<CudaLabelSeq>(), kHq, kHkv, kD, kR, 16,
        UniformScoreHeads(seqs.data(), kSeqs, kHq, kHkv), lengths[0], dsel.as<int32_t>(),
        sel_stride, dcounts.as<int32_t>(), nullptr);
    ASSERT_OK(fused.status());
    ASSERT_TRUE(*fused);
    const std::vector<int32_t> got = dsel.Get<int32_t>(static_cast<size_t>(kSeqs) * kHkv *
                                                       sel_stride);
    const std::vector<int32_t> counts = dcounts.Get<int32_t>(kSeqs * kHkv);
    for (int s = 0; s < kSeqs; ++s) {
      const int L = lengths[s];
      std::vector<float> ref_scores(static_cast<size_t>(kHkv) * L);
      LabelScoresF16Reference(q_f.data() + static_cast<size_t>(s) * kHq * kD, channels.data(),
                              token_major[s].data(), kHkv * kR, L,
                              LabelScoreShape{kHq, kHkv, kD, kR, ScoreAggregation::kSum},
                              ref_scores.data(), L);
      std::vector<int32_t> want(L), scratch(L);
      for (int h = 0; h < kHkv; ++h) {
        const int64_t n = TopKSelectReference(ref_scores.data() + static_cast<size_t>(h) * L, L,
                                              seqs[s].budget, seqs[s].sink, seqs[s].recent,
                                              scratch.data(), want.data());
        ASSERT_EQ(counts[s * kHkv + h], n) << "sequence " << s << " head " << h;
        const int32_t* g = got.data() + (static_cast<size_t>(s) * kHkv + h) * sel_stride;
        int64_t diff = 0;
        for (int64_t i = 0; i < n; ++i) diff += g[i] != want[i];
        EXPECT_EQ(diff, 0) << "sequence " << s << " head " << h << " (of " << n << ")";
      }
    }
  }
}

// Sparse attention alone on hand-made selections, every body: per (sequence, KV head) 0 rows
// (the output must be 0, the twin's empty sum, not NaN), 1, 17 and 40, at 1, 3 and 64 splits
// (more splits than rows: empty pieces); GQA 1 / 4 / 8, head_dim 64 / 128, bf16 and fp16;
// sequence s reads q / writes out row (s + 1) % 2 and block table (s + 1) % 2.
TEST(DoubleSparsityGpu, SparseAttentionShortAndEmptySelections) {
  SKIP_WITHOUT_GPU();
  constexpr int kTokens = 50, kSeqs = 2, kHeadsKv = 2, kSelStride = 41;
  const int counts_of[kSeqs][kHeadsKv] = {{0, 17}, {40, 1}};
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (int group : {1, 4, 8}) {
      for (int d : {64, 128}) {
        const int hq = kHeadsKv * group;
        SCOPED_TRACE(
            absl::StrCat(dtype == DType::kBF16 ? "bf16" : "fp16", " group ", group, " d ", d));
        const int blocks_per_seq = (kTokens + kBlockTokens - 1) / kBlockTokens;
        std::vector<int32_t> tables(kSeqs * blocks_per_seq);
        std::iota(tables.begin(), tables.end(), 0);
        std::shuffle(tables.begin(), tables.end(), Rng());
        const size_t pool_elems = tables.size() * kBlockTokens * kHeadsKv * d;
        std::vector<uint16_t> k_raw(pool_elems), v_raw(pool_elems), q_raw(kSeqs * hq * d);
        std::vector<float> k_f(pool_elems), v_f(pool_elems), q_f(q_raw.size());
        for (size_t i = 0; i < pool_elems; ++i) {
          k_raw[i] = To16(dtype, u(Rng()));
          k_f[i] = From16(dtype, k_raw[i]);
          v_raw[i] = To16(dtype, u(Rng()));
          v_f[i] = From16(dtype, v_raw[i]);
        }
        for (size_t i = 0; i < q_raw.size(); ++i) {
          q_raw[i] = To16(dtype, 3.0f * u(Rng()));
          q_f[i] = From16(dtype, q_raw[i]);
        }
        std::vector<CudaDsSequence> seqs(kSeqs);
        std::vector<int32_t> sel(kSeqs * kHeadsKv * kSelStride, -1), counts(kSeqs * kHeadsKv);
        for (int s = 0; s < kSeqs; ++s) {
          seqs[s].tokens = kTokens;
          seqs[s].budget = kSelStride;
          seqs[s].q_row = (s + 1) % kSeqs;
          seqs[s].kv_seq = (s + 1) % kSeqs;
          for (int h = 0; h < kHeadsKv; ++h) {
            std::vector<int32_t> all(kTokens);
            std::iota(all.begin(), all.end(), 0);
            std::shuffle(all.begin(), all.end(), Rng());
            const int n = counts_of[s][h];
            std::sort(all.begin(), all.begin() + n);
            std::copy(all.begin(), all.begin() + n, sel.begin() + (s * kHeadsKv + h) * kSelStride);
            counts[s * kHeadsKv + h] = n;
          }
        }
        Buf dk(pool_elems * 2), dv(pool_elems * 2), dq(q_raw.size() * 2);
        Buf dtables(tables.size() * 4), dseqs(kSeqs * sizeof(CudaDsSequence));
        Buf dsel(sel.size() * 4), dcounts(counts.size() * 4), dout(q_raw.size() * 2);
        dk.Put(k_raw.data(), pool_elems * 2);
        dv.Put(v_raw.data(), pool_elems * 2);
        dq.Put(q_raw.data(), q_raw.size() * 2);
        dtables.Put(tables.data(), tables.size() * 4);
        dseqs.Put(seqs.data(), kSeqs * sizeof(CudaDsSequence));
        dsel.Put(sel.data(), sel.size() * 4);
        dcounts.Put(counts.data(), counts.size() * 4);
        const CudaPagedKv kv{dk.ptr, dv.ptr, dtables.as<int32_t>(), blocks_per_seq,
                             kBlockTokens, kHeadsKv, d};
        const float scale = 1.0f / std::sqrt(float(d));
        for (SparseAttentionAlgo algo : kSparseAttentionAlgos) {
          for (int splits : {1, 3, 64}) {
            const AttentionRun run{algo, splits};
            SCOPED_TRACE(run.Name());
            Buf dws(SparseAttentionWorkspaceFloats(kSeqs, hq, d, splits) * 4);
            ASSERT_CUDA(cudaMemset(dout.ptr, 0xff, dout.bytes));
            ASSERT_OK(LaunchSparseAttention(dtype, dq.ptr, hq * d, dseqs.as<CudaDsSequence>(),
                                            kSeqs, hq, kHeadsKv, d, scale, kv, dsel.as<int32_t>(),
                                            kSelStride, dcounts.as<int32_t>(), splits,
                                            dws.as<float>(), dout.ptr, hq * d, nullptr, algo));
            const auto out_raw = dout.Get<uint16_t>(q_raw.size());
            for (int s = 0; s < kSeqs; ++s) {
              const int row = seqs[s].q_row;
              PagedKvView<const float> view;
              view.k = k_f.data();
              view.v = v_f.data();
              view.block_table = tables.data() + seqs[s].kv_seq * blocks_per_seq;
              view.block_tokens = kBlockTokens;
              view.kv_heads = kHeadsKv;
              view.head_dim = d;
              std::vector<const int32_t*> idx(kHeadsKv);
              std::vector<int64_t> n(kHeadsKv);
              for (int h = 0; h < kHeadsKv; ++h) {
                idx[h] = sel.data() + (s * kHeadsKv + h) * kSelStride;
                n[h] = counts[s * kHeadsKv + h];
              }
              std::vector<float> ref(static_cast<size_t>(hq) * d), got(ref.size());
              SelectedAttentionReference(q_f.data() + static_cast<size_t>(row) * hq * d, view,
                                         AttentionShape{hq, kHeadsKv, d, scale}, idx.data(),
                                         n.data(), ref.data());
              for (size_t i = 0; i < got.size(); ++i) {
                got[i] = From16(dtype, out_raw[static_cast<size_t>(row) * hq * d + i]);
              }
              EXPECT_LE(RelErr(got, ref), Tolerance(dtype)) << "sequence " << s;
              for (int h = 0; h < kHeadsKv; ++h) {
                if (n[h] != 0) continue;
                for (int i = h * group * d; i < (h + 1) * group * d; ++i) {
                  ASSERT_EQ(got[i], 0.0f) << "empty selection, sequence " << s << " head " << h;
                }
              }
            }
          }
        }
      }
    }
  }
}

// A top-k test's device buffers: the fp16 score rows `bits` ((sequence, KV head) pairs in
// order), the sequences of `specs` (tokens, budget, kept tokens), and the selections (rows of
// sel_stride, two past the largest selection) and counts the launches write.
struct TopKBuffers {
  TopKBuffers(const std::vector<SeqSpec>& specs, int hkv, const std::vector<uint16_t>& bits)
      : ns(static_cast<int>(specs.size())),
        sel_stride(LargestSelection(specs) + 2),
        dscores(bits.size() * kScoreBytes),
        dseqs(ns * sizeof(CudaDsSequence)),
        dsel(static_cast<size_t>(ns) * hkv * sel_stride * 4),
        dcounts(ns * hkv * 4) {
    std::vector<CudaDsSequence> seqs(ns);
    for (int s = 0; s < ns; ++s) {
      seqs[s].tokens = specs[s].tokens;
      seqs[s].budget = specs[s].budget;
      seqs[s].sink = specs[s].sink;
      seqs[s].recent = specs[s].recent;
    }
    dscores.Put(bits.data(), bits.size() * kScoreBytes);
    dseqs.Put(seqs.data(), ns * sizeof(CudaDsSequence));
  }
  static int LargestSelection(const std::vector<SeqSpec>& specs) {
    int cap = 1;
    for (const SeqSpec& q : specs) cap = std::max(cap, std::min(q.budget, q.tokens));
    return cap;
  }
  int ns;
  int64_t sel_stride;
  Buf dscores, dseqs, dsel, dcounts;
};

// The selections and counts a launch left in `b` against the twin's over the score rows
// (row_stride apart; (sequence, KV head) pairs in order).
void ExpectSelectionsMatchTwin(const std::vector<float>& scores, const std::vector<SeqSpec>& specs,
                               int hkv, int64_t row_stride, const TopKBuffers& b) {
  const int ns = b.ns;
  const int64_t sel_stride = b.sel_stride;
  const auto got = b.dsel.Get<int32_t>(static_cast<size_t>(ns) * hkv * sel_stride);
  const auto counts = b.dcounts.Get<int32_t>(ns * hkv);
  for (int s = 0; s < ns; ++s) {
    const int n = specs[s].tokens;
    std::vector<int32_t> want(n), scratch(n);
    for (int h = 0; h < hkv; ++h) {
      const float* row = scores.data() + (static_cast<size_t>(s) * hkv + h) * row_stride;
      const int64_t m = TopKSelectReference(row, n, specs[s].budget, specs[s].sink,
                                            specs[s].recent, scratch.data(), want.data());
      ASSERT_EQ(counts[s * hkv + h], m) << "count, sequence " << s << " head " << h;
      const int32_t* g = got.data() + (static_cast<size_t>(s) * hkv + h) * sel_stride;
      int64_t diff = 0;
      for (int64_t j = 0; j < m; ++j) diff += g[j] != want[j];
      EXPECT_EQ(diff, 0) << "selection of sequence " << s << " head " << h << " (of " << m << ")";
    }
  }
}

// The row lengths TopKMatchesTwin sweeps: all of them, or those DSINFER_TOPK_TWIN_LENGTHS (a
// comma list, each 1 to 300000) names — scripts/gpu-check.sh's racecheck step, ~80 times
// slower per launch, takes two.
std::vector<int> TopKTwinLengths() {
  const std::vector<int> all = {1, 7, 97, 4099, 40000, 70000, 190000, 300000};
  const char* env = std::getenv("DSINFER_TOPK_TWIN_LENGTHS");
  if (env == nullptr) return all;
  std::vector<int> named;
  for (absl::string_view p : absl::StrSplit(env, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(p, &v) || v < 1 || v > 300000) {
      ADD_FAILURE() << "DSINFER_TOPK_TWIN_LENGTHS: not a length of 1 to 300000: " << p;
      return {};
    }
    named.push_back(v);
  }
  return named.empty() ? all : named;
}

// Top-k alone against TopKSelectReference, every TopKAlgo: kOneBlock and kTwoRead at every
// stride, and kCluster, whose cluster kernel takes strides over 8192 (also on short segments,
// where some of the cluster's blocks get empty slices) and whose one-block fallback takes the
// rest. Per launch 2 sequences × 3 KV heads with rows at an odd stride (unaligned 8-byte loads)
// or, for kind 3, a multiple of 4 (kTwoRead's 8-byte loads); scores (stored as fp16, as the
// scorers store them, so ties are common at every kind) continuous, coarse (many
// ties at the boundary, incl. ±0), with NaNs, or uniform in [1, 2) (kind 3: sixteen 13-bit
// buckets). kTwoRead's paths: normal scores keep ~1% of a segment in the boundary bucket (its
// shared-memory path); coarse ones at 300000 tokens put ~10K ties there (its fallback to the
// one-block passes); kind 3 at 70000 ~4.4K (two scan tiles of candidates), at 300000 ~19K
// (fallback); kind 4 raises 1/16 of the positions in runs of 8 (two populations, the budget
// past the raised one); kind 5 raises the runs kStriped's sampled band reads (at these 6 pairs
// kStriped runs its two-block clusters past 8192-token strides, which read exactly; the band:
// TopKStripedManyPairsMatchesTwin); kind 6 scales them past fp16's range (stored as ±inf, ~5%
// +inf; its budget L / 32 + 1 puts the boundary among the +inf ties); budgets from 1 (kept
// tokens cut) to above the length. The cluster kernel's sizes: 2 (short strides), 5 (70000),
// 12 (190000: non-portable, not a power of two) and 16 (300000) blocks, where the GPU takes them.
// kResident holds rows up to ~47K tokens in one block's shared memory (every length up to
// 40000 here: odd strides put the rows off the 8-byte grid) and runs kStriped past them; told
// a shorter longest row, it runs its passes in memory for the rows past its shared memory, as
// the cluster kernel does for rows past its row bound (4099: at L 4099 the slices fit, from
// 40000 they do not).
TEST(DoubleSparsityGpu, TopKMatchesTwin) {
  SKIP_WITHOUT_GPU();
  const int hkv = 3;
  // kMultiBlock's workspace, zeroed once and shared by every launch of every shape below (each
  // launch must leave it zeroed: checked at the end).
  Buf dtopk_ws(TopKSelectWorkspaceBytes(2, hkv, 300000 + 9000));
  ASSERT_CUDA(cudaMemset(dtopk_ws.ptr, 0, dtopk_ws.bytes));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int i = 0;
  for (int L : TopKTwinLengths()) {
    for (int64_t stride : {int64_t{L} + 5, int64_t{L} + 9000}) {
      if (L + 5 > 8192 && stride != L + 5) continue;  // both strides: the cluster kernel
      for (int kind = 0; kind < 7; ++kind, ++i) {
        const int64_t row_stride = kind == 3 ? (stride + 3) / 4 * 4 : stride;
        const int L2 = std::max(1, L / 2 - 3);
        const int budget = kind == 3   ? L / 4 + 1
                           : kind == 4 ? L / 8 + 1
                           : kind == 6 ? L / 32 + 1  // within the ~5% of +inf
                                       : BudgetFor(L, i);
        const std::vector<SeqSpec> specs = {{L, budget, 4, 64, 0},
                                            {L2, BudgetFor(L2, i + 3), i % 3, 1 + i % 5, 0}};
        SCOPED_TRACE(absl::StrCat("L ", L, " row_stride ", row_stride, " kind ", kind, " budgets ",
                                  specs[0].budget, " / ", specs[1].budget));
        const int ns = 2;
        std::vector<float> scores(static_cast<size_t>(ns) * hkv * row_stride, 0.0f);
        for (size_t e = 0; e < scores.size(); ++e) {
          float& x = scores[e];
          const float v = normal(Rng());
          x = kind == 0 ? v : kind == 1 ? std::round(v * 4.0f) * 0.25f : v;
          if (kind == 3) x = 1.0f + std::ldexp(static_cast<float>(Rng()() >> 9), -23);
          // Kind 4: every 128th run of 8 positions from sequence 0's first candidate (after its
          // 4 sinks) scores 50 higher (structure a sampled threshold estimate would misread).
          if (kind == 4 && (e % row_stride + 128 - 4) % 128 < 8) x += 50.0f;
          // Kind 5: the runs kStriped's sample reads (512 scores, one in 16) score 3 higher,
          // so the sampled band misses and the exact reads must take over.
          if (kind == 5 && (e % row_stride) / 512 % 16 == 0) x += 3.0f;
          // Kind 6: scores past fp16's range (|x| >= 65520 for |v| > 1.64, ~10%) store as
          // ±inf, so the budget's boundary may fall among equal infinities.
          if (kind == 6) x = v * 40000.0f;
          if (kind == 1 && x == 0.0f && (Rng()() & 1)) x = -0.0f;
          if (kind == 2 && Rng()() % 64 == 0) x = NAN;
        }
        // Stored as the scorers store them (fp16 bits); the twin ranks the same values.
        std::vector<uint16_t> bits(scores.size());
        for (size_t e = 0; e < scores.size(); ++e) {
          bits[e] = F32ToF16(scores[e]);
          scores[e] = F16ToF32(bits[e]);
        }
        TopKBuffers b(specs, hkv, bits);
        // Every kernel, and kResident and kCluster told their rows are at most 4099 tokens (a
        // graph step replayed after its rows grew past its row bound): rows past their shared
        // memory take the passes in memory (the cluster kernel's block 0 alone).
        std::vector<std::pair<TopKAlgo, int64_t>> launches;
        for (TopKAlgo algo : kTopKAlgos) launches.push_back({algo, 0});
        launches.push_back({TopKAlgo::kResident, 4099});
        launches.push_back({TopKAlgo::kCluster, 4099});
        for (auto [algo, longest_row] : launches) {
          SCOPED_TRACE(absl::StrCat(AlgoName(algo), " longest_row ", longest_row));
          ASSERT_CUDA(cudaMemset(b.dsel.ptr, 0xff, b.dsel.bytes));  // poisoned per kernel
          ASSERT_CUDA(cudaMemset(b.dcounts.ptr, 0xff, b.dcounts.bytes));
          ASSERT_OK(LaunchTopKSelect(b.dscores.as<uint16_t>(), row_stride,
                                     b.dseqs.as<CudaDsSequence>(), ns, hkv, b.dsel.as<int32_t>(),
                                     b.sel_stride, b.dcounts.as<int32_t>(), nullptr, algo,
                                     dtopk_ws.ptr, longest_row));
          ExpectSelectionsMatchTwin(scores, specs, hkv, row_stride, b);
        }
      }
    }
  }
  const auto ws = dtopk_ws.Get<uint8_t>(dtopk_ws.bytes);
  EXPECT_EQ(std::count(ws.begin(), ws.end(), uint8_t{0}), static_cast<int64_t>(ws.size()))
      << "the top-k workspace is left zeroed";
}

// TopKStripedManyPairsMatchesTwin's check for ns sequences of hkv KV heads.
void ExpectStripedMatchesTwin(int ns, int hkv) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<SeqSpec> specs(ns);
  int64_t stride = 0;
  for (int s = 0; s < ns; ++s) {
    const int L = s % 2 == 0 ? 70001 + 37 * s : 170003 + 53 * s;
    specs[s] = {L, s % 3 == 0 ? L / 16 + s : BudgetFor(L, s + 2), s % 5, 1 + s % 70, 0};
    stride = std::max<int64_t>(stride, L + s % 4);
  }
  for (int kind = 0; kind < 4; ++kind) {
    SCOPED_TRACE(absl::StrCat("pairs ", ns * hkv, " kind ", kind));
    std::vector<float> scores(static_cast<size_t>(ns) * hkv * stride);
    std::vector<uint16_t> bits(scores.size());
    for (size_t e = 0; e < scores.size(); ++e) {
      const float v = normal(Rng());
      const int64_t t = static_cast<int64_t>(e % stride);
      float x = kind == 1 ? std::round(v * 8.0f) * 0.125f : v;
      if (kind == 2 && t % 128 < 8) x += 50.0f;
      if (kind == 3 && t / 512 % 16 == 0) x += 3.0f;
      bits[e] = F32ToF16(x);
      scores[e] = F16ToF32(bits[e]);
    }
    TopKBuffers b(specs, hkv, bits);
    for (TopKAlgo algo : {TopKAlgo::kStriped, TopKAlgo::kAuto}) {
      SCOPED_TRACE(AlgoName(algo));
      ASSERT_CUDA(cudaMemset(b.dsel.ptr, 0xff, b.dsel.bytes));  // poisoned per kernel
      ASSERT_CUDA(cudaMemset(b.dcounts.ptr, 0xff, b.dcounts.bytes));
      ASSERT_OK(LaunchTopKSelect(b.dscores.as<uint16_t>(), stride, b.dseqs.as<CudaDsSequence>(),
                                 ns, hkv, b.dsel.as<int32_t>(), b.sel_stride,
                                 b.dcounts.as<int32_t>(), nullptr, algo));
      ExpectSelectionsMatchTwin(scores, specs, hkv, stride, b);
    }
  }
}

// kStriped (named, and kAuto's past the resident rows) over more (sequence, KV head) pairs than
// half the GPU's SMs, where TopKMatchesTwin's few pairs run its two-block clusters: up to the
// SMs its one-block kernel with 32 keys a thread a tile, past them with 16. Rows of ~70K (the
// exact reads) and ~170K tokens (the sampled band), varied budgets and kept tokens; scores
// untied (kind 0), heavily tied (1), with 1/16 of the positions raised in runs of 8 (2: two
// populations, as TopKMatchesTwin's kind 4) or the runs the band samples raised (3: the band
// misses, the exact reads take over).
TEST(DoubleSparsityGpu, TopKStripedManyPairsMatchesTwin) {
  SKIP_WITHOUT_GPU();
  int sms = 0;
  ASSERT_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int hkv = 8;
  for (int ns : {sms / (2 * hkv) + 1, sms / hkv + 2}) ExpectStripedMatchesTwin(ns, hkv);
}

// The exact shapes EngineMatchesCpuEngine runs on the golden models (fp16 activations,
// r = head_dim / 4, budget 12, sink 2, recent 4, 21..44 tokens): GQA group 2 with 4-bit r 16
// (8-byte code rows: the fixed-row kernel at a compile-time group 2, and the general kernel's
// DotRow<4, 8> path), group 4 over a single KV head with r 32, and MHA. If the engine-level
// comparison ever points at the kernels, this case pins it down exactly.
TEST(DoubleSparsityGpu, ChainMatchesTwinsEngineShapes) {
  SKIP_WITHOUT_GPU();
  const int shapes[][3] = {{4, 2, 64}, {4, 1, 128}, {4, 4, 64}};  // heads_q, heads_kv, d
  for (int bits : {4, 16}) {
    for (auto& sh : shapes) {
      for (int L : {21, 32, 44}) {
        for (int aggregation : {0, 1}) {
          RunCase(Case{DType::kF16,
                       sh[0],
                       sh[1],
                       sh[2],
                       sh[2] / 4,
                       bits,
                       {{L, 12, 2, 4, aggregation}, {L - 5, 12, 2, 4, 1 - aggregation}}});
        }
      }
    }
  }
}

// Replays the CPU twins on what the CUDA engine's sparse layers read and produced (captured
// per SparseAttention call): the channel set is KvHeadChannels's (what the CPU engine uses),
// the labels are the twin's from the pool's keys, the scores the twin's from those labels and
// the query, the selection the twin's from those scores — each bit-exact, as the chain tests
// hold for the kernels alone. Unlike comparing logits with the CPU engine, this is immune to
// fp16-vs-fp32 activation noise moving a top-k boundary.
void ExpectCapturesMatchTwins(const std::vector<CudaBackend::SparseCapture>& caps,
                              const ChannelConfig& config, ChannelStatistic statistic,
                              const std::string& what) {
  int64_t checked = 0;
  for (const CudaBackend::SparseCapture& cap : caps) {
    const int hq = cap.heads_q, hkv = cap.heads_kv, d = cap.head_dim;
    for (const CudaBackend::SparseCapture::Seq& c : cap.seqs) {
      SCOPED_TRACE(absl::StrCat(what, " layer ", cap.layer, " tokens ", c.tokens, " bits ", c.bits,
                                " r ", c.r));
      const int64_t L = c.tokens;
      const int r = c.r;
      auto want_channels = KvHeadChannels(config, statistic, cap.layer, hq, hkv, r);
      ASSERT_TRUE(want_channels.ok()) << want_channels.status();
      EXPECT_EQ(c.channels, *want_channels) << "channel set";
      ASSERT_EQ(c.channels.size(), static_cast<size_t>(hkv) * r);
      ASSERT_EQ(c.keys.size(), static_cast<size_t>(L) * hkv * d);
      ASSERT_EQ(c.q.size(), static_cast<size_t>(hq) * d);
      LabelScoreShape shape{hq, hkv, d, r,
                            c.aggregation ? ScoreAggregation::kMax : ScoreAggregation::kSum};
      std::vector<float> ref_scores(static_cast<size_t>(hkv) * L);
      if (c.bits == 16) {
        std::vector<uint16_t> ref(static_cast<size_t>(L) * hkv * r);
        WriteLabelsF16Reference(c.keys.data(), hkv * d, L, hkv, d, c.channels.data(), r, ref.data(),
                                hkv * r);
        EXPECT_EQ(c.f16, ref) << "fp16 labels";
        LabelScoresF16Reference(c.q.data(), c.channels.data(), c.f16.data(), hkv * r, L, shape,
                                ref_scores.data(), L);
      } else {
        const int64_t rb = Label4BitRowBytes(r);
        std::vector<uint8_t> codes(static_cast<size_t>(L) * hkv * rb);
        std::vector<uint16_t> scales(static_cast<size_t>(L) * hkv), mins(scales.size());
        WriteLabels4BitReference(c.keys.data(), hkv * d, L, hkv, d, c.channels.data(), r,
                                 codes.data(), hkv * rb, scales.data(), mins.data());
        EXPECT_EQ(c.codes, codes) << "4-bit codes";
        EXPECT_EQ(c.scales, scales) << "4-bit scales";
        EXPECT_EQ(c.minimums, mins) << "4-bit minimums";
        LabelScores4BitReference(c.q.data(), c.channels.data(), c.codes.data(), hkv * rb,
                                 c.scales.data(), c.minimums.data(), L, shape, ref_scores.data(),
                                 L);
      }
      ASSERT_EQ(c.scores.size(), ref_scores.size());
      int64_t mismatch = 0;
      for (size_t j = 0; j < ref_scores.size(); ++j) mismatch += c.scores[j] != ref_scores[j];
      EXPECT_EQ(mismatch, 0) << "scores differ from the twin's";
      std::vector<int32_t> scratch(L), sel(L);
      ASSERT_EQ(c.selected.size(), static_cast<size_t>(hkv));
      for (int h = 0; h < hkv; ++h) {
        const int64_t n =
            TopKSelectReference(c.scores.data() + static_cast<size_t>(h) * L, L, c.budget, c.sink,
                                c.recent, scratch.data(), sel.data());
        EXPECT_EQ(c.selected[h], std::vector<int32_t>(sel.begin(), sel.begin() + n))
            << "selection of KV head " << h;
      }
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << what << ": no sparse call was captured";
}

// The CUDA engine with Double Sparsity on the golden models (fp16): a 20-token prefill (dense,
// labels derived later from the pool) then 24 decode steps, every layer sparse (budget 12,
// sink 2, recent 4, r = head_dim / 4 from a shuffled channel config, 16- and 4-bit labels):
// every sparse layer's labels, scores and selection replayed bit-exact by the CPU twins on the
// engine's own captured data, and the logits against the CPU engine's with a budget above the
// context (≤ 1e-2 × max|logit|; at budget 12 printed only, see there); with every channel and
// a budget above the context against the CUDA engine's own dense logits; and a batch mixing a
// sparse and a dense sequence against their single-sequence runs.
TEST(DoubleSparsityGpu, EngineMatchesCpuEngine) {
  if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
  for (const char* dir : kGoldenModels) {
    CudaBackendOptions options;
    options.dtype = DType::kF16;
    auto gpu = CudaBackend::Create(options);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    CpuBackend cpu;
    auto gm = Model::Load(dir, **gpu);
    auto cm = Model::Load(dir, cpu);
    ASSERT_TRUE(gm.ok() && cm.ok()) << dir;
    const ModelConfig& c = (*gm)->config();
    const uint64_t seed = Rng()();
    ASSERT_TRUE(
        (*gm)->double_sparsity().SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(seed))).ok());
    ASSERT_TRUE(
        (*cm)->double_sparsity().SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(seed))).ok());
    std::vector<int32_t> ids(44);
    for (int32_t& id : ids) id = static_cast<int32_t>(Rng()() % c.vocab_size);
    for (int bits : {16, 4}) {
      AttentionOptions ds;
      ds.mode = AttentionMode::kDoubleSparse;
      ds.channels = c.head_dim / 4;
      ds.label_bits = bits;
      ds.token_budget = 12;
      ds.sink = 2;
      ds.recent = 4;
      ds.dense_layers = 0;
      CudaBackend& cuda = **gpu;
      cuda.clear_sparse_captures();
      cuda.set_capture_sparse(true);
      SequenceAttentionStats stats;
      const std::vector<float> got = RunEngine(**gm, ids, 20, &ds, &stats);
      cuda.set_capture_sparse(false);
      // Every layer of the 24 decode steps is sparse.
      EXPECT_EQ(stats.sparse_rows, 24 * c.num_layers)
          << dir << " bits " << bits << ": dense rows " << stats.dense_rows << ", captures "
          << cuda.sparse_captures().size();
      ExpectCapturesMatchTwins(cuda.sparse_captures(), *(*gm)->double_sparsity().channel_config(),
                               ds.statistic, absl::StrCat(dir, " bits ", bits));
      cuda.clear_sparse_captures();
      // The same run with scoring and top-k fused wherever the kernel takes the shape (the
      // capture above ran the two launches): the same selections, so the same logits.
      cuda.set_fused_select(FusedSelectMode::kAlways);
      const std::vector<float> fused = RunEngine(**gm, ids, 20, &ds);
      cuda.set_fused_select(FusedSelectMode::kAuto);
      EXPECT_EQ(fused, got) << dir << " bits " << bits << ": fused scorer and top-k";
      // Logits against the CPU engine: printed, not asserted. At budget 12 of 21..44 tokens
      // the comparison is ill-conditioned: fp16 activations against fp32 ones move a top-k
      // boundary (4-bit labels most of all: a code flips at a rounding boundary and the score
      // jumps by a whole quantum), and on these small models one swapped token moves the
      // logits by up to ~0.8 of max|logit|. The CPU engine against itself with its Linear
      // outputs rounded to fp16 shows the same spread on every golden model, 16- and 4-bit,
      // depending only on the seed; with a budget above the context it stays below 2e-3.
      // Exactness is asserted above (the twins replayed on the engine's own data) and below
      // (the same labels with every token selected).
      const double err = MaxDiffRatio(got, RunEngine(**cm, ids, 20, &ds));
      std::printf("%s DS bits %d: CUDA vs CPU max|dlogit| = %.3g of max|logit| (budget 12)\n", dir,
                  bits, err);
      AttentionOptions wide = ds;
      wide.token_budget = 1000;
      const double err_wide =
          MaxDiffRatio(RunEngine(**gm, ids, 20, &wide), RunEngine(**cm, ids, 20, &wide));
      std::printf(
          "%s DS bits %d: CUDA vs CPU max|dlogit| = %.3g of max|logit| (budget above "
          "the context)\n",
          dir, bits, err_wide);
      EXPECT_LE(err_wide, 1e-2) << dir << " bits " << bits;
    }
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    AttentionOptions full;
    full.mode = AttentionMode::kDoubleSparse;
    full.channels = c.head_dim;
    full.token_budget = 1000;
    full.dense_layers = 0;
    const double err =
        MaxDiffRatio(RunEngine(**gm, ids, 20, &full), RunEngine(**gm, ids, 20, &dense));
    std::printf("%s full-budget DS vs dense (CUDA): %.3g of max|logit|\n", dir, err);
    EXPECT_LE(err, 5e-3) << dir;
    // One batch, one sparse and one dense sequence (per-request options; the dense op and the
    // sparse op share the step): each equals its own single-sequence run.
    AttentionOptions sparse;
    sparse.mode = AttentionMode::kDoubleSparse;
    sparse.channels = c.head_dim / 4;
    sparse.token_budget = 12;
    sparse.sink = 2;
    sparse.recent = 4;
    sparse.dense_layers = 1;
    // The linear layers on cuBLAS alone for this check, which is about the two ops sharing a
    // step: the default (kAuto) runs a single row's small projections on the GEMV kernels
    // (the norm folded in, unrounded) and a batch's on cuBLAS, and that difference alone moved
    // a near-tie of the budget-12 selection once in four runs (0.048 of max|logit|, run 12).
    (*gpu)->set_linear_algo(LinearAlgo::kCublas);
    const auto pair = RunPair(**gm, ids, &sparse, &dense);
    const double err_sparse = MaxDiffRatio(pair.first, RunEngine(**gm, ids, 20, &sparse));
    const double err_dense = MaxDiffRatio(pair.second, RunEngine(**gm, ids, 20, &dense));
    (*gpu)->set_linear_algo(LinearAlgo::kAuto);
    std::printf("%s mixed batch: sparse %.3g, dense %.3g of max|logit|\n", dir, err_sparse,
                err_dense);
    EXPECT_LE(err_sparse, 2e-2) << dir;  // batch-shaped GEMMs may move a near-tie
    EXPECT_LE(err_dense, 5e-3) << dir;
    // One batch of three sparse sequences whose labels differ in shape (per-request channels
    // and bits; the first and the last alike): each layer's plan orders them by shape and the
    // scorer runs once per shape (LaunchScoresByShape, fixed-row kernels), and every stage of
    // every sequence still matches the twins.
    {
      AttentionOptions wide_fp16 = sparse, narrow_4bit = sparse;
      wide_fp16.dense_layers = narrow_4bit.dense_layers = 0;
      narrow_4bit.channels = c.head_dim / 8;
      narrow_4bit.label_bits = 4;
      CudaBackend& cuda = **gpu;
      cuda.clear_sparse_captures();
      cuda.set_capture_sparse(true);
      RunBatch(**gm, ids, {&wide_fp16, &narrow_4bit, &wide_fp16}, {20, 20, 20});
      cuda.set_capture_sparse(false);
      int64_t mixed = 0;
      for (const CudaBackend::SparseCapture& cap : cuda.sparse_captures()) {
        ASSERT_EQ(cap.seqs.size(), 3u);
        mixed += cap.seqs.front().bits == 4 && cap.seqs[1].r != cap.seqs[0].r &&
                 cap.seqs[1].r == cap.seqs[2].r;  // ordered by shape: (4, r), then (16, r') ×2
      }
      EXPECT_EQ(mixed, static_cast<int64_t>(cuda.sparse_captures().size())) << dir;
      EXPECT_GT(mixed, 0) << dir;
      ExpectCapturesMatchTwins(cuda.sparse_captures(), *(*gm)->double_sparsity().channel_config(),
                               sparse.statistic, absl::StrCat(dir, " mixed label shapes"));
      cuda.clear_sparse_captures();
    }
    EXPECT_EQ((*gm)->kv_pool().blocks_in_use(), 0);
  }
}

}  // namespace
}  // namespace dsinfer
