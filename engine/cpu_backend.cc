// Shape checks here are programmer invariants of the forward pass, but they are returned as
// INTERNAL errors rather than aborting, so a bug cannot take a server down.
#include "engine/cpu_backend.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/sparse/double_sparsity.h"
#include "kernels/attention_reference.h"
#include "kernels/linear_reference.h"
#include "kernels/rms_norm_reference.h"
#include "kernels/rope.h"
#include "kernels/status.h"
#include "kernels/swiglu_reference.h"

namespace dsinfer {
namespace {

float* F32(const DeviceTensor& t) { return static_cast<float*>(t.data); }

absl::Status ShapeError(const char* op, const std::string& what) {
  return absl::InternalError(absl::StrCat("cpu backend ", op, ": ", what));
}

}  // namespace

PagedKvView<const float> CpuKvView(const KvBlockPool& pool, int layer,
                                   KvBlockPool::SequenceId seq) {
  PagedKvView<const float> view;
  view.k = static_cast<const float*>(pool.KBase(layer));
  view.v = static_cast<const float*>(pool.VBase(layer));
  view.block_table = pool.BlockTable(seq).data();
  view.block_tokens = pool.options().block_tokens;
  view.kv_heads = pool.options().kv_heads;
  view.head_dim = pool.options().head_dim;
  return view;
}

absl::StatusOr<DeviceTensor> CpuBackend::Allocate(int64_t rows, int64_t cols) {
  DeviceTensor t;
  t.rows = rows;
  t.cols = cols;
  t.dtype = DType::kF32;
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(rows * cols, 1)) * sizeof(float);
  ASSIGN_OR_RETURN(t.data, memory_.Allocate(bytes));
  return t;
}

void CpuBackend::Free(DeviceTensor& tensor) {
  if (tensor.data) memory_.Free(tensor.data);
  tensor.data = nullptr;
}

absl::StatusOr<DeviceTensor> CpuBackend::UploadWeight(absl::Span<const TensorRef* const> parts) {
  ASSIGN_OR_RETURN(const auto shape, StackedShape(parts));
  ASSIGN_OR_RETURN(DeviceTensor t, Allocate(shape.first, shape.second));
  float* dst = F32(t);
  for (const TensorRef* p : parts) {
    RETURN_IF_ERROR(ConvertToF32(p->dtype, p->data, static_cast<size_t>(p->NumElements()), dst));
    dst += p->NumElements();
  }
  return t;
}

absl::Status CpuBackend::CopyRowsToHost(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                        float* dst) {
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= src.rows) return ShapeError("CopyRowsToHost", "row out of range");
    std::memcpy(dst + i * src.cols, F32(src) + rows[i] * src.cols, src.cols * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::GatherRows(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                    DeviceTensor& dst) {
  if (dst.cols != src.cols || dst.rows < static_cast<int64_t>(rows.size())) {
    return ShapeError("GatherRows", "output shape");
  }
  return CopyRowsToHost(src, rows, F32(dst));
}

absl::Status CpuBackend::Embedding(const DeviceTensor& table, absl::Span<const int32_t> ids,
                                   DeviceTensor& out) {
  if (out.cols != table.cols || out.rows < static_cast<int64_t>(ids.size())) {
    return ShapeError("Embedding", "output shape");
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= table.rows) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", ids[i], " is outside the vocabulary [0, ", table.rows, ")"));
    }
    std::memcpy(F32(out) + i * out.cols, F32(table) + ids[i] * table.cols,
                table.cols * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::RmsNorm(const DeviceTensor& x, const DeviceTensor& weight, float eps,
                                 DeviceTensor& out) {
  if (weight.elements() != x.cols || out.cols != x.cols) return ShapeError("RmsNorm", "shape");
  RmsNormReference(F32(x), F32(weight), x.rows, x.cols, eps, F32(out));
  return absl::OkStatus();
}

absl::Status CpuBackend::Linear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& y) {
  if (x.cols != w.cols || y.cols < w.rows || y.rows < x.rows) {
    return ShapeError("Linear", absl::StrCat("x [", x.rows, ",", x.cols, "] w [", w.rows, ",",
                                             w.cols, "] y [", y.rows, ",", y.cols, "]"));
  }
  LinearReference(F32(x), x.rows, x.cols, F32(w), w.rows, F32(y), y.cols);
  return absl::OkStatus();
}

absl::Status CpuBackend::NormLinear(const DeviceTensor& residual, const DeviceTensor& norm_weight,
                                    float eps, const DeviceTensor& w, DeviceTensor& normed,
                                    DeviceTensor& y) {
  if (norm_weight.elements() != residual.cols || normed.cols != residual.cols ||
      normed.rows < residual.rows || w.cols != residual.cols || y.cols < w.rows ||
      y.rows < residual.rows) {
    return ShapeError("NormLinear", "shape");
  }
  NormLinearReference(F32(residual), residual.rows, residual.cols, F32(norm_weight), eps, F32(w),
                      w.rows, F32(normed), F32(y), y.cols);
  return absl::OkStatus();
}

absl::Status CpuBackend::AddLinear(const DeviceTensor& x, const DeviceTensor& w,
                                   DeviceTensor& delta, DeviceTensor& residual) {
  if (x.cols != w.cols || residual.cols != w.rows || residual.rows < x.rows ||
      delta.cols < w.rows || delta.rows < x.rows) {
    return ShapeError("AddLinear", "shape");
  }
  LinearAddReference(F32(x), x.rows, x.cols, F32(w), w.rows, F32(delta), F32(residual),
                     residual.cols);
  return absl::OkStatus();
}

absl::Status CpuBackend::CopyKvBlocks(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                                      int dst_layer, const std::vector<int32_t>& blocks) {
  ASSIGN_OR_RETURN(const std::vector<KvBlockCopy> copies,
                   KvBlockCopies(src, src_layer, dst, dst_layer, blocks));
  for (const KvBlockCopy& c : copies) std::memcpy(c.to, c.from, static_cast<size_t>(c.bytes));
  return absl::OkStatus();
}

absl::Status CpuBackend::SwiGlu(const DeviceTensor& gate_up, DeviceTensor& out) {
  if (gate_up.cols != 2 * out.cols) return ShapeError("SwiGlu", "shape");
  SwiGluReference(F32(gate_up), gate_up.rows, out.cols, F32(out));
  return absl::OkStatus();
}

absl::Status CpuBackend::RopeAndStoreKv(int layer, const AttentionConfig& config,
                                        const ForwardBatch& batch, KvBlockPool& pool,
                                        DeviceTensor& qkv) {
  const int d = config.head_dim;
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * d;
  const int64_t kv_cols = static_cast<int64_t>(config.num_heads_kv) * d;
  if (qkv.cols != q_cols + 2 * kv_cols || qkv.rows < batch.rows()) {
    return ShapeError("RopeAndStoreKv", "qkv shape");
  }
  float* base = F32(qkv);
  // q and k heads are adjacent in each row, so one call rotates both.
  RopeReference(base, batch.rows(), qkv.cols, config.num_heads_q + config.num_heads_kv, d,
                batch.positions.data(), config.rope_inv_freq.data());
  for (const BatchSequence& s : batch.sequences) {
    PagedKvView<const float> cv = CpuKvView(pool, layer, s.kv);
    for (int64_t r = 0; r < s.num_rows; ++r) {
      const int64_t row = s.first_row + r;
      const int64_t token = s.start_position + r;
      if (token / cv.block_tokens >= static_cast<int64_t>(pool.BlockTable(s.kv).size())) {
        return ShapeError("RopeAndStoreKv", "no KV block reserved for the token");
      }
      for (int h = 0; h < config.num_heads_kv; ++h) {
        const float* k_src = base + row * qkv.cols + q_cols + static_cast<int64_t>(h) * d;
        const float* v_src = k_src + kv_cols;
        std::memcpy(const_cast<float*>(cv.KRow(token, h)), k_src, d * sizeof(float));
        std::memcpy(const_cast<float*>(cv.VRow(token, h)), v_src, d * sizeof(float));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status CpuBackend::Attention(int layer, const AttentionConfig& config,
                                   const ForwardBatch& batch, const KvBlockPool& pool,
                                   const DeviceTensor& qkv, DeviceTensor& out) {
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * config.head_dim;
  if (out.cols != q_cols || out.rows < batch.rows()) return ShapeError("Attention", "out shape");
  AttentionShape shape{config.num_heads_q, config.num_heads_kv, config.head_dim,
                       1.0f / std::sqrt(static_cast<float>(config.head_dim))};
  for (const BatchSequence& s : batch.sequences) {
    CausalAttentionReference(F32(qkv) + s.first_row * qkv.cols, qkv.cols,
                             batch.positions.data() + s.first_row, s.num_rows,
                             CpuKvView(pool, layer, s.kv), shape,
                             F32(out) + s.first_row * out.cols, out.cols);
  }
  return absl::OkStatus();
}

// Activations and KV are host fp32 here, so Double Sparsity runs directly on them.
absl::Status CpuBackend::StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                                     const DeviceTensor& qkv) {
  return ds.StoreLabelsHost(layer, batch, F32(qkv), qkv.cols);
}

absl::Status CpuBackend::SparseAttention(int layer, const ForwardBatch& batch,
                                         absl::Span<const size_t> sequences,
                                         const KvBlockPool& pool, DoubleSparsity& ds,
                                         const DeviceTensor& qkv, DeviceTensor& out) {
  for (size_t index : sequences) {
    const BatchSequence& s = batch.sequences[index];
    RETURN_IF_ERROR(ds.AttendHost(layer, batch, index, CpuKvView(pool, layer, s.kv), F32(qkv),
                                  qkv.cols, F32(out) + s.first_row * out.cols));
  }
  return absl::OkStatus();
}

// Offload tier on the CPU: the "device" is host memory too, but attention reads only the
// tier's fetch buffer, exactly as the CUDA backend will, so the tier's logic is what CI tests.
absl::Status CpuBackend::RopeQueries(const AttentionConfig& config,
                                     absl::Span<const int32_t> positions, DeviceTensor& q) {
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * config.head_dim;
  if (q.cols < q_cols || q.rows < static_cast<int64_t>(positions.size())) {
    return ShapeError("RopeQueries", "q shape");
  }
  RopeReference(F32(q), static_cast<int64_t>(positions.size()), q.cols, config.num_heads_q,
                config.head_dim, positions.data(), config.rope_inv_freq.data());
  return absl::OkStatus();
}

absl::Status CpuBackend::SelectTokens(int layer, const ForwardBatch& batch, size_t index,
                                      DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                                      bool current_label_written,
                                      std::vector<std::vector<int32_t>>& selection) {
  if (q_row < 0 || q_row >= q.rows) return ShapeError("SelectTokens", "q row out of range");
  return ds.SelectHost(layer, batch, index, F32(q) + q_row * q.cols, current_label_written,
                       selection);
}

absl::Status CpuBackend::FetchRows(const FetchPlan& plan, const KvBlockPool& pool,
                                   KvBlockPool::SequenceId seq, OffloadTier& tier) {
  if (!pool.Contains(seq)) return ShapeError("FetchRows", "unknown sequence");
  ExecuteFetchPlanReference(plan, CpuKvView(pool, plan.layer, seq), tier);
  return absl::OkStatus();
}

absl::Status CpuBackend::GatheredAttention(int layer, const AttentionConfig& config,
                                           const ForwardBatch& batch, size_t index,
                                           const std::vector<std::vector<int32_t>>* selection,
                                           OffloadTier& tier, size_t segment,
                                           const KvBlockPool& pool, DoubleSparsity& ds,
                                           const DeviceTensor& qkv, DeviceTensor& out) {
  const int d = config.head_dim;
  const int hkv = config.num_heads_kv;
  const int64_t q_cols = static_cast<int64_t>(config.num_heads_q) * d;
  const int64_t kv_cols = static_cast<int64_t>(hkv) * d;
  const BatchSequence& s = batch.sequences[index];
  if (s.num_rows != 1 || out.cols != q_cols) return ShapeError("GatheredAttention", "shape");
  const int32_t position = batch.positions[s.first_row];
  const std::vector<std::vector<int32_t>>* fetched = tier.Pending(layer, segment);
  if (fetched == nullptr || static_cast<int>(fetched->size()) != hkv) {
    return ShapeError("GatheredAttention", "nothing was fetched for the layer");
  }
  PagedKvView<float> buffer = tier.SegmentView(layer, segment);
  // The current token's K/V comes from this step's qkv, never from the host: it goes right
  // behind the fetched rows of each head, which is its place in ascending token order.
  const float* row = F32(qkv) + s.first_row * qkv.cols;
  for (int h = 0; h < hkv; ++h) {
    const int64_t slot = static_cast<int64_t>((*fetched)[h].size());
    if (slot >= tier.segment_capacity(layer, segment)) {
      return ShapeError("GatheredAttention", "no room for the current token");
    }
    std::memcpy(buffer.KRow(slot, h), row + q_cols + static_cast<int64_t>(h) * d,
                d * sizeof(float));
    std::memcpy(buffer.VRow(slot, h), row + q_cols + kv_cols + static_cast<int64_t>(h) * d,
                d * sizeof(float));
  }
  PagedKvView<const float> gathered{buffer.k, buffer.v, buffer.block_table, buffer.block_tokens,
                                    buffer.kv_heads, buffer.head_dim};
  float* dst = F32(out) + s.first_row * out.cols;
  if (selection == nullptr) {
    for (int h = 0; h < hkv; ++h) {
      if (static_cast<int32_t>((*fetched)[h].size()) != position) {
        return ShapeError("GatheredAttention", "dense fetch does not hold the whole context");
      }
    }
    AttentionShape shape{config.num_heads_q, hkv, d, 1.0f / std::sqrt(static_cast<float>(d))};
    CausalAttentionReference(row, qkv.cols, &position, 1, gathered, shape, dst, out.cols);
    return absl::OkStatus();
  }
  for (int h = 0; h < hkv; ++h) {
    const auto& sel = (*selection)[h];
    const bool has_current = !sel.empty() && sel.back() == position;
    if (sel.size() != (*fetched)[h].size() + (has_current ? 1 : 0)) {
      return ShapeError("GatheredAttention", "selection and fetched rows differ");
    }
  }
  return ds.AttendGatheredHost(layer, batch, index, *selection, gathered,
                               CpuKvView(pool, layer, s.kv), row, dst);
}

}  // namespace dsinfer
