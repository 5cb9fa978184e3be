// Sums are kept in double per (kind, layer, head, channel) and divided by the token count at
// the end, so block boundaries do not weigh tokens unequally.
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

}  // namespace dsinfer
