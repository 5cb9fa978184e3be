// Choosing the layers where cross-layer prediction is poor (docs/offload.md): the exemption
// rules; "dsinfer.prediction" round-trips through the channel config (and adding it to a file
// leaves every other key as it was); the calibrated list reaches the offload tier's options
// when the model loads, an explicit own_query_extra wins and use_calibrated_own_query = false
// ignores it; an exempt layer is really not predicted; CalibratePrediction measures every
// predicted layer and refuses a model that cannot measure. Golden model llama3-hd128-tied
// (3 layers, random weights: its recall numbers mean nothing, only the plumbing is tested).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/calibration.h"
#include "engine/sparse/channel_config.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/engine_test_util.h"

namespace dsinfer {
namespace {

constexpr char kModel[] = "tests/data/golden/llama3-hd128-tied";
using Rule = PredictionCalibrationOptions::Rule;

PredictionCalibration Example() {
  PredictionCalibration p;
  p.recall = {-1.0, 0.25, 0.875};
  p.own_query_extra = {1};
  p.threshold = 0.5;
  p.budget_ratio = 0.125;
  p.tokens = 12;
  p.measured = {{"data", "test"}, {"windows", 1}};
  return p;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path =
      testing::TempDir() + "/" + name + "_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::unique_ptr<Model> Load(CpuBackend& backend, const std::string& channels, KvMode mode,
                            const OffloadOptions& offload) {
  ModelOptions o;
  o.channel_config_path = channels;
  o.kv_mode = mode;
  o.offload = offload;
  o.kv_pool_tokens = 256;
  auto model = Model::Load(kModel, backend, o);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

TEST(PredictionCalibration, RulesChooseTheWeakestLayers) {
  // The demo model's recall on its calibration text (docs/offload.md).
  const std::vector<double> recall = {-1, -1, 0.716, 0.886, 0.911, 0.892, 0.935, 0.788};
  // Mean rule: drop 2 (mean of the rest 0.882), then 7 (0.906 >= 0.9): the fewest exemptions.
  EXPECT_EQ(ChooseOwnQueryLayers(recall, 0.9, Rule::kMean), (std::vector<int>{2, 7}));
  EXPECT_EQ(ChooseOwnQueryLayers(recall, 0.9, Rule::kEachLayer), (std::vector<int>{2, 3, 5, 7}));
  EXPECT_EQ(ChooseOwnQueryLayers(recall, 0.7, Rule::kMean), (std::vector<int>{}));
  EXPECT_EQ(ChooseOwnQueryLayers(recall, 0.7, Rule::kEachLayer), (std::vector<int>{}));
  // A bar no layer reaches exempts every predicted layer, never an unmeasured one.
  EXPECT_EQ(ChooseOwnQueryLayers(recall, 1.0, Rule::kMean), (std::vector<int>{2, 3, 4, 5, 6, 7}));
}

TEST(PredictionCalibration, RoundTripsThroughTheChannelConfig) {
  CpuBackend backend;
  auto probe = Load(backend, "", KvMode::kGpu, {});
  ASSERT_NE(probe, nullptr);
  ChannelConfig config = RandomChannelConfig(probe->config(), 3);
  config.metadata = {{"tool", "test"}};
  config.prediction = Example();
  auto parsed = ParseChannelConfig(ChannelConfigToJson(config));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_TRUE(parsed->prediction.has_value());
  EXPECT_EQ(*parsed->prediction, Example());
  EXPECT_EQ(parsed->Get(ChannelStatistic::kQK), config.Get(ChannelStatistic::kQK));
  EXPECT_TRUE(ValidateChannelConfig(*parsed, 3, probe->config().num_heads_q,
                                    probe->config().num_heads_kv, probe->config().head_dim)
                  .ok());
  const nlohmann::json j = nlohmann::json::parse(ChannelConfigToJson(config));
  EXPECT_TRUE(j["dsinfer.prediction"]["prediction_recall"][0].is_null());

  // Adding the field to a file leaves every other key exactly as it was.
  ChannelConfig plain = config;
  plain.prediction.reset();
  const std::string text = ChannelConfigToJson(plain);
  auto added = SetPredictionCalibration(text, Example());
  ASSERT_TRUE(added.ok()) << added.status();
  nlohmann::json a = nlohmann::json::parse(text), b = nlohmann::json::parse(*added);
  EXPECT_EQ(b.size(), a.size() + 1);
  b.erase("dsinfer.prediction");
  EXPECT_EQ(a, b);
  EXPECT_FALSE(SetPredictionCalibration("{\"x\": 1}", Example()).ok());

  // Malformed values and a list that does not fit the model are refused, naming the field.
  for (const char* bad : {R"({"prediction_recall": [1.5]})", R"({"own_query_extra": [2, 2]})",
                          R"({"own_query_extra": [-1]})", R"({"threshold": 0})",
                          R"({"tokens": "many"})", "[]"}) {
    auto p = PredictionCalibrationFromJson(nlohmann::json::parse(bad), "x");
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  ChannelConfig wide = config;
  wide.prediction->own_query_extra = {3};
  absl::Status st = ValidateChannelConfig(wide, 3, probe->config().num_heads_q,
                                          probe->config().num_heads_kv, probe->config().head_dim);
  EXPECT_NE(st.message().find("exempts layer 3"), std::string::npos) << st;
  wide.prediction->own_query_extra = {};
  wide.prediction->recall = {0.5};
  EXPECT_FALSE(ValidateChannelConfig(wide, 3, probe->config().num_heads_q,
                                     probe->config().num_heads_kv, probe->config().head_dim)
                   .ok());
}

TEST(PredictionCalibration, CalibratedListReachesTheOffloadTierUnlessOverridden) {
  CpuBackend backend;
  auto probe = Load(backend, "", KvMode::kGpu, {});
  ASSERT_NE(probe, nullptr);
  const ModelConfig c = probe->config();
  probe.reset();
  ChannelConfig config = RandomChannelConfig(c, 5);
  config.prediction = Example();
  config.prediction->own_query_extra = {2};
  const std::string path = WriteTemp("prediction_channels", ChannelConfigToJson(config));
  OffloadOptions measure;
  measure.own_query_layers = 1;
  measure.measure_prediction_recall = true;
  {
    auto m = Load(backend, path, KvMode::kOffload, measure);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->offload_tier()->options().own_query_extra, (std::vector<int>{2}));
    // Layer 2 is exempt: it selects with its own query, so nothing is predicted there, while
    // layer 1 still is.
    AttentionOptions o;
    o.mode = AttentionMode::kDoubleSparse;
    o.channels = 16;
    o.token_budget_ratio = 0.25;
    o.sink = 2;
    o.recent = 2;
    o.dense_layers = 0;
    const std::vector<int32_t> ids = RandomIds(80, static_cast<int>(c.vocab_size), 9);
    KvBlockPool& pool = m->kv_pool();
    const auto seq = pool.AddSequence();
    ASSERT_TRUE(pool.Reserve(seq, 80).ok());
    std::vector<float> logits;
    ForwardBatch prefill;
    prefill.Add(seq, ids.data(), 64, 0, false);
    prefill.sequences.back().attention = &o;
    ASSERT_TRUE(m->Forward(prefill, logits).ok());
    for (int64_t p = 64; p < 80; ++p) {
      ForwardBatch step;
      step.Add(seq, &ids[p], 1, p, false);
      step.sequences.back().attention = &o;
      ASSERT_TRUE(m->Forward(step, logits).ok());
    }
    EXPECT_GT(m->double_sparsity().prediction_exact()[1], 0);
    EXPECT_EQ(m->double_sparsity().prediction_exact()[2], 0);
    EXPECT_EQ(m->double_sparsity().Stats(seq)->predicted_rows, 16);  // layer 1 only
    m->ReleaseSequence(seq);
  }
  {
    OffloadOptions explicit_list = measure;
    explicit_list.own_query_extra = {1};
    auto m = Load(backend, path, KvMode::kOffload, explicit_list);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->offload_tier()->options().own_query_extra, (std::vector<int>{1}));
  }
  {
    OffloadOptions ignore = measure;
    ignore.use_calibrated_own_query = false;
    auto m = Load(backend, path, KvMode::kOffload, ignore);
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->offload_tier()->options().own_query_extra.empty());
  }
  {
    // dense-offload predicts nothing: the list is not applied there.
    auto m = Load(backend, path, KvMode::kDenseOffload, measure);
    ASSERT_NE(m, nullptr);
    EXPECT_TRUE(m->offload_tier()->options().own_query_extra.empty());
  }
  std::remove(path.c_str());
}

TEST(PredictionCalibration, MeasuresEveryPredictedLayer) {
  CpuBackend backend;
  OffloadOptions measure;
  measure.own_query_layers = 1;
  measure.measure_prediction_recall = true;
  measure.use_calibrated_own_query = false;
  auto m = Load(backend, "", KvMode::kOffload, measure);
  ASSERT_NE(m, nullptr);
  const ModelConfig c = m->config();
  ASSERT_TRUE(m->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 7)).ok());
  PredictionCalibrationOptions po;
  po.prefill = 96;
  po.steps = 12;
  po.budget_ratio = 0.25;
  po.sink = 2;
  po.recent = 2;
  po.threshold = 1.0;  // random weights: every predicted layer falls short
  const std::vector<std::vector<int32_t>> windows = {
      RandomIds(108, static_cast<int>(c.vocab_size), 1),
      RandomIds(100, static_cast<int>(c.vocab_size), 2)};
  auto p = CalibratePrediction(*m, windows, po);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->recall.size(), 3u);
  EXPECT_LT(p->recall[0], 0.0);  // own query
  for (int l = 1; l < 3; ++l) {
    EXPECT_GE(p->recall[l], 0.0) << l;
    EXPECT_LE(p->recall[l], 1.0) << l;
  }
  EXPECT_EQ(p->tokens, 12 + 4);
  EXPECT_EQ(p->own_query_extra, (std::vector<int>{1, 2}));
  EXPECT_EQ(p->measured["windows"], 2);
  EXPECT_EQ(m->kv_pool().blocks_in_use(), 0);

  // Models that cannot measure are refused before any work.
  CpuBackend b2;
  auto gpu = Load(b2, "", KvMode::kGpu, {});
  ASSERT_NE(gpu, nullptr);
  EXPECT_EQ(CalibratePrediction(*gpu, windows, po).status().code(),
            absl::StatusCode::kFailedPrecondition);
  OffloadOptions exempt = measure;
  exempt.own_query_extra = {2};
  auto off = Load(b2, "", KvMode::kOffload, exempt);
  ASSERT_NE(off, nullptr);
  EXPECT_EQ(CalibratePrediction(*off, windows, po).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A window no longer than the prefix is refused.
  EXPECT_EQ(CalibratePrediction(*m, {RandomIds(96, 100, 3)}, po).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinfer
