// Scratch (scores, selection) is reused across calls and grows to the longest context seen,
// so a decode step allocates nothing once warm — the same discipline the CUDA path needs.
#include "engine/sparse/double_sparsity.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "kernels/attention_reference.h"
#include "kernels/label_reference.h"
#include "kernels/label_score_reference.h"
#include "kernels/status.h"
#include "kernels/topk_select_reference.h"

namespace dsinfer {

DoubleSparsity::DoubleSparsity(int layers, int heads_q, int heads_kv, int head_dim,
                               LabelStorage label_storage)
    : layers_(layers),
      heads_q_(heads_q),
      heads_kv_(heads_kv),
      head_dim_(head_dim),
      labels_(layers, heads_kv, label_storage),
      recall_sum_(layers, 0.0),
      recall_count_(layers, 0),
      prediction_overlap_(layers, 0),
      prediction_exact_(layers, 0) {}

absl::Status DoubleSparsity::SetDefaults(const AttentionOptions& defaults) {
  RETURN_IF_ERROR(defaults.Validate(head_dim_));
  defaults_ = defaults;
  return absl::OkStatus();
}

absl::Status DoubleSparsity::SetChannelConfig(ChannelConfig config) {
  RETURN_IF_ERROR(ValidateChannelConfig(config, layers_, heads_q_, heads_kv_, head_dim_));
  config_ = std::move(config);
  static std::atomic<uint64_t> next_config_id{1};
  config_id_ = next_config_id.fetch_add(1);
  channels_.clear();
  return absl::OkStatus();
}

absl::StatusOr<const std::vector<std::vector<int32_t>>*> DoubleSparsity::ChannelsFor(
    ChannelStatistic stat, int r) {
  const std::pair<int, int> key(static_cast<int>(stat), r);
  auto it = channels_.find(key);
  if (it != channels_.end()) return &it->second;
  std::vector<std::vector<int32_t>> per_layer(layers_);
  if (!config_.has_value()) {
    if (r != head_dim_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "attention mode double_sparse with ", r, " of ", head_dim_,
          " channels needs a channel config (calibrate one with dsinfer-calibrate)"));
    }
    for (auto& l : per_layer) {
      l.resize(static_cast<size_t>(heads_kv_) * r);
      for (int h = 0; h < heads_kv_; ++h) {
        std::iota(l.begin() + h * r, l.begin() + (h + 1) * r, 0);
      }
    }
  } else {
    for (int l = 0; l < layers_; ++l) {
      ASSIGN_OR_RETURN(per_layer[l], KvHeadChannels(*config_, stat, l, heads_q_, heads_kv_, r));
    }
  }
  return &channels_.emplace(key, std::move(per_layer)).first->second;
}

absl::Status DoubleSparsity::BeginStep(const ForwardBatch& batch, const KvBlockPool& pool,
                                       bool count_stats) {
  labels_.ReleaseMissing(pool);
  for (auto it = stats_.begin(); it != stats_.end();) {
    it = pool.Contains(it->first) ? std::next(it) : stats_.erase(it);
  }
  // Validate and plan first; write nothing until every sequence passed.
  std::vector<Plan> plan(batch.sequences.size());
  for (size_t i = 0; i < batch.sequences.size(); ++i) {
    const BatchSequence& s = batch.sequences[i];
    Plan& p = plan[i];
    p.options = s.attention != nullptr ? s.attention : &defaults_;
    const AttentionOptions& o = *p.options;
    RETURN_IF_ERROR(o.Validate(head_dim_));
    p.sparse.assign(layers_, false);
    if (o.mode == AttentionMode::kDense || force_dense_) continue;
    if (o.mode == AttentionMode::kAuto && !config_.has_value()) continue;
    auto channels = ChannelsFor(o.statistic, o.channels);
    if (!channels.ok()) return channels.status();
    p.channels = *channels;
    p.labels = true;
    if (labels_.Contains(s.kv) &&
        !(labels_.format(s.kv) == LabelFormat{o.channels, o.label_bits})) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the label format of a sequence cannot change mid-sequence (channels ",
          labels_.format(s.kv).r, ", label_bits ", labels_.format(s.kv).bits, ")"));
    }
    const int64_t context = s.start_position + s.num_rows;
    const bool decode = s.num_rows == 1;
    const bool long_enough = o.mode == AttentionMode::kDoubleSparse || context >= o.dense_below;
    const int dense_layers =
        dense_layer_limit_ < 0 ? o.dense_layers : std::min(o.dense_layers, dense_layer_limit_);
    for (int l = dense_layers; l < layers_; ++l) p.sparse[l] = decode && long_enough;
  }
  stores_labels_ = false;
  for (size_t i = 0; i < plan.size(); ++i) {
    const BatchSequence& s = batch.sequences[i];
    const Plan& p = plan[i];
    if (p.labels) {
      const int64_t room = std::max<int64_t>(
          s.start_position + s.num_rows,
          static_cast<int64_t>(pool.BlockTable(s.kv).size()) * pool.options().block_tokens);
      RETURN_IF_ERROR(
          labels_.Reserve(s.kv, LabelFormat{p.options->channels, p.options->label_bits}, room));
      stores_labels_ = true;
    }
    if (!count_stats) continue;
    SequenceAttentionStats& st = stats_[s.kv];
    st.last_mode = AttentionMode::kDense;
    // Dense rows are accounted here; sparse rows when AttendHost selects.
    int64_t attended = 0;  // Σ over rows of context
    for (int64_t r = 0; r < s.num_rows; ++r) attended += s.start_position + r + 1;
    for (int l = 0; l < layers_; ++l) {
      if (p.sparse[l]) {
        st.last_mode = AttentionMode::kDoubleSparse;
        continue;
      }
      st.dense_rows += s.num_rows;
      st.tokens_attended += attended * heads_kv_;
      st.tokens_context += attended * heads_kv_;
    }
  }
  plan_ = std::move(plan);
  return absl::OkStatus();
}

bool DoubleSparsity::AnySparse(int layer) const {
  for (const Plan& p : plan_) {
    if (p.sparse[layer]) return true;
  }
  return false;
}

namespace {

// The indices of `plan` whose sparse[layer] is `sparse`.
template <typename Plan>
std::vector<size_t> SequencesWhere(const std::vector<Plan>& plan, int layer, bool sparse) {
  std::vector<size_t> out;
  for (size_t j = 0; j < plan.size(); ++j) {
    if (plan[j].sparse[layer] == sparse) out.push_back(j);
  }
  return out;
}

}  // namespace

std::vector<size_t> DoubleSparsity::SparseSequences(int layer) const {
  return SequencesWhere(plan_, layer, true);
}

std::vector<size_t> DoubleSparsity::DenseSequences(int layer) const {
  return SequencesWhere(plan_, layer, false);
}

bool DoubleSparsity::IsSparse(size_t index, int layer) const {
  return index < plan_.size() && plan_[index].sparse[layer];
}

absl::Status DoubleSparsity::StoreLabelsHost(int layer, const ForwardBatch& batch,
                                             const float* qkv, int64_t qkv_stride) {
  if (!labels_.host_storage()) {
    return absl::InternalError("StoreLabelsHost: the labels are kept by the backend, not here");
  }
  const int64_t q_cols = static_cast<int64_t>(heads_q_) * head_dim_;
  for (size_t i = 0; i < plan_.size() && i < batch.sequences.size(); ++i) {
    const Plan& p = plan_[i];
    if (!p.labels) continue;
    const BatchSequence& s = batch.sequences[i];
    const int r = p.options->channels;
    if (s.start_position + s.num_rows > labels_.capacity(s.kv)) {
      return absl::InternalError("label cache: no room reserved for the step's rows");
    }
    const float* k = qkv + s.first_row * qkv_stride + q_cols;
    const int32_t* channels = (*p.channels)[layer].data();
    LabelCache::Layer& lab = labels_.layer(s.kv, layer);
    if (p.options->label_bits == 4) {
      const int64_t row_bytes = Label4BitRowBytes(r);
      const int64_t slot = s.start_position * heads_kv_;
      WriteLabels4BitReference(k, qkv_stride, s.num_rows, heads_kv_, head_dim_, channels, r,
                               lab.codes.data() + slot * row_bytes, heads_kv_ * row_bytes,
                               lab.scales.data() + slot, lab.minimums.data() + slot);
    } else {
      WriteLabelsF16Reference(k, qkv_stride, s.num_rows, heads_kv_, head_dim_, channels, r,
                              lab.f16.data() + s.start_position * heads_kv_ * r,
                              static_cast<int64_t>(heads_kv_) * r);
    }
  }
  return absl::OkStatus();
}

absl::Status DoubleSparsity::SelectHost(int layer, const ForwardBatch& batch, size_t index,
                                        const float* q, bool current_label_written,
                                        std::vector<std::vector<int32_t>>& selection) {
  if (!IsSparse(index, layer)) return absl::InternalError("SelectHost on a dense row");
  if (!labels_.host_storage()) {
    return absl::InternalError("SelectHost: the labels are kept by the backend, not here");
  }
  const Plan& p = plan_[index];
  const AttentionOptions& o = *p.options;
  const BatchSequence& s = batch.sequences[index];
  const int64_t tokens = static_cast<int64_t>(batch.positions[s.first_row]) + 1;
  // Without the current token's label only the past is scored; the current token is kept
  // by the selection whatever its score, so its slot just gets a defined value.
  const int64_t scored = current_label_written ? tokens : tokens - 1;
  const int r = o.channels;
  scores_.assign(static_cast<size_t>(heads_kv_) * tokens, 0.0f);
  scratch_.resize(tokens);
  LabelScoreShape shape{heads_q_, heads_kv_, head_dim_, r,
                        o.aggregation == GroupAggregation::kMax ? ScoreAggregation::kMax
                                                                : ScoreAggregation::kSum};
  const int32_t* channels = (*p.channels)[layer].data();
  const LabelCache::Layer& lab = labels_.layer(s.kv, layer);
  if (o.label_bits == 4) {
    LabelScores4BitReference(q, channels, lab.codes.data(), heads_kv_ * Label4BitRowBytes(r),
                             lab.scales.data(), lab.minimums.data(), scored, shape,
                             scores_.data(), tokens);
  } else {
    LabelScoresF16Reference(q, channels, lab.f16.data(), static_cast<int64_t>(heads_kv_) * r,
                            scored, shape, scores_.data(), tokens);
  }
  const int64_t k = o.BudgetFor(tokens);
  selection.resize(heads_kv_);
  for (int h = 0; h < heads_kv_; ++h) {
    std::vector<int32_t>& sel = selection[h];
    sel.resize(std::min(k, tokens));
    const int64_t n = TopKSelectReference(scores_.data() + h * tokens, tokens, k, o.sink,
                                          o.recent, scratch_.data(), sel.data());
    sel.resize(n);
  }
  return absl::OkStatus();
}

absl::Status DoubleSparsity::AttendHost(int layer, const ForwardBatch& batch, size_t index,
                                        const PagedKvView<const float>& kv, const float* qkv,
                                        int64_t qkv_stride, float* out) {
  const float* q = qkv + batch.sequences[index].first_row * qkv_stride;
  // Selecting straight into last_selection_ reuses its storage: no allocation once warm.
  RETURN_IF_ERROR(
      SelectHost(layer, batch, index, q, /*current_label_written=*/true, last_selection_));
  std::vector<const int32_t*> indices(heads_kv_);
  std::vector<int64_t> counts(heads_kv_);
  for (int h = 0; h < heads_kv_; ++h) {
    indices[h] = last_selection_[h].data();
    counts[h] = static_cast<int64_t>(last_selection_[h].size());
  }
  const AttentionShape ashape{heads_q_, heads_kv_, head_dim_,
                              1.0f / std::sqrt(static_cast<float>(head_dim_))};
  SelectedAttentionReference(q, kv, ashape, indices.data(), counts.data(), out);
  return CountAndMeasure(layer, batch, index, kv, q);
}

absl::Status DoubleSparsity::AttendGatheredHost(int layer, const ForwardBatch& batch,
                                                size_t index,
                                                const std::vector<std::vector<int32_t>>& selection,
                                                const PagedKvView<const float>& gathered,
                                                const PagedKvView<const float>& pool,
                                                const float* q, float* out) {
  if (!IsSparse(index, layer)) return absl::InternalError("AttendGatheredHost on a dense row");
  if (static_cast<int>(selection.size()) != heads_kv_) {
    return absl::InternalError("AttendGatheredHost: selection has the wrong head count");
  }
  // The gathered rows are already in selection order, so attention reads rows 0..n-1: the
  // same rows in the same order as AttendHost reads from the pool, hence the same result.
  size_t longest = 0;
  for (const auto& sel : selection) longest = std::max(longest, sel.size());
  if (identity_.size() < longest) {
    identity_.resize(longest);
    std::iota(identity_.begin(), identity_.end(), 0);
  }
  std::vector<const int32_t*> indices(heads_kv_, identity_.data());
  std::vector<int64_t> counts(heads_kv_);
  for (int h = 0; h < heads_kv_; ++h) counts[h] = static_cast<int64_t>(selection[h].size());
  const AttentionShape ashape{heads_q_, heads_kv_, head_dim_,
                              1.0f / std::sqrt(static_cast<float>(head_dim_))};
  SelectedAttentionReference(q, gathered, ashape, indices.data(), counts.data(), out);
  last_selection_ = selection;
  return CountAndMeasure(layer, batch, index, pool, q);
}

void DoubleSparsity::CountDeviceRow(const ForwardBatch& batch, size_t index) {
  const BatchSequence& s = batch.sequences[index];
  const AttentionOptions& o = s.attention != nullptr ? *s.attention : defaults_;
  const int64_t tokens = static_cast<int64_t>(batch.positions[s.first_row]) + 1;
  SequenceAttentionStats& st = stats_[s.kv];
  st.tokens_attended += o.BudgetFor(tokens) * heads_kv_;
  st.tokens_context += tokens * heads_kv_;
  st.sparse_rows += 1;
}

absl::Status DoubleSparsity::CountAndMeasure(int layer, const ForwardBatch& batch, size_t index,
                                             const PagedKvView<const float>& kv,
                                             const float* q) {
  const BatchSequence& s = batch.sequences[index];
  const int64_t tokens = static_cast<int64_t>(batch.positions[s.first_row]) + 1;
  SequenceAttentionStats& st = stats_[s.kv];
  for (int h = 0; h < heads_kv_; ++h) {
    st.tokens_attended += static_cast<int64_t>(last_selection_[h].size());
    st.tokens_context += tokens;
  }
  st.sparse_rows += 1;
  if (measure_recall_) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim_));
    const int group = heads_q_ / heads_kv_;
    std::vector<double> logits(tokens);
    for (int hq = 0; hq < heads_q_; ++hq) {
      const int h = hq / group;
      const float* qh = q + static_cast<int64_t>(hq) * head_dim_;
      double top = -INFINITY;
      for (int64_t t = 0; t < tokens; ++t) {
        const float* kr = kv.KRow(t, h);
        double dot = 0.0;
        for (int c = 0; c < head_dim_; ++c) dot += static_cast<double>(qh[c]) * kr[c];
        logits[t] = dot * scale;
        top = std::max(top, logits[t]);
      }
      double total = 0.0;
      for (int64_t t = 0; t < tokens; ++t) total += std::exp(logits[t] - top);
      double kept = 0.0;
      for (int32_t t : last_selection_[h]) kept += std::exp(logits[t] - top);
      recall_sum_[layer] += kept / total;
      recall_count_[layer] += 1;
    }
  }
  return absl::OkStatus();
}

int64_t DoubleSparsity::FetchRows(size_t index, const ForwardBatch& batch,
                                  int resident_layers) const {
  if (index >= plan_.size()) return 0;
  const BatchSequence& s = batch.sequences[index];
  if (s.num_rows != 1) return 0;
  const int64_t context = s.start_position + 1;
  const Plan& p = plan_[index];
  bool any_sparse = false;
  for (int l = 0; l < layers_; ++l) {
    if (p.sparse[l]) {
      any_sparse = true;
    } else if (l >= resident_layers) {
      return context;  // a streamed dense layer fetches every past row
    }
  }
  return any_sparse ? std::min(context, p.options->BudgetFor(context)) : 0;
}

int64_t DoubleSparsity::SparseFetchRows(size_t index, const ForwardBatch& batch) const {
  if (index >= plan_.size()) return 0;
  const BatchSequence& s = batch.sequences[index];
  if (s.num_rows != 1) return 0;
  const Plan& p = plan_[index];
  if (std::none_of(p.sparse.begin(), p.sparse.end(), [](bool b) { return b; })) return 0;
  const int64_t context = s.start_position + 1;
  return std::min(context, p.options->BudgetFor(context));
}

bool DoubleSparsity::IsKept(size_t index, const ForwardBatch& batch, int32_t token) const {
  const AttentionOptions& o = *plan_[index].options;
  const int64_t tokens =
      static_cast<int64_t>(batch.positions[batch.sequences[index].first_row]) + 1;
  return token < o.sink || token >= tokens - std::max(o.recent, 1);
}

void DoubleSparsity::AddFetch(KvBlockPool::SequenceId seq, const FetchCounters& counts) {
  stats_[seq].fetch.Add(counts);
}

void DoubleSparsity::AddPrediction(int layer, KvBlockPool::SequenceId seq, int64_t overlap,
                                   int64_t exact) {
  SequenceAttentionStats& st = stats_[seq];
  st.prediction_overlap += overlap;
  st.prediction_exact += exact;
  prediction_overlap_[layer] += overlap;
  prediction_exact_[layer] += exact;
}

void DoubleSparsity::ResetPrediction() {
  std::fill(prediction_overlap_.begin(), prediction_overlap_.end(), 0);
  std::fill(prediction_exact_.begin(), prediction_exact_.end(), 0);
}

const SequenceAttentionStats* DoubleSparsity::Stats(KvBlockPool::SequenceId seq) const {
  auto it = stats_.find(seq);
  return it == stats_.end() ? nullptr : &it->second;
}

void DoubleSparsity::ResetRecall() {
  std::fill(recall_sum_.begin(), recall_sum_.end(), 0.0);
  std::fill(recall_count_.begin(), recall_count_.end(), 0);
}

}  // namespace dsinfer
