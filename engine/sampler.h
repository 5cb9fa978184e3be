// Token sampling from one row of logits: repetition penalty, temperature, then the top-k,
// top-p and min-p filters in that order (as transformers' logits processors), then a draw
// from a seeded generator. temperature == 0 is greedy (argmax, lowest id on ties). One
// Sampler per sequence so that seeded runs repeat whatever else runs in the batch.
#ifndef DSINFER_ENGINE_SAMPLER_H_
#define DSINFER_ENGINE_SAMPLER_H_

#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace dsinfer {

struct SamplingParams {
  float temperature = 0.0f;         // 0 = greedy
  int top_k = 0;                    // 0 = off
  float top_p = 1.0f;               // in (0, 1]; 1 = off
  float min_p = 0.0f;               // in [0, 1); 0 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off (divides positive logits, multiplies negative)
  uint64_t seed = 0;

  absl::Status Validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Samples a token from `logits` [vocab]. `history` holds the tokens the repetition
  // penalty applies to (prompt and generated so far). A non-greedy call draws one uniform
  // (DrawUniform) and returns SampleAt it; a greedy one draws nothing.
  int32_t Sample(absl::Span<const float> logits, absl::Span<const int32_t> history);
  // The uniform in [0, 1) a non-greedy Sample draws next, advancing the generator. The
  // device token path (engine/token_choice.h) draws here instead of Sample, so a seeded
  // request sees the same stream of uniforms on either path.
  double DrawUniform();
  // The token a non-greedy Sample draws at uniform `u`: inverse CDF of Distribution in id
  // order (the last kept token when rounding leaves u past the total).
  int32_t SampleAt(absl::Span<const float> logits, absl::Span<const int32_t> history,
                   double u) const;

  const SamplingParams& params() const { return params_; }

  // Temperature 0 and no repetition penalty: the token is the argmax, no draw.
  bool greedy() const { return params_.temperature == 0.0f && params_.repetition_penalty == 1.0f; }

  // The probabilities the draw uses (after every filter), for tests: [vocab], sums to 1.
  std::vector<double> Distribution(absl::Span<const float> logits,
                                   absl::Span<const int32_t> history) const;

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
};

// log softmax of `logits` at `token` (in double).
double LogProbability(absl::Span<const float> logits, int32_t token);

// What a backend may compute for a row of logits where they are (Backend::LogitStats): the
// argmax (lowest index on ties, NaN never wins) and log Σ exp.
struct LogitRowStat {
  int32_t argmax = 0;
  float log_sum_exp = 0.0f;
};

// The next token from one row of logits and its log-probability. With the row's `stat` (may
// be null), a greedy sampler (temperature 0, no repetition penalty) takes the argmax from it
// and the log-probability is logit − log_sum_exp, so the row is not scanned on the host;
// otherwise Sampler::Sample and LogProbability.
std::pair<int32_t, double> NextToken(Sampler& sampler, absl::Span<const float> logits,
                                     absl::Span<const int32_t> history, const LogitRowStat* stat);
// Index of the largest logit (lowest index on ties).
int32_t ArgMax(absl::Span<const float> logits);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_SAMPLER_H_
