// SplitChainHalf, ForkJoin and LaunchChainInHalves (split_chain.h).
#include "engine/cuda/split_chain.h"

#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

int SplitChainHalf(int num_seqs, int heads_kv, int64_t max_tokens, int64_t longest_row, int sms,
                   TopKAlgo topk_algo, FusedSelectMode fused) {
  if (num_seqs < 2 || topk_algo == TopKAlgo::kMultiBlock) return 0;
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  if (TriesFusedSelect(fused, max_tokens, pairs)) return 0;
  // Past half the SMs the top-k's blocks leave too little of the GPU to the other half.
  if (2 * pairs > sms) return 0;
  // The halves pay where the whole chain's top-k is long and leaves most SMs to the other half:
  // the cluster kernel up to an eighth of the SMs in pairs (rows past the resident kernel's)
  // and the one-block kernels (run 19, then kAuto's). Not kStriped, whose two-block clusters
  // fill the GPU up to half the SMs in pairs (run 25, H200, graph steps, 1/16 fp16 r 8: 24-64
  // pairs 0.9-7.1% slower split, 16 pairs on the cluster kernel 0.7-3.4% faster), nor the
  // resident kernel, short enough that the second stream costs more than it hides (run 20).
  // The cluster kernel past an eighth of the SMs (kAuto's since run 29) stays whole: its
  // clusters then fill the GPU as kStriped's do.
  switch (ResolveTopKAlgo(topk_algo, ScoreRowStride(max_tokens), pairs, sms, longest_row)) {
    case TopKAlgo::kCluster:
      return 8 * pairs <= sms ? num_seqs / 2 : 0;
    case TopKAlgo::kOneBlock:
    case TopKAlgo::kTwoRead:
      return num_seqs / 2;
    default:
      return 0;
  }
}

int64_t HalfChainWorkspaceFloats(int count, int heads_q, int heads_kv, int head_dim,
                                 int64_t sel_stride, int sms, SparseAttentionAlgo algo) {
  return SparseAttentionWorkspaceFloats(
      count, heads_q, head_dim, SparseAttentionSplits(count, heads_kv, sel_stride, sms, algo));
}

int64_t SplitChainWorkspaceFloats(int num_seqs, int half, int heads_q, int heads_kv,
                                  int head_dim, int64_t sel_stride, int sms,
                                  SparseAttentionAlgo algo) {
  return HalfChainWorkspaceFloats(half, heads_q, heads_kv, head_dim, sel_stride, sms, algo) +
         HalfChainWorkspaceFloats(num_seqs - half, heads_q, heads_kv, head_dim, sel_stride, sms,
                                  algo);
}

absl::Status ForkJoin(cudaStream_t stream, cudaStream_t side_stream, cudaEvent_t fork,
                      cudaEvent_t join, absl::FunctionRef<absl::Status()> side,
                      absl::FunctionRef<absl::Status()> main) {
  CUDA_RETURN_IF_ERROR(cudaEventRecord(fork, stream));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side_stream, fork, 0));
  const absl::Status side_status = side();
  const cudaError_t recorded = cudaEventRecord(join, side_stream);
  const absl::Status main_status = side_status.ok() ? main() : absl::OkStatus();
  if (recorded == cudaSuccess) CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, join, 0));
  CUDA_RETURN_IF_ERROR(recorded);
  RETURN_IF_ERROR(side_status);
  return main_status;
}

absl::Status LaunchChainInHalves(int num_seqs, int half, cudaStream_t stream,
                                 cudaStream_t side_stream, cudaEvent_t fork, cudaEvent_t join,
                                 ChainPart score, ChainPart select_and_attend) {
  const int rest = num_seqs - half;
  RETURN_IF_ERROR(score(0, half, stream));
  return ForkJoin(
      stream, side_stream, fork, join,
      [&]() -> absl::Status {
        RETURN_IF_ERROR(score(half, rest, side_stream));
        return select_and_attend(half, rest, side_stream);
      },
      [&] { return select_and_attend(0, half, stream); });
}

}  // namespace dsinfer
