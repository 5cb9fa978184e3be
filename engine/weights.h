// The checkpoint's tensors, checked against the model config: every expected tensor is
// present with the expected shape and a usable dtype, and no unexpected tensor is present.
// Views point into the memory-mapped checkpoint (no copy); backends upload from them.
#ifndef DSINFER_ENGINE_WEIGHTS_H_
#define DSINFER_ENGINE_WEIGHTS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"

namespace dsinfer {

struct LayerWeights {
  const TensorRef* input_norm;     // [hidden]
  const TensorRef* q_proj;         // [heads_q * head_dim, hidden]
  const TensorRef* k_proj;         // [heads_kv * head_dim, hidden]
  const TensorRef* v_proj;         // [heads_kv * head_dim, hidden]
  const TensorRef* o_proj;         // [hidden, heads_q * head_dim]
  const TensorRef* post_attn_norm; // [hidden]
  const TensorRef* gate_proj;      // [intermediate, hidden]
  const TensorRef* up_proj;        // [intermediate, hidden]
  const TensorRef* down_proj;      // [hidden, intermediate]
};

struct ModelWeights {
  std::unique_ptr<SafetensorsCheckpoint> checkpoint;  // owns the mappings
  const TensorRef* embed_tokens = nullptr;            // [vocab, hidden]
  std::vector<LayerWeights> layers;
  const TensorRef* final_norm = nullptr;  // [hidden]
  const TensorRef* lm_head = nullptr;     // [vocab, hidden]; == embed_tokens when tied
};

// Opens the checkpoint in `model_dir` and binds it to `config`.
absl::StatusOr<ModelWeights> LoadModelWeights(const ModelConfig& config, const std::string& model_dir);
// Binds an already opened checkpoint (used by tests that build checkpoints in memory).
absl::StatusOr<ModelWeights> BindModelWeights(const ModelConfig& config,
                                              std::unique_ptr<SafetensorsCheckpoint> checkpoint);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_WEIGHTS_H_
