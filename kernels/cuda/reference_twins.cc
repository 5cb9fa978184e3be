// Straight loops; they define the kernels' semantics, speed is no concern.
#include "kernels/cuda/reference_twins.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace dsinfer {

void EmbeddingReference(const float* table, int64_t cols, const int32_t* ids, int64_t n,
                        float* out) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(out + i * cols, table + static_cast<int64_t>(ids[i]) * cols, cols * sizeof(float));
  }
}

void ArgmaxReference(const float* logits, int64_t rows, int64_t vocab, int32_t* ids) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    int64_t best = -1;
    for (int64_t j = 0; j < vocab; ++j) {
      if (std::isnan(row[j])) continue;
      if (best < 0 || row[j] > row[best]) best = j;
    }
    ids[r] = best < 0 ? 0 : static_cast<int32_t>(best);
  }
}

void LogSumExpReference(const float* logits, int64_t rows, int64_t vocab, float* lse) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    double mx = -INFINITY;
    for (int64_t j = 0; j < vocab; ++j) mx = std::max(mx, static_cast<double>(row[j]));
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
    lse[r] = static_cast<float>(mx + std::log(sum));
  }
}

void SampleReference(const float* logits, int64_t rows, int64_t vocab, const SampleKnobs* knobs,
                     const float* uniforms, int32_t* ids, float* thresholds) {
  std::vector<float> p(static_cast<size_t>(vocab));
  auto count_at = [&](float theta) {
    int64_t n = 0;
    for (float v : p) n += v >= theta;
    return n;
  };
  // Masses in double, as the CPU sampler sums them: fp32 sums of 128K probabilities in id
  // order drop the small ones once the running sum is large (its ulp over their size), which
  // moved the top-p threshold by ~3% (run 17, call 10).
  auto mass_at = [&](float theta) {
    double m = 0.0;
    for (float v : p) m += v >= theta ? v : 0.0;
    return m;
  };
  auto as_float = [](uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    return f;
  };
  auto as_bits = [](float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof(bits));
    return bits;
  };
  constexpr uint32_t kOneBits = 0x3f800000u;
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * vocab;
    if (knobs[r].temperature == 0.0f) {
      ArgmaxReference(x, 1, vocab, ids + r);
      continue;
    }
    const float c = 1.4426950408889634f / knobs[r].temperature;
    const int top_k = knobs[r].top_k;
    const float top_p = knobs[r].top_p, min_p = knobs[r].min_p;
    float mx = -INFINITY;
    for (int64_t i = 0; i < vocab; ++i) mx = std::max(mx, x[i]);
    for (int64_t i = 0; i < vocab; ++i) p[i] = std::exp2((x[i] - mx) * c);
    float theta = 0.0f;
    if (top_k > 0 && top_k < vocab) {
      uint32_t lo = 0, hi = kOneBits + 1;
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        (count_at(as_float(mid)) >= top_k ? lo : hi) = mid;
      }
      theta = as_float(lo);
    }
    if (top_p < 1.0f) {
      const double target = top_p * mass_at(theta);
      uint32_t lo = as_bits(theta), hi = kOneBits + 1;
      while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        (mass_at(as_float(mid)) >= target ? lo : hi) = mid;
      }
      theta = as_float(lo);
    }
    if (min_p > 0.0f) theta = std::max(theta, min_p);
    if (thresholds != nullptr) thresholds[r] = theta;
    const double kept = mass_at(theta);
    if (!(kept > 0.0)) {  // no finite probability (non-finite logits): no token
      ids[r] = -1;
      continue;
    }
    const double target = uniforms[r] * kept;
    double cum = 0.0;
    int32_t chosen = -1, last_kept = 0;
    for (int64_t i = 0; i < vocab && chosen < 0; ++i) {
      if (p[i] < theta) continue;
      cum += p[i];
      last_kept = static_cast<int32_t>(i);
      if (target < cum) chosen = last_kept;
    }
    ids[r] = chosen >= 0 ? chosen : last_kept;
  }
}

}  // namespace dsinfer
