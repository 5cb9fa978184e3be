// One place that turns a device name into a Backend, so dsinfer-run, dsinfer-server and the
// tests agree on what "cpu" and "cuda" mean. The CUDA backend exists only in builds where nvcc
// was found: this file compiles either way, and the factory library gets the compile
// definition DSINFER_WITH_CUDA_BACKEND from engine/cuda/CMakeLists.txt when it does.
#ifndef DSINFER_ENGINE_BACKEND_FACTORY_H_
#define DSINFER_ENGINE_BACKEND_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "engine/backend.h"
#include "kernels/dtype.h"

namespace dsinfer {

struct BackendFactoryOptions {
  DType cuda_dtype = DType::kBF16;  // activations, weights and KV on the GPU: bf16 or f16
  bool cuda_graphs = false;         // capture/replay decode steps as CUDA graphs
};

// Whether this binary was built with the CUDA backend.
bool CudaBackendBuilt();

// device: "cpu", "cuda" (GPU 0) or "cuda:N". INVALID_ARGUMENT for an unknown name;
// UNAVAILABLE when CUDA was not built into this binary or no GPU is present. Nothing is left
// allocated on failure.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    absl::string_view device, const BackendFactoryOptions& options = BackendFactoryOptions());

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_BACKEND_FACTORY_H_
