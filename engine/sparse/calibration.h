// Offline channel calibration of Double Sparsity (DESIGN §1): runs the model (dense, prefill
// only) over calibration tokens in blocks and accumulates, per layer, head and channel, the
// reference's statistics — q: mean |q| pre-RoPE per query head; k: mean |k| pre-RoPE per KV
// head; qk: mean |q ⊙ k| post-RoPE per query head, q and k of the same token (k of the
// head's KV group). Unlike the reference, which keeps only the last block's qk, every block
// counts. The result is a ChannelConfig: orderings by descending statistic (ties to the lower
// channel), with the statistic values and provenance under "dsinfer.metadata".
//
// It reads activations through Model's ForwardObserver, so it runs on any backend.
//
// CalibratePrediction measures the offload tier's cross-layer prediction (docs/offload.md)
// per layer on calibration text and chooses the layers where it is poor: they select with
// their own query instead (OffloadOptions::own_query_extra). Each window is prefilled (one
// dense step that writes labels) and then fed one token per step as decode rows, the rows
// Double Sparsity and prediction apply to; recall per layer is Σ|predicted ∩ exact| / Σ|exact|
// over the tokens the budget leaves free (DoubleSparsity::prediction_overlap / _exact).
#ifndef DSINFER_ENGINE_SPARSE_CALIBRATION_H_
#define DSINFER_ENGINE_SPARSE_CALIBRATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/attention_options.h"
#include "engine/model.h"
#include "engine/sparse/channel_config.h"

namespace dsinfer {

struct CalibrationOptions {
  int64_t block = 512;     // tokens per calibration sequence
  int64_t max_blocks = 0;  // 0 = every full block of the data (a short tail block counts too)
  std::vector<ChannelStatistic> statistics = {ChannelStatistic::kQK, ChannelStatistic::kQ,
                                              ChannelStatistic::kK};
  std::string model_name;   // recorded in the metadata
  std::string data_source;  // recorded in the metadata

  absl::Status Validate() const;
};

// INVALID_ARGUMENT for bad options or no tokens; errors of the forward pass as they come.
// The model's KV pool is left as it was (each block's sequence is released).
absl::StatusOr<ChannelConfig> Calibrate(Model& model, const std::vector<int32_t>& ids,
                                        const CalibrationOptions& options);

struct PredictionCalibrationOptions {
  // Double Sparsity settings of the measurement. recent is small (8, not the engine's 64)
  // so that at a 1K-token calibration context (budget 64) most of the budget is chosen by
  // selection, which is what is measured; dense_layers 0 measures every layer from
  // OffloadOptions::own_query_layers on.
  double budget_ratio = 1.0 / 16;
  int channels = 16;
  ChannelStatistic statistic = ChannelStatistic::kQK;
  int label_bits = 16;
  int sink = 4;
  int recent = 8;
  int dense_layers = 0;
  int64_t prefill = 1024;  // dense prefix of each window
  int64_t steps = 64;      // decode rows per window after it
  // Which layers are exempted (use their own query):
  //   kMean (default): the fewest, weakest first, so that the mean recall of the layers
  //     still predicted is >= threshold — the bar read as a mean; removing the
  //     weakest first keeps the most layers predicted, and a layer a hair under the
  //     threshold is not exempted on calibration noise;
  //   kEachLayer: every layer whose own recall is below the threshold.
  enum class Rule { kMean, kEachLayer };
  Rule rule = Rule::kMean;
  double threshold = 0.9;
  std::string data_source;  // recorded under "measured"

  absl::Status Validate() const;
  AttentionOptions Attention() const;  // the double_sparse options of the decode rows
};

// The layers `rule` exempts given per-layer recall (< 0 = not predicted, never exempted),
// ascending.
std::vector<int> ChooseOwnQueryLayers(const std::vector<double>& recall, double threshold,
                                      PredictionCalibrationOptions::Rule rule);

// Windows shorter than prefill + steps decode what they have past the prefix.
// FAILED_PRECONDITION unless `model` runs kv mode offload with prediction and
// measure_prediction_recall on and no own_query_extra (load it with
// use_calibrated_own_query = false), or when no predicted layer had a free token to measure
// (budget too small for sink + recent); INVALID_ARGUMENT for bad options, no windows, or a
// window not longer than the prefix or over the model's context. The KV pool is left as it
// was. The channels are the model's channel config (DoubleSparsity::SetChannelConfig).
absl::StatusOr<PredictionCalibration> CalibratePrediction(
    Model& model, const std::vector<std::vector<int32_t>>& windows,
    const PredictionCalibrationOptions& options);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_CALIBRATION_H_
