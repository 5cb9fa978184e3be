// dsinfer-server end to end (DESIGN §7, tests/integration): the real binary on a free loopback
// port, the CPU backend, the tiny random model the CTest fixture writes. Each test talks gRPC
// through the generated C++ stubs, as any client would; results are compared against
// dsinfer-run (the offline generator) and against the same request run alone.
//
// Double Sparsity through the wire: the tiny model has head_dim 32 and no channel config, so
// per-request double_sparse uses channels = 32 (every channel; see docs/double-sparsity.md);
// one test calibrates a channel config with dsinfer-calibrate and serves it with fewer
// channels. Cancel and deadline tests run Double Sparsity requests so that both the KV pool
// and the label cache must return to idle.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/server_process.h"

namespace dsinfer::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kApiKey[] = "integration-secret";

std::string ModelDir() { return DSINFER_TEST_MODEL_DIR; }

struct Result {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<double> logprobs;
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::AttentionStats attention;
  int messages = 0;
};

constexpr int kTinyHeadDim = 32;
constexpr int kTinyLayers = 2;
constexpr int kTinyKvHeads = 2;

// Double Sparsity in every layer over `channels` channels with a token budget of `budget`.
void SetDoubleSparse(v1::GenerateRequest& r, int64_t budget, int channels = kTinyHeadDim) {
  v1::AttentionOptions* a = r.mutable_attention();
  a->set_mode("double_sparse");
  a->mutable_channels()->set_value(channels);
  a->mutable_token_budget()->set_value(budget);
  a->mutable_dense_layers()->set_value(0);
  a->mutable_sink()->set_value(2);
  a->mutable_recent()->set_value(2);
}

void Authorize(grpc::ClientContext& context) {
  context.AddMetadata("authorization", std::string("Bearer ") + kApiKey);
}

v1::GenerateRequest TokenRequest(std::vector<int32_t> prompt, uint32_t max_new_tokens) {
  v1::GenerateRequest r;
  r.mutable_token_ids()->mutable_ids()->Add(prompt.begin(), prompt.end());
  r.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

Result RunUnary(v1::Inference::Stub& stub, const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  Authorize(context);
  v1::GenerateResponse response;
  Result result;
  result.status = stub.Generate(&context, request, &response);
  result.tokens.assign(response.token_ids().begin(), response.token_ids().end());
  result.logprobs.assign(response.token_logprobs().begin(), response.token_logprobs().end());
  result.text = response.text();
  result.finish = response.finish_reason();
  result.attention = response.attention_stats();
  return result;
}

Result RunStream(v1::Inference::Stub& stub, const v1::GenerateRequest& request) {
  grpc::ClientContext context;
  Authorize(context);
  auto reader = stub.GenerateStream(&context, request);
  v1::GenerateStreamResponse message;
  Result result;
  while (reader->Read(&message)) {
    ++result.messages;
    result.tokens.insert(result.tokens.end(), message.token_ids().begin(), message.token_ids().end());
    result.logprobs.insert(result.logprobs.end(), message.token_logprobs().begin(),
                           message.token_logprobs().end());
    result.text += message.text();
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      result.finish = message.finish_reason();
      result.attention = message.attention_stats();
    }
  }
  result.status = reader->Finish();
  return result;
}

v1::ModelInfo Info(v1::Inference::Stub& stub) {
  grpc::ClientContext context;
  Authorize(context);
  v1::ModelInfo info;
  EXPECT_TRUE(stub.GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  return info;
}

// Waits (up to 5 s) for the server's KV and label-cache accounting to return to idle.
bool WaitKvIdle(v1::Inference::Stub& stub) {
  for (int i = 0; i < 250; ++i) {
    const v1::ModelInfo info = Info(stub);
    if (info.kv().blocks_in_use() == 0 && info.kv().bytes_in_use() == 0 &&
        info.kv().sequences() == 0 && info.kv().label_bytes_in_use() == 0 &&
        info.kv().label_sequences() == 0 && info.running() == 0 && info.queued() == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// dsinfer-run's greedy tokens for `prompt`.
std::vector<int32_t> OfflineTokens(const std::vector<int32_t>& prompt, int max_new_tokens,
                                   const std::string& extra_args = "") {
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string command = std::string(DSINFER_BIN_DIR) + "/dsinfer-run --model " + ModelDir() +
                              " --prompt-ids " + ids + " --max-new-tokens " +
                              std::to_string(max_new_tokens) + " --ignore-eos --json " + extra_args;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out.append(buffer, n);
  if (pclose(pipe) != 0) return {};
  return nlohmann::json::parse(out)["token_ids"].get<std::vector<int32_t>>();
}

std::vector<int32_t> Prompt(int length, int salt) {
  std::vector<int32_t> prompt = {1};
  for (int i = 1; i < length; ++i) prompt.push_back(3 + (i * 37 + salt * 101) % 500);
  return prompt;
}

class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new ServerProcess();
    std::string error;
    ASSERT_TRUE(server_->Start({"--model", ModelDir(), "--api-key", kApiKey, "--max-batch", "16",
                                "--prefill-chunk", "64", "--log-level", "warn"},
                               std::string(DSINFER_TEST_WORK_DIR) + "/server_test.port", &error))
        << error;
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(server_->Stop(SIGTERM), 0);
    delete server_;
  }
  void SetUp() override {
    ASSERT_NE(server_->pid(), -1);
    stub_ = server_->NewStub();
  }
  static ServerProcess* server_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};
ServerProcess* ServerTest::server_ = nullptr;

TEST_F(ServerTest, StreamedPiecesConcatenateToTheUnaryResult) {
  const v1::GenerateRequest request = TokenRequest(Prompt(9, 1), 24);
  const Result unary = RunUnary(*stub_, request);
  ASSERT_TRUE(unary.status.ok()) << unary.status.error_message();
  const Result streamed = RunStream(*stub_, request);
  ASSERT_TRUE(streamed.status.ok()) << streamed.status.error_message();
  EXPECT_EQ(unary.tokens.size(), 24u);
  EXPECT_EQ(streamed.tokens, unary.tokens);
  EXPECT_EQ(streamed.text, unary.text);
  EXPECT_EQ(streamed.finish, v1::FINISH_REASON_LENGTH);
  // How many messages carry the tokens depends on timing (the handler merges what piled up);
  // CancelMidStream shows messages arrive while the request is still running.
  EXPECT_GE(streamed.messages, 1);
}

TEST_F(ServerTest, GreedyOutputEqualsDsinferRun) {
  for (int length : {2, 17, 80}) {
    const std::vector<int32_t> prompt = Prompt(length, length);
    const Result served = RunUnary(*stub_, TokenRequest(prompt, 20));
    ASSERT_TRUE(served.status.ok()) << served.status.error_message();
    EXPECT_EQ(served.tokens, OfflineTokens(prompt, 20)) << "prompt length " << length;
  }
  // dsinfer-run's attention flags set the same options as a request's attention fields.
  const std::vector<int32_t> prompt = Prompt(90, 3);
  v1::GenerateRequest sparse = TokenRequest(prompt, 20);
  SetDoubleSparse(sparse, 8);
  sparse.mutable_attention()->mutable_label_bits()->set_value(4);
  const Result served = RunUnary(*stub_, sparse);
  ASSERT_TRUE(served.status.ok()) << served.status.error_message();
  EXPECT_EQ(served.attention.mode(), "double_sparse");
  EXPECT_EQ(served.tokens,
            OfflineTokens(prompt, 20,
                          "--attention-mode double_sparse --channels 32 --token-budget 8 "
                          "--label-bits 4 --sink 2 --recent 2 --dense-layers 0"));
}

TEST_F(ServerTest, SeededSamplingRepeats) {
  v1::GenerateRequest request = TokenRequest(Prompt(6, 3), 24);
  request.mutable_sampling()->set_temperature(1.5f);
  request.mutable_sampling()->mutable_top_p()->set_value(0.95f);
  request.mutable_sampling()->set_seed(1234);
  const Result a = RunUnary(*stub_, request);
  const Result b = RunStream(*stub_, request);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  request.mutable_sampling()->set_seed(1235);
  const Result c = RunUnary(*stub_, request);
  EXPECT_NE(a.tokens, c.tokens);  // 24 draws at temperature 1.5 over 512 ids
}

TEST_F(ServerTest, ConcurrentStreamsEachEqualTheRequestAlone) {
  constexpr int kStreams = 16;
  std::vector<v1::GenerateRequest> requests;
  for (int i = 0; i < kStreams; ++i) {
    v1::GenerateRequest r = TokenRequest(Prompt(3 + i * 11, i), 6 + 5 * i);
    if (i % 2 == 1) {
      r.mutable_sampling()->set_temperature(0.9f);
      r.mutable_sampling()->set_seed(100 + i);
    }
    requests.push_back(r);
  }
  std::vector<Result> alone;
  for (const auto& r : requests) alone.push_back(RunUnary(*stub_, r));
  std::vector<Result> together(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] {
      auto stub = server_->NewStub();
      together[i] = RunStream(*stub, requests[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(alone[i].status.ok()) << alone[i].status.error_message();
    ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
    EXPECT_EQ(together[i].tokens.size(), static_cast<size_t>(6 + 5 * i));
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "stream " << i;
  }
  EXPECT_TRUE(WaitKvIdle(*stub_));
}

TEST_F(ServerTest, CancelMidStreamReturnsKvToIdle) {
  ASSERT_TRUE(WaitKvIdle(*stub_));
  grpc::ClientContext context;
  Authorize(context);
  v1::GenerateRequest request = TokenRequest(Prompt(12, 5), 1900);
  SetDoubleSparse(request, 8);
  auto reader = stub_->GenerateStream(&context, request);
  v1::GenerateStreamResponse message;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&message));
  const v1::ModelInfo busy = Info(*stub_);
  EXPECT_GT(busy.kv().blocks_in_use(), 0u);  // the accounting sees the live request
  EXPECT_EQ(busy.kv().sequences(), 1u);
  EXPECT_GT(busy.kv().label_bytes_in_use(), 0u);  // and its Double Sparsity labels
  EXPECT_EQ(busy.kv().label_sequences(), 1u);
  context.TryCancel();
  while (reader->Read(&message)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitKvIdle(*stub_));
}

TEST_F(ServerTest, ShortDeadlineReturnsDeadlineExceededAndKvToIdle) {
  grpc::ClientContext context;
  Authorize(context);
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(30));
  v1::GenerateResponse response;
  v1::GenerateRequest request = TokenRequest(Prompt(12, 6), 1900);
  SetDoubleSparse(request, 8);
  request.mutable_attention()->mutable_label_bits()->set_value(4);
  const grpc::Status status = stub_->Generate(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(WaitKvIdle(*stub_));
}

TEST_F(ServerTest, CliGenerateHealthAndBench) {
  const std::vector<int32_t> prompt = Prompt(7, 4);
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string cli = std::string(DSINFER_BIN_DIR) + "/dsinfer --server " + server_->address() +
                          " --api-key " + kApiKey + " ";
  auto run = [](const std::string& command, std::string* out) {
    FILE* pipe = popen(command.c_str(), "r");
    char buffer[4096];
    while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) out->append(buffer, n);
    return pclose(pipe);
  };
  std::string out;
  ASSERT_EQ(run(cli + "generate --json --ignore-eos --max-new-tokens 10 --prompt-ids " + ids, &out), 0) << out;
  const Result unary = RunUnary(*stub_, TokenRequest(prompt, 10));
  EXPECT_EQ(nlohmann::json::parse(out)["token_ids"].get<std::vector<int32_t>>(), unary.tokens);
  out.clear();
  ASSERT_EQ(run(cli + "health", &out), 0);
  EXPECT_EQ(out, "SERVING\n");
  out.clear();
  EXPECT_EQ(run(cli + "bench --requests 6 --concurrency 3 --prompt-tokens 16 --max-new-tokens 8 2>/dev/null", &out), 0);
  EXPECT_THAT(out, HasSubstr("requests: 6 ok, 0 failed"));
  EXPECT_THAT(out, HasSubstr("ttft"));
  out.clear();
  EXPECT_NE(run(std::string(DSINFER_BIN_DIR) + "/dsinfer --server " + server_->address() +
                    " generate --prompt-ids 1,2 2>&1",
                &out),
            0);
  EXPECT_THAT(out, HasSubstr("UNAUTHENTICATED"));
}

TEST_F(ServerTest, DoubleSparseFullBudgetEqualsDenseAndSmallBudgetAttendsFewer) {
  constexpr uint32_t kNew = 24;
  const std::vector<int32_t> prompt = Prompt(70, 8);
  v1::GenerateRequest dense = TokenRequest(prompt, kNew);
  dense.mutable_attention()->set_mode("dense");
  const Result d = RunUnary(*stub_, dense);
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(d.attention.mode(), "dense");
  EXPECT_EQ(d.attention.sparse_rows(), 0u);
  EXPECT_EQ(d.attention.tokens_attended(), d.attention.tokens_in_context());

  // A budget at least the context: the selection is every token, so the result is dense's.
  v1::GenerateRequest full = TokenRequest(prompt, kNew);
  SetDoubleSparse(full, 4096);
  const Result f = RunStream(*stub_, full);
  ASSERT_TRUE(f.status.ok()) << f.status.error_message();
  EXPECT_EQ(f.attention.mode(), "double_sparse");
  EXPECT_EQ(f.attention.requested_mode(), "double_sparse");
  EXPECT_EQ(f.attention.sparse_rows(), (kNew - 1) * kTinyLayers);
  EXPECT_EQ(f.attention.tokens_attended(), f.attention.tokens_in_context());
  EXPECT_EQ(f.attention.tokens_in_context(), d.attention.tokens_in_context());
  EXPECT_EQ(f.tokens, d.tokens);
  ASSERT_EQ(f.logprobs.size(), d.logprobs.size());
  for (size_t i = 0; i < f.logprobs.size(); ++i)
    EXPECT_NEAR(f.logprobs[i], d.logprobs[i], 1e-3) << i;

  // A small budget: a sane response that read far fewer K/V rows.
  for (int label_bits : {16, 4}) {
    v1::GenerateRequest small = TokenRequest(prompt, kNew);
    SetDoubleSparse(small, 8);
    small.mutable_attention()->mutable_label_bits()->set_value(label_bits);
    const Result s = RunUnary(*stub_, small);
    ASSERT_TRUE(s.status.ok()) << s.status.error_message();
    EXPECT_EQ(s.finish, v1::FINISH_REASON_LENGTH);
    ASSERT_EQ(s.tokens.size(), kNew);
    for (size_t i = 0; i < s.tokens.size(); ++i) {
      EXPECT_GE(s.tokens[i], 0);
      EXPECT_LT(s.tokens[i], 512);
      EXPECT_TRUE(std::isfinite(s.logprobs[i]) && s.logprobs[i] <= 0.0) << s.logprobs[i];
    }
    EXPECT_EQ(s.attention.mode(), "double_sparse");
    EXPECT_EQ(s.attention.tokens_in_context(), d.attention.tokens_in_context());
    // Prefill stays dense; each decode row reads 8 rows per layer and KV head.
    uint64_t prefill = 0;
    for (uint64_t row = 0; row < prompt.size(); ++row) prefill += row + 1;
    EXPECT_EQ(s.attention.tokens_attended(),
              (prefill + (kNew - 1) * 8) * kTinyLayers * kTinyKvHeads);
    EXPECT_LT(s.attention.tokens_attended(), d.attention.tokens_attended());
    EXPECT_EQ(s.attention.bytes_fetched_from_host(), 0u);
  }
  EXPECT_TRUE(WaitKvIdle(*stub_));
}

TEST_F(ServerTest, ModelInfoReportsAttentionDefaultsAndLabelAccounting) {
  const v1::ModelInfo info = Info(*stub_);
  EXPECT_EQ(info.default_attention().mode(), "auto");
  EXPECT_EQ(info.default_attention().channels().value(), 16);
  EXPECT_EQ(info.default_attention().statistic(), "qk");
  EXPECT_EQ(info.default_attention().dense_layers().value(), 2);
  EXPECT_EQ(info.channel_config(), "");
  EXPECT_EQ(info.default_attention().aggregation(), "sum");
}

struct BadInput {
  std::string name;
  v1::GenerateRequest request;
  grpc::StatusCode code;
  std::string message;
};

TEST_F(ServerTest, EveryBadInputGetsTheRightCodeAndTheServerKeepsServing) {
  const v1::GenerateRequest good = TokenRequest(Prompt(5, 9), 8);
  std::vector<BadInput> cases;
  auto add = [&](std::string name, grpc::StatusCode code, std::string message, auto mutate) {
    v1::GenerateRequest r = good;
    mutate(r);
    cases.push_back({std::move(name), r, code, std::move(message)});
  };
  using C = grpc::StatusCode;
  add("no prompt", C::INVALID_ARGUMENT, "prompt is empty", [](auto& r) { r.clear_prompt(); });
  add("empty ids", C::INVALID_ARGUMENT, "prompt is empty", [](auto& r) { r.mutable_token_ids()->clear_ids(); });
  add("empty text", C::INVALID_ARGUMENT, "prompt is empty", [](auto& r) { r.set_text(""); });
  add("id >= vocab", C::INVALID_ARGUMENT, "outside the vocabulary",
      [](auto& r) { r.mutable_token_ids()->add_ids(512); });
  add("negative id", C::INVALID_ARGUMENT, "outside the vocabulary",
      [](auto& r) { r.mutable_token_ids()->add_ids(-1); });
  add("over context", C::INVALID_ARGUMENT, "exceeds the context limit",
      [](auto& r) { r.mutable_stopping()->set_max_new_tokens(2048); });
  add("NaN temperature", C::INVALID_ARGUMENT, "temperature",
      [](auto& r) { r.mutable_sampling()->set_temperature(std::numeric_limits<float>::quiet_NaN()); });
  add("negative temperature", C::INVALID_ARGUMENT, "temperature",
      [](auto& r) { r.mutable_sampling()->set_temperature(-0.5f); });
  add("top_p 0", C::INVALID_ARGUMENT, "top_p", [](auto& r) { r.mutable_sampling()->mutable_top_p()->set_value(0.0f); });
  add("top_p 1.5", C::INVALID_ARGUMENT, "top_p", [](auto& r) { r.mutable_sampling()->mutable_top_p()->set_value(1.5f); });
  add("unknown mode", C::INVALID_ARGUMENT, "attention.mode", [](auto& r) { r.mutable_attention()->set_mode("turbo"); });
  add("bad label bits", C::INVALID_ARGUMENT, "label_bits",
      [](auto& r) { r.mutable_attention()->mutable_label_bits()->set_value(3); });
  add("unknown statistic", C::INVALID_ARGUMENT, "attention.statistic",
      [](auto& r) { r.mutable_attention()->set_statistic("kq"); });
  add("unknown aggregation", C::INVALID_ARGUMENT, "attention.aggregation",
      [](auto& r) { r.mutable_attention()->set_aggregation("mean"); });
  add("negative sink", C::INVALID_ARGUMENT, "sink",
      [](auto& r) { r.mutable_attention()->mutable_sink()->set_value(-1); });
  add("budget ratio 0", C::INVALID_ARGUMENT, "token_budget_ratio",
      [](auto& r) { r.mutable_attention()->mutable_token_budget_ratio()->set_value(0.0); });
  add("channels over head_dim", C::INVALID_ARGUMENT, "channels", [](auto& r) {
    r.mutable_attention()->set_mode("double_sparse");
    r.mutable_attention()->mutable_channels()->set_value(kTinyHeadDim + 1);
  });
  add("fewer channels without a channel config", C::FAILED_PRECONDITION, "channel config",
      [](auto& r) { SetDoubleSparse(r, 8, 8); });
  add("too many stops", C::INVALID_ARGUMENT, "too many stop sequences", [](auto& r) {
    for (int i = 0; i < 17; ++i) r.mutable_stopping()->add_stop_sequences("stop" + std::to_string(i));
  });
  add("stop sequences without tokenizer", C::FAILED_PRECONDITION, "tokenizer",
      [](auto& r) { r.mutable_stopping()->add_stop_sequences("\n"); });
  add("text without tokenizer", C::FAILED_PRECONDITION, "tokenizer", [](auto& r) { r.set_text("hello"); });
  add("too many top logprobs", C::INVALID_ARGUMENT, "top_logprobs", [](auto& r) { r.set_top_logprobs(1000); });
  add("100 MB prompt", C::RESOURCE_EXHAUSTED, "larger than max",
      [](auto& r) { r.set_text(std::string(100 << 20, 'a')); });
  for (const BadInput& c : cases) {
    const Result result = RunUnary(*stub_, c.request);
    EXPECT_EQ(result.status.error_code(), c.code) << c.name << ": " << result.status.error_message();
    EXPECT_THAT(result.status.error_message(), HasSubstr(c.message)) << c.name;
    const Result streamed = RunStream(*stub_, c.request);
    EXPECT_EQ(streamed.status.error_code(), c.code) << c.name << " (stream)";
  }
  // API key: missing and wrong.
  for (const char* header : {"", "authorization", "x-api-key"}) {
    grpc::ClientContext context;
    if (std::string(header) == "authorization") context.AddMetadata("authorization", "Bearer wrong");
    if (std::string(header) == "x-api-key") context.AddMetadata("x-api-key", "wrong");
    v1::GenerateResponse response;
    const grpc::Status status = stub_->Generate(&context, good, &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << header;
    EXPECT_THAT(status.error_message(), HasSubstr(*header ? "wrong" : "API key is required"));
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("x-api-key", kApiKey);
    v1::ModelInfo info;
    EXPECT_TRUE(stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
  }
  // Still serving, and nothing leaked.
  const Result after = RunUnary(*stub_, good);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens.size(), 8u);
  EXPECT_TRUE(WaitKvIdle(*stub_));
}

// A server of its own: a small KV pool (never-fit requests) and SIGTERM while streaming.
TEST(ServerShutdownTest, SigtermDuringStreamingFinishesOrCancelsAndExitsZero) {
  ServerProcess server;
  std::string error;
  ASSERT_TRUE(server.Start({"--model", ModelDir(), "--kv-pool-tokens", "1024", "--shutdown-grace-s",
                            "1.5", "--log-level", "warn"},
                           std::string(DSINFER_TEST_WORK_DIR) + "/shutdown_test.port", &error))
      << error;
  auto stub = server.NewStub();
  {
    grpc::ClientContext context;
    v1::GenerateResponse response;
    const grpc::Status status = stub->Generate(&context, TokenRequest(Prompt(8, 1), 1500), &response);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr("can never fit"));
  }
  // Each needs 63 of the 64 blocks: one runs, the others queue.
  constexpr int kStreams = 3;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::GenerateStreamResponse>>> readers;
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    readers.push_back(stub->GenerateStream(contexts.back().get(), TokenRequest(Prompt(8, i), 1000)));
  }
  v1::GenerateStreamResponse message;
  ASSERT_TRUE(readers[0]->Read(&message));
  // A stream call returns before its request reaches the server; wait until the server has
  // accepted all of them, else a late one is refused by the drain.
  {
    uint64_t accepted = 0;
    for (int attempt = 0; attempt < 500 && accepted < kStreams; ++attempt) {
      grpc::ClientContext context;
      v1::ModelInfo info;
      ASSERT_TRUE(stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info).ok());
      accepted = info.requests_total();
      if (accepted < kStreams) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(accepted, static_cast<uint64_t>(kStreams));
  }
  kill(server.pid(), SIGTERM);
  // During the drain (the grace period is long enough that this call lands inside it), new
  // calls are refused as UNAVAILABLE; once the grace period ends the transport itself closes.
  // The signal is delivered asynchronously: calls may still succeed until the server notices
  // it; the first call that does not succeed must be refused as UNAVAILABLE.
  {
    grpc::Status status;
    for (int attempt = 0; attempt < 200 && status.ok(); ++attempt) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::GenerateResponse response;
      status = stub->Generate(&context, TokenRequest(Prompt(4, 1), 1), &response);
    }
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  }
  for (int i = 0; i < kStreams; ++i) {
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
    while (readers[i]->Read(&message)) {
      if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) finish = message.finish_reason();
    }
    const grpc::Status status = readers[i]->Finish();
    if (status.ok()) {
      EXPECT_NE(finish, v1::FINISH_REASON_UNSPECIFIED) << "stream " << i << " ended without a final message";
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << i << ": " << status.error_message();
    }
  }
  EXPECT_EQ(server.Wait(), 0);
}

// A server with a channel config calibrated here by dsinfer-calibrate on the tiny model: Double
// Sparsity with 8 of 32 channels, set as the server's defaults, so a request without
// attention options runs it.
TEST(ServerChannelConfigTest, CalibratedConfigServesFewerChannelsByDefault) {
  const std::string work = DSINFER_TEST_WORK_DIR;
  const std::string ids_file = work + "/calibration_ids.txt";
  const std::string config = work + "/tiny_channels.json";
  {
    std::mt19937 rng(std::random_device{}());
    std::uniform_int_distribution<int> id(3, 511);
    std::ofstream out(ids_file);
    for (int i = 0; i < 256; ++i) out << id(rng) << (i % 16 == 15 ? "\n" : " ");
  }
  std::remove(config.c_str());
  const std::string calibrate = std::string(DSINFER_BIN_DIR) + "/dsinfer-calibrate --model " +
                                ModelDir() + " --ids-file " + ids_file + " --out " + config +
                                " --block 128 2>&1";
  FILE* pipe = popen(calibrate.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string log;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) log.append(buffer, n);
  ASSERT_EQ(pclose(pipe), 0) << log;

  ServerProcess server;
  std::string error;
  ASSERT_TRUE(server.Start({"--model",          ModelDir(),
                            "--channel-config", config,
                            "--attention-mode", "double_sparse",
                            "--channels",       "8",
                            "--label-bits",     "4",
                            "--dense-layers",   "0",
                            "--token-budget",   "10",
                            "--sink",           "2",
                            "--recent",         "3",
                            "--log-level",      "warn"},
                           work + "/channel_config_test.port", &error))
      << error;
  auto stub = server.NewStub();
  const v1::ModelInfo info = Info(*stub);
  EXPECT_EQ(info.channel_config(), config);
  EXPECT_EQ(info.default_attention().mode(), "double_sparse");
  EXPECT_EQ(info.default_attention().channels().value(), 8);
  EXPECT_EQ(info.default_attention().label_bits().value(), 4);

  constexpr uint32_t kNew = 16;
  const std::vector<int32_t> prompt = Prompt(40, 2);
  const Result sparse = RunStream(*stub, TokenRequest(prompt, kNew));
  ASSERT_TRUE(sparse.status.ok()) << sparse.status.error_message();
  ASSERT_EQ(sparse.tokens.size(), kNew);
  EXPECT_EQ(sparse.attention.mode(), "double_sparse");
  EXPECT_EQ(sparse.attention.sparse_rows(), (kNew - 1) * kTinyLayers);
  uint64_t prefill = 0;
  for (uint64_t row = 0; row < prompt.size(); ++row) prefill += row + 1;
  EXPECT_EQ(sparse.attention.tokens_attended(),
            (prefill + (kNew - 1) * 10) * kTinyLayers * kTinyKvHeads);
  // Per request: dense overrides the default; other channel counts use the same config.
  v1::GenerateRequest dense = TokenRequest(prompt, kNew);
  dense.mutable_attention()->set_mode("dense");
  const Result d = RunUnary(*stub, dense);
  ASSERT_TRUE(d.status.ok()) << d.status.error_message();
  EXPECT_EQ(d.attention.mode(), "dense");
  v1::GenerateRequest wide = TokenRequest(prompt, kNew);
  wide.mutable_attention()->mutable_channels()->set_value(16);
  wide.mutable_attention()->mutable_label_bits()->set_value(16);
  wide.mutable_attention()->mutable_token_budget()->set_value(4096);
  const Result w = RunUnary(*stub, wide);
  ASSERT_TRUE(w.status.ok()) << w.status.error_message();
  // A budget over the context selects every token whatever the channels: dense's result.
  EXPECT_EQ(w.tokens, d.tokens);
  EXPECT_EQ(w.attention.tokens_attended(), w.attention.tokens_in_context());
  EXPECT_TRUE(WaitKvIdle(*stub));
  EXPECT_EQ(server.Stop(SIGTERM), 0);
}

// A server whose defaults it cannot honour refuses to start, saying why.
TEST(ServerChannelConfigTest, UnservableDefaultsFailAtStartup) {
  ServerProcess server;
  std::string error;
  EXPECT_FALSE(server.Start({"--model", ModelDir(), "--attention-mode", "double_sparse",
                             "--channels", "8", "--log-level", "warn"},
                            std::string(DSINFER_TEST_WORK_DIR) + "/bad_defaults.port", &error));
  EXPECT_THAT(error, HasSubstr("exited during startup"));
}

}  // namespace
}  // namespace dsinfer::testing
