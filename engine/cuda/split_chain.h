// A Double Sparsity layer's chain in two halves on two streams, shared by the CUDA backend
// (CudaBackend::LaunchSplitSparseChain, whose comment gives the measured reasons) and the
// operator benchmark (dsinfer-attention-bench, which times the chain as the engine runs it):
// the rule where it splits and the order of its launches.
#ifndef DSINFER_ENGINE_CUDA_SPLIT_CHAIN_H_
#define DSINFER_ENGINE_CUDA_SPLIT_CHAIN_H_

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "engine/cuda/score_and_select.h"
#include "kernels/cuda/double_sparsity.cuh"

namespace dsinfer {

// Where a chain of num_seqs sequences (heads_kv KV heads, score rows of up to max_tokens
// tokens, the top-k's row bound longest_row: ResolveTopKAlgo's) splits on a GPU of `sms` SMs:
// the first sequence of its second half, or 0 to run it whole: it splits where the top-k
// (topk_algo's rule) is the cluster kernel or a one-block kernel and its pairs number at most
// half the SMs — never with fewer than two sequences, where scoring and top-k run fused under
// `fused`, nor for kStriped (its two-block clusters fill the GPU), kResident or kMultiBlock
// (one workspace).
int SplitChainHalf(int num_seqs, int heads_kv, int64_t max_tokens, int64_t longest_row, int sms,
                   TopKAlgo topk_algo, FusedSelectMode fused);

// Floats of attention workspace `count` sequences of a split chain take at their own split
// count (SparseAttentionSplits for `algo` on `sms` SMs): where the second half's begins.
int64_t HalfChainWorkspaceFloats(int count, int heads_q, int heads_kv, int head_dim,
                                 int64_t sel_stride, int sms,
                                 SparseAttentionAlgo algo = SparseAttentionAlgo::kPipelined);

// Floats of attention workspace the two halves of a chain split at `half` take, the second
// half's after the first's (HalfChainWorkspaceFloats of each).
int64_t SplitChainWorkspaceFloats(int num_seqs, int half, int heads_q, int heads_kv,
                                  int head_dim, int64_t sel_stride, int sms,
                                  SparseAttentionAlgo algo = SparseAttentionAlgo::kPipelined);

// Issues `side` on side_stream after everything issued on `stream` so far (the `fork` event),
// then `main` on `stream` if `side` issued without error; `stream` then waits for side_stream
// (the `join` event) whatever happened, so that no capture is left with a branch open.
// Returns side's error first, then main's.
absl::Status ForkJoin(cudaStream_t stream, cudaStream_t side_stream, cudaEvent_t fork,
                      cudaEvent_t join, absl::FunctionRef<absl::Status()> side,
                      absl::FunctionRef<absl::Status()> main);

// The launches of a chain over sequences [first, first + count) on a stream: its scores, and
// its top-k and attention.
using ChainPart = absl::FunctionRef<absl::Status(int first, int count, cudaStream_t stream)>;

// A chain of num_seqs sequences split at `half` (0 < half < num_seqs): the first half's scores
// on `stream`, then — forked — the second half's scores, top-k and attention on side_stream
// beside the first half's top-k and attention on `stream`, joined at the end.
absl::Status LaunchChainInHalves(int num_seqs, int half, cudaStream_t stream,
                                 cudaStream_t side_stream, cudaEvent_t fork, cudaEvent_t join,
                                 ChainPart score, ChainPart select_and_attend);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_SPLIT_CHAIN_H_
