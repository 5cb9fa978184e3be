// CudaBackend::LaunchSplitSparseChain and its rule, SparseChainSplit (cuda_backend.h).
//
// A sparse layer's chain runs its launches one after the other: scoring (bandwidth-bound),
// top-k (one block per (sequence, KV head): at batch 8 with Llama-3-8B heads 64 blocks on 132
// SMs, latency-bound), attention over the selected rows and its combine. Split in two halves
// of the sequences on two streams, the second half forked once the first half's scores are
// written, the first half's top-k runs beside the second half's scoring and the second's top-k
// beside the first's attention. Each half's attention takes the split count of its own
// sequences (SparseAttentionSplits), so its launch alone would fill the GPU. Each sequence's
// results are the same bits as in one chain — its scores, selection and attention pieces do
// not depend on the others' (DoubleSparsityGraphGpu.SplitChainChangesNothing) — and each half
// writes its own rows of the layer's scratch. In a capture the two streams' launches land in
// the graph as two branches.
//
// Measured on an H200 (docs/benchmarks.md run 19; graph steps, 32K, 1/16 fp16 r 8): 64 pairs
// (Llama-3-8B batch 8, Llama-2-7B batch 2) 1.4-4.2% faster a step; 32 pairs (Llama-3-8B batch
// 4) and 128 (Llama-3-8B batch 16, Llama-2-7B batch 4) within ±0.8%. Forking after the first
// half's top-k instead was 4-10% slower a step, at once -0.4 to +1.9% faster, and each half's
// attention at the whole layer's split count (half the blocks each) up to 2% slower than at
// its own.
#include <algorithm>
#include <cmath>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/sparse_state.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

int CudaBackend::SparseChainSplit(const SparseLayerPlan& plan, int heads_kv) const {
  const int num_seqs = static_cast<int>(plan.seqs.size());
  // Beside a dense launch on MixedAttention's side stream (a mixed step) the split was slower
  // (run 19 call 10: Llama-3-8B batch 8, 32K, one dense 7.2%, four 1.3%).
  if (!options_.split_sparse_chain || num_seqs < 2 || chain_beside_dense_ ||
      options_.ds_topk_algo == TopKAlgo::kMultiBlock) {
    return 0;
  }
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  if (TriesFusedSelect(SelectionFusing(), plan.max_tokens, pairs)) return 0;
  // Past half the SMs the top-k's blocks leave too little of the GPU to the other half.
  if (2 * pairs > sm_count_) return 0;
  // The resident top-k is short enough that the second stream costs more than it hides (run
  // 20, graph steps at 32K: Llama-3-8B batch 8 6.701 split against 6.616 whole, batch 4 5.957
  // against 5.878; Llama-2-7B batch 2 even).
  int64_t longest = 0;
  for (const CudaDsSequence& s : plan.seqs) longest = std::max<int64_t>(longest, s.tokens);
  const int64_t stride = ScoreRowStride(plan.max_tokens);
  if (ResolveTopKAlgo(options_.ds_topk_algo, stride, pairs, sm_count_, longest) ==
      TopKAlgo::kResident) {
    return 0;
  }
  return num_seqs / 2;
}

int64_t CudaBackend::SplitChainWorkspaceFloats(int num_seqs, int half, int heads_q,
                                               int heads_kv, int head_dim,
                                               int64_t sel_stride) const {
  int64_t floats = 0;
  for (int count : {half, num_seqs - half}) {
    floats += SparseAttentionWorkspaceFloats(
        count, heads_q, head_dim, SparseAttentionSplits(count, heads_kv, sel_stride, sm_count_));
  }
  return floats;
}

absl::Status CudaBackend::LaunchSplitSparseChain(const ScoreSelectJob& job, int half,
                                                 const CudaPagedKv& kv, DeviceTensor& out) {
  DsState& st = *ds_state_;
  const int hkv = job.heads_kv;
  const int64_t pairs = static_cast<int64_t>(job.num_seqs) * hkv;
  // Grown before the fork (GrowSparseScratch has grown the workspace): a growth synchronizes
  // the backend's stream.
  const int64_t stride = ScoreRowStride(job.max_tokens);
  RETURN_IF_ERROR(st.scores.Grow(static_cast<size_t>(pairs * stride) * kScoreBytes, stream_));
  uint16_t* const scores = static_cast<uint16_t*>(st.scores.ptr);
  float* const workspace = static_cast<float*>(st.workspace.ptr);
  const float scale = 1.0f / std::sqrt(static_cast<float>(job.head_dim));
  const int rest = job.num_seqs - half;
  // The second half's attention workspace follows the first half's.
  float* const second_workspace =
      workspace + SparseAttentionWorkspaceFloats(
                      half, job.heads_q, job.head_dim,
                      SparseAttentionSplits(half, hkv, job.sel_stride, sm_count_));
  // Sequences [first, first + count): their scores, selection and attention rows.
  auto score = [&](int first, int count, cudaStream_t s) {
    return LaunchLabelScores(job.dtype, job.q, job.q_stride, job.seqs + first, count,
                             job.labels + first, job.heads_q, hkv, job.head_dim, job.max_r,
                             job.label_bits, job.score_heads, job.max_tokens,
                             scores + first * hkv * stride, stride, s,
                             options_.ds_score_algo);
  };
  auto select_and_attend = [&](int first, int count, float* ws,
                               cudaStream_t s) -> absl::Status {
    int32_t* const selected = job.selected + first * hkv * job.sel_stride;
    int32_t* const counts = job.counts + first * hkv;
    RETURN_IF_ERROR(LaunchTopKSelect(scores + first * hkv * stride, stride,
                                     job.seqs + first, count, hkv, selected, job.sel_stride,
                                     counts, s, options_.ds_topk_algo, nullptr,
                                     job.longest_row));
    const int splits = SparseAttentionSplits(count, hkv, job.sel_stride, sm_count_);
    return LaunchSparseAttention(job.dtype, job.q, job.q_stride, job.seqs + first, count,
                                 job.heads_q, hkv, job.head_dim, scale, kv, selected,
                                 job.sel_stride, counts, splits, ws, out.data, out.cols, s);
  };
  RETURN_IF_ERROR(score(0, half, stream_));
  return ForkJoin(
      split_stream_, split_fork_, split_join_,
      [&]() -> absl::Status {
        RETURN_IF_ERROR(score(half, rest, split_stream_));
        return select_and_attend(half, rest, second_workspace, split_stream_);
      },
      [&] { return select_and_attend(0, half, workspace, stream_); });
}

}  // namespace dsinfer
