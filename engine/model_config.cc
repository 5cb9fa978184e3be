// Unknown keys are ignored (config files carry many training-only fields), but any field
// that changes the computation and that dsinfer does not implement is refused by name:
// biases, non-SiLU activations, RoPE types other than default/llama3, sliding windows.
#include "engine/model_config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "kernels/status.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using Json = nlohmann::json;

absl::Status KeyError(const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: '", key, "' ", what));
}

// Reads an integer key; `required` decides whether absence is an error.
absl::Status GetInt(const Json& j, const std::string& key, bool required, int64_t& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    return required ? KeyError(key, "is missing") : absl::OkStatus();
  }
  if (!it->is_number_integer()) return KeyError(key, absl::StrCat("must be an integer, got ", it->dump()));
  out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetNumber(const Json& j, const std::string& key, double& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return KeyError(key, absl::StrCat("must be a number, got ", it->dump()));
  out = it->get<double>();
  return absl::OkStatus();
}

absl::Status ParseRope(const Json& j, const Json* scaling, RopeParams& rope) {
  RETURN_IF_ERROR(GetNumber(j, "rope_theta", rope.theta));
  if (scaling == nullptr || scaling->is_null()) return absl::OkStatus();
  if (!scaling->is_object()) return KeyError("rope_scaling", "must be an object");
  RETURN_IF_ERROR(GetNumber(*scaling, "rope_theta", rope.theta));
  std::string type = "default";
  if (auto t = scaling->find("rope_type"); t != scaling->end() && t->is_string()) {
    type = t->get<std::string>();
  } else if (auto t2 = scaling->find("type"); t2 != scaling->end() && t2->is_string()) {
    type = t2->get<std::string>();
  }
  if (type == "default") {
    rope.type = RopeParams::Type::kDefault;
  } else if (type == "llama3") {
    rope.type = RopeParams::Type::kLlama3;
    RETURN_IF_ERROR(GetNumber(*scaling, "factor", rope.factor));
    RETURN_IF_ERROR(GetNumber(*scaling, "low_freq_factor", rope.low_freq_factor));
    RETURN_IF_ERROR(GetNumber(*scaling, "high_freq_factor", rope.high_freq_factor));
    RETURN_IF_ERROR(GetInt(*scaling, "original_max_position_embeddings", false,
                           rope.original_max_position_embeddings));
  } else {
    return KeyError("rope_type", absl::StrCat("'", type,
                                              "' is not supported (supported: default, llama3)"));
  }
  return absl::OkStatus();
}

absl::Status ParseEosIds(const Json& j, std::vector<int32_t>& out) {
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  out.clear();
  if (it->is_number_integer()) {
    out.push_back(it->get<int32_t>());
  } else if (it->is_array()) {
    for (const Json& v : *it) {
      if (!v.is_number_integer()) return KeyError("eos_token_id", "must hold integers");
      out.push_back(v.get<int32_t>());
    }
  } else {
    return KeyError("eos_token_id", "must be an integer or a list of integers");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) -> absl::Status {
    if (v <= 0) return KeyError(name, absl::StrCat("must be positive, got ", v));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  RETURN_IF_ERROR(positive("num_hidden_layers", num_layers));
  RETURN_IF_ERROR(positive("num_attention_heads", num_heads_q));
  RETURN_IF_ERROR(positive("num_key_value_heads", num_heads_kv));
  RETURN_IF_ERROR(positive("head_dim", head_dim));
  if (num_heads_q % num_heads_kv != 0) {
    return KeyError("num_key_value_heads",
                    absl::StrCat(num_heads_kv, " does not divide num_attention_heads ", num_heads_q));
  }
  if (head_dim % 2 != 0) return KeyError("head_dim", absl::StrCat("must be even, got ", head_dim));
  if (!(rms_norm_eps > 0.0f)) return KeyError("rms_norm_eps", "must be > 0");
  if (vocab_size > INT32_MAX) return KeyError("vocab_size", "is too large");
  return rope.Validate();
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text) {
  Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("config.json: not a JSON object");
  }
  ModelConfig c;
  auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
    return KeyError("architectures", "is missing or not a list of names");
  }
  c.architecture = (*arch)[0].get<std::string>();
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "MistralForCausalLM") {
    return KeyError("architectures",
                    absl::StrCat("'", c.architecture,
                                 "' is not supported (supported: LlamaForCausalLM, "
                                 "MistralForCausalLM)"));
  }
  int64_t v = 0;
  RETURN_IF_ERROR(GetInt(j, "vocab_size", true, c.vocab_size));
  RETURN_IF_ERROR(GetInt(j, "hidden_size", true, v));
  c.hidden_size = static_cast<int>(v);
  RETURN_IF_ERROR(GetInt(j, "intermediate_size", true, v));
  c.intermediate_size = static_cast<int>(v);
  RETURN_IF_ERROR(GetInt(j, "num_hidden_layers", true, v));
  c.num_layers = static_cast<int>(v);
  RETURN_IF_ERROR(GetInt(j, "num_attention_heads", true, v));
  c.num_heads_q = static_cast<int>(v);
  v = c.num_heads_q;
  RETURN_IF_ERROR(GetInt(j, "num_key_value_heads", false, v));
  c.num_heads_kv = static_cast<int>(v);
  v = c.num_heads_q > 0 ? c.hidden_size / c.num_heads_q : 0;
  RETURN_IF_ERROR(GetInt(j, "head_dim", false, v));
  c.head_dim = static_cast<int>(v);
  double eps = 1e-6;
  RETURN_IF_ERROR(GetNumber(j, "rms_norm_eps", eps));
  c.rms_norm_eps = static_cast<float>(eps);
  RETURN_IF_ERROR(GetInt(j, "max_position_embeddings", false, c.max_position_embeddings));
  if (auto t = j.find("tie_word_embeddings"); t != j.end() && !t->is_null()) {
    if (!t->is_boolean()) return KeyError("tie_word_embeddings", "must be true or false");
    c.tie_word_embeddings = t->get<bool>();
  }
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string() &&
                                        act->get<std::string>() != "silu") {
    return KeyError("hidden_act", absl::StrCat("'", act->get<std::string>(),
                                               "' is not supported (supported: silu)"));
  }
  for (const char* bias : {"attention_bias", "mlp_bias"}) {
    if (auto b = j.find(bias); b != j.end() && b->is_boolean() && b->get<bool>()) {
      return KeyError(bias, "= true is not supported");
    }
  }
  if (auto p = j.find("pretraining_tp"); p != j.end() && p->is_number_integer() &&
                                         p->get<int64_t>() != 1) {
    return KeyError("pretraining_tp", "other than 1 is not supported");
  }
  if (auto sw = j.find("sliding_window"); sw != j.end() && sw->is_number_integer() &&
                                          c.max_position_embeddings > sw->get<int64_t>()) {
    // Mistral v0.1 declares a 4096 window; dsinfer attends to the whole context, so it
    // limits the context to the window instead of silently computing something else.
    c.max_position_embeddings = sw->get<int64_t>();
  }
  const Json* scaling = nullptr;
  if (auto rp = j.find("rope_parameters"); rp != j.end() && !rp->is_null()) {
    scaling = &*rp;
  } else if (auto rs = j.find("rope_scaling"); rs != j.end()) {
    scaling = &*rs;
  }
  RETURN_IF_ERROR(ParseRope(j, scaling, c.rope));
  if (auto dt = j.find("torch_dtype"); dt != j.end() && dt->is_string()) {
    c.torch_dtype = dt->get<std::string>();
  } else if (auto dt2 = j.find("dtype"); dt2 != j.end() && dt2->is_string()) {
    c.torch_dtype = dt2->get<std::string>();
  }
  RETURN_IF_ERROR(ParseEosIds(j, c.eos_token_ids));
  int64_t bos = -1;
  RETURN_IF_ERROR(GetInt(j, "bos_token_id", false, bos));
  c.bos_token_id = static_cast<int32_t>(bos);
  RETURN_IF_ERROR(c.Validate());
  return c;
}

absl::Status ApplyGenerationConfig(const std::string& json_text, ModelConfig& config) {
  Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("generation_config.json: not a JSON object");
  }
  RETURN_IF_ERROR(ParseEosIds(j, config.eos_token_ids));
  int64_t bos = config.bos_token_id;
  RETURN_IF_ERROR(GetInt(j, "bos_token_id", false, bos));
  config.bos_token_id = static_cast<int32_t>(bos);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return ss.str();
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(model_dir + "/config.json"));
  absl::StatusOr<ModelConfig> config = ParseModelConfig(text);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(model_dir, "/", config.status().message()));
  }
  absl::StatusOr<std::string> gen = ReadFile(model_dir + "/generation_config.json");
  if (gen.ok()) {
    RETURN_IF_ERROR(ApplyGenerationConfig(*gen, *config));
  }
  return config;
}

}  // namespace dsinfer
