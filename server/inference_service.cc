// proto <-> engine mapping and the handlers; see inference_service.h for the design.
#include "server/inference_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kernels/status.h"
#include "server/grpc_status.h"
#include "spdlog/spdlog.h"

namespace dsinfer {

namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);

v1::FinishReason ToProto(ServingFinish finish) {
  switch (finish) {
    case ServingFinish::kLength:
      return v1::FINISH_REASON_LENGTH;
    case ServingFinish::kEos:
      return v1::FINISH_REASON_EOS;
    case ServingFinish::kStopToken:
      return v1::FINISH_REASON_STOP_TOKEN;
    case ServingFinish::kStopSequence:
      return v1::FINISH_REASON_STOP_SEQUENCE;
    case ServingFinish::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void ToProto(const AttentionOptions& a, v1::AttentionOptions* out) {
  out->set_mode(std::string(AttentionModeName(a.mode)));
  out->mutable_token_budget()->set_value(a.token_budget);
  out->mutable_token_budget_ratio()->set_value(a.token_budget_ratio);
  out->mutable_channels()->set_value(a.channels);
  out->mutable_label_bits()->set_value(a.label_bits);
  out->set_statistic(std::string(ChannelStatisticName(a.statistic)));
  out->mutable_sink()->set_value(a.sink);
  out->mutable_recent()->set_value(a.recent);
  out->mutable_dense_layers()->set_value(a.dense_layers);
  out->mutable_dense_below()->set_value(a.dense_below);
  out->set_aggregation(a.aggregation == GroupAggregation::kMax ? "max" : "sum");
}

// Fills the delta fields (tokens, logprobs, text) that both response types share.
template <typename Response>
void FillDelta(const StreamEvent& e, Response* out) {
  out->mutable_token_ids()->Add(e.tokens.begin(), e.tokens.end());
  out->mutable_token_logprobs()->Add(e.logprobs.begin(), e.logprobs.end());
  for (const std::vector<TokenLogprob>& top : e.top_logprobs) {
    v1::TopLogprobs* entries = out->add_top_logprobs();
    for (const TokenLogprob& t : top) {
      v1::TopLogprob* entry = entries->add_entries();
      entry->set_token_id(t.token);
      entry->set_logprob(t.logprob);
    }
  }
  out->mutable_text()->append(e.text);
}

// Fills the summary fields of the final message.
template <typename Response>
void FillFinal(const StreamEvent& e, Response* out) {
  out->set_finish_reason(ToProto(e.finish));
  out->set_matched_stop(e.matched_stop);
  out->mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(e.prompt_tokens));
  out->mutable_usage()->set_completion_tokens(static_cast<uint32_t>(e.completion_tokens));
  v1::Timings* t = out->mutable_timings();
  t->set_queue_ms(e.timings.queue_ms);
  t->set_prefill_ms(e.timings.prefill_ms);
  t->set_decode_ms(e.timings.decode_ms);
  t->set_time_to_first_token_ms(e.timings.time_to_first_token_ms);
  t->set_per_token_ms(e.timings.per_token_ms);
  t->set_total_ms(e.timings.total_ms);
  v1::AttentionStats* a = out->mutable_attention_stats();
  a->set_mode(e.attention.mode);
  a->set_tokens_attended(e.attention.tokens_attended);
  a->set_bytes_fetched_from_host(e.attention.bytes_fetched_from_host);
  a->set_requested_mode(e.attention.requested_mode);
  a->set_tokens_in_context(e.attention.tokens_in_context);
  a->set_dense_rows(e.attention.dense_rows);
  a->set_sparse_rows(e.attention.sparse_rows);
  out->mutable_prompt_logprobs()->Add(e.prompt_logprobs.begin(), e.prompt_logprobs.end());
}

}  // namespace

absl::Status ServiceOptions::Validate() const {
  if (max_prompt_bytes < 1) return absl::InvalidArgumentError("max_prompt_bytes must be >= 1");
  if (max_prompt_tokens < 0) return absl::InvalidArgumentError("max_prompt_tokens must be >= 0");
  if (max_stop_sequences < 0) return absl::InvalidArgumentError("max_stop_sequences must be >= 0");
  if (max_stop_length < 1) return absl::InvalidArgumentError("max_stop_length must be >= 1");
  if (default_max_new_tokens < 1) return absl::InvalidArgumentError("default_max_new_tokens must be >= 1");
  if (device != "cpu" && device != "cuda" && !absl::StartsWith(device, "cuda:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be cpu, cuda or cuda:N, got '", device, "'"));
  }
  if (kv_mode != "gpu" && kv_mode != "offload" && kv_mode != "dense-offload") {
    return absl::InvalidArgumentError(
        absl::StrCat("kv_mode must be gpu, offload or dense-offload, got '", kv_mode, "'"));
  }
  return absl::OkStatus();
}

InferenceService::InferenceService(ServiceOptions options) : options_(std::move(options)) {}

void InferenceService::Attach(Scheduler* scheduler, const Model* model, const Tokenizer* tokenizer) {
  scheduler_ = scheduler;
  model_ = model;
  tokenizer_ = tokenizer;
  ready_.store(true);  // publishes the pointers above (seq_cst)
}

absl::Status InferenceService::CheckApiKey(const grpc::ServerContext& context) const {
  if (options_.api_key.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto matches = [&](const grpc::string_ref& value) {
    // Compare every byte so that the time taken does not reveal the matching prefix.
    const std::string& key = options_.api_key;
    if (value.size() != key.size()) return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < key.size(); ++i) diff |= static_cast<unsigned char>(value.data()[i] ^ key[i]);
    return diff == 0;
  };
  bool presented = false;
  for (auto it = metadata.find("authorization"); it != metadata.end() && it->first == "authorization"; ++it) {
    presented = true;
    const grpc::string_ref value = it->second;
    static constexpr char kBearer[] = "Bearer ";
    if (value.starts_with(kBearer) && matches(value.substr(sizeof(kBearer) - 1))) return absl::OkStatus();
  }
  for (auto it = metadata.find("x-api-key"); it != metadata.end() && it->first == "x-api-key"; ++it) {
    presented = true;
    if (matches(it->second)) return absl::OkStatus();
  }
  return absl::UnauthenticatedError(
      presented ? "the API key is wrong"
                : "an API key is required: send metadata 'authorization: Bearer <key>' or "
                  "'x-api-key: <key>'");
}

absl::Status InferenceService::Admit(const grpc::ServerContext& context) const {
  RETURN_IF_ERROR(CheckApiKey(context));
  if (draining_.load()) return absl::UnavailableError("the server is shutting down");
  if (!ready_.load()) return absl::UnavailableError("the model is still loading");
  return absl::OkStatus();
}

absl::StatusOr<ServingRequest> InferenceService::ToServingRequest(const v1::GenerateRequest& r) const {
  ServingRequest out;
  out.id = r.request_id().empty() ? absl::StrCat("req-", next_id_.fetch_add(1)) : r.request_id();
  if (out.id.size() > 256) return absl::InvalidArgumentError("request_id is longer than 256 bytes");
  GenerationRequest& g = out.generation;
  const int64_t max_prompt_tokens =
      options_.max_prompt_tokens > 0 ? options_.max_prompt_tokens : model_->max_context();
  switch (r.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (r.text().empty()) return absl::InvalidArgumentError("prompt is empty: text is \"\"");
      if (static_cast<int64_t>(r.text().size()) > options_.max_prompt_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("prompt text is ", r.text().size(),
                                                       " bytes, over the limit of ",
                                                       options_.max_prompt_bytes));
      }
      if (tokenizer_ == nullptr) {
        return absl::FailedPreconditionError(
            "text prompts need a tokenizer and the model directory has no tokenizer.json; send "
            "token_ids instead");
      }
      ASSIGN_OR_RETURN(g.prompt, tokenizer_->Encode(r.text(), r.has_add_special_tokens()
                                                                  ? r.add_special_tokens().value()
                                                                  : true));
      if (g.prompt.empty()) return absl::InvalidArgumentError("prompt text encodes to no tokens");
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      g.prompt.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
      if (g.prompt.empty()) return absl::InvalidArgumentError("prompt is empty: token_ids has no ids");
      break;
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt is empty: set text or token_ids");
  }
  if (static_cast<int64_t>(g.prompt.size()) > max_prompt_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is ", g.prompt.size(),
                                                   " tokens, over the limit of ", max_prompt_tokens));
  }
  // Sampling. NaN and out-of-range values are refused by SamplingParams::Validate.
  const v1::SamplingParams& s = r.sampling();
  g.sampling.temperature = s.temperature();
  g.sampling.top_k = s.top_k();
  g.sampling.top_p = s.has_top_p() ? s.top_p().value() : 1.0f;
  g.sampling.min_p = s.min_p();
  g.sampling.repetition_penalty = s.has_repetition_penalty() ? s.repetition_penalty().value() : 1.0f;
  g.sampling.seed = s.seed();
  // Stopping.
  const v1::StoppingCriteria& stop = r.stopping();
  if (stop.max_new_tokens() > 0) {
    g.max_new_tokens = stop.max_new_tokens();
  } else {
    const int64_t room = model_->max_context() - static_cast<int64_t>(g.prompt.size());
    g.max_new_tokens = std::max<int64_t>(1, std::min(options_.default_max_new_tokens, room));
  }
  if (stop.stop_sequences_size() > options_.max_stop_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("too many stop sequences: ", stop.stop_sequences_size(),
                                                   ", the limit is ", options_.max_stop_sequences));
  }
  for (const std::string& seq : stop.stop_sequences()) {
    if (static_cast<int>(seq.size()) > options_.max_stop_length) {
      return absl::InvalidArgumentError(absl::StrCat("a stop sequence is ", seq.size(),
                                                     " bytes, over the limit of ", options_.max_stop_length));
    }
    out.stop_sequences.push_back(seq);
  }
  if (stop.stop_token_ids_size() > options_.max_stop_sequences) {
    return absl::InvalidArgumentError(absl::StrCat("too many stop token ids: ", stop.stop_token_ids_size(),
                                                   ", the limit is ", options_.max_stop_sequences));
  }
  g.stop_token_ids.assign(stop.stop_token_ids().begin(), stop.stop_token_ids().end());
  g.ignore_eos = stop.ignore_eos();
  // Attention: the server's defaults, overridden field by field.
  g.attention = scheduler_->options().default_attention;
  const v1::AttentionOptions& a = r.attention();
  if (!a.mode().empty()) {
    absl::StatusOr<AttentionMode> mode = ParseAttentionMode(a.mode());
    if (!mode.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("attention.mode: ", mode.status().message()));
    }
    g.attention.mode = *mode;
  }
  if (a.has_token_budget()) g.attention.token_budget = a.token_budget().value();
  if (a.has_token_budget_ratio()) {
    g.attention.token_budget_ratio = a.token_budget_ratio().value();
    if (!a.has_token_budget()) g.attention.token_budget = 0;  // the ratio asked for wins
  }
  if (a.has_channels()) g.attention.channels = a.channels().value();
  if (a.has_label_bits()) g.attention.label_bits = a.label_bits().value();
  if (!a.statistic().empty()) {
    absl::StatusOr<ChannelStatistic> statistic = ParseChannelStatistic(a.statistic());
    if (!statistic.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention.statistic: ", statistic.status().message()));
    }
    g.attention.statistic = *statistic;
  }
  if (!a.aggregation().empty()) {
    absl::StatusOr<GroupAggregation> aggregation = ParseGroupAggregation(a.aggregation());
    if (!aggregation.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("attention.aggregation: ", aggregation.status().message()));
    }
    g.attention.aggregation = *aggregation;
  }
  if (a.has_sink()) g.attention.sink = a.sink().value();
  if (a.has_recent()) g.attention.recent = a.recent().value();
  if (a.has_dense_layers()) g.attention.dense_layers = a.dense_layers().value();
  if (a.has_dense_below()) g.attention.dense_below = a.dense_below().value();
  // Range checks name the field; whether the engine can serve them (channel config) is
  // Scheduler::Submit's CheckAttentionSupported.
  if (absl::Status valid = g.attention.Validate(model_->config().head_dim); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("attention.", valid.message()));
  }
  g.prompt_logprobs = r.prompt_logprobs();
  if (r.top_logprobs() > static_cast<uint32_t>(options_.max_top_logprobs)) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs is ", r.top_logprobs(),
                                                   ", the limit is ", options_.max_top_logprobs));
  }
  out.top_logprobs = static_cast<int>(r.top_logprobs());
  out.skip_special_tokens = r.skip_special_tokens();
  return out;
}

template <typename OnEvent>
absl::Status InferenceService::Run(grpc::ServerContext* context, const v1::GenerateRequest& request,
                                   OnEvent on_event) {
  ++generate_calls_;
  struct Leave {
    std::atomic<int>& calls;
    ~Leave() { --calls; }
  } leave{generate_calls_};
  RETURN_IF_ERROR(Admit(*context));
  ASSIGN_OR_RETURN(ServingRequest serving, ToServingRequest(request));
  const std::string id = serving.id;
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    serving.deadline = absl::FromChrono(deadline);
  }
  ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> stream, scheduler_->Submit(std::move(serving)));
  while (true) {
    StreamEvent event;
    if (!stream->Next(event, kPollInterval)) {
      if (context->IsCancelled()) stream->Cancel();
      continue;
    }
    if (!event.final || event.status.ok()) {
      if (!on_event(id, event)) stream->Cancel();  // the client is gone; keep reading to the end
    }
    if (context->IsCancelled()) stream->Cancel();
    if (event.final) {
      spdlog::info(
          "request {} status={} finish={} prompt_tokens={} completion_tokens={} queue_ms={:.1f} "
          "prefill_ms={:.1f} decode_ms={:.1f} per_token_ms={:.2f} attention={} (asked {}) "
          "attended={}/{}",
          id, event.status.ok() ? "OK" : absl::StatusCodeToString(event.status.code()),
          std::string(ServingFinishName(event.finish)), event.prompt_tokens,
          event.completion_tokens, event.timings.queue_ms, event.timings.prefill_ms,
          event.timings.decode_ms, event.timings.per_token_ms, event.attention.mode,
          event.attention.requested_mode, event.attention.tokens_attended,
          event.attention.tokens_in_context);
      return event.status;
    }
  }
}

bool InferenceService::WaitNoGenerateCalls(absl::Duration timeout) const {
  const absl::Time give_up = absl::Now() + timeout;
  while (generate_calls_.load() > 0) {
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

grpc::Status InferenceService::Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                                        v1::GenerateResponse* response) {
  const absl::Status status = Run(context, *request, [&](const std::string& id, const StreamEvent& e) {
    response->set_request_id(id);
    FillDelta(e, response);
    if (e.final) FillFinal(e, response);
    return true;
  });
  if (!status.ok()) spdlog::debug("Generate failed: {}", status.ToString());
  return ToGrpcStatus(status);
}

grpc::Status InferenceService::GenerateStream(grpc::ServerContext* context,
                                              const v1::GenerateRequest* request,
                                              grpc::ServerWriter<v1::GenerateStreamResponse>* writer) {
  const absl::Status status = Run(context, *request, [&](const std::string& id, const StreamEvent& e) {
    v1::GenerateStreamResponse message;
    message.set_request_id(id);
    FillDelta(e, &message);
    if (e.final) FillFinal(e, &message);
    return writer->Write(message);
  });
  return ToGrpcStatus(status);
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* request,
                                        v1::TokenizeResponse* response) {
  absl::Status status = Admit(*context);
  if (status.ok() && tokenizer_ == nullptr) {
    status = absl::FailedPreconditionError("the model directory has no tokenizer.json");
  } else if (status.ok() && static_cast<int64_t>(request->text().size()) > options_.max_prompt_bytes) {
    status = absl::InvalidArgumentError(absl::StrCat("text is ", request->text().size(),
                                                     " bytes, over the limit of ", options_.max_prompt_bytes));
  }
  if (status.ok()) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(
        request->text(), request->has_add_special_tokens() ? request->add_special_tokens().value() : true);
    if (ids.ok()) {
      response->mutable_token_ids()->Add(ids->begin(), ids->end());
    } else {
      status = ids.status();
    }
  }
  return ToGrpcStatus(status);
}

grpc::Status InferenceService::Detokenize(grpc::ServerContext* context,
                                          const v1::DetokenizeRequest* request,
                                          v1::DetokenizeResponse* response) {
  absl::Status status = Admit(*context);
  if (status.ok() && tokenizer_ == nullptr) {
    status = absl::FailedPreconditionError("the model directory has no tokenizer.json");
  }
  if (status.ok()) {
    std::vector<int32_t> ids(request->token_ids().begin(), request->token_ids().end());
    absl::StatusOr<std::string> text = tokenizer_->Decode(ids, request->skip_special_tokens());
    if (text.ok()) {
      response->set_text(*text);
    } else {
      status = text.status();
    }
  }
  return ToGrpcStatus(status);
}

grpc::Status InferenceService::GetModelInfo(grpc::ServerContext* context,
                                            const v1::GetModelInfoRequest* /*request*/,
                                            v1::ModelInfo* response) {
  const absl::Status status = Admit(*context);
  if (!status.ok()) return ToGrpcStatus(status);
  const ModelConfig& c = model_->config();
  response->set_model_dir(options_.model_dir);
  response->set_architecture(c.architecture);
  response->set_vocab_size(static_cast<uint32_t>(c.vocab_size));
  response->set_max_context(static_cast<uint32_t>(model_->max_context()));
  response->set_num_layers(static_cast<uint32_t>(c.num_layers));
  response->set_num_heads_q(static_cast<uint32_t>(c.num_heads_q));
  response->set_num_heads_kv(static_cast<uint32_t>(c.num_heads_kv));
  response->set_head_dim(static_cast<uint32_t>(c.head_dim));
  response->set_has_tokenizer(tokenizer_ != nullptr);
  response->mutable_eos_token_ids()->Add(c.eos_token_ids.begin(), c.eos_token_ids.end());
  response->set_device(options_.device);
  response->set_kv_mode(options_.kv_mode);
  ToProto(scheduler_->options().default_attention, response->mutable_default_attention());
  response->set_max_batch(static_cast<uint32_t>(scheduler_->options().max_batch));
  response->set_max_queue(static_cast<uint32_t>(scheduler_->options().max_queue));
  const SchedulerStats stats = scheduler_->stats();
  response->set_running(static_cast<uint32_t>(stats.running));
  response->set_queued(static_cast<uint32_t>(stats.queued));
  response->set_requests_total(static_cast<uint64_t>(stats.requests_total));
  v1::KvStats* kv = response->mutable_kv();
  kv->set_blocks_total(static_cast<uint64_t>(stats.kv_blocks_total));
  kv->set_blocks_in_use(static_cast<uint64_t>(stats.kv_blocks_in_use));
  kv->set_bytes_in_use(static_cast<uint64_t>(stats.kv_bytes_in_use));
  kv->set_sequences(static_cast<uint64_t>(stats.kv_sequences));
  kv->set_block_tokens(static_cast<uint32_t>(stats.kv_block_tokens));
  kv->set_label_bytes_in_use(static_cast<uint64_t>(stats.label_bytes_in_use));
  kv->set_label_sequences(static_cast<uint64_t>(stats.label_sequences));
  response->set_channel_config(options_.channel_config);
  response->set_server_version("dsinfer 0.1");
  return grpc::Status::OK;
}

}  // namespace dsinfer
