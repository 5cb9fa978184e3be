// dsinfer-run: the offline runner. Loads a model, generates from one prompt (token ids, or
// text with the model directory's tokenizer.json) and prints the result — the generated text
// when there is a tokenizer, the token ids and the finish reason — or one JSON object.
// Attention flags set the request's options exactly as a server request's attention fields
// would, so offline and served runs of the same options agree token for token.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/cpu_backend.h"
#ifdef DSINFER_WITH_CUDA_BACKEND
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/memory_plan.h"
#include "engine/model_config.h"
#endif
#include "engine/generator.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tools/attention_flags.h"
#include "engine/tools/cli_flags.h"
#include "engine/tools/offload_flags.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model, "", "model directory (config.json + safetensors)");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as comma-separated token ids");
ABSL_FLAG(std::string, prompt_ids_file, "",
          "file holding the prompt as token ids separated by commas or whitespace (for prompts "
          "too long for a command line)");
ABSL_FLAG(std::string, prompt, "", "prompt text (needs tokenizer.json in the model directory)");
ABSL_FLAG(bool, add_special_tokens, true, "text prompts: add the tokenizer's special tokens (BOS)");
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
ABSL_FLAG(bool, cuda_graphs, true, "cuda: replay decode steps as CUDA graphs");
ABSL_FLAG(int64_t, max_context, 0, "context limit in tokens; 0 = the model's");
ABSL_FLAG(std::string, kv_mode, "gpu", "KV tier: gpu | offload | dense-offload");
ABSL_FLAG(int64_t, kv_pool_tokens, 0, "KV pool size in tokens; 0 = 4 x context");
ABSL_FLAG(int64_t, layer_major_from, -1,
          "prefill prompts of at least this many tokens layer-major (all chunks through one layer "
          "with its K/V on the device, then the next); 0 = never; -1 = prompts longer than one "
          "prefill chunk in the offload kv modes (whose chunked prefill rereads the host pool "
          "for every chunk), never in kv mode gpu. Its staging memory (two layers of the KV pool "
          "and the prompt's fp32 hidden states) is in the start-up memory plan");
// The attention flags: declared in engine/tools/attention_flags.h and read there; --sink,
// --recent, --dense-layers and --dense-below are defined there too (same help in every binary).
ABSL_FLAG(std::string, attention_mode, "auto", "attention: auto | dense | double_sparse");
ABSL_FLAG(int64_t, token_budget, 0, "Double Sparsity token budget; 0 = use the ratio");
ABSL_FLAG(double, token_budget_ratio, 1.0 / 16, "token budget as a fraction of the context");
ABSL_FLAG(int32_t, channels, 16, "label channels per KV head");
ABSL_FLAG(int32_t, label_bits, 16, "label bits: 16 | 4");
ABSL_FLAG(std::string, channel_statistic, "qk", "channel-config kind: qk | q | k");
ABSL_FLAG(std::string, channel_config, "",
          "Double Sparsity channel config (from dsinfer-calibrate); without one, auto stays dense "
          "and double_sparse needs --channels = head_dim");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "dsinfer-run: error: %s\n", message.c_str());
  return 1;
}

// Appends the token ids in `text` (separated by commas or whitespace) to `ids`; the error
// names `source` and the first piece that is not an id.
absl::Status AppendTokenIds(absl::string_view text, absl::string_view source,
                            std::vector<int32_t>& ids) {
  for (absl::string_view piece :
       absl::StrSplit(text, absl::ByAnyChar(", \t\r\n"), absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": '", piece.substr(0, 40), "' is not a token id"));
    }
    ids.push_back(id);
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  dsinfer::ParseFlagsWithEnvironment(
      argc, argv,
      "dsinfer-run --model DIR --prompt-ids 1,2,3 | --prompt TEXT [--max-new-tokens N] "
      "[--temperature T] [--top-p P] [--seed S] [--attention-mode M --token-budget K "
      "--channels R --label-bits B --channel-config F] [--prompt-logprobs] [--json]");
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
  // The tokenizer is optional: token-id prompts work without one, and then no text is printed.
  std::unique_ptr<dsinfer::Tokenizer> tokenizer;
  {
    auto loaded = dsinfer::Tokenizer::LoadFromDir(model_dir);
    if (loaded.ok()) {
      tokenizer = std::move(*loaded);
    } else if (!absl::IsNotFound(loaded.status())) {
      return Fail("tokenizer: " + std::string(loaded.status().message()));
    }
  }
  dsinfer::GenerationRequest request;
  const std::string prompt_text = absl::GetFlag(FLAGS_prompt);
  if (!prompt_text.empty() && !absl::GetFlag(FLAGS_prompt_ids).empty()) {
    return Fail("give --prompt or --prompt-ids, not both");
  }
  if (!prompt_text.empty()) {
    if (tokenizer == nullptr) {
      return Fail("--prompt needs tokenizer.json in " + model_dir + "; use --prompt-ids");
    }
    auto ids = tokenizer->Encode(prompt_text, absl::GetFlag(FLAGS_add_special_tokens));
    if (!ids.ok()) return Fail("--prompt: " + std::string(ids.status().message()));
    request.prompt = std::move(*ids);
  }
  const std::string ids_file = absl::GetFlag(FLAGS_prompt_ids_file);
  if (!ids_file.empty() && (!prompt_text.empty() || !absl::GetFlag(FLAGS_prompt_ids).empty())) {
    return Fail("give one of --prompt, --prompt-ids, --prompt-ids-file");
  }
  if (absl::Status s = AppendTokenIds(absl::GetFlag(FLAGS_prompt_ids), "--prompt-ids",
                                      request.prompt);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (!ids_file.empty()) {
    std::ifstream in(ids_file, std::ios::binary);
    if (!in) return Fail("--prompt-ids-file: cannot read " + ids_file);
    std::ostringstream text;
    text << in.rdbuf();
    if (absl::Status s = AppendTokenIds(text.str(), "--prompt-ids-file " + ids_file,
                                        request.prompt);
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  if (request.prompt.empty()) {
    return Fail("a prompt is required (--prompt, --prompt-ids or --prompt-ids-file)");
  }
  request.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  request.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  request.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  request.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  request.sampling.min_p = static_cast<float>(absl::GetFlag(FLAGS_min_p));
  request.sampling.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  request.sampling.seed = absl::GetFlag(FLAGS_seed);
  request.ignore_eos = absl::GetFlag(FLAGS_ignore_eos);
  request.prompt_logprobs = absl::GetFlag(FLAGS_prompt_logprobs);
  dsinfer::AttentionOptions& attention = request.attention;
  if (absl::Status s = dsinfer::SetAttentionOptionsFromFlags(attention); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s = attention.Validate(); !s.ok()) return Fail(std::string(s.message()));

  dsinfer::ModelOptions options;
  options.max_context = absl::GetFlag(FLAGS_max_context);
  options.attention = attention;
  options.channel_config_path = absl::GetFlag(FLAGS_channel_config);
  options.kv_pool_tokens = absl::GetFlag(FLAGS_kv_pool_tokens);
  dsinfer::SetOffloadOptionsFromFlags(options.offload);
  {
    auto kv_mode = dsinfer::ParseKvMode(absl::GetFlag(FLAGS_kv_mode));
    if (!kv_mode.ok()) return Fail("--kv-mode: " + std::string(kv_mode.status().message()));
    options.kv_mode = *kv_mode;
  }
  if (absl::Status s = options.Validate(); !s.ok()) return Fail(std::string(s.message()));
  // Generate's options, also what the memory plan counts.
  dsinfer::GeneratorOptions generator;
  generator.layer_major_from = dsinfer::ResolveLayerMajorFrom(
      absl::GetFlag(FLAGS_layer_major_from), options.kv_mode, generator.prefill_chunk);
  std::unique_ptr<dsinfer::Backend> backend;
  if (device == "cpu") {
    backend = std::make_unique<dsinfer::CpuBackend>();
  }
#ifdef DSINFER_WITH_CUDA_BACKEND
  if (device == "cuda") {
    // Plan memory up front (engine/cuda/memory_plan.h: GPU and, in the offload modes, pinned
    // host memory) so that a model that cannot fit fails here with the numbers, not halfway
    // through the upload. Generate prefills one sequence in chunks of up to 512 rows.
    auto config = dsinfer::LoadModelConfig(model_dir);
    if (!config.ok()) return Fail(std::string(config.status().message()));
    const int64_t rows =
        std::min<int64_t>(static_cast<int64_t>(request.prompt.size()), generator.prefill_chunk);
    dsinfer::MemoryPlanRequest plan_request = dsinfer::MemoryPlanRequestFor(
        *config, options, model_dir, /*max_batch=*/1, std::max<int64_t>(rows, 1),
        request.prompt_logprobs ? std::max<int64_t>(rows, 1) : 1);
    plan_request.layer_major_from = generator.layer_major_from;
    options.offload.max_kept_rows = plan_request.kept_rows;  // what the plan counted
    auto plan = dsinfer::PlanCudaMemory(*config, plan_request, 0);
    if (!plan.ok()) return Fail(std::string(plan.status().message()));
    dsinfer::CudaBackendOptions cuda_options;
    cuda_options.decode_graphs = absl::GetFlag(FLAGS_cuda_graphs);
    auto cuda = dsinfer::CudaBackend::Create(cuda_options);
    if (!cuda.ok()) return Fail(std::string(cuda.status().message()));
    backend = std::move(*cuda);
  }
#endif
  auto model = dsinfer::Model::Load(model_dir, *backend, options);
  if (!model.ok()) return Fail(std::string(model.status().message()));
  auto results = dsinfer::Generate(**model, {request}, generator);
  if (!results.ok()) return Fail(std::string(results.status().message()));
  const dsinfer::GenerationResult& r = (*results)[0];
  // The token that ended generation (EOS, a stop token) is not part of the text, as in the
  // server's responses.
  std::string text;
  if (tokenizer != nullptr) {
    size_t n = r.tokens.size();
    if (n > 0 && r.finish != dsinfer::FinishReason::kLength) --n;
    auto decoded = tokenizer->Decode(absl::MakeConstSpan(r.tokens.data(), n));
    if (!decoded.ok())
      return Fail("decoding the output: " + std::string(decoded.status().message()));
    text = std::move(*decoded);
  }
  if (absl::GetFlag(FLAGS_json)) {
    nlohmann::json out;
    if (tokenizer != nullptr) out["text"] = text;
    out["token_ids"] = r.tokens;
    out["token_logprobs"] = r.token_logprobs;
    out["finish_reason"] = std::string(dsinfer::FinishReasonName(r.finish));
    out["usage"] = {{"prompt_tokens", request.prompt.size()}, {"completion_tokens", r.tokens.size()}};
    if (request.prompt_logprobs) out["prompt_logprobs"] = r.prompt_logprobs;
    const double decoded = static_cast<double>(r.tokens.size()) - 1;  // the first is prefill's
    out["timing"] = {{"prefill_seconds", r.prefill_seconds},
                     {"decode_seconds", r.decode_seconds},
                     {"first_decode_seconds", r.first_decode_seconds},
                     {"prompt_tokens_per_second",
                      r.prefill_seconds > 0 ? request.prompt.size() / r.prefill_seconds : 0.0},
                     {"decode_tokens_per_second",
                      r.decode_seconds > 0 ? decoded / r.decode_seconds : 0.0}};
    std::printf("%s\n", out.dump().c_str());
  } else {
    if (tokenizer != nullptr) std::printf("%s\n", text.c_str());
    for (size_t i = 0; i < r.tokens.size(); ++i) std::printf("%s%d", i ? "," : "", r.tokens[i]);
    std::printf("\nfinish_reason: %s\n", std::string(dsinfer::FinishReasonName(r.finish)).c_str());
  }
  return 0;
}
