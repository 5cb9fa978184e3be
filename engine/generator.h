// Offline generation for a fixed set of requests (dsinfer-run, tests, calibration): each
// prompt is prefilled in chunks, then all live sequences decode together, one token per step,
// until each meets a stop condition. The server's continuous-batching scheduler admits and
// retires requests at token boundaries instead; both drive Model::Forward the same way.
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
