// Start-up memory planning and label storage on the CUDA backend (docs/offload.md, "Memory"):
//  - PlanCudaMemory measures the real device (and the host in the offload modes), and its
//    device total is an upper bound of what a loaded model plus Double Sparsity decode steps
//    actually take from the GPU, in every kv mode;
//  - the CUDA engine keeps no host label bytes: DoubleSparsity's label cache is accounting-only
//    while decode runs sparse, and its accounts still follow the sequence (reserve, release).
// Skips without a GPU.
#include <cmath>
#include <vector>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/memory_plan.h"
#include "engine/model.h"
#include "tests/engine_test_util.h"
#include "tests/gpu/gpu_test_util.h"

namespace dsinfer {
namespace {

constexpr int64_t kPoolTokens = 1024;

int64_t DeviceFree() {
  size_t free_b = 0, total_b = 0;
  EXPECT_EQ(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
  return static_cast<int64_t>(free_b);
}

TEST(MemoryPlanGpu, PlanBoundsWhatTheEngineTakesAndNoHostLabels) {
  SKIP_WITHOUT_GPU();
  for (const char* dir : kGoldenModels) {
    for (KvMode mode : {KvMode::kGpu, KvMode::kOffload, KvMode::kDenseOffload}) {
      SCOPED_TRACE(std::string(dir) + " " + std::string(KvModeName(mode)));
      auto config = LoadModelConfig(dir);
      ASSERT_OK(config.status());
      ModelOptions options;
      options.kv_mode = mode;
      options.kv_pool_tokens = kPoolTokens;
      options.attention.mode = AttentionMode::kDoubleSparse;
      options.attention.channels = config->head_dim;  // every channel: no config needed
      options.attention.token_budget = 16;
      options.attention.dense_layers = 0;
      const int64_t prompt = 200;
      const MemoryPlanRequest request =
          MemoryPlanRequestFor(*config, options, dir, /*max_batch=*/1, prompt, 1);
      auto plan = PlanCudaMemory(*config, request, 0);
      ASSERT_OK(plan.status());
      EXPECT_GT(plan->available.device_free_bytes, 0);
      EXPECT_LE(plan->available.device_free_bytes, plan->available.device_total_bytes);
      if (mode != KvMode::kGpu) {
        EXPECT_GT(plan->available.host_available_bytes, 0);
        EXPECT_GT(plan->host_kv_bytes, 0);
        EXPECT_EQ(plan->gpu_kv_bytes, 0);
      } else {
        EXPECT_GT(plan->gpu_kv_bytes, 0);
      }
      std::printf("%s %s: %s\n", dir, std::string(KvModeName(mode)).c_str(),
                  plan->ToString().c_str());

      ASSERT_CUDA(cudaDeviceSynchronize());
      const int64_t free_before = DeviceFree();
      int64_t taken = 0;
      {
        auto backend = CudaBackend::Create(CudaBackendOptions{});
        ASSERT_OK(backend.status());
        auto model = Model::Load(dir, **backend, options);
        ASSERT_OK(model.status());
        const LabelCache& labels = (*model)->double_sparsity().labels();
        EXPECT_FALSE(labels.host_storage());
        KvBlockPool& pool = (*model)->kv_pool();
        const KvBlockPool::SequenceId seq = pool.AddSequence();
        ASSERT_OK(pool.Reserve(seq, prompt + 8));
        const std::vector<int32_t> ids =
            RandomIds(static_cast<int>(prompt) + 8, static_cast<int>(config->vocab_size), 17);
        std::vector<float> logits;
        ForwardBatch prefill;
        prefill.Add(seq, ids.data(), prompt, 0, false);
        ASSERT_OK((*model)->Forward(prefill, logits));
        for (int64_t p = prompt; p < prompt + 8; ++p) {  // decode rows: sparse (not dense-offload)
          ForwardBatch step;
          step.Add(seq, &ids[p], 1, p, false);
          ASSERT_OK((*model)->Forward(step, logits));
          for (float v : logits) ASSERT_TRUE(std::isfinite(v));
        }
        ASSERT_OK((*backend)->Synchronize());
        taken = free_before - DeviceFree();
        // Labels are accounted (except in dense-offload, which keeps none), never on the host.
        if (mode == KvMode::kDenseOffload) {
          EXPECT_EQ(labels.bytes_in_use(), 0);
        } else {
          EXPECT_GT(labels.bytes_in_use(), 0);
          EXPECT_EQ(labels.format(seq), (LabelFormat{config->head_dim, 16}));
        }
        EXPECT_EQ(labels.host_bytes(), 0);
        (*model)->ReleaseSequence(seq);
        EXPECT_EQ(labels.bytes_in_use(), 0);
      }
      std::printf("  GPU memory taken %.1f MiB, planned %.1f MiB\n", taken / 1048576.0,
                  plan->device_needed() / 1048576.0);
      EXPECT_LE(taken, plan->device_needed());
    }
  }
}

}  // namespace
}  // namespace dsinfer
