// The helpers the offload_gpu_test files share (offload_gpu_harness.h).
#include "tests/gpu/offload_gpu_harness.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/model.h"
#include "gtest/gtest.h"

namespace dsinfer {

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int32_t context, int n) {
  std::vector<int32_t> all(context);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(std::min<int>(n, context));
  std::sort(all.begin(), all.end());
  return all;
}

std::unique_ptr<Model> LoadCuda(const std::string& dir, CudaBackend& backend, KvMode mode,
                                const OffloadOptions& offload) {
  ModelOptions options;
  options.kv_mode = mode;
  options.offload = offload;
  options.kv_pool_tokens = 1024;
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

GpuAndOffload LoadGpuAndOffload(const std::string& dir, KvMode mode,
                                const OffloadOptions& offload) {
  GpuAndOffload e;
  auto gb = CudaBackend::Create(CudaBackendOptions{});
  auto ob = CudaBackend::Create(CudaBackendOptions{});
  EXPECT_TRUE(gb.ok() && ob.ok());
  if (!gb.ok() || !ob.ok()) return e;
  e.gpu_backend = std::move(*gb);
  e.off_backend = std::move(*ob);
  e.gpu = LoadCuda(dir, *e.gpu_backend, KvMode::kGpu);
  e.off = LoadCuda(dir, *e.off_backend, mode, offload);
  return e;
}

AttentionOptions SparseOptions(int channels) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = channels;
  o.label_bits = 16;
  o.token_budget_ratio = 0.25;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 1;
  return o;
}

}  // namespace dsinfer
