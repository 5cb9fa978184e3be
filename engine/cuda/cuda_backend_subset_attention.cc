// CudaBackend::SubsetAttention and MixedAttention (cuda_backend.h): the dense sequences of a
// step whose others run Double Sparsity.
//
// Decode rows run the flash-decoding kernel over the whole prepared batch — its rows and block
// tables, with a split count for the subset's rows — with every row outside the subset at
// position -1, which the kernel leaves alone (its blocks end at once, nothing is written). The
// launch thus has the shape of the step's other dense attention launches, and a graph step
// mixing dense and sparse sequences is captured and replayed like any other: BeginStep uploads
// the positions before it. (A batch view prepared on its own, the default, would give the
// other rows a view sequence's block table at their own, longer positions.) Prefill rows among
// the subset take the default: the prefill kernel runs the view's tiles only.
//
// Since the launch writes only the subset's rows, MixedAttention runs it on a side stream
// beside Double Sparsity's chain, whose kernels leave much of the GPU's bandwidth idle (top-k
// is a short, latency-bound launch of one block a pair): forked after the layer's RoPE launch
// by an event, joined before the next operation by another. In a capture both streams'
// launches land in the graph as two branches. A small dense share runs at half the resident
// blocks (kBesideOneWaveBytes), so that the chain's blocks find SMs free beside it.
#include <algorithm>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/graph_signature.h"
#include "engine/cuda/split_chain.h"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status CudaBackend::UploadSubsetPositions(
    const ForwardBatch& batch, const std::vector<std::vector<size_t>>& subsets) {
  const int64_t n = batch.rows();
  std::vector<int32_t> positions(static_cast<size_t>(n) * subsets.size(), -1);
  for (size_t k = 0; k < subsets.size(); ++k) {
    for (size_t j : subsets[k]) {
      const BatchSequence& s = batch.sequences[j];
      std::copy_n(batch.positions.begin() + s.first_row, s.num_rows,
                  positions.begin() + static_cast<int64_t>(k) * n + s.first_row);
    }
  }
  subset_uploaded_.clear();
  if (positions.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(Ensure(subset_positions_, positions.size() * sizeof(int32_t)));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(subset_positions_.ptr, positions.data(),
                                       positions.size() * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, stream_));
  subset_uploaded_ = subsets;
  return absl::OkStatus();
}

const int32_t* CudaBackend::SubsetPositions(absl::Span<const size_t> sequences) const {
  for (size_t k = 0; k < subset_uploaded_.size(); ++k) {
    const std::vector<size_t>& s = subset_uploaded_[k];
    if (std::equal(sequences.begin(), sequences.end(), s.begin(), s.end())) {
      return static_cast<const int32_t*>(subset_positions_.ptr) + static_cast<int64_t>(k) * rows_;
    }
  }
  return nullptr;
}

namespace {

// In a graph step beside Double Sparsity, the dense rows' split count aims at one wave of the
// SM count (half the resident blocks of one round: SMs left to the chain) while their K/V of
// a layer is at most this many bytes, else at the count they take alone. Measured on an H200
// (docs/benchmarks.md run 18, calls 3-4, side by side with the count alone and with the rows
// before the chain): at 67-134 MB (one dense sequence of 16-32K Llama-3-8B heads or of 8K
// Llama-2-7B heads, batches 2-16) one wave took 1-9% less a graph step than the count alone
// (batch 8, 32K: 7.77-7.81 against 8.42-8.44 ms); at 268-537 MB 1.5-7% more. Eager steps,
// whose launches leave the host one at a time, were mostly slower at one wave (batch 8, 32K:
// 8.75 against 8.43 ms): they keep the count alone.
constexpr int64_t kBesideOneWaveBytes = int64_t{192} << 20;

}  // namespace

int CudaBackend::SubsetDecodeSplits(int heads_q, int heads_kv, int head_dim,
                                    const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                    bool beside) const {
  // Sized for all rows, the few that attend would leave most SMs idle.
  int64_t context = 1;
  for (size_t j : sequences) {
    context = std::max<int64_t>(context, batch.positions[batch.sequences[j].first_row] + 1);
  }
  const int64_t rows = static_cast<int64_t>(sequences.size());
  int waves = -1;  // DecodeSplits' own aim
  if (beside && options_.beside_waves > 0) waves = options_.beside_waves;
  if (beside && options_.beside_waves < 0 && graph_step_) {
    const int64_t kv_bytes = rows * context * heads_kv * head_dim * 2 *
                             static_cast<int64_t>(DTypeSize(options_.dtype));
    if (kv_bytes <= kBesideOneWaveBytes) waves = 1;
  }
  return DecodeSplits(heads_q, heads_kv, rows, context, waves);
}

absl::Status CudaBackend::PrepareSubset(const AttentionConfig& config,
                                        const ForwardBatch& batch, const KvBlockPool& pool,
                                        absl::Span<const size_t> sequences, bool beside) {
  if (batch_ != &batch || rows_ != batch.rows()) RETURN_IF_ERROR(PrepareBatch(batch, pool));
  if (SubsetPositions(sequences) == nullptr) {
    RETURN_IF_ERROR(UploadSubsetPositions(batch, {{sequences.begin(), sequences.end()}}));
  }
  const int splits = SubsetDecodeSplits(config.num_heads_q, config.num_heads_kv,
                                        config.head_dim, batch, sequences, beside);
  return EnsureDecodeWorkspace(config.num_heads_q, config.head_dim, splits);
}

absl::Status CudaBackend::SubsetAttention(int layer, const AttentionConfig& config,
                                          const ForwardBatch& batch,
                                          absl::Span<const size_t> sequences,
                                          const KvBlockPool& pool, const DeviceTensor& qkv,
                                          DeviceTensor& out) {
  return SubsetAttentionOn(layer, config, batch, sequences, pool, qkv, out, stream_, false);
}

absl::Status CudaBackend::SubsetAttentionOn(int layer, const AttentionConfig& config,
                                            const ForwardBatch& batch,
                                            absl::Span<const size_t> sequences,
                                            const KvBlockPool& pool, const DeviceTensor& qkv,
                                            DeviceTensor& out, cudaStream_t stream,
                                            bool beside) {
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
    if (SubsetPositions(sequences) == nullptr) {
      AbortStep();
      return absl::InternalError("cuda backend: a graph step's dense subset was not prepared");
    }
    ASSIGN_OR_RETURN(const bool skip,
                     GraphOp(AttentionOpSig(10, layer, config, pool, qkv, out)));
    if (skip) return absl::OkStatus();
  } else {
    RETURN_IF_ERROR(PrepareSubset(config, batch, pool, sequences, beside));
  }
  const CudaBatchRows all = BatchRows();
  const CudaBatchRows rows{SubsetPositions(sequences), all.row_seq, all.rows};
  const int splits =
      SubsetDecodeSplits(config.num_heads_q, config.num_heads_kv, config.head_dim, batch,
                         sequences, beside);
  return DecodeAttention(config, rows, splits, KvView(pool, layer), qkv, out, stream);
}

absl::Status CudaBackend::MixedAttention(int layer, const AttentionConfig& config,
                                         const ForwardBatch& batch,
                                         absl::Span<const size_t> dense,
                                         absl::Span<const size_t> sparse,
                                         const KvBlockPool& pool, DoubleSparsity& ds,
                                         const DeviceTensor& qkv, DeviceTensor& out) {
  bool beside = options_.dense_beside_sparse && !dense.empty() && !sparse.empty() &&
                mode_ != StepMode::kReplay;
  for (size_t j : dense) {
    beside = beside && j < batch.sequences.size() && batch.sequences[j].num_rows == 1;
  }
  if (!beside) {
    return Backend::MixedAttention(layer, config, batch, dense, sparse, pool, ds, qkv, out);
  }
  if (mode_ == StepMode::kEager) {
    // What the side launch reads goes up on the backend's stream before the fork, and its
    // workspace grows there (a growth synchronizes; none may happen past the fork).
    RETURN_IF_ERROR(PrepareSubset(config, batch, pool, dense, /*beside=*/true));
  }
  return ForkJoin(
      stream_, side_stream_, side_fork_, side_join_,
      [&] { return SubsetAttentionOn(layer, config, batch, dense, pool, qkv, out, side_stream_,
                                     true); },
      [&] {
        // The chain stays whole beside the dense launch (SparseChainSplit).
        chain_beside_dense_ = true;
        const absl::Status status = SparseAttention(layer, batch, sparse, pool, ds, qkv, out);
        chain_beside_dense_ = false;
        return status;
      });
}

}  // namespace dsinfer
