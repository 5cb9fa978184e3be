// What the offload_gpu_test files share (one binary): the random token lists the gather twins
// and the gather kernels are fed, and the CUDA engines the engine tests compare — a gpu-mode
// engine beside an offload-mode one of the same golden model, each on its own backend — with the
// Double Sparsity options and the logit bound they run under.
#ifndef DSINFER_TESTS_GPU_OFFLOAD_GPU_HARNESS_H_
#define DSINFER_TESTS_GPU_OFFLOAD_GPU_HARNESS_H_

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"

namespace dsinfer {

// Random ascending distinct tokens of [0, context), `n` of them.
std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int32_t context, int n);

inline constexpr double kTolerance = 2e-2;  // of max|logit|, as the CUDA golden tests

// A model of `dir` on `backend` in kv mode `mode`; null on failure (reported through EXPECT).
std::unique_ptr<Model> LoadCuda(const std::string& dir, CudaBackend& backend, KvMode mode,
                                const OffloadOptions& offload = {});

// A gpu-mode engine and an engine of the same model in `mode` (an offload mode), each on its
// own backend. Backends are declared first so that they outlive their models.
struct GpuAndOffload {
  std::unique_ptr<CudaBackend> gpu_backend, off_backend;
  std::unique_ptr<Model> gpu, off;
};

// Models left null on failure (reported through EXPECT).
GpuAndOffload LoadGpuAndOffload(const std::string& dir, KvMode mode,
                                const OffloadOptions& offload = {});

// The Double Sparsity options the engine tests start from; each sets what it varies on a copy.
AttentionOptions SparseOptions(int channels);

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GPU_OFFLOAD_GPU_HARNESS_H_
