// Double Sparsity wired into the forward pass, on the golden models: with every channel and
// a budget covering the whole context it must equal dense attention; with a smaller budget
// each sparse row must equal dense attention restricted to exactly the selected set, and
// that set must be the top-k of the approximate scores plus the kept tokens. Also the label
// cache's lifetime and the per-sequence stats.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/channel_config.h"
#include "engine/sparse/double_sparsity.h"
#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "tests/engine_test_util.h"
#include "tests/offload_test_pool.h"

namespace dsinfer {
namespace {

// Feeds `ids` one token per step (every row a decode row) and returns all logits.
std::vector<float> DecodeAll(Model& model, const std::vector<int32_t>& ids,
                             const AttentionOptions* options, KvBlockPool::SequenceId* out_seq = nullptr) {
  KvBlockPool& pool = model.kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  EXPECT_TRUE(pool.Reserve(seq, static_cast<int64_t>(ids.size())).ok());
  std::vector<float> all, logits;
  for (size_t i = 0; i < ids.size(); ++i) {
    ForwardBatch batch;
    batch.Add(seq, &ids[i], 1, static_cast<int64_t>(i), false);
    batch.sequences.back().attention = options;
    absl::Status st = model.Forward(batch, logits);
    EXPECT_TRUE(st.ok()) << st;
    all.insert(all.end(), logits.begin(), logits.end());
  }
  if (out_seq != nullptr) {
    *out_seq = seq;
  } else {
    model.ReleaseSequence(seq);
  }
  return all;
}

TEST(DoubleSparsityEngine, AllChannelsAndFullBudgetEqualDense) {
  for (const char* dir : kGoldenModels) {
    CpuBackend backend;
    auto model = Model::Load(dir, backend);
    ASSERT_TRUE(model.ok()) << model.status();
    const ModelConfig& c = (*model)->config();
    const std::vector<int32_t> ids = RandomIds(40, static_cast<int>(c.vocab_size), 11);
    AttentionOptions dense;
    dense.mode = AttentionMode::kDense;
    const std::vector<float> want = DecodeAll(**model, ids, &dense);
    // Without a channel config (natural channel order) and with a shuffled one, 16-bit labels.
    for (bool with_config : {false, true}) {
      if (with_config) {
        ASSERT_TRUE((*model)->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 3)).ok());
      }
      AttentionOptions ds;
      ds.mode = AttentionMode::kDoubleSparse;
      ds.channels = c.head_dim;
      ds.token_budget = 1000;
      ds.dense_layers = 0;
      KvBlockPool::SequenceId seq;
      const std::vector<float> got = DecodeAll(**model, ids, &ds, &seq);
      ASSERT_EQ(got.size(), want.size());
      float max_logit = 0.0f, max_diff = 0.0f;
      for (size_t i = 0; i < want.size(); ++i) {
        max_logit = std::max(max_logit, std::abs(want[i]));
        max_diff = std::max(max_diff, std::abs(want[i] - got[i]));
      }
      EXPECT_LE(max_diff, 1e-5f * max_logit) << dir << " config " << with_config;
      const SequenceAttentionStats* stats = (*model)->double_sparsity().Stats(seq);
      ASSERT_NE(stats, nullptr);
      EXPECT_EQ(stats->sparse_rows, 40 * c.num_layers);
      EXPECT_EQ(stats->last_mode, AttentionMode::kDoubleSparse);
      EXPECT_EQ(stats->tokens_attended, stats->tokens_context);
      EXPECT_GT((*model)->double_sparsity().labels().SequenceBytes(seq), 0);
      // Releasing the sequence returns every label byte.
      (*model)->ReleaseSequence(seq);
      EXPECT_EQ((*model)->double_sparsity().labels().bytes_in_use(), 0);
    }
  }
}

// Dense attention of one query row over an explicit token set, in double.
std::vector<double> BruteForceAttention(const float* q, const PagedKvView<const float>& kv,
                                        int hq, int hkv, int d,
                                        const std::vector<std::vector<int32_t>>& sets) {
  std::vector<double> out(hq * d, 0.0);
  for (int h = 0; h < hq; ++h) {
    const int g = h / (hq / hkv);
    std::vector<double> logits;
    for (int32_t t : sets[g]) {
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += static_cast<double>(q[h * d + c]) * kv.KRow(t, g)[c];
      logits.push_back(dot / std::sqrt(static_cast<double>(d)));
    }
    const double top = *std::max_element(logits.begin(), logits.end());
    double total = 0;
    for (double& l : logits) total += (l = std::exp(l - top));
    for (size_t i = 0; i < sets[g].size(); ++i) {
      for (int c = 0; c < d; ++c) out[h * d + c] += logits[i] / total * kv.VRow(sets[g][i], g)[c];
    }
  }
  return out;
}

// Drives DoubleSparsity directly over a pool of random keys/values: prefill rows write
// labels, then one decode row is attended and checked against brute force.
void CheckSparseRow(int hq, int hkv, int d, int r, int bits, GroupAggregation agg, int tokens,
                    int budget, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "hq=" << hq << " hkv=" << hkv << " d=" << d << " r=" << r
                                  << " bits=" << bits << " tokens=" << tokens << " k=" << budget);
  PageableHostMemory memory;
  KvPoolOptions po;
  po.layers = 1;
  po.kv_heads = hkv;
  po.head_dim = d;
  po.block_tokens = 16;
  po.num_blocks = (tokens + 15) / 16 + 2;
  auto pool = KvBlockPool::Create(po, memory);
  ASSERT_TRUE(pool.ok());
  const KvBlockPool::SequenceId seq = (*pool)->AddSequence();
  ASSERT_TRUE((*pool)->Reserve(seq, tokens).ok());
  // qkv rows for every token; keys and values also go into the pool as RopeAndStoreKv would.
  const int64_t cols = static_cast<int64_t>(hq + 2 * hkv) * d;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> qkv(tokens * cols);
  for (float& x : qkv) x = dist(rng);
  PagedKvView<const float> kv = CpuKvView(**pool, 0, seq);
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < hkv; ++h) {
      std::copy_n(&qkv[t * cols + hq * d + h * d], d, const_cast<float*>(kv.KRow(t, h)));
      std::copy_n(&qkv[t * cols + (hq + hkv) * d + h * d], d, const_cast<float*>(kv.VRow(t, h)));
    }
  }
  ModelConfig mc;
  mc.num_layers = 1;
  mc.num_heads_q = hq;
  mc.num_heads_kv = hkv;
  mc.head_dim = d;
  DoubleSparsity ds(1, hq, hkv, d);
  ChannelConfig config = RandomChannelConfig(mc, seed + 1);
  ASSERT_TRUE(ds.SetChannelConfig(config).ok());
  AttentionOptions o;
  o.mode = AttentionMode::kDoubleSparse;
  o.channels = r;
  o.label_bits = bits;
  o.aggregation = agg;
  o.token_budget = budget;
  o.sink = 2;
  o.recent = 3;
  o.dense_layers = 0;
  o.statistic = ChannelStatistic::kQK;
  // Prefill rows (all but the last token) write labels; then the decode row.
  ForwardBatch prefill;
  std::vector<int32_t> ids(tokens, 1);
  prefill.Add(seq, ids.data(), tokens - 1, 0, false);
  prefill.sequences.back().attention = &o;
  ASSERT_TRUE(ds.BeginStep(prefill, **pool).ok());
  EXPECT_FALSE(ds.AnySparse(0)) << "prefill is dense";
  ASSERT_TRUE(ds.StoreLabelsHost(0, prefill, qkv.data(), cols).ok());
  ForwardBatch decode;
  decode.Add(seq, ids.data(), 1, tokens - 1, false);
  decode.sequences.back().attention = &o;
  const float* row = &qkv[(tokens - 1) * cols];
  ASSERT_TRUE(ds.BeginStep(decode, **pool).ok());
  ASSERT_TRUE(ds.IsSparse(0, 0));
  ASSERT_TRUE(ds.StoreLabelsHost(0, decode, row, cols).ok());
  std::vector<float> out(hq * d);
  ASSERT_TRUE(ds.AttendHost(0, decode, 0, kv, row, cols, out.data()).ok());
  const auto& sets = ds.last_selection();
  ASSERT_EQ(static_cast<int>(sets.size()), hkv);

  // The expected set per KV head, from approximate scores computed here independently.
  auto channels = KvHeadChannels(config, ChannelStatistic::kQK, 0, hq, hkv, r);
  ASSERT_TRUE(channels.ok());
  const int group = hq / hkv;
  for (int h = 0; h < hkv; ++h) {
    std::vector<double> score(tokens);
    for (int t = 0; t < tokens; ++t) {
      // Label values as stored: fp16, or 4-bit min-max of the row of r channels.
      std::vector<double> label(r);
      std::vector<float> raw(r);
      for (int j = 0; j < r; ++j) raw[j] = kv.KRow(t, h)[(*channels)[h * r + j]];
      if (bits == 16) {
        for (int j = 0; j < r; ++j) label[j] = F16ToF32(F32ToF16(raw[j]));
      } else {
        const float lo = *std::min_element(raw.begin(), raw.end());
        const float hi = *std::max_element(raw.begin(), raw.end());
        const float m = F16ToF32(F32ToF16(lo)), s = F16ToF32(F32ToF16((hi - lo) / 15.0f));
        for (int j = 0; j < r; ++j) {
          label[j] = s > 0 ? std::clamp<double>(std::lround((raw[j] - m) / s), 0, 15) * s + m : m;
        }
      }
      double agg_score = agg == GroupAggregation::kMax ? -1e300 : 0.0;
      for (int g = 0; g < group; ++g) {
        double dot = 0;
        for (int j = 0; j < r; ++j) dot += row[(h * group + g) * d + (*channels)[h * r + j]] * label[j];
        agg_score = agg == GroupAggregation::kMax ? std::max(agg_score, dot) : agg_score + dot;
      }
      score[t] = agg_score;
    }
    std::set<int32_t> want;
    for (int t = 0; t < o.sink; ++t) want.insert(t);
    for (int t = tokens - o.recent; t < tokens; ++t) want.insert(t);
    std::vector<int32_t> order(tokens);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return score[a] > score[b]; });
    for (int32_t t : order) {
      if (static_cast<int>(want.size()) >= budget) break;
      want.insert(t);
    }
    EXPECT_EQ(std::vector<int32_t>(want.begin(), want.end()), sets[h]) << "kv head " << h;
  }
  const std::vector<double> expect = BruteForceAttention(row, kv, hq, hkv, d, sets);
  for (int i = 0; i < hq * d; ++i) EXPECT_NEAR(out[i], expect[i], 1e-5) << i;
  const SequenceAttentionStats* stats = ds.Stats(seq);
  ASSERT_NE(stats, nullptr);
  EXPECT_EQ(stats->sparse_rows, 1);
  EXPECT_EQ(stats->dense_rows, tokens - 1);
  // Prefill rows attend to their whole prefix; the sparse row to `budget` tokens per KV head.
  const int64_t prefix_sum = static_cast<int64_t>(tokens - 1) * tokens / 2;
  EXPECT_EQ(stats->tokens_attended, hkv * (prefix_sum + budget));
  EXPECT_EQ(stats->tokens_context, hkv * (prefix_sum + tokens));

  // A backend that selects on the device counts the same row the same way (CountDeviceRow).
  DoubleSparsity device(1, hq, hkv, d);
  ASSERT_TRUE(device.SetChannelConfig(config).ok());
  ASSERT_TRUE(device.BeginStep(prefill, **pool).ok());
  ASSERT_TRUE(device.BeginStep(decode, **pool).ok());
  device.CountDeviceRow(decode, 0);
  const SequenceAttentionStats* counted = device.Stats(seq);
  ASSERT_NE(counted, nullptr);
  EXPECT_EQ(counted->sparse_rows, stats->sparse_rows);
  EXPECT_EQ(counted->dense_rows, stats->dense_rows);
  EXPECT_EQ(counted->tokens_attended, stats->tokens_attended);
  EXPECT_EQ(counted->tokens_context, stats->tokens_context);
}

TEST(DoubleSparsityEngine, SparseRowEqualsAttentionOverTheSelectedSet) {
  CheckSparseRow(4, 2, 64, 8, 16, GroupAggregation::kSum, 100, 20, 1);
  CheckSparseRow(4, 1, 128, 16, 16, GroupAggregation::kMax, 77, 9, 2);
  CheckSparseRow(4, 4, 64, 4, 4, GroupAggregation::kSum, 130, 33, 3);
  CheckSparseRow(8, 2, 32, 7, 4, GroupAggregation::kMax, 50, 6, 4);
}

TEST(DoubleSparsityEngine, SmallBudgetChangesLogitsAndCountsTokens) {
  CpuBackend backend;
  auto model = Model::Load(kGoldenModels[0], backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  ASSERT_TRUE((*model)->double_sparsity().SetChannelConfig(RandomChannelConfig(c, 9)).ok());
  const std::vector<int32_t> ids = RandomIds(48, static_cast<int>(c.vocab_size), 12);
  AttentionOptions ds;
  ds.mode = AttentionMode::kDoubleSparse;
  ds.channels = 8;
  ds.label_bits = 4;
  ds.token_budget_ratio = 0.25;
  ds.recent = 2;
  ds.dense_layers = 1;
  KvBlockPool::SequenceId seq;
  const std::vector<float> got = DecodeAll(**model, ids, &ds, &seq);
  for (float x : got) ASSERT_TRUE(std::isfinite(x));
  const SequenceAttentionStats* stats = (*model)->double_sparsity().Stats(seq);
  ASSERT_NE(stats, nullptr);
  EXPECT_EQ(stats->dense_rows, 48);                        // layer 0 of every step
  EXPECT_EQ(stats->sparse_rows, 48 * (c.num_layers - 1));  // the other layers
  // Layer 0 reads everything, layer 1 about a quarter (plus the kept tokens).
  EXPECT_LT(stats->tokens_attended, stats->tokens_context * 7 / 10);
  EXPECT_GT(stats->tokens_attended, stats->tokens_context / 2);
  // The pool alone releasing the sequence frees its labels at the next step.
  (*model)->kv_pool().Release(seq);
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  DecodeAll(**model, {1, 2}, &dense);
  EXPECT_EQ((*model)->double_sparsity().labels().bytes_in_use(), 0);
}

// Each layer's sparse sequences (a graph step plans every layer's own set; the others run
// dense beside them), with requests whose dense layers differ.
TEST(DoubleSparsityEngine, SparseSequencesPerLayer) {
  const int layers = 3, hq = 4, hkv = 2, d = 16;
  PageableHostMemory memory;
  std::mt19937 rng(7);
  const std::unique_ptr<KvBlockPool> pool = RandomF32Pool(layers, hkv, d, memory, rng);
  ASSERT_NE(pool, nullptr);
  ModelConfig mc;
  mc.num_layers = layers;
  mc.num_heads_q = hq;
  mc.num_heads_kv = hkv;
  mc.head_dim = d;
  DoubleSparsity ds(layers, hq, hkv, d);
  ASSERT_TRUE(ds.SetChannelConfig(RandomChannelConfig(mc, 5)).ok());
  AttentionOptions from_1, from_2, dense;
  from_1.mode = from_2.mode = AttentionMode::kDoubleSparse;
  from_1.channels = from_2.channels = 4;
  from_1.dense_layers = 1;  // sparse at layers 1 and 2
  from_2.dense_layers = 2;  // sparse at layer 2 only
  dense.mode = AttentionMode::kDense;
  std::vector<KvBlockPool::SequenceId> seqs;
  for (int i = 0; i < 3; ++i) {
    seqs.push_back(pool->AddSequence());
    ASSERT_TRUE(pool->Reserve(seqs.back(), 40).ok());
  }
  const int32_t id = 1;
  auto step = [&](std::vector<const AttentionOptions*> options) {
    ForwardBatch batch;
    for (size_t i = 0; i < options.size(); ++i) {
      batch.Add(seqs[i], &id, 1, 30, false);  // decode rows
      batch.sequences.back().attention = options[i];
    }
    EXPECT_TRUE(ds.BeginStep(batch, *pool).ok());
  };
  using Set = std::vector<size_t>;
  step({&from_1, &dense});
  EXPECT_EQ(ds.SparseSequences(0), Set{});
  EXPECT_EQ(ds.SparseSequences(1), Set{0});
  EXPECT_EQ(ds.SparseSequences(2), Set{0});
  step({&dense, &from_1, &from_1});
  EXPECT_EQ(ds.SparseSequences(2), (Set{1, 2}));
  step({&from_1, &dense, &from_2});
  EXPECT_EQ(ds.SparseSequences(0), Set{});
  EXPECT_EQ(ds.SparseSequences(1), Set{0});
  EXPECT_EQ(ds.SparseSequences(2), (Set{0, 2}));
  for (int l = 0; l < layers; ++l) {
    for (size_t j = 0; j < 3; ++j) {
      const Set sparse = ds.SparseSequences(l);
      EXPECT_EQ(ds.IsSparse(j, l), std::count(sparse.begin(), sparse.end(), j) == 1) << l << j;
    }
  }
  step({&dense, &dense});
  for (int l = 0; l < layers; ++l) EXPECT_TRUE(ds.SparseSequences(l).empty()) << l;
}

TEST(DoubleSparsityEngine, RefusesDoubleSparseWithoutChannelsAndAutoStaysDense) {
  CpuBackend backend;
  auto model = Model::Load(kGoldenModels[0], backend);
  ASSERT_TRUE(model.ok());
  KvBlockPool& pool = (*model)->kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(seq, 8).ok());
  AttentionOptions ds;
  ds.mode = AttentionMode::kDoubleSparse;
  ds.channels = 8;
  const int32_t id = 3;
  ForwardBatch batch;
  batch.Add(seq, &id, 1, 0, false);
  batch.sequences.back().attention = &ds;
  std::vector<float> logits;
  absl::Status st = (*model)->Forward(batch, logits);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
  EXPECT_NE(st.message().find("channel config"), std::string::npos) << st;
  AttentionOptions bad = ds;
  bad.label_bits = 8;
  batch.sequences.back().attention = &bad;
  EXPECT_EQ((*model)->Forward(batch, logits).code(), absl::StatusCode::kInvalidArgument);
  AttentionOptions automatic;
  automatic.dense_below = 0;
  automatic.dense_layers = 0;
  batch.sequences.back().attention = &automatic;
  ASSERT_TRUE((*model)->Forward(batch, logits).ok());
  EXPECT_EQ((*model)->double_sparsity().Stats(seq)->last_mode, AttentionMode::kDense);
  EXPECT_EQ((*model)->double_sparsity().labels().bytes_in_use(), 0);
  (*model)->ReleaseSequence(seq);
}

}  // namespace
}  // namespace dsinfer
