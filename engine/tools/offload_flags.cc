#include "engine/tools/offload_flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(int32_t, offload_resident_layers, -1,
          "offload kv modes: the first layers whose K/V stay in GPU memory, so that their dense "
          "attention reads nothing over PCIe; -1 = 0: the GPU holds no K/V, and in kv mode "
          "offload the --dense-layers run Double Sparsity on their own query instead");
ABSL_FLAG(int64_t, offload_reuse_rows, 0,
          "offload modes: reuse-cache rows per layer and KV head on the GPU; 0 = no reuse (the "
          "default: its bookkeeping runs on the host and costs more than it saves, "
          "docs/offload.md)");
ABSL_FLAG(bool, offload_reuse_previous, false,
          "offload mode: keep each layer's fetched rows for the next step and copy the rows "
          "selected again from GPU memory instead of over PCIe (costs a kept buffer per sparse "
          "layer: layers x K,V x budget rows x KV heads; excludes --offload-reuse-rows)");

namespace dsinfer {

void SetOffloadOptionsFromFlags(OffloadOptions& offload) {
  offload.resident_layers = absl::GetFlag(FLAGS_offload_resident_layers);
  offload.reuse_rows = absl::GetFlag(FLAGS_offload_reuse_rows);
  offload.reuse_previous = absl::GetFlag(FLAGS_offload_reuse_previous);
}

}  // namespace dsinfer
