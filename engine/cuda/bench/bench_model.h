// What the CUDA benchmark programs (dsinfer-bench, dsinfer-offload-bench) build the same way:
// the model shapes they time, a model of random weights generated on the GPU (no checkpoint
// on disk), random channel orderings for Double Sparsity, and comma-separated integer flags.
// Random weights are enough because speed depends on shapes, not values; the scales keep
// activations finite through 32 layers.
#ifndef DSINFER_ENGINE_CUDA_BENCH_BENCH_MODEL_H_
#define DSINFER_ENGINE_CUDA_BENCH_BENCH_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/model_config.h"
#include "engine/sparse/channel_config.h"

namespace dsinfer {

// The model shape named `name`: "llama2-7b" (MHA, 32 KV heads) or, for any other name,
// Llama-3-8B (GQA 8, rope theta 500000). Both have 32 layers, 32 query heads, head_dim 128.
ModelConfig BenchModelShape(absl::string_view name);

// The tensors Model uploads for `config`, allocated on `backend` and filled with uniform
// random values on the GPU (fixed seeds, so every run times the same weights). Freed on
// destruction; `backend` must outlive the model.
struct RandomWeightModel {
  RandomWeightModel(CudaBackend* backend, ModelConfig config);
  ~RandomWeightModel();
  RandomWeightModel(const RandomWeightModel&) = delete;
  RandomWeightModel& operator=(const RandomWeightModel&) = delete;

  // Allocates and fills every weight and sets `attention`. On failure the tensors made so far
  // are still freed by the destructor.
  absl::Status Init();

  CudaBackend* backend;
  ModelConfig config;
  AttentionConfig attention;
  DeviceTensor embed, final_norm, lm_head;
  struct Layer {
    DeviceTensor input_norm, qkv_proj, o_proj, post_attn_norm, gate_up_proj, down_proj;
  };
  std::vector<Layer> layers;
  int64_t weight_bytes = 0;  // as 16-bit values

 private:
  absl::Status Make(DeviceTensor& t, int64_t rows, int64_t cols, float scale, uint64_t seed);
  std::vector<DeviceTensor*> owned_;
};

// Random channel orderings of `c`'s shape for every statistic, from a std::mt19937 seeded
// with `seed` (speed does not depend on which channels a calibration would pick).
ChannelConfig RandomChannelConfig(const ModelConfig& c, uint32_t seed);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CUDA_BENCH_BENCH_MODEL_H_
