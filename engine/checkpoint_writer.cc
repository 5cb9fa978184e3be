// The generator is splitmix64 + Box-Muller written out here rather than <random>'s
// distributions, whose outputs differ between standard libraries.
#include "engine/checkpoint_writer.h"

#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return (static_cast<double>(Next() >> 11) + 0.5) / 9007199254740992.0; }
  double Normal() {
    return std::sqrt(-2.0 * std::log(Uniform())) * std::cos(2.0 * M_PI * Uniform());
  }

 private:
  uint64_t state_;
};

const char* SafetensorsName(DType d) {
  switch (d) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
  }
  return "?";
}

SafetensorsEntry RandomTensor(const std::string& name, std::vector<int64_t> shape, Rng& rng,
                              double mean, double std, DType dtype) {
  SafetensorsEntry e{name, dtype, std::move(shape), {}};
  int64_t n = 1;
  for (int64_t d : e.shape) n *= d;
  e.data.resize(static_cast<size_t>(n) * DTypeSize(dtype));
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(mean + std * rng.Normal());
    if (dtype == DType::kF32) {
      std::memcpy(e.data.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = dtype == DType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
      std::memcpy(e.data.data() + 2 * i, &h, 2);
    }
  }
  return e;
}

}  // namespace

absl::Status WriteSafetensors(const std::string& path, const std::vector<SafetensorsEntry>& entries) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  header["__metadata__"] = {{"format", "pt"}};
  uint64_t offset = 0;
  for (const SafetensorsEntry& e : entries) {
    header[e.name] = {{"dtype", SafetensorsName(e.dtype)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.data.size()}}};
    offset += e.data.size();
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  const uint64_t len = text.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const SafetensorsEntry& e : entries) {
    out.write(reinterpret_cast<const char*>(e.data.data()), static_cast<std::streamsize>(e.data.size()));
  }
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("error writing ", path));
  return absl::OkStatus();
}

std::string ModelConfigToJson(const ModelConfig& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.architecture.empty() ? "LlamaForCausalLM" : c.architecture};
  j["model_type"] = c.architecture == "MistralForCausalLM" ? "mistral" : "llama";
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads_q;
  j["num_key_value_heads"] = c.num_heads_kv;
  j["head_dim"] = c.head_dim;
  j["hidden_act"] = "silu";
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  nlohmann::ordered_json rope;
  rope["rope_theta"] = c.rope.theta;
  if (c.rope.type == RopeParams::Type::kLlama3) {
    rope["rope_type"] = "llama3";
    rope["factor"] = c.rope.factor;
    rope["low_freq_factor"] = c.rope.low_freq_factor;
    rope["high_freq_factor"] = c.rope.high_freq_factor;
    rope["original_max_position_embeddings"] = c.rope.original_max_position_embeddings;
  } else {
    rope["rope_type"] = "default";
  }
  j["rope_parameters"] = rope;
  if (c.bos_token_id >= 0) j["bos_token_id"] = c.bos_token_id;
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = c.torch_dtype.empty() ? "bfloat16" : c.torch_dtype;
  return j.dump(2) + "\n";
}

std::vector<SafetensorsEntry> RandomLlamaWeights(const ModelConfig& c, uint64_t seed, float std,
                                                 DType dtype) {
  Rng rng(seed);
  std::vector<SafetensorsEntry> e;
  const int64_t h = c.hidden_size, q = c.q_size(), kv = c.kv_size(), inter = c.intermediate_size;
  e.push_back(RandomTensor("model.embed_tokens.weight", {c.vocab_size, h}, rng, 0, std, dtype));
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    e.push_back(RandomTensor(p + "input_layernorm.weight", {h}, rng, 1.0, 0.1, dtype));
    e.push_back(RandomTensor(p + "self_attn.q_proj.weight", {q, h}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "self_attn.k_proj.weight", {kv, h}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "self_attn.v_proj.weight", {kv, h}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "self_attn.o_proj.weight", {h, q}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "post_attention_layernorm.weight", {h}, rng, 1.0, 0.1, dtype));
    e.push_back(RandomTensor(p + "mlp.gate_proj.weight", {inter, h}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "mlp.up_proj.weight", {inter, h}, rng, 0, std, dtype));
    e.push_back(RandomTensor(p + "mlp.down_proj.weight", {h, inter}, rng, 0, std, dtype));
  }
  e.push_back(RandomTensor("model.norm.weight", {h}, rng, 1.0, 0.1, dtype));
  if (!c.tie_word_embeddings) {
    e.push_back(RandomTensor("lm_head.weight", {c.vocab_size, h}, rng, 0, std, dtype));
  }
  return e;
}

absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              float std, DType dtype) {
  RETURN_IF_ERROR(config.Validate());
  ::mkdir(dir.c_str(), 0755);
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::PermissionDeniedError(absl::StrCat("cannot create directory ", dir));
  }
  {
    std::ofstream out(dir + "/config.json", std::ios::trunc);
    out << ModelConfigToJson(config);
    if (!out) return absl::DataLossError(absl::StrCat("cannot write ", dir, "/config.json"));
  }
  return WriteSafetensors(dir + "/model.safetensors", RandomLlamaWeights(config, seed, std, dtype));
}

}  // namespace dsinfer
