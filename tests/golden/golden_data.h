// The transformers golden data of one model (tests/golden/make_golden.py writes it into
// tests/data/golden/NAME): golden.json (prompt, greedy tokens, their top-2 margins, logits
// shape, max|logit|, optionally logit_positions) and logits.f32, the greedy request that
// reproduces the reference run, and a helper that feeds a prompt through a Model in chunks
// to compare against it. Shared by the CPU and the CUDA golden tests; header-only, for tests
// (failures are gtest expectations).
#ifndef DSINFER_TESTS_GOLDEN_GOLDEN_DATA_H_
#define DSINFER_TESTS_GOLDEN_GOLDEN_DATA_H_

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "engine/generator.h"
#include "engine/model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {

struct Golden {
  std::vector<int32_t> prompt, greedy;
  std::vector<int64_t> positions;  // prompt positions whose logits are stored (all by default)
  std::vector<double> margins;
  std::vector<float> logits;  // [positions, vocab]
  int64_t vocab = 0;
  double max_abs = 0;
};

// Reads DIR/golden.json and DIR/logits.f32; a short logits file fails the calling test.
inline Golden LoadGolden(const std::string& dir) {
  Golden g;
  std::ifstream meta_in(dir + "/golden.json");
  nlohmann::json meta = nlohmann::json::parse(meta_in);
  g.prompt = meta["prompt_ids"].get<std::vector<int32_t>>();
  g.greedy = meta["greedy_ids"].get<std::vector<int32_t>>();
  g.margins = meta["greedy_top2_margin"].get<std::vector<double>>();
  g.vocab = meta["logits_shape"][1].get<int64_t>();
  g.max_abs = meta["max_abs_logit"].get<double>();
  if (meta.contains("logit_positions")) {
    g.positions = meta["logit_positions"].get<std::vector<int64_t>>();
  } else {
    for (size_t i = 0; i < g.prompt.size(); ++i) g.positions.push_back(static_cast<int64_t>(i));
  }
  g.logits.resize(g.positions.size() * g.vocab);
  std::ifstream bin(dir + "/logits.f32", std::ios::binary);
  bin.read(reinterpret_cast<char*>(g.logits.data()), g.logits.size() * sizeof(float));
  EXPECT_TRUE(bin.good()) << dir;
  return g;
}

// The reference's greedy run as a request: the golden prompt, as many new tokens as the
// reference generated, EOS ignored (default sampling is greedy).
inline GenerationRequest GreedyRequest(const Golden& g) {
  GenerationRequest r;
  r.prompt = g.prompt;
  r.max_new_tokens = static_cast<int64_t>(g.greedy.size());
  r.ignore_eos = true;
  return r;
}

// Feeds the prompt in pieces of `chunk` tokens and returns every position's logits,
// [prompt, vocab]; the sequence is released afterwards.
inline std::vector<float> PromptLogits(Model& model, const std::vector<int32_t>& prompt,
                                       int64_t chunk) {
  KvBlockPool& pool = model.kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  EXPECT_TRUE(pool.Reserve(seq, static_cast<int64_t>(prompt.size())).ok());
  std::vector<float> all, logits;
  for (size_t begin = 0; begin < prompt.size(); begin += chunk) {
    const int64_t count = std::min<int64_t>(chunk, prompt.size() - begin);
    ForwardBatch batch;
    batch.Add(seq, prompt.data() + begin, count, static_cast<int64_t>(begin), true);
    absl::Status s = model.Forward(batch, logits);
    EXPECT_TRUE(s.ok()) << s;
    all.insert(all.end(), logits.begin(), logits.end());
  }
  pool.Release(seq);
  return all;
}

}  // namespace dsinfer

#endif  // DSINFER_TESTS_GOLDEN_GOLDEN_DATA_H_
