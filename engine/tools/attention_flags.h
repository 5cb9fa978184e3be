// The attention flags that dsinfer-run and dsinfer-server share, and the one place that turns
// them into AttentionOptions, so an offline run and a served request given the same values
// get the same options and the same error messages.
//
// --sink, --recent, --dense-layers and --dense-below read the same in both binaries and are
// defined in attention_flags.cc. --attention-mode, --token-budget, --token-budget-ratio,
// --channels, --label-bits and --channel-statistic are declared here but defined by each
// binary's main file, because their help texts differ (the server's are the defaults of
// per-request options). Each flag is mirrored by DSINFER_<NAME> (engine/tools/cli_flags.h).
#ifndef DSINFER_ENGINE_TOOLS_ATTENTION_FLAGS_H_
#define DSINFER_ENGINE_TOOLS_ATTENTION_FLAGS_H_

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "engine/attention_options.h"

ABSL_DECLARE_FLAG(std::string, attention_mode);
ABSL_DECLARE_FLAG(int64_t, token_budget);
ABSL_DECLARE_FLAG(double, token_budget_ratio);
ABSL_DECLARE_FLAG(int32_t, channels);
ABSL_DECLARE_FLAG(int32_t, label_bits);
ABSL_DECLARE_FLAG(std::string, channel_statistic);
ABSL_DECLARE_FLAG(int32_t, sink);
ABSL_DECLARE_FLAG(int32_t, recent);
ABSL_DECLARE_FLAG(int32_t, dense_layers);
ABSL_DECLARE_FLAG(int64_t, dense_below);

namespace dsinfer {

// Sets `attention`'s mode, statistic, token budget (and ratio), channels, label bits, sink,
// recent, dense layers and dense-below from the flags above; other fields are left alone.
// Call after ParseFlagsWithEnvironment. Returns InvalidArgument naming the flag
// ("--attention-mode: ...", "--channel-statistic: ...") when a name does not parse, leaving
// `attention` partly set. Does not call attention.Validate().
absl::Status SetAttentionOptionsFromFlags(AttentionOptions& attention);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOOLS_ATTENTION_FLAGS_H_
