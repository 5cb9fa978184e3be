// Offline channel calibration of Double Sparsity (DESIGN §1): runs the model (dense, prefill
// only) over calibration tokens in blocks and accumulates, per layer, head and channel, the
// reference's statistics — q: mean |q| pre-RoPE per query head; k: mean |k| pre-RoPE per KV
// head; qk: mean |q ⊙ k| post-RoPE per query head, q and k of the same token (k of the
// head's KV group). Unlike the reference, which keeps only the last block's qk, every block
// counts. The result is a ChannelConfig: orderings by descending statistic (ties to the lower
// channel), with the statistic values and provenance under "dsinfer.metadata".
//
// It reads activations through Model's ForwardObserver, so it runs on any backend.
#ifndef DSINFER_ENGINE_SPARSE_CALIBRATION_H_
#define DSINFER_ENGINE_SPARSE_CALIBRATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
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

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SPARSE_CALIBRATION_H_
