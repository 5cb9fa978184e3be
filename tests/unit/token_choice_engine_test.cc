// Proves the engine's wiring of the device token path (engine/token_choice.h) on the CPU, with
// a CPU backend that claims the path and serves it with the host sampler's own arithmetic at
// the uniforms it is handed, so both paths must give exactly the same tokens and
// log-probabilities: Generate and the serving scheduler, over a batch mixing greedy and seeded
// sampled requests (prefill in chunks, so unused logit rows too), choose on the device for
// exactly the steps whose rows allow it; a repetition penalty, prompt logprobs or top
// logprobs send their steps to the host; and Model::ForwardAndChoose refuses, before the step
// runs, a backend without the path, a wrong number of choices and knobs out of range. The
// CUDA path itself is tests/gpu/token_choice_gpu_test.cc.
#include <atomic>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/cpu_backend.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/serving/scheduler.h"
#include "engine/token_choice.h"
#include "gtest/gtest.h"
#include "kernels/sample_knobs.h"
#include "kernels/status.h"

namespace dsinfer {
namespace {

constexpr char kModelDir[] = "tests/data/golden/llama-gqa-hd64";  // vocab 512

// The CPU backend with the device token path, served on the host: rows copied out, each
// token drawn by Sampler::SampleAt the given uniform (argmax when greedy). Counts its calls.
class HostServedChoiceBackend : public CpuBackend {
 public:
  bool ChoosesTokensOnDevice() const override { return enabled; }
  absl::Status ChooseTokens(const DeviceTensor& logits,
                            absl::Span<const DeviceTokenChoice> choices,
                            std::vector<ChosenToken>& out) override {
    out.clear();
    ++calls;
    const int64_t n = static_cast<int64_t>(choices.size());
    std::vector<int64_t> rows(n);
    std::iota(rows.begin(), rows.end(), 0);
    std::vector<float> host(static_cast<size_t>(n * logits.cols));
    RETURN_IF_ERROR(CopyRowsToHost(logits, rows, host.data()));
    for (int64_t i = 0; i < n; ++i) {
      const SampleKnobs& k = choices[i].knobs;
      RETURN_IF_ERROR(ValidateSampleKnobs(k));
      const absl::Span<const float> row(host.data() + i * logits.cols, logits.cols);
      SamplingParams p;
      p.temperature = k.temperature;
      p.top_k = k.top_k;
      p.top_p = k.top_p;
      p.min_p = k.min_p;
      const int32_t token =
          p.temperature == 0.0f ? ArgMax(row) : Sampler(p).SampleAt(row, {}, choices[i].uniform);
      out.push_back({token, LogProbability(row, token)});
    }
    return absl::OkStatus();
  }

  bool enabled = true;
  std::atomic<int64_t> calls{0};
};

std::vector<int32_t> Ids(int n, int seed) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (seed * 7919 + i * 104729 + i * i * 31) % 512;
  return ids;
}

GenerationRequest Request(int prompt_tokens, int seed, float temperature) {
  GenerationRequest r;
  r.prompt = Ids(prompt_tokens, seed);
  r.max_new_tokens = 10;
  r.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.sampling.seed = static_cast<uint64_t>(seed);
  return r;
}

// Greedy, and sampled with every filter, seeded; prompts over several 16-token chunks.
std::vector<GenerationRequest> MixedRequests() {
  std::vector<GenerationRequest> r = {Request(37, 1, 0.0f), Request(9, 2, 0.8f),
                                      Request(70, 3, 1.2f), Request(16, 4, 1.0f)};
  r[1].sampling.top_k = 20;
  r[1].sampling.top_p = 0.9f;
  r[2].sampling.min_p = 0.05f;
  r[3].sampling.top_p = 0.7f;
  return r;
}

void ExpectSame(const std::vector<GenerationResult>& device,
                const std::vector<GenerationResult>& host) {
  ASSERT_EQ(device.size(), host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    EXPECT_EQ(device[i].tokens, host[i].tokens) << "request " << i;
    EXPECT_EQ(device[i].finish, host[i].finish) << "request " << i;
    EXPECT_EQ(device[i].token_logprobs, host[i].token_logprobs) << "request " << i;
    EXPECT_EQ(device[i].prompt_logprobs, host[i].prompt_logprobs) << "request " << i;
  }
}

int64_t Chunks(const GenerationRequest& r, int64_t chunk) {
  return (static_cast<int64_t>(r.prompt.size()) + chunk - 1) / chunk;
}

class TokenChoiceEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = Model::Load(kModelDir, backend_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  // Both paths over `requests`: host first (the backend's path off), then the device path.
  void RunBoth(const std::vector<GenerationRequest>& requests, const GeneratorOptions& options,
               std::vector<GenerationResult>& device, std::vector<GenerationResult>& host) {
    backend_.enabled = false;
    auto h = Generate(*model_, requests, options);
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(backend_.calls.load(), 0);
    backend_.enabled = true;
    auto d = Generate(*model_, requests, options);
    ASSERT_TRUE(d.ok()) << d.status();
    device = std::move(*d);
    host = std::move(*h);
  }

  HostServedChoiceBackend backend_;
  std::unique_ptr<Model> model_;
};

TEST_F(TokenChoiceEngineTest, GenerateOnTheDevicePathMatchesTheHostPath) {
  const std::vector<GenerationRequest> requests = MixedRequests();
  GeneratorOptions options;
  options.prefill_chunk = 16;
  std::vector<GenerationResult> device, host;
  ASSERT_NO_FATAL_FAILURE(RunBoth(requests, options, device, host));
  ExpectSame(device, host);
  // Every step on the device: each prefill chunk (one sequence at a time, the last giving the
  // first token) and each of the 9 batched decode steps.
  int64_t steps = 9;
  for (const GenerationRequest& r : requests) steps += Chunks(r, options.prefill_chunk);
  EXPECT_EQ(backend_.calls.load(), steps);
  EXPECT_NE(host[1].tokens, host[2].tokens);  // real draws, not a constant
  EXPECT_EQ(model_->kv_pool().blocks_in_use(), 0);
}

TEST_F(TokenChoiceEngineTest, RowsThatNeedLogitsSendTheirStepsToTheHost) {
  std::vector<GenerationRequest> requests = MixedRequests();
  requests[1].sampling.repetition_penalty = 1.3f;  // in every decode step
  requests[3].prompt_logprobs = true;
  GeneratorOptions options;
  options.prefill_chunk = 16;
  std::vector<GenerationResult> device, host;
  ASSERT_NO_FATAL_FAILURE(RunBoth(requests, options, device, host));
  ExpectSame(device, host);
  EXPECT_EQ(device[3].prompt_logprobs.size(), requests[3].prompt.size() - 1);
  // On the device: the prefill chunks of requests 0 and 2, and request 1's chunk (its only
  // one, which gives its first token) goes to the host for the penalty, as do request 3's
  // (prompt logprobs) and every decode step (request 1 is in all of them).
  EXPECT_EQ(backend_.calls.load(), Chunks(requests[0], 16) + Chunks(requests[2], 16));
}

TEST_F(TokenChoiceEngineTest, ForwardAndChooseRefusesWhatItCannotServe) {
  KvBlockPool& pool = model_->kv_pool();
  const KvBlockPool::SequenceId seq = pool.AddSequence();
  ASSERT_TRUE(pool.Reserve(seq, 8).ok());
  const std::vector<int32_t> ids = Ids(4, 5);
  ForwardBatch batch;
  batch.Add(seq, ids.data(), 4, 0, false);
  std::vector<ChosenToken> chosen;
  const std::vector<DeviceTokenChoice> two(2);
  EXPECT_EQ(model_->ForwardAndChoose(batch, two, chosen).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<DeviceTokenChoice> bad(1);
  bad[0].knobs.top_p = 0.0f;  // refused before the step runs: the backend is never asked
  EXPECT_EQ(model_->ForwardAndChoose(batch, bad, chosen).code(),
            absl::StatusCode::kInvalidArgument);
  backend_.enabled = false;
  const std::vector<DeviceTokenChoice> one(1);
  EXPECT_EQ(model_->ForwardAndChoose(batch, one, chosen).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(backend_.calls.load(), 0);
  backend_.enabled = true;
  ASSERT_TRUE(model_->ForwardAndChoose(batch, one, chosen).ok());
  ASSERT_EQ(chosen.size(), 1u);
  EXPECT_GE(chosen[0].token, 0);
  EXPECT_LT(chosen[0].token, 512);
  EXPECT_LE(chosen[0].logprob, 0.0);
  pool.Release(seq);
}

// Every request's final event through a fresh scheduler on the model.
std::vector<StreamEvent> Serve(Model& model, const std::vector<ServingRequest>& requests) {
  SchedulerOptions options;
  options.max_batch = 8;
  options.prefill_chunk = 16;
  auto scheduler = Scheduler::Create(model, nullptr, options);
  EXPECT_TRUE(scheduler.ok()) << scheduler.status();
  if (!scheduler.ok()) return {};
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const ServingRequest& r : requests) {
    auto stream = (*scheduler)->Submit(r);
    EXPECT_TRUE(stream.ok()) << stream.status();
    if (stream.ok()) streams.push_back(*stream);
  }
  std::vector<StreamEvent> events(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    while (!events[i].final && absl::Now() < give_up) {
      streams[i]->Next(events[i], absl::Milliseconds(50));
    }
    EXPECT_TRUE(events[i].final && events[i].status.ok()) << "request " << i;
  }
  return events;
}

void ExpectSameEvents(const std::vector<StreamEvent>& device,
                      const std::vector<StreamEvent>& host) {
  ASSERT_EQ(device.size(), host.size());
  for (size_t i = 0; i < host.size(); ++i) {
    EXPECT_EQ(device[i].tokens, host[i].tokens) << "request " << i;
    EXPECT_EQ(device[i].logprobs, host[i].logprobs) << "request " << i;
    ASSERT_EQ(device[i].top_logprobs.size(), host[i].top_logprobs.size()) << "request " << i;
    for (size_t t = 0; t < host[i].top_logprobs.size(); ++t) {
      ASSERT_EQ(device[i].top_logprobs[t].size(), host[i].top_logprobs[t].size());
      for (size_t k = 0; k < host[i].top_logprobs[t].size(); ++k) {
        EXPECT_EQ(device[i].top_logprobs[t][k].token, host[i].top_logprobs[t][k].token);
        EXPECT_EQ(device[i].top_logprobs[t][k].logprob, host[i].top_logprobs[t][k].logprob);
      }
    }
  }
}

TEST_F(TokenChoiceEngineTest, SchedulerOnTheDevicePathMatchesTheHostPath) {
  std::vector<ServingRequest> plain;
  for (const GenerationRequest& g : MixedRequests()) {
    ServingRequest r;
    r.generation = g;
    plain.push_back(r);
  }
  backend_.enabled = false;
  const std::vector<StreamEvent> host = Serve(*model_, plain);
  backend_.enabled = true;
  const std::vector<StreamEvent> device = Serve(*model_, plain);
  ExpectSameEvents(device, host);
  EXPECT_GT(backend_.calls.load(), 0);

  // Top logprobs and a repetition penalty: each alone in the scheduler (a one-chunk prompt, so
  // no unused row), every step on the host, the results as the host path's.
  std::vector<ServingRequest> needs_rows(2, plain[1]);
  needs_rows[0].top_logprobs = 3;
  needs_rows[1].generation.sampling.repetition_penalty = 1.3f;
  for (const ServingRequest& r : needs_rows) {
    backend_.enabled = false;
    const std::vector<StreamEvent> h = Serve(*model_, {r});
    backend_.enabled = true;
    const int64_t calls = backend_.calls.load();
    const std::vector<StreamEvent> d = Serve(*model_, {r});
    ExpectSameEvents(d, h);
    ASSERT_EQ(d.size(), 1u);
    EXPECT_EQ(d[0].top_logprobs.size(), r.top_logprobs > 0 ? d[0].tokens.size() : 0u);
    EXPECT_EQ(backend_.calls.load(), calls);
  }
  EXPECT_EQ(model_->kv_pool().blocks_in_use(), 0);
}

}  // namespace
}  // namespace dsinfer
