// Cross-layer prediction on the golden models (offload_engine_test's binary; docs/offload.md).
// Their random weights make its recall meaningless, so here the predicted path is held to its
// data movement (under a budget covering the whole context it must equal gpu mode bit for bit)
// and, under a real budget, only run and measured; its quality is the trained demo model's
// test (offload_engine_demo_model.cc).
#include <cmath>
#include <cstdint>
#include <iostream>
#include <memory>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "offload/offload_tier.h"
#include "tests/engine_test_util.h"
#include "tests/unit/offload_engine_harness.h"

namespace dsinfer {
namespace {

// With a budget covering the whole context any selection is every token, so the predicted
// path (fetched a layer ahead into the other ping-pong buffer) must reproduce gpu mode bit
// for bit: this checks its data movement, buffer parity and current-token handling.
TEST(OffloadEngine, PredictedPathWithFullBudgetEqualsGpuModeBitForBit) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend gpu_backend, backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
    OffloadOptions oo;
    oo.own_query_layers = 1;
    oo.reuse_rows = 16;
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);
    ASSERT_NE(gpu, nullptr);
    ASSERT_NE(off, nullptr);
    const ModelConfig& c = gpu->config();
    AttentionOptions o = SparseOptions(c.head_dim, 16, 0.25);
    o.token_budget = 1000;
    o.dense_layers = 0;
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(33, static_cast<int>(c.vocab_size), 12),
        RandomIds(21, static_cast<int>(c.vocab_size), 13)};
    const BatchRun want = RunBatch(*gpu, ids, {5, 0}, o);
    const BatchRun got = RunBatch(*off, ids, {5, 0}, o);
    EXPECT_TRUE(BitEqual(want.logits, got.logits));
    const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[1]);
    EXPECT_EQ(st.predicted_rows, 21 * (c.num_layers - 1));
    EXPECT_GT(st.fetch.rows_reused, 0);
    // Previous-step reuse on the predicted path (plans a layer ahead take kept buffers in
    // layer order): bit-equal as well, and with the whole context selected every step, all
    // but the newest row of each step is a hit after the first decode step.
    OffloadOptions previous = oo;
    previous.reuse_rows = 0;
    previous.reuse_previous = true;
    previous.resident_layers = 0;  // resident layers keep nothing (their rows are on the device)
    CpuBackend previous_backend;
    std::unique_ptr<Model> kept = LoadModel(dir, previous_backend, KvMode::kOffload, previous);
    ASSERT_NE(kept, nullptr);
    const BatchRun reused = RunBatch(*kept, ids, {5, 0}, o);
    EXPECT_TRUE(BitEqual(want.logits, reused.logits));
    const SequenceAttentionStats& ks = *kept->double_sparsity().Stats(reused.seqs[1]);
    EXPECT_EQ(ks.fetch.rows_requested, st.fetch.rows_requested);
    EXPECT_GT(ks.fetch.rows_reused, ks.fetch.rows_requested / 2);
    EXPECT_LE(kept->offload_tier()->kept_buffers(), c.num_layers + 1);
    // A layer listed in own_query_extra selects with its own query: one fewer predicted.
    oo.own_query_extra = {c.num_layers - 1};
    CpuBackend other_backend;
    std::unique_ptr<Model> other = LoadModel(dir, other_backend, KvMode::kOffload, oo);
    ASSERT_NE(other, nullptr);
    const BatchRun again = RunBatch(*other, ids, {5, 0}, o);
    EXPECT_TRUE(BitEqual(want.logits, again.logits));
    EXPECT_EQ(other->double_sparsity().Stats(again.seqs[1])->predicted_rows,
              21 * (c.num_layers - 2));
  }
}

TEST(OffloadEngine, PredictionOnGoldenModelsRunsAndIsMeasured) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    OffloadOptions oo;
    oo.measure_prediction_recall = true;
    oo.own_query_layers = 1;  // the golden models have 2–3 layers: predict all but layer 0
    CpuBackend backend;
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);
    ASSERT_NE(off, nullptr);
    const ModelConfig& c = off->config();
    AttentionOptions o = SparseOptions(c.head_dim, 16, 0.125);  // all channels: no config
    o.dense_layers = 0;
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(160, static_cast<int>(c.vocab_size), 2)};
    const BatchRun got = RunBatch(*off, ids, {96}, o);
    for (float x : got.logits) ASSERT_TRUE(std::isfinite(x));
    const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[0]);
    EXPECT_EQ(st.predicted_rows, 64 * (c.num_layers - 1));
    EXPECT_GT(st.prediction_exact, 0);
    const std::vector<double> recall = PredictionRecall(off->double_sparsity());
    EXPECT_LT(recall[0], 0.0) << "layer 0 uses its own query";
    for (int l = 1; l < c.num_layers; ++l) {
      EXPECT_GE(recall[l], 0.0);
      EXPECT_LE(recall[l], 1.0);
    }
    std::cout << dir << " prediction recall per layer:" << Format(recall) << "\n";
    off->ReleaseSequence(got.seqs[0]);
  }
}

}  // namespace
}  // namespace dsinfer
