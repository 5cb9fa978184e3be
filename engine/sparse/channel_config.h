// Channel configs of Double Sparsity (DESIGN §1): which head channels carry q·k, found
// offline by calibration. The file format is the reference implementation's, read as is:
//   {"model.layers.{i}.self_attn.{q|k|qk}_proj": [[channel indices, most important first]
//                                                 per head], ...}
// A file may hold only some kinds; keys of other projections (o_proj, v_proj, mlp.*) that
// the reference also writes are ignored. dsinfer adds two optional keys, which the reference
// would ignore too (it looks its keys up by name): "dsinfer.metadata" (statistic values,
// model, data source) and "dsinfer.prediction" (PredictionCalibration below).
//
// Orderings are per query head for q and qk, per KV head for k. The engine needs one
// channel set per KV head (its GQA group shares labels), chosen by KvHeadChannels's rule:
// reciprocal-rank fusion over the group's query heads (see there). With one query head per
// KV head the rule returns that head's ordering unchanged.
#ifndef DSINFER_ENGINE_SPARSE_CHANNEL_CONFIG_H_
#define DSINFER_ENGINE_SPARSE_CHANNEL_CONFIG_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/attention_options.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

// "qk_proj", "q_proj", "k_proj".
absl::string_view ChannelKindKey(ChannelStatistic kind);

// How well cross-layer prediction of the offload tier (docs/offload.md) recovered the exact
// selection on the calibration text, per layer, and the layers where it was poor: written by
// dsinfer-calibrate (--prediction), key "dsinfer.prediction". In kv mode offload the Model
// makes `own_query_extra` the tier's OffloadOptions::own_query_extra unless the caller names
// its own (OffloadOptions::use_calibrated_own_query). JSON:
//   {"prediction_recall": [per layer: recall, or null where the layer used its own query],
//    "own_query_extra": [layers the rule exempted], "threshold": 0.9,
//    "budget_ratio": 0.0625, "tokens": decode rows measured, "measured": {how: settings, data}}
struct PredictionCalibration {
  std::vector<double> recall;        // [layers]; < 0 = not predicted (JSON null)
  std::vector<int> own_query_extra;  // ascending
  double threshold = 0.9;
  double budget_ratio = 1.0 / 16;
  int64_t tokens = 0;
  nlohmann::json measured;  // settings and data source, kept as written

  bool operator==(const PredictionCalibration& o) const {
    return recall == o.recall && own_query_extra == o.own_query_extra &&
           threshold == o.threshold && budget_ratio == o.budget_ratio && tokens == o.tokens &&
           measured == o.measured;
  }
};

nlohmann::json PredictionCalibrationToJson(const PredictionCalibration& p);
// INVALID_ARGUMENT naming the field for a malformed value (negative or duplicate layers,
// recall outside [0, 1], a threshold outside (0, 1]).
absl::StatusOr<PredictionCalibration> PredictionCalibrationFromJson(const nlohmann::json& j,
                                                                    absl::string_view source);

struct ChannelConfig {
  // [kind][layer][head] = channel ordering, most important first. An empty outer vector
  // means the file lacks that kind. Indexed by static_cast<int>(ChannelStatistic).
  std::array<std::vector<std::vector<std::vector<int32_t>>>, 3> orderings;
  nlohmann::json metadata;  // "dsinfer.metadata" if present, else null
  std::optional<PredictionCalibration> prediction;  // "dsinfer.prediction" if present

  bool Has(ChannelStatistic kind) const { return !Get(kind).empty(); }
  const std::vector<std::vector<std::vector<int32_t>>>& Get(ChannelStatistic kind) const {
    return orderings[static_cast<int>(kind)];
  }
  std::vector<std::vector<std::vector<int32_t>>>& Mutable(ChannelStatistic kind) {
    return orderings[static_cast<int>(kind)];
  }
};

// Parses the reference format. INVALID_ARGUMENT naming the key (and head) for: bad JSON, a
// layer key that is not model.layers.{i}, a non-list value, a negative or duplicate channel
// index, an empty ordering, a gap in the layer numbers, a malformed "dsinfer.prediction".
// `source` names the file in errors.
absl::StatusOr<ChannelConfig> ParseChannelConfig(absl::string_view text,
                                                 absl::string_view source = "channel config");
absl::StatusOr<ChannelConfig> LoadChannelConfig(const std::string& path);

// Checks every kind present against a model: `layers` layers, heads_q orderings per layer
// for q/qk and heads_kv for k, indices < head_dim; the prediction calibration's recall has
// one entry per layer and its layers are < layers. INVALID_ARGUMENT naming the entry.
absl::Status ValidateChannelConfig(const ChannelConfig& config, int layers, int heads_q,
                                   int heads_kv, int head_dim);

// The reference format (plus dsinfer.metadata and dsinfer.prediction when set), one key per
// layer and kind.
std::string ChannelConfigToJson(const ChannelConfig& config);
absl::Status WriteChannelConfig(const ChannelConfig& config, const std::string& path);
// `text` (a channel config file) with its "dsinfer.prediction" set to `prediction` and every
// other key exactly as it was: the channel lists of a committed file stay what they were
// measured with. INVALID_ARGUMENT when `text` is not a channel config.
absl::StatusOr<std::string> SetPredictionCalibration(absl::string_view text,
                                                     const PredictionCalibration& prediction);

// The r label channels of every KV head of `layer` for `kind`: [heads_kv, r], each head's
// channels in descending importance. For k (per-KV-head orderings) the first r of the
// ordering. For q and qk (per query head) reciprocal-rank fusion over the group of
// G = heads_q / heads_kv query heads: channel c scores Σ_g 1 / (1 + rank_g(c)), rank 0 the
// most important, channels missing from an ordering add 0; the r best, ties to the lower
// channel index. Fusion by rank rather than by statistic value because the reference files
// carry only orderings, and it keeps any head's top channels near the top of the group.
// INVALID_ARGUMENT if the kind is missing (naming the kinds present) or r exceeds an
// ordering's length. The config must have been validated against the model.
absl::StatusOr<std::vector<int32_t>> KvHeadChannels(const ChannelConfig& config,
                                                    ChannelStatistic kind, int layer, int heads_q,
                                                    int heads_kv, int r);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_CHANNEL_CONFIG_H_
