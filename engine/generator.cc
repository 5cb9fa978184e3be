#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "engine/token_choice.h"
#include "kernels/status.h"

namespace dsinfer {

absl::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopToken:
      return "stop_token";
  }
  return "?";
}

absl::Status ValidateRequest(const Model& model, const GenerationRequest& r) {
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt is empty");
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " has id ", r.prompt[i],
                                                     ", outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (r.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", r.max_new_tokens));
  }
  const int64_t total = static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
  if (total > model.max_context()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", r.prompt.size(), " tokens) + max_new_tokens (", r.max_new_tokens, ") = ", total,
        " exceeds the context limit of ", model.max_context(), " tokens"));
  }
  for (int32_t t : r.stop_token_ids) {
    if (t < 0 || t >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("stop token id ", t, " is outside the vocabulary"));
    }
  }
  RETURN_IF_ERROR(r.attention.Validate(model.config().head_dim));
  return r.sampling.Validate();
}

namespace {

struct Live {
  const GenerationRequest* request;
  GenerationResult* result;
  KvBlockPool::SequenceId kv;
  Sampler sampler;
  std::vector<int32_t> history;  // prompt + generated
  bool done = false;
};

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Appends `token` to `s` and decides whether it stops there.
void Accept(const ModelConfig& config, Live& s, int32_t token, double logprob) {
  s.history.push_back(token);
  s.result->tokens.push_back(token);
  s.result->token_logprobs.push_back(logprob);
  const GenerationRequest& r = *s.request;
  if (!r.ignore_eos && std::count(config.eos_token_ids.begin(), config.eos_token_ids.end(), token)) {
    s.result->finish = FinishReason::kEos;
    s.done = true;
  } else if (std::count(r.stop_token_ids.begin(), r.stop_token_ids.end(), token)) {
    s.result->finish = FinishReason::kStopToken;
    s.done = true;
  } else if (static_cast<int64_t>(s.result->tokens.size()) >= r.max_new_tokens) {
    s.result->finish = FinishReason::kLength;
    s.done = true;
  }
}

}  // namespace

absl::StatusOr<std::vector<GenerationResult>> Generate(Model& model,
                                                       const std::vector<GenerationRequest>& requests,
                                                       const GeneratorOptions& options) {
  if (options.prefill_chunk < 1) return absl::InvalidArgumentError("prefill_chunk must be >= 1");
  if (options.layer_major_from < 0) {
    return absl::InvalidArgumentError("layer_major_from must be >= 0");
  }
  for (const GenerationRequest& r : requests) RETURN_IF_ERROR(ValidateRequest(model, r));
  KvBlockPool& pool = model.kv_pool();
  const int64_t vocab = model.config().vocab_size;
  std::vector<GenerationResult> results(requests.size());
  std::vector<Live> live;
  live.reserve(requests.size());
  absl::Cleanup release = [&] {
    for (Live& s : live) pool.Release(s.kv);
  };
  for (size_t i = 0; i < requests.size(); ++i) {
    live.push_back(Live{&requests[i], &results[i], pool.AddSequence(), Sampler(requests[i].sampling),
                        requests[i].prompt});
    RETURN_IF_ERROR(pool.Reserve(live.back().kv, static_cast<int64_t>(requests[i].prompt.size()) +
                                                     requests[i].max_new_tokens));
  }
  std::vector<float> logits;
  std::vector<ChosenToken> chosen;
  // Prefill, one sequence at a time, in chunks; a layer-major prefill's first token is chosen
  // on the host (Model::PrefillLayerMajor returns the row).
  for (Live& s : live) {
    const std::vector<int32_t>& prompt = s.request->prompt;
    const int64_t n = static_cast<int64_t>(prompt.size());
    const auto prefill_start = std::chrono::steady_clock::now();
    // The first token, chosen from the last prompt position's logits.
    auto accept_first = [&](int32_t token, double logprob) {
      s.result->prefill_seconds = SecondsSince(prefill_start);
      Accept(model.config(), s, token, logprob);
    };
    auto first_token = [&](absl::Span<const float> row, int64_t logit_row) {
      const auto [token, logprob] =
          NextToken(s.sampler, row, s.history, model.logit_stat(logit_row));
      accept_first(token, logprob);
    };
    if (PrefillsLayerMajor(*s.request, options.layer_major_from)) {
      ASSIGN_OR_RETURN(const std::vector<float> last,
                       model.PrefillLayerMajor(s.kv, prompt, options.prefill_chunk,
                                               &s.request->attention));
      first_token(absl::MakeConstSpan(last.data(), vocab), 0);
      continue;
    }
    for (int64_t begin = 0; begin < n; begin += options.prefill_chunk) {
      const int64_t count = std::min(options.prefill_chunk, n - begin);
      ForwardBatch batch;
      batch.Add(s.kv, prompt.data() + begin, count, begin, s.request->prompt_logprobs);
      batch.sequences.back().attention = &s.request->attention;
      // The chunk's last logit row gives the first token when the chunk ends the prompt, and
      // is unused before. Prompt logprobs need whole rows: the host path.
      const bool last_chunk = begin + count == n;
      StepTokenChoices choices(model.backend().ChoosesTokensOnDevice());
      for (size_t r = 0; r < batch.logit_rows.size(); ++r) {
        const bool first_token_row = last_chunk && r + 1 == batch.logit_rows.size();
        choices.AddRow(first_token_row ? &s.sampler : nullptr, s.request->prompt_logprobs);
      }
      if (choices.on_device()) {
        RETURN_IF_ERROR(model.ForwardAndChoose(batch, choices.Draw(), chosen));
        if (last_chunk) accept_first(chosen.back().token, chosen.back().logprob);
        continue;
      }
      RETURN_IF_ERROR(model.Forward(batch, logits));
      if (s.request->prompt_logprobs) {
        for (int64_t j = 0; j < count; ++j) {
          const int64_t next = begin + j + 1;
          if (next >= n) break;
          s.result->prompt_logprobs.push_back(LogProbability(
              absl::MakeConstSpan(logits.data() + j * vocab, vocab), prompt[next]));
        }
      }
      if (begin + count == n) {
        const int64_t last = static_cast<int64_t>(logits.size()) / vocab - 1;
        first_token(absl::MakeConstSpan(logits.data() + last * vocab, vocab), last);
      }
    }
  }
  // Decode: every unfinished sequence advances one token per step.
  while (true) {
    ForwardBatch batch;
    std::vector<Live*> stepping;
    for (Live& s : live) {
      if (s.done) continue;
      const int64_t cached = static_cast<int64_t>(s.history.size()) - 1;
      batch.Add(s.kv, &s.history.back(), 1, cached, false);
      batch.sequences.back().attention = &s.request->attention;
      stepping.push_back(&s);
    }
    if (stepping.empty()) break;
    const auto step_start = std::chrono::steady_clock::now();
    StepTokenChoices choices(model.backend().ChoosesTokensOnDevice());
    for (Live* s : stepping) choices.AddRow(&s->sampler, /*needs_host_logits=*/false);
    if (choices.on_device()) {
      RETURN_IF_ERROR(model.ForwardAndChoose(batch, choices.Draw(), chosen));
      for (size_t i = 0; i < stepping.size(); ++i) {
        Accept(model.config(), *stepping[i], chosen[i].token, chosen[i].logprob);
      }
    } else {
      RETURN_IF_ERROR(model.Forward(batch, logits));
      for (size_t i = 0; i < stepping.size(); ++i) {
        absl::Span<const float> row(logits.data() + i * vocab, vocab);
        const auto [token, logprob] = NextToken(stepping[i]->sampler, row, stepping[i]->history,
                                                model.logit_stat(static_cast<int64_t>(i)));
        Accept(model.config(), *stepping[i], token, logprob);
      }
    }
    const double step_seconds = SecondsSince(step_start);
    for (Live* s : stepping) {
      if (s->result->decode_seconds == 0) s->result->first_decode_seconds = step_seconds;
      s->result->decode_seconds += step_seconds;
    }
  }
  return results;
}

}  // namespace dsinfer
