// The dsinfer.v1.Inference gRPC service: an adapter between the wire (proto) and the engine's
// Scheduler. It owns request validation that is server policy (API key, prompt size, stop
// sequence limits, defaults) and leaves model-dependent checks to Scheduler::Submit; every
// error leaves through ToGrpcStatus.
//
// Handlers run on gRPC's synchronous thread pool. A generation handler submits to the
// scheduler and then waits on its RequestStream in short slices, so that a client that goes
// away (cancel, deadline, broken stream) is noticed and turned into RequestStream::Cancel()
// promptly; the engine frees the request's KV at its next token boundary.
//
// The service exists before the model is loaded: until Attach() it answers UNAVAILABLE
// ("loading"), and after BeginDrain() it answers new calls UNAVAILABLE ("shutting down").
#ifndef DSINFER_SERVER_INFERENCE_SERVICE_H_
#define DSINFER_SERVER_INFERENCE_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dsinfer/v1/inference.grpc.pb.h"
#include "engine/model.h"
#include "engine/serving/scheduler.h"
#include "engine/tokenizer/tokenizer.h"

namespace dsinfer {

struct ServiceOptions {
  std::string api_key;                  // "" = no authentication
  int64_t max_prompt_bytes = 1 << 20;   // text prompts
  int64_t max_prompt_tokens = 0;        // 0 = the model's context limit
  int max_stop_sequences = 16;
  int max_stop_length = 256;            // bytes per stop sequence
  int64_t default_max_new_tokens = 256; // when a request leaves it 0 (capped by the context)
  int max_top_logprobs = 20;
  std::string model_dir;                // for GetModelInfo
  std::string device = "cpu";
  std::string kv_mode = "gpu";
  std::string channel_config;  // Double Sparsity channel config path, for GetModelInfo

  absl::Status Validate() const;
};

class InferenceService final : public dsinfer::v1::Inference::Service {
 public:
  explicit InferenceService(ServiceOptions options);

  // Makes the service answer; all three must outlive it. `tokenizer` may be null.
  void Attach(Scheduler* scheduler, const Model* model, const Tokenizer* tokenizer);
  // From now on new calls get UNAVAILABLE; calls in flight continue.
  void BeginDrain() { draining_.store(true); }
  // Blocks until no Generate / GenerateStream handler is running, or `timeout` passes; true
  // when none is. Shutdown uses it so that it need not wait out a fixed deadline: gRPC's
  // Shutdown(deadline) waits the whole deadline while any client keeps its connection open.
  bool WaitNoGenerateCalls(absl::Duration timeout) const;

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        v1::GenerateResponse* response) override;
  grpc::Status GenerateStream(grpc::ServerContext* context, const v1::GenerateRequest* request,
                              grpc::ServerWriter<v1::GenerateStreamResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;

  // proto -> engine request, with every server-policy check. Public for tests.
  absl::StatusOr<ServingRequest> ToServingRequest(const v1::GenerateRequest& request) const;

 private:
  // API key, loading and draining checks shared by every handler.
  absl::Status Admit(const grpc::ServerContext& context) const;
  absl::Status CheckApiKey(const grpc::ServerContext& context) const;
  // Submits and waits for events, calling `on_event` with each merged batch of events until the
  // final one. `on_event` returns false when the client is gone.
  template <typename OnEvent>
  absl::Status Run(grpc::ServerContext* context, const v1::GenerateRequest& request,
                   OnEvent on_event);

  const ServiceOptions options_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  mutable std::atomic<uint64_t> next_id_{1};
  std::atomic<int> generate_calls_{0};  // handlers inside Run
  Scheduler* scheduler_ = nullptr;
  const Model* model_ = nullptr;
  const Tokenizer* tokenizer_ = nullptr;
};

}  // namespace dsinfer

#endif  // DSINFER_SERVER_INFERENCE_SERVICE_H_
