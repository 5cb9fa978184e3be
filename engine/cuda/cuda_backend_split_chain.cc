// CudaBackend::LaunchSplitSparseChain and its rule, SparseChainSplit (cuda_backend.h), over
// split_chain.h's SplitChainHalf and LaunchChainInHalves.
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
// Measured on an H200 (docs/benchmarks.md run 19; graph steps, 32K, 1/16 fp16 r 8, the top-k
// then one block a pair): 64 pairs (Llama-3-8B batch 8, Llama-2-7B batch 2) 1.4-4.2% faster a
// step; 32 pairs (Llama-3-8B batch 4) and 128 (Llama-3-8B batch 16, Llama-2-7B batch 4) within
// ±0.8%. Forking after the first half's top-k instead was 4-10% slower a step, at once -0.4 to
// +1.9% faster, and each half's attention at the whole layer's split count (half the blocks
// each) up to 2% slower than at its own. Since then the resident top-k took the rows up to
// ~47K tokens (run 20; the rule leaves those chains whole) and two-block clusters the longer
// rows' pairs up to half the SMs (run 23): run 25 found the halves slower than the whole chain
// there (24-64 pairs, 64K-256K: the operator 4-15% at 64 pairs, graph steps 0.9-7.1%) and
// faster only beside the cluster top-k (16 pairs: graph steps 0.7-3.4%), so SplitChainHalf
// splits only where the top-k is the cluster kernel or a one-block kernel.
#include <cmath>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/sparse_state.h"
#include "engine/cuda/split_chain.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

int CudaBackend::SparseChainSplit(const SparseLayerPlan& plan, int heads_kv) const {
  // Beside a dense launch on MixedAttention's side stream (a mixed step) the split was slower
  // (run 19 call 10: Llama-3-8B batch 8, 32K, one dense 7.2%, four 1.3%).
  if (!options_.split_sparse_chain || chain_beside_dense_) return 0;
  return SplitChainHalf(static_cast<int>(plan.seqs.size()), heads_kv, plan.max_tokens,
                        plan.row_bound, sm_count_, options_.ds_topk_algo, SelectionFusing());
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
  float* const second_workspace =
      workspace + HalfChainWorkspaceFloats(half, job.heads_q, hkv, job.head_dim, job.sel_stride,
                                           sm_count_);
  // Sequences [first, first + count): their scores, selection and attention rows; the second
  // half's attention workspace follows the first half's.
  auto score = [&](int first, int count, cudaStream_t s) {
    return LaunchScoresByShape(job, first, count, scores + first * hkv * stride, stride,
                               options_.ds_score_algo, s);
  };
  auto select_and_attend = [&](int first, int count, cudaStream_t s) -> absl::Status {
    int32_t* const selected = job.selected + first * hkv * job.sel_stride;
    int32_t* const counts = job.counts + first * hkv;
    RETURN_IF_ERROR(LaunchTopKSelect(scores + first * hkv * stride, stride,
                                     job.seqs + first, count, hkv, selected, job.sel_stride,
                                     counts, s, options_.ds_topk_algo, nullptr,
                                     job.longest_row));
    const int splits = SparseAttentionSplits(count, hkv, job.sel_stride, sm_count_);
    float* const ws = first == 0 ? workspace : second_workspace;
    return LaunchSparseAttention(job.dtype, job.q, job.q_stride, job.seqs + first, count,
                                 job.heads_q, hkv, job.head_dim, scale, kv, selected,
                                 job.sel_stride, counts, splits, ws, out.data, out.cols, s);
  };
  ++split_sparse_chains_;
  return LaunchChainInHalves(job.num_seqs, half, stream_, split_stream_, split_fork_,
                             split_join_, score, select_and_attend);
}

}  // namespace dsinfer
