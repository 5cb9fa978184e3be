// dsinfer: the command-line client of dsinfer-server. Depends on proto/ only (no engine, no
// CUDA), so it builds and ships alone.
//
//   dsinfer generate --prompt "text" | --prompt-ids 1,2,3 [--max-new-tokens N] [--json]
//   dsinfer tokenize --prompt "text"        dsinfer detokenize --prompt-ids 1,2,3
//   dsinfer info                            dsinfer health
//   dsinfer bench --requests N --concurrency C --prompt-tokens P --max-new-tokens M
//
// Flags are absl flags, spelled with dashes or underscores, each mirrored by an environment
// variable DSINFER_<NAME> (DSINFER_SERVER, DSINFER_API_KEY, ...); the command line wins. The
// mirroring is re-implemented here (a dozen lines) because the engine's helper must not be a
// dependency of the client.
//
// --server takes one target (host:port, or a gRPC URI such as dns:///name:port, balanced
// round-robin over what it resolves to) or several comma-separated ones, which the client
// rotates through per request.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dsinfer/v1/inference.grpc.pb.h"
#include "google/protobuf/util/json_util.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "server target(s): host:port[,host:port] or dns:///host:port");
ABSL_FLAG(std::string, api_key, "", "API key (sent as authorization: Bearer KEY)");
ABSL_FLAG(bool, tls, false, "connect with TLS (system roots unless --tls-ca)");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificate(s) to trust (implies --tls)");
ABSL_FLAG(std::string, tls_server_name, "", "override the TLS server name to verify");
ABSL_FLAG(double, timeout_s, 600, "per-request deadline in seconds (0 = none)");
ABSL_FLAG(std::string, prompt, "", "prompt text");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as comma-separated token ids");
ABSL_FLAG(int32_t, max_new_tokens, 0, "tokens to generate; 0 = the server's default");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature; 0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "top-k filter; 0 = off");
ABSL_FLAG(double, top_p, 1.0, "top-p filter in (0, 1]");
ABSL_FLAG(double, min_p, 0.0, "min-p filter in [0, 1)");
ABSL_FLAG(double, repetition_penalty, 1.0, "repetition penalty; 1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(std::vector<std::string>, stop, {}, "stop sequences (comma-separated)");
ABSL_FLAG(bool, ignore_eos, false, "do not stop at EOS");
ABSL_FLAG(std::string, attention_mode, "", "auto | dense | double_sparse (default: the server's)");
ABSL_FLAG(int64_t, token_budget, 0, "Double Sparsity token budget (0 = server default)");
ABSL_FLAG(double, token_budget_ratio, 0,
          "token budget as a fraction of the context (0 = server default)");
ABSL_FLAG(int32_t, channels, 0, "label channels per KV head (0 = server default)");
ABSL_FLAG(int32_t, label_bits, 0, "label bits 16 | 4 (0 = server default)");
ABSL_FLAG(int32_t, top_logprobs, 0, "report the N most likely tokens per position");
ABSL_FLAG(bool, json, false, "print the full response as JSON");
ABSL_FLAG(bool, skip_special_tokens, false, "leave special tokens out of text");
ABSL_FLAG(int32_t, requests, 32, "bench: number of requests");
ABSL_FLAG(int32_t, concurrency, 4, "bench: requests in flight");
ABSL_FLAG(int32_t, prompt_tokens, 128, "bench: prompt length in tokens (random ids) unless --prompt/--prompt-ids");

namespace {

namespace v1 = dsinfer::v1;

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer: error: %s\n", message.c_str());
  return 1;
}

std::vector<std::string> ParseFlags(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "dsinfer <generate|tokenize|detokenize|info|health|bench> [--server HOST:PORT] [flags]");
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    std::string env = "DSINFER_";
    for (char c : name) env.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    const char* value = std::getenv(env.c_str());
    std::string error;
    if (value != nullptr && !flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "dsinfer: error: environment %s=%s: %s\n", env.c_str(), value, error.c_str());
      std::exit(2);
    }
  }
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size() && args[i] != "--"; ++i) {
    if (args[i].rfind("--", 0) != 0) continue;
    for (size_t j = 2; j < std::min(args[i].find('='), args[i].size()); ++j) {
      if (args[i][j] == '-') args[i][j] = '_';
    }
  }
  std::vector<char*> raw;
  for (std::string& a : args) raw.push_back(a.data());
  std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(raw.size()), raw.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One channel per comma-separated target, handed out round-robin.
class Channels {
 public:
  bool Init(std::string* error) {
    std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
    if (absl::GetFlag(FLAGS_tls) || !absl::GetFlag(FLAGS_tls_ca).empty()) {
      grpc::SslCredentialsOptions ssl;
      if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
        ssl.pem_root_certs = ReadFile(absl::GetFlag(FLAGS_tls_ca));
        if (ssl.pem_root_certs.empty()) {
          *error = "--tls-ca: cannot read " + absl::GetFlag(FLAGS_tls_ca);
          return false;
        }
      }
      credentials = grpc::SslCredentials(ssl);
    }
    grpc::ChannelArguments args;
    args.SetLoadBalancingPolicyName("round_robin");
    args.SetMaxReceiveMessageSize(-1);
    if (!absl::GetFlag(FLAGS_tls_server_name).empty()) {
      args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_tls_server_name));
    }
    for (absl::string_view target : absl::StrSplit(absl::GetFlag(FLAGS_server), ',', absl::SkipWhitespace())) {
      stubs_.push_back(v1::Inference::NewStub(
          grpc::CreateCustomChannel(std::string(absl::StripAsciiWhitespace(target)), credentials, args)));
      channels_.push_back(grpc::CreateCustomChannel(std::string(absl::StripAsciiWhitespace(target)),
                                                    credentials, args));
    }
    if (stubs_.empty()) *error = "--server is empty";
    return !stubs_.empty();
  }
  v1::Inference::Stub& Next() { return *stubs_[next_.fetch_add(1) % stubs_.size()]; }
  const std::vector<std::shared_ptr<grpc::Channel>>& channels() const { return channels_; }

 private:
  std::vector<std::unique_ptr<v1::Inference::Stub>> stubs_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::atomic<size_t> next_{0};
};

void Prepare(grpc::ClientContext& context) {
  if (!absl::GetFlag(FLAGS_api_key).empty()) {
    context.AddMetadata("authorization", "Bearer " + absl::GetFlag(FLAGS_api_key));
  }
  const double timeout = absl::GetFlag(FLAGS_timeout_s);
  if (timeout > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000)));
  }
}

int RpcFail(const grpc::Status& status) {
  static const char* const kNames[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                       "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  const int code = status.error_code();
  return Fail(std::string(code >= 0 && code <= 16 ? kNames[code] : "?") + ": " + status.error_message());
}

bool ParseIds(const std::string& text, std::vector<int32_t>* ids) {
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(piece), &id)) return false;
    ids->push_back(id);
  }
  return true;
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

// The request the generate and bench subcommands send.
bool BuildRequest(v1::GenerateRequest* r, std::string* error) {
  const std::string ids = absl::GetFlag(FLAGS_prompt_ids);
  if (!ids.empty()) {
    std::vector<int32_t> parsed;
    if (!ParseIds(ids, &parsed)) {
      *error = "--prompt-ids: not a comma-separated list of token ids";
      return false;
    }
    r->mutable_token_ids()->mutable_ids()->Add(parsed.begin(), parsed.end());
  } else if (!absl::GetFlag(FLAGS_prompt).empty()) {
    r->set_text(absl::GetFlag(FLAGS_prompt));
  }
  v1::SamplingParams* s = r->mutable_sampling();
  s->set_temperature(static_cast<float>(absl::GetFlag(FLAGS_temperature)));
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  s->mutable_top_p()->set_value(static_cast<float>(absl::GetFlag(FLAGS_top_p)));
  s->set_min_p(static_cast<float>(absl::GetFlag(FLAGS_min_p)));
  s->mutable_repetition_penalty()->set_value(static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty)));
  s->set_seed(absl::GetFlag(FLAGS_seed));
  v1::StoppingCriteria* stop = r->mutable_stopping();
  stop->set_max_new_tokens(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_max_new_tokens))));
  for (const std::string& seq : absl::GetFlag(FLAGS_stop)) stop->add_stop_sequences(seq);
  stop->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  if (!absl::GetFlag(FLAGS_attention_mode).empty()) r->mutable_attention()->set_mode(absl::GetFlag(FLAGS_attention_mode));
  if (absl::GetFlag(FLAGS_token_budget) > 0) {
    r->mutable_attention()->mutable_token_budget()->set_value(absl::GetFlag(FLAGS_token_budget));
  }
  // Zero means "the server's default": the wrapper is left unset so the server can tell.
  if (absl::GetFlag(FLAGS_token_budget_ratio) != 0) {
    r->mutable_attention()->mutable_token_budget_ratio()->set_value(
        absl::GetFlag(FLAGS_token_budget_ratio));
  }
  if (absl::GetFlag(FLAGS_channels) != 0) {
    r->mutable_attention()->mutable_channels()->set_value(absl::GetFlag(FLAGS_channels));
  }
  if (absl::GetFlag(FLAGS_label_bits) != 0) {
    r->mutable_attention()->mutable_label_bits()->set_value(absl::GetFlag(FLAGS_label_bits));
  }
  r->set_top_logprobs(static_cast<uint32_t>(std::max(0, absl::GetFlag(FLAGS_top_logprobs))));
  r->set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
  return true;
}

int Generate(Channels& channels) {
  v1::GenerateRequest request;
  std::string error;
  if (!BuildRequest(&request, &error)) return Fail(error);
  if (request.prompt_case() == v1::GenerateRequest::PROMPT_NOT_SET) return Fail("give --prompt or --prompt-ids");
  grpc::ClientContext context;
  Prepare(context);
  if (absl::GetFlag(FLAGS_json)) {
    v1::GenerateResponse response;
    const grpc::Status status = channels.Next().Generate(&context, request, &response);
    if (!status.ok()) return RpcFail(status);
    std::printf("%s\n", ToJson(response).c_str());
    return 0;
  }
  auto reader = channels.Next().GenerateStream(&context, request);
  v1::GenerateStreamResponse message;
  bool any_text = false;
  std::vector<int32_t> ids;
  while (reader->Read(&message)) {
    if (!message.text().empty()) {
      any_text = true;
      std::fwrite(message.text().data(), 1, message.text().size(), stdout);
      std::fflush(stdout);
    }
    ids.insert(ids.end(), message.token_ids().begin(), message.token_ids().end());
    if (message.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      if (!any_text) {  // a model without a tokenizer: show the ids
        for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
      }
      std::printf("\n");
      std::fprintf(stderr, "[%s: %u prompt + %u generated tokens, ttft %.1f ms, %.2f ms/token]\n",
                   v1::FinishReason_Name(message.finish_reason()).c_str(), message.usage().prompt_tokens(),
                   message.usage().completion_tokens(), message.timings().time_to_first_token_ms(),
                   message.timings().per_token_ms());
    }
  }
  const grpc::Status status = reader->Finish();
  return status.ok() ? 0 : RpcFail(status);
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank)), hi = static_cast<size_t>(std::ceil(rank));
  return values[lo] + (values[hi] - values[lo]) * (rank - static_cast<double>(lo));
}

int Bench(Channels& channels) {
  const int total = absl::GetFlag(FLAGS_requests), concurrency = absl::GetFlag(FLAGS_concurrency);
  if (total < 1 || concurrency < 1) return Fail("--requests and --concurrency must be >= 1");
  v1::GenerateRequest base;
  std::string error;
  if (!BuildRequest(&base, &error)) return Fail(error);
  base.mutable_stopping()->set_ignore_eos(true);
  using Clock = std::chrono::steady_clock;
  std::mutex mu;
  std::vector<double> ttft_ms, per_token_ms, e2e_ms;
  int64_t tokens_out = 0, failed = 0;
  std::string first_error;
  std::atomic<int> next{0}, done{0};
  const Clock::time_point start = Clock::now();
  auto worker = [&] {
    for (int i; (i = next.fetch_add(1)) < total;) {
      v1::GenerateRequest request = base;
      if (request.prompt_case() == v1::GenerateRequest::PROMPT_NOT_SET) {
        // Random ids (away from the low special ids), different per request.
        uint32_t x = 2463534242u + static_cast<uint32_t>(i) * 7919u;
        for (int t = 0; t < absl::GetFlag(FLAGS_prompt_tokens); ++t) {
          x ^= x << 13, x ^= x >> 17, x ^= x << 5;
          request.mutable_token_ids()->add_ids(static_cast<int32_t>(3 + x % 250));
        }
      }
      grpc::ClientContext context;
      Prepare(context);
      const Clock::time_point sent = Clock::now();
      Clock::time_point first, last;
      int64_t n = 0;
      auto reader = channels.Next().GenerateStream(&context, request);
      v1::GenerateStreamResponse message;
      while (reader->Read(&message)) {
        if (message.token_ids_size() > 0) {
          if (n == 0) first = Clock::now();
          last = Clock::now();
          n += message.token_ids_size();
        }
      }
      const grpc::Status status = reader->Finish();
      const Clock::time_point end = Clock::now();
      std::lock_guard<std::mutex> lock(mu);
      if (!status.ok() || n == 0) {
        ++failed;
        if (first_error.empty()) first_error = status.error_message();
      } else {
        auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
        ttft_ms.push_back(ms(first - sent));
        if (n > 1) per_token_ms.push_back(ms(last - first) / static_cast<double>(n - 1));
        e2e_ms.push_back(ms(end - sent));
        tokens_out += n;
      }
      done.fetch_add(1);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min(concurrency, total); ++t) threads.emplace_back(worker);
  while (done.load() < total) {  // the live progress bar
    const int d = done.load();
    const int width = 40, filled = width * d / total;
    std::fprintf(stderr, "\r[%s%s] %d/%d", std::string(filled, '#').c_str(),
                 std::string(width - filled, '.').c_str(), d, total);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::fprintf(stderr, "\r[%s] %d/%d\n", std::string(40, '#').c_str(), total, total);
  std::printf("requests: %d ok, %lld failed, concurrency %d, %.2f s\n", total - static_cast<int>(failed),
              static_cast<long long>(failed), concurrency, seconds);
  if (failed > 0) std::printf("first error: %s\n", first_error.c_str());
  std::printf("throughput: %.1f requests/s, %.1f output tokens/s\n",
              static_cast<double>(total - failed) / seconds, static_cast<double>(tokens_out) / seconds);
  std::printf("%-18s %10s %10s %10s %10s\n", "latency (ms)", "p50", "p90", "p99", "max");
  for (const auto& [name, v] : {std::pair<const char*, std::vector<double>*>{"ttft", &ttft_ms},
                                {"per token", &per_token_ms},
                                {"end to end", &e2e_ms}}) {
    std::printf("%-18s %10.2f %10.2f %10.2f %10.2f\n", name, Percentile(*v, 50), Percentile(*v, 90),
                Percentile(*v, 99), Percentile(*v, 100));
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> positional = ParseFlags(argc, argv);
  if (positional.size() != 2) {
    return Fail("expected one subcommand: generate, tokenize, detokenize, info, health or bench (--help)");
  }
  const std::string command = positional[1];
  Channels channels;
  std::string error;
  if (!channels.Init(&error)) return Fail(error);
  if (command == "generate") return Generate(channels);
  if (command == "bench") return Bench(channels);
  grpc::ClientContext context;
  Prepare(context);
  grpc::Status status;
  if (command == "tokenize") {
    v1::TokenizeRequest request;
    request.set_text(absl::GetFlag(FLAGS_prompt));
    v1::TokenizeResponse response;
    status = channels.Next().Tokenize(&context, request, &response);
    if (status.ok() && absl::GetFlag(FLAGS_json)) std::printf("%s\n", ToJson(response).c_str());
    if (status.ok() && !absl::GetFlag(FLAGS_json)) {
      for (int i = 0; i < response.token_ids_size(); ++i) std::printf("%s%d", i ? "," : "", response.token_ids(i));
      std::printf("\n");
    }
  } else if (command == "detokenize") {
    v1::DetokenizeRequest request;
    std::vector<int32_t> ids;
    if (!ParseIds(absl::GetFlag(FLAGS_prompt_ids), &ids)) return Fail("--prompt-ids: not a list of token ids");
    request.mutable_token_ids()->Add(ids.begin(), ids.end());
    request.set_skip_special_tokens(absl::GetFlag(FLAGS_skip_special_tokens));
    v1::DetokenizeResponse response;
    status = channels.Next().Detokenize(&context, request, &response);
    if (status.ok()) std::printf("%s\n", absl::GetFlag(FLAGS_json) ? ToJson(response).c_str() : response.text().c_str());
  } else if (command == "info") {
    v1::ModelInfo response;
    status = channels.Next().GetModelInfo(&context, v1::GetModelInfoRequest(), &response);
    if (status.ok()) std::printf("%s\n", ToJson(response).c_str());
  } else if (command == "health") {
    // grpc.health.v1.Health/Check through the generic stub: the client needs no health.proto.
    grpc::GenericStub generic(channels.channels().front());
    const std::string request_bytes;  // HealthCheckRequest{service: ""} serializes to nothing
    grpc::ByteBuffer request_buffer, response_buffer;
    grpc::Slice slice(request_bytes);
    request_buffer = grpc::ByteBuffer(&slice, 1);
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    generic.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request_buffer,
                      &response_buffer, [&](grpc::Status s) {
                        std::lock_guard<std::mutex> lock(mu);
                        status = s;
                        finished = true;
                        cv.notify_all();
                      });
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return finished; });
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      (void)response_buffer.Dump(&slices);
      std::string bytes;
      for (const grpc::Slice& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      // HealthCheckResponse{status = 1}: field 1 varint -> bytes 0x08 0x01.
      const int value = bytes.size() == 2 && bytes[0] == 0x08 ? bytes[1] : 0;
      const char* names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
      std::printf("%s\n", value >= 0 && value <= 3 ? names[value] : "UNKNOWN");
      return value == 1 ? 0 : 1;
    }
  } else {
    return Fail("unknown subcommand '" + command + "'");
  }
  return status.ok() ? 0 : RpcFail(status);
}
