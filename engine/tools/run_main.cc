// dsinfer-run: the offline runner. Loads a model, generates from one prompt (token ids, or
// text once a tokenizer is present) and prints the result, as text or as one JSON object.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/cpu_backend.h"
#ifdef DSINFER_WITH_CUDA_BACKEND
#include "engine/cuda/cuda_backend.h"
#include "engine/model_config.h"
#endif
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/tools/cli_flags.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as comma-separated token ids");
ABSL_FLAG(int64_t, max_new_tokens, 16, "tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "sampling temperature; 0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "top-k filter; 0 = off");
ABSL_FLAG(double, top_p, 1.0, "top-p (nucleus) filter in (0, 1]");
ABSL_FLAG(double, min_p, 0.0, "min-p filter in [0, 1)");
ABSL_FLAG(double, repetition_penalty, 1.0, "repetition penalty; 1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(bool, ignore_eos, false, "do not stop at the model's EOS tokens");
ABSL_FLAG(bool, prompt_logprobs, false, "also report log p of each prompt token after the first");
ABSL_FLAG(bool, json, false, "print one JSON object");
ABSL_FLAG(std::string, device, "cpu", "backend: cpu or cuda (when built with CUDA)");
ABSL_FLAG(int64_t, max_context, 0, "context limit in tokens; 0 = the model's");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-run: error: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-run --model DIR --prompt-ids 1,2,3 [--max-new-tokens N] [--temperature T] "
      "[--top-p P] [--seed S] [--prompt-logprobs] [--json]");
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return Fail("--model is required");
  const std::string device = absl::GetFlag(FLAGS_device);
#ifdef DSINFER_WITH_CUDA_BACKEND
  if (device != "cpu" && device != "cuda") {
    return Fail("--device " + device + " is not available in this build (cpu, cuda)");
  }
#else
  if (device != "cpu") {
    return Fail("--device " + device + " is not available in this build (cpu)");
  }
#endif
  dsinfer::GenerationRequest request;
  for (absl::string_view piece :
       absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(piece), &id)) {
      return Fail("--prompt-ids: '" + std::string(piece) + "' is not a token id");
    }
    request.prompt.push_back(id);
  }
  if (request.prompt.empty()) return Fail("a prompt is required (--prompt-ids)");
  request.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  request.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  request.sampling.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
  request.sampling.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  request.sampling.seed = absl::GetFlag(FLAGS_seed);
  request.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  request.prompt_logprobs = absl::GetFlag(FLAGS_prompt_logprobs);

  dsinfer::ModelOptions options;
  options.max_context = absl::GetFlag(FLAGS_max_context);
  std::unique_ptr<dsinfer::Backend> backend;
  if (device == "cpu") {
    backend = std::make_unique<dsinfer::CpuBackend>();
  }
#ifdef DSINFER_WITH_CUDA_BACKEND
  if (device == "cuda") {
    // Plan GPU memory up front (weights + KV pool + workspace) so that a model that cannot fit
    // fails here with the numbers, not halfway through the upload.
    auto config = dsinfer::LoadModelConfig(model_dir);
    if (!config.ok()) return Fail(std::string(config.status().message()));
    int64_t max_context = options.max_context;
    if (max_context == 0) {
      max_context = config->max_position_embeddings > 0 ? config->max_position_embeddings : 4096;
    }
    const int64_t pool_tokens =
        options.kv_pool_tokens > 0 ? options.kv_pool_tokens : 4 * max_context;
    auto plan = dsinfer::PlanCudaMemory(*config, pool_tokens,
                                        static_cast<int64_t>(request.prompt.size()) + 1,
                                        dsinfer::DType::kBF16, 0);
    if (!plan.ok()) return Fail(std::string(plan.status().message()));
    auto cuda = dsinfer::CudaBackend::Create({});
    if (!cuda.ok()) return Fail(std::string(cuda.status().message()));
    backend = std::move(*cuda);
  }
#endif
  auto model = dsinfer::Model::Load(model_dir, *backend, options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto results = dsinfer::Generate(**model, {request});
  if (!results.ok()) return Fail(std::string(results.status().message()));
  const dsinfer::GenerationResult& r = (*results)[0];
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json out;
    out["token_ids"] = r.tokens;
    out["token_logprobs"] = r.token_logprobs;
    out["finish_reason"] = std::string(dsinfer::FinishReasonName(r.finish));
    out["usage"] = {{"prompt_tokens", request.prompt.size()}, {"completion_tokens", r.tokens.size()}};
    if (request.prompt_logprobs) out["prompt_logprobs"] = r.prompt_logprobs;
    std::printf("%s\n", out.dump().c_str());
  } else {
    for (size_t i = 0; i < r.tokens.size(); ++i) std::printf("%s%d", i ? "," : "", r.tokens[i]);
    std::printf("\nfinish_reason: %s\n", std::string(dsinfer::FinishReasonName(r.finish)).c_str());
  }
  return 0;
}
