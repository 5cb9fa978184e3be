// The path choice and knob packing of token_choice.h; no backend calls here.
#include "engine/token_choice.h"

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::Status ValidateDeviceTokenChoice(const DeviceTokenChoice& choice, size_t row) {
  if (const absl::Status s = ValidateSampleKnobs(choice.knobs); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token choice of row ", row, ": ", s.message()));
  }
  if (!(choice.uniform >= 0.0 && choice.uniform < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token choice of row ", row, ": uniform must be in [0, 1), got ", choice.uniform));
  }
  return absl::OkStatus();
}

bool DeviceCanChoose(const SamplingParams& sampling) {
  return sampling.repetition_penalty == 1.0f;
}

SampleKnobs KnobsFor(const SamplingParams& sampling) {
  SampleKnobs knobs;
  knobs.temperature = sampling.temperature;
  knobs.top_k = sampling.top_k;
  knobs.top_p = sampling.top_p;
  knobs.min_p = sampling.min_p;
  return knobs;
}

void StepTokenChoices::AddRow(Sampler* sampler, bool needs_host_logits) {
  if (needs_host_logits || (sampler != nullptr && !DeviceCanChoose(sampler->params()))) {
    on_device_ = false;
  }
  samplers_.push_back(sampler);
}

std::vector<DeviceTokenChoice> StepTokenChoices::Draw() {
  std::vector<DeviceTokenChoice> choices(samplers_.size());
  for (size_t i = 0; i < samplers_.size(); ++i) {
    Sampler* sampler = samplers_[i];
    DeviceTokenChoice& c = choices[i];
    if (sampler == nullptr) {
      c.knobs.temperature = 0.0f;  // unused row: the cheapest choice, no draw
      continue;
    }
    c.knobs = KnobsFor(sampler->params());
    if (!sampler->greedy()) c.uniform = sampler->DrawUniform();
  }
  return choices;
}

}  // namespace dsinfer
