// Double Sparsity configurations of dsinfer-bench (bench_ds_options.h).
#include "engine/cuda/bench/bench_ds_options.h"

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/attention_options.h"
#include "engine/model_config.h"
#include "engine/sparse/label_cache.h"
#include "kernels/status.h"

namespace dsinfer {

absl::StatusOr<AttentionOptions> DsOptions(const ModelConfig& c, const DsBenchOptions& ds,
                                           int label_bits) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  const int ratio = ds.ratio;
  o.label_bits = label_bits > 0 ? label_bits : ds.label_bits;
  if (ratio < 1) return absl::InvalidArgumentError("--ds_ratio must be >= 1");
  o.channels = (o.label_bits == 4 ? 4 : 1) * c.head_dim / ratio;
  o.token_budget_ratio = 1.0 / ratio;
  o.token_budget = 0;
  o.sink = 4;
  o.recent = 64;
  o.dense_layers = ds.dense_layers;
  RETURN_IF_ERROR(o.Validate(c.head_dim));
  return o;
}

int64_t LabelRowBytes(const AttentionOptions& o) {
  return LabelFormat{o.channels, o.label_bits}.RowBytes();
}

int OtherLabelBits(const DsBenchOptions& ds) { return ds.label_bits == 16 ? 4 : 16; }

}  // namespace dsinfer
