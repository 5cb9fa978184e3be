// The offload tier on the CUDA backend (DESIGN §3–§4, docs/offload.md): the KV pool in pinned
// mapped host memory, fetch buffers and reuse slabs in device memory, labels on the device.
//
// Per decode row and layer:
//   SelectIntoDevice  (backend stream) catch up the layer's device labels from the pool's K
//                     (zero-copy reads of the new rows), score, radix top-k — the Double
//                     Sparsity kernels of kernels/cuda/double_sparsity.cuh.
//   SelectAndFetch    (no reuse cache: the model's default path; SelectAndFetchMany for all the
//                     rows of a layer at once, ordered by label shape: a scoring launch per
//                     shape, one top-k launch) the selection stays on the device, in a
//                     buffer per layer parity; the copy stream waits for the backend stream
//                     (an event) and the gather kernels read the selected indices there — no
//                     host wait, no upload.
//   SelectTokens +    (with the reuse cache, whose bookkeeping, OffloadTier::Plan, runs on the
//   FetchRows          host) one device→host copy and host wait per selection; FetchRows then
//                     makes the copy stream follow the backend stream, uploads the flattened
//                     plan from a pinned staging slot and runs the gather.
//   Either way the gather ends by recording the ping-pong buffer's "fetched" event.
//   GatheredAttention (backend stream) cudaStreamWaitEvent on that event (no host wait),
//                     writes the current token's K/V behind the fetched rows of each head,
//                     then the Double Sparsity attention kernel over the segment's rows 0..n
//                     (sparse rows) or flash-decoding over the segment (dense rows).
//
// Device memory here is stream-ordered (cudaMallocAsync / cudaFreeAsync) on the stream that
// uses it; buffers read by both streams (block tables) are freed on the copy stream after it
// waited for the backend stream.
//
// Statistics: GatheredAttention counts each sparse row with DoubleSparsity::CountDeviceRow, as
// gpu-mode Double Sparsity does (recall is not measured on CUDA). The tier's fetch counters
// (bytes_from_host) are counted by the tier itself, identically on every backend.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_labels.h"
#include "engine/cuda/offload_fetch_plan.h"
#include "engine/cuda/packed_upload.h"
#include "engine/cuda/score_and_select.h"
#include "engine/cuda/sparse_state.h"
#include "engine/cuda/stream_buffer.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/offload_gather.cuh"
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

absl::Status OffloadError(const char* op, const std::string& what) {
  return absl::InternalError(absl::StrCat("cuda backend ", op, ": ", what));
}

// Plan staging slots in flight before the oldest is reused (its copy must have finished).
constexpr size_t kStagingSlots = 16;

}  // namespace

struct CudaBackend::OffloadState {
  // A sequence's block table on the device (read by the label writer on the backend stream
  // and by the gather on the copy stream).
  struct Table {
    std::vector<int32_t> host;  // what the device copy holds
    int32_t* dev = nullptr;
    size_t capacity = 0;  // entries
  };
  struct Staging {
    void* host = nullptr;  // pinned
    size_t bytes = 0;
    cudaEvent_t done = nullptr;  // its upload finished
  };

  ~OffloadState() {
    // The backend synchronized (and destroyed) its own stream before its members go.
    if (copy != nullptr) cudaStreamSynchronize(copy);
    for (auto& [id, l] : labels) cudaFree(l.base);
    for (auto& [id, t] : tables) cudaFree(t.dev);
    for (StreamBuffer* b : {&plan_dev, &select_meta, &scores, &selected, &counts, &attend_meta,
                            &workspace, &topk_workspace, &iota, &rope_meta, &reuse_hits,
                            &device_selection[0], &device_selection[1], &label_meta}) {
      if (b->ptr != nullptr) cudaFree(b->ptr);
    }
    for (Staging& s : staging) {
      if (s.host != nullptr) cudaFreeHost(s.host);
      if (s.done != nullptr) cudaEventDestroy(s.done);
    }
    if (selection_host != nullptr) cudaFreeHost(selection_host);
    for (cudaEvent_t e : fetched) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    for (cudaEvent_t e : aside_done) {
      if (e != nullptr) cudaEventDestroy(e);
    }
    if (queued != nullptr) cudaEventDestroy(queued);
    if (copy_done != nullptr) cudaEventDestroy(copy_done);
    if (copy != nullptr) cudaStreamDestroy(copy);
  }

  // Sequence `s`'s device labels at `layer` (storage reserved for `tokens` tokens, grown
  // geometrically up to the sequence's reservation) with the layer's channel set for its
  // statistic and r, and the count of its tokens labelled so far at that layer.
  struct LayerLabels {
    CudaLabelSeq view;
    int64_t* written;
  };
  absl::StatusOr<LayerLabels> LabelsAt(DoubleSparsity& ds, const BatchSequence& s, int layer,
                                       int64_t tokens, int hq, const KvPoolOptions& po) {
    const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
    const LabelFormat format = ds.labels().format(s.kv);
    DeviceLabels& lab = labels[s.kv];
    RETURN_IF_ERROR(
        lab.Reserve(format, tokens, ds.labels().capacity(s.kv), po.layers, po.kv_heads, main));
    ASSIGN_OR_RETURN(const DeviceChannelSet* ch,
                     channels.Upload(ds, o.statistic, layer, hq, po.kv_heads, format.r,
                                     po.head_dim, main));
    LayerLabels out{lab.View(layer, po.kv_heads), &lab.written[layer]};
    out.view.channels = static_cast<const int32_t*>(ch->dev);
    return out;
  }

  // The copy stream follows everything queued on the backend stream so far.
  absl::Status CopyAfterMain() {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(queued, main));
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy, queued, 0));
    return absl::OkStatus();
  }

  // The device block table of `seq` as the pool holds it now. Appended entries are uploaded
  // in place (no reader of the older entries is disturbed); a changed prefix waits for the
  // copy stream first; a regrown array frees the old one on the copy stream.
  absl::StatusOr<const int32_t*> EnsureTable(KvBlockPool::SequenceId seq, const KvBlockPool& pool) {
    const std::vector<int32_t>& want = pool.BlockTable(seq);
    Table& t = tables[seq];
    if (t.dev != nullptr && t.host == want) return t.dev;
    const bool prefix = t.dev != nullptr && t.host.size() <= want.size() &&
                        std::equal(t.host.begin(), t.host.end(), want.begin());
    if (t.dev == nullptr || t.capacity < want.size()) {
      const size_t capacity = std::max<size_t>({want.size(), 2 * t.capacity, 64});
      int32_t* fresh = nullptr;
      CUDA_RETURN_IF_ERROR(
          cudaMallocAsync(reinterpret_cast<void**>(&fresh), capacity * sizeof(int32_t), main));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(fresh, want.data(), want.size() * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, main));
      if (t.dev != nullptr) {
        RETURN_IF_ERROR(CopyAfterMain());
        CUDA_RETURN_IF_ERROR(cudaFreeAsync(t.dev, copy));
      }
      t.dev = fresh;
      t.capacity = capacity;
    } else if (prefix) {
      const size_t old = t.host.size();
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(t.dev + old, want.data() + old,
                                           (want.size() - old) * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, main));
    } else {
      // Entries a queued gather may still read change: wait for the copy stream first.
      CUDA_RETURN_IF_ERROR(cudaEventRecord(copy_done, copy));
      CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(main, copy_done, 0));
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(t.dev, want.data(), want.size() * sizeof(int32_t),
                                           cudaMemcpyHostToDevice, main));
    }
    t.host = want;
    return t.dev;
  }

  // Drops labels and tables of sequences the pool no longer holds.
  absl::Status Retire(const KvBlockPool& pool) {
    for (auto it = labels.begin(); it != labels.end();) {
      if (pool.Contains(it->first)) {
        ++it;
        continue;
      }
      if (it->second.base != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(it->second.base, main));
      it = labels.erase(it);
    }
    bool waited = false;
    for (auto it = tables.begin(); it != tables.end();) {
      if (pool.Contains(it->first)) {
        ++it;
        continue;
      }
      if (!waited) {
        RETURN_IF_ERROR(CopyAfterMain());
        waited = true;
      }
      if (it->second.dev != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(it->second.dev, copy));
      it = tables.erase(it);
    }
    return absl::OkStatus();
  }

  int64_t DeviceBytes(int kv_heads, int layers) const {
    int64_t b = 0;
    for (const auto& [id, l] : labels) {
      if (l.base != nullptr) b += static_cast<int64_t>(l.LayerBytes(kv_heads)) * layers;
    }
    for (const auto& [id, t] : tables) b += static_cast<int64_t>(t.capacity) * 4;
    for (const StreamBuffer* s : {&plan_dev, &select_meta, &scores, &selected, &counts,
                                  &attend_meta, &workspace, &topk_workspace, &iota, &rope_meta,
                                  &reuse_hits, &device_selection[0], &device_selection[1],
                                  &label_meta}) {
      b += static_cast<int64_t>(s->bytes);
    }
    return b;
  }

  cudaStream_t main = nullptr;  // the backend's stream (not owned)
  cudaStream_t copy = nullptr;
  cudaEvent_t fetched[2] = {nullptr, nullptr};  // the latest fetch into ping-pong buffer b
  cudaEvent_t queued = nullptr;                 // recorded on main, waited on by copy
  cudaEvent_t copy_done = nullptr;              // recorded on copy, waited on by main
  cudaEvent_t aside_done[2] = {nullptr, nullptr};  // CopyKvBlocksAside's copy in each slot
  const KvBlockPool* pool = nullptr;            // this step's (BeginOffloadStep)
  int heads_q = 0, kv_heads = 0, layers = 0;

  std::unordered_map<KvBlockPool::SequenceId, DeviceLabels> labels;
  std::unordered_map<KvBlockPool::SequenceId, Table> tables;
  DeviceChannelSets channels;

  std::array<Staging, kStagingSlots> staging;
  size_t next_staging = 0;
  std::vector<CudaFetchRow> rows;  // the plan being flattened
  StreamBuffer plan_dev;           // copy stream

  // Backend-stream scratch.
  StreamBuffer select_meta, scores, selected, counts, attend_meta, workspace, rope_meta;
  StreamBuffer label_meta;  // StoreCurrentLabels' [labels | positions | row labels]
  StreamBuffer topk_workspace;  // LaunchTopKSelect's, kept zeroed by it
  StreamBuffer iota;                  // int32 0, 1, 2, ...: every head's "selection" over a segment
  StreamBuffer reuse_hits;  // uint64 per segment: previous-step reuse hits this step
  // SelectAndFetchMany's selections, read by the gathers on the copy stream: [layer parity].
  StreamBuffer device_selection[2];
  int32_t* selection_host = nullptr;  // pinned: counts then selected indices
  size_t selection_host_bytes = 0;
  std::vector<char> meta_host;  // staging of the descriptor uploads (PackedUpload)
};

absl::StatusOr<CudaBackend::OffloadState*> CudaBackend::Offload() {
  if (offload_state_ != nullptr) return offload_state_.get();
  auto st = std::make_shared<OffloadState>();
  st->main = stream_;
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&st->copy, cudaStreamNonBlocking));
  for (cudaEvent_t& e : st->fetched) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&st->queued, cudaEventDisableTiming));
  for (cudaEvent_t& e : st->aside_done) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&st->copy_done, cudaEventDisableTiming));
  for (OffloadState::Staging& s : st->staging) {
    CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  }
  offload_state_ = std::move(st);
  return offload_state_.get();
}

cudaStream_t CudaBackend::offload_copy_stream() const {
  return offload_state_ != nullptr ? offload_state_->copy : nullptr;
}

int64_t CudaBackend::offload_device_bytes() const {
  if (offload_state_ == nullptr) return 0;
  return offload_state_->DeviceBytes(offload_state_->kv_heads, offload_state_->layers);
}

absl::Status CudaBackend::BeginOffloadStep(const AttentionConfig& config, const ForwardBatch& batch,
                                           const KvBlockPool& pool) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  st->pool = &pool;
  st->heads_q = config.num_heads_q;
  st->kv_heads = pool.options().kv_heads;
  st->layers = pool.options().layers;
  RETURN_IF_ERROR(st->Retire(pool));
  // Previous-step reuse counts this step's hits per segment from zero (the gathers that add to
  // them follow the backend stream).
  const size_t hit_bytes = std::max<size_t>(batch.sequences.size(), 1) * sizeof(uint64_t);
  RETURN_IF_ERROR(st->reuse_hits.Grow(hit_bytes, stream_));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(st->reuse_hits.ptr, 0, hit_bytes, stream_));
  for (const BatchSequence& s : batch.sequences) {
    if (s.num_rows != 1) continue;  // prefill rows read the pool through the batch's tables
    ASSIGN_OR_RETURN(const int32_t* table, st->EnsureTable(s.kv, pool));
    (void)table;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int64_t>> CudaBackend::DeviceReuseHits(size_t segments) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  std::vector<uint64_t> hits(segments, 0);
  if (segments == 0) return std::vector<int64_t>();
  if (st->reuse_hits.bytes < segments * sizeof(uint64_t)) {
    return OffloadError("DeviceReuseHits", "more segments than this step has");
  }
  // The step's gathers are on the copy stream.
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(st->copy));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(hits.data(), st->reuse_hits.ptr, segments * sizeof(uint64_t),
                                  cudaMemcpyDeviceToHost));
  return std::vector<int64_t>(hits.begin(), hits.end());
}

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

absl::Status CudaBackend::CopyKvBlocksAside(const KvBlockPool& src, int src_layer,
                                            KvBlockPool& dst, int dst_layer,
                                            const std::vector<int32_t>& blocks, int slot) {
  if (slot < 0 || slot > 1) return OffloadError("CopyKvBlocksAside", "slot must be 0 or 1");
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  // After everything queued on the backend stream (the layer's K/V and labels), on the copy
  // stream (the copy engine, beside the kernels).
  RETURN_IF_ERROR(st->CopyAfterMain());
  RETURN_IF_ERROR(CopyKvBlocksOn(src, src_layer, dst, dst_layer, blocks, st->copy));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(st->aside_done[slot], st->copy));
  return absl::OkStatus();
}

absl::Status CudaBackend::JoinKvCopy(int slot) {
  if (slot < 0 || slot > 1) return OffloadError("JoinKvCopy", "slot must be 0 or 1");
  if (offload_state_ == nullptr) return absl::OkStatus();  // nothing was copied aside
  // An event never recorded is complete: joining a slot not yet used waits for nothing.
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, offload_state_->aside_done[slot], 0));
  return absl::OkStatus();
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

CudaFetchJob CudaBackend::FetchJobFor(const FetchPlan& plan, const KvBlockPool& pool,
                                      const int32_t* table, const OffloadTier& tier) const {
  const int hkv = pool.options().kv_heads;
  const int64_t row_bytes = tier.row_bytes();
  CudaFetchJob job;
  job.pool_k = offload_memory_.DevicePointer(pool.KBase(plan.layer));
  job.pool_v = offload_memory_.DevicePointer(pool.VBase(plan.layer));
  job.block_table = table;
  job.block_tokens = pool.options().block_tokens;
  job.out_k = plan.destination.k;
  job.out_v = plan.destination.v;
  job.out_tokens = plan.destination.tokens;
  // Rows found in reuse come from the LRU slab, or with previous-step reuse from the rows the
  // layer kept for the sequence at its last fetch.
  const SegmentRows source = tier.ReuseSource(plan);
  job.slab_k = source.k;
  job.slab_v = source.v;
  job.kv_heads = hkv;
  job.row_bytes = static_cast<int32_t>(row_bytes);
  return job;
}

absl::Status CudaBackend::SelectAndFetch(int layer, const ForwardBatch& batch, size_t index,
                                         DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                                         bool current_label_written, const FetchPlan& plan,
                                         const KvBlockPool& pool, OffloadTier& tier) {
  return SelectAndFetchMany(layer, batch, {SelectFetch{index, q_row, &plan}}, ds, q,
                            current_label_written, pool, tier);
}

absl::Status CudaBackend::SelectAndFetchMany(int layer, const ForwardBatch& batch,
                                             const std::vector<SelectFetch>& given,
                                             DoubleSparsity& ds, const DeviceTensor& q,
                                             bool current_label_written, const KvBlockPool& pool,
                                             OffloadTier& tier) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  if (given.empty()) return absl::OkStatus();
  std::vector<size_t> indices;
  indices.reserve(given.size());
  for (const SelectFetch& row : given) {
    if (row.index >= batch.sequences.size() || row.plan == nullptr) {
      return OffloadError("SelectAndFetch", "bad index or no plan");
    }
    indices.push_back(row.index);
  }
  // The rows ordered by label shape, so that scoring takes a launch per shape; each row's
  // selection and gather stay its own (a plan per row), whatever its place.
  std::vector<SelectFetch> rows;
  rows.reserve(given.size());
  for (size_t i : LabelShapeOrder(batch, indices, ds)) rows.push_back(given[i]);
  const int hkv = pool.options().kv_heads;
  std::vector<int64_t> budgets(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t index = rows[i].index;
    const FetchPlan* plan = rows[i].plan;
    const BatchSequence& s = batch.sequences[index];
    const AttentionOptions& o = s.attention != nullptr ? *s.attention : ds.defaults();
    budgets[i] = o.BudgetFor(static_cast<int64_t>(batch.positions[s.first_row]) + 1);
    const std::vector<int64_t>& counted = tier.PendingCounts(plan->layer, index);
    if (plan->layer != layer || static_cast<int>(counted.size()) != hkv ||
        std::any_of(counted.begin(), counted.end(),
                    [&](int64_t r) { return r != budgets[i] - 1; })) {
      return OffloadError("SelectAndFetch", "the plan is not this selection's (PlanCounted)");
    }
  }
  const int64_t sel_stride = *std::max_element(budgets.begin(), budgets.end());
  // The selections stay where top-k writes them until the gathers have read them: one buffer
  // per layer parity. The last gathers that read this one (layer - 2) finished before that
  // layer's attention, which the backend stream ran before this call's work; a buffer that must
  // grow is freed and allocated in the copy stream's order instead.
  StreamBuffer& buf = st->device_selection[layer & 1];
  const size_t need = rows.size() * static_cast<size_t>(hkv * sel_stride) * 4;
  if (buf.bytes < need) {
    RETURN_IF_ERROR(st->CopyAfterMain());
    RETURN_IF_ERROR(buf.Grow(need, st->copy));
    CUDA_RETURN_IF_ERROR(cudaEventRecord(st->copy_done, st->copy));
    CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, st->copy_done, 0));
  }
  int32_t* selected = static_cast<int32_t*>(buf.ptr);
  RETURN_IF_ERROR(SelectIntoDevice(layer, batch, rows, ds, q, current_label_written, selected,
                                   sel_stride));
  // The gathers follow the selections (and everything else queued on the backend stream):
  // one launch for all of them, but with previous-step reuse (whose hits count per job).
  RETURN_IF_ERROR(st->CopyAfterMain());
  std::vector<CudaFetchJob> jobs;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (budgets[i] <= 1) continue;  // only the current token: nothing to fetch
    const FetchPlan& plan = *rows[i].plan;
    ASSIGN_OR_RETURN(const int32_t* table,
                     st->EnsureTable(batch.sequences[rows[i].index].kv, pool));
    CudaFetchJob job = FetchJobFor(plan, pool, table, tier);
    job.selected = selected + static_cast<int64_t>(i) * hkv * sel_stride;
    job.sel_stride = sel_stride;
    job.per_head = static_cast<int32_t>(budgets[i] - 1);  // the current token (last) stays
    if (plan.previous.k != nullptr) {
      // Previous-step reuse: the gather looks every selected token up in the rows the layer
      // kept for this sequence and counts what it finds (DeviceReuseHits).
      job.prev_tokens = plan.previous.tokens;
      job.prev_per_head = static_cast<int32_t>(plan.previous_per_head);
      job.hits = static_cast<unsigned long long*>(st->reuse_hits.ptr) + plan.segment;
      RETURN_IF_ERROR(LaunchFetchRows(job, st->copy, options_.fetch_reuse_blocks));
    } else {
      jobs.push_back(job);
    }
  }
  RETURN_IF_ERROR(LaunchFetchRowsMany(jobs.data(), static_cast<int>(jobs.size()), st->copy,
                                      options_.fetch_blocks));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(st->fetched[layer & 1], st->copy));
  return absl::OkStatus();
}

absl::Status CudaBackend::FetchRows(const FetchPlan& plan, const KvBlockPool& pool,
                                    KvBlockPool::SequenceId seq, OffloadTier& tier) {
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  if (!pool.Contains(seq)) return OffloadError("FetchRows", "unknown sequence");
  const int hkv = pool.options().kv_heads;
  const int64_t row_bytes = tier.row_bytes();
  if (row_bytes != static_cast<int64_t>(pool.options().head_dim) *
                       static_cast<int64_t>(DTypeSize(pool.options().dtype))) {
    return OffloadError("FetchRows", "tier and pool rows differ");
  }
  ASSIGN_OR_RETURN(const int32_t dense, FlattenFetchPlan(plan, hkv, st->rows));
  ASSIGN_OR_RETURN(const int32_t* table, st->EnsureTable(seq, pool));
  // The gather follows everything queued on the backend stream: pool rows written by earlier
  // steps, the table upload, and the last attention over this ping-pong buffer.
  RETURN_IF_ERROR(st->CopyAfterMain());

  CudaFetchJob job = FetchJobFor(plan, pool, table, tier);
  if (dense >= 0) {
    job.dense_tokens = dense;
  } else {
    // Upload the flattened plan once, from a pinned staging slot whose previous upload is done.
    const size_t bytes = st->rows.size() * sizeof(CudaFetchRow);
    OffloadState::Staging& slot = st->staging[st->next_staging++ % kStagingSlots];
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(slot.done));
    if (slot.bytes < bytes) {
      if (slot.host != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeHost(slot.host));
      slot.host = nullptr;
      slot.bytes = 0;
      const size_t grown = std::max<size_t>(bytes, 64 << 10);
      CUDA_RETURN_IF_ERROR(cudaHostAlloc(&slot.host, grown, cudaHostAllocDefault));
      slot.bytes = grown;
    }
    std::memcpy(slot.host, st->rows.data(), bytes);
    RETURN_IF_ERROR(st->plan_dev.Grow(bytes, st->copy));
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(st->plan_dev.ptr, slot.host, bytes, cudaMemcpyHostToDevice, st->copy));
    CUDA_RETURN_IF_ERROR(cudaEventRecord(slot.done, st->copy));
    job.rows = static_cast<const CudaFetchRow*>(st->plan_dev.ptr);
    job.num_rows = static_cast<int64_t>(st->rows.size());
  }
  RETURN_IF_ERROR(LaunchFetchRows(job, st->copy, options_.fetch_blocks));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(st->fetched[plan.buffer & 1], st->copy));
  return absl::OkStatus();
}

absl::Status CudaBackend::GatheredAttention(int layer, const AttentionConfig& config,
                                            const ForwardBatch& batch, size_t index,
                                            const std::vector<std::vector<int32_t>>* selection,
                                            OffloadTier& tier, size_t segment,
                                            const KvBlockPool& pool, DoubleSparsity& ds,
                                            const DeviceTensor& qkv, DeviceTensor& out) {
  (void)pool;  // recall is not measured on CUDA
  ASSIGN_OR_RETURN(OffloadState * st, Offload());
  const int d = config.head_dim;
  const int hkv = config.num_heads_kv;
  const int hq = config.num_heads_q;
  const int64_t q_cols = static_cast<int64_t>(hq) * d;
  const int64_t kv_cols = static_cast<int64_t>(hkv) * d;
  if (index >= batch.sequences.size()) return OffloadError("GatheredAttention", "bad index");
  const BatchSequence& s = batch.sequences[index];
  if (s.num_rows != 1 || out.cols != q_cols || qkv.cols != q_cols + 2 * kv_cols) {
    return OffloadError("GatheredAttention", "shape");
  }
  const int32_t position = batch.positions[s.first_row];
  const std::vector<int64_t>& fetched = tier.PendingCounts(layer, segment);
  if (static_cast<int>(fetched.size()) != hkv) {
    return OffloadError("GatheredAttention", "nothing was fetched for the layer");
  }
  // A selection that stayed on the device (SelectAndFetch) holds the fetched rows and the
  // current token; host lists are checked against what was fetched.
  const bool on_device = selection != nullptr && tier.Pending(layer, segment) == nullptr;
  if (selection != nullptr && !on_device && static_cast<int>(selection->size()) != hkv) {
    return OffloadError("GatheredAttention", "selection has the wrong head count");
  }
  const int64_t capacity = tier.segment_capacity(layer, segment);
  int32_t longest = 0;
  for (int h = 0; h < hkv; ++h) {
    const int64_t n = fetched[h];
    if (n + 1 > capacity) return OffloadError("GatheredAttention", "no room for the current token");
    if (selection == nullptr && n != position) {
      return OffloadError("GatheredAttention", "dense fetch does not hold the whole context");
    }
    if (selection != nullptr && !on_device) {
      const auto& sel = (*selection)[h];
      const bool has_current = !sel.empty() && sel.back() == position;
      if (static_cast<int64_t>(sel.size()) != n + (has_current ? 1 : 0)) {
        return OffloadError("GatheredAttention", "selection and fetched rows differ");
      }
    }
    longest = std::max<int32_t>(longest, static_cast<int32_t>(n + 1));
  }
  // The segment's rows (a ping-pong or a kept buffer), in the pool's element type.
  const int64_t elem = static_cast<int64_t>(DTypeSize(options_.dtype));
  const int64_t row_bytes = static_cast<int64_t>(d) * elem;
  const SegmentRows seg_rows = tier.Destination(layer, segment);
  char* seg_k = static_cast<char*>(seg_rows.k);
  char* seg_v = static_cast<char*>(seg_rows.v);

  // The fetch into this layer's buffer must be complete: a device-side wait, no host wait.
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream_, st->fetched[layer & 1], 0));

  // [fetched rows per head | attended rows per head | position | table {0} | pad] then the
  // sparse kernel's sequence descriptor, 16-byte aligned.
  std::vector<int32_t> ints(static_cast<size_t>(2 * hkv + 2), 0);
  for (int h = 0; h < hkv; ++h) {
    ints[h] = static_cast<int32_t>(fetched[h]);
    // Attended rows: the fetched ones, then the current token (always in a selection: top-k
    // keeps it; a dense row attends everything).
    ints[hkv + h] = selection != nullptr && !on_device
                        ? static_cast<int32_t>((*selection)[h].size())
                        : ints[h] + 1;
  }
  ints[2 * hkv] = position;
  ints[2 * hkv + 1] = 0;  // the segment is one block: block 0; also row 0's table index
  CudaDsSequence dseq;
  dseq.tokens = position + 1;
  dseq.budget = longest;
  dseq.q_row = s.first_row;
  dseq.kv_seq = 0;
  PackedUpload upload(st->meta_host);
  upload.Add(absl::MakeConstSpan(ints));
  const size_t seq_off = upload.Add(absl::MakeConstSpan(&dseq, 1));
  ASSIGN_OR_RETURN(const char* meta, upload.Upload(st->attend_meta, stream_));
  const int32_t* dm = reinterpret_cast<const int32_t*>(meta);
  const int32_t* d_fetched = dm;
  const int32_t* d_attended = dm + hkv;
  const int32_t* d_position = dm + 2 * hkv;
  const int32_t* d_zero = dm + 2 * hkv + 1;
  const auto* d_seq = reinterpret_cast<const CudaDsSequence*>(meta + seq_off);

  // The current token's K/V from this step's qkv, behind the fetched rows of each head.
  const char* row = static_cast<const char*>(qkv.data) + s.first_row * qkv.cols * elem;
  CudaCurrentKv current;
  current.k = row + q_cols * elem;
  current.v = row + (q_cols + kv_cols) * elem;
  current.out_k = seg_k;
  current.out_v = seg_v;
  current.rows = d_fetched;
  current.kv_heads = hkv;
  current.row_bytes = static_cast<int32_t>(row_bytes);
  RETURN_IF_ERROR(LaunchWriteCurrentKv(current, stream_));

  CudaPagedKv kv;
  kv.k = seg_k;
  kv.v = seg_v;
  kv.block_tables = d_zero;
  kv.max_blocks = 1;
  kv.block_tokens = static_cast<int>(capacity);
  kv.kv_heads = hkv;
  kv.head_dim = d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  if (selection != nullptr) {
    // Rows 0..n of each head are its selection in ascending token order: one shared index
    // array (stride 0) serves every head.
    // (Grow may round the allocation up: every int32 it holds is filled, so `bytes` alone
    // says how much of 0, 1, 2, ... is valid.)
    if (st->iota.bytes < static_cast<size_t>(longest) * 4) {
      const size_t want = std::max<size_t>(static_cast<size_t>(longest), 2 * st->iota.bytes / 4);
      RETURN_IF_ERROR(st->iota.Grow(want * 4, stream_));
      std::vector<int32_t> iota(st->iota.bytes / 4);
      std::iota(iota.begin(), iota.end(), 0);
      CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st->iota.ptr, iota.data(), iota.size() * 4,
                                           cudaMemcpyHostToDevice, stream_));
    }
    const int splits = SparseAttentionSplits(1, hkv, longest, sm_count_);
    RETURN_IF_ERROR(st->workspace.Grow(
        static_cast<size_t>(SparseAttentionWorkspaceFloats(1, hq, d, splits)) * 4, stream_));
    RETURN_IF_ERROR(LaunchSparseAttention(
        options_.dtype, qkv.data, qkv.cols, d_seq, 1, hq, hkv, d, scale, kv,
        static_cast<const int32_t*>(st->iota.ptr), 0, d_attended, splits,
        static_cast<float*>(st->workspace.ptr), out.data, out.cols, stream_));
    ds.CountDeviceRow(batch, index);
    return absl::OkStatus();
  }
  // Dense: flash-decoding over the segment, the row's query and output addressed directly.
  const int splits =
      DecodeAttentionSplits(1, hq, hkv, position + 1, sm_count_, options_.decode_waves);
  RETURN_IF_ERROR(st->workspace.Grow(
      static_cast<size_t>(DecodeAttentionWorkspaceFloats(1, hq, d, splits)) * 4, stream_));
  CudaBatchRows rows{d_position, d_zero, 1};
  const char* q = static_cast<const char*>(qkv.data) + s.first_row * qkv.cols * elem;
  char* o = static_cast<char*>(out.data) + s.first_row * out.cols * elem;
  return LaunchDecodeAttention(options_.dtype, q, qkv.cols, rows, hq, hkv, d, scale, kv, splits,
                               static_cast<float*>(st->workspace.ptr), o, out.cols, stream_,
                               options_.decode_algo);
}

}  // namespace dsinfer
