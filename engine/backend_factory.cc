// The device name is parsed here once; the CUDA branch is compiled only with
// DSINFER_WITH_CUDA_BACKEND so that CPU-only builds link no CUDA library at all.
#include "engine/backend_factory.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/cpu_backend.h"

#ifdef DSINFER_WITH_CUDA_BACKEND
#include "engine/cuda/cuda_backend.h"
#endif

namespace dsinfer {

bool CudaBackendBuilt() {
#ifdef DSINFER_WITH_CUDA_BACKEND
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(absl::string_view device,
                                                       const BackendFactoryOptions& options) {
  if (device == "cpu") return std::unique_ptr<Backend>(std::make_unique<CpuBackend>());
  int index = 0;
  if (device == "cuda") {
    index = 0;
  } else if (absl::StartsWith(device, "cuda:") &&
             absl::SimpleAtoi(device.substr(5), &index) && index >= 0) {
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown device '", device, "' (expected cpu, cuda or cuda:N)"));
  }
#ifdef DSINFER_WITH_CUDA_BACKEND
  if (!CudaDeviceAvailable()) {
    return absl::UnavailableError(
        absl::StrCat("--device ", device, ": no CUDA GPU is visible to this process"));
  }
  CudaBackendOptions cuda;
  cuda.device = index;
  cuda.dtype = options.cuda_dtype;
  cuda.decode_graphs = options.cuda_graphs;
  auto backend = CudaBackend::Create(cuda);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(std::move(*backend));
#else
  (void)options;
  return absl::UnavailableError(absl::StrCat(
      "--device ", device, ": this binary was built without the CUDA backend (nvcc was not found "
      "at configure time); rebuild with CUDA or use --device cpu"));
#endif
}

}  // namespace dsinfer
