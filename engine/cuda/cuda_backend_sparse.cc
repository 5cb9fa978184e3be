// Double Sparsity on the CUDA backend (DESIGN §1; kernels in kernels/cuda/double_sparsity.cuh).
//
// Labels live on the GPU, per sequence and layer, in the format the sequence's options fixed
// (r, bits). They are derived from the post-RoPE K rows already in the paged pool — the same
// dtype-rounded values qkv held — by LaunchWriteLabelsPaged, lazily: at a sparse layer, the
// tokens whose labels do not exist yet are labelled first (the whole prompt at a sequence's
// first sparse step, then one token per step). So StoreLabels only retires the labels of
// sequences that left (and, in offload steps, whose pool is in host memory, writes the current
// token's label from qkv: StoreCurrentLabels), prefill writes no label bytes for sequences that
// never go sparse, and the result is bit-identical to writing labels beside the K/V write. The
// host LabelCache of DoubleSparsity stays the source of truth for which sequences keep labels
// and their format.
//
// Per sparse layer: one upload of the step's small per-sequence descriptors, then four
// launches on the backend's stream — label catch-up, scores, radix top-k, attention over the
// selected rows — with no host wait. All device memory here is stream-ordered
// (cudaMallocAsync / cudaFreeAsync), grow-only scratch and per-sequence label blocks that grow
// geometrically (old labels copied on the stream). Decode steps may also run as CUDA graphs
// (cuda_backend_sparse_graph.cc): the same launches, described and uploaded for all layers
// before the step.
//
// Statistics: each sparse row is counted by DoubleSparsity::CountDeviceRow (the selection's
// size is known on the host: top-k keeps BudgetFor(tokens) rows per KV head); recall is not
// measured on CUDA.
//
// Test diagnostics: with set_capture_sparse(true) each call ends with a stream wait and copies
// what the label writer, scorer and selection read and produced back to host (SparseCapture),
// so tests replay the CPU twins on the engine's own data instead of comparing logits with the
// fp32 CPU engine, whose top-k boundary fp16 activation noise can move.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/score_and_select.h"
#include "engine/cuda/sparse_state.h"
#include "engine/cuda/split_chain.h"
#include "engine/cuda/stream_buffer.h"
#include "engine/cuda/topk_workspace.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {

std::vector<size_t> LabelShapeOrder(const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                    const DoubleSparsity& ds) {
  // Each sequence's shape looked up once: (bits, r), then its position.
  std::vector<std::pair<std::pair<int, int>, size_t>> keyed;
  keyed.reserve(sequences.size());
  for (size_t i = 0; i < sequences.size(); ++i) {
    const KvBlockPool::SequenceId kv = batch.sequences[sequences[i]].kv;
    std::pair<int, int> shape(0, 0);  // no labels: DescribeSparseLayer refuses it
    if (ds.labels().Contains(kv)) {
      const LabelFormat& f = ds.labels().format(kv);
      shape = {f.bits, f.r};
    }
    keyed.push_back({shape, i});
  }
  std::stable_sort(keyed.begin(), keyed.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<size_t> order;
  order.reserve(keyed.size());
  for (const auto& k : keyed) order.push_back(k.second);
  return order;
}

std::vector<size_t> OrderByLabelShape(const ForwardBatch& batch, absl::Span<const size_t> sequences,
                                      const DoubleSparsity& ds) {
  std::vector<size_t> ordered;
  ordered.reserve(sequences.size());
  for (size_t i : LabelShapeOrder(batch, sequences, ds)) ordered.push_back(sequences[i]);
  return ordered;
}

absl::Status CudaBackend::DsState::DropLabelsIf(
    absl::FunctionRef<bool(KvBlockPool::SequenceId)> drop, cudaStream_t stream) {
  for (auto it = seqs.begin(); it != seqs.end();) {
    if (!drop(it->first)) {
      ++it;
      continue;
    }
    if (it->second.base != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(it->second.base, stream));
    it = seqs.erase(it);
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::DsState::Retire(const DoubleSparsity& ds, cudaStream_t stream) {
  return DropLabelsIf([&](KvBlockPool::SequenceId id) { return !ds.labels().Contains(id); },
                      stream);
}

CudaBackend::DsState::~DsState() {
  for (auto& [id, s] : seqs) cudaFree(s.base);
  for (StreamBuffer* b :
       {&meta, &scores, &selected, &counts, &workspace, &topk_workspace, &graph_meta}) {
    cudaFree(b->ptr);
  }
}

void CudaBackend::ForgetDeviceLabelsOf(const ForwardBatch& batch) {
  if (ds_state_ == nullptr) return;
  for (const BatchSequence& s : batch.sequences) {
    const auto it = ds_state_->seqs.find(s.kv);
    if (it == ds_state_->seqs.end()) continue;
    for (int64_t& w : it->second.written) w = std::min(w, s.start_position);
  }
}

absl::Status CudaBackend::ReleaseDeviceLabels() {
  if (ds_state_ == nullptr) return absl::OkStatus();
  return ds_state_->DropLabelsIf([](KvBlockPool::SequenceId) { return true; }, stream_);
}

absl::Status CudaBackend::StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                                      const DeviceTensor& qkv) {
  // A graph step: BeginStep retired the labels of sequences that left, and offload steps are
  // never captured.
  if (mode_ != StepMode::kEager) return absl::OkStatus();
  // gpu mode: labels are derived from the pool when needed; offload steps also write the
  // current token's (StoreCurrentLabels: their pool is in host memory).
  RETURN_IF_ERROR(StoreCurrentLabels(layer, batch, ds, qkv));
  if (ds_state_ == nullptr) return absl::OkStatus();
  return ds_state_->Retire(ds, stream_);
}

absl::Status CudaBackend::DescribeSparseLayer(int layer, const ForwardBatch& batch,
                                              absl::Span<const size_t> sequences,
                                              const KvBlockPool& pool, DoubleSparsity& ds,
                                              int heads_q, int64_t bucket_tokens,
                                              SparseLayerPlan& plan) {
  DsState& st = *ds_state_;
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int layers = static_cast<int>(pool.options().layers);
  const size_t n = sequences.size();
  plan.labels.resize(n);
  plan.seqs.resize(n);
  plan.ranges.clear();
  plan.channels.assign(capture_sparse_ ? n : 0, {});
  plan.max_count = 0;
  plan.sel_stride = 0;
  plan.max_tokens = bucket_tokens;
  int64_t longest = 0;
  plan.labels_in_rope = false;
  for (size_t i = 0; i < n; ++i) {
    const size_t index = sequences[i];
    const BatchSequence& s = batch.sequences[index];
    const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
    if (!ds.labels().Contains(s.kv)) {
      return absl::InternalError("SparseAttention on a sequence without labels");
    }
    const LabelFormat format = ds.labels().format(s.kv);
    const int64_t row = s.first_row;
    const int64_t tokens = static_cast<int64_t>(batch.positions[row]) + 1;
    // Label storage: capacity for the sequence's KV reservation, grown geometrically.
    DeviceLabels& q = st.seqs[s.kv];
    RETURN_IF_ERROR(q.Reserve(format, tokens, ds.labels().capacity(s.kv), layers, hkv, stream_));
    // Channels of this layer for the sequence's statistic and r, on the device.
    ASSIGN_OR_RETURN(const DeviceChannelSet* ch, st.channels.Upload(ds, o.statistic, layer,
                                                                    heads_q, hkv, format.r, d,
                                                                    stream_));
    plan.labels[i] = q.View(layer, hkv);
    plan.labels[i].channels = static_cast<const int32_t*>(ch->dev);
    if (capture_sparse_) plan.channels[i] = ch->host;
    int64_t& written = q.written[layer];
    if (written > tokens) written = 0;  // the sequence was cut back: relabel
    // A graph step labels the current token in every replay (PlanSparseGraphStep made sure
    // nothing before it is missing); an eager one whatever is missing.
    const int64_t from = bucket_tokens > 0 ? tokens - 1 : written;
    if (from < tokens) {
      plan.ranges.push_back(CudaLabelRange{static_cast<int32_t>(i), static_cast<int32_t>(index),
                                           static_cast<int32_t>(from),
                                           static_cast<int32_t>(tokens - from)});
      plan.max_count = std::max(plan.max_count, tokens - from);
    }
    written = tokens;
    plan.seqs[i] = SparseSequence(o, tokens, row, static_cast<int>(index));
    // A graph step's sizes hold for every context of its block bucket (BudgetFor grows with
    // the context).
    const int64_t stride =
        bucket_tokens > 0 ? o.BudgetFor(bucket_tokens) : int64_t{plan.seqs[i].budget};
    plan.sel_stride = std::max(plan.sel_stride, stride);
    plan.max_tokens = std::max(plan.max_tokens, tokens);
    longest = std::max(longest, tokens);
  }
  plan.row_bound = TopKRowBound(ScoreRowStride(plan.max_tokens), longest);
  return absl::OkStatus();
}

absl::Status CudaBackend::GrowSparseScratch(const SparseLayerPlan& plan, int heads_q,
                                            int heads_kv, int head_dim, bool scores) {
  DsState& st = *ds_state_;
  const int num = static_cast<int>(plan.seqs.size());
  const size_t pairs = static_cast<size_t>(num) * heads_kv;
  RETURN_IF_ERROR(st.selected.Grow(pairs * plan.sel_stride * 4, stream_));
  RETURN_IF_ERROR(st.counts.Grow(pairs * 4, stream_));
  const int splits = SparseAttentionSplits(num, heads_kv, plan.sel_stride, sm_count_);
  int64_t workspace = SparseAttentionWorkspaceFloats(num, heads_q, head_dim, splits);
  const int half = SparseChainSplit(plan, heads_kv);
  if (half > 0) {
    workspace = std::max(workspace, SplitChainWorkspaceFloats(num, half, heads_q, heads_kv,
                                                              head_dim, plan.sel_stride,
                                                              sm_count_));
  }
  RETURN_IF_ERROR(st.workspace.Grow(static_cast<size_t>(workspace) * 4, stream_));
  if (!scores) return absl::OkStatus();
  // ScoreAndSelect's own growth of the score buffer and the top-k workspace, ahead of time.
  const int64_t stride = ScoreRowStride(plan.max_tokens);
  RETURN_IF_ERROR(st.scores.Grow(pairs * stride * kScoreBytes, stream_));
  return TopKWorkspaceFor(st.topk_workspace, options_.ds_topk_algo, num, heads_kv, stride,
                          sm_count_, stream_)
      .status();
}

absl::Status CudaBackend::LaunchSparseLayer(const SparseLayerPlan& plan, const CudaPagedKv& kv,
                                            int heads_q, const DeviceTensor& qkv,
                                            DeviceTensor& out) {
  DsState& st = *ds_state_;
  const int hkv = kv.kv_heads;
  const int d = kv.head_dim;
  const int num = static_cast<int>(plan.seqs.size());
  const DType dtype = options_.dtype;
  if (!plan.labels_in_rope) {
    RETURN_IF_ERROR(LaunchWriteLabelsPaged(dtype, kv, plan.device.ranges,
                                           static_cast<int>(plan.ranges.size()), plan.max_count,
                                           plan.device.labels, stream_));
  }
  RETURN_IF_ERROR(GrowSparseScratch(plan, heads_q, hkv, d, /*scores=*/false));
  ScoreSelectJob job;
  job.dtype = dtype;
  job.q = qkv.data;
  job.q_stride = qkv.cols;
  job.heads_q = heads_q;
  job.heads_kv = hkv;
  job.head_dim = d;
  SetJobSequences(plan.labels, plan.seqs, plan.device, job);
  job.max_tokens = plan.max_tokens;
  job.longest_row = plan.row_bound;
  job.selected = static_cast<int32_t*>(st.selected.ptr);
  job.sel_stride = plan.sel_stride;
  job.counts = static_cast<int32_t*>(st.counts.ptr);
  const int half = SparseChainSplit(plan, hkv);
  if (half > 0) return LaunchSplitSparseChain(job, half, kv, out);
  RETURN_IF_ERROR(ScoreAndSelect(job, SelectionFusing(), options_.ds_score_algo,
                                 options_.ds_topk_algo, sm_count_, st.scores, st.topk_workspace,
                                 stream_));
  const int splits = SparseAttentionSplits(num, hkv, plan.sel_stride, sm_count_);
  return LaunchSparseAttention(
      dtype, qkv.data, qkv.cols, plan.device.sequences, num, heads_q, hkv, d,
      1.0f / std::sqrt(static_cast<float>(d)), kv, static_cast<const int32_t*>(st.selected.ptr),
      plan.sel_stride, static_cast<const int32_t*>(st.counts.ptr), splits,
      static_cast<float*>(st.workspace.ptr), out.data, out.cols, stream_);
}

absl::Status CudaBackend::SparseAttention(int layer, const ForwardBatch& batch,
                                          absl::Span<const size_t> sequences,
                                          const KvBlockPool& pool, DoubleSparsity& ds,
                                          const DeviceTensor& qkv, DeviceTensor& out) {
  if (sequences.empty()) return absl::OkStatus();
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int hq = static_cast<int>(qkv.cols / d) - 2 * hkv;
  if (hq <= 0 || hq % hkv != 0) return absl::InternalError("SparseAttention: bad qkv shape");
  if (mode_ != StepMode::kEager) {
    return GraphSparseAttention(layer, batch, sequences, pool, ds, qkv, out);
  }
  // The block tables KvView hands out are those of the batch last prepared; the model's dense
  // op may have prepared a view listing only the dense sequences.
  if (batch_ != &batch || rows_ != batch.rows()) RETURN_IF_ERROR(PrepareBatch(batch, pool));
  if (ds_state_ == nullptr) ds_state_ = std::make_shared<DsState>();
  DsState& st = *ds_state_;
  RETURN_IF_ERROR(st.Retire(ds, stream_));
  // Graph steps size their workspaces by the heads (a step with no dense layer learns them here).
  last_heads_q_ = hq;
  last_heads_kv_ = hkv;
  SparseLayerPlan plan;
  const std::vector<size_t> ordered = OrderByLabelShape(batch, sequences, ds);
  RETURN_IF_ERROR(DescribeSparseLayer(layer, batch, ordered, pool, ds, hq, 0, plan));
  // One upload of the descriptors: [labels | sequences | ranges].
  ASSIGN_OR_RETURN(plan.device, UploadLabelDescriptors(plan.labels, plan.seqs, plan.ranges,
                                                       st.staging, st.meta, stream_));
  const CudaPagedKv kv = KvView(pool, layer);
  RETURN_IF_ERROR(LaunchSparseLayer(plan, kv, hq, qkv, out));
  for (size_t index : sequences) ds.CountDeviceRow(batch, index);
  if (!capture_sparse_) return absl::OkStatus();

  // Test diagnostics (see SparseCapture): copy back what each stage read and produced.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  auto to_f32 = [](DType t, const void* raw, size_t count, std::vector<float>& dst) {
    dst.resize(count);
    if (t == DType::kF32) {
      std::memcpy(dst.data(), raw, count * 4);
      return;
    }
    const uint16_t* h = static_cast<const uint16_t*>(raw);
    for (size_t j = 0; j < count; ++j) {
      dst[j] = t == DType::kBF16 ? Bf16ToF32(h[j]) : F16ToF32(h[j]);
    }
  };
  // As the kernels read them: q and the pool's keys in the backend's dtype.
  const DType dtype = options_.dtype;
  const size_t n = sequences.size();
  const size_t qkv_elem = dtype == DType::kF32 ? 4 : 2;
  const size_t kv_elem = qkv_elem;
  const int64_t block_tokens = pool.options().block_tokens;
  SparseCapture cap;
  cap.layer = layer;
  cap.heads_q = hq;
  cap.heads_kv = hkv;
  cap.head_dim = d;
  cap.seqs.resize(n);
  std::vector<char> raw;
  for (size_t i = 0; i < n; ++i) {
    SparseCapture::Seq& c = cap.seqs[i];
    const BatchSequence& s = batch.sequences[ordered[i]];
    const CudaDsSequence& sq = plan.seqs[i];
    c.r = plan.labels[i].r;
    c.bits = plan.labels[i].bits;
    c.aggregation = sq.aggregation;
    c.sink = sq.sink;
    c.recent = sq.recent;
    c.tokens = sq.tokens;
    c.budget = sq.budget;
    c.channels = plan.channels[i];
    raw.resize(static_cast<size_t>(hq) * d * qkv_elem);
    CUDA_RETURN_IF_ERROR(
        cudaMemcpy(raw.data(), static_cast<const char*>(qkv.data) + sq.q_row * qkv.cols * qkv_elem,
                   raw.size(), cudaMemcpyDeviceToHost));
    to_f32(dtype, raw.data(), static_cast<size_t>(hq) * d, c.q);
    // Keys of every token from the pool, through the sequence's host block table.
    const std::vector<int32_t>& table = pool.BlockTable(s.kv);
    const size_t key_elems = static_cast<size_t>(hkv) * d;
    raw.resize(static_cast<size_t>(c.tokens) * key_elems * kv_elem);
    for (int64_t t = 0; t < c.tokens; ++t) {
      const int64_t slot =
          static_cast<int64_t>(table[t / block_tokens]) * block_tokens + t % block_tokens;
      CUDA_RETURN_IF_ERROR(cudaMemcpy(raw.data() + t * key_elems * kv_elem,
                                      static_cast<const char*>(kv.k) + slot * key_elems * kv_elem,
                                      key_elems * kv_elem, cudaMemcpyDefault));
    }
    to_f32(dtype, raw.data(), static_cast<size_t>(c.tokens) * key_elems, c.keys);
    const size_t rows = static_cast<size_t>(c.tokens) * hkv;
    // The device's paged rows (whole pages), to the twins' token-major order.
    const size_t stored_rows = static_cast<size_t>(LabelCapacity(c.tokens)) * hkv;
    auto copy_rows = [&](const void* from, size_t row_bytes, void* to) -> absl::Status {
      raw.resize(stored_rows * row_bytes);
      CUDA_RETURN_IF_ERROR(cudaMemcpy(raw.data(), from, raw.size(), cudaMemcpyDeviceToHost));
      LabelRowsToTokenMajor(raw.data(), c.tokens, hkv, row_bytes, to);
      return absl::OkStatus();
    };
    if (c.bits == 16) {
      c.f16.resize(rows * c.r);
      RETURN_IF_ERROR(copy_rows(plan.labels[i].data, 2 * c.r, c.f16.data()));
    } else {
      c.codes.resize(rows * ((c.r + 1) / 2));
      c.scales.resize(rows);
      c.minimums.resize(rows);
      RETURN_IF_ERROR(copy_rows(plan.labels[i].data, (c.r + 1) / 2, c.codes.data()));
      RETURN_IF_ERROR(copy_rows(plan.labels[i].scales, 2, c.scales.data()));
      RETURN_IF_ERROR(copy_rows(plan.labels[i].minimums, 2, c.minimums.data()));
    }
    c.scores.resize(static_cast<size_t>(hkv) * c.tokens);
    std::vector<int32_t> counts(hkv);
    CUDA_RETURN_IF_ERROR(cudaMemcpy(counts.data(),
                                    static_cast<const int32_t*>(st.counts.ptr) + i * hkv, hkv * 4,
                                    cudaMemcpyDeviceToHost));
    c.selected.resize(hkv);
    std::vector<uint16_t> bits(c.tokens);
    for (int h = 0; h < hkv; ++h) {
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(bits.data(),
                     static_cast<const uint16_t*>(st.scores.ptr) +
                         (i * hkv + h) * ScoreRowStride(plan.max_tokens),
                     c.tokens * kScoreBytes, cudaMemcpyDeviceToHost));
      for (int64_t t = 0; t < c.tokens; ++t) c.scores[h * c.tokens + t] = F16ToF32(bits[t]);
      c.selected[h].resize(std::max(counts[h], 0));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.selected[h].data(),
                     static_cast<const int32_t*>(st.selected.ptr) + (i * hkv + h) * plan.sel_stride,
                     c.selected[h].size() * 4, cudaMemcpyDeviceToHost));
    }
  }
  sparse_captures_.push_back(std::move(cap));
  return absl::OkStatus();
}

}  // namespace dsinfer
