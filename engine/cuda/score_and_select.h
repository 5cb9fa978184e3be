// Scoring and top-k of one Double Sparsity selection on the CUDA backend, shared by the sparse
// decode path (cuda_backend_sparse.cc) and the offload tier (cuda_backend_offload_select.cc):
// the fused kernel (LaunchScoreSelectCluster) where it is allowed and ScoreSelectClusterPays,
// else LaunchLabelScores into a score buffer, then LaunchTopKSelect.
#ifndef DSINFER_ENGINE_CUDA_SCORE_AND_SELECT_H_
#define DSINFER_ENGINE_CUDA_SCORE_AND_SELECT_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/stream_buffer.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/dtype.h"

namespace dsinfer {

// Whether a selection runs scoring and top-k fused (LaunchScoreSelectCluster): where it pays
// (ScoreSelectClusterPays), wherever the kernel takes the shape, or never.
enum class FusedSelectMode { kAuto, kAlways, kOff };

// Sequences [first, first + count) of a selection whose labels share one shape (bits and r):
// the scorer's arguments for them (UniformLabelBits, UniformScoreHeads over the run).
struct LabelShapeRun {
  int first = 0, count = 0;
  int r = 0, label_bits = 0, score_heads = 0;
};

// One selection's inputs and outputs (device pointers; seqs and labels num_seqs long).
struct ScoreSelectJob {
  DType dtype = DType::kBF16;
  const void* q = nullptr;
  int64_t q_stride = 0;
  const CudaDsSequence* seqs = nullptr;
  int num_seqs = 0;
  const CudaLabelSeq* labels = nullptr;
  int heads_q = 0, heads_kv = 0, head_dim = 0;
  int max_r = 0;
  int label_bits = 0;  // UniformLabelBits of the labels
  int score_heads = 0;  // UniformScoreHeads of the sequences
  // The sequences as runs of one label shape, in order (SetJobSequences); one run where every
  // label has the same shape.
  std::vector<LabelShapeRun> shape_runs;
  int64_t max_tokens = 0;
  // The top-k's row bound (ResolveTopKAlgo's longest_row): the longest sequence's tokens
  // (SetJobSequences), or for a graph step, whose max_tokens is its bucket, TopKRowBound's.
  int64_t longest_row = 0;
  int32_t* selected = nullptr;
  int64_t sel_stride = 0;
  int32_t* counts = nullptr;
};

// Sets job's sequence fields from the host copies `labels` / `seqs` of the device arrays in
// `device` (UploadLabelDescriptors'): their count, the largest r and context, the label bits
// and score heads they share (UniformLabelBits / UniformScoreHeads: the fixed-row kernels) and
// their runs of one label shape; longest_row is that context too. job.heads_q and
// job.heads_kv must be set first.
void SetJobSequences(absl::Span<const CudaLabelSeq> labels,
                     absl::Span<const CudaDsSequence> seqs, const DeviceLabelDescriptors& device,
                     ScoreSelectJob& job);

// The scorer launches LaunchScoresByShape makes for the job's sequences [first, first + count):
// each run of one shape's part within them (one launch where every label has one shape).
std::vector<LabelShapeRun> ScoreLaunches(const ScoreSelectJob& job, int first, int count);

// Label scores of the job's sequences [first, first + count) into `scores` (the job's score rows
// from sequence first on, `stride` apart) with `algo`: one launch where their labels share a
// shape, else one per run of one shape (job.shape_runs), so that each shape with a fixed-row
// kernel runs it: the general kernel, which one launch over mixed shapes needs, took 2.6-10x as
// long as a fixed-row launch per half of the batch (H200, docs/benchmarks.md run 41).
absl::Status LaunchScoresByShape(const ScoreSelectJob& job, int first, int count, uint16_t* scores,
                                 int64_t stride, LabelScoreAlgo algo, cudaStream_t stream);

// The score rows' stride for contexts of up to max_tokens tokens: a multiple of 8 scores, so
// that every row starts 16-byte aligned (the fixed-row scorer's 4-bit r 8 / r 16 stores of four
// / two scores at once, and the top-k's vector loads, take aligned rows).
inline int64_t ScoreRowStride(int64_t max_tokens) { return (max_tokens + 7) / 8 * 8; }

// How a selection with these scoring and top-k kernels may run fused: `requested` with the
// default kernels (kStrided scoring, kAuto top-k), else kOff — the fused kernel stands in for
// those two only.
inline FusedSelectMode FusingFor(LabelScoreAlgo score_algo, TopKAlgo topk_algo,
                                 FusedSelectMode requested) {
  return score_algo == LabelScoreAlgo::kStrided && topk_algo == TopKAlgo::kAuto
             ? requested
             : FusedSelectMode::kOff;
}

// Whether a selection of `pairs` (sequence, KV head) rows of up to max_tokens tokens tries the
// fused kernel under `fused` (kAuto: where ScoreSelectClusterPays). The kernel may still
// decline the shape (LaunchScoreSelectCluster returns false: the two launches run).
bool TriesFusedSelect(FusedSelectMode fused, int64_t max_tokens, int64_t pairs);

// Runs `job` on `stream`: fused where `fused` allows it (kAuto: where ScoreSelectClusterPays)
// and the kernel takes the shape; else the two launches with score_algo and topk_algo (the
// top-k's rule on `sms` SMs), growing `scores` and `topk_workspace` as needed.
absl::Status ScoreAndSelect(const ScoreSelectJob& job, FusedSelectMode fused,
                            LabelScoreAlgo score_algo, TopKAlgo topk_algo, int sms,
                            StreamBuffer& scores, StreamBuffer& topk_workspace,
                            cudaStream_t stream);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_SCORE_AND_SELECT_H_
