// Double Sparsity at decode (DESIGN §1), the engine side: resolves each sequence's
// attention options per layer, owns the channel config and the label cache, and runs label
// writing, scoring, top-k selection and attention over the selected set with the kernels'
// reference twins. The Model calls BeginStep once per forward step (all validation happens
// there, before any compute, so a bad request fails without touching the cache), then the
// backend calls StoreLabelsHost / AttendHost per layer with host fp32 views.
//
// Resolution, per sequence and layer: `dense` never goes sparse. A row goes sparse only when
// it is a decode row (the sequence's only new row this step; prefill is dense), the layer is
// >= dense_layers (capped by set_dense_layer_limit in kv mode offload), and — for `auto`
// only — the context is >= dense_below. `double_sparse` ignores dense_below (it is the
// explicit request) but keeps dense_layers (set it to 0 to make every layer sparse).
//
// Without a channel config: `auto` stays dense (it needs no labels), `double_sparse` with
// channels = head_dim uses every channel in natural order (the selection is then exact
// top-k of the true logits, up to fp16 labels), and `double_sparse` with fewer channels is
// FAILED_PRECONDITION: a made-up channel choice would silently give poor quality.
//
// Stats: per sequence, counters the server reports (mode used, tokens attended), kept
// until the sequence leaves the KV pool. Optional recall measurement (dsinfer-eval):
// per layer, the share of the true softmax mass of each query head that the selected tokens
// hold, averaged over query heads and rows.
//
// The offload tier (docs/offload.md) uses selection and attention separately: SelectHost
// (also with a query predicted a layer ahead) and AttendGatheredHost over rows the tier
// gathered; AttendHost is the two together over the pool, so both paths share one scoring,
// one top-k and one attention routine.
#ifndef DSINFER_ENGINE_SPARSE_DOUBLE_SPARSITY_H_
#define DSINFER_ENGINE_SPARSE_DOUBLE_SPARSITY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/attention_options.h"
#include "engine/forward_batch.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/label_cache.h"
#include "kernels/paged_kv.h"
#include "offload/kv_block_pool.h"
#include "offload/offload_tier.h"

namespace dsinfer {

struct SequenceAttentionStats {
  int64_t dense_rows = 0;       // (layer, row) pairs that ran dense attention
  int64_t sparse_rows = 0;      // (layer, row) pairs that ran Double Sparsity
  int64_t tokens_attended = 0;  // Σ over (layer, row, KV head) of K/V rows read
  int64_t tokens_context = 0;   // Σ over (layer, row, KV head) of tokens in context
  // kDoubleSparse when any layer of the sequence's latest step ran sparse, else kDense.
  AttentionMode last_mode = AttentionMode::kDense;
  // Offload modes (docs/offload.md): rows placed in fetch buffers, read from the host pool
  // (bytes_from_host is the response's bytes_fetched_from_host) or reused from the cache.
  FetchCounters fetch;
  // Cross-layer prediction: (layer, row) pairs that attended a predicted selection, and —
  // when prediction recall is measured — Σ over their KV heads of |predicted ∩ exact| and
  // of |exact|, counting only the tokens the budget leaves free (kept tokens are in both).
  int64_t predicted_rows = 0;
  int64_t prediction_overlap = 0;
  int64_t prediction_exact = 0;
};

class DoubleSparsity {
 public:
  // `label_storage`: kHost when the host paths below read and write the labels (the CPU
  // backend); kAccountingOnly when the backend keeps them itself (Backend::
  // keeps_labels_on_device): the label cache then keeps only formats, capacities and byte
  // counts, and StoreLabelsHost / SelectHost / AttendHost are INTERNAL errors.
  DoubleSparsity(int layers, int heads_q, int heads_kv, int head_dim,
                 LabelStorage label_storage = LabelStorage::kHost);

  // Engine defaults for sequences whose BatchSequence::attention is null. INVALID_ARGUMENT
  // (and no change) when they do not validate.
  absl::Status SetDefaults(const AttentionOptions& defaults);
  const AttentionOptions& defaults() const { return defaults_; }
  // Validates `config` against the model's shapes and adopts it (no change on error).
  absl::Status SetChannelConfig(ChannelConfig config);
  const std::optional<ChannelConfig>& channel_config() const { return config_; }
  // A process-wide unique number for the adopted channel config (0: none adopted yet), so
  // that caches derived from it (the CUDA backend's device channel sets) can tell it changed
  // without comparing it.
  uint64_t channel_config_id() const { return config_id_; }

  // Resolves the step's plan; validates every sequence's options (INVALID_ARGUMENT naming
  // the field) and channel availability (FAILED_PRECONDITION), frees labels of sequences
  // the pool no longer holds, and reserves label room. On error nothing was written.
  // `count_stats` false plans the same batch again without counting its dense rows a second
  // time (a layer-major prefill resumed after other steps: Model::ContinueLayerMajor).
  absl::Status BeginStep(const ForwardBatch& batch, const KvBlockPool& pool,
                         bool count_stats = true);
  // Whether any sequence of the step keeps labels / runs sparse at `layer`.
  bool StoresLabels() const { return stores_labels_; }
  bool AnySparse(int layer) const;
  // The sequences (indices into the step's batch) that run sparse at `layer`, ascending; the
  // others run dense beside them (below the length threshold, asking for dense attention, or
  // at one of their own dense layers).
  std::vector<size_t> SparseSequences(int layer) const;
  // The others: the sequences that run dense at `layer`, ascending.
  std::vector<size_t> DenseSequences(int layer) const;
  // Whether sequence `index` of the step's batch runs sparse at `layer`.
  bool IsSparse(size_t index, int layer) const;

  // Writes the label rows of every new row of the sequences that keep labels.
  // qkv: [rows, (Hq + 2 Hkv) d] post-RoPE, row stride qkv_stride.
  absl::Status StoreLabelsHost(int layer, const ForwardBatch& batch, const float* qkv,
                               int64_t qkv_stride);
  // Double Sparsity attention of sequence `index`'s decode row: scores, selection, attention
  // over the selected set. out: its row [Hq d].
  absl::Status AttendHost(int layer, const ForwardBatch& batch, size_t index,
                          const PagedKvView<const float>& kv, const float* qkv,
                          int64_t qkv_stride, float* out);

  // Offload hooks (docs/offload.md). SelectHost runs AttendHost's scoring and selection
  // only, into `selection` ([Hkv] ascending lists, the current token included). q: [Hq d]
  // post-RoPE. `current_label_written` is false when predicting a layer ahead: that layer's
  // label of the current token does not exist yet, and is not needed (the current token is
  // always kept). No stats change.
  absl::Status SelectHost(int layer, const ForwardBatch& batch, size_t index, const float* q,
                          bool current_label_written,
                          std::vector<std::vector<int32_t>>& selection);
  // Attention of sequence `index`'s decode row over rows already gathered: per KV head h,
  // rows [0, counts[h]) of `gathered` hold, in order, the tokens of selection[h]. Counts the
  // stats as AttendHost does; `pool` is read only to measure recall. out: [Hq d].
  absl::Status AttendGatheredHost(int layer, const ForwardBatch& batch, size_t index,
                                  const std::vector<std::vector<int32_t>>& selection,
                                  const PagedKvView<const float>& gathered,
                                  const PagedKvView<const float>& pool, const float* q,
                                  float* out);
  // Rows per KV head sequence `index`'s decode row may place in a fetch buffer this step:
  // its context when any streamed layer runs dense, else its token budget when any layer
  // runs sparse, else 0 (also for prefill rows).
  // Dense rows of the first `resident_layers` layers attend the pool in place (their K/V is
  // in device memory) and need no buffer rows.
  int64_t FetchRows(size_t index, const ForwardBatch& batch, int resident_layers = 0) const;
  // Rows per KV head a sparse fetch of sequence `index` places this step (its token budget)
  // when any layer runs sparse for its decode row, else 0: the kept segments of
  // previous-step reuse.
  int64_t SparseFetchRows(size_t index, const ForwardBatch& batch) const;
  // The kept tokens (sink, recent, current) of sequence `index` this step, for recall.
  bool IsKept(size_t index, const ForwardBatch& batch, int32_t token) const;
  // Accounting from the offload tier and the predictor.
  void AddFetch(KvBlockPool::SequenceId seq, const FetchCounters& counts);
  void AddPrediction(int layer, KvBlockPool::SequenceId seq, int64_t overlap, int64_t exact);
  void CountPredictedRow(KvBlockPool::SequenceId seq) { stats_[seq].predicted_rows += 1; }
  // Per layer: Σ |predicted ∩ exact| and Σ |exact| over free (non-kept) tokens.
  const std::vector<int64_t>& prediction_overlap() const { return prediction_overlap_; }
  const std::vector<int64_t>& prediction_exact() const { return prediction_exact_; }
  void ResetPrediction();
  // dense-offload: every sequence resolves dense and keeps no labels.
  void set_force_dense(bool on) { force_dense_ = on; }
  // kv mode offload: a layer at or past `limit` does not run dense for being below
  // dense_layers (its K/V is on the host; reading all of it every step is what the tier
  // avoids). It runs Double Sparsity instead, like the layers after it; the tier selects for
  // the first layers with their own query (OffloadOptions::own_query_layers), as the
  // reference implementation's offload does. Explicit `dense` mode and `auto` below
  // dense_below are unchanged. -1 = no limit (kv mode gpu).
  void set_dense_layer_limit(int limit) { dense_layer_limit_ = limit; }

  // The tokens AttendHost selected for sequence `index` at its last call: per KV head,
  // ascending indices. For tests and diagnostics.
  const std::vector<std::vector<int32_t>>& last_selection() const { return last_selection_; }

  const SequenceAttentionStats* Stats(KvBlockPool::SequenceId seq) const;
  // Counts sparse decode row `index` of `batch` whose selection ran on the device (the CUDA
  // backend), as AttendHost counts its host lists: top-k keeps BudgetFor(tokens) rows of every
  // KV head. Recall is not measured.
  void CountDeviceRow(const ForwardBatch& batch, size_t index);
  int heads_q() const { return heads_q_; }
  LabelCache& labels() { return labels_; }
  const LabelCache& labels() const { return labels_; }

  void set_measure_recall(bool on) { measure_recall_ = on; }
  void ResetRecall();
  // Per layer: Σ recall and the number of (row, query head) terms summed.
  const std::vector<double>& recall_sum() const { return recall_sum_; }
  const std::vector<int64_t>& recall_count() const { return recall_count_; }

 private:
  struct Plan {
    const AttentionOptions* options = nullptr;
    bool labels = false;                                // keeps labels
    const std::vector<std::vector<int32_t>>* channels = nullptr;  // [layer][Hkv × r]
    std::vector<bool> sparse;                           // [layer]
  };
  absl::StatusOr<const std::vector<std::vector<int32_t>>*> ChannelsFor(ChannelStatistic stat,
                                                                       int r);
  // Stats of a sparse row that attended last_selection_; recall against `kv` (the pool).
  absl::Status CountAndMeasure(int layer, const ForwardBatch& batch, size_t index,
                               const PagedKvView<const float>& kv, const float* q);

  int layers_, heads_q_, heads_kv_, head_dim_;
  AttentionOptions defaults_;
  std::optional<ChannelConfig> config_;
  uint64_t config_id_ = 0;
  std::map<std::pair<int, int>, std::vector<std::vector<int32_t>>> channels_;  // (stat, r)
  LabelCache labels_;
  std::vector<Plan> plan_;
  bool stores_labels_ = false;
  std::unordered_map<KvBlockPool::SequenceId, SequenceAttentionStats> stats_;
  std::vector<float> scores_;
  std::vector<int32_t> scratch_;
  std::vector<std::vector<int32_t>> last_selection_;
  bool measure_recall_ = false;
  std::vector<double> recall_sum_;
  std::vector<int64_t> recall_count_;
  std::vector<int64_t> prediction_overlap_;
  std::vector<int64_t> prediction_exact_;
  std::vector<int32_t> identity_;
  bool force_dense_ = false;
  int dense_layer_limit_ = -1;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_DOUBLE_SPARSITY_H_
