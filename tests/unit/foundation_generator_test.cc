// Proves offline generation on real (golden) and generated models: a batch of different
// requests gives each request exactly what it gets alone (greedy and seeded sampling), for
// any prefill chunk size; prompt log-probabilities match transformers' logits; stop tokens
// end a request; the KV pool is back to zero blocks afterwards, also after errors;
// ValidateRequest names each bad field; and a pool too small for the batch gives
// RESOURCE_EXHAUSTED.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine/checkpoint_writer.h"
#include "engine/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

constexpr char kGolden[] = "tests/data/golden/llama-gqa-hd64";

std::unique_ptr<Model> LoadOrDie(const std::string& dir, Backend& backend,
                                 const ModelOptions& options = {}) {
  auto model = Model::Load(dir, backend, options);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

GenerationRequest Request(std::vector<int32_t> prompt, int64_t max_new_tokens) {
  GenerationRequest r;
  r.prompt = std::move(prompt);
  r.max_new_tokens = max_new_tokens;
  r.ignore_eos = true;
  return r;
}

std::vector<int32_t> Ids(int n, int seed, int vocab) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (seed * 7919 + i * 104729 + i * i * 31) % vocab;
  return ids;
}

void ExpectSameResult(const GenerationResult& a, const GenerationResult& b, const std::string& what) {
  EXPECT_EQ(a.tokens, b.tokens) << what;
  EXPECT_EQ(a.finish, b.finish) << what;
  ASSERT_EQ(a.token_logprobs.size(), b.token_logprobs.size()) << what;
  for (size_t i = 0; i < a.token_logprobs.size(); ++i) {
    EXPECT_NEAR(a.token_logprobs[i], b.token_logprobs[i], 1e-3) << what << " token " << i;
  }
  ASSERT_EQ(a.prompt_logprobs.size(), b.prompt_logprobs.size()) << what;
  for (size_t i = 0; i < a.prompt_logprobs.size(); ++i) {
    EXPECT_NEAR(a.prompt_logprobs[i], b.prompt_logprobs[i], 1e-3) << what << " prompt " << i;
  }
}

TEST(GeneratorTest, FreshModelBatchWithLongerSecondPrompt) {
  // On a fresh model the second prefill is longer than the first, so the workspace grows
  // after the logits buffers were first sized; the next step must not use stale buffers.
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(kGolden, backend);
  ASSERT_NE(model, nullptr);
  const std::vector<GenerationRequest> requests = {Request(Ids(4, 11, 512), 3),
                                                   Request(Ids(9, 12, 512), 3)};
  auto batch = Generate(*model, requests);
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone = Generate(*model, {requests[i]});
    ASSERT_TRUE(alone.ok()) << alone.status();
    ExpectSameResult((*batch)[i], (*alone)[0], "request " + std::to_string(i));
  }
}

TEST(GeneratorTest, BatchEqualsEachRequestAloneGreedy) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(kGolden, backend);
  ASSERT_NE(model, nullptr);
  const int vocab = static_cast<int>(model->config().vocab_size);
  std::vector<GenerationRequest> requests = {Request(Ids(37, 1, vocab), 12),
                                             Request(Ids(5, 2, vocab), 20),
                                             Request(Ids(1, 3, vocab), 7),
                                             Request(Ids(70, 4, vocab), 3)};
  requests[1].prompt_logprobs = true;
  requests[3].prompt_logprobs = true;
  std::vector<GenerationResult> alone;
  for (const GenerationRequest& r : requests) {
    auto res = Generate(*model, {r});
    ASSERT_TRUE(res.ok()) << res.status();
    ASSERT_EQ(res->size(), 1u);
    alone.push_back((*res)[0]);
    EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(static_cast<int64_t>(alone[i].tokens.size()), requests[i].max_new_tokens);
    EXPECT_EQ(alone[i].finish, FinishReason::kLength);
    EXPECT_EQ(alone[i].prompt_logprobs.size(),
              requests[i].prompt_logprobs ? requests[i].prompt.size() - 1 : 0u);
    for (size_t t = 0; t < alone[i].tokens.size(); ++t) {
      EXPECT_LE(alone[i].token_logprobs[t], 0.0);
    }
  }
  // The tokens must not be trivially constant across requests (random model, real logits).
  EXPECT_NE(alone[0].tokens, alone[1].tokens);

  for (int64_t chunk : {int64_t{512}, int64_t{16}, int64_t{3}}) {
    GeneratorOptions options;
    options.prefill_chunk = chunk;
    auto batch = Generate(*model, requests, options);
    ASSERT_TRUE(batch.ok()) << batch.status();
    ASSERT_EQ(batch->size(), requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      ExpectSameResult((*batch)[i], alone[i],
                       "request " + std::to_string(i) + " chunk " + std::to_string(chunk));
    }
    EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
    EXPECT_EQ(model->kv_pool().sequences(), 0);
  }
  // Layer-major prefill (Model::PrefillLayerMajor) for the prompts of 5 tokens and more that do
  // not ask for prompt logprobs (requests 0 here), in chunks of 16 and 4: the same results.
  for (int64_t chunk : {int64_t{16}, int64_t{4}}) {
    GeneratorOptions options;
    options.prefill_chunk = chunk;
    options.layer_major_from = 5;
    auto batch = Generate(*model, requests, options);
    ASSERT_TRUE(batch.ok()) << batch.status();
    for (size_t i = 0; i < requests.size(); ++i) {
      ExpectSameResult((*batch)[i], alone[i],
                       "layer-major, request " + std::to_string(i) + " chunk " +
                           std::to_string(chunk));
    }
    EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
  }
  GeneratorOptions bad;
  bad.layer_major_from = -1;
  EXPECT_EQ(Generate(*model, requests, bad).status().code(), absl::StatusCode::kInvalidArgument);
  // The binaries' -1: longer than one chunk in the offload modes, never in gpu mode.
  EXPECT_EQ(ResolveLayerMajorFrom(-1, KvMode::kOffload, 512), 513);
  EXPECT_EQ(ResolveLayerMajorFrom(-1, KvMode::kDenseOffload, 256), 257);
  EXPECT_EQ(ResolveLayerMajorFrom(-1, KvMode::kGpu, 512), 0);
  EXPECT_EQ(ResolveLayerMajorFrom(7, KvMode::kGpu, 512), 7);
  EXPECT_EQ(ResolveLayerMajorFrom(0, KvMode::kOffload, 512), 0);
  EXPECT_EQ(ResolveLayerMajorFrom(-2, KvMode::kOffload, 512), -2);  // still refused
}

TEST(GeneratorTest, SeededSamplingInBatchEqualsAloneAndRepeats) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(kGolden, backend);
  ASSERT_NE(model, nullptr);
  const int vocab = static_cast<int>(model->config().vocab_size);
  std::vector<GenerationRequest> requests = {Request(Ids(9, 5, vocab), 10),
                                             Request(Ids(14, 6, vocab), 10)};
  requests[0].sampling.temperature = 1.0f;
  requests[0].sampling.seed = 7;
  requests[1].sampling.temperature = 0.8f;
  requests[1].sampling.top_p = 0.9f;
  requests[1].sampling.top_k = 20;
  requests[1].sampling.repetition_penalty = 1.2f;
  requests[1].sampling.seed = 8;
  auto batch = Generate(*model, requests);
  ASSERT_TRUE(batch.ok()) << batch.status();
  auto again = Generate(*model, requests);
  ASSERT_TRUE(again.ok());
  for (size_t i = 0; i < requests.size(); ++i) {
    auto alone = Generate(*model, {requests[i]});
    ASSERT_TRUE(alone.ok());
    ExpectSameResult((*batch)[i], (*alone)[0], "sampled request " + std::to_string(i));
    EXPECT_EQ((*batch)[i].tokens, (*again)[i].tokens);
  }
  requests[0].sampling.seed = 9;
  auto other = Generate(*model, {requests[0]});
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)[0].tokens, (*batch)[0].tokens);
}

TEST(GeneratorTest, PromptLogprobsMatchTransformersLogits) {
  const std::string dir = kGolden;
  std::ifstream meta_in(dir + "/golden.json");
  const nlohmann::json meta = nlohmann::json::parse(meta_in);
  const std::vector<int32_t> prompt = meta["prompt_ids"].get<std::vector<int32_t>>();
  const int64_t vocab = meta["logits_shape"][1].get<int64_t>();
  std::vector<float> logits(prompt.size() * vocab);
  std::ifstream bin(dir + "/logits.f32", std::ios::binary);
  bin.read(reinterpret_cast<char*>(logits.data()), logits.size() * sizeof(float));
  ASSERT_TRUE(bin.good());

  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(dir, backend);
  ASSERT_NE(model, nullptr);
  GenerationRequest r = Request(prompt, 1);
  r.prompt_logprobs = true;
  GeneratorOptions options;
  options.prefill_chunk = 50;  // prompt logprobs must survive chunk boundaries
  auto res = Generate(*model, {r}, options);
  ASSERT_TRUE(res.ok()) << res.status();
  const std::vector<double>& got = (*res)[0].prompt_logprobs;
  ASSERT_EQ(got.size(), prompt.size() - 1);
  const double tol = 2e-3 * meta["max_abs_logit"].get<double>();
  for (size_t i = 0; i + 1 < prompt.size(); ++i) {
    const double expected =
        LogProbability(absl::MakeConstSpan(logits.data() + i * vocab, vocab), prompt[i + 1]);
    EXPECT_NEAR(got[i], expected, tol) << "position " << i;
  }
  // The first generated token is greedy over the last position's logits.
  const int32_t expected_first =
      ArgMax(absl::MakeConstSpan(logits.data() + (prompt.size() - 1) * vocab, vocab));
  const std::vector<int32_t> greedy = meta["greedy_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ((*res)[0].tokens[0], greedy[0]);
  EXPECT_EQ((*res)[0].tokens[0], expected_first);
}

TEST(GeneratorTest, StopTokenEndsRequest) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(kGolden, backend);
  ASSERT_NE(model, nullptr);
  GenerationRequest r = Request(Ids(11, 8, 512), 12);
  auto full = Generate(*model, {r});
  ASSERT_TRUE(full.ok());
  const std::vector<int32_t>& tokens = (*full)[0].tokens;
  ASSERT_EQ(tokens.size(), 12u);
  const int32_t stop = tokens[4];
  size_t first = 0;
  while (tokens[first] != stop) ++first;
  r.stop_token_ids = {stop};
  auto stopped = Generate(*model, {r});
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ((*stopped)[0].finish, FinishReason::kStopToken);
  EXPECT_EQ((*stopped)[0].tokens,
            std::vector<int32_t>(tokens.begin(), tokens.begin() + first + 1));
  EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
}

// A small random model written to a temp dir, with EOS ids and a short context.
std::string TinyModelDir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/foundation_generator_tiny_" +
        std::to_string(::getpid());
    ModelConfig c;
    c.architecture = "LlamaForCausalLM";
    c.vocab_size = 50;
    c.hidden_size = 64;
    c.intermediate_size = 96;
    c.num_layers = 2;
    c.num_heads_q = 4;
    c.num_heads_kv = 2;
    c.head_dim = 16;  // default AttentionOptions (16 label channels) need head_dim >= 16
    c.max_position_embeddings = 64;
    c.eos_token_ids = {2};
    absl::Status s = WriteRandomModel(d, c, 123, 0.3f);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }();
  return dir;
}

TEST(GeneratorTest, ValidateRequestNamesProblems) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(TinyModelDir(), backend);
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(model->max_context(), 64);
  EXPECT_TRUE(ValidateRequest(*model, Request({1, 2, 3}, 5)).ok());
  EXPECT_TRUE(ValidateRequest(*model, Request(std::vector<int32_t>(60, 1), 4)).ok());  // = context
  struct Bad {
    GenerationRequest r;
    std::string needle;
  };
  std::vector<Bad> bad = {{Request({}, 5), "empty"},
                          {Request({1, 50, 3}, 5), "50"},
                          {Request({1, -1}, 5), "-1"},
                          {Request({1, 2}, 0), "max_new_tokens"},
                          {Request(std::vector<int32_t>(60, 1), 5), "context"},
                          {Request({1}, 64), "context"}};
  GenerationRequest r = Request({1, 2}, 3);
  r.sampling.temperature = -1.0f;
  bad.push_back({r, "temperature"});
  r = Request({1, 2}, 3);
  r.sampling.top_p = 0.0f;
  bad.push_back({r, "top_p"});
  r = Request({1, 2}, 3);
  r.stop_token_ids = {50};
  bad.push_back({r, "stop token"});
  for (const Bad& b : bad) {
    absl::Status s = ValidateRequest(*model, b.r);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << b.needle;
    EXPECT_THAT(std::string(s.message()), HasSubstr(b.needle));
    // Generate refuses the same request (even inside a batch) and leaves the pool empty.
    auto res = Generate(*model, {Request({1, 2, 3}, 2), b.r});
    EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument) << b.needle;
    EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
    EXPECT_EQ(model->kv_pool().sequences(), 0);
  }
  GeneratorOptions options;
  options.prefill_chunk = 0;
  EXPECT_FALSE(Generate(*model, {Request({1, 2}, 2)}, options).ok());
}

TEST(GeneratorTest, ModelOptionsMaxContextLimitsRequests) {
  CpuBackend backend;
  ModelOptions options;
  options.max_context = 16;
  std::unique_ptr<Model> model = LoadOrDie(TinyModelDir(), backend, options);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->max_context(), 16);
  EXPECT_TRUE(ValidateRequest(*model, Request(std::vector<int32_t>(10, 4), 6)).ok());
  EXPECT_EQ(ValidateRequest(*model, Request(std::vector<int32_t>(10, 4), 7)).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(GeneratorTest, PoolTooSmallIsResourceExhaustedAndLeavesNothing) {
  CpuBackend backend;
  ModelOptions options;
  options.kv_block_tokens = 16;
  options.kv_pool_tokens = 32;  // 2 blocks
  std::unique_ptr<Model> model = LoadOrDie(TinyModelDir(), backend, options);
  ASSERT_NE(model, nullptr);
  EXPECT_EQ(model->kv_pool().free_blocks(), 2);
  // One request of 20 tokens (2 blocks) fits...
  auto one = Generate(*model, {Request(Ids(12, 1, 50), 8)});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
  // ...two do not, together.
  auto two = Generate(*model, {Request(Ids(12, 1, 50), 8), Request(Ids(12, 2, 50), 8)});
  ASSERT_FALSE(two.ok());
  EXPECT_EQ(two.status().code(), absl::StatusCode::kResourceExhausted) << two.status();
  EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
  EXPECT_EQ(model->kv_pool().sequences(), 0);
  // Nor does one that alone needs 3 blocks.
  auto big = Generate(*model, {Request(Ids(30, 3, 50), 10)});
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(model->kv_pool().blocks_in_use(), 0);
  // The pool still works afterwards and gives the same answer.
  auto again = Generate(*model, {Request(Ids(12, 1, 50), 8)});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0].tokens, (*one)[0].tokens);
}

TEST(GeneratorTest, EosStopsUnlessIgnored) {
  CpuBackend backend;
  std::unique_ptr<Model> model = LoadOrDie(TinyModelDir(), backend);
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(model->config().eos_token_ids, std::vector<int32_t>({2}));
  // Find a prompt whose greedy continuation contains the EOS id 2 within 40 tokens.
  for (int seed = 0; seed < 40; ++seed) {
    GenerationRequest r = Request(Ids(4, seed, 50), 40);
    auto full = Generate(*model, {r});
    ASSERT_TRUE(full.ok());
    const std::vector<int32_t>& t = (*full)[0].tokens;
    auto it = std::find(t.begin(), t.end(), 2);
    if (it == t.end()) continue;
    r.ignore_eos = false;
    auto stopped = Generate(*model, {r});
    ASSERT_TRUE(stopped.ok());
    EXPECT_EQ((*stopped)[0].finish, FinishReason::kEos);
    EXPECT_EQ((*stopped)[0].tokens, std::vector<int32_t>(t.begin(), it + 1));
    return;
  }
  GTEST_SKIP() << "no prompt produced EOS in 40 tokens";
}

}  // namespace
}  // namespace dsinfer
