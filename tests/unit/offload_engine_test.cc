// The offload tier wired into the forward pass on the CPU backend (docs/offload.md). In the
// offload modes attention reads only rows the tier gathered into its fetch buffers, so:
// offload with exact (own-query) selection must equal gpu-mode Double Sparsity bit for bit,
// with or without the reuse cache, even one so small it evicts constantly; dense-offload
// must equal dense bit for bit; bytes fetched are counted exactly; cross-layer prediction's
// recall of the exact selection is measured on the golden models and the trained demo
// model; release returns pool, labels and reuse cache to idle; pool exhaustion of one
// sequence leaves another running.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>
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
#include "tests/engine_test_util.h"

namespace dsinfer {
namespace {

std::unique_ptr<Model> LoadModel(const std::string& dir, CpuBackend& backend, KvMode mode,
                                 const OffloadOptions& offload = {}, int64_t pool_tokens = 0) {
  ModelOptions options;
  options.kv_mode = mode;
  options.offload = offload;
  options.kv_pool_tokens = pool_tokens;
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

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

struct BatchRun {
  std::vector<float> logits;  // every step's logits, all sequences, in order
  std::vector<KvBlockPool::SequenceId> seqs;
};

// Several sequences decoded together: each first gets its prefix (`prefill[s]` tokens, one
// multi-row chunk; 0 = none), then one token per step while it has tokens left. Sequences
// stay in the pool (the caller releases them).
BatchRun RunBatch(Model& model, const std::vector<std::vector<int32_t>>& ids,
                  const std::vector<int64_t>& prefill, const AttentionOptions& options) {
  BatchRun run;
  KvBlockPool& pool = model.kv_pool();
  std::vector<int64_t> done(ids.size(), 0);
  for (size_t s = 0; s < ids.size(); ++s) {
    run.seqs.push_back(pool.AddSequence());
    EXPECT_TRUE(pool.Reserve(run.seqs[s], static_cast<int64_t>(ids[s].size())).ok());
  }
  std::vector<float> logits;
  for (bool any = true; any;) {
    any = false;
    ForwardBatch batch;
    for (size_t s = 0; s < ids.size(); ++s) {
      if (done[s] >= static_cast<int64_t>(ids[s].size())) continue;
      const int64_t count = done[s] == 0 && prefill[s] > 0 ? prefill[s] : 1;
      batch.Add(run.seqs[s], ids[s].data() + done[s], count, done[s], false);
      batch.sequences.back().attention = &options;
      done[s] += count;
      any = true;
    }
    if (!any) break;
    absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) break;
    run.logits.insert(run.logits.end(), logits.begin(), logits.end());
  }
  return run;
}

bool BitEqual(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

AttentionOptions SparseOptions(int channels, int bits, double ratio) {
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = channels;
  o.label_bits = bits;
  o.token_budget_ratio = ratio;
  o.sink = 2;
  o.recent = 4;
  o.dense_layers = 1;
  return o;
}

// `o` as kv mode offload without resident layers runs it: its dense layers run Double
// Sparsity too (DoubleSparsity::set_dense_layer_limit), so gpu mode equals it with none.
AttentionOptions WithoutDenseLayers(AttentionOptions o) {
  o.dense_layers = 0;
  return o;
}

TEST(OffloadEngine, ExactSelectionEqualsGpuModeBitForBit) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend gpu_backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
    ASSERT_NE(gpu, nullptr);
    const ModelConfig& c = gpu->config();
    const ChannelConfig channels = RandomChannelConfig(c, 21);
    ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(61, static_cast<int>(c.vocab_size), 5),
        RandomIds(43, static_cast<int>(c.vocab_size), 6)};
    const std::vector<int64_t> prefill = {17, 0};  // one prompt chunk, one all-decode
    std::vector<float> previous;
    for (int bits : {16, 4}) {
      // The offload runs below take o with its dense layer, which offload mode without
      // resident layers runs sparse (on its own query): gpu mode with no dense layer.
      const AttentionOptions o = SparseOptions(c.head_dim / 8, bits, 0.25);
      const BatchRun want = RunBatch(*gpu, ids, prefill, WithoutDenseLayers(o));
      EXPECT_FALSE(BitEqual(previous, want.logits)) << "4-bit labels select differently";
      previous = want.logits;
      std::vector<SequenceAttentionStats> want_stats;
      for (auto seq : want.seqs) want_stats.push_back(*gpu->double_sparsity().Stats(seq));
      for (auto seq : want.seqs) gpu->ReleaseSequence(seq);
      // Reuse off, a cache large enough for every row, one so small it evicts all the time,
      // and previous-step reuse (-1).
      for (int64_t reuse : {int64_t{0}, int64_t{4096}, int64_t{5}, int64_t{-1}}) {
        SCOPED_TRACE(testing::Message() << "bits " << bits << " reuse " << reuse);
        OffloadOptions oo;
        oo.predict = false;
        oo.reuse_rows = std::max<int64_t>(reuse, 0);
        oo.reuse_previous = reuse < 0;
        oo.resident_layers = 0;  // every layer from the host (ResidentLayersReadNothingFromTheHost)
        CpuBackend backend;
        std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo);
        ASSERT_NE(off, nullptr);
        ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
        const BatchRun got = RunBatch(*off, ids, prefill, o);
        EXPECT_TRUE(BitEqual(want.logits, got.logits));
        int64_t looked_up = 0, reused = 0;
        for (size_t s = 0; s < got.seqs.size(); ++s) {
          const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[s]);
          EXPECT_EQ(st.tokens_attended, want_stats[s].tokens_attended);
          EXPECT_EQ(st.sparse_rows, want_stats[s].sparse_rows);
          EXPECT_EQ(st.predicted_rows, 0);
          // Exact accounting: every decode (layer, row, KV head) attended its set, of which
          // all but the current token came through the buffer; prefill chunks read nothing
          // from the host here (they have no earlier chunk).
          const int64_t decode_rows = static_cast<int64_t>(ids[s].size()) - prefill[s];
          int64_t prefill_attended = 0;
          for (int64_t r = 0; r < prefill[s]; ++r) prefill_attended += r + 1;
          const int64_t attended_decode =
              st.tokens_attended - prefill_attended * c.num_heads_kv * c.num_layers;
          EXPECT_EQ(st.fetch.rows_requested,
                    attended_decode - decode_rows * c.num_layers * c.num_heads_kv);
          EXPECT_EQ(st.fetch.rows_from_host + st.fetch.rows_reused, st.fetch.rows_requested);
          EXPECT_EQ(st.fetch.bytes_from_host,
                    st.fetch.rows_from_host * 2 * c.head_dim * static_cast<int64_t>(sizeof(float)));
          if (reuse == 0) {
            EXPECT_EQ(st.fetch.rows_reused, 0);
          }
          looked_up += st.fetch.rows_looked_up;
          reused += st.fetch.rows_reused;
        }
        if (reuse == 4096 || reuse < 0) {
          // Random-weight models select nearly at random, so only "some" is certain here;
          // the trained demo model's rate is measured below.
          EXPECT_GT(reused, 0);
          std::cout << dir << " bits " << bits << ": reuse " << reuse << " hit rate "
                    << static_cast<double>(reused) / looked_up << "\n";
        }
        for (auto seq : got.seqs) off->ReleaseSequence(seq);
        EXPECT_EQ(off->offload_tier()->reuse_slots_in_use(), 0);
      }
    }
  }
}

// Resident layers (OffloadOptions::resident_layers; none by default): the first layers' K/V
// in the backend's device memory. Three runs of one sequence, exact selection:
//   host:  no resident layer; the dense layer runs sparse, every row comes from the host;
//   one:   layer 0 resident and sparse (no dense layer): its rows are gathered from the device
//          and count as rows_resident; logits bit-equal to `host`, host rows fewer by exactly
//          those;
//   two:   layers 0 and 1 resident with one dense layer: layer 0 runs dense in place (fetches
//          nothing), layer 1 sparse from the device; logits bit-equal to gpu mode.
TEST(OffloadEngine, ResidentLayersReadNothingFromTheHost) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend b0, b1, b2, bg;
    OffloadOptions host, one, two;
    host.predict = one.predict = two.predict = false;
    host.reuse_rows = one.reuse_rows = two.reuse_rows = 0;
    host.resident_layers = -1;  // the default: none
    one.resident_layers = 1;
    two.resident_layers = 2;
    std::unique_ptr<Model> h = LoadModel(dir, b0, KvMode::kOffload, host);
    std::unique_ptr<Model> r1 = LoadModel(dir, b1, KvMode::kOffload, one);
    std::unique_ptr<Model> r2 = LoadModel(dir, b2, KvMode::kOffload, two);
    std::unique_ptr<Model> gpu = LoadModel(dir, bg, KvMode::kGpu);
    for (const auto* m : {&h, &r1, &r2, &gpu}) ASSERT_NE(*m, nullptr);
    EXPECT_EQ(h->kv_pool().options().resident_layers, 0);
    EXPECT_EQ(r2->kv_pool().options().resident_layers, 2);
    const ModelConfig& c = h->config();
    const ChannelConfig channels = RandomChannelConfig(c, 23);
    for (const auto* m : {&h, &r1, &r2, &gpu}) {
      ASSERT_TRUE((*m)->double_sparsity().SetChannelConfig(channels).ok());
    }
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(40, static_cast<int>(c.vocab_size), 8)};
    const AttentionOptions o = SparseOptions(c.head_dim / 8, 16, 0.25);
    const BatchRun a = RunBatch(*h, ids, {12}, o);
    const BatchRun b = RunBatch(*r1, ids, {12}, WithoutDenseLayers(o));
    const BatchRun d = RunBatch(*r2, ids, {12}, o);
    const BatchRun want = RunBatch(*gpu, ids, {12}, o);
    EXPECT_TRUE(BitEqual(a.logits, b.logits));
    EXPECT_TRUE(BitEqual(d.logits, want.logits));
    EXPECT_FALSE(BitEqual(a.logits, d.logits)) << "the dense layer changes the logits";
    const FetchCounters& fa = h->double_sparsity().Stats(a.seqs[0])->fetch;
    const FetchCounters& fb = r1->double_sparsity().Stats(b.seqs[0])->fetch;
    const FetchCounters& fd = r2->double_sparsity().Stats(d.seqs[0])->fetch;
    EXPECT_EQ(fa.rows_resident, 0);
    EXPECT_EQ(fa.rows_from_host, fa.rows_requested);
    // Layer 0's sparse rows: from the device in `one`, not fetched at all in `two`.
    EXPECT_GT(fb.rows_resident, 0);
    EXPECT_EQ(fb.rows_requested, fa.rows_requested);
    EXPECT_EQ(fb.rows_from_host, fa.rows_from_host - fb.rows_resident);
    EXPECT_GT(fd.rows_resident, 0);
    EXPECT_EQ(fd.rows_requested, fa.rows_requested - fb.rows_resident);
    EXPECT_EQ(fd.rows_from_host + fd.rows_resident, fd.rows_requested);
    EXPECT_EQ(fd.rows_from_host, fa.rows_from_host - fb.rows_resident - fd.rows_resident);
    for (const FetchCounters* f : {&fa, &fb, &fd}) {
      EXPECT_EQ(f->bytes_from_host,
                f->rows_from_host * 2 * c.head_dim * static_cast<int64_t>(sizeof(float)));
    }
    h->ReleaseSequence(a.seqs[0]);
    r1->ReleaseSequence(b.seqs[0]);
    r2->ReleaseSequence(d.seqs[0]);
    EXPECT_EQ(r2->kv_pool().blocks_in_use(), 0);
  }
  // -1 resolves to 0 in every mode: the GPU holds no K/V unless asked to.
  ModelOptions mo;
  mo.kv_mode = KvMode::kOffload;
  mo.attention.dense_layers = 3;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.kv_mode = KvMode::kDenseOffload;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.offload.resident_layers = 5;
  EXPECT_EQ(ResidentLayers(mo, 32), 5);
  EXPECT_EQ(ResidentLayers(mo, 2), 2);
  mo.kv_mode = KvMode::kGpu;
  EXPECT_EQ(ResidentLayers(mo, 32), 0);
  mo.offload.resident_layers = -2;
  EXPECT_FALSE(mo.Validate().ok());
}

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

TEST(OffloadEngine, DenseOffloadEqualsDenseAndStreamsEveryRow) {
  for (const char* dir : kGoldenModels) {
    SCOPED_TRACE(dir);
    CpuBackend gpu_backend, backend;
    std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
    std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kDenseOffload);
    ASSERT_NE(gpu, nullptr);
    ASSERT_NE(off, nullptr);
    const ModelConfig& c = gpu->config();
    // Dense-offload ignores Double Sparsity even when a request asks for it.
    ASSERT_TRUE(off->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 4)).ok());
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    const AttentionOptions sparse = SparseOptions(c.head_dim / 8, 16, 0.25);
    const std::vector<std::vector<int32_t>> ids = {
        RandomIds(37, static_cast<int>(c.vocab_size), 8),
        RandomIds(29, static_cast<int>(c.vocab_size), 9)};
    const std::vector<int64_t> prefill = {9, 0};
    const BatchRun want = RunBatch(*gpu, ids, prefill, dense);
    const BatchRun got = RunBatch(*off, ids, prefill, sparse);
    EXPECT_TRUE(BitEqual(want.logits, got.logits));
    for (size_t s = 0; s < ids.size(); ++s) {
      const SequenceAttentionStats& st = *off->double_sparsity().Stats(got.seqs[s]);
      EXPECT_EQ(st.sparse_rows, 0);
      EXPECT_EQ(off->double_sparsity().labels().SequenceBytes(got.seqs[s]), 0);
      // A decode row at position p streams p rows per layer and KV head.
      int64_t rows = 0;
      for (int64_t p = prefill[s]; p < static_cast<int64_t>(ids[s].size()); ++p) rows += p;
      rows *= c.num_layers * c.num_heads_kv;
      EXPECT_EQ(st.fetch.rows_from_host, rows);
      EXPECT_EQ(st.fetch.rows_reused, 0);
      EXPECT_EQ(st.fetch.bytes_from_host, rows * 2 * c.head_dim * 4);
    }
  }
}

TEST(OffloadEngine, ChunkedPrefillCountsEarlierChunksAsHostReads) {
  CpuBackend backend;
  OffloadOptions all_on_host;
  all_on_host.resident_layers = 0;
  std::unique_ptr<Model> off =
      LoadModel(kGoldenModels[0], backend, KvMode::kOffload, all_on_host);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = off->config();
  const std::vector<int32_t> ids = RandomIds(30, static_cast<int>(c.vocab_size), 3);
  KvBlockPool::SequenceId seq = off->kv_pool().AddSequence();
  ASSERT_TRUE(off->kv_pool().Reserve(seq, 30).ok());
  std::vector<float> logits;
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  for (int64_t start : {0, 12}) {
    ForwardBatch batch;
    batch.Add(seq, ids.data() + start, start == 0 ? 12 : 18, start, false);
    batch.sequences.back().attention = &dense;
    ASSERT_TRUE(off->Forward(batch, logits).ok());
  }
  const SequenceAttentionStats& st = *off->double_sparsity().Stats(seq);
  EXPECT_EQ(st.fetch.rows_from_host, 12 * c.num_layers * c.num_heads_kv);
  EXPECT_EQ(off->offload_tier()->step_totals().rows_from_host, st.fetch.rows_from_host);
  // One decode step after it: dense streams the 30 cached rows of every layer and KV head.
  ForwardBatch step;
  const int32_t next = 5;
  step.Add(seq, &next, 1, 30, false);
  step.sequences.back().attention = &dense;
  ASSERT_TRUE(off->kv_pool().Reserve(seq, 31).ok());
  ASSERT_TRUE(off->Forward(step, logits).ok());
  EXPECT_EQ(off->offload_tier()->step_totals().rows_from_host, 30 * c.num_layers * c.num_heads_kv);
  EXPECT_EQ(off->offload_tier()->step_totals().bytes_from_host,
            30 * c.num_layers * c.num_heads_kv * 2 * c.head_dim * 4);
  off->ReleaseSequence(seq);
}

// Prediction recall: the share of the exact selection's free (non-kept) tokens that the
// predicted selection also holds, per layer.
std::vector<double> PredictionRecall(const DoubleSparsity& ds) {
  std::vector<double> recall;
  for (size_t l = 0; l < ds.prediction_exact().size(); ++l) {
    recall.push_back(ds.prediction_exact()[l] > 0
                         ? static_cast<double>(ds.prediction_overlap()[l]) /
                               ds.prediction_exact()[l]
                         : -1.0);
  }
  return recall;
}

std::string Format(const std::vector<double>& v) {
  std::string s;
  for (double x : v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), x < 0 ? "   -  " : " %.3f", x);
    s += buf;
  }
  return s;
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
  if (!shipped->prediction.has_value()) GTEST_SKIP() << dir << "'s channel config has no dsinfer.prediction";
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
    std::cout << "demo, shipped channels, " << (calibrated ? "calibrated exemptions" : "every layer from 2 predicted")
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

TEST(OffloadEngine, ReleaseReturnsEverythingToIdle) {
  CpuBackend backend;
  std::unique_ptr<Model> off = LoadModel(kGoldenModels[1], backend, KvMode::kOffload);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = off->config();
  ASSERT_TRUE(off->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 1)).ok());
  const AttentionOptions o = SparseOptions(16, 4, 0.25);
  const std::vector<std::vector<int32_t>> ids = {RandomIds(40, static_cast<int>(c.vocab_size), 1),
                                                 RandomIds(30, static_cast<int>(c.vocab_size), 2)};
  BatchRun run = RunBatch(*off, ids, {10, 10}, o);
  EXPECT_GT(off->offload_tier()->reuse_slots_in_use(), 0);
  EXPECT_GT(off->double_sparsity().labels().bytes_in_use(), 0);
  // Finish: the model releases sequence 0; cancel: only the pool drops sequence 1 (as a
  // scheduler would), and the next step frees the rest.
  off->ReleaseSequence(run.seqs[0]);
  EXPECT_EQ(off->offload_tier()->Counters(run.seqs[0]), nullptr);
  off->kv_pool().Release(run.seqs[1]);
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  BatchRun other = RunBatch(*off, {{1, 2, 3}}, {0}, dense);
  off->ReleaseSequence(other.seqs[0]);
  EXPECT_EQ(off->offload_tier()->reuse_slots_in_use(), 0);
  EXPECT_EQ(off->double_sparsity().labels().bytes_in_use(), 0);
  EXPECT_EQ(off->kv_pool().bytes_in_use(), 0);
  EXPECT_EQ(off->offload_tier()->Counters(run.seqs[1]), nullptr);
}

TEST(OffloadEngine, PoolExhaustionRefusesOneSequenceAndTheOtherRunsOn) {
  const char* dir = kGoldenModels[0];
  CpuBackend gpu_backend, backend;
  std::unique_ptr<Model> gpu = LoadModel(dir, gpu_backend, KvMode::kGpu);
  OffloadOptions oo;
  oo.predict = false;
  std::unique_ptr<Model> off = LoadModel(dir, backend, KvMode::kOffload, oo, /*pool_tokens=*/64);
  ASSERT_NE(gpu, nullptr);
  ASSERT_NE(off, nullptr);
  const ModelConfig& c = gpu->config();
  const ChannelConfig channels = RandomChannelConfig(c, 2);
  ASSERT_TRUE(gpu->double_sparsity().SetChannelConfig(channels).ok());
  ASSERT_TRUE(off->double_sparsity().SetChannelConfig(channels).ok());
  const AttentionOptions o = SparseOptions(8, 16, 0.25);
  const std::vector<int32_t> ids = RandomIds(48, static_cast<int>(c.vocab_size), 7);
  const BatchRun want = RunBatch(*gpu, {ids}, {8}, WithoutDenseLayers(o));
  // Sequence A takes 48 of the 64 tokens; B asks for 32 and is refused, changing nothing.
  KvBlockPool& pool = off->kv_pool();
  const KvBlockPool::SequenceId a = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(a, 48).ok());
  const KvBlockPool::SequenceId b = pool.AddSequence();
  const int64_t free_before = pool.free_blocks();
  const absl::Status refused = pool.Reserve(b, 32);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(pool.free_blocks(), free_before);
  pool.Release(b);
  std::vector<float> all, logits;
  for (int64_t i = 0; i < 48;) {
    ForwardBatch batch;
    const int64_t n = i == 0 ? 8 : 1;
    batch.Add(a, ids.data() + i, n, i, false);
    batch.sequences.back().attention = &o;
    ASSERT_TRUE(off->Forward(batch, logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
    i += n;
  }
  EXPECT_TRUE(BitEqual(want.logits, all));
  off->ReleaseSequence(a);
  EXPECT_EQ(pool.bytes_in_use(), 0);
}

TEST(OffloadEngine, ParsesKvModes) {
  EXPECT_EQ(*ParseKvMode("gpu"), KvMode::kGpu);
  EXPECT_EQ(*ParseKvMode("offload"), KvMode::kOffload);
  EXPECT_EQ(*ParseKvMode("dense-offload"), KvMode::kDenseOffload);
  EXPECT_EQ(ParseKvMode("host").status().code(), absl::StatusCode::kInvalidArgument);
  for (KvMode m : {KvMode::kGpu, KvMode::kOffload, KvMode::kDenseOffload}) {
    EXPECT_EQ(*ParseKvMode(KvModeName(m)), m);
  }
  ModelOptions bad;
  bad.offload.reuse_rows = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace dsinfer
