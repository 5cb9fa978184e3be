// Double Sparsity on the CUDA backend (DESIGN §1; kernels in kernels/cuda/double_sparsity.cuh).
//
// Labels live on the GPU, per sequence and layer, in the format the sequence's options fixed
// (r, bits). They are derived from the post-RoPE K rows already in the paged pool — the same
// dtype-rounded values qkv held — by LaunchWriteLabelsPaged, lazily: at a sparse layer, the
// tokens whose labels do not exist yet are labelled first (the whole prompt at a sequence's
// first sparse step, then one token per step). So StoreLabels only retires the labels of
// sequences that left, prefill writes no label bytes for sequences that never go sparse, and
// the result is bit-identical to writing labels beside the K/V write. The host LabelCache of
// DoubleSparsity stays the source of truth for which sequences keep labels and their format.
//
// Per sparse layer: one upload of the step's small per-sequence descriptors, then four
// launches on the backend's stream — label catch-up, scores, radix top-k, attention over the
// selected rows — with no host wait. All device memory here is stream-ordered
// (cudaMallocAsync / cudaFreeAsync), grow-only scratch and per-sequence label blocks that grow
// geometrically (old labels copied on the stream).
//
// Not counted here (DoubleSparsity's counters are private to its host path): the per-sequence
// tokens_attended / sparse_rows statistics of CUDA sparse rows.
//
// Test diagnostics: with set_capture_sparse(true) each call ends with a stream wait and copies
// what the label writer, scorer and selection read and produced back to host (SparseCapture),
// so tests replay the CPU twins on the engine's own data instead of comparing logits with the
// fp32 CPU engine, whose top-k boundary fp16 activation noise can move.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda_check.h"
#include "kernels/dtype.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

size_t Align256(size_t b) { return (b + 255) / 256 * 256; }

// Stream-ordered grow-only buffer.
absl::Status GrowAsync(void*& ptr, size_t& bytes, size_t need, cudaStream_t stream) {
  if (need <= bytes && ptr != nullptr) return absl::OkStatus();
  const size_t grown = std::max(need, bytes * 2);
  if (ptr != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(ptr, stream));
  ptr = nullptr;
  bytes = 0;
  CUDA_RETURN_IF_ERROR(cudaMallocAsync(&ptr, std::max<size_t>(grown, 256), stream));
  bytes = std::max<size_t>(grown, 256);
  return absl::OkStatus();
}

}  // namespace

struct CudaBackend::DsState {
  struct Seq {
    LabelFormat format;
    int64_t capacity = 0;          // tokens
    void* base = nullptr;          // layers × [data | scales | minimums]
    std::vector<int64_t> written;  // per layer: tokens [0, written) are labelled
    size_t DataBytes(int kv_heads) const {
      const int64_t row = format.bits == 16 ? 2 * format.r : (format.r + 1) / 2;
      return Align256(static_cast<size_t>(capacity) * kv_heads * row);
    }
    size_t ScaleBytes(int kv_heads) const {
      return format.bits == 16 ? 0 : Align256(static_cast<size_t>(capacity) * kv_heads * 2);
    }
    size_t LayerBytes(int kv_heads) const { return DataBytes(kv_heads) + 2 * ScaleBytes(kv_heads); }
    CudaLabelSeq View(int layer, int kv_heads) const {
      CudaLabelSeq v;
      char* p = static_cast<char*>(base) + static_cast<size_t>(layer) * LayerBytes(kv_heads);
      v.data = p;
      v.scales = reinterpret_cast<uint16_t*>(p + DataBytes(kv_heads));
      v.minimums = reinterpret_cast<uint16_t*>(p + DataBytes(kv_heads) + ScaleBytes(kv_heads));
      v.r = format.r;
      v.bits = format.bits;
      return v;
    }
  };
  struct Channels {
    std::vector<int32_t> host;
    void* dev = nullptr;
  };

  // Frees the labels of sequences DoubleSparsity no longer keeps (released, or finished).
  absl::Status Retire(const DoubleSparsity& ds, cudaStream_t stream) {
    for (auto it = seqs.begin(); it != seqs.end();) {
      if (ds.labels().Contains(it->first)) {
        ++it;
        continue;
      }
      if (it->second.base != nullptr) CUDA_RETURN_IF_ERROR(cudaFreeAsync(it->second.base, stream));
      it = seqs.erase(it);
    }
    return absl::OkStatus();
  }

  ~DsState() {
    for (auto& [id, s] : seqs) cudaFree(s.base);
    for (auto& [key, c] : channels) cudaFree(c.dev);
    for (void* p : {meta, scores, selected, counts, workspace}) cudaFree(p);
  }

  std::unordered_map<KvBlockPool::SequenceId, Seq> seqs;
  std::map<std::tuple<int, int, int>, Channels> channels;  // (statistic, r, layer)
  void* meta = nullptr;
  size_t meta_bytes = 0;
  void* scores = nullptr;
  size_t scores_bytes = 0;
  void* selected = nullptr;
  size_t selected_bytes = 0;
  void* counts = nullptr;
  size_t counts_bytes = 0;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  std::vector<char> staging;
};

absl::Status CudaBackend::StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                                      const DeviceTensor& qkv) {
  (void)layer, (void)batch, (void)qkv;  // labels are derived from the pool when needed
  if (ds_state_ == nullptr) return absl::OkStatus();
  return ds_state_->Retire(ds, stream_);
}

absl::Status CudaBackend::SparseAttention(int layer, const ForwardBatch& batch,
                                          absl::Span<const size_t> sequences,
                                          const KvBlockPool& pool, DoubleSparsity& ds,
                                          const DeviceTensor& qkv, DeviceTensor& out) {
  if (sequences.empty()) return absl::OkStatus();
  if (mode_ != StepMode::kEager) {
    return absl::InternalError("Double Sparsity in a captured decode graph");
  }
  // The block tables KvView hands out are those of the batch last prepared; the model's dense
  // op may have prepared a view listing only the dense sequences.
  if (batch_ != &batch || rows_ != batch.rows()) RETURN_IF_ERROR(PrepareBatch(batch, pool));
  if (ds_state_ == nullptr) ds_state_ = std::make_shared<DsState>();
  DsState& st = *ds_state_;
  RETURN_IF_ERROR(st.Retire(ds, stream_));
  const int hkv = pool.options().kv_heads;
  const int d = pool.options().head_dim;
  const int hq = static_cast<int>(qkv.cols / d) - 2 * hkv;
  const int layers = static_cast<int>(pool.options().layers);
  if (hq <= 0 || hq % hkv != 0) return absl::InternalError("SparseAttention: bad qkv shape");

  const size_t n = sequences.size();
  std::vector<CudaLabelSeq> labs(n);
  std::vector<CudaDsSequence> seqs(n);
  std::vector<CudaLabelRange> ranges;
  int64_t max_tokens = 0, max_budget = 0, max_count = 0;
  std::vector<std::vector<int32_t>> capture_channels(capture_sparse_ ? n : 0);
  int max_r = 0;
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
    DsState::Seq& q = st.seqs[s.kv];
    if (q.base != nullptr && !(q.format == format)) {
      CUDA_RETURN_IF_ERROR(cudaFreeAsync(q.base, stream_));
      q = DsState::Seq{};
    }
    if (q.base == nullptr || q.capacity < tokens) {
      DsState::Seq grown;
      grown.format = format;
      grown.capacity = std::max<int64_t>({tokens, ds.labels().capacity(s.kv), 2 * q.capacity});
      grown.written = q.written;
      grown.written.resize(layers, 0);
      CUDA_RETURN_IF_ERROR(cudaMallocAsync(&grown.base, grown.LayerBytes(hkv) * layers, stream_));
      if (q.base != nullptr) {
        for (int l = 0; l < layers; ++l) {
          const CudaLabelSeq from = q.View(l, hkv), to = grown.View(l, hkv);
          const int64_t w = q.written[l];
          const size_t row_bytes = format.bits == 16 ? 2 * format.r : (format.r + 1) / 2;
          CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.data, from.data, w * hkv * row_bytes,
                                               cudaMemcpyDeviceToDevice, stream_));
          if (format.bits == 4) {
            CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.scales, from.scales, w * hkv * 2,
                                                 cudaMemcpyDeviceToDevice, stream_));
            CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(to.minimums, from.minimums, w * hkv * 2,
                                                 cudaMemcpyDeviceToDevice, stream_));
          }
        }
        CUDA_RETURN_IF_ERROR(cudaFreeAsync(q.base, stream_));
      }
      q = std::move(grown);
    }
    // Channels of this layer for the sequence's statistic and r, on the device.
    std::vector<int32_t> host;
    if (ds.channel_config().has_value()) {
      ASSIGN_OR_RETURN(host,
                       KvHeadChannels(*ds.channel_config(), o.statistic, layer, hq, hkv, format.r));
    } else if (format.r == d) {
      host.resize(static_cast<size_t>(hkv) * d);
      for (size_t j = 0; j < host.size(); ++j) host[j] = static_cast<int32_t>(j % d);
    } else {
      return absl::FailedPreconditionError("Double Sparsity with r < head_dim needs channels");
    }
    DsState::Channels& ch = st.channels[{static_cast<int>(o.statistic), format.r, layer}];
    if (ch.dev == nullptr || ch.host != host) {
      if (ch.dev == nullptr) {
        CUDA_RETURN_IF_ERROR(cudaMallocAsync(&ch.dev, host.size() * 4, stream_));
      }
      ch.host = host;
      // The device copy must not change under earlier queued work: a changed set (a new
      // config) is rare, so wait for the stream before overwriting.
      CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(ch.dev, ch.host.data(), host.size() * 4, cudaMemcpyHostToDevice));
    }
    labs[i] = q.View(layer, hkv);
    labs[i].channels = static_cast<const int32_t*>(ch.dev);
    if (capture_sparse_) capture_channels[i] = ch.host;
    int64_t& written = q.written[layer];
    if (written > tokens) written = 0;  // the sequence was cut back: relabel
    if (written < tokens) {
      ranges.push_back(CudaLabelRange{static_cast<int32_t>(i), static_cast<int32_t>(index),
                                      static_cast<int32_t>(written),
                                      static_cast<int32_t>(tokens - written)});
      max_count = std::max(max_count, tokens - written);
      written = tokens;
    }
    const int64_t budget = std::min(std::max<int64_t>(o.BudgetFor(tokens), 1), tokens);
    CudaDsSequence& ds_seq = seqs[i];
    ds_seq.tokens = static_cast<int32_t>(tokens);
    ds_seq.budget = static_cast<int32_t>(budget);
    ds_seq.sink = o.sink;
    ds_seq.recent = o.recent;
    ds_seq.q_row = static_cast<int32_t>(row);
    ds_seq.kv_seq = static_cast<int32_t>(index);
    ds_seq.aggregation = o.aggregation == GroupAggregation::kMax ? 1 : 0;
    max_tokens = std::max(max_tokens, tokens);
    max_budget = std::max(max_budget, budget);
    max_r = std::max(max_r, format.r);
  }
  // One upload of the descriptors: [labels | sequences | ranges], 16-byte aligned parts.
  const size_t labs_off = 0;
  const size_t seqs_off = (n * sizeof(CudaLabelSeq) + 15) / 16 * 16;
  const size_t ranges_off = seqs_off + (n * sizeof(CudaDsSequence) + 15) / 16 * 16;
  const size_t meta_bytes = ranges_off + ranges.size() * sizeof(CudaLabelRange);
  st.staging.resize(meta_bytes);
  std::memcpy(st.staging.data() + labs_off, labs.data(), n * sizeof(CudaLabelSeq));
  std::memcpy(st.staging.data() + seqs_off, seqs.data(), n * sizeof(CudaDsSequence));
  if (!ranges.empty()) {
    std::memcpy(st.staging.data() + ranges_off, ranges.data(),
                ranges.size() * sizeof(CudaLabelRange));
  }
  RETURN_IF_ERROR(GrowAsync(st.meta, st.meta_bytes, meta_bytes, stream_));
  // Pageable source: the copy is staged before the call returns, so `staging` may be reused.
  CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(st.meta, st.staging.data(), meta_bytes, cudaMemcpyHostToDevice, stream_));
  char* meta = static_cast<char*>(st.meta);
  const auto* d_labs = reinterpret_cast<const CudaLabelSeq*>(meta + labs_off);
  const auto* d_seqs = reinterpret_cast<const CudaDsSequence*>(meta + seqs_off);
  const auto* d_ranges = reinterpret_cast<const CudaLabelRange*>(meta + ranges_off);
  const CudaPagedKv kv = KvView(pool, layer);
  const DType dtype = options_.dtype;
  const int num = static_cast<int>(n);

  RETURN_IF_ERROR(LaunchWriteLabelsPaged(dtype, kv, d_ranges, static_cast<int>(ranges.size()),
                                         max_count, d_labs, stream_));
  const size_t score_stride = static_cast<size_t>(max_tokens);
  RETURN_IF_ERROR(GrowAsync(st.scores, st.scores_bytes, n * hkv * score_stride * 4, stream_));
  RETURN_IF_ERROR(GrowAsync(st.selected, st.selected_bytes, n * hkv * max_budget * 4, stream_));
  RETURN_IF_ERROR(GrowAsync(st.counts, st.counts_bytes, n * hkv * 4, stream_));
  RETURN_IF_ERROR(LaunchLabelScores(dtype, qkv.data, qkv.cols, d_seqs, num, d_labs, hq, hkv, d,
                                    max_r, max_tokens, static_cast<float*>(st.scores), score_stride,
                                    stream_, options_.ds_score_algo));
  RETURN_IF_ERROR(LaunchTopKSelect(static_cast<float*>(st.scores), score_stride, d_seqs, num, hkv,
                                   static_cast<int32_t*>(st.selected), max_budget,
                                   static_cast<int32_t*>(st.counts), stream_,
                                   options_.ds_topk_algo));
  const int splits = SparseAttentionSplits(num, hkv, max_budget, sm_count_);
  RETURN_IF_ERROR(GrowAsync(st.workspace, st.workspace_bytes,
                            SparseAttentionWorkspaceFloats(num, hq, d, splits) * 4, stream_));
  RETURN_IF_ERROR(LaunchSparseAttention(
      dtype, qkv.data, qkv.cols, d_seqs, num, hq, hkv, d, 1.0f / std::sqrt(static_cast<float>(d)),
      kv, static_cast<const int32_t*>(st.selected), max_budget,
      static_cast<const int32_t*>(st.counts), splits, static_cast<float*>(st.workspace), out.data,
      out.cols, stream_));
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
    const BatchSequence& s = batch.sequences[sequences[i]];
    const CudaDsSequence& sq = seqs[i];
    c.r = labs[i].r;
    c.bits = labs[i].bits;
    c.aggregation = sq.aggregation;
    c.sink = sq.sink;
    c.recent = sq.recent;
    c.tokens = sq.tokens;
    c.budget = sq.budget;
    c.channels = capture_channels[i];
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
    if (c.bits == 16) {
      c.f16.resize(rows * c.r);
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.f16.data(), labs[i].data, c.f16.size() * 2, cudaMemcpyDeviceToHost));
    } else {
      c.codes.resize(rows * ((c.r + 1) / 2));
      c.scales.resize(rows);
      c.minimums.resize(rows);
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.codes.data(), labs[i].data, c.codes.size(), cudaMemcpyDeviceToHost));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.scales.data(), labs[i].scales, rows * 2, cudaMemcpyDeviceToHost));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.minimums.data(), labs[i].minimums, rows * 2, cudaMemcpyDeviceToHost));
    }
    c.scores.resize(static_cast<size_t>(hkv) * c.tokens);
    std::vector<int32_t> counts(hkv);
    CUDA_RETURN_IF_ERROR(cudaMemcpy(counts.data(), static_cast<const int32_t*>(st.counts) + i * hkv,
                                    hkv * 4, cudaMemcpyDeviceToHost));
    c.selected.resize(hkv);
    for (int h = 0; h < hkv; ++h) {
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.scores.data() + static_cast<size_t>(h) * c.tokens,
                     static_cast<const float*>(st.scores) + (i * hkv + h) * score_stride,
                     c.tokens * 4, cudaMemcpyDeviceToHost));
      c.selected[h].resize(std::max(counts[h], 0));
      CUDA_RETURN_IF_ERROR(
          cudaMemcpy(c.selected[h].data(),
                     static_cast<const int32_t*>(st.selected) + (i * hkv + h) * max_budget,
                     c.selected[h].size() * 4, cudaMemcpyDeviceToHost));
    }
  }
  sparse_captures_.push_back(std::move(cap));
  return absl::OkStatus();
}

}  // namespace dsinfer
