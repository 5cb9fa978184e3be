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
// The harness (RunCase, the buffers, the generator) is ds_twin_case.h; the top-k kernels alone
// are double_sparsity_topk_gpu_test.cc, the launch rules double_sparsity_host_test.cc (one
// binary).
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

#include "absl/strings/str_cat.h"
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
#include "tests/gpu/ds_twin_case.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

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
    ASSERT_TRUE((*gm)
                    ->double_sparsity()
                    .SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(seed)))
                    .ok());
    ASSERT_TRUE((*cm)
                    ->double_sparsity()
                    .SetChannelConfig(ShuffledChannelConfig(c, std::mt19937_64(seed)))
                    .ok());
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
