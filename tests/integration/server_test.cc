// dsinfer-server end to end (DESIGN §7, tests/integration): the real binary on a free loopback
// port, the CPU backend, the tiny random model the CTest fixture writes. Each test talks gRPC
// through the generated C++ stubs, as any client would; results are compared against
// dsinfer-run (the offline generator) and against the same request run alone.
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
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
  std::string text;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  int messages = 0;
};

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
  result.text = response.text();
  result.finish = response.finish_reason();
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
    result.text += message.text();
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) result.finish = message.finish_reason();
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

// Waits (up to 5 s) for the server's KV accounting to return to idle.
bool WaitKvIdle(v1::Inference::Stub& stub) {
  for (int i = 0; i < 250; ++i) {
    const v1::ModelInfo info = Info(stub);
    if (info.kv().blocks_in_use() == 0 && info.kv().bytes_in_use() == 0 && info.kv().sequences() == 0 &&
        info.running() == 0 && info.queued() == 0) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// dsinfer-run's greedy tokens for `prompt`.
std::vector<int32_t> OfflineTokens(const std::vector<int32_t>& prompt, int max_new_tokens) {
  std::string ids;
  for (int32_t id : prompt) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  const std::string command = std::string(DSINFER_BIN_DIR) + "/dsinfer-run --model " + ModelDir() +
                              " --prompt-ids " + ids + " --max-new-tokens " +
                              std::to_string(max_new_tokens) + " --ignore-eos --json";
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
  auto reader = stub_->GenerateStream(&context, TokenRequest(Prompt(12, 5), 1900));
  v1::GenerateStreamResponse message;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(reader->Read(&message));
  const v1::ModelInfo busy = Info(*stub_);
  EXPECT_GT(busy.kv().blocks_in_use(), 0u);  // the accounting sees the live request
  EXPECT_EQ(busy.kv().sequences(), 1u);
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
  const grpc::Status status = stub_->Generate(&context, TokenRequest(Prompt(12, 6), 1900), &response);
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

}  // namespace
}  // namespace dsinfer::testing
