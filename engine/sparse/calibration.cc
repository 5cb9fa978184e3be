// Sums are kept in double per (kind, layer, head, channel) and divided by the token count at
// the end, so block boundaries do not weigh tokens unequally. Prediction recall is pooled
// over every window's decode rows (counts, not per-window means), for the same reason.
#include "engine/sparse/calibration.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

namespace dsinfer {

absl::Status CalibrationOptions::Validate() const {
  if (block < 1) return absl::InvalidArgumentError(absl::StrCat("block must be >= 1, got ", block));
  if (max_blocks < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_blocks must be >= 0, got ", max_blocks));
  }
  if (statistics.empty()) return absl::InvalidArgumentError("no channel statistic requested");
  return absl::OkStatus();
}

namespace {

class StatisticObserver final : public ForwardObserver {
 public:
  explicit StatisticObserver(const ModelConfig& c)
      : layers_(c.num_layers), hq_(c.num_heads_q), hkv_(c.num_heads_kv), d_(c.head_dim) {
    for (int kind = 0; kind < 3; ++kind) {
      const int heads = kind == static_cast<int>(ChannelStatistic::kK) ? hkv_ : hq_;
      sums_[kind].assign(static_cast<size_t>(layers_) * heads * d_, 0.0);
    }
  }

  void OnLayerQkv(int layer, const ForwardBatch& batch, const float* pre,
                  const float* post) override {
    const int64_t cols = static_cast<int64_t>(hq_ + 2 * hkv_) * d_;
    const int group = hq_ / hkv_;
    double* q_sum = Sums(ChannelStatistic::kQ, layer, hq_);
    double* k_sum = Sums(ChannelStatistic::kK, layer, hkv_);
    double* qk_sum = Sums(ChannelStatistic::kQK, layer, hq_);
    for (int64_t row = 0; row < batch.rows(); ++row) {
      const float* p = pre + row * cols;
      const float* r = post + row * cols;
      for (int64_t i = 0; i < static_cast<int64_t>(hq_) * d_; ++i) q_sum[i] += std::abs(p[i]);
      const int64_t k_off = static_cast<int64_t>(hq_) * d_;
      for (int64_t i = 0; i < static_cast<int64_t>(hkv_) * d_; ++i) {
        k_sum[i] += std::abs(p[k_off + i]);
      }
      for (int h = 0; h < hq_; ++h) {
        const float* q = r + static_cast<int64_t>(h) * d_;
        const float* k = r + k_off + static_cast<int64_t>(h / group) * d_;
        for (int c = 0; c < d_; ++c) {
          qk_sum[static_cast<int64_t>(h) * d_ + c] += std::abs(static_cast<double>(q[c]) * k[c]);
        }
      }
    }
    if (layer == 0) tokens_ += batch.rows();
  }

  // Per kind: [layer][head][channel] means.
  std::vector<std::vector<std::vector<double>>> Means(ChannelStatistic kind) const {
    const int heads = kind == ChannelStatistic::kK ? hkv_ : hq_;
    std::vector<std::vector<std::vector<double>>> out(layers_);
    const std::vector<double>& s = sums_[static_cast<int>(kind)];
    for (int l = 0; l < layers_; ++l) {
      out[l].resize(heads);
      for (int h = 0; h < heads; ++h) {
        out[l][h].resize(d_);
        for (int c = 0; c < d_; ++c) {
          out[l][h][c] = s[(static_cast<size_t>(l) * heads + h) * d_ + c] / std::max<int64_t>(tokens_, 1);
        }
      }
    }
    return out;
  }
  int64_t tokens() const { return tokens_; }

 private:
  double* Sums(ChannelStatistic kind, int layer, int heads) {
    return sums_[static_cast<int>(kind)].data() + static_cast<size_t>(layer) * heads * d_;
  }

  int layers_, hq_, hkv_, d_;
  std::vector<double> sums_[3];
  int64_t tokens_ = 0;
};

}  // namespace

absl::StatusOr<ChannelConfig> Calibrate(Model& model, const std::vector<int32_t>& ids,
                                        const CalibrationOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  if (ids.empty()) return absl::InvalidArgumentError("no calibration tokens");
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t block = std::min(options.block, model.max_context());
  int64_t blocks = (n + block - 1) / block;
  if (options.max_blocks > 0) blocks = std::min(blocks, options.max_blocks);
  StatisticObserver observer(model.config());
  model.set_observer(&observer);
  absl::Cleanup stop = [&] { model.set_observer(nullptr); };
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  std::vector<float> logits;
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * block;
    const int64_t count = std::min(block, n - begin);
    KvBlockPool& pool = model.kv_pool();
    const KvBlockPool::SequenceId seq = pool.AddSequence();
    absl::Cleanup release = [&] { model.ReleaseSequence(seq); };
    RETURN_IF_ERROR(pool.Reserve(seq, count));
    ForwardBatch batch;
    batch.Add(seq, ids.data() + begin, count, 0, false);
    batch.sequences.back().attention = &dense;
    RETURN_IF_ERROR(model.Forward(batch, logits));
  }
  ChannelConfig config;
  nlohmann::json values = nlohmann::json::object();
  for (ChannelStatistic kind : options.statistics) {
    const auto means = observer.Means(kind);
    auto& orderings = config.Mutable(kind);
    orderings.resize(means.size());
    for (size_t l = 0; l < means.size(); ++l) {
      for (const std::vector<double>& head : means[l]) {
        std::vector<int32_t> order(head.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return head[a] > head[b]; });
        orderings[l].push_back(std::move(order));
      }
    }
    values[std::string(ChannelKindKey(kind))] = means;
  }
  config.metadata = {{"tool", "dsinfer-calibrate"},
                     {"model", options.model_name},
                     {"data", options.data_source},
                     {"tokens", observer.tokens()},
                     {"blocks", blocks},
                     {"block", block},
                     {"statistic_values", values}};
  return config;
}

absl::Status PredictionCalibrationOptions::Validate() const {
  if (!(budget_ratio > 0.0 && budget_ratio <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("budget ratio must be in (0, 1], got ", budget_ratio));
  }
  if (prefill < 1) return absl::InvalidArgumentError("prediction prefill must be >= 1");
  if (steps < 1) return absl::InvalidArgumentError("prediction steps must be >= 1");
  if (!(threshold > 0.0 && threshold <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("threshold must be in (0, 1], got ", threshold));
  }
  return Attention().Validate();
}

AttentionOptions PredictionCalibrationOptions::Attention() const {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.token_budget = 0;
  o.token_budget_ratio = budget_ratio;
  o.channels = channels;
  o.statistic = statistic;
  o.label_bits = label_bits;
  o.sink = sink;
  o.recent = recent;
  o.dense_layers = dense_layers;
  return o;
}

std::vector<int> ChooseOwnQueryLayers(const std::vector<double>& recall, double threshold,
                                      PredictionCalibrationOptions::Rule rule) {
  std::vector<int> predicted, out;
  for (size_t l = 0; l < recall.size(); ++l) {
    if (recall[l] >= 0.0) predicted.push_back(static_cast<int>(l));
  }
  if (rule == PredictionCalibrationOptions::Rule::kEachLayer) {
    for (int l : predicted) {
      if (recall[l] < threshold) out.push_back(l);
    }
    return out;
  }
  std::stable_sort(predicted.begin(), predicted.end(),
                   [&](int a, int b) { return recall[a] < recall[b]; });
  double sum = 0;
  for (int l : predicted) sum += recall[l];
  for (size_t i = 0; i < predicted.size(); ++i) {
    if (sum / static_cast<double>(predicted.size() - i) >= threshold) break;
    out.push_back(predicted[i]);
    sum -= recall[predicted[i]];
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<PredictionCalibration> CalibratePrediction(
    Model& model, const std::vector<std::vector<int32_t>>& windows,
    const PredictionCalibrationOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  const OffloadTier* tier = model.offload_tier();
  if (model.kv_mode() != KvMode::kOffload || tier == nullptr || !tier->options().predict ||
      !tier->options().measure_prediction_recall || !tier->options().own_query_extra.empty()) {
    return absl::FailedPreconditionError(
        "prediction calibration needs a model in kv mode offload with predict and "
        "measure_prediction_recall on and no own_query_extra (load it with "
        "use_calibrated_own_query = false)");
  }
  if (windows.empty()) return absl::InvalidArgumentError("no prediction calibration windows");
  const AttentionOptions attention = options.Attention();
  RETURN_IF_ERROR(attention.Validate(model.config().head_dim));
  for (const std::vector<int32_t>& w : windows) {
    const int64_t n = static_cast<int64_t>(w.size());
    if (n <= options.prefill) {
      return absl::InvalidArgumentError(absl::StrCat("a window of ", n,
                                                     " tokens is not longer than the prefix of ",
                                                     options.prefill));
    }
    if (std::min(n, options.prefill + options.steps) > model.max_context()) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.prefill + options.steps, " tokens exceed the model's context of ",
          model.max_context()));
    }
  }
  DoubleSparsity& ds = model.double_sparsity();
  ds.ResetPrediction();
  KvBlockPool& pool = model.kv_pool();
  std::vector<float> logits;
  int64_t rows = 0;
  for (const std::vector<int32_t>& w : windows) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(w.size()), options.prefill + options.steps);
    const KvBlockPool::SequenceId seq = pool.AddSequence();
    absl::Cleanup release = [&] { model.ReleaseSequence(seq); };
    RETURN_IF_ERROR(pool.Reserve(seq, n));
    ForwardBatch prefill;
    prefill.Add(seq, w.data(), options.prefill, 0, false);
    prefill.sequences.back().attention = &attention;
    RETURN_IF_ERROR(model.Forward(prefill, logits));
    for (int64_t pos = options.prefill; pos < n; ++pos) {
      ForwardBatch step;
      step.Add(seq, &w[pos], 1, pos, false);
      step.sequences.back().attention = &attention;
      RETURN_IF_ERROR(model.Forward(step, logits));
      ++rows;
    }
  }
  PredictionCalibration out;
  out.threshold = options.threshold;
  out.budget_ratio = options.budget_ratio;
  out.tokens = rows;
  bool measured_any = false;
  for (size_t l = 0; l < ds.prediction_exact().size(); ++l) {
    const int64_t exact = ds.prediction_exact()[l];
    out.recall.push_back(
        exact > 0 ? static_cast<double>(ds.prediction_overlap()[l]) / static_cast<double>(exact) : -1.0);
    measured_any = measured_any || exact > 0;
  }
  ds.ResetPrediction();
  out.own_query_extra = ChooseOwnQueryLayers(out.recall, options.threshold, options.rule);
  if (!measured_any) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no predicted layer had a free token to measure: a budget of ", options.budget_ratio,
        " of ", options.prefill, " tokens leaves nothing beyond sink ", options.sink,
        " + recent ", options.recent, " (or no layer is predicted)"));
  }
  out.measured = {
      {"tool", "dsinfer-calibrate --prediction"},
      {"rule", options.rule == PredictionCalibrationOptions::Rule::kMean
                   ? "mean of the predicted layers >= threshold"
                   : "each predicted layer >= threshold"},
      {"data", options.data_source},
      {"windows", windows.size()},
      {"prefill", options.prefill},
      {"steps", options.steps},
      {"channels", options.channels},
      {"statistic", std::string(ChannelStatisticName(options.statistic))},
      {"label_bits", options.label_bits},
      {"sink", options.sink},
      {"recent", options.recent},
      {"dense_layers", options.dense_layers},
      {"own_query_layers", tier->options().own_query_layers},
      {"prediction_input",
       tier->options().prediction_input == PredictionInput::kNextNorm ? "next-norm" : "own-norm"}};
  return out;
}

}  // namespace dsinfer
