// The model's shape and numerics as read from a Hugging Face config.json (and, when present,
// generation_config.json). Both RoPE spellings are accepted: the older top-level
// `rope_theta` + `rope_scaling` and the newer `rope_parameters`.
#ifndef DSINFER_ENGINE_MODEL_CONFIG_H_
#define DSINFER_ENGINE_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/rope.h"

namespace dsinfer {

struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM" or "MistralForCausalLM"
  int64_t vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;
  int num_heads_q = 0;
  int num_heads_kv = 0;
  int head_dim = 0;
  float rms_norm_eps = 1e-6f;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  RopeParams rope;
  std::string torch_dtype;  // informational ("bfloat16", ...)
  std::vector<int32_t> eos_token_ids;
  int32_t bos_token_id = -1;

  int q_size() const { return num_heads_q * head_dim; }
  int kv_size() const { return num_heads_kv * head_dim; }
  absl::Status Validate() const;
};

// Parses config.json text. Errors name the offending key and value.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text);
// Merges generation_config.json text (eos/bos ids) into `config`.
absl::Status ApplyGenerationConfig(const std::string& json_text, ModelConfig& config);
// Reads DIR/config.json and, if present, DIR/generation_config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Reads a whole file; NOT_FOUND / error naming the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_MODEL_CONFIG_H_
