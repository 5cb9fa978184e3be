// ScoreAndSelect (score_and_select.h).
#include "engine/cuda/score_and_select.h"

#include <algorithm>

#include "engine/cuda/topk_workspace.h"
#include "kernels/status.h"

namespace dsinfer {

void SetJobSequences(absl::Span<const CudaLabelSeq> labels,
                     absl::Span<const CudaDsSequence> seqs, const DeviceLabelDescriptors& device,
                     ScoreSelectJob& job) {
  const int num = static_cast<int>(seqs.size());
  job.labels = device.labels;
  job.seqs = device.sequences;
  job.num_seqs = num;
  job.max_r = 0;
  job.max_tokens = 0;
  for (int i = 0; i < num; ++i) {
    job.max_r = std::max(job.max_r, static_cast<int>(labels[i].r));
    job.max_tokens = std::max<int64_t>(job.max_tokens, seqs[i].tokens);
  }
  job.longest_row = job.max_tokens;
  job.label_bits = UniformLabelBits(labels.data(), num, job.max_r);
  job.score_heads = UniformScoreHeads(seqs.data(), num, job.heads_q, job.heads_kv);
  job.shape_runs.clear();
  for (int i = 0; i < num;) {
    int end = i + 1;
    while (end < num && labels[end].bits == labels[i].bits && labels[end].r == labels[i].r) ++end;
    LabelShapeRun run;
    run.first = i;
    run.count = end - i;
    run.r = labels[i].r;
    run.label_bits = UniformLabelBits(labels.data() + i, run.count, run.r);
    run.score_heads = UniformScoreHeads(seqs.data() + i, run.count, job.heads_q, job.heads_kv);
    job.shape_runs.push_back(run);
    i = end;
  }
}

std::vector<LabelShapeRun> ScoreLaunches(const ScoreSelectJob& job, int first, int count) {
  std::vector<LabelShapeRun> launches;
  for (const LabelShapeRun& run : job.shape_runs) {
    const int from = std::max(first, run.first);
    const int to = std::min(first + count, run.first + run.count);
    if (from >= to) continue;
    LabelShapeRun part = run;
    part.first = from;
    part.count = to - from;
    launches.push_back(part);
  }
  return launches;
}

absl::Status LaunchScoresByShape(const ScoreSelectJob& job, int first, int count, uint16_t* scores,
                                 int64_t stride, LabelScoreAlgo algo, cudaStream_t stream) {
  const int64_t row = static_cast<int64_t>(job.heads_kv) * stride;  // a sequence's scores
  for (const LabelShapeRun& l : ScoreLaunches(job, first, count)) {
    RETURN_IF_ERROR(LaunchLabelScores(job.dtype, job.q, job.q_stride, job.seqs + l.first, l.count,
                                      job.labels + l.first, job.heads_q, job.heads_kv, job.head_dim,
                                      l.r, l.label_bits, l.score_heads, job.max_tokens,
                                      scores + (l.first - first) * row, stride, stream, algo));
  }
  return absl::OkStatus();
}

bool TriesFusedSelect(FusedSelectMode fused, int64_t max_tokens, int64_t pairs) {
  return fused == FusedSelectMode::kAlways ||
         (fused == FusedSelectMode::kAuto && ScoreSelectClusterPays(max_tokens, pairs));
}

absl::Status ScoreAndSelect(const ScoreSelectJob& job, FusedSelectMode fused,
                            LabelScoreAlgo score_algo, TopKAlgo topk_algo, int sms,
                            StreamBuffer& scores, StreamBuffer& topk_workspace,
                            cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(job.num_seqs) * job.heads_kv;
  if (TriesFusedSelect(fused, job.max_tokens, pairs)) {
    ASSIGN_OR_RETURN(const bool launched,
                     LaunchScoreSelectCluster(job.dtype, job.q, job.q_stride, job.seqs,
                                              job.num_seqs, job.labels, job.heads_q, job.heads_kv,
                                              job.head_dim, job.max_r, job.label_bits,
                                              job.score_heads, job.max_tokens, job.selected,
                                              job.sel_stride, job.counts, stream));
    if (launched) return absl::OkStatus();
  }
  const int64_t stride = ScoreRowStride(job.max_tokens);
  RETURN_IF_ERROR(scores.Grow(static_cast<size_t>(pairs * stride) * kScoreBytes, stream));
  ASSIGN_OR_RETURN(void* const ws, TopKWorkspaceFor(topk_workspace, topk_algo, job.num_seqs,
                                                    job.heads_kv, stride, sms, stream));
  uint16_t* const sc = static_cast<uint16_t*>(scores.ptr);
  RETURN_IF_ERROR(LaunchScoresByShape(job, 0, job.num_seqs, sc, stride, score_algo, stream));
  return LaunchTopKSelect(sc, stride, job.seqs, job.num_seqs, job.heads_kv, job.selected,
                          job.sel_stride, job.counts, stream, topk_algo, ws, job.longest_row);
}

}  // namespace dsinfer
