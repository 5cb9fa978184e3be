// The device token path on CUDA (engine/token_choice.h, cuda_backend_token_choice.cc) against
// the host path, on a small random-weight model (vocab 4099, so each of the sampling kernel's
// threads owns several ids), for one batch mixing greedy requests, narrowly sampled ones
// (top-k, top-p, min-p) and widely sampled ones, all seeded. Skips without a GPU.
//
// Lockstep: every request runs twice in the same model, a host copy (Model::Forward, host
// sampler) and a device copy (Model::ForwardAndChoose), the copies of a step in two batches of
// the same shape, so while a request's copies agree on their tokens their logits are the same
// numbers; the host copy's row is then the row the device chose from. Greedy tokens must be
// equal (a near-tie — top-2 logits within 1e-3 of max|logit| — would be reported, not
// expected: both take the argmax of the same fp32 row). A sampled token may differ only where
// the draw falls within float rounding of an interval boundary: the device's token must be
// what the host sampler's distribution gives within 5e-4 of the uniform (the kernel test's
// bound; the device sums fp32 probabilities, the host sorts and sums in double). A request is
// compared up to its first difference (its histories part there); most draws must agree.
// Log-probabilities of agreeing tokens must agree.
//
// Generate: the same requests through Generate with the path on and off give the same
// tokens by the same rules (greedy exactly), and the path was taken only when on.
// ChooseTokens refuses knobs out of range and uniforms outside [0, 1).
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/checkpoint_writer.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/token_choice.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

constexpr int kVocab = 4099;
constexpr int64_t kNewTokens = 24;
constexpr double kEdgeTolerance = 5e-4;
constexpr double kNearTie = 1e-3;

// A random Llama checkpoint written once per process.
std::string ModelDir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "/token_choice_gpu_" + std::to_string(getpid());
    ModelConfig c;
    c.architecture = "LlamaForCausalLM";
    c.vocab_size = kVocab;
    c.hidden_size = 256;
    c.intermediate_size = 512;
    c.num_layers = 2;
    c.num_heads_q = 4;
    c.num_heads_kv = 2;
    c.head_dim = 64;
    c.max_position_embeddings = 512;
    const absl::Status s = WriteRandomModel(d, c, 20261128, 0.08f);
    EXPECT_TRUE(s.ok()) << s;
    return d;
  }();
  return dir;
}

std::vector<int32_t> Ids(int n, int seed) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (seed * 7919 + i * 104729 + i * i * 31) % kVocab;
  return ids;
}

GenerationRequest Request(int prompt_tokens, int seed, float temperature, int top_k = 0,
                          float top_p = 1.0f, float min_p = 0.0f) {
  GenerationRequest r;
  r.prompt = Ids(prompt_tokens, seed);
  r.max_new_tokens = kNewTokens;
  r.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.sampling.top_k = top_k;
  r.sampling.top_p = top_p;
  r.sampling.min_p = min_p;
  r.sampling.seed = static_cast<uint64_t>(seed);
  return r;
}

// Two greedy, two narrowly sampled, two widely sampled; prompts over several 16-token chunks.
std::vector<GenerationRequest> MixedRequests() {
  return {Request(5, 1, 0.0f),          Request(33, 2, 0.0f),
          Request(17, 3, 0.7f, 40, 0.8f), Request(64, 4, 1.0f, 0, 0.6f, 0.1f),
          Request(9, 5, 1.0f),          Request(26, 6, 1.3f, 1000)};
}

// Agreement between the paths over the draws compared (each request up to its first
// difference).
struct Tally {
  int64_t compared = 0, equal = 0, greedy_compared = 0, greedy_equal = 0;
  int64_t greedy_near_ties = 0;  // greedy differences at a checked near-tie (lockstep only)
  void Print(const char* what) const {
    std::printf("%s: %lld of %lld sampled and %lld of %lld greedy tokens equal\n", what,
                static_cast<long long>(equal), static_cast<long long>(compared),
                static_cast<long long>(greedy_equal), static_cast<long long>(greedy_compared));
  }
  void Expect() const {
    EXPECT_EQ(greedy_equal + greedy_near_ties, greedy_compared);
    EXPECT_GE(equal * 10, compared * 8) << "sampled tokens agree too rarely for rounding";
  }
};

// Why the device's `got` differs from the host's `want` on `row`: a greedy near-tie, or the
// host's distribution putting `got`'s interval within kEdgeTolerance of the draw `u`.
::testing::AssertionResult WithinRounding(const SamplingParams& params,
                                          absl::Span<const float> row, double u, int32_t got,
                                          int32_t want) {
  if (got < 0 || got >= static_cast<int32_t>(row.size())) {
    return ::testing::AssertionFailure() << "token " << got << " outside the vocabulary";
  }
  if (params.temperature == 0.0f) {
    float max_abs = 0.0f;
    for (float x : row) max_abs = std::max(max_abs, std::abs(x));
    const double gap = std::abs(static_cast<double>(row[got]) - row[want]);
    if (gap <= kNearTie * max_abs) {
      std::printf("greedy near-tie: %d vs %d, logits %.6g apart\n", got, want, gap);
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "argmax " << got << " vs " << want << ", logits "
                                         << gap << " apart (max|logit| " << max_abs << ")";
  }
  const std::vector<double> dist = Sampler(params).Distribution(row, {});
  if (dist[got] <= 0.0) {
    return ::testing::AssertionFailure() << "device drew " << got << ", which the host filters";
  }
  double before = 0.0;
  for (int32_t i = 0; i < got; ++i) before += dist[i];
  const double after = before + dist[got];
  if (u >= before - kEdgeTolerance && u <= after + kEdgeTolerance) {
    std::printf("draw at an edge: u %.9f, device %d in [%.9f, %.9f), host %d\n", u, got, before,
                after, want);
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "device drew " << got << " with interval [" << before
                                       << ", " << after << ") at u " << u << ", host " << want;
}

class TokenChoiceGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!CudaDeviceAvailable()) GTEST_SKIP() << "no CUDA device";
    auto b = CudaBackend::Create(CudaBackendOptions());
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = std::move(*b);
    auto m = Model::Load(ModelDir(), *backend_);
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = std::move(*m);
  }
  void TearDown() override {
    model_.reset();
    backend_.reset();
  }
  std::unique_ptr<CudaBackend> backend_;
  std::unique_ptr<Model> model_;
};

// One request's copy on one path.
struct Copy {
  explicit Copy(const GenerationRequest& r) : sampler(r.sampling), history(r.prompt) {}
  KvBlockPool::SequenceId kv = 0;
  Sampler sampler;
  std::vector<int32_t> history;
};

TEST_F(TokenChoiceGpuTest, LockstepDevicePathMatchesHostPath) {
  const std::vector<GenerationRequest> requests = MixedRequests();
  const size_t n = requests.size();
  KvBlockPool& pool = model_->kv_pool();
  std::vector<Copy> host, device;
  std::vector<Sampler> uniforms;  // the draws both copies use, one per sampled token
  for (const GenerationRequest& r : requests) {
    host.emplace_back(r);
    device.emplace_back(r);
    uniforms.emplace_back(r.sampling);
    for (Copy* c : {&host.back(), &device.back()}) {
      c->kv = pool.AddSequence();
      ASSERT_TRUE(pool.Reserve(c->kv, static_cast<int64_t>(r.prompt.size()) + kNewTokens).ok());
    }
  }
  std::vector<bool> parted(n, false);
  Tally tally;
  std::vector<float> logits;
  std::vector<ChosenToken> chosen;
  // Runs one step of the copies `which` (one row each) on both paths and compares.
  auto step = [&](const std::vector<size_t>& which, bool prefill) {
    ForwardBatch host_batch, device_batch;
    StepTokenChoices choices(true);
    for (size_t j : which) {
      for (auto [batch, c] : {std::make_pair(&host_batch, &host[j]),
                              std::make_pair(&device_batch, &device[j])}) {
        const int64_t count = prefill ? static_cast<int64_t>(c->history.size()) : 1;
        const int64_t cached = static_cast<int64_t>(c->history.size()) - count;
        batch->Add(c->kv, c->history.data() + cached, count, cached, false);
      }
      choices.AddRow(&device[j].sampler, false);
    }
    ASSERT_TRUE(choices.on_device());
    // The host path first, in full (its tokens use the backend's row stats, as Generate's do),
    // then the device path.
    ASSERT_TRUE(model_->Forward(host_batch, logits).ok());
    std::vector<std::pair<int32_t, double>> host_tokens;
    for (size_t i = 0; i < which.size(); ++i) {
      const absl::Span<const float> row(logits.data() + i * kVocab, kVocab);
      host_tokens.push_back(NextToken(host[which[i]].sampler, row, host[which[i]].history,
                                      model_->logit_stat(static_cast<int64_t>(i))));
    }
    const absl::Status s = model_->ForwardAndChoose(device_batch, choices.Draw(), chosen);
    ASSERT_TRUE(s.ok()) << s;
    ASSERT_EQ(chosen.size(), which.size());
    for (size_t i = 0; i < which.size(); ++i) {
      const size_t j = which[i];
      const absl::Span<const float> row(logits.data() + i * kVocab, kVocab);
      const auto [want, want_logprob] = host_tokens[i];
      const SamplingParams& p = requests[j].sampling;
      const double u = p.temperature == 0.0f ? 0.0 : uniforms[j].DrawUniform();
      const int32_t got = chosen[i].token;
      host[j].history.push_back(want);
      device[j].history.push_back(got);
      if (parted[j]) continue;
      const bool greedy = p.temperature == 0.0f;
      (greedy ? tally.greedy_compared : tally.compared) += 1;
      if (got == want) {
        (greedy ? tally.greedy_equal : tally.equal) += 1;
        EXPECT_NEAR(chosen[i].logprob, want_logprob, 1e-5) << "request " << j;
        EXPECT_NEAR(chosen[i].logprob, LogProbability(row, got), 1e-4) << "request " << j;
        continue;
      }
      parted[j] = true;
      const ::testing::AssertionResult explained = WithinRounding(p, row, u, got, want);
      EXPECT_TRUE(explained) << "request " << j << " token "
                             << device[j].history.size() - requests[j].prompt.size();
      if (greedy && explained) ++tally.greedy_near_ties;
    }
  };
  for (size_t j = 0; j < n; ++j) {
    ASSERT_NO_FATAL_FAILURE(step({j}, /*prefill=*/true));
  }
  std::vector<size_t> all(n);
  for (size_t j = 0; j < n; ++j) all[j] = j;
  for (int64_t t = 1; t < kNewTokens; ++t) ASSERT_NO_FATAL_FAILURE(step(all, false));
  tally.Print("lockstep");
  tally.Expect();
  EXPECT_EQ(tally.greedy_compared, 2 * kNewTokens);
  EXPECT_GT(backend_->device_token_steps(), 0);
  for (size_t j = 0; j < n; ++j) {
    model_->ReleaseSequence(host[j].kv);
    model_->ReleaseSequence(device[j].kv);
  }
  EXPECT_EQ(pool.blocks_in_use(), 0);
}

TEST_F(TokenChoiceGpuTest, GenerateOnBothPathsGivesTheSameTokens) {
  const std::vector<GenerationRequest> requests = MixedRequests();
  GeneratorOptions options;
  options.prefill_chunk = 16;  // unused logit rows before each prompt's last chunk
  backend_->set_device_token_choice(false);
  auto host = Generate(*model_, requests, options);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_EQ(backend_->device_token_steps(), 0);
  backend_->set_device_token_choice(true);
  auto device = Generate(*model_, requests, options);
  ASSERT_TRUE(device.ok()) << device.status();
  // Every prefill chunk (one sequence at a time) and every decode step.
  int64_t steps = kNewTokens - 1;
  for (const GenerationRequest& r : requests) {
    steps += (static_cast<int64_t>(r.prompt.size()) + options.prefill_chunk - 1) /
             options.prefill_chunk;
  }
  EXPECT_EQ(backend_->device_token_steps(), steps);
  // The two runs compute the very same logits (same batches, same kernels), so greedy tokens
  // are equal outright; sampled ones up to a first difference at a rounding edge, which the
  // lockstep test checks against the row itself.
  Tally tally;
  for (size_t j = 0; j < requests.size(); ++j) {
    const std::vector<int32_t>& a = (*device)[j].tokens;
    const std::vector<int32_t>& b = (*host)[j].tokens;
    ASSERT_EQ(a.size(), b.size());
    const bool greedy = requests[j].sampling.temperature == 0.0f;
    for (size_t t = 0; t < a.size(); ++t) {
      (greedy ? tally.greedy_compared : tally.compared) += 1;
      if (a[t] != b[t]) break;
      (greedy ? tally.greedy_equal : tally.equal) += 1;
      EXPECT_NEAR((*device)[j].token_logprobs[t], (*host)[j].token_logprobs[t], 1e-5);
    }
  }
  tally.Print("generate");
  tally.Expect();
  EXPECT_EQ(model_->kv_pool().blocks_in_use(), 0);
}

TEST_F(TokenChoiceGpuTest, ChooseTokensRefusesBadInput) {
  const int64_t vocab = 7;
  auto logits = backend_->AllocateF32(2, vocab);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::vector<float> values = {0, 1, 5, 2, 5, -1, 3, 0.5f, -2, 0, 4, 1, 9, 2};
  ASSERT_EQ(cudaMemcpy(logits->data, values.data(), values.size() * 4, cudaMemcpyHostToDevice),
            cudaSuccess);
  std::vector<DeviceTokenChoice> choices(2);
  for (DeviceTokenChoice& c : choices) c.knobs.temperature = 0.0f;  // greedy
  std::vector<ChosenToken> out = {{-1, 0.0}};
  ASSERT_TRUE(backend_->ChooseTokens(*logits, choices, out).ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].token, 2);  // the first of the two maxima
  EXPECT_EQ(out[1].token, 5);
  EXPECT_NEAR(out[1].logprob, LogProbability(absl::MakeConstSpan(values.data() + 7, 7), 5),
              1e-5);
  choices[1].knobs.temperature = 1.0f;
  choices[1].knobs.top_p = 0.0f;
  absl::Status s = backend_->ChooseTokens(*logits, choices, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("top_p"), absl::string_view::npos) << s;
  EXPECT_TRUE(out.empty());
  choices[1].knobs.top_p = 1.0f;
  choices[1].uniform = 1.0;
  s = backend_->ChooseTokens(*logits, choices, out);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("uniform"), absl::string_view::npos) << s;
  choices[1].uniform = 0.999999999;  // rounds to 1 in float: kept below it
  ASSERT_TRUE(backend_->ChooseTokens(*logits, choices, out).ok());
  EXPECT_EQ(out[1].token, 6);  // the last kept id
  backend_->Free(*logits);
}

}  // namespace
}  // namespace dsinfer
