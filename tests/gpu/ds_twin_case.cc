// RunCase and the shared generator of the Double Sparsity kernel tests (ds_twin_case.h).
#include "tests/gpu/ds_twin_case.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/score_and_select.h"
#include "gtest/gtest.h"
#include "kernels/attention_reference.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/dtype.h"
#include "kernels/label_layout.h"
#include "kernels/label_reference.h"
#include "kernels/label_score_reference.h"
#include "kernels/paged_kv.h"
#include "kernels/topk_select_reference.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {

std::mt19937_64& Rng() {
  static std::mt19937_64 rng = MakeSeededRng("double_sparsity_gpu_test");
  return rng;
}

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
        EXPECT_EQ(TokenMajor<uint8_t>(*pdata[s], L, hkv, row_bytes), ref_codes[s]) << "paged codes";
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
        score_names.push_back(
            absl::StrCat(AlgoName(sa), " label_bits ", label_bits, " score_heads ", score_heads));
        for (TopKAlgo ta : kTopKAlgos) {
          ASSERT_CUDA(cudaMemset(dsel.ptr, 0xff, dsel.bytes));
          ASSERT_CUDA(cudaMemset(dcounts.ptr, 0xff, dcounts.bytes));
          ASSERT_OK(LaunchTopKSelect(dscores.as<uint16_t>(), score_stride,
                                     dseqs.as<CudaDsSequence>(), ns, hkv, dsel.as<int32_t>(),
                                     sel_stride, dcounts.as<int32_t>(), nullptr, ta, dtopk_ws.ptr));
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

}  // namespace dsinfer
