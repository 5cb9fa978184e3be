// Proves the serving scheduler's time- and capacity-dependent behaviour with a fake clock, so
// that nothing depends on how fast the machine is: a deadline passing while a request runs or
// waits ends it with DEADLINE_EXCEEDED and returns the KV pool and the Double Sparsity label
// cache to idle; a request that does not fit next to a running one is queued, then admitted
// when room frees, and finishes with what it would get alone; one that could never fit is
// RESOURCE_EXHAUSTED at Submit; the queue bound refuses the next request; attention options
// the engine cannot serve are refused at Submit (not in the middle of a shared batch), and
// the final event reports what attention did from the engine's own counters.
//
// Requests that must stay "running" while the test looks are long (thousands of tokens) and
// are ended by Cancel, never by racing their completion.
#include "engine/serving/scheduler.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "engine/cpu_backend.h"
#include "engine/model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsinfer {
namespace {

using ::testing::HasSubstr;

constexpr char kModelDir[] = "tests/data/golden/llama-gqa-hd64";  // 2 layers, head_dim 64
constexpr int kVocab = 512;

// Time only moves when the test says so.
class FakeClock {
 public:
  absl::Time Now() {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += d;
  }

 private:
  std::mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1800000000);
};

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int n) {
  std::uniform_int_distribution<int32_t> id(4, kVocab - 1);
  std::vector<int32_t> prompt(n);
  for (int32_t& t : prompt) t = id(rng);
  return prompt;
}

ServingRequest Request(std::vector<int32_t> prompt, int64_t max_new_tokens) {
  ServingRequest r;
  r.generation.prompt = std::move(prompt);
  r.generation.max_new_tokens = max_new_tokens;
  r.generation.ignore_eos = true;
  return r;
}

// Reads events until the final one (at most `timeout` of real time).
StreamEvent ReadToEnd(RequestStream& stream, absl::Duration timeout = absl::Seconds(60)) {
  StreamEvent all;
  const absl::Time give_up = absl::Now() + timeout;
  while (!all.final && absl::Now() < give_up) stream.Next(all, absl::Milliseconds(50));
  EXPECT_TRUE(all.final) << "no final event within " << timeout;
  return all;
}

// Reads events until at least `tokens` tokens arrived (not the final event).
void ReadTokens(RequestStream& stream, StreamEvent& all, size_t tokens) {
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (all.tokens.size() < tokens && !all.final && absl::Now() < give_up) {
    stream.Next(all, absl::Milliseconds(50));
  }
  ASSERT_GE(all.tokens.size(), tokens);
  ASSERT_FALSE(all.final) << all.status;
}

// Polls the published stats until `pred` holds (real time; the engine runs on its own).
template <typename Pred>
bool WaitFor(const Scheduler& s, Pred pred) {
  for (int i = 0; i < 3000; ++i) {
    if (pred(s.stats())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return false;
}

void ExpectIdle(Scheduler& s) {
  ASSERT_TRUE(s.WaitIdle(absl::Seconds(30)));
  const SchedulerStats st = s.stats();
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.kv_blocks_in_use, 0);
  EXPECT_EQ(st.kv_bytes_in_use, 0);
  EXPECT_EQ(st.kv_sequences, 0);
  EXPECT_EQ(st.label_bytes_in_use, 0);
  EXPECT_EQ(st.label_sequences, 0);
}

class SchedulerTest : public ::testing::Test {
 protected:
  void Load(int64_t kv_pool_tokens, int max_batch, int max_queue) {
    ModelOptions mo;
    mo.kv_pool_tokens = kv_pool_tokens;
    auto model = Model::Load(kModelDir, backend_, mo);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    options_.max_batch = max_batch;
    options_.max_queue = max_queue;
    options_.prefill_chunk = 64;
    options_.clock = [this] { return clock_.Now(); };
  }
  void Start() {
    auto s = Scheduler::Create(*model_, nullptr, options_);
    ASSERT_TRUE(s.ok()) << s.status();
    scheduler_ = std::move(*s);
  }
  void TearDown() override {
    scheduler_.reset();  // Stop()s before the model goes
    model_.reset();
  }

  std::mt19937 rng_{std::random_device{}()};
  FakeClock clock_;
  CpuBackend backend_;
  std::unique_ptr<Model> model_;
  SchedulerOptions options_;
  std::unique_ptr<Scheduler> scheduler_;
};

// Double Sparsity over every channel with every layer sparse: the sequence keeps labels, so
// the label cache is in use while it runs.
AttentionOptions SparseEveryLayer(int64_t budget) {
  AttentionOptions a;
  a.mode = AttentionMode::kDoubleSparse;
  a.channels = 64;
  a.dense_layers = 0;
  a.token_budget = budget;
  a.sink = 2;
  a.recent = 4;
  return a;
}

TEST_F(SchedulerTest, DeadlineWhileRunningEndsItAndFreesKvAndLabels) {
  Load(/*kv_pool_tokens=*/4096, /*max_batch=*/4, /*max_queue=*/4);
  Start();
  ServingRequest r = Request(RandomPrompt(rng_, 20), 1800);
  r.generation.attention = SparseEveryLayer(16);
  r.deadline = clock_.Now() + absl::Seconds(10);
  auto stream = scheduler_->Submit(std::move(r));
  ASSERT_TRUE(stream.ok()) << stream.status();
  StreamEvent all;
  ReadTokens(**stream, all, 5);
  // Real time passes, fake time does not: still running, holding KV and labels.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  SchedulerStats busy = scheduler_->stats();
  EXPECT_EQ(busy.running, 1);
  EXPECT_GT(busy.kv_blocks_in_use, 0);
  EXPECT_GT(busy.label_bytes_in_use, 0);
  EXPECT_EQ(busy.label_sequences, 1);
  clock_.Advance(absl::Seconds(11));
  StreamEvent rest = ReadToEnd(**stream);
  EXPECT_EQ(rest.status.code(), absl::StatusCode::kDeadlineExceeded) << rest.status;
  EXPECT_THAT(rest.status.message(), HasSubstr("deadline exceeded"));
  EXPECT_LT(all.tokens.size() + rest.tokens.size(), 1800u);
  EXPECT_GE(rest.timings.total_ms, 11000.0);  // measured on the fake clock
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, DeadlineWhileQueuedNeverTakesKv) {
  Load(4096, /*max_batch=*/1, /*max_queue=*/4);
  Start();
  auto a = scheduler_->Submit(Request(RandomPrompt(rng_, 10), 1900));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.running == 1; }));
  ServingRequest late = Request(RandomPrompt(rng_, 10), 8);
  late.deadline = clock_.Now() + absl::Seconds(5);
  auto b = scheduler_->Submit(std::move(late));
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.queued == 1; }));
  clock_.Advance(absl::Seconds(6));
  const StreamEvent eb = ReadToEnd(**b);
  EXPECT_EQ(eb.status.code(), absl::StatusCode::kDeadlineExceeded) << eb.status;
  EXPECT_THAT(eb.status.message(), HasSubstr("queued"));
  EXPECT_TRUE(eb.tokens.empty());
  EXPECT_DOUBLE_EQ(eb.timings.queue_ms, 6000.0);
  (*a)->Cancel();
  const StreamEvent ea = ReadToEnd(**a);
  EXPECT_EQ(ea.status.code(), absl::StatusCode::kCancelled) << ea.status;
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, RequestThatDoesNotFitYetIsQueuedThenAdmitted) {
  // 2112 tokens = 132 blocks. The long request takes 1900 + 12 tokens (120 blocks), so the
  // second (40 + 200 = 15 blocks) must wait for it although the batch has room.
  Load(2112, /*max_batch=*/8, /*max_queue=*/8);
  Start();
  const std::vector<int32_t> prompt_b = RandomPrompt(rng_, 40);
  // The second request alone first: what it must produce after waiting.
  const StreamEvent alone = ReadToEnd(**scheduler_->Submit(Request(prompt_b, 200)));
  ASSERT_TRUE(alone.status.ok()) << alone.status;
  ASSERT_EQ(alone.tokens.size(), 200u);

  auto a = scheduler_->Submit(Request(RandomPrompt(rng_, 12), 1900));
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.running == 1; }));
  auto b = scheduler_->Submit(Request(prompt_b, 200));
  ASSERT_TRUE(b.ok()) << b.status();
  // Queued although only one of 8 batch slots is used: the pool is what is full.
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.queued == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  SchedulerStats st = scheduler_->stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.queued, 1);
  EXPECT_EQ(st.kv_sequences, 1);
  StreamEvent eb;
  EXPECT_FALSE((*b)->Next(eb, absl::Milliseconds(1)));  // nothing yet
  clock_.Advance(absl::Seconds(3));
  (*a)->Cancel();  // frees 120 blocks at the next token boundary
  eb = ReadToEnd(**b);
  ASSERT_TRUE(eb.status.ok()) << eb.status;
  EXPECT_EQ(eb.finish, ServingFinish::kLength);
  EXPECT_EQ(eb.tokens, alone.tokens);
  EXPECT_GE(eb.timings.queue_ms, 3000.0);
  EXPECT_EQ(ReadToEnd(**a).status.code(), absl::StatusCode::kCancelled);
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, RequestThatCanNeverFitIsResourceExhaustedAtSubmit) {
  Load(/*kv_pool_tokens=*/256, 4, 4);
  Start();
  const int64_t before = scheduler_->stats().requests_total;
  auto r = scheduler_->Submit(Request(RandomPrompt(rng_, 30), 240));  // 270 > 256
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("can never fit"));
  EXPECT_EQ(scheduler_->stats().requests_total, before);
  // Exactly the pool's size fits.
  auto fits = scheduler_->Submit(Request(RandomPrompt(rng_, 30), 226));
  ASSERT_TRUE(fits.ok()) << fits.status();
  const StreamEvent e = ReadToEnd(**fits);
  EXPECT_TRUE(e.status.ok()) << e.status;
  EXPECT_EQ(e.tokens.size(), 226u);
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, QueueBoundRefusesTheNextRequest) {
  Load(4096, /*max_batch=*/1, /*max_queue=*/2);
  Start();
  auto a = scheduler_->Submit(Request(RandomPrompt(rng_, 8), 1900));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.running == 1; }));
  auto b = scheduler_->Submit(Request(RandomPrompt(rng_, 8), 4));
  auto c = scheduler_->Submit(Request(RandomPrompt(rng_, 8), 4));
  ASSERT_TRUE(b.ok() && c.ok());
  auto d = scheduler_->Submit(Request(RandomPrompt(rng_, 8), 4));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(d.status().message(), HasSubstr("queue is full"));
  (*a)->Cancel();
  EXPECT_EQ(ReadToEnd(**a).status.code(), absl::StatusCode::kCancelled);
  for (auto* s : {&b, &c}) {
    const StreamEvent e = ReadToEnd(***s);
    EXPECT_TRUE(e.status.ok()) << e.status;
    EXPECT_EQ(e.tokens.size(), 4u);
  }
  ExpectIdle(*scheduler_);
  // With the queue drained, requests are accepted again.
  auto e = scheduler_->Submit(Request(RandomPrompt(rng_, 8), 2));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(ReadToEnd(**e).status.ok());
}

TEST_F(SchedulerTest, CancelWhileRunningFreesKvAndLabels) {
  Load(4096, 4, 4);
  Start();
  ServingRequest r = Request(RandomPrompt(rng_, 33), 1500);
  r.generation.attention = SparseEveryLayer(8);
  r.generation.attention.label_bits = 4;
  auto stream = scheduler_->Submit(std::move(r));
  ASSERT_TRUE(stream.ok()) << stream.status();
  StreamEvent all;
  ReadTokens(**stream, all, 3);
  EXPECT_GT(scheduler_->stats().label_bytes_in_use, 0);
  (*stream)->Cancel();
  const StreamEvent rest = ReadToEnd(**stream);
  EXPECT_EQ(rest.status.code(), absl::StatusCode::kCancelled);
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, AttentionStatsComeFromTheEngine) {
  Load(4096, 4, 4);
  Start();
  const std::vector<int32_t> prompt = RandomPrompt(rng_, 50);
  constexpr int64_t kNew = 12;
  auto run = [&](const AttentionOptions& a) {
    ServingRequest r = Request(prompt, kNew);
    r.generation.attention = a;
    auto s = scheduler_->Submit(std::move(r));
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? ReadToEnd(**s) : StreamEvent();
  };
  AttentionOptions dense;
  dense.mode = AttentionMode::kDense;
  const StreamEvent d = run(dense);
  ASSERT_TRUE(d.status.ok()) << d.status;
  EXPECT_EQ(d.attention.mode, "dense");
  EXPECT_EQ(d.attention.requested_mode, "dense");
  // Dense: every row reads its whole context, in each of 2 layers and 2 KV heads. The last
  // sampled token is never fed back, so rows = prompt + kNew - 1.
  uint64_t context = 0;
  for (uint64_t row = 0; row < prompt.size() + kNew - 1; ++row) context += row + 1;
  EXPECT_EQ(d.attention.tokens_in_context, context * 2 * 2);
  EXPECT_EQ(d.attention.tokens_attended, d.attention.tokens_in_context);
  EXPECT_EQ(d.attention.sparse_rows, 0u);
  EXPECT_EQ(d.attention.bytes_fetched_from_host, 0u);

  const StreamEvent s = run(SparseEveryLayer(10));
  ASSERT_TRUE(s.status.ok()) << s.status;
  EXPECT_EQ(s.attention.mode, "double_sparse");
  EXPECT_EQ(s.attention.requested_mode, "double_sparse");
  EXPECT_EQ(s.attention.tokens_in_context, d.attention.tokens_in_context);
  EXPECT_EQ(s.attention.sparse_rows,
            static_cast<uint64_t>((kNew - 1) * 2));  // decode rows x layers
  // Each of the kNew - 1 decode rows reads 10 tokens per layer and KV head instead of ~60.
  uint64_t prefill = 0;
  for (uint64_t row = 0; row < prompt.size(); ++row) prefill += row + 1;
  EXPECT_EQ(s.attention.tokens_attended, prefill * 2 * 2 + (kNew - 1) * 10 * 2 * 2);
  EXPECT_EQ(s.tokens.size(), static_cast<size_t>(kNew));
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, AttentionTheEngineCannotServeIsRefusedAtSubmit) {
  Load(4096, 4, 4);
  // A config with only the q kind, random orderings.
  ChannelConfig config;
  auto& q = config.Mutable(ChannelStatistic::kQ);
  q.resize(2, std::vector<std::vector<int32_t>>(4, std::vector<int32_t>(64)));
  for (auto& layer : q) {
    for (auto& head : layer) {
      std::iota(head.begin(), head.end(), 0);
      std::shuffle(head.begin(), head.end(), rng_);
    }
  }
  ASSERT_TRUE(model_->double_sparsity().SetChannelConfig(config).ok());
  options_.default_attention.statistic = ChannelStatistic::kQ;
  Start();
  ServingRequest r = Request(RandomPrompt(rng_, 12), 4);
  r.generation.attention = SparseEveryLayer(6);
  r.generation.attention.channels = 8;
  r.generation.attention.statistic = ChannelStatistic::kQK;  // not in the config
  auto refused = scheduler_->Submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("qk"));
  // A running request is not disturbed by the refused one, and the q kind works.
  r.generation.attention.statistic = ChannelStatistic::kQ;
  auto ok = scheduler_->Submit(r);
  ASSERT_TRUE(ok.ok()) << ok.status();
  const StreamEvent e = ReadToEnd(**ok);
  ASSERT_TRUE(e.status.ok()) << e.status;
  EXPECT_EQ(e.attention.mode, "double_sparse");
  EXPECT_LT(e.attention.tokens_attended, e.attention.tokens_in_context);
  ExpectIdle(*scheduler_);
}

TEST_F(SchedulerTest, DoubleSparseWithFewerChannelsNeedsAChannelConfig) {
  Load(4096, 4, 4);
  Start();
  ServingRequest r = Request(RandomPrompt(rng_, 12), 4);
  r.generation.attention = SparseEveryLayer(6);
  r.generation.attention.channels = 16;
  auto refused = scheduler_->Submit(r);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("channel config"));
  // auto without a config stays dense whatever the channels.
  r.generation.attention.mode = AttentionMode::kAuto;
  auto dense = scheduler_->Submit(r);
  ASSERT_TRUE(dense.ok()) << dense.status();
  const StreamEvent e = ReadToEnd(**dense);
  EXPECT_EQ(e.attention.mode, "dense");
  EXPECT_EQ(e.attention.requested_mode, "auto");
  // And the default options are checked when the scheduler is made.
  scheduler_.reset();
  options_.default_attention = SparseEveryLayer(6);
  options_.default_attention.channels = 16;
  auto bad = Scheduler::Create(*model_, nullptr, options_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.status().message(), HasSubstr("default attention"));
}

// Long prompts prefilled layer-major (SchedulerOptions::layer_major_from) — in one step, or a
// layer per step with the short request decoding between (layer_major_layers_per_step 1) —
// give the same tokens as chunked prefill, beside a short request that keeps decoding, and
// leave the engine idle afterwards.
TEST_F(SchedulerTest, LayerMajorPrefillGivesTheSameTokens) {
  std::vector<std::vector<int32_t>> tokens[3];
  for (int run = 0; run < 3; ++run) {
    const int64_t from = run == 0 ? 0 : 100;
    ASSERT_NO_FATAL_FAILURE(Load(4096, 4, 8));
    options_.layer_major_from = from;
    options_.layer_major_layers_per_step = run == 2 ? 1 : 0;
    ASSERT_NO_FATAL_FAILURE(Start());
    std::mt19937 rng(7);
    const std::vector<int32_t> long_prompt = RandomPrompt(rng, 300);
    const std::vector<int32_t> short_prompt = RandomPrompt(rng, 20);
    auto a = scheduler_->Submit(Request(short_prompt, 40));
    auto b = scheduler_->Submit(Request(long_prompt, 12));
    ASSERT_TRUE(a.ok() && b.ok());
    const StreamEvent ea = ReadToEnd(**a), eb = ReadToEnd(**b);
    ASSERT_TRUE(ea.status.ok()) << ea.status;
    ASSERT_TRUE(eb.status.ok()) << eb.status;
    EXPECT_EQ(eb.tokens.size(), 12u);
    tokens[run] = {ea.tokens, eb.tokens};
    ExpectIdle(*scheduler_);
    scheduler_.reset();
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  EXPECT_EQ(tokens[0], tokens[2]);
  SchedulerOptions bad;
  bad.layer_major_from = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
  bad.layer_major_from = 0;
  bad.layer_major_layers_per_step = -1;
  EXPECT_EQ(bad.Validate().code(), absl::StatusCode::kInvalidArgument);
}

// A request prefilled a layer per step, cancelled once admitted (between layers or after its
// prefill, whichever the engine thread reached), ends CANCELLED and leaves the engine idle (its
// staging pools and pool blocks freed), and the engine serves the next request normally.
// A request cancelled at once — in the queue or just admitted, whichever the engine thread
// reached — ends CANCELLED, and WaitIdle returns only once the published stats are idle too.
TEST_F(SchedulerTest, CancelRightAfterSubmitLeavesTheStatsIdle) {
  ASSERT_NO_FATAL_FAILURE(Load(4096, 4, 8));
  ASSERT_NO_FATAL_FAILURE(Start());
  std::mt19937 rng(11);
  for (int i = 0; i < 20; ++i) {
    auto a = scheduler_->Submit(Request(RandomPrompt(rng, 40), 30));
    ASSERT_TRUE(a.ok());
    (*a)->Cancel();
    EXPECT_EQ(ReadToEnd(**a).status.code(), absl::StatusCode::kCancelled);
    ExpectIdle(*scheduler_);
  }
}

TEST_F(SchedulerTest, LayerMajorPrefillCancelledBetweenLayers) {
  ASSERT_NO_FATAL_FAILURE(Load(4096, 4, 8));
  options_.layer_major_from = 100;
  options_.layer_major_layers_per_step = 1;
  ASSERT_NO_FATAL_FAILURE(Start());
  std::mt19937 rng(9);
  auto a = scheduler_->Submit(Request(RandomPrompt(rng, 300), 400));
  ASSERT_TRUE(a.ok());
  // Admitted (not racing the queue); its prefill is under way or done, its decode running.
  ASSERT_TRUE(WaitFor(*scheduler_, [](const SchedulerStats& s) { return s.running == 1; }));
  (*a)->Cancel();
  EXPECT_EQ(ReadToEnd(**a).status.code(), absl::StatusCode::kCancelled);
  ExpectIdle(*scheduler_);
  auto b = scheduler_->Submit(Request(RandomPrompt(rng, 300), 5));
  ASSERT_TRUE(b.ok());
  const StreamEvent eb = ReadToEnd(**b);
  EXPECT_TRUE(eb.status.ok()) << eb.status;
  EXPECT_EQ(eb.tokens.size(), 5u);
  ExpectIdle(*scheduler_);
}

}  // namespace
}  // namespace dsinfer
