// Writes Hugging Face style checkpoints (config.json + model.safetensors): random-weight
// models at any shape for the demo model, tests and benchmarks — nothing can be downloaded
// here, so the project makes its own. Deterministic: the same config and seed give the same
// bytes on every machine.
#ifndef DSINFER_ENGINE_CHECKPOINT_WRITER_H_
#define DSINFER_ENGINE_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/model_config.h"
#include "kernels/dtype.h"

namespace dsinfer {

struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::kBF16;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Writes `entries` as one safetensors file (header keys in the given order).
absl::Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries);

// The config as config.json text (new-style `rope_parameters`).
std::string ModelConfigToJson(const ModelConfig& config);

// Every tensor the Llama architecture needs for `config`, drawn N(0, std) (norms around 1)
// from `seed`, rounded to `dtype`.
std::vector<SafetensorsEntry> RandomLlamaWeights(const ModelConfig& config, uint64_t seed,
                                                 float std, DType dtype);

// Creates `dir` and writes config.json and model.safetensors.
absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              float std = 0.08f, DType dtype = DType::kBF16);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_CHECKPOINT_WRITER_H_
