// Double Sparsity decode steps as CUDA graphs (cuda_backend.h; the eager path is
// cuda_backend_sparse.cc).
//
// A step can be a graph step when the test capture is off and every sequence has its labels at
// every layer it runs sparse, up to at least the previous token, in the format it asks for:
// then each sparse layer's launches have the same shape in every step of the graph's block
// bucket. Each layer runs its own sparse sequences (DoubleSparsity::SparseSequences: requests
// with different dense layers differ in the first ones); the others run dense beside them
// (SubsetAttention, whose positions BeginStep uploads, a slot per distinct subset).
// PlanSparseGraphStep, before the capture or replay, does all the host work the eager path
// does per layer — label storage reserved (grown on the stream if needed), channel sets
// uploaded, descriptors built — for every sparse layer at once, and uploads all the
// descriptors with one copy; the graph's kernels read them from that buffer.
// The RoPE launch's label views are per batch sequence (r 0 for the dense ones). Sizes are the
// bucket's: score rows of the bucket's tokens, selection rows of the budget at that length,
// the split count that follows from it; the top-k's shared memory is planned for the longest
// row rounded up to a sixteenth of the bucket (TopKRowBound). The current token's label is
// always written again (one token a sequence), by the layer's RoPE launch where the head_dim
// allows (RopeWritesLabels: the label writer's launch is then left out), else by the label
// writer. The graph's key holds those sizes (the row bound too) and the addresses of the
// scratch buffers its kernels were captured with, so a buffer that moved leads to a new
// capture, never to a replay with a stale pointer.
#include <cstdint>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/graph_signature.h"
#include "engine/cuda/packed_upload.h"
#include "engine/cuda/score_and_select.h"
#include "engine/cuda/sparse_state.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<uint64_t> CudaBackend::PlanSparseGraphStep(const ForwardBatch& batch,
                                                          const KvBlockPool& pool,
                                                          DoubleSparsity& ds) {
  const int layers = static_cast<int>(pool.options().layers);
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int hq = last_heads_q_;
  if (capture_sparse_ || ds_state_ == nullptr || hq <= 0 || last_heads_kv_ != hkv) return 0;
  DsState& st = *ds_state_;
  // Every sequence with device labels (in its format) at every layer it runs sparse, up to at
  // least its previous token.
  for (size_t j = 0; j < batch.sequences.size(); ++j) {
    const BatchSequence& s = batch.sequences[j];
    const auto it = st.seqs.find(s.kv);
    const bool labelled = it != st.seqs.end() && it->second.base != nullptr &&
                          ds.labels().Contains(s.kv) &&
                          it->second.format == ds.labels().format(s.kv);
    const int64_t tokens = static_cast<int64_t>(batch.positions[s.first_row]) + 1;
    for (int l = 0; l < layers; ++l) {
      if (!ds.IsSparse(j, l)) continue;
      if (!labelled || static_cast<int>(it->second.written.size()) <= l) return 0;
      const int64_t written = it->second.written[l];
      if (written != tokens && written != tokens - 1) return 0;
    }
  }
  const int64_t bucket_tokens = static_cast<int64_t>(max_blocks_) * block_tokens_;
  st.graph_layers.resize(layers);  // kept from step to step: their vectors keep their memory
  struct Offsets {
    size_t labels, seqs, ranges, rope_labels;
  };
  std::vector<Offsets> offsets(layers);
  PackedUpload upload(st.graph_staging);
  uint64_t key = Sig({static_cast<uint64_t>(hq)});
  for (int l = 0; l < layers; ++l) {
    SparseLayerPlan& plan = st.graph_layers[l];
    plan.seqs.clear();  // a dense layer's plan stays empty
    const std::vector<size_t> sparse = OrderByLabelShape(batch, ds.SparseSequences(l), ds);
    if (sparse.empty()) continue;
    for (size_t j : sparse) {
      key = SignatureMix(key, Sig({static_cast<uint64_t>(l), static_cast<uint64_t>(j)}));
    }
    RETURN_IF_ERROR(DescribeSparseLayer(l, batch, sparse, pool, ds, hq, bucket_tokens, plan));
    plan.labels_in_rope = RopeWritesLabels(d);
    // The RoPE launch indexes label views by batch sequence: the dense ones' write none.
    plan.rope_labels.assign(batch.sequences.size(), CudaLabelSeq{});
    for (size_t i = 0; i < sparse.size(); ++i) plan.rope_labels[sparse[i]] = plan.labels[i];
    offsets[l] = {upload.Add<CudaLabelSeq>(plan.labels), upload.Add<CudaDsSequence>(plan.seqs),
                  upload.Add<CudaLabelRange>(plan.ranges),
                  upload.Add<CudaLabelSeq>(plan.rope_labels)};
  }
  ASSIGN_OR_RETURN(const char* base, upload.Upload(st.graph_meta, stream_));
  for (int l = 0; l < layers; ++l) {
    SparseLayerPlan& plan = st.graph_layers[l];
    if (plan.seqs.empty()) continue;
    plan.device.labels = reinterpret_cast<const CudaLabelSeq*>(base + offsets[l].labels);
    plan.device.sequences = reinterpret_cast<const CudaDsSequence*>(base + offsets[l].seqs);
    plan.device.ranges = reinterpret_cast<const CudaLabelRange*>(base + offsets[l].ranges);
    plan.rope_labels_device =
        reinterpret_cast<const CudaLabelSeq*>(base + offsets[l].rope_labels);
    RETURN_IF_ERROR(GrowSparseScratch(plan, hq, hkv, d, /*scores=*/true));
    // What the layer's launches take as arguments besides the buffers' addresses.
    ScoreSelectJob job;
    job.heads_q = hq;
    job.heads_kv = hkv;
    SetJobSequences(plan.labels, plan.seqs, plan.device, job);
    key = SignatureMix(key, Sig({static_cast<uint64_t>(l), static_cast<uint64_t>(plan.sel_stride),
                                 static_cast<uint64_t>(plan.max_count),
                                 static_cast<uint64_t>(plan.ranges.size()),
                                 static_cast<uint64_t>(job.max_r),
                                 static_cast<uint64_t>(job.label_bits),
                                 static_cast<uint64_t>(job.score_heads),
                                 static_cast<uint64_t>(plan.labels_in_rope),
                                 static_cast<uint64_t>(plan.row_bound)}));
  }
  for (const StreamBuffer* b : {&st.graph_meta, &st.scores, &st.selected, &st.counts,
                                &st.workspace, &st.topk_workspace}) {
    key = SignatureMix(key, SigPtr(b->ptr));
  }
  return key | 1;
}

absl::Status CudaBackend::GraphSparseAttention(int layer, const ForwardBatch& batch,
                                               absl::Span<const size_t> sequences,
                                               const KvBlockPool& pool, DoubleSparsity& ds,
                                               const DeviceTensor& qkv, DeviceTensor& out) {
  const DsState* st = ds_state_.get();
  if (st == nullptr || layer < 0 || layer >= static_cast<int>(st->graph_layers.size()) ||
      st->graph_layers[layer].seqs.size() != sequences.size()) {
    AbortStep();
    return absl::InternalError("cuda backend: a graph step's sparse layer was not planned");
  }
  const int hq = last_heads_q_;
  ASSIGN_OR_RETURN(const bool skip,
                   GraphOp(Sig({9, static_cast<uint64_t>(layer), SigTensor(qkv), SigTensor(out),
                                SigPtr(pool.KBase(layer)), SigPtr(pool.VBase(layer)),
                                static_cast<uint64_t>(sequences.size()),
                                static_cast<uint64_t>(hq)})));
  for (size_t index : sequences) ds.CountDeviceRow(batch, index);
  if (skip) return absl::OkStatus();
  return LaunchSparseLayer(st->graph_layers[layer], KvView(pool, layer), hq, qkv, out);
}

}  // namespace dsinfer
