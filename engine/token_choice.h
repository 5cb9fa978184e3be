// Where a forward step's next tokens are chosen (DESIGN §3, step 5). Two paths:
//
// - Host path (every backend; the only one on the CPU backend): the step's logit rows are
//   copied to the host as fp32 (Model::Forward; 512 KB a row at a 128K vocabulary) and the
//   request's Sampler picks the token. It covers every request feature: repetition penalty,
//   top_logprobs, prompt_logprobs, and greedy and sampled tokens alike.
// - Device path (a backend whose ChoosesTokensOnDevice(), e.g. CUDA): the logits stay where
//   they were computed; the backend draws each row's token with that row's knobs (temperature,
//   top-k, top-p, min-p; temperature 0 = argmax) and the uniform the host drew, and hands
//   back only the token ids and their log-probabilities (Model::ForwardAndChoose). It covers
//   greedy and sampled tokens without repetition penalty; it cannot give top_logprobs or
//   prompt_logprobs (they need whole rows).
//
// The choice is per step: one row that needs the host path sends the whole step there (the
// logits are copied as before), so a batch never mixes the two. Uniforms are drawn on the
// host from each request's Sampler (Sampler::DrawUniform) at exactly the tokens where
// Sampler::Sample would draw one, so a seeded request sees the same uniform stream on either
// path, and a step's path never changes which uniform a token uses. The two paths then agree
// on the token except where the draw falls within rounding of an interval boundary (the
// device sums its fp32 probabilities in fixed point, the host sorts and sums in double).
#ifndef DSINFER_ENGINE_TOKEN_CHOICE_H_
#define DSINFER_ENGINE_TOKEN_CHOICE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "engine/sampler.h"
#include "kernels/sample_knobs.h"

namespace dsinfer {

// How the device chooses one logit row's token.
struct DeviceTokenChoice {
  SampleKnobs knobs;     // temperature 0 = greedy (argmax)
  double uniform = 0.0;  // in [0, 1): the host's draw for a sampled row; unread when greedy
};

// One row's chosen token as the device path hands it back.
struct ChosenToken {
  int32_t token = 0;
  // log softmax of the row's unfiltered logits at `token` (logit − log Σ exp), as NextToken
  // computes it from a LogitRowStat on the host path.
  double logprob = 0.0;
};

// INVALID_ARGUMENT naming what is wrong with `choice` (row `row` of a step): knobs out of
// range (ValidateSampleKnobs) or a uniform outside [0, 1).
absl::Status ValidateDeviceTokenChoice(const DeviceTokenChoice& choice, size_t row);

// Whether the device path can choose tokens for `sampling`: everything but a repetition
// penalty, which needs the request's history beside the logits.
bool DeviceCanChoose(const SamplingParams& sampling);

// The kernel's knobs for `sampling` (repetition penalty dropped: DeviceCanChoose says when
// that is allowed). Greedy requests get temperature 0.
SampleKnobs KnobsFor(const SamplingParams& sampling);

// The device path's inputs of one step, collected row by row while the step's batch is
// built, and the step's path: on the device only when the backend can choose tokens and no
// row needs its logits on the host.
class StepTokenChoices {
 public:
  explicit StepTokenChoices(bool backend_chooses_on_device)
      : on_device_(backend_chooses_on_device) {}

  // The next logit row (in ForwardBatch::logit_rows order). `sampler`: the request whose next
  // token the row gives, or null when the row's token is not used (a prefill chunk that does
  // not end the prompt). `needs_host_logits`: the request reads the whole row (top_logprobs,
  // prompt_logprobs), which sends the step to the host path.
  void AddRow(Sampler* sampler, bool needs_host_logits);

  // Whether the step takes the device path.
  bool on_device() const { return on_device_; }
  size_t rows() const { return samplers_.size(); }

  // The device choice of every row, in AddRow order: each sampled row's knobs and a uniform
  // drawn from its sampler now (once per sampled row, as Sampler::Sample would); greedy and
  // unused rows draw nothing. Call once, only when on_device(), right before the step.
  std::vector<DeviceTokenChoice> Draw();

 private:
  bool on_device_;
  std::vector<Sampler*> samplers_;
};

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOKEN_CHOICE_H_
