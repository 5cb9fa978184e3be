// The Double Sparsity rows of dsinfer-attention-bench (attention_bench_ds.h). The chain is timed
// as the engine runs it (ScoreAndSelect's fusing rule, SplitChainHalf's split) and each stage
// alone per body, and the fused and split selections are checked against the two-launch chain
// on the spot, since a timing of a chain that selects differently would compare nothing.
#include "engine/cuda/bench/attention_bench_ds.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "engine/cuda/bench/attention_bench_common.h"
#include "engine/cuda/bench/device_bench_util.h"
#include "engine/cuda/bench/kernel_algo_flags.h"
#include "engine/cuda/score_and_select.h"
#include "engine/cuda/split_chain.h"
#include "kernels/cuda/cuda_kernels.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/label_layout.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

const Variant kVariants[] = {
    {"ds 1/8 fp16 r16", 8, 16, 16},  {"ds 1/8 4bit r64", 8, 64, 4},
    {"ds 1/16 fp16 r8", 16, 8, 16},  {"ds 1/16 4bit r8", 16, 8, 4},
    {"ds 1/16 4bit r16", 16, 16, 4}, {"ds 1/16 4bit r32", 16, 32, 4},
};

// The launches of fn captured once into a CUDA graph (as the engine's graph steps issue them),
// then timed over iters replays.
template <typename Fn>
absl::StatusOr<double> GraphTimeUs(cudaStream_t stream, int iters, Fn fn) {
  CUDA_RETURN_IF_ERROR(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  const absl::Status issued = fn();
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  RETURN_IF_ERROR(issued);
  CUDA_RETURN_IF_ERROR(ended);
  cudaGraphExec_t exec = nullptr;
  const cudaError_t made = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  CUDA_RETURN_IF_ERROR(made);
  const absl::StatusOr<double> us = TimeUs(stream, iters, [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(cudaGraphLaunch(exec, stream));
    return absl::OkStatus();
  });
  cudaGraphExecDestroy(exec);
  return us;
}

// A selection copied to the host: `rows` (sequence, KV head) rows of up to `stride` indices,
// and their counts.
struct SelectionCopy {
  std::vector<int32_t> selected, counts;
};
absl::StatusOr<SelectionCopy> CopySelection(const DevMem& sel, const DevMem& counts, int64_t rows,
                                            int64_t stride, cudaStream_t stream) {
  SelectionCopy c;
  c.selected.resize(static_cast<size_t>(rows * stride));
  c.counts.resize(static_cast<size_t>(rows));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(c.selected.data(), sel.ptr, c.selected.size() * 4, cudaMemcpyDeviceToHost));
  CUDA_RETURN_IF_ERROR(
      cudaMemcpy(c.counts.data(), counts.ptr, c.counts.size() * 4, cudaMemcpyDeviceToHost));
  return c;
}

// Rows whose count or selected indices differ.
int64_t SelectionMismatches(const SelectionCopy& a, const SelectionCopy& b, int64_t stride) {
  int64_t bad = 0;
  for (size_t r = 0; r < a.counts.size(); ++r) {
    const int32_t n = a.counts[r];
    bool same = n == b.counts[r];
    for (int32_t i = 0; same && i < n; ++i) {
      same = a.selected[r * stride + i] == b.selected[r * stride + i];
    }
    bad += !same;
  }
  return bad;
}

}  // namespace

absl::StatusOr<std::vector<Variant>> ChosenVariants(const std::string& names) {
  std::vector<Variant> out;
  for (absl::string_view n : absl::StrSplit(names, ',', absl::SkipEmpty())) {
    n = absl::StripAsciiWhitespace(n);
    const std::string full = absl::StartsWith(n, "ds ") ? std::string(n) : absl::StrCat("ds ", n);
    const auto it = std::find_if(std::begin(kVariants), std::end(kVariants),
                                 [&](const Variant& v) { return full == v.name; });
    if (it == std::end(kVariants)) {
      return absl::InvalidArgumentError(absl::StrCat("--ds_variants: no variant \"", n, "\""));
    }
    out.push_back(*it);
  }
  if (out.empty()) out.assign(std::begin(kVariants), std::end(kVariants));
  return out;
}

absl::Status RunDsVariants(const DecodeBenchEnv& env, const DecodeConfig& config,
                           const DsChainOptions& options, const std::vector<Variant>& variants,
                           double dense_us, nlohmann::json& out) {
  // The run and the configuration under the short names the timing code below uses.
  const cudaStream_t stream = env.stream, side_stream = env.side_stream;
  const cudaEvent_t fork = env.fork, join = env.join;
  const int sm = env.sm, iters = env.iters;
  const double hbm_bps = env.hbm_bps;
  const L2Flusher& flusher = *env.flusher;
  const std::string& m = config.model;
  const int hq = config.hq, hkv = config.hkv;
  const int64_t batch = config.batch, ctx = config.ctx;
  const DevMem& dq = *config.dq;
  const DevMem& dout = *config.dout;
  const CudaPagedKv& kv = config.kv;
  const float scale = config.scale;
  const std::vector<LabelScoreAlgo>& score_algos = options.score_algos;
  const std::vector<TopKAlgo>& topk_algos = options.topk_algos;
  const std::vector<SparseAttentionAlgo>& attn_algos = options.attn_algos;
  const double stride_factor = options.stride_factor;
  const bool max_aggregation = options.max_aggregation;
  const int other_waves = options.other_waves;
  for (const Variant& var : variants) {
    const int64_t budget = std::max<int64_t>(1, ctx / var.denominator);
    // Score rows as the engine's (--ds_score_stride_factor: a graph step's bucket).
    const int64_t stride = ScoreRowStride(static_cast<int64_t>(std::ceil(ctx * stride_factor)));
    const int64_t row_bound = TopKRowBound(stride, ctx);  // as a graph step's
    const int row_bytes = var.bits == 16 ? 2 * var.r : (var.r + 1) / 2;
    const int64_t label_bytes = batch * ctx * hkv * (row_bytes + (var.bits == 4 ? 4 : 0));
    // A sequence's label rows: whole pages of every KV head (LabelCapacity), as the
    // engine's label storage holds them and the scorers read them.
    const int64_t seq_rows = LabelCapacity(ctx) * hkv;
    const int64_t rows_all = batch * seq_rows;
    DevMem labels, scales, mins, channels, dlabs, dseqs, scores, sel, counts, sws, topk_ws;
    RETURN_IF_ERROR(labels.Alloc(rows_all * row_bytes));
    RETURN_IF_ERROR(scales.Alloc(rows_all * 2));
    RETURN_IF_ERROR(mins.Alloc(rows_all * 2));
    RETURN_IF_ERROR(channels.Alloc(hkv * var.r * 4));
    RETURN_IF_ERROR(
        LaunchFillRandom(DType::kF16, labels.ptr, rows_all * row_bytes / 2, 3, 1.0f, stream));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, scales.ptr, rows_all, 4, 0.1f, stream));
    RETURN_IF_ERROR(LaunchFillRandom(DType::kF16, mins.ptr, rows_all, 5, 1.0f, stream));
    std::vector<int32_t> ch(hkv * var.r);
    for (int h = 0; h < hkv; ++h) {
      for (int j = 0; j < var.r; ++j) ch[h * var.r + j] = (j * 5 + h) % kHeadDim;
    }
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(channels.ptr, ch.data(), ch.size() * 4, cudaMemcpyHostToDevice));
    std::vector<CudaLabelSeq> labs(batch);
    std::vector<CudaDsSequence> seqs(batch);
    for (int64_t s = 0; s < batch; ++s) {
      const int64_t off = s * seq_rows;
      labs[s].data = labels.as<uint8_t>() + off * row_bytes;
      labs[s].scales = scales.as<uint16_t>() + off;
      labs[s].minimums = mins.as<uint16_t>() + off;
      labs[s].channels = channels.as<int32_t>();
      labs[s].r = var.r;
      labs[s].bits = var.bits;
      seqs[s].tokens = static_cast<int32_t>(ctx);
      seqs[s].budget = static_cast<int32_t>(budget);
      seqs[s].sink = 4;
      seqs[s].recent = 64;
      seqs[s].aggregation = max_aggregation ? 1 : 0;
      seqs[s].q_row = static_cast<int32_t>(s);
      seqs[s].kv_seq = static_cast<int32_t>(s);
    }
    RETURN_IF_ERROR(dlabs.Alloc(labs.size() * sizeof(CudaLabelSeq)));
    RETURN_IF_ERROR(dseqs.Alloc(seqs.size() * sizeof(CudaDsSequence)));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dlabs.ptr, labs.data(), labs.size() * sizeof(labs[0]), cudaMemcpyHostToDevice));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(dseqs.ptr, seqs.data(), seqs.size() * sizeof(seqs[0]), cudaMemcpyHostToDevice));
    RETURN_IF_ERROR(scores.Alloc(batch * hkv * stride * kScoreBytes));
    RETURN_IF_ERROR(sel.Alloc(batch * hkv * budget * 4));
    RETURN_IF_ERROR(counts.Alloc(batch * hkv * 4));
    // Per attention body: the engine's split count for it, and more splits beside it
    // (--ds_other_waves, by default more blocks resident), timed side by side below.
    const int nseq = static_cast<int>(batch);
    std::vector<int> attn_splits, attn_splits_more;
    int most_attn_splits = 1;
    for (SparseAttentionAlgo a : attn_algos) {
      attn_splits.push_back(SparseAttentionSplits(nseq, hkv, budget, sm, a));
      attn_splits_more.push_back(SparseAttentionSplits(nseq, hkv, budget, sm, a, other_waves));
      most_attn_splits = std::max({most_attn_splits, attn_splits.back(), attn_splits_more.back()});
    }
    const int splits = attn_splits[0];
    // Room for the split chain's halves too (SplitChainHalf splits at nseq / 2), each at
    // its own split count.
    RETURN_IF_ERROR(
        sws.Alloc(std::max(SparseAttentionWorkspaceFloats(nseq, hq, kHeadDim, most_attn_splits),
                           SplitChainWorkspaceFloats(nseq, nseq / 2, hq, hkv, kHeadDim, budget, sm,
                                                     attn_algos[0])) *
                  4));
    const int64_t topk_ws_bytes = TopKSelectWorkspaceBytes(nseq, hkv, stride);
    RETURN_IF_ERROR(topk_ws.Alloc(topk_ws_bytes));
    CUDA_RETURN_IF_ERROR(cudaMemset(topk_ws.ptr, 0, topk_ws_bytes));
    const auto* dseq = dseqs.as<CudaDsSequence>();
    const int label_bits = UniformLabelBits(labs.data(), static_cast<int>(batch), var.r);
    const int score_heads = UniformScoreHeads(seqs.data(), static_cast<int>(batch), hq, hkv);
    // Each stage over sequences [first, first + count) (the whole batch, or a half of
    // the split chain): their scores, selection and attention rows.
    auto score_rows = [&](LabelScoreAlgo algo, int first, int count, cudaStream_t s) {
      return LaunchLabelScores(DType::kF16, dq.ptr, hq * kHeadDim, dseq + first, count,
                               dlabs.as<CudaLabelSeq>() + first, hq, hkv, kHeadDim, var.r,
                               label_bits, score_heads, ctx,
                               scores.as<uint16_t>() + first * hkv * stride, stride, s, algo);
    };
    auto topk_rows = [&](TopKAlgo algo, int first, int count, cudaStream_t s, void* ws) {
      return LaunchTopKSelect(scores.as<uint16_t>() + first * hkv * stride, stride, dseq + first,
                              count, hkv, sel.as<int32_t>() + first * hkv * budget, budget,
                              counts.as<int32_t>() + first * hkv, s, algo, ws, row_bound);
    };
    auto attend_rows = [&](SparseAttentionAlgo algo, int n_splits, int first, int count, float* ws,
                           cudaStream_t s) {
      return LaunchSparseAttention(DType::kF16, dq.ptr, hq * kHeadDim, dseq + first, count, hq, hkv,
                                   kHeadDim, scale, kv, sel.as<int32_t>() + first * hkv * budget,
                                   budget, counts.as<int32_t>() + first * hkv, n_splits, ws,
                                   dout.ptr, hq * kHeadDim, s, algo);
    };
    auto score = [&](LabelScoreAlgo algo) { return score_rows(algo, 0, nseq, stream); };
    auto topk = [&](TopKAlgo algo) { return topk_rows(algo, 0, nseq, stream, topk_ws.ptr); };
    auto attend_with = [&](SparseAttentionAlgo algo, int n_splits) {
      return attend_rows(algo, n_splits, 0, nseq, sws.as<float>(), stream);
    };
    auto attend = [&] { return attend_with(attn_algos[0], splits); };
    // Scoring and top-k fused (LaunchScoreSelectCluster); false where it declines.
    auto fused = [&]() -> absl::StatusOr<bool> {
      return LaunchScoreSelectCluster(DType::kF16, dq.ptr, hq * kHeadDim, dseq, batch,
                                      dlabs.as<CudaLabelSeq>(), hq, hkv, kHeadDim, var.r,
                                      label_bits, score_heads, ctx, sel.as<int32_t>(), budget,
                                      counts.as<int32_t>(), stream);
    };
    // The chain with the first body of each list; then each stage alone, per body.
    auto chain = [&]() -> absl::Status {
      RETURN_IF_ERROR(score(score_algos[0]));
      RETURN_IF_ERROR(topk(topk_algos[0]));
      return attend();
    };
    ASSIGN_OR_RETURN(const double us_separate, TimeUs(stream, iters, chain));
    // The chain with the L2 emptied before each step (labels and K/V from HBM, as in a
    // decode step; the scores it writes stay warm for its top-k, as in a step).
    ASSIGN_OR_RETURN(const double us_chain_cold, ColdTimeUs(stream, iters, flusher, chain));
    ASSIGN_OR_RETURN(const SelectionCopy separate_sel,
                     CopySelection(sel, counts, batch * hkv, budget, stream));
    // The chain as the engine's graph steps run it: captured whole, and where the engine
    // splits it (SplitChainHalf, the engine's fusing rule for these kernels) in two halves
    // on two streams, whose selection must equal the whole chain's.
    ASSIGN_OR_RETURN(const double us_chain_graph, GraphTimeUs(stream, iters, chain));
    const int half =
        SplitChainHalf(nseq, hkv, stride, row_bound, sm, topk_algos[0],
                       FusingFor(score_algos[0], topk_algos[0], FusedSelectMode::kAuto));
    double us_chain_split = 0;
    int64_t split_mismatches = -1;
    if (half > 0) {
      // As the engine's halves: the top-k without a workspace (SplitChainHalf never
      // splits kMultiBlock's), each half's attention at its own split count.
      auto score_part = [&](int first, int count, cudaStream_t s) {
        return score_rows(score_algos[0], first, count, s);
      };
      float* const second_ws =
          sws.as<float>() +
          HalfChainWorkspaceFloats(half, hq, hkv, kHeadDim, budget, sm, attn_algos[0]);
      auto select_part = [&](int first, int count, cudaStream_t s) -> absl::Status {
        RETURN_IF_ERROR(topk_rows(topk_algos[0], first, count, s, nullptr));
        return attend_rows(attn_algos[0],
                           SparseAttentionSplits(count, hkv, budget, sm, attn_algos[0]), first,
                           count, first == 0 ? sws.as<float>() : second_ws, s);
      };
      auto split_chain = [&] {
        return LaunchChainInHalves(nseq, half, stream, side_stream, fork, join, score_part,
                                   select_part);
      };
      // Poisoned first, so that a half left unselected shows.
      CUDA_RETURN_IF_ERROR(cudaMemsetAsync(counts.ptr, 0, batch * hkv * 4, stream));
      CUDA_RETURN_IF_ERROR(cudaMemsetAsync(sel.ptr, 0xff, batch * hkv * budget * 4, stream));
      RETURN_IF_ERROR(split_chain());
      ASSIGN_OR_RETURN(const SelectionCopy split_sel,
                       CopySelection(sel, counts, batch * hkv, budget, stream));
      split_mismatches = SelectionMismatches(separate_sel, split_sel, budget);
      if (split_mismatches != 0) {
        return absl::InternalError(absl::StrCat(
            "the split chain selected differently from the whole chain at ", m, " batch ", batch,
            " context ", ctx, " ", var.name, ": ", split_mismatches, " mismatches"));
      }
      ASSIGN_OR_RETURN(us_chain_split, GraphTimeUs(stream, iters, split_chain));
    }
    // The fused kernel's selection against the two launches' (identical sets), then its
    // time alone and in the chain.
    ASSIGN_OR_RETURN(const bool fused_ran, fused());
    double us_fused = 0, us_chain_fused = 0;
    int64_t fused_mismatches = -1;
    if (fused_ran) {
      ASSIGN_OR_RETURN(const SelectionCopy fused_sel,
                       CopySelection(sel, counts, batch * hkv, budget, stream));
      fused_mismatches = SelectionMismatches(separate_sel, fused_sel, budget);
      auto run_fused = [&]() -> absl::Status { return fused().status(); };
      ASSIGN_OR_RETURN(us_fused, TimeUs(stream, iters, run_fused));
      ASSIGN_OR_RETURN(us_chain_fused, TimeUs(stream, iters, [&]() -> absl::Status {
                         RETURN_IF_ERROR(run_fused());
                         return attend();
                       }));
    }
    // The chain as the engine runs it (ScoreAndSelect under kAuto).
    const bool engine_fuses = fused_ran && ScoreSelectClusterPays(ctx, batch * hkv);
    const double us = engine_fuses ? us_chain_fused : us_separate;
    nlohmann::json score_by_algo, topk_by_algo;
    std::string stages;
    for (LabelScoreAlgo a : score_algos) {
      ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] { return score(a); }));
      score_by_algo[AlgoName(a)] = t;
      absl::StrAppend(&stages, AlgoName(a), " ", absl::StrFormat("%.1f", t), " ");
    }
    absl::StrAppend(&stages, "| ");
    for (TopKAlgo a : topk_algos) {
      ASSIGN_OR_RETURN(const double t, TimeUs(stream, iters, [&] { return topk(a); }));
      topk_by_algo[AlgoName(a)] = t;
      absl::StrAppend(&stages, AlgoName(a), " ", absl::StrFormat("%.1f", t), " ");
    }
    // e.g. "| pipelined 131.0 (9 splits), 140.2 (17); warp 269.3 (4), 250.1 (16)"
    nlohmann::json attn_by_algo;
    absl::StrAppend(&stages, "|");
    for (size_t i = 0; i < attn_algos.size(); ++i) {
      const SparseAttentionAlgo a = attn_algos[i];
      ASSIGN_OR_RETURN(const double t,
                       TimeUs(stream, iters, [&] { return attend_with(a, attn_splits[i]); }));
      ASSIGN_OR_RETURN(const double t_more,
                       TimeUs(stream, iters, [&] { return attend_with(a, attn_splits_more[i]); }));
      attn_by_algo[AlgoName(a)] = {{"splits", attn_splits[i]},
                                   {"us", t},
                                   {"splits_more", attn_splits_more[i]},
                                   {"us_more_splits", t_more}};
      absl::StrAppend(&stages, i == 0 ? " " : "; ", AlgoName(a), " ",
                      absl::StrFormat("%.1f (%d%s), %.1f (%d)", t, attn_splits[i],
                                      i == 0 ? " splits" : "", t_more, attn_splits_more[i]));
    }
    const double us_attn = attn_by_algo[AlgoName(attn_algos[0])]["us"].get<double>();
    const double us_attn_more =
        attn_by_algo[AlgoName(attn_algos[0])]["us_more_splits"].get<double>();
    const int splits_more = attn_splits_more[0];
    const double us_score = score_by_algo[AlgoName(score_algos[0])].get<double>();
    // Scoring as a batch of two label shapes takes it (the engine's LaunchScoresByShape:
    // a fixed-row launch per shape, here the two halves of the batch), beside the general
    // kernel that one launch over mixed shapes would run.
    double us_score_halves = 0, us_score_general = 0;
    if (nseq >= 2) {
      const int h = nseq / 2;
      ASSIGN_OR_RETURN(us_score_halves, TimeUs(stream, iters, [&]() -> absl::Status {
                         RETURN_IF_ERROR(score_rows(score_algos[0], 0, h, stream));
                         return score_rows(score_algos[0], h, nseq - h, stream);
                       }));
      ASSIGN_OR_RETURN(us_score_general, TimeUs(stream, iters, [&] {
                         return LaunchLabelScores(DType::kF16, dq.ptr, hq * kHeadDim, dseq, nseq,
                                                  dlabs.as<CudaLabelSeq>(), hq, hkv, kHeadDim,
                                                  var.r, 0, 0, ctx, scores.as<uint16_t>(), stride,
                                                  stream, score_algos[0]);
                       }));
    }
    const double us_topk = topk_by_algo[AlgoName(topk_algos[0])].get<double>();
    const int64_t kv_sel = 2 * batch * hkv * budget * kHeadDim * 2;
    const int64_t floor_bytes = label_bytes + kv_sel;
    // Scores: one write, then one read by the cluster top-k (> 8K tokens, keys kept in
    // shared memory), two by the two-read, striped and multi-block kernels (the
    // multi-block's third, of each slice again, from L2), up to four by the one-block
    // kernel.
    const TopKAlgo ran = ResolveTopKAlgo(topk_algos[0], stride, batch * hkv, sm, row_bound);
    const bool two_reads =
        ran == TopKAlgo::kTwoRead || ran == TopKAlgo::kStriped || ran == TopKAlgo::kMultiBlock;
    const int score_passes =
        engine_fuses ? 0 : (ran == TopKAlgo::kCluster ? 2 : (two_reads ? 3 : 5));
    const int64_t moved = floor_bytes + batch * hkv * ctx * kScoreBytes * score_passes;
    absl::StrAppend(&stages, absl::StrFormat(" | fused %.1f, chain %.1f (two launches %.1f)",
                                             us_fused, us_chain_fused, us_separate));
    absl::StrAppend(&stages, absl::StrFormat(" | graph %.1f", us_chain_graph));
    absl::StrAppend(&stages, absl::StrFormat(" | cold L2 %.1f", us_chain_cold));
    if (half > 0) absl::StrAppend(&stages, absl::StrFormat(", split %.1f", us_chain_split));
    if (nseq >= 2) {
      absl::StrAppend(&stages, absl::StrFormat(" | scoring in halves %.1f, general %.1f",
                                               us_score_halves, us_score_general));
    }
    const double floor_us = floor_bytes / hbm_bps * 1e6;
    std::printf("%-10s %5lld %7lld  %-18s %9.1f %9.1f %8.2f %8.2f %6.2fx  %s\n", m.c_str(),
                static_cast<long long>(batch), static_cast<long long>(ctx), var.name, us, floor_us,
                us / floor_us, floor_bytes / us / 1e6, dense_us / us, stages.c_str());
    out["results"].push_back({{"model", m},
                              {"batch", batch},
                              {"context", ctx},
                              {"op", var.name},
                              {"us", us},
                              {"bytes", floor_bytes},
                              {"bytes_moved", moved},
                              {"floor_us", floor_us},
                              {"speedup_vs_dense", dense_us / us},
                              {"budget", budget},
                              {"r", var.r},
                              {"label_bits", var.bits},
                              {"aggregation", max_aggregation ? "max" : "sum"},
                              {"splits", splits},
                              {"score_algo", AlgoName(score_algos[0])},
                              {"topk_algo", AlgoName(topk_algos[0])},
                              {"attention_algo", AlgoName(attn_algos[0])},
                              {"us_score", us_score},
                              {"us_topk", us_topk},
                              {"us_score_by_algo", score_by_algo},
                              {"us_topk_by_algo", topk_by_algo},
                              {"us_attention", us_attn},
                              {"us_score_two_shapes", us_score_halves},
                              {"us_score_general_kernel", us_score_general},
                              {"splits_more", splits_more},
                              {"us_attention_more_splits", us_attn_more},
                              {"us_attention_by_algo", attn_by_algo},
                              {"fused", engine_fuses},
                              {"us_chain_two_launches", us_separate},
                              {"us_chain_cold_l2", us_chain_cold},
                              {"us_score_topk_fused", us_fused},
                              {"us_chain_fused", us_chain_fused},
                              {"fused_selection_mismatches", fused_mismatches},
                              {"us_chain_graph", us_chain_graph},
                              {"split_half", half},
                              {"us_chain_split_graph", us_chain_split},
                              {"split_selection_mismatches", split_mismatches}});
    if (fused_mismatches != 0 && fused_ran) {
      return absl::InternalError(absl::StrCat(
          "fused scorer and top-k selected differently from the two launches at ", m, " batch ",
          batch, " context ", ctx, " ", var.name, ": ", fused_mismatches, " mismatches"));
    }
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
