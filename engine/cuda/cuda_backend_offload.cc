// The offload tier on the CUDA backend (DESIGN §3–§4, docs/offload.md): the KV pool in pinned
// mapped host memory, fetch buffers and reuse slabs in device memory, labels on the device.
// This file holds the tier's state (offload_state.h) and its life: the copy stream and its
// events, the device block tables and label caches kept per sequence, the start of a step, the
// device memory it all takes, and the K/V copies aside on the copy stream. The selections are in
// cuda_backend_offload_select.cc; the gathers and the attention over their rows in
// cuda_backend_offload_fetch.cc.
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
#include <algorithm>
#include <memory>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/offload_state.h"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

CudaBackend::OffloadState::~OffloadState() {
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

absl::StatusOr<CudaBackend::OffloadState::LayerLabels> CudaBackend::OffloadState::LabelsAt(
    DoubleSparsity& ds, const BatchSequence& s, int layer, int64_t tokens, int hq,
    const KvPoolOptions& po) {
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

absl::Status CudaBackend::OffloadState::CopyAfterMain() {
  CUDA_RETURN_IF_ERROR(cudaEventRecord(queued, main));
  CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(copy, queued, 0));
  return absl::OkStatus();
}

absl::StatusOr<const int32_t*> CudaBackend::OffloadState::EnsureTable(KvBlockPool::SequenceId seq,
                                                                      const KvBlockPool& pool) {
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

absl::Status CudaBackend::OffloadState::Retire(const KvBlockPool& pool) {
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

int64_t CudaBackend::OffloadState::DeviceBytes(int kv_heads, int layers) const {
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

}  // namespace dsinfer
