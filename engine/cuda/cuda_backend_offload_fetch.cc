// The offload tier's gathers and the attention over the gathered rows on the CUDA backend
// (cuda_backend_offload.cc has the overview of the tier's path). The gathers run on the copy
// stream so that they overlap the backend stream's compute: SelectAndFetch(Many) reads its
// selections where top-k left them on the device, FetchRows uploads a host plan (the reuse
// cache's); both end by recording the ping-pong buffer's "fetched" event, which
// GatheredAttention waits for on the backend stream before it attends the segment's rows.
//
// Statistics: GatheredAttention counts each sparse row with DoubleSparsity::CountDeviceRow, as
// gpu-mode Double Sparsity does (recall is not measured on CUDA). The tier's fetch counters
// (bytes_from_host) are counted by the tier itself, identically on every backend.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/offload_fetch_plan.h"
#include "engine/cuda/offload_state.h"
#include "engine/cuda/packed_upload.h"
#include "engine/cuda/sparse_state.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/cuda/double_sparsity.cuh"
#include "kernels/cuda/offload_gather.cuh"
#include "kernels/cuda_check.h"
#include "kernels/status.h"

namespace dsinfer {

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
