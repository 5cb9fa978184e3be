// CudaBackend::SubsetAttention (cuda_backend.h): the dense sequences of a step whose others run
// Double Sparsity.
//
// Decode rows run the flash-decoding kernel over the whole prepared batch — its rows and block
// tables, with a split count for the subset's rows — with every row outside the subset at
// position 0, so such a row attends one token of its own sequence (pieces that end at once,
// in bounds) and SparseAttention overwrites it afterwards. The launch thus has the shape of the
// step's other dense attention launches, and a graph step mixing dense and sparse sequences is
// captured and replayed like any other: BeginStep uploads the positions before it. (A batch
// view prepared on its own, the default, would give the other rows a view sequence's block
// table at their own, longer positions.) Prefill rows among the subset take the default: the
// prefill kernel runs the view's tiles only.
#include <algorithm>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/graph_signature.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status CudaBackend::UploadSubsetPositions(const ForwardBatch& batch,
                                                absl::Span<const size_t> sequences) {
  // Once a step in eager steps too (every sparse layer asks for the same subset).
  if (std::equal(sequences.begin(), sequences.end(), subset_uploaded_.begin(),
                 subset_uploaded_.end())) {
    return absl::OkStatus();
  }
  const int64_t n = batch.rows();
  std::vector<int32_t> positions(static_cast<size_t>(n), 0);
  for (size_t j : sequences) {
    const BatchSequence& s = batch.sequences[j];
    std::copy_n(batch.positions.begin() + s.first_row, s.num_rows,
                positions.begin() + s.first_row);
  }
  RETURN_IF_ERROR(Ensure(subset_positions_, static_cast<size_t>(n) * sizeof(int32_t)));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(subset_positions_.ptr, positions.data(),
                                       positions.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  subset_uploaded_.assign(sequences.begin(), sequences.end());
  return absl::OkStatus();
}

int CudaBackend::SubsetDecodeSplits(int heads_q, int heads_kv, const ForwardBatch& batch,
                                    absl::Span<const size_t> sequences) const {
  // Sized for all rows, the few that attend would leave most SMs idle.
  int64_t context = 1;
  for (size_t j : sequences) {
    context = std::max<int64_t>(context, batch.positions[batch.sequences[j].first_row] + 1);
  }
  return DecodeSplits(heads_q, heads_kv, static_cast<int64_t>(sequences.size()), context);
}

absl::Status CudaBackend::SubsetAttention(int layer, const AttentionConfig& config,
                                          const ForwardBatch& batch,
                                          absl::Span<const size_t> sequences,
                                          const KvBlockPool& pool, const DeviceTensor& qkv,
                                          DeviceTensor& out) {
  for (size_t j : sequences) {
    if (j >= batch.sequences.size()) {
      return absl::InvalidArgumentError("SubsetAttention: sequence index out of range");
    }
    if (batch.sequences[j].num_rows != 1) {
      return Backend::SubsetAttention(layer, config, batch, sequences, pool, qkv, out);
    }
  }
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * config.head_dim;
  if (out.cols != q_cols || out.rows < batch.rows()) {
    return absl::InvalidArgumentError("SubsetAttention: out shape");
  }
  if (mode_ != StepMode::kEager) {
    if (!std::equal(sequences.begin(), sequences.end(), subset_uploaded_.begin(),
                    subset_uploaded_.end())) {
      AbortStep();
      return absl::InternalError("cuda backend: a graph step's dense subset was not prepared");
    }
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(AttentionOpSig(10, layer, config, pool, qkv, out)));
    if (skip) return absl::OkStatus();
  } else {
    if (batch_ != &batch || rows_ != batch.rows()) RETURN_IF_ERROR(PrepareBatch(batch, pool));
    RETURN_IF_ERROR(UploadSubsetPositions(batch, sequences));
  }
  const CudaBatchRows all = BatchRows();
  const CudaBatchRows rows{static_cast<const int32_t*>(subset_positions_.ptr), all.row_seq,
                           all.rows};
  const int splits =
      SubsetDecodeSplits(config.num_heads_q, config.num_heads_kv, batch, sequences);
  return DecodeAttention(config, rows, splits, KvView(pool, layer), qkv, out);
}

}  // namespace dsinfer
