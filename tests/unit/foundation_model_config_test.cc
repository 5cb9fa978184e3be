// Proves that config.json / generation_config.json parsing accepts every spelling the
// foundation promises (Llama and Mistral, GQA and MHA, explicit or derived head_dim, the old
// rope_theta + rope_scaling keys incl. `type`, the new rope_parameters, llama3 scaling, tied
// embeddings, eos lists) and refuses unsupported options with an error that names them.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "engine/checkpoint_writer.h"
#include "engine/model_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// A minimal valid Llama config; tests edit it.
Json BaseConfig() {
  return Json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 1000},
              {"hidden_size", 256},
              {"intermediate_size", 512},
              {"num_hidden_layers", 3},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 2},
              {"rms_norm_eps", 1e-5},
              {"max_position_embeddings", 2048},
              {"hidden_act", "silu"}};
}

absl::StatusOr<ModelConfig> Parse(const Json& j) { return ParseModelConfig(j.dump()); }

void ExpectError(const Json& j, const std::string& needle) {
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_FALSE(c.ok()) << j.dump();
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(needle)) << c.status();
}

TEST(ModelConfigTest, LlamaGqaWithDerivedHeadDim) {
  absl::StatusOr<ModelConfig> c = Parse(BaseConfig());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->vocab_size, 1000);
  EXPECT_EQ(c->hidden_size, 256);
  EXPECT_EQ(c->intermediate_size, 512);
  EXPECT_EQ(c->num_layers, 3);
  EXPECT_EQ(c->num_heads_q, 8);
  EXPECT_EQ(c->num_heads_kv, 2);
  EXPECT_EQ(c->head_dim, 32);  // 256 / 8
  EXPECT_EQ(c->q_size(), 256);
  EXPECT_EQ(c->kv_size(), 64);
  EXPECT_FLOAT_EQ(c->rms_norm_eps, 1e-5f);
  EXPECT_EQ(c->max_position_embeddings, 2048);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope.type, RopeParams::Type::kDefault);
  EXPECT_DOUBLE_EQ(c->rope.theta, 10000.0);
  EXPECT_TRUE(c->eos_token_ids.empty());
}

TEST(ModelConfigTest, MhaWhenKvHeadsAbsent) {
  Json j = BaseConfig();
  j.erase("num_key_value_heads");
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_heads_kv, 8);
  EXPECT_EQ(c->kv_size(), c->q_size());
}

TEST(ModelConfigTest, ExplicitHeadDimWins) {
  Json j = BaseConfig();
  j["head_dim"] = 128;  // q_size 1024 != hidden 256, as in some Mistral/Qwen exports
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->q_size(), 1024);
  EXPECT_EQ(c->kv_size(), 256);
}

TEST(ModelConfigTest, NullHeadDimIsDerived) {
  Json j = BaseConfig();
  j["head_dim"] = nullptr;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 32);
}

TEST(ModelConfigTest, MistralWithSlidingWindowLimitsContext) {
  Json j = BaseConfig();
  j["architectures"] = {"MistralForCausalLM"};
  j["max_position_embeddings"] = 32768;
  j["sliding_window"] = 4096;
  j["rope_theta"] = 1e6;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "MistralForCausalLM");
  EXPECT_EQ(c->max_position_embeddings, 4096);
  EXPECT_DOUBLE_EQ(c->rope.theta, 1e6);

  j["sliding_window"] = nullptr;  // Mistral v0.2+ disables the window this way
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->max_position_embeddings, 32768);
}

TEST(ModelConfigTest, OldStyleRopeThetaAndNullScaling) {
  Json j = BaseConfig();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = nullptr;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeParams::Type::kDefault);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
}

TEST(ModelConfigTest, OldStyleLlama3Scaling) {
  Json j = BaseConfig();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 32.0},
                       {"low_freq_factor", 2.0},
                       {"high_freq_factor", 8.0},
                       {"original_max_position_embeddings", 4096}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeParams::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c->rope.factor, 32.0);
  EXPECT_DOUBLE_EQ(c->rope.low_freq_factor, 2.0);
  EXPECT_DOUBLE_EQ(c->rope.high_freq_factor, 8.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 4096);
}

TEST(ModelConfigTest, OldestStyleTypeKeyInsteadOfRopeType) {
  Json j = BaseConfig();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeParams::Type::kLlama3);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  ExpectError(j, "linear");
}

TEST(ModelConfigTest, NewStyleRopeParameters) {
  Json j = BaseConfig();
  j["rope_parameters"] = {{"rope_type", "llama3"},
                          {"rope_theta", 500000.0},
                          {"factor", 8.0},
                          {"low_freq_factor", 1.0},
                          {"high_freq_factor", 4.0},
                          {"original_max_position_embeddings", 64}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeParams::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope.theta, 500000.0);
  EXPECT_EQ(c->rope.original_max_position_embeddings, 64);

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope.type, RopeParams::Type::kDefault);
  EXPECT_DOUBLE_EQ(c->rope.theta, 1e6);
}

TEST(ModelConfigTest, UnsupportedRopeTypesNamed) {
  for (const char* type : {"yarn", "dynamic", "linear", "longrope"}) {
    Json j = BaseConfig();
    j["rope_parameters"] = {{"rope_type", type}, {"rope_theta", 10000.0}, {"factor", 4.0}};
    ExpectError(j, type);
  }
}

TEST(ModelConfigTest, BadLlama3ParametersRefused) {
  Json j = BaseConfig();
  j["rope_parameters"] = {{"rope_type", "llama3"},
                          {"rope_theta", 500000.0},
                          {"factor", 8.0},
                          {"low_freq_factor", 4.0},
                          {"high_freq_factor", 1.0},
                          {"original_max_position_embeddings", 8192}};
  ExpectError(j, "llama3");
  j = BaseConfig();
  j["rope_theta"] = -1.0;
  ExpectError(j, "rope_theta");
}

TEST(ModelConfigTest, TieWordEmbeddings) {
  Json j = BaseConfig();
  j["tie_word_embeddings"] = true;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->tie_word_embeddings);
  j["tie_word_embeddings"] = "yes";
  ExpectError(j, "tie_word_embeddings");
}

TEST(ModelConfigTest, EosIdsIntegerOrList) {
  Json j = BaseConfig();
  j["eos_token_id"] = 2;
  j["bos_token_id"] = 1;
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({2}));
  EXPECT_EQ(c->bos_token_id, 1);
  j["eos_token_id"] = {128001, 128008, 128009};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({128001, 128008, 128009}));
  j["eos_token_id"] = "</s>";
  ExpectError(j, "eos_token_id");
  j["eos_token_id"] = {1, "x"};
  ExpectError(j, "eos_token_id");
}

TEST(ModelConfigTest, GenerationConfigOverridesEos) {
  absl::StatusOr<ModelConfig> c = Parse(BaseConfig());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(ApplyGenerationConfig(R"({"eos_token_id": [7, 9], "bos_token_id": 5})", *c).ok());
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({7, 9}));
  EXPECT_EQ(c->bos_token_id, 5);
  // Absent keys leave the values alone.
  ASSERT_TRUE(ApplyGenerationConfig(R"({"do_sample": true})", *c).ok());
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({7, 9}));
  EXPECT_EQ(c->bos_token_id, 5);
  EXPECT_FALSE(ApplyGenerationConfig("[1, 2]", *c).ok());
  EXPECT_FALSE(ApplyGenerationConfig("{not json", *c).ok());
}

TEST(ModelConfigTest, UnsupportedArchitectureNamed) {
  Json j = BaseConfig();
  j["architectures"] = {"MixtralForCausalLM"};
  ExpectError(j, "MixtralForCausalLM");
  j["architectures"] = {"Qwen2ForCausalLM"};
  ExpectError(j, "Qwen2ForCausalLM");
  j.erase("architectures");
  ExpectError(j, "architectures");
}

TEST(ModelConfigTest, UnsupportedActivationAndBiasNamed) {
  Json j = BaseConfig();
  j["hidden_act"] = "gelu";
  ExpectError(j, "gelu");
  j = BaseConfig();
  j["attention_bias"] = true;
  ExpectError(j, "attention_bias");
  j = BaseConfig();
  j["mlp_bias"] = true;
  ExpectError(j, "mlp_bias");
  j = BaseConfig();
  j["pretraining_tp"] = 2;
  ExpectError(j, "pretraining_tp");
  // false biases and tp = 1 are fine.
  j = BaseConfig();
  j["attention_bias"] = false;
  j["mlp_bias"] = false;
  j["pretraining_tp"] = 1;
  EXPECT_TRUE(Parse(j).ok());
}

TEST(ModelConfigTest, MissingOrBadShapeKeysNamed) {
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"}) {
    Json j = BaseConfig();
    j.erase(key);
    ExpectError(j, key);
    j[key] = "12";
    ExpectError(j, key);
    j[key] = 0;
    ExpectError(j, key);
  }
  Json j = BaseConfig();
  j["num_key_value_heads"] = 3;  // does not divide 8
  ExpectError(j, "num_key_value_heads");
  j = BaseConfig();
  j["head_dim"] = 33;
  ExpectError(j, "head_dim");
  j = BaseConfig();
  j["rms_norm_eps"] = 0;
  ExpectError(j, "rms_norm_eps");
  j = BaseConfig();
  j["hidden_size"] = 12.5;
  ExpectError(j, "hidden_size");
}

TEST(ModelConfigTest, NotJson) {
  EXPECT_FALSE(ParseModelConfig("").ok());
  EXPECT_FALSE(ParseModelConfig("{\"architectures\": [").ok());
  EXPECT_FALSE(ParseModelConfig("[]").ok());
}

TEST(ModelConfigTest, WriterRoundTripsThroughParser) {
  ModelConfig c;
  c.architecture = "MistralForCausalLM";
  c.vocab_size = 300;
  c.hidden_size = 96;
  c.intermediate_size = 160;
  c.num_layers = 2;
  c.num_heads_q = 6;
  c.num_heads_kv = 3;
  c.head_dim = 24;
  c.rms_norm_eps = 1e-6f;
  c.max_position_embeddings = 512;
  c.tie_word_embeddings = true;
  c.rope.type = RopeParams::Type::kLlama3;
  c.rope.theta = 123456.0;
  c.rope.factor = 4.0;
  c.rope.low_freq_factor = 1.5;
  c.rope.high_freq_factor = 3.0;
  c.rope.original_max_position_embeddings = 128;
  c.eos_token_ids = {2, 5};
  c.bos_token_id = 1;
  absl::StatusOr<ModelConfig> p = ParseModelConfig(ModelConfigToJson(c));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->architecture, c.architecture);
  EXPECT_EQ(p->vocab_size, c.vocab_size);
  EXPECT_EQ(p->hidden_size, c.hidden_size);
  EXPECT_EQ(p->intermediate_size, c.intermediate_size);
  EXPECT_EQ(p->num_layers, c.num_layers);
  EXPECT_EQ(p->num_heads_q, c.num_heads_q);
  EXPECT_EQ(p->num_heads_kv, c.num_heads_kv);
  EXPECT_EQ(p->head_dim, c.head_dim);
  EXPECT_FLOAT_EQ(p->rms_norm_eps, c.rms_norm_eps);
  EXPECT_EQ(p->max_position_embeddings, c.max_position_embeddings);
  EXPECT_TRUE(p->tie_word_embeddings);
  EXPECT_EQ(p->rope.type, RopeParams::Type::kLlama3);
  EXPECT_DOUBLE_EQ(p->rope.theta, c.rope.theta);
  EXPECT_DOUBLE_EQ(p->rope.factor, c.rope.factor);
  EXPECT_DOUBLE_EQ(p->rope.low_freq_factor, c.rope.low_freq_factor);
  EXPECT_DOUBLE_EQ(p->rope.high_freq_factor, c.rope.high_freq_factor);
  EXPECT_EQ(p->rope.original_max_position_embeddings, 128);
  EXPECT_EQ(p->eos_token_ids, c.eos_token_ids);
  EXPECT_EQ(p->bos_token_id, 1);
}

TEST(ModelConfigTest, LoadModelConfigReadsGenerationConfigAndNamesDir) {
  const std::string dir = ::testing::TempDir() + "/foundation_model_config_load_" +
      std::to_string(::getpid());
  ASSERT_EQ(std::system(("mkdir -p " + dir).c_str()), 0);
  {
    Json j = BaseConfig();
    j["eos_token_id"] = 2;
    std::ofstream(dir + "/config.json") << j.dump();
    std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [2, 3]})";
  }
  absl::StatusOr<ModelConfig> c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({2, 3}));

  std::remove((dir + "/generation_config.json").c_str());
  c = LoadModelConfig(dir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({2}));

  {
    Json j = BaseConfig();
    j["hidden_act"] = "relu";
    std::ofstream(dir + "/config.json") << j.dump();
  }
  c = LoadModelConfig(dir);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(dir));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("relu"));

  c = LoadModelConfig(dir + "/does-not-exist");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("does-not-exist"));
}

TEST(ModelConfigTest, GoldenConfigsParse) {
  absl::StatusOr<ModelConfig> c = LoadModelConfig("tests/data/golden/llama3-hd128-tied");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope.type, RopeParams::Type::kLlama3);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>({2, 3}));
  c = LoadModelConfig("tests/data/golden/mistral-mha");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, "MistralForCausalLM");
  EXPECT_EQ(c->num_heads_q, c->num_heads_kv);
  c = LoadModelConfig("tests/data/golden/llama-gqa-hd64");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_LT(c->num_heads_kv, c->num_heads_q);
}

}  // namespace
}  // namespace dsinfer
