// The offload-tier flags that dsinfer-run and dsinfer-server share (same names, help and
// defaults in both), and the one place that turns them into OffloadOptions. Each flag is
// mirrored by DSINFER_<NAME> (engine/tools/cli_flags.h).
#ifndef DSINFER_ENGINE_TOOLS_OFFLOAD_FLAGS_H_
#define DSINFER_ENGINE_TOOLS_OFFLOAD_FLAGS_H_

#include <cstdint>

#include "absl/flags/declare.h"
#include "offload/offload_tier.h"

ABSL_DECLARE_FLAG(int32_t, offload_resident_layers);
ABSL_DECLARE_FLAG(int64_t, offload_reuse_rows);
ABSL_DECLARE_FLAG(bool, offload_reuse_previous);

namespace dsinfer {

// Sets `offload`'s resident_layers, reuse_rows and reuse_previous from the flags above; other fields are left
// alone. Call after ParseFlagsWithEnvironment; ModelOptions::Validate checks the values.
void SetOffloadOptionsFromFlags(OffloadOptions& offload);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOOLS_OFFLOAD_FLAGS_H_
