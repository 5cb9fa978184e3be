// Offline generation for a fixed set of requests (dsinfer-run, tests, calibration): each
// prompt is prefilled in chunks, then all live sequences decode together, one token per step,
// until each meets a stop condition. The server's continuous-batching scheduler admits and
// retires requests at token boundaries instead; both drive Model::Forward the same way, and
// both choose each step's tokens on the device when the backend can and no request of the
// step needs whole logit rows (engine/token_choice.h), else on the host.
#ifndef DSINFER_ENGINE_GENERATOR_H_
#define DSINFER_ENGINE_GENERATOR_H_

#include <cstdint>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "engine/attention_options.h"
#include "engine/model.h"
#include "engine/sampler.h"

namespace dsinfer {

enum class FinishReason { kLength, kEos, kStopToken };
absl::string_view FinishReasonName(FinishReason reason);

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_new_tokens = 16;
  std::vector<int32_t> stop_token_ids;  // besides the model's EOS ids
  bool ignore_eos = false;
  bool prompt_logprobs = false;
  AttentionOptions attention;
};

struct GenerationResult {
  std::vector<int32_t> tokens;             // generated
  std::vector<double> token_logprobs;      // log p of each generated token (unfiltered model)
  std::vector<double> prompt_logprobs;     // [prompt.size() - 1] when requested
  FinishReason finish = FinishReason::kLength;
  // Wall-clock seconds: the prompt's prefill up to its first sampled token, and every decode
  // step this sequence took part in (steps are shared by the batch, so batch members each
  // count a whole step).
  double prefill_seconds = 0;
  double decode_seconds = 0;
  double first_decode_seconds = 0;  // the first decode step alone (part of decode_seconds)
};

struct GeneratorOptions {
  int64_t prefill_chunk = 512;  // prompt tokens per forward step
  // Prompts of at least this many tokens prefill layer-major (Model::PrefillLayerMajor, in
  // chunks of prefill_chunk) unless they ask for prompt logprobs; 0 = never. Meant for the
  // offload kv modes, where chunked prefill rereads the host pool for every chunk.
  int64_t layer_major_from = 0;
};

// Whether `request`'s prompt prefills layer-major (Model::PrefillLayerMajor) under a
// `layer_major_from` threshold (0 = never): prompts that long, unless they ask for prompt
// logprobs (layer-major yields the last position's logits only). Shared by Generate and the
// server's scheduler.
inline bool PrefillsLayerMajor(const GenerationRequest& request, int64_t layer_major_from) {
  return layer_major_from > 0 &&
         static_cast<int64_t>(request.prompt.size()) >= layer_major_from &&
         !request.prompt_logprobs;
}

// The layer-major threshold a `--layer-major-from` value means: other values as given; -1 (the
// binaries' default) = prompts longer than one `prefill_chunk` in the offload kv modes, where
// chunked prefill rereads the host pool for every chunk (27x slower at 32K on an H200,
// docs/benchmarks.md), and never in kv mode gpu, where both cost the same.
inline int64_t ResolveLayerMajorFrom(int64_t flag, KvMode mode, int64_t prefill_chunk) {
  if (flag != -1) return flag;  // other negative values stay invalid
  return mode == KvMode::kGpu ? 0 : prefill_chunk + 1;
}

// Checks a request against the model: non-empty prompt, ids in the vocabulary, sampling
// valid, prompt + max_new_tokens within the context limit. INVALID_ARGUMENT says which.
absl::Status ValidateRequest(const Model& model, const GenerationRequest& request);

// Runs all `requests` to completion. KV blocks are reserved up front for prompt +
// max_new_tokens (RESOURCE_EXHAUSTED if they do not fit together) and released on return,
// success or not.
absl::StatusOr<std::vector<GenerationResult>> Generate(Model& model,
                                                       const std::vector<GenerationRequest>& requests,
                                                       const GeneratorOptions& options = {});

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_GENERATOR_H_
