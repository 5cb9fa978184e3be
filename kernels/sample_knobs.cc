// Range checks of SampleKnobs; the same bounds as SamplingParams::Validate (engine/sampler.cc).
#include "kernels/sample_knobs.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::Status ValidateSampleKnobs(const SampleKnobs& knobs) {
  if (!std::isfinite(knobs.temperature) || knobs.temperature < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample knobs: temperature must be finite and >= 0, got ",
                     knobs.temperature));
  }
  if (knobs.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample knobs: top_k must be >= 0, got ", knobs.top_k));
  }
  if (!(knobs.top_p > 0.0f && knobs.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample knobs: top_p must be in (0, 1], got ", knobs.top_p));
  }
  if (!(knobs.min_p >= 0.0f && knobs.min_p < 1.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample knobs: min_p must be in [0, 1), got ", knobs.min_p));
  }
  return absl::OkStatus();
}

}  // namespace dsinfer
