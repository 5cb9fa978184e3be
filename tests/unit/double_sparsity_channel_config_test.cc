// Channel configs: the reference implementation's real files load and validate (trimmed
// copies always, the full files when ../shared is present); malformed or mismatched configs
// are refused naming the entry; the per-KV-head rule; write → load round trip.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "engine/sparse/channel_config.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

struct RealFile {
  const char* name;
  int layers, heads_q, heads_kv;
  std::vector<ChannelStatistic> kinds;
};
const RealFile kRealFiles[] = {
    {"Llama-2-7b-hf", 32, 32, 32,
     {ChannelStatistic::kQ, ChannelStatistic::kK, ChannelStatistic::kQK}},
    {"Llama-3.1-8B", 32, 32, 8, {ChannelStatistic::kQ, ChannelStatistic::kK, ChannelStatistic::kQK}},
    {"Mistral-7B-v0.1", 32, 32, 8, {ChannelStatistic::kQ, ChannelStatistic::kQK}},
};

void CheckRealConfig(const ChannelConfig& config, const RealFile& f, int layers) {
  ASSERT_TRUE(ValidateChannelConfig(config, layers, f.heads_q, f.heads_kv, 128).ok()) << f.name;
  for (ChannelStatistic kind : f.kinds) {
    EXPECT_TRUE(config.Has(kind)) << f.name << " " << ChannelKindKey(kind);
    auto channels = KvHeadChannels(config, kind, layers - 1, f.heads_q, f.heads_kv, 16);
    ASSERT_TRUE(channels.ok()) << channels.status();
    EXPECT_EQ(channels->size(), static_cast<size_t>(f.heads_kv) * 16);
  }
  if (f.kinds.size() == 2) {
    auto missing = KvHeadChannels(config, ChannelStatistic::kK, 0, f.heads_q, f.heads_kv, 16);
    EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(missing.status().message().find("k_proj"), std::string::npos);
  }
  // A model with more layers than the file is refused naming the first missing layer.
  absl::Status st = ValidateChannelConfig(config, layers + 1, f.heads_q, f.heads_kv, 128);
  EXPECT_NE(st.message().find("model.layers." + std::to_string(layers) + ".self_attn"),
            std::string::npos) << st;
}

TEST(ChannelConfig, TrimmedReferenceFilesLoad) {
  for (const RealFile& f : kRealFiles) {
    auto config = LoadChannelConfig(std::string("tests/data/ds-channel-configs/") + f.name +
                                    ".layers0-1.json");
    ASSERT_TRUE(config.ok()) << config.status();
    CheckRealConfig(*config, f, 2);
  }
}

TEST(ChannelConfig, FullReferenceFilesLoadWhenPresent) {
  int found = 0;
  for (const RealFile& f : kRealFiles) {
    const std::string path = std::string("../shared/reference/ds-channel-configs/") + f.name + ".json";
    if (!std::ifstream(path)) continue;
    ++found;
    auto config = LoadChannelConfig(path);
    ASSERT_TRUE(config.ok()) << config.status();
    CheckRealConfig(*config, f, f.layers);
  }
  if (found == 0) GTEST_SKIP() << "../shared/reference/ds-channel-configs not present";
}

std::string Expect(absl::string_view text, absl::string_view needle) {
  auto config = ParseChannelConfig(text, "test.json");
  if (config.ok()) return "accepted";
  if (config.status().message().find(needle) == absl::string_view::npos) {
    return std::string(config.status().message());
  }
  return "ok";
}

TEST(ChannelConfig, MalformedConfigsAreRefusedNamingTheEntry) {
  EXPECT_EQ(Expect("[1,2]", "not a JSON object"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.0.self_attn.q_proj\": [[0, 1, 1]]}",
                   "'model.layers.0.self_attn.q_proj' head 0 lists channel 1 twice"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.0.self_attn.q_proj\": [[0, -1]]}",
                   "'model.layers.0.self_attn.q_proj' head 0 holds -1"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.0.self_attn.k_proj\": [[0], 3]}",
                   "'model.layers.0.self_attn.k_proj' head 1 must be"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.x.self_attn.k_proj\": [[0]]}", "model.layers.x"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.0.self_attn.k_proj\": [[0]],"
                   " \"model.layers.2.self_attn.k_proj\": [[0]]}",
                   "'model.layers.1.self_attn.k_proj' is missing"), "ok");
  EXPECT_EQ(Expect("{\"model.layers.0.mlp.down_proj\": [[0]]}", "no model.layers"), "ok");

  auto config = ParseChannelConfig(
      "{\"model.layers.0.self_attn.qk_proj\": [[0, 5, 2, 7], [1, 2, 3, 4]],"
      " \"model.layers.1.self_attn.qk_proj\": [[0, 1, 2, 3], [3, 2, 1, 0]]}");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateChannelConfig(*config, 2, 2, 1, 8).ok());
  absl::Status st = ValidateChannelConfig(*config, 2, 2, 1, 6);
  EXPECT_NE(st.message().find("'model.layers.0.self_attn.qk_proj' head 0: channel 7 >= head_dim 6"),
            std::string::npos) << st;
  st = ValidateChannelConfig(*config, 2, 4, 1, 8);
  EXPECT_NE(st.message().find("'model.layers.0.self_attn.qk_proj' has 2 heads, the model has 4"),
            std::string::npos) << st;
  st = ValidateChannelConfig(*config, 3, 2, 1, 8);
  EXPECT_NE(st.message().find("'model.layers.2.self_attn.qk_proj' is missing"), std::string::npos)
      << st;
  auto too_many = KvHeadChannels(*config, ChannelStatistic::kQK, 0, 2, 1, 5);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ChannelConfig, GroupRuleFusesReciprocalRanks) {
  auto config = ParseChannelConfig(
      "{\"model.layers.0.self_attn.q_proj\": [[4, 1, 2, 0, 3, 5], [1, 3, 4, 5, 0, 2],"
      " [0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]}");
  ASSERT_TRUE(config.ok()) << config.status();
  // GQA 4:2. KV head 0 fuses heads 0 and 1: channel 1 scores 1/2 + 1 = 1.5, channel 4
  // 1 + 1/3, channel 3 1/5 + 1/2 = 0.7, channel 2 1/3 + 1/6 = 0.5, channel 0 1/4 + 1/5,
  // channel 5 1/6 + 1/4. KV head 1 (heads 2, 3): channels 0 and 5 tie at 1 + 1/6 — the lower
  // index first — then 1 and 4 tie at 1/2 + 1/5.
  auto ch = KvHeadChannels(*config, ChannelStatistic::kQ, 0, 4, 2, 4);
  ASSERT_TRUE(ch.ok()) << ch.status();
  EXPECT_EQ(*ch, (std::vector<int32_t>{1, 4, 3, 2, 0, 5, 1, 4}));
  // MHA: each head's ordering as is.
  auto mha = KvHeadChannels(*config, ChannelStatistic::kQ, 0, 4, 4, 2);
  ASSERT_TRUE(mha.ok());
  EXPECT_EQ(*mha, (std::vector<int32_t>{4, 1, 1, 3, 0, 1, 5, 4}));
}

TEST(ChannelConfig, WriteThenLoadRoundTrips) {
  auto config = ParseChannelConfig(
      "{\"model.layers.0.self_attn.k_proj\": [[3, 0, 2, 1]],"
      " \"model.layers.0.self_attn.qk_proj\": [[1, 0, 3, 2], [2, 3, 0, 1]]}");
  ASSERT_TRUE(config.ok());
  config->metadata = {{"model", "tiny"}};
  const std::string path = testing::TempDir() + "/channels_" + std::to_string(::getpid()) + ".json";
  ASSERT_TRUE(WriteChannelConfig(*config, path).ok());
  auto back = LoadChannelConfig(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->orderings, config->orderings);
  EXPECT_EQ(back->metadata["model"], "tiny");
  std::remove(path.c_str());
}

}  // namespace
}  // namespace dsinfer
