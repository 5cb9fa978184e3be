// Cross-layer prediction on the trained demo model (offload_engine_test's binary;
// docs/offload.md has the numbers): recall only means something on trained weights, so its
// recall, the calibrated own-query exemptions and retrieval under prediction are measured here,
// on held-out English that the calibration text never contains. The recall and exemption tests
// skip when models/demo (or DSINFER_DEMO_MODEL_DIR) has no weights; the retrieval test is
// disabled by default, as it takes minutes.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/calibration.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "engine/tokenizer/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "offload/offload_tier.h"
#include "tests/unit/offload_engine_harness.h"

namespace dsinfer {
namespace {

// qk channels of the model in `dir`, calibrated on `ids` in blocks of 512 (gpu KV mode).
void CalibrateQk(const std::string& dir, const std::vector<int32_t>& ids, ChannelConfig& out) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadModel(dir, backend, KvMode::kGpu);
  ASSERT_NE(model, nullptr);
  CalibrationOptions co;
  co.block = 512;
  co.statistics = {ChannelStatistic::kQK};
  auto calibrated = Calibrate(*model, ids, co);
  ASSERT_TRUE(calibrated.ok()) << calibrated.status();
  out = *calibrated;
}

// The first `count` tokens of tests/data/eval/heldout_sample.jsonl (its first documents,
// which tools/accuracy/prepare_data.py puts in the evaluation part, never in calib.txt).
void HeldoutTokens(const Tokenizer& tokenizer, size_t count, std::vector<int32_t>& all) {
  std::ifstream in("tests/data/eval/heldout_sample.jsonl");
  ASSERT_TRUE(in.good());
  std::string line;
  while (all.size() < count && std::getline(in, line)) {
    auto ids = tokenizer.Encode(nlohmann::json::parse(line).at("text").get<std::string>());
    ASSERT_TRUE(ids.ok());
    all.insert(all.end(), ids->begin(), ids->end());
  }
  ASSERT_GE(all.size(), count);
}

// The demo-model tests' Double Sparsity: 16 of 128 channels, 1/16 budget, sink 4, recent 8,
// every layer sparse.
AttentionOptions DemoSparseOptions() {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = 16;
  o.token_budget_ratio = 1.0 / 16;
  o.sink = 4;
  o.recent = 8;
  o.dense_layers = 0;
  return o;
}

// The demo model directory (DSINFER_DEMO_MODEL_DIR overrides models/demo), or empty when it
// has no weights.
std::string DemoModelDir() {
  const char* override_dir = std::getenv("DSINFER_DEMO_MODEL_DIR");
  const std::string dir = override_dir != nullptr ? override_dir : "models/demo";
  if (!std::ifstream(dir + "/model.safetensors.index.json").good() &&
      !std::ifstream(dir + "/model.safetensors").good()) {
    return "";
  }
  return dir;
}

// The trained demo model on held-out English: calibrated channels (qk, 16 of 128), 1/16
// budget, cross-layer prediction from layer 2 on. Reports recall per layer for both
// prediction inputs (the bars are below; docs/offload.md has the numbers).
// DSINFER_DEMO_MODEL_DIR overrides the directory (e.g. while models/demo is being replaced).
TEST(OffloadEngine, PredictionRecallOnTrainedDemoModel) {
  const std::string dir = DemoModelDir();
  if (dir.empty()) GTEST_SKIP() << "the demo model has no weights";
  auto tokenizer = Tokenizer::LoadFromDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<int32_t> all;
  ASSERT_NO_FATAL_FAILURE(HeldoutTokens(**tokenizer, 2600, all));
  const std::vector<int32_t> calib(all.begin(), all.begin() + 1024);
  const std::vector<int32_t> text(all.begin() + 1024, all.begin() + 1024 + 1024 + 96);
  ChannelConfig channels;
  ASSERT_NO_FATAL_FAILURE(CalibrateQk(dir, calib, channels));
  const AttentionOptions o = DemoSparseOptions();
  auto mass_recall = [](const DoubleSparsity& ds) {
    std::vector<double> mass;
    for (size_t l = 0; l < ds.recall_sum().size(); ++l) {
      mass.push_back(ds.recall_count()[l] > 0 ? ds.recall_sum()[l] / ds.recall_count()[l] : -1);
    }
    return mass;
  };
  auto agree = [](const std::vector<float>& x, const std::vector<float>& y, int64_t vocab) {
    int64_t same = 0;
    for (size_t i = 1; (i + 1) * vocab <= std::min(x.size(), y.size()); ++i) {
      const float* a = x.data() + i * vocab;
      const float* b = y.data() + i * vocab;
      same += std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b;
    }
    return same;
  };
  // The exact selection's softmax mass (gpu mode), to see what prediction costs, and how
  // often exact Double Sparsity's greedy token equals dense attention's.
  std::vector<float> exact_logits;
  {
    CpuBackend backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, backend, KvMode::kGpu);
    ASSERT_NE(gpu, nullptr);
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    const std::vector<float> dense_logits = RunBatch(*gpu, {text}, {1024}, dense).logits;
    ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
    const std::vector<float> ds_logits = RunBatch(*gpu, {text}, {1024}, o).logits;
    std::cout << "demo exact selection: greedy token equal to dense attention's at "
              << agree(dense_logits, ds_logits, gpu->config().vocab_size) << " of 96 steps\n";
  }
  {
    CpuBackend backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, backend, KvMode::kGpu);
    ASSERT_NE(gpu, nullptr);
    ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
    gpu->double_sparsity().set_measure_recall(true);
    const BatchRun got = RunBatch(*gpu, {text}, {1024}, o);
    exact_logits = got.logits;
    std::cout << "demo exact selection (gpu mode), softmax mass held per layer:"
              << Format(mass_recall(gpu->double_sparsity())) << "\n";
  }
  for (PredictionInput input : {PredictionInput::kNextNorm, PredictionInput::kOwnNorm}) {
    OffloadOptions oo;
    oo.measure_prediction_recall = true;
    oo.prediction_input = input;
    // Every layer from 2 on predicted (the shipped config's calibrated exemptions are the
    // next test's subject).
    oo.use_calibrated_own_query = false;
    CpuBackend backend;
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);
    ASSERT_NE(off, nullptr);
    ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
    off->double_sparsity().set_measure_recall(true);
    const BatchRun got = RunBatch(*off, {text}, {1024}, o);
    const std::vector<double> recall = PredictionRecall(off->double_sparsity());
    const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[0]);
    // Greedy agreement with the exact selection's next-token choice.
    const int64_t vocab = off->config().vocab_size;
    const int64_t same = agree(got.logits, exact_logits, vocab);
    const int64_t steps = 96;
    std::cout << "demo " << (input == PredictionInput::kNextNorm ? "next-norm" : "own-norm")
              << " prediction recall per layer:" << Format(recall)
              << "\n  softmax mass held by the attended set per layer:"
              << Format(mass_recall(off->double_sparsity())) << "\n  reuse hit rate "
              << static_cast<double>(st.fetch.rows_reused) / st.fetch.rows_looked_up
              << ", bytes from host " << st.fetch.bytes_from_host << ", greedy token equal to "
              << "exact selection's at " << same << " of " << steps << " steps\n";
    EXPECT_LT(recall[0], 0.0);
    EXPECT_LT(recall[1], 0.0);
    // Measured (docs/offload.md): first checkpoint (b07e5e4) mean 0.916, layers 0.87–0.97;
    // the retrieval-trained checkpoint that replaced it, mean 0.863, layers 0.72–0.94. The
    // bars catch a broken predictor (random selection gives about the budget share, ~0.1)
    // without pinning one checkpoint's numbers.
    double sum = 0;
    for (size_t l = 2; l < recall.size(); ++l) {
      EXPECT_GE(recall[l], 0.6) << "layer " << l;
      sum += recall[l];
    }
    const double mean = sum / static_cast<double>(recall.size() - 2);
    EXPECT_GE(mean, 0.8);
    EXPECT_GT(st.fetch.rows_reused, st.fetch.rows_looked_up / 2);
    RecordProperty(
        input == PredictionInput::kNextNorm ? "demo_recall_next_norm" : "demo_recall_own_norm",
        std::to_string(mean));
    off->ReleaseSequence(got.seqs[0]);
  }
}

// The demo model as shipped: its channel config carries the layers dsinfer-calibrate
// --prediction exempted on calib.txt (the last 40 held-out documents), so in kv mode offload
// those layers select with their own query. Measured on different text — the same 1120
// tokens of the first held-out document as the test above, which calib.txt never contains —
// with the shipped channels, once with the calibrated list and once predicting every layer
// from 2 on: per-layer recall, the predicted layers' mean, the share of layers 2–7 still
// predicted, and the effective recall counting exempt layers as exact (docs/offload.md).
TEST(OffloadEngine, CalibratedExemptionsOnTrainedDemoModel) {
  const std::string dir = DemoModelDir();
  if (dir.empty()) GTEST_SKIP() << "the demo model has no weights";
  auto shipped = LoadChannelConfig(dir + "/" + kModelChannelConfigFile);
  ASSERT_TRUE(shipped.ok()) << shipped.status();
  if (!shipped->prediction.has_value()) {
    GTEST_SKIP() << dir << "'s channel config has no dsinfer.prediction";
  }
  const std::vector<int> exempt = shipped->prediction->own_query_extra;
  auto tokenizer = Tokenizer::LoadFromDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<int32_t> all;
  ASSERT_NO_FATAL_FAILURE(HeldoutTokens(**tokenizer, 2144, all));
  const std::vector<int32_t> text(all.begin() + 1024, all.begin() + 1024 + 1024 + 96);
  const AttentionOptions o = DemoSparseOptions();
  std::vector<double> recall[2];
  for (int calibrated = 0; calibrated < 2; ++calibrated) {
    OffloadOptions oo;
    oo.measure_prediction_recall = true;
    oo.use_calibrated_own_query = calibrated == 1;
    CpuBackend backend;
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);  // shipped channels
    ASSERT_NE(off, nullptr);
    EXPECT_EQ(off->offload_tier()->options().own_query_extra,
              calibrated == 1 ? exempt : std::vector<int>{});
    const BatchRun got = RunBatch(*off, {text}, {1024}, o);
    recall[calibrated] = PredictionRecall(off->double_sparsity());
    std::cout << "demo, shipped channels, "
              << (calibrated ? "calibrated exemptions" : "every layer from 2 predicted")
              << ": prediction recall per layer:" << Format(recall[calibrated]) << "\n";
    off->ReleaseSequence(got.seqs[0]);
  }
  const int layers = static_cast<int>(recall[1].size());
  double predicted_sum = 0, effective_sum = 0, all_sum = 0;
  int predicted = 0;
  for (int l = 2; l < layers; ++l) {
    const bool is_exempt = std::find(exempt.begin(), exempt.end(), l) != exempt.end();
    EXPECT_EQ(recall[1][l] < 0, is_exempt) << "layer " << l;  // exempt = not predicted
    all_sum += recall[0][l];
    if (is_exempt) {
      effective_sum += 1.0;  // own query: the exact selection
    } else {
      predicted_sum += recall[1][l];
      effective_sum += recall[1][l];
      ++predicted;
    }
  }
  const double past = layers - 2;
  const double predicted_mean = predicted > 0 ? predicted_sum / predicted : 1.0;
  std::cout << "demo calibrated exemptions: " << predicted << " of " << past
            << " layers past 0-1 predicted; their mean recall " << predicted_mean
            << "; effective recall (exempt layers exact) " << effective_sum / past
            << "; every layer predicted: mean " << all_sum / past << "\n";
  RecordProperty("demo_predicted_mean_recall", std::to_string(predicted_mean));
  // Measured (docs/offload.md): exempt {2, 7}; layers 3-6 predicted with mean 0.910 on this
  // text (0.906 on the calibration text), vs 0.861 with every layer predicted. The bars: the
  // list keeps most layers predicted, and what is predicted meets the 0.9 within
  // the calibration-to-test spread (0.02).
  EXPECT_GE(predicted, (layers - 2) / 2);
  EXPECT_GE(predicted_mean, 0.88);
  EXPECT_GT(predicted_mean, all_sum / past);
}

// Retrieval on the demo model (slow: run with --gtest_also_run_disabled_tests). Each 1K
// prompt of tests/data/eval/retrieval.jsonl is prefilled up to its question; the question
// and the answer are then fed one token per step (decode rows, so Double Sparsity applies)
// and an answer counts as correct when every answer token is the argmax. Dense, exact
// selection (gpu mode) and predicted selection (offload) side by side, with prediction
// recall per layer. Channels: qk, calibrated on held-out text.
TEST(OffloadEngine, DISABLED_RetrievalUnderPredictionOnDemoModel) {
  const char* override_dir = std::getenv("DSINFER_DEMO_MODEL_DIR");
  const std::string dir = override_dir != nullptr ? override_dir : "models/demo";
  auto tokenizer = Tokenizer::LoadFromDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  std::vector<int32_t> calib;
  ASSERT_NO_FATAL_FAILURE(HeldoutTokens(**tokenizer, 1024, calib));
  calib.resize(1024);
  ChannelConfig channels;
  ASSERT_NO_FATAL_FAILURE(CalibrateQk(dir, calib, channels));
  const int64_t target = override_dir != nullptr && std::getenv("DSINFER_RETRIEVAL_LEN")
                             ? std::atoll(std::getenv("DSINFER_RETRIEVAL_LEN"))
                             : 1024;
  const AttentionOptions o = DemoSparseOptions();
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  OffloadOptions oo;
  oo.measure_prediction_recall = true;
  oo.use_calibrated_own_query = false;
  // The fourth model exempts the layers whose prediction is weakest on this data.
  OffloadOptions exempt = oo;
  exempt.own_query_extra = {2, 4, 7};
  CpuBackend b1, b2, b3, b4;
  std::unique_ptr<Model> gpu = LoadModel(dir, b1, KvMode::kGpu);
  std::unique_ptr<Model> exact = LoadModel(dir, b2, KvMode::kGpu);
  std::unique_ptr<Model> off = LoadModel(dir, b3, KvMode::kOffload, oo);
  std::unique_ptr<Model> off_exempt = LoadModel(dir, b4, KvMode::kOffload, exempt);
  ASSERT_TRUE(exact->double_sparsity().SetChannelConfig(channels).ok());
  ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
  ASSERT_TRUE(off_exempt->double_sparsity().SetChannelConfig(channels).ok());
  int correct[4] = {0, 0, 0, 0};
  int prompts = 0;
  std::ifstream in("tests/data/eval/retrieval.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    const nlohmann::json row = nlohmann::json::parse(line);
    if (row.at("target_len").get<int64_t>() != target) continue;
    std::vector<int32_t> ids = row.at("prompt_ids").get<std::vector<int32_t>>();
    const std::vector<int32_t> answer = row.at("answer_ids").get<std::vector<int32_t>>();
    const int64_t prefill =
        static_cast<int64_t>(ids.size()) - row.at("question_tokens").get<int64_t>();
    const int64_t prompt = static_cast<int64_t>(ids.size());
    ids.insert(ids.end(), answer.begin(), answer.end());
    Model* models[4] = {gpu.get(), exact.get(), off.get(), off_exempt.get()};
    for (int m = 0; m < 4; ++m) {
      const BatchRun run = RunBatch(*models[m], {ids}, {prefill}, m == 0 ? dense : o);
      const int64_t vocab = models[m]->config().vocab_size;
      bool ok = true;
      // Step i (i >= 1) fed token prefill + i - 1 and predicts token prefill + i.
      for (size_t a = 0; a < answer.size(); ++a) {
        const int64_t step = prompt - prefill + static_cast<int64_t>(a);
        const float* l = run.logits.data() + step * vocab;
        ok = ok && std::max_element(l, l + vocab) - l == answer[a];
      }
      correct[m] += ok;
      models[m]->ReleaseSequence(run.seqs[0]);
    }
    ++prompts;
  }
  std::cout << "retrieval at " << target << " tokens, " << prompts << " prompts: dense "
            << correct[0] << ", exact selection " << correct[1] << ", predicted selection "
            << correct[2] << ", predicted except layers 2, 4, 7 " << correct[3]
            << "\n  prediction recall per layer:"
            << Format(PredictionRecall(off->double_sparsity())) << "\n";
}

}  // namespace
}  // namespace dsinfer
