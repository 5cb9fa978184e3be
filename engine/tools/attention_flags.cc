#include "engine/tools/attention_flags.h"

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(int32_t, sink, 4, "first tokens always attended");
ABSL_FLAG(int32_t, recent, 64, "last tokens always attended");
ABSL_FLAG(int32_t, dense_layers, 2, "first layers always dense");
ABSL_FLAG(int64_t, dense_below, 4096, "auto stays dense below this context length");

namespace dsinfer {

absl::Status SetAttentionOptionsFromFlags(AttentionOptions& attention) {
  absl::StatusOr<AttentionMode> mode = ParseAttentionMode(absl::GetFlag(FLAGS_attention_mode));
  if (!mode.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--attention-mode: ", mode.status().message()));
  }
  attention.mode = *mode;
  absl::StatusOr<ChannelStatistic> statistic =
      ParseChannelStatistic(absl::GetFlag(FLAGS_channel_statistic));
  if (!statistic.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--channel-statistic: ", statistic.status().message()));
  }
  attention.statistic = *statistic;
  attention.token_budget = absl::GetFlag(FLAGS_token_budget);
  attention.token_budget_ratio = absl::GetFlag(FLAGS_token_budget_ratio);
  attention.channels = absl::GetFlag(FLAGS_channels);
  attention.label_bits = absl::GetFlag(FLAGS_label_bits);
  attention.sink = absl::GetFlag(FLAGS_sink);
  attention.recent = absl::GetFlag(FLAGS_recent);
  attention.dense_layers = absl::GetFlag(FLAGS_dense_layers);
  attention.dense_below = absl::GetFlag(FLAGS_dense_below);
  return absl::OkStatus();
}

}  // namespace dsinfer
