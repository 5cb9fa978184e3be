// Inputs shared by the engine tests that run Double Sparsity on the golden models (CPU unit
// tests and the CUDA engine test): the golden model directories, random prompts, and channel
// configs with every head's channels in a random order. Deterministic for a given seed, so a
// test that builds the same config twice (say, for two engines) gets the same one.
// Header-only, for tests.
#ifndef DSINFER_TESTS_ENGINE_TEST_UTIL_H_
#define DSINFER_TESTS_ENGINE_TEST_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "engine/model_config.h"
#include "engine/sparse/channel_config.h"

namespace dsinfer {

// Golden models with checkpoints in tests/data/golden (paths from the source root).
inline constexpr const char* kGoldenModels[] = {"tests/data/golden/llama-gqa-hd64",
                                                "tests/data/golden/llama3-hd128-tied",
                                                "tests/data/golden/mistral-mha"};

// `n` token ids drawn uniformly from [0, vocab) by std::mt19937(seed).
inline std::vector<int32_t> RandomIds(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// A channel config for model shape `c` (all three statistics, every layer and head) whose
// orders are permutations of [0, head_dim) shuffled by `rng`.
template <typename Urbg>
ChannelConfig ShuffledChannelConfig(const ModelConfig& c, Urbg&& rng) {
  ChannelConfig config;
  for (ChannelStatistic kind :
       {ChannelStatistic::kQK, ChannelStatistic::kQ, ChannelStatistic::kK}) {
    const int heads = kind == ChannelStatistic::kK ? c.num_heads_kv : c.num_heads_q;
    auto& layers = config.Mutable(kind);
    layers.resize(c.num_layers);
    for (auto& l : layers) {
      l.resize(heads);
      for (auto& order : l) {
        order.resize(c.head_dim);
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), rng);
      }
    }
  }
  return config;
}

// ShuffledChannelConfig with std::mt19937(seed).
inline ChannelConfig RandomChannelConfig(const ModelConfig& c, uint32_t seed) {
  return ShuffledChannelConfig(c, std::mt19937(seed));
}

}  // namespace dsinfer

#endif  // DSINFER_TESTS_ENGINE_TEST_UTIL_H_
