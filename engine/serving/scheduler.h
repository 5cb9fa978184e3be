// The serving scheduler: continuous batching over one Model (DESIGN §3). One engine thread
// owns the Model and its KV pool; every other thread talks to it through Submit() and the
// RequestStream it returns, so the pool needs no locks.
//
// Each engine step builds one ForwardBatch: one decode token for every running sequence, plus
// at most `prefill_chunk` prompt tokens of sequences still prefilling. Long prompts therefore
// never stall running streams for more than one chunk's worth of compute, and requests join
// and leave the batch at token boundaries.
//
// Admission is FIFO from a bounded queue: the head request is admitted when fewer than
// `max_batch` sequences run and the pool's free blocks can hold its prompt + max_new_tokens.
// Reserving the whole budget up front means a running sequence can never run out of KV (no
// preemption, no recompute); the price is that admission is conservative. A request whose
// budget exceeds the whole pool could never run and is refused at Submit (RESOURCE_EXHAUSTED).
//
// Attention: each sequence carries its own AttentionOptions (server defaults overridden per
// request) into the batch, so dense and Double Sparsity sequences share one step. Whether the
// engine can honour a request's options (a channel config holding its statistic, or
// channels = head_dim without one) is checked at Submit, because the engine only finds out
// inside Model::Forward, where a failure would fail the whole batch.
//
// Cancellation and deadlines are checked at every token boundary, in the queue too; a
// finished, cancelled, expired or failed sequence is released through Model::ReleaseSequence
// (its KV blocks and its Double Sparsity labels) before its final event is delivered, so a
// client that sees the final event sees idle accounting. Its attention stats are read from
// the engine just before the release. Deadlines and timings read `SchedulerOptions::clock`,
// so tests drive them with a fake clock instead of sleeping.
//
// Tokens: each step's are chosen on the device when the backend can and no row of the step
// needs its logits on the host (repetition penalty, top_logprobs, prompt_logprobs), else from
// host copies of the logits as before; engine/token_choice.h says what each path covers.
//
// Text: with a tokenizer, each sequence decodes its tokens incrementally (UTF-8 safe) and
// matches stop sequences on the text. Text that could still be the start of a stop sequence
// is held back until it cannot be, so a stop sequence never leaks into the stream.
#ifndef DSINFER_ENGINE_SERVING_SCHEDULER_H_
#define DSINFER_ENGINE_SERVING_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/token_choice.h"
#include "engine/tokenizer/tokenizer.h"

namespace dsinfer {

// One generation request as the server hands it to the engine.
struct ServingRequest {
  std::string id;
  GenerationRequest generation;            // prompt ids, sampling, limits, attention
  std::vector<std::string> stop_sequences;  // matched on the decoded text (needs a tokenizer)
  int top_logprobs = 0;                    // N most likely tokens per generated position
  bool skip_special_tokens = false;        // for the returned text
  absl::Time deadline = absl::InfiniteFuture();
};

enum class ServingFinish { kLength, kEos, kStopToken, kStopSequence, kCancelled };
absl::string_view ServingFinishName(ServingFinish finish);

struct TokenLogprob {
  int32_t token = 0;
  double logprob = 0.0;
};

struct ServingTimings {
  double queue_ms = 0, prefill_ms = 0, decode_ms = 0, time_to_first_token_ms = 0,
         per_token_ms = 0, total_ms = 0;
};

// What attention did for one request: the engine's SequenceAttentionStats, read just before
// the sequence is released. Counts are Σ over (layer, new row, KV head), prefill included.
struct ServingAttentionStats {
  std::string mode;  // used: "double_sparse" when any (layer, row) ran sparse, else "dense"
  std::string requested_mode;      // auto | dense | double_sparse
  uint64_t tokens_attended = 0;    // K/V rows attention read
  uint64_t tokens_in_context = 0;  // K/V rows dense attention would have read
  uint64_t dense_rows = 0;         // (layer, row) pairs that ran dense
  uint64_t sparse_rows = 0;        // (layer, row) pairs that ran Double Sparsity
  // K/V bytes the offload tier read from the host pool (--kv-mode offload | dense-offload,
  // docs/offload.md); 0 in gpu mode, where attention reads the resident KV.
  uint64_t bytes_fetched_from_host = 0;
};

// What the engine thread delivers. Non-final events carry new tokens and new text; the final
// event carries `status` (OK, or CANCELLED / DEADLINE_EXCEEDED / INTERNAL ...) and, when OK,
// the finish reason and the summary fields. Events of one request may be merged by the reader.
struct StreamEvent {
  std::vector<int32_t> tokens;
  std::vector<double> logprobs;
  std::vector<std::vector<TokenLogprob>> top_logprobs;
  std::string text;
  bool final = false;
  absl::Status status;
  ServingFinish finish = ServingFinish::kLength;
  std::string matched_stop;
  std::vector<double> prompt_logprobs;
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  ServingTimings timings;
  ServingAttentionStats attention;
};

// The consumer's side of one request. Thread-safe.
class RequestStream {
 public:
  // Waits up to `timeout` for events; moves everything pending into `out` (merged: tokens and
  // text appended; the final event's fields when it has arrived). False when nothing arrived.
  bool Next(StreamEvent& out, absl::Duration timeout);
  // Asks the engine to stop this request at the next token boundary; its final event then has
  // status CANCELLED. Idempotent; harmless after the request finished.
  void Cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // Engine side.
  void Push(StreamEvent event);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<StreamEvent> events_;
  std::atomic<bool> cancelled_{false};
};

struct SchedulerOptions {
  int max_batch = 32;           // sequences in the running batch
  int max_queue = 256;          // requests waiting for admission
  int64_t prefill_chunk = 256;  // prompt tokens per engine step (all prefilling sequences)
  // Prompts of at least this many tokens (without prompt logprobs) prefill layer-major
  // (Model::StartLayerMajor / ContinueLayerMajor, in chunks of prefill_chunk): in the offload
  // kv modes its K/V cross PCIe once instead of once per later chunk. 0 = never.
  int64_t layer_major_from = 0;
  // Layers of such a prefill per engine step; the running sequences decode a token between
  // steps (and a cancel lands between them). 0 = every layer in one step (running sequences
  // wait for the whole prefill: 139 s at 256K on an H200).
  int layer_major_layers_per_step = 1;
  int max_top_logprobs = 20;
  AttentionOptions default_attention;
  // Time source for deadlines, queue checks and timings; null = absl::Now. Called on the
  // engine thread and in Submit. Tests inject a fake clock.
  std::function<absl::Time()> clock;

  absl::Status Validate() const;
};

struct SchedulerStats {
  int64_t running = 0;
  int64_t queued = 0;
  int64_t requests_total = 0;
  int64_t kv_blocks_total = 0;
  int64_t kv_blocks_in_use = 0;
  int64_t kv_bytes_in_use = 0;
  int64_t kv_sequences = 0;
  int64_t kv_block_tokens = 0;
  int64_t label_bytes_in_use = 0;  // Double Sparsity label cache
  int64_t label_sequences = 0;
};

// Whether `model` can run a sequence with `options`: dense always; Double Sparsity needs the
// channel config to hold `options.statistic` with >= `options.channels` channels per head, or,
// without a config, channels = head_dim for double_sparse (`auto` then stays dense).
// INVALID_ARGUMENT for invalid options, FAILED_PRECONDITION naming what is missing. Reads only
// state fixed at load (the channel config), so any thread may call it.
absl::Status CheckAttentionSupported(const Model& model, const AttentionOptions& options);

class Scheduler {
 public:
  // `model` and `tokenizer` (nullable: token ids only) must outlive the scheduler. Starts the
  // engine thread.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Model& model, const Tokenizer* tokenizer,
                                                           const SchedulerOptions& options);
  ~Scheduler();  // Stop()s
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Validates `request` against the model (ValidateRequest, CheckAttentionSupported, stop
  // sequences need a tokenizer, top_logprobs bound) and queues it. INVALID_ARGUMENT /
  // FAILED_PRECONDITION for bad input, RESOURCE_EXHAUSTED when the queue is full or the request
  // could never fit in the KV pool, UNAVAILABLE once draining. Nothing is queued on error.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(ServingRequest request);

  // Refuses new requests from now on (UNAVAILABLE); queued and running ones continue.
  void Drain();
  // Cancels every queued and running request (each gets a final CANCELLED event at the next
  // token boundary).
  void CancelAll();
  // Blocks until no request is queued or running, or `timeout` passes; true when idle.
  bool WaitIdle(absl::Duration timeout);
  // Cancels everything, delivers the final events and joins the engine thread.
  void Stop();

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return options_; }

 private:
  struct Sequence;
  Scheduler(Model& model, const Tokenizer* tokenizer, const SchedulerOptions& options);
  void Loop();
  void AdmitLocked(std::vector<std::unique_ptr<Sequence>>& admitted);
  absl::Status Step();
  // The host token path: the token from the row's `logits` (and its top_logprobs when asked)
  // by the sequence's sampler. `stat`: the row as the backend summarized it
  // (Model::logit_stat; may be null).
  void Accept(Sequence& s, absl::Span<const float> logits, const LogitRowStat* stat);
  // Appends `token` (chosen on either path, engine/token_choice.h) to `s`: streaming, stop
  // checks, finishing.
  void AcceptToken(Sequence& s, int32_t token, double logprob);
  void Finish(Sequence& s, absl::Status status);
  void PublishStats();
  absl::Time Now() const { return options_.clock ? options_.clock() : absl::Now(); }

  Model& model_;
  const Tokenizer* tokenizer_;
  const SchedulerOptions options_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // work arrived / stop
  std::condition_variable idle_cv_;  // queue and batch became empty
  std::deque<std::unique_ptr<Sequence>> queue_;
  bool draining_ = false;
  bool stopping_ = false;
  bool cancel_all_ = false;
  SchedulerStats stats_;

  // Engine thread only.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<float> logits_;
  std::vector<ChosenToken> chosen_;  // a device-path step's tokens
  std::thread thread_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SERVING_SCHEDULER_H_
