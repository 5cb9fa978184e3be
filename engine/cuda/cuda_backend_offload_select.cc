// The offload tier's labels and selections on the CUDA backend (cuda_backend_offload.cc has the
// overview of the tier's path). A selection scores device labels, so they are written where the
// K rows are cheapest to read: from the step's own post-RoPE K (StoreCurrentLabels) or from a
// staging pool still on the GPU (LabelLayerFrom, the layer-major prefill), and only what is left
// is caught up from the pool over PCIe by the selection itself (SelectIntoDevice). SelectTokens
// brings a selection back to host lists for the reuse cache, whose bookkeeping runs on the host;
// RopeQueries rotates the queries that a selection a layer ahead scores with.
#include <algorithm>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/offload_state.h"
#include "engine/cuda/packed_upload.h"
#include "engine/cuda/score_and_select.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

// One layer of sequence `seq`'s K/V as the label writer reads it: the layer's K and V at device
// addresses `k`, `v` (the pool's layer, or a staging pool with the same block ids), through the
// sequence's device block table.
CudaPagedKv SequenceLayerKv(const void* k, const void* v, const int32_t* table,
                            const KvBlockPool& pool, KvBlockPool::SequenceId seq) {
  CudaPagedKv kv;
  kv.k = const_cast<void*>(k);
  kv.v = const_cast<void*>(v);
  kv.block_tables = table;
  kv.max_blocks = static_cast<int>(pool.BlockTable(seq).size());
  kv.block_tokens = pool.options().block_tokens;
  kv.kv_heads = pool.options().kv_heads;
  kv.head_dim = pool.options().head_dim;
  return kv;
}

}  // namespace

absl::Status CudaBackend::RopeQueries(const AttentionConfig& config,
                                      absl::Span<const int32_t> positions, DeviceTensor& q) {
  const int d = config.head_dim;
  const int64_t m = static_cast<int64_t>(positions.size());
  if (q.cols < static_cast<int64_t>(config.num_heads_q) * d || q.rows < m) {
    return OffloadError("RopeQueries", "q shape");
  }
  if (static_cast<int>(config.rope_inv_freq.size()) != d / 2) {
    return OffloadError("RopeQueries", "inv_freq size");
  }
  if (m == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  RETURN_IF_ERROR(UploadInvFreq(config));
  // [positions m | row→table 0 … | one block table {0}]: the RoPE kernel with no KV heads
  // rotates q only and stores nothing.
  std::vector<int32_t> meta(static_cast<size_t>(2 * m + 1), 0);
  std::copy(positions.begin(), positions.end(), meta.begin());
  RETURN_IF_ERROR(st->rope_meta.Grow(meta.size() * 4, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st->rope_meta.ptr, meta.data(), meta.size() * 4,
                                       cudaMemcpyHostToDevice, stream_));
  const int32_t* dev = static_cast<const int32_t*>(st->rope_meta.ptr);
  CudaBatchRows rows{dev, dev + m, m};
  CudaPagedKv none;
  none.block_tables = dev + 2 * m;
  none.max_blocks = 1;
  none.block_tokens = 1 << 30;
  none.kv_heads = 0;
  none.head_dim = d;
  return LaunchRopeStoreKv(options_.dtype, q.data, q.cols, rows, config.num_heads_q, 0, d,
                           static_cast<const float*>(inv_freq_.ptr), none, stream_);
}

absl::Status CudaBackend::LabelLayerFrom(int layer, const ForwardBatch& batch, size_t index,
                                         DoubleSparsity& ds, const KvBlockPool& source,
                                         int source_layer, const KvBlockPool& pool) {
  if (index >= batch.sequences.size()) return OffloadError("LabelLayerFrom", "bad index");
  const BatchSequence& s = batch.sequences[index];
  if (!ds.labels().Contains(s.kv)) return absl::OkStatus();  // a dense sequence
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  const int hkv = pool.options().kv_heads;
  const int hq = ds.heads_q();
  if (hq <= 0 || hq % hkv != 0 || source.options().kv_heads != hkv ||
      source.options().head_dim != pool.options().head_dim ||
      source.options().block_tokens != pool.options().block_tokens) {
    return OffloadError("LabelLayerFrom", "pools of different geometry");
  }
  const int64_t tokens = s.start_position + s.num_rows;
  ASSIGN_OR_RETURN(const OffloadState::LayerLabels lab,
                   st->LabelsAt(ds, s, layer, tokens, hq, pool.options()));
  int64_t& written = *lab.written;
  if (written > tokens) written = 0;
  if (written == tokens) return absl::OkStatus();
  const CudaLabelRange range{0, 0, static_cast<int32_t>(written),
                             static_cast<int32_t>(tokens - written)};
  ASSIGN_OR_RETURN(const DeviceLabelDescriptors desc,
                   UploadLabelDescriptors(absl::MakeConstSpan(&lab.view, 1), {},
                                          absl::MakeConstSpan(&range, 1), st->meta_host,
                                          st->select_meta, stream_));
  // The model's block table addresses the source too (same block ids).
  ASSIGN_OR_RETURN(const int32_t* table, st->EnsureTable(s.kv, pool));
  const CudaPagedKv kv = SequenceLayerKv(source.KBase(source_layer), source.VBase(source_layer),
                                         table, pool, s.kv);
  RETURN_IF_ERROR(LaunchWriteLabelsPaged(options_.dtype, kv, desc.ranges, 1, range.count,
                                         desc.labels, stream_));
  written = tokens;
  return absl::OkStatus();
}

absl::Status CudaBackend::StoreCurrentLabels(int layer, const ForwardBatch& batch,
                                             DoubleSparsity& ds, const DeviceTensor& qkv) {
  OffloadState* st = offload_state_.get();
  if (st == nullptr || st->pool == nullptr) return absl::OkStatus();  // not an offload step
  const KvBlockPool& pool = *st->pool;
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int hq = st->heads_q;
  const int64_t rows = batch.rows();
  if (hq <= 0 || qkv.rows < rows || qkv.cols != static_cast<int64_t>(hq + 2 * hkv) * d) {
    return OffloadError("StoreLabels", "bad qkv shape");
  }
  std::vector<CudaLabelSeq> labels;
  std::vector<int32_t> positions(rows, 0), row_label(rows, -1);
  std::vector<int64_t*> advance;
  for (const BatchSequence& s : batch.sequences) {
    if (s.num_rows != 1 || !ds.labels().Contains(s.kv)) continue;
    const int32_t position = batch.positions[s.first_row];
    ASSIGN_OR_RETURN(const OffloadState::LayerLabels lab,
                     st->LabelsAt(ds, s, layer, static_cast<int64_t>(position) + 1, hq,
                                  pool.options()));
    // Only a row right behind the labelled tokens; the next selection catches others up.
    if (*lab.written != position) continue;
    row_label[s.first_row] = static_cast<int32_t>(labels.size());
    positions[s.first_row] = position;
    labels.push_back(lab.view);
    advance.push_back(lab.written);
  }
  if (labels.empty()) return absl::OkStatus();
  // One upload: [labels | positions | row labels].
  PackedUpload upload(st->meta_host);
  const size_t labels_off = upload.Add(absl::MakeConstSpan(labels));
  const size_t positions_off = upload.Add(absl::MakeConstSpan(positions));
  const size_t row_label_off = upload.Add(absl::MakeConstSpan(row_label));
  ASSIGN_OR_RETURN(const char* dev, upload.Upload(st->label_meta, stream_));
  const int64_t elem = static_cast<int64_t>(DTypeSize(options_.dtype));
  const char* k = static_cast<const char*>(qkv.data) + static_cast<int64_t>(hq) * d * elem;
  RETURN_IF_ERROR(LaunchWriteLabels(
      options_.dtype, k, qkv.cols, rows, reinterpret_cast<const int32_t*>(dev + positions_off),
      reinterpret_cast<const int32_t*>(dev + row_label_off),
      reinterpret_cast<const CudaLabelSeq*>(dev + labels_off), hkv, d, stream_));
  for (int64_t* written : advance) *written += 1;
  return absl::OkStatus();
}

absl::Status CudaBackend::SelectIntoDevice(int layer, const ForwardBatch& batch,
                                           const std::vector<SelectFetch>& rows,
                                           DoubleSparsity& ds, const DeviceTensor& q,
                                           bool current_label_written, int32_t* selected,
                                           int64_t sel_stride) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  if (st->pool == nullptr) return OffloadError("SelectTokens", "no BeginOffloadStep this step");
  const KvBlockPool& pool = *st->pool;
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int hq = st->heads_q;
  if (hq <= 0 || hq % hkv != 0 || q.cols < static_cast<int64_t>(hq) * d) {
    return OffloadError("SelectTokens", "bad head shape");
  }
  const size_t n = rows.size();
  std::vector<CudaLabelSeq> labels(n);
  std::vector<CudaDsSequence> seqs(n);
  std::vector<CudaLabelRange> ranges(n);
  for (size_t i = 0; i < n; ++i) {
    const size_t index = rows[i].index;
    const int64_t q_row = rows[i].q_row;
    if (index >= batch.sequences.size()) return OffloadError("SelectTokens", "bad index");
    if (!ds.IsSparse(index, layer)) return OffloadError("SelectTokens", "a dense row");
    if (q_row < 0 || q_row >= q.rows) return OffloadError("SelectTokens", "q row out of range");
    const BatchSequence& s = batch.sequences[index];
    const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
    if (!ds.labels().Contains(s.kv)) {
      return OffloadError("SelectTokens", "sequence without labels");
    }
    const int64_t tokens = static_cast<int64_t>(batch.positions[s.first_row]) + 1;
    // Predicting a layer ahead, the current token's label at that layer does not exist yet:
    // only the past is labelled and scored; the current token is kept by the selection
    // whatever its (unlabelled) slot scores.
    const int64_t scored = current_label_written ? tokens : tokens - 1;
    ASSIGN_OR_RETURN(const OffloadState::LayerLabels lab,
                     st->LabelsAt(ds, s, layer, tokens, hq, pool.options()));
    int64_t& written = *lab.written;
    if (written > scored) written = 0;  // the sequence was cut back: relabel
    ranges[i] = CudaLabelRange{static_cast<int32_t>(i), 0, static_cast<int32_t>(written),
                               static_cast<int32_t>(scored - written)};
    written = std::max(written, scored);
    labels[i] = lab.view;
    seqs[i] = SparseSequence(o, tokens, q_row, 0);
    if (seqs[i].budget > sel_stride) return OffloadError("SelectTokens", "selection stride");
  }
  // One upload: [labels | sequences | ranges].
  ASSIGN_OR_RETURN(const DeviceLabelDescriptors desc,
                   UploadLabelDescriptors(labels, seqs, ranges, st->meta_host, st->select_meta,
                                          stream_));
  const DType dtype = options_.dtype;
  for (size_t i = 0; i < n; ++i) {  // catch-up (after a prefill or a cut): each its own table
    if (ranges[i].count == 0) continue;
    const KvBlockPool::SequenceId kv_seq = batch.sequences[rows[i].index].kv;
    ASSIGN_OR_RETURN(const int32_t* table, st->EnsureTable(kv_seq, pool));
    const CudaPagedKv kv = SequenceLayerKv(offload_memory_.DevicePointer(pool.KBase(layer)),
                                           offload_memory_.DevicePointer(pool.VBase(layer)),
                                           table, pool, kv_seq);
    RETURN_IF_ERROR(LaunchWriteLabelsPaged(dtype, kv, desc.ranges + i, 1, ranges[i].count,
                                           desc.labels, stream_));
  }
  RETURN_IF_ERROR(st->counts.Grow(n * hkv * 4, stream_));
  ScoreSelectJob job;
  job.dtype = dtype;
  job.q = q.data;
  job.q_stride = q.cols;
  job.heads_q = hq;
  job.heads_kv = hkv;
  job.head_dim = d;
  SetJobSequences(labels, seqs, desc, job);
  job.selected = selected;
  job.sel_stride = sel_stride;
  job.counts = static_cast<int32_t*>(st->counts.ptr);
  return ScoreAndSelect(job, FusedSelect(), options_.ds_score_algo, options_.ds_topk_algo,
                        sm_count_, st->scores, st->topk_workspace, stream_);
}

absl::Status CudaBackend::SelectTokens(int layer, const ForwardBatch& batch, size_t index,
                                       DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                                       bool current_label_written,
                                       std::vector<std::vector<int32_t>>& selection) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  if (st->pool == nullptr) return OffloadError("SelectTokens", "no BeginOffloadStep this step");
  if (index >= batch.sequences.size()) return OffloadError("SelectTokens", "bad index");
  const BatchSequence& s = batch.sequences[index];
  const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
  const int hkv = st->pool->options().kv_heads;
  const int64_t budget = o.BudgetFor(static_cast<int64_t>(batch.positions[s.first_row]) + 1);
  RETURN_IF_ERROR(st->selected.Grow(static_cast<size_t>(hkv * budget) * 4, stream_));
  RETURN_IF_ERROR(SelectIntoDevice(layer, batch, {SelectFetch{index, q_row, nullptr}}, ds, q,
                                   current_label_written, static_cast<int32_t*>(st->selected.ptr),
                                   budget));
  // The selection goes back to the host: the tier's cache bookkeeping runs there.
  const size_t back = static_cast<size_t>(hkv) * (1 + budget) * 4;
  if (st->selection_host_bytes < back) {
    if (st->selection_host != nullptr) {
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      CUDA_RETURN_IF_ERROR(cudaFreeHost(st->selection_host));
      st->selection_host = nullptr;
      st->selection_host_bytes = 0;
    }
    const size_t grown = std::max(back, 2 * st->selection_host_bytes);
    CUDA_RETURN_IF_ERROR(
        cudaHostAlloc(reinterpret_cast<void**>(&st->selection_host), grown, cudaHostAllocDefault));
    st->selection_host_bytes = grown;
  }
  int32_t* counts_host = st->selection_host;
  int32_t* selected_host = st->selection_host + hkv;
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(counts_host, st->counts.ptr, static_cast<size_t>(hkv) * 4,
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(selected_host, st->selected.ptr,
                                       static_cast<size_t>(hkv * budget) * 4,
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  selection.resize(hkv);
  for (int h = 0; h < hkv; ++h) {
    const int32_t n = counts_host[h];
    if (n < 0 || n > budget) return OffloadError("SelectTokens", "top-k count out of range");
    const int32_t* src = selected_host + static_cast<int64_t>(h) * budget;
    selection[h].assign(src, src + n);
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
