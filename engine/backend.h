// The operations interface the forward pass is written against (DESIGN §2). A backend owns
// its memory and implements each operation of a Llama block; the CPU backend runs the
// kernels' reference twins in fp32, the CUDA backend runs the kernels.
//
// Tensors are 2-D row-major views [rows, cols] owned by the backend that allocated them.
// Every operation returns a Status; after a failure the output tensors' contents are
// unspecified but all memory stays valid.
#ifndef DSINFER_ENGINE_BACKEND_H_
#define DSINFER_ENGINE_BACKEND_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "engine/forward_batch.h"
#include "engine/safetensors.h"
#include "engine/sampler.h"
#include "engine/token_choice.h"
#include "kernels/dtype.h"
#include "kernels/rope.h"
#include "offload/host_memory.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"

namespace dsinfer {

class DoubleSparsity;  // engine/sparse/double_sparsity.h

struct DeviceTensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t elements() const { return rows * cols; }
};

// Shapes the attention operations need; fixed per model.
struct AttentionConfig {
  int num_heads_q = 0;
  int num_heads_kv = 0;
  int head_dim = 0;
  std::vector<float> rope_inv_freq;  // [head_dim / 2]
};

// Rows and columns of `parts` stacked along rows (UploadWeight's result; 1-D tensors count
// as one row). INTERNAL when the parts differ in columns.
inline absl::StatusOr<std::pair<int64_t, int64_t>> StackedShape(
    absl::Span<const TensorRef* const> parts) {
  int64_t rows = 0;
  int64_t cols = -1;
  for (const TensorRef* p : parts) {
    const int64_t c = p->shape.empty() ? 1 : p->shape.back();
    if (cols >= 0 && c != cols) {
      return absl::InternalError(absl::StrCat("UploadWeight: '", p->name, "' has ", c,
                                              " columns, the parts before it ", cols));
    }
    cols = c;
    rows += p->shape.size() <= 1 ? 1 : (c == 0 ? 0 : p->NumElements() / c);
  }
  return std::make_pair(rows, cols);
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual absl::string_view name() const = 0;
  // dtype the KV pool stores.
  virtual DType kv_dtype() const = 0;
  // Memory the KV pool lives in.
  virtual HostMemory& kv_memory() = 0;
  // Memory the KV pool lives in for kv modes offload and dense-offload (docs/offload.md): on
  // CUDA pinned, device-mapped host memory; elsewhere kv_memory().
  virtual HostMemory& offload_kv_memory() { return kv_memory(); }
  // Memory of the offload tier's fetch buffers and reuse slabs: where attention reads them
  // (device memory on CUDA); kv_memory() by default.
  virtual HostMemory& offload_buffer_memory() { return kv_memory(); }
  // Whether the backend keeps Double Sparsity's labels in its own memory (the CUDA backend:
  // device label caches derived from the pool) instead of reading DoubleSparsity's host label
  // cache. When true the Model creates DoubleSparsity with LabelStorage::kAccountingOnly, so
  // no host label memory is reserved; the backend must then never call the *Host label paths.
  virtual bool keeps_labels_on_device() const { return false; }

  // Allocates an activation tensor [rows, cols] of the backend's activation dtype.
  virtual absl::StatusOr<DeviceTensor> Allocate(int64_t rows, int64_t cols) = 0;
  // Allocates [rows, cols] for a tensor whose precision matters more than its bytes (the
  // residual stream, logits): fp32 where the backend supports it in every operation that reads
  // or writes it, else the activation dtype. The CPU backend is fp32 throughout.
  virtual absl::StatusOr<DeviceTensor> AllocateF32(int64_t rows, int64_t cols) {
    return Allocate(rows, cols);
  }
  virtual void Free(DeviceTensor& tensor) = 0;
  // Uploads weights, concatenating `parts` along rows (e.g. q/k/v into one projection).
  // All parts must have the same number of columns (1-D tensors count as [1, n]).
  virtual absl::StatusOr<DeviceTensor> UploadWeight(absl::Span<const TensorRef* const> parts) = 0;
  // Copies `rows` of `src` (all columns) to host fp32 memory `dst` [rows.size(), cols].
  // Whether LogitStats is implemented: rows' argmax and log Σ exp computed where the logits
  // are (the CUDA backend), so a greedy token and its log-probability need no host scan.
  virtual bool ComputesLogitStats() const { return false; }
  // out[i] = {argmax, log Σ exp} of row i of `logits` (fp32), i < rows.
  virtual absl::Status LogitStats(const DeviceTensor& logits, int64_t rows,
                                  std::vector<LogitRowStat>& out) {
    (void)logits, (void)rows, (void)out;
    return absl::UnimplementedError(absl::StrCat("backend ", name(), " computes no logit stats"));
  }
  virtual absl::Status CopyRowsToHost(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                      float* dst) = 0;
  // The device token path (engine/token_choice.h says what it covers): whether ChooseTokens is
  // implemented, so that a step's tokens can be chosen where its logits are.
  virtual bool ChoosesTokensOnDevice() const { return false; }
  // out[i] = the token of row i of `logits` (fp32, [>= choices.size(), vocab]) chosen with
  // choices[i] (knobs, and the uniform for a sampled row; LaunchSample's semantics), and its
  // log-probability; only those come back to the host. INVALID_ARGUMENT for knobs out of
  // range or a uniform outside [0, 1) (nothing launched, `out` empty).
  virtual absl::Status ChooseTokens(const DeviceTensor& logits,
                                    absl::Span<const DeviceTokenChoice> choices,
                                    std::vector<ChosenToken>& out) {
    (void)logits, (void)choices, (void)out;
    return absl::UnimplementedError(
        absl::StrCat("backend ", name(), " cannot choose tokens on the device"));
  }

  // dst[i] = src[rows[i]]. dst: [>= rows.size(), src.cols].
  virtual absl::Status GatherRows(const DeviceTensor& src, absl::Span<const int64_t> rows,
                                  DeviceTensor& dst) = 0;
  // out[i] = table[ids[i]]. out: [ids.size(), hidden].
  virtual absl::Status Embedding(const DeviceTensor& table, absl::Span<const int32_t> ids,
                                 DeviceTensor& out) = 0;
  // out = RmsNorm(x) * weight.
  virtual absl::Status RmsNorm(const DeviceTensor& x, const DeviceTensor& weight, float eps,
                               DeviceTensor& out) = 0;
  // y[:, :w.rows] = x · wᵀ. x: [n, in], w: [out, in], y: [n, >= out].
  virtual absl::Status Linear(const DeviceTensor& x, const DeviceTensor& w, DeviceTensor& y) = 0;
  // The two ends of a transformer sub-block, which a backend may fuse with the projection:
  //  - y = (RmsNorm(residual) * norm_weight) · wᵀ, with the normed rows left in `normed`
  //    ([n, in]) too;
  //  - residual += x · wᵀ; `delta` ([n, w.rows]) is scratch for a backend that adds apart.
  virtual absl::Status NormLinear(const DeviceTensor& residual, const DeviceTensor& norm_weight,
                                  float eps, const DeviceTensor& w, DeviceTensor& normed,
                                  DeviceTensor& y) = 0;
  virtual absl::Status AddLinear(const DeviceTensor& x, const DeviceTensor& w,
                                 DeviceTensor& delta, DeviceTensor& residual) = 0;
  // gate_up: [n, 2I] -> out: [n, I] = silu(gate) * up.
  virtual absl::Status SwiGlu(const DeviceTensor& gate_up, DeviceTensor& out) = 0;
  // qkv: [n, (Hq + 2 Hkv) * d] packed q | k | v per row. Applies RoPE to q and k in place
  // (at batch.positions) and writes every row's k and v into `pool` layer `layer` at the
  // row's sequence and position. The pool must already have room reserved.
  virtual absl::Status RopeAndStoreKv(int layer, const AttentionConfig& config,
                                      const ForwardBatch& batch, KvBlockPool& pool,
                                      DeviceTensor& qkv) = 0;
  // Causal attention of each row's q (in qkv) over its sequence's cached tokens up to and
  // including its own position. out: [n, Hq * d].
  virtual absl::Status Attention(int layer, const AttentionConfig& config,
                                 const ForwardBatch& batch, const KvBlockPool& pool,
                                 const DeviceTensor& qkv, DeviceTensor& out) = 0;
  // Attention as above for the rows of the batch sequences listed in `sequences` (indices into
  // batch.sequences) only: the dense sequences of a step whose others run Double Sparsity
  // (MixedAttention; SparseAttention writes their rows after it). The other rows of out may be
  // overwritten with anything. The default runs Attention on a batch view listing only those
  // sequences (rows stay addressed through first_row, so nothing moves).
  virtual absl::Status SubsetAttention(int layer, const AttentionConfig& config,
                                       const ForwardBatch& batch,
                                       absl::Span<const size_t> sequences,
                                       const KvBlockPool& pool, const DeviceTensor& qkv,
                                       DeviceTensor& out) {
    ForwardBatch view = batch;
    view.sequences.clear();
    for (size_t j : sequences) view.sequences.push_back(batch.sequences[j]);
    return Attention(layer, config, view, pool, qkv, out);
  }

  // Bracket the layer loop of one forward step (Embedding through the last AddLinear).
  // `capturable`: the step issues only the operations above and, with `ds` (its plan made
  // by ds->BeginStep), StoreLabels at every layer and, at each layer `ds` plans sparse,
  // MixedAttention with that layer's sparse sequences (DoubleSparsity::SparseSequences) and
  // the others dense, so a backend may
  // record it once (e.g. as a CUDA graph) and replay it for later steps of the same shape,
  // skipping the individual launches. After a failed operation the caller need not call
  // EndStep; the next BeginStep discards the unfinished step. Defaults do nothing.
  virtual absl::Status BeginStep(const ForwardBatch& batch, const KvBlockPool& pool,
                                 bool capturable, DoubleSparsity* ds) {
    (void)batch, (void)pool, (void)capturable, (void)ds;
    return absl::OkStatus();
  }
  virtual absl::Status EndStep() { return absl::OkStatus(); }

  // Double Sparsity (DESIGN §1). Both run after RopeAndStoreKv of the same layer and step,
  // once `ds.BeginStep(batch, pool)` planned the step. StoreLabels writes the label rows of
  // every new row of the sequences that keep labels (qkv post-RoPE). SparseAttention runs
  // Double Sparsity for the decode row of each batch sequence listed in `sequences`
  // (indices into batch.sequences), writing those rows of out [n, Hq * d]. Backends without
  // them refuse Double Sparsity with UNIMPLEMENTED.
  virtual absl::Status StoreLabels(int layer, const ForwardBatch& batch, DoubleSparsity& ds,
                                   const DeviceTensor& qkv) {
    (void)layer, (void)batch, (void)ds, (void)qkv;
    return absl::UnimplementedError(
        absl::StrCat("backend ", name(), " does not implement Double Sparsity"));
  }
  virtual absl::Status SparseAttention(int layer, const ForwardBatch& batch,
                                       absl::Span<const size_t> sequences,
                                       const KvBlockPool& pool, DoubleSparsity& ds,
                                       const DeviceTensor& qkv, DeviceTensor& out) {
    (void)layer, (void)batch, (void)sequences, (void)pool, (void)ds, (void)qkv, (void)out;
    return absl::UnimplementedError(
        absl::StrCat("backend ", name(), " does not implement Double Sparsity"));
  }
  // A layer where `ds` runs some sequences sparse: SubsetAttention of the `dense` ones (if
  // any), then SparseAttention of the `sparse` ones. The two write different rows of out, so a
  // backend may run them side by side (the CUDA backend does, on two streams).
  virtual absl::Status MixedAttention(int layer, const AttentionConfig& config,
                                      const ForwardBatch& batch, absl::Span<const size_t> dense,
                                      absl::Span<const size_t> sparse, const KvBlockPool& pool,
                                      DoubleSparsity& ds, const DeviceTensor& qkv,
                                      DeviceTensor& out) {
    if (!dense.empty()) {
      const absl::Status s = SubsetAttention(layer, config, batch, dense, pool, qkv, out);
      if (!s.ok()) return s;
    }
    return SparseAttention(layer, batch, sparse, pool, ds, qkv, out);
  }

  // BeginOffloadStep runs once per forward step in the offload modes, after the tier planned
  // the step's segments and before any other offload operation: the backend may upload the
  // batch's block tables and drop state of sequences the pool no longer holds. Default: no-op.
  virtual absl::Status BeginOffloadStep(const AttentionConfig& config, const ForwardBatch& batch,
                                        const KvBlockPool& pool) {
    (void)config, (void)batch, (void)pool;
    return absl::OkStatus();
  }

  // The offload tier (DESIGN §4, docs/offload.md), used in kv modes offload and
  // dense-offload; backends without it refuse those modes with UNIMPLEMENTED.
  // RopeQueries rotates q: [n, >= Hq d] (its first Hq·d columns) row i at positions[i].
  // SelectTokens runs Double Sparsity's selection for batch sequence `index` at `layer` with
  // the query in row `q_row` of q (first Hq·d columns), into host lists [Hkv] (ascending,
  // current token included). FetchRows executes a fetch plan of sequence `seq` (pool rows
  // or reuse-cache rows into the plan's buffer segment). GatheredAttention attends batch
  // sequence `index`'s decode row over tier segment `segment` of `layer`'s buffer, after
  // writing its current K/V row (from qkv, post-RoPE) behind the fetched rows: over
  // `selection` (Double Sparsity; pool is read only for recall) or, when selection is null,
  // over every token (dense). out: [n, Hq d].
  virtual absl::Status RopeQueries(const AttentionConfig& config,
                                   absl::Span<const int32_t> positions, DeviceTensor& q) {
    (void)config, (void)positions, (void)q;
    return OffloadUnimplemented();
  }
  virtual absl::Status SelectTokens(int layer, const ForwardBatch& batch, size_t index,
                                    DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                                    bool current_label_written,
                                    std::vector<std::vector<int32_t>>& selection) {
    (void)layer, (void)batch, (void)index, (void)ds, (void)q, (void)q_row;
    (void)current_label_written, (void)selection;
    return OffloadUnimplemented();
  }
  virtual absl::Status FetchRows(const FetchPlan& plan, const KvBlockPool& pool,
                                 KvBlockPool::SequenceId seq, OffloadTier& tier) {
    (void)plan, (void)pool, (void)seq, (void)tier;
    return OffloadUnimplemented();
  }
  // Copies the K and V rows of `blocks` in layer `src_layer` of `src` to the same block ids
  // in layer `dst_layer` of `dst` (pools of one block geometry and dtype; either may live in
  // host or device memory), in stream order with the backend's other work.
  virtual absl::Status CopyKvBlocks(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                                    int dst_layer, const std::vector<int32_t>& blocks) {
    (void)src, (void)src_layer, (void)dst, (void)dst_layer, (void)blocks;
    return absl::UnimplementedError(absl::StrCat("backend ", name(), " cannot copy KV blocks"));
  }
  // The same copy beside the backend's other work: it starts after everything queued so far
  // and runs while later work proceeds, until JoinKvCopy(slot) (slot 0 or 1) orders all work
  // queued after the join behind it. Model::PrefillLayerMajor moves layer l out of one of
  // two staging pools this way while layer l + 1 runs in the other. By default (the CPU) the
  // copy is done at once and the join is free.
  virtual absl::Status CopyKvBlocksAside(const KvBlockPool& src, int src_layer, KvBlockPool& dst,
                                         int dst_layer, const std::vector<int32_t>& blocks,
                                         int slot) {
    (void)slot;
    return CopyKvBlocks(src, src_layer, dst, dst_layer, blocks);
  }
  virtual absl::Status JoinKvCopy(int slot) {
    (void)slot;
    return absl::OkStatus();
  }

  // Offload modes: derives batch sequence `index`'s labels of `layer` for all its tokens
  // (start_position + num_rows) from layer `source_layer` of `source`, a pool in device memory
  // whose blocks for the sequence have the same ids as in the model's pool — so that
  // Model::PrefillLayerMajor labels each layer from its staging pool in HBM instead of the
  // first decode step reading every prompt key back over PCIe. Backends whose labels are
  // written at StoreLabels (the CPU) or derived from device-resident K anyway do nothing.
  virtual absl::Status LabelLayerFrom(int layer, const ForwardBatch& batch, size_t index,
                                      DoubleSparsity& ds, const KvBlockPool& source,
                                      int source_layer, const KvBlockPool& pool) {
    (void)layer, (void)batch, (void)index, (void)ds, (void)source, (void)source_layer,
        (void)pool;
    return absl::OkStatus();
  }

  // Whether the backend can also select and fetch without a host round trip
  // (SelectAndFetch): the model then uses it where no LRU reuse cache (whose bookkeeping is
  // on the host) and no recall measurement (which compares host lists) needs the lists.
  virtual bool SelectsOnDevice() const { return false; }
  // SelectTokens and FetchRows in one, the selection staying on the device: `plan` comes
  // from OffloadTier::PlanCounted with, per KV head, the selection's size minus the current
  // token (every selection holds the current token, last); the selected rows go to the
  // plan's segment in selection order, as FetchRows would place them. GatheredAttention of
  // such a segment attends every fetched row and the current token (`selection` unread).
  virtual absl::Status SelectAndFetch(int layer, const ForwardBatch& batch, size_t index,
                                      DoubleSparsity& ds, const DeviceTensor& q, int64_t q_row,
                                      bool current_label_written, const FetchPlan& plan,
                                      const KvBlockPool& pool, OffloadTier& tier) {
    (void)layer, (void)batch, (void)index, (void)ds, (void)q, (void)q_row;
    (void)current_label_written, (void)plan, (void)pool, (void)tier;
    return OffloadUnimplemented();
  }
  // One decode row of SelectAndFetchMany: batch sequence `index`, its query at row q_row of
  // q, and its OffloadTier::PlanCounted plan (which must outlive the call).
  struct SelectFetch {
    size_t index = 0;
    int64_t q_row = 0;
    const FetchPlan* plan = nullptr;
  };
  // SelectAndFetch of several decode rows of one layer: the result of one call per entry, in
  // order. A backend may score and select them together (the CUDA backend: one scoring and one
  // top-k launch for all of them, so that a batch's selections are not a chain of small
  // kernels ahead of its gathers). The default calls SelectAndFetch per entry.
  virtual absl::Status SelectAndFetchMany(int layer, const ForwardBatch& batch,
                                          const std::vector<SelectFetch>& rows,
                                          DoubleSparsity& ds, const DeviceTensor& q,
                                          bool current_label_written, const KvBlockPool& pool,
                                          OffloadTier& tier) {
    for (const SelectFetch& r : rows) {
      const absl::Status st = SelectAndFetch(layer, batch, r.index, ds, q, r.q_row,
                                             current_label_written, *r.plan, pool, tier);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  // After a step whose SelectAndFetch plans had previous rows (previous-step reuse): the
  // rows the device gathers found there, per segment of the step (waits for the gathers).
  virtual absl::StatusOr<std::vector<int64_t>> DeviceReuseHits(size_t segments) {
    (void)segments;
    return OffloadUnimplemented();
  }
  virtual absl::Status GatheredAttention(int layer, const AttentionConfig& config,
                                         const ForwardBatch& batch, size_t index,
                                         const std::vector<std::vector<int32_t>>* selection,
                                         OffloadTier& tier, size_t segment,
                                         const KvBlockPool& pool, DoubleSparsity& ds,
                                         const DeviceTensor& qkv, DeviceTensor& out) {
    (void)layer, (void)config, (void)batch, (void)index, (void)selection, (void)tier;
    (void)segment, (void)pool, (void)ds, (void)qkv, (void)out;
    return OffloadUnimplemented();
  }

 private:
  absl::Status OffloadUnimplemented() const {
    return absl::UnimplementedError(
        absl::StrCat("backend ", name(), " does not implement the offload tier"));
  }
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_BACKEND_H_
