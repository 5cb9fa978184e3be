// Calibration on a tiny golden model: the written file loads back with the same channels
// and validates against the model; statistics accumulate over every block (two blocks give
// the token-weighted mean of each block alone — the reference kept only the last block's
// qk); and a calibrated config drives Double Sparsity.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "engine/sparse/calibration.h"
#include "engine/sparse/channel_config.h"
#include "gtest/gtest.h"
#include "tests/engine_test_util.h"

namespace dsinfer {
namespace {

constexpr char kModel[] = "tests/data/golden/llama-gqa-hd64";

TEST(Calibration, WritesAConfigThatLoadsBackWithTheSameChannels) {
  CpuBackend backend;
  auto model = Model::Load(kModel, backend);
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& c = (*model)->config();
  const std::vector<int32_t> ids = RandomIds(100, static_cast<int>(c.vocab_size), 21);
  CalibrationOptions options;
  options.block = 40;  // blocks of 40, 40, 20
  options.model_name = kModel;
  options.data_source = "random ids";
  auto config = Calibrate(**model, ids, options);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ((*model)->kv_pool().sequences(), 0);
  EXPECT_EQ(config->metadata["tokens"], 100);
  EXPECT_EQ(config->metadata["blocks"], 3);
  ASSERT_TRUE(ValidateChannelConfig(*config, c.num_layers, c.num_heads_q, c.num_heads_kv,
                                    c.head_dim).ok());
  // Orderings are sorted by the recorded statistic, descending.
  const auto& qk = config->metadata["statistic_values"]["qk_proj"];
  for (int l = 0; l < c.num_layers; ++l) {
    for (int h = 0; h < c.num_heads_q; ++h) {
      const auto& order = config->Get(ChannelStatistic::kQK)[l][h];
      for (int j = 1; j < c.head_dim; ++j) {
        EXPECT_GE(qk[l][h][order[j - 1]].get<double>(), qk[l][h][order[j]].get<double>());
      }
    }
  }
  const std::string path = testing::TempDir() + "/calibrated_" +
      std::to_string(::getpid()) + ".json";
  ASSERT_TRUE(WriteChannelConfig(*config, path).ok());
  auto back = LoadChannelConfig(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->orderings, config->orderings);
  for (ChannelStatistic kind : {ChannelStatistic::kQK, ChannelStatistic::kQ, ChannelStatistic::kK}) {
    auto a = KvHeadChannels(*config, kind, 1, c.num_heads_q, c.num_heads_kv, 16);
    auto b = KvHeadChannels(*back, kind, 1, c.num_heads_q, c.num_heads_kv, 16);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
  }
  // The model loads it through ModelOptions and runs Double Sparsity with it.
  ModelOptions mo;
  mo.channel_config_path = path;
  CpuBackend backend2;
  auto model2 = Model::Load(kModel, backend2, mo);
  ASSERT_TRUE(model2.ok()) << model2.status();
  AttentionOptions ds;
  ds.mode = AttentionMode::kDoubleSparse;
  ds.channels = 8;
  ds.token_budget = 4;
  ds.recent = 1;
  ds.dense_layers = 0;
  ds.sink = 1;
  KvBlockPool& pool = (*model2)->kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(seq, 20).ok());
  std::vector<float> logits;
  for (int i = 0; i < 20; ++i) {
    ForwardBatch batch;
    batch.Add(seq, &ids[i], 1, i, false);
    batch.sequences.back().attention = &ds;
    ASSERT_TRUE((*model2)->Forward(batch, logits).ok());
  }
  EXPECT_GT((*model2)->double_sparsity().Stats(seq)->sparse_rows, 0);
  (*model2)->ReleaseSequence(seq);
  std::remove(path.c_str());
}

TEST(Calibration, AccumulatesEveryBlock) {
  CpuBackend backend;
  auto model = Model::Load(kModel, backend);
  ASSERT_TRUE(model.ok());
  const ModelConfig& c = (*model)->config();
  const std::vector<int32_t> ids = RandomIds(48, static_cast<int>(c.vocab_size), 22);
  CalibrationOptions both;
  both.block = 32;  // blocks of 32 and 16
  auto all = Calibrate(**model, ids, both);
  CalibrationOptions one = both;
  one.max_blocks = 1;
  auto first = Calibrate(**model, ids, one);
  std::vector<int32_t> tail(ids.begin() + 32, ids.end());
  auto second = Calibrate(**model, tail, both);
  ASSERT_TRUE(all.ok() && first.ok() && second.ok());
  for (const char* kind : {"qk_proj", "q_proj", "k_proj"}) {
    const auto& a = all->metadata["statistic_values"][kind];
    const auto& f = first->metadata["statistic_values"][kind];
    const auto& s = second->metadata["statistic_values"][kind];
    for (size_t l = 0; l < a.size(); ++l) {
      for (size_t h = 0; h < a[l].size(); ++h) {
        for (size_t ch = 0; ch < a[l][h].size(); ++ch) {
          const double want = (32 * f[l][h][ch].get<double>() + 16 * s[l][h][ch].get<double>()) / 48;
          ASSERT_NEAR(a[l][h][ch].get<double>(), want, 1e-9 * (1 + std::abs(want))) << kind;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsinfer
