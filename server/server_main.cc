// dsinfer-server: loads a model and serves dsinfer.v1.Inference, grpc.health.v1.Health and
// server reflection over gRPC.
//
// Order of life: listen first (health NOT_SERVING, calls UNAVAILABLE "loading"), load the model
// and tokenizer, start the scheduler, then SERVING. SIGTERM/SIGINT are blocked in every thread
// and taken by sigwait() in main, so no work happens in a signal handler. On a signal: health
// NOT_SERVING, new calls UNAVAILABLE, running requests get --shutdown-grace-s to finish, then
// the rest are cancelled (their clients get a final message with finish_reason CANCELLED), the
// gRPC server shuts down and the process exits 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "engine/backend_factory.h"
#ifdef DSINFER_WITH_CUDA_BACKEND
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/memory_plan.h"
#endif
#include "engine/model.h"
#include "engine/serving/scheduler.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/attention_flags.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/offload_flags.h"
#include "server/inference_service.h"
#include "spdlog/spdlog.h"

ABSL_FLAG(std::string, model, "", "model directory (config.json, safetensors, tokenizer.json)");
ABSL_FLAG(std::string, listen, "127.0.0.1:50051", "address to listen on (host:port; port 0 = any)");
ABSL_FLAG(std::string, port_file, "", "write the bound port to this file once serving");
ABSL_FLAG(std::string, device, "cpu", "backend: cpu | cuda | cuda:N (cuda only in CUDA builds)");
ABSL_FLAG(bool, cuda_graphs, true, "cuda: replay decode steps as CUDA graphs");
ABSL_FLAG(std::string, kv_mode, "gpu", "KV tier: gpu | offload | dense-offload");
ABSL_FLAG(int32_t, max_batch, 32, "sequences in the running decode batch");
ABSL_FLAG(int32_t, max_queue, 256, "requests waiting for admission before RESOURCE_EXHAUSTED");
ABSL_FLAG(int64_t, max_context, 0, "context limit in tokens (prompt + new); 0 = the model's");
ABSL_FLAG(int64_t, kv_pool_tokens, 0, "host KV pool size in tokens (all sequences); 0 = 4 x context");
ABSL_FLAG(int64_t, prefill_chunk, 256, "prompt tokens per engine step (bounds decode stalls)");
ABSL_FLAG(int64_t, layer_major_from, -1,
          "prefill prompts of at least this many tokens layer-major (--layer-major-layers-per-step "
          "layers per engine step); 0 = never; -1 = prompts longer than one --prefill-chunk "
          "in the offload kv modes (whose chunked prefill rereads the host pool for every "
          "chunk), never in kv mode gpu");
ABSL_FLAG(int32_t, layer_major_layers_per_step, 1,
          "layers of a layer-major prefill per engine step, the running streams decoding a "
          "token between steps and a cancel landing between them; 0 = the whole prefill in one "
          "step (running streams wait for it)");
// The attention flags: declared in engine/tools/attention_flags.h and read there; --sink,
// --recent, --dense-layers and --dense-below are defined there too (same help in every binary).
ABSL_FLAG(std::string, attention_mode, "auto", "default attention: auto | dense | double_sparse");
ABSL_FLAG(int64_t, token_budget, 0, "default Double Sparsity token budget; 0 = use the ratio");
ABSL_FLAG(double, token_budget_ratio, 1.0 / 16, "default token budget as a fraction of context");
ABSL_FLAG(int32_t, channels, 16, "default label channels per KV head");
ABSL_FLAG(int32_t, label_bits, 16, "default label bits: 16 | 4");
ABSL_FLAG(std::string, channel_config, "",
          "Double Sparsity channel config (reference JSON, e.g. from dsinfer-calibrate); without "
          "one, auto stays dense and double_sparse needs channels = head_dim");
ABSL_FLAG(std::string, channel_statistic, "qk", "default channel-config kind: qk | q | k");
ABSL_FLAG(std::string, aggregation, "sum", "default GQA score aggregation: sum | max");
ABSL_FLAG(std::string, api_key, "", "require this key (authorization: Bearer KEY or x-api-key)");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain; with --tls-key serves TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key");
ABSL_FLAG(int64_t, max_request_bytes, 16 << 20, "largest request message accepted");
ABSL_FLAG(int64_t, max_prompt_bytes, 1 << 20, "largest text prompt");
ABSL_FLAG(int64_t, max_prompt_tokens, 0, "longest prompt in tokens; 0 = the context limit");
ABSL_FLAG(int32_t, max_stop_sequences, 16, "stop sequences (and stop token ids) per request");
ABSL_FLAG(int32_t, max_stop_length, 256, "bytes per stop sequence");
ABSL_FLAG(int64_t, default_max_new_tokens, 256, "max_new_tokens when a request leaves it 0");
ABSL_FLAG(double, shutdown_grace_s, 10.0, "seconds running requests get to finish on SIGTERM");
ABSL_FLAG(std::string, log_level, "info", "trace | debug | info | warn | error");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-server: error: %s\n", message.c_str());
  return 2;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask and only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  dsinfer::ParseFlagsWithEnvironment(argc, argv,
                                     "dsinfer-server --model DIR [--listen 127.0.0.1:50051] [--api-key KEY]");
  spdlog::set_level(spdlog::level::from_str(absl::GetFlag(FLAGS_log_level)));
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required (or DSINFER_MODEL)");

  dsinfer::ServiceOptions service_options;
  service_options.api_key = absl::GetFlag(FLAGS_api_key);
  service_options.max_prompt_bytes = absl::GetFlag(FLAGS_max_prompt_bytes);
  service_options.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  service_options.max_stop_sequences = absl::GetFlag(FLAGS_max_stop_sequences);
  service_options.max_stop_length = absl::GetFlag(FLAGS_max_stop_length);
  service_options.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);
  service_options.model_dir = model_dir;
  service_options.device = absl::GetFlag(FLAGS_device);
  service_options.kv_mode = absl::GetFlag(FLAGS_kv_mode);
  if (absl::Status s = service_options.Validate(); !s.ok()) return Fail(std::string(s.message()));

  dsinfer::SchedulerOptions scheduler_options;
  scheduler_options.max_batch = absl::GetFlag(FLAGS_max_batch);
  scheduler_options.max_queue = absl::GetFlag(FLAGS_max_queue);
  scheduler_options.prefill_chunk = absl::GetFlag(FLAGS_prefill_chunk);
  absl::StatusOr<dsinfer::KvMode> kv_mode = dsinfer::ParseKvMode(service_options.kv_mode);
  if (!kv_mode.ok()) return Fail(absl::StrCat("--kv-mode: ", kv_mode.status().message()));
  scheduler_options.layer_major_from = dsinfer::ResolveLayerMajorFrom(
      absl::GetFlag(FLAGS_layer_major_from), *kv_mode, scheduler_options.prefill_chunk);
  scheduler_options.layer_major_layers_per_step =
      absl::GetFlag(FLAGS_layer_major_layers_per_step);
  scheduler_options.max_top_logprobs = service_options.max_top_logprobs;
  dsinfer::AttentionOptions& attention = scheduler_options.default_attention;
  if (absl::Status s = dsinfer::SetAttentionOptionsFromFlags(attention); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  absl::StatusOr<dsinfer::GroupAggregation> aggregation =
      dsinfer::ParseGroupAggregation(absl::GetFlag(FLAGS_aggregation));
  if (!aggregation.ok())
    return Fail(absl::StrCat("--aggregation: ", aggregation.status().message()));
  attention.aggregation = *aggregation;
  service_options.channel_config = absl::GetFlag(FLAGS_channel_config);
  if (absl::Status s = scheduler_options.Validate(); !s.ok()) return Fail(std::string(s.message()));

  // --- Listen (NOT_SERVING until the model is loaded) -------------------------------------
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  const std::string tls_cert = absl::GetFlag(FLAGS_tls_cert), tls_key = absl::GetFlag(FLAGS_tls_key);
  if (tls_cert.empty() != tls_key.empty()) return Fail("--tls-cert and --tls-key go together");
  if (!tls_cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(tls_cert), key = ReadFile(tls_key);
    if (!cert.ok()) return Fail(absl::StrCat("--tls-cert: ", cert.status().message()));
    if (!key.ok()) return Fail(absl::StrCat("--tls-key: ", key.status().message()));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  dsinfer::InferenceService service(service_options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen), credentials, &port);
  const int64_t max_request = absl::GetFlag(FLAGS_max_request_bytes);
  if (max_request < 1 || max_request > INT32_MAX) return Fail("--max-request-bytes must be in [1, 2^31)");
  builder.SetMaxReceiveMessageSize(static_cast<int>(max_request));
  builder.SetMaxSendMessageSize(INT32_MAX);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::StrCat("cannot listen on ", absl::GetFlag(FLAGS_listen)));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  const std::string service_name = dsinfer::v1::Inference::service_full_name();
  health->SetServingStatus(false);

  // --- Load ---------------------------------------------------------------------------------
  const absl::Time load_start = absl::Now();
  dsinfer::ModelOptions model_options;
  model_options.max_context = absl::GetFlag(FLAGS_max_context);
  model_options.kv_pool_tokens = absl::GetFlag(FLAGS_kv_pool_tokens);
  dsinfer::SetOffloadOptionsFromFlags(model_options.offload);
  // The engine's defaults equal the server's, so a sequence without per-request options (the
  // scheduler's warm-up) runs the same attention; the channel config is loaded and validated
  // against the model's shapes by Model::Load.
  model_options.attention = attention;
  model_options.channel_config_path = service_options.channel_config;
  model_options.kv_mode = *kv_mode;
  if (absl::Status s = model_options.Validate(); !s.ok()) return Fail(std::string(s.message()));
#ifdef DSINFER_WITH_CUDA_BACKEND
  // Plan GPU (and, in the offload modes, pinned host) memory before anything is allocated, so
  // a configuration that cannot fit exits here naming every term and the flag that changes
  // it, instead of failing halfway through the upload or at the first long request. A step
  // holds up to max_batch decode rows plus one prefill chunk, each possibly asking for logits.
  // Without a GPU, CreateBackend below says so.
  if (absl::StartsWith(service_options.device, "cuda") && dsinfer::CudaDeviceAvailable()) {
    int device = 0;
    const std::string& name = service_options.device;
    if (name != "cuda" && !(absl::StartsWith(name, "cuda:") &&
                            absl::SimpleAtoi(name.substr(5), &device) && device >= 0)) {
      return Fail(absl::StrCat("unknown device '", name, "' (expected cpu, cuda or cuda:N)"));
    }
    absl::StatusOr<dsinfer::ModelConfig> config = dsinfer::LoadModelConfig(model_dir);
    if (!config.ok()) return Fail(absl::StrCat("loading ", model_dir, ": ", config.status().message()));
    const int64_t rows = scheduler_options.max_batch + scheduler_options.prefill_chunk;
    dsinfer::MemoryPlanRequest plan_request = dsinfer::MemoryPlanRequestFor(
        *config, model_options, model_dir, scheduler_options.max_batch, rows, rows);
    plan_request.layer_major_from = scheduler_options.layer_major_from;
    model_options.offload.max_kept_rows = plan_request.kept_rows;  // what the plan counted
    absl::StatusOr<dsinfer::CudaMemoryPlan> plan =
        dsinfer::PlanCudaMemory(*config, plan_request, device);
    if (!plan.ok()) return Fail(std::string(plan.status().message()));
    spdlog::info("memory plan: {}", plan->ToString());
  }
#endif
  // engine/backend_factory.h: UNAVAILABLE with a clear message when this binary has no CUDA
  // backend or no GPU is visible.
  dsinfer::BackendFactoryOptions backend_options;
  backend_options.cuda_graphs = absl::GetFlag(FLAGS_cuda_graphs);
  absl::StatusOr<std::unique_ptr<dsinfer::Backend>> backend =
      dsinfer::CreateBackend(service_options.device, backend_options);
  if (!backend.ok()) return Fail(std::string(backend.status().message()));
  absl::StatusOr<std::unique_ptr<dsinfer::Model>> model =
      dsinfer::Model::Load(model_dir, **backend, model_options);
  if (!model.ok()) return Fail(absl::StrCat("loading ", model_dir, ": ", model.status().message()));
  std::unique_ptr<dsinfer::Tokenizer> tokenizer;
  absl::StatusOr<std::unique_ptr<dsinfer::Tokenizer>> loaded = dsinfer::Tokenizer::LoadFromDir(model_dir);
  if (loaded.ok()) {
    tokenizer = std::move(*loaded);
  } else if (absl::IsNotFound(loaded.status())) {
    spdlog::warn("no tokenizer.json in {}: serving token-id requests only", model_dir);
  } else {
    return Fail(absl::StrCat("tokenizer: ", loaded.status().message()));
  }
  absl::StatusOr<std::unique_ptr<dsinfer::Scheduler>> scheduler =
      dsinfer::Scheduler::Create(**model, tokenizer.get(), scheduler_options);
  if (!scheduler.ok()) return Fail(std::string(scheduler.status().message()));
  service.Attach(scheduler->get(), model->get(), tokenizer.get());
  health->SetServingStatus(true);
  const dsinfer::SchedulerStats stats = (*scheduler)->stats();
  spdlog::info(
      "serving {} on port {} (device {}, kv {}, attention {}, channel config {}, max context {}, "
      "KV pool {} tokens, max batch {}, tokenizer {}, api key {}, tls {}; loaded in {:.1f} s)",
      model_dir, port, service_options.device, service_options.kv_mode,
      std::string(dsinfer::AttentionModeName(attention.mode)),
      service_options.channel_config.empty() ? "none" : service_options.channel_config,
      (*model)->max_context(), stats.kv_blocks_total * stats.kv_block_tokens,
      scheduler_options.max_batch, tokenizer ? "yes" : "no",
      service_options.api_key.empty() ? "off" : "on", tls_cert.empty() ? "off" : "on",
      absl::ToDoubleSeconds(absl::Now() - load_start));
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    // Written whole then renamed, so a reader never sees a partial number.
    const std::string tmp = absl::GetFlag(FLAGS_port_file) + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::rename(tmp.c_str(), absl::GetFlag(FLAGS_port_file).c_str());
  }

  // --- Serve until SIGTERM / SIGINT, then drain ----------------------------------------------
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  const double grace_s = absl::GetFlag(FLAGS_shutdown_grace_s);
  spdlog::info("signal {}: draining (grace {:.1f} s)", signal_number, grace_s);
  health->SetServingStatus(false);
  service.BeginDrain();
  (*scheduler)->Drain();
  if (!(*scheduler)->WaitIdle(absl::Seconds(grace_s))) {
    const dsinfer::SchedulerStats left = (*scheduler)->stats();
    spdlog::warn("grace period over: cancelling {} running and {} queued requests", left.running, left.queued);
    (*scheduler)->CancelAll();
    (*scheduler)->WaitIdle(absl::Seconds(10));
  }
  // Handlers return once their final events are written; then the server stops. Waiting for
  // them here rather than through Shutdown's deadline, which lasts its whole length while a
  // client keeps an idle connection open.
  if (!service.WaitNoGenerateCalls(absl::Seconds(5)))
    spdlog::warn("handlers still running after 5 s");
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  (*scheduler)->Stop();
  spdlog::info("stopped");
  return 0;
}
