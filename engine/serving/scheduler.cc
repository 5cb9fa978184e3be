// Continuous batching; see scheduler.h for the design. Everything below Loop() runs on the
// engine thread, which alone touches the Model, the KV pool and running_.
#include "engine/serving/scheduler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/sparse/channel_config.h"
#include "engine/tokenizer/incremental_decoder.h"
#include "kernels/status.h"

namespace dsinfer {

absl::string_view ServingFinishName(ServingFinish finish) {
  switch (finish) {
    case ServingFinish::kLength:
      return "length";
    case ServingFinish::kEos:
      return "eos";
    case ServingFinish::kStopToken:
      return "stop_token";
    case ServingFinish::kStopSequence:
      return "stop_sequence";
    case ServingFinish::kCancelled:
      return "cancelled";
  }
  return "?";
}

void RequestStream::Push(StreamEvent event) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(event));
  }
  cv_.notify_all();
}

bool RequestStream::Next(StreamEvent& out, absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (events_.empty()) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] { return !events_.empty(); });
  }
  if (events_.empty()) return false;
  while (!events_.empty()) {
    StreamEvent& e = events_.front();
    out.tokens.insert(out.tokens.end(), e.tokens.begin(), e.tokens.end());
    out.logprobs.insert(out.logprobs.end(), e.logprobs.begin(), e.logprobs.end());
    for (auto& top : e.top_logprobs) out.top_logprobs.push_back(std::move(top));
    out.text += e.text;
    if (e.final) {
      out.final = true;
      out.status = e.status;
      out.finish = e.finish;
      out.matched_stop = std::move(e.matched_stop);
      out.prompt_logprobs = std::move(e.prompt_logprobs);
      out.prompt_tokens = e.prompt_tokens;
      out.completion_tokens = e.completion_tokens;
      out.timings = e.timings;
      out.attention = std::move(e.attention);
    }
    events_.pop_front();
  }
  return true;
}

absl::Status SchedulerOptions::Validate() const {
  if (max_batch < 1) return absl::InvalidArgumentError(absl::StrCat("max_batch must be >= 1, got ", max_batch));
  if (max_queue < 0) return absl::InvalidArgumentError(absl::StrCat("max_queue must be >= 0, got ", max_queue));
  if (prefill_chunk < 1) {
    return absl::InvalidArgumentError(absl::StrCat("prefill_chunk must be >= 1, got ", prefill_chunk));
  }
  if (max_top_logprobs < 0) return absl::InvalidArgumentError("max_top_logprobs must be >= 0");
  if (layer_major_from < 0) return absl::InvalidArgumentError("layer_major_from must be >= 0");
  if (layer_major_layers_per_step < 0) {
    return absl::InvalidArgumentError("layer_major_layers_per_step must be >= 0");
  }
  return default_attention.Validate();
}

struct Scheduler::Sequence {
  Sequence(ServingRequest r, const Tokenizer* tokenizer)
      : request(std::move(r)),
        stream(std::make_shared<RequestStream>()),
        sampler(request.generation.sampling),
        history(request.generation.prompt) {
    if (tokenizer != nullptr) {
      decoder = std::make_unique<IncrementalDecoder>(tokenizer, request.skip_special_tokens);
    }
  }
  int64_t prompt_size() const { return static_cast<int64_t>(request.generation.prompt.size()); }
  int64_t budget() const { return prompt_size() + request.generation.max_new_tokens; }

  ServingRequest request;
  std::shared_ptr<RequestStream> stream;
  Sampler sampler;
  std::vector<int32_t> history;  // prompt + generated
  KvBlockPool::SequenceId kv = 0;
  bool has_kv = false;
  int64_t prefilled = 0;  // prompt tokens already in the KV pool
  // A layer-major prefill between its layers (SchedulerOptions::layer_major_layers_per_step).
  std::unique_ptr<LayerMajorPrefill> layer_major;
  int64_t generated = 0;
  bool done = false;
  std::unique_ptr<IncrementalDecoder> decoder;
  std::string text;     // decoded so far (cut at a matched stop sequence)
  size_t emitted = 0;   // bytes of `text` already delivered
  std::vector<double> prompt_logprobs;
  StreamEvent pending;  // this step's tokens, delivered after the step
  absl::Time accepted, admitted, first_token;
};

namespace {

// Runs one forward step of `rows` rows (the most a step can have), every row's logits wanted,
// so that the model's workspace reaches its final size before serving: allocation happens at
// startup rather than in the middle of someone's stream, and Model::EnsureWorkspace never has to
// grow it later (growing it frees the LM-head buffers without resetting their row count, so a
// larger batch after a smaller one would use freed memory; see the lead's note on model.cc).
absl::Status WarmUp(Model& model, int64_t rows, const AttentionOptions& attention) {
  KvBlockPool& pool = model.kv_pool();
  const int64_t per_sequence = std::min<int64_t>(model.max_context(), rows);
  std::vector<KvBlockPool::SequenceId> ids;
  ForwardBatch batch;
  absl::Status status;
  const std::vector<int32_t> zeros(static_cast<size_t>(per_sequence), 0);
  for (int64_t left = rows; left > 0 && status.ok(); left -= per_sequence) {
    const int64_t n = std::min(left, per_sequence);
    ids.push_back(pool.AddSequence());
    status = pool.Reserve(ids.back(), n);
    batch.Add(ids.back(), zeros.data(), n, 0, true);
    batch.sequences.back().attention = &attention;  // the server's defaults, as requests get
  }
  std::vector<float> logits;
  if (status.ok()) status = model.Forward(batch, logits);
  for (KvBlockPool::SequenceId id : ids) model.ReleaseSequence(id);
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat("warm-up step of ", rows, " rows (max_batch + "
                                                    "prefill_chunk) failed: ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckAttentionSupported(const Model& model, const AttentionOptions& options) {
  const ModelConfig& c = model.config();
  RETURN_IF_ERROR(options.Validate(c.head_dim));
  if (options.mode == AttentionMode::kDense) return absl::OkStatus();
  const std::optional<ChannelConfig>& config = model.double_sparsity().channel_config();
  if (!config.has_value()) {
    // `auto` without a config stays dense; double_sparse can only use every channel.
    if (options.mode == AttentionMode::kAuto || options.channels == c.head_dim) {
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(
        absl::StrCat("attention mode double_sparse with ", options.channels, " of ", c.head_dim,
                     " channels needs a channel config, and the server has none (start it with "
                     "--channel-config, made by dsinfer-calibrate), or ask for channels = ",
                     c.head_dim));
  }
  if (options.channels > c.head_dim) {  // `auto` skips this bound in Validate
    return absl::InvalidArgumentError(
        absl::StrCat("channels must be in [1, ", c.head_dim, "], got ", options.channels));
  }
  // The engine derives the same per-KV-head sets at its first step with these options; a
  // missing statistic kind there would fail the whole batch, here it fails only this request.
  for (int layer = 0; layer < c.num_layers; ++layer) {
    absl::StatusOr<std::vector<int32_t>> channels = KvHeadChannels(
        *config, options.statistic, layer, c.num_heads_q, c.num_heads_kv, options.channels);
    if (!channels.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the server's channel config cannot serve statistic ",
                       ChannelStatisticName(options.statistic), " with ", options.channels,
                       " channels: ", channels.status().message()));
    }
  }
  return absl::OkStatus();
}

Scheduler::Scheduler(Model& model, const Tokenizer* tokenizer, const SchedulerOptions& options)
    : model_(model), tokenizer_(tokenizer), options_(options) {}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Model& model, const Tokenizer* tokenizer,
                                                             const SchedulerOptions& options) {
  RETURN_IF_ERROR(options.Validate());
  if (absl::Status s = CheckAttentionSupported(model, options.default_attention); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("default attention options: ", s.message()));
  }
  RETURN_IF_ERROR(
      WarmUp(model, options.max_batch + options.prefill_chunk, options.default_attention));
  std::unique_ptr<Scheduler> s(new Scheduler(model, tokenizer, options));
  const KvPoolOptions& pool = model.kv_pool().options();
  s->stats_.kv_blocks_total = pool.num_blocks;
  s->stats_.kv_block_tokens = pool.block_tokens;
  s->PublishStats();
  s->thread_ = std::thread([p = s.get()] { p->Loop(); });
  return s;
}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<std::shared_ptr<RequestStream>> Scheduler::Submit(ServingRequest request) {
  RETURN_IF_ERROR(ValidateRequest(model_, request.generation));
  RETURN_IF_ERROR(CheckAttentionSupported(model_, request.generation.attention));
  if (request.top_logprobs < 0 || request.top_logprobs > options_.max_top_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("top_logprobs must be in [0, ",
                                                   options_.max_top_logprobs, "], got ",
                                                   request.top_logprobs));
  }
  for (const std::string& stop : request.stop_sequences) {
    if (stop.empty()) return absl::InvalidArgumentError("a stop sequence is empty");
  }
  if (!request.stop_sequences.empty() && tokenizer_ == nullptr) {
    return absl::FailedPreconditionError(
        "stop_sequences need a tokenizer, and the model directory has no tokenizer.json; use "
        "stop_token_ids");
  }
  // The pool's geometry is immutable, so reading it off the engine thread is safe.
  const KvBlockPool& pool = model_.kv_pool();
  const int64_t total = static_cast<int64_t>(request.generation.prompt.size()) +
                        request.generation.max_new_tokens;
  if (pool.BlocksFor(total) > pool.options().num_blocks) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt + max_new_tokens = ", total, " tokens can never fit in the KV pool of ",
        pool.options().num_blocks * pool.options().block_tokens, " tokens"));
  }
  auto seq = std::make_unique<Sequence>(std::move(request), tokenizer_);
  seq->accepted = Now();
  std::shared_ptr<RequestStream> stream = seq->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (draining_ || stopping_) return absl::UnavailableError("the server is shutting down");
    if (static_cast<int>(queue_.size()) >= options_.max_queue) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the request queue is full (", options_.max_queue, " waiting); retry later"));
    }
    queue_.push_back(std::move(seq));
    stats_.queued = static_cast<int64_t>(queue_.size());
    ++stats_.requests_total;
  }
  cv_.notify_all();
  return stream;
}

void Scheduler::Drain() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

void Scheduler::CancelAll() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancel_all_ = true;
  }
  cv_.notify_all();
}

bool Scheduler::WaitIdle(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  // Idle in the queue itself and in the published stats (a request cancelled while queued
  // leaves queue_ a moment before PublishStats counts it gone).
  return idle_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return queue_.empty() && stats_.queued == 0 && stats_.running == 0;
  });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    cancel_all_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::PublishStats() {
  KvBlockPool& pool = model_.kv_pool();
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.queued = static_cast<int64_t>(queue_.size());
  stats_.kv_blocks_in_use = pool.blocks_in_use();
  stats_.kv_bytes_in_use = pool.bytes_in_use();
  stats_.kv_sequences = pool.sequences();
  stats_.label_bytes_in_use = model_.double_sparsity().labels().bytes_in_use();
  stats_.label_sequences = model_.double_sparsity().labels().sequences();
  if (queue_.empty() && running_.empty()) idle_cv_.notify_all();
}

void Scheduler::Loop() {
  while (true) {
    bool cancel_all = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
      if (stopping_ && queue_.empty() && running_.empty()) break;
      cancel_all = cancel_all_;
      const absl::Time now = Now();
      // Cancelled or expired requests leave the queue without ever holding KV.
      for (auto it = queue_.begin(); it != queue_.end();) {
        Sequence& s = **it;
        if (s.stream->cancelled()) {
          Finish(s, absl::CancelledError("cancelled by the client"));
        } else if (now >= s.request.deadline) {
          Finish(s, absl::DeadlineExceededError("deadline exceeded while queued"));
        } else if (cancel_all) {
          s.pending.finish = ServingFinish::kCancelled;
          Finish(s, absl::OkStatus());
        } else {
          ++it;
          continue;
        }
        it = queue_.erase(it);
      }
      // FIFO admission: the head waits until it fits, so large requests are not starved.
      KvBlockPool& pool = model_.kv_pool();
      while (!queue_.empty() && static_cast<int>(running_.size()) < options_.max_batch) {
        Sequence& s = *queue_.front();
        if (pool.BlocksFor(s.budget()) > pool.free_blocks()) break;
        s.kv = pool.AddSequence();
        s.has_kv = true;
        const absl::Status reserved = pool.Reserve(s.kv, s.budget());
        if (!reserved.ok()) {  // cannot happen after the check above; fail just this one
          Finish(s, reserved);
          queue_.pop_front();
          continue;
        }
        s.admitted = Now();
        running_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Token boundary: cancellation and deadlines of running sequences.
    const absl::Time now = Now();
    for (auto& s : running_) {
      if (s->stream->cancelled()) {
        Finish(*s, absl::CancelledError("cancelled by the client"));
      } else if (now >= s->request.deadline) {
        Finish(*s, absl::DeadlineExceededError(
                       absl::StrCat("deadline exceeded after ", s->generated, " tokens")));
      } else if (cancel_all) {  // server shutdown: a final message with what was generated
        s->pending.finish = ServingFinish::kCancelled;
        Finish(*s, absl::OkStatus());
      }
    }
    running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                   running_.end());
    if (!running_.empty()) {
      const absl::Status step = Step();
      if (!step.ok()) {
        for (auto& s : running_) {
          if (!s->done) Finish(*s, absl::InternalError(absl::StrCat("forward step failed: ", step.message())));
        }
      }
      running_.erase(std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->done; }),
                     running_.end());
    }
    PublishStats();
  }
  PublishStats();
}

absl::Status Scheduler::Step() {
  struct Entry {
    Sequence* s;
    int64_t first_logit;  // its first row in the logits buffer
    int64_t begin;        // prefill: first prompt token of the chunk
    int64_t count;        // tokens this step
    bool prefill;
  };
  // Long prompts first, layer by layer (SchedulerOptions::layer_major_from): started here,
  // then layer_major_layers_per_step layers per step (0: all), the other sequences decoding a
  // token between those steps.
  for (auto& sp : running_) {
    Sequence& s = *sp;
    const GenerationRequest& g = s.request.generation;
    if (s.done || s.prefilled != 0 || !PrefillsLayerMajor(g, options_.layer_major_from)) continue;
    const absl::Status status = [&]() -> absl::Status {
      if (s.layer_major == nullptr) {
        ASSIGN_OR_RETURN(s.layer_major, model_.StartLayerMajor(s.kv, g.prompt,
                                                               options_.prefill_chunk,
                                                               &g.attention));
      }
      ASSIGN_OR_RETURN(const bool done,
                       model_.ContinueLayerMajor(*s.layer_major,
                                                 options_.layer_major_layers_per_step, logits_));
      if (!done) return absl::OkStatus();
      s.layer_major.reset();
      s.prefilled = s.prompt_size();
      Accept(s, logits_, model_.logit_stat(0));
      return absl::OkStatus();
    }();
    if (!status.ok()) {
      Finish(s, absl::InternalError(
                    absl::StrCat("layer-major prefill failed: ", status.message())));
    }
  }
  ForwardBatch batch;
  std::vector<Entry> entries;
  int64_t prefill_budget = options_.prefill_chunk;
  for (auto& sp : running_) {
    Sequence& s = *sp;
    // Finished by its layer-major prefill's first token, or between layer-major steps.
    if (s.done || s.layer_major != nullptr) continue;
    const int64_t first_logit = static_cast<int64_t>(batch.logit_rows.size());
    if (s.prefilled < s.prompt_size()) {
      if (prefill_budget == 0) continue;
      const int64_t count = std::min(prefill_budget, s.prompt_size() - s.prefilled);
      prefill_budget -= count;
      batch.Add(s.kv, s.request.generation.prompt.data() + s.prefilled, count, s.prefilled,
                s.request.generation.prompt_logprobs);
      entries.push_back({&s, first_logit, s.prefilled, count, true});
    } else {
      const int64_t cached = static_cast<int64_t>(s.history.size()) - 1;
      batch.Add(s.kv, &s.history.back(), 1, cached, false);
      entries.push_back({&s, first_logit, cached, 1, false});
    }
    batch.sequences.back().attention = &s.request.generation.attention;
  }
  if (entries.empty()) return absl::OkStatus();
  // The step's token path (engine/token_choice.h), from its logit rows in order: a decode row
  // and a prompt's last chunk give a token (top_logprobs read the whole row); an earlier
  // chunk's row is unused; prompt logprobs read every row of the chunk.
  StepTokenChoices choices(model_.backend().ChoosesTokensOnDevice());
  for (const Entry& e : entries) {
    Sequence& s = *e.s;
    const bool top_logprobs = s.request.top_logprobs > 0;
    if (!e.prefill) {
      choices.AddRow(&s.sampler, top_logprobs);
    } else if (s.request.generation.prompt_logprobs) {
      for (int64_t j = 0; j < e.count; ++j) choices.AddRow(nullptr, /*needs_host_logits=*/true);
    } else {
      const bool ends_prompt = s.prefilled + e.count == s.prompt_size();
      choices.AddRow(ends_prompt ? &s.sampler : nullptr, ends_prompt && top_logprobs);
    }
  }
  if (choices.on_device()) {
    RETURN_IF_ERROR(model_.ForwardAndChoose(batch, choices.Draw(), chosen_));
    for (const Entry& e : entries) {
      Sequence& s = *e.s;
      if (e.prefill) {
        s.prefilled += e.count;
        if (s.prefilled < s.prompt_size()) continue;
      }
      const ChosenToken& c = chosen_[static_cast<size_t>(e.first_logit)];
      AcceptToken(s, c.token, c.logprob);
    }
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(model_.Forward(batch, logits_));
  const int64_t vocab = model_.config().vocab_size;
  auto row = [&](int64_t i) { return absl::Span<const float>(logits_.data() + i * vocab, vocab); };
  for (const Entry& e : entries) {
    Sequence& s = *e.s;
    if (!e.prefill) {
      Accept(s, row(e.first_logit), model_.logit_stat(e.first_logit));
      continue;
    }
    const std::vector<int32_t>& prompt = s.request.generation.prompt;
    if (s.request.generation.prompt_logprobs) {
      for (int64_t j = 0; j < e.count && e.begin + j + 1 < s.prompt_size(); ++j) {
        s.prompt_logprobs.push_back(LogProbability(row(e.first_logit + j), prompt[e.begin + j + 1]));
      }
    }
    s.prefilled += e.count;
    if (s.prefilled == s.prompt_size()) {
      const int64_t last = s.request.generation.prompt_logprobs ? e.first_logit + e.count - 1 : e.first_logit;
      Accept(s, row(last), model_.logit_stat(last));
    }
  }
  return absl::OkStatus();
}

namespace {

// The `n` most likely tokens of `logits` with their log-probabilities, most likely first.
std::vector<TokenLogprob> TopLogprobs(absl::Span<const float> logits, int n) {
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  const double log_z = max + std::log(sum);
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  n = std::min<int>(n, static_cast<int>(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
  });
  std::vector<TokenLogprob> top(n);
  for (int i = 0; i < n; ++i) top[i] = {ids[i], logits[ids[i]] - log_z};
  return top;
}

// Length of the longest suffix of `text` that is a proper prefix of one of `stops`: text that
// may still become a stop sequence and so must not be streamed yet.
size_t HeldBack(const std::string& text, const std::vector<std::string>& stops) {
  size_t held = 0;
  for (const std::string& stop : stops) {
    for (size_t k = std::min(stop.size() - 1, text.size()); k > held; --k) {
      if (text.compare(text.size() - k, k, stop, 0, k) == 0) {
        held = k;
        break;
      }
    }
  }
  return held;
}

}  // namespace

void Scheduler::Accept(Sequence& s, absl::Span<const float> logits, const LogitRowStat* stat) {
  const auto [token, logprob] = NextToken(s.sampler, logits, s.history, stat);
  if (s.request.top_logprobs > 0) {
    s.pending.top_logprobs.push_back(TopLogprobs(logits, s.request.top_logprobs));
  }
  AcceptToken(s, token, logprob);
}

void Scheduler::AcceptToken(Sequence& s, int32_t token, double logprob) {
  const GenerationRequest& g = s.request.generation;
  s.history.push_back(token);
  ++s.generated;
  if (s.generated == 1) s.first_token = Now();
  s.pending.tokens.push_back(token);
  s.pending.logprobs.push_back(logprob);

  bool finished = true;
  const std::vector<int32_t>& eos = model_.config().eos_token_ids;
  if (!g.ignore_eos && std::count(eos.begin(), eos.end(), token)) {
    s.pending.finish = ServingFinish::kEos;
  } else if (std::count(g.stop_token_ids.begin(), g.stop_token_ids.end(), token)) {
    s.pending.finish = ServingFinish::kStopToken;
  } else if (s.generated >= g.max_new_tokens) {
    s.pending.finish = ServingFinish::kLength;
  } else {
    finished = false;
  }
  if (s.decoder != nullptr) {
    // The token that ended generation (EOS, a stop token) is not part of the text.
    const bool text_token = !(finished && s.pending.finish != ServingFinish::kLength);
    if (text_token) {
      absl::StatusOr<std::string> piece = s.decoder->Push(token);
      if (piece.ok()) s.text += *piece;
    }
    if (finished) {
      absl::StatusOr<std::string> rest = s.decoder->Flush();
      if (rest.ok()) s.text += *rest;
    }
    // A stop sequence can only start in the text that was added or held back.
    const size_t from = s.emitted;
    size_t match = std::string::npos;
    for (const std::string& stop : s.request.stop_sequences) {
      const size_t at = s.text.find(stop, from);
      if (at != std::string::npos && (match == std::string::npos || at < match)) {
        match = at;
        s.pending.matched_stop = stop;
      }
    }
    if (match != std::string::npos) {
      s.text.resize(match);
      s.pending.finish = ServingFinish::kStopSequence;
      finished = true;
    }
    const size_t ready = finished ? s.text.size()
                                  : std::max(s.emitted, s.text.size() - HeldBack(s.text, s.request.stop_sequences));
    s.pending.text = s.text.substr(s.emitted, ready - s.emitted);
    s.emitted = ready;
  }
  if (finished) {
    Finish(s, absl::OkStatus());
    return;
  }
  StreamEvent event;
  std::swap(event, s.pending);
  s.stream->Push(std::move(event));
}

void Scheduler::Finish(Sequence& s, absl::Status status) {
  ServingAttentionStats& attention = s.pending.attention;
  attention.requested_mode = std::string(AttentionModeName(s.request.generation.attention.mode));
  attention.mode = "dense";
  if (s.has_kv) {
    // The engine keeps a sequence's counters only while the pool holds it: read them first.
    if (const SequenceAttentionStats* st = model_.double_sparsity().Stats(s.kv)) {
      attention.mode = st->sparse_rows > 0 ? "double_sparse" : "dense";
      attention.tokens_attended = static_cast<uint64_t>(st->tokens_attended);
      attention.tokens_in_context = static_cast<uint64_t>(st->tokens_context);
      attention.dense_rows = static_cast<uint64_t>(st->dense_rows);
      attention.sparse_rows = static_cast<uint64_t>(st->sparse_rows);
      attention.bytes_fetched_from_host = static_cast<uint64_t>(st->fetch.bytes_from_host);
    }
    // KV blocks and labels, before the final event: clients then see idle accounting. A
    // layer-major prefill still running is dropped first (its copies into these blocks end).
    s.layer_major.reset();
    model_.ReleaseSequence(s.kv);
    s.has_kv = false;
  }
  s.done = true;
  if (status.ok() && s.decoder != nullptr && s.pending.finish == ServingFinish::kCancelled) {
    absl::StatusOr<std::string> rest = s.decoder->Flush();
    if (rest.ok()) s.text += *rest;
    s.pending.text += s.text.substr(s.emitted);
    s.emitted = s.text.size();
  }
  StreamEvent event;
  std::swap(event, s.pending);
  event.final = true;
  event.status = std::move(status);
  event.prompt_tokens = s.prompt_size();
  event.completion_tokens = s.generated;
  event.prompt_logprobs = std::move(s.prompt_logprobs);
  const absl::Time now = Now();
  const bool admitted = s.admitted != absl::Time();
  const bool sampled = s.generated > 0;
  ServingTimings& t = event.timings;
  t.total_ms = absl::ToDoubleMilliseconds(now - s.accepted);
  t.queue_ms = absl::ToDoubleMilliseconds((admitted ? s.admitted : now) - s.accepted);
  if (admitted) t.prefill_ms = absl::ToDoubleMilliseconds((sampled ? s.first_token : now) - s.admitted);
  if (sampled) {
    t.time_to_first_token_ms = absl::ToDoubleMilliseconds(s.first_token - s.accepted);
    t.decode_ms = absl::ToDoubleMilliseconds(now - s.first_token);
    if (s.generated > 1) t.per_token_ms = t.decode_ms / static_cast<double>(s.generated - 1);
  }
  s.stream->Push(std::move(event));
}

}  // namespace dsinfer
