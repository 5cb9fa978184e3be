// Double Sparsity at decode (DESIGN §1), the engine side: resolves each sequence's
// attention options per layer, owns the channel config and the label cache, and runs label
// writing, scoring, top-k selection and attention over the selected set with the kernels'
// reference twins. The Model calls BeginStep once per forward step (all validation happens
// there, before any compute, so a bad request fails without touching the cache), then the
// backend calls StoreLabelsHost / AttendHost per layer with host fp32 views.
//
// Resolution, per sequence and layer: `dense` never goes sparse. A row goes sparse only when
// it is a decode row (the sequence's only new row this step; prefill is dense), the layer is
// >= dense_layers, and — for `auto` only — the context is >= dense_below. `double_sparse`
// ignores dense_below (it is the explicit request) but keeps dense_layers (set it to 0 to
// make every layer sparse).
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

namespace dsinfer {

struct SequenceAttentionStats {
  int64_t dense_rows = 0;       // (layer, row) pairs that ran dense attention
  int64_t sparse_rows = 0;      // (layer, row) pairs that ran Double Sparsity
  int64_t tokens_attended = 0;  // Σ over (layer, row, KV head) of K/V rows read
  int64_t tokens_context = 0;   // Σ over (layer, row, KV head) of tokens in context
  // kDoubleSparse when any layer of the sequence's latest step ran sparse, else kDense.
  AttentionMode last_mode = AttentionMode::kDense;
};

class DoubleSparsity {
 public:
  DoubleSparsity(int layers, int heads_q, int heads_kv, int head_dim);

  // Engine defaults for sequences whose BatchSequence::attention is null. INVALID_ARGUMENT
  // (and no change) when they do not validate.
  absl::Status SetDefaults(const AttentionOptions& defaults);
  const AttentionOptions& defaults() const { return defaults_; }
  // Validates `config` against the model's shapes and adopts it (no change on error).
  absl::Status SetChannelConfig(ChannelConfig config);
  const std::optional<ChannelConfig>& channel_config() const { return config_; }

  // Resolves the step's plan; validates every sequence's options (INVALID_ARGUMENT naming
  // the field) and channel availability (FAILED_PRECONDITION), frees labels of sequences
  // the pool no longer holds, and reserves label room. On error nothing was written.
  absl::Status BeginStep(const ForwardBatch& batch, const KvBlockPool& pool);
  // Whether any sequence of the step keeps labels / runs sparse at `layer`.
  bool StoresLabels() const { return stores_labels_; }
  bool AnySparse(int layer) const;
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

  // The tokens AttendHost selected for sequence `index` at its last call: per KV head,
  // ascending indices. For tests and diagnostics.
  const std::vector<std::vector<int32_t>>& last_selection() const { return last_selection_; }

  const SequenceAttentionStats* Stats(KvBlockPool::SequenceId seq) const;
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

  int layers_, heads_q_, heads_kv_, head_dim_;
  AttentionOptions defaults_;
  std::optional<ChannelConfig> config_;
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
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_DOUBLE_SPARSITY_H_
