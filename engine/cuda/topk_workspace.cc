// TopKWorkspaceFor (topk_workspace.h).
#include "engine/cuda/topk_workspace.h"

#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<void*> TopKWorkspaceFor(StreamBuffer& buffer, TopKAlgo algo, int num_seqs,
                                       int heads_kv, int64_t score_stride, int sms,
                                       cudaStream_t stream) {
  const int64_t pairs = static_cast<int64_t>(num_seqs) * heads_kv;
  if (ResolveTopKAlgo(algo, score_stride, pairs, sms) != TopKAlgo::kMultiBlock) {
    return nullptr;
  }
  RETURN_IF_ERROR(buffer.GrowZeroed(
      static_cast<size_t>(TopKSelectWorkspaceBytes(num_seqs, heads_kv, score_stride)), stream));
  return buffer.ptr;
}

}  // namespace dsinfer
