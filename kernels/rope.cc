// transformers computes inv_freq in fp32 (base ** (arange(0, d, 2).float() / d)) and the angle
// as fp32 position * fp32 inv_freq, then cos/sin in fp32. We mirror those roundings so that
// golden logits match to fp32 precision, evaluating cos/sin of the rounded angle in double.
#include "kernels/rope.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace dsinfer {

absl::Status RopeParams::Validate() const {
  if (!(theta > 0.0)) return absl::InvalidArgumentError(absl::StrCat("rope_theta must be > 0, got ", theta));
  if (type == Type::kLlama3) {
    if (!(factor > 0.0) || !(low_freq_factor > 0.0) || !(high_freq_factor > low_freq_factor) ||
        original_max_position_embeddings <= 0) {
      return absl::InvalidArgumentError(
          "llama3 rope scaling needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
          "original_max_position_embeddings > 0");
    }
  }
  return absl::OkStatus();
}

std::vector<float> ComputeRopeInvFreq(const RopeParams& params, int head_dim) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(params.theta), exponent);
  }
  if (params.type == RopeParams::Type::kLlama3) {
    const double old_len = static_cast<double>(params.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / params.low_freq_factor;
    const double high_freq_wavelen = old_len / params.high_freq_factor;
    for (int i = 0; i < half; ++i) {
      const float f = inv_freq[i];
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      float scaled = f;
      if (wavelen > low_freq_wavelen) {
        scaled = f / static_cast<float>(params.factor);
      }
      const float smooth = (static_cast<float>(old_len) / wavelen -
                            static_cast<float>(params.low_freq_factor)) /
                           static_cast<float>(params.high_freq_factor - params.low_freq_factor);
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      if (medium) {
        scaled = (1.0f - smooth) * f / static_cast<float>(params.factor) + smooth * f;
      }
      inv_freq[i] = scaled;
    }
  }
  return inv_freq;
}

void RopeReference(float* x, int64_t tokens, int64_t token_stride, int heads, int head_dim,
                   const int32_t* positions, const float* inv_freq) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(positions[t]) * inv_freq[i];
      const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      for (int h = 0; h < heads; ++h) {
        float* row = x + t * token_stride + static_cast<int64_t>(h) * head_dim;
        const float a = row[i];
        const float b = row[i + half];
        row[i] = a * c - b * s;
        row[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace dsinfer
